//! Flags and environment, parsed once into a [`RunConfig`] that is passed down. Nothing deeper in
//! the sidecar reads the process environment.
//!
//! Flag names follow daprd where daprd has one; every flag can also be set by an environment
//! variable (`OUTRIDER_<FLAG>`, or the name Dapr users already set, such as `NAMESPACE`).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::net::serve::Limits;

mod commands;
mod daprd;
pub(crate) use commands::{
    CaCommand, CaInitArgs, CaServeArgs, CheckArgs, InitArgs, InjectArgs, PolicyCommand, ProxyArgs,
    RotateCommand, Sources, StatusArgs, TokenCommand, TokenCreateArgs, TopArgs,
};
pub(crate) use daprd::{DaprdArgs, go_bool};

/// A service-mesh L7 proxy and Dapr-compatible application runtime in one sidecar.
#[derive(Debug, Parser)]
#[command(name = "outrider", version, about, propagate_version = true)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Run a sidecar, optionally starting the app as a child: `outrider run [flags] -- CMD ARGS…`.
    Run(Box<RunArgs>),
    /// Inspect access policies.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Run the L7 proxy alone, forwarding every request to one upstream (plain HTTP), with the
    /// sidecar's server, trace and metrics layers.
    Proxy(ProxyArgs),
    /// Install the nat rules that send an unmodified app's TCP through its sidecar, in this
    /// network namespace, and exit (a Kubernetes init container; needs CAP_NET_ADMIN).
    Init(InitArgs),
    /// Manage a certificate authority of one's own for the mesh.
    #[command(subcommand)]
    Ca(CaCommand),
    /// Read Kubernetes YAML (a file or standard input) and write it to standard output with
    /// Outrider added as a native sidecar to every pod template annotated
    /// `dapr.io/enabled: "true"`, its flags taken from Dapr's `dapr.io/*` annotations.
    Inject(InjectArgs),
    /// List the sidecars on this host (the local registry) or on the LAN (mDNS, `--mdns`): app
    /// id, ports, pid, uptime, and the requests they served over a short window (rate, success,
    /// p50, p99), read from each one's /metrics.
    Status(StatusArgs),
    /// The live routes of one sidecar: requests per second, success and latency per route of
    /// its API, per route of its app, per target app, component and subscription, refreshing.
    Top(TopArgs),
}

