//! `outrider-bench`: the benchmark harness's binary (see BENCHMARKS.md).
//!
//! - `load`: runs the open-loop load generator against one server and prints (or writes, as a
//!   cell of a run) what it measured, with the CPU and memory of the processes under test; with
//!   `--deliveries-listen` it publishes and times each message until it is delivered;
//! - `echo`: the app the scenarios put behind each proxy;
//! - `count`: sends exactly N requests, closed loop (the instructions-per-request cells);
//! - `figure`: writes a single measured value as a cell (e.g. start to ready);
//! - `startup`: times a command from spawn until a URL answers;
//! - `report`: turns a run directory's cells into results.json, results.md and latency.svg;
//! - `soak-report`: turns a soak run's samples into soak.json, soak.md and soak.svg, and fails
//!   when memory grew or requests failed.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;
use clap::{Args, Parser, Subcommand};
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use outrider_bench::deliveries::{self, Deliveries};
use outrider_bench::load::{self, Op, Plan};
use outrider_bench::report::{self, Cell, Figure, LoadResult};

#[derive(Parser)]
#[command(
    name = "outrider-bench",
    about = "Outrider's load generator and benchmark report writer"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Send load to one server and report latency percentiles and throughput.
    Load(Box<LoadArgs>),
    /// Send exactly `--requests` requests, closed loop, and fail if any fails (a fixed amount of
    /// work for the instructions-per-request cells; nothing is measured here).
    Count {
        #[command(flatten)]
        load: Box<LoadArgs>,
        /// How many requests.
        #[arg(long)]
        requests: u64,
    },
    /// Serve the echo app (answers with the request body).
    Echo {
        /// Where to listen.
        #[arg(long, default_value = "127.0.0.1:9000")]
        listen: SocketAddr,
        /// Wait this long before each answer.
        #[arg(long, default_value_t = 0)]
        delay_ms: u64,
        /// Host this actor type too (its methods echo; reminders are counted).
        #[arg(long)]
        actor_type: Option<String>,
    },
    /// Write one measured value as a cell of a run.
    Figure {
        /// The cell's name.
        #[arg(long)]
        cell: String,
        /// Which repeat.
        #[arg(long, default_value_t = 1)]
        repeat: u32,
        /// The value.
        #[arg(long)]
        value: f64,
        /// Its unit.
        #[arg(long)]
        unit: String,
        /// The file to write.
        #[arg(long)]
        out: PathBuf,
    },
    /// Start a command and print how many milliseconds pass until `url` answers 2xx; then stop
    /// it (SIGTERM, then SIGKILL after 5 s).
    Startup {
        /// The URL that answers once the command is ready.
        #[arg(long)]
        url: String,
        /// The command and its arguments.
        #[arg(last = true, required = true)]
        cmd: Vec<String>,
    },
    /// Register one-shot actor reminders all due at one instant and print how many fire per
    /// second (see the `reminders` module).
    Reminders(RemindersArgs),
    /// Summarize a run directory (its `cells/`) into results.json, results.md and latency.svg.
    Report {
        /// The run directory.
        dir: PathBuf,
        /// Facts about the run (JSON object), e.g. date, commit and machine.
        #[arg(long, default_value = "{}")]
        meta: String,
    },
    /// Summarize a soak run directory (its `samples/`) into soak.json, soak.md and soak.svg, and
    /// fail unless every process's memory ended within 10 % of its value after the warm-up and
    /// no request failed.
    SoakReport {
        /// The soak run directory.
        dir: PathBuf,
        /// Seconds of load before each process's memory baseline is taken.
        #[arg(long, default_value_t = 60.0)]
        warmup_seconds: f64,
        /// Seconds of load in each sampled interval (the load cells do not record it).
        #[arg(long, default_value_t = 10.0)]
        interval_seconds: f64,
        /// Facts about the run (JSON object), e.g. date, commit and machine.
        #[arg(long, default_value = "{}")]
        meta: String,
    },
}

