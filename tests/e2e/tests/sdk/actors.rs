//! Actors through the official SDKs: the JS SDK (HTTP; it hosts actors over HTTP only) is the
//! app, registering an actor type with DaprServer and calling it through ActorProxyBuilder; the
//! Python SDK's gRPC actor client calls an actor the test's app hosts; and a Python app hosts
//! actors with the SDK's ActorGrpcHost, over the actor event stream.

use std::time::Duration;

use base64::Engine as _;

use super::{app_script_passes, sdk_dir};
use outrider_testkit::{ActorApp, Mesh, Sidecar, Turns, free_port, unique, wait_until};
use serde_json::json;

#[tokio::test]
async fn javascript_sdk_actors_host_and_call() {
    let mesh = Mesh::new();
    let res = mesh.memory_actor_store();
    let script = sdk_dir().join("js/actors.mjs");
    let argv = vec![
        "/usr/bin/node".to_owned(),
        script.to_string_lossy().into_owned(),
    ];
    let b = mesh
        .sidecar("sdk-js-actors")
        .resources(&res)
        .app_port(free_port());
    app_script_passes(
        b,
        argv,
        &[
            "a proxy calls the actor, whose state persists between calls",
            "concurrent calls to one actor take turns: no update is lost",
            "an actor timer calls its callback until unregistered",
            "an actor reminder calls receiveReminder until unregistered",
        ],
    )
    .await;
}

/// A sidecar `app_id` in front of a test actor app hosting `entities`, its actor state in memory.
pub(super) async fn actor_app_sidecar(
    mesh: &Mesh,
    app_id: &str,
    entities: serde_json::Value,
) -> (Sidecar, ActorApp) {
    let res = mesh.memory_actor_store();
    let app = ActorApp::start("py", json!({ "entities": entities }), Turns::default()).await;
    let mut s = mesh
        .sidecar(app_id)
        .resources(&res)
        .app_port(app.port)
        .start()
        .await;
    app.sidecar_port(s.api);
    s.wait_ready().await;
    (s, app)
}

#[tokio::test]
async fn python_sdk_actor_client_over_grpc() {
    let mesh = Mesh::new();
    let (s, app) = actor_app_sidecar(&mesh, "sdk-py-actors", json!(["PyCounter"])).await;
    let (grpc, run) = (s.grpc.to_string(), unique("py"));
    let env = |phase: &'static str| {
        [
            ("DAPR_GRPC_PORT", grpc.clone()),
            ("ACTOR_TYPE", "PyCounter".to_owned()),
            ("RUN_ID", run.clone()),
            ("PHASE", phase.to_owned()),
        ]
    };
    let python = sdk_dir().join("python/.venv/bin/python");
    let with = |e: &[(&'static str, String)]| -> Vec<(&'static str, String)> { e.to_vec() };
    let first = with(&env("register"));
    let first: Vec<(&str, &str)> = first.iter().map(|(k, v)| (*k, v.as_str())).collect();
    super::run_script_with(python.clone(), "python/actors_grpc.py", &s, None, &first).await;
    let actor = format!("PyCounter/a-{run}");
    wait_until(
        Duration::from_secs(20),
        "the timer and reminder firings",
        || async {
            let timer = app.callbacks_of(&actor, "timer", "py-timer");
            let reminder = app.callbacks_of(&actor, "remind", "py-reminder");
            (timer.len() >= 2 && !reminder.is_empty()).then_some((timer, reminder))
        },
    )
    .await;
    let timer = &app.callbacks_of(&actor, "timer", "py-timer")[0];
    assert_eq!(timer.body["callback"], "tick");
    // As daprd: the request's data bytes (the SDK's JSON) arrive as a base64 string.
    let data = timer.body["data"].as_str().expect("base64 data");
    let data = base64::engine::general_purpose::STANDARD
        .decode(data)
        .expect("base64");
    let data: serde_json::Value = serde_json::from_slice(&data).expect("the SDK's JSON");
    assert_eq!(data, json!({"from": "python"}));
    let second = with(&env("unregister"));
    let second: Vec<(&str, &str)> = second.iter().map(|(k, v)| (*k, v.as_str())).collect();
    super::run_script_with(python, "python/actors_grpc.py", &s, None, &second).await;
}

#[tokio::test]
async fn python_sdk_hosts_actors_over_the_actor_event_stream() {
    let mesh = Mesh::new();
    let res = mesh.memory_actor_store();
    let b = mesh
        .sidecar("sdk-py-grpc-actors")
        .resources(&res)
        .app_port(free_port())
        // The stream stays open through the app's silences, which outlast a request's pauses.
        .args(["--app-protocol", "grpc", "--request-head-timeout", "1s"]);
    let argv = vec![super::python(), super::script("python/grpc_actor_host.py")];
    app_script_passes(
        b,
        argv,
        &[
            "a proxy calls the actor over the stream; its state persists; turns lose nothing",
            "a method the actor lacks fails for the caller",
            "an actor timer fires with its data until unregistered",
            "an actor reminder fires with its data until unregistered",
            "an idle actor is deactivated over the stream",
            "the app reconnects its stream and its actors are served again",
        ],
    )
    .await;
}
