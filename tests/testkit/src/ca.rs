//! A CA service for tests: `outrider ca init` into a private directory, `outrider ca serve` on
//! loopback or on a LAN host, join tokens, and a client that speaks to it as a sidecar would
//! (TLS 1.3, HTTP/2, the service verified as `spiffe://public/ns/default/outrider-ca`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use outrider_certs::{Credentials, SpiffeId, TrustBundle};
use rustls::ClientConfig;
use tokio::io::AsyncWriteExt;

use crate::netns::{Background, Host};
use crate::{binary, free_port, outrider_command};

/// A CA directory and, once started, the service serving it.
pub struct CaService {
    dir: tempfile::TempDir,
    /// Where the service listens.
    pub addr: SocketAddr,
    metrics: SocketAddr,
    process: Option<Background>,
    local: Option<tokio::process::Child>,
    log: tempfile::NamedTempFile,
}

impl CaService {
    /// Creates a root CA (`outrider ca init`) in a fresh directory; not serving yet.
    pub fn init() -> Self {
        let dir = tempfile::tempdir().expect("CA dir");
        let ca = dir.path().join("ca");
        let (code, out, err) = outrider_command(&["ca", "init", "--dir", ca.to_str().unwrap()]);
        assert_eq!(code, 0, "outrider ca init: {out}{err}");
        Self {
            dir,
            addr: "127.0.0.1:0".parse().unwrap(),
            metrics: "127.0.0.1:0".parse().unwrap(),
            process: None,
            local: None,
            log: tempfile::NamedTempFile::new().expect("log"),
        }
    }

    /// The CA's directory.
    pub fn dir(&self) -> PathBuf {
        self.dir.path().join("ca")
    }

    /// The roots sidecars verify the service with (`--trust-anchors`).
    pub fn anchors(&self) -> PathBuf {
        self.dir().join("bundle.pem")
    }

    /// Serves on a free loopback port with `extra` flags; returns once it listens.
    pub async fn serve(mut self, extra: &[&str]) -> Self {
        self.addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
        self.metrics = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let args = self.args(extra);
        let child = tokio::process::Command::new(binary("outrider"))
            .args(&args)
            .stdin(Stdio::null())
            .stdout(self.log.reopen().expect("log"))
            .stderr(self.log.reopen().expect("log"))
            .kill_on_drop(true)
            .spawn()
            .expect("starting outrider ca serve");
        self.local = Some(child);
        self.wait_serving().await;
        self
    }

    /// Serves on `host`, port 50001 of its LAN address, with `extra` flags.
    pub async fn serve_on(mut self, host: &Host, extra: &[&str]) -> Self {
        self.addr = SocketAddr::from((host.addr, 50001));
        self.metrics = SocketAddr::from(([127, 0, 0, 1], 50009));
        let args = self.args(extra);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut p = host.background(binary("outrider").to_str().unwrap(), &args);
        p.wait_log("serving the CA").await;
        self.process = Some(p);
        self
    }

