//! Start phases: bind the four listening sockets before anything serves (a taken port fails
//! here), then start their serve loops; [`Serving`] stops one loop at shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use http::Request;
use hyper::body::Incoming;
use metrics_exporter_prometheus::PrometheusHandle;
use outrider_certs::Credentials;
use outrider_discovery::local::Ports;
use outrider_discovery::{ResolverConfig, Transports};
use outrider_filters::access_log::AccessLogLayer;
use outrider_filters::metrics::{MetricsLayer, Side};
use outrider_filters::trace::TraceLayer;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tower::{ServiceBuilder, ServiceExt as _};

use super::wire::Wired;
use crate::admin::{self, Admin};
use crate::api::pipeline::Peer;
use crate::api::{ApiService, GrpcApiService, WithCors};
use crate::config::Settings;
use crate::mesh::outbound::transport::MeshTransport;
use crate::mesh::{inbound, transparent};
use crate::net::serve::{self, Limits};

/// The four listening sockets, and the transparent ones with `--intercept`, bound before
/// anything serves.
pub(super) struct Sockets {
    api: TcpListener,
    grpc: TcpListener,
    /// Both APIs on the other `--dapr-listen-addresses`.
    api_more: Vec<TcpListener>,
    grpc_more: Vec<TcpListener>,
    /// `--dapr-public-port`.
    public: Option<TcpListener>,
    pub(super) mesh: TcpListener,
    /// The mesh port's number on UDP, for HTTP/3 over QUIC; `None` with `--mesh-transport h2`
    /// (or, in `auto`, when the port is taken on UDP: then the sidecar offers HTTP/2 only).
    mesh_udp: Option<std::net::UdpSocket>,
    admin: TcpListener,
    /// Transparent outbound (loopback, IPv4 and IPv6 when the host has it).
    intercept_out: Vec<TcpListener>,
    /// Transparent inbound (every interface, IPv4 and IPv6 when the host has it).
    intercept_in: Vec<TcpListener>,
}

impl Sockets {
    pub(super) async fn bind(s: &Settings) -> anyhow::Result<Self> {
        let api = bind(s.listen.api, "--dapr-http-port").await?;
        // Several sidecars on one host cannot all have the default. An app started as the child
        // is told the real port (DAPR_GRPC_PORT); without one, an SDK would reach whichever
        // sidecar holds the default, so the start fails instead, as daprd's does.
        let grpc_may_move = !s.listen.grpc_explicit && !s.command.is_empty();
        let grpc = bind_or_free(
            s.listen.grpc,
            ("--dapr-grpc-port", "gRPC API port"),
            grpc_may_move,
        )
        .await?;
        // The default port lies in Linux's ephemeral range, so any client connection may hold it
        // for a while. The local and mDNS resolvers carry the real port, so any free one does
        // when none was asked for; with DNS or static addresses peers expect this very port.
        let mesh_may_move = !s.listen.mesh_explicit
            && matches!(s.resolver, ResolverConfig::Local | ResolverConfig::Mdns(_));
        let mesh = bind_or_free(s.listen.mesh, ("--mesh-port", "mesh port"), mesh_may_move).await?;
        let mesh_udp = bind_udp(s, mesh.local_addr()?)?;
        let admin = bind(s.listen.admin, "--metrics-port").await?;
        let (mut api_more, mut grpc_more) = (Vec::new(), Vec::new());
        let (api_port, grpc_port) = (api.local_addr()?.port(), grpc.local_addr()?.port());
        for ip in &s.listen.api_more {
            let flag = "--dapr-listen-addresses";
            api_more.push(bind(SocketAddr::new(*ip, api_port), flag).await?);
            grpc_more.push(bind(SocketAddr::new(*ip, grpc_port), flag).await?);
        }
        let public = match s.listen.public {
            Some(a) => Some(bind(a, "--dapr-public-port").await?),
            None => None,
        };
        let (mut intercept_out, mut intercept_in) = (Vec::new(), Vec::new());
        if let Some(i) = &s.interception {
            let (out, inb) = (i.outbound_port, i.inbound_port);
            intercept_out.push(bind(([127, 0, 0, 1], out).into(), "--outbound-port").await?);
            intercept_in.push(bind(([0, 0, 0, 0], inb).into(), "--inbound-port").await?);
            // IPv6 where the host has it: the nat rules redirect to ::1 and to the address the
            // connection came to.
            if let Ok(l) = bind_v6_only(SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, out))) {
                intercept_out.push(l);
            }
            if let Ok(l) = bind_v6_only(SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, inb))) {
                intercept_in.push(l);
            }
        }
        Ok(Self {
            api,
            grpc,
            api_more,
            grpc_more,
            public,
            mesh,
            mesh_udp,
            admin,
            intercept_out,
            intercept_in,
        })
    }

    /// The ports other than the mesh port, as the local registry lists them.
    pub(super) fn ports(&self, app: Option<u16>) -> Ports {
        let port = |l: &TcpListener| l.local_addr().ok().map(|a| a.port());
        Ports {
            http: port(&self.api),
            grpc: port(&self.grpc),
            admin: port(&self.admin),
            app,
        }
    }

    /// The transports the mesh port offers, as discovery advertises them.
    pub(super) fn mesh_transports(&self) -> Transports {
        if self.mesh_udp.is_some() {
            Transports::H2_H3
        } else {
            Transports::H2
        }
    }
}

