//! Intercepted traffic cannot carry a forged identity: an app's own caller headers are replaced
//! with its certificate's, HTTP dressed up as opaque bytes does not reach the callee's HTTP port
//! as a raw tunnel, and a client outside the mesh gets its identity headers removed.
//!
//! Hosts are network namespaces (`testkit::netns`); without root the test reports itself skipped.

use std::time::Duration;

use outrider_testkit::intercept::{install, mdns_config};
use outrider_testkit::netns::Lan;
use outrider_testkit::{Mesh, shared_binary, wait_until};
use serde_json::{Value, json};

/// An HTTP server on every address of argv[1]'s port that answers with the request's headers.
const HEADERS_ECHO: &str = r#"
import http.server, json, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({k.lower(): v for k, v in self.headers.items()}).encode()
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
print("listening", flush=True)
http.server.HTTPServer(("0.0.0.0", int(sys.argv[1])), H).serve_forever()
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_cannot_be_forged_through_interception() {
    let lan = match Lan::new(3) {
        Ok(lan) => lan,
        Err(why) => return eprintln!("SKIPPED: {why}"),
    };
    let (ha, hb, hc) = (&lan.hosts[0], &lan.hosts[1], &lan.hosts[2]);
    ha.hosts(&[("b", hb.addr)]);
    install(ha).await;
    install(hb).await;
    let mesh = Mesh::new();
    let acl = json!({"defaultAction": "allow", "trustDomain": "public", "policies": [{
        "appId": "a", "namespace": "default", "trustDomain": "public", "defaultAction": "allow",
        "operations": [{"name": "/denied", "httpVerb": ["*"], "action": "deny"}],
    }]});
    let cfg_b = mdns_config(mesh.home(), "b", json!({"accessControl": acl}));
    let mut b = mesh
        .intercepting("b", hb, &cfg_b)
        .app_port(7000)
        .command([shared_binary("echo-app").to_string_lossy().into_owned()])
        .spawn();
    b.wait_ready().await;
    let cfg_a = mdns_config(mesh.home(), "a", json!({}));
    let mut a = mesh.intercepting("a", ha, &cfg_a).spawn();
    a.wait_ready().await;
    wait_until(Duration::from_secs(20), "a to reach b", || async {
        let r = a.call("GET", "/v1.0/invoke/b/method/x", "").await.ok()?;
        (r.status == 200).then_some(())
    })
    .await;

    // A forged caller header is replaced by the certificate's identity.
    let (status, body) = ha
        .curl(&["-H", "dapr-caller-app-id: billing", "http://b:7000/x"])
        .await;
    assert_eq!(status, 200, "{body}");
    let echoed: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
    assert_eq!(echoed["headers"]["dapr-caller-app-id"], "a", "{body}");

    // Empty lines before the request line do not make it opaque: it is HTTP, and b's policy
    // refuses it.
    let denied = r"\r\nGET /denied HTTP/1.1\r\nHost: b\r\ndapr-caller-app-id: billing\r\n\r\n";
    let (answer, _) = ha.exchange("b", 7000, denied).await;
    assert!(answer.starts_with("HTTP/1.1 403"), "{answer:?}");

    // A request the detection cannot tell from opaque bytes is tunnelled at most, and b takes
    // no tunnel to its app's HTTP port: nothing answers, nothing reaches the app.
    let refused = b
        .metric_sum("outrider_tcp_refused_total", &[r#"reason="port""#])
        .await;
    let odd = r"PROPFIND /denied HTTP/1.1\r\nHost: b\r\ndapr-caller-app-id: billing\r\n\r\n";
    let (answer, _) = ha.exchange("b", 7000, odd).await;
    assert_eq!(answer, "", "a raw request reached b's app port");
    b.wait_metric(
        "outrider_tcp_refused_total",
        &[r#"direction="inbound""#, r#"reason="port""#],
        refused + 1.0,
    )
    .await;

    // A client outside the mesh (c) reaches a server on b in permissive mode, without the
    // identity headers it sent.
    let mut server = hb.background("python3", &["-u", "-c", HEADERS_ECHO, "8091"]);
    server.wait_log("listening").await;
    let url = format!("http://{}:8091/", hb.addr);
    let (status, body) = hc
        .curl(&[
            "-H",
            "dapr-caller-app-id: billing",
            "-H",
            "x-kept: yes",
            &url,
        ])
        .await;
    assert_eq!(status, 200, "{body}");
    let seen: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
    assert_eq!(seen["x-kept"], "yes", "{body}");
    assert!(seen.get("dapr-caller-app-id").is_none(), "{body}");
}
