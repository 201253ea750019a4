//! Actors through the official JS SDK (HTTP; the SDK hosts actors over HTTP only): the script
//! is the app, registering an actor type with DaprServer and calling it through
//! ActorProxyBuilder: state between calls, turns, timers and reminders.

use super::{app_script_passes, sdk_dir};
use outrider_testkit::{Mesh, free_port};

#[tokio::test]
async fn javascript_sdk_actors_host_and_call() {
    let mesh = Mesh::new();
    let res = mesh.resources(
        "res",
        "actors.yaml",
        "kind: Component\nmetadata: {name: actorstore}\nspec:\n  type: state.in-memory\n  \
         version: v1\n  metadata:\n  - {name: actorStateStore, value: \"true\"}\n",
    );
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
