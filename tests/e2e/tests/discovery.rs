//! Name resolution across hosts and balancing over what it finds.
//!
//! The mDNS and DNS tests run real sidecars on "hosts" that are network namespaces on a bridge
//! (`testkit::netns`); every packet, multicast included, stays inside them. Without root they
//! report themselves skipped. The balancing test runs on loopback.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use outrider_testkit::netns::{Host, Lan};
use outrider_testkit::{FakeApp, Mesh, Sidecar, binary, free_port, wait_until};

/// A Configuration file choosing a resolver.
fn config(dir: &Path, name: &str, name_resolution: serde_json::Value) -> PathBuf {
    let doc = serde_json::json!({
        "apiVersion": "dapr.io/v1alpha1",
        "kind": "Configuration",
        "metadata": {"name": name},
        "spec": {"nameResolution": name_resolution},
    });
    let path = dir.join(format!("{name}.yaml"));
    std::fs::write(&path, doc.to_string()).unwrap();
    path
}

/// A sidecar for `app` on `host` with `config`, running `echo-app` as its app, ready.
async fn echo_sidecar(mesh: &Mesh, app: &str, host: &Host, config: &Path) -> Sidecar {
    let mut s = mesh
        .sidecar(app)
        .on(host)
        .app_port(free_port())
        .args(["--config", &config.to_string_lossy()])
        .command([binary("echo-app").to_string_lossy().into_owned()])
        .spawn();
    s.wait_ready().await;
    s
}

/// The pid of the app a sidecar runs (its only child; any of its threads may have started it).
fn app_pid(sidecar: &Sidecar) -> u32 {
    let tasks =
        std::fs::read_dir(format!("/proc/{}/task", sidecar.pid())).expect("the sidecar's threads");
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("children")).ok())
        .find_map(|c| c.split_whitespace().next().and_then(|p| p.parse().ok()))
        .expect("the sidecar's app process")
}

/// `n` invocations of app `b` through `caller`: the echo app's pid for each answer, or the
/// failure.
async fn spread(caller: &Sidecar, n: usize) -> Vec<Result<u32, String>> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(
            match caller.call("GET", "/v1.0/invoke/b/method/who", "").await {
                Ok(r) if r.status == 200 => Ok(r.json()["pid"].as_u64().expect("echo pid") as u32),
                Ok(r) => Err(format!("{} {}", r.status, r.text())),
                Err(e) => Err(e.to_string()),
            },
        );
    }
    out
}

