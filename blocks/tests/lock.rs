//! The lock conformance suite: every lock store is held to the [`LockStore`] contract by the
//! same checks.

use std::any::Any;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use outrider_blocks::lock::{
    LockStore, MemoryLock, RedisLock, TryLockRequest, UnlockRequest, UnlockStatus,
};
use outrider_blocks::state::RedisSettings;
use outrider_testkit::RedisServer;

fn take(resource: &str, owner: &str, expiry: Duration) -> TryLockRequest {
    TryLockRequest {
        resource_id: resource.into(),
        owner: owner.into(),
        expiry,
    }
}

async fn unlock(s: &dyn LockStore, resource: &str, owner: &str) -> UnlockStatus {
    let req = UnlockRequest {
        resource_id: resource.into(),
        owner: owner.into(),
    };
    s.unlock(req).await.unwrap()
}

const MINUTE: Duration = Duration::from_secs(60);

async fn one_owner_at_a_time(s: Arc<dyn LockStore>) {
    assert!(s.try_lock(take("r", "a", MINUTE)).await.unwrap());
    assert!(!s.try_lock(take("r", "b", MINUTE)).await.unwrap());
    // Not reentrant: the owner's second take is refused too.
    assert!(!s.try_lock(take("r", "a", MINUTE)).await.unwrap());
    // Other resources are independent.
    assert!(s.try_lock(take("r2", "b", MINUTE)).await.unwrap());
    assert_eq!(unlock(&*s, "r", "a").await, UnlockStatus::Success);
    assert!(s.try_lock(take("r", "b", MINUTE)).await.unwrap());
}

async fn unlock_answers_who_holds_it(s: Arc<dyn LockStore>) {
    assert_eq!(
        unlock(&*s, "never", "a").await,
        UnlockStatus::LockDoesNotExist
    );
    assert!(s.try_lock(take("held", "a", MINUTE)).await.unwrap());
    assert_eq!(
        unlock(&*s, "held", "b").await,
        UnlockStatus::LockBelongsToOthers
    );
    // A refused unlock changed nothing: the owner still holds it.
    assert!(!s.try_lock(take("held", "b", MINUTE)).await.unwrap());
    assert_eq!(unlock(&*s, "held", "a").await, UnlockStatus::Success);
    assert_eq!(
        unlock(&*s, "held", "a").await,
        UnlockStatus::LockDoesNotExist
    );
}

/// The lock holds before its expiry and is free after it; the old owner's unlock then finds
/// another owner's lock and leaves it.
async fn an_expired_lock_goes_to_the_next_owner(s: Arc<dyn LockStore>) {
    let expiry = Duration::from_millis(300);
    assert!(s.try_lock(take("e", "a", expiry)).await.unwrap());
    assert!(!s.try_lock(take("e", "b", MINUTE)).await.unwrap());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        if s.try_lock(take("e", "b", MINUTE)).await.unwrap() {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "never expired");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        unlock(&*s, "e", "a").await,
        UnlockStatus::LockBelongsToOthers
    );
    assert_eq!(unlock(&*s, "e", "b").await, UnlockStatus::Success);
}

/// 16 callers race for one free lock: exactly one wins.
async fn exactly_one_racer_wins(s: Arc<dyn LockStore>) {
    let racers: Vec<_> = (0..16)
        .map(|i| {
            let s = s.clone();
            tokio::spawn(async move { s.try_lock(take("race", &format!("o{i}"), MINUTE)).await })
        })
        .collect();
    let mut won = 0;
    for r in racers {
        won += usize::from(r.await.unwrap().unwrap());
    }
    assert_eq!(won, 1);
}