/// Flags of `outrider run`.
#[derive(Debug, Args)]
pub(crate) struct RunArgs {
    /// The app's id: its name in the mesh, its SPIFFE identity and its state key prefix.
    #[arg(long, env = "OUTRIDER_APP_ID", default_value = "")]
    pub(crate) app_id: String,
    /// The port the app listens on; without it (or with 0) there is no app channel (nothing is
    /// delivered to the app).
    #[arg(long, env = "OUTRIDER_APP_PORT")]
    pub(crate) app_port: Option<u16>,
    /// The app's protocol: `http`, or `grpc` (HTTP/2 without TLS; the sidecar calls Dapr's
    /// `AppCallback` service).
    #[arg(long, env = "OUTRIDER_APP_PROTOCOL", default_value = "http")]
    pub(crate) app_protocol: String,
    /// The host the sidecar dials to reach the app.
    #[arg(
        long,
        env = "OUTRIDER_APP_CHANNEL_ADDRESS",
        default_value = "127.0.0.1"
    )]
    pub(crate) app_channel_address: String,
    /// Port of the app-facing Dapr HTTP API (bound to 127.0.0.1).
    #[arg(long, env = "OUTRIDER_DAPR_HTTP_PORT", default_value_t = 3500)]
    pub(crate) dapr_http_port: u16,
    /// Port of the app-facing Dapr gRPC API (bound to 127.0.0.1) [default: 50001; when not given
    /// and 50001 is taken, any free port: an app started by `outrider run -- CMD` learns it from
    /// DAPR_GRPC_PORT].
    #[arg(long, env = "OUTRIDER_DAPR_GRPC_PORT")]
    pub(crate) dapr_grpc_port: Option<u16>,
    /// Port of the inbound mesh listener (mutual TLS), bound to all interfaces [default: 50002;
    /// when not given and 50002 is taken, any free port: peers learn it through discovery].
    #[arg(long, alias = "dapr-internal-grpc-port", env = "OUTRIDER_MESH_PORT")]
    pub(crate) mesh_port: Option<u16>,
    /// Port of the admin listener: /metrics, /healthz, /ready and a status page.
    #[arg(long, env = "OUTRIDER_METRICS_PORT", default_value_t = 9090)]
    pub(crate) metrics_port: u16,
    /// Address the admin listener binds to; 0.0.0.0 lets Prometheus on other hosts scrape it.
    #[arg(
        long,
        env = "OUTRIDER_METRICS_LISTEN_ADDRESS",
        default_value = "0.0.0.0"
    )]
    pub(crate) metrics_listen_address: IpAddr,
    /// Serve the dashboard and the status (identity, certificate, peers' addresses) to clients
    /// that are not on loopback too. /metrics and the health pages are served to every client.
    #[arg(long, env = "OUTRIDER_ADMIN_STATUS_REMOTE")]
    pub(crate) admin_status_remote: bool,
    /// Open connections at most on each API listener, HTTP and gRPC [default: a quarter of the
    /// descriptor limit, less a reserve of 256, between 16 and 16384].
    #[arg(long, env = "OUTRIDER_API_MAX_CONNECTIONS", value_parser = clap::value_parser!(u32).range(1..))]
    pub(crate) api_max_connections: Option<u32>,
    /// Open connections at most on the mesh listener [default: as for the API listener].
    #[arg(long, env = "OUTRIDER_MESH_MAX_CONNECTIONS", value_parser = clap::value_parser!(u32).range(1..))]
    pub(crate) mesh_max_connections: Option<u32>,
    /// Open connections at most on the admin listener.
    #[arg(
        long,
        env = "OUTRIDER_METRICS_MAX_CONNECTIONS",
        default_value_t = 32,
        value_parser = clap::value_parser!(u32).range(1..)
    )]
    pub(crate) metrics_max_connections: u32,
    /// Every listener: the deadline from accept (TLS handshake included) to the first complete
    /// request head, and from the first byte of each later HTTP/1 head to its end.
    #[arg(long, env = "OUTRIDER_REQUEST_HEAD_TIMEOUT", default_value = "10s", value_parser = parse_timeout)]
    pub(crate) request_head_timeout: Duration,
    /// Every listener: a connection with no request in flight for this long is closed gracefully.
    #[arg(long, env = "OUTRIDER_IDLE_TIMEOUT", default_value = "120s", value_parser = parse_timeout)]
    pub(crate) idle_timeout: Duration,
    /// Every listener: a connection whose peer takes no bytes of a response for this long is
    /// closed (a slow or stuck reader cannot hold memory for good); on the mesh listener, only
    /// when nothing at all was sent on the connection for as long.
    #[arg(long, env = "OUTRIDER_STALL_TIMEOUT", default_value = "30s", value_parser = parse_timeout)]
    pub(crate) stall_timeout: Duration,
    /// Directory of resource files (Component, …); repeatable.
    #[arg(
        long,
        alias = "components-path",
        env = "OUTRIDER_RESOURCES_PATH",
        value_delimiter = ','
    )]
    pub(crate) resources_path: Vec<PathBuf>,
    /// A Configuration file.
    #[arg(long, env = "OUTRIDER_CONFIG")]
    pub(crate) config: Option<PathBuf>,
    /// The root of the access policy files per namespace: `<root>/<namespace>/*.yaml` apply to
    /// this sidecar when `<namespace>` is its own. Watched: edits apply without a restart.
    #[arg(long, env = "OUTRIDER_POLICIES_PATH")]
    pub(crate) policies_path: Option<PathBuf>,
    /// The namespace of this app.
    #[arg(long, env = "NAMESPACE", default_value = "default")]
    pub(crate) namespace: String,
    /// The SPIFFE trust domain of the mesh.
    #[arg(long, env = "OUTRIDER_TRUST_DOMAIN", default_value = "public")]
    pub(crate) trust_domain: String,
    /// Where the sidecar keeps local data.
    #[arg(long, env = "OUTRIDER_DATA_DIR", default_value = "./.outrider")]
    pub(crate) data_dir: PathBuf,
    /// debug, info, warn or error.
    #[arg(long, env = "OUTRIDER_LOG_LEVEL", default_value = "info")]
    pub(crate) log_level: String,
    /// Log one line per API request (method, path, status, duration); overrides the
    /// Configuration's `spec.logging.apiLogging.enabled`.
    #[arg(long, env = "OUTRIDER_ENABLE_API_LOGGING", num_args = 0..=1, default_missing_value = "true")]
    pub(crate) enable_api_logging: Option<bool>,
    /// Log JSON lines instead of text.
    #[arg(long, env = "OUTRIDER_LOG_AS_JSON", default_value = "false", num_args = 0..=1,
        require_equals = true, default_missing_value = "true", value_parser = go_bool)]
    pub(crate) log_as_json: bool,
    /// Largest request body accepted, e.g. 4Mi, 16MB, 1048576 [default: 4Mi].
    #[arg(long, env = "OUTRIDER_MAX_BODY_SIZE", value_parser = parse_size)]
    pub(crate) max_body_size: Option<u64>,
    /// How long in-flight requests may take to finish after SIGTERM.
    #[arg(
        long,
        alias = "dapr-graceful-shutdown-seconds",
        env = "OUTRIDER_GRACEFUL_SHUTDOWN_SECONDS",
        default_value_t = 5
    )]
    pub(crate) graceful_shutdown_seconds: u64,
    /// PEM trust bundle (roots) for externally issued certificates; needs --cert-chain and
    /// --cert-key. The three files are watched and reloaded together when written anew.
    #[arg(long, env = "OUTRIDER_TRUST_BUNDLE")]
    pub(crate) trust_bundle: Option<PathBuf>,
    /// PEM certificate chain, leaf first.
    #[arg(long, env = "OUTRIDER_CERT_CHAIN")]
    pub(crate) cert_chain: Option<PathBuf>,
    /// PEM private key of the leaf.
    #[arg(long, env = "OUTRIDER_CERT_KEY")]
    pub(crate) cert_key: Option<PathBuf>,
    /// `standalone` or `kubernetes` (daprd's flag): in `kubernetes` the default resolver, when the
    /// Configuration names none, is `dns` (other pods through their headless Services) instead
    /// of the local registry.
    #[arg(long, env = "OUTRIDER_MODE", default_value = "standalone", value_parser = ["standalone", "kubernetes"])]
    pub(crate) mode: String,
    /// The CA service (`outrider ca serve`) to get this sidecar's certificate from, host:port.
    /// The key is made here and never leaves the process; the first certificate is authorised
    /// by a join token (OUTRIDER_CA_TOKEN or --ca-token-file), renewals by the current one.
    #[arg(long, alias = "ca-address", env = "OUTRIDER_SENTRY_ADDRESS")]
    pub(crate) sentry_address: Option<String>,
    /// PEM roots the CA service's own certificate must chain to (with --sentry-address).
    #[arg(long, alias = "trust-anchors-file", env = "OUTRIDER_TRUST_ANCHORS")]
    pub(crate) trust_anchors: Option<PathBuf>,
    /// A file holding the join token for the CA service, read when a token is needed (instead
    /// of OUTRIDER_CA_TOKEN).
    #[arg(long, env = "OUTRIDER_CA_TOKEN_FILE")]
    pub(crate) ca_token_file: Option<PathBuf>,
    /// The CA service's namespace: it must serve as spiffe://<trust-domain>/ns/<this>/outrider-ca.
    #[arg(long, env = "DAPR_CONTROLPLANE_NAMESPACE", default_value = "default")]
    pub(crate) control_plane_namespace: String,
    /// The development CA's directory [default: $HOME/.outrider/ca].
    #[arg(long, env = "OUTRIDER_CA_DIR")]
    pub(crate) ca_dir: Option<PathBuf>,
    /// The local resolver's registry directory [default: $HOME/.outrider/registry].
    #[arg(long, env = "OUTRIDER_REGISTRY_DIR")]
    pub(crate) registry_dir: Option<PathBuf>,
    /// How this sidecar calls its peers: `auto` (HTTP/3 over QUIC with peers that advertise it,
    /// raced against HTTP/2 the first time and remembered), `h2` (HTTP/2 over TLS only; the
    /// mesh port does not listen on UDP) or `h3` (HTTP/3 only) [default: the Configuration's
    /// `spec.meshTransport`, else auto].
    #[arg(long, env = "OUTRIDER_MESH_TRANSPORT")]
    pub(crate) mesh_transport: Option<String>,
    /// In `auto`, how long the transport that got through to an endpoint is remembered: a peer
    /// whose QUIC failed is tried over QUIC again after this long.
    #[arg(long, env = "OUTRIDER_MESH_TRANSPORT_MEMORY", default_value = "5m", value_parser = parse_timeout)]
    pub(crate) mesh_transport_memory: Duration,
    /// Serve the transparent listeners for the traffic `outrider init` redirects: the app's
    /// outbound TCP on 127.0.0.1:--outbound-port, other hosts' plain TCP for it on
    /// --inbound-port. `spec.mtls.mode` in the Configuration says whether plain traffic from
    /// outside the mesh may reach the app (permissive) or not (strict).
    #[arg(long, env = "OUTRIDER_INTERCEPT")]
    pub(crate) intercept: bool,
    /// Port of the transparent outbound listener (with --intercept).
    #[arg(long, env = "OUTRIDER_OUTBOUND_PORT", default_value_t = 15001)]
    pub(crate) outbound_port: u16,
    /// Port of the transparent inbound listener (with --intercept).
    #[arg(long, env = "OUTRIDER_INBOUND_PORT", default_value_t = 15006)]
    pub(crate) inbound_port: u16,
    /// Intercepted destination ports whose traffic is carried as opaque TCP without waiting for
    /// the client's first bytes: protocols where the server speaks first.
    #[arg(
        long,
        env = "OUTRIDER_OPAQUE_PORTS",
        value_delimiter = ',',
        default_value = "25,587,3306,4222,4444,5432,6379,9300,11211"
    )]
    pub(crate) opaque_ports: Vec<u16>,
    /// TCP ports of the app that peers' intercepted TCP may reach through mesh tunnels (the
    /// sidecar connects to them on --app-channel-address). Never --app-port: that one is
    /// reached through the mesh's HTTP stack only. None by default: no tunnel is accepted.
    #[arg(long, env = "OUTRIDER_APP_PORTS", value_delimiter = ',')]
    pub(crate) app_ports: Vec<u16>,
    /// How long an intercepted connection may take to send the bytes that tell its protocol;
    /// a client still silent then is carried as opaque TCP.
    #[arg(long, env = "OUTRIDER_DETECT_TIMEOUT", default_value = "3s", value_parser = parse_timeout)]
    pub(crate) detect_timeout: Duration,
    /// The DNS suffix of `<app-id>.<namespace>.svc.<cluster-domain>` names.
    #[arg(long, env = "OUTRIDER_CLUSTER_DOMAIN", default_value = "cluster.local")]
    pub(crate) cluster_domain: String,
    /// Run every app of a Dapr multi-app run template (a file, or a directory holding
    /// `dapr.yaml`), each behind its own sidecar; the other flags then go in the file.
    #[arg(short = 'f', long = "run-file")]
    pub(crate) run_file: Option<PathBuf>,
    /// daprd's flags, under daprd's names.
    #[command(flatten)]
    pub(crate) daprd: DaprdArgs,
    /// The app to start as a child, after `--`.
    #[arg(last = true)]
    pub(crate) command: Vec<String>,
}

