//! Durable schedules: actor reminders and jobs, kept in the actor state store so that they
//! survive any host.
//!
//! Each entry is one key, holding what was asked (`data`, the time fields as given) and where it
//! stands (firings so far, the next one). Each group (the reminders of one actor type, the jobs
//! of one app) has an index spread over [`PARTITIONS`] keys, so that a host can list the group
//! without a query API (Redis has none). An entry is listed in the same transaction that makes
//! it; an entry that ends becomes a tombstone at once, and its id leaves the index later, when a
//! look over the group prunes it (many firings ending at once never race for the index).
//!
//! A firing is leased: the host about to fire writes its lease into the entry by
//! compare-and-set, and writes the outcome (the next firing, or the entry's end) by
//! compare-and-set on that write. Two hosts never fire one entry at once while a lease runs; a
//! host that dies mid-firing leaves a lease that ends, and the entry fires again elsewhere: at
//! least once.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures_util::{StreamExt as _, TryStreamExt as _};
use serde::{Deserialize, Serialize};

use crate::state::{Concurrency, Metadata, Operation, Options, SetRequest, StateError, StateStore};

use super::schedule::{Firings, Period};

mod lease;

/// What a removed entry's key holds for a while: a firing under way when it was removed finds
/// it changed and does not bring the entry back (some stores accept an ETag for a missing key).
const TOMBSTONE: &[u8] = b"{\"removed\":true}";
/// How long a tombstone stays: longer than any lease.
const TOMBSTONE_TTL: &str = "300";
/// Index partitions per group.
pub const PARTITIONS: usize = 16;
/// Entries read at once while pruning a partition.
const PRUNE_READS: usize = 32;

/// A pause of 1 to `2 × attempt` ms before another try at a contended index partition.
fn jitter(attempt: usize) -> Duration {
    let spread = u32::try_from(attempt.min(32) * 2).unwrap_or(64);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    Duration::from_millis(1 + u64::from(nanos % spread))
}

/// How many times a race on an index partition is tried again.
const INDEX_ATTEMPTS: usize = 16;

/// Entries of one kind and owner: `reminders||<app-id>||<type>` or `jobs||<app-id>`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Group {
    namespace: String,
    name: String,
}

impl Group {
    /// The reminders of actor type `actor_type` hosted by `app_id`.
    pub fn reminders(namespace: &str, app_id: &str, actor_type: &str) -> Self {
        Self {
            namespace: namespace.to_owned(),
            name: format!("reminders||{app_id}||{actor_type}"),
        }
    }

    /// The jobs of `app_id`.
    pub fn jobs(namespace: &str, app_id: &str) -> Self {
        Self {
            namespace: namespace.to_owned(),
            name: format!("jobs||{app_id}"),
        }
    }

    fn entry_key(&self, id: &str) -> String {
        format!("||sched||{}||{}||{id}", self.namespace, self.name)
    }

    fn partition_key(&self, p: usize) -> String {
        format!("||sched-index||{}||{}||{p}", self.namespace, self.name)
    }
}

/// The partition of entry `id`: FNV-1a, so that every host agrees.
fn partition_of(id: &str) -> usize {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in id.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    (h % PARTITIONS as u64) as usize
}

/// One reminder or job.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Entry {
    /// Its id in the group: `<actor-id>||<name>` for a reminder, the name for a job.
    pub id: String,
    /// What it carries to the app, as JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<serde_json::Value>,
    /// The request's time fields, as given.
    #[serde(default)]
    pub due_time: String,
    /// The period (reminders) as given.
    #[serde(default)]
    pub period: String,
    /// The TTL as given.
    #[serde(default)]
    pub ttl: String,
    /// Anything else the kind keeps (a job's schedule and failure policy).
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub extra: serde_json::Value,
    /// The first firing, the period and the end, resolved when it was made.
    pub due: DateTime<Utc>,
    /// How it repeats, if it does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub every: Option<Every>,
    /// No firing at or after this time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<DateTime<Utc>>,
    /// Firings done.
    #[serde(default)]
    pub fired: u32,
    /// The next firing.
    pub next: DateTime<Utc>,
    /// A firing under way: until when its host holds it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leased_until: Option<DateTime<Utc>>,
}

/// How an entry repeats: a period (reminders, `@every` jobs) or a cron expression (jobs).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Every {
    /// The period as given (re-read with [`Period::parse`]).
    Period(String),
    /// A Go duration between firings (`@every`), with at most `repeats` firings.
    Interval {
        /// The duration as given.
        every: String,
        /// Firings in all, when bounded.
        repeats: Option<u32>,
    },
    /// A cron schedule, with at most `repeats` firings.
    Cron {
        /// The expression.
        expr: String,
        /// Firings in all, when bounded.
        repeats: Option<u32>,
    },
}

