//! The soak run of `make bench-soak`: a sidecar pair under steady load for minutes, sampled at
//! the end of every interval. This module reads a soak directory's samples, decides whether
//! the sidecars' memory held flat after the warm-up with no failed request, and writes
//! `soak.json`, `soak.md` and `soak.svg`.
//!
//! Each interval `i` (1-based) leaves in `<dir>/samples/` one load cell (`outrider-bench load
//! --repeat i`) and one figure cell per process, named `rss/<process>`, in MB. Interval `i`
//! ends `i × interval` seconds after the load began. A process's baseline is its memory at the
//! end of the first interval that ends at or after the warm-up, once pools, caches and
//! connections have filled; the run holds when every process ends within [`RSS_GROWTH_LIMIT`]
//! of its baseline, was sampled again after it, and no request failed.

mod markdown;
mod svg;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use anyhow::Context as _;
use serde::Serialize;

use crate::report::Cell;
pub use markdown::markdown;
pub use svg::svg;

/// How much a process's memory may grow from its baseline to the end of the run: 10 %.
pub const RSS_GROWTH_LIMIT: f64 = 0.10;

/// The name prefix of the cells that hold a process's resident memory, e.g. `rss/sidecar_a`.
const RSS_PREFIX: &str = "rss/";

/// Slack for interval ends computed in floating point (e.g. 6 × 10 s against a 60 s warm-up).
const EPSILON_S: f64 = 1e-6;

/// One interval of the run.
#[derive(Clone, Debug, Serialize)]
pub struct Sample {
    /// Which interval (1-based).
    pub interval: u32,
    /// When it ended, in seconds from the start of the load.
    pub end_s: f64,
    /// Answers per second, when the interval left a load result.
    pub rps: Option<f64>,
    /// The 99th percentile latency in µs, likewise.
    pub p99_us: Option<f64>,
    /// Failed requests.
    pub errors: u64,
    /// Each process's resident memory at the interval's end, in MB, by process name.
    pub rss_mb: BTreeMap<String, f64>,
}

/// How one process's memory moved after the warm-up.
#[derive(Clone, Debug, Serialize)]
pub struct Growth {
    /// The process, e.g. `sidecar_a`.
    pub process: String,
    /// Its samples from the end of the warm-up on, the baseline's included.
    pub samples_after_warmup: usize,
    /// When the baseline was taken, in seconds (NaN, written as null, without one).
    pub baseline_at_s: f64,
    /// Its memory at the baseline, in MB.
    pub baseline_mb: f64,
    /// Its memory at its last sample, in MB.
    pub final_mb: f64,
    /// `final / baseline - 1`.
    pub growth: f64,
    /// Whether it was sampled after the baseline and grew by at most the limit.
    pub met: bool,
}

/// The outcome of a run.
#[derive(Clone, Debug, Serialize)]
pub struct Verdict {
    /// Whether the run held: every process met its limit, no request failed, and every
    /// interval left a load result.
    pub met: bool,
    /// The warm-up, in seconds.
    pub warmup_s: f64,
    /// The growth allowed ([`RSS_GROWTH_LIMIT`]).
    pub limit: f64,
    /// Failed requests over the whole run, the warm-up's included.
    pub errors: u64,
    /// Intervals that left no load result.
    pub unmeasured: Vec<u32>,
    /// Each process's growth, in name order.
    pub processes: Vec<Growth>,
}

impl Verdict {
    /// Why the run did not hold, in one line; `None` when it did.
    pub fn failure(&self) -> Option<String> {
        if self.met {
            return None;
        }
        let limit = self.limit * 100.0;
        let mut why: Vec<String> = self
            .processes
            .iter()
            .filter(|g| !g.met)
            .map(|g| match g.samples_after_warmup {
                0 => format!("{} was not sampled after the warm-up", g.process),
                1 => format!(
                    "{} was not sampled after its baseline at the end of the warm-up",
                    g.process
                ),
                _ => format!(
                    "{} grew {:+.1} % after the warm-up ({:.1} → {:.1} MB; limit {limit:.0} %)",
                    g.process,
                    g.growth * 100.0,
                    g.baseline_mb,
                    g.final_mb
                ),
            })
            .collect();
        if self.processes.is_empty() {
            why.push("no process's memory was sampled".to_owned());
        }
        if self.errors > 0 {
            why.push(format!("{} requests failed", self.errors));
        }
        if !self.unmeasured.is_empty() {
            let list: Vec<String> = self.unmeasured.iter().map(u32::to_string).collect();
            why.push(format!("intervals {} left no load result", list.join(", ")));
        }
        Some(why.join("; "))
    }
}

