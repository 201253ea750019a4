//! The Markdown form of a soak run: the run's facts, a row per interval with its throughput,
//! p99 latency, errors and each process's memory, then a verdict line per process and for the
//! failed requests, and the overall verdict with its reasons.

use std::fmt::Write as _;

use super::{Soak, met_word};

/// A number with `digits` decimals, or a dash when there is none.
fn num(v: Option<f64>, digits: usize) -> String {
    v.filter(|x| x.is_finite())
        .map_or("–".to_owned(), |x| format!("{x:.digits$}"))
}

/// The Markdown report: a row per interval, then a verdict line per process and for errors.
pub fn markdown(soak: &Soak) -> String {
    let v = &soak.verdict;
    let mut md = String::new();
    let _ = writeln!(md, "Soak run: {}\n", soak.meta);
    let _ = writeln!(
        md,
        "Intervals of {} s; the memory baseline is taken at the end of the first interval ending at or after the {} s warm-up.\n",
        soak.interval_s, v.warmup_s
    );
    table(&mut md, soak);
    let _ = writeln!(md);
    for g in &v.processes {
        let _ = writeln!(
            md,
            "- {}: baseline {} MB (at {} min), final {} MB, growth {} % (limit {:.0} %): {}",
            g.process,
            num(Some(g.baseline_mb), 1),
            num(Some(g.baseline_at_s / 60.0), 2),
            num(Some(g.final_mb), 1),
            num(Some(g.growth * 100.0), 1),
            v.limit * 100.0,
            met_word(g.met)
        );
    }
    let _ = writeln!(
        md,
        "- failed requests: {}: {}",
        v.errors,
        met_word(v.errors == 0)
    );
    let _ = match v.failure() {
        None => writeln!(md, "\n**Verdict: met.**"),
        Some(why) => writeln!(md, "\n**Verdict: not met:** {why}."),
    };
    md
}

/// A row per interval: when it ended, its throughput, p99 and errors, each process's memory.
fn table(md: &mut String, soak: &Soak) {
    let v = &soak.verdict;
    let mut head = "| end (min) | rps | p99 µs | errors |".to_owned();
    let mut rule = "|---|---|---|---|".to_owned();
    for g in &v.processes {
        let _ = write!(head, " {} RSS MB |", g.process);
        rule.push_str("---|");
    }
    let _ = writeln!(md, "{head}\n{rule}");
    for s in &soak.samples {
        let mut row = format!(
            "| {:.2} | {} | {} | {} |",
            s.end_s / 60.0,
            num(s.rps, 0),
            num(s.p99_us, 0),
            s.errors
        );
        for g in &v.processes {
            let _ = write!(row, " {} |", num(s.rss_mb.get(&g.process).copied(), 1));
        }
        let _ = writeln!(md, "{row}");
    }
}
