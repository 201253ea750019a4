//! Outrider: a service-mesh L7 proxy and a Dapr-compatible application runtime in one sidecar.
//! See ARCHITECTURE.md for the listeners, the request flows and the crate graph.
//!
//! This crate assembles the others. Its folders follow the direction traffic takes:
//! - `api`: the app calls the sidecar (the Dapr HTTP API on :3500);
//! - `mesh`: sidecars call each other (identity, the outbound path, the inbound mesh port);
//! - `to_app`: the sidecar calls its app (the app channel, subscription deliveries);
//! - `components`: the sidecar calls its engines (resiliency and metrics around `blocks`);
//! - `net`: sockets and bytes under all of them (serve loops, framing guard, body hygiene).
//!
//! `cli` and `config` turn flags and files into validated settings, `run` starts and stops the
//! sidecar in order, `cmd` holds the other subcommands, and `admin` and `telemetry` serve metrics,
//! health and traces.

mod admin;
mod api;
mod cli;
mod cmd;
mod components;
mod config;
mod errors;
mod mesh;
mod net;
mod run;
mod telemetry;
mod to_app;

/// Pure pieces of the data path that the fuzz targets drive directly; not a stable API.
#[doc(hidden)]
pub mod fuzzing {
    pub use crate::net::guard::{Framing, Refusal};
}

use std::process::ExitCode;

use clap::{FromArgMatches as _, Parser};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
use tracing_subscriber::EnvFilter;

use crate::cli::{CaCommand, Cli, Command, Env, PolicyCommand, TokenCommand};

pub use crate::config::Settings;
pub use crate::run::Bound;

/// Validates the flags of `outrider run` (given without the program name and `run`) and loads
/// the files they name, as the command line does; every problem is reported together.
pub fn settings<I, T>(args: I) -> Result<Settings, String>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let argv = ["outrider".into(), "run".into()]
        .into_iter()
        .chain(args.into_iter().map(Into::into));
    let cli = Cli::try_parse_from(argv).map_err(|e| e.to_string())?;
    let Command::Run(args) = cli.command else {
        return Err("not the flags of `outrider run`".into());
    };
    config::load(&args, &Env::read()).map_err(|problems| problems.to_string())
}

/// Starts a sidecar in this process: when it returns, every listener is bound and serving.
/// [`Bound::run`] then serves until told to stop. Logging is left to the caller; the metrics
/// recorder is installed on first use and shared by every sidecar of the process.
pub async fn build(settings: Settings) -> anyhow::Result<Bound> {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let metrics = install_metrics()?;
    run::build(settings, metrics).await
}

