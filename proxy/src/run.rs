//! `outrider run`: assembles the sidecar from validated settings, runs it, and shuts it down in
//! order.
//!
//! Start, one named phase each, in this order: identity → components → bind every listener (a
//! taken port fails here, before anything serves) → resolver, registered in the local registry
//! or announced over mDNS → wire the API, inbound and admin services → serve → outbound ready →
//! app child (if any) → app readiness, then subscriptions. [`build`] runs them and returns the
//! [`Bound`] sidecar; [`Bound::run`] serves until told to stop and then stops in the order
//! `shutdown` describes.

pub(crate) mod child;
mod shutdown;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Context as _;
use http::Request;
use hyper::body::Incoming;
use metrics_exporter_prometheus::PrometheusHandle;
use outrider_blocks::pubsub::{self, PubSubComponent};
use outrider_blocks::secrets::{self, SecretStoreComponent};
use outrider_blocks::state::{self, OpenContext, StateComponent};
use outrider_blocks::{Component, ComponentError};
use outrider_certs::Credentials;
use outrider_discovery::dns::DnsResolver;
use outrider_discovery::local::{Entry, LocalResolver, Registration};
use outrider_discovery::mdns::{Announcement, MdnsResolver};
use outrider_discovery::static_::StaticResolver;
use outrider_discovery::{Resolve, ResolverConfig};
use outrider_filters::access_log::AccessLogLayer;
use outrider_filters::metrics::{MetricsLayer, Side};
use outrider_filters::spans::Spans;
use outrider_filters::trace::TraceLayer;
use outrider_policy::Caller;
use tokio::net::TcpListener;
use tokio::signal::unix::{Signal as Signals, SignalKind, signal};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tower::ServiceBuilder;

use crate::admin::{self, Admin};
use crate::api::{ApiService, ApiState, Health};
use crate::components::metrics::PubSubMetrics;
use crate::config::Settings;
use crate::mesh::identity;
use crate::mesh::inbound::{self, Inbound};
use crate::mesh::outbound::Outbound;
use crate::net::serve;
use crate::telemetry::Exporting;
use crate::to_app::channel::AppChannel;
use crate::to_app::subscriptions::{self, Listed, Subscriber};

pub(crate) use shutdown::Running;

/// How often the app's port is probed until it answers.
const APP_PROBE_INTERVAL: Duration = Duration::from_millis(250);

/// A sidecar whose listeners are bound and serving; [`Bound::run`] waits for the stop and
/// carries it out.
pub struct Bound {
    /// The Dapr HTTP API's address.
    pub api: SocketAddr,
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
    let creds = identity::start(&s).context("workload identity")?;
    let engines = Engines::open(&s).await?;
    let sockets = Sockets::bind(&s).await?;
    let mesh_port = sockets.mesh.local_addr()?.port();
    let discovery = Discovery::start(&s, mesh_port)?;
    let spans = export_spans(&s)?;
    let wired = Wired::new(&s, engines, &discovery, &creds, spans.0.clone())?;
    let listeners = Listeners::serve(&s, sockets, &wired, creds, metrics)?;
    wired.health.outbound_ready.store(true, Ordering::Release);
    let (api, admin) = (listeners.api_addr, s.listen.admin);
    tracing::info!(
        app_id = %s.app_id, namespace = %s.namespace, api = %format!("http://{api}"), mesh_port,
        admin = %admin, "Outrider is serving the Dapr HTTP API on http://{api}"
    );
    let child = match s.command.as_slice() {
        [] => None,
        argv => Some(
            child::spawn(argv, api.port(), s.app_port, &s.app_id)
                .with_context(|| format!("starting {:?}", argv[0]))?,
        ),
    };
    let subscriber = start_subscriptions(&s, &wired, spans.0);
    Ok(Bound {
        api,
        mesh: SocketAddr::new(s.listen.mesh.ip(), mesh_port),
        admin: listeners.admin_addr,
        running: Running {
            grace: s.grace,
            health: wired.health,
            shutdown: wired.shutdown,
            discovery,
            listeners,
            subscriber,
            child,
            span_export: spans.1,
            _policy_watch: wired.policy_watch,
        },
    })
}

/// The open components: secret stores, state stores and pub/subs, by name.
struct Engines {
    secret_stores: BTreeMap<String, SecretStoreComponent>,
    stores: BTreeMap<String, StateComponent>,
    pubsubs: BTreeMap<String, PubSubComponent>,
}

