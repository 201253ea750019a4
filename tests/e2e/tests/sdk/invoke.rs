//! Service invocation driven by the official JavaScript SDK, over HTTP and over gRPC, with and
//! without an API token: an app behind another sidecar, and the same app declared as an
//! `HTTPEndpoint` of the caller's sidecar, invoked by its name.

use std::path::PathBuf;

use outrider_testkit::{Mesh, free_port};

use super::{mesh_with_echo_at, node_suite, run_node_suite_over_grpc, run_script};

/// Resources declaring the echo app on `port` as the HTTPEndpoint `sdk-echo-ext`, at the path
/// `/ext`, with a header of its own.
fn echo_endpoint(mesh: &Mesh, port: u16) -> String {
    mesh.resources(
        "endpoints",
        "echo.yaml",
        &format!(
            "apiVersion: dapr.io/v1alpha1\nkind: HTTPEndpoint\nmetadata:\n  name: sdk-echo-ext\nspec:\n  baseUrl: http://127.0.0.1:{port}/ext\n  headers:\n  - name: x-endpoint\n    value: declared\n"
        ),
    )
}

const ENDPOINT_ENV: [(&str, &str); 2] =
    [("ENDPOINT_NAME", "sdk-echo-ext"), ("ENDPOINT_PATH", "/ext")];

#[tokio::test]
async fn javascript_sdk_invokes_and_reads_metadata() {
    let port = free_port();
    let (mesh, _b) = mesh_with_echo_at(port).await;
    let node = PathBuf::from("/usr/bin/node");
    // Its caller declares the echo app as an HTTPEndpoint too: the SDK invokes it by name.
    let a = mesh
        .sidecar("sdk-js-caller")
        .resources(echo_endpoint(&mesh, port))
        .start()
        .await;
    let env = [
        ("CALLER_APP_ID", "sdk-js-caller"),
        ("TARGET_APP_ID", "sdk-echo"),
        ("MISSING_APP_ID", "sdk-nobody"),
    ];
    node_suite(
        "js/invoke.mjs",
        &a,
        &[&env[..], &ENDPOINT_ENV[..]].concat(),
        false,
    )
    .await;
    let guarded = mesh
        .sidecar("sdk-js-token")
        .env("DAPR_API_TOKEN", "tok-js")
        .start()
        .await;
    run_script(node, "js/invoke.mjs", &guarded, Some("tok-js")).await;
}

#[tokio::test]
async fn javascript_sdk_over_grpc_invokes_and_reads_metadata() {
    // The same invoke/metadata/health checks through the SDK's gRPC client (InvokeService,
    // GetMetadata, SetMetadata), with and without an API token.
    let port = free_port();
    let (mesh, _b) = mesh_with_echo_at(port).await;
    let a = mesh
        .sidecar("sdk-js-grpc-caller")
        .resources(echo_endpoint(&mesh, port))
        .start()
        .await;
    let env = [
        ("CALLER_APP_ID", "sdk-js-grpc-caller"),
        ("TARGET_APP_ID", "sdk-echo"),
        ("MISSING_APP_ID", "sdk-nobody"),
    ];
    let with_endpoint = [&env[..], &ENDPOINT_ENV[..]].concat();
    run_node_suite_over_grpc("js/invoke.mjs", &a, &with_endpoint).await;
    let guarded = mesh
        .sidecar("sdk-js-grpc-token")
        .env("DAPR_API_TOKEN", "tok-js-grpc")
        .start()
        .await;
    let env = [
        ("CALLER_APP_ID", "sdk-js-grpc-token"),
        ("TARGET_APP_ID", "sdk-echo"),
        ("MISSING_APP_ID", "sdk-nobody"),
        ("DAPR_API_TOKEN", "tok-js-grpc"),
    ];
    run_node_suite_over_grpc("js/invoke.mjs", &guarded, &env).await;
}
