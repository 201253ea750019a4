//! The `--config` file: a Dapr `Configuration` document. Each part is handed to the crate that
//! owns it (`nameResolution` to `discovery`, `accessControl` and `api` to `policy`, `tracing` to
//! `telemetry`), and their problems come back naming the file and field.

use std::path::Path;
use std::time::Duration;

use outrider_blocks::secrets::{SecretScope, SecretScopes};
use outrider_discovery::{NameResolution, Resolution, ResolverConfig};
use outrider_filters::access_log::AccessLogConfig;
use outrider_policy::api::ApiAccess;
use outrider_policy::files::Sources;
use outrider_policy::{AccessControl, AccessControlSpec};
use serde::Deserialize;

use super::{FieldProblem, Problem, display, parse_duration, within};
use crate::cli::{Env, RunArgs};
use crate::mesh::outbound::transport::MeshTransport;
use crate::mesh::transparent::MtlsMode;
use crate::telemetry::TracingConfig;

/// Default workload certificate lifetime (Dapr's `workloadCertTTL`).
pub(super) const DEFAULT_CERT_TTL: Duration = Duration::from_secs(24 * 3600);
/// Longest workload certificate lifetime accepted: a year.
const MAX_CERT_TTL: Duration = Duration::from_secs(366 * 24 * 3600);

/// What the Configuration (or its absence) decides.
pub(super) struct FromConfiguration {
    pub(super) resolution: Resolution,
    pub(super) secret_scopes: SecretScopes,
    pub(super) policy_sources: Sources,
    pub(super) access_control: AccessControl,
    pub(super) api_access: ApiAccess,
    pub(super) tracing: Option<TracingConfig>,
    pub(super) workload_cert_ttl: Duration,
    pub(super) access_log: AccessLogConfig,
    pub(super) mtls_mode: MtlsMode,
    /// `--mesh-transport`, else `spec.meshTransport`.
    pub(super) mesh_transport: MeshTransport,
    /// `spec.components.deny`: component types (`state.redis`, or `state.redis/v1`) that may
    /// not be loaded.
    pub(super) denied_components: Vec<String>,
    /// `spec.httpPipeline.handlers`, in order.
    pub(super) pipeline: Vec<HandlerSpec>,
    /// `spec.appHttpPipeline.handlers`, in order.
    pub(super) app_pipeline: Vec<HandlerSpec>,
}

/// Reads `--config` (if given) and validates every part; `None` when name resolution is
/// unusable (its problems were pushed). Other parts fall back to their defaults after
/// pushing their problems, so that every problem is reported at once.
pub(super) fn load(
    args: &RunArgs,
    env: &Env,
    problems: &mut Vec<Problem>,
    warnings: &mut Vec<Problem>,
) -> Option<FromConfiguration> {
    let mut cfg = ConfigFile::default();
    if let Some(path) = &args.config
        && let Some(c) = read_configuration(path, problems, warnings)
    {
        cfg = c;
    }
    let file = args.config.as_deref().map(display).unwrap_or_default();
    let resolution = name_resolution(&cfg, args, &file, problems);
    let secret_scopes = SecretScopes::new(std::mem::take(&mut cfg.spec.secrets.scopes))
        .unwrap_or_else(|errs| {
            problems.extend(within(&file, errs));
            SecretScopes::default()
        });
    let (policy_sources, access_control, api_access) = access(&mut cfg, args, &file, problems);
    let tracing = tracing(&mut cfg, args, env, problems);
    let workload_cert_ttl = cert_ttl(&cfg, &file, problems);
    let mtls_mode = mtls_mode(&cfg, &file, problems);
    let mesh_transport = mesh_transport(&cfg, args, &file, problems);
    let logging = &cfg.spec.logging.api_logging;
    let access_log = AccessLogConfig {
        enabled: args.enable_api_logging.unwrap_or(logging.enabled),
        obfuscate_urls: logging.obfuscate_urls,
        omit_health_checks: logging.omit_health_checks,
    };
    Some(FromConfiguration {
        resolution: resolution?,
        secret_scopes,
        policy_sources,
        access_control,
        api_access,
        tracing,
        workload_cert_ttl,
        access_log,
        mtls_mode,
        mesh_transport,
        denied_components: std::mem::take(&mut cfg.spec.components.deny),
        pipeline: std::mem::take(&mut cfg.spec.http_pipeline.handlers),
        app_pipeline: std::mem::take(&mut cfg.spec.app_http_pipeline.handlers),
    })
}

