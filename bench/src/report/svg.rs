//! The latency plot of a run as SVG: latency by percentile, HdrHistogram style (the x axis
//! spreads the tail), one line per fixed-rate cell, both axes logarithmic.

use std::fmt::Write as _;

use super::Results;

const W: f64 = 900.0;
const H: f64 = 520.0;
/// Margins: left, right (room for the legend), top, bottom.
const L: f64 = 70.0;
const R: f64 = 230.0;
const T: f64 = 30.0;
const B: f64 = 50.0;

const COLORS: [&str; 10] = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
    "#bcbd22", "#17becf",
];

/// A latency-by-percentile plot (HdrHistogram style: the x axis spreads the tail) of every
/// fixed-rate cell, as SVG.
pub fn svg(results: &Results) -> String {
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
    let y_max = series
        .iter()
        .flat_map(|(_, s)| s.iter().filter(|(p, _)| *p <= 99.999).map(|(_, v)| *v))
        .fold(1.0, f64::max);
    let plot = Plot {
        y_lo: 1.0f64.log10(),
        y_hi: (y_max * 1.2).log10(),
    };
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
    plot.axes(&mut s);
    plot.lines(&mut s, &series);
    let _ = writeln!(s, "</svg>");
    s
}

/// The plot's latency range, as log10 of microseconds.
struct Plot {
    y_lo: f64,
    y_hi: f64,
}

impl Plot {
    /// The x position of log10(1 / (1 - p)), from 0 (p0) to 5 (p99.999).
    fn px(&self, x: f64) -> f64 {
        L + x / 5.0 * (W - L - R)
    }

    /// The y position of a latency in microseconds.
    fn py(&self, us: f64) -> f64 {
        T + (1.0 - (us.max(1.0).log10() - self.y_lo) / (self.y_hi - self.y_lo)) * (H - T - B)
    }

    /// The grid lines with their labels: percentiles across, powers of ten up.
    fn axes(&self, s: &mut String) {
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
                self.px(x),
                H - B,
                H - B + 18.0
            );
        }
        let mut tick = 1.0;
        while tick <= 10f64.powf(self.y_hi) {
            let label = if tick >= 1000.0 {
                format!("{} ms", tick / 1000.0)
            } else {
                format!("{tick} µs")
            };
            let _ = writeln!(
                s,
                r##"<line x1="{L}" y1="{0}" x2="{1}" y2="{0}" stroke="#ddd"/><text x="{2}" y="{3}" text-anchor="end">{label}</text>"##,
                self.py(tick),
                W - R,
                L - 6.0,
                self.py(tick) + 4.0
            );
            tick *= 10.0;
        }
    }

    /// One line per cell, with its entry in the legend.
    fn lines(&self, s: &mut String, series: &[(&str, &Vec<(f64, f64)>)]) {
        // x: log10(1 / (1 - p)), from 0 (p0) to 5 (p99.999).
        let x_of = |p: f64| (1.0 / (1.0 - (p / 100.0).min(0.99999))).log10();
        for (i, (name, spectrum)) in series.iter().enumerate() {
            let color = COLORS[i % COLORS.len()];
            let points: Vec<String> = spectrum
                .iter()
                .filter(|(p, _)| *p <= 99.999)
                .map(|(p, us)| format!("{:.1},{:.1}", self.px(x_of(*p)), self.py(*us)))
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
    }
}