impl Entry {
    /// A new entry firing as `firings` says; `period` is the text `firings.period` came from.
    pub fn new(id: String, firings: &Firings, period: &str) -> Self {
        Self {
            id,
            data: None,
            due_time: String::new(),
            period: period.to_owned(),
            ttl: String::new(),
            extra: serde_json::Value::Null,
            due: firings.due,
            every: firings.period.map(|_| Every::Period(period.to_owned())),
            expires: firings.expires,
            fired: 0,
            next: firings.due,
            leased_until: None,
        }
    }

    /// The firing after the one at `self.next`, if any.
    pub fn following(&self) -> Option<DateTime<Utc>> {
        let fired = self.fired + 1;
        let at = match &self.every {
            None => None,
            Some(Every::Period(p)) => {
                let period = Period::parse(p).ok()?;
                Firings {
                    due: self.due,
                    period: Some(period),
                    expires: None,
                }
                .next(fired, self.next)
            }
            Some(Every::Interval { every, repeats }) => {
                let mut period = Period::parse(every).ok()?;
                period.repetitions = *repeats;
                Firings {
                    due: self.due,
                    period: Some(period),
                    expires: None,
                }
                .next(fired, self.next)
            }
            Some(Every::Cron { expr, repeats }) => {
                if repeats.is_some_and(|n| fired >= n) {
                    None
                } else {
                    next_cron(expr, self.next).ok()
                }
            }
        }?;
        self.expires.is_none_or(|e| at < e).then_some(at)
    }
}

/// The first time `expr` (a cron expression or descriptor, in UTC) names after `after`.
pub fn next_cron(expr: &str, after: DateTime<Utc>) -> Result<DateTime<Utc>, String> {
    crate::bindings::cron::cron_expression(expr)?
        .find_next_occurrence(&after, false)
        .map_err(|e| format!("{expr:?} names no time after {after}: {e}"))
}

/// The durable schedules of one store.
#[derive(Clone)]
pub struct Schedules {
    store: Arc<dyn StateStore>,
}

/// Why an entry could not be written.
#[derive(Debug, thiserror::Error)]
pub enum PutError {
    /// It exists and was not to be overwritten.
    #[error("it exists already")]
    Exists,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StateError),
}

/// A firing this host holds: the entry as leased, and the ETag of that write.
#[derive(Debug)]
pub struct Leased {
    /// The entry, as leased.
    pub entry: Entry,
    etag: Option<String>,
}

fn json_bytes<T: Serialize>(v: &T) -> Bytes {
    Bytes::from(serde_json::to_vec(v).unwrap_or_default())
}

impl Schedules {
    /// The schedules kept in `store` (the actor state store).
    pub fn new(store: Arc<dyn StateStore>) -> Self {
        Self { store }
    }

    /// Reads an entry.
    pub async fn get(&self, group: &Group, id: &str) -> Result<Option<Entry>, StateError> {
        Ok(self.read(group, id).await?.map(|(e, _)| e))
    }

    async fn read(
        &self,
        group: &Group,
        id: &str,
    ) -> Result<Option<(Entry, Option<String>)>, StateError> {
        let item = self.store.get(group.entry_key(id), Metadata::new()).await?;
        Ok(item.and_then(|i| {
            let entry = serde_json::from_slice::<Entry>(&i.data).ok()?;
            Some((entry, i.etag))
        }))
    }

    /// The ids in the group's partition `p`, with the partition's ETag.
    pub async fn partition(
        &self,
        group: &Group,
        p: usize,
    ) -> Result<(Vec<String>, Option<String>), StateError> {
        let item = self
            .store
            .get(group.partition_key(p), Metadata::new())
            .await?;
        Ok(match item {
            None => (Vec::new(), None),
            Some(i) => (serde_json::from_slice(&i.data).unwrap_or_default(), i.etag),
        })
    }

