//! The app channel: plain HTTP from the sidecar to its own app on loopback, or HTTP/2 and Dapr's
//! `AppCallback` service to an app that speaks gRPC (`grpc`).
//!
//! Every request into the app gets the same treatment, whoever caused it: hop-by-hop and
//! identity headers the sender supplied are removed, the caller headers are stamped from the
//! verified caller, `dapr-api-token` carries `APP_API_TOKEN` (and nothing else), and `Host` names
//! the app's address.

pub(crate) mod grpc;
pub(crate) mod limit;
mod web;

use std::sync::Arc;
use std::time::Instant;

use http::uri::{self, Authority, PathAndQuery};
use http::{HeaderValue, Request, Response, Uri, header};
use outrider_filters::metrics::{self, Side};
use outrider_policy::Caller;

use crate::api::pipeline::Pipeline;
use crate::errors::InvokeError;
use crate::net::http::{Body, boxed, empty, names, strip_hop_by_hop, strip_identity};
use crate::to_app::health::AppHealth;
use grpc::GrpcApp;
use limit::{Holding, Limit};

/// How the app takes requests (`--app-protocol`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AppProtocol {
    Http,
    /// HTTP/1.1 over TLS.
    Https,
    /// HTTP/2 without TLS.
    H2c,
    Grpc,
    /// gRPC over TLS.
    Grpcs,
}

impl AppProtocol {
    /// Its name in the metadata API.
    pub(crate) fn name(self) -> &'static str {
        match self {
            AppProtocol::Http => "http",
            AppProtocol::Https => "https",
            AppProtocol::H2c => "h2c",
            AppProtocol::Grpc => "grpc",
            AppProtocol::Grpcs => "grpcs",
        }
    }

    /// Whether the app speaks gRPC (`AppCallback`), with or without TLS.
    pub(crate) fn is_grpc(self) -> bool {
        matches!(self, AppProtocol::Grpc | AppProtocol::Grpcs)
    }
}

/// A pooled client to the app.
#[derive(Clone)]
pub(crate) struct AppChannel {
    /// Connections to an app that speaks HTTP (one that speaks gRPC has its own, in `grpc`).
    web: Arc<web::Web>,
    app_id_label: Arc<str>,
    /// The app's `host:port`, parsed once.
    authority: Authority,
    host: HeaderValue,
    app_id: HeaderValue,
    app_token: Option<HeaderValue>,
    /// Set when the app speaks gRPC.
    grpc: Option<GrpcApp>,
    /// Invocations fail at once while the app fails its health checks.
    health: Arc<AppHealth>,
    /// `--app-max-concurrency`.
    limit: Option<Arc<Limit>>,
    /// `spec.appHttpPipeline`.
    pipeline: Pipeline,
}

/// How the app is reached: where, how, and within which bounds.
pub(crate) struct AppAddress<'a> {
    pub(crate) app_id: &'a str,
    pub(crate) address: &'a str,
    pub(crate) port: u16,
    pub(crate) app_token: Option<&'a str>,
    pub(crate) protocol: AppProtocol,
    pub(crate) max_body: u64,
    /// `--app-max-concurrency`, when positive.
    pub(crate) max_concurrency: Option<usize>,
    /// `spec.appHttpPipeline`: run on every call to an HTTP app.
    pub(crate) pipeline: Pipeline,
}

impl AppChannel {
    /// A channel to the app at `a.address:a.port`.
    pub(crate) fn new(a: &AppAddress<'_>, health: Arc<AppHealth>) -> anyhow::Result<Self> {
        let AppAddress {
            app_id,
            address,
            port,
            app_token,
            protocol,
            max_body,
            max_concurrency,
            ref pipeline,
        } = *a;
        let authority = if address.contains(':') {
            format!("[{address}]:{port}")
        } else {
            format!("{address}:{port}")
        };
        let grpc = match protocol {
            AppProtocol::Http | AppProtocol::Https | AppProtocol::H2c => None,
            AppProtocol::Grpc | AppProtocol::Grpcs => {
                Some(GrpcApp::new(app_id, &authority, max_body, protocol)?)
            }
        };
        let parsed = Authority::try_from(authority.as_str())?;
        Ok(Self {
            web: Arc::new(web::Web::new(protocol, parsed.clone())?),
            grpc,
            app_id_label: app_id.into(),
            host: HeaderValue::try_from(authority.as_str())?,
            authority: parsed,
            app_id: HeaderValue::try_from(app_id)?,
            app_token: app_token.map(HeaderValue::try_from).transpose()?,
            health,
            limit: max_concurrency.map(|n| Arc::new(Limit::new(n))),
            pipeline: pipeline.clone(),
        })
    }

    /// Invokes the app for `caller`: as [`call`](Self::call), but failing at once while the app
    /// fails its health checks, or when too many invocations already wait for a slot.
    pub(crate) async fn invoke(
        &self,
        req: Request<Body>,
        caller: &Caller,
    ) -> Result<Response<Body>, InvokeError> {
        if !self.health.is_healthy() {
            return Err(InvokeError::AppUnhealthy);
        }
        self.limited(req, caller, true).await
    }

