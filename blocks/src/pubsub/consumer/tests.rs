use std::sync::Mutex;

use bytes::Bytes;
use tokio::time::Instant;

use super::*;
use crate::pubsub::{Message, Metadata};

/// What happened, in order.
type Log = Arc<Mutex<Vec<String>>>;

fn note(log: &Log, what: impl Into<String>) {
    log.lock().unwrap().push(what.into());
}

fn message(id: &str) -> Message {
    Message {
        topic: "orders".into(),
        data: Bytes::from(id.to_owned()),
        metadata: Metadata::new(),
    }
}

/// A handler answering message "a" with `outcomes` in turn (then success, as it answers every
/// other message), each after `took`.
fn handler(log: &Log, took: Duration, outcomes: Vec<Outcome>) -> Handler {
    let (log, outcomes) = (log.clone(), Arc::new(Mutex::new(outcomes)));
    Arc::new(move |m: Message| {
        let (log, outcomes) = (log.clone(), outcomes.clone());
        Box::pin(async move {
            let id = String::from_utf8_lossy(&m.data).into_owned();
            note(&log, format!("start {id}"));
            tokio::time::sleep(took).await;
            let mut left = outcomes.lock().unwrap();
            let outcome = if id != "a" || left.is_empty() {
                Outcome::Success
            } else {
                left.remove(0)
            };
            note(&log, format!("end {id} {outcome:?}"));
            outcome
        })
    })
}

/// A delivery whose answer takes `answer_takes` and asks for another try on retry when `again`.
struct Test {
    id: String,
    log: Log,
    answer_takes: Duration,
    again: bool,
}

impl Delivery for Test {
    async fn handle(&self, handler: &Handler) -> Outcome {
        handler(message(&self.id)).await
    }

    async fn answer(&self, outcome: Outcome) -> Answered {
        tokio::time::sleep(self.answer_takes).await;
        note(&self.log, format!("answer {} {outcome:?}", self.id));
        if self.again && outcome == Outcome::Retry {
            Answered::Again
        } else {
            Answered::Done
        }
    }
}

fn delivery(log: &Log, id: &str, again: bool) -> Test {
    Test {
        id: id.into(),
        log: log.clone(),
        answer_takes: Duration::from_millis(10),
        again,
    }
}

#[tokio::test(start_paused = true)]
async fn backoff_doubles_up_to_five_seconds_with_jitter_below_the_step() {
    let mut b = Backoff::new();
    let steps = [100, 200, 400, 800, 1600, 3200, 5000, 5000, 5000];
    let stop = CancellationToken::new();
    for step in steps.map(Duration::from_millis) {
        let started = Instant::now();
        assert!(b.wait(&stop).await);
        let waited = started.elapsed();
        assert!(
            waited >= step / 2 && waited <= step,
            "{waited:?} for a step of {step:?}"
        );
    }
    b.reset();
    let first = b.next_delay();
    assert!(
        first >= FIRST_DELAY / 2 && first <= FIRST_DELAY,
        "{first:?}"
    );
}

#[test]
fn backoff_jitter_spreads_waits() {
    let draws: std::collections::BTreeSet<Duration> =
        (0..64).map(|_| Backoff::new().next_delay()).collect();
    assert!(draws.len() > 1, "64 first waits were all {draws:?}");
}

#[tokio::test(start_paused = true)]
async fn a_stop_ends_a_backoff_wait_at_once() {
    let stop = CancellationToken::new();
    let mut b = Backoff::new();
    for _ in 0..8 {
        b.next_delay(); // at the 5 s step
    }
    let started = Instant::now();
    let stopper = stop.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(30)).await;
        stopper.cancel();
    });
    assert!(!b.wait(&stop).await);
    assert_eq!(started.elapsed(), Duration::from_millis(30));
    assert!(!b.wait(&stop).await, "already stopped");
    assert_eq!(started.elapsed(), Duration::from_millis(30));
}

#[tokio::test(start_paused = true)]
async fn at_most_concurrency_deliveries_run_and_each_answers_after_its_outcome() {
    let log = Log::default();
    let c = Consumer::new(handler(&log, Duration::from_millis(100), vec![]), 2);
    assert_eq!(c.concurrency(), 2);
    for id in ["a", "b", "c"] {
        let slot = c.slot().await.expect("a slot");
        note(&log, format!("slot {id}"));
        c.deliver(slot, delivery(&log, id, false));
    }
    assert!(c.drain(Duration::from_secs(1)).await);
    let log = log.lock().unwrap().clone();
    let at = |line: &str| log.iter().position(|l| l == line).expect(line);
    assert_eq!(&log[..4], ["slot a", "slot b", "start a", "start b"]);
    for id in ["a", "b", "c"] {
        assert!(at(&format!("end {id} Success")) < at(&format!("answer {id} Success")));
    }
    // The third slot frees only once a delivery answered the broker.
    let first_answer = at("answer a Success").min(at("answer b Success"));
    assert!(first_answer < at("slot c"), "{log:?}");
}

