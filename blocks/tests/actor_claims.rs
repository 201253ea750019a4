//! Exactly one activation, on every store that can hold actors: host sessions and actor claims
//! (`actors::claim`) held to one contract by the same checks.

use std::any::Any;
use std::sync::Arc;
use std::time::Duration;

use outrider_blocks::actors::claim::{Claimed, Holder, RenewError, SESSION_TTL, Session};
use outrider_blocks::state::StateStore;

fn host(name: &str) -> Holder {
    Holder {
        session: format!("{name}-{}", uuid::Uuid::new_v4()),
        app_id: name.to_owned(),
        namespace: "default".to_owned(),
        address: format!("127.0.0.1:{}", 40000 + name.len()),
    }
}

/// A unique actor id per run, so that stores shared between runs never see an old claim.
fn actor() -> String {
    format!("actor-{}", uuid::Uuid::new_v4())
}

async fn one_live_holder_at_a_time(store: Arc<dyn StateStore>) {
    let a = Session::start(store.clone(), host("a")).await.unwrap();
    let b = Session::start(store.clone(), host("b")).await.unwrap();
    let id = actor();
    let Claimed::Mine(claim) = a.claim("Counter", &id).await.unwrap() else {
        panic!("a free actor was not taken");
    };
    assert!(matches!(
        a.claim("Counter", &id).await.unwrap(),
        Claimed::Mine(_)
    ));
    match b.claim("Counter", &id).await.unwrap() {
        Claimed::Held(h) => assert_eq!(&h, a.me()),
        other => panic!("another live host's actor was answered with {other:?}"),
    }
    // Another type, or another id, is another actor.
    assert!(matches!(
        b.claim("Other", &id).await.unwrap(),
        Claimed::Mine(_)
    ));
    a.release(claim).await.unwrap();
    assert!(matches!(
        b.claim("Counter", &id).await.unwrap(),
        Claimed::Mine(_)
    ));
    assert!(matches!(
        a.claim("Counter", &id).await.unwrap(),
        Claimed::Held(_)
    ));
}

async fn racers_make_exactly_one_holder(store: Arc<dyn StateStore>) {
    let id = actor();
    let mut sessions = Vec::new();
    for i in 0..8 {
        sessions.push(
            Session::start(store.clone(), host(&format!("h{i}")))
                .await
                .unwrap(),
        );
    }
    let mut racing = tokio::task::JoinSet::new();
    for s in &sessions {
        let (s, id) = (s.clone(), id.clone());
        racing.spawn(async move { s.claim("Counter", &id).await.unwrap() });
    }
    let (mut mine, mut held) = (0, 0);
    while let Some(r) = racing.join_next().await {
        match r.unwrap() {
            Claimed::Mine(_) => mine += 1,
            Claimed::Held(_) => held += 1,
            Claimed::Contended => {}
        }
    }
    assert_eq!(mine, 1, "{mine} hosts took one actor ({held} saw it held)");
}

async fn a_dead_hosts_actors_are_free_after_its_session_expires(store: Arc<dyn StateStore>) {
    let a = Session::start(store.clone(), host("a")).await.unwrap();
    let b = Session::start(store.clone(), host("b")).await.unwrap();
    let id = actor();
    assert!(matches!(
        a.claim("Counter", &id).await.unwrap(),
        Claimed::Mine(_)
    ));
    // `a` stops renewing (it died); `b` keeps its own session alive meanwhile.
    let started = tokio::time::Instant::now();
    let deadline = started + SESSION_TTL * 3;
    loop {
        b.renew().await.unwrap();
        match b.claim("Counter", &id).await.unwrap() {
            Claimed::Mine(_) => break,
            Claimed::Held(_) => {}
            Claimed::Contended => panic!("nobody else was racing"),
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the dead host's claim never freed"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        started.elapsed() >= SESSION_TTL - Duration::from_secs(1),
        "taken over after {:?}, while the holder's session could still be alive",
        started.elapsed()
    );
    // The old host learns it lost its session, and stops trusting it.
    assert!(matches!(a.renew().await, Err(RenewError::Lost(_))));
    assert!(!a.valid());
    assert!(b.valid());
}

async fn a_clean_stop_frees_actors_at_once(store: Arc<dyn StateStore>) {
    let a = Session::start(store.clone(), host("a")).await.unwrap();
    let b = Session::start(store.clone(), host("b")).await.unwrap();
    let id = actor();
    let Claimed::Mine(mut claim) = a.claim("Counter", &id).await.unwrap() else {
        panic!("a free actor was not taken");
    };
    assert!(a.refresh(&mut claim).await.unwrap());
    a.end().await;
    assert!(!a.valid());
    assert!(matches!(
        b.claim("Counter", &id).await.unwrap(),
        Claimed::Mine(_)
    ));
    // The old claim is no longer the holder's: refreshing says so, releasing leaves `b`'s.
    assert!(!a.refresh(&mut claim).await.unwrap());
    a.release(claim).await.unwrap();
    let c = Session::start(store.clone(), host("c")).await.unwrap();
    assert!(matches!(
        c.claim("Counter", &id).await.unwrap(),
        Claimed::Held(_)
    ));
}

async fn a_stale_claim_never_touches_the_next_holders(store: Arc<dyn StateStore>) {
    let a = Session::start(store.clone(), host("a")).await.unwrap();
    let b = Session::start(store.clone(), host("b")).await.unwrap();
    let id = actor();
    let (Claimed::Mine(first), Claimed::Mine(mut stale)) = (
        a.claim("Counter", &id).await.unwrap(),
        a.claim("Counter", &id).await.unwrap(),
    ) else {
        panic!("a free actor was not taken");
    };
    a.release(first).await.unwrap();
    // `b` makes the claim anew: on stores that number ETags, with the very ETag `stale` holds.
    assert!(matches!(
        b.claim("Counter", &id).await.unwrap(),
        Claimed::Mine(_)
    ));
    assert!(
        !a.refresh(&mut stale).await.unwrap(),
        "a stale claim was refreshed"
    );
    a.release(stale).await.unwrap();
    match a.claim("Counter", &id).await.unwrap() {
        Claimed::Held(h) => assert_eq!(&h, b.me()),
        other => panic!("the next holder's claim was touched: {other:?}"),
    }
}

macro_rules! conformance {
    ($store:ident, $make:expr) => {
        mod $store {
            use super::*;

            #[allow(clippy::redundant_closure_call)]
            async fn make() -> (Arc<dyn StateStore>, Box<dyn Any + Send>) {
                ($make)().await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn one_live_holder_at_a_time() {
                let (s, _g) = make().await;
                super::one_live_holder_at_a_time(s).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn racers_make_exactly_one_holder() {
                let (s, _g) = make().await;
                super::racers_make_exactly_one_holder(s).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn a_dead_hosts_actors_are_free_after_its_session_expires() {
                let (s, _g) = make().await;
                super::a_dead_hosts_actors_are_free_after_its_session_expires(s).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn a_stale_claim_never_touches_the_next_holders() {
                let (s, _g) = make().await;
                super::a_stale_claim_never_touches_the_next_holders(s).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn a_clean_stop_frees_actors_at_once() {
                let (s, _g) = make().await;
                super::a_clean_stop_frees_actors_at_once(s).await;
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
