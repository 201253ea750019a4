//! `outrider status` and `outrider top` against real sidecars: what the local registry lists,
//! with the figures each sidecar's /metrics gives while load runs.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use outrider_testkit::{FakeApp, Mesh, Sidecar, outrider_command};
use serde_json::Value;

/// Runs `outrider ARGS` off the runtime (it waits out its window).
async fn outrider(args: Vec<String>) -> (i32, String, String) {
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        outrider_command(&args)
    })
    .await
    .unwrap()
}

/// Calls `b` through `a` until dropped.
struct Load(Arc<AtomicBool>);

impl Load {
    fn start(a: &Sidecar) -> Self {
        let running = Arc::new(AtomicBool::new(true));
        let (flag, url) = (
            running.clone(),
            format!("{}/v1.0/invoke/b/method/hello", a.api_url()),
        );
        tokio::spawn(async move {
            while flag.load(Ordering::Relaxed) {
                let _ = outrider_testkit::send("GET", &url, &[], "").await;
            }
        });
        Self(running)
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Relaxed);
    }
}

#[tokio::test]
async fn status_lists_every_sidecar_with_its_ports_and_traffic_and_top_its_routes() {
    let mesh = Mesh::new();
    let app = FakeApp::start("b").await;
    let a = mesh.sidecar("a").start().await;
    let b = mesh.sidecar("b").app_port(app.port).start().await;
    let long = "c-an-app-id-long-enough-that-a-table-of-one-hundred-columns-must-cut-it";
    let c = mesh.sidecar(long).start().await;
    let dir = mesh.registry_dir().to_string_lossy().into_owned();
    let r = a.get("/v1.0/invoke/b/method/first").await;
    assert_eq!(r.status, 200, "{}", r.text());
    let _load = Load::start(&a);

    let args = |more: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = more.iter().map(|s| (*s).to_owned()).collect();
        v.extend(["--registry-dir".to_owned(), dir.clone()]);
        v
    };
    let (code, out, err) = outrider(args(&["status", "--json", "--window", "2s"])).await;
    assert_eq!(code, 0, "{out}{err}");
    let listed: Vec<Value> = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(listed.len(), 3, "{out}");
    for (s, app_port) in [(&a, None), (&b, Some(app.port)), (&c, None)] {
        let row = listed
            .iter()
            .find(|r| r["appId"] == s.app_id.as_str())
            .unwrap_or_else(|| panic!("{} is not listed: {out}", s.app_id));
        let ports = &row["ports"];
        assert_eq!(ports["http"], s.api, "{row}");
        assert_eq!(ports["grpc"], s.grpc, "{row}");
        assert_eq!(ports["admin"], s.admin, "{row}");
        assert_eq!(ports["mesh"], s.mesh, "{row}");
        assert_eq!(
            ports["app"],
            app_port.map_or(Value::Null, Value::from),
            "{row}"
        );
        assert_eq!(row["pid"], s.pid(), "{row}");
        assert_eq!(row["namespace"], "default", "{row}");
        assert!(row["uptimeSecs"].as_u64().is_some(), "{row}");
    }
    let requests =
        |app: &str| listed.iter().find(|r| r["appId"] == app).unwrap()["requests"].clone();
    for busy in ["a", "b"] {
        let r = requests(busy);
        assert!(
            r["count"].as_f64().unwrap() > 0.0,
            "{busy} served nothing: {out}"
        );
        assert_eq!(r["success"], 1.0, "{busy}: {out}");
        assert!(
            r["p99"].as_f64().unwrap() >= r["p50"].as_f64().unwrap(),
            "{out}"
        );
    }
    assert_eq!(requests(long)["count"], 0.0, "{out}");

    let (code, table, err) = outrider(args(&["status"])).await;
    assert_eq!(code, 0, "{table}{err}");
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 4, "a header and three sidecars:\n{table}");
    for line in &lines {
        assert!(
            line.chars().count() <= 100,
            "{} columns:\n{table}",
            line.chars().count()
        );
    }
    for s in [&a, &b] {
        let row = lines
            .iter()
            .find(|l| l.starts_with(&format!("{} ", s.app_id)))
            .unwrap();
        assert!(
            row.contains(&s.api.to_string()) && row.contains(&s.admin.to_string()),
            "{table}"
        );
    }
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("c-an-app") && l.contains('…')),
        "{table}"
    );

    let (code, top, err) = outrider(args(&[
        "top",
        "--app-id",
        "a",
        "--iterations",
        "2",
        "--interval",
        "1s",
    ]))
    .await;
    assert_eq!(code, 0, "{top}{err}");
    assert!(top.starts_with("a.default at 127.0.0.1:"), "{top}");
    assert!(
        top.contains("GET /v1.0/invoke/{id}/method/{method}"),
        "{top}"
    );
    assert!(
        top.lines()
            .any(|l| l.starts_with("target") && l.contains(" b ")),
        "{top}"
    );
    assert_eq!(
        top.matches("a.default at").count(),
        2,
        "two refreshes:\n{top}"
    );

    let (code, _, err) = outrider(args(&["top", "--app-id", "nobody", "--iterations", "1"])).await;
    assert_eq!(code, 1);
    assert!(
        err.contains("no sidecar of app \"nobody\"") && err.contains("a.default"),
        "{err}"
    );
}

/// `outrider status --mdns` on one host of a LAN lists the sidecars the others announce, with
/// their admin ports (TXT `admin-port`), and reads their figures from their `/metrics`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_over_mdns_lists_the_lans_sidecars_with_their_figures() {
    let lan = match outrider_testkit::netns::Lan::new(3) {
        Ok(lan) => lan,
        Err(why) => {
            eprintln!("SKIPPED: {why}");
            return;
        }
    };
    let mesh = Mesh::new();
    let cfg = mesh.home().join("mdns.yaml");
    std::fs::write(
        &cfg,
        "kind: Configuration\nspec:\n  nameResolution:\n    component: mdns\n    configuration:\n      interfaces: [eth0]\n",
    )
    .unwrap();
    let cfg = cfg.to_string_lossy().into_owned();
    let (here, h1, h2) = (&lan.hosts[0], &lan.hosts[1], &lan.hosts[2]);
    let b = mesh
        .sidecar("b")
        .on(h1)
        .args(["--config", &cfg])
        .start()
        .await;
    let c = mesh
        .sidecar("c")
        .on(h2)
        .args(["--config", &cfg])
        .start()
        .await;
    let empty = tempfile::tempdir().unwrap();
    let out = here
        .tokio_command(&outrider_testkit::binary("outrider").to_string_lossy())
        .args([
            "status",
            "--json",
            "--mdns",
            "--interfaces",
            "eth0",
            "--browse",
            "3s",
        ])
        .arg("--registry-dir")
        .arg(empty.path())
        .kill_on_drop(true)
        .output()
        .await
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    let listed: Vec<Value> =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {text}"));
    for (s, host) in [(&b, h1), (&c, h2)] {
        let row = listed
            .iter()
            .find(|r| r["appId"] == s.app_id.as_str())
            .unwrap_or_else(|| panic!("{} is not listed: {text}", s.app_id));
        assert_eq!(row["source"], "mdns", "{row}");
        assert_eq!(row["mesh"], format!("{}:{}", host.addr, s.mesh), "{row}");
        assert_eq!(row["ports"]["admin"], s.admin, "{row}");
        assert!(
            row.get("error").is_none(),
            "its /metrics was not read: {row}"
        );
        assert!(row["requests"]["count"].is_number(), "{row}");
    }
}
