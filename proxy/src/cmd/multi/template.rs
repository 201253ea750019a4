//! Dapr's multi-app run template (`dapr.yaml`): `version`, `common` and `apps`, read as the dapr
//! CLI reads it — `common` fills what an app leaves out (`env` merged, the app's value winning),
//! `appDirPath` and the paths of `common` are relative to the file's directory, the other paths
//! of an app to its `appDirPath`, `~` is the home directory — and turned into the flags of one
//! `outrider run` per app. A key Outrider has no use for is named in a warning; nothing is
//! dropped in silence.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;

use crate::config::Problem;
use resolve::resolve;

mod resolve;

/// What the template says of one app, resolved.
#[derive(Debug)]
pub(crate) struct AppRun {
    pub(crate) app_id: String,
    /// Where the app is started, and its sidecar's data lives.
    pub(crate) dir: PathBuf,
    /// The flags of its `outrider run`, the app's command after `--`.
    pub(crate) argv: Vec<String>,
    /// Added to the app's environment.
    pub(crate) env: Vec<(String, String)>,
    /// Where the app's output goes.
    pub(crate) app_log: LogDestination,
}

/// `appLogDestination`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LogDestination {
    Console,
    File,
    FileAndConsole,
}

/// The template's apps, and the process-wide log level (the most verbose asked for, else
/// `warn`: the apps' output is what a multi-app run shows).
#[derive(Debug)]
pub(crate) struct Template {
    pub(crate) apps: Vec<AppRun>,
    pub(crate) log_level: String,
}

/// Keys of `common` and of each app (dapr CLI's `SharedRunConfig`).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Shared {
    config_file_path: Option<String>,
    app_protocol: Option<String>,
    api_listen_addresses: Option<String>,
    enable_profiling: Option<bool>,
    log_level: Option<String>,
    app_max_concurrency: Option<i64>,
    placement_host_address: Option<String>,
    resources_path: Option<String>,
    #[serde(default)]
    resources_paths: Vec<String>,
    #[serde(rename = "appSSL")]
    app_ssl: Option<bool>,
    max_body_size: Option<String>,
    read_buffer_size: Option<String>,
    enable_app_health_check: Option<bool>,
    app_health_check_path: Option<String>,
    app_health_probe_interval: Option<i64>,
    app_health_probe_timeout: Option<i64>,
    app_health_threshold: Option<i64>,
    enable_api_logging: Option<bool>,
    runtime_path: Option<String>,
    #[serde(default)]
    env: BTreeMap<String, Scalar>,
    daprd_log_destination: Option<String>,
    app_log_destination: Option<String>,
    scheduler_host_address: Option<String>,
    /// Anything else, reported.
    #[serde(flatten)]
    other: BTreeMap<String, Value>,
}

/// Keys of an app only.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct App {
    #[serde(rename = "appID")]
    app_id: Option<String>,
    app_dir_path: Option<String>,
    app_channel_address: Option<String>,
    app_port: Option<i64>,
    #[serde(rename = "daprHTTPPort")]
    dapr_http_port: Option<i64>,
    #[serde(rename = "daprGRPCPort")]
    dapr_grpc_port: Option<i64>,
    profile_port: Option<i64>,
    #[serde(default)]
    command: Vec<String>,
    metrics_port: Option<i64>,
    unix_domain_socket: Option<String>,
    #[serde(rename = "daprInternalGRPCPort")]
    dapr_internal_grpc_port: Option<i64>,
    #[serde(flatten)]
    shared: Shared,
}

/// A YAML scalar as an environment value: `8080` and `true` are written as they read.
#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
enum Scalar {
    Text(String),
    Number(serde_json::Number),
    Bool(bool),
}

impl Scalar {
    fn text(&self) -> String {
        match self {
            Scalar::Text(s) => s.clone(),
            Scalar::Number(n) => n.to_string(),
            Scalar::Bool(b) => b.to_string(),
        }
    }
}

#[derive(Debug, Deserialize)]
struct File {
    version: Option<i64>,
    /// Known, and of no use here.
    #[serde(rename = "name")]
    _name: Option<String>,
    #[serde(default)]
    common: Shared,
    #[serde(default)]
    apps: Vec<App>,
    #[serde(flatten)]
    other: BTreeMap<String, Value>,
}