/// The mesh port's number on UDP, unless the sidecar offers HTTP/2 only.
fn bind_udp(s: &Settings, tcp: SocketAddr) -> anyhow::Result<Option<std::net::UdpSocket>> {
    match (s.mesh_transport, std::net::UdpSocket::bind(tcp)) {
        (MeshTransport::H2, _) => Ok(None),
        (_, Ok(udp)) => {
            udp.set_nonblocking(true)?;
            Ok(Some(udp))
        }
        (MeshTransport::H3, Err(e)) => {
            Err(e).with_context(|| format!("binding {tcp} on UDP (--mesh-port, for HTTP/3)"))
        }
        (MeshTransport::Auto, Err(e)) => {
            tracing::warn!(
                error = %e,
                port = tcp.port(),
                "the mesh port's number is taken on UDP: this sidecar offers HTTP/2 only"
            );
            Ok(None)
        }
    }
}

/// An IPv6 listener that takes no IPv4 connections (those have their own).
fn bind_v6_only(addr: SocketAddr) -> std::io::Result<TcpListener> {
    use socket2::{Domain, Socket, Type};
    let s = Socket::new(Domain::IPV6, Type::STREAM, None)?;
    s.set_only_v6(true)?;
    s.set_reuse_address(true)?;
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    s.listen(1024)?;
    TcpListener::from_std(s.into())
}

/// Binds `addr`, or any free port of its address when `addr` is taken and `may_move`; `flag`
/// names the port's flag and what it is.
async fn bind_or_free(
    addr: SocketAddr,
    (flag, what): (&str, &str),
    may_move: bool,
) -> anyhow::Result<TcpListener> {
    match bind(addr, flag).await {
        Ok(l) => Ok(l),
        Err(e) if may_move => {
            tracing::warn!(error = %e, "the default {what} is taken; using a free port instead");
            bind(SocketAddr::new(addr.ip(), 0), flag).await
        }
        Err(e) => Err(e),
    }
}

async fn bind(addr: SocketAddr, flag: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding {addr} ({flag})"))
}

/// A listener's serve loop and the token that stops it.
pub(crate) struct Serving {
    stop: CancellationToken,
    task: JoinHandle<anyhow::Result<()>>,
}

impl Serving {
    /// Runs `serving` (a loop that ends once `stop` is cancelled and its connections drained).
    fn spawn<F>(stop: CancellationToken, serving: F) -> Self
    where
        F: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        let task = tokio::spawn(serving);
        Self { stop, task }
    }

    /// Stops accepting and waits for the loop's drain.
    pub(super) async fn stop(self) -> anyhow::Result<()> {
        self.stop.cancel();
        self.task
            .await
            .map_err(|e| anyhow::anyhow!("the listener panicked: {e}"))?
    }
}

/// The four serve loops.
pub(crate) struct Listeners {
    pub(super) api_addr: SocketAddr,
    pub(super) grpc_addr: SocketAddr,
    pub(super) admin_addr: SocketAddr,
    /// The HTTP API on each listen address, and the public health port.
    pub(super) api: Vec<Serving>,
    /// The gRPC API on each listen address.
    pub(super) grpc: Vec<Serving>,
    pub(super) mesh: Serving,
    pub(super) admin: Serving,
    /// Transparent inbound, stopped with the mesh listener.
    pub(super) intercept_in: Vec<Serving>,
    /// Transparent outbound, stopped with the APIs (the app may call out while it stops).
    pub(super) intercept_out: Vec<Serving>,
    /// What the transparent listeners share, for the drain of their byte streams.
    pub(super) transparent: Option<Arc<transparent::Transparent>>,
}

