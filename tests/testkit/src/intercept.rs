//! Transparent interception on LAN hosts: `outrider init`, and sidecars that intercept, running
//! as the user the rules leave alone, with mDNS name resolution.

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use serde_json::{Value, json};

use crate::netns::Host;
use crate::{Mesh, SidecarBuilder, binary};

/// The user intercepting sidecars run as: `outrider init --proxy-uid` exempts its traffic.
pub const PROXY_UID: u32 = 2101;

/// `outrider init <args…>` in `host` (as root), within 30 s, whatever its outcome.
pub async fn init(host: &Host, args: &[&str]) -> Output {
    let bin = binary("outrider");
    let argv: Vec<&str> = ["init"].iter().chain(args).copied().collect();
    host.output(&bin.to_string_lossy(), &argv, Duration::from_secs(30))
        .await
}

/// `outrider init <args…>` in `host`, which must succeed: what it printed.
pub async fn init_ok(host: &Host, args: &[&str]) -> String {
    let out = init(host, args).await;
    let printed = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "outrider init {args:?} in {}: {}\n{printed}{}",
        host.netns,
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    printed
}

/// Installs the rules in `host` for sidecars running as [`PROXY_UID`] on the well-known ports
/// (`outrider init`'s defaults).
pub async fn install(host: &Host) {
    init_ok(host, &["--proxy-uid", &PROXY_UID.to_string()]).await;
}

/// Writes a Configuration named `name` in `dir` with mDNS name resolution on `eth0` and the
/// members of `spec` (an object) besides; returns its path, for `--config`.
pub fn mdns_config(dir: &Path, name: &str, spec: Value) -> String {
    let mut full = json!({
        "nameResolution": {"component": "mdns", "configuration": {"interfaces": ["eth0"]}},
    });
    if let (Some(full), Some(spec)) = (full.as_object_mut(), spec.as_object()) {
        full.extend(spec.clone());
    }
    let doc = json!({
        "apiVersion": "dapr.io/v1alpha1",
        "kind": "Configuration",
        "metadata": {"name": name},
        "spec": full,
    });
    let path = dir.join(format!("{name}.yaml"));
    std::fs::write(&path, doc.to_string()).expect("writing a Configuration");
    path.to_string_lossy().into_owned()
}

impl Mesh {
    /// A sidecar for `app` on `host` that intercepts (`--intercept`), as [`PROXY_UID`], on the
    /// well-known ports, with the Configuration at `config`.
    pub fn intercepting(&self, app: &str, host: &Host, config: &str) -> SidecarBuilder {
        self.sidecar(app)
            .on(host)
            .uid(PROXY_UID)
            .well_known_ports()
            .args(["--intercept", "--config", config])
    }
}
