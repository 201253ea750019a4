//! One app of the template, resolved: its directory and id, the flags of its `outrider run`, its
//! environment, and where its output goes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::{App, AppRun, Context, LogDestination, Shared};
use crate::config::Problem;

/// (field, problem) pairs, placed in the file by the caller.
pub(super) type FieldErrors = Vec<(String, String)>;

/// The app's value of a shared key, else `common`'s.
macro_rules! either {
    ($app:expr, $common:expr, $key:ident) => {
        $app.$key.clone().or_else(|| $common.$key.clone())
    };
}

/// One app, as `apps[i]` (`field`) of the template says it.
pub(super) fn resolve(
    app: App,
    field: &str,
    cx: &Context<'_>,
    warnings: &mut Vec<Problem>,
) -> Result<AppRun, FieldErrors> {
    let mut errs: FieldErrors = Vec::new();
    let Some(dir) = app.app_dir_path.as_deref().filter(|d| !d.trim().is_empty()) else {
        return Err(vec![(format!("{field}.appDirPath"), "required".into())]);
    };
    let dir = cx.path(cx.base, dir);
    if !dir.is_dir() {
        errs.push((
            format!("{field}.appDirPath"),
            format!("{} is not a directory", dir.display()),
        ));
    }
    let app_id = app
        .app_id
        .clone()
        .filter(|a| !a.is_empty())
        .unwrap_or_else(|| {
            dir.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        });
    let mut argv = flags(&app, &app_id, cx.common);
    let paths = Paths::of(&dir, field, &app.shared, cx, &mut errs);
    for r in paths.resources {
        argv.extend(["--resources-path".into(), r.display().to_string()]);
    }
    if let Some(config) = paths.config {
        argv.extend(["--config".into(), config.display().to_string()]);
    }
    argv.extend([
        "--data-dir".into(),
        dir.join(".outrider").display().to_string(),
    ]);
    let app_log = destinations(field, &app.shared, cx.common, &mut errs, warnings);
    let (s, c) = (&app.shared, cx.common);
    if let Some(rt) = either!(s, c, runtime_path) {
        warnings.push(Problem {
            at: format!("{field}.runtimePath"),
            message: format!("{rt:?}: the sidecars run inside this outrider process; ignored"),
        });
    }
    if app.command.is_empty() {
        warnings.push(Problem {
            at: format!("{field}.command"),
            message: format!("no command: only the sidecar of {app_id} runs"),
        });
    } else {
        argv.push("--".into());
        argv.extend(app.command.iter().cloned());
    }
    let mut env: BTreeMap<String, String> =
        c.env.iter().map(|(k, v)| (k.clone(), v.text())).collect();
    env.extend(s.env.iter().map(|(k, v)| (k.clone(), v.text())));
    if !errs.is_empty() {
        return Err(errs);
    }
    Ok(AppRun {
        app_id,
        dir,
        argv,
        env: env.into_iter().collect(),
        app_log,
    })
}

/// The daprd flags the app's keys (and `common`'s) stand for. Ports not given are chosen when
/// the sidecar binds (0): the sidecars of a run share the host.
fn flags(app: &App, app_id: &str, c: &Shared) -> Vec<String> {
    let s = &app.shared;
    let mut argv: Vec<String> = vec!["--app-id".into(), app_id.to_owned()];
    let port = |p: Option<i64>| p.filter(|p| *p > 0).unwrap_or(0).to_string();
    let mut numbers = vec![
        ("dapr-http-port", Some(port(app.dapr_http_port))),
        ("dapr-grpc-port", Some(port(app.dapr_grpc_port))),
        ("metrics-port", Some(port(app.metrics_port))),
        (
            "dapr-internal-grpc-port",
            Some(port(app.dapr_internal_grpc_port)),
        ),
        (
            "app-port",
            app.app_port.filter(|p| *p > 0).map(|p| p.to_string()),
        ),
        ("profile-port", app.profile_port.map(|p| p.to_string())),
    ];
    for (name, v) in [
        ("app-max-concurrency", either!(s, c, app_max_concurrency)),
        (
            "app-health-probe-interval",
            either!(s, c, app_health_probe_interval),
        ),
        (
            "app-health-probe-timeout",
            either!(s, c, app_health_probe_timeout),
        ),
        ("app-health-threshold", either!(s, c, app_health_threshold)),
    ] {
        numbers.push((name, v.map(|n| n.to_string())));
    }
    let texts = [
        ("app-channel-address", app.app_channel_address.clone()),
        ("unix-domain-socket", app.unix_domain_socket.clone()),
        ("app-protocol", either!(s, c, app_protocol)),
        ("dapr-listen-addresses", either!(s, c, api_listen_addresses)),
        (
            "placement-host-address",
            either!(s, c, placement_host_address),
        ),
        (
            "scheduler-host-address",
            either!(s, c, scheduler_host_address),
        ),
        ("max-body-size", either!(s, c, max_body_size)),
        ("read-buffer-size", either!(s, c, read_buffer_size)),
        (
            "app-health-check-path",
            either!(s, c, app_health_check_path),
        ),
    ];
    for (name, v) in numbers.into_iter().chain(texts) {
        if let Some(v) = v.filter(|v| !v.is_empty()) {
            argv.extend([format!("--{name}"), v]);
        }
    }
    for (name, v) in [
        ("enable-profiling", either!(s, c, enable_profiling)),
        ("app-ssl", either!(s, c, app_ssl)),
        (
            "enable-app-health-check",
            either!(s, c, enable_app_health_check),
        ),
        ("enable-api-logging", either!(s, c, enable_api_logging)),
    ] {
        if let Some(v) = v {
            argv.push(format!("--{name}={v}"));
        }
    }
    argv
}

