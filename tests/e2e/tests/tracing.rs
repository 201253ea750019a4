//! Span export: one connected trace across two sidecars and an app that calls its own sidecar,
//! received by a test collector (OTLP/HTTP protobuf, and Zipkin v2 JSON).

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use outrider_testkit::{
    CollectedSpan, Collector, Mesh, Sidecar, send, wait_registered, wait_until,
};
use tokio::net::TcpListener;

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";

fn config(dir: &std::path::Path, tracing: &str) -> String {
    let path = dir.join("config.yaml");
    std::fs::write(
        &path,
        format!(
            "apiVersion: dapr.io/v1alpha1\nkind: Configuration\nmetadata: {{name: t}}\nspec:\n  tracing:\n{tracing}"
        ),
    )
    .unwrap();
    path.to_str().unwrap().to_owned()
}

/// An app that, for each request, reads a key from its sidecar's state API with the trace
/// context it received, then answers.
fn serve_state_reading_app(listener: TcpListener, sidecar_api: String) {
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let api = sidecar_api.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req: Request<Incoming>| {
                    let api = api.clone();
                    async move {
                        let tp = req
                            .headers()
                            .get("traceparent")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("")
                            .to_owned();
                        let r = send(
                            "GET",
                            &format!("{api}/v1.0/state/statestore/k"),
                            &[("traceparent", &tp)],
                            "",
                        )
                        .await;
                        let body = format!("{}|{tp}", r.map(|r| r.status).unwrap_or(0));
                        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(body))))
                    }
                });
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tcp), svc)
                    .await;
            });
        }
    });
}

fn of_trace(spans: &[CollectedSpan], trace: &str) -> Vec<CollectedSpan> {
    spans
        .iter()
        .filter(|s| s.trace_id == trace)
        .cloned()
        .collect()
}

/// `GET /v1.0/metadata` on `s` with `traceparent`: the status.
async fn metadata_with(s: &Sidecar, traceparent: &str) -> u16 {
    send(
        "GET",
        &format!("{}/v1.0/metadata", s.api_url()),
        &[("traceparent", traceparent)],
        "",
    )
    .await
    .unwrap()
    .status
}

/// Waits until the collector holds at least `n` spans of `trace`.
async fn spans_of(collector: &Collector, trace: &str, n: usize, what: &str) -> Vec<CollectedSpan> {
    wait_until(Duration::from_secs(10), what, || async {
        let spans = of_trace(&collector.spans(), trace);
        (spans.len() >= n).then_some(spans)
    })
    .await
}

/// Waits until the collector holds at least `n` spans of [`TRACE`].
async fn spans_of_trace(collector: &Collector, n: usize, what: &str) -> Vec<CollectedSpan> {
    spans_of(collector, TRACE, n, what).await
}

#[tokio::test]
async fn one_connected_trace_from_caller_to_callee_to_its_state_call() {
    let collector = Collector::start().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        &format!(
            "    samplingRate: '1'\n    otel: {{endpointAddress: '127.0.0.1:{}', isSecure: false, protocol: http}}\n",
            collector.port
        ),
    );
    let mesh = Mesh::new();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let app_port = listener.local_addr().unwrap().port();
    let b = mesh
        .sidecar("b")
        .app_port(app_port)
        .args(["--config", &cfg])
        .start()
        .await;
    serve_state_reading_app(listener, b.api_url());
    let a = mesh.sidecar("a").args(["--config", &cfg]).start().await;
    wait_registered(&mesh, "b", 1).await;

    let traceparent = format!("00-{TRACE}-{CALLER_SPAN}-01");
    let r = send(
        "POST",
        &format!("{}/v1.0/invoke/b/method/work", a.api_url()),
        &[("traceparent", &traceparent)],
        "x",
    )
    .await
    .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let (state_status, app_saw) = r
        .text()
        .split_once('|')
        .map(|(s, t)| (s.to_owned(), t.to_owned()))
        .unwrap();
    assert_eq!(state_status, "204", "the app's state call worked");

    let spans = spans_of_trace(&collector, 3, "three spans of the trace").await;
    let find = |service: &str, name: &str| {
        spans
            .iter()
            .find(|s| s.service == service && s.name == name)
            .unwrap_or_else(|| panic!("no span {name:?} of {service}: {spans:#?}"))
            .clone()
    };
    let invoke = find("a", "POST /v1.0/invoke/{id}/method/{method}");
    let inbound = find("b", "POST (mesh inbound)");
    let state = find("b", "GET /v1.0/state/{store}/{key}");
    // Parent links: the caller's span → a's API → b's mesh side → b's API (the app's state call).
    assert_eq!(invoke.parent_span_id, CALLER_SPAN);
    assert_eq!(inbound.parent_span_id, invoke.span_id);
    assert_eq!(state.parent_span_id, inbound.span_id);
    assert_eq!(
        app_saw,
        format!("00-{TRACE}-{}-01", inbound.span_id),
        "the app got the mesh span as its parent"
    );
    // Attributes: app id, route template, the caller's verified identity, status.
    assert_eq!(
        invoke.attributes["http.route"],
        "/v1.0/invoke/{id}/method/{method}"
    );
    assert_eq!(invoke.attributes["app_id"], "a");
    assert_eq!(inbound.attributes["peer.identity"], "public/default/a");
    assert_eq!(inbound.attributes["http.target"], "/work");
    assert_eq!(state.attributes["http.status_code"], "204");
    assert!(spans.iter().all(|s| s.protocol == "otlp"));
    for s in &spans {
        assert!(
            !s.attributes
                .keys()
                .any(|k| k.contains("authorization") || k.contains("token")),
            "{s:?}"
        );
    }
}