/// 8 workers each add 25 to a counter with a read, a pause and a write, under the lock: no
/// increment is lost, and no two workers were ever inside at once.
async fn a_counter_under_the_lock_loses_nothing(s: Arc<dyn LockStore>) {
    let counter = Arc::new(AtomicU64::new(0));
    let inside = Arc::new(AtomicU64::new(0));
    let workers: Vec<_> = (0..8)
        .map(|w| {
            let (s, counter, inside) = (s.clone(), counter.clone(), inside.clone());
            tokio::spawn(async move {
                let owner = format!("worker-{w}");
                for _ in 0..25 {
                    while !s.try_lock(take("counter", &owner, MINUTE)).await.unwrap() {
                        tokio::task::yield_now().await;
                    }
                    assert_eq!(inside.fetch_add(1, Ordering::SeqCst), 0, "two inside");
                    let seen = counter.load(Ordering::SeqCst);
                    tokio::task::yield_now().await;
                    counter.store(seen + 1, Ordering::SeqCst);
                    inside.fetch_sub(1, Ordering::SeqCst);
                    assert_eq!(unlock(&*s, "counter", &owner).await, UnlockStatus::Success);
                }
            })
        })
        .collect();
    for w in workers {
        w.await.unwrap();
    }
    assert_eq!(counter.load(Ordering::SeqCst), 200);
}

async fn ids_and_owners_are_opaque(s: Arc<dyn LockStore>) {
    for (id, owner) in [
        ("a'b\"; DEL *; --", "o'\""),
        ("ключ/😀", "владелец"),
        ("", "empty-id"),
        ("x", "a b\tc\n"),
    ] {
        assert!(s.try_lock(take(id, owner, MINUTE)).await.unwrap(), "{id:?}");
        assert_eq!(
            unlock(&*s, id, &format!("{owner}x")).await,
            UnlockStatus::LockBelongsToOthers
        );
        assert_eq!(
            unlock(&*s, id, owner).await,
            UnlockStatus::Success,
            "{id:?}"
        );
    }
}

macro_rules! conformance {
    ($store:ident, $make:expr) => {
        mod $store {
            use super::*;

            #[allow(clippy::redundant_closure_call)]
            async fn make() -> (Arc<dyn LockStore>, Box<dyn Any + Send>) {
                ($make)().await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn one_owner_at_a_time() {
                let (s, _g) = make().await;
                super::one_owner_at_a_time(s).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn unlock_answers_who_holds_it() {
                let (s, _g) = make().await;
                super::unlock_answers_who_holds_it(s).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn an_expired_lock_goes_to_the_next_owner() {
                let (s, _g) = make().await;
                super::an_expired_lock_goes_to_the_next_owner(s).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn exactly_one_racer_wins() {
                let (s, _g) = make().await;
                super::exactly_one_racer_wins(s).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn a_counter_under_the_lock_loses_nothing() {
                let (s, _g) = make().await;
                super::a_counter_under_the_lock_loses_nothing(s).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn ids_and_owners_are_opaque() {
                let (s, _g) = make().await;
                super::ids_and_owners_are_opaque(s).await;
            }
        }
    };
}

conformance!(memory, || async {
    (
        Arc::new(MemoryLock::new()) as Arc<dyn LockStore>,
        Box::new(()) as Box<dyn Any + Send>,
    )
});
conformance!(redis, || async {
    let server = RedisServer::start();
    let s = RedisLock::connect(&RedisSettings::plain("127.0.0.1", server.port))
        .await
        .unwrap();
    (
        Arc::new(s) as Arc<dyn LockStore>,
        Box::new(server) as Box<dyn Any + Send>,
    )
});

/// A primary with a replica could lose a lock in a failover: it is refused, saying why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_with_replicas_is_refused() {
    let primary = RedisServer::start();
    let port = primary.port.to_string();
    let _replica = RedisServer::start_with(&["--save", "", "--replicaof", "127.0.0.1", &port]);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let refusal = loop {
        match RedisLock::connect(&RedisSettings::plain("127.0.0.1", primary.port)).await {
            Err(e) => break e.to_string(),
            Ok(_) => {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "the replica never attached"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    assert!(refusal.contains("1 replica(s)"), "{refusal}");
}
