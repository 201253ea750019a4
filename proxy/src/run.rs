//! `outrider run`: assembles the sidecar from validated settings, runs it, and shuts it down in
//! order.
//!
//! Start, one named phase each, in this order: identity → components → bind every listener (a
//! taken port fails here, before anything serves) → resolver, registered in the local registry
//! or announced over mDNS → wire the API, inbound and admin services → serve → outbound ready →
//! app child (if any) → app readiness, then actor hosting and subscriptions. [`build`] runs them and returns the
//! [`Bound`] sidecar; [`Bound::run`] serves until told to stop and then stops in the order
//! `shutdown` describes.

pub(crate) mod child;
mod engines;
mod listen;
mod shutdown;
mod wire;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Context as _;
use metrics_exporter_prometheus::PrometheusHandle;
use outrider_filters::spans::Spans;
use outrider_policy::Caller;
use tokio::signal::unix::{Signal as Signals, SignalKind, signal};
use tokio_util::sync::CancellationToken;

use crate::api::Health;
use crate::config::Settings;
use crate::mesh::identity;
use crate::to_app::health;
use crate::to_app::subscriptions::{self, Subscriber};
use engines::Engines;
use listen::{Listeners, Sockets};
use wire::{Discovery, Wired, export_spans};

pub(crate) use shutdown::Running;

/// How often the app's port is probed until it answers.
const APP_PROBE_INTERVAL: Duration = Duration::from_millis(250);

/// A sidecar whose listeners are bound and serving; [`Bound::run`] waits for the stop and
/// carries it out.
pub struct Bound {
    /// The Dapr HTTP API's address.
    pub api: SocketAddr,
    /// The Dapr gRPC API's address.
    pub grpc: SocketAddr,
    /// The mesh port's address.
    pub mesh: SocketAddr,
    /// The admin listener's address (metrics, health).
    pub admin: SocketAddr,
    running: Running,
}

impl Bound {
    /// Serves until `stop` resolves, `POST /v1.0/shutdown` is called or the app child exits;
    /// then stops in order and returns the exit code (the child's, or 0).
    pub async fn run(self, stop: impl Future<Output = ()>) -> anyhow::Result<i32> {
        Ok(self.running.run(stop).await?.0)
    }

    /// As [`Bound::run`], also saying whether the app exited by itself (before any stop).
    pub(crate) async fn run_reporting(
        self,
        stop: impl Future<Output = ()>,
    ) -> anyhow::Result<(i32, bool)> {
        self.running.run(stop).await
    }
}

/// `outrider run` from the command line: SIGTERM and SIGINT stop it.
pub(crate) async fn run(s: Settings, metrics: PrometheusHandle) -> anyhow::Result<i32> {
    // Before anything reports ready: a SIGTERM that arrives early must start the orderly stop,
    // not kill the process with the default action.
    let mut sigterm = signal(SignalKind::terminate())?;
    let mut sigint = signal(SignalKind::interrupt())?;
    let bound = build(s, metrics).await?;
    bound.run(stopped_by(&mut sigterm, &mut sigint)).await
}

async fn stopped_by(sigterm: &mut Signals, sigint: &mut Signals) {
    tokio::select! {
        _ = sigterm.recv() => tracing::info!("SIGTERM received"),
        _ = sigint.recv() => tracing::info!("SIGINT received"),
    }
}

/// Runs the start phases: when it returns, every listener serves.
pub(crate) async fn build(s: Settings, metrics: PrometheusHandle) -> anyhow::Result<Bound> {
    // Found while the configuration was read, before logging started.
    for w in &s.warnings {
        tracing::warn!(at = %w.at, "{}", w.message);
    }
    let creds = identity::start(&s).await.context("workload identity")?;
    let engines = Engines::open(&s).await?;
    let sockets = Sockets::bind(&s).await?;
    let mesh_port = sockets.mesh.local_addr()?.port();
    let sockets_transports = sockets.mesh_transports();
    let ports = sockets.ports(s.app_port);
    let discovery = Discovery::start(&s, mesh_port, sockets_transports, ports)?;
    let spans = export_spans(&s)?;
    let wired = Wired::new(&s, engines, &discovery, &creds, spans.0.clone())?;
    let listeners = Listeners::serve(&s, sockets, &wired, creds, metrics)?;
    wired.health.outbound_ready.store(true, Ordering::Release);
    let (api, grpc, admin) = (listeners.api_addr, listeners.grpc_addr, s.listen.admin);
    tracing::info!(
        app_id = %s.app_id, namespace = %s.namespace, api = %format!("http://{api}"),
        grpc = %grpc, mesh_port, mesh_transports = sockets_transports.as_str(), admin = %admin,
        "Outrider is serving the Dapr HTTP API on http://{api} and the gRPC API on {grpc}"
    );
    let child = match s.command.as_slice() {
        [] => None,
        argv => Some(
            child::spawn(
                argv,
                &child::Told {
                    api_port: api.port(),
                    grpc_port: grpc.port(),
                    app_port: s.app_port,
                    app_id: &s.app_id,
                },
                &s.child,
            )
            .with_context(|| format!("starting {:?}", argv[0]))?,
        ),
    };
    let subscriber = start_subscriptions(&s, &wired, discovery.registration.clone(), spans.0);
    Ok(Bound {
        api,
        grpc,
        mesh: SocketAddr::new(s.listen.mesh.ip(), mesh_port),
        admin: listeners.admin_addr,
        running: Running {
            grace: s.grace,
            health: wired.health,
            shutdown: wired.shutdown,
            discovery,
            listeners,
            subscriber,
            actors: wired.actors.clone(),
            child,
            span_export: spans.1,
            block: s
                .daprd
                .block_shutdown
                .map(|d| (d, wired.app_health.clone())),
            _policy_watch: wired.policy_watch,
        },
    })
}

