//! The transparent outbound listener: the local app's redirected connections.
//!
//! Per connection: the original destination (a connection to the listener itself is refused),
//! then the protocol — opaque at once on `--opaque-ports`, else from the first bytes within
//! `--detect-timeout`. HTTP is served here and each request is named by its Host, or by the
//! destination address, and sent as an invocation of that app; anything else is tunnelled to the
//! sidecar at the destination address, or passed through when no app of the mesh runs there.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use http::{Method, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use outrider_discovery::Target;
use outrider_filters::trace::TraceLayer;
use tokio::net::TcpStream;
use tower::ServiceBuilder;

use super::forward::{From, forward};
use super::name::{ByAddress, Named, by_address, host_target};
use super::{Conn, Transparent, carry, is_loop};
use crate::errors::ApiError;
use crate::net::detect::{Protocol, Rewind, sniff};
use crate::net::guard::Guarded;
use crate::net::http::Body;
use crate::net::serve;
use crate::net::tcp::{Direction, Meter, original_dst, refused, splice};

/// One of the app's redirected connections.
pub(super) async fn connection(conn: Conn) {
    let Conn {
        t,
        accepted: serve::Accepted { mut tcp, watch, .. },
        builder,
        conns,
    } = conn;
    let dst = match (original_dst(&tcp), tcp.local_addr()) {
        (Ok(dst), Ok(local)) if !is_loop(dst, local) => dst,
        (Ok(_), Ok(_)) => {
            tracing::debug!("refused a connection to the outbound listener itself");
            return refused(Direction::Outbound, "loop");
        }
        (Err(e), _) | (_, Err(e)) => {
            tracing::debug!(error = %e, "no original destination");
            return refused(Direction::Outbound, "loop");
        }
    };
    let (protocol, prefix) = if t.cfg.opaque_ports.contains(&dst.port()) {
        (Protocol::Opaque, bytes::Bytes::new())
    } else {
        match sniff(&mut tcp, t.cfg.detect_timeout).await {
            Ok(Some(found)) => found,
            Ok(None) | Err(_) => return,
        }
    };
    let io = Rewind::new(prefix, tcp);
    match protocol {
        Protocol::Http1 | Protocol::H2 => {
            let io = Meter::new(Direction::Outbound, "http").wrap(io);
            let svc = ServiceBuilder::new()
                // Intercepted calls continue or start a trace as API calls do.
                .layer(TraceLayer::new(t.spans.clone()))
                .service_fn(move |req| request(t.clone(), dst, req));
            conns.spawn(
                Guarded::watched(watch.io(io), watch.activity()),
                svc,
                &builder,
                watch,
            );
        }
        Protocol::Tls | Protocol::Opaque => {
            let streams = t.out_streams.clone();
            streams.spawn(async move {
                // The connection keeps its slot under the listener's cap while it lives.
                let _watch = watch;
                stream(&t, io, dst).await;
            });
        }
    }
}

/// One intercepted HTTP request: an invocation of the app it names, or passed through.
async fn request(
    t: Arc<Transparent>,
    dst: SocketAddr,
    req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    if req.method() == Method::CONNECT {
        let e = ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "ERR_DIRECT_INVOKE",
            "CONNECT is not carried for intercepted HTTP",
        );
        return Ok(e.into_response());
    }
    let host = req
        .uri()
        .authority()
        .map(|a| a.as_str().to_owned())
        .or_else(|| {
            let h = req.headers().get(header::HOST)?;
            h.to_str().ok().map(str::to_owned)
        });
    let target = match named(&t, host.as_deref()).await {
        Some(target) => Some(target),
        None => match by_address(t.outbound.at_address(dst.ip())) {
            ByAddress::Mesh(target, _) => Some(target),
            ByAddress::Ambiguous(_) | ByAddress::Passthrough => None,
        },
    };
    let rsp = match target {
        Some(target) => crate::api::invoke::intercepted(&t.api, &target, req)
            .await
            .unwrap_or_else(ApiError::into_response),
        None => forward(&t.passthrough, dst, req, From::App).await,
    };
    Ok(rsp)
}

/// The target a Host names, if discovery knows it (waiting for it only for names of the mesh's
/// own forms).
async fn named(t: &Transparent, host: Option<&str>) -> Option<Target> {
    let named = host_target(host?, &t.api.namespace, &t.cfg.cluster_domain)?;
    let target = named.target();
    if t.outbound.knows(target) {
        return Some(target.clone());
    }
    match named {
        Named::Firm(target) if t.outbound.finds(&target).await => Some(target),
        Named::Firm(_) | Named::Maybe(_) => None,
    }
}

/// An opaque or TLS connection: tunnelled to the sidecar of the app at `dst`, or passed
/// through.
async fn stream(t: &Transparent, io: Rewind<TcpStream>, dst: SocketAddr) {
    let (target, addr) = match by_address(t.outbound.at_address(dst.ip())) {
        ByAddress::Mesh(target, addr) => (target, addr),
        ByAddress::Passthrough => return direct(io, dst).await,
        ByAddress::Ambiguous(apps) => {
            let apps: Vec<String> = apps.iter().map(ToString::to_string).collect();
            tracing::warn!(%dst, apps = %apps.join(", "), "several apps run at the destination; refusing the connection");
            return refused(Direction::Outbound, "ambiguous");
        }
    };
    let upgraded = match t.outbound.tunnel(&target, addr, dst.port()).await {
        Ok(Ok(upgraded)) => upgraded,
        Ok(Err(status)) => {
            tracing::info!(%target, port = dst.port(), %status, "the destination's sidecar refused the tunnel");
            let reason = if status == StatusCode::FORBIDDEN {
                "policy"
            } else {
                "unreachable"
            };
            return refused(Direction::Outbound, reason);
        }
        Err(e) => {
            tracing::info!(%target, error = %e, "no tunnel to the destination's sidecar");
            return refused(Direction::Outbound, "unreachable");
        }
    };
    let io = Meter::new(Direction::Outbound, &target.app_id).wrap(io);
    if let Err(e) = splice(io, TokioIo::new(upgraded)).await {
        tracing::debug!(%target, error = %e, "tunnel ended with an error");
    }
}

/// A connection to a destination outside the mesh, carried as it is.
async fn direct(io: Rewind<TcpStream>, dst: SocketAddr) {
    let io = Meter::new(Direction::Outbound, "passthrough").wrap(io);
    carry(io, dst, Direction::Outbound).await;
}
