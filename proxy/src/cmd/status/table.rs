//! The terminal tables of `outrider status` and `outrider top`: at most [`WIDTH`] columns, the
//! text columns cut (with `…`) before anything else gives way.

use crate::telemetry::traffic::Rates;

use super::Found;

/// The widest line printed.
pub(super) const WIDTH: usize = 100;

/// A column: its header, whether numbers (right-aligned), and the narrowest it may be cut to
/// (0: never cut).
struct Column {
    header: &'static str,
    right: bool,
    cut_to: usize,
}

const fn col(header: &'static str, right: bool, cut_to: usize) -> Column {
    Column {
        header,
        right,
        cut_to,
    }
}

/// Lays `rows` out under `columns`, within [`WIDTH`].
fn render(columns: &[Column], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = columns
        .iter()
        .enumerate()
        .map(|(i, c)| {
            rows.iter()
                .map(|r| r[i].chars().count())
                .chain([c.header.len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let total =
        |widths: &[usize], gap: usize| widths.iter().sum::<usize>() + gap * (widths.len() - 1);
    let gap = if total(&widths, 2) <= WIDTH { 2 } else { 1 };
    // Cut the text columns, widest first, until the line fits.
    while total(&widths, gap) > WIDTH {
        let Some(i) = (0..columns.len())
            .filter(|i| columns[*i].cut_to > 0 && widths[*i] > columns[*i].cut_to)
            .max_by_key(|i| widths[*i])
        else {
            break;
        };
        widths[i] -= 1;
    }
    let mut out = String::new();
    let headers: Vec<String> = columns.iter().map(|c| c.header.to_owned()).collect();
    for row in std::iter::once(&headers).chain(rows) {
        let cells: Vec<String> = (columns.iter().zip(row).zip(&widths))
            .map(|((c, v), w)| {
                let v = cut(v, *w);
                if c.right {
                    format!("{v:>w$}")
                } else {
                    format!("{v:<w$}")
                }
            })
            .collect();
        out += cells.join(&" ".repeat(gap)).trim_end();
        out.push('\n');
    }
    out
}

/// `s` in at most `w` characters, its end replaced by `…` when cut.
fn cut(s: &str, w: usize) -> String {
    if s.chars().count() <= w {
        return s.to_owned();
    }
    let mut t: String = s.chars().take(w.saturating_sub(1)).collect();
    t.push('…');
    t
}

/// `outrider status`'s table.
pub(super) fn sidecars(found: &[Found], rates: &[Result<Rates, String>]) -> String {
    let columns = [
        col("APP ID", false, 8),
        col("NAMESPACE", false, 7),
        col("HTTP", true, 0),
        col("GRPC", true, 0),
        col("ADMIN", true, 0),
        col("APP", true, 0),
        col("PID", true, 0),
        col("UPTIME", true, 0),
        col("RPS", true, 0),
        col("SUCCESS", true, 0),
        col("P50", true, 0),
        col("P99", true, 0),
    ];
    let port = |p: Option<u16>| p.map_or_else(|| "-".to_owned(), |p| p.to_string());
    let rows: Vec<Vec<String>> = (found.iter().zip(rates))
        .map(|(f, r)| {
            let mut row = vec![
                f.app_id.clone(),
                f.namespace.clone(),
                port(f.ports.http),
                port(f.ports.grpc),
                port(f.ports.admin),
                port(f.ports.app),
                f.pid.map_or_else(|| "-".to_owned(), |p| p.to_string()),
                f.uptime().map_or_else(|| "-".to_owned(), age),
            ];
            row.extend(rate_cells(r.as_ref().ok()));
            row
        })
        .collect();
    let mut out = render(&columns, &rows);
    for (f, r) in found.iter().zip(rates) {
        if let Err(e) = r {
            out += &cut(&format!("{}: no figures: {e}", f.app_id), WIDTH);
            out.push('\n');
        }
    }
    out
}

/// `outrider top`'s table: one row per key, busiest first.
pub(super) fn routes(rows: &[(String, String, Rates)]) -> String {
    let columns = [
        col("KIND", false, 0),
        col("NAME", false, 12),
        col("RPS", true, 0),
        col("SUCCESS", true, 0),
        col("P50", true, 0),
        col("P99", true, 0),
    ];
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|(kind, name, r)| {
            let mut row = vec![kind.clone(), name.clone()];
            row.extend(rate_cells(Some(r)));
            row
        })
        .collect();
    render(&columns, &rows)
}

/// Requests per second, success and percentiles; `-` where unknown.
fn rate_cells(r: Option<&Rates>) -> [String; 4] {
    let Some(r) = r else {
        return ["-".into(), "-".into(), "-".into(), "-".into()];
    };
    let rps = if r.rps >= 1000.0 {
        format!("{:.1}k", r.rps / 1000.0)
    } else {
        format!("{:.1}", r.rps)
    };
    let success = r.success().map_or_else(
        || "-".to_owned(),
        |s| {
            if s >= 1.0 {
                "100%".to_owned()
            } else {
                format!("{:.1}%", s * 100.0)
            }
        },
    );
    [rps, success, latency(r.p50), latency(r.p99)]
}

fn latency(ms: Option<f64>) -> String {
    match ms {
        None => "-".to_owned(),
        Some(v) if v >= 1000.0 => format!("{:.1}s", v / 1000.0),
        Some(v) if v >= 10.0 => format!("{v:.0}ms"),
        Some(v) => format!("{v:.1}ms"),
    }
}

/// An age as a terminal shows it: `42s`, `5m`, `3h12m`, `2d4h`.
fn age(secs: u64) -> String {
    match secs {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m", s / 60),
        s if s < 86_400 => format!("{}h{}m", s / 3600, s % 3600 / 60),
        s => format!("{}d{}h", s / 86_400, s % 86_400 / 3600),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use outrider_discovery::local::Ports;

    fn found(app: &str, ns: &str) -> Found {
        Found {
            app_id: app.into(),
            namespace: ns.into(),
            mesh: "127.0.0.1:50002".parse().unwrap(),
            ports: Ports {
                http: Some(35000),
                grpc: Some(50001),
                admin: Some(65535),
                app: Some(7001),
            },
            pid: Some(4_194_303),
            started_at: Some(0),
            source: "local",
        }
    }

    #[test]
    fn the_table_fits_100_columns_whatever_the_names() {
        let rates = Rates {
            count: 12_345_678.0,
            rps: 123_456.7,
            errors: 1.0,
            p50: Some(12_345.0),
            p99: Some(99_999.0),
        };
        let long = "an-app-id-as-long-as-kubernetes-allows-which-is-sixty-three-characters-x";
        let all = vec![
            found("order", "default"),
            found(long, "a-namespace-of-some-length-too"),
        ];
        let out = sidecars(&all, &[Ok(rates), Err("connecting: refused".repeat(20))]);
        for line in out.lines() {
            assert!(
                line.chars().count() <= WIDTH,
                "{} columns: {line}",
                line.chars().count()
            );
        }
        let lines: Vec<&str> = out.lines().collect();
        assert!(lines[0].starts_with("APP ID"), "{out}");
        assert!(
            lines[1].starts_with("order "),
            "short names are whole: {out}"
        );
        assert!(lines[2].contains('…'), "long names are cut: {out}");
        assert!(
            lines[1].contains("123.5k") && lines[1].contains("12.3s"),
            "{out}"
        );
        assert!(
            lines[3].starts_with(&long[..8]),
            "why the figures are missing: {out}"
        );
    }

    #[test]
    fn figures_read_as_a_terminal_shows_them() {
        assert_eq!(age(59), "59s");
        assert_eq!(age(3 * 3600 + 12 * 60), "3h12m");
        assert_eq!(age(2 * 86_400 + 4 * 3600), "2d4h");
        assert_eq!(latency(Some(0.42)), "0.4ms");
        assert_eq!(latency(Some(42.4)), "42ms");
        assert_eq!(latency(Some(2500.0)), "2.5s");
        let r = Rates {
            count: 200.0,
            rps: 100.0,
            errors: 1.0,
            p50: None,
            p99: Some(3.0),
        };
        assert_eq!(
            rate_cells(Some(&r)),
            ["100.0", "99.5%", "-", "3.0ms"].map(String::from)
        );
        assert_eq!(rate_cells(None), ["-", "-", "-", "-"].map(String::from));
    }
}
