//! When reminders and jobs fire: the time forms daprd takes for `dueTime`, `period` and `ttl`,
//! and the firings they make.
//!
//! - `dueTime` and `ttl`: a Go duration (`15s`, `1h30m`), an ISO 8601 duration (`PT15S`, `P1D`;
//!   no repetitions) counted from when the reminder was made, or an RFC 3339 time.
//! - `period`: a Go duration, or an ISO 8601 duration with optional repetitions (`R5/PT10S`:
//!   five firings in all). Years, months, weeks and days are calendar steps (`P1M` from January
//!   31st is the end of February).
//!
//! Unlike daprd's reader, which skips characters it does not know and digits without a unit,
//! these refuse them (`PT10`, `P1X`), so a typo is an error rather than a shorter period.

use std::time::Duration;

use chrono::{DateTime, Months, Utc};

use crate::pubsub::cloudevent::go_duration;

/// A period between firings, with how many firings in all when bounded.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Period {
    /// Calendar months (years count twelve).
    pub months: u32,
    /// Calendar days (weeks count seven).
    pub days: u32,
    /// The rest: hours, minutes, seconds.
    pub time: Duration,
    /// Firings in all (`R<n>/`), when bounded.
    pub repetitions: Option<u32>,
}

impl Period {
    /// Reads a `period`; the error quotes the value.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if text.starts_with(['R', 'P']) {
            return iso8601(text);
        }
        match go_duration(text) {
            Some(time) => Ok(Self {
                time,
                ..Self::default()
            }),
            None => Err(format!(
                "{text:?} is neither a Go duration (1h30m) nor an ISO 8601 duration (R5/PT10S)"
            )),
        }
    }

    /// Whether it never moves time on: such a period fires once.
    pub fn is_zero(&self) -> bool {
        self.months == 0 && self.days == 0 && self.time.is_zero()
    }

    /// The firing one period after `t` (`None` past the calendar's end).
    pub fn after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let t = t.checked_add_months(Months::new(self.months))?;
        let t = t.checked_add_days(chrono::Days::new(u64::from(self.days)))?;
        t.checked_add_signed(chrono::TimeDelta::from_std(self.time).ok()?)
    }
}

/// ISO 8601: `[R<n>/]P[<n>Y][<n>M][<n>W][<n>D][T[<n>H][<n>M][<n>S]]`, at least one part.
fn iso8601(text: &str) -> Result<Period, String> {
    let bad = |why: &str| format!("{text:?} is not an ISO 8601 duration: {why}");
    let (repetitions, rest) = match text.strip_prefix('R') {
        Some(r) => {
            let (n, rest) = r
                .split_once('/')
                .ok_or_else(|| bad("R<n> is followed by '/'"))?;
            let n: u32 = n.parse().map_err(|_| bad("R takes a whole number"))?;
            (Some(n), rest)
        }
        None => (None, text),
    };
    let body = rest
        .strip_prefix('P')
        .ok_or_else(|| bad("it starts with P"))?;
    let (date, time) = match body.split_once('T') {
        Some((_, "")) => return Err(bad("T is followed by a time")),
        Some((d, t)) => (d, Some(t)),
        None => (body, None),
    };
    let mut p = Period {
        repetitions,
        ..Period::default()
    };
    let mut parts = 0;
    for (n, unit) in fields(date).map_err(|why| bad(&why))? {
        parts += 1;
        match unit {
            'Y' => p.months = p.months.saturating_add(n.saturating_mul(12)),
            'M' => p.months = p.months.saturating_add(n),
            'W' => p.days = p.days.saturating_add(n.saturating_mul(7)),
            'D' => p.days = p.days.saturating_add(n),
            other => return Err(bad(&format!("{other} is not a date unit (Y, M, W, D)"))),
        }
    }
    for (n, unit) in fields(time.unwrap_or_default()).map_err(|why| bad(&why))? {
        parts += 1;
        let secs = match unit {
            'H' => 3600,
            'M' => 60,
            'S' => 1,
            other => return Err(bad(&format!("{other} is not a time unit (H, M, S)"))),
        };
        p.time += Duration::from_secs(u64::from(n) * secs);
    }
    // A bare repetition count (`R5/`) is no period; `P` alone says nothing.
    if parts == 0 {
        return Err(bad(
            "it names no years, months, weeks, days, hours, minutes or seconds",
        ));
    }
    Ok(p)
}

