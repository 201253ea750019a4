//! Jobs through the official Python SDK's gRPC client: scheduled, read back, replaced and
//! deleted over gRPC, delivered to the app over HTTP with their data as daprd sends it (JSON for
//! `google.protobuf.Value`, the serialized bytes with spaces trimmed for anything else).

use std::time::Duration;

use super::sdk_dir;
use outrider_testkit::{Mesh, unique, wait_until};
use serde_json::{Value, json};

#[tokio::test]
async fn python_sdk_jobs_over_grpc() {
    let mesh = Mesh::new();
    let (s, app) = super::actors::actor_app_sidecar(&mesh, "sdk-py-jobs", json!([])).await;
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
    assert_eq!(
        json_job,
        json!({"greeting": "hi", "n": 1}),
        "whole numbers stay integers"
    );
    let text_job = wait_until(
        Duration::from_secs(20),
        "the StringValue job",
        body(format!("text-{run}")),
    )
    .await;
    // daprd's rule: the serialized StringValue (0a 02 'h' 'i') with Go's spaces trimmed: the
    // leading newline goes, the length byte stays.
    assert_eq!(text_job, Value::String("\u{2}hi".into()));
}