/// The deliverer of subscriptions and input bindings to the app, when there is an app.
fn subscriber(s: &Settings, wired: &Wired, spans: Option<Spans>) -> Option<Subscriber> {
    wired.app.clone().map(|app| Subscriber {
        pubsubs: Arc::new(wired.pubsubs.clone()),
        app,
        // Deliveries come from this sidecar on the app's own behalf.
        me: Caller {
            app_id: s.app_id.clone(),
            namespace: s.namespace.clone(),
            trust_domain: s.trust_domain.clone(),
        },
        metrics: wired.pubsub_metrics.clone(),
        listed: wired.listed.clone(),
        live: Arc::default(),
        stop: CancellationToken::new(),
        in_flight: tokio_util::task::TaskTracker::new(),
        resiliency: Arc::new(s.resiliency.clone()),
        spans,
        prepared: Arc::default(),
        epoch: Arc::default(),
        paused: Arc::default(),
        held: Arc::default(),
    })
}

/// Marks the app ready once it answers, then starts the subscriptions it asks for, the
/// declared ones and the input bindings it takes: deliveries need someone to deliver to.
fn start_subscriptions(
    s: &Settings,
    wired: &Wired,
    registered: wire::Registered,
    spans: Option<Spans>,
) -> Option<Subscriber> {
    let subscriber = subscriber(s, wired, spans);
    let (addr, port, health) = (
        s.app_channel_address.clone(),
        s.app_port,
        wired.health.clone(),
    );
    let declared = s.subscriptions.clone();
    let bindings = wired.api.bindings.clone();
    let subscribe = subscriber.clone();
    let (app_health, skip_subscribe, skip_config, grace) = (
        wired.app_health.clone(),
        s.daprd.skip_subscribe,
        s.daprd.skip_config,
        s.grace,
    );
    let (app_id, stop) = (s.app_id.clone(), wired.shutdown.clone());
    let actors = wired.actors.clone();
    // Hosting may start before the app is healthy: an app may open its actor event stream at
    // once.
    if let Some(subscriber) = &subscribe {
        let link = crate::to_app::actors::hosting::AppLink {
            channel: subscriber.app.clone(),
            me: subscriber.me.clone(),
            max_body: s.max_body_size,
            announce: Box::new(move |types| registered.announce_actors(types)),
        };
        let _ = actors.app.set(link);
    }
    tokio::spawn(async move {
        // Ready once the app answers (at once without one).
        probe_app(addr, port, health).await;
        let Some(subscriber) = subscribe else {
            actors.ready.store(true, Ordering::Release);
            return;
        };
        // With health checks, nothing is asked of the app before it passes one.
        tokio::spawn(health::probe(
            app_health.clone(),
            subscriber.app.clone(),
            app_id,
            stop,
        ));
        let mut healthy = app_health.watch();
        if healthy.wait_for(|h| *h).await.is_err() {
            return;
        }
        // Actors alongside the subscriptions: neither waits for the other.
        tokio::spawn(async move {
            crate::to_app::actors::hosting::start(&actors, !skip_config).await;
            actors.ready.store(true, Ordering::Release);
        });
        let asked = if skip_subscribe {
            Vec::new()
        } else {
            subscriptions::fetch(&subscriber.app, &subscriber.me).await
        };
        subscriber
            .start(subscriptions::merge(asked, &declared))
            .await;
        subscriber.start_bindings(&bindings).await;
        subscriber.follow(healthy, grace).await;
    });
    subscriber
}

/// Marks the app ready once its port accepts connections (immediately if there is no app port).
async fn probe_app(address: String, port: Option<u16>, health: Arc<Health>) {
    let Some(port) = port else {
        health.app_ready.store(true, Ordering::Release);
        return;
    };
    let mut logged = false;
    loop {
        let dial = tokio::net::TcpStream::connect((address.as_str(), port));
        if let Ok(Ok(_)) = tokio::time::timeout(Duration::from_millis(500), dial).await {
            health.app_ready.store(true, Ordering::Release);
            tracing::info!(port, "the app is reachable");
            return;
        }
        if !logged {
            tracing::info!(port, "waiting for the app to listen");
            logged = true;
        }
        tokio::time::sleep(APP_PROBE_INTERVAL).await;
    }
}
