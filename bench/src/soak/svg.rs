//! The soak plot as SVG: two panels over one time axis in minutes, each process's resident
//! memory above and the p99 latency below. The warm-up's end is drawn dashed across both
//! panels, and each process's limit (its baseline plus [`RSS_GROWTH_LIMIT`]) dashed in its
//! colour from the baseline on, so a line crossing its limit is a failed run.

use std::fmt::Write as _;

use super::{RSS_GROWTH_LIMIT, Soak};

const W: f64 = 900.0;
const H: f64 = 660.0;
/// Margins: left, right (room for the legends), top.
const L: f64 = 70.0;
const R: f64 = 210.0;
const T: f64 = 50.0;
/// Each panel's height.
const PANEL: f64 = 250.0;
/// The space between the panels (room for the lower one's title).
const GAP: f64 = 50.0;

const COLORS: [&str; 6] = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b",
];
/// The p99 line's colour.
const P99_COLOR: &str = "#333";
/// The warm-up line's colour.
const WARMUP_COLOR: &str = "#888";

/// The plot of a soak run: memory per process above, p99 latency below, over minutes.
pub fn svg(soak: &Soak) -> String {
    let v = &soak.verdict;
    let (time, rss, p99) = layout(soak);
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{L}" y="20" font-size="14">Soak: memory and p99 latency over time (verdict: {})</text>"#,
        super::met_word(v.met)
    );
    for panel in [&rss, &p99] {
        panel.frame(&mut s, &time);
    }
    time.labels(&mut s, p99.bottom());
    warmup(&mut s, v.warmup_s, &time, [&rss, &p99]);
    rss_lines(&mut s, soak, &time, &rss);
    p99_line(&mut s, soak, &time, &p99);
    let _ = writeln!(s, "</svg>");
    s
}

/// The shared time axis and the two panels, each scaled to what it shows: memory up to the
/// highest sample or limit, latency up to the highest p99.
fn layout(soak: &Soak) -> (Time, Panel, Panel) {
    let v = &soak.verdict;
    let last_min = soak
        .samples
        .iter()
        .map(|s| s.end_s / 60.0)
        .fold(v.warmup_s / 60.0, f64::max);
    let time = Time {
        max: nice_max(last_min),
    };
    let rss_max = soak
        .samples
        .iter()
        .flat_map(|s| s.rss_mb.values().copied())
        .chain(
            v.processes
                .iter()
                .map(|g| g.baseline_mb * (1.0 + RSS_GROWTH_LIMIT)),
        )
        .filter(|x| x.is_finite())
        .fold(0.0, f64::max);
    let p99_max = soak
        .samples
        .iter()
        .filter_map(|s| s.p99_us)
        .filter(|x| x.is_finite())
        .fold(0.0, f64::max);
    let rss = Panel {
        top: T,
        y_max: nice_max(rss_max * 1.05),
        title: "Resident memory (MB)",
    };
    let p99 = Panel {
        top: T + PANEL + GAP,
        y_max: nice_max(p99_max * 1.05),
        title: "p99 latency (µs)",
    };
    (time, rss, p99)
}

/// The time axis both panels share, in minutes from 0 to `max`.
struct Time {
    max: f64,
}

impl Time {
    /// The x position of a time in minutes.
    fn px(&self, minutes: f64) -> f64 {
        L + minutes / self.max * (W - L - R)
    }

    /// The tick labels and the axis title under the lower panel, whose bottom is at `y`.
    fn labels(&self, s: &mut String, y: f64) {
        for (m, label) in ticks(self.max) {
            let _ = writeln!(
                s,
                r#"<text x="{:.1}" y="{}" text-anchor="middle">{label}</text>"#,
                self.px(m),
                y + 18.0
            );
        }
        let _ = writeln!(
            s,
            r#"<text x="{}" y="{}" text-anchor="middle">minutes since the load began</text>"#,
            (L + W - R) / 2.0,
            y + 40.0
        );
    }
}

/// One panel: where its top is, the value at its top (its bottom is 0), and its title.
struct Panel {
    top: f64,
    y_max: f64,
    title: &'static str,
}

impl Panel {
    /// The y position of a value.
    fn py(&self, v: f64) -> f64 {
        self.top + (1.0 - v / self.y_max) * PANEL
    }

    fn bottom(&self) -> f64 {
        self.top + PANEL
    }

    /// The title, the grid with the value labels, and the border.
    fn frame(&self, s: &mut String, time: &Time) {
        let (top, bottom, right) = (self.top, self.bottom(), W - R);
        let _ = writeln!(
            s,
            r#"<text x="{L}" y="{}" font-size="13">{}</text>"#,
            top - 10.0,
            self.title
        );
        for (v, label) in ticks(self.y_max) {
            let y = self.py(v);
            let _ = writeln!(
                s,
                r##"<line x1="{L}" y1="{y:.1}" x2="{right}" y2="{y:.1}" stroke="#ddd"/><text x="{}" y="{:.1}" text-anchor="end">{label}</text>"##,
                L - 6.0,
                y + 4.0
            );
        }
        for (m, _) in ticks(time.max) {
            let x = time.px(m);
            let _ = writeln!(
                s,
                r##"<line x1="{x:.1}" y1="{top}" x2="{x:.1}" y2="{bottom}" stroke="#ddd"/>"##
            );
        }
        let _ = writeln!(
            s,
            r##"<rect x="{L}" y="{top}" width="{}" height="{PANEL}" fill="none" stroke="#999"/>"##,
            W - L - R
        );
    }
}

