//! Flags of the subcommands other than `run`.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Subcommand};

use super::DEFAULT_GRPC_PORT;

/// Flags of `outrider proxy`.
#[derive(Debug, Args)]
pub(crate) struct ProxyArgs {
    /// Where to accept HTTP/1.1 and h2c.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub(crate) listen: SocketAddr,
    /// Where to forward: `host:port`.
    #[arg(long, value_parser = parse_upstream)]
    pub(crate) upstream: String,
    /// Serve Prometheus metrics at this address (any path).
    #[arg(long)]
    pub(crate) metrics_listen: Option<SocketAddr>,
    /// Log level (error, warn, info, debug, trace).
    #[arg(long, default_value = "warn")]
    pub(crate) log_level: String,
}

fn parse_upstream(s: &str) -> Result<String, String> {
    let (host, port) = s
        .rsplit_once(':')
        .ok_or_else(|| format!("{s:?} is not host:port"))?;
    match (host.is_empty(), port.parse::<u16>()) {
        (false, Ok(p)) if p != 0 && format!("http://{s}/").parse::<http::Uri>().is_ok() => {
            Ok(s.to_owned())
        }
        _ => Err(format!("{s:?} is not host:port")),
    }
}

/// `outrider policy …`.
#[derive(Debug, Subcommand)]
pub(crate) enum PolicyCommand {
    /// Print whether a caller may call an operation, and the rule that decides. Exit status: 0
    /// allowed, 1 denied, 2 the configuration has problems.
    Check(CheckArgs),
}

/// Flags of `outrider policy check`.
#[derive(Debug, Args)]
pub(crate) struct CheckArgs {
    /// A Configuration file whose `spec.accessControl` applies.
    #[arg(long)]
    pub(crate) config: Option<PathBuf>,
    /// The root of the policy files per namespace (`<root>/<namespace>/*.yaml`).
    #[arg(long)]
    pub(crate) policies_path: Option<PathBuf>,
    /// The callee's namespace: which policy directory applies.
    #[arg(long, default_value = "default")]
    pub(crate) namespace: String,
    /// The caller: a SPIFFE id (`spiffe://public/ns/default/orders`), `namespace/app-id`, or an
    /// app id in the default namespace.
    #[arg(long)]
    pub(crate) caller: String,
    /// The caller's trust domain when --caller is not a SPIFFE id.
    #[arg(long, default_value = "public")]
    pub(crate) trust_domain: String,
    /// The operation: the method path the caller invokes, e.g. `/orders/7`.
    #[arg(long)]
    pub(crate) op: String,
    /// The HTTP verb.
    #[arg(long, default_value = "GET")]
    pub(crate) verb: String,
}

/// Flags of `outrider init`.
#[derive(Debug, Args)]
pub(crate) struct InitArgs {
    /// The uid the sidecar runs as: its own connections are never redirected. Required, but for
    /// --uninstall.
    #[arg(
        long,
        env = "OUTRIDER_PROXY_UID",
        required_unless_present = "uninstall"
    )]
    pub(crate) proxy_uid: Option<u32>,
    /// A gid whose connections are never redirected either.
    #[arg(long, env = "OUTRIDER_PROXY_GID")]
    pub(crate) proxy_gid: Option<u32>,
    /// Where the app's outbound TCP goes (the sidecar's --outbound-port, on loopback).
    #[arg(long, default_value_t = 15001)]
    pub(crate) outbound_port: u16,
    /// Where other hosts' TCP for this namespace goes (the sidecar's --inbound-port).
    #[arg(long, default_value_t = 15006)]
    pub(crate) inbound_port: u16,
    /// The sidecar's mesh port: never redirected inbound.
    #[arg(long, default_value_t = outrider_discovery::DEFAULT_MESH_PORT)]
    pub(crate) mesh_port: u16,
    /// The sidecar's HTTP API port: never redirected inbound.
    #[arg(long, default_value_t = 3500)]
    pub(crate) dapr_http_port: u16,
    /// The sidecar's gRPC API port: never redirected inbound.
    #[arg(long, default_value_t = DEFAULT_GRPC_PORT)]
    pub(crate) dapr_grpc_port: u16,
    /// The sidecar's admin port: never redirected inbound.
    #[arg(long, default_value_t = 9090)]
    pub(crate) metrics_port: u16,
    /// Destination ports the app reaches directly.
    #[arg(long, value_delimiter = ',')]
    pub(crate) skip_outbound_ports: Vec<u16>,
    /// Destination addresses or networks (`10.0.0.0/8`) the app reaches directly.
    #[arg(long, value_delimiter = ',')]
    pub(crate) skip_outbound_cidrs: Vec<String>,
    /// Ports of this namespace other hosts reach directly.
    #[arg(long, value_delimiter = ',')]
    pub(crate) skip_inbound_ports: Vec<u16>,
    /// Rules for IPv6 too: `auto` (when the namespace has IPv6), `on` or `off`.
    #[arg(long, default_value = "auto", value_parser = ["auto", "on", "off"])]
    pub(crate) ipv6: String,
    /// Print the iptables-restore batches instead of applying them.
    #[arg(long)]
    pub(crate) dry_run: bool,
    /// Remove exactly the rules and chains `outrider init` installs.
    #[arg(long)]
    pub(crate) uninstall: bool,
}

