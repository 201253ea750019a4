//! `--allowed-origins`: CORS on the HTTP API through `tower_http::cors`, with daprd's choices
//! (its methods, any request header, never credentials). Only an `OPTIONS` that names
//! `Access-Control-Request-Method` is a preflight, as in daprd: any other `OPTIONS` is an
//! invocation like the other verbs and reaches the app.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::{Method, Request, Response, header};
use hyper::body::Incoming;
use tower::Service;
use tower_http::cors::{AllowHeaders, AllowOrigin, Cors, CorsLayer};

use super::ApiService;
use crate::config::AllowedOrigins;
use crate::net::http::{Body, boxed};

/// The HTTP API, with CORS when origins are allowed.
#[derive(Clone)]
pub(crate) struct WithCors {
    api: ApiService,
    cors: Option<Cors<ApiService>>,
}

impl WithCors {
    pub(crate) fn new(api: ApiService, origins: &AllowedOrigins) -> Self {
        let allow = match origins {
            AllowedOrigins::None => return Self { api, cors: None },
            AllowedOrigins::All => AllowOrigin::any(),
            AllowedOrigins::List(list) => AllowOrigin::list(list.iter().cloned()),
        };
        let layer = CorsLayer::new()
            .allow_origin(allow)
            .allow_methods([
                Method::HEAD,
                Method::GET,
                Method::POST,
                Method::PUT,
                Method::PATCH,
                Method::DELETE,
            ])
            .allow_headers(AllowHeaders::mirror_request());
        let cors = Some(tower::Layer::layer(&layer, api.clone()));
        Self { api, cors }
    }
}

impl Service<Request<Incoming>> for WithCors {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Incoming>) -> Self::Future {
        let preflight = req.method() == Method::OPTIONS
            && req
                .headers()
                .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
        match &mut self.cors {
            Some(cors) if preflight || req.method() != Method::OPTIONS => {
                let fut = cors.call(req);
                Box::pin(async move { fut.await.map(|r| r.map(boxed)) })
            }
            _ => self.api.call(req),
        }
    }
}
