//! The delivery machinery every broker shares: at most `concurrency` deliveries in flight, the
//! tasks a stop waits for, the broker answered only with the handler's outcome, and a jittered
//! exponential backoff for reconnecting and retrying.
//!
//! A broker reads messages and answers them its own way (`XACK`, `basic.ack`/`nack`, JetStream
//! ack kinds, MQTT `PUBACK`) through a [`Delivery`]; this module owns the order in between: take
//! a slot, run the handler, answer with its outcome, free the slot. It knows no broker protocol.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::broker::{Handler, Outcome, Subscription};

/// The first delay of a [`Backoff`], and its longest.
const FIRST_DELAY: Duration = Duration::from_millis(100);
const LONGEST_DELAY: Duration = Duration::from_secs(5);

/// A delivery slot: one of the subscription's `concurrency`.
pub(crate) type Slot = OwnedSemaphorePermit;

/// What a broker does with the handler's outcome.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Answered {
    /// The broker was answered (or could not be, and redelivers by itself): the delivery is over.
    Done,
    /// The broker cannot take the message back: hand it to the handler again after a backoff,
    /// with the slot freed meanwhile.
    Again,
}

/// One message as a broker delivered it.
pub(crate) trait Delivery: Send + Sync + 'static {
    /// The slot is freed as soon as the handler has its outcome, before the broker is answered:
    /// for brokers whose answer is a cheap, independent command (`XACK`, a JetStream ack) and
    /// whose stop does not [`Consumer::drain`], so a slow answer never holds back the next
    /// delivery. Otherwise the slot is held until the broker was answered.
    const FREE_BEFORE_ANSWER: bool = false;

    /// Hands the message to `handler` (keeping the broker's claim on it meanwhile, if needed).
    fn handle(&self, handler: &Handler) -> impl Future<Output = Outcome> + Send;

    /// Tells the broker the handler's outcome.
    fn answer(&self, outcome: Outcome) -> impl Future<Output = Answered> + Send;
}

/// One subscription's consumer: its handler, slots, stop token and tasks.
#[derive(Clone)]
pub(crate) struct Consumer {
    handler: Handler,
    concurrency: usize,
    slots: Arc<Semaphore>,
    stop: CancellationToken,
    tasks: TaskTracker,
}

impl Consumer {
    /// A consumer running at most `concurrency` (at least one) deliveries at once.
    pub(crate) fn new(handler: Handler, concurrency: usize) -> Self {
        let concurrency = concurrency.max(1);
        Self {
            handler,
            concurrency,
            slots: Arc::new(Semaphore::new(concurrency)),
            stop: CancellationToken::new(),
            tasks: TaskTracker::new(),
        }
    }

    /// Deliveries allowed in flight at once.
    pub(crate) fn concurrency(&self) -> usize {
        self.concurrency
    }

    /// Cancelled when the subscription stops.
    pub(crate) fn stop(&self) -> &CancellationToken {
        &self.stop
    }

    /// The subscription handed to the caller: stopping it cancels [`Consumer::stop`] and waits
    /// for every task spawned here.
    pub(crate) fn subscription(&self) -> Subscription {
        Subscription::tracked(self.stop.clone(), self.tasks.clone())
    }

    /// Runs `task` (a read loop, a connection) as one a stop waits for.
    pub(crate) fn spawn<F>(&self, task: F) -> tokio::task::JoinHandle<()>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.tasks.spawn(task)
    }

    /// Waits for a free delivery slot; `None` once the subscription stops.
    pub(crate) async fn slot(&self) -> Option<Slot> {
        tokio::select! {
            biased;
            () = self.stop.cancelled() => None,
            slot = self.slots.clone().acquire_owned() => slot.ok(),
        }
    }

    /// Runs one delivery in a task a stop waits for: the handler, then the broker's answer with
    /// its outcome. `slot` is freed once the broker was answered (so [`Consumer::drain`] waits
    /// for answers too), or as soon as the outcome is known where
    /// [`Delivery::FREE_BEFORE_ANSWER`] says so.
    pub(crate) fn deliver<D: Delivery>(&self, slot: Slot, delivery: D) {
        let this = self.clone();
        self.tasks.spawn(async move {
            let mut slot = slot;
            let mut backoff = Backoff::new();
            loop {
                let outcome = delivery.handle(&this.handler).await;
                let held = if D::FREE_BEFORE_ANSWER {
                    drop(slot);
                    None
                } else {
                    Some(slot)
                };
                let answered = delivery.answer(outcome).await;
                drop(held);
                if answered == Answered::Done {
                    return;
                }
                if !backoff.wait(&this.stop).await {
                    return; // stopped: never answered, the broker's session keeps it
                }
                let Some(next) = this.slot().await else {
                    return;
                };
                slot = next;
            }
        });
    }

    /// Waits up to `grace` until every slot is free: deliveries in flight have finished and
    /// answered the broker. Returns whether they all did.
    pub(crate) async fn drain(&self, grace: Duration) -> bool {
        let all = u32::try_from(self.concurrency).unwrap_or(u32::MAX);
        tokio::time::timeout(grace, self.slots.acquire_many(all))
            .await
            .is_ok()
    }
}

/// Awaits `handled`, calling `signal` every `every` meanwhile (never when `every` is zero): how
/// a broker keeps its claim on a message a slow handler still holds.
pub(crate) async fn keeping_claim<F>(
    handled: impl Future<Output = Outcome>,
    every: Duration,
    mut signal: impl FnMut() -> F,
) -> Outcome
where
    F: Future<Output = ()>,
{
    if every.is_zero() {
        return handled.await;
    }
    tokio::pin!(handled);
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    loop {
        tokio::select! {
            outcome = &mut handled => return outcome,
            _ = tick.tick() => signal().await,
        }
    }
}

/// Exponential backoff from 100 ms to 5 s with jitter: each wait is between half and all of the
/// current step, so subscribers that failed together do not retry in lockstep, and no wait is
/// longer than the step.
#[derive(Clone, Debug)]
pub(crate) struct Backoff {
    step: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self::new()
    }
}

impl Backoff {
    /// A backoff at its first step.
    pub(crate) fn new() -> Self {
        Self { step: FIRST_DELAY }
    }

    /// Back to the first step, after a success.
    pub(crate) fn reset(&mut self) {
        self.step = FIRST_DELAY;
    }

    /// The next wait, doubling the step (up to 5 s) for the one after.
    pub(crate) fn next_delay(&mut self) -> Duration {
        let delay = self.step.mul_f64(1.0 - fastrand::f64() / 2.0);
        self.step = (self.step * 2).min(LONGEST_DELAY);
        delay
    }

    /// Sleeps the next wait; `false` (at once) when `stop` is cancelled first.
    pub(crate) async fn wait(&mut self, stop: &CancellationToken) -> bool {
        let delay = self.next_delay();
        tokio::select! {
            biased;
            () = stop.cancelled() => false,
            () = tokio::time::sleep(delay) => true,
        }
    }
}

#[cfg(test)]
mod tests;