/// `outrider ca …`: a certificate authority of one's own for the mesh.
#[derive(Debug, Subcommand)]
pub(crate) enum CaCommand {
    /// Create a root CA, or with --root-cert and --root-key an intermediate signed by a root
    /// whose key stays offline, into a new directory (keys mode 0600). Sidecars issue their
    /// certificates from it with `--ca-dir DIR`; peers trust the root (`DIR/bundle.pem`).
    Init(CaInitArgs),
    /// Serve the CA to sidecars (the Sentry role): they send certificate signing requests over
    /// TLS and get short-lived certificates for exactly the identity they are entitled to — by
    /// a join token the first time, by their current certificate after that. The CA's keys
    /// never leave DIR.
    Serve(CaServeArgs),
    /// Join tokens: what a sidecar shows the CA service to get its first certificate.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Rotate the CA without an outage: `add` a new root (trusted, not yet issuing), `switch`
    /// issuance to it, and `retire` the old root once every certificate has been renewed.
    #[command(subcommand)]
    Rotate(RotateCommand),
}

/// `outrider ca rotate …`, three steps run in turn.
#[derive(Debug, Subcommand)]
pub(crate) enum RotateCommand {
    /// Create the next issuer in DIR/next (a new root, or with --root-cert and --root-key an
    /// intermediate under a new offline root) and add its root to DIR/bundle.pem.
    Add(RotateAddArgs),
    /// Issue from the next issuer from now on; the old one waits in DIR/previous.
    Switch(RotateDirArgs),
    /// Remove from DIR/bundle.pem the roots the current issuer does not chain to, and the
    /// previous issuer, at least --grace after the switch.
    Retire(RotateRetireArgs),
}

/// Flags of `outrider ca rotate add`.
#[derive(Debug, Args)]
pub(crate) struct RotateAddArgs {
    /// The CA's directory.
    #[arg(long)]
    pub(crate) dir: PathBuf,
    #[command(flatten)]
    pub(crate) issuer: NewIssuerArgs,
}

/// The CA directory alone.
#[derive(Debug, Args)]
pub(crate) struct RotateDirArgs {
    /// The CA's directory.
    #[arg(long)]
    pub(crate) dir: PathBuf,
}

/// Flags of `outrider ca rotate retire`.
#[derive(Debug, Args)]
pub(crate) struct RotateRetireArgs {
    /// The CA's directory.
    #[arg(long)]
    pub(crate) dir: PathBuf,
    /// How long after the switch the old root may go: the longest workload certificate
    /// lifetime in use (`ca serve --workload-cert-ttl`), so that every sidecar has renewed.
    #[arg(long, default_value = "24h", value_parser = super::parse_timeout)]
    pub(crate) grace: std::time::Duration,
}