/// A soak run: its samples, its outcome and the facts the script recorded.
#[derive(Clone, Debug, Serialize)]
pub struct Soak {
    /// When and on what the run was made, e.g. date, commit and machine.
    pub meta: serde_json::Value,
    /// Each interval's length, in seconds.
    pub interval_s: f64,
    /// One per interval, in order.
    pub samples: Vec<Sample>,
    /// The outcome.
    pub verdict: Verdict,
}

impl Soak {
    /// The run made of `cells`, with intervals of `interval_s` and a warm-up of `warmup_s`.
    pub fn new(cells: &[Cell], interval_s: f64, warmup_s: f64, meta: serde_json::Value) -> Self {
        let samples = samples(cells, interval_s);
        let verdict = verdict(&samples, warmup_s);
        Self {
            meta,
            interval_s,
            samples,
            verdict,
        }
    }
}

/// Groups cells by interval (their repeat index): the load cell gives the latency, throughput
/// and errors, each `rss/<process>` figure that process's memory.
pub fn samples(cells: &[Cell], interval_s: f64) -> Vec<Sample> {
    let mut by_interval: BTreeMap<u32, Sample> = BTreeMap::new();
    for c in cells {
        let s = by_interval.entry(c.repeat).or_insert_with(|| Sample {
            interval: c.repeat,
            end_s: f64::from(c.repeat) * interval_s,
            rps: None,
            p99_us: None,
            errors: 0,
            rss_mb: BTreeMap::new(),
        });
        if let Some(l) = &c.load {
            s.rps = Some(l.rps);
            s.p99_us = Some(l.p99);
            s.errors += l.errors;
        }
        if let (Some(process), Some(f)) = (c.cell.strip_prefix(RSS_PREFIX), &c.figure) {
            s.rss_mb.insert(process.to_owned(), f.value);
        }
    }
    by_interval.into_values().collect()
}

/// Judges a run: each process against its baseline, plus failed requests and missing intervals.
pub fn verdict(samples: &[Sample], warmup_s: f64) -> Verdict {
    let names: BTreeSet<&str> = samples
        .iter()
        .flat_map(|s| s.rss_mb.keys().map(String::as_str))
        .collect();
    let processes: Vec<Growth> = names
        .into_iter()
        .map(|p| growth(samples, p, warmup_s))
        .collect();
    let errors: u64 = samples.iter().map(|s| s.errors).sum();
    let unmeasured: Vec<u32> = samples
        .iter()
        .filter(|s| s.p99_us.is_none())
        .map(|s| s.interval)
        .collect();
    let met = !processes.is_empty()
        && processes.iter().all(|g| g.met)
        && errors == 0
        && unmeasured.is_empty();
    Verdict {
        met,
        warmup_s,
        limit: RSS_GROWTH_LIMIT,
        errors,
        unmeasured,
        processes,
    }
}

/// One process's baseline (its first sample at or after the warm-up), last sample and growth.
fn growth(samples: &[Sample], process: &str, warmup_s: f64) -> Growth {
    let after: Vec<(f64, f64)> = samples
        .iter()
        .filter(|s| s.end_s + EPSILON_S >= warmup_s)
        .filter_map(|s| s.rss_mb.get(process).map(|mb| (s.end_s, *mb)))
        .collect();
    let (baseline_at_s, baseline_mb) = after.first().copied().unwrap_or((f64::NAN, f64::NAN));
    let final_mb = after.last().map_or(f64::NAN, |(_, mb)| *mb);
    let growth = final_mb / baseline_mb - 1.0;
    Growth {
        process: process.to_owned(),
        samples_after_warmup: after.len(),
        baseline_at_s,
        baseline_mb,
        final_mb,
        growth,
        // NaN (no baseline) and infinity (a baseline of 0 MB) both fail here.
        met: after.len() >= 2 && growth <= RSS_GROWTH_LIMIT,
    }
}

