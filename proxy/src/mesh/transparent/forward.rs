//! Intercepted HTTP for a destination outside the mesh, or plain HTTP from outside the mesh for
//! this host: forwarded to the original destination as it was, but for hop-by-hop headers —
//! and, from outside the mesh, for any caller or callee identity header, which only the mesh
//! port may stamp (security rule 2).

use std::net::SocketAddr;
use std::time::Duration;

use http::{HeaderValue, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use crate::errors::ApiError;
use crate::net::http::{Body, boxed, strip_hop_by_hop, strip_identity};

/// How long connecting to the destination may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Plain HTTP clients: HTTP/1.1, and HTTP/2 with prior knowledge for clients that spoke h2c.
#[derive(Clone)]
pub(crate) struct PassthroughClients {
    h1: Client<HttpConnector, Body>,
    h2: Client<HttpConnector, Body>,
}

pub(crate) fn passthrough_clients() -> PassthroughClients {
    let mut http = HttpConnector::new();
    http.set_nodelay(true);
    http.set_connect_timeout(Some(CONNECT_TIMEOUT));
    let build = |h2: bool| {
        Client::builder(TokioExecutor::new())
            .http2_only(h2)
            .timer(TokioTimer::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(90))
            // The client's Host goes through as it was.
            .set_host(false)
            .build(http.clone())
    };
    PassthroughClients {
        h1: build(false),
        h2: build(true),
    }
}

/// Where the request comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum From {
    /// The local app, for a destination outside the mesh (counted as passthrough).
    App,
    /// A client outside the mesh, for this host: it has no identity to claim.
    Unmeshed,
}

/// Sends `req` to `dst` and hands back the answer.
pub(crate) async fn forward(
    clients: &PassthroughClients,
    dst: SocketAddr,
    req: Request<Incoming>,
    from: From,
) -> Response<Body> {
    let (mut parts, body) = req.into_parts();
    let trailers = parts.headers.get_all(header::TE).iter().any(|v| {
        v.to_str()
            .is_ok_and(|v| v.to_ascii_lowercase().contains("trailers"))
    });
    strip_hop_by_hop(&mut parts.headers);
    if trailers {
        // The one TE value a proxy passes on (gRPC servers require it).
        parts
            .headers
            .insert(header::TE, HeaderValue::from_static("trailers"));
    }
    if from == From::Unmeshed {
        strip_identity(&mut parts.headers);
    }
    if let Some(authority) = parts.uri.authority().cloned()
        && let Ok(host) = HeaderValue::from_str(authority.as_str())
    {
        parts.headers.entry(header::HOST).or_insert(host);
    }
    let pq = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
    parts.uri = match format!("http://{dst}{pq}").parse() {
        Ok(uri) => uri,
        Err(_) => return bad_gateway("the request's path cannot be forwarded"),
    };
    let client = if parts.version == http::Version::HTTP_2 {
        &clients.h2
    } else {
        &clients.h1
    };
    let answer = client
        .request(Request::from_parts(parts, boxed(body)))
        .await;
    if from == From::App {
        // By class: an upstream outside the mesh picks any status it likes (security rule 5).
        let class = answer.as_ref().map_or("error".to_owned(), |r| {
            format!("{}xx", r.status().as_u16() / 100)
        });
        crate::telemetry::metrics::PASSTHROUGH_REQUESTS
            .counter(&[("status", class)])
            .increment(1);
    }
    match answer {
        Ok(rsp) => {
            let (mut parts, body) = rsp.into_parts();
            strip_hop_by_hop(&mut parts.headers);
            Response::from_parts(parts, boxed(body))
        }
        Err(e) => {
            tracing::debug!(%dst, error = %e, "forwarded request failed");
            bad_gateway(format!("the request to {dst} failed"))
        }
    }
}

fn bad_gateway(message: impl Into<String>) -> Response<Body> {
    ApiError::new(StatusCode::BAD_GATEWAY, "ERR_DIRECT_INVOKE", message).into_response()
}