/// Flags of `outrider ca serve`.
#[derive(Debug, Args)]
pub(crate) struct CaServeArgs {
    /// The CA's directory (`outrider ca init`).
    #[arg(long)]
    pub(crate) dir: PathBuf,
    /// Where to accept sidecars' TLS connections.
    #[arg(long, default_value = "0.0.0.0:50001")]
    pub(crate) listen: SocketAddr,
    /// The SPIFFE trust domain the CA issues in.
    #[arg(long, env = "OUTRIDER_TRUST_DOMAIN", default_value = "public")]
    pub(crate) trust_domain: String,
    /// The CA's own namespace: it serves as `spiffe://<trust-domain>/ns/<namespace>/outrider-ca`,
    /// which sidecars expect (their --control-plane-namespace).
    #[arg(long, env = "NAMESPACE", default_value = "default")]
    pub(crate) namespace: String,
    /// How long the workload certificates it issues are valid; sidecars renew at two thirds.
    #[arg(long, default_value = "24h", value_parser = super::parse_timeout)]
    pub(crate) workload_cert_ttl: std::time::Duration,
    /// Open connections at most; past it a new connection is closed at once [default: a
    /// quarter of the descriptors left after a reserve, at most 16384]. Each sidecar holds about
    /// one while it waits for the trust bundle to change.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=65536))]
    pub(crate) max_connections: Option<u32>,
    /// The cluster's public keys (a JWKS: `kubectl get --raw /openid/v1/jwks`): pods' projected
    /// service-account tokens then entitle to `(their namespace, their service account)`.
    /// Read again when the file changes.
    #[arg(long)]
    pub(crate) kubernetes_jwks: Option<PathBuf>,
    /// The issuer service-account tokens must name (the cluster's --service-account-issuer).
    #[arg(long, default_value = "https://kubernetes.default.svc.cluster.local")]
    pub(crate) kubernetes_issuer: String,
    /// The audience service-account tokens must be for (the projected volume's audience).
    #[arg(long, default_value = "outrider-ca")]
    pub(crate) kubernetes_audience: String,
    /// How long a client has from connecting to a complete request head (TLS handshake
    /// included), and then for the body.
    #[arg(long, default_value = "10s", value_parser = super::parse_timeout)]
    pub(crate) request_head_timeout: std::time::Duration,
    /// Serve Prometheus metrics and /healthz at this address, plain HTTP.
    #[arg(long)]
    pub(crate) metrics_listen: Option<SocketAddr>,
    /// Log level (error, warn, info, debug, trace).
    #[arg(long, default_value = "info")]
    pub(crate) log_level: String,
}

/// `outrider ca token …`.
#[derive(Debug, Subcommand)]
pub(crate) enum TokenCommand {
    /// Create a join token for one (namespace, app id) and print it (it is shown only once; the
    /// CA keeps its hash). Give it to the sidecar as OUTRIDER_CA_TOKEN or --ca-token-file.
    Create(TokenCreateArgs),
}

/// Flags of `outrider ca token create`.
#[derive(Debug, Args)]
pub(crate) struct TokenCreateArgs {
    /// The CA's directory.
    #[arg(long)]
    pub(crate) dir: PathBuf,
    /// The namespace of the identity the token obtains.
    #[arg(long, default_value = "default")]
    pub(crate) namespace: String,
    /// The app id of the identity the token obtains.
    #[arg(long)]
    pub(crate) app_id: String,
    /// How many certificates the token may obtain.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    pub(crate) uses: u32,
    /// How long the token may be used.
    #[arg(long, default_value = "24h", value_parser = super::parse_timeout)]
    pub(crate) ttl: std::time::Duration,
}

/// What a new CA is: its lifetime, and the offline root it is an intermediate of, if any
/// (`ca init`, `ca rotate add`).
#[derive(Debug, Args)]
pub(crate) struct NewIssuerArgs {
    /// How many days the CA is valid (an intermediate never outlives its root).
    #[arg(long, default_value_t = 365, value_parser = clap::value_parser!(u32).range(1..=36500))]
    pub(crate) days: u32,
    /// The root's certificate (PEM), to create an intermediate signed by it.
    #[arg(long, requires = "root_key")]
    pub(crate) root_cert: Option<PathBuf>,
    /// The root's private key (PEM); read once, never copied.
    #[arg(long, requires = "root_cert")]
    pub(crate) root_key: Option<PathBuf>,
}

impl NewIssuerArgs {
    /// The lifetime asked for.
    pub(crate) fn lifetime(&self) -> std::time::Duration {
        std::time::Duration::from_secs(u64::from(self.days) * 24 * 3600)
    }

