//! Mesh tunnels, the callee's side: an HTTP/2 `CONNECT` from a peer sidecar carries one TCP
//! connection of its app (intercepted opaque traffic) to a port of ours.
//!
//! The stream rides the mesh connection, so the caller's identity is its certificate's. A tunnel
//! is accepted only to a TCP port the app declared (`--app-ports`: the sidecar is no relay to
//! whatever else listens on this host, and never to `--app-port`, whose requests must pass the
//! inbound HTTP stack: identity headers stamped, policy per route), only if the access policy allows
//! the caller the operation `/tcp/<port>` with the verb `CONNECT`, and only once the app's port
//! accepted the connection; then bytes flow both ways until both sides end.

use std::sync::Arc;
use std::time::Duration;

use http::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use outrider_policy::Caller;
use tokio::net::TcpStream;

use super::Inbound;
use crate::errors::ApiError;
use crate::mesh::TUNNEL_PORT;
use crate::net::http::{Body, empty};
use crate::net::serve::conn::Activity;
use crate::net::tcp::{Direction, Meter, refused, splice};

/// How long connecting to the app's port may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Whether `req` asks for a tunnel.
pub(super) fn is_tunnel(req: &Request<super::MeshBody>) -> bool {
    req.method() == Method::CONNECT
}

/// Answers a tunnel request: 200 and the stream, or why not.
pub(super) async fn accept(
    mut req: Request<super::MeshBody>,
    inbound: Arc<Inbound>,
) -> Response<Body> {
    let Some(caller) = req.extensions().get::<Arc<Caller>>().cloned() else {
        return refuse(
            StatusCode::FORBIDDEN,
            "policy",
            "a tunnel without a caller identity",
        );
    };
    let port = req
        .headers()
        .get(TUNNEL_PORT)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u16>().ok())
        .filter(|p| *p != 0);
    let Some(port) = port else {
        return refuse(
            StatusCode::BAD_REQUEST,
            "port",
            "a tunnel must name a port in outrider-tunnel-port",
        );
    };
    if !inbound.tunnel_ports.contains(&port) {
        return refuse(
            StatusCode::FORBIDDEN,
            "port",
            format!("port {port} is not a port of app {}", inbound.app_id),
        );
    }
    let operation = format!("/tcp/{port}");
    if let Err(denied) = outrider_filters::authz::check(
        &inbound.policies,
        &inbound.denials,
        Some(&caller),
        &operation,
        &Method::CONNECT,
    ) {
        return refuse(StatusCode::FORBIDDEN, "policy", denied.to_string());
    }
    let addr = (inbound.app_address.as_str(), port);
    let app = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await {
        Ok(Ok(tcp)) => tcp,
        Ok(Err(e)) => {
            // The detail stays in this host's log; the peer learns only that the port is closed.
            tracing::info!(port, error = %e, "a tunnel's port of the app did not accept");
            let why = format!("port {port} of the app did not accept the connection");
            return refuse(StatusCode::BAD_GATEWAY, "unreachable", why);
        }
        Err(_) => {
            let why = format!("connecting to port {port} of the app timed out");
            return refuse(StatusCode::GATEWAY_TIMEOUT, "unreachable", why);
        }
    };
    let _ = app.set_nodelay(true);
    // The mesh connection is busy while the tunnel lives, even with no request on it.
    let holding = req.extensions().get::<Arc<Activity>>().map(Activity::hold);
    let upgrade = hyper::upgrade::on(&mut req);
    tracing::debug!(caller = %caller.app_id, port, "tunnel accepted");
    tokio::spawn(async move {
        let _holding = holding;
        let stream = match upgrade.await {
            Ok(upgraded) => TokioIo::new(upgraded),
            Err(e) => {
                tracing::debug!(error = %e, "the tunnel's stream did not open");
                return;
            }
        };
        let app = Meter::new(Direction::Inbound, &caller.app_id).wrap(app);
        if let Err(e) = splice(app, stream).await {
            tracing::debug!(caller = %caller.app_id, port, error = %e, "tunnel ended with an error");
        }
    });
    Response::new(empty())
}

fn refuse(status: StatusCode, reason: &'static str, message: impl Into<String>) -> Response<Body> {
    let message = message.into();
    tracing::info!(reason, %message, "refused a mesh tunnel");
    refused(Direction::Inbound, reason);
    ApiError::new(status, "ERR_TUNNEL", message).into_response()
}
