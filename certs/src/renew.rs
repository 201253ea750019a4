//! Renewal: a workload certificate is replaced at two thirds of its life, without touching
//! established connections.

use std::time::{Duration, SystemTime};

use crate::{Credentials, DevCa};

/// When to renew a certificate issued at `issued_at` and valid until `not_after`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RenewalSchedule {
    /// How long the certificate is issued for.
    pub ttl: Duration,
}

impl RenewalSchedule {
    /// The delay from `now` until renewal: two thirds into the certificate's life counted from
    /// its issue (not its backdated notBefore), or at once if that moment has passed.
    pub fn delay(&self, issued_at: SystemTime, not_after: SystemTime, now: SystemTime) -> Duration {
        let Ok(life) = not_after.duration_since(issued_at) else {
            return Duration::ZERO;
        };
        let at = issued_at + life * 2 / 3;
        at.duration_since(now).unwrap_or_default()
    }
}

/// The longest single sleep of the renewal loop.
const WAKE_AT_LEAST_EVERY: Duration = Duration::from_secs(30);

/// Returns when the certificate `creds` hold now is due for renewal: two thirds into its life.
pub async fn renewal_due(creds: &Credentials) {
    let info = creds.info();
    // Sleep in slices and ask the wall clock again: tokio's clock stops while a machine is
    // suspended, the certificate's expiry does not.
    loop {
        let wait = RenewalSchedule {
            ttl: Duration::ZERO,
        }
        .delay(info.issued_at, info.not_after, SystemTime::now());
        if wait.is_zero() {
            return;
        }
        tokio::time::sleep(wait.min(WAKE_AT_LEAST_EVERY)).await;
    }
}

/// Renews `creds` from `ca` forever. A failed renewal is logged and retried with a short
/// backoff, well before the current certificate expires.
pub async fn renew_forever(creds: Credentials, ca: DevCa, schedule: RenewalSchedule) {
    loop {
        renewal_due(&creds).await;
        match ca
            .issue(creds.id(), schedule.ttl)
            .and_then(|cert| creds.install(cert))
        {
            Ok(info) => {
                tracing::info!(serial = %info.serial, generation = info.generation, "renewed the workload certificate")
            }
            Err(error) => {
                tracing::warn!(%error, "renewing the workload certificate failed; retrying");
                tokio::time::sleep(Duration::from_secs(1).min(schedule.ttl / 10)).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renews_at_two_thirds_of_life() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let s = RenewalSchedule {
            ttl: Duration::from_secs(90),
        };
        let end = t0 + Duration::from_secs(90);
        assert_eq!(s.delay(t0, end, t0), Duration::from_secs(60));
        assert_eq!(
            s.delay(t0, end, t0 + Duration::from_secs(50)),
            Duration::from_secs(10)
        );
        assert_eq!(
            s.delay(t0, end, t0 + Duration::from_secs(80)),
            Duration::ZERO
        );
        assert_eq!(
            s.delay(end, t0, t0),
            Duration::ZERO,
            "inverted validity renews at once"
        );
    }
}
