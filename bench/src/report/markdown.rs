//! The Markdown form of a run's results: the load cells as one table, then the single figures
//! and the ratios. The numbers come from [`super::summarize`] and [`super::ratios`].

use std::fmt::Write as _;

use super::{Results, Summary};

/// The Markdown table of a run.
pub fn markdown(results: &Results) -> String {
    let mut md = String::new();
    load_table(&mut md, results);
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

/// The run's metadata and a row per load cell.
fn load_table(md: &mut String, results: &Results) {
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
}
