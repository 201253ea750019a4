//! Distributed locks through the official SDKs: the JS SDK over HTTP and over gRPC, the Python
//! SDK's gRPC client; each against `lock.redis` on the machine's Redis.

use super::{node_suite, sdk_dir};
use outrider_testkit::{Mesh, Sidecar, unique};

/// A sidecar with the lock store `sdklock` (`lock.redis`).
async fn with_lock_store(mesh: &Mesh, app_id: &str) -> Sidecar {
    let docs = concat!(
        "kind: Component\nmetadata: {name: sdklock}\nspec:\n  type: lock.redis\n  metadata:\n",
        "  - {name: redisHost, value: '127.0.0.1:6379'}\n",
    );
    let res = mesh.resources(app_id, "lock.yaml", docs);
    let mut s = mesh.sidecar(app_id).resources(&res).start().await;
    s.wait_ready().await;
    s
}

#[tokio::test]
async fn javascript_sdk_lock_over_http_and_grpc() {
    let mesh = Mesh::new();
    let s = with_lock_store(&mesh, "sdk-js-lock").await;
    for grpc in [false, true] {
        let run = unique(if grpc { "grpc" } else { "http" });
        let env = [
            ("LOCK_STORE", "sdklock"),
            ("MISSING_STORE", "sdk-no-such-lock"),
            ("RUN_ID", run.as_str()),
        ];
        node_suite("js/lock.mjs", &s, &env, grpc).await;
    }
}

#[tokio::test]
async fn python_sdk_lock_over_grpc() {
    let mesh = Mesh::new();
    let s = with_lock_store(&mesh, "sdk-py-lock").await;
    let (grpc, run) = (s.grpc.to_string(), unique("py"));
    let env = [
        ("DAPR_GRPC_PORT", grpc.as_str()),
        ("LOCK_STORE", "sdklock"),
        ("MISSING_STORE", "sdk-no-such-lock"),
        ("RUN_ID", run.as_str()),
    ];
    let python = sdk_dir().join("python/.venv/bin/python");
    super::run_script_with(python, "python/lock.py", &s, None, &env).await;
}