    /// Writes `entry` (replacing one of its id unless `!overwrite`) and lists it in its group,
    /// in one transaction.
    pub async fn put(&self, group: &Group, entry: &Entry, overwrite: bool) -> Result<(), PutError> {
        let p = partition_of(&entry.id);
        for attempt in 0..INDEX_ATTEMPTS {
            if attempt > 0 {
                // Many makers racing for one partition: spread their next tries.
                tokio::time::sleep(jitter(attempt)).await;
            }
            let current = self
                .store
                .get(group.entry_key(&entry.id), Metadata::new())
                .await?;
            let current_etag = match current {
                Some(i) if serde_json::from_slice::<Entry>(&i.data).is_ok() && !overwrite => {
                    return Err(PutError::Exists);
                }
                Some(i) => i.etag,
                None => None,
            };
            let (mut ids, etag) = self.partition(group, p).await?;
            if !ids.contains(&entry.id) {
                ids.push(entry.id.clone());
                ids.sort();
            }
            let ops = vec![
                Operation::Upsert(cas(
                    group.entry_key(&entry.id),
                    json_bytes(entry),
                    current_etag,
                )),
                Operation::Upsert(cas(group.partition_key(p), json_bytes(&ids), etag)),
            ];
            match self.store.multi(ops).await {
                Ok(()) => return Ok(()),
                Err(StateError::EtagMismatch(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Err(StateError::EtagMismatch("the schedule index kept changing".into()).into())
    }

    /// Removes an entry (its listing goes at the next [`Schedules::prune`]); a missing one is
    /// fine.
    pub async fn delete(&self, group: &Group, id: &str) -> Result<(), StateError> {
        self.remove(group, id, None).await.map(|_| ())
    }

    /// Replaces the entry with a tombstone (only if its ETag is still `etag`, when given).
    /// `false` when the entry changed meanwhile. Its id stays in the index until [`prune`]
    /// takes it out: removals, one per firing of many at once, never contend for the index.
    ///
    /// [`prune`]: Schedules::prune
    async fn remove(
        &self,
        group: &Group,
        id: &str,
        etag: Option<String>,
    ) -> Result<bool, StateError> {
        let current = self.store.get(group.entry_key(id), Metadata::new()).await?;
        let current_etag = match (current, &etag) {
            (None, None) => return Ok(true),
            (None, Some(_)) => return Ok(false),
            (Some(i), Some(want)) if i.etag.as_ref() != Some(want) => return Ok(false),
            (Some(i), _) => i.etag,
        };
        match self.store.set(tombstone(group, id, current_etag)).await {
            Ok(()) => Ok(true),
            Err(StateError::EtagMismatch(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Takes the ids among `candidates` whose entries are gone (a tombstone, or nothing) out of
    /// partition `p` of the group's index, in one transaction that also checks each is still
    /// gone (an entry made again meanwhile stays listed). When anything changed meanwhile,
    /// nothing is taken out: the next look tries again.
    pub async fn prune(
        &self,
        group: &Group,
        p: usize,
        candidates: &[String],
    ) -> Result<(), StateError> {
        let (ids, index_etag) = self.partition(group, p).await?;
        if index_etag.is_none() {
            return Ok(());
        }
        // Read several at once: the shorter the look, the likelier the index is unchanged.
        // (Owned ids and keys: the reads' futures borrow nothing.)
        let wanted: Vec<String> = (candidates.iter())
            .filter(|c| ids.contains(c))
            .cloned()
            .collect();
        let read: Vec<(String, Option<crate::state::Item>)> = futures_util::stream::iter(wanted)
            .map(|id| {
                let (store, key) = (self.store.clone(), group.entry_key(&id));
                async move { Ok::<_, StateError>((id, store.get(key, Metadata::new()).await?)) }
            })
            .buffer_unordered(PRUNE_READS)
            .try_collect()
            .await?;
        let mut ops = Vec::new();
        let mut gone = Vec::new();
        for (id, item) in read {
            if item
                .as_ref()
                .is_some_and(|i| serde_json::from_slice::<Entry>(&i.data).is_ok())
            {
                continue;
            }
            // Rewritten at the ETag read: the transaction fails if it was made again.
            ops.push(Operation::Upsert(tombstone(
                group,
                &id,
                item.and_then(|i| i.etag),
            )));
            gone.push(id);
        }
        if gone.is_empty() {
            return Ok(());
        }
        let kept: Vec<&String> = ids.iter().filter(|i| !gone.contains(i)).collect();
        ops.push(Operation::Upsert(cas(
            group.partition_key(p),
            json_bytes(&kept),
            index_etag,
        )));
        match self.store.multi(ops).await {
            Ok(()) | Err(StateError::EtagMismatch(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

/// The tombstone of entry `id`, written only if the entry is still at `etag` (absent without
/// one); it expires after [`TOMBSTONE_TTL`] seconds.
fn tombstone(group: &Group, id: &str, etag: Option<String>) -> SetRequest {
    let mut t = cas(group.entry_key(id), Bytes::from_static(TOMBSTONE), etag);
    t.metadata
        .insert("ttlInSeconds".into(), TOMBSTONE_TTL.into());
    t
}

/// A write of `value` under `key` only if the key is still at `etag`, or absent without one.
fn cas(key: String, value: Bytes, etag: Option<String>) -> SetRequest {
    let concurrency = if etag.is_some() {
        Concurrency::LastWrite
    } else {
        Concurrency::FirstWrite
    };
    SetRequest {
        key,
        value,
        etag,
        options: Options {
            concurrency,
            ..Options::default()
        },
        ..SetRequest::default()
    }
}
