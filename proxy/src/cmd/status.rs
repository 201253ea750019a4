//! `outrider status` (as `dapr list`, with `linkerd viz stat`'s figures) and `outrider top`.
//!
//! Both find sidecars in the local registry (every sidecar on this host that uses the local
//! resolver, the default) and, with `--mdns`, among the sidecars announcing themselves on the
//! LAN, then read each one's `/metrics` (served to every client, so a sidecar on another host
//! answers too). Rates need two reads: `status` reads every sidecar at once, twice, `--window`
//! apart; `top` reads one sidecar every `--interval`. A sidecar counts the requests it served
//! for its app in both directions: the app's calls to its API and its calls to the app.

mod table;
mod top;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http_body_util::BodyExt as _;
use outrider_discovery::local::{Ports, live_entries};
use outrider_discovery::mdns::MdnsResolver;
use outrider_discovery::{MdnsConfig, Resolve as _};
use serde_json::{Value, json};

use crate::cli::{Sources, StatusArgs};
use crate::telemetry::traffic::{Group, Rates, Scrape};
pub(crate) use top::run as top;

/// The groups a sidecar's own figure adds up.
const SERVED: &[Group] = &[Group::Api, Group::App];
/// One read of `/metrics` at most: time and size.
const READ_TIMEOUT: Duration = Duration::from_secs(5);
const MAX_EXPOSITION: usize = 16 << 20;

/// A sidecar found on this host or the LAN.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Found {
    pub(super) app_id: String,
    pub(super) namespace: String,
    pub(super) mesh: SocketAddr,
    pub(super) ports: Ports,
    pub(super) pid: Option<u32>,
    pub(super) started_at: Option<u64>,
    /// `local` or `mdns`.
    pub(super) source: &'static str,
}

impl Found {
    /// Where its `/metrics` is: on this host over loopback, else at its mesh address's host.
    fn admin(&self) -> Option<SocketAddr> {
        let ip = match self.source {
            "local" => IpAddr::V4(Ipv4Addr::LOCALHOST),
            _ => self.mesh.ip(),
        };
        self.ports.admin.map(|p| SocketAddr::new(ip, p))
    }

    fn uptime(&self) -> Option<u64> {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).ok()?.as_secs();
        self.started_at.map(|s| now.saturating_sub(s))
    }
}

/// The sidecars `sources` name, sorted by namespace, app id and address.
pub(super) async fn find(sources: &Sources) -> Result<Vec<Found>, String> {
    let dir = match &sources.registry_dir {
        Some(d) => d.clone(),
        None => (crate::cli::Env::read().home)
            .map(|h| h.join(outrider_discovery::local::DEFAULT_DIR))
            .ok_or("--registry-dir is not given and $HOME is not set")?,
    };
    let mut found: Vec<Found> = live_entries(&dir, false)
        .into_iter()
        .map(|e| Found {
            app_id: e.app_id,
            namespace: e.namespace,
            mesh: e.address,
            ports: e.ports,
            pid: Some(e.pid),
            started_at: (e.started_at > 0).then_some(e.started_at),
            source: "local",
        })
        .collect();
    if sources.mdns {
        let cfg = MdnsConfig {
            interfaces: sources.interfaces.clone(),
            ..MdnsConfig::default()
        };
        let resolver = MdnsResolver::start(&cfg, None).map_err(|e| format!("mDNS: {e}"))?;
        tokio::time::sleep(sources.browse).await;
        for p in resolver.peers() {
            let on_lan = Found {
                app_id: p.target.app_id,
                namespace: p.target.namespace,
                mesh: p.address,
                ports: Ports {
                    admin: p.admin_port,
                    ..Ports::default()
                },
                pid: None,
                started_at: None,
                source: "mdns",
            };
            let listed = found.iter().any(|f| {
                (&f.app_id, &f.namespace, f.mesh.port())
                    == (&on_lan.app_id, &on_lan.namespace, on_lan.mesh.port())
                    && outrider_discovery::is_own_ip(on_lan.mesh.ip())
            });
            if !listed {
                found.push(on_lan);
            }
        }
    }
    found.sort_by(|a, b| (&a.namespace, &a.app_id, a.mesh).cmp(&(&b.namespace, &b.app_id, b.mesh)));
    Ok(found)
}

