//! App health checks driven by an official SDK: the Python SDK's `App` health check answers
//! the sidecar's `AppCallbackHealthCheck` probe.

use outrider_testkit::{Mesh, free_port};

use super::{app_script_passes, python, script};

#[tokio::test]
async fn python_grpc_app_health_checks() {
    // The App registers a health check; the sidecar probes it over AppCallbackHealthCheck.
    let mesh = Mesh::new();
    let b = mesh
        .sidecar("sdk-py-health")
        .app_port(free_port())
        .args(["--app-protocol", "grpc", "--enable-app-health-check"])
        // Probes each second (within the default 500 ms), unhealthy at the first failure.
        .args([
            "--app-health-probe-interval",
            "1",
            "--app-health-threshold",
            "1",
        ]);
    let argv = vec![python(), script("python/grpc_health_app.py")];
    app_script_passes(b, argv, &["a passing health check brings invocations back"]).await;
}
