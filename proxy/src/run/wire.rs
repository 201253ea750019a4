//! Start phases between binding and serving: name resolution (and this sidecar's entry in it),
//! span export, and the services the listeners will serve with the state they share.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use outrider_blocks::pubsub::PubSubComponent;
use outrider_certs::Credentials;
use outrider_discovery::dns::DnsResolver;
use outrider_discovery::local::{Entry, LocalResolver, Ports, Registration};
use outrider_discovery::mdns::{Announcement, MdnsResolver};
use outrider_discovery::static_::StaticResolver;
use outrider_discovery::{Resolve, ResolverConfig, Transports};
use outrider_filters::spans::Spans;
use tokio_util::sync::CancellationToken;

use super::engines::Engines;
use crate::api::actors::Actors;
use crate::api::{ApiState, Health};
use crate::components::metrics::PubSubMetrics;
use crate::config::Settings;
use crate::mesh::inbound::Inbound;
use crate::mesh::outbound::Outbound;
use crate::mesh::outbound::endpoint::Connect;
use crate::mesh::placement::Placement;
use crate::mesh::transparent::{InterceptionView, MtlsMode, Transparent};
use crate::telemetry::Exporting;
use crate::to_app::channel::{AppAddress, AppChannel};
use crate::to_app::health::AppHealth;
use crate::to_app::subscriptions::Listed;

/// Name resolution, and this sidecar's own entry in it (withdrawn first at shutdown).
pub(crate) struct Discovery {
    resolver: Arc<dyn Resolve>,
    pub(super) mdns: Option<Arc<MdnsResolver>>,
    pub(super) registration: Registered,
    /// This sidecar's mesh address as discovery lists it.
    mesh_addr: SocketAddr,
}

/// This sidecar's entry in the local registry (while it is there), or its mDNS announcement.
#[derive(Clone, Default)]
pub(super) struct Registered {
    local: Arc<std::sync::Mutex<Option<(Registration, Entry)>>>,
    mdns: Option<Arc<MdnsResolver>>,
}

impl Registered {
    /// Adds the actor types the app hosts to this sidecar's entry (local registry) or
    /// announcement (mDNS TXT `actors`), so that placement finds this sidecar. `false` when the
    /// resolver carries no actor types.
    pub(super) fn announce_actors(&self, types: Vec<String>) -> anyhow::Result<bool> {
        if let Some(mdns) = &self.mdns {
            return mdns
                .announce_actors(&types)
                .context("announcing the hosted actor types over mDNS");
        }
        let mut entry = self
            .local
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let Some((registration, entry)) = entry.as_mut() else {
            return Ok(false);
        };
        entry.actor_types = types;
        registration
            .update(entry)
            .context("announcing the hosted actor types in the local registry")?;
        Ok(true)
    }

    /// Leaves the registry: peers stop choosing this sidecar.
    pub(super) fn remove(&self) {
        self.local
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
    }
}

