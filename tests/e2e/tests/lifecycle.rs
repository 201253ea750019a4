//! Starting and stopping: the app as a child, signals, graceful drain, bad configuration.

use std::time::Duration;

use nix::sys::signal::Signal;
use outrider_testkit::{FakeApp, Mesh, binary, free_port, send, wait_registered};

#[tokio::test]
async fn the_child_gets_its_env_and_its_exit_status_becomes_ours() {
    let mesh = Mesh::new();
    let out = mesh.home().join("env.txt");
    let script = format!(
        "echo \"$DAPR_HTTP_PORT $APP_PORT $APP_ID\" > {}; exit 7",
        out.display()
    );
    let mut s = mesh
        .sidecar("kid")
        .app_port(free_port())
        .command(["sh", "-c", &script])
        .spawn();
    assert_eq!(
        s.wait_exit(Duration::from_secs(30)).await,
        Some(7),
        "{}",
        s.log()
    );
    let env = std::fs::read_to_string(&out).unwrap();
    let fields: Vec<&str> = env.split_whitespace().collect();
    assert_eq!(fields[0], s.api.to_string());
    assert_eq!(fields[2], "kid");

    let mut s = mesh
        .sidecar("kid2")
        .command(["sh", "-c", "kill -KILL $$"])
        .spawn();
    assert_eq!(
        s.wait_exit(Duration::from_secs(30)).await,
        Some(128 + 9),
        "a signalled child exits like a shell reports it"
    );
}

#[tokio::test]
async fn sigterm_reaches_the_child_and_the_sidecar_deregisters() {
    let mesh = Mesh::new();
    let mark = mesh.home().join("got-term");
    // The app exits 3 on SIGTERM, after noting it.
    let script = format!(
        "trap 'echo term > {}; exit 3' TERM; while :; do sleep 0.05; done",
        mark.display()
    );
    let mut s = mesh
        .sidecar("c")
        .command(["sh", "-c", &script])
        .start()
        .await;
    wait_registered(&mesh, "c", 1).await;
    s.signal(Signal::SIGTERM);
    assert_eq!(
        s.wait_exit(Duration::from_secs(30)).await,
        Some(3),
        "{}",
        s.log()
    );
    assert_eq!(std::fs::read_to_string(&mark).unwrap().trim(), "term");
    wait_registered(&mesh, "c", 0).await;
}

#[tokio::test]
async fn sigterm_drains_in_flight_requests() {
    let mesh = Mesh::new();
    let app = FakeApp::start("b").await;
    let mut b = mesh.sidecar("b").app_port(app.port).start().await;
    let a = mesh.sidecar("a").start().await;
    wait_registered(&mesh, "b", 1).await;
    let url = format!("{}/v1.0/invoke/b/method/slow/1500", a.api_url());
    let slow = tokio::spawn(async move { send("GET", &url, &[], "").await });
    // Wait until the request is inside the app, then stop B.
    outrider_testkit::wait_until(
        Duration::from_secs(10),
        "the slow request to arrive",
        || async { (!app.seen().is_empty()).then_some(()) },
    )
    .await;
    b.signal(Signal::SIGTERM);
    let r = slow.await.unwrap().unwrap();
    assert_eq!(
        (r.status, r.text().as_str()),
        (200, "slow done"),
        "the in-flight request was dropped"
    );
    assert_eq!(b.wait_exit(Duration::from_secs(30)).await, Some(0));
}

#[tokio::test]
async fn the_shutdown_api_stops_the_sidecar() {
    let mesh = Mesh::new();
    let mut s = mesh.sidecar("a").start().await;
    let r = s.request("POST", "/v1.0/shutdown", &[], "").await;
    assert_eq!(r.status, 204);
    assert_eq!(s.wait_exit(Duration::from_secs(30)).await, Some(0));
}