/// `--mesh-transport`, else `spec.meshTransport` (an Outrider extension), else `auto`.
fn mesh_transport(
    cfg: &ConfigFile,
    args: &RunArgs,
    file: &str,
    problems: &mut Vec<Problem>,
) -> MeshTransport {
    let (at, value) = match (&args.mesh_transport, &cfg.spec.mesh_transport) {
        (Some(v), _) => ("--mesh-transport".to_owned(), v),
        (None, Some(v)) => (format!("{file}: spec.meshTransport"), v),
        (None, None) => return MeshTransport::default(),
    };
    value.parse().unwrap_or_else(|message| {
        problems.push(Problem { at, message });
        MeshTransport::default()
    })
}

/// `spec.mtls.mode` (an Outrider extension): whether plain traffic from outside the mesh may
/// reach the app through interception.
fn mtls_mode(cfg: &ConfigFile, file: &str, problems: &mut Vec<Problem>) -> MtlsMode {
    match cfg.spec.mtls.mode.as_deref().map(str::trim) {
        None | Some("") => MtlsMode::default(),
        Some(m) if m.eq_ignore_ascii_case("permissive") => MtlsMode::Permissive,
        Some(m) if m.eq_ignore_ascii_case("strict") => MtlsMode::Strict,
        Some(m) => {
            problems.push(Problem {
                at: format!("{file}: spec.mtls.mode"),
                message: format!("{m:?} is neither permissive nor strict"),
            });
            MtlsMode::default()
        }
    }
}

