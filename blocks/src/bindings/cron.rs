//! `bindings.cron`: an input binding that triggers the app on a schedule.
//!
//! `schedule` is a cron expression of 5 fields (minute granularity) or 6 (seconds first), a
//! descriptor (`@yearly`/`@annually`, `@monthly`, `@weekly`, `@daily`/`@midnight`, `@hourly`)
//! or `@every <Go duration>`, optionally behind a `CRON_TZ=<zone> ` (or `TZ=`) prefix; without
//! one, expressions are read in the sidecar's local time zone.
//!
//! Each tick is one event with no data and the metadata `timeZone` (`Local`, as daprd sends)
//! and `readTimeUTC` (the tick's time in Go's `time.Time` text form). Ticks never pile up: one
//! delivery runs at a time, and a tick that comes while one is still running, or while the
//! binding is paused, is skipped, never made up later. `@every` ticks keep their phase (start +
//! k × interval) however long each delivery takes. The app's answer changes nothing: a failed
//! tick is not delivered again.

use std::str::FromStr as _;
use std::time::Duration;

use chrono::{DateTime, Utc};
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};
use tokio::time::Instant;

use super::{BindingError, Handler, InputBinding, Message, Metadata, Subscription};
use crate::pubsub::cloudevent::go_duration;
use crate::state::BoxFuture;

/// When a cron binding ticks.
#[derive(Clone, Debug)]
pub enum Schedule {
    /// Every interval from the start (`@every 15s`).
    Every(Duration),
    /// A cron expression, in a zone or the local one.
    Cron {
        /// The expression.
        cron: Box<Cron>,
        /// The zone of a `CRON_TZ=` prefix.
        zone: Option<chrono_tz::Tz>,
    },
}

impl Schedule {
    /// Reads a schedule; the error says what is wrong with it.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if text.is_empty() {
            return Err("is empty".into());
        }
        let (zone, spec) = match text
            .strip_prefix("CRON_TZ=")
            .or_else(|| text.strip_prefix("TZ="))
        {
            Some(rest) => {
                let (name, spec) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
                let zone = chrono_tz::Tz::from_str(name)
                    .map_err(|_| format!("{name:?} is not a known time zone"))?;
                (Some(zone), spec.trim())
            }
            None => (None, text),
        };
        if let Some(interval) = every(spec) {
            if zone.is_some() {
                return Err("@every takes no time zone".into());
            }
            return interval.map(Schedule::Every);
        }
        let cron = cron_expression(spec)?;
        Ok(Schedule::Cron {
            cron: Box::new(cron),
            zone,
        })
    }

    /// The first tick strictly after `now`, for a cron expression; `None` when there is none
    /// (or for `@every`, which counts from its start instead).
    fn next_after(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let Schedule::Cron { cron, zone } = self else {
            return None;
        };
        let next = match zone {
            Some(z) => cron
                .find_next_occurrence(&now.with_timezone(z), false)
                .map(|t| t.with_timezone(&Utc)),
            None => cron
                .find_next_occurrence(&now.with_timezone(&chrono::Local), false)
                .map(|t| t.with_timezone(&Utc)),
        };
        next.ok()
    }
}

/// A cron expression of 5 fields, or 6 with seconds first, or a descriptor (`@daily`,
/// `@midnight`, …).
pub(crate) fn cron_expression(spec: &str) -> Result<Cron, String> {
    let spec = if spec.eq_ignore_ascii_case("@midnight") {
        "@daily"
    } else {
        spec
    };
    let fields = spec.split_whitespace().count();
    if !spec.starts_with('@') && !(5..=6).contains(&fields) {
        return Err(format!(
            "{spec:?} has {fields} fields; a schedule has 5 (minute hour day-of-month \
             month day-of-week) or 6 (seconds first)"
        ));
    }
    CronParser::builder()
        .seconds(Seconds::Optional)
        .year(Year::Disallowed)
        .build()
        .parse(spec)
        .map_err(|e| format!("{spec:?}: {e}"))
}

/// `@every <duration>`: `None` when `spec` is something else, else the interval or why not.
fn every(spec: &str) -> Option<Result<Duration, String>> {
    let (word, rest) = spec.split_once(char::is_whitespace).unwrap_or((spec, ""));
    if !word.eq_ignore_ascii_case("@every") {
        return None;
    }
    let rest = rest.trim();
    Some(match go_duration(rest) {
        Some(d) if !d.is_zero() => Ok(d),
        _ => Err(format!(
            "@every {rest:?}: the interval is a positive Go duration (`15s`, `1m30s`, `500ms`)"
        )),
    })
}

/// A cron input binding.
#[derive(Clone, Debug)]
pub struct CronBinding {
    schedule: Schedule,
}

impl CronBinding {
    /// A binding ticking on `schedule`.
    pub fn new(schedule: Schedule) -> Self {
        Self { schedule }
    }

    /// The binding a component's `schedule` describes.
    pub(crate) fn open(
        md: &crate::component::Settings,
    ) -> Result<Self, Vec<crate::ComponentError>> {
        let field = "spec.metadata.schedule";
        let schedule = md
            .get("schedule")
            .ok_or_else(|| crate::component::field_error(field, "is required"))?;
        let schedule =
            Schedule::parse(schedule).map_err(|e| crate::component::field_error(field, e))?;
        Ok(Self::new(schedule))
    }
}