async fn run_cli(args: &[&str]) -> (Option<i32>, String) {
    let out = tokio::process::Command::new(binary("outrider"))
        .args(args)
        .env("HOME", std::env::temp_dir())
        .output()
        .await
        .unwrap();
    (
        out.status.code(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[tokio::test]
async fn bad_flags_and_files_are_reported_before_binding() {
    let (code, out) = run_cli(&["run", "--app-id", "a", "--bogus"]).await;
    assert_eq!(code, Some(2));
    assert!(out.contains("--bogus"), "{out}");

    let port = free_port();
    let p = port.to_string();
    let (code, out) = run_cli(&[
        "run",
        "--app-id",
        "a.b",
        "--dapr-http-port",
        &p,
        "--mesh-port",
        &p,
        "--app-protocol",
        "grpcx",
    ])
    .await;
    assert_eq!(code, Some(2), "{out}");
    for want in [
        "--app-id: \"a.b\"",
        "--mesh-port",
        "--app-protocol: \"grpcx\"",
    ] {
        assert!(out.contains(want), "missing {want:?} in {out}");
    }
    assert!(
        std::net::TcpListener::bind(("127.0.0.1", port)).is_ok(),
        "a port was bound despite errors"
    );

    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("config.yaml");
    std::fs::write(&cfg, "kind: Configuration\nspec:\n  nameResolution:\n    component: static\n    configuration:\n      apps:\n        b: [nowhere]\n").unwrap();
    let (code, out) = run_cli(&[
        "run",
        "--app-id",
        "a",
        "--config",
        cfg.to_str().unwrap(),
        "--dapr-http-port",
        &p,
    ])
    .await;
    assert_eq!(code, Some(2), "{out}");
    assert!(
        out.contains("config.yaml: spec.nameResolution.configuration.apps.b[0]: \"nowhere\""),
        "{out}"
    );

    let (code, out) = run_cli(&["--version"]).await;
    assert_eq!(
        (code, out.starts_with("outrider ")),
        (Some(0), true),
        "{out}"
    );
    let (code, out) = run_cli(&["run", "--help"]).await;
    assert_eq!(code, Some(0));
    assert!(
        out.contains("--app-id") && out.contains("--mesh-port"),
        "{out}"
    );
}

#[tokio::test]
async fn a_taken_default_mesh_port_falls_back_to_a_free_one() {
    // Hold 50002 (if something else holds it already, the situation is the same).
    let _holder = std::net::TcpListener::bind("0.0.0.0:50002");
    let mesh = Mesh::new();
    let app = FakeApp::start("b").await;
    let b = mesh
        .sidecar("b")
        .app_port(app.port)
        .default_mesh_port()
        .start()
        .await;
    assert!(
        b.log().contains("the default mesh port is taken"),
        "{}",
        b.log()
    );
    wait_registered(&mesh, "b", 1).await;
    let entry = std::fs::read_dir(mesh.registry_dir())
        .unwrap()
        .flatten()
        .find(|e| e.file_name().to_string_lossy().contains("~b~"))
        .unwrap();
    assert!(
        !entry.file_name().to_string_lossy().ends_with("~50002.json"),
        "registered the taken port"
    );
    let a = mesh.sidecar("a").start().await;
    let r = a.get("/v1.0/invoke/b/method/x").await;
    assert_eq!(r.status, 200, "{}", r.text());
}

#[tokio::test]
async fn a_taken_port_fails_the_start_with_its_flag() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let (code, out) = run_cli(&[
        "run",
        "--app-id",
        "a",
        "--dapr-http-port",
        &port,
        "--mesh-port",
        "0",
        "--metrics-port",
        "0",
    ])
    .await;
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("--dapr-http-port"), "{out}");
}

#[tokio::test]
async fn a_taken_default_grpc_port_moves_only_for_a_child_told_of_it() {
    // Hold 50001 (if something else holds it already, the situation is the same).
    let _holder = std::net::TcpListener::bind("127.0.0.1:50001");
    let home = tempfile::tempdir().unwrap();
    let data = home.path().display().to_string();
    let base = [
        "run",
        "--app-id",
        "g",
        "--dapr-http-port",
        "0",
        "--mesh-port",
        "0",
        "--metrics-port",
        "0",
        "--data-dir",
        &data,
    ];
    // No app to tell: an SDK would reach whichever sidecar holds 50001, so the start fails.
    let (code, out) = run_cli(&base).await;
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("--dapr-grpc-port"), "{out}");
    // An app started as the child learns the free port the sidecar took instead.
    let mut with_child = base.to_vec();
    with_child.extend([
        "--",
        "sh",
        "-c",
        "echo child-sees-grpc-port=$DAPR_GRPC_PORT",
    ]);
    let (code, out) = run_cli(&with_child).await;
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("the default gRPC API port is taken"), "{out}");
    let port = out
        .split("child-sees-grpc-port=")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|p| p.parse::<u16>().ok())
        .unwrap_or_else(|| panic!("the child printed no port:\n{out}"));
    assert_ne!(port, 50001, "{out}");
}
