//! Times and durations in the text forms Go prints them, which daprd's bindings send: a
//! `time.Time`'s `String()`, RFC 3339 with nanoseconds, and a `time.Duration`'s `String()`.

use std::time::Duration;

use chrono::{DateTime, Utc};

/// The nanoseconds of a second as Go prints a fraction: `.5`, `.123456789`, nothing for none.
fn fraction(nanos: u32) -> String {
    if nanos == 0 {
        return String::new();
    }
    let digits = format!("{nanos:09}");
    format!(".{}", digits.trim_end_matches('0'))
}

/// `time.Time.String()` of a UTC time: `2024-05-01 12:00:00.123456789 +0000 UTC`.
pub(crate) fn time_text(t: DateTime<Utc>) -> String {
    let fraction = fraction(t.timestamp_subsec_nanos());
    format!("{}{fraction} +0000 UTC", t.format("%Y-%m-%d %H:%M:%S"))
}

/// `time.RFC3339Nano` of a UTC time: `2024-05-01T12:00:00.123456789Z`.
pub(crate) fn rfc3339_nano(t: DateTime<Utc>) -> String {
    let fraction = fraction(t.timestamp_subsec_nanos());
    format!("{}{fraction}Z", t.format("%Y-%m-%dT%H:%M:%S"))
}

/// `time.Duration.String()`: `0s`, `750ns`, `1.5µs`, `2.25ms`, `3.5s`, `1m30s`, `1h0m0s`.
pub fn duration_text(d: Duration) -> String {
    let n = d.as_nanos();
    let scaled = |unit: u128, width: usize, suffix: &str| {
        let (whole, rest) = (n / unit, n % unit);
        if rest == 0 {
            format!("{whole}{suffix}")
        } else {
            let digits = format!("{rest:0width$}");
            format!("{whole}.{}{suffix}", digits.trim_end_matches('0'))
        }
    };
    match n {
        0 => "0s".to_owned(),
        1..1_000 => format!("{n}ns"),
        1_000..1_000_000 => scaled(1_000, 3, "µs"),
        1_000_000..1_000_000_000 => scaled(1_000_000, 6, "ms"),
        _ => {
            let secs = n / 1_000_000_000;
            let (h, m) = (secs / 3600, secs / 60 % 60);
            let s = Duration::from_nanos(u64::try_from(n % 60_000_000_000).unwrap_or(0));
            let s = format!("{}{}s", s.as_secs(), fraction(s.subsec_nanos()));
            match (h, m) {
                (0, 0) => s,
                (0, m) => format!("{m}m{s}"),
                (h, m) => format!("{h}h{m}m{s}"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_as_go_prints_them() {
        let cases = [
            (Duration::ZERO, "0s"),
            (Duration::from_nanos(750), "750ns"),
            (Duration::from_nanos(1_500), "1.5µs"),
            (Duration::from_micros(2_250), "2.25ms"),
            (Duration::from_nanos(1_234_567), "1.234567ms"),
            (Duration::from_millis(3_500), "3.5s"),
            (Duration::from_secs(90), "1m30s"),
            (Duration::from_secs(3600), "1h0m0s"),
            (Duration::from_nanos(3_723_000_000_001), "1h2m3.000000001s"),
        ];
        for (d, want) in cases {
            assert_eq!(duration_text(d), want, "{d:?}");
        }
    }

    #[test]
    fn times_as_go_prints_them() {
        let t = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
        let cases = [
            (
                "2024-05-01T12:00:00.123456789Z",
                "2024-05-01 12:00:00.123456789 +0000 UTC",
            ),
            ("2024-05-01T12:00:00.5Z", "2024-05-01 12:00:00.5 +0000 UTC"),
            ("2024-05-01T12:00:00Z", "2024-05-01 12:00:00 +0000 UTC"),
        ];
        for (at, want) in cases {
            assert_eq!(time_text(t(at)), want);
        }
        assert_eq!(
            rfc3339_nano(t("2024-05-01T12:00:00.120Z")),
            "2024-05-01T12:00:00.12Z"
        );
        assert_eq!(
            rfc3339_nano(t("2024-05-01T12:00:00Z")),
            "2024-05-01T12:00:00Z"
        );
    }
}
