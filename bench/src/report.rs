//! Turns a run's cell files into `results.json`, `results.md` and `latency.svg`.
//!
//! Each measurement of a run is one JSON file ([`Cell`]) in `<dir>/cells/`: a load run (with
//! the CPU and memory of the processes under test), or a single figure such as the time to
//! ready. Repeats of a cell are reduced to their median; a cell that names a `baseline` also
//! gets its added latency (its percentile minus the baseline's). Ratios between proxies come
//! from the same run.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::load::Report;

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
        .map(|(name, reps)| {
            let loads: Vec<&LoadResult> = reps.iter().filter_map(|c| c.load.as_ref()).collect();
            let load = (!loads.is_empty()).then(|| {
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
            });
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
        })
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
    for peer in ["nginx", "haproxy"] {
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
    }
    out
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

/// The Markdown table of a run.
pub fn markdown(results: &Results) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "Run: {}\n", results.meta);
    let _ = writeln!(
        md,
        "| cell | mode | conns | rps | p50 µs | p90 µs | p99 µs | added p50 µs | added p99 µs | CPU s / 1000 req | RSS before / after MB | errors |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|---|---|---|---|---|---|---|");
    let num = |v: Option<f64>, digits: usize| {
        v.filter(|x| x.is_finite())
            .map_or("–".to_owned(), |x| format!("{x:.digits$}"))
    };
    for c in &results.cells {
        if let Some(l) = &c.load {
            let rss = match (l.rss_before_mb, l.rss_after_mb) {
                (Some(a), Some(b)) => format!("{a:.1} / {b:.1}"),
                _ => "–".to_owned(),
            };
            let _ = writeln!(
                md,
                "| {} | {} | {} | {:.0} | {:.0} | {:.0} | {:.0} | {} | {} | {} | {} | {} |",
                c.cell,
                l.mode,
                l.connections,
                l.rps,
                l.p50,
                l.p90,
                l.p99,
                num(c.added_us.map(|a| a[0]), 0),
                num(c.added_us.map(|a| a[2]), 0),
                num(l.cpu_s_per_1000, 4),
                rss,
                l.errors
            );
        }
    }
    let figures: Vec<&Summary> = results
        .cells
        .iter()
        .filter(|c| c.figure.is_some())
        .collect();
    if !figures.is_empty() {
        let _ = writeln!(md, "\n| figure | value |\n|---|---|");
        for c in figures {
            let f = c.figure.as_ref().expect("filtered");
            let _ = writeln!(md, "| {} | {:.1} {} |", c.cell, f.value, f.unit);
        }
    }
    if !results.ratios.is_empty() {
        let _ = writeln!(md, "\n| ratio (same run) | value |\n|---|---|");
        for (k, v) in &results.ratios {
            let _ = writeln!(md, "| {k} | {v:.3} |");
        }
    }
    md
}

