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
mod flags;
mod resources;

pub(crate) use configuration::access_control_of;

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

/// Validates flags and loads files.
pub(crate) fn load(args: &RunArgs, env: &Env) -> Result<Settings, Problems> {
    let mut problems = Vec::new();
    let from_flags = flags::check(args, env, &mut problems);
    let configured = configuration::load(args, env, &mut problems);
    let resources = resources::load(args, &mut problems);
    match (from_flags, configured) {
        (Some(f), Some(c)) if problems.is_empty() => Ok(Settings {
            app_id: args.app_id.clone(),
            namespace: args.namespace.clone(),
            trust_domain: args.trust_domain.clone(),
            app_port: args.app_port,
            app_protocol: args.app_protocol(),
            app_channel_address: args.app_channel_address.clone(),
            listen: args.listen(),
            limits: args.limits(env.fd_limit),
            admin_status_remote: args.admin_status_remote,
            max_body_size: args.max_body_size,
            grace: args.grace(),
            identity: f.identity,
            workload_cert_ttl: c.workload_cert_ttl,
            registry_dir: f.registry_dir,
            resolver: c.resolution.resolver,
            balancing: c.resolution.balancing,
            components: resources.components,
            subscriptions: resources.subscriptions,
            resiliency: resources.resiliency,
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
        }),
        _ => Err(Problems(problems)),
    }
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
