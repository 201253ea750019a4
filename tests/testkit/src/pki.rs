//! Credentials as an external issuer hands them over: PEM files of a trust bundle, a certificate
//! chain and its key, for sidecars started with `--trust-bundle`, `--cert-chain`, `--cert-key`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use outrider_certs::{DevCa, IssuedCert, SpiffeId, TrustBundle};

/// The three files of one sidecar's credentials.
#[derive(Clone, Debug)]
pub struct CertFiles {
    /// The trust bundle (`--trust-bundle`).
    pub bundle: PathBuf,
    /// The certificate chain, leaf first (`--cert-chain`).
    pub chain: PathBuf,
    /// The leaf's private key (`--cert-key`).
    pub key: PathBuf,
}

impl CertFiles {
    /// `<dir>/<app>-bundle.pem`, `<dir>/<app>.pem` and `<dir>/<app>.key`.
    pub fn in_dir(dir: &Path, app: &str) -> Self {
        Self {
            bundle: dir.join(format!("{app}-bundle.pem")),
            chain: dir.join(format!("{app}.pem")),
            key: dir.join(format!("{app}.key")),
        }
    }

    /// The sidecar flags that name them.
    pub fn args(&self) -> Vec<String> {
        let path = |p: &PathBuf| p.to_str().expect("utf-8 path").to_owned();
        vec![
            "--trust-bundle".into(),
            path(&self.bundle),
            "--cert-chain".into(),
            path(&self.chain),
            "--cert-key".into(),
            path(&self.key),
        ]
    }
}

/// A certificate for `app` (trust domain `public`, namespace `default`) from `ca`, valid an hour.
pub fn issue(ca: &DevCa, app: &str) -> IssuedCert {
    let id = SpiffeId::new("public", "default", app).expect("id");
    ca.issue(&id, Duration::from_secs(3600)).expect("issue")
}

/// PEM of a certificate chain.
pub fn chain_pem(cert: &IssuedCert) -> String {
    cert.chain.iter().map(|c| pem("CERTIFICATE", c)).collect()
}

/// PEM of a certificate's private key.
pub fn key_pem(cert: &IssuedCert) -> String {
    pem("PRIVATE KEY", cert.key.secret_der())
}

/// PEM of the roots of every bundle given, in order.
pub fn bundle_pem(bundles: &[&TrustBundle]) -> String {
    bundles
        .iter()
        .flat_map(|b| b.certs())
        .map(|c| pem("CERTIFICATE", c))
        .collect()
}

/// Writes `app`'s credentials from `ca` into `dir` and returns where.
pub fn write_cert_files(ca: &DevCa, dir: &Path, app: &str) -> CertFiles {
    let files = CertFiles::in_dir(dir, app);
    let cert = issue(ca, app);
    std::fs::write(&files.bundle, bundle_pem(&[&ca.trust_bundle()])).expect("write bundle");
    std::fs::write(&files.chain, chain_pem(&cert)).expect("write chain");
    std::fs::write(&files.key, key_pem(&cert)).expect("write key");
    files
}

/// Replaces `path`'s content at once, as careful writers do: a new file renamed over it.
pub fn replace_atomically(path: &Path, content: &str) {
    let tmp = path.with_extension("new");
    std::fs::write(&tmp, content).expect("write");
    std::fs::rename(&tmp, path).expect("rename");
}

fn pem(label: &str, der: &[u8]) -> String {
    format!(
        "-----BEGIN {label}-----\n{}-----END {label}-----\n",
        base64_lines(der)
    )
}

/// Base64 in lines of 64 characters, each ending with a newline.
fn base64_lines(der: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut s = String::new();
    for chunk in der.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                s.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                s.push('=');
            }
        }
    }
    s.as_bytes()
        .chunks(64)
        .map(|l| format!("{}\n", String::from_utf8_lossy(l)))
        .collect()
}
