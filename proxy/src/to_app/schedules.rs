//! Firing durable reminders and jobs (`outrider_blocks::actors::durable`): every sidecar with an
//! actor state store and an app looks over the groups it may fire — the reminders of each actor
//! type its app hosts, and its app's jobs — and fires the entries it owns when they are due.
//!
//! A reminder belongs to the owner of its actor (placement); a job to one instance of its app,
//! by the same consistent hash over the app's instances. A firing is leased in the store first
//! (so that no two hosts fire one entry at once), the lease is extended while the delivery takes
//! long, and the outcome is written back by the host that fired: the next firing, or the end.
//! When a host dies its leases end within [`LEASE`] and the new owner fires what it left: at
//! least once.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use futures_util::{StreamExt as _, TryStreamExt as _};
use outrider_blocks::actors::durable::{Entry, Group, PARTITIONS, Schedules};
use tokio_util::sync::CancellationToken;

/// How often the groups are looked over.
const SCAN: Duration = Duration::from_millis(500);
/// How long a cached entry is trusted before it is read again (another host may have
/// replaced it).
const CACHE_FOR: Duration = Duration::from_secs(5);
/// A firing's lease, extended every [`LEASE`] / 3 while its delivery lasts.
pub(crate) const LEASE: Duration = Duration::from_secs(10);
/// Firings under way at once on one host, per group: a group whose entries keep failing
/// cannot hold up the others. Due entries beyond it wait in the group's backlog and start as
/// firings end, without another look.
const MAX_FIRING: usize = 256;
/// Entries read at once while looking a group over.
const READS_AT_ONCE: usize = 32;

/// What a group's entries are, and how one is delivered.
pub(crate) trait Kind: Send + Sync + 'static {
    /// Whether this host fires entry `id` now.
    fn owns(&self, id: &str) -> bool;

    /// Delivers one firing, trying again as the kind's failure policy says; a firing that
    /// still fails is given up (the entry moves on to its next firing).
    fn deliver(&self, entry: Entry) -> futures_util::future::BoxFuture<'static, Delivered>;
}

/// How a delivery ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Delivered {
    /// Delivered or given up: the entry moves on to its next firing.
    Done,
    /// The app asked that it fire no more: the entry ends.
    Cancelled,
}

/// An entry of a group, as this host knows it.
type EntryKey = (String, String);

struct Watched {
    group: Group,
    kind: Arc<dyn Kind>,
    /// Due entries the last look found no room for, in order.
    backlog: Mutex<VecDeque<String>>,
}

/// The firings under way on this host, and how many per group.
#[derive(Default)]
struct Firing {
    keys: HashSet<EntryKey>,
    per_group: HashMap<String, usize>,
}

/// The scheduler of one sidecar.
pub(crate) struct Scheduler {
    schedules: Schedules,
    groups: Mutex<Vec<Arc<Watched>>>,
    /// Entries owned here: their next firing, and when it was read.
    cache: Mutex<HashMap<EntryKey, (DateTime<Utc>, tokio::time::Instant)>>,
    firing: Mutex<Firing>,
    stop: CancellationToken,
}

impl Scheduler {
    /// A scheduler over `schedules`, looking over groups as they are added, until `stop`.
    pub(crate) fn start(schedules: Schedules, stop: CancellationToken) -> Arc<Self> {
        let s = Arc::new(Self {
            schedules,
            groups: Mutex::default(),
            cache: Mutex::default(),
            firing: Mutex::default(),
            stop,
        });
        tokio::spawn(run(s.clone()));
        s
    }

    /// The schedules, for the APIs that make and read entries.
    pub(crate) fn schedules(&self) -> &Schedules {
        &self.schedules
    }

    /// Looks over `group` from now on.
    pub(crate) fn watch(&self, group: Group, kind: Arc<dyn Kind>) {
        self.groups
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Arc::new(Watched {
                group,
                kind,
                backlog: Mutex::default(),
            }));
    }

    /// Forgets what is cached of entry `id` (it was just made or replaced here).
    pub(crate) fn changed(&self, group: &Group, id: &str) {
        self.cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&cache_key(group, id));
    }
}

fn cache_key(group: &Group, id: &str) -> EntryKey {
    (format!("{group:?}"), id.to_owned())
}

async fn run(s: Arc<Scheduler>) {
    let mut tick = tokio::time::interval(SCAN);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = s.stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        // Entries deleted or moved elsewhere are not kept.
        (s.cache.lock().unwrap_or_else(|p| p.into_inner()))
            .retain(|_, (_, read)| read.elapsed() < CACHE_FOR * 2);
        let groups: Vec<Arc<Watched>> = s.groups.lock().unwrap_or_else(|p| p.into_inner()).clone();
        for w in groups {
            if let Err(e) = look_over(&s, &w).await {
                tracing::warn!(error = %e, "reading reminders and jobs failed; retrying");
            }
        }
    }
}