impl Engines {
    /// Opens every component, each wrapped in its resiliency policy; all failures are reported
    /// together.
    async fn open(s: &Settings) -> anyhow::Result<Self> {
        // Secret stores first: other components' `secretKeyRef`s are read from them. A relative
        // `secretsFile` is read from the directory the sidecar was started in, as daprd does.
        let cwd = std::env::current_dir().context("reading the current directory")?;
        let secret_stores = open_all(s, "secretstores.", async |c| secrets::open(c, &cwd)).await?;
        let ctx = OpenContext {
            app_id: s.app_id.clone(),
            namespace: s.namespace.clone(),
            data_dir: s.data_dir.clone(),
        };
        let mut stores = open_all(s, "state.", async |c| {
            let c = secrets::resolve_references(c, &secret_stores)?;
            state::open(&c, &ctx).await
        })
        .await?;
        for c in stores.values_mut() {
            crate::components::resiliency::layer_state(
                c,
                &s.resiliency,
                &s.app_id,
                crate::api::STORE_TIMEOUT,
            );
        }
        let mut pubsubs = open_all(s, "pubsub.", async |c| {
            let c = secrets::resolve_references(c, &secret_stores)?;
            pubsub::open(&c, &s.app_id, &s.namespace).await
        })
        .await?;
        for c in pubsubs.values_mut() {
            crate::components::resiliency::layer_publish(
                c,
                &s.resiliency,
                &s.app_id,
                crate::api::STORE_TIMEOUT,
            );
        }
        Ok(Self {
            secret_stores,
            stores,
            pubsubs,
        })
    }
}

