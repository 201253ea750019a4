//! Turns a run's cell files into `results.json`, `results.md` and `latency.svg`.
//!
//! Each measurement of a run is one JSON file ([`Cell`]) in `<dir>/cells/`: a load run (with
//! the CPU and memory of the processes under test), or a single figure such as the time to
//! ready. Repeats of a cell are reduced to their median; a cell that names a `baseline` also
//! gets its added latency (its percentile minus the baseline's). Ratios between proxies come
//! from the same run.

mod markdown;
mod svg;

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::load::Report;
pub use markdown::markdown;
pub use svg::svg;

/// One measurement, as `outrider-bench load` or `outrider-bench figure` writes it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Cell {
    /// The cell's name, e.g. `one-hop/outrider`.
    pub cell: String,
    /// Which repeat (1-based).
    pub repeat: u32,
    /// The cell whose latency this one's is compared with, e.g. `direct`.
    #[serde(default)]
    pub baseline: Option<String>,
    /// A load run's result.
    #[serde(default)]
    pub load: Option<LoadResult>,
    /// A single figure (e.g. start to ready) instead of a load run.
    #[serde(default)]
    pub figure: Option<Figure>,
}

/// A load run and what the processes under test used meanwhile.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LoadResult {
    /// `rate` (open loop at a fixed rate) or `max` (as fast as answers come).
    pub mode: String,
    /// Connections used.
    pub connections: usize,
    /// Answers per second.
    pub rps: f64,
    /// Failed requests.
    pub errors: u64,
    /// Latency percentiles in µs.
    pub p50: f64,
    /// 90th.
    pub p90: f64,
    /// 99th.
    pub p99: f64,
    /// 99.9th.
    pub p999: f64,
    /// `(percentile, µs)` pairs for the plot.
    pub spectrum: Vec<(f64, f64)>,
    /// CPU seconds the processes under test used per 1000 answers, if they were watched.
    #[serde(default)]
    pub cpu_s_per_1000: Option<f64>,
    /// Their summed resident memory just before this cell, in MB (after earlier cells; the
    /// memory before any load is the `rss-idle/*` figure).
    #[serde(default)]
    pub rss_before_mb: Option<f64>,
    /// Their summed resident memory at the end of this cell, in MB.
    #[serde(default)]
    pub rss_after_mb: Option<f64>,
    /// Publish → delivery: accepted messages that never arrived.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lost: Option<u64>,
    /// Publish → delivery: messages delivered more than once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duplicates: Option<u64>,
}

impl LoadResult {
    /// From a load generator report.
    pub fn from_report(mode: &str, connections: usize, r: &Report) -> Self {
        Self {
            mode: mode.to_owned(),
            connections,
            rps: r.rps,
            errors: r.errors,
            p50: r.latency_us.p50,
            p90: r.latency_us.p90,
            p99: r.latency_us.p99,
            p999: r.latency_us.p999,
            spectrum: r.spectrum.clone(),
            cpu_s_per_1000: None,
            rss_before_mb: None,
            rss_after_mb: None,
            lost: r.lost,
            duplicates: r.duplicates,
        }
    }
}

/// A single measured value.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Figure {
    /// The value.
    pub value: f64,
    /// Its unit, e.g. `ms`.
    pub unit: String,
}

/// A cell's repeats reduced to medians.
#[derive(Clone, Debug, Serialize)]
pub struct Summary {
    /// The cell's name.
    pub cell: String,
    /// How many repeats.
    pub repeats: usize,
    /// Baseline cell, if any.
    pub baseline: Option<String>,
    /// Median of the load figures.
    pub load: Option<LoadResult>,
    /// Median of the single figures.
    pub figure: Option<Figure>,
    /// Latency added over the baseline, µs: p50, p90, p99.
    pub added_us: Option<[f64; 3]>,
}

