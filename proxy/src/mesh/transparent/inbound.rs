//! The transparent inbound listener: plain TCP for this host that the nat rules redirected
//! because it did not come to the mesh port, i.e. from a client outside the mesh.
//!
//! `strict` refuses every such connection. `permissive` lets it reach its original destination
//! unless the access policy's global default denies callers without an identity (the operation
//! is `/tcp/<port>`, the verb `CONNECT`), and counts it under the peer `unmeshed`. The sidecar
//! connects to the original destination address, not to loopback: an app that listens on
//! loopback only stays unreachable from other hosts, as it was without the sidecar. HTTP is
//! served and forwarded request by request, without the identity headers only the mesh port may
//! stamp; anything else is carried as bytes.

use std::convert::Infallible;

use http::{Method, Request};
use hyper::body::Incoming;

use super::forward::{From, forward};
use super::{Conn, MtlsMode, carry, is_loop};
use crate::net::detect::{Protocol, Rewind, sniff};
use crate::net::guard::Guarded;
use crate::net::serve;
use crate::net::tcp::{Direction, Meter, original_dst, refused};

/// One redirected connection from outside the mesh.
pub(super) async fn connection(conn: Conn) {
    let Conn {
        t,
        accepted:
            serve::Accepted {
                mut tcp,
                peer,
                watch,
            },
        builder,
        conns,
    } = conn;
    let dst = match (original_dst(&tcp), tcp.local_addr()) {
        (Ok(dst), Ok(local)) if !is_loop(dst, local) => dst,
        _ => {
            tracing::debug!(%peer, "refused a connection to the inbound listener itself");
            return refused(Direction::Inbound, "loop");
        }
    };
    if t.cfg.mode == MtlsMode::Strict {
        tracing::debug!(%peer, %dst, "refused plain traffic from outside the mesh (strict mode)");
        return refused(Direction::Inbound, "strict");
    }
    let operation = format!("/tcp/{}", dst.port());
    if outrider_filters::authz::check(&t.policies, &t.denials, None, &operation, &Method::CONNECT)
        .is_err()
    {
        return refused(Direction::Inbound, "policy");
    }
    let (protocol, prefix) = if t.cfg.opaque_ports.contains(&dst.port()) {
        (Protocol::Opaque, bytes::Bytes::new())
    } else {
        match sniff(&mut tcp, t.cfg.detect_timeout).await {
            Ok(Some(found)) => found,
            Ok(None) | Err(_) => return,
        }
    };
    let client = Meter::new(Direction::Inbound, "unmeshed").wrap(Rewind::new(prefix, tcp));
    match protocol {
        Protocol::Http1 | Protocol::H2 => {
            // Served here so that no identity header a client outside the mesh sends reaches
            // the app as if the mesh had stamped it.
            let svc = tower::service_fn(move |req: Request<Incoming>| {
                let t = t.clone();
                async move {
                    Ok::<_, Infallible>(forward(&t.passthrough, dst, req, From::Unmeshed).await)
                }
            });
            conns.spawn(
                Guarded::watched(watch.io(client), watch.activity()),
                svc,
                &builder,
                watch,
            );
        }
        Protocol::Tls | Protocol::Opaque => {
            let streams = t.in_streams.clone();
            streams.spawn(async move {
                // The connection keeps its slot under the listener's cap while it lives.
                let _watch = watch;
                carry(client, dst, Direction::Inbound).await;
            });
        }
    }
}
