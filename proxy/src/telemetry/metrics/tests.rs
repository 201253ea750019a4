//! The catalogue's conventions, and that every metric is recorded through it.

use std::collections::BTreeSet;

use super::*;

#[test]
fn names_are_unique_and_follow_the_conventions() {
    let mut seen = BTreeSet::new();
    for m in ALL {
        assert!(seen.insert(m.name), "{} is catalogued twice", m.name);
        assert!(
            m.name.starts_with("dapr_") || m.name.starts_with("outrider_"),
            "{}",
            m.name
        );
        if m.kind == Counter && m.name.starts_with("outrider_") {
            assert!(m.name.ends_with("_total"), "{} counts: _total", m.name);
        }
        assert!(m.help.ends_with('.') || m.help.ends_with(')'), "{}", m.name);
    }
}

/// Every metric recorded in this crate's source is named through the catalogue: a literal
/// name in a recording macro would bypass it.
#[test]
fn no_metric_is_recorded_by_a_literal_name() {
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut bypassing = Vec::new();
    let mut dirs = vec![src];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            if path.ends_with("telemetry/metrics.rs")
                || path.ends_with("telemetry/metrics/tests.rs")
            {
                continue; // the catalogue itself
            }
            let text = std::fs::read_to_string(&path).unwrap();
            for macro_ in ["counter!(", "gauge!(", "histogram!("] {
                let literal = text
                    .match_indices(macro_)
                    .any(|(i, _)| text[i + macro_.len()..].trim_start().starts_with('"'));
                if literal {
                    bypassing.push(format!("{}: {macro_}", path.display()));
                }
            }
        }
    }
    assert!(bypassing.is_empty(), "{bypassing:#?}");
}