/// Everything a run produced.
#[derive(Clone, Debug, Serialize)]
pub struct Results {
    /// When and on what the run was made.
    pub meta: serde_json::Value,
    /// One summary per cell, in name order.
    pub cells: Vec<Summary>,
    /// Ratios between cells, e.g. `one-hop max rps outrider/haproxy`.
    pub ratios: BTreeMap<String, f64>,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.retain(|x| x.is_finite());
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn median_opt(v: Vec<Option<f64>>) -> Option<f64> {
    let v: Vec<f64> = v.into_iter().flatten().collect();
    (!v.is_empty()).then(|| median(v))
}

/// Reduces cells to summaries (medians per cell, added latency over baselines).
pub fn summarize(cells: &[Cell]) -> Vec<Summary> {
    let mut by_name: BTreeMap<&str, Vec<&Cell>> = BTreeMap::new();
    for c in cells {
        by_name.entry(&c.cell).or_default().push(c);
    }
    let mut out: Vec<Summary> = by_name
        .into_iter()
        .map(|(name, reps)| summary(name, &reps))
        .collect();
    let loads: BTreeMap<String, LoadResult> = out
        .iter()
        .filter_map(|s| s.load.clone().map(|l| (s.cell.clone(), l)))
        .collect();
    for s in &mut out {
        if let (Some(base), Some(load)) = (s.baseline.as_ref().and_then(|b| loads.get(b)), &s.load)
        {
            s.added_us = Some([
                load.p50 - base.p50,
                load.p90 - base.p90,
                load.p99 - base.p99,
            ]);
        }
    }
    out
}

/// The summary of one cell's repeats.
fn summary(name: &str, reps: &[&Cell]) -> Summary {
    let loads: Vec<&LoadResult> = reps.iter().filter_map(|c| c.load.as_ref()).collect();
    let load = (!loads.is_empty()).then(|| median_load(&loads));
    let figures: Vec<&Figure> = reps.iter().filter_map(|c| c.figure.as_ref()).collect();
    let figure = (!figures.is_empty()).then(|| Figure {
        value: median(figures.iter().map(|f| f.value).collect()),
        unit: figures[0].unit.clone(),
    });
    Summary {
        cell: name.to_owned(),
        repeats: reps.len(),
        baseline: reps[0].baseline.clone(),
        load,
        figure,
        added_us: None,
    }
}

/// The median of each load figure over `loads` (not empty); errors and losses are summed.
fn median_load(loads: &[&LoadResult]) -> LoadResult {
    let m = |f: fn(&LoadResult) -> f64| median(loads.iter().map(|l| f(l)).collect());
    // The plotted spectrum is the repeat whose p50 is the median one.
    let p50 = m(|l| l.p50);
    let typical = loads
        .iter()
        .min_by(|a, b| (a.p50 - p50).abs().total_cmp(&(b.p50 - p50).abs()));
    LoadResult {
        mode: loads[0].mode.clone(),
        connections: loads[0].connections,
        rps: m(|l| l.rps),
        errors: loads.iter().map(|l| l.errors).sum(),
        p50,
        p90: m(|l| l.p90),
        p99: m(|l| l.p99),
        p999: m(|l| l.p999),
        spectrum: typical.map(|l| l.spectrum.clone()).unwrap_or_default(),
        cpu_s_per_1000: median_opt(loads.iter().map(|l| l.cpu_s_per_1000).collect()),
        rss_before_mb: median_opt(loads.iter().map(|l| l.rss_before_mb).collect()),
        rss_after_mb: median_opt(loads.iter().map(|l| l.rss_after_mb).collect()),
        // Like errors, summed over the repeats.
        lost: loads.iter().map(|l| l.lost).sum(),
        duplicates: loads.iter().map(|l| l.duplicates).sum(),
    }
}

/// `a / b` of a figure of two cells, when both exist.
fn ratio(cells: &[Summary], a: &str, b: &str, f: fn(&LoadResult) -> Option<f64>) -> Option<f64> {
    let get = |name: &str| {
        cells
            .iter()
            .find(|c| c.cell == name)?
            .load
            .as_ref()
            .and_then(f)
    };
    let (a, b) = (get(a)?, get(b)?);
    (b > 0.0).then_some(a / b)
}

/// The ratios BENCHMARKS.md quotes.
pub fn ratios(cells: &[Summary]) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for peer in ["nginx", "haproxy", "pingora"] {
        let pairs = [
            (
                "max-rps",
                "one-hop-max/outrider",
                format!("one-hop-max/{peer}"),
                (|l: &LoadResult| Some(l.rps)) as fn(&LoadResult) -> Option<f64>,
            ),
            (
                "cpu-per-1000",
                "one-hop/outrider",
                format!("one-hop/{peer}"),
                |l: &LoadResult| l.cpu_s_per_1000,
            ),
        ];
        for (what, ours, theirs, f) in pairs {
            if let Some(r) = ratio(cells, ours, &theirs, f) {
                out.insert(
                    format!("one-hop {what} outrider/{peer}"),
                    (r * 1000.0).round() / 1000.0,
                );
            }
        }
        for (p, i) in ADDED {
            if let Some(r) = added_ratio(cells, "one-hop/outrider", &format!("one-hop/{peer}"), i) {
                out.insert(format!("one-hop added {p} outrider/{peer}"), r);
            }
        }
    }
    for (p, i) in ADDED {
        if let Some(r) = added_ratio(cells, "two-hop/outrider-mtls", "two-hop/haproxy-tls", i) {
            out.insert(format!("two-hop added {p} outrider/haproxy"), r);
        }
        // The same invoke path with the sidecars forced onto HTTP/3 over QUIC, against HTTP/2
        // over mutual TLS.
        if let Some(r) = added_ratio(cells, "two-hop/outrider-h3", "two-hop/outrider-mtls", i) {
            out.insert(format!("two-hop added {p} h3/h2"), r);
        }
        // The gRPC API against the HTTP API, for the same call in the same run.
        for (what, grpc, http) in [
            (
                "invoke",
                "two-hop-grpc/outrider-mtls",
                "two-hop/outrider-mtls",
            ),
            ("state-get", "state-get-grpc/outrider", "state-get/outrider"),
        ] {
            if let Some(r) = added_ratio(cells, grpc, http, i) {
                out.insert(format!("{what} added {p} grpc/http"), r);
            }
        }
    }
    instruction_ratios(cells, &mut out);
    // HTTP/3 against HTTP/2 with packets lost between the hosts: whole percentiles, not added
    // ones, since the baseline (`netns-direct`) runs without loss.
    let lossy = [
        (
            "p50",
            (|l: &LoadResult| Some(l.p50)) as fn(&LoadResult) -> Option<f64>,
        ),
        ("p99", |l: &LoadResult| Some(l.p99)),
    ];
    for (p, f) in lossy {
        if let Some(r) = ratio(
            cells,
            "lossy-two-hop/outrider-h3",
            "lossy-two-hop/outrider-h2",
            f,
        ) {
            out.insert(
                format!("lossy-two-hop {p} h3/h2"),
                (r * 1000.0).round() / 1000.0,
            );
        }
    }
    out
}

