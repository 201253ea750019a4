//! Bindings through the official JS SDK, over HTTP and over gRPC: output to local storage and
//! Redis (a private server); input from a cron schedule and an MQTT topic into the SDK's
//! DaprServer, the script being the app.

use super::{app_script_passes, node_suite, sdk_dir};
use outrider_testkit::{Mesh, Mosquitto, RedisServer, free_port, unique};

#[tokio::test]
async fn javascript_sdk_output_bindings_over_http_and_grpc() {
    let redis = RedisServer::start();
    let mesh = Mesh::new();
    let root = mesh.home().join("storage");
    let docs = format!(
        "kind: Component\nmetadata: {{name: files}}\nspec:\n  type: bindings.localstorage\n  \
         metadata:\n  - {{name: rootPath, value: '{}'}}\n---\n\
         kind: Component\nmetadata: {{name: cache}}\nspec:\n  type: bindings.redis\n  \
         metadata:\n  - {{name: redisHost, value: '127.0.0.1:{}'}}\n",
        root.display(),
        redis.port
    );
    let res = mesh.resources("res", "bindings.yaml", &docs);
    let mut s = mesh
        .sidecar("sdk-js-bindings")
        .resources(&res)
        .start()
        .await;
    s.wait_ready().await;
    let root = root.to_string_lossy().into_owned();
    for (grpc, run) in [(false, "http"), (true, "grpc")] {
        let env = [
            ("STORAGE_BINDING", "files"),
            ("STORAGE_ROOT", root.as_str()),
            ("REDIS_BINDING", "cache"),
            ("MISSING_BINDING", "sdk-no-such-binding"),
            ("RUN_ID", run),
        ];
        node_suite("js/bindings.mjs", &s, &env, grpc).await;
    }
}

#[tokio::test]
async fn javascript_sdk_input_bindings_as_the_app() {
    // A broker of its own: the binding's kept sessions stay behind.
    let broker = Mosquitto::private();
    let mesh = Mesh::new();
    let script = sdk_dir().join("js/input_bindings.mjs");
    let argv = vec![
        "/usr/bin/node".to_owned(),
        script.to_string_lossy().into_owned(),
    ];
    for (grpc, run) in [(false, "http"), (true, "grpc")] {
        let topic = unique("sdk-input");
        let docs = format!(
            "kind: Component\nmetadata: {{name: ticker}}\nspec:\n  type: bindings.cron\n  \
             metadata:\n  - {{name: schedule, value: '@every 200ms'}}\n---\n\
             kind: Component\nmetadata: {{name: orders}}\nspec:\n  type: bindings.mqtt3\n  \
             metadata:\n  - {{name: url, value: '{}'}}\n  - {{name: topic, value: '{topic}'}}\n  \
             - {{name: consumerID, value: '{topic}'}}\n",
            broker.url
        );
        let res = mesh.resources(run, "bindings.yaml", &docs);
        let mut b = mesh
            .sidecar(&format!("sdk-js-input-{run}"))
            .resources(&res)
            .app_port(free_port())
            .env("CRON_BINDING", "ticker")
            .env("QUEUE_BINDING", "orders");
        if grpc {
            b = b
                .args(["--app-protocol", "grpc"])
                .env("DAPR_COMMUNICATION_PROTOCOL", "grpc");
        }
        let log = app_script_passes(
            b,
            argv.clone(),
            &["an event whose handler throws is delivered again"],
        )
        .await;
        assert!(
            !grpc || log.contains("(grpc): checks="),
            "not the gRPC run:\n{log}"
        );
    }
}
