//! Dead-lettering: with a dead-letter topic, a message the app keeps failing is tried a few
//! times, then published to that topic on the same pub/sub and acknowledged.

use std::sync::Arc;
use std::time::Duration;

use outrider_blocks::pubsub::{Handler, Message, Outcome, PubSubComponent};

use super::Spec;

/// With a dead-letter topic: attempts before a failing message goes there, and the first delay.
pub(super) const DEAD_LETTER_ATTEMPTS: u32 = 3;
const DEAD_LETTER_BACKOFF: Duration = Duration::from_millis(100);

/// With a dead-letter topic, a failing message is tried a few times with backoff, then published
/// to that topic on the same pub/sub and acknowledged; dropped messages go there too. Without
/// one, the outcome goes back to the broker, which redelivers.
pub(super) fn with_dead_letter(
    deliver: Handler,
    spec: &Spec,
    c: &PubSubComponent,
    attempts: u32,
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
    Arc::new(move |msg: Message| {
        let (deliver, dead, broker) = (deliver.clone(), dead.clone(), broker.clone());
        Box::pin(async move {
            let mut delay = DEAD_LETTER_BACKOFF;
            for attempt in 1..=attempts {
                match deliver(msg.clone()).await {
                    Outcome::Success => return Outcome::Success,
                    Outcome::Drop => break,
                    Outcome::Retry if attempt < attempts => {
                        tokio::time::sleep(delay).await;
                        delay *= 2;
                    }
                    Outcome::Retry => {}
                }
            }
            let letter = Message {
                topic: dead.clone(),
                ..msg
            };
            match tokio::time::timeout(Duration::from_secs(30), broker.publish(letter)).await {
                Ok(Ok(())) => {
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
