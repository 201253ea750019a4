//! Transparent interception: an app that knows nothing of the mesh gets it anyway. The nat rules
//! `outrider init` installs send the app's outbound TCP to the outbound listener (`--outbound-port`,
//! on loopback) and other hosts' plain TCP for it to the inbound listener (`--inbound-port`).
//!
//! - **Outbound** ([`outbound`]): the original destination is read from the socket, the first
//!   bytes say what the app speaks ([`crate::net::detect`]), then HTTP requests are named by
//!   their Host or their destination address ([`name`]) and go down the same path as
//!   `/v1.0/invoke`; opaque TCP (and the app's own TLS) is tunnelled to the destination's sidecar
//!   as an HTTP/2 `CONNECT` on the mutual-TLS mesh connection; a destination outside the mesh is
//!   reached as it was (passthrough).
//! - **Inbound** ([`inbound`]): plain traffic that did not come through the mesh port reaches
//!   the app with no caller identity (`permissive`) or not at all (`strict`).

mod forward;
mod inbound;
pub(crate) mod name;
mod outbound;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::TokioExecutor;
use hyper_util::server::conn::auto::Builder;
use outrider_policy::AccessControl;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::api::ApiState;
use crate::mesh::outbound::Outbound;
use crate::net::serve::Conns;
use crate::net::tcp::{Direction, refused, splice};

pub(crate) use forward::passthrough_clients;

/// What `--intercept` and `spec.mtls.mode` configure.
#[derive(Clone, Debug)]
pub(crate) struct Interception {
    /// The outbound listener (loopback).
    pub(crate) outbound_port: u16,
    /// The inbound listener (all interfaces).
    pub(crate) inbound_port: u16,
    /// Ports whose protocol is not sniffed: the server speaks first.
    pub(crate) opaque_ports: BTreeSet<u16>,
    /// How long detection waits for a client's first bytes.
    pub(crate) detect_timeout: Duration,
    /// The DNS suffix of `app.ns.svc.<domain>` names.
    pub(crate) cluster_domain: String,
    pub(crate) mode: MtlsMode,
}

/// Whether plain traffic from outside the mesh may reach the app (`spec.mtls.mode`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum MtlsMode {
    /// It may, with no caller identity: the global access-policy default decides.
    #[default]
    Permissive,
    /// It may not.
    Strict,
}

impl MtlsMode {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            MtlsMode::Permissive => "permissive",
            MtlsMode::Strict => "strict",
        }
    }
}

/// What the metadata API and the admin page show of interception.
#[derive(Clone, Debug)]
pub(crate) struct InterceptionView {
    pub(crate) outbound_port: u16,
    pub(crate) inbound_port: u16,
    pub(crate) mode: MtlsMode,
    /// Our nat rules as the sidecar found them at start, or why it could not look.
    pub(crate) rules: String,
}

impl InterceptionView {
    /// Looks for the rules (a few short `iptables-save` runs).
    pub(crate) fn new(cfg: &Interception) -> Self {
        Self {
            outbound_port: cfg.outbound_port,
            inbound_port: cfg.inbound_port,
            mode: cfg.mode,
            rules: crate::cmd::init::rules_found(),
        }
    }

    /// One line for the admin page.
    pub(crate) fn line(&self) -> String {
        format!(
            "interception: outbound port {}, inbound port {}, mode {}, rules at start: {}",
            self.outbound_port,
            self.inbound_port,
            self.mode.as_str(),
            self.rules
        )
    }
}

/// What the transparent listeners share.
pub(crate) struct Transparent {
    pub(crate) cfg: Interception,
    pub(crate) api: Arc<ApiState>,
    pub(crate) outbound: Arc<Outbound>,
    pub(crate) policies: watch::Receiver<Arc<AccessControl>>,
    pub(crate) denials: Arc<outrider_filters::authz::Denials>,
    pub(crate) spans: Option<outrider_filters::spans::Spans>,
    pub(crate) passthrough: forward::PassthroughClients,
    /// Byte streams (tunnels, passthrough) of the app's outbound connections, and of plain
    /// inbound ones: each direction is given the grace period when its listeners stop, then cut.
    out_streams: Streams,
    in_streams: Streams,
}

impl Transparent {
    pub(crate) fn new(
        cfg: Interception,
        api: Arc<ApiState>,
        policies: watch::Receiver<Arc<AccessControl>>,
        denials: Arc<outrider_filters::authz::Denials>,
        spans: Option<outrider_filters::spans::Spans>,
    ) -> Self {
        Self {
            cfg,
            outbound: api.outbound.clone(),
            api,
            policies,
            denials,
            spans,
            passthrough: passthrough_clients(),
            out_streams: Streams::default(),
            in_streams: Streams::default(),
        }
    }

