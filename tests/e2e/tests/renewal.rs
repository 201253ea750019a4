//! Workload certificates renew at 2/3 of their life without dropping a request, over either
//! mesh transport: live connections keep the certificate they were made with, new ones get the
//! renewed one.

use std::time::Duration;

use outrider_testkit::{FakeApp, Mesh, send, wait_registered};

#[tokio::test]
async fn renewal_under_steady_traffic_drops_nothing_over_h2() {
    renewal_under_steady_traffic_drops_nothing("h2").await;
}

#[tokio::test]
async fn renewal_under_steady_traffic_drops_nothing_over_h3() {
    renewal_under_steady_traffic_drops_nothing("h3").await;
}

async fn renewal_under_steady_traffic_drops_nothing(transport: &str) {
    let mesh = Mesh::over(transport);
    let cfg = mesh.home().join("config.yaml");
    std::fs::write(
        &cfg,
        "apiVersion: dapr.io/v1alpha1\nkind: Configuration\nspec:\n  mtls:\n    workloadCertTTL: 3s\n",
    )
    .unwrap();
    let args = ["--config", cfg.to_str().unwrap()];
    let app = FakeApp::start("b").await;
    let b = mesh
        .sidecar("b")
        .app_port(app.port)
        .args(args)
        .start()
        .await;
    let a = mesh.sidecar("a").args(args).start().await;
    wait_registered(&mesh, "b", 1).await;

    let url = format!("{}/v1.0/invoke/b/method/ping", a.api_url());
    let renewals = "outrider_workload_cert_renewals_total";
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut sent = 0;
    // Traffic continues until both sides have renewed at least twice: by then every certificate
    // either side started with has expired.
    loop {
        let r = send("GET", &url, &[], "").await.unwrap();
        assert_eq!(r.status, 200, "request {sent} failed: {}", r.text());
        sent += 1;
        if sent % 20 == 0
            && a.metric_sum(renewals, &[]).await >= 2.0
            && b.metric_sum(renewals, &[]).await >= 2.0
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no renewals seen after {sent} requests:\n{}",
            a.metrics().await
        );
    }
    assert!(sent >= 20);
    // A newcomer handshakes with B's renewed certificate.
    let c = mesh.sidecar("c").args(args).start().await;
    let r = c.get("/v1.0/invoke/b/method/new").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(b.metric_sum("outrider_workload_cert_generation", &[]).await >= 3.0);
    let over = format!("transport=\"{transport}\"");
    let received = b
        .metric_sum(
            "outrider_mesh_requests_total",
            &["direction=\"inbound\"", &over],
        )
        .await;
    assert!(
        received > sent as f64,
        "{received} requests over {transport} for {sent} sent"
    );
}
