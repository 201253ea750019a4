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
    assert!(
        !r.keys().any(|k| k.contains("h3/h2")),
        "no transport cells: no h3/h2 ratio"
    );
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

#[test]
fn h3_against_h2_ratios() {
    let cells = vec![
        load_cell("direct", 1, None, 100.0, 1000.0),
        load_cell("two-hop/outrider-mtls", 1, Some("direct"), 300.0, 1000.0),
        load_cell("two-hop/outrider-h3", 1, Some("direct"), 250.0, 1000.0),
        load_cell("lossy-two-hop/outrider-h2", 1, None, 800.0, 1000.0),
        load_cell("lossy-two-hop/outrider-h3", 1, None, 600.0, 1000.0),
    ];
    let r = ratios(&summarize(&cells));
    // Added p50: 150 against 200; p99: 1000 - 400 = 600 against 1200 - 400 = 800.
    assert_eq!(r["two-hop added p50 h3/h2"], 0.75);
    assert_eq!(r["two-hop added p99 h3/h2"], 0.75);
    // Whole percentiles: 600 against 800, and 2400 against 3200.
    assert_eq!(r["lossy-two-hop p50 h3/h2"], 0.75);
    assert_eq!(r["lossy-two-hop p99 h3/h2"], 0.75);
}

fn figure_cell(name: &str, value: f64) -> Cell {
    Cell {
        cell: name.into(),
        repeat: 1,
        baseline: None,
        load: None,
        figure: Some(Figure {
            value,
            unit: "instructions/req".into(),
        }),
    }
}

#[test]
fn instruction_ratios() {
    let cells = vec![
        figure_cell("instructions/one-hop/outrider", 30_000.0),
        figure_cell("instructions/one-hop/haproxy", 40_000.0),
        figure_cell("instructions/one-hop/pingora", 60_000.0),
        figure_cell("instructions/two-hop/outrider-mtls", 90_000.0),
        figure_cell("instructions/two-hop/haproxy-tls", 120_000.0),
    ];
    let r = ratios(&summarize(&cells));
    assert_eq!(r["one-hop instructions per request outrider/haproxy"], 0.75);
    assert_eq!(r["one-hop instructions per request outrider/pingora"], 0.5);
    assert_eq!(r["two-hop instructions per request outrider/haproxy"], 0.75);
    assert!(
        !r.contains_key("one-hop instructions per request outrider/nginx"),
        "no nginx cell: no ratio"
    );
}
