//! Jobs through the official Python SDK's gRPC client: scheduled, read back, replaced and
//! deleted over gRPC, delivered to the app over HTTP with their data as daprd sends it (JSON for
//! `google.protobuf.Value`, the bytes, trimmed, for anything else).

use std::time::Duration;

use super::sdk_dir;
use outrider_testkit::{ActorApp, Mesh, Turns, unique, wait_until};
use serde_json::{Value, json};

#[tokio::test]
async fn python_sdk_jobs_over_grpc() {
    let mesh = Mesh::new();
    let res = mesh.resources(
        "res",
        "store.yaml",
        "kind: Component\nmetadata: {name: store}\nspec:\n  type: state.in-memory\n  \
         version: v1\n  metadata:\n  - {name: actorStateStore, value: \"true\"}\n",
    );
    let app = ActorApp::start("py", json!({"entities": []}), Turns::default()).await;
    let mut s = mesh
        .sidecar("sdk-py-jobs")
        .resources(&res)
        .app_port(app.port)
        .start()
        .await;
    app.sidecar_port(s.api);
    s.wait_ready().await;
    let (grpc, run) = (s.grpc.to_string(), unique("py"));
    let env = [("DAPR_GRPC_PORT", grpc.as_str()), ("RUN_ID", run.as_str())];
    let python = sdk_dir().join("python/.venv/bin/python");
    super::run_script_with(python, "python/jobs_grpc.py", &s, None, &env).await;
    let body = |job: String| {
        let app = &app;
        move || {
            let found = (app.callbacks().into_iter())
                .find(|c| c.kind == "job" && c.name == job)
                .map(|c| c.body);
            async move { found }
        }
    };
    let json_job = wait_until(
        Duration::from_secs(20),
        "the JSON job",
        body(format!("json-{run}")),
    )
    .await;
    assert_eq!(json_job, json!({"greeting": "hi"}));
    let text_job = wait_until(
        Duration::from_secs(20),
        "the StringValue job",
        body(format!("text-{run}")),
    )
    .await;
    assert_eq!(text_job, Value::String("hello world".into()));
}
