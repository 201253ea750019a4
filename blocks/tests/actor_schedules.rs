//! Durable reminders and jobs on every store that can hold actors (`actors::durable`): listed
//! through the index, leased by one host at a time, advanced or ended by the host that fired,
//! and never brought back once deleted.

use std::any::Any;
use std::sync::Arc;
use std::time::Duration;

use chrono::{TimeDelta, Utc};
use outrider_blocks::actors::durable::{Entry, Group, PARTITIONS, PutError, Schedules};
use outrider_blocks::actors::schedule::Firings;
use outrider_blocks::state::StateStore;

fn group() -> Group {
    Group::reminders(
        "default",
        &format!("app-{}", uuid::Uuid::new_v4()),
        "Counter",
    )
}

/// An entry due now, repeating every second `repeats` times in all (or once).
fn entry(id: &str, repeats: Option<u32>) -> Entry {
    let period = repeats.map(|n| format!("R{n}/PT1S")).unwrap_or_default();
    let firings = Firings::from_request("", &period, "", Utc::now(), false).unwrap();
    Entry::new(id.to_owned(), &firings, &period)
}

async fn listed(s: &Schedules, g: &Group) -> Vec<String> {
    let mut all = Vec::new();
    for p in 0..PARTITIONS {
        all.extend(s.partition(g, p).await.unwrap().0);
    }
    all.sort();
    all
}

/// Prunes `ids` from whichever partitions hold them.
async fn prune(s: &Schedules, g: &Group, ids: &[&str]) {
    let ids: Vec<String> = ids.iter().map(|i| (*i).to_owned()).collect();
    for p in 0..PARTITIONS {
        s.prune(g, p, &ids).await.unwrap();
    }
}

const LEASE: Duration = Duration::from_secs(30);

async fn entries_are_listed_replaced_and_removed(s: Schedules) {
    let g = group();
    for id in ["a||r1", "a||r2", "b||r1"] {
        s.put(&g, &entry(id, None), false).await.unwrap();
    }
    assert_eq!(listed(&s, &g).await, ["a||r1", "a||r2", "b||r1"]);
    assert!(matches!(
        s.put(&g, &entry("a||r1", Some(2)), false).await,
        Err(PutError::Exists)
    ));
    s.put(&g, &entry("a||r1", Some(2)), true).await.unwrap();
    assert!(s.get(&g, "a||r1").await.unwrap().unwrap().every.is_some());
    s.delete(&g, "a||r2").await.unwrap();
    s.delete(&g, "never").await.unwrap();
    assert_eq!(s.get(&g, "a||r2").await.unwrap(), None);
    // Listed until pruned; pruning keeps what still exists.
    prune(&s, &g, &["a||r1", "a||r2", "b||r1"]).await;
    assert_eq!(listed(&s, &g).await, ["a||r1", "b||r1"]);
    // Made again after it was removed.
    s.put(&g, &entry("a||r2", None), false).await.unwrap();
    assert_eq!(listed(&s, &g).await.len(), 3);
}

async fn a_firing_is_leased_once_then_advanced_or_ended(s: Schedules) {
    let g = group();
    s.put(&g, &entry("twice", Some(2)), false).await.unwrap();
    let now = Utc::now();
    let leased = s
        .lease(&g, "twice", now, LEASE)
        .await
        .unwrap()
        .expect("due now");
    assert!(
        s.lease(&g, "twice", now, LEASE).await.unwrap().is_none(),
        "leased twice"
    );
    assert!(s.done(&g, leased).await.unwrap());
    let e = s.get(&g, "twice").await.unwrap().unwrap();
    assert_eq!(e.fired, 1);
    assert!(e.next > now, "the next firing is later");
    assert!(
        s.lease(&g, "twice", now, LEASE).await.unwrap().is_none(),
        "not due yet"
    );
    let later = e.next + TimeDelta::milliseconds(1);
    let leased = s
        .lease(&g, "twice", later, LEASE)
        .await
        .unwrap()
        .expect("due");
    assert!(s.done(&g, leased).await.unwrap());
    assert_eq!(s.get(&g, "twice").await.unwrap(), None, "spent entries end");
    prune(&s, &g, &["twice"]).await;
    assert!(listed(&s, &g).await.is_empty());
    // A firing its kind cancels ends the entry at once, whatever repetitions are left.
    s.put(&g, &entry("forever", None), false).await.unwrap();
    let leased = s
        .lease(&g, "forever", Utc::now(), LEASE)
        .await
        .unwrap()
        .expect("due");
    assert!(s.end(&g, leased).await.unwrap());
    prune(&s, &g, &["forever"]).await;
    assert_eq!(
        s.get(&g, "forever").await.unwrap(),
        None,
        "cancelled entries end"
    );
    assert!(listed(&s, &g).await.is_empty());
}