#[derive(Args)]
struct RemindersArgs {
    /// The sidecar's HTTP API.
    #[arg(long)]
    api: SocketAddr,
    /// The app (the echo app with --actor-type), which counts reminder calls.
    #[arg(long)]
    app: SocketAddr,
    /// The actor type the app hosts.
    #[arg(long)]
    actor_type: String,
    /// How many reminders.
    #[arg(long, default_value_t = 2000)]
    count: u64,
    /// Seconds from the start until they are due (registering must end before).
    #[arg(long, default_value_t = 5.0)]
    lead: f64,
    /// Connections registering at once.
    #[arg(long, default_value_t = 16)]
    connections: u64,
}

impl RemindersArgs {
    fn run(self) -> outrider_bench::reminders::Run {
        outrider_bench::reminders::Run {
            api: self.api,
            app: self.app,
            actor_type: self.actor_type,
            count: self.count,
            lead: Duration::from_secs_f64(self.lead),
            connections: self.connections,
        }
    }
}

#[derive(Args)]
struct LoadArgs {
    /// The server's address.
    #[arg(long)]
    addr: SocketAddr,
    /// Path and query of each HTTP request.
    #[arg(long, default_value = "/")]
    path: String,
    /// HTTP method (default: POST when there is a body, else GET).
    #[arg(long)]
    method: Option<Method>,
    /// Body size in bytes (HTTP), or value size (Redis SET).
    #[arg(long, default_value_t = 0)]
    body_size: usize,
    /// This exact body instead of --body-size bytes.
    #[arg(long, conflicts_with = "body_size")]
    body: Option<String>,
    /// A request header, `name: value` (repeatable).
    #[arg(long = "header")]
    headers: Vec<String>,
    /// h2c (prior knowledge) instead of HTTP/1.1.
    #[arg(long)]
    http2: bool,
    /// Where the path holds `{id}`: how many ids it takes in turn (0: a new one per request).
    #[arg(long, default_value_t = 0)]
    ids: u64,
    /// A gRPC call of the Dapr API instead (h2c): `GetState` of `STORE/KEY`.
    #[arg(long, conflicts_with_all = ["grpc_invoke", "body"])]
    grpc_get_state: Option<String>,
    /// A gRPC call of the Dapr API instead (h2c): `InvokeService` of `APP/METHOD` (verb POST)
    /// with --body-size bytes of data.
    #[arg(long, conflicts_with = "body")]
    grpc_invoke: Option<String>,
    /// Send Redis `GET KEY` instead of HTTP.
    #[arg(long, conflicts_with = "redis_set")]
    redis_get: Option<String>,
    /// Send Redis `SET KEY <body-size bytes>` instead of HTTP.
    #[arg(long, conflicts_with = "redis_xadd")]
    redis_set: Option<String>,
    /// Send Redis `XADD STREAM * data <body-size bytes>` instead of HTTP.
    #[arg(long, conflicts_with = "redis_get")]
    redis_xadd: Option<String>,
    /// The HTTP requests are publishes: serve the subscribing app here and measure each message
    /// until it is delivered, not until the publish is answered.
    #[arg(long)]
    deliveries_listen: Option<SocketAddr>,
    /// With --deliveries-listen and no --rate: messages published but not yet delivered, at most.
    #[arg(long, default_value_t = 1000)]
    in_flight: usize,
    /// Connections.
    #[arg(long, default_value_t = 16)]
    connections: usize,
    /// Requests per second (open loop); without it, as fast as answers come.
    #[arg(long)]
    rate: Option<f64>,
    /// Seconds measured.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Seconds of load before measuring.
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    /// Processes under test whose CPU and memory to record (comma-separated pids).
    #[arg(long, value_delimiter = ',')]
    pids: Vec<u32>,
    /// Write the result as this cell of a run (with --out).
    #[arg(long, requires = "out")]
    cell: Option<String>,
    /// Which repeat of the cell.
    #[arg(long, default_value_t = 1)]
    repeat: u32,
    /// The cell this one's latency is compared with.
    #[arg(long)]
    baseline: Option<String>,
    /// Where to write the cell (JSON).
    #[arg(long)]
    out: Option<PathBuf>,
}

/// Clock ticks per second of `/proc/<pid>/stat` times (USER_HZ, 100 on Linux).
const TICKS_PER_SECOND: f64 = 100.0;

