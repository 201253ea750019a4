//! Hostile load on the data a sidecar holds: bulk gets and queries over huge values, a publish
//! storm at a subscriber that never answers, and disk given back after deletes (security rule
//! 11). Each test states its memory bound and prints the figures it measured.

use std::time::Duration;

use outrider_testkit::{FakeApp, Mesh, send, sum_metric, wait_until};
use tokio::time::Instant;

/// Resident memory now and at the peak, in MiB.
fn rss_mib(s: &outrider_testkit::Sidecar) -> (u64, u64) {
    (s.rss_bytes() >> 20, s.peak_rss_bytes() >> 20)
}

#[tokio::test]
async fn bulk_gets_of_huge_values_stay_within_a_memory_bound() {
    let mesh = Mesh::new();
    let a = mesh
        .sidecar("a")
        .args(["--max-body-size", "2Mi"])
        .start()
        .await;
    let base = a.api_url();
    let value = format!("\"{}\"", "x".repeat(1 << 20));
    for i in 0..100 {
        let body = format!(r#"[{{"key":"big{i}","value":{value}}}]"#);
        let r = send("POST", &format!("{base}/v1.0/state/statestore"), &[], body)
            .await
            .unwrap();
        assert_eq!(r.status, 204, "{}", r.text());
    }
    let (_, peak_before) = rss_mib(&a);

    // One 1 MiB key named 300 times in a 2 KB request: read once, answered once.
    let keys: Vec<String> = (0..300).map(|_| "big0".to_owned()).collect();
    let started = Instant::now();
    let r = send(
        "POST",
        &format!("{base}/v1.0/state/statestore/bulk"),
        &[],
        serde_json::json!({"keys": keys}).to_string(),
    )
    .await
    .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let answer = r.json();
    assert_eq!(answer.as_array().unwrap().len(), 1);
    assert_eq!(answer[0]["data"].as_str().unwrap().len(), 1 << 20);
    assert!(started.elapsed() < Duration::from_secs(10));

    // 100 distinct 1 MiB values are more than one answer may hold: refused, not built.
    let keys: Vec<String> = (0..100).map(|i| format!("big{i}")).collect();
    let r = send(
        "POST",
        &format!("{base}/v1.0/state/statestore/bulk"),
        &[],
        serde_json::json!({"keys": keys}).to_string(),
    )
    .await
    .unwrap();
    assert_eq!(r.status, 413, "{}", &r.text()[..r.text().len().min(300)]);
    assert_eq!(r.json()["errorCode"], "ERR_STATE_BULK_GET");
    let (now, peak) = rss_mib(&a);
    eprintln!("bulk get: peak RSS {peak_before} MiB before, {peak} MiB after; {now} MiB now");
    assert!(
        peak < peak_before + 160,
        "peak RSS grew from {peak_before} to {peak} MiB"
    );

    // And the sidecar serves normally afterwards.
    let r = send(
        "GET",
        &format!("{base}/v1.0/state/statestore/big1"),
        &[],
        "",
    )
    .await
    .unwrap();
    assert_eq!(r.status, 200);
}

#[tokio::test]
async fn a_publish_storm_at_a_subscriber_that_never_answers_fails_fast_within_a_memory_bound() {
    let subs =
        serde_json::json!([{"pubsubname": "pubsub", "topic": "storm", "route": "/slow/600000"}]);
    let app = FakeApp::with_subscriptions("never", subs).await;
    let mesh = Mesh::new();
    let mut a = mesh
        .sidecar("a")
        .app_port(app.port)
        .args(["--max-body-size", "2Mi"])
        .start()
        .await;
    a.wait_ready().await;
    a.wait_subscriptions(1).await;
    let (_, peak_before) = rss_mib(&a);
    let url = format!(
        "{}/v1.0/publish/pubsub/storm?metadata.rawPayload=true",
        a.api_url()
    );
    let body = vec![b'x'; 1 << 20];
    let (mut taken, mut refused) = (0, 0);
    while refused < 5 {
        let started = Instant::now();
        let r = send(
            "POST",
            &url,
            &[("content-type", "application/octet-stream")],
            body.clone(),
        )
        .await
        .unwrap();
        match r.status {
            204 => taken += 1,
            500 => {
                assert_eq!(
                    r.json()["errorCode"],
                    "ERR_PUBSUB_PUBLISH_MESSAGE",
                    "{}",
                    r.text()
                );
                assert!(
                    started.elapsed() < Duration::from_secs(5),
                    "a refusal took {:?}",
                    started.elapsed()
                );
                refused += 1;
            }
            other => panic!("{other}: {}", r.text()),
        }
        assert!(
            taken <= 200,
            "the queue took {taken} MiB and still takes more"
        );
    }
    let (now, peak) = rss_mib(&a);
    eprintln!(
        "publish storm: {taken} taken; peak RSS {peak_before} MiB before, {peak} MiB after; {now} MiB now"
    );
    assert!(
        peak < peak_before + 200,
        "peak RSS grew from {peak_before} to {peak} MiB"
    );
    let full = sum_metric(
        &a.metrics().await,
        "outrider_pubsub_publish_full_total",
        &["component=\"pubsub\""],
    );
    assert_eq!(full, 5.0);
    // Other topics, and the rest of the API, serve on.
    let r = a
        .request("POST", "/v1.0/publish/pubsub/calm", &[], "{}")
        .await;
    assert_eq!(r.status, 204);
}

/// The bytes of every file under `dir`.
fn du(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => du(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

#[tokio::test]
async fn queries_over_huge_values_are_bounded_and_deleted_state_gives_disk_back() {
    let mesh = Mesh::new();
    let (resources, data) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    std::fs::write(
        resources.path().join("state.yaml"),
        "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: statestore\nspec:\n  type: state.sqlite\n  \
         version: v1\n  metadata:\n  - name: cleanupInterval\n    value: 1s\n",
    )
    .unwrap();
    let resources_flag = resources.path().to_str().unwrap().to_owned();
    let a = mesh
        .sidecar("a")
        .data_dir(data.path())
        .args([
            "--max-body-size",
            "2Mi",
            "--resources-path",
            &resources_flag,
        ])
        .start()
        .await;
    let base = a.api_url();
    let pad = "x".repeat(1 << 20);
    for i in 0..300 {
        let tag = if i % 2 == 0 { "even" } else { "odd" };
        let body =
            format!(r#"[{{"key":"k{i:03}","value":{{"n":{i},"tag":"{tag}","pad":"{pad}"}}}}]"#);
        let r = send("POST", &format!("{base}/v1.0/state/statestore"), &[], body)
            .await
            .unwrap();
        assert_eq!(r.status, 204, "{}", r.text());
    }
    let written = du(data.path());
    assert!(written > 300 << 20, "only {written} bytes on disk");
    let (_, peak_before) = rss_mib(&a);
    let query = async |q: serde_json::Value| {
        let started = Instant::now();
        let r = send(
            "POST",
            &format!("{base}/v1.0-alpha1/state/statestore/query"),
            &[],
            q.to_string(),
        )
        .await
        .unwrap();
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "a query took {:?}",
            started.elapsed()
        );
        r
    };

    // Every value matches and no page is asked for: more than one answer may hold.
    let r = query(serde_json::json!({"filter": {"GT": {"n": -1}}})).await;
    assert_eq!(
        (r.status, r.json()["errorCode"].as_str()),
        (500, Some("ERR_STATE_QUERY")),
        "{}",
        r.text()
    );
    assert!(r.text().contains("smaller page"), "{}", r.text());
    // Nothing matches, but every value must be read to know it: more than one query may read.
    let r = query(serde_json::json!({"filter": {"GT": {"n": 100000}}, "page": {"limit": 5}})).await;
    assert_eq!(r.status, 500, "{}", r.text());
    assert!(r.text().contains("read more than"), "{}", r.text());
    // A filter SQLite can apply reads only the values it selects (150 MiB): a page comes back.
    let r = query(serde_json::json!({
        "filter": {"AND": [{"EQ": {"tag": "even"}}, {"GT": {"n": 10}}]},
        "sort": [{"key": "n", "order": "DESC"}],
        "page": {"limit": 3}
    }))
    .await;
    assert_eq!(r.status, 200, "{}", &r.text()[..r.text().len().min(300)]);
    let page = r.json();
    let keys: Vec<&str> = page["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, ["k298", "k296", "k294"]);
    assert_eq!(page["token"], "3");
    let (now, peak) = rss_mib(&a);
    eprintln!(
        "queries over 300 MiB: peak RSS {peak_before} MiB before, {peak} MiB after; {now} MiB now"
    );
    assert!(
        peak < peak_before + 200,
        "peak RSS grew from {peak_before} to {peak} MiB"
    );

    // Deleted, the data gives its disk back at the next sweep.
    for i in 0..300 {
        let r = send(
            "DELETE",
            &format!("{base}/v1.0/state/statestore/k{i:03}"),
            &[],
            "",
        )
        .await
        .unwrap();
        assert_eq!(r.status, 204);
    }
    let left = wait_until(
        Duration::from_secs(30),
        "the data directory to shrink",
        || async {
            let n = du(data.path());
            (n < 16 << 20).then_some(n)
        },
    )
    .await;
    eprintln!(
        "disk: {} MiB written, {} KiB after deleting",
        written >> 20,
        left >> 10
    );
    let r = send(
        "GET",
        &format!("{base}/v1.0/state/statestore/k001"),
        &[],
        "",
    )
    .await
    .unwrap();
    assert_eq!(r.status, 204);
}
