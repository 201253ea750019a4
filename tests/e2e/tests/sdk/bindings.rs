//! Output bindings through the official JS SDK, over HTTP and over gRPC: local storage and
//! Redis (a private server).

use super::node_suite;
use outrider_testkit::{Mesh, RedisServer};

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