/// How the reports say whether a rule held.
fn met_word(met: bool) -> &'static str {
    if met { "met" } else { "not met" }
}

/// Reads the cells in `<dir>/samples/*.json`, in file name order.
pub fn read_cells(dir: &Path) -> anyhow::Result<Vec<Cell>> {
    let samples = dir.join("samples");
    let mut paths: Vec<_> = std::fs::read_dir(&samples)
        .with_context(|| format!("reading {}", samples.display()))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    paths.sort();
    let mut cells = Vec::with_capacity(paths.len());
    for p in paths {
        let text = std::fs::read_to_string(&p)?;
        cells.push(
            serde_json::from_str::<Cell>(&text)
                .map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))?,
        );
    }
    Ok(cells)
}

/// Reads `<dir>/samples/` and writes `soak.json`, `soak.md` and `soak.svg` in `dir`.
pub fn write(
    dir: &Path,
    interval_s: f64,
    warmup_s: f64,
    meta: serde_json::Value,
) -> anyhow::Result<Soak> {
    anyhow::ensure!(
        interval_s.is_finite() && interval_s > 0.0,
        "the interval must be a positive number of seconds"
    );
    anyhow::ensure!(
        warmup_s.is_finite() && warmup_s >= 0.0,
        "the warm-up must be a number of seconds, 0 or more"
    );
    let soak = Soak::new(&read_cells(dir)?, interval_s, warmup_s, meta);
    std::fs::write(dir.join("soak.json"), serde_json::to_string_pretty(&soak)?)?;
    std::fs::write(dir.join("soak.md"), markdown(&soak))?;
    std::fs::write(dir.join("soak.svg"), svg(&soak))?;
    Ok(soak)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{Figure, LoadResult};

    fn load(repeat: u32, p99: f64, errors: u64) -> Cell {
        Cell {
            cell: "soak".into(),
            repeat,
            baseline: None,
            load: Some(LoadResult {
                mode: "rate".into(),
                connections: 16,
                rps: 1000.0,
                errors,
                p50: p99 / 4.0,
                p90: p99 / 2.0,
                p99,
                p999: p99 * 2.0,
                spectrum: vec![(50.0, p99 / 4.0), (99.0, p99)],
                cpu_s_per_1000: None,
                rss_before_mb: None,
                rss_after_mb: None,
                lost: None,
                duplicates: None,
            }),
            figure: None,
        }
    }

    fn rss(process: &str, repeat: u32, mb: f64) -> Cell {
        Cell {
            cell: format!("rss/{process}"),
            repeat,
            baseline: None,
            load: None,
            figure: Some(Figure {
                value: mb,
                unit: "MB".into(),
            }),
        }
    }

    /// Six 10 s intervals; each process's memory at interval `i` is `mb(process, i)`, and
    /// interval `errors_at` (if any) has 3 failed requests.
    fn run(mb: impl Fn(&str, u32) -> f64, errors_at: Option<u32>) -> Vec<Cell> {
        let mut cells = Vec::new();
        for i in 1..=6 {
            let errors = if errors_at == Some(i) { 3 } else { 0 };
            cells.push(load(i, 900.0 + f64::from(i), errors));
            for p in ["sidecar_a", "sidecar_b"] {
                cells.push(rss(p, i, mb(p, i)));
            }
        }
        cells
    }

    #[test]
    fn flat_memory_is_met() {
        let soak = Soak::new(&run(|_, _| 20.0, None), 10.0, 20.0, serde_json::json!({}));
        let v = &soak.verdict;
        assert!(v.met, "{v:?}");
        assert_eq!(v.failure(), None);
        assert_eq!(v.processes.len(), 2);
        assert_eq!(soak.samples.len(), 6);
        assert_eq!(soak.samples[5].end_s, 60.0);
        assert_eq!(soak.samples[0].rss_mb["sidecar_b"], 20.0);
        let md = markdown(&soak);
        assert!(md.contains("**Verdict: met.**"), "{md}");
        assert!(
            md.contains("| 1.00 | 1000 | 906 | 0 | 20.0 | 20.0 |"),
            "{md}"
        );
    }

    #[test]
    fn growth_of_one_process_is_not_met_and_named() {
        // sidecar_b: 20 MB at the baseline (20 s), 23 MB at the end: +15 %.
        let mb = |p: &str, i: u32| {
            if p == "sidecar_b" && i == 6 {
                23.0
            } else {
                20.0
            }
        };
        let soak = Soak::new(&run(mb, None), 10.0, 20.0, serde_json::json!({}));
        let v = &soak.verdict;
        assert!(!v.met);
        let b = v
            .processes
            .iter()
            .find(|g| g.process == "sidecar_b")
            .unwrap();
        assert!((b.growth - 0.15).abs() < 1e-9, "{b:?}");
        assert!(!b.met);
        assert!(
            v.processes
                .iter()
                .any(|g| g.process == "sidecar_a" && g.met)
        );
        let why = v.failure().unwrap();
        assert!(why.contains("sidecar_b grew +15.0 %"), "{why}");
        assert!(!why.contains("sidecar_a"), "{why}");
        assert!(markdown(&soak).contains("**Verdict: not met:** sidecar_b"));
    }

    #[test]
    fn failed_requests_are_not_met() {
        let soak = Soak::new(
            &run(|_, _| 20.0, Some(4)),
            10.0,
            20.0,
            serde_json::json!({}),
        );
        let v = &soak.verdict;
        assert!(!v.met);
        assert_eq!(v.errors, 3);
        assert!(v.processes.iter().all(|g| g.met));
        assert_eq!(v.failure().unwrap(), "3 requests failed");
    }

    #[test]
    fn warmup_samples_are_not_the_baseline() {
        // Memory climbs during the 30 s warm-up (10, 15 MB), then holds at 30 MB: the baseline
        // is the sample at 30 s, not the first one, so the run holds.
        let mb = |_: &str, i: u32| match i {
            1 => 10.0,
            2 => 15.0,
            _ => 30.0,
        };
        let soak = Soak::new(&run(mb, None), 10.0, 30.0, serde_json::json!({}));
        let v = &soak.verdict;
        assert!(v.met, "{v:?}");
        for g in &v.processes {
            assert_eq!(
                (g.baseline_at_s, g.baseline_mb, g.final_mb),
                (30.0, 30.0, 30.0)
            );
            assert_eq!(g.samples_after_warmup, 4);
        }
        // Had the first sample been the baseline, this would have tripled.
        let soak = Soak::new(&run(mb, None), 10.0, 0.0, serde_json::json!({}));
        assert!(!soak.verdict.met);
    }

    #[test]
    fn no_sample_after_the_warmup_is_not_met() {
        // The warm-up ends with the last interval: a baseline, but nothing after it.
        let soak = Soak::new(&run(|_, _| 20.0, None), 10.0, 60.0, serde_json::json!({}));
        let v = &soak.verdict;
        assert!(!v.met);
        let why = v.failure().unwrap();
        assert!(why.contains("not sampled after its baseline"), "{why}");
        let none = Soak::new(&[], 10.0, 60.0, serde_json::json!({}));
        assert!(!none.verdict.met);
        assert!(none.verdict.failure().unwrap().contains("no process"));
    }

    #[test]
    fn the_plot_has_both_panels() {
        let soak = Soak::new(&run(|_, _| 20.0, None), 10.0, 20.0, serde_json::json!({}));
        let plot = svg(&soak);
        // One memory line per process, and the p99 line.
        assert_eq!(plot.matches("<polyline").count(), 3, "{plot}");
        // The warm-up's end in both panels, and each process's limit with its legend entry.
        assert_eq!(
            plot.matches("stroke-dasharray").count(),
            2 + 2 + 2,
            "{plot}"
        );
        assert!(plot.contains("sidecar_a") && plot.contains("sidecar_b"));
        assert!(plot.starts_with("<svg") && plot.trim_end().ends_with("</svg>"));
    }
}