impl InputBinding for CronBinding {
    fn read(&self, handler: Handler) -> BoxFuture<Result<Subscription, BindingError>> {
        let token = tokio_util::sync::CancellationToken::new();
        let tasks = tokio_util::task::TaskTracker::new();
        let (schedule, stop) = (self.schedule.clone(), token.clone());
        tasks.spawn(tick(schedule, handler, stop));
        Box::pin(async move { Ok(Subscription::tracked(token, tasks)) })
    }
}

/// Delivers one event per tick, one at a time, until `stop`; a delivery under way finishes.
async fn tick(schedule: Schedule, handler: Handler, stop: tokio_util::sync::CancellationToken) {
    let start = Instant::now();
    let mut last = start;
    let mut fired = DateTime::<Utc>::MIN_UTC;
    loop {
        let at = match &schedule {
            Schedule::Every(interval) => next_every(start, last.max(Instant::now()), *interval),
            Schedule::Cron { .. } => {
                let now = Utc::now();
                // Never the tick just fired again, should the clock read a little behind it.
                let Some(next) = schedule.next_after(now.max(fired)) else {
                    tracing::warn!("the schedule has no tick left; the cron binding stops");
                    return;
                };
                fired = next;
                let wait = (next - now).to_std().unwrap_or_default();
                Instant::now() + wait
            }
        };
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep_until(at) => {}
        }
        last = at;
        let outcome = handler(event(Utc::now())).await;
        if outcome != crate::pubsub::Outcome::Success {
            tracing::info!(
                ?outcome,
                "a cron tick was not handled by the app; it is not delivered again"
            );
        }
    }
}

/// The first tick of `start + k × interval` (k ≥ 1) after `now`.
fn next_every(start: Instant, now: Instant, interval: Duration) -> Instant {
    let elapsed = now.saturating_duration_since(start).as_nanos();
    let step = interval.as_nanos().max(1);
    let k = elapsed / step + 1;
    let offset = u64::try_from(step.saturating_mul(k)).unwrap_or(u64::MAX);
    start + Duration::from_nanos(offset)
}

/// One tick's event: no data, `timeZone` and `readTimeUTC`.
fn event(now: DateTime<Utc>) -> Message {
    let metadata = Metadata::from([
        ("timeZone".to_owned(), "Local".to_owned()),
        ("readTimeUTC".to_owned(), super::gotime::time_text(now)),
    ]);
    Message {
        topic: String::new(),
        data: bytes::Bytes::new(),
        metadata,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules_read_as_daprd_reads_them() {
        for ok in [
            "* * * * *",
            "*/5 * * * * *",
            "0 30 9 * * MON-FRI",
            "@hourly",
            "@daily",
            "@midnight",
            "@yearly",
            "@every 15s",
            "@every 1m30s",
            "@every 250ms",
            "CRON_TZ=Europe/Paris 0 9 * * *",
            "TZ=UTC @daily",
        ] {
            assert!(Schedule::parse(ok).is_ok(), "{ok}");
        }
        for (bad, says) in [
            ("", "is empty"),
            ("* * * *", "has 4 fields"),
            ("* * * * * * *", "has 7 fields"),
            ("61 * * * *", "61"),
            ("@every", "positive Go duration"),
            ("@every 0s", "positive Go duration"),
            ("@every -1s", "positive Go duration"),
            ("@every soon", "positive Go duration"),
            ("CRON_TZ=Mars/Base 0 9 * * *", "not a known time zone"),
            ("@sometimes", "@sometimes"),
        ] {
            let e = Schedule::parse(bad).expect_err(bad);
            assert!(e.contains(says), "{bad:?}: {e}");
        }
    }

    #[test]
    fn five_fields_tick_on_the_minute_six_on_the_second() {
        let at = DateTime::parse_from_rfc3339("2026-03-01T10:00:07.5Z")
            .unwrap()
            .with_timezone(&Utc);
        let utc = |s: &str| Schedule::parse(&format!("CRON_TZ=UTC {s}")).unwrap();
        let next = utc("* * * * *").next_after(at).unwrap();
        assert_eq!(next.to_rfc3339(), "2026-03-01T10:01:00+00:00");
        let next = utc("*/10 * * * * *").next_after(at).unwrap();
        assert_eq!(next.to_rfc3339(), "2026-03-01T10:00:10+00:00");
        let paris = Schedule::parse("CRON_TZ=Europe/Paris 0 9 * * *").unwrap();
        let next = paris.next_after(at).unwrap();
        assert_eq!(next.to_rfc3339(), "2026-03-02T08:00:00+00:00");
    }

    #[test]
    fn every_keeps_its_phase_and_skips_what_it_missed() {
        let start = Instant::now();
        let s = Duration::from_secs(1);
        assert_eq!(next_every(start, start, s), start + s);
        assert_eq!(
            next_every(start, start + Duration::from_millis(1500), s),
            start + 2 * s
        );
        // Five seconds late: the next tick is the sixth, not five at once.
        assert_eq!(next_every(start, start + 5 * s, s), start + 6 * s);
    }
}
