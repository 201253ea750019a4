//! The mesh transports across hosts: `auto` falling back to HTTP/2 where UDP is dropped and
//! moving to HTTP/3 when it comes back, and both transports under packet loss. (Migration is
//! tested on loopback, in `mesh_security`.)
//!
//! Hosts are network namespaces on a bridge (`testkit::netns`); loss and drops are iptables rules
//! inside them (the kernel here has no netem). Without root the tests report themselves skipped.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use outrider_testkit::netns::{Host, Lan};
use outrider_testkit::{Mesh, Sidecar, binary, free_port, sum_metric, wait_until};

/// The mesh port of sidecars on LAN hosts (their well-known ports).
const MESH: u16 = 50002;

fn skip(why: &str) {
    eprintln!("SKIPPED: {why}");
}

/// A Configuration whose static resolver knows `b` at `addr`, offering h2 and h3.
fn config(dir: &Path, b: Ipv4Addr) -> PathBuf {
    let doc = serde_json::json!({
        "kind": "Configuration",
        "spec": {"nameResolution": {"component": "static", "configuration": {"apps": {
            "b": [{"address": format!("{b}:{MESH}"), "transports": ["h2", "h3"]}],
        }}}},
    });
    let path = dir.join("static.yaml");
    std::fs::write(&path, doc.to_string()).unwrap();
    path
}

/// Sidecar `app` on `host` with the echo app, `config` and `extra` flags, ready.
async fn sidecar(mesh: &Mesh, app: &str, host: &Host, config: &Path, extra: &[&str]) -> Sidecar {
    let mut s = mesh
        .sidecar(app)
        .on(host)
        .well_known_ports()
        .app_port(free_port())
        .args(["--config", &config.to_string_lossy()])
        .args(extra.iter().copied())
        .command([binary("echo-app").to_string_lossy().into_owned()])
        .spawn();
    s.wait_ready().await;
    s
}

/// Runs `iptables` in `host` with `rule` (`-A …` to add, `-D …` to remove).
async fn iptables(host: &Host, rule: &[&str]) {
    let out = host.output("iptables", rule, Duration::from_secs(10)).await;
    assert!(
        out.status.success(),
        "iptables {rule:?} in {}: {}",
        host.netns,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Outbound mesh requests of `s` so far over `transport`.
async fn sent_over(s: &Sidecar, transport: &str) -> f64 {
    let t = format!("transport=\"{transport}\"");
    sum_metric(
        &s.metrics().await,
        "outrider_mesh_requests_total",
        &["direction=\"outbound\"", &t],
    )
}

/// The transport `a`'s metadata shows for its endpoint of `b`.
async fn shown_transport(a: &Sidecar) -> String {
    let meta = a.call("GET", "/v1.0/metadata", "").await.unwrap().json();
    meta["nameResolution"]["targets"][0]["endpoints"][0]["transport"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_falls_back_to_h2_where_udp_is_dropped_and_returns_to_h3() {
    let lan = match Lan::new(2) {
        Ok(lan) => lan,
        Err(why) => return skip(&why),
    };
    let (ha, hb) = (&lan.hosts[0], &lan.hosts[1]);
    let mesh = Mesh::new();
    let cfg = config(mesh.home(), hb.addr);
    let drop_udp = ["INPUT", "-p", "udp", "--dport", "50002", "-j", "DROP"];
    iptables(hb, &[&["-A"][..], &drop_udp].concat()).await;
    let _b = sidecar(&mesh, "b", hb, &cfg, &[]).await;
    // Long enough for the first eleven requests to fall within it on a loaded machine.
    let a = sidecar(&mesh, "a", ha, &cfg, &["--mesh-transport-memory", "15s"]).await;

    // UDP is dropped: the first request waits out QUIC's head start, then goes over TCP.
    let started = Instant::now();
    let r = a
        .call("GET", "/v1.0/invoke/b/method/first", "")
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the first request took {:?}",
        started.elapsed()
    );
    for i in 0..10 {
        let r = a
            .call("GET", &format!("/v1.0/invoke/b/method/n{i}"), "")
            .await
            .unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
    }
    // Only the first request raced: one fallback, every request over h2, none over h3.
    let m = a.metrics().await;
    assert_eq!(
        sum_metric(&m, "outrider_mesh_transport_fallbacks_total", &[]),
        1.0,
        "{m}"
    );
    assert_eq!(sent_over(&a, "h2").await, 11.0);
    assert_eq!(sent_over(&a, "h3").await, 0.0);
    assert_eq!(shown_transport(&a).await, "h2");

    // UDP comes back; once the memory expires, traffic moves to h3.
    iptables(hb, &[&["-D"][..], &drop_udp].concat()).await;
    wait_until(
        Duration::from_secs(30),
        "requests to move to h3",
        || async {
            let r = a
                .call("GET", "/v1.0/invoke/b/method/again", "")
                .await
                .ok()?;
            assert_eq!(r.status, 200, "{}", r.text());
            (sent_over(&a, "h3").await > 0.0).then_some(())
        },
    )
    .await;
    assert_eq!(shown_transport(&a).await, "h3");
}

/// Runs every future of `futs` concurrently, in order of results as given.
async fn futures_join<F>(futs: impl Iterator<Item = F>) -> Vec<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futs.map(tokio::spawn).collect();
    let mut out = Vec::with_capacity(handles.len());
    for h in handles {
        out.push(h.await.unwrap());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_two_percent_loss_32_concurrent_streams_complete_over_h2_and_h3() {
    let lan = match Lan::new(2) {
        Ok(lan) => lan,
        Err(why) => return skip(&why),
    };
    let (ha, hb) = (&lan.hosts[0], &lan.hosts[1]);
    let lossy = [
        "INPUT",
        "-i",
        "eth0",
        "-m",
        "statistic",
        "--mode",
        "random",
        "--probability",
        "0.02",
        "-j",
        "DROP",
    ];
    for h in [ha, hb] {
        iptables(h, &[&["-A"][..], &lossy].concat()).await;
    }
    for transport in ["h2", "h3"] {
        let mesh = Mesh::over(transport);
        let cfg = config(mesh.home(), hb.addr);
        let b = sidecar(&mesh, "b", hb, &cfg, &[]).await;
        let a = std::sync::Arc::new(sidecar(&mesh, "a", ha, &cfg, &[]).await);
        // One connection carries them all: the first request opens it.
        let r = a
            .call("GET", "/v1.0/invoke/b/method/warm", "")
            .await
            .unwrap();
        assert_eq!(r.status, 200, "{transport}: {}", r.text());
        concurrent_echoes(a.clone()).await;
        assert!(sent_over(&a, transport).await >= 33.0, "{transport}");
        drop(b);
    }
}

/// 32 requests at once from `a` to `b` (its app echoes), each with its own body; every echo must
/// come back whole.
async fn concurrent_echoes(a: std::sync::Arc<Sidecar>) {
    let calls = (0..32).map(|i| {
        let a = a.clone();
        async move {
            let body = serde_json::json!({"n": i, "pad": "x".repeat(24 * 1024 + i)}).to_string();
            let r = a
                .call("POST", &format!("/v1.0/invoke/b/method/echo/{i}"), &body)
                .await
                .unwrap();
            (i, body, r)
        }
    });
    for (i, body, r) in futures_join(calls).await {
        assert_eq!(r.status, 200, "request {i}: {}", r.text());
        assert_eq!(r.json()["body"], body, "request {i} came back altered");
    }
}