    /// The offline root's certificate and key files, if any.
    pub(crate) fn root(&self) -> Option<(&std::path::Path, &std::path::Path)> {
        self.root_cert.as_deref().zip(self.root_key.as_deref())
    }
}

/// Flags of `outrider ca init`.
#[derive(Debug, Args)]
pub(crate) struct CaInitArgs {
    /// The directory to create; it must not hold a CA already.
    #[arg(long)]
    pub(crate) dir: PathBuf,
    #[command(flatten)]
    pub(crate) issuer: NewIssuerArgs,
}

/// Flags of `outrider inject`.
#[derive(Debug, Args)]
pub(crate) struct InjectArgs {
    /// Read this file instead of standard input.
    #[arg(long, short = 'f')]
    pub(crate) file: Option<PathBuf>,
    /// The sidecar's image (`dapr.io/sidecar-image` overrides it per pod).
    #[arg(
        long,
        env = "OUTRIDER_SIDECAR_IMAGE",
        default_value = "ghcr.io/outrider-mesh/outrider:0.1.0"
    )]
    pub(crate) image: String,
    /// The image of the interception init container (`outrider.io/intercept`): `outrider` and
    /// the iptables tools.
    #[arg(
        long,
        env = "OUTRIDER_INIT_IMAGE",
        default_value = "ghcr.io/outrider-mesh/outrider-init:0.1.0"
    )]
    pub(crate) init_image: String,
    /// The CA service sidecars get their certificates from.
    #[arg(
        long,
        default_value = "outrider-ca.outrider-system.svc.cluster.local:50001"
    )]
    pub(crate) sentry_address: String,
    /// The CA service's namespace.
    #[arg(long, default_value = "outrider-system")]
    pub(crate) control_plane_namespace: String,
    /// The trust domain (the cluster's).
    #[arg(long, default_value = "cluster.local")]
    pub(crate) trust_domain: String,
    /// The ConfigMap, in each app's namespace, holding the CA's `bundle.pem`.
    #[arg(long, default_value = "outrider-trust-anchors")]
    pub(crate) trust_anchors_configmap: String,
}

/// Where `outrider status` and `outrider top` look for sidecars.
#[derive(Debug, Args)]
pub(crate) struct Sources {
    /// The local registry [default: $HOME/.outrider/registry].
    #[arg(long, env = "OUTRIDER_REGISTRY_DIR")]
    pub(crate) registry_dir: Option<PathBuf>,
    /// Also list the sidecars that announce themselves over mDNS on the LAN.
    #[arg(long)]
    pub(crate) mdns: bool,
    /// With `--mdns`: the interfaces to browse, comma-separated [default: every interface].
    #[arg(long, value_delimiter = ',')]
    pub(crate) interfaces: Vec<String>,
    /// With `--mdns`: how long to listen for announcements.
    #[arg(long, default_value = "2s", value_parser = super::parse_timeout)]
    pub(crate) browse: std::time::Duration,
}

/// Flags of `outrider status`.
#[derive(Debug, Args)]
pub(crate) struct StatusArgs {
    #[command(flatten)]
    pub(crate) sources: Sources,
    /// Print JSON (an array, one object per sidecar) instead of a table.
    #[arg(long)]
    pub(crate) json: bool,
    /// The window the rates are measured over: two reads of each sidecar's /metrics this far
    /// apart.
    #[arg(long, default_value = "1s", value_parser = super::parse_timeout)]
    pub(crate) window: std::time::Duration,
}

/// Flags of `outrider top`.
#[derive(Debug, Args)]
pub(crate) struct TopArgs {
    /// The app whose sidecar to watch.
    #[arg(long)]
    pub(crate) app_id: String,
    /// Its namespace.
    #[arg(long, default_value = "default")]
    pub(crate) namespace: String,
    #[command(flatten)]
    pub(crate) sources: Sources,
    /// How often to refresh.
    #[arg(long, default_value = "2s", value_parser = super::parse_timeout)]
    pub(crate) interval: std::time::Duration,
    /// Stop after this many refreshes (0: run until interrupted).
    #[arg(long, default_value_t = 0)]
    pub(crate) iterations: u64,
}