/// Instructions per request (callgrind), ours against each peer on the same path.
fn instruction_ratios(cells: &[Summary], out: &mut BTreeMap<String, f64>) {
    for (path, peers) in [
        ("one-hop", &["nginx", "haproxy", "pingora"][..]),
        ("two-hop", &["haproxy-tls"][..]),
    ] {
        let ours = if path == "one-hop" {
            "outrider"
        } else {
            "outrider-mtls"
        };
        for peer in peers {
            let a = figure(cells, &format!("instructions/{path}/{ours}"));
            let b = figure(cells, &format!("instructions/{path}/{peer}"));
            if let (Some(a), Some(b)) = (a, b)
                && b > 0.0
            {
                let peer = peer.trim_end_matches("-tls");
                out.insert(
                    format!("{path} instructions per request outrider/{peer}"),
                    (a / b * 1000.0).round() / 1000.0,
                );
            }
        }
    }
}

/// The median value of a single-figure cell, when it exists.
fn figure(cells: &[Summary], name: &str) -> Option<f64> {
    cells
        .iter()
        .find(|c| c.cell == name)?
        .figure
        .as_ref()
        .map(|f| f.value)
}

/// The added-latency percentiles the ratios compare, with their index in `added_us`.
const ADDED: [(&str, usize); 2] = [("p50", 0), ("p99", 2)];

fn added_ratio(cells: &[Summary], a: &str, b: &str, i: usize) -> Option<f64> {
    let added = |name: &str| {
        cells
            .iter()
            .find(|c| c.cell == name)?
            .added_us
            .map(|v| v[i])
    };
    let (a, b) = (added(a)?, added(b)?);
    (b > 0.0).then(|| (a / b * 1000.0).round() / 1000.0)
}
/// Reads `<dir>/cells/*.json` and writes `results.json`, `results.md` and `latency.svg` in `dir`.
pub fn write(dir: &Path, meta: serde_json::Value) -> anyhow::Result<Results> {
    let mut cells = Vec::new();
    let mut paths: Vec<_> = std::fs::read_dir(dir.join("cells"))?
        .flatten()
        .map(|e| e.path())
        .collect();
    paths.sort();
    for p in paths
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
    {
        let text = std::fs::read_to_string(&p)?;
        cells.push(
            serde_json::from_str::<Cell>(&text)
                .map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))?,
        );
    }
    let summaries = summarize(&cells);
    let results = Results {
        meta,
        ratios: ratios(&summaries),
        cells: summaries,
    };
    std::fs::write(
        dir.join("results.json"),
        serde_json::to_string_pretty(&results)?,
    )?;
    std::fs::write(dir.join("results.md"), markdown(&results))?;
    std::fs::write(dir.join("latency.svg"), svg(&results))?;
    Ok(results)
}

#[cfg(test)]
mod tests;
