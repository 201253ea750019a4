//! `outrider run -f FILE|DIR`: every app of a Dapr multi-app run template behind its own
//! sidecar, all in this process. Each app starts in its `appDirPath` with its sidecar's ports in
//! its environment; its output is shown line by line after `== APP - <id> ==` (coloured on a
//! terminal) and kept in `<appDirPath>/.dapr/logs/` as the template asks. The sidecars share
//! one in-memory broker per component name, so apps on the built-in `pubsub` reach each other
//! with nothing installed.
//!
//! Ctrl-C (or SIGTERM) stops every sidecar in order, each stopping its app. An app that exits
//! by itself stops only its own sidecar; the run ends when every app has, with status 0 if all
//! succeeded, else the first failure's status. A sidecar that cannot start stops the others and
//! the run exits 1.

pub(crate) mod template;

use std::path::Path;
use std::process::ExitCode;

use clap::Parser as _;
use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use crate::cli::{Cli, Command, Env, RunArgs};
use crate::config::{self, Problem, Settings};
use crate::run::child::{ChildSetup, Prefixed};
use template::{AppRun, LogDestination};

/// ANSI colours the apps' prefixes take in turn (bright blue, magenta, cyan, yellow, green).
const COLOURS: [&str; 5] = ["94", "95", "96", "93", "92"];

/// Runs the template at `given`; `log_level` is `--log-level` when given on the command line.
pub(crate) fn run(given: &Path, log_level: Option<&str>, json: bool) -> ExitCode {
    let env = Env::read();
    let mut warnings = Vec::new();
    let parsed = template::locate(given)
        .map_err(|message| {
            vec![Problem {
                at: "-f".into(),
                message,
            }]
        })
        .and_then(|file| template::read(&file, env.home.as_deref(), &mut warnings));
    let template = match parsed {
        Ok(t) => t,
        Err(problems) => return refused(&problems),
    };
    let settings = match sidecars(&template.apps, &env) {
        Ok(s) => s,
        Err(problems) => return refused(&problems),
    };
    crate::init_logging(log_level.unwrap_or(&template.log_level), json);
    for w in &warnings {
        tracing::warn!(at = %w.at, "{}", w.message);
    }
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let metrics = match crate::install_metrics() {
        Ok(h) => h,
        Err(e) => {
            eprintln!("outrider: metrics: {e}");
            return ExitCode::from(1);
        }
    };
    outrider_blocks::pubsub::memory::share_in_process();
    match crate::block_on(run_all(settings, metrics)) {
        Ok(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        Err(code) => code,
    }
}

fn refused(problems: &[Problem]) -> ExitCode {
    eprintln!("outrider: {}", config::Problems(problems.to_vec()));
    ExitCode::from(2)
}

/// Every app's sidecar settings, each checked as `outrider run` checks its flags; problems name
/// the app.
fn sidecars(apps: &[AppRun], env: &Env) -> Result<Vec<(String, Settings)>, Vec<Problem>> {
    let terminal = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let mut problems = Vec::new();
    let mut out = Vec::new();
    for (i, app) in apps.iter().enumerate() {
        let argv = ["outrider", "run"]
            .into_iter()
            .map(str::to_owned)
            .chain(app.argv.iter().cloned());
        let args: RunArgs = match Cli::try_parse_from(argv).map(|c| c.command) {
            Ok(Command::Run(a)) => *a,
            Ok(_) => unreachable!("parsed as run"),
            Err(e) => {
                problems.push(Problem {
                    at: format!("apps[{i}] ({})", app.app_id),
                    message: e.to_string().lines().next().unwrap_or_default().to_owned(),
                });
                continue;
            }
        };
        match config::load(&args, env) {
            Ok(mut s) => {
                s.child = child_setup(app, COLOURS[i % COLOURS.len()], terminal);
                out.push((app.app_id.clone(), s));
            }
            Err(p) => problems.extend(p.0.into_iter().map(|p| Problem {
                at: format!("apps[{i}] ({}): {}", app.app_id, p.at),
                message: p.message,
            })),
        }
    }
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(problems)
    }
}

/// Where the app starts, its environment, and where its output goes.
fn child_setup(app: &AppRun, colour: &str, terminal: bool) -> ChildSetup {
    let label = format!("== APP - {} ==", app.app_id);
    let prefix = if terminal {
        format!("\x1b[1;{colour}m{label}\x1b[0m ")
    } else {
        format!("{label} ")
    };
    let file = matches!(
        app.app_log,
        LogDestination::File | LogDestination::FileAndConsole
    )
    .then(|| {
        let t = time::OffsetDateTime::now_utc();
        let stamp = format!(
            "{:04}{:02}{:02}{:02}{:02}{:02}",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second()
        );
        app.dir
            .join(".dapr/logs")
            .join(format!("{}_app_{stamp}.log", app.app_id))
    });
    ChildSetup {
        dir: Some(app.dir.clone()),
        env: app.env.clone(),
        output: Some(Prefixed {
            prefix,
            console: app.app_log != LogDestination::File,
            file,
        }),
    }
}

/// Starts every sidecar (and app) in order, then serves until a signal or until every app has
/// exited.
async fn run_all(
    settings: Vec<(String, Settings)>,
    metrics: metrics_exporter_prometheus::PrometheusHandle,
) -> i32 {
    let stop = CancellationToken::new();
    let mut sigterm = signal(SignalKind::terminate()).ok();
    let mut sigint = signal(SignalKind::interrupt()).ok();
    let mut running = tokio::task::JoinSet::new();
    for (app_id, s) in settings {
        let span = tracing::info_span!("app", id = %app_id);
        match crate::run::build(s, metrics.clone())
            .instrument(span.clone())
            .await
        {
            Ok(bound) => {
                println!(
                    "== OUTRIDER - {app_id} == HTTP API http://{}, gRPC API {}, metrics http://{}",
                    bound.api, bound.grpc, bound.admin
                );
                let stopped = stop.clone();
                running.spawn(
                    async move {
                        let ran = bound.run_reporting(stopped.cancelled_owned()).await;
                        (app_id, ran)
                    }
                    .instrument(span),
                );
            }
            Err(e) => {
                eprintln!("outrider: {app_id}: {e:#}");
                stop.cancel();
                while running.join_next().await.is_some() {}
                return 1;
            }
        }
    }
    let mut failed = 0;
    loop {
        let signalled = async {
            match (&mut sigterm, &mut sigint) {
                (Some(t), Some(i)) => tokio::select! { _ = t.recv() => {}, _ = i.recv() => {} },
                _ => std::future::pending().await,
            }
        };
        tokio::select! {
            () = signalled, if !stop.is_cancelled() => {
                println!("== OUTRIDER == stopping every app");
                stop.cancel();
            }
            done = running.join_next() => match done {
                None => return failed,
                Some(Ok((app_id, ran))) => {
                    let (code, by_itself) = ran.unwrap_or_else(|e| {
                        eprintln!("outrider: {app_id}: {e:#}");
                        (1, true)
                    });
                    println!("== OUTRIDER - {app_id} == stopped; the app's exit status: {code}");
                    // The apps' answers to a stop asked for are not failures of the run.
                    if code != 0 && by_itself && failed == 0 {
                        failed = code;
                    }
                }
                Some(Err(e)) => {
                    eprintln!("outrider: a sidecar task failed: {e}");
                    failed = failed.max(1);
                }
            }
        }
    }
}