fn skip(why: &str) {
    eprintln!("SKIPPED: {why}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mdns_spreads_over_hosts_survives_a_kill_and_takes_back_a_restart() {
    let lan = match Lan::new(3) {
        Ok(lan) => lan,
        Err(why) => return skip(&why),
    };
    let mesh = Mesh::new();
    let cfg = config(
        mesh.home(),
        "mdns",
        serde_json::json!({"component": "mdns", "configuration": {"interfaces": ["eth0"]}}),
    );
    let (ha, h1, h2) = (&lan.hosts[0], &lan.hosts[1], &lan.hosts[2]);
    let mut b1 = echo_sidecar(&mesh, "b", h1, &cfg).await;
    let b2 = echo_sidecar(&mesh, "b", h2, &cfg).await;
    let mut a = mesh
        .sidecar("a")
        .on(ha)
        .args(["--config", &cfg.to_string_lossy()])
        .spawn();
    a.wait_outbound_ready().await;
    let (p1, p2) = (app_pid(&b1), app_pid(&b2));

    // Both instances get traffic.
    wait_until(
        Duration::from_secs(20),
        "both instances of b to answer",
        || async {
            let seen: BTreeSet<u32> = spread(&a, 10).await.into_iter().flatten().collect();
            (seen.contains(&p1) && seen.contains(&p2)).then_some(())
        },
    )
    .await;
    let meta = a.call("GET", "/v1.0/metadata", "").await.unwrap().json();
    assert_eq!(meta["nameResolution"]["resolver"], "mdns", "{meta}");
    let listed = meta["nameResolution"]["targets"][0]["endpoints"].to_string();
    for (h, s) in [(h1, &b1), (h2, &b2)] {
        assert!(listed.contains(&format!("{}:{}", h.addr, s.mesh)), "{meta}");
    }

    // One instance dies without a goodbye: requests move to the other (its failed connection
    // ejects it and the built-in retry goes to the other instance), and keep succeeding.
    b1.kill().await;
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(p1 as i32),
        nix::sys::signal::Signal::SIGKILL,
    );
    wait_until(
        Duration::from_secs(10),
        "requests to go to the live instance only",
        || async {
            spread(&a, 10)
                .await
                .iter()
                .all(|r| r == &Ok(p2))
                .then_some(())
        },
    )
    .await;
    let after: Vec<_> = spread(&a, 20).await;
    assert!(
        after.iter().all(|r| r == &Ok(p2)),
        "after the kill: {after:?}"
    );
    let meta = a.call("GET", "/v1.0/metadata", "").await.unwrap().json();
    let dead = format!("{}:{}", h1.addr, b1.mesh);
    let endpoints = meta["nameResolution"]["targets"][0]["endpoints"]
        .as_array()
        .unwrap()
        .clone();
    let state = endpoints
        .iter()
        .find(|e| e["address"] == dead.as_str())
        .map(|e| e["state"].clone());
    assert!(
        state.as_ref().is_none_or(|s| s != "up"),
        "the dead endpoint is not ejected: {meta}"
    );

    // It comes back (a new process, announced afresh): it gets traffic again.
    let b1 = echo_sidecar(&mesh, "b", h1, &cfg).await;
    let p1 = app_pid(&b1);
    wait_until(
        Duration::from_secs(20),
        "the restarted instance to get traffic",
        || async { spread(&a, 10).await.contains(&Ok(p1)).then_some(()) },
    )
    .await;

    // An app nobody announces: the error says what was asked and what else to use.
    let r = a
        .call("GET", "/v1.0/invoke/nobody/method/x", "")
        .await
        .unwrap();
    assert_eq!(r.status, 500, "{}", r.text());
    let msg = r.json()["message"].as_str().unwrap_or_default().to_owned();
    assert!(
        msg.contains("no mDNS answer for app nobody") && msg.contains("interfaces eth0"),
        "{msg}"
    );
    assert!(msg.contains("local, static or dns resolver"), "{msg}");
    drop((a, b1, b2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_zeroconf_sees_the_announcement() {
    let lan = match Lan::new(2) {
        Ok(lan) => lan,
        Err(why) => return skip(&why),
    };
    let python = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../sdk/python/.venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run scripts/sdk-deps.sh (make test does)",
        python.display()
    );
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../sdk/python/mdns_browse.py");
    let mesh = Mesh::new();
    let cfg = config(
        mesh.home(),
        "mdns",
        serde_json::json!({"component": "mdns", "configuration": {"interfaces": ["eth0"]}}),
    );
    let b = echo_sidecar(&mesh, "b", &lan.hosts[0], &cfg).await;

    // Another mDNS implementation, on another host, browsing with its own defaults.
    let out = lan.hosts[1]
        .tokio_command(&python.to_string_lossy())
        .args([script.to_string_lossy().as_ref(), "b", "15"])
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "python-zeroconf did not find b: {stderr}"
    );
    let found: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    // The instance: the app id and a suffix of its own.
    let name = found["name"].as_str().unwrap_or_default();
    let suffix = name
        .strip_prefix("b-")
        .and_then(|n| n.strip_suffix("._outrider._tcp.local."));
    assert!(
        suffix.is_some_and(|s| s.len() == 8 && s.chars().all(|c| c.is_ascii_hexdigit())),
        "{found}"
    );
    assert_eq!(found["port"], b.mesh, "{found}");
    assert_eq!(
        found["addresses"],
        serde_json::json!([lan.hosts[0].addr.to_string()]),
        "{found}"
    );
    let props = &found["properties"];
    assert_eq!(
        (props["app-id"].as_str(), props["namespace"].as_str()),
        (Some("b"), Some("default")),
        "{found}"
    );
    assert_eq!(props["mesh-port"], b.mesh.to_string(), "{found}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_follows_changing_records_from_a_real_server() {
    let lan = match Lan::new(4) {
        Ok(lan) => lan,
        Err(why) => return skip(&why),
    };
    let (hdns, ha, h1, h2) = (&lan.hosts[0], &lan.hosts[1], &lan.hosts[2], &lan.hosts[3]);
    let mesh = Mesh::new();
    // The B sidecars themselves need no resolver; only A asks DNS.
    let plain = config(
        mesh.home(),
        "plain",
        serde_json::json!({"component": "static", "configuration": {"apps": {}}}),
    );
    let b1 = echo_sidecar(&mesh, "b", h1, &plain).await;
    let b2 = echo_sidecar(&mesh, "b", h2, &plain).await;
    let (p1, p2) = (app_pid(&b1), app_pid(&b2));
    let cfg = config(
        mesh.home(),
        "dns",
        serde_json::json!({"component": "dns", "configuration": {
            "nameservers": [hdns.addr.to_string()], "meshPort": b1.mesh,
        }}),
    );

    // An A record for b, no SRV record: b1, at the configured mesh port.
    let mut server = hdns.dnsmasq(&[format!(
        "--host-record=b.default.svc.cluster.local,{}",
        h1.addr
    )]);
    let mut a = mesh
        .sidecar("a")
        .on(ha)
        .args(["--config", &cfg.to_string_lossy()])
        .spawn();
    a.wait_outbound_ready().await;
    wait_until(Duration::from_secs(15), "b to resolve to b1", || async {
        spread(&a, 5)
            .await
            .iter()
            .all(|r| r == &Ok(p1))
            .then_some(())
    })
    .await;

    // The records change: an SRV record now names b2's host and its own port. Traffic moves
    // without a restart of A.
    server.kill().await.unwrap();
    let mut records = vec![
        format!("--host-record=b.default.svc.cluster.local,{}", h1.addr),
        format!("--host-record=b2.lan.test,{}", h2.addr),
        format!(
            "--srv-host=_mesh._tcp.b.default.svc.cluster.local,b2.lan.test,{}",
            b2.mesh
        ),
    ];
    let mut server = hdns.dnsmasq(&records);
    wait_until(Duration::from_secs(20), "traffic to move to b2", || async {
        spread(&a, 5)
            .await
            .iter()
            .all(|r| r == &Ok(p2))
            .then_some(())
    })
    .await;
    let meta = a.call("GET", "/v1.0/metadata", "").await.unwrap().json();
    assert_eq!(meta["nameResolution"]["resolver"], "dns", "{meta}");
    let endpoints = meta["nameResolution"]["targets"][0]["endpoints"].to_string();
    assert!(
        endpoints.contains(&format!("{}:{}", h2.addr, b2.mesh)),
        "{meta}"
    );
    // Without a UDP SRV record b2 is HTTP/2 only, though it listens on UDP.
    let h3 = ["direction=\"outbound\"", "transport=\"h3\""];
    assert_eq!(a.metric_sum("outrider_mesh_requests_total", &h3).await, 0.0);

    // A `_mesh._udp` record for the same host and port: b2 offers HTTP/3, and auto takes it.
    server.kill().await.unwrap();
    records.push(format!(
        "--srv-host=_mesh._udp.b.default.svc.cluster.local,b2.lan.test,{}",
        b2.mesh
    ));
    let _server = hdns.dnsmasq(&records);
    wait_until(
        Duration::from_secs(20),
        "requests to b2 to go over h3",
        || async {
            let all_b2 = spread(&a, 5).await.iter().all(|r| r == &Ok(p2));
            let over_h3 = a.metric_sum("outrider_mesh_requests_total", &h3).await > 0.0;
            (all_b2 && over_h3).then_some(())
        },
    )
    .await;

    // A name DNS does not know: the error names it.
    let r = a
        .call("GET", "/v1.0/invoke/nobody/method/x", "")
        .await
        .unwrap();
    assert_eq!(r.status, 500, "{}", r.text());
    let msg = r.json()["message"].as_str().unwrap_or_default().to_owned();
    assert!(
        msg.contains("DNS has no address for nobody.default.svc.cluster.local."),
        "{msg}"
    );
}

/// Sends 160 invocations of `/slow/100`, 8 at a time, through `caller`; returns how many the
/// slow instance (`slow`) served.
async fn slow_share(caller: &Sidecar, slow: &FakeApp) -> f64 {
    let before = slow.seen().len();
    let url = format!("{}/v1.0/invoke/b/method/slow/100", caller.api_url());
    let workers: Vec<_> = (0..8)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move {
                for _ in 0..20 {
                    let r = outrider_testkit::send("GET", &url, &[], "").await.unwrap();
                    assert_eq!(r.status, 200, "{}", r.text());
                }
            })
        })
        .collect();
    for w in workers {
        w.await.unwrap();
    }
    (slow.seen().len() - before) as f64 / 160.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p2c_sends_a_slow_endpoint_less_than_round_robin() {
    let mesh = Mesh::new();
    // b has two instances: one whose app takes 100 ms, one (the echo app) that answers at once.
    let slow = FakeApp::start("slow").await;
    let mut b_slow = mesh.sidecar("b").app_port(slow.port).start().await;
    b_slow.wait_ready().await;
    let mut b_fast = mesh
        .sidecar("b")
        .app_port(free_port())
        .command([binary("echo-app").to_string_lossy().into_owned()])
        .spawn();
    b_fast.wait_ready().await;
    let endpoints = [
        format!("127.0.0.1:{}", b_slow.mesh),
        format!("127.0.0.1:{}", b_fast.mesh),
    ];
    let mut shares = BTreeMap::new();
    for balancing in ["roundRobin", "p2c"] {
        let cfg = config(
            mesh.home(),
            balancing,
            serde_json::json!({"component": "static", "configuration": {
                "apps": {"b": endpoints}, "loadBalancing": balancing,
            }}),
        );
        let a = mesh
            .sidecar("a")
            .args(["--config", &cfg.to_string_lossy()])
            .start()
            .await;
        shares.insert(balancing, slow_share(&a, &slow).await);
        let meta = a.get("/v1.0/metadata").await;
        assert_eq!(meta.json()["nameResolution"]["loadBalancing"], balancing);
        let page = outrider_testkit::send("GET", &format!("{}/status.txt", a.admin_url()), &[], "")
            .await
            .unwrap()
            .text();
        assert!(
            page.contains(&format!("name resolution: static, balancing: {balancing}")),
            "{page}"
        );
        for e in &endpoints {
            // Static entries without transports are HTTP/2 only.
            assert!(page.contains(&format!("  {e} up h2\n")), "{page}");
        }
    }
    eprintln!("share of the slow instance: {shares:?}");
    // Round-robin alternates whatever the latency; p2c sees the slow one's load and avoids it.
    assert!((0.4..=0.6).contains(&shares["roundRobin"]), "{shares:?}");
    assert!(shares["p2c"] < 0.2, "{shares:?}");
    assert!(shares["roundRobin"] - shares["p2c"] > 0.25, "{shares:?}");
}
