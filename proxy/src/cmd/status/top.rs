//! `outrider top --app-id X`: the live routes of one sidecar, read from its `/metrics` every
//! `--interval`, busiest first. On a terminal each refresh replaces the last; otherwise each
//! is printed after the other, headed by the time.

use std::io::{IsTerminal as _, Write as _};
use std::process::ExitCode;

use crate::cli::TopArgs;
use crate::telemetry::traffic::{Group, Scrape};

use std::net::SocketAddr;

use super::{Found, find, read_metrics, table};

pub(crate) async fn run(args: &TopArgs) -> ExitCode {
    let (sidecar, admin) = match locate(args).await {
        Ok(found) => found,
        Err(why) => {
            eprintln!("outrider top: {why}");
            return ExitCode::from(1);
        }
    };
    let terminal = std::io::stdout().is_terminal();
    let mut last = match read_metrics(admin).await {
        Ok(text) => (
            tokio::time::Instant::now(),
            Scrape::read(&text, &sidecar.app_id),
        ),
        Err(e) => {
            eprintln!("outrider top: {e}");
            return ExitCode::from(1);
        }
    };
    let mut shown = 0;
    let interrupted = tokio::signal::ctrl_c();
    tokio::pin!(interrupted);
    while args.iterations == 0 || shown < args.iterations {
        tokio::select! {
            () = tokio::time::sleep(args.interval) => {}
            _ = &mut interrupted => return ExitCode::SUCCESS,
        }
        let head = format!("{}.{} at {admin}", sidecar.app_id, sidecar.namespace);
        // A failed read is shown and the next one tried: the sidecar may be restarting.
        let shown_now = match read_metrics(admin).await {
            Ok(text) => {
                let now = (
                    tokio::time::Instant::now(),
                    Scrape::read(&text, &sidecar.app_id),
                );
                let secs = now.0.duration_since(last.0).as_secs_f64();
                let frame = frame(&head, &now.1, &last.1, secs);
                last = now;
                frame
            }
            Err(e) => format!("{head}: {e}\n"),
        };
        let mut out = std::io::stdout().lock();
        let clear = if terminal { "\x1b[H\x1b[2J" } else { "" };
        let _ = writeln!(out, "{clear}{shown_now}");
        let _ = out.flush();
        shown += 1;
    }
    ExitCode::SUCCESS
}

/// The sidecar of `--app-id` and where its `/metrics` is, or why there is none.
async fn locate(args: &TopArgs) -> Result<(Found, SocketAddr), String> {
    let found = find(&args.sources).await?;
    let Some(sidecar) = found
        .iter()
        .find(|f| f.app_id == args.app_id && f.namespace == args.namespace)
    else {
        let known: Vec<String> = (found.iter())
            .map(|f| format!("{}.{}", f.app_id, f.namespace))
            .collect();
        let seen = match known.is_empty() {
            true => String::new(),
            false => format!("; found: {}", known.join(", ")),
        };
        return Err(format!(
            "no sidecar of app {:?} in namespace {:?} found{seen}",
            args.app_id, args.namespace
        ));
    };
    let admin = sidecar.admin().ok_or_else(|| {
        format!(
            "the sidecar of {:?} does not say where its admin port is",
            args.app_id
        )
    })?;
    Ok((sidecar.clone(), admin))
}

/// One refresh: the head, then every key that saw requests between the two reads, busiest first.
fn frame(head: &str, now: &Scrape, then: &Scrape, secs: f64) -> String {
    let mut rows: Vec<(String, String, _)> = (now.since(then, secs).into_iter())
        .filter(|(_, r)| r.count > 0.0)
        .map(|(k, r)| (kind(k.group).to_owned(), k.name, r))
        .collect();
    rows.sort_by(|a, b| b.2.rps.total_cmp(&a.2.rps).then_with(|| a.1.cmp(&b.1)));
    let body = match rows.is_empty() {
        true => "no requests\n".to_owned(),
        false => table::routes(&rows),
    };
    format!(
        "{head}, over the last {secs:.1}s ({} active)\n{body}",
        rows.len()
    )
}

/// How a group reads in the table.
fn kind(g: Group) -> &'static str {
    match g {
        Group::Api => "api",
        Group::App => "to app",
        Group::Target => "target",
        Group::Component => "component",
        Group::Topic => "topic",
    }
}