impl Discovery {
    /// Starts the resolver once the mesh port is known (mDNS announces it), and registers this
    /// sidecar in the local registry when that is the resolver.
    pub(super) fn start(
        s: &Settings,
        mesh_port: u16,
        transports: Transports,
        ports: Ports,
    ) -> anyhow::Result<Self> {
        let mut mdns = None;
        let resolver: Arc<dyn Resolve> = match &s.resolver {
            ResolverConfig::Local => {
                Arc::new(LocalResolver::start(s.registry_dir.clone()).context("local registry")?)
            }
            ResolverConfig::Static(map, actors) => {
                Arc::new(StaticResolver::new(map.clone(), actors.clone()))
            }
            ResolverConfig::Mdns(cfg) => {
                let me = Announcement {
                    app_id: s.app_id.clone(),
                    namespace: s.namespace.clone(),
                    mesh_port,
                    transports,
                    admin_port: ports.admin,
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
            ResolverConfig::Local => Some(register_locally(s, mesh_port, transports, ports)?),
            ResolverConfig::Static(..) | ResolverConfig::Mdns(_) | ResolverConfig::Dns(_) => None,
        };
        let registration = Registered {
            local: Arc::new(std::sync::Mutex::new(registration)),
            mdns: mdns.clone(),
        };
        Ok(Self {
            resolver,
            mdns,
            registration,
            mesh_addr: SocketAddr::from(([127, 0, 0, 1], mesh_port)),
        })
    }
}

fn register_locally(
    s: &Settings,
    mesh_port: u16,
    transports: Transports,
    ports: Ports,
) -> anyhow::Result<(Registration, Entry)> {
    let pid = std::process::id();
    let entry = Entry {
        app_id: s.app_id.clone(),
        namespace: s.namespace.clone(),
        address: SocketAddr::from(([127, 0, 0, 1], mesh_port)),
        transports,
        pid,
        started: Entry::start_time_of(pid),
        actor_types: Vec::new(),
        ports,
        started_at: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
    };
    let registration = Registration::create(&s.registry_dir, &entry)
        .context("registering in the local registry")?;
    Ok((registration, entry))
}

/// The tracing span exporter of `spec.tracing`, if a collector is configured.
pub(super) fn export_spans(s: &Settings) -> anyhow::Result<(Option<Spans>, Option<Exporting>)> {
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
pub(super) struct Wired {
    pub(super) api: Arc<ApiState>,
    pub(super) inbound: Arc<Inbound>,
    pub(super) app: Option<AppChannel>,
    pub(super) health: Arc<Health>,
    pub(super) app_health: Arc<AppHealth>,
    pub(super) pubsubs: BTreeMap<String, PubSubComponent>,
    pub(super) pubsub_metrics: Arc<PubSubMetrics>,
    pub(super) listed: Arc<std::sync::Mutex<Vec<Listed>>>,
    pub(super) actors: Arc<Actors>,
    pub(super) shutdown: CancellationToken,
    pub(super) policy_watch: outrider_policy::files::Watching,
    /// With `--intercept`: what the transparent listeners share.
    pub(super) transparent: Option<Arc<Transparent>>,
    pub(super) interception: Option<InterceptionView>,
}

/// The channel to the app, when it has a port.
fn app_channel(
    s: &Settings,
    health: &Arc<AppHealth>,
    pipeline: crate::api::pipeline::Pipeline,
) -> anyhow::Result<Option<AppChannel>> {
    let Some(port) = s.app_port else {
        return Ok(None);
    };
    let address = AppAddress {
        app_id: &s.app_id,
        address: &s.app_channel_address,
        port,
        app_token: s.app_token.as_deref(),
        protocol: s.app_protocol,
        max_body: s.max_body_size,
        max_concurrency: s.daprd.app_max_concurrency,
        pipeline,
    };
    Ok(Some(AppChannel::new(&address, health.clone())?))
}

impl Wired {
    pub(super) fn new(
        s: &Settings,
        engines: Engines,
        discovery: &Discovery,
        creds: &Credentials,
        spans: Option<Spans>,
    ) -> anyhow::Result<Self> {
        let app_health = AppHealth::new(s.daprd.app_health.clone());
        let app = app_channel(s, &app_health, engines.app_pipeline.clone())?;
        let outbound = Arc::new(Outbound::new(
            &s.app_id,
            discovery.resolver.clone(),
            s.balancing,
            creds.clone(),
            s.resiliency.clone().into(),
            Connect {
                mode: s.mesh_transport,
                memory: s.mesh_transport_memory,
            },
        ));
        let health = Arc::new(Health::default());
        let listed = Arc::default();
        let shutdown = CancellationToken::new();
        let pubsub_metrics = Arc::new(PubSubMetrics::new(&s.app_id, &s.namespace));
        let interception = s.interception.as_ref().map(InterceptionView::new);
        let actors = actors_for(s, &engines, discovery, &outbound);
        let api = Arc::new(ApiState {
            app_id: s.app_id.clone(),
            namespace: s.namespace.clone(),
            app_port: s.app_port,
            app_protocol: s.app_protocol,
            app_channel_address: s.app_channel_address.clone(),
            api_token: s.api_token.clone(),
            max_body_size: s.max_body_size,
            body_idle_timeout: s.limits.api.head_timeout,
            outbound: outbound.clone(),
            app: app.clone(),
            health: health.clone(),
            app_health: app_health.clone(),
            app_max_concurrency: s.daprd.app_max_concurrency,
            pipeline: engines.pipeline,
            app_pipeline: engines.app_pipeline,
            externals: engines.externals,
            stores: engines.stores,
            pubsubs: engines.pubsubs.clone(),
            secret_stores: engines.secret_stores,
            locks: engines.locks,
            configurations: engines.configurations,
            bindings: engines.bindings,
            configuration_subscriptions: Default::default(),
            secret_scopes: s.secret_scopes.clone(),
            api_access: s.api_access.clone(),
            pubsub_metrics: pubsub_metrics.clone(),
            subscriptions: Arc::clone(&listed),
            streams: std::sync::Mutex::default(),
            extended: Default::default(),
            interception: interception.clone(),
            heavy: tokio::sync::Semaphore::new(crate::api::HEAVY_WORK),
            actors: actors.clone(),
            shutdown: shutdown.clone(),
        });
        let (inbound, policy_watch) = inbound_for(s, app.clone(), &actors, spans.clone())?;
        let transparent = transparent_for(s, &api, &inbound, spans);
        Ok(Self {
            api,
            inbound,
            app,
            health,
            app_health,
            pubsubs: engines.pubsubs,
            pubsub_metrics,
            listed,
            actors,
            shutdown,
            policy_watch,
            transparent,
            interception,
        })
    }
}

/// The actor runtime: placement over what discovery finds, and the actor state store.
fn actors_for(
    s: &Settings,
    engines: &Engines,
    discovery: &Discovery,
    outbound: &Arc<Outbound>,
) -> Arc<Actors> {
    let actors = Arc::new(Actors {
        app_id: s.app_id.clone(),
        namespace: s.namespace.clone(),
        placement: Arc::new(Placement::new(
            discovery.resolver.clone(),
            outrider_discovery::Target::new(s.app_id.clone(), s.namespace.clone()),
            discovery.mesh_addr.port(),
        )),
        outbound: outbound.clone(),
        store: (engines.stores.values())
            .find(|c| c.actor_store)
            .map(|c| (c.name.clone(), c.store.clone())),
        host: std::sync::OnceLock::new(),
        app: std::sync::OnceLock::new(),
        starting: tokio::sync::Mutex::new(()),
        ready: std::sync::atomic::AtomicBool::new(false),
        scheduler: std::sync::OnceLock::new(),
        stop: tokio_util::sync::CancellationToken::new(),
        resiliency: crate::api::actors::resilience::ActorResiliency::new(
            s.resiliency.clone().into(),
        ),
    });
    // DNS lists sidecars, not what they host: the sidecars of the apps that may host actors
    // are asked (this sidecar's own app too, when it may host them: it has an actor store).
    if let ResolverConfig::Dns(dns) = &s.resolver
        && (actors.store.is_some() || !dns.actor_hosts.is_empty())
    {
        let mut apps = vec![s.app_id.clone()];
        apps.extend(dns.actor_hosts.iter().filter(|a| **a != s.app_id).cloned());
        let apps = (apps.into_iter())
            .map(|a| outrider_discovery::Target::new(a, s.namespace.clone()))
            .collect();
        actors.placement.asking();
        tokio::spawn(crate::mesh::placement::asked::follow(
            actors.placement.clone(),
            outbound.clone(),
            apps,
            actors.stop.clone(),
        ));
    }
    actors
}

/// With `--intercept`, what the transparent listeners share; the policies are the inbound ones.
fn transparent_for(
    s: &Settings,
    api: &Arc<ApiState>,
    inbound: &Inbound,
    spans: Option<Spans>,
) -> Option<Arc<Transparent>> {
    if s.interception.is_none() && s.mtls_mode == MtlsMode::Strict {
        tracing::warn!(
            "spec.mtls.mode is strict, but without --intercept this sidecar sees no plain \
             traffic to refuse: only the mesh port's mutual TLS protects the app"
        );
    }
    let cfg = s.interception.clone()?;
    if !s.command.is_empty() {
        tracing::warn!(
            "the app started by `outrider run -- …` runs as this sidecar's user, whose traffic the \
             interception rules leave alone: its own outbound TCP is not intercepted (start it \
             as another user to have it intercepted); calls to it still come through the mesh"
        );
    }
    let policies = inbound.policies.clone();
    Some(Arc::new(Transparent::new(
        cfg,
        api.clone(),
        policies,
        inbound.denials.clone(),
        spans,
    )))
}

/// What inbound requests need, with the access policies as loaded at start and then as their
/// files change (a bad edit keeps the last good ones).
fn inbound_for(
    s: &Settings,
    app: Option<AppChannel>,
    actors: &Arc<Actors>,
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
        app_address: s.app_channel_address.clone(),
        tunnel_ports: s.tunnel_ports.clone(),
        max_body_size: s.max_body_size,
        body_idle_timeout: s.limits.mesh.head_timeout,
        policies,
        denials: Arc::default(),
        spans,
        actors: actors.clone(),
    });
    Ok((inbound, watching))
}