#[tokio::test(start_paused = true)]
async fn again_hands_the_message_over_after_a_backoff_with_its_slot_freed() {
    let log = Log::default();
    let retries = vec![Outcome::Retry, Outcome::Retry];
    let c = Consumer::new(handler(&log, Duration::ZERO, retries), 1);
    let started = Instant::now();
    c.deliver(c.slot().await.unwrap(), delivery(&log, "a", true));
    // While "a" waits to be tried again, its slot serves another message.
    tokio::time::sleep(Duration::from_millis(20)).await;
    let slot = c.slot().await.expect("the slot of a waiting retry");
    c.deliver(slot, delivery(&log, "b", false));
    let sub = c.subscription();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(sub.stop(Duration::from_secs(1)).await);
    let log = log.lock().unwrap().clone();
    let a: Vec<&str> = log
        .iter()
        .map(String::as_str)
        .filter(|l| l.contains(" a"))
        .collect();
    assert_eq!(
        a,
        [
            "start a",
            "end a Retry",
            "answer a Retry",
            "start a",
            "end a Retry",
            "answer a Retry",
            "start a",
            "end a Success",
            "answer a Success"
        ]
    );
    assert!(log.iter().any(|l| l == "answer b Success"), "{log:?}");
    assert!(started.elapsed() >= Duration::from_millis(150));
}

#[tokio::test(start_paused = true)]
async fn a_stop_ends_a_retry_wait_unanswered_and_refuses_slots() {
    let log = Log::default();
    let c = Consumer::new(handler(&log, Duration::ZERO, vec![Outcome::Retry; 100]), 1);
    c.deliver(c.slot().await.unwrap(), delivery(&log, "a", true));
    tokio::time::sleep(Duration::from_secs(3)).await;
    let started = Instant::now();
    assert!(c.subscription().stop(Duration::from_secs(10)).await);
    assert!(
        started.elapsed() < Duration::from_millis(20),
        "{:?}",
        started.elapsed()
    );
    assert!(c.slot().await.is_none(), "no slot once stopped");
    let answers = log
        .lock()
        .unwrap()
        .iter()
        .filter(|l| l.starts_with("answer"))
        .count();
    assert!(
        (3..10).contains(&answers),
        "{answers} tries in 3 s of backoff"
    );
}

#[tokio::test(start_paused = true)]
async fn drain_gives_up_after_its_grace() {
    let log = Log::default();
    let c = Consumer::new(handler(&log, Duration::from_secs(60), vec![]), 1);
    c.deliver(c.slot().await.unwrap(), delivery(&log, "slow", false));
    let started = Instant::now();
    assert!(!c.drain(Duration::from_secs(2)).await);
    assert_eq!(started.elapsed(), Duration::from_secs(2));
}

#[tokio::test(start_paused = true)]
async fn a_slow_handler_keeps_its_claim_every_interval() {
    let signals = Arc::new(Mutex::new(Vec::new()));
    let started = Instant::now();
    let handled = async {
        tokio::time::sleep(Duration::from_millis(350)).await;
        Outcome::Drop
    };
    let every = Duration::from_millis(100);
    let seen = signals.clone();
    let outcome = keeping_claim(handled, every, move || {
        seen.lock().unwrap().push(started.elapsed());
        async {}
    })
    .await;
    assert_eq!(outcome, Outcome::Drop);
    let at: Vec<u128> = signals
        .lock()
        .unwrap()
        .iter()
        .map(Duration::as_millis)
        .collect();
    assert_eq!(at, [100, 200, 300]);
    let quick = keeping_claim(async { Outcome::Retry }, Duration::ZERO, || async {
        unreachable!("no claim to keep")
    });
    assert_eq!(quick.await, Outcome::Retry);
}

/// A broker whose answers do not hold a slot ([`Delivery::FREE_BEFORE_ANSWER`]).
struct Quick(Test);

impl Delivery for Quick {
    const FREE_BEFORE_ANSWER: bool = true;

    async fn handle(&self, handler: &Handler) -> Outcome {
        self.0.handle(handler).await
    }

    async fn answer(&self, outcome: Outcome) -> Answered {
        self.0.answer(outcome).await
    }
}

#[tokio::test(start_paused = true)]
async fn a_slow_answer_holds_the_slot_unless_the_broker_frees_it_first() {
    for free_first in [false, true] {
        let log = Log::default();
        let c = Consumer::new(handler(&log, Duration::from_millis(10), vec![]), 1);
        let slow = |id: &str| Test {
            answer_takes: Duration::from_secs(1),
            ..delivery(&log, id, false)
        };
        let slot = c.slot().await.expect("a slot");
        let started = Instant::now();
        if free_first {
            c.deliver(slot, Quick(slow("a")));
        } else {
            c.deliver(slot, slow("a"));
        }
        // The second delivery's slot comes once the first outcome is known, or only once the
        // broker has its answer.
        let _second = c.slot().await.expect("a slot");
        let waited = started.elapsed();
        let want = if free_first {
            Duration::from_millis(10)
        } else {
            Duration::from_millis(1010)
        };
        assert_eq!(waited, want, "free first: {free_first}");
    }
}