/// `appLogDestination` (default `fileAndConsole`); `daprdLogDestination` other than `console`
/// is noted: the sidecars of a run share this process's standard error.
fn destinations(
    field: &str,
    s: &Shared,
    c: &Shared,
    errs: &mut FieldErrors,
    warnings: &mut Vec<Problem>,
) -> LogDestination {
    let mut parse = |key: &str, v: Option<String>, default| match v.as_deref() {
        None => Some(default),
        Some("console") => Some(LogDestination::Console),
        Some("file") => Some(LogDestination::File),
        Some("fileAndConsole") => Some(LogDestination::FileAndConsole),
        Some(other) => {
            errs.push((
                format!("{field}.{key}"),
                format!("{other:?} is not console, file or fileAndConsole"),
            ));
            None
        }
    };
    let app = parse(
        "appLogDestination",
        either!(s, c, app_log_destination),
        LogDestination::FileAndConsole,
    );
    let sidecar = parse(
        "daprdLogDestination",
        either!(s, c, daprd_log_destination),
        LogDestination::Console,
    );
    if matches!(
        sidecar,
        Some(LogDestination::File | LogDestination::FileAndConsole)
    ) {
        warnings.push(Problem {
            at: format!("{field}.daprdLogDestination"),
            message: "the sidecars of a multi-app run log to this process's standard error".into(),
        });
    }
    app.unwrap_or(LogDestination::FileAndConsole)
}

/// An app's resources directories and Configuration.
struct Paths {
    resources: Vec<PathBuf>,
    config: Option<PathBuf>,
}

impl Paths {
    /// As the dapr CLI picks them: the app's own, else `<appDirPath>/.dapr/resources` (and
    /// `.dapr/config.yaml`) when there, else `common`'s; none means the built-in defaults.
    fn of(dir: &Path, field: &str, s: &Shared, cx: &Context<'_>, errs: &mut FieldErrors) -> Self {
        let listed = |sh: &Shared, at: &Path, key: &str, errs: &mut FieldErrors| {
            let given = sh.resources_paths.iter().chain(sh.resources_path.as_ref());
            let mut out = Vec::new();
            for (i, p) in given.enumerate() {
                let p = cx.path(at, p);
                if !p.is_dir() {
                    errs.push((
                        format!("{key}.resourcesPaths[{i}]"),
                        format!("{} is not a directory", p.display()),
                    ));
                }
                out.push(p);
            }
            out
        };
        let own = listed(s, dir, field, errs);
        let resources = if !own.is_empty() {
            own
        } else if dir.join(".dapr/resources").is_dir() {
            vec![dir.join(".dapr/resources")]
        } else {
            listed(cx.common, cx.base, "common", errs)
        };
        let config = match (&s.config_file_path, &cx.common.config_file_path) {
            (Some(p), _) => Some((cx.path(dir, p), format!("{field}.configFilePath"))),
            (None, _) if dir.join(".dapr/config.yaml").is_file() => {
                Some((dir.join(".dapr/config.yaml"), String::new()))
            }
            (None, Some(p)) => Some((cx.path(cx.base, p), "common.configFilePath".into())),
            (None, None) => None,
        };
        let config = config.map(|(p, key)| {
            if !key.is_empty() && !p.is_file() {
                errs.push((key, format!("{} is not a file", p.display())));
            }
            p
        });
        Self { resources, config }
    }
}
