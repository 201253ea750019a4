//! Rotating the CA under traffic: two hosts call each other at 200 requests a second while the
//! CA host's root is rotated (add, switch, retire) and workload certificates live three seconds.
//! Not one request may fail; after retirement a peer still holding a certificate from the old
//! root is refused.
//!
//! Hosts are network namespaces on a bridge (`testkit::netns`); without root the test reports
//! itself skipped.

use std::path::Path;
use std::time::Duration;

use outrider_testkit::ca::CaService;
use outrider_testkit::netns::{Host, Lan, static_config};
use outrider_testkit::{
    Mesh, Sidecar, WELL_KNOWN_PORTS, binary, free_port, outrider_command, sum_metric, wait_until,
};

const MESH: u16 = 50002;

/// Calls `b` through the local sidecar at a fixed rate until a file appears, then prints one JSON
/// line: how many answered 200, how many did not, and the first few failures.
const LOAD: &str = r#"
import http.client, json, os, sys, time
port, stop, rate = int(sys.argv[1]), sys.argv[2], float(sys.argv[3])
ok = failed = 0
errors = []
conn = None
step = 1.0 / rate
due = time.monotonic()
while not os.path.exists(stop):
    now = time.monotonic()
    if now < due:
        time.sleep(due - now)
    due += step
    try:
        if conn is None:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("POST", "/v1.0/invoke/b/method/load", body=b"{}", headers={"content-type": "application/json"})
        r = conn.getresponse()
        body = r.read()
        if r.status == 200:
            ok += 1
        else:
            failed += 1
            if len(errors) < 5:
                errors.append("%d %r" % (r.status, body[:300]))
    except Exception as e:
        failed += 1
        conn = None
        if len(errors) < 5:
            errors.append(repr(e))
print(json.dumps({"ok": ok, "failed": failed, "errors": errors}), flush=True)
"#;

async fn sidecar(
    mesh: &Mesh,
    app: &str,
    host: &Host,
    cfg: &Path,
    identity: &[String],
    env: &[(&str, &str)],
) -> Sidecar {
    let mut b = mesh
        .sidecar(app)
        .on(host)
        .well_known_ports()
        .app_port(free_port())
        .args(["--config", &cfg.to_string_lossy()])
        .args(identity.iter().cloned())
        .command([binary("echo-app").to_string_lossy().into_owned()]);
    for (k, v) in env {
        b = b.env(k, v);
    }
    let mut s = b.spawn();
    s.wait_ready().await;
    s
}

async fn gauge(s: &Sidecar, name: &str) -> f64 {
    sum_metric(&s.metrics().await, name, &[])
}

/// Waits until every sidecar's gauge `name` satisfies `ok`.
async fn until_all(sidecars: &[&Sidecar], name: &str, what: &str, ok: impl Fn(f64, usize) -> bool) {
    wait_until(Duration::from_secs(30), what, || async {
        for (i, s) in sidecars.iter().enumerate() {
            if !ok(gauge(s, name).await, i) {
                return None;
            }
        }
        Some(())
    })
    .await
}