/// `spec.nameResolution`, and the lengths the mDNS resolver can announce.
fn name_resolution(
    cfg: &ConfigFile,
    args: &RunArgs,
    file: &str,
    problems: &mut Vec<Problem>,
) -> Option<Resolution> {
    let mut named = cfg.spec.name_resolution.clone();
    if named.component.is_empty() && args.mode == "kubernetes" {
        named.component = "dns".into();
    }
    let resolution = match named.validate(&args.namespace) {
        Ok(r) => r,
        Err(errs) => {
            problems.extend(within(file, errs));
            return None;
        }
    };
    if let ResolverConfig::Mdns(_) = resolution.resolver {
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
    Some(resolution)
}

/// `spec.accessControl` with the policy files of `--policies-path`, and `spec.api`.
fn access(
    cfg: &mut ConfigFile,
    args: &RunArgs,
    file: &str,
    problems: &mut Vec<Problem>,
) -> (Sources, AccessControl, ApiAccess) {
    let config_acl = cfg.spec.access_control.take().and_then(|v| {
        AccessControlSpec::parse(&v, file)
            .map_err(|errs| problems.extend(within(file, errs)))
            .ok()
    });
    let api_access = match cfg.spec.api.take() {
        Some(v) => ApiAccess::parse(&v).unwrap_or_else(|errs| {
            problems.extend(within(file, errs));
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
    let sources = Sources {
        config: config_acl,
        root: args.policies_path.clone(),
        namespace: args.namespace.clone(),
    };
    let access_control = sources.load().unwrap_or_else(|errs| {
        problems.extend(errs.into_iter().map(|e| Problem {
            at: e.field,
            message: e.message,
        }));
        AccessControl::open()
    });
    (sources, access_control, api_access)
}

/// `spec.tracing`; the `OTEL_EXPORTER_OTLP_*` environment fills in a collector the file does
/// not name.
fn tracing(
    cfg: &mut ConfigFile,
    args: &RunArgs,
    env: &Env,
    problems: &mut Vec<Problem>,
) -> Option<TracingConfig> {
    let t = cfg.spec.tracing.take().unwrap_or_default();
    let file = args
        .config
        .as_deref()
        .map(display)
        .unwrap_or_else(|| "the environment".to_owned());
    TracingConfig::parse(&t, &env.otel).unwrap_or_else(|errs| {
        problems.extend(errs.into_iter().map(|(field, message)| Problem {
            at: format!("{file}: {field}"),
            message,
        }));
        None
    })
}

/// `spec.mtls.workloadCertTTL`.
fn cert_ttl(cfg: &ConfigFile, file: &str, problems: &mut Vec<Problem>) -> Duration {
    match cfg.spec.mtls.workload_cert_ttl.as_deref() {
        None | Some("") => DEFAULT_CERT_TTL,
        Some(v) => match parse_duration(v) {
            Some(d) if d >= Duration::from_secs(1) && d <= MAX_CERT_TTL => d,
            _ => {
                problems.push(Problem {
                    at: format!("{file}: spec.mtls.workloadCertTTL"),
                    message: format!("{v:?} is not a duration from 1s to 8784h (e.g. 24h, 90m)"),
                });
                DEFAULT_CERT_TTL
            }
        },
    }
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
    /// `auto`, `h2` or `h3` (an Outrider extension): see `MeshTransport`.
    #[serde(default)]
    mesh_transport: Option<String>,
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
    #[serde(default)]
    components: ComponentsSpec,
    #[serde(default)]
    http_pipeline: PipelineSpec,
    #[serde(default)]
    app_http_pipeline: PipelineSpec,
}

#[derive(Debug, Default, Deserialize)]
struct PipelineSpec {
    #[serde(default)]
    handlers: Vec<HandlerSpec>,
}

/// One handler of `spec.httpPipeline`: the middleware component it names.
#[derive(Clone, Debug, Default, Deserialize)]
pub(super) struct HandlerSpec {
    #[serde(default)]
    pub(super) name: String,
    #[serde(default, rename = "type")]
    pub(super) type_: String,
}

#[derive(Debug, Default, Deserialize)]
struct ComponentsSpec {
    #[serde(default)]
    deny: Vec<String>,
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
    /// `permissive` or `strict`: see [`MtlsMode`].
    #[serde(default)]
    mode: Option<String>,
}

/// Reads the Configuration at `path`; `None` when it cannot be read at all (the reason is in
/// `problems`). Fields it has that Outrider does not honour are reported as `fields` says.
fn read_configuration(
    path: &Path,
    problems: &mut Vec<Problem>,
    warnings: &mut Vec<Problem>,
) -> Option<ConfigFile> {
    let at = display(path);
    let mut fail = |message: String| {
        problems.push(Problem {
            at: at.clone(),
            message,
        });
        None
    };
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => return fail(e.to_string()),
    };
    let doc: serde_json::Value = match serde_saphyr::from_str(&text) {
        Ok(d) => d,
        Err(e) => return fail(format!("not a valid Configuration: {e}")),
    };
    let cfg: ConfigFile = match serde_json::from_value(doc.clone()) {
        Ok(c) => c,
        Err(e) => return fail(format!("not a valid Configuration: {e}")),
    };
    if !cfg.kind.is_empty() && cfg.kind != "Configuration" {
        problems.push(Problem {
            at: format!("{at}: kind"),
            message: format!("{:?} is not Configuration", cfg.kind),
        });
        return None;
    }
    super::fields::check("Configuration", &doc, &at, warnings);
    Some(cfg)
}

/// The `spec.accessControl` of a Configuration file, for `outrider policy check`.
pub(crate) fn access_control_of(path: &Path) -> Result<Option<AccessControlSpec>, Vec<Problem>> {
    let at = display(path);
    let mut problems = Vec::new();
    let cfg = read_configuration(path, &mut problems, &mut Vec::new());
    let Some(cfg) = cfg.filter(|_| problems.is_empty()) else {
        return Err(problems);
    };
    match cfg.spec.access_control {
        Some(v) => AccessControlSpec::parse(&v, &at)
            .map(Some)
            .map_err(|errs| within(&at, errs).collect()),
        None => Ok(None),
    }
}

impl FieldProblem for outrider_policy::Problem {
    fn parts(self) -> (String, String) {
        (self.field, self.message)
    }
}

impl FieldProblem for outrider_discovery::ConfigError {
    fn parts(self) -> (String, String) {
        (self.field, self.message)
    }
}
