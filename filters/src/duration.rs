//! Durations as Dapr's YAML writes them: Go's `time.ParseDuration` form.

use std::time::Duration;

/// A Go duration (`300ms`, `1.5h`, `2h45m`): decimal numbers each with a unit (`ns`, `us`/`µs`,
/// `ms`, `s`, `m`, `h`). `0` alone is zero. Negative, empty, unitless or beyond Go's range
/// (about 292 years) gives `None`.
pub fn go_duration(v: &str) -> Option<Duration> {
    let v = v.trim();
    if v == "0" {
        return Some(Duration::ZERO);
    }
    let mut rest = v.strip_prefix('+').unwrap_or(v);
    if rest.is_empty() {
        return None;
    }
    let mut total = 0f64;
    while !rest.is_empty() {
        let split = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (number, tail) = rest.split_at(split);
        let number: f64 = number.parse().ok()?;
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_len);
        total += number
            * match unit {
                "ns" => 1e-9,
                "us" | "µs" | "μs" => 1e-6,
                "ms" => 1e-3,
                "s" => 1.0,
                "m" => 60.0,
                "h" => 3600.0,
                _ => return None,
            };
        rest = tail;
    }
    (total.is_finite() && total < 9.2e9).then(|| Duration::from_secs_f64(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        let ms = Duration::from_millis;
        for (v, want) in [
            ("0", ms(0)),
            ("5s", ms(5000)),
            ("1m30s", ms(90_000)),
            ("1.5h", ms(5_400_000)),
            ("250ms", ms(250)),
            ("2h45m", ms(9_900_000)),
            (" 15s ", ms(15_000)),
        ] {
            assert_eq!(go_duration(v), Some(want), "{v:?}");
        }
        for bad in ["", "5", "soon", "5d", "-1s", "1..5s", "s", "9999999999999h"] {
            assert_eq!(go_duration(bad), None, "{bad:?}");
        }
    }
}
