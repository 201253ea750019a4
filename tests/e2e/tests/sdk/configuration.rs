//! The configuration API through the official SDKs: the JS SDK over gRPC (its HTTP client does
//! not serve configuration) and the Python SDK's gRPC client, each against `configuration.redis`
//! on a private Redis the scripts write with `redis-cli`.

use super::{node_suite, run_script_with, sdk_dir};
use outrider_testkit::{Mesh, RedisServer, Sidecar, free_port};

/// A sidecar (with an app port, as subscriptions need one) and the store `sdkcfg` on `redis`.
async fn with_config_store(mesh: &Mesh, app_id: &str, redis: &RedisServer) -> Sidecar {
    let docs = format!(
        "kind: Component\nmetadata: {{name: sdkcfg}}\nspec:\n  type: configuration.redis\n  \
         metadata:\n  - {{name: redisHost, value: '127.0.0.1:{}'}}\n",
        redis.port
    );
    let res = mesh.resources(app_id, "cfg.yaml", &docs);
    let mut s = mesh
        .sidecar(app_id)
        .app_port(free_port())
        .resources(&res)
        .start()
        .await;
    s.wait_outbound_ready().await;
    s
}

#[tokio::test]
async fn javascript_sdk_configuration_over_grpc() {
    let redis = RedisServer::start();
    let mesh = Mesh::new();
    let s = with_config_store(&mesh, "sdk-js-cfg", &redis).await;
    let port = redis.port.to_string();
    let env = [
        ("CONFIG_STORE", "sdkcfg"),
        ("REDIS_PORT", port.as_str()),
        ("MISSING_STORE", "sdk-no-such-cfg"),
        ("RUN_ID", "js"),
    ];
    node_suite("js/configuration.mjs", &s, &env, true).await;
}

#[tokio::test]
async fn python_sdk_configuration_over_grpc() {
    let redis = RedisServer::start();
    let mesh = Mesh::new();
    let s = with_config_store(&mesh, "sdk-py-cfg", &redis).await;
    let (grpc, port) = (s.grpc.to_string(), redis.port.to_string());
    let env = [
        ("DAPR_GRPC_PORT", grpc.as_str()),
        ("CONFIG_STORE", "sdkcfg"),
        ("REDIS_PORT", port.as_str()),
        ("RUN_ID", "py"),
    ];
    let python = sdk_dir().join("python/.venv/bin/python");
    run_script_with(python, "python/configuration.py", &s, None, &env).await;
}
