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
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{Method, Request};
use hyper::body::Incoming;
use hyper_util::rt::TokioExecutor;
use hyper_util::server::conn::auto::Builder;
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use super::forward::{From, forward};
use super::{MtlsMode, Transparent, is_loop};
use crate::net::detect::{Protocol, Rewind, sniff};
use crate::net::guard::Guarded;
use crate::net::serve::{self, Conns, conn::Watch};
use crate::net::tcp::{Direction, Meter, original_dst, refused, splice};

/// How long connecting to the original destination may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Accepts redirected connections until `stop`, then drains HTTP ones for at most `grace` (byte
/// streams are the direction's, drained once all its listeners stopped).
pub(crate) async fn serve(
    mut listener: serve::Listener,
    t: Arc<Transparent>,
    stop: CancellationToken,
    grace: Duration,
) -> anyhow::Result<()> {
    let builder = Arc::new(serve::builder(false, listener.limits()));
    let conns = Arc::new(Conns::default());
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            () = stop.cancelled() => break,
        };
        let (t, builder, conns) = (t.clone(), builder.clone(), conns.clone());
        tokio::spawn(async move {
            let serve::Accepted { tcp, peer, watch } = accepted;
            connection(t, tcp, peer, watch, &builder, &conns).await;
        });
    }
    drop(listener);
    conns.drain(grace).await;
    Ok(())
}

async fn connection(
    t: Arc<Transparent>,
    mut tcp: TcpStream,
    peer: SocketAddr,
    watch: Watch,
    builder: &Builder<TokioExecutor>,
    conns: &Conns,
) {
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
    if outrider_filters::authz::check(&t.policies, None, &operation, &Method::CONNECT).is_err() {
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
            conns.spawn(Guarded::new(watch.io(client)), svc, builder, watch);
        }
        Protocol::Tls | Protocol::Opaque => {
            let streams = t.in_streams.clone();
            streams.spawn(async move {
                // The connection keeps its slot under the listener's cap while it lives.
                let _watch = watch;
                let app = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(dst)).await {
                    Ok(Ok(app)) => app,
                    Ok(Err(e)) => {
                        tracing::debug!(%dst, error = %e, "the original destination refused");
                        return refused(Direction::Inbound, "unreachable");
                    }
                    Err(_) => return refused(Direction::Inbound, "unreachable"),
                };
                let _ = app.set_nodelay(true);
                if let Err(e) = splice(client, app).await {
                    tracing::debug!(%peer, %dst, error = %e, "plain inbound connection ended with an error");
                }
            });
        }
    }
}