    fn args(&self, extra: &[&str]) -> Vec<String> {
        let mut args: Vec<String> = ["ca", "serve", "--dir"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        args.push(self.dir().to_string_lossy().into_owned());
        args.extend(["--listen".into(), self.addr.to_string()]);
        args.extend(["--metrics-listen".into(), self.metrics.to_string()]);
        args.extend(extra.iter().map(|s| s.to_string()));
        args
    }

    async fn wait_serving(&mut self) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while !self.log().contains("serving the CA") {
            if let Some(Ok(Some(status))) = self.local.as_mut().map(|c| c.try_wait()) {
                panic!("outrider ca serve exited with {status}:\n{}", self.log());
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "outrider ca serve never listened:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Everything the service printed.
    pub fn log(&self) -> String {
        match &self.process {
            Some(p) => p.log(),
            None => std::fs::read_to_string(self.log.path()).unwrap_or_default(),
        }
    }

    /// A join token for `app` in `namespace`, valid for `uses` certificates.
    pub fn token(&self, namespace: &str, app: &str, uses: u32) -> String {
        let (code, out, err) = outrider_command(&[
            "ca",
            "token",
            "create",
            "--dir",
            self.dir().to_str().unwrap(),
            "--namespace",
            namespace,
            "--app-id",
            app,
            "--uses",
            &uses.to_string(),
        ]);
        assert_eq!(code, 0, "outrider ca token create: {out}{err}");
        out.trim().to_owned()
    }

    /// The service's Prometheus text (loopback services only).
    pub async fn metrics(&self) -> String {
        let r = crate::send(
            "GET",
            &format!("http://{}/metrics", self.metrics),
            &[],
            Vec::new(),
        )
        .await
        .expect("CA metrics");
        String::from_utf8_lossy(&r.body).into_owned()
    }

    /// A client configuration that verifies the service; with `creds`, presenting their
    /// certificate (a renewal), else none.
    pub fn client_config(&self, creds: Option<&Credentials>) -> ClientConfig {
        let anchors = TrustBundle::from_pem_file(&self.anchors()).expect("anchors");
        let ca = SpiffeId::new("public", "default", "outrider-ca").unwrap();
        match creds {
            Some(c) => c.service_client_config(&anchors, ca),
            None => outrider_certs::anonymous_service_client_config(&anchors, ca),
        }
        .expect("client config")
    }

    /// Sends one request to the service over TLS and HTTP/2: status and body.
    pub async fn request(
        &self,
        cfg: ClientConfig,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> (u16, Vec<u8>) {
        let tls = connect(self.addr, cfg).await;
        let (mut sender, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
                .await
                .expect("HTTP/2 with the CA");
        tokio::spawn(conn);
        let mut req = http::Request::builder()
            .method(method)
            .uri(format!("https://{}{path}", self.addr));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let rsp = sender
            .send_request(req.body(Full::new(Bytes::from(body))).unwrap())
            .await
            .expect("an answer from the CA");
        let status = rsp.status().as_u16();
        let body = rsp
            .into_body()
            .collect()
            .await
            .expect("the CA's body")
            .to_bytes();
        (status, body.to_vec())
    }

    /// `POST /v1/certificates` declaring a body that never comes: the status of the answer.
    pub async fn post_stalled(&self, cfg: ClientConfig) -> u16 {
        let tls = connect(self.addr, cfg).await;
        let (mut sender, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
                .await
                .expect("HTTP/2 with the CA");
        tokio::spawn(conn);
        let req = http::Request::builder()
            .method("POST")
            .uri(format!("https://{}/v1/certificates", self.addr))
            .header("content-length", "100")
            .body(Stalled)
            .unwrap();
        let rsp = sender
            .send_request(req)
            .await
            .expect("an answer from the CA");
        rsp.status().as_u16()
    }

    /// `POST /v1/certificates` with `csr` (PEM), as `cfg` and with `token` if given.
    pub async fn sign(
        &self,
        cfg: ClientConfig,
        csr: &str,
        token: Option<&str>,
    ) -> (u16, serde_json::Value) {
        let auth = token.map(|t| format!("Bearer {t}"));
        let mut headers = vec![("content-type", "application/json")];
        if let Some(a) = &auth {
            headers.push(("authorization", a.as_str()));
        }
        let body = serde_json::json!({ "csr": csr }).to_string().into_bytes();
        let (status, body) = self
            .request(cfg, "POST", "/v1/certificates", &headers, body)
            .await;
        let json = serde_json::from_slice(&body).unwrap_or_else(|_| {
            serde_json::Value::String(String::from_utf8_lossy(&body).into_owned())
        });
        (status, json)
    }

    /// Stops the service (SIGTERM) and waits for it.
    pub async fn stop(&mut self) {
        if let Some(p) = &mut self.process {
            p.stop().await;
        }
        if let Some(c) = &mut self.local {
            if let Some(pid) = c.id() {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid as i32),
                    nix::sys::signal::Signal::SIGTERM,
                );
            }
            let _ = tokio::time::timeout(Duration::from_secs(10), c.wait()).await;
        }
    }
}

/// A TLS connection to `addr` with `cfg`.
pub async fn connect(
    addr: SocketAddr,
    cfg: ClientConfig,
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connecting to the CA");
    let name = rustls_pki_types::ServerName::try_from("outrider-ca").unwrap();
    tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(name, tcp)
        .await
        .expect("TLS with the CA")
}

/// Writes `bytes` to a stream and flushes.
pub async fn write_all(s: &mut (impl tokio::io::AsyncWrite + Unpin), bytes: &[u8]) {
    s.write_all(bytes).await.expect("write");
    s.flush().await.expect("flush");
}

/// Whether `path` or anything under it holds a private key (PEM), and which file.
pub fn private_keys_under(path: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(path) else {
        return found;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            found.extend(private_keys_under(&p));
        } else if std::fs::read(&p).is_ok_and(|b| b.windows(11).any(|w| w == b"PRIVATE KEY")) {
            found.push(p);
        }
    }
    found
}

/// A request body that never sends a byte nor ends.
struct Stalled;

impl hyper::body::Body for Stalled {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
        std::task::Poll::Pending
    }
}

/// A signing request for `spiffe://public/ns/default/orders` as rcgen makes it with a new key of
/// `alg`, changed by `edit`: what our own sidecar never sends.
pub fn crafted_csr(
    alg: &'static rcgen::SignatureAlgorithm,
    edit: impl FnOnce(&mut rcgen::CertificateParams),
) -> String {
    let key = rcgen::KeyPair::generate_for(alg).expect("key");
    let mut params = rcgen::CertificateParams::default();
    params.subject_alt_names = vec![rcgen::SanType::URI(
        "spiffe://public/ns/default/orders".try_into().expect("URI"),
    )];
    edit(&mut params);
    params
        .serialize_request(&key)
        .expect("request")
        .pem()
        .expect("PEM")
}
