//! Turns flags and files into a validated [`Settings`] before any port is bound.
//!
//! Every problem is collected, each naming its source (flag, or file and field) and the value,
//! and all of them are reported together. Resource documents are handed to the crate that owns
//! their kind: `Component` to `blocks`, `nameResolution` to `discovery`.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use outrider_blocks::Component;
use outrider_blocks::secrets::{SecretScope, SecretScopes};
use outrider_blocks::subscription::{Declared, SubscriptionDoc};
use outrider_discovery::{Balancing, NameResolution, Resolution, ResolverConfig};
use outrider_filters::access_log::AccessLogConfig;
use outrider_filters::resiliency::Resiliency;
use outrider_policy::api::ApiAccess;
use outrider_policy::files::Sources;
use outrider_policy::{AccessControl, AccessControlSpec};
use serde::Deserialize;

use crate::cli::{Env, Listen, ListenerLimits, RunArgs};

/// How this sidecar obtains its workload certificate.
#[derive(Clone, Debug)]
pub(crate) enum IdentitySource {
    /// Issued by the development CA in this directory, created on first use.
    DevCa { dir: PathBuf },
    /// Issued elsewhere, read from these PEM files.
    Files {
        bundle: PathBuf,
        chain: PathBuf,
        key: PathBuf,
    },
}

/// A validated component document and where it came from, for error messages.
#[derive(Clone, Debug)]
pub(crate) struct LoadedComponent {
    /// The file (and document number) it was read from; `built-in` for defaults.
    pub(crate) at: String,
    pub(crate) component: Component,
}

/// What a sidecar gets when no resources are given: a durable SQLite `statestore` under the data
/// directory and an in-memory `pubsub`.
fn default_components() -> Vec<LoadedComponent> {
    let docs = [
        serde_json::json!({
            "metadata": {"name": "statestore"},
            "spec": {"type": "state.sqlite", "version": "v1", "metadata": [{"name": "connectionString", "value": "state.db"}]},
        }),
        serde_json::json!({"metadata": {"name": "pubsub"}, "spec": {"type": "pubsub.in-memory", "version": "v1"}}),
    ];
    docs.into_iter()
        .map(|doc| LoadedComponent {
            at: "built-in default".into(),
            component: serde_json::from_value(doc)
                .expect("the built-in components are well-formed"),
        })
        .collect()
}

