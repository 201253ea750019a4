//! Turns flags and files into a validated [`Settings`] before any port is bound.
//!
//! Every problem is collected, each naming its source (flag, or file and field) and the value,
//! and all of them are reported together. [`load`] runs three named steps — the flags alone
//! (`flags`), the `--config` Configuration (`configuration`) and the resources directories
//! (`resources`) — each returning the typed part it decides; resource documents are handed to
//! the crate that owns their kind: `Component` to `blocks`, `nameResolution` to `discovery`.

mod configuration;
#[cfg(test)]
use configuration::DEFAULT_CERT_TTL;
mod daprd;
pub(crate) mod endpoints;
mod fields;
mod flags;
mod resources;

pub(crate) use configuration::access_control_of;
pub(crate) use daprd::{
    AllowedOrigins, AppHealthCheck, FromDaprd, ip, listen_addresses, public_address,
};

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use outrider_blocks::Component;
use outrider_blocks::secrets::SecretScopes;
use outrider_blocks::subscription::Declared;
use outrider_discovery::{Balancing, ResolverConfig};
use outrider_filters::access_log::AccessLogConfig;
use outrider_filters::resiliency::Resiliency;
use outrider_policy::AccessControl;
use outrider_policy::api::ApiAccess;
use outrider_policy::files::Sources;

use crate::cli::{Env, Listen, ListenerLimits, RunArgs};

/// Whether `s` may be an app id: letters, digits, `-`, `_`.
pub(crate) fn is_app_id(s: &str) -> bool {
    flags::is_name(s)
}

/// How this sidecar obtains its workload certificate.
#[derive(Clone, Debug)]
pub(crate) enum IdentitySource {
    /// Issued by the development CA in this directory, created on first use.
    DevCa { dir: PathBuf },
    /// Issued by the CA service at `address` for a key made here.
    CaService(CaService),
    /// Issued elsewhere, read from these PEM files.
    Files {
        bundle: PathBuf,
        chain: PathBuf,
        key: PathBuf,
    },
}

/// Where and how to ask the CA service for certificates.
#[derive(Clone, Debug)]
pub(crate) struct CaService {
    /// host:port.
    pub(crate) address: String,
    /// The roots its own certificate must chain to.
    pub(crate) anchors: PathBuf,
    /// The join token, or the file it is read from when needed.
    pub(crate) token: JoinToken,
    /// The CA service's namespace (its identity is `outrider-ca` there).
    pub(crate) namespace: String,
}

/// Where the join token comes from.
#[derive(Clone)]
pub(crate) enum JoinToken {
    /// None given: only renewal with a current certificate is possible.
    None,
    /// From the environment.
    Value(String),
    /// Read from this file when needed (it may be written after start).
    File(PathBuf),
}

impl std::fmt::Debug for JoinToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::None => f.write_str("None"),
            // Never printed.
            Self::Value(_) => f.write_str("Value(..)"),
            Self::File(p) => write!(f, "File({})", p.display()),
        }
    }
}

/// A validated component document and where it came from, for error messages.
#[derive(Clone, Debug)]
pub(crate) struct LoadedComponent {
    /// The file (and document number) it was read from; `built-in` for defaults.
    pub(crate) at: String,
    pub(crate) component: Component,
}