impl Listeners {
    pub(super) fn serve(
        s: &Settings,
        sockets: Sockets,
        wired: &Wired,
        creds: Credentials,
        metrics: PrometheusHandle,
    ) -> anyhow::Result<Self> {
        let (api_addr, admin_addr) = (sockets.api.local_addr()?, sockets.admin.local_addr()?);
        let mesh_port = sockets.mesh.local_addr()?.port();
        let offers = match sockets.mesh_transports().h3 {
            true => vec!["h2", "h3"],
            false => vec!["h2"],
        };
        let grpc_addr = sockets.grpc.local_addr()?;
        let api = serve_api(s, sockets.api, sockets.api_more, sockets.public, wired);
        let mut grpc = vec![serve_grpc(s, sockets.grpc, wired)];
        grpc.extend(
            sockets
                .grpc_more
                .into_iter()
                .map(|l| serve_grpc(s, l, wired)),
        );

        let mesh = serve_mesh(s, sockets.mesh, sockets.mesh_udp, wired, &creds)?;

        let admin = serve_admin(s, sockets.admin, wired, creds, metrics, (offers, mesh_port));
        let (mut intercept_in, mut intercept_out) = (Vec::new(), Vec::new());
        if let Some(t) = &wired.transparent {
            // Each intercepted connection holds two descriptors (three through a tunnel): the
            // four transparent listeners together get what one API listener may take, so no
            // flood of plain clients can take the descriptors the API and the mesh need.
            let limits = Limits {
                max_connections: (s.limits.api.max_connections / 8).max(16),
                ..s.limits.api
            };
            for socket in sockets.intercept_out {
                let l = serve::Listener::new(socket, "intercept-outbound", limits);
                let stop = CancellationToken::new();
                let task = transparent::serve_outbound(l, t.clone(), stop.clone(), s.grace);
                intercept_out.push(Serving::spawn(stop, task));
            }
            for socket in sockets.intercept_in {
                let l = serve::Listener::new(socket, "intercept-inbound", limits);
                let stop = CancellationToken::new();
                let task = transparent::serve_inbound(l, t.clone(), stop.clone(), s.grace);
                intercept_in.push(Serving::spawn(stop, task));
            }
        }
        Ok(Self {
            api_addr,
            grpc_addr,
            admin_addr,
            api,
            grpc,
            mesh,
            admin,
            intercept_in,
            intercept_out,
            transparent: wired.transparent.clone(),
        })
    }
}

/// The mesh port: HTTP/2 over TLS on TCP and, with `udp`, HTTP/3 over QUIC on the same number,
/// both feeding one inbound stack, and stopped together.
fn serve_mesh(
    s: &Settings,
    tcp: TcpListener,
    udp: Option<std::net::UdpSocket>,
    wired: &Wired,
    creds: &Credentials,
) -> anyhow::Result<Serving> {
    let listener = serve::Listener::new(tcp, "mesh", s.limits.mesh);
    let slots = listener.slots();
    let stop = CancellationToken::new();
    // Built once: every connection, over either transport, feeds the same stack.
    let stack = inbound::stack(wired.inbound.clone());
    let tcp = inbound::serve(
        listener,
        creds.clone(),
        stack.clone(),
        stop.clone(),
        s.grace,
    );
    let h3 = match udp {
        Some(udp) => {
            // Changes are followed from before the first configuration is built.
            let bundles = creds.bundle_changes();
            let endpoint = crate::net::quic::server(udp, creds.server_config()?)
                .context("starting the QUIC endpoint of the mesh port")?;
            tokio::spawn(follow_bundle(
                endpoint.clone(),
                creds.clone(),
                bundles,
                stop.clone(),
            ));
            let (limits, grace) = ((s.limits.mesh, slots), s.grace);
            Some(inbound::h3::serve(
                endpoint,
                stack,
                limits,
                stop.clone(),
                grace,
            ))
        }
        None => None,
    };
    Ok(Serving::spawn(stop, async move {
        match h3 {
            Some(h3) => {
                let (tcp, h3) = tokio::join!(tcp, h3);
                tcp.and(h3)
            }
            None => tcp.await,
        }
    }))
}

