//! Compatibility through clients no one here wrote: the official Dapr JavaScript and Python SDKs
//! (tests/sdk/) drive real sidecars. `make test` installs them first (scripts/sdk-deps.sh).

use std::path::PathBuf;
use std::time::Duration;

use outrider_testkit::{Mesh, Sidecar, binary, free_port, wait_registered};

fn sdk_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../sdk")
}

/// Runs one SDK script against `caller`, failing with its output unless it exits 0.
async fn run_script(program: PathBuf, script: &str, caller: &Sidecar, token: Option<&str>) {
    let path = sdk_dir().join(script);
    assert!(program.exists(), "{} is missing: run scripts/sdk-deps.sh (make test does)", program.display());
    let mut cmd = tokio::process::Command::new(&program);
    cmd.arg(&path)
        .env_remove("DAPR_HTTP_ENDPOINT")
        .env_remove("DAPR_API_TOKEN")
        .env("DAPR_HTTP_PORT", caller.api.to_string())
        .env("DAPR_GRPC_PORT", free_port().to_string())
        .env("CALLER_APP_ID", &caller.app_id)
        .env("TARGET_APP_ID", "sdk-echo")
        .env("MISSING_APP_ID", "sdk-nobody")
        .env("DAPR_HEALTH_TIMEOUT", "30")
        .kill_on_drop(true);
    if let Some(t) = token {
        cmd.env("DAPR_API_TOKEN", t);
    }
    let out = tokio::time::timeout(Duration::from_secs(240), cmd.output())
        .await
        .expect("SDK script timed out")
        .expect("running the SDK script");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{script} failed ({}):\n{text}\n--- caller log ---\n{}", out.status, caller.log());
    assert!(text.contains("ok - ") && !text.contains("not ok - "), "{script} ran no check:\n{text}");
    println!("{script}:\n{text}");
}

async fn mesh_with_echo() -> (Mesh, Sidecar) {
    let mesh = Mesh::new();
    let port = free_port();
    let echo = binary("echo-app").to_string_lossy().into_owned();
    let mut b = mesh.sidecar("sdk-echo").app_port(port).command([echo]).start().await;
    b.wait_ready().await;
    wait_registered(&mesh, "sdk-echo", 1).await;
    (mesh, b)
}

#[tokio::test]
async fn javascript_sdk_invokes_and_reads_metadata() {
    let (mesh, _b) = mesh_with_echo().await;
    let node = PathBuf::from("/usr/bin/node");
    let a = mesh.sidecar("sdk-js-caller").start().await;
    run_script(node.clone(), "js/invoke.mjs", &a, None).await;
    let guarded = mesh.sidecar("sdk-js-token").env("DAPR_API_TOKEN", "tok-js").start().await;
    run_script(node, "js/invoke.mjs", &guarded, Some("tok-js")).await;
}

#[tokio::test]
async fn javascript_sdk_state() {
    let mesh = Mesh::new();
    let s = mesh.sidecar("sdk-js-state").start().await;
    let node = PathBuf::from("/usr/bin/node");
    let path = sdk_dir().join("js/state.mjs");
    let out = tokio::time::timeout(
        Duration::from_secs(240),
        tokio::process::Command::new(&node)
            .arg(&path)
            .env_remove("DAPR_HTTP_ENDPOINT")
            .env_remove("DAPR_API_TOKEN")
            .env("DAPR_HTTP_PORT", s.api.to_string())
            .env("STATE_STORE", "statestore")
            .env("MISSING_STORE", "sdk-no-such-store")
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("SDK script timed out")
    .expect("running node");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "js/state.mjs failed ({}):\n{text}\n--- sidecar log ---\n{}", out.status, s.log());
    assert!(text.contains("ok - ") && !text.contains("not ok - "), "js/state.mjs ran no check:\n{text}");
}

#[tokio::test]
async fn python_sdk_invokes_over_http() {
    let (mesh, _b) = mesh_with_echo().await;
    let python = sdk_dir().join("python/.venv/bin/python");
    let a = mesh.sidecar("sdk-py-caller").start().await;
    run_script(python.clone(), "python/invoke.py", &a, None).await;
    let guarded = mesh.sidecar("sdk-py-token").env("DAPR_API_TOKEN", "tok-py").start().await;
    run_script(python, "python/invoke.py", &guarded, Some("tok-py")).await;
}

#[tokio::test]
async fn javascript_sdk_pubsub_as_the_app() {
    // The script is the app: the sidecar starts it, and exits with its status.
    let mesh = Mesh::new();
    let script = sdk_dir().join("js/pubsub.mjs").to_string_lossy().into_owned();
    let mut s = mesh
        .sidecar("sdk-js-pub")
        .app_port(free_port())
        .env("PUBSUB_NAME", "pubsub")
        .command(["/usr/bin/node", script.as_str()])
        .spawn();
    let code = s.wait_exit(Duration::from_secs(150)).await;
    let log = s.log();
    assert_eq!(code, Some(0), "js/pubsub.mjs failed:\n{log}");
    assert!(log.contains("ok - ") && !log.contains("not ok - "), "js/pubsub.mjs ran no check:\n{log}");
}