/// Everything the sidecar runs with, validated; made by [`crate::settings`].
#[derive(Clone, Debug)]
pub struct Settings {
    pub(crate) app_id: String,
    pub(crate) namespace: String,
    pub(crate) trust_domain: String,
    pub(crate) app_port: Option<u16>,
    /// `--app-protocol`.
    pub(crate) app_protocol: crate::to_app::channel::AppProtocol,
    pub(crate) app_channel_address: String,
    pub(crate) listen: Listen,
    pub(crate) limits: ListenerLimits,
    /// The admin status page is served to other hosts too.
    pub(crate) admin_status_remote: bool,
    pub(crate) max_body_size: u64,
    pub(crate) grace: Duration,
    pub(crate) identity: IdentitySource,
    pub(crate) workload_cert_ttl: Duration,
    pub(crate) registry_dir: PathBuf,
    pub(crate) resolver: ResolverConfig,
    pub(crate) balancing: Balancing,
    pub(crate) components: Vec<LoadedComponent>,
    /// Declarative `Subscription`s that apply to this app.
    pub(crate) subscriptions: Vec<Declared>,
    /// `Resiliency` documents that apply to this app.
    pub(crate) resiliency: Vec<Resiliency>,
    /// `HTTPEndpoint`s this app may invoke.
    pub(crate) http_endpoints: Vec<endpoints::HttpEndpointDoc>,
    /// `Configuration.spec.secrets.scopes`.
    pub(crate) secret_scopes: SecretScopes,
    /// Where access policies come from (watched while running).
    pub(crate) policy_sources: Sources,
    /// The access policies loaded at start.
    pub(crate) access_control: AccessControl,
    /// `Configuration.spec.api`.
    pub(crate) api_access: ApiAccess,
    /// `Configuration.spec.logging.apiLogging`, with `--enable-api-logging` applied.
    pub(crate) access_log: AccessLogConfig,
    /// `Configuration.spec.tracing`, when spans are exported.
    pub(crate) tracing: Option<crate::telemetry::TracingConfig>,
    pub(crate) data_dir: PathBuf,
    pub(crate) api_token: Option<String>,
    pub(crate) app_token: Option<String>,
    /// `SSL_CERT_FILE`, for HTTPS collectors.
    pub(crate) ca_file: Option<PathBuf>,
    pub(crate) command: Vec<String>,
    /// How the app child is started (a multi-app run sets its directory, environment and
    /// output).
    pub(crate) child: crate::run::child::ChildSetup,
    /// `--intercept` and its settings; `None` without it.
    pub(crate) interception: Option<crate::mesh::transparent::Interception>,
    /// `Configuration.spec.mtls.mode`.
    pub(crate) mtls_mode: crate::mesh::transparent::MtlsMode,
    /// The app's ports a peer's tunnel may reach: `--app-ports` (never `--app-port`).
    pub(crate) tunnel_ports: std::collections::BTreeSet<u16>,
    /// What daprd's flags decide (health checks, concurrency, CORS, …).
    pub(crate) daprd: FromDaprd,
    /// The middleware components of `spec.httpPipeline`, in order.
    pub(crate) http_pipeline: Vec<Component>,
    /// `spec.appHttpPipeline`'s middleware components, in order: run on calls to an HTTP app.
    pub(crate) app_http_pipeline: Vec<Component>,
    /// Things accepted that Outrider does differently, each a line at start.
    pub(crate) warnings: Vec<Problem>,
    /// How outbound mesh requests travel: `--mesh-transport` / `spec.meshTransport`.
    pub(crate) mesh_transport: crate::mesh::outbound::transport::MeshTransport,
    /// `--mesh-transport-memory`.
    pub(crate) mesh_transport_memory: Duration,
}

/// One configuration problem.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Problem {
    /// A flag (`--app-id`) or `file: field`.
    pub(crate) at: String,
    pub(crate) message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.at, self.message)
    }
}

/// All problems found.
#[derive(Debug)]
pub(crate) struct Problems(pub(crate) Vec<Problem>);

impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "the configuration has {} problem(s):", self.0.len())?;
        for p in &self.0 {
            writeln!(f, "  - {p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Problems {}

/// Validates flags and loads files.
pub(crate) fn load(args: &RunArgs, env: &Env) -> Result<Settings, Problems> {
    let (mut problems, mut warnings) = (Vec::new(), Vec::new());
    let from_flags = flags::check(args, env, &mut problems);
    let from_daprd = daprd::check(args, &mut problems, &mut warnings);
    let configured = configuration::load(args, env, &mut problems, &mut warnings);
    let mut resources = resources::load(args, &mut problems, &mut warnings);
    let (mut http_pipeline, mut app_http_pipeline) = (Vec::new(), Vec::new());
    if let Some(c) = &configured {
        deny_components(
            &mut resources.components,
            &c.denied_components,
            &mut warnings,
        );
        let found = &resources.components;
        (http_pipeline, app_http_pipeline) =
            pipelines(args, c, found, &mut problems, &mut warnings);
    }
    let interception = interception(
        args,
        configured.as_ref().map(|c| c.mtls_mode),
        &mut problems,
    );
    match (from_flags, configured) {
        (Some(f), Some(c)) if problems.is_empty() => Ok(Settings {
            app_id: args.app_id.clone(),
            namespace: args.namespace.clone(),
            trust_domain: args.trust_domain.clone(),
            app_port: args.app_port.filter(|p| *p != 0),
            app_protocol: args.app_protocol(),
            app_channel_address: args.app_channel_address.clone(),
            listen: args.listen(),
            limits: args.limits(env.fd_limit),
            admin_status_remote: args.admin_status_remote,
            max_body_size: from_daprd.max_body_size,
            grace: args.grace(),
            identity: f.identity,
            workload_cert_ttl: c.workload_cert_ttl,
            registry_dir: f.registry_dir,
            resolver: c.resolution.resolver,
            balancing: c.resolution.balancing,
            components: resources.components,
            subscriptions: resources.subscriptions,
            resiliency: resources.resiliency,
            http_endpoints: resources.endpoints,
            secret_scopes: c.secret_scopes,
            policy_sources: c.policy_sources,
            access_control: c.access_control,
            api_access: c.api_access,
            tracing: c.tracing,
            access_log: c.access_log,
            data_dir: args.data_dir.clone(),
            api_token: env.api_token.clone(),
            app_token: env.app_token.clone(),
            ca_file: env.ca_file.clone(),
            command: args.command.clone(),
            child: Default::default(),
            interception,
            mtls_mode: c.mtls_mode,
            // Never the app port: what reaches it goes through the inbound HTTP stack (caller
            // headers stamped from the certificate, the policy per route), not as raw bytes.
            tunnel_ports: args.app_ports.iter().copied().collect(),
            mesh_transport: c.mesh_transport,
            mesh_transport_memory: args.mesh_transport_memory,
            daprd: from_daprd,
            http_pipeline,
            app_http_pipeline,
            warnings,
        }),
        _ => Err(Problems(problems)),
    }
}

/// `spec.httpPipeline` and `spec.appHttpPipeline`, resolved to their components.
fn pipelines(
    args: &RunArgs,
    c: &configuration::FromConfiguration,
    found: &[LoadedComponent],
    problems: &mut Vec<Problem>,
    warnings: &mut Vec<Problem>,
) -> (Vec<Component>, Vec<Component>) {
    let file = args.config.as_deref().map(display).unwrap_or_default();
    let api = pipeline(&file, ("httpPipeline", &c.pipeline), found, problems);
    let app = pipeline(&file, ("appHttpPipeline", &c.app_pipeline), found, problems);
    unused_middleware(found, &[&c.pipeline, &c.app_pipeline], warnings);
    if !c.app_pipeline.is_empty() && args.app_protocol().is_grpc() {
        warnings.push(Problem {
            at: format!("{file}: spec.appHttpPipeline"),
            message: "the app speaks gRPC: HTTP middleware does not run on calls to it \
                      (as in daprd), only on calls to HTTP endpoints"
                .into(),
        });
    }
    (api, app)
}

/// `spec.<field>.handlers` resolved to their components: each must name a loaded middleware
/// component of the type it says (daprd would skip one that does not, and go on without it).
fn pipeline(
    file: &str,
    (field, handlers): (&str, &[configuration::HandlerSpec]),
    components: &[LoadedComponent],
    problems: &mut Vec<Problem>,
) -> Vec<Component> {
    let mut out = Vec::new();
    let unguarded = if field == "httpPipeline" {
        "the API would serve without it"
    } else {
        "calls to the app would go without it"
    };
    for (i, h) in handlers.iter().enumerate() {
        let found = components
            .iter()
            .find(|l| l.component.metadata.name == h.name);
        let wanted = h.type_.trim().to_ascii_lowercase();
        match found {
            Some(l) if l.component.spec.type_ == wanted => out.push(l.component.clone()),
            Some(l) => problems.push(Problem {
                at: format!("{file}: spec.{field}.handlers[{i}].type"),
                message: format!(
                    "{:?}, but the component {:?} ({}) is {}",
                    h.type_, h.name, l.at, l.component.spec.type_
                ),
            }),
            None => problems.push(Problem {
                at: format!("{file}: spec.{field}.handlers[{i}].name"),
                message: format!(
                    "{:?}: no middleware component of that name is loaded; {unguarded}",
                    h.name
                ),
            }),
        }
    }
    out
}

/// Middleware components no pipeline names are noted.
fn unused_middleware(
    components: &[LoadedComponent],
    pipelines: &[&[configuration::HandlerSpec]],
    warnings: &mut Vec<Problem>,
) {
    for l in components {
        let c = &l.component;
        let named = pipelines
            .iter()
            .any(|p| p.iter().any(|h| h.name == c.metadata.name));
        if c.spec.type_.starts_with("middleware.") && !named {
            warnings.push(Problem {
                at: format!("{}: metadata.name", l.at),
                message: format!(
                    "the middleware {:?} is in no Configuration's spec.httpPipeline or \
                     spec.appHttpPipeline; unused",
                    c.metadata.name
                ),
            });
        }
    }
}

/// `spec.components.deny`: components of a denied type (`state.redis`) or type and version
/// (`state.redis/v1`) are not loaded, as in daprd; each is named.
fn deny_components(
    components: &mut Vec<LoadedComponent>,
    denied: &[String],
    warnings: &mut Vec<Problem>,
) {
    let is_denied = |c: &outrider_blocks::Component| {
        let ty = c.spec.type_.as_str();
        let with_version = format!("{ty}/{}", c.spec.version_label());
        denied.iter().any(|d| {
            let d = d.trim().to_ascii_lowercase();
            d == ty || d == with_version
        })
    };
    components.retain(|l| {
        let deny = is_denied(&l.component);
        if deny {
            warnings.push(Problem {
                at: format!("{}: spec.type", l.at),
                message: format!(
                    "{} is denied by the Configuration's spec.components.deny; the component \
                     {:?} is not loaded",
                    l.component.spec.type_, l.component.metadata.name
                ),
            });
        }
        !deny
    });
}

/// `--intercept` and the flags that go with it: its two ports must be free of the others.
fn interception(
    args: &RunArgs,
    mode: Option<crate::mesh::transparent::MtlsMode>,
    problems: &mut Vec<Problem>,
) -> Option<crate::mesh::transparent::Interception> {
    if let Some(p) = args.app_ports.iter().find(|p| **p == 0) {
        problems.push(Problem {
            at: "--app-ports".into(),
            message: format!("{p} is not a port"),
        });
    }
    if let Some(p) = args.app_port.filter(|p| args.app_ports.contains(p)) {
        problems.push(Problem {
            at: "--app-ports".into(),
            message: format!(
                "{p} is --app-port, which peers reach through the mesh's HTTP stack (caller \
                 identity, access policy per route), never as raw TCP"
            ),
        });
    }
    if !args.intercept {
        return None;
    }
    let listen = args.listen();
    let taken = [
        ("--dapr-http-port", listen.api.port()),
        ("--dapr-grpc-port", listen.grpc.port()),
        ("--mesh-port", listen.mesh.port()),
        ("--metrics-port", listen.admin.port()),
    ];
    for (flag, port) in [
        ("--outbound-port", args.outbound_port),
        ("--inbound-port", args.inbound_port),
    ] {
        let clash = taken.iter().find(|(_, p)| *p == port).map(|(f, _)| *f);
        let clash = clash
            .or((flag == "--inbound-port" && port == args.outbound_port)
                .then_some("--outbound-port"));
        if port == 0 || clash.is_some() {
            problems.push(Problem {
                at: flag.into(),
                message: format!(
                    "{port} is {}",
                    clash.map_or("not a port".to_owned(), |c| format!("also {c}"))
                ),
            });
        }
    }
    Some(crate::mesh::transparent::Interception {
        outbound_port: args.outbound_port,
        inbound_port: args.inbound_port,
        opaque_ports: args.opaque_ports.iter().copied().collect(),
        detect_timeout: args.detect_timeout,
        cluster_domain: args.cluster_domain.clone(),
        mode: mode.unwrap_or_default(),
    })
}

fn display(p: &Path) -> String {
    p.display().to_string()
}

/// A validation error of another crate: the field it names and what is wrong.
trait FieldProblem {
    fn parts(self) -> (String, String);
}

/// `errs`, each placed in `file`.
fn within<'a, E: FieldProblem + 'a>(
    file: &'a str,
    errs: Vec<E>,
) -> impl Iterator<Item = Problem> + 'a {
    errs.into_iter().map(move |e| {
        let (field, message) = e.parts();
        Problem {
            at: format!("{file}: {field}"),
            message,
        }
    })
}

/// Parses Go-style durations (`1h30m`, `500ms`, `24h`) and bare integers as seconds.
pub(crate) fn parse_duration(s: &str) -> Option<Duration> {
    match s.trim().parse::<u64>() {
        Ok(n) => Some(Duration::from_secs(n)),
        Err(_) => outrider_filters::duration::go_duration(s),
    }
}

#[cfg(test)]
mod tests;