/// utime + stime of `pid`, in seconds. A process that is gone or a zombie is an error: its
/// figures would read as zero.
fn cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("process {pid}"))?;
    // Fields after the command name (which may hold spaces): state is field 3, utime 14, stime 15.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
    let f: Vec<&str> = rest.split_whitespace().collect();
    anyhow::ensure!(
        !matches!(f.first(), Some(&"Z") | Some(&"X")),
        "process {pid} has exited"
    );
    let field = |i: usize| -> anyhow::Result<f64> {
        f.get(i)
            .and_then(|v| v.parse().ok())
            .with_context(|| format!("/proc/{pid}/stat has no field {}", i + 3))
    };
    Ok((field(11)? + field(12)?) / TICKS_PER_SECOND)
}

/// VmRSS of `pid`, in MB.
fn rss_mb(pid: u32) -> anyhow::Result<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("process {pid}"))?;
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .with_context(|| format!("process {pid} has no VmRSS (exited?)"))?;
    Ok(kb / 1024.0)
}

fn sum(pids: &[u32], f: fn(u32) -> anyhow::Result<f64>) -> anyhow::Result<f64> {
    pids.iter().map(|p| f(*p)).sum()
}

fn plan(a: &LoadArgs) -> anyhow::Result<Plan> {
    let body = match &a.body {
        Some(text) => Bytes::from(text.clone()),
        None => Bytes::from(vec![b'x'; a.body_size]),
    };
    let grpc = load::grpc::call(a.grpc_get_state.as_deref(), a.grpc_invoke.as_deref(), &body)?;
    if let Some((path, framed)) = grpc {
        let mut headers = HeaderMap::new();
        headers.insert("content-type", HeaderValue::from_static("application/grpc"));
        headers.insert("te", HeaderValue::from_static("trailers"));
        return Ok(Plan {
            addr: a.addr,
            op: Op::Http {
                method: Method::POST,
                path,
                headers,
                body: framed,
                http2: true,
                ids: None,
            },
            connections: a.connections,
            rate: a.rate,
            duration: Duration::from_secs_f64(a.duration),
            warmup: Duration::from_secs_f64(a.warmup),
            deliveries: None,
        });
    }
    let op = match (&a.redis_get, &a.redis_set, &a.redis_xadd) {
        (Some(key), _, _) => Op::RedisGet { key: key.clone() },
        (_, Some(key), _) => Op::RedisSet {
            key: key.clone(),
            value: body,
        },
        (_, _, Some(stream)) => Op::RedisXadd {
            stream: stream.clone(),
            value: body,
        },
        _ => {
            let mut headers = HeaderMap::new();
            for h in &a.headers {
                let (k, v) = h
                    .split_once(':')
                    .with_context(|| format!("--header {h:?} is not `name: value`"))?;
                headers.append(
                    HeaderName::try_from(k.trim())?,
                    HeaderValue::try_from(v.trim())?,
                );
            }
            let method = a.method.clone().unwrap_or(if body.is_empty() {
                Method::GET
            } else {
                Method::POST
            });
            Op::Http {
                method,
                path: a.path.clone(),
                headers,
                body,
                http2: a.http2,
                ids: a
                    .path
                    .contains("{id}")
                    .then(|| Arc::new(load::Ids::new(a.ids))),
            }
        }
    };
    Ok(Plan {
        addr: a.addr,
        op,
        connections: a.connections,
        rate: a.rate,
        duration: Duration::from_secs_f64(a.duration),
        warmup: Duration::from_secs_f64(a.warmup),
        deliveries: None,
    })
}

/// With `--deliveries-listen`: the app that receives the deliveries, serving until aborted, with
/// the plan set to await each publish's delivery.
async fn await_deliveries(
    a: &LoadArgs,
    plan: &mut Plan,
) -> anyhow::Result<Option<tokio::task::JoinHandle<()>>> {
    let Some(addr) = a.deliveries_listen else {
        return Ok(None);
    };
    anyhow::ensure!(
        matches!(plan.op, Op::Http { .. }),
        "--deliveries-listen needs HTTP publishes"
    );
    anyhow::ensure!(a.in_flight > 0, "--in-flight must be at least 1");
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding {addr}"))?;
    // A run id no earlier run shares: its redeliveries are told apart.
    let run = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_nanos() as u64;
    let deliveries = Arc::new(Deliveries::new(
        run,
        a.rate.is_none().then_some(a.in_flight),
    ));
    plan.deliveries = Some(deliveries.clone());
    Ok(Some(deliveries::serve(listener, deliveries)))
}

