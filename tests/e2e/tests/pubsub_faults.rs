//! At-least-once under faults, on a private Redis and a private NATS: 10 000 messages are
//! published while the subscriber's sidecar is SIGKILLed and restarted, the broker is killed and
//! restarted, and the app answers RETRY to a pseudo-random tenth of the messages the first time.
//! Every message must be handled; duplicates (messages the app handled successfully more than
//! once) are allowed by at-least-once and are reported, not asserted.

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use nix::sys::signal::Signal;
use outrider_testkit::{Mesh, Nats, RedisServer, send, wait_until};
use serde_json::{Value, json};

const MESSAGES: usize = 10_000;
const TOPIC: &str = "faults";

/// What the app saw of each message: deliveries answered SUCCESS and RETRY.
#[derive(Default)]
struct Tally {
    successes: Vec<u32>,
    retries: Vec<u32>,
}

/// A pseudo-random tenth of the messages, the same on every run.
fn retried_first(n: usize) -> bool {
    (n.wrapping_mul(2_654_435_761) >> 7).is_multiple_of(10)
}

/// The app: subscribes to the topic and counts each message by its `n`.
async fn counting_app(tally: Arc<Mutex<Tally>>) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let tally = tally.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req| answer(req, tally.clone()));
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tcp), svc)
                    .await;
            });
        }
    });
    port
}

async fn answer(
    req: Request<Incoming>,
    tally: Arc<Mutex<Tally>>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    if req.uri().path() == "/dapr/subscribe" {
        let subs = json!([{"pubsubname": "pubsub", "topic": TOPIC, "route": "/in"}]);
        return Ok(Response::new(Full::new(Bytes::from(subs.to_string()))));
    }
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let n = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| v["data"]["n"].as_u64());
    let Some(n) = n
        .and_then(|n| usize::try_from(n).ok())
        .filter(|n| *n < MESSAGES)
    else {
        return Ok(Response::builder()
            .status(400)
            .body(Full::new(Bytes::from_static(b"no n")))
            .unwrap());
    };
    let status = {
        let mut t = tally.lock().unwrap();
        if retried_first(n) && t.retries[n] == 0 {
            t.retries[n] += 1;
            "RETRY"
        } else {
            t.successes[n] += 1;
            "SUCCESS"
        }
    };
    Ok(Response::new(Full::new(Bytes::from(format!(
        "{{\"status\":\"{status}\"}}"
    )))))
}

/// The broker under test, restartable.
enum Broker {
    Redis(RedisServer),
    Nats(Nats),
}

impl Broker {
    fn component(&self) -> String {
        let (type_, metadata) = match self {
            Broker::Redis(r) => (
                "pubsub.redis",
                vec![
                    ("redisHost", r.host()),
                    ("processingTimeout", "1s".into()),
                    ("redeliverInterval", "500ms".into()),
                ],
            ),
            Broker::Nats(n) => (
                "pubsub.jetstream",
                vec![
                    ("natsURL", n.url.clone()),
                    ("ackWait", "2s".into()),
                    ("nakDelay", "200ms".into()),
                ],
            ),
        };
        let mut yaml = format!(
            "kind: Component\nmetadata:\n  name: pubsub\nspec:\n  type: {type_}\n  metadata:\n"
        );
        for (k, v) in metadata {
            yaml.push_str(&format!("  - name: {k}\n    value: \"{v}\"\n"));
        }
        yaml
    }

    fn restart(&mut self) {
        match self {
            Broker::Redis(r) => r.restart(),
            Broker::Nats(n) => n.restart(),
        }
    }
}