/// The Dapr HTTP API on each of its sockets, and on `--dapr-public-port` its health endpoints
/// only: a span per request (app id, method, route) and the access log when enabled, a trace
/// continued or started for every call (invocations it forwards included), metrics labelled
/// with route templates (never raw paths), and CORS when `--allowed-origins` asks for it.
fn serve_api(
    s: &Settings,
    first: TcpListener,
    more: Vec<TcpListener>,
    public: Option<TcpListener>,
    wired: &Wired,
) -> Vec<Serving> {
    let api_svc = ServiceBuilder::new()
        .layer(AccessLogLayer::new(&s.app_id, s.access_log))
        .layer(TraceLayer::new(wired.inbound.spans.clone()))
        .layer(MetricsLayer::new(&s.app_id, Side::Server))
        .service(WithCors::new(
            ApiService::new(wired.api.clone()),
            &s.daprd.allowed_origins,
        ));
    let mut serving: Vec<Serving> = std::iter::once(first)
        .chain(more)
        .map(|socket| {
            let svc = api_svc.clone();
            let l = serve::Listener::new(socket, "api", s.limits.api);
            let stop = CancellationToken::new();
            // The client's address, for middleware that tells clients apart; without any, no
            // request pays for an extension it would not use.
            let needs_peer = !s.http_pipeline.is_empty();
            let with_peer = move |peer: SocketAddr| {
                svc.clone().map_request(move |mut req: Request<Incoming>| {
                    if needs_peer {
                        req.extensions_mut().insert(Peer(peer.ip()));
                    }
                    req
                })
            };
            let task = serve::serve(l, with_peer, stop.clone(), s.grace);
            Serving::spawn(stop, async move {
                task.await;
                Ok(())
            })
        })
        .collect();
    if let Some(socket) = public {
        let svc = ServiceBuilder::new()
            .layer(TraceLayer::new(wired.inbound.spans.clone()))
            .layer(MetricsLayer::new(&s.app_id, Side::Server))
            .service(crate::api::PublicService::new(wired.api.clone()));
        let l = serve::Listener::new(socket, "public", s.limits.admin);
        let stop = CancellationToken::new();
        let task = serve::serve(l, move |_| svc.clone(), stop.clone(), s.grace);
        serving.push(Serving::spawn(stop, async move {
            task.await;
            Ok(())
        }));
    }
    serving
}

/// The Dapr gRPC API: the same span and access log as the HTTP API; its own metrics, under
/// gRPC's names.
fn serve_grpc(s: &Settings, socket: TcpListener, wired: &Wired) -> Serving {
    let svc = ServiceBuilder::new()
        .layer(AccessLogLayer::new(&s.app_id, s.access_log))
        .layer(TraceLayer::new(wired.inbound.spans.clone()))
        .service(GrpcApiService::new(wired.api.clone()));
    let l = serve::Listener::new(socket, "grpc", s.limits.grpc);
    let stop = CancellationToken::new();
    let task = serve::serve(l, move |_| svc.clone(), stop.clone(), s.grace);
    Serving::spawn(stop, async move {
        task.await;
        Ok(())
    })
}

/// The admin listener, and the upkeep of the metrics it renders. It outlives the others so
/// that readiness can be watched during the drain.
fn serve_admin(
    s: &Settings,
    socket: TcpListener,
    wired: &Wired,
    creds: Credentials,
    metrics: PrometheusHandle,
    (offers, mesh_port): (Vec<&'static str>, u16),
) -> Serving {
    let stop = CancellationToken::new();
    let history = Arc::new(admin::History::new(&s.app_id));
    let admin_state = Arc::new(Admin {
        metrics: metrics.clone(),
        health: wired.health.clone(),
        creds,
        api: wired.api.clone(),
        denials: wired.inbound.denials.clone(),
        history: history.clone(),
        status_remote: s.admin_status_remote,
        metrics_enabled: s.daprd.enable_metrics,
        interception: wired.interception.as_ref().map(|i| i.line()),
        offers,
        mesh_port,
        started: (std::time::Instant::now(), std::time::SystemTime::now()),
        streams: Arc::new(tokio::sync::Semaphore::new(admin::MAX_STREAMS)),
        stop: stop.clone(),
        overview: std::sync::Mutex::new(None),
    });
    let admin_l = serve::Listener::new(socket, "admin", s.limits.admin);
    let admin_svc = move |peer| {
        let admin_state = admin_state.clone();
        tower::service_fn(move |req: Request<Incoming>| {
            admin::handle(admin_state.clone(), peer, req)
        })
    };
    tokio::spawn(admin::keep_up(metrics, history, stop.clone()));
    let task = serve::serve(admin_l, admin_svc, stop.clone(), Duration::from_secs(1));
    Serving::spawn(stop, async move {
        task.await;
        Ok(())
    })
}

/// Gives the QUIC endpoint a new server configuration whenever the trust bundle changes, until
/// `stop` (TCP connections get theirs at accept: `inbound::serve`).
async fn follow_bundle(
    endpoint: quinn::Endpoint,
    creds: Credentials,
    mut bundles: tokio::sync::watch::Receiver<u64>,
    stop: CancellationToken,
) {
    loop {
        tokio::select! {
            changed = bundles.changed() => if changed.is_err() { return },
            () = stop.cancelled() => return,
        }
        match creds
            .server_config()
            .map_err(anyhow::Error::from)
            .and_then(crate::net::quic::server_config)
        {
            Ok(cfg) => endpoint.set_server_config(Some(cfg)),
            Err(e) => {
                tracing::error!(error = %e, "the new trust bundle is not in force on the QUIC mesh port");
            }
        }
    }
}
