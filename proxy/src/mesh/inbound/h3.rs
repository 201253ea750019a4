//! HTTP/3 over QUIC on the mesh port's number (UDP), feeding the same inbound stack as the TCP
//! listener.
//!
//! The QUIC handshake is TLS 1.3 with the TCP listener's server configuration (`certs`): the
//! client's certificate must chain to the trust bundle, carry clientAuth and exactly one SPIFFE
//! id of our trust domain as URI SAN, or no connection exists. That id becomes the [`Caller`]
//! of every request on the connection, as on TCP. The certificate presented is the current one
//! at each handshake, so a renewal reaches new connections while live ones keep theirs.
//!
//! Limits as on TCP: a cap on open connections (past it, the handshake is refused), a deadline
//! for the handshake and for each request head, an idle timeout with no request in flight, and
//! QUIC's flow-control windows (see [`crate::net::quic`]). `CONNECT` tunnels ride HTTP/2 only.

use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt as _;
use http::{Method, Request, Response, StatusCode};
use outrider_certs::SpiffeId;
use outrider_policy::Caller;
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt as _;

use super::Stack;
use crate::errors::ApiError;
use crate::net::http::{boxed, strip_hop_by_hop};
use crate::net::quic::{self, body::RecvBody};
use crate::net::serve::{Limits, SENSITIVE_HEADERS};
use crate::telemetry::metrics as catalogue;

/// The listener's name in logs and metrics.
const NAME: &str = "mesh-h3";

/// How long a connection whose requests are done stays open for its last answers to be
/// acknowledged, when it closes for the drain or as idle.
const LINGER: Duration = Duration::from_secs(1);

/// The largest request header section accepted, as on TCP.
const MAX_HEADER_BYTES: u64 = 64 * 1024;

/// Accepts QUIC connections on `endpoint` until `stop`, then drains for at most `grace`. Each
/// connection takes one of `slots`, which the TCP listener of the mesh port shares: the cap is on
/// the port, whatever the transport.
pub(crate) async fn serve(
    endpoint: quinn::Endpoint,
    stack: Stack,
    (limits, slots): (Limits, Arc<Semaphore>),
    stop: CancellationToken,
    grace: Duration,
) -> anyhow::Result<()> {
    let conns = TaskTracker::new();
    loop {
        let incoming = tokio::select! {
            i = endpoint.accept() => match i {
                Some(i) => i,
                None => break,
            },
            () = stop.cancelled() => break,
        };
        // A QUIC Initial's source address can be forged: when the port is busy, a client must
        // first prove it receives at its address (a Retry round trip) before it takes a slot
        // and a handshake's work.
        if slots.available_permits() < limits.max_connections / 2
            && !incoming.remote_address_validated()
        {
            if let Err(e) = incoming.retry() {
                e.into_incoming().refuse();
            }
            continue;
        }
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            incoming.refuse();
            catalogue::CONNECTIONS_REFUSED
                .counter(&[("listener", NAME.to_owned())])
                .increment(1);
            continue;
        };
        let (stack, stop) = (stack.clone(), stop.clone());
        conns.spawn(async move {
            connection(incoming, stack, limits, stop).await;
            drop(slot);
        });
    }
    // New handshakes are refused from here; connections send GOAWAY and finish what they have.
    endpoint.set_server_config(None);
    conns.close();
    if tokio::time::timeout(grace, conns.wait()).await.is_err() {
        tracing::warn!(
            grace_secs = grace.as_secs(),
            "in-flight HTTP/3 requests did not finish within the grace period"
        );
    }
    endpoint.close(
        h3::error::Code::H3_NO_ERROR.value().try_into()?,
        b"shutting down",
    );
    // Long enough for the close to leave, bounded.
    let _ = tokio::time::timeout(LINGER, endpoint.wait_idle()).await;
    Ok(())
}