/// Values from the environment that are not flags.
#[derive(Clone, Debug, Default)]
pub(crate) struct Env {
    /// `$HOME`.
    pub(crate) home: Option<PathBuf>,
    /// `DAPR_API_TOKEN`: required on the app-facing API.
    pub(crate) api_token: Option<String>,
    /// `APP_API_TOKEN`: sent to the app.
    pub(crate) app_token: Option<String>,
    /// `OUTRIDER_CA_TOKEN`: the join token for the CA service.
    pub(crate) ca_token: Option<String>,
    /// `SSL_CERT_FILE`: the CA bundle HTTPS collectors are verified with, instead of the system's.
    pub(crate) ca_file: Option<PathBuf>,
    /// The limit on open descriptors in force (after raising the soft limit to the hard one).
    pub(crate) fd_limit: u64,
    /// The standard `OTEL_EXPORTER_OTLP_*` variables, used when the Configuration names no
    /// collector (as daprd does).
    pub(crate) otel: OtelEnv,
}

/// `OTEL_EXPORTER_OTLP_[TRACES_]{ENDPOINT,PROTOCOL,INSECURE,HEADERS}`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct OtelEnv {
    /// The traces endpoint (used as is), or the base endpoint (`/v1/traces` is added).
    pub(crate) endpoint: Option<String>,
    /// `http/protobuf`, `http/json` or `grpc`.
    pub(crate) protocol: Option<String>,
    /// `true`: plain HTTP for an endpoint without a scheme.
    pub(crate) insecure: Option<bool>,
    /// `key=value,key2=value2`.
    pub(crate) headers: Option<String>,
}