/// Everything the sidecar runs with, validated; made by [`crate::settings`].
#[derive(Clone, Debug)]
pub struct Settings {
    pub(crate) app_id: String,
    pub(crate) namespace: String,
    pub(crate) trust_domain: String,
    pub(crate) app_port: Option<u16>,
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

/// Default workload certificate lifetime (Dapr's `workloadCertTTL`).
const DEFAULT_CERT_TTL: Duration = Duration::from_secs(24 * 3600);
/// Longest workload certificate lifetime accepted: a year.
const MAX_CERT_TTL: Duration = Duration::from_secs(366 * 24 * 3600);

/// Whether `s` may be an app id or namespace: letters, digits, `-`, `_`; no dots, because
/// `app.namespace` names another namespace.
fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Validates flags and loads files.
pub(crate) fn load(args: &RunArgs, env: &Env) -> Result<Settings, Problems> {
    let mut problems = Vec::new();
    let mut flag = |name: &str, message: String| {
        problems.push(Problem {
            at: format!("--{name}"),
            message,
        })
    };

    if !is_name(&args.app_id) {
        flag(
            "app-id",
            format!("{:?} must be letters, digits, '-' or '_'", args.app_id),
        );
    }
    if !is_name(&args.namespace) {
        flag(
            "namespace",
            format!("{:?} must be letters, digits, '-' or '_'", args.namespace),
        );
    }
    if outrider_certs::SpiffeId::new(&args.trust_domain, "default", "x").is_err() {
        flag(
            "trust-domain",
            format!(
                "{:?} must be lower-case letters, digits, '.', '-' or '_'",
                args.trust_domain
            ),
        );
    }
    if !["trace", "debug", "info", "warn", "error"]
        .contains(&args.log_level.to_ascii_lowercase().as_str())
    {
        flag(
            "log-level",
            format!(
                "{:?} is not one of debug, info, warn, error",
                args.log_level
            ),
        );
    }
    if !args.app_protocol.eq_ignore_ascii_case("http") {
        flag(
            "app-protocol",
            format!("{:?} is not available; use http", args.app_protocol),
        );
    }
    if args.app_port == Some(0) {
        flag("app-port", "0 is not a port an app can listen on".into());
    }
    let ports = [
        ("dapr-http-port", args.dapr_http_port),
        ("mesh-port", args.listen().mesh.port()),
        ("metrics-port", args.metrics_port),
    ];
    for (i, (a, pa)) in ports.iter().enumerate() {
        for (b, pb) in &ports[i + 1..] {
            if pa == pb && *pa != 0 {
                flag(b, format!("{pb} is already taken by --{a}"));
            }
        }
    }
    if let (Some(app), true) = (args.app_port, args.app_channel_address == "127.0.0.1") {
        for (name, p) in ports {
            if p == app {
                flag("app-port", format!("{app} is also --{name}"));
            }
        }
    }
    let identity = match (&args.trust_bundle, &args.cert_chain, &args.cert_key) {
        (None, None, None) => match args
            .ca_dir
            .clone()
            .or_else(|| env.home.as_ref().map(|h| h.join(".outrider/ca")))
        {
            Some(dir) => Some(IdentitySource::DevCa { dir }),
            None => {
                flag("ca-dir", "not given and $HOME is not set".into());
                None
            }
        },
        (Some(b), Some(c), Some(k)) => {
            for (name, p) in [("trust-bundle", b), ("cert-chain", c), ("cert-key", k)] {
                if !p.is_file() {
                    flag(name, format!("{} is not a readable file", p.display()));
                }
            }
            Some(IdentitySource::Files {
                bundle: b.clone(),
                chain: c.clone(),
                key: k.clone(),
            })
        }
        _ => {
            flag(
                "trust-bundle",
                "--trust-bundle, --cert-chain and --cert-key go together".into(),
            );
            None
        }
    };
    let registry_dir = args
        .registry_dir
        .clone()
        .or_else(|| env.home.as_ref().map(|h| h.join(".outrider/registry")));
    if registry_dir.is_none() {
        flag("registry-dir", "not given and $HOME is not set".into());
    }

    let mut cfg = ConfigFile::default();
    if let Some(path) = &args.config {
        match read_configuration(path) {
            Ok(c) => cfg = c,
            Err(p) => problems.extend(p),
        }
    }
    let resolver = match cfg.spec.name_resolution.validate(&args.namespace) {
        Ok(r) => Some(r),
        Err(errs) => {
            let file = args.config.as_deref().map(display).unwrap_or_default();
            problems.extend(errs.into_iter().map(|e| Problem {
                at: format!("{file}: {}", e.field),
                message: e.message,
            }));
            None
        }
    };
    if let Some(Resolution {
        resolver: ResolverConfig::Mdns(_),
        ..
    }) = &resolver
    {
        for (flag, value, max) in [
            ("app-id", &args.app_id, outrider_discovery::mdns::MAX_APP_ID),
            (
                "namespace",
                &args.namespace,
                outrider_discovery::mdns::MAX_NAMESPACE,
            ),
        ] {
            if value.len() > max {
                problems.push(Problem {
                    at: format!("--{flag}"),
                    message: format!(
                        "{value:?} is {} bytes; the mdns resolver announces at most {max}",
                        value.len()
                    ),
                });
            }
        }
    }
    let secret_scopes = match SecretScopes::new(std::mem::take(&mut cfg.spec.secrets.scopes)) {
        Ok(s) => s,
        Err(errs) => {
            let file = args.config.as_deref().map(display).unwrap_or_default();
            problems.extend(errs.into_iter().map(|e| Problem {
                at: format!("{file}: {}", e.field),
                message: e.message,
            }));
            SecretScopes::default()
        }
    };
    let config_acl = match cfg.spec.access_control.take() {
        Some(v) => {
            let file = args.config.as_deref().map(display).unwrap_or_default();
            AccessControlSpec::parse(&v, &file)
                .map_err(|errs| {
                    problems.extend(errs.into_iter().map(|e| Problem {
                        at: format!("{file}: {}", e.field),
                        message: e.message,
                    }));
                })
                .ok()
        }
        None => None,
    };
    let api_access = match cfg.spec.api.take() {
        Some(v) => ApiAccess::parse(&v).unwrap_or_else(|errs| {
            let file = args.config.as_deref().map(display).unwrap_or_default();
            problems.extend(errs.into_iter().map(|e| Problem {
                at: format!("{file}: {}", e.field),
                message: e.message,
            }));
            ApiAccess::default()
        }),
        None => ApiAccess::default(),
    };
    if let Some(p) = args.policies_path.as_deref().filter(|p| !p.is_dir()) {
        problems.push(Problem {
            at: "--policies-path".into(),
            message: format!("{} is not a directory", p.display()),
        });
    }
    let policy_sources = Sources {
        config: config_acl,
        root: args.policies_path.clone(),
        namespace: args.namespace.clone(),
    };
    let access_control = policy_sources.load().unwrap_or_else(|errs| {
        problems.extend(errs.into_iter().map(|e| Problem {
            at: e.field,
            message: e.message,
        }));
        AccessControl::open()
    });
    let tracing = {
        // The OTEL_EXPORTER_OTLP_* environment fills in a collector the file does not name.
        let t = cfg.spec.tracing.take().unwrap_or_default();
        let file = args
            .config
            .as_deref()
            .map(display)
            .unwrap_or_else(|| "the environment".to_owned());
        crate::telemetry::TracingConfig::parse(&t, &env.otel).unwrap_or_else(|errs| {
            problems.extend(errs.into_iter().map(|(field, message)| Problem {
                at: format!("{file}: {field}"),
                message,
            }));
            None
        })
    };
    let workload_cert_ttl = match cfg.spec.mtls.workload_cert_ttl.as_deref() {
        None | Some("") => DEFAULT_CERT_TTL,
        Some(v) => match parse_duration(v) {
            Some(d) if d >= Duration::from_secs(1) && d <= MAX_CERT_TTL => d,
            _ => {
                let file = args.config.as_deref().map(display).unwrap_or_default();
                problems.push(Problem {
                    at: format!("{file}: spec.mtls.workloadCertTTL"),
                    message: format!("{v:?} is not a duration from 1s to 8784h (e.g. 24h, 90m)"),
                });
                DEFAULT_CERT_TTL
            }
        },
    };

    let mut components = Vec::new();
    let mut subscriptions = Vec::new();
    let mut resiliency = Vec::new();
    for dir in &args.resources_path {
        let mut found = Found {
            components: &mut components,
            subs: &mut subscriptions,
            resiliency: &mut resiliency,
        };
        load_resources(dir, &args.app_id, &mut found, &mut problems);
    }
    if args.resources_path.is_empty() {
        components = default_components();
    }
    if !problems.is_empty() {
        return Err(Problems(problems));
    }
    let resolution = resolver.expect("no problems means a resolver");
    Ok(Settings {
        app_id: args.app_id.clone(),
        namespace: args.namespace.clone(),
        trust_domain: args.trust_domain.clone(),
        app_port: args.app_port,
        app_channel_address: args.app_channel_address.clone(),
        listen: args.listen(),
        limits: args.limits(env.fd_limit),
        admin_status_remote: args.admin_status_remote,
        max_body_size: args.max_body_size,
        grace: args.grace(),
        identity: identity.expect("no problems means an identity source"),
        workload_cert_ttl,
        registry_dir: registry_dir.expect("no problems means a registry dir"),
        resolver: resolution.resolver,
        balancing: resolution.balancing,
        components,
        subscriptions,
        resiliency,
        secret_scopes,
        policy_sources,
        access_control,
        api_access,
        tracing,
        access_log: AccessLogConfig {
            enabled: args
                .enable_api_logging
                .unwrap_or(cfg.spec.logging.api_logging.enabled),
            obfuscate_urls: cfg.spec.logging.api_logging.obfuscate_urls,
            omit_health_checks: cfg.spec.logging.api_logging.omit_health_checks,
        },
        data_dir: args.data_dir.clone(),
        api_token: env.api_token.clone(),
        app_token: env.app_token.clone(),
        ca_file: env.ca_file.clone(),
        command: args.command.clone(),
    })
}

fn display(p: &Path) -> String {
    p.display().to_string()
}

/// The parts of a `Configuration` this build reads.
#[derive(Debug, Default, Deserialize)]
struct ConfigFile {
    #[serde(default)]
    kind: String,
    #[serde(default)]
    spec: ConfigSpec,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ConfigSpec {
    #[serde(default)]
    name_resolution: NameResolution,
    #[serde(default)]
    mtls: Mtls,
    #[serde(default)]
    secrets: SecretsSpec,
    /// Parsed by `policy`.
    #[serde(default)]
    access_control: Option<serde_json::Value>,
    /// Parsed by `policy`.
    #[serde(default)]
    api: Option<serde_json::Value>,
    #[serde(default)]
    logging: Logging,
    /// Parsed by `telemetry`.
    #[serde(default)]
    tracing: Option<serde_json::Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Logging {
    #[serde(default)]
    api_logging: ApiLogging,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ApiLogging {
    #[serde(default)]
    enabled: bool,
    // Dapr spells it with "URLs", which camelCase renaming would not produce.
    #[serde(default, rename = "obfuscateURLs")]
    obfuscate_urls: bool,
    #[serde(default)]
    omit_health_checks: bool,
}

#[derive(Debug, Default, Deserialize)]
struct SecretsSpec {
    #[serde(default)]
    scopes: Vec<SecretScope>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Mtls {
    // Dapr spells it with "TTL", which camelCase renaming would not produce.
    #[serde(default, rename = "workloadCertTTL")]
    workload_cert_ttl: Option<String>,
}

fn read_configuration(path: &Path) -> Result<ConfigFile, Vec<Problem>> {
    let at = display(path);
    let text = std::fs::read_to_string(path).map_err(|e| {
        vec![Problem {
            at: at.clone(),
            message: e.to_string(),
        }]
    })?;
    let cfg: ConfigFile = serde_saphyr::from_str(&text).map_err(|e| {
        vec![Problem {
            at: at.clone(),
            message: format!("not a valid Configuration: {e}"),
        }]
    })?;
    if !cfg.kind.is_empty() && cfg.kind != "Configuration" {
        return Err(vec![Problem {
            at: format!("{at}: kind"),
            message: format!("{:?} is not Configuration", cfg.kind),
        }]);
    }
    Ok(cfg)
}

/// The `spec.accessControl` of a Configuration file, for `outrider policy check`.
pub(crate) fn access_control_of(path: &Path) -> Result<Option<AccessControlSpec>, Vec<Problem>> {
    let at = display(path);
    match read_configuration(path)?.spec.access_control {
        Some(v) => AccessControlSpec::parse(&v, &at).map(Some).map_err(|errs| {
            errs.into_iter()
                .map(|e| Problem {
                    at: format!("{at}: {}", e.field),
                    message: e.message,
                })
                .collect()
        }),
        None => Ok(None),
    }
}

/// What the resource directories hold for this app.
struct Found<'a> {
    components: &'a mut Vec<LoadedComponent>,
    subs: &'a mut Vec<Declared>,
    resiliency: &'a mut Vec<Resiliency>,
}

/// Loads every `*.yaml`/`*.yml` directly inside `dir` (not recursively), like daprd.
fn load_resources(dir: &Path, app_id: &str, found: &mut Found<'_>, problems: &mut Vec<Problem>) {
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) => {
            problems.push(Problem {
                at: "--resources-path".into(),
                message: format!("{}: {e}", dir.display()),
            });
            return;
        }
    };
    let mut files: Vec<PathBuf> = rd
        .flatten()
        .map(|d| d.path())
        .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    files.sort();
    for path in files {
        let at = display(&path);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) => {
                problems.push(Problem {
                    at,
                    message: e.to_string(),
                });
                continue;
            }
        };
        let docs: Vec<serde_json::Value> = match serde_saphyr::from_multiple(&text) {
            Ok(d) => d,
            Err(e) => {
                problems.push(Problem {
                    at,
                    message: format!("not valid YAML: {e}"),
                });
                continue;
            }
        };
        for (i, doc) in docs.into_iter().enumerate() {
            let at = if i == 0 {
                at.clone()
            } else {
                format!("{at} (document {})", i + 1)
            };
            match doc.get("kind").and_then(|k| k.as_str()) {
                Some("Component") => load_component(doc, &at, app_id, found.components, problems),
                Some("Subscription") => load_subscription(doc, &at, app_id, found.subs, problems),
                Some("Resiliency") => match Resiliency::parse(&doc) {
                    Ok(r) if r.applies_to(app_id) => found.resiliency.push(r),
                    Ok(_) => {}
                    Err(errs) => problems.extend(errs.into_iter().map(|e| Problem {
                        at: format!("{at}: {}", e.field),
                        message: e.message,
                    })),
                },
                Some(kind @ ("HTTPEndpoint" | "Configuration")) => {
                    tracing::warn!(file = %at, kind, "this resource kind is not supported yet; the document is ignored");
                }
                // Documents of other kinds are skipped, as daprd does.
                _ => {}
            }
        }
    }
}

