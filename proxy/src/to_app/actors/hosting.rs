//! Becoming an actor host: an HTTP app is asked `GET /dapr/config` once it is healthy (as daprd
//! asks: a non-200 answer means it hosts nothing); a gRPC app names its types on the actor event
//! stream it opens ([`start_streamed`]). The types are hosted when an actor state store is
//! configured; hosting without one is refused loudly, as daprd suspends it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use http::{Method, Request, header};
use outrider_blocks::actors::config::{self, TypeConfig};
use outrider_policy::Caller;

use super::stream::ActorStream;
use super::{ActorApp, Host};
use crate::api::actors::Actors;
use crate::net::http::empty;
use crate::to_app::channel::AppChannel;

/// How long hosting waits for mDNS to list this sidecar.
const FIND_ME: Duration = Duration::from_secs(5);

/// The largest `/dapr/config` answer read.
const MAX_CONFIG_BODY: usize = 1 << 20;

/// The actor types the app hosts and their settings; none when it hosts none (or says nothing
/// readable, which is logged).
pub(crate) async fn fetch_config(app: &AppChannel, me: &Caller) -> BTreeMap<String, TypeConfig> {
    if app.speaks_grpc() {
        // gRPC apps have no `/dapr/config`; hosting actors needs an HTTP app.
        return BTreeMap::new();
    }
    let mut delay = Duration::from_millis(500);
    for attempt in 1..=3 {
        let req = Request::builder()
            .method(Method::GET)
            .uri("/dapr/config")
            .header(header::CONTENT_TYPE, "application/json")
            .header("dapr-app-id", me.app_id.as_str())
            .body(empty())
            .expect("a static request is valid");
        match app.call(req, me).await {
            Ok(rsp) if rsp.status() == http::StatusCode::OK => {
                let body = crate::net::http::collect_within(rsp.into_body(), MAX_CONFIG_BODY)
                    .await
                    .unwrap_or_default();
                return match config::parse(&body) {
                    Ok((types, warnings)) => {
                        for w in warnings {
                            tracing::warn!("/dapr/config: {w}");
                        }
                        types
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "/dapr/config is not readable: no actor types hosted");
                        BTreeMap::new()
                    }
                };
            }
            Ok(_) => return BTreeMap::new(),
            Err(e) if attempt < 3 => {
                tracing::info!(error = %e, attempt, "asking the app for its actor config failed; retrying");
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
            Err(e) => {
                tracing::warn!(error = %e, "asking the app for its actor config failed: no actor types hosted");
            }
        }
    }
    BTreeMap::new()
}

/// What hosting needs of the app, set once the app channel exists (before the app is healthy:
/// an app may open its actor event stream at once).
pub(crate) struct AppLink {
    pub(crate) channel: AppChannel,
    /// The sidecar itself, as the caller the app sees.
    pub(crate) me: Caller,
    /// The largest answer read from the app.
    pub(crate) max_body: u64,
    /// Tells discovery the hosted types (`false` when the resolver carries none).
    pub(crate) announce: Box<dyn Fn(Vec<String>) -> anyhow::Result<bool> + Send + Sync>,
}

/// Starts hosting what the app asked in its `/dapr/config` (HTTP apps; unless `ask_config` is
/// off), and the scheduler of reminders and jobs. Returns whether hosting started.
pub(crate) async fn start(actors: &Arc<Actors>, ask_config: bool) -> bool {
    let Some(link) = actors.app.get() else {
        return false;
    };
    // `--disable-init-endpoints config`: the app is not asked, and hosts no actors.
    let types = if ask_config {
        fetch_config(&link.channel, &link.me).await
    } else {
        BTreeMap::new()
    };
    start_scheduler(actors, link);
    if types.is_empty() {
        return false;
    }
    let _one = actors.starting.lock().await;
    if actors.host().is_some() {
        return false;
    }
    host_types(
        actors,
        link,
        ActorApp::Channel(Box::new(link.channel.clone())),
        types,
    )
    .await
}

/// Why an app's actor event stream is refused.
pub(crate) enum Refused {
    /// The same stream will be refused again (the app must change, or the sidecar's setup).
    Always(String),
    /// It may be accepted a moment later.
    ForNow(String),
}