impl Env {
    /// Reads the environment, once, at start, raising the soft descriptor limit on the way.
    pub(crate) fn read() -> Self {
        let var = |k| std::env::var(k).ok().filter(|v: &String| !v.is_empty());
        Self {
            home: var("HOME").map(PathBuf::from),
            api_token: var("DAPR_API_TOKEN"),
            app_token: var("APP_API_TOKEN"),
            ca_token: var("OUTRIDER_CA_TOKEN"),
            ca_file: var("SSL_CERT_FILE").map(PathBuf::from),
            fd_limit: crate::net::serve::raise_fd_limit(),
            otel: OtelEnv {
                endpoint: var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
                    .or_else(|| var("OTEL_EXPORTER_OTLP_ENDPOINT")),
                protocol: var("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
                    .or_else(|| var("OTEL_EXPORTER_OTLP_PROTOCOL")),
                insecure: var("OTEL_EXPORTER_OTLP_TRACES_INSECURE")
                    .or_else(|| var("OTEL_EXPORTER_OTLP_INSECURE"))
                    .map(|v| v.eq_ignore_ascii_case("true")),
                headers: var("OTEL_EXPORTER_OTLP_TRACES_HEADERS")
                    .or_else(|| var("OTEL_EXPORTER_OTLP_HEADERS")),
            },
        }
    }
}

// The mesh port when none is given (Dapr's, in Kubernetes); the dns resolver assumes it too.
use outrider_discovery::DEFAULT_MESH_PORT;

/// The Dapr gRPC API's port when none is given, as in daprd.
pub(crate) const DEFAULT_GRPC_PORT: u16 = 50001;

/// Where the listeners bind.
#[derive(Clone, Debug)]
pub(crate) struct Listen {
    /// The Dapr HTTP API (on the first of `--dapr-listen-addresses`).
    pub(crate) api: SocketAddr,
    /// The Dapr gRPC API (on the first of `--dapr-listen-addresses`).
    pub(crate) grpc: SocketAddr,
    /// The other `--dapr-listen-addresses`: both APIs listen there too, on the same ports.
    pub(crate) api_more: Vec<IpAddr>,
    /// The gRPC port was chosen by the user (so it must be exactly that one).
    pub(crate) grpc_explicit: bool,
    pub(crate) mesh: SocketAddr,
    /// The mesh port was chosen by the user (so it must be exactly that one).
    pub(crate) mesh_explicit: bool,
    pub(crate) admin: SocketAddr,
    /// `--dapr-public-port`: health endpoints only.
    pub(crate) public: Option<SocketAddr>,
}

/// What each listener allows its connections.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ListenerLimits {
    pub(crate) api: Limits,
    pub(crate) grpc: Limits,
    pub(crate) mesh: Limits,
    pub(crate) admin: Limits,
}