    /// Once the outbound listeners stopped: the app's open streams get `grace`, then are cut.
    pub(crate) async fn drain_outbound(&self, grace: Duration) {
        self.out_streams.drain(grace).await;
    }

    /// Once the inbound listeners stopped: the same for plain inbound streams.
    pub(crate) async fn drain_inbound(&self, grace: Duration) {
        self.in_streams.drain(grace).await;
    }
}

/// The byte streams of one listener.
#[derive(Clone, Default)]
struct Streams {
    tracker: TaskTracker,
    cut: CancellationToken,
}

impl Streams {
    /// Runs `stream` until it ends or the streams are cut.
    fn spawn<F>(&self, stream: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let cut = self.cut.clone();
        self.tracker.spawn(async move {
            tokio::select! {
                () = stream => {}
                () = cut.cancelled() => {}
            }
        });
    }

    /// Waits for the streams to end, at most `grace`, then cuts the rest.
    async fn drain(&self, grace: Duration) {
        self.tracker.close();
        if tokio::time::timeout(grace, self.tracker.wait())
            .await
            .is_err()
        {
            tracing::info!("cutting intercepted TCP streams still open after the grace period");
        }
        self.cut.cancel();
    }
}

/// Whether `dst`, the destination of a connection accepted on `local`, is the listener itself:
/// a connection made to the listener directly, or a redirect that would come back to it.
pub(crate) fn is_loop(dst: SocketAddr, local: SocketAddr) -> bool {
    dst == local
        || (dst.port() == local.port() && (dst.ip().is_loopback() || dst.ip().is_unspecified()))
}

/// Connects to `dst` as it is and carries `client`'s bytes both ways until both ends are done.
async fn carry<I>(client: I, dst: std::net::SocketAddr, direction: Direction)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    /// How long connecting to the destination may take.
    const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
    let connecting = tokio::net::TcpStream::connect(dst);
    let upstream = match tokio::time::timeout(CONNECT_TIMEOUT, connecting).await {
        Ok(Ok(tcp)) => tcp,
        Ok(Err(e)) => {
            tracing::debug!(%dst, error = %e, "connecting to the original destination failed");
            return refused(direction, "unreachable");
        }
        Err(_) => return refused(direction, "unreachable"),
    };
    let _ = upstream.set_nodelay(true);
    if let Err(e) = splice(client, upstream).await {
        tracing::debug!(%dst, error = %e, "an intercepted connection ended with an error");
    }
}

/// An accepted connection as a transparent listener hands it on: with what the listeners share,
/// and the listener's HTTP server builder and connection set.
pub(crate) struct Conn {
    t: Arc<Transparent>,
    accepted: crate::net::serve::Accepted,
    builder: Arc<Builder<TokioExecutor>>,
    conns: Arc<Conns>,
}

/// Accepts redirected connections until `stop`, each handled by `handle` on a task of its own;
/// then drains the HTTP ones for at most `grace` (byte streams are the direction's, drained once
/// all its listeners stopped).
async fn accept_loop<F, Fut>(
    mut listener: crate::net::serve::Listener,
    t: Arc<Transparent>,
    stop: CancellationToken,
    grace: Duration,
    handle: F,
) -> anyhow::Result<()>
where
    F: Fn(Conn) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let builder = Arc::new(crate::net::serve::builder(false));
    let conns = Arc::new(Conns::default());
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            () = stop.cancelled() => break,
        };
        tokio::spawn(handle(Conn {
            t: t.clone(),
            accepted,
            builder: builder.clone(),
            conns: conns.clone(),
        }));
    }
    drop(listener);
    conns.drain(grace).await;
    Ok(())
}

/// The transparent outbound listener (see [`outbound`]).
pub(crate) async fn serve_outbound(
    listener: crate::net::serve::Listener,
    t: Arc<Transparent>,
    stop: CancellationToken,
    grace: Duration,
) -> anyhow::Result<()> {
    accept_loop(listener, t, stop, grace, outbound::connection).await
}

/// The transparent inbound listener (see [`inbound`]).
pub(crate) async fn serve_inbound(
    listener: crate::net::serve::Listener,
    t: Arc<Transparent>,
    stop: CancellationToken,
    grace: Duration,
) -> anyhow::Result<()> {
    accept_loop(listener, t, stop, grace, inbound::connection).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loops() {
        let l: SocketAddr = "127.0.0.1:15001".parse().unwrap();
        assert!(is_loop(l, l));
        assert!(is_loop("127.0.0.2:15001".parse().unwrap(), l));
        assert!(!is_loop("10.0.0.2:15001".parse().unwrap(), l));
        assert!(!is_loop("127.0.0.1:8080".parse().unwrap(), l));
        let any: SocketAddr = "10.0.0.2:15006".parse().unwrap();
        assert!(is_loop(any, any));
        assert!(!is_loop("10.0.0.2:80".parse().unwrap(), any));
    }
}
