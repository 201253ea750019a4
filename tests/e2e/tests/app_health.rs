//! App health checks and `--app-max-concurrency`, through real sidecars, a private redis-server
//! and an app whose health the test switches.

use std::collections::BTreeSet;
use std::convert::Infallible;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use outrider_testkit::{JSON, Mesh, RedisServer, send, wait_until};
use serde_json::{Value, json};
use tokio::net::TcpListener;

/// What the app has seen, and the switch of its health.
#[derive(Default)]
struct Seen {
    healthy: AtomicBool,
    /// `n` of every event delivered to `/orders`, in order of arrival.
    orders: Mutex<Vec<u64>>,
    /// Requests in `/work` right now, and the most there ever were at once.
    working: AtomicUsize,
    most_working: AtomicUsize,
}

/// An app on a free port: `GET /healthz` answers 200 or 503 as `seen.healthy` says,
/// `GET /dapr/subscribe` lists topic `orders` of `pubsub`, `POST /orders` records the event,
/// `/work` takes 150 ms and counts how many are in it at once.
async fn start_app(seen: Arc<Seen>) -> (u16, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        let mut conns = tokio::task::JoinSet::new();
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            while conns.try_join_next().is_some() {}
            let seen = seen.clone();
            conns.spawn(async move {
                let svc = service_fn(move |req| answer(req, seen.clone()));
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tcp), svc)
                    .await;
            });
        }
    });
    (port, task)
}

async fn answer(
    req: Request<Incoming>,
    seen: Arc<Seen>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path().to_owned();
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let (status, out) = match path.as_str() {
        "/healthz" if seen.healthy.load(Ordering::SeqCst) => (StatusCode::OK, "ok".to_owned()),
        "/healthz" => (StatusCode::SERVICE_UNAVAILABLE, "not now".to_owned()),
        "/dapr/subscribe" => (
            StatusCode::OK,
            json!([{"pubsubname": "pubsub", "topic": "orders", "route": "/orders"}]).to_string(),
        ),
        "/orders" => {
            let event: Value = serde_json::from_slice(&body).unwrap_or_default();
            if let Some(n) = event["data"]["n"].as_u64() {
                seen.orders.lock().unwrap().push(n);
            }
            (StatusCode::OK, String::new())
        }
        "/work" => {
            let now = seen.working.fetch_add(1, Ordering::SeqCst) + 1;
            seen.most_working.fetch_max(now, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(150)).await;
            seen.working.fetch_sub(1, Ordering::SeqCst);
            (StatusCode::OK, "worked".to_owned())
        }
        _ => (StatusCode::NOT_FOUND, String::new()),
    };
    let mut rsp = Response::new(Full::new(Bytes::from(out)));
    *rsp.status_mut() = status;
    Ok(rsp)
}

fn redis_pubsub(mesh: &Mesh, redis: &RedisServer) -> String {
    let yaml = format!(
        "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: pubsub\nspec:\n  type: pubsub.redis\n  version: v1\n  metadata:\n  - name: redisHost\n    value: {}\n  - name: processingTimeout\n    value: \"1s\"\n  - name: redeliverInterval\n    value: 500ms\n",
        redis.host()
    );
    mesh.resources("res", "pubsub.yaml", &yaml)
}