async fn at_least_once_under_faults(name: &str, mut broker: Broker) {
    let mesh = Mesh::new();
    let res = mesh.resources("res", "pubsub.yaml", &broker.component());
    let tally = Arc::new(Mutex::new(Tally {
        successes: vec![0; MESSAGES],
        retries: vec![0; MESSAGES],
    }));
    let app_port = counting_app(tally.clone()).await;
    let subscriber = || mesh.sidecar("fault-sub").app_port(app_port).resources(&res);
    let mut sub = subscriber().start_subscribed(1).await;
    let publisher = mesh.sidecar("fault-pub").resources(&res).start().await;

    // Sixteen publishers take the next number until all are published; a publish that fails
    // (the broker is down) is tried again: at-least-once starts with the publisher.
    let started = Instant::now();
    let (next, published, failed) = (
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
    );
    let url = format!("{}/v1.0/publish/pubsub/{TOPIC}", publisher.api_url());
    let mut publishers = tokio::task::JoinSet::new();
    for _ in 0..16 {
        let (next, published, failed, url) =
            (next.clone(), published.clone(), failed.clone(), url.clone());
        publishers.spawn(async move {
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= MESSAGES {
                    return;
                }
                let body = json!({"n": n}).to_string();
                let deadline = Instant::now() + Duration::from_secs(60);
                loop {
                    match send(
                        "POST",
                        &url,
                        &[("content-type", "application/json")],
                        body.clone(),
                    )
                    .await
                    {
                        Ok(r) if r.status == 204 => break,
                        _ => {
                            failed.fetch_add(1, Ordering::Relaxed);
                            assert!(
                                Instant::now() < deadline,
                                "message {n} could not be published for 60 s"
                            );
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                    }
                }
                published.fetch_add(1, Ordering::Relaxed);
            }
        });
    }

    // (a) The subscriber's sidecar dies mid-stream and comes back under the same app id.
    wait_until(Duration::from_secs(60), "2000 published", || async {
        (published.load(Ordering::Relaxed) >= 2_000).then_some(())
    })
    .await;
    sub.signal(Signal::SIGKILL);
    sub.wait_exit(Duration::from_secs(10)).await;
    let mut sub = subscriber().start().await;
    sub.wait_ready().await;
    // (b) The broker dies and comes back with its data.
    wait_until(Duration::from_secs(60), "5000 published", || async {
        (published.load(Ordering::Relaxed) >= 5_000).then_some(())
    })
    .await;
    broker.restart();
    while let Some(done) = publishers.join_next().await {
        done.unwrap();
    }
    let publish_secs = started.elapsed().as_secs_f64();

    let handled = || {
        tally
            .lock()
            .unwrap()
            .successes
            .iter()
            .filter(|s| **s > 0)
            .count()
    };
    let outcome = tokio::time::timeout(Duration::from_secs(180), async {
        while handled() < MESSAGES {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    let t = tally.lock().unwrap();
    let missing: Vec<usize> = (0..MESSAGES).filter(|n| t.successes[*n] == 0).collect();
    assert!(
        outcome.is_ok() && missing.is_empty(),
        "{name}: {} of {MESSAGES} messages never handled (first: {:?})\n--- subscriber log ---\n{}",
        missing.len(),
        &missing[..missing.len().min(10)],
        sub.log()
    );
    let retried = t.retries.iter().filter(|r| **r > 0).count();
    let duplicates: u32 = t.successes.iter().map(|s| s.saturating_sub(1)).sum();
    let deliveries: u32 = t.successes.iter().chain(&t.retries).sum();
    println!(
        "faults[{name}]: {MESSAGES} messages, all handled; {deliveries} deliveries, {retried} answered RETRY first, \
         {duplicates} duplicates (handled successfully more than once); publishing took {publish_secs:.1} s with \
         {} failed publish attempts retried; done after {:.1} s",
        failed.load(Ordering::Relaxed),
        started.elapsed().as_secs_f64()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_streams_deliver_every_message_through_kills_and_restarts() {
    // Durable on disk, so that a restart keeps the stream and its consumer group.
    let redis = RedisServer::start_durable();
    at_least_once_under_faults("redis", Broker::Redis(redis)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jetstream_delivers_every_message_through_kills_and_restarts() {
    at_least_once_under_faults("jetstream", Broker::Nats(Nats::private())).await;
}
