//! Dead-lettering: with a dead-letter topic, a message the app keeps failing is tried a few
//! times, then published to that topic on the same pub/sub and acknowledged.

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::FutureExt as _;
use futures_util::future::Map;
use outrider_blocks::pubsub::{Handler, Message, Outcome, PubSubComponent};
use outrider_blocks::state::BoxFuture;
use outrider_filters::resiliency::classify::{Classify, Failure, Verdict};
use outrider_filters::resiliency::{Backoff, Cloned, RetryLayer, RetryPolicy, Retrying};
use tower::{Layer as _, Service, ServiceExt as _};

use super::Spec;

/// With a dead-letter topic: attempts before a failing message goes there, and the first delay.
pub(crate) const DEAD_LETTER_ATTEMPTS: u32 = 3;
const DEAD_LETTER_BACKOFF: Duration = Duration::from_millis(100);

/// With a dead-letter topic, a failing message is tried a few times with backoff, then published
/// to that topic on the same pub/sub and acknowledged; dropped messages go there too. Without
/// one, the outcome goes back to the broker, which redelivers.
pub(crate) fn with_dead_letter(
    deliver: Handler,
    spec: &Spec,
    c: &PubSubComponent,
    attempts: u32,
    moved: metrics::Counter,
) -> Handler {
    if spec.dead_letter.is_empty() {
        return deliver;
    }
    if !c.scopes.may_publish(&spec.dead_letter) {
        // The letter can never be written, so every message that would go there stays with the
        // broker instead (as a failed dead-letter publish does).
        tracing::warn!(pubsub = %spec.pubsub, dead_letter_topic = %spec.dead_letter, "the component's scopes do not allow publishing to the dead-letter topic; failing messages will stay unacknowledged");
        return Arc::new(move |msg: Message| {
            let deliver = deliver.clone();
            Box::pin(async move {
                match deliver(msg).await {
                    Outcome::Success => Outcome::Success,
                    Outcome::Retry | Outcome::Drop => Outcome::Retry,
                }
            })
        });
    }
    let (dead, broker) = (c.broker_topic(&spec.dead_letter), c.broker.clone());
    let tries = RetryLayer::uncounted(policy(attempts), UntilDone).layer(DeliverOnce(deliver));
    Arc::new(move |msg: Message| {
        let (tries, dead, broker) = (tries.clone(), dead.clone(), broker.clone());
        let moved = moved.clone();
        Box::pin(async move {
            let Ok(outcome) = tries.oneshot(Cloned(msg.clone())).await;
            if outcome == Outcome::Success {
                return Outcome::Success;
            }
            let letter = Message {
                topic: dead.clone(),
                ..msg
            };
            match tokio::time::timeout(Duration::from_secs(30), broker.publish(letter)).await {
                Ok(Ok(())) => {
                    moved.increment(1);
                    tracing::info!(dead_letter_topic = %dead, "message moved to the dead-letter topic");
                    Outcome::Success
                }
                // Not acknowledged: the broker keeps it and delivers it again later.
                _ => {
                    tracing::warn!(dead_letter_topic = %dead, "publishing to the dead-letter topic failed; the message stays");
                    Outcome::Retry
                }
            }
        })
    })
}

/// The tries before dead-lettering, as a retry policy: `attempts` in all, the first retry after
/// 100 ms and each next one after twice as long (never longer than a minute). The product's own
/// behaviour, not a `Resiliency` policy, so it is not counted in the resiliency metrics.
fn policy(attempts: u32) -> Retrying {
    Retrying {
        name: "deadLetterTries".to_owned(),
        policy: RetryPolicy {
            backoff: Backoff::Exponential {
                initial: DEAD_LETTER_BACKOFF,
                randomization: 0.0,
                multiplier: 2.0,
                max_interval: Duration::from_secs(60),
                max_elapsed: Duration::ZERO,
            },
            max_retries: Some(attempts.saturating_sub(1)),
            http_codes: None,
            grpc_codes: None,
        },
        builtin: false,
    }
}

/// One try: the delivery handler as a service.
#[derive(Clone)]
struct DeliverOnce(Handler);

impl Service<Cloned<Message>> for DeliverOnce {
    type Response = Outcome;
    type Error = Infallible;
    type Future = Map<BoxFuture<Outcome>, fn(Outcome) -> Result<Outcome, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, Cloned(msg): Cloned<Message>) -> Self::Future {
        (self.0)(msg).map(Ok)
    }
}

/// Tries again while the app answers RETRY; SUCCESS and DROP end the tries.
#[derive(Clone, Copy, Debug)]
struct UntilDone;

impl Classify<Outcome, Infallible> for UntilDone {
    fn verdict(&self, result: &Result<Outcome, Infallible>) -> Verdict {
        match result {
            Ok(Outcome::Retry) => Verdict::Failure(Failure::answer(None)),
            Ok(Outcome::Success | Outcome::Drop) => Verdict::Success,
            Err(never) => match *never {},
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use tokio::time::Instant;

    use super::*;

    /// A handler that answers `outcome` and records when each try came, from `t0`.
    fn handler(outcome: Outcome, t0: Instant, at: Arc<Mutex<Vec<u128>>>) -> Handler {
        Arc::new(move |_| {
            at.lock().unwrap().push(t0.elapsed().as_millis());
            Box::pin(async move { outcome })
        })
    }

    #[tokio::test(start_paused = true)]
    async fn tries_until_done_with_doubling_waits() {
        // A single delivery under a Resiliency policy was retried by the policy: one try here.
        for (attempts, answer, tries_at) in [
            (DEAD_LETTER_ATTEMPTS, Outcome::Retry, vec![0, 100, 300]),
            (DEAD_LETTER_ATTEMPTS, Outcome::Drop, vec![0]),
            (DEAD_LETTER_ATTEMPTS, Outcome::Success, vec![0]),
            (1, Outcome::Retry, vec![0]),
        ] {
            let at = Arc::new(Mutex::new(Vec::new()));
            let once = DeliverOnce(handler(answer, Instant::now(), at.clone()));
            let svc = RetryLayer::uncounted(policy(attempts), UntilDone).layer(once);
            let msg = Message {
                topic: "t".into(),
                data: bytes::Bytes::from_static(b"{}"),
                metadata: Default::default(),
            };
            let Ok(outcome) = svc.oneshot(Cloned(msg)).await;
            assert_eq!(outcome, answer, "the last answer is passed back");
            assert_eq!(*at.lock().unwrap(), tries_at, "{answer:?}");
        }
    }
}