/// `12D3H` as `[(12, 'D'), (3, 'H')]`; digits without a unit, or a unit without digits, are
/// refused.
fn fields(s: &str) -> Result<Vec<(u32, char)>, String> {
    let mut out = Vec::new();
    let mut digits = String::new();
    for c in s.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        if digits.is_empty() {
            return Err(format!("{c} has no number before it"));
        }
        let n = digits
            .parse()
            .map_err(|_| format!("{digits} is too large"))?;
        out.push((n, c));
        digits.clear();
    }
    if !digits.is_empty() {
        return Err(format!("{digits} has no unit after it"));
    }
    Ok(out)
}

/// Reads a `dueTime` or `ttl` made at `now`: a Go duration, an ISO 8601 duration (no
/// repetitions) from `now`, or an RFC 3339 time.
pub fn parse_time(text: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, String> {
    let text = text.trim();
    if text.starts_with(['R', 'P']) {
        let p = iso8601(text)?;
        if p.repetitions.is_some() {
            return Err(format!("{text:?}: repetitions are not allowed here"));
        }
        return p
            .after(now)
            .ok_or_else(|| format!("{text:?} is past the calendar's end"));
    }
    if let Some(d) = go_duration(text) {
        let d = chrono::TimeDelta::from_std(d).map_err(|_| format!("{text:?} is too long"))?;
        return now
            .checked_add_signed(d)
            .ok_or_else(|| format!("{text:?} is too long"));
    }
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| format!("{text:?} is neither a duration (15s, PT15S) nor an RFC 3339 time"))
}

/// When a reminder or job fires: first at `due`, then every `period` until its repetitions are
/// spent or `expires` has passed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Firings {
    /// The first firing.
    pub due: DateTime<Utc>,
    /// The period, if it repeats.
    pub period: Option<Period>,
    /// No firing at or after this time.
    pub expires: Option<DateTime<Utc>>,
}

impl Firings {
    /// The firing after the `fired`-th one (counting from 1) at `last`; the first when `fired`
    /// is 0. `None` when there is no more.
    pub fn next(&self, fired: u32, last: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let at = if fired == 0 {
            self.due
        } else {
            let period = self.period.filter(|p| !p.is_zero())?;
            if period.repetitions.is_some_and(|n| fired >= n) {
                return None;
            }
            period.after(last)?
        };
        if self.expires.is_some_and(|e| at >= e) {
            return None;
        }
        if fired == 0 && self.period.and_then(|p| p.repetitions) == Some(0) {
            return None;
        }
        Some(at)
    }
}

/// Which field of a timer, reminder or job was malformed, and why.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    /// `dueTime`.
    #[error("error parsing due time: {0}")]
    DueTime(String),
    /// `period`.
    #[error("invalid period: {0}")]
    Period(String),
    /// `ttl`.
    #[error("error parsing TTL: {0}")]
    Ttl(String),
    /// `R0/…`: no firing at all.
    #[error("invalid period: has zero repetitions")]
    ZeroRepetitions,
    /// The TTL ends before the first firing.
    #[error("it has already expired: the first firing is due at {due}, the TTL ends at {ttl}")]
    Expired {
        /// The first firing.
        due: DateTime<Utc>,
        /// The end of the TTL.
        ttl: DateTime<Utc>,
    },
}

