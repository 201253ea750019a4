//! Exactly one activation while hosts die and join: three sidecars of one app host an actor
//! type with its state in Redis (or PostgreSQL); 1 000 actors are called concurrently through
//! every live sidecar; midway one host is SIGKILLed (sidecar and app) and a fourth joins. Every
//! call ends in success after retries of what failed before anything ran; no actor ever runs two
//! turns at once (every app reports to one watcher); and each actor's counter equals its
//! successful calls, give or take the calls whose outcome was lost with the killed host.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use outrider_testkit::{ActorApp, Mesh, Postgres, RedisServer, Sidecar, Turns, send, unique};
use serde_json::json;

use super::{host, wait_hosting};

const ACTORS: usize = 1000;
const CALLS_PER_ACTOR: usize = 2;
const CONCURRENCY: usize = 32;

/// What became of the calls to one actor.
#[derive(Default, Debug, Clone, Copy)]
struct Tally {
    ok: u64,
    /// Failed in a way that does not say whether the turn ran (the host died mid-call).
    unknown: u64,
}

/// Whether a failed answer says that nothing ran: daprd's messages for an actor with no host
/// yet, one moving between hosts, or a host that cannot be reached.
fn nothing_ran(status: u16, body: &str) -> bool {
    status == 500
        && [
            "did not find address",
            "moving between hosts",
            "moved to",
            "not registered",
            "connecting to",
            "try again",
            "no endpoints found",
            "cannot reach",
        ]
        .iter()
        .any(|s| body.contains(s))
}

fn component(kind: &str, store: &str, table: &str) -> String {
    match kind {
        "redis" => format!(
            "kind: Component\nmetadata: {{name: actorstore}}\nspec:\n  type: state.redis\n  \
             version: v1\n  metadata:\n  - {{name: redisHost, value: \"{store}\"}}\n  \
             - {{name: actorStateStore, value: \"true\"}}\n"
        ),
        _ => format!(
            "kind: Component\nmetadata: {{name: actorstore}}\nspec:\n  type: state.postgresql\n  \
             version: v1\n  metadata:\n  - {{name: connectionString, value: \"{store}\"}}\n  \
             - {{name: tableName, value: {table}}}\n  - {{name: actorStateStore, value: \"true\"}}\n"
        ),
    }
}

async fn churn(kind: &str, store: &str, table: &str) {
    let mesh = Mesh::new();
    let res = mesh.resources("res", "actors.yaml", &component(kind, store, table));
    // A type of its own, so that no claim of an earlier run is met.
    let actor_type = unique("Counter").replace('-', "");
    let config = json!({"entities": [actor_type]});
    let turns = Turns::default();
    let mut hosts: Vec<(Sidecar, ActorApp)> = Vec::new();
    for i in 0..3 {
        let app = ActorApp::start(&format!("h{i}"), config.clone(), turns.clone()).await;
        let s = host(&mesh, "counter", &res, &app).await;
        hosts.push((s, app));
    }
    let callers: Arc<Mutex<Vec<String>>> =
        Arc::new(Mutex::new(hosts.iter().map(|(s, _)| s.api_url()).collect()));
    let tally: Arc<Mutex<HashMap<usize, Tally>>> = Arc::default();
    let retried = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let work: Arc<Mutex<Vec<usize>>> = Arc::new(Mutex::new(
        (0..ACTORS * CALLS_PER_ACTOR).map(|n| n % ACTORS).collect(),
    ));
    let done = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut workers = tokio::task::JoinSet::new();
    for w in 0..CONCURRENCY {
        let (callers, tally, work, done, retried, t) = (
            callers.clone(),
            tally.clone(),
            work.clone(),
            done.clone(),
            retried.clone(),
            actor_type.clone(),
        );
        workers.spawn(async move {
            loop {
                let Some(id) = work.lock().unwrap().pop() else {
                    return;
                };
                let mut attempt = 0usize;
                loop {
                    attempt += 1;
                    assert!(attempt < 60, "actor {id} never answered");
                    let base = {
                        let c = callers.lock().unwrap();
                        c[(w + attempt) % c.len()].clone()
                    };
                    let url = format!("{base}/v1.0/actors/{t}/a{id}/method/increment");
                    match send("POST", &url, &[], "").await {
                        Ok(r) if r.status == 200 => {
                            tally.lock().unwrap().entry(id).or_default().ok += 1;
                            break;
                        }
                        Ok(r) if nothing_ran(r.status, &r.text()) => {}
                        Ok(r) => {
                            // The turn may have run (the app failed mid-way): counted as unknown.
                            eprintln!("actor a{id}: {} {}", r.status, r.text());
                            tally.lock().unwrap().entry(id).or_default().unknown += 1;
                        }
                        // The caller's sidecar died with the call: unknown too.
                        Err(_) => tally.lock().unwrap().entry(id).or_default().unknown += 1,
                    }
                    retried.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                done.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        });
    }

    // Midway, a host dies (sidecar and app) and another joins.
    let half = ACTORS * CALLS_PER_ACTOR / 2;
    outrider_testkit::wait_until(Duration::from_secs(120), "half of the calls", || async {
        (done.load(std::sync::atomic::Ordering::Relaxed) >= half).then_some(())
    })
    .await;
    let (mut dead, dead_app) = hosts.remove(1);
    callers.lock().unwrap().retain(|u| *u != dead.api_url());
    dead.signal(nix::sys::signal::Signal::SIGKILL);
    dead.kill().await;
    drop(dead_app);
    let app = ActorApp::start("h3", config.clone(), turns.clone()).await;
    let s = host(&mesh, "counter", &res, &app).await;
    callers.lock().unwrap().push(s.api_url());
    hosts.push((s, app));

    while let Some(w) = workers.join_next().await {
        w.unwrap();
    }
    assert_eq!(turns.overlaps(), 0, "an actor ran two turns at once");
    let tally = tally.lock().unwrap().clone();
    let (mut ok, mut unknown) = (0, 0);
    let reader = &hosts[0].0;
    for id in 0..ACTORS {
        let t = tally.get(&id).copied().unwrap_or_default();
        ok += t.ok;
        unknown += t.unknown;
        assert_eq!(t.ok, CALLS_PER_ACTOR as u64, "actor a{id}: {t:?}");
        let r = send(
            "GET",
            &format!(
                "{}/v1.0/actors/{actor_type}/a{id}/state/count",
                reader.api_url()
            ),
            &[],
            "",
        )
        .await
        .unwrap();
        let count: u64 = r.text().parse().unwrap_or(0);
        assert!(
            count >= t.ok && count <= t.ok + t.unknown,
            "actor a{id}: counter {count} for {t:?}"
        );
    }
    eprintln!(
        "churn ({kind}): {ok} calls succeeded, {} tries repeated, {unknown} outcomes lost with the \
         killed host, 0 overlapping turns",
        retried.load(std::sync::atomic::Ordering::Relaxed)
    );
    for (s, _) in &hosts {
        wait_hosting(s).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_activation_per_actor_while_hosts_die_and_join_redis() {
    let redis = RedisServer::start();
    churn("redis", &format!("127.0.0.1:{}", redis.port), "").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_activation_per_actor_while_hosts_die_and_join_postgres() {
    let pg = Postgres::start();
    churn("postgres", &pg.conn, &pg.table).await;
}