/// The `outrider` command line: parses `args` and runs the subcommand they name.
pub fn main<I, T>(args: I) -> ExitCode
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let matches = <Cli as clap::CommandFactory>::command().get_matches_from(args);
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    let args = match cli.command {
        Command::Run(args) if args.run_file.is_some() => return multi_run(&args, &matches),
        Command::Run(args) => args,
        Command::Policy(PolicyCommand::Check(args)) => return cmd::policy::run(&args),
        Command::Proxy(args) => return proxy(args),
        Command::Init(args) => return cmd::init::run(&args),
        Command::Ca(CaCommand::Init(args)) => return cmd::ca::init(&args),
        Command::Inject(args) => return cmd::inject::run(&args),
        Command::Ca(CaCommand::Token(TokenCommand::Create(args))) => {
            return cmd::ca::token_create(&args);
        }
        Command::Ca(CaCommand::Serve(args)) => return ca_serve(args),
        Command::Ca(CaCommand::Rotate(step)) => return cmd::ca::rotate(&step),
        Command::Status(args) => {
            return block_on(cmd::status::run(&args)).unwrap_or_else(|code| code);
        }
        Command::Top(args) => return block_on(cmd::status::top(&args)).unwrap_or_else(|code| code),
    };
    if args.daprd.wait {
        if !args.command.is_empty() {
            eprintln!("outrider: --wait only waits for a running sidecar; it starts no app");
            return ExitCode::from(2);
        }
        return block_on(cmd::wait::run(args.dapr_http_port)).unwrap_or_else(|code| code);
    }
    let env = Env::read();
    let settings = match config::load(&args, &env) {
        Ok(s) => s,
        Err(problems) => {
            eprintln!("outrider: {problems}");
            return ExitCode::from(2);
        }
    };
    init_logging(&args.log_level, args.log_as_json);
    // Our own TLS configs name their provider; this makes aws-lc-rs the default for libraries
    // that ask for one (the Redis client), so no second provider can ever be picked.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let metrics = match install_metrics() {
        Ok(h) => h,
        Err(e) => {
            eprintln!("outrider: metrics: {e}");
            return ExitCode::from(1);
        }
    };
    match block_on(run::run(settings, metrics)) {
        Err(code) => code,
        Ok(Ok(code)) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        Ok(Err(e)) => {
            tracing::error!("{e:#}");
            eprintln!("outrider: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// `outrider run -f`: flags other than the log's go in the run file.
fn multi_run(args: &cli::RunArgs, matches: &clap::ArgMatches) -> ExitCode {
    let run = matches.subcommand_matches("run");
    let given = |id: &str| {
        run.and_then(|m| m.value_source(id)) == Some(clap::parser::ValueSource::CommandLine)
    };
    let misplaced: Vec<String> = run
        .into_iter()
        .flat_map(|m| m.ids())
        .map(|id| id.as_str())
        .filter(|id| !["run_file", "log_level", "log_as_json"].contains(id) && given(id))
        .map(|id| format!("--{}", id.replace('_', "-")))
        .collect();
    if !misplaced.is_empty() {
        eprintln!(
            "outrider: with -f, give {} in the run file (for an app, or under common)",
            misplaced.join(", ")
        );
        return ExitCode::from(2);
    }
    let level = given("log_level").then_some(args.log_level.as_str());
    let file = args
        .run_file
        .as_deref()
        .unwrap_or(std::path::Path::new("."));
    cmd::multi::run(file, level, args.log_as_json)
}

/// `outrider proxy`.
fn proxy(args: cli::ProxyArgs) -> ExitCode {
    init_logging(&args.log_level, false);
    serve_with_metrics("outrider", |metrics| cmd::proxy::run(args, metrics))
}

/// `outrider ca serve`.
fn ca_serve(args: cli::CaServeArgs) -> ExitCode {
    init_logging(&args.log_level, false);
    serve_with_metrics("outrider ca serve", |metrics| {
        cmd::ca::serve::run(args, metrics)
    })
}

/// Runs a server subcommand other than `run` with the metrics recorder installed: exit status
/// 0 when it stops, 1 (having said why) when it fails.
fn serve_with_metrics<F, Fut>(name: &str, serve: F) -> ExitCode
where
    F: FnOnce(metrics_exporter_prometheus::PrometheusHandle) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let metrics = match install_metrics() {
        Ok(h) => h,
        Err(e) => {
            eprintln!("outrider: metrics: {e}");
            return ExitCode::from(1);
        }
    };
    match block_on(serve(metrics)) {
        Err(code) => code,
        Ok(Ok(())) => ExitCode::SUCCESS,
        Ok(Err(e)) => {
            tracing::error!("{e:#}");
            eprintln!("{name}: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// The Prometheus recorder, with Dapr's latency buckets, and every metric described; installed
/// once per process.
fn install_metrics()
-> Result<metrics_exporter_prometheus::PrometheusHandle, metrics_exporter_prometheus::BuildError> {
    static HANDLE: std::sync::OnceLock<metrics_exporter_prometheus::PrometheusHandle> =
        std::sync::OnceLock::new();
    if let Some(h) = HANDLE.get() {
        return Ok(h.clone());
    }
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Suffix("latency".into()),
            outrider_filters::metrics::LATENCY_BUCKETS_MS,
        )
        .and_then(|b| {
            b.set_buckets_for_metric(
                Matcher::Suffix("latencies".into()),
                outrider_filters::metrics::LATENCY_BUCKETS_MS,
            )
        })
        .and_then(|b| {
            b.set_buckets_for_metric(
                Matcher::Suffix("latency_ms".into()),
                outrider_filters::metrics::LATENCY_BUCKETS_MS,
            )
        })
        .and_then(PrometheusBuilder::install_recorder)?;
    telemetry::metrics::describe();
    Ok(HANDLE.get_or_init(|| handle).clone())
}

/// Runs `work` on the runtime. `TOKIO_WORKER_THREADS` sets the number of threads (default: one
/// per core). With one thread, a current-thread scheduler runs everything on the calling thread:
/// no work stealing, no wake-ups across threads, and no idle second thread blocked on the first.
fn block_on<F: std::future::Future>(work: F) -> Result<F::Output, ExitCode> {
    let threads = std::env::var("TOKIO_WORKER_THREADS")
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let mut builder = if threads == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        tokio::runtime::Builder::new_multi_thread()
    };
    match builder.enable_all().build() {
        Ok(rt) => Ok(rt.block_on(work)),
        Err(e) => {
            eprintln!("outrider: starting the runtime: {e}");
            Err(ExitCode::from(1))
        }
    }
}

fn init_logging(level: &str, json: bool) {
    // daprd's `fatal` logs errors only, as `error` does.
    let level = if level.eq_ignore_ascii_case("fatal") {
        "error"
    } else {
        level
    };
    let filter = EnvFilter::try_new(format!("{level},h2=warn,hyper=warn,rustls=warn"))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    // Colours only on a terminal: a log file or collector gets plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}