fn load_component(
    doc: serde_json::Value,
    at: &str,
    app_id: &str,
    out: &mut Vec<LoadedComponent>,
    problems: &mut Vec<Problem>,
) {
    let c: Component = match serde_json::from_value(doc) {
        Ok(c) => c,
        Err(e) => {
            problems.push(Problem {
                at: at.to_owned(),
                message: format!("not a valid Component: {e}"),
            });
            return;
        }
    };
    if !c.scopes.is_empty() && !c.scopes.iter().any(|s| s == app_id) {
        return;
    }
    let errs = c.validate();
    if errs.is_empty() {
        if out
            .iter()
            .any(|o| o.component.metadata.name == c.metadata.name)
        {
            problems.push(Problem {
                at: format!("{at}: metadata.name"),
                message: format!("{:?} is defined twice", c.metadata.name),
            });
            return;
        }
        out.push(LoadedComponent {
            at: at.to_owned(),
            component: c,
        });
    } else if c.spec.ignore_errors {
        for e in errs {
            tracing::warn!(file = %at, field = %e.field, "{}; ignored (ignoreErrors)", e.message);
        }
    } else {
        problems.extend(errs.into_iter().map(|e| Problem {
            at: format!("{at}: {}", e.field),
            message: e.message,
        }));
    }
}

fn load_subscription(
    doc: serde_json::Value,
    at: &str,
    app_id: &str,
    out: &mut Vec<Declared>,
    problems: &mut Vec<Problem>,
) {
    let s: SubscriptionDoc = match serde_json::from_value(doc) {
        Ok(s) => s,
        Err(e) => {
            problems.push(Problem {
                at: at.to_owned(),
                message: format!("not a valid Subscription: {e}"),
            });
            return;
        }
    };
    if !s.scopes.is_empty() && !s.scopes.iter().any(|a| a == app_id) {
        return;
    }
    match s.validate() {
        Ok(d) => out.push(d),
        Err(errs) => problems.extend(errs.into_iter().map(|e| Problem {
            at: format!("{at}: {}", e.field),
            message: e.message,
        })),
    }
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