async fn racing_hosts_fire_once(s: Schedules) {
    let g = group();
    s.put(&g, &entry("once", None), false).await.unwrap();
    let now = Utc::now();
    let mut racing = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let (s, g) = (s.clone(), g.clone());
        racing.spawn(async move { s.lease(&g, "once", now, LEASE).await.unwrap().is_some() });
    }
    let mut won = 0;
    while let Some(r) = racing.join_next().await {
        won += usize::from(r.unwrap());
    }
    assert_eq!(won, 1);
}

async fn an_ended_lease_fires_again_and_a_deleted_entry_stays_deleted(s: Schedules) {
    let g = group();
    s.put(&g, &entry("r", Some(5)), false).await.unwrap();
    let now = Utc::now();
    let first = s
        .lease(&g, "r", now, Duration::from_secs(1))
        .await
        .unwrap()
        .unwrap();
    // The first host died: after its lease, another fires it, and the first's late report
    // changes nothing.
    let after = now + TimeDelta::seconds(2);
    let second = s
        .lease(&g, "r", after, LEASE)
        .await
        .unwrap()
        .expect("lease ended");
    assert!(!s.done(&g, first).await.unwrap());
    assert!(s.done(&g, second).await.unwrap());
    assert_eq!(s.get(&g, "r").await.unwrap().unwrap().fired, 1);
    // Deleted while a firing is under way: the firing's report does not bring it back.
    let e = s.get(&g, "r").await.unwrap().unwrap();
    let firing = s.lease(&g, "r", e.next, LEASE).await.unwrap().unwrap();
    s.delete(&g, "r").await.unwrap();
    assert!(!s.done(&g, firing).await.unwrap());
    assert_eq!(s.get(&g, "r").await.unwrap(), None);
    prune(&s, &g, &["r"]).await;
    assert!(listed(&s, &g).await.is_empty());
    // Pruned while made again: the new entry stays listed.
    s.put(&g, &entry("r", None), false).await.unwrap();
    prune(&s, &g, &["r"]).await;
    assert_eq!(listed(&s, &g).await, ["r"]);
}

macro_rules! conformance {
    ($store:ident, $make:expr) => {
        mod $store {
            use super::*;

            #[allow(clippy::redundant_closure_call)]
            async fn make() -> (Schedules, Box<dyn Any + Send>) {
                let (s, guard): (Arc<dyn StateStore>, Box<dyn Any + Send>) = ($make)().await;
                (Schedules::new(s), guard)
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn entries_are_listed_replaced_and_removed() {
                let (s, _g) = make().await;
                super::entries_are_listed_replaced_and_removed(s).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn a_firing_is_leased_once_then_advanced_or_ended() {
                let (s, _g) = make().await;
                super::a_firing_is_leased_once_then_advanced_or_ended(s).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn racing_hosts_fire_once() {
                let (s, _g) = make().await;
                super::racing_hosts_fire_once(s).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn an_ended_lease_fires_again_and_a_deleted_entry_stays_deleted() {
                let (s, _g) = make().await;
                super::an_ended_lease_fires_again_and_a_deleted_entry_stays_deleted(s).await;
            }
        }
    };
}

#[path = "state/open.rs"]
mod open;

conformance!(memory, open::memory);
conformance!(sqlite, open::sqlite);
conformance!(redis, open::redis);
conformance!(postgres, open::postgres);
conformance!(mysql, open::mysql);