impl RunArgs {
    pub(crate) fn listen(&self) -> Listen {
        let localhost = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let mut ips = crate::config::listen_addresses(self)
            .into_iter()
            .map(|a| a.unwrap_or(localhost));
        let first = ips.next().unwrap_or(localhost);
        let mesh_ip = (self.daprd.dapr_internal_grpc_listen_address.as_deref())
            .and_then(crate::config::ip)
            .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        Listen {
            api: SocketAddr::new(first, self.dapr_http_port),
            grpc: SocketAddr::new(first, self.dapr_grpc_port.unwrap_or(DEFAULT_GRPC_PORT)),
            api_more: ips.collect(),
            grpc_explicit: self.dapr_grpc_port.is_some(),
            mesh: SocketAddr::new(mesh_ip, self.mesh_port.unwrap_or(DEFAULT_MESH_PORT)),
            mesh_explicit: self.mesh_port.is_some(),
            admin: SocketAddr::new(self.metrics_listen_address, self.metrics_port),
            public: crate::config::public_address(self),
        }
    }

    /// What each listener allows its connections, under a descriptor limit of `fd_limit`.
    pub(crate) fn limits(&self, fd_limit: u64) -> ListenerLimits {
        let with_cap = |cap: usize| Limits {
            max_connections: cap,
            head_timeout: self.request_head_timeout,
            idle_timeout: self.idle_timeout,
            stall_timeout: self.stall_timeout,
            multiplexed: false,
        };
        let cap =
            |flag: Option<u32>| flag.map_or_else(|| Limits::default_cap(fd_limit), |n| n as usize);
        ListenerLimits {
            api: with_cap(cap(self.api_max_connections)),
            // SDKs send every call on one connection: a call whose answer the app reads slowly
            // must not close it under the others.
            grpc: Limits {
                multiplexed: true,
                ..with_cap(cap(self.api_max_connections))
            },
            mesh: Limits {
                multiplexed: true,
                ..with_cap(cap(self.mesh_max_connections))
            },
            admin: with_cap(self.metrics_max_connections as usize),
        }
    }