async fn look_over(
    s: &Arc<Scheduler>,
    w: &Arc<Watched>,
) -> Result<(), outrider_blocks::state::StateError> {
    let now = Utc::now();
    let mut backlog = VecDeque::new();
    for p in 0..PARTITIONS {
        let (ids, _) = s.schedules.partition(&w.group, p).await?;
        // Entries firing here already are not read again.
        let owned = ids
            .into_iter()
            .filter(|id| w.kind.owns(id) && !firing_here(s, &cache_key(&w.group, id)));
        // Each entry's next firing: cached, else read (several at once); none when it is gone.
        let nexts: Vec<(String, Option<DateTime<Utc>>)> = futures_util::stream::iter(owned)
            .map(|id| next_firing(s, &w.group, id, now))
            .buffer_unordered(READS_AT_ONCE)
            .try_collect()
            .await?;
        let mut gone = Vec::new();
        for (id, next) in nexts {
            match next {
                None => gone.push(id),
                Some(next) if next <= now => {
                    if let Err(id) = start_firing(s, w, id) {
                        backlog.push_back(id);
                    }
                }
                Some(_) => {}
            }
        }
        // Ended entries leave the index here, a partition at a time.
        if !gone.is_empty()
            && let Err(e) = s.schedules.prune(&w.group, p, &gone).await
        {
            tracing::debug!(error = %e, "pruning ended reminders and jobs failed; retrying");
        }
    }
    // What is still due and found no room waits for the firings under way to end.
    *w.backlog.lock().unwrap_or_else(|p| p.into_inner()) = backlog;
    Ok(())
}

/// Starts firing entry `id` of `w`, unless it fires here already; gives it back when the group
/// has no room. A firing that ends starts the next of the group's backlog.
fn start_firing(s: &Arc<Scheduler>, w: &Arc<Watched>, id: String) -> Result<(), String> {
    // A stopping host starts nothing more: what waits fires on the host that takes it over.
    if s.stop.is_cancelled() {
        return Ok(());
    }
    let key = cache_key(&w.group, &id);
    let mut firing = s.firing.lock().unwrap_or_else(|p| p.into_inner());
    if firing.keys.contains(&key) {
        return Ok(());
    }
    let in_group = firing.per_group.entry(key.0.clone()).or_default();
    if *in_group >= MAX_FIRING {
        return Err(id);
    }
    *in_group += 1;
    firing.keys.insert(key.clone());
    drop(firing);
    let (s, w) = (s.clone(), w.clone());
    tokio::spawn(async move {
        fire(&s, &w, &id).await;
        s.cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&key);
        {
            let mut firing = s.firing.lock().unwrap_or_else(|p| p.into_inner());
            firing.keys.remove(&key);
            if let Some(n) = firing.per_group.get_mut(&key.0) {
                *n -= 1;
                if *n == 0 {
                    firing.per_group.remove(&key.0);
                }
            }
        }
        let next = w
            .backlog
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pop_front();
        if let Some(next) = next
            && let Err(next) = start_firing(&s, &w, next)
        {
            (w.backlog.lock().unwrap_or_else(|p| p.into_inner())).push_front(next);
        }
    });
    Ok(())
}

fn firing_here(s: &Scheduler, key: &EntryKey) -> bool {
    (s.firing.lock().unwrap_or_else(|p| p.into_inner()))
        .keys
        .contains(key)
}

/// When entry `id` fires next, from the cache while it is fresh and not yet due, else read
/// (and cached); `None` for an entry that is gone.
async fn next_firing(
    s: &Scheduler,
    group: &Group,
    id: String,
    now: DateTime<Utc>,
) -> Result<(String, Option<DateTime<Utc>>), outrider_blocks::state::StateError> {
    let key = cache_key(group, &id);
    let cached = (s.cache.lock().unwrap_or_else(|p| p.into_inner()))
        .get(&key)
        .copied();
    if let Some((next, read)) = cached
        && read.elapsed() < CACHE_FOR
        && next > now
    {
        return Ok((id, Some(next)));
    }
    let Some(e) = s.schedules.get(group, &id).await? else {
        return Ok((id, None));
    };
    let read = tokio::time::Instant::now();
    (s.cache.lock().unwrap_or_else(|p| p.into_inner())).insert(key, (e.next, read));
    Ok((id, Some(e.next)))
}

fn lease_end(from: DateTime<Utc>) -> DateTime<Utc> {
    from + TimeDelta::from_std(LEASE).unwrap_or_default()
}

/// One firing: leased, delivered (the lease extended meanwhile, never cutting the delivery
/// short), then recorded, unless the lease was lost (then whoever holds it records it).
async fn fire(s: &Scheduler, w: &Watched, id: &str) {
    let mut leased = match s.schedules.lease(&w.group, id, Utc::now(), LEASE).await {
        Ok(Some(l)) => l,
        Ok(None) => return,
        Err(e) => {
            tracing::warn!(error = %e, id, "leasing a reminder or job failed");
            return;
        }
    };
    let mut delivery = w.kind.deliver(leased.entry.clone());
    let mut held = true;
    let delivered = loop {
        tokio::select! {
            d = &mut delivery => break d,
            () = tokio::time::sleep(LEASE / 3), if held => {
                // Not inside the select: an extension is never cut off half-way.
                match s.schedules.extend(&w.group, &mut leased, lease_end(Utc::now())).await {
                    Ok(true) => {}
                    Ok(false) => {
                        tracing::warn!(id, "another host took over a firing that ran long");
                        held = false;
                    }
                    Err(e) => tracing::warn!(error = %e, id, "extending a firing's lease failed"),
                }
            }
        }
    };
    if !held {
        return;
    }
    let recorded = match delivered {
        Delivered::Done => s.schedules.done(&w.group, leased).await,
        Delivered::Cancelled => s.schedules.end(&w.group, leased).await,
    };
    match recorded {
        Ok(true) => {}
        Ok(false) => tracing::warn!(
            id,
            "a firing's lease was lost before it was recorded; it fires again"
        ),
        Err(e) => tracing::warn!(error = %e, id, "recording a firing failed; it fires again"),
    }
}