/// Keys that configure a Kubernetes run of the template (`dapr run -k`).
const KUBERNETES_ONLY: &[&str] = &[
    "containerImage",
    "containerImagePullPolicy",
    "createService",
];

/// `-f FILE` or `-f DIR` (its `dapr.yaml`).
pub(crate) fn locate(given: &Path) -> Result<PathBuf, String> {
    let file = if given.is_dir() {
        given.join("dapr.yaml")
    } else {
        given.to_owned()
    };
    if !file.is_file() {
        return Err(format!("{}: no such run file", file.display()));
    }
    Ok(file)
}

/// Reads the template at `file`; `home` resolves `~`. Problems name the file and field; the
/// warnings are pushed to `warnings`.
pub(crate) fn read(
    file: &Path,
    home: Option<&Path>,
    warnings: &mut Vec<Problem>,
) -> Result<Template, Vec<Problem>> {
    let at = file.display().to_string();
    let problem = |field: &str, message: String| Problem {
        at: if field.is_empty() {
            at.clone()
        } else {
            format!("{at}: {field}")
        },
        message,
    };
    let text = std::fs::read_to_string(file).map_err(|e| vec![problem("", e.to_string())])?;
    let doc: Value = serde_saphyr::from_str(&text)
        .map_err(|e| vec![problem("", format!("not valid YAML: {e}"))])?;
    let parsed: File = serde_json::from_value(doc)
        .map_err(|e| vec![problem("", format!("not a run template: {e}"))])?;
    let base = file.parent().unwrap_or(Path::new(".")).to_owned();
    let mut problems = Vec::new();
    if parsed.version.is_none_or(|v| v < 1) {
        problems.push(problem("version", "required: 1".into()));
    }
    if parsed.apps.is_empty() {
        problems.push(problem("apps", "no apps to run".into()));
    }
    for key in parsed.other.keys() {
        warnings.push(problem(key, "not a key of a run template; ignored".into()));
    }
    unknown_keys(&parsed.common.other, "common", &problem, warnings);
    let cx = Context {
        base: &base,
        home,
        common: &parsed.common,
    };
    let mut apps = Vec::new();
    let mut levels = Vec::new();
    for (i, app) in parsed.apps.into_iter().enumerate() {
        let field = format!("apps[{i}]");
        unknown_keys(&app.shared.other, &field, &problem, warnings);
        levels.extend(app.shared.log_level.clone());
        match resolve(app, &field, &cx, warnings) {
            Ok(a) => apps.push(a),
            Err(errs) => problems.extend(errs.into_iter().map(|(f, m)| problem(&f, m))),
        }
    }
    levels.extend(cx.common.log_level.clone());
    if problems.is_empty() {
        Ok(Template {
            apps,
            log_level: most_verbose(&levels),
        })
    } else {
        Err(problems)
    }
}

fn unknown_keys(
    other: &BTreeMap<String, Value>,
    field: &str,
    problem: &impl Fn(&str, String) -> Problem,
    warnings: &mut Vec<Problem>,
) {
    for key in other.keys() {
        let why = if KUBERNETES_ONLY.contains(&key.as_str()) {
            "only for a Kubernetes run (dapr run -k); ignored"
        } else {
            "not a key of a run template; ignored"
        };
        warnings.push(problem(&format!("{field}.{key}"), why.into()));
    }
}

/// The most verbose of the levels asked for, `warn` when none is.
fn most_verbose(levels: &[String]) -> String {
    const ORDER: [&str; 6] = ["trace", "debug", "info", "warn", "error", "fatal"];
    ORDER
        .iter()
        .find(|l| levels.iter().any(|g| g.eq_ignore_ascii_case(l)))
        .map_or_else(|| "warn".to_owned(), |l| (*l).to_owned())
}

/// What every app's resolution needs.
struct Context<'a> {
    base: &'a Path,
    home: Option<&'a Path>,
    common: &'a Shared,
}

impl Context<'_> {
    /// `p` with `~` expanded, relative to `dir`.
    fn path(&self, dir: &Path, p: &str) -> PathBuf {
        let p = match (p.strip_prefix("~/").or((p == "~").then_some("")), self.home) {
            (Some(rest), Some(home)) => home.join(rest),
            _ => PathBuf::from(p),
        };
        if p.is_absolute() { p } else { dir.join(p) }
    }
}

#[cfg(test)]
mod tests;