#[tokio::test]
async fn zipkin_receives_spans_and_unsampled_traces_send_nothing() {
    let collector = Collector::start().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        &format!(
            "    samplingRate: '1'\n    zipkin: {{endpointAddress: 'http://127.0.0.1:{}/api/v2/spans'}}\n",
            collector.port
        ),
    );
    let mesh = Mesh::new();
    let s = mesh.sidecar("z").args(["--config", &cfg]).start().await;
    // A caller that decided not to sample: its flag is followed, nothing is exported.
    let unsampled = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00";
    assert_eq!(metadata_with(&s, unsampled).await, 200);
    let traceparent = format!("00-{TRACE}-{CALLER_SPAN}-01");
    assert_eq!(metadata_with(&s, &traceparent).await, 200);
    let spans = spans_of_trace(&collector, 1, "the sampled span").await;
    assert_eq!(spans[0].protocol, "zipkin");
    assert_eq!(spans[0].name, "GET /v1.0/metadata");
    assert_eq!(spans[0].parent_span_id, CALLER_SPAN);
    assert_eq!(spans[0].service, "z");
    assert!(
        collector
            .spans()
            .iter()
            .all(|s| s.trace_id != "0af7651916cd43dd8448eb211c80319c"),
        "an unsampled trace was exported"
    );
}

/// Publishes one event within each of `traces` to an app subscribed with `subscription`; checks
/// that each publish span continues the caller's and that each trace holds a delivery span named
/// `span` continuing its publish, with the app's outcome. Returns those spans, in the order of
/// `traces`, and the app.
async fn delivered_within_the_traces(
    subscription: serde_json::Value,
    traces: &[&str],
    span: &str,
) -> (Vec<CollectedSpan>, outrider_testkit::FakeApp) {
    let collector = Collector::start().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        &format!(
            "    samplingRate: '1'\n    otel: {{endpointAddress: '127.0.0.1:{}', isSecure: false}}\n",
            collector.port
        ),
    );
    let mesh = Mesh::new();
    let (app, s) = mesh
        .sidecar("p")
        .args(["--config", &cfg])
        .start_subscriber("sub", serde_json::json!([subscription]))
        .await;
    for trace in traces {
        let traceparent = format!("00-{trace}-{CALLER_SPAN}-01");
        let headers = [
            ("traceparent", traceparent.as_str()),
            ("content-type", "application/json"),
        ];
        let r = s.publish("pubsub", "orders", &headers, r#"{"n":1}"#).await;
        assert_eq!(r.status, 204, "{}", r.text());
    }
    let mut deliveries = Vec::new();
    for trace in traces {
        let spans = spans_of(&collector, trace, 2, "the publish and delivery spans").await;
        let publish = spans
            .iter()
            .find(|s| s.name == "POST /v1.0/publish/{pubsub}/{*topic}")
            .expect("publish span");
        let delivery = spans
            .iter()
            .find(|s| s.name == span)
            .unwrap_or_else(|| panic!("no span {span:?} in {spans:?}"));
        assert_eq!(publish.parent_span_id, CALLER_SPAN);
        assert_eq!(delivery.parent_span_id, publish.span_id, "{span}");
        assert_eq!(delivery.attributes["pubsub.outcome"], "Success", "{span}");
        deliveries.push(delivery.clone());
    }
    (deliveries, app)
}