/// The warm-up's end, dashed across both panels, labelled in the upper one.
fn warmup(s: &mut String, warmup_s: f64, time: &Time, panels: [&Panel; 2]) {
    let x = time.px(warmup_s / 60.0);
    for p in panels {
        let _ = writeln!(
            s,
            r#"<line x1="{x:.1}" y1="{}" x2="{x:.1}" y2="{}" stroke="{WARMUP_COLOR}" stroke-width="1.5" stroke-dasharray="6 4"/>"#,
            p.top,
            p.bottom()
        );
    }
    let _ = writeln!(
        s,
        r#"<text x="{:.1}" y="{}" fill="{WARMUP_COLOR}">end of warm-up</text>"#,
        x + 4.0,
        panels[0].top + 14.0
    );
}

/// One memory line per process, its limit dashed from its baseline on, and their legend.
fn rss_lines(s: &mut String, soak: &Soak, time: &Time, panel: &Panel) {
    for (i, g) in soak.verdict.processes.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let points: Vec<String> = soak
            .samples
            .iter()
            .filter_map(|x| {
                let mb = x.rss_mb.get(&g.process).filter(|mb| mb.is_finite())?;
                Some(format!(
                    "{:.1},{:.1}",
                    time.px(x.end_s / 60.0),
                    panel.py(*mb)
                ))
            })
            .collect();
        polyline(s, color, &points);
        let limit = g.baseline_mb * (1.0 + RSS_GROWTH_LIMIT);
        if limit.is_finite() {
            let y = panel.py(limit);
            let _ = writeln!(
                s,
                r#"<line x1="{:.1}" y1="{y:.1}" x2="{}" y2="{y:.1}" stroke="{color}" stroke-dasharray="4 3"/>"#,
                time.px(g.baseline_at_s / 60.0),
                W - R
            );
        }
        let name = escape(&g.process);
        let y = panel.top + 10.0 + 32.0 * i as f64;
        legend(s, y, color, &name, false);
        let limit_text = format!("{name}: baseline + {:.0} %", RSS_GROWTH_LIMIT * 100.0);
        legend(s, y + 16.0, color, &limit_text, true);
    }
}

/// The p99 latency of each interval, and its legend.
fn p99_line(s: &mut String, soak: &Soak, time: &Time, panel: &Panel) {
    let points: Vec<String> = soak
        .samples
        .iter()
        .filter_map(|x| {
            let us = x.p99_us.filter(|us| us.is_finite())?;
            Some(format!(
                "{:.1},{:.1}",
                time.px(x.end_s / 60.0),
                panel.py(us)
            ))
        })
        .collect();
    polyline(s, P99_COLOR, &points);
    legend(
        s,
        panel.top + 10.0,
        P99_COLOR,
        "p99 of each interval",
        false,
    );
}

fn polyline(s: &mut String, color: &str, points: &[String]) {
    let _ = writeln!(
        s,
        r#"<polyline fill="none" stroke="{color}" stroke-width="2" points="{}"/>"#,
        points.join(" ")
    );
}

/// A legend entry right of the panels: a line sample (dashed or solid) and its text.
fn legend(s: &mut String, y: f64, color: &str, text: &str, dashed: bool) {
    let dash = if dashed {
        r#" stroke-dasharray="4 3""#
    } else {
        ""
    };
    let (x1, x2, tx) = (W - R + 15.0, W - R + 35.0, W - R + 42.0);
    let _ = writeln!(
        s,
        r#"<line x1="{x1}" y1="{y:.1}" x2="{x2}" y2="{y:.1}" stroke="{color}" stroke-width="2"{dash}/><text x="{tx}" y="{:.1}">{text}</text>"#,
        y + 4.0
    );
}

/// A round step for about five ticks from 0 to `max`: 1, 2 or 5 times a power of ten.
fn step(max: f64) -> f64 {
    let raw = max / 5.0;
    let magnitude = 10f64.powf(raw.log10().floor());
    // The slack keeps a step that is exactly right (0.2 for 1.0) from losing to rounding.
    [1.0, 2.0, 5.0]
        .into_iter()
        .map(|m| m * magnitude)
        .find(|s| *s >= raw * (1.0 - 1e-9))
        .unwrap_or(10.0 * magnitude)
}

/// `max` rounded up to a whole number of steps; 1 when there is nothing to show.
fn nice_max(max: f64) -> f64 {
    if max.is_finite() && max > 0.0 {
        let step = step(max);
        (max / step).ceil() * step
    } else {
        1.0
    }
}

/// The ticks from 0 to `max` (positive) with their labels, as many decimals as the step needs.
fn ticks(max: f64) -> Vec<(f64, String)> {
    let step = step(max);
    let decimals = (-step.log10().floor()).max(0.0) as usize;
    let n = (max / step + 1e-9).floor() as usize;
    (0..=n)
        .map(|k| {
            let v = k as f64 * step;
            (v, format!("{v:.decimals$}"))
        })
        .collect()
}

/// Text made safe to put in SVG.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_axes() {
        assert_eq!(nice_max(10.0), 10.0);
        assert_eq!(nice_max(10.5), 15.0);
        assert_eq!(nice_max(0.0), 1.0);
        let labels: Vec<String> = ticks(10.0).into_iter().map(|(_, l)| l).collect();
        assert_eq!(labels, ["0", "2", "4", "6", "8", "10"]);
        let labels: Vec<String> = ticks(1.0).into_iter().map(|(_, l)| l).collect();
        assert_eq!(labels, ["0.0", "0.2", "0.4", "0.6", "0.8", "1.0"]);
    }
}