impl Firings {
    /// The firings of a timer, reminder or job made at `now` from its `dueTime`, `period` and
    /// `ttl` as given (empty: not set). An empty `dueTime` is now; a TTL given as a duration
    /// counts from the first firing when `ttl_from_due` (timers), else from `now`.
    pub fn from_request(
        due_time: &str,
        period: &str,
        ttl: &str,
        now: DateTime<Utc>,
        ttl_from_due: bool,
    ) -> Result<Self, ScheduleError> {
        let due = match due_time.trim() {
            "" => now,
            t => parse_time(t, now).map_err(ScheduleError::DueTime)?,
        };
        let period = match period.trim() {
            "" => None,
            p => Some(Period::parse(p).map_err(ScheduleError::Period)?),
        };
        if period.and_then(|p| p.repetitions) == Some(0) {
            return Err(ScheduleError::ZeroRepetitions);
        }
        let expires = match ttl.trim() {
            "" => None,
            t => Some(
                parse_time(t, if ttl_from_due { due } else { now }).map_err(ScheduleError::Ttl)?,
            ),
        };
        if let Some(e) = expires
            && e < due
        {
            return Err(ScheduleError::Expired { due, ttl: e });
        }
        Ok(Self {
            due,
            period,
            expires,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn periods_in_every_form_daprd_takes() {
        let secs = |s| Duration::from_secs(s);
        let cases = [
            (
                "15s",
                Period {
                    time: secs(15),
                    ..Period::default()
                },
            ),
            (
                "1h30m",
                Period {
                    time: secs(5400),
                    ..Period::default()
                },
            ),
            (
                "PT10S",
                Period {
                    time: secs(10),
                    ..Period::default()
                },
            ),
            (
                "R5/PT10S",
                Period {
                    time: secs(10),
                    repetitions: Some(5),
                    ..Period::default()
                },
            ),
            (
                "P1Y2M3W4DT5H6M7S",
                Period {
                    months: 14,
                    days: 25,
                    time: secs(5 * 3600 + 6 * 60 + 7),
                    repetitions: None,
                },
            ),
            (
                "PT1M",
                Period {
                    time: secs(60),
                    ..Period::default()
                },
            ),
            (
                "P1M",
                Period {
                    months: 1,
                    ..Period::default()
                },
            ),
        ];
        for (text, want) in cases {
            assert_eq!(Period::parse(text), Ok(want), "{text}");
        }
        for bad in [
            "", "P", "PT", "PT10", "P1X", "PT1D", "P1H", "R/PT1S", "Rx/PT1S", "R5", "R5/", "soon",
            "-1s", "PTS",
        ] {
            assert!(Period::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn calendar_steps_keep_to_the_calendar() {
        let month = Period::parse("P1M").unwrap();
        assert_eq!(
            month.after(t("2024-01-31T00:00:00Z")),
            Some(t("2024-02-29T00:00:00Z"))
        );
        let day = Period::parse("P1DT1H").unwrap();
        assert_eq!(
            day.after(t("2024-03-01T23:30:00Z")),
            Some(t("2024-03-03T00:30:00Z"))
        );
    }

    #[test]
    fn due_and_ttl_times() {
        let now = t("2024-05-01T12:00:00Z");
        assert_eq!(parse_time("90s", now), Ok(t("2024-05-01T12:01:30Z")));
        assert_eq!(parse_time("PT1H", now), Ok(t("2024-05-01T13:00:00Z")));
        assert_eq!(
            parse_time("2024-06-01T00:00:00+02:00", now),
            Ok(t("2024-05-31T22:00:00Z"))
        );
        assert!(
            parse_time("R2/PT1S", now)
                .unwrap_err()
                .contains("repetitions")
        );
        assert!(parse_time("tomorrow", now).is_err());
    }

    #[test]
    fn firings_honour_repetitions_and_expiry() {
        let due = t("2024-05-01T12:00:00Z");
        let every = |p: &str, expires: Option<&str>| Firings {
            due,
            period: Some(Period::parse(p).unwrap()),
            expires: expires.map(t),
        };
        let f = every("R3/PT10S", None);
        let mut at = f.next(0, due).unwrap();
        let mut fired = vec![at];
        while let Some(next) = f.next(fired.len() as u32, at) {
            at = next;
            fired.push(at);
        }
        assert_eq!(
            fired,
            [due, t("2024-05-01T12:00:10Z"), t("2024-05-01T12:00:20Z")]
        );
        let f = every("10s", Some("2024-05-01T12:00:25Z"));
        assert_eq!(
            f.next(2, t("2024-05-01T12:00:10Z")),
            Some(t("2024-05-01T12:00:20Z"))
        );
        assert_eq!(f.next(3, t("2024-05-01T12:00:20Z")), None, "past its ttl");
        let once = Firings {
            due,
            period: None,
            expires: None,
        };
        assert_eq!((once.next(0, due), once.next(1, due)), (Some(due), None));
        assert_eq!(
            every("R0/PT1S", None).next(0, due),
            None,
            "no firing at all"
        );
    }
}
