//! `outrider run`: assembles the sidecar from validated settings, runs it, and shuts it down in
//! order.
//!
//! Start: identity → components → bind every listener (a taken port fails here, before anything
//! serves) → resolver, registered in the local registry or announced over mDNS → serve →
//! outbound ready → app child (if any) → app readiness. Stop (SIGTERM, SIGINT,
//! `POST /v1.0/shutdown`, or the child exiting): not ready → deregister (mDNS: goodbye) → drain
//! delay → stop accepting mesh traffic and finish in-flight requests within
//! the grace period → SIGTERM the child and wait → close the API → exit with the child's status
//! (or 0).

pub(crate) mod child;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Context as _;
use http::Request;
use hyper::body::Incoming;
use metrics_exporter_prometheus::PrometheusHandle;
use nix::sys::signal::Signal;
use outrider_blocks::pubsub::{self, PubSubComponent};
use outrider_blocks::secrets;
use outrider_blocks::state::{self, OpenContext, StateComponent};
use outrider_blocks::{Component, ComponentError};
use outrider_discovery::dns::DnsResolver;
use outrider_discovery::local::{Entry, LocalResolver, Registration};
use outrider_discovery::mdns::{Announcement, MdnsResolver};
use outrider_discovery::static_::StaticResolver;
use outrider_discovery::{Resolve, ResolverConfig};
use outrider_filters::access_log::AccessLogLayer;
use outrider_filters::metrics::{MetricsLayer, Side};
use outrider_filters::trace::TraceLayer;
use outrider_policy::Caller;
use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};
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
use crate::to_app::channel::AppChannel;
use crate::to_app::subscriptions;

/// How long a stopping sidecar keeps accepting mesh traffic after leaving the registry.
const DRAIN_DELAY: Duration = Duration::from_secs(1);

/// How often the app's port is probed until it answers.
const APP_PROBE_INTERVAL: Duration = Duration::from_millis(250);