fn rotate(step: &str, dir: &Path, extra: &[&str]) -> (i32, String) {
    let (code, out, err) = outrider_command(
        &[
            &["ca", "rotate", step, "--dir", dir.to_str().unwrap()][..],
            extra,
        ]
        .concat(),
    );
    (code, format!("{out}{err}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotating_the_root_under_200_rps_fails_no_request() {
    let lan = match Lan::new(4) {
        Ok(lan) => lan,
        Err(why) => return eprintln!("SKIPPED: {why}"),
    };
    let [ca_host, ha, hb, hc] = [&lan.hosts[0], &lan.hosts[1], &lan.hosts[2], &lan.hosts[3]];
    let ca = CaService::init()
        .serve_on(ca_host, &["--workload-cert-ttl", "3s"])
        .await;
    let mesh = Mesh::new();
    // The old CA as a peer that never renews would hold it: a copy, for after retirement.
    let stale = tempfile::tempdir().unwrap();
    let old_ca = stale.path().join("old-ca");
    std::fs::create_dir(&old_ca).unwrap();
    for f in ["ca.crt", "ca.key", "bundle.pem"] {
        std::fs::copy(ca.dir().join(f), old_ca.join(f)).unwrap();
    }
    let anchors = mesh.home().join("anchors.pem");
    std::fs::copy(ca.anchors(), &anchors).unwrap();
    let flags: Vec<String> = [
        "--sentry-address",
        &ca.addr.to_string(),
        "--trust-anchors",
        &anchors.to_string_lossy(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let cfg = static_config(
        mesh.home(),
        &[("a", ha.addr), ("b", hb.addr), ("c", hc.addr)],
        MESH,
    );
    let b = sidecar(
        &mesh,
        "b",
        hb,
        &cfg,
        &flags,
        &[("OUTRIDER_CA_TOKEN", &ca.token("default", "b", 1))],
    )
    .await;
    let a = sidecar(
        &mesh,
        "a",
        ha,
        &cfg,
        &flags,
        &[("OUTRIDER_CA_TOKEN", &ca.token("default", "a", 1))],
    )
    .await;
    let both = [&a, &b];

    let stop = mesh.home().join("stop-load");
    let port = WELL_KNOWN_PORTS[0].to_string();
    let mut load = ha.background(
        "python3",
        &["-c", LOAD, &port, &stop.to_string_lossy(), "200"],
    );
    wait_until(Duration::from_secs(30), "traffic from a to b", || async {
        let m = b.metrics().await;
        (sum_metric(
            &m,
            "outrider_mesh_requests_total",
            &["direction=\"inbound\""],
        ) >= 200.0)
            .then_some(())
    })
    .await;

    // Add: both sidecars trust both roots before anything issues from the new one.
    let (code, said) = rotate("add", &ca.dir(), &[]);
    assert_eq!(code, 0, "{said}");
    until_all(
        &both,
        "outrider_trust_bundle_roots",
        "both roots trusted",
        |n, _| n == 2.0,
    )
    .await;
    // Switch: every sidecar renews (twice, so from the new root whatever the reload's timing).
    let mut before = Vec::new();
    for s in both {
        before.push(gauge(s, "outrider_workload_cert_generation").await);
    }
    let (code, said) = rotate("switch", &ca.dir(), &[]);
    assert_eq!(code, 0, "{said}");
    until_all(
        &both,
        "outrider_workload_cert_generation",
        "renewals after the switch",
        |g, i| g >= before[i] + 2.0,
    )
    .await;
    // Retire, no sooner than a certificate lifetime (and the CA's reload) after the switch.
    wait_until(Duration::from_secs(30), "retirement allowed", || async {
        let (code, said) = rotate("retire", &ca.dir(), &["--grace", "5s"]);
        (code == 0).then_some(said)
    })
    .await;
    until_all(
        &both,
        "outrider_trust_bundle_roots",
        "the old root gone",
        |n, _| n == 1.0,
    )
    .await;
    let mut after = Vec::new();
    for s in both {
        after.push(gauge(s, "outrider_workload_cert_generation").await);
    }
    until_all(
        &both,
        "outrider_workload_cert_generation",
        "renewals after retirement",
        |g, i| g >= after[i] + 2.0,
    )
    .await;

    std::fs::write(&stop, b"").unwrap();
    load.wait_log("\"ok\"").await;
    let log = load.log();
    let result: serde_json::Value = serde_json::from_str(log.lines().last().unwrap()).unwrap();
    eprintln!("rotation under load: {result}");
    assert_eq!(
        result["failed"],
        0,
        "requests failed during the rotation: {result}\n{}",
        a.log()
    );
    assert!(
        result["ok"].as_u64().unwrap() >= 1000,
        "too little traffic to mean anything: {result}"
    );

    // A peer still holding a certificate from the retired root (it trusts both roots itself):
    // b refuses it, a refuses to call it.
    let both_roots = format!(
        "{}{}",
        std::fs::read_to_string(old_ca.join("bundle.pem")).unwrap(),
        std::fs::read_to_string(ca.anchors()).unwrap()
    );
    std::fs::write(old_ca.join("bundle.pem"), both_roots).unwrap();
    let c = sidecar(
        &mesh,
        "c",
        hc,
        &cfg,
        &["--ca-dir".into(), old_ca.to_string_lossy().into_owned()],
        &[],
    )
    .await;
    let r = c
        .call("POST", "/v1.0/invoke/b/method/from-old-root", "{}")
        .await
        .unwrap();
    assert_ne!(
        r.status,
        200,
        "b accepted a retired root's certificate: {}",
        r.text()
    );
    wait_until(Duration::from_secs(10), "b's refusal logged", || async {
        b.log().contains("UnknownIssuer").then_some(())
    })
    .await;
    let r = a
        .call("POST", "/v1.0/invoke/c/method/to-old-root", "{}")
        .await
        .unwrap();
    assert_ne!(
        r.status,
        200,
        "a accepted a retired root's certificate: {}",
        r.text()
    );
}