    /// One health probe, outside every limit and without the API token: `Ok` with the status
    /// for a healthy answer, else the status (if any) and why not.
    pub(crate) async fn probe(
        &self,
        path: &str,
        timeout: std::time::Duration,
    ) -> Result<u16, (Option<u16>, String)> {
        if let Some(grpc) = &self.grpc {
            return match tokio::time::timeout(timeout, grpc.health_check()).await {
                Ok(Ok(())) => Ok(200),
                Ok(Err(e)) => Err((None, format!("health check failed: {e}"))),
                Err(_) => Err((None, format!("no answer within {timeout:?}"))),
            };
        }
        let req = Request::get(path)
            .header(header::HOST, self.host.clone())
            .body(empty())
            .map_err(|e| (None, e.to_string()))?;
        match tokio::time::timeout(timeout, self.web.send(req)).await {
            Ok(Ok(rsp)) if rsp.status().is_success() => Ok(rsp.status().as_u16()),
            Ok(Ok(rsp)) => Err((
                Some(rsp.status().as_u16()),
                format!("the health check answered {}", rsp.status().as_u16()),
            )),
            Ok(Err(e)) => Err((None, format!("network error: {e}"))),
            Err(_) => Err((None, format!("no answer within {timeout:?}"))),
        }
    }

    /// Whether the app speaks gRPC (`--app-protocol grpc`).
    pub(crate) fn speaks_grpc(&self) -> bool {
        self.grpc.is_some()
    }

    /// Sends `req` (whose URI holds the canonical path and the query) to the app on behalf of
    /// `caller`, once a slot under `--app-max-concurrency` is free. The response is the app's,
    /// with hop-by-hop headers removed.
    pub(crate) async fn call(
        &self,
        req: Request<Body>,
        caller: &Caller,
    ) -> Result<Response<Body>, InvokeError> {
        self.limited(req, caller, false).await
    }

    /// [`call`](Self::call) within the concurrency limit; `bounded`: see [`Limit::acquire`].
    async fn limited(
        &self,
        req: Request<Body>,
        caller: &Caller,
        bounded: bool,
    ) -> Result<Response<Body>, InvokeError> {
        let Some(limit) = &self.limit else {
            return self.send(req, caller).await;
        };
        let permit = limit.acquire(bounded).await?;
        let rsp = self.send(req, caller).await?;
        Ok(rsp.map(|b| boxed(Holding::new(b, permit))))
    }

    async fn send(
        &self,
        mut req: Request<Body>,
        caller: &Caller,
    ) -> Result<Response<Body>, InvokeError> {
        let h = req.headers_mut();
        strip_hop_by_hop(h);
        strip_identity(h);
        h.insert(header::HOST, self.host.clone());
        h.insert(&names::DAPR_CALLER_APP_ID, header_value(&caller.app_id));
        h.insert(
            &names::DAPR_CALLER_NAMESPACE,
            header_value(&caller.namespace),
        );
        h.insert(&names::DAPR_CALLEE_APP_ID, self.app_id.clone());
        if let Some(token) = &self.app_token {
            h.insert(&names::DAPR_API_TOKEN, token.clone());
        }
        let result = match &self.grpc {
            // Counted under Dapr's gRPC client metrics.
            Some(grpc) => {
                // Its clients take the app's address from the request.
                let mut uri = uri::Parts::default();
                uri.scheme = Some(grpc.scheme());
                uri.authority = Some(self.authority.clone());
                uri.path_and_query = Some(path_and_query(req.uri()));
                *req.uri_mut() =
                    Uri::from_parts(uri).map_err(|e| InvokeError::AppChannel(Box::new(e)))?;
                // Boxed: the gRPC channel's future is several kilobytes, and inline it would
                // make every HTTP app call's future that size, copied whole at each move.
                Box::pin(grpc.call(req)).await
            }
            // `spec.appHttpPipeline`'s middleware may answer in the app's place.
            None => match self.pipeline.admit(req.uri().path(), req.headers(), None) {
                Some(stopped) => Ok(stopped),
                None => self.http(req).await,
            },
        };
        let mut rsp = result?;
        strip_hop_by_hop(rsp.headers_mut());
        Ok(rsp)
    }

    /// One request to an app that speaks HTTP.
    async fn http(&self, req: Request<Body>) -> Result<Response<Body>, InvokeError> {
        let (start, method) = (Instant::now(), metrics::method_label(req.method()));
        let result = self.web.send(req).await;
        let status = result.as_ref().map_or(0, |r| r.status().as_u16());
        metrics::record(
            Side::Client,
            &self.app_id_label,
            method,
            None,
            status,
            start,
        );
        let rsp = result.map_err(InvokeError::AppChannel)?;
        // `Upgrade` is never forwarded, so a switch the caller did not ask for cannot be passed
        // on: a bare 101 on HTTP/1.1, and a status HTTP/2 forbids.
        if rsp.status() == http::StatusCode::SWITCHING_PROTOCOLS {
            return Err(InvokeError::AppChannel(
                "the app answered 101 Switching Protocols; upgrades are not proxied".into(),
            ));
        }
        Ok(rsp)
    }
}

/// The path and query of `uri`, `/` if it has none.
fn path_and_query(uri: &Uri) -> PathAndQuery {
    uri.path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"))
}

/// App ids and namespaces are validated names, so they are always valid header values.
fn header_value(s: &str) -> HeaderValue {
    HeaderValue::try_from(s).unwrap_or_else(|_| HeaderValue::from_static("invalid"))
}
