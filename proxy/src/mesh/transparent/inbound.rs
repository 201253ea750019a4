//! The transparent inbound listener: plain TCP for this host that the nat rules redirected
//! because it did not come to the mesh port, i.e. from a client outside the mesh.
//!
//! `strict` refuses every such connection. `permissive` lets it reach its original destination
//! unless the access policy's global default denies callers without an identity (the operation
//! is `/tcp/<port>`, the verb `CONNECT`), and counts it under the peer `unmeshed`. The sidecar
//! connects to the original destination address, not to loopback: an app that listens on
//! loopback only stays unreachable from other hosts, as it was without the sidecar.

use std::sync::Arc;
use std::time::Duration;

use http::Method;
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use super::{MtlsMode, Transparent, is_loop};
use crate::net::serve;
use crate::net::tcp::{Direction, Meter, original_dst, refused, splice};

/// How long connecting to the original destination may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Accepts redirected connections until `stop`, then gives open ones at most `grace`.
pub(crate) async fn serve(
    mut listener: serve::Listener,
    t: Arc<Transparent>,
    stop: CancellationToken,
    grace: Duration,
) -> anyhow::Result<()> {
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            () = stop.cancelled() => break,
        };
        let t2 = t.clone();
        t.streams.spawn(async move {
            let serve::Accepted { tcp, peer, watch } = accepted;
            // The connection keeps its slot under the listener's cap while it lives.
            let _watch = watch;
            connection(&t2, tcp, peer).await;
        });
    }
    drop(listener);
    t.streams.drain(grace).await;
    Ok(())
}

async fn connection(t: &Transparent, tcp: TcpStream, peer: std::net::SocketAddr) {
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
    let app = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(dst)).await {
        Ok(Ok(app)) => app,
        Ok(Err(e)) => {
            tracing::debug!(%dst, error = %e, "the original destination refused");
            return refused(Direction::Inbound, "unreachable");
        }
        Err(_) => return refused(Direction::Inbound, "unreachable"),
    };
    let _ = app.set_nodelay(true);
    let client = Meter::new(Direction::Inbound, "unmeshed").wrap(tcp);
    if let Err(e) = splice(client, app).await {
        tracing::debug!(%peer, %dst, error = %e, "plain inbound connection ended with an error");
    }
}
