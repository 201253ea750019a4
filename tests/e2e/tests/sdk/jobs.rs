//! Jobs through the official Python SDK: scheduled, read back, replaced and deleted over gRPC,
//! delivered to an HTTP app with their data as daprd sends it (JSON for `google.protobuf.Value`,
//! the serialized bytes with spaces trimmed for anything else), and to a `dapr.ext.grpc` app as
//! `OnJobEvent` with the data as given.

use std::time::Duration;

use super::sdk_dir;
use outrider_testkit::{Mesh, free_port, unique, wait_until};
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

#[tokio::test]
async fn python_grpc_app_gets_its_jobs() {
    // The script is a dapr.ext.grpc App: its sidecar delivers its jobs as OnJobEvent.
    let mesh = Mesh::new();
    let res = mesh.memory_actor_store();
    let b = mesh
        .sidecar("sdk-py-grpc-jobs")
        .resources(&res)
        .app_port(free_port())
        .args(["--app-protocol", "grpc"]);
    let argv = vec![super::python(), super::script("python/grpc_jobs_app.py")];
    super::app_script_passes(
        b,
        argv,
        &["jobs reach @app.job_event handlers with their data as given"],
    )
    .await;
}