    /// `--app-protocol`, once the flag checks passed.
    pub(crate) fn app_protocol(&self) -> crate::to_app::channel::AppProtocol {
        use crate::to_app::channel::AppProtocol;
        match self.app_protocol_name().as_str() {
            "grpc" => AppProtocol::Grpc,
            "grpcs" => AppProtocol::Grpcs,
            "https" => AppProtocol::Https,
            "h2c" => AppProtocol::H2c,
            _ => AppProtocol::Http,
        }
    }

    /// `--app-protocol` in lower case, made `https`/`grpcs` by daprd's `--app-ssl`.
    pub(crate) fn app_protocol_name(&self) -> String {
        let p = self.app_protocol.trim().to_ascii_lowercase();
        match (self.daprd.app_ssl, p.as_str()) {
            (true, "http") => "https".into(),
            (true, "grpc") => "grpcs".into(),
            _ => p,
        }
    }

    pub(crate) fn grace(&self) -> Duration {
        Duration::from_secs(self.graceful_shutdown_seconds)
    }
}

/// Parses a positive duration such as `10s`, `500ms` or `2m`.
pub(crate) fn parse_timeout(s: &str) -> Result<Duration, String> {
    outrider_filters::duration::go_duration(s)
        .filter(|d| !d.is_zero())
        .ok_or_else(|| format!("{s:?} is not a positive duration like 10s or 500ms"))
}

/// Parses sizes such as `4Mi`, `4MiB`, `16MB`, `512k`, `1048576`.
pub(crate) fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a size like 4Mi or 1048576"))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1000,
        "ki" | "kib" => 1 << 10,
        "m" | "mb" => 1_000_000,
        "mi" | "mib" => 1 << 20,
        "g" | "gb" => 1_000_000_000,
        "gi" | "gib" => 1 << 30,
        _ => {
            return Err(format!(
                "{s:?} has an unknown unit (use Ki, Mi, Gi, KB, MB, GB)"
            ));
        }
    };
    n.checked_mul(mult)
        .filter(|v| *v > 0)
        .ok_or_else(|| format!("{s:?} is out of range"))
}

#[cfg(test)]
mod tests;