#[tokio::test]
async fn a_published_message_is_delivered_within_the_publishers_trace() {
    let subscription =
        serde_json::json!({"pubsubname": "pubsub", "topic": "orders", "route": "/events"});
    let (deliveries, app) =
        delivered_within_the_traces(subscription, &[TRACE], "pubsub delivery pubsub/orders").await;
    let delivered = app
        .seen()
        .into_iter()
        .find(|r| r.path == "/events")
        .expect("delivered");
    assert_eq!(
        delivered.headers["traceparent"],
        format!("00-{TRACE}-{}-01", deliveries[0].span_id)
    );
}

#[tokio::test]
async fn each_entry_of_a_bulk_delivery_gets_a_span_within_its_publishers_trace() {
    // Two events of two traces fill one batch of two.
    let other = "5c0f2e2a8d1b4e6f9a7c3b2d1e0f4a5b";
    let subscription = serde_json::json!({
        "pubsubname": "pubsub", "topic": "orders", "route": "/bulk/SUCCESS",
        "bulkSubscribe": {"enabled": true, "maxMessagesCount": 2, "maxAwaitDurationMs": 5000},
    });
    let (deliveries, app) = delivered_within_the_traces(
        subscription,
        &[TRACE, other],
        "pubsub bulk delivery pubsub/orders",
    )
    .await;
    let batches: Vec<_> = app
        .seen()
        .into_iter()
        .filter(|r| r.path == "/bulk/SUCCESS")
        .collect();
    assert_eq!(batches.len(), 1, "one batch");
    let entries = batches[0].json()["entries"].clone();
    let entry_traces: Vec<&str> = entries
        .as_array()
        .expect("entries")
        .iter()
        .map(|e| e["event"]["traceparent"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(entry_traces.len(), 2, "{entries}");
    for trace in [TRACE, other] {
        assert!(
            entry_traces.iter().any(|tp| tp.contains(trace)),
            "no entry of trace {trace}: {entries}"
        );
    }
    assert_ne!(
        deliveries[0].span_id, deliveries[1].span_id,
        "one span per entry"
    );
}

#[tokio::test]
async fn an_https_collector_is_verified_with_the_given_ca() {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    let collector = Collector::start_tls(&ca).await;
    // Dapr's default for otel is isSecure: true, so no flag is needed for TLS.
    let cfg = config(
        dir.path(),
        &format!(
            "    samplingRate: '1'\n    otel: {{endpointAddress: 'localhost:{}'}}\n",
            collector.port
        ),
    );
    let mesh = Mesh::new();
    let s = mesh
        .sidecar("tls")
        .args(["--config", &cfg])
        .env("SSL_CERT_FILE", ca.to_str().unwrap())
        .start()
        .await;
    let traceparent = format!("00-{TRACE}-{CALLER_SPAN}-01");
    assert_eq!(metadata_with(&s, &traceparent).await, 200);
    let spans = spans_of_trace(&collector, 1, "the span over HTTPS").await;
    assert_eq!(
        (spans[0].name.as_str(), spans[0].service.as_str()),
        ("GET /v1.0/metadata", "tls")
    );

    // Without the CA the collector is not trusted: spans are dropped and counted, requests go on.
    let untrusted = mesh
        .sidecar("untrusted")
        .args(["--config", &cfg])
        .start()
        .await;
    assert_eq!(metadata_with(&untrusted, &traceparent).await, 200);
    wait_until(Duration::from_secs(10), "dropped spans", || async {
        (untrusted
            .metric_sum("outrider_spans_dropped_total", &[])
            .await
            >= 1.0)
            .then_some(())
    })
    .await;
    assert!(
        untrusted.log().contains("span export failed"),
        "{}",
        untrusted.log()
    );
}
