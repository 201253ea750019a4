//! Outlier ejection: one endpoint's health as a small state machine driven with explicit
//! instants (no clock inside, so it is a pure value).
//!
//! An endpoint is *up* until a connection to it fails; then it is *ejected* for a backoff (1 s,
//! doubling per failure in a row, at most 30 s). When the backoff ends, the next request to
//! take it is its one *probe*; the probe's outcome readmits it or ejects it again for longer. A
//! probe that neither succeeds nor fails (its caller gave up) lets the next request probe.
//! This module does not know which request goes where, nor how a failure is recognised.

use std::time::Duration;

use tokio::time::Instant;

/// The first ejection's length; each failure in a row doubles it, up to [`EJECT_MAX`].
const EJECT_BASE: Duration = Duration::from_secs(1);
const EJECT_MAX: Duration = Duration::from_secs(30);
/// A probe that has not finished after this long (its caller gave up) lets another one go.
pub(super) const PROBE_STALE: Duration = Duration::from_secs(10);

/// One endpoint's health.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) enum Health {
    Up,
    /// Left out until `until`, after `failures` connection failures in a row.
    Ejected {
        until: Instant,
        failures: u32,
    },
    /// One request is finding out whether it is back.
    Probing {
        since: Instant,
        failures: u32,
    },
}

impl Health {
    /// Whether a request may take the endpoint at `now`: it is up, its ejection is over, or
    /// its last probe went stale.
    pub(super) fn available(&self, now: Instant) -> bool {
        match *self {
            Health::Up => true,
            Health::Ejected { until, .. } => now >= until,
            Health::Probing { since, .. } => now.duration_since(since) >= PROBE_STALE,
        }
    }

    /// Takes the endpoint for one request if it is available; `Some(true)` when that request
    /// is its probe (then no other request may take it until the probe ends or goes stale).
    pub(super) fn take(&mut self, now: Instant) -> Option<bool> {
        self.available(now).then(|| self.force(now))
    }

    /// Takes the endpoint whatever its state; returns whether the request is its probe (it is
    /// unless the endpoint is up).
    pub(super) fn force(&mut self, now: Instant) -> bool {
        match *self {
            Health::Up => false,
            Health::Ejected { failures, .. } | Health::Probing { failures, .. } => {
                *self = Health::Probing {
                    since: now,
                    failures,
                };
                true
            }
        }
    }

    /// A connection worked: a probe readmits the endpoint; returns whether it did. (The
    /// outcome of a request picked before an ejection says nothing new.)
    pub(super) fn succeeded(&mut self, probe: bool) -> bool {
        let readmit = probe && matches!(*self, Health::Probing { .. });
        if readmit {
            *self = Health::Up;
        }
        readmit
    }

    /// A connection failed at `now`: eject an endpoint that was up, or eject a probed one for
    /// longer. Returns the failures in a row and the backoff, or `None` when the failure does
    /// not count (its request was picked before the ejection).
    pub(super) fn failed(&mut self, probe: bool, now: Instant) -> Option<(u32, Duration)> {
        let failures = match *self {
            Health::Up => 1,
            Health::Probing { failures, .. } if probe => failures.saturating_add(1),
            Health::Ejected { .. } | Health::Probing { .. } => return None,
        };
        let backoff = backoff(failures);
        *self = Health::Ejected {
            until: now + backoff,
            failures,
        };
        Some((failures, backoff))
    }

    /// A probe ended at `now` without an outcome: the next request may probe.
    pub(super) fn abandoned(&mut self, now: Instant) {
        if let Health::Probing { failures, .. } = *self {
            *self = Health::Ejected {
                until: now,
                failures,
            };
        }
    }

    /// The state's name for the metadata API and the admin page.
    pub(super) fn state(&self, now: Instant) -> &'static str {
        match *self {
            Health::Up => "up",
            Health::Ejected { until, .. } if now < until => "ejected",
            Health::Ejected { .. } => "due for a probe",
            Health::Probing { .. } => "probing",
        }
    }
}

