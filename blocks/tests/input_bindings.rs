//! The input binding conformance suite, on paused time where a schedule is involved: what each
//! input binding promises its handler (events once reading started, nothing after a stop, a
//! delivery under way allowed to finish), then what the cron binding adds (ticks keep their
//! phase, and a slow delivery or a pause is never made up with a burst).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use outrider_blocks::bindings::{CronBinding, Handler, InputBinding, Message, Outcome, Schedule};
use tokio::time::Instant;

/// Each event with the time it came.
type Seen = Arc<Mutex<Vec<(Instant, Message)>>>;

/// A handler recording when each event came, taking `busy` over the first one.
fn recorder(busy: Duration) -> (Handler, Seen) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    let handler: Handler = Arc::new(move |msg: Message| {
        let s = s.clone();
        Box::pin(async move {
            let first = {
                let mut s = s.lock().unwrap();
                s.push((Instant::now(), msg));
                s.len() == 1
            };
            if first {
                tokio::time::sleep(busy).await;
            }
            Outcome::Success
        })
    });
    (handler, seen)
}

fn every(s: &str) -> CronBinding {
    CronBinding::new(Schedule::parse(s).unwrap())
}

/// Offsets from `start` of the events seen, in whole milliseconds.
fn offsets(start: Instant, seen: &Mutex<Vec<(Instant, Message)>>) -> Vec<u128> {
    let seen = seen.lock().unwrap();
    seen.iter()
        .map(|(at, _)| at.duration_since(start).as_millis())
        .collect()
}

#[tokio::test(start_paused = true)]
async fn cron_ticks_keep_their_phase_and_never_burst() {
    let (handler, seen) = recorder(Duration::from_millis(3500));
    let start = Instant::now();
    let sub = every("@every 1s").read(handler).await.unwrap();
    tokio::time::sleep(Duration::from_millis(10_100)).await;
    drop(sub);
    // The first delivery takes 3.5 s: the ticks at 2, 3 and 4 s are skipped, not made up.
    assert_eq!(
        offsets(start, &seen),
        [1000, 5000, 6000, 7000, 8000, 9000, 10_000]
    );
    let seen = seen.lock().unwrap();
    let md = &seen[0].1.metadata;
    assert_eq!(md["timeZone"], "Local");
    assert!(md["readTimeUTC"].ends_with(" +0000 UTC"), "{md:?}");
    assert!(seen[0].1.data.is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_stopped_binding_delivers_nothing_more_and_reads_again_afresh() {
    let binding = every("@every 1s");
    let (handler, seen) = recorder(Duration::from_millis(1500));
    let start = Instant::now();
    let sub = binding.read(handler.clone()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    // The first delivery is under way: stop waits for it.
    assert!(
        sub.stop(Duration::from_secs(5)).await,
        "the delivery finished"
    );
    assert_eq!(Instant::now().duration_since(start).as_millis(), 2500);
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(offsets(start, &seen), [1000], "nothing after the stop");

    // Read again (as after a pause): its ticks count from the new start, none made up.
    let again = Instant::now();
    let sub = binding.read(handler).await.unwrap();
    tokio::time::sleep(Duration::from_millis(2100)).await;
    drop(sub);
    let later: Vec<u128> = offsets(again, &seen)[1..].to_vec();
    assert_eq!(later, [1000, 2000]);
}

#[tokio::test]
async fn a_six_field_schedule_ticks_on_the_second() {
    let (handler, seen) = recorder(Duration::ZERO);
    let sub = every("* * * * * *").read(handler).await.unwrap();
    outrider_testkit::wait_until(Duration::from_secs(10), "two ticks", || async {
        (seen.lock().unwrap().len() >= 2).then_some(())
    })
    .await;
    drop(sub);
    let seen = seen.lock().unwrap();
    let read = |i: usize| seen[i].1.metadata["readTimeUTC"].clone();
    assert_ne!(read(0), read(1), "two ticks, each read at its own time");
}