/// One read of the `/metrics` at `addr`.
pub(super) async fn read_metrics(addr: SocketAddr) -> Result<String, String> {
    let read = async {
        let tcp = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connecting to {addr}: {e}"))?;
        let (mut send, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp))
                .await
                .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        let req = http::Request::get("/metrics")
            .header(http::header::HOST, addr.to_string())
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .map_err(|e| e.to_string())?;
        let rsp = send.send_request(req).await.map_err(|e| e.to_string())?;
        if !rsp.status().is_success() {
            return Err(format!("/metrics answered {}", rsp.status()));
        }
        let body = http_body_util::Limited::new(rsp.into_body(), MAX_EXPOSITION)
            .collect()
            .await
            .map_err(|e| format!("reading /metrics: {e}"))?
            .to_bytes();
        String::from_utf8(body.to_vec()).map_err(|_| "/metrics is not UTF-8".to_owned())
    };
    tokio::time::timeout(READ_TIMEOUT, read)
        .await
        .unwrap_or_else(|_| Err(format!("{addr}/metrics did not answer within 5 s")))
}

/// What each sidecar served over the window, or why that could not be read. Every sidecar is
/// read at once, each timed on its own, so a slow one does not skew the others' rates.
async fn measure(found: &[Found], window: Duration) -> Vec<Result<Rates, String>> {
    futures_util::future::join_all(found.iter().map(|f| async move {
        let addr = f.admin().ok_or("its admin port is not known")?;
        let first = Scrape::read(&read_metrics(addr).await?, &f.app_id);
        let start = tokio::time::Instant::now();
        tokio::time::sleep(window).await;
        let second = Scrape::read(&read_metrics(addr).await?, &f.app_id);
        let secs = start.elapsed().as_secs_f64();
        Ok::<_, String>(second.sum(SERVED).since(&first.sum(SERVED), secs))
    }))
    .await
}

pub(crate) async fn run(args: &StatusArgs) -> ExitCode {
    let found = match find(&args.sources).await {
        Ok(f) => f,
        Err(e) => {
            eprintln!("outrider status: {e}");
            return ExitCode::from(2);
        }
    };
    let rates = measure(&found, args.window).await;
    if args.json {
        let rows: Vec<Value> = found
            .iter()
            .zip(&rates)
            .map(|(f, r)| json_row(f, r))
            .collect();
        println!("{}", Value::Array(rows));
    } else if found.is_empty() {
        println!(
            "no sidecar found (the local registry lists none{})",
            if args.sources.mdns {
                ", nor does mDNS"
            } else {
                "; --mdns looks on the LAN"
            }
        );
    } else {
        print!("{}", table::sidecars(&found, &rates));
    }
    ExitCode::SUCCESS
}

fn json_row(f: &Found, r: &Result<Rates, String>) -> Value {
    let mut row = json!({
        "appId": f.app_id,
        "namespace": f.namespace,
        "source": f.source,
        "mesh": f.mesh.to_string(),
        "ports": {
            "http": f.ports.http,
            "grpc": f.ports.grpc,
            "mesh": f.mesh.port(),
            "admin": f.ports.admin,
            "app": f.ports.app,
        },
        "pid": f.pid,
        "uptimeSecs": f.uptime(),
    });
    match r {
        Ok(r) => {
            row["requests"] = json!({
                "count": r.count,
                "rps": r.rps,
                "success": r.success(),
                "p50": r.p50,
                "p99": r.p99,
            });
        }
        Err(e) => row["error"] = json!(e),
    }
    row
}