async fn load_cmd(a: LoadArgs) -> anyhow::Result<()> {
    let mut plan = plan(&a)?;
    let app = await_deliveries(&a, &mut plan).await?;
    let (rss_before, cpu_before) = (sum(&a.pids, rss_mb)?, sum(&a.pids, cpu_seconds)?);
    let r = load::run(&plan).await;
    if let Some(app) = app {
        app.abort();
    }
    let r = r?;
    let (rss_after, cpu_after) = (sum(&a.pids, rss_mb)?, sum(&a.pids, cpu_seconds)?);
    let Some(cell) = a.cell else {
        println!("{}", serde_json::to_string_pretty(&r)?);
        return Ok(());
    };
    let mut result = LoadResult::from_report(
        if a.rate.is_some() { "rate" } else { "max" },
        a.connections,
        &r,
    );
    if !a.pids.is_empty() && r.all_ok > 0 {
        result.cpu_s_per_1000 = Some((cpu_after - cpu_before) / r.all_ok as f64 * 1000.0);
        result.rss_before_mb = Some(rss_before);
        result.rss_after_mb = Some(rss_after);
    }
    let cell = Cell {
        cell,
        repeat: a.repeat,
        baseline: a.baseline,
        load: Some(result),
        figure: None,
    };
    let out = a.out.context("--cell needs --out")?;
    std::fs::write(&out, serde_json::to_string_pretty(&cell)?)
        .with_context(|| format!("writing {}", out.display()))?;
    let deliveries = match (r.lost, r.duplicates, r.foreign) {
        (Some(lost), Some(dup), Some(foreign)) => {
            format!(" ({lost} lost, {dup} delivered twice, {foreign} from other runs)")
        }
        _ => String::new(),
    };
    eprintln!(
        "{} #{}: {:.0} rps, p50 {} µs, p99 {} µs, {} errors{deliveries}",
        cell.cell, cell.repeat, r.rps, r.latency_us.p50, r.latency_us.p99, r.errors
    );
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // One thread: the generator is pinned to its own core by the bench script.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    match cli.command {
        Command::Load(a) => rt.block_on(load_cmd(*a)),
        Command::Count { load, requests } => {
            let plan = plan(&load)?;
            rt.block_on(load::count(&plan, requests))
        }
        Command::Echo {
            listen,
            delay_ms,
            actor_type,
        } => {
            let app = outrider_bench::echo::App {
                delay: Duration::from_millis(delay_ms),
                actor_type,
                ..Default::default()
            };
            rt.block_on(outrider_bench::echo::run(listen, app))?;
            Ok(())
        }
        Command::Figure {
            cell,
            repeat,
            value,
            unit,
            out,
        } => {
            let cell = Cell {
                cell,
                repeat,
                baseline: None,
                load: None,
                figure: Some(Figure { value, unit }),
            };
            std::fs::write(&out, serde_json::to_string_pretty(&cell)?)?;
            Ok(())
        }
        Command::Startup { url, cmd } => {
            let ms = rt.block_on(outrider_bench::startup::startup(&url, &cmd))?;
            println!("{ms:.1}");
            Ok(())
        }
        Command::Reminders(a) => {
            let rate = rt.block_on(outrider_bench::reminders::run(&a.run()))?;
            println!("{rate:.0}");
            Ok(())
        }
        Command::Report { dir, meta } => {
            let meta: serde_json::Value =
                serde_json::from_str(&meta).context("--meta is not JSON")?;
            let results = report::write(&dir, meta)?;
            print!("{}", report::markdown(&results));
            Ok(())
        }
        Command::SoakReport {
            dir,
            warmup_seconds,
            interval_seconds,
            meta,
        } => {
            let meta: serde_json::Value =
                serde_json::from_str(&meta).context("--meta is not JSON")?;
            let soak = outrider_bench::soak::write(&dir, interval_seconds, warmup_seconds, meta)?;
            print!("{}", outrider_bench::soak::markdown(&soak));
            match soak.verdict.failure() {
                Some(why) => anyhow::bail!("soak not met: {why}"),
                None => Ok(()),
            }
        }
    }
}