/// The app's health as the sidecar's metadata reports it.
async fn reported_health(s: &outrider_testkit::Sidecar) -> String {
    s.metadata().await["extended"]["outrider.appHealth"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn an_unhealthy_app_gets_nothing_and_everything_resumes_when_it_recovers() {
    let redis = RedisServer::start();
    let mesh = Mesh::new();
    let res = redis_pubsub(&mesh, &redis);
    let seen = Arc::new(Seen::default());
    let (port, _app) = start_app(seen.clone()).await;
    let sub = mesh
        .sidecar("health-sub")
        .resources(&res)
        .app_port(port)
        .args([
            "--enable-app-health-check",
            "--app-health-probe-interval",
            "1",
            "--app-health-probe-timeout",
            "300",
            "--app-health-threshold",
            "2",
        ])
        .start()
        .await;
    // Unhealthy from the start: nothing is asked of the app, nothing is subscribed.
    let limit = Duration::from_secs(20);
    wait_until(limit, "the app reported unhealthy", || async {
        (reported_health(&sub).await == "unhealthy").then_some(())
    })
    .await;
    let meta = sub.metadata().await;
    assert_eq!(
        meta["appConnectionProperties"]["health"],
        json!({"healthCheckPath": "/healthz", "healthProbeInterval": "1s",
               "healthProbeTimeout": "300ms", "healthThreshold": 2}),
        "{meta}"
    );
    seen.healthy.store(true, Ordering::SeqCst);
    sub.wait_subscriptions(1).await;
    let publisher = mesh.sidecar("health-pub").resources(&res).start().await;
    let publish = |n: u64| {
        let p = &publisher;
        async move {
            let r = p
                .publish("pubsub", "orders", JSON, &format!("{{\"n\":{n}}}"))
                .await;
            assert_eq!(r.status, 204, "{}", r.text());
        }
    };
    for n in 0..10 {
        publish(n).await;
    }
    wait_until(limit, "the first ten delivered", || async {
        (seen.orders.lock().unwrap().len() >= 10).then_some(())
    })
    .await;

    // The app fails its checks: within interval × threshold (plus one probe), the sidecar says
    // so, and its subscription stops pulling.
    seen.healthy.store(false, Ordering::SeqCst);
    wait_until(
        Duration::from_secs(6),
        "the app seen as unhealthy",
        || async { (reported_health(&sub).await == "unhealthy").then_some(()) },
    )
    .await;
    wait_until(limit, "the subscription paused", || async {
        let subs = sub.metadata().await["subscriptions"].clone();
        (subs[0]["status"] == "PAUSED").then_some(())
    })
    .await;
    let delivered_before = seen.orders.lock().unwrap().len();
    for n in 10..20 {
        publish(n).await;
    }
    // An invocation of the unhealthy app fails at once, with daprd's words.
    let r = publisher
        .call("POST", "/v1.0/invoke/health-sub/method/work", "")
        .await
        .unwrap();
    assert_eq!(r.status, 500, "{}", r.text());
    assert!(
        r.text().contains("app is not in a healthy state"),
        "{}",
        r.text()
    );
    assert!(r.text().contains("ERR_DIRECT_INVOKE"), "{}", r.text());
    // Two more probes fail while the messages wait in the stream: none is delivered.
    let failed = |s: &str| {
        outrider_testkit::sum_metric(
            s,
            "dapr_http_healthprobes_completed_count",
            &["status=\"503\""],
        )
    };
    let failed_now = failed(&sub.metrics().await);
    wait_until(limit, "two more failed probes", || async {
        (failed(&sub.metrics().await) >= failed_now + 2.0).then_some(())
    })
    .await;
    assert_eq!(
        seen.orders.lock().unwrap().len(),
        delivered_before,
        "deliveries while the app was unhealthy"
    );
    assert!(sub.metrics().await.contains("outrider_app_healthy 0"));

    // Healthy again: the subscription resumes and every message arrives (at least once).
    seen.healthy.store(true, Ordering::SeqCst);
    wait_until(limit, "all twenty delivered", || async {
        let got: BTreeSet<u64> = seen.orders.lock().unwrap().iter().copied().collect();
        (got == (0..20).collect()).then_some(())
    })
    .await;
    let r = publisher
        .call("POST", "/v1.0/invoke/health-sub/method/work", "")
        .await
        .unwrap();
    assert_eq!((r.status, r.text()), (200, "worked".to_owned()));
    assert_eq!(reported_health(&sub).await, "healthy");
    assert!(sub.log().contains("the app is unhealthy"), "{}", sub.log());
}

#[tokio::test]
async fn at_most_max_concurrency_requests_reach_the_app() {
    let mesh = Mesh::new();
    let seen = Arc::new(Seen::default());
    let (port, _app) = start_app(seen.clone()).await;
    let mut sidecar = mesh
        .sidecar("busy")
        .app_port(port)
        .args(["--app-max-concurrency", "2"])
        .start()
        .await;
    sidecar.wait_ready().await;
    assert_eq!(
        sidecar.metadata().await["appConnectionProperties"]["maxConcurrency"],
        2
    );
    let url = format!("{}/v1.0/invoke/busy/method/work", sidecar.api_url());
    let mut calls = tokio::task::JoinSet::new();
    for _ in 0..20 {
        let url = url.clone();
        calls.spawn(async move { send("POST", &url, &[], "").await });
    }
    while let Some(r) = calls.join_next().await {
        let r = r.unwrap().unwrap();
        assert_eq!((r.status, r.text()), (200, "worked".to_owned()));
    }
    assert_eq!(
        seen.most_working.load(Ordering::SeqCst),
        2,
        "the most requests the app had at once"
    );
}