pub(crate) async fn run(s: Settings, metrics: PrometheusHandle) -> anyhow::Result<i32> {
    // Before anything reports ready: a SIGTERM that arrives early must start the orderly stop,
    // not kill the process with the default action.
    let mut sigterm = signal(SignalKind::terminate())?;
    let mut sigint = signal(SignalKind::interrupt())?;
    let creds = identity::start(&s).context("workload identity")?;
    // Secret stores first: other components' `secretKeyRef`s are read from them.
    // A relative `secretsFile` is read from the directory the sidecar was started in, as daprd does.
    let cwd = std::env::current_dir().context("reading the current directory")?;
    let secret_stores = open_all(&s, "secretstores.", async |c| secrets::open(c, &cwd)).await?;
    let ctx = OpenContext {
        app_id: s.app_id.clone(),
        namespace: s.namespace.clone(),
        data_dir: s.data_dir.clone(),
    };
    let mut stores: BTreeMap<String, StateComponent> = open_all(&s, "state.", async |c| {
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
    let mut pubsubs: BTreeMap<String, PubSubComponent> = open_all(&s, "pubsub.", async |c| {
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

    let api_l = bind(s.listen.api, "--dapr-http-port").await?;
    let mesh_l = match bind(s.listen.mesh, "--mesh-port").await {
        Ok(l) => l,
        // The default port lies in Linux's ephemeral range, so any client connection may hold it
        // for a while. The local and mDNS resolvers carry the real port, so any free one does when
        // none was asked for; with DNS or static addresses peers expect this very port.
        Err(e)
            if !s.listen.mesh_explicit
                && matches!(s.resolver, ResolverConfig::Local | ResolverConfig::Mdns(_)) =>
        {
            tracing::warn!(error = %e, "the default mesh port is taken; using a free port instead");
            bind(SocketAddr::new(s.listen.mesh.ip(), 0), "--mesh-port").await?
        }
        Err(e) => return Err(e),
    };
    let admin_l = bind(s.listen.admin, "--metrics-port").await?;
    let api_addr = api_l.local_addr()?;
    let mesh_port = mesh_l.local_addr()?.port();

    // The resolver starts once the mesh port is known: mDNS announces it.
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
            let r = Arc::new(MdnsResolver::start(cfg, Some(&me)).context("mDNS name resolution")?);
            mdns = Some(r.clone());
            r
        }
        ResolverConfig::Dns(cfg) => Arc::new(DnsResolver::new(cfg).context("DNS name resolution")?),
    };
    let registration = match s.resolver {
        ResolverConfig::Local => Some(
            Registration::create(
                &s.registry_dir,
                &Entry {
                    app_id: s.app_id.clone(),
                    namespace: s.namespace.clone(),
                    address: SocketAddr::from(([127, 0, 0, 1], mesh_port)),
                    pid: std::process::id(),
                    started: Entry::start_time_of(std::process::id()),
                },
            )
            .context("registering in the local registry")?,
        ),
        ResolverConfig::Static(_) | ResolverConfig::Mdns(_) | ResolverConfig::Dns(_) => None,
    };

    let app = match s.app_port {
        Some(port) => Some(AppChannel::new(
            &s.app_id,
            &s.app_channel_address,
            port,
            s.app_token.as_deref(),
        )?),
        None => None,
    };
    let app_for_subs = app.clone();
    // Deliveries come from this sidecar on the app's own behalf.
    let me = Caller {
        app_id: s.app_id.clone(),
        namespace: s.namespace.clone(),
        trust_domain: s.trust_domain.clone(),
    };
    let health = Arc::new(Health::default());
    let listed_subscriptions: Arc<std::sync::Mutex<Vec<subscriptions::Listed>>> = Arc::default();
    let shutdown = CancellationToken::new();
    let outbound = Arc::new(Outbound::new(
        &s.app_id,
        resolver.clone(),
        s.balancing,
        creds.clone(),
        s.resiliency.clone().into(),
    ));
    let pubsub_metrics = Arc::new(PubSubMetrics::new(&s.app_id, &s.namespace));
    let state = Arc::new(ApiState {
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
        stores,
        pubsubs: pubsubs.clone(),
        secret_stores,
        secret_scopes: s.secret_scopes.clone(),
        api_access: s.api_access.clone(),
        pubsub_metrics: pubsub_metrics.clone(),
        subscriptions: listed_subscriptions.clone(),
        extended: Default::default(),
        heavy: tokio::sync::Semaphore::new(crate::api::HEAVY_WORK),
        shutdown: shutdown.clone(),
    });

    // Finished spans go to the collector of `spec.tracing`, if one is configured.
    let (spans, span_export) = match &s.tracing {
        Some(t) => {
            let (spans, task) = crate::telemetry::start(t, &s.app_id, s.ca_file.as_deref())
                .context("starting span export")?;
            (Some(spans), Some(task))
        }
        None => (None, None),
    };

    // Each listener stops accepting when its token is cancelled, then drains.
    let (api_stop, mesh_stop) = (CancellationToken::new(), CancellationToken::new());
    let api_svc = ServiceBuilder::new()
        // A span per request (app id, method, route), and the access log when enabled.
        .layer(AccessLogLayer::new(&s.app_id, s.access_log))
        // Every API call continues or starts a trace, including invocations it forwards.
        .layer(TraceLayer::new(spans.clone()))
        // Counted with route templates as labels, never raw paths.
        .layer(MetricsLayer::new(&s.app_id, Side::Server))
        .service(ApiService::new(state));
    let api_l = serve::Listener::new(api_l, "api", s.limits.api);
    let api_task = tokio::spawn(serve::serve(
        api_l,
        move |_| api_svc.clone(),
        api_stop.clone(),
        s.grace,
    ));
    // Access policies as loaded at start, then as their files change (a bad edit keeps these).
    let (policies, _policy_watch) =
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
        spans: spans.clone(),
    });
    let mesh_l = serve::Listener::new(mesh_l, "mesh", s.limits.mesh);
    let mesh_task = tokio::spawn(inbound::serve(
        mesh_l,
        creds.clone(),
        inbound,
        mesh_stop.clone(),
        s.grace,
    ));
    let admin_state = Arc::new(Admin {
        metrics: metrics.clone(),
        health: health.clone(),
        creds,
        outbound,
        status_remote: s.admin_status_remote,
    });
    let admin_l = serve::Listener::new(admin_l, "admin", s.limits.admin);
    let admin_svc = move |peer| {
        let admin_state = admin_state.clone();
        tower::service_fn(move |req: Request<Incoming>| {
            admin::handle(admin_state.clone(), peer, req)
        })
    };
    // The admin listener outlives the others so that readiness can be watched during the drain.
    let admin_stop = CancellationToken::new();
    let admin_task = tokio::spawn(serve::serve(
        admin_l,
        admin_svc,
        admin_stop.clone(),
        Duration::from_secs(1),
    ));
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        loop {
            tick.tick().await;
            metrics.run_upkeep();
        }
    });

    health.outbound_ready.store(true, Ordering::Release);
    tracing::info!(
        app_id = %s.app_id, namespace = %s.namespace, api = %format!("http://{api_addr}"), mesh_port,
        admin = %s.listen.admin, "Outrider is serving the Dapr HTTP API on http://{api_addr}"
    );

    let mut child = match s.command.as_slice() {
        [] => None,
        argv => Some(
            child::spawn(argv, api_addr.port(), s.app_port, &s.app_id)
                .with_context(|| format!("starting {:?}", argv[0]))?,
        ),
    };
    let subscriber = {
        // Subscriptions start once the app answers: deliveries need someone to deliver to.
        let (addr, port, health) = (s.app_channel_address.clone(), s.app_port, health.clone());
        let subscriber = app_for_subs.map(|app| subscriptions::Subscriber {
            pubsubs: Arc::new(pubsubs),
            app,
            me: me.clone(),
            metrics: pubsub_metrics,
            listed: listed_subscriptions,
            live: Arc::default(),
            stop: CancellationToken::new(),
            in_flight: tokio_util::task::TaskTracker::new(),
            resiliency: Arc::new(s.resiliency.clone()),
            spans: spans.clone(),
        });
        let declared = s.subscriptions.clone();
        let subscribe = subscriber.clone();
        tokio::spawn(async move {
            // Ready once the app answers (at once without one).
            probe_app(addr, port, health).await;
            if let Some(subscriber) = subscribe {
                let wanted = subscriptions::merge(
                    subscriptions::fetch(&subscriber.app, &subscriber.me).await,
                    &declared,
                );
                subscriber.start(wanted).await;
            }
        });
        subscriber
    };

    let mut exit_code = 0;
    let mut child_done = false;
    tokio::select! {
        _ = sigterm.recv() => tracing::info!("SIGTERM received"),
        _ = sigint.recv() => tracing::info!("SIGINT received"),
        () = shutdown.cancelled() => {}
        status = wait_child(&mut child) => {
            let status = status?;
            tracing::info!(%status, "the app exited");
            exit_code = child::exit_code(status);
            child_done = true;
        }
    }
    // 1. Not ready, and out of the registry: peers stop choosing this instance.
    tracing::info!("shutting down: not ready, deregistering, draining");
    health.draining.store(true, Ordering::Release);
    drop(registration);
    if let Some(mdns) = &mdns {
        mdns.withdraw().await;
    }
    // 2. Peers that picked us a moment ago still arrive: keep serving them briefly.
    tokio::time::sleep(DRAIN_DELAY.min(s.grace)).await;
    // 3. No new inbound work; in-flight requests finish within the grace period.
    mesh_stop.cancel();
    match mesh_task.await {
        Ok(Err(e)) => tracing::warn!(error = %e, "mesh listener failed"),
        Err(e) => tracing::warn!(error = %e, "mesh listener panicked"),
        Ok(Ok(())) => {}
    }
    // Stop deliveries: what is in flight finishes within the grace period, the rest stays with
    // the broker.
    if let Some(subscriber) = &subscriber {
        subscriber.shut_down(s.grace).await;
    }
    // 4. Then the app, which may still use its API while it stops. SIGTERM whatever we
    //    received: an app started in the background may ignore SIGINT.
    if let (Some(c), false) = (child.as_mut(), child_done) {
        child::signal(c, Signal::SIGTERM);
        exit_code = match tokio::time::timeout(s.grace + Duration::from_secs(5), c.wait()).await {
            Ok(status) => child::exit_code(status?),
            Err(_) => {
                tracing::warn!("the app did not exit in time; killing it");
                c.kill().await.ok();
                child::exit_code(c.wait().await?)
            }
        };
    }
    // 5. The API, then the admin listener (readiness stays observable until the end).
    api_stop.cancel();
    let _ = api_task.await;
    admin_stop.cancel();
    let _ = admin_task.await;
    // 6. The spans of the last requests.
    if let Some(exporting) = span_export {
        exporting.finish(Duration::from_secs(2)).await;
    }
    tracing::info!(exit_code, "stopped");
    Ok(exit_code)
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
        match open(&loaded.component).await {
            Ok(c) => {
                tracing::info!(name = %loaded.component.metadata.name, r#type = %loaded.component.spec.type_, "component ready");
                out.insert(loaded.component.metadata.name.clone(), c);
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

async fn bind(addr: SocketAddr, flag: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding {addr} ({flag})"))
}

async fn wait_child(
    child: &mut Option<tokio::process::Child>,
) -> std::io::Result<std::process::ExitStatus> {
    match child {
        Some(c) => c.wait().await,
        None => std::future::pending().await,
    }
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