/// Opens every component of one category (`state.`, `pubsub.`), by name; all failures are
/// reported together, naming file and field.
async fn open_all<T>(
    s: &Settings,
    category: &str,
    open: impl AsyncFn(&Component) -> Result<T, Vec<ComponentError>>,
) -> anyhow::Result<BTreeMap<String, T>> {
    let mut out = BTreeMap::new();
    let mut problems = Vec::new();
    for loaded in s
        .components
        .iter()
        .filter(|l| l.component.spec.type_.starts_with(category))
    {
        let c = &loaded.component;
        match open(c).await {
            Ok(opened) => {
                tracing::info!(name = %c.metadata.name, r#type = %c.spec.type_, "component ready");
                out.insert(c.metadata.name.clone(), opened);
            }
            Err(errs) => problems.extend(
                errs.into_iter()
                    .map(|e| format!("{}: {}: {}", loaded.at, e.field, e.message)),
            ),
        }
    }
    if problems.is_empty() {
        Ok(out)
    } else {
        anyhow::bail!(
            "opening components failed:\n  - {}",
            problems.join("\n  - ")
        )
    }
}

/// The three listening sockets, bound before anything serves.
struct Sockets {
    api: TcpListener,
    mesh: TcpListener,
    admin: TcpListener,
}

impl Sockets {
    async fn bind(s: &Settings) -> anyhow::Result<Self> {
        let api = bind(s.listen.api, "--dapr-http-port").await?;
        let mesh = match bind(s.listen.mesh, "--mesh-port").await {
            Ok(l) => l,
            // The default port lies in Linux's ephemeral range, so any client connection may
            // hold it for a while. The local and mDNS resolvers carry the real port, so any free
            // one does when none was asked for; with DNS or static addresses peers expect this
            // very port.
            Err(e)
                if !s.listen.mesh_explicit
                    && matches!(s.resolver, ResolverConfig::Local | ResolverConfig::Mdns(_)) =>
            {
                tracing::warn!(error = %e, "the default mesh port is taken; using a free port instead");
                bind(SocketAddr::new(s.listen.mesh.ip(), 0), "--mesh-port").await?
            }
            Err(e) => return Err(e),
        };
        let admin = bind(s.listen.admin, "--metrics-port").await?;
        Ok(Self { api, mesh, admin })
    }
}

async fn bind(addr: SocketAddr, flag: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding {addr} ({flag})"))
}

/// Name resolution, and this sidecar's own entry in it (withdrawn first at shutdown).
pub(crate) struct Discovery {
    resolver: Arc<dyn Resolve>,
    mdns: Option<Arc<MdnsResolver>>,
    registration: Option<Registration>,
}

impl Discovery {
    /// Starts the resolver once the mesh port is known (mDNS announces it), and registers this
    /// sidecar in the local registry when that is the resolver.
    fn start(s: &Settings, mesh_port: u16) -> anyhow::Result<Self> {
        let mut mdns = None;
        let resolver: Arc<dyn Resolve> = match &s.resolver {
            ResolverConfig::Local => {
                Arc::new(LocalResolver::start(s.registry_dir.clone()).context("local registry")?)
            }
            ResolverConfig::Static(map) => Arc::new(StaticResolver::new(map.clone())),
            ResolverConfig::Mdns(cfg) => {
                let me = Announcement {
                    app_id: s.app_id.clone(),
                    namespace: s.namespace.clone(),
                    mesh_port,
                };
                let r = MdnsResolver::start(cfg, Some(&me)).context("mDNS name resolution")?;
                let r = Arc::new(r);
                mdns = Some(r.clone());
                r
            }
            ResolverConfig::Dns(cfg) => {
                Arc::new(DnsResolver::new(cfg).context("DNS name resolution")?)
            }
        };
        let registration = match s.resolver {
            ResolverConfig::Local => Some(register_locally(s, mesh_port)?),
            ResolverConfig::Static(_) | ResolverConfig::Mdns(_) | ResolverConfig::Dns(_) => None,
        };
        Ok(Self {
            resolver,
            mdns,
            registration,
        })
    }
}

fn register_locally(s: &Settings, mesh_port: u16) -> anyhow::Result<Registration> {
    let pid = std::process::id();
    let entry = Entry {
        app_id: s.app_id.clone(),
        namespace: s.namespace.clone(),
        address: SocketAddr::from(([127, 0, 0, 1], mesh_port)),
        pid,
        started: Entry::start_time_of(pid),
    };
    Registration::create(&s.registry_dir, &entry).context("registering in the local registry")
}

/// The tracing span exporter of `spec.tracing`, if a collector is configured.
fn export_spans(s: &Settings) -> anyhow::Result<(Option<Spans>, Option<Exporting>)> {
    match &s.tracing {
        Some(t) => {
            let (spans, task) = crate::telemetry::start(t, &s.app_id, s.ca_file.as_deref())
                .context("starting span export")?;
            Ok((Some(spans), Some(task)))
        }
        None => Ok((None, None)),
    }
}

/// The services the listeners serve, and the state they share.
struct Wired {
    api: Arc<ApiState>,
    inbound: Arc<Inbound>,
    outbound: Arc<Outbound>,
    app: Option<AppChannel>,
    health: Arc<Health>,
    pubsubs: BTreeMap<String, PubSubComponent>,
    pubsub_metrics: Arc<PubSubMetrics>,
    listed: Arc<std::sync::Mutex<Vec<Listed>>>,
    shutdown: CancellationToken,
    policy_watch: outrider_policy::files::Watching,
}

impl Wired {
    fn new(
        s: &Settings,
        engines: Engines,
        discovery: &Discovery,
        creds: &Credentials,
        spans: Option<Spans>,
    ) -> anyhow::Result<Self> {
        let app = match s.app_port {
            Some(port) => Some(AppChannel::new(
                &s.app_id,
                &s.app_channel_address,
                port,
                s.app_token.as_deref(),
            )?),
            None => None,
        };
        let outbound = Arc::new(Outbound::new(
            &s.app_id,
            discovery.resolver.clone(),
            s.balancing,
            creds.clone(),
            s.resiliency.clone().into(),
        ));
        let health = Arc::new(Health::default());
        let listed = Arc::default();
        let shutdown = CancellationToken::new();
        let pubsub_metrics = Arc::new(PubSubMetrics::new(&s.app_id, &s.namespace));
        let api = Arc::new(ApiState {
            app_id: s.app_id.clone(),
            namespace: s.namespace.clone(),
            app_port: s.app_port,
            app_channel_address: s.app_channel_address.clone(),
            api_token: s.api_token.clone(),
            max_body_size: s.max_body_size,
            body_idle_timeout: s.limits.api.head_timeout,
            outbound: outbound.clone(),
            app: app.clone(),
            health: health.clone(),
            stores: engines.stores,
            pubsubs: engines.pubsubs.clone(),
            secret_stores: engines.secret_stores,
            secret_scopes: s.secret_scopes.clone(),
            api_access: s.api_access.clone(),
            pubsub_metrics: pubsub_metrics.clone(),
            subscriptions: Arc::clone(&listed),
            extended: Default::default(),
            heavy: tokio::sync::Semaphore::new(crate::api::HEAVY_WORK),
            shutdown: shutdown.clone(),
        });
        let (inbound, policy_watch) = inbound_for(s, app.clone(), spans)?;
        Ok(Self {
            api,
            inbound,
            outbound,
            app,
            health,
            pubsubs: engines.pubsubs,
            pubsub_metrics,
            listed,
            shutdown,
            policy_watch,
        })
    }
}

/// What inbound requests need, with the access policies as loaded at start and then as their
/// files change (a bad edit keeps the last good ones).
fn inbound_for(
    s: &Settings,
    app: Option<AppChannel>,
    spans: Option<Spans>,
) -> anyhow::Result<(Arc<Inbound>, outrider_policy::files::Watching)> {
    let (policies, watching) =
        outrider_policy::files::watch(s.policy_sources.clone(), Arc::new(s.access_control.clone()))
            .context("watching --policies-path")?;
    if s.access_control.is_enabled() {
        tracing::info!(
            policies = s.access_control.policy_count(),
            default_action = %s.access_control.default_action(),
            "access control enabled"
        );
    }
    let inbound = Arc::new(Inbound {
        app_id: s.app_id.clone(),
        app,
        max_body_size: s.max_body_size,
        body_idle_timeout: s.limits.mesh.head_timeout,
        policies,
        spans,
    });
    Ok((inbound, watching))
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
    async fn stop(self) -> anyhow::Result<()> {
        self.stop.cancel();
        self.task
            .await
            .map_err(|e| anyhow::anyhow!("the listener panicked: {e}"))?
    }
}

/// The three serve loops.
pub(crate) struct Listeners {
    api_addr: SocketAddr,
    admin_addr: SocketAddr,
    api: Serving,
    mesh: Serving,
    admin: Serving,
}

impl Listeners {
    fn serve(
        s: &Settings,
        sockets: Sockets,
        wired: &Wired,
        creds: Credentials,
        metrics: PrometheusHandle,
    ) -> anyhow::Result<Self> {
        let (api_addr, admin_addr) = (sockets.api.local_addr()?, sockets.admin.local_addr()?);
        let api_svc = ServiceBuilder::new()
            // A span per request (app id, method, route), and the access log when enabled.
            .layer(AccessLogLayer::new(&s.app_id, s.access_log))
            // Every API call continues or starts a trace, including invocations it forwards.
            .layer(TraceLayer::new(wired.inbound.spans.clone()))
            // Counted with route templates as labels, never raw paths.
            .layer(MetricsLayer::new(&s.app_id, Side::Server))
            .service(ApiService::new(wired.api.clone()));
        let api_l = serve::Listener::new(sockets.api, "api", s.limits.api);
        let stop = CancellationToken::new();
        let task = serve::serve(api_l, move |_| api_svc.clone(), stop.clone(), s.grace);
        let api = Serving::spawn(stop, async move { Ok(task.await) });

        let mesh_l = serve::Listener::new(sockets.mesh, "mesh", s.limits.mesh);
        let stop = CancellationToken::new();
        let inbound = wired.inbound.clone();
        let task = inbound::serve(mesh_l, creds.clone(), inbound, stop.clone(), s.grace);
        let mesh = Serving::spawn(stop, task);

        let admin = serve_admin(s, sockets.admin, wired, creds, metrics);
        Ok(Self {
            api_addr,
            admin_addr,
            api,
            mesh,
            admin,
        })
    }
}

/// The admin listener, and the upkeep of the metrics it renders. It outlives the others so
/// that readiness can be watched during the drain.
fn serve_admin(
    s: &Settings,
    socket: TcpListener,
    wired: &Wired,
    creds: Credentials,
    metrics: PrometheusHandle,
) -> Serving {
    let admin_state = Arc::new(Admin {
        metrics: metrics.clone(),
        health: wired.health.clone(),
        creds,
        outbound: wired.outbound.clone(),
        status_remote: s.admin_status_remote,
    });
    let admin_l = serve::Listener::new(socket, "admin", s.limits.admin);
    let admin_svc = move |peer| {
        let admin_state = admin_state.clone();
        tower::service_fn(move |req: Request<Incoming>| {
            admin::handle(admin_state.clone(), peer, req)
        })
    };
    let stop = CancellationToken::new();
    let upkeep_stop = stop.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        loop {
            tokio::select! {
                _ = tick.tick() => metrics.run_upkeep(),
                () = upkeep_stop.cancelled() => return,
            }
        }
    });
    let task = serve::serve(admin_l, admin_svc, stop.clone(), Duration::from_secs(1));
    Serving::spawn(stop, async move { Ok(task.await) })
}

/// Marks the app ready once it answers, then starts the subscriptions it asks for and the
/// declared ones: deliveries need someone to deliver to.
fn start_subscriptions(s: &Settings, wired: &Wired, spans: Option<Spans>) -> Option<Subscriber> {
    let subscriber = wired.app.clone().map(|app| Subscriber {
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
    });
    let (addr, port, health) = (
        s.app_channel_address.clone(),
        s.app_port,
        wired.health.clone(),
    );
    let declared = s.subscriptions.clone();
    let subscribe = subscriber.clone();
    tokio::spawn(async move {
        // Ready once the app answers (at once without one).
        probe_app(addr, port, health).await;
        if let Some(subscriber) = subscribe {
            let asked = subscriptions::fetch(&subscriber.app, &subscriber.me).await;
            subscriber
                .start(subscriptions::merge(asked, &declared))
                .await;
        }
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