/// A latency-by-percentile plot (HdrHistogram style: the x axis spreads the tail) of every
/// fixed-rate cell, as SVG.
pub fn svg(results: &Results) -> String {
    const W: f64 = 900.0;
    const H: f64 = 520.0;
    const L: f64 = 70.0;
    const R: f64 = 230.0;
    const T: f64 = 30.0;
    const B: f64 = 50.0;
    let series: Vec<(&str, &Vec<(f64, f64)>)> = results
        .cells
        .iter()
        .filter_map(|c| {
            c.load
                .as_ref()
                .filter(|l| l.mode == "rate")
                .map(|l| (c.cell.as_str(), &l.spectrum))
        })
        .collect();
    // x: log10(1 / (1 - p)), from 0 (p0) to 5 (p99.999).
    let x_of = |p: f64| (1.0 / (1.0 - (p / 100.0).min(0.99999))).log10();
    let y_max = series
        .iter()
        .flat_map(|(_, s)| s.iter().filter(|(p, _)| *p <= 99.999).map(|(_, v)| *v))
        .fold(1.0, f64::max);
    let (y_lo, y_hi) = (1.0f64.log10(), (y_max * 1.2).log10());
    let px = |x: f64| L + x / 5.0 * (W - L - R);
    let py = |us: f64| T + (1.0 - (us.max(1.0).log10() - y_lo) / (y_hi - y_lo)) * (H - T - B);
    let colors = [
        "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
        "#bcbd22", "#17becf",
    ];
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{L}" y="18" font-size="14">Latency by percentile (fixed rate, median repeat)</text>"#
    );
    for (label, x) in [
        ("0%", 0.0),
        ("90%", 1.0),
        ("99%", 2.0),
        ("99.9%", 3.0),
        ("99.99%", 4.0),
        ("99.999%", 5.0),
    ] {
        let _ = writeln!(
            s,
            r##"<line x1="{0}" y1="{T}" x2="{0}" y2="{1}" stroke="#ddd"/><text x="{0}" y="{2}" text-anchor="middle">{label}</text>"##,
            px(x),
            H - B,
            H - B + 18.0
        );
    }
    let mut tick = 1.0;
    while tick <= 10f64.powf(y_hi) {
        let label = if tick >= 1000.0 {
            format!("{} ms", tick / 1000.0)
        } else {
            format!("{tick} µs")
        };
        let _ = writeln!(
            s,
            r##"<line x1="{L}" y1="{0}" x2="{1}" y2="{0}" stroke="#ddd"/><text x="{2}" y="{3}" text-anchor="end">{label}</text>"##,
            py(tick),
            W - R,
            L - 6.0,
            py(tick) + 4.0
        );
        tick *= 10.0;
    }
    for (i, (name, spectrum)) in series.iter().enumerate() {
        let color = colors[i % colors.len()];
        let points: Vec<String> = spectrum
            .iter()
            .filter(|(p, _)| *p <= 99.999)
            .map(|(p, us)| format!("{:.1},{:.1}", px(x_of(*p)), py(*us)))
            .collect();
        let _ = writeln!(
            s,
            r#"<polyline fill="none" stroke="{color}" stroke-width="2" points="{}"/>"#,
            points.join(" ")
        );
        let ly = T + 16.0 * i as f64 + 10.0;
        let _ = writeln!(
            s,
            r#"<rect x="{}" y="{}" width="14" height="3" fill="{color}"/><text x="{}" y="{}">{name}</text>"#,
            W - R + 15.0,
            ly - 4.0,
            W - R + 35.0,
            ly
        );
    }
    let _ = writeln!(s, "</svg>");
    s
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
mod tests {
    use super::*;

    fn load_cell(name: &str, repeat: u32, baseline: Option<&str>, p50: f64, rps: f64) -> Cell {
        Cell {
            cell: name.into(),
            repeat,
            baseline: baseline.map(Into::into),
            load: Some(LoadResult {
                mode: "rate".into(),
                connections: 16,
                rps,
                errors: 0,
                p50,
                p90: p50 * 2.0,
                p99: p50 * 4.0,
                p999: p50 * 8.0,
                spectrum: vec![(50.0, p50), (99.0, p50 * 4.0)],
                cpu_s_per_1000: Some(0.02),
                rss_before_mb: None,
                rss_after_mb: None,
                lost: None,
                duplicates: None,
            }),
            figure: None,
        }
    }

    #[test]
    fn medians_added_latency_and_ratios() {
        let cells = vec![
            load_cell("direct", 1, None, 50.0, 1000.0),
            load_cell("direct", 2, None, 70.0, 1000.0),
            load_cell("direct", 3, None, 60.0, 1000.0),
            load_cell("one-hop/outrider", 1, Some("direct"), 100.0, 1000.0),
            load_cell("one-hop/haproxy", 1, Some("direct"), 140.0, 1000.0),
        ];
        let s = summarize(&cells);
        let direct = s.iter().find(|c| c.cell == "direct").unwrap();
        assert_eq!(
            (direct.repeats, direct.load.as_ref().unwrap().p50),
            (3, 60.0)
        );
        let ours = s.iter().find(|c| c.cell == "one-hop/outrider").unwrap();
        assert_eq!(ours.added_us, Some([40.0, 80.0, 160.0]));
        let r = ratios(&s);
        assert_eq!(r["one-hop added p50 outrider/haproxy"], 0.5);
        // p99: 400 - 240 = 160 against 560 - 240 = 320.
        assert_eq!(r["one-hop added p99 outrider/haproxy"], 0.5);
        assert!(
            !r.contains_key("two-hop added p50 outrider/haproxy"),
            "no such cells: no ratio"
        );
        assert_eq!(r["one-hop cpu-per-1000 outrider/haproxy"], 1.0);
        let results = Results {
            meta: serde_json::json!({}),
            ratios: r,
            cells: s,
        };
        let md = markdown(&results);
        assert!(
            md.contains(
                "| one-hop/outrider | rate | 16 | 1000 | 100 | 200 | 400 | 40 | 160 | 0.0200 |"
            ),
            "{md}"
        );
        let svg = svg(&results);
        assert_eq!(svg.matches("<polyline").count(), 3, "{svg}");
    }
}