/// How long the `failures`-th connection failure in a row (from 1) ejects an endpoint.
fn backoff(failures: u32) -> Duration {
    EJECT_BASE
        .saturating_mul(1 << failures.saturating_sub(1).min(5))
        .min(EJECT_MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What happens to an endpoint, for the transition table.
    #[derive(Clone, Copy)]
    enum Event {
        Take(Instant),
        Force(Instant),
        Succeeded(bool),
        Failed(bool, Instant),
        Abandoned(Instant),
    }

    impl Event {
        /// Applies the event; what it returned, printed.
        fn apply(self, h: &mut Health) -> String {
            match self {
                Event::Take(now) => format!("{:?}", h.take(now)),
                Event::Force(now) => format!("{:?}", h.force(now)),
                Event::Succeeded(probe) => format!("{:?}", h.succeeded(probe)),
                Event::Failed(probe, now) => format!("{:?}", h.failed(probe, now)),
                Event::Abandoned(now) => format!("{:?}", h.abandoned(now)),
            }
        }
    }

    #[test]
    fn backoff_doubles_per_failure_up_to_a_limit() {
        let secs: Vec<u64> = (1..=8).map(|f| backoff(f).as_secs()).collect();
        assert_eq!(secs, [1, 2, 4, 8, 16, 30, 30, 30]);
        assert_eq!(backoff(u32::MAX), EJECT_MAX);
    }

    #[test]
    fn transitions() {
        use Event::*;
        let (t, s) = (Instant::now(), Duration::from_secs(1));
        let (t1, t9, t10) = (t + s, t + 9 * s, t + 10 * s);
        let up = Health::Up;
        let ej = |until, failures| Health::Ejected { until, failures };
        let pr = |since, failures| Health::Probing { since, failures };
        // (state before, event, state after, what the event returned)
        let table = [
            (up, Take(t), up, "Some(false)"),
            (ej(t1, 1), Take(t), ej(t1, 1), "None"),
            (ej(t, 1), Take(t), pr(t, 1), "Some(true)"),
            (pr(t, 2), Take(t9), pr(t, 2), "None"),
            (pr(t, 2), Take(t10), pr(t10, 2), "Some(true)"),
            (up, Force(t), up, "false"),
            (ej(t1, 3), Force(t), pr(t, 3), "true"),
            (up, Succeeded(true), up, "false"),
            (pr(t, 1), Succeeded(false), pr(t, 1), "false"),
            (pr(t, 1), Succeeded(true), up, "true"),
            (ej(t1, 1), Succeeded(true), ej(t1, 1), "false"),
            (up, Failed(false, t), ej(t1, 1), "Some((1, 1s))"),
            (ej(t1, 1), Failed(false, t), ej(t1, 1), "None"),
            (ej(t1, 1), Failed(true, t), ej(t1, 1), "None"),
            (pr(t, 1), Failed(false, t), pr(t, 1), "None"),
            (pr(t, 2), Failed(true, t), ej(t + 4 * s, 3), "Some((3, 4s))"),
            (pr(t, 2), Abandoned(t1), ej(t1, 2), "()"),
            (ej(t1, 2), Abandoned(t), ej(t1, 2), "()"),
            (up, Abandoned(t), up, "()"),
        ];
        for (i, (before, event, after, returned)) in table.into_iter().enumerate() {
            let mut h = before;
            assert_eq!(event.apply(&mut h), returned, "row {i}");
            assert_eq!(h, after, "row {i}");
        }
    }

    #[test]
    fn states_by_name_and_availability() {
        let (t, s) = (Instant::now(), Duration::from_secs(1));
        let (ej, pr) = (
            Health::Ejected {
                until: t + s,
                failures: 1,
            },
            Health::Probing {
                since: t,
                failures: 1,
            },
        );
        // (state, at, its name, whether a request may take it)
        let table = [
            (Health::Up, t, "up", true),
            (ej, t, "ejected", false),
            (ej, t + s, "due for a probe", true),
            (pr, t + 9 * s, "probing", false),
            (pr, t + 10 * s, "probing", true),
        ];
        for (h, now, name, available) in table {
            assert_eq!(h.state(now), name, "{h:?}");
            assert_eq!(h.available(now), available, "{h:?}");
        }
    }
}
