//! The one deadline helper of component calls.
//!
//! The proxy bounds every state call with its own timeout layer (the API's store deadline or a
//! resiliency policy's), but not everything a component does goes through that layer:
//! connecting and declaring at start, acknowledgements and claims in subscriptions' background
//! tasks, and publishes when no resiliency policy applies. A component's own `timeout` setting
//! may also be shorter than the API's deadline and is then the one a caller sees fail, with the
//! component's message. This module owns only the bounding; each component says what running
//! out of time looks like in its errors.

use std::time::Duration;

/// Runs `call` for at most `timeout`; running out answers `elapsed(timeout)`.
pub(crate) async fn bounded<T, E>(
    timeout: Duration,
    call: impl Future<Output = Result<T, E>>,
    elapsed: impl FnOnce(Duration) -> E,
) -> Result<T, E> {
    match tokio::time::timeout(timeout, call).await {
        Ok(result) => result,
        Err(_) => Err(elapsed(timeout)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn answers_in_time_or_says_it_ran_out() {
        let t = Duration::from_secs(2);
        let quick = bounded(t, async { Ok::<_, String>(1) }, |_| "late".into()).await;
        assert_eq!(quick, Ok(1));
        let started = tokio::time::Instant::now();
        let hung = std::future::pending::<Result<(), String>>();
        let late = bounded(t, hung, |t| format!("no answer within {t:?}")).await;
        assert_eq!(late, Err("no answer within 2s".into()));
        assert_eq!(started.elapsed(), t);
    }
}