/// Starts hosting the types an app names on its actor event stream, or, when they are the ones
/// already hosted over such a stream (the app reconnecting), goes on with them. The stream the
/// app's callbacks then travel; why not, when the sidecar cannot host them.
pub(crate) async fn start_streamed(
    actors: &Arc<Actors>,
    types: BTreeMap<String, TypeConfig>,
) -> Result<Arc<ActorStream>, Refused> {
    let Some(link) = actors.app.get().filter(|l| l.channel.speaks_grpc()) else {
        return Err(Refused::Always(
            "actor callback streaming requires a gRPC app channel (--app-port with \
             --app-protocol grpc)"
                .into(),
        ));
    };
    start_scheduler(actors, link);
    let _one = actors.starting.lock().await;
    if let Some(host) = actors.host() {
        return match host.app() {
            ActorApp::Stream(s) if host.types().keys().eq(types.keys()) => Ok(s.clone()),
            _ => Err(Refused::Always(format!(
                "this sidecar hosts actor types {:?} already; the hosted types cannot change while \
                 it runs",
                host.types().keys().collect::<Vec<_>>()
            ))),
        };
    }
    if types.is_empty() {
        // As daprd: a stream that hosts nothing is accepted, and nothing is hosted.
        return Ok(Arc::default());
    }
    if actors.store.is_none() {
        return Err(Refused::Always(
            "no state store has `actorStateStore: \"true\"`: actors cannot be hosted".into(),
        ));
    }
    let stream = Arc::new(ActorStream::default());
    if host_types(actors, link, ActorApp::Stream(stream.clone()), types).await {
        Ok(stream)
    } else {
        Err(Refused::ForNow(
            "the actor host could not start (the sidecar is stopping)".into(),
        ))
    }
}

/// Hosts `types`, reached through `app`; then `link.announce` tells discovery.
async fn host_types(
    actors: &Arc<Actors>,
    link: &AppLink,
    app: ActorApp,
    types: BTreeMap<String, TypeConfig>,
) -> bool {
    let names: Vec<String> = types.keys().cloned().collect();
    let Some((store_name, store)) = actors.store.clone() else {
        tracing::error!(
            types = ?names,
            "the app hosts actor types, but no state store has `actorStateStore: \"true\"`: \
             actor hosting is suspended until one is configured"
        );
        return false;
    };
    let timeouts = (names.iter())
        .filter_map(|t| Some((t.clone(), actors.resiliency.timeout(t)?)))
        .collect::<BTreeMap<_, _>>();
    // Claims name this host by its address as discovery lists it (mDNS announces it a moment
    // after the start): wait for it, so that they never name an address others cannot reach.
    if !actors.placement.find_me(FIND_ME, &actors.stop).await {
        tracing::warn!(
            address = %actors.placement.me(),
            "name resolution does not list this sidecar (its app id on its mesh port at an \
             address of this machine): its actors' claims name the address above"
        );
    }
    let host = loop {
        let started = Host::start(
            app.clone(),
            link.me.clone(),
            store.clone(),
            types.clone(),
            actors.placement.clone(),
            (link.max_body, timeouts.clone()),
        )
        .await;
        match started {
            Ok(host) => break host,
            Err(_) if actors.stop.is_cancelled() => return false,
            Err(e) => {
                tracing::warn!(store = %store_name, error = %e, "starting the actor host failed; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    };
    let _ = actors.host.set(host);
    actors.placement.host_here(names.clone());
    if let Some(scheduler) = actors.scheduler.get() {
        for t in &names {
            let kind = crate::api::actors::reminders::Reminders {
                actors: Arc::downgrade(actors),
                actor_type: t.clone(),
            };
            scheduler.watch(actors.reminder_group(t), Arc::new(kind));
        }
    }
    announced(actors, &names, &store_name, (link.announce)(names.clone()));
    true
}

/// With an actor store, the scheduler of reminders and jobs (once), watching the app's jobs.
fn start_scheduler(actors: &Arc<Actors>, link: &AppLink) {
    let Some((_, store)) = &actors.store else {
        return;
    };
    actors.scheduler.get_or_init(|| {
        let schedules = outrider_blocks::actors::durable::Schedules::new(store.clone());
        let scheduler = crate::to_app::schedules::Scheduler::start(schedules, actors.stop.clone());
        let jobs = crate::api::jobs::Jobs {
            app: link.channel.clone(),
            me: link.me.clone(),
            placement: actors.placement.clone(),
        };
        scheduler.watch(
            outrider_blocks::actors::durable::Group::jobs(&actors.namespace, &actors.app_id),
            Arc::new(jobs),
        );
        scheduler
    });
}

/// Logs how announcing the hosted types went.
fn announced(actors: &Actors, names: &[String], store_name: &str, result: anyhow::Result<bool>) {
    match result {
        Ok(true) => tracing::info!(types = ?names, store = %store_name, "hosting actors"),
        // The resolver lists hosts by configuration (static): it should list this one.
        Ok(false) => match actors.placement.unlisted(names) {
            missing if missing.is_empty() => {
                tracing::info!(types = ?names, store = %store_name, "hosting actors");
            }
            missing => tracing::warn!(
                types = ?names,
                unlisted = ?missing,
                address = %actors.placement.me(),
                "hosting actors, but name resolution does not list this sidecar as a host of \
                 every type: other sidecars place none of those here (with the static resolver, \
                 add `actors: [...]` to this sidecar's address entry; with dns, make its app id's \
                 name list this sidecar's address)"
            ),
        },
        Err(e) => tracing::error!(error = %e, "hosting actors, but announcing them failed"),
    }
}