/// One connection: the handshake, the caller's identity, then its requests until it closes, goes
/// idle, or the listener drains.
async fn connection(
    incoming: quinn::Incoming,
    stack: Stack,
    limits: Limits,
    stop: CancellationToken,
) {
    let peer = incoming.remote_address();
    let conn = match tokio::time::timeout(limits.head_timeout, incoming).await {
        Ok(Ok(conn)) => conn,
        Ok(Err(e)) => {
            tracing::info!(%peer, error = %e, "refused a mesh connection over QUIC");
            return;
        }
        Err(_) => {
            closed("head");
            return;
        }
    };
    let Some(caller) = caller_of(&conn) else {
        // The verifier already required one; this is unreachable in practice.
        tracing::warn!(%peer, "QUIC mesh peer without identity after handshake");
        conn.close(0u32.into(), b"no identity");
        return;
    };
    tracing::debug!(%peer, caller = %caller.app_id, namespace = %caller.namespace, "mesh connection accepted over QUIC");
    let mut builder = h3::server::builder();
    builder.max_field_section_size(MAX_HEADER_BYTES);
    let built = builder.build(h3_quinn::Connection::new(conn.clone()));
    let mut h3 = match tokio::time::timeout(limits.head_timeout, built).await {
        Ok(Ok(h3)) => h3,
        Ok(Err(e)) => {
            tracing::debug!(%peer, error = %e, "HTTP/3 connection setup failed");
            return;
        }
        Err(_) => {
            conn.close(0x100u32.into(), b"no HTTP/3 setup in time");
            closed("head");
            return;
        }
    };
    let requests = TaskTracker::new();
    let mut idle_since = Instant::now();
    loop {
        let accepted = tokio::select! {
            a = h3.accept() => a,
            () = tokio::time::sleep_until(idle_since + limits.idle_timeout) => {
                if requests.is_empty() {
                    closed("idle");
                    break;
                }
                idle_since = Instant::now();
                continue;
            }
            () = stop.cancelled() => break,
        };
        idle_since = Instant::now();
        match accepted {
            Ok(Some(resolver)) => {
                let (stack, caller) = (stack.clone(), caller.clone());
                requests.spawn(request(resolver, stack, caller, limits));
            }
            Ok(None) => break,
            Err(e) => {
                if !e.is_h3_no_error() {
                    tracing::debug!(%peer, error = %e, "HTTP/3 connection ended");
                }
                break;
            }
        }
    }
    // GOAWAY: the peer opens no new request here; those in flight finish. It names the first
    // stream not processed, one past the last accepted (GOAWAY at the last accepted one would
    // tell the peer that request was never handled, inviting it to send it again).
    let _ = h3.shutdown(1).await;
    requests.close();
    requests.wait().await;
    // The last answers may still be on the way: closing now would drop what the peer has not
    // acknowledged. The peer closes once it is done with the connection, or the linger ends.
    let _ = tokio::time::timeout(LINGER, conn.closed()).await;
    drop(h3);
}

type Resolver = h3::server::RequestResolver<h3_quinn::Connection, bytes::Bytes>;

/// One request: its head within the deadline, the stack's answer, then the answer's body,
/// streamed with the stream's flow control (a peer that takes none of it for the stall timeout
/// has the stream reset).
async fn request(resolver: Resolver, stack: Stack, caller: Arc<Caller>, limits: Limits) {
    let head = tokio::time::timeout(limits.head_timeout, resolver.resolve_request()).await;
    let Ok(Ok((req, stream))) = head else {
        return;
    };
    let (mut send, recv) = stream.split();
    let (mut parts, ()) = req.into_parts();
    // The hops below speak HTTP/1.1 or HTTP/2, and hyper refuses to write a version it does not
    // know; the transport is counted apart.
    parts.version = http::Version::HTTP_2;
    let body = RecvBody::new(recv, &parts.headers);
    let mut req = Request::from_parts(parts, super::MeshBody(boxed(body)));
    let rsp = if quic::body::declared_length(req.headers()).is_err() {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "ERR_MALFORMED_REQUEST",
            "the request's content-length is not one decimal number",
        )
        .into_response()
    } else if req.method() == Method::CONNECT {
        // The stream would have to become a byte pipe; tunnels ride HTTP/2 connections.
        ApiError::new(
            StatusCode::NOT_IMPLEMENTED,
            "ERR_DIRECT_INVOKE",
            "tunnels are carried over HTTP/2 only",
        )
        .into_response()
    } else {
        req.extensions_mut().insert(caller);
        // As on TCP: credentials are marked sensitive (nothing prints them), and a panic below
        // answers 500 for this request only.
        for name in &SENSITIVE_HEADERS {
            if let http::header::Entry::Occupied(mut e) = req.headers_mut().entry(name) {
                e.iter_mut().for_each(|v| v.set_sensitive(true));
            }
        }
        crate::telemetry::metrics::record_mesh_request("inbound", "h3");
        match std::panic::AssertUnwindSafe(stack.oneshot(req))
            .catch_unwind()
            .await
        {
            Ok(Ok(rsp)) => rsp,
            Ok(Err(never)) => match never {},
            Err(panic) => crate::errors::panic_response(panic),
        }
    };
    let (mut parts, body) = rsp.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    quic::body::declare_length(&mut parts.headers, &body, false);
    if send
        .send_response(Response::from_parts(parts, ()))
        .await
        .is_err()
    {
        return;
    }
    if let Err(e) = quic::body::send(&mut send, body, limits.stall_timeout).await {
        tracing::debug!(error = %e, "an HTTP/3 response did not reach its end");
    }
}

/// The caller named by the connection's client certificate.
fn caller_of(conn: &quinn::Connection) -> Option<Arc<Caller>> {
    let certs = quic::peer_certificates(conn)?;
    let id = SpiffeId::from_certificate(certs.first()?).ok()?;
    Some(Arc::new(Caller {
        app_id: id.app_id().to_owned(),
        namespace: id.namespace().to_owned(),
        trust_domain: id.trust_domain().to_owned(),
    }))
}

fn closed(reason: &'static str) {
    catalogue::CONNECTIONS_CLOSED
        .counter(&[("listener", NAME.to_owned()), ("reason", reason.to_owned())])
        .increment(1);
}
