//! The input binding conformance suite: what each input binding promises its handler. The cron
//! binding, on paused time: events once reading started, nothing after a stop, a delivery under
//! way allowed to finish, ticks that keep their phase and are never made up with a burst. The
//! queue bindings (MQTT, RabbitMQ) on the machine's brokers: every event delivered until the
//! handler takes it, and none lost when its reader dies before answering.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use outrider_blocks::bindings::{
    CronBinding, Handler, InputBinding, Message, Outcome, OutputBinding, Schedule,
};
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

/// A queue binding (MQTT or RabbitMQ) on a topic or queue of the test's own; `again` opens
/// another instance of the same component (as a restarted sidecar would).
struct Queue {
    yaml: String,
    _broker: Box<dyn std::any::Any + Send>,
}

impl Queue {
    /// An instance of the component: its input and output sides.
    async fn open(&self) -> (Arc<dyn InputBinding>, Arc<dyn OutputBinding>) {
        let c: outrider_blocks::Component = serde_saphyr::from_str(&self.yaml).unwrap();
        let b = outrider_blocks::bindings::open(&c)
            .await
            .unwrap_or_else(|e| panic!("{e:?}"));
        (b.input.unwrap().source, b.output.unwrap())
    }
}

fn mqtt() -> Queue {
    // A broker of its own: the binding's kept sessions stay behind.
    let broker = outrider_testkit::Mosquitto::private();
    let topic = outrider_testkit::unique("binding");
    let yaml = format!(
        "kind: Component\nmetadata: {{name: q}}\nspec:\n  type: bindings.mqtt3\n  metadata:\n  \
         - {{name: url, value: '{}'}}\n  - {{name: topic, value: '{topic}'}}\n  \
         - {{name: consumerID, value: '{topic}'}}\n",
        broker.url
    );
    Queue {
        yaml,
        _broker: Box::new(broker),
    }
}

fn rabbitmq() -> Queue {
    // A node of its own: the durable queue stays behind.
    let broker = outrider_testkit::RabbitMq::private();
    let queue = outrider_testkit::unique("binding");
    let yaml = format!(
        "kind: Component\nmetadata: {{name: q}}\nspec:\n  type: bindings.rabbitmq\n  metadata:\n  \
         - {{name: host, value: '{}'}}\n  - {{name: queueName, value: '{queue}'}}\n  \
         - {{name: durable, value: 'true'}}\n  - {{name: deleteWhenUnused, value: 'false'}}\n",
        broker.url
    );
    Queue {
        yaml,
        _broker: Box::new(broker),
    }
}

fn create(data: &str) -> outrider_blocks::bindings::InvokeRequest {
    outrider_blocks::bindings::InvokeRequest {
        operation: "create".into(),
        data: bytes::Bytes::copy_from_slice(data.as_bytes()),
        metadata: Default::default(),
    }
}

/// A handler answering each event with what `answer` says for its data, recording them all.
fn answering(answer: fn(&str, usize) -> Outcome) -> (Handler, Arc<Mutex<Vec<String>>>) {
    let seen = Arc::new(Mutex::new(Vec::<String>::new()));
    let s = seen.clone();
    let handler: Handler = Arc::new(move |msg: Message| {
        let data = String::from_utf8_lossy(&msg.data).into_owned();
        let times = {
            let mut s = s.lock().unwrap();
            s.push(data.clone());
            s.iter().filter(|d| **d == data).count()
        };
        let outcome = answer(&data, times);
        Box::pin(async move { outcome })
    });
    (handler, seen)
}

async fn wait_for(seen: &Mutex<Vec<String>>, what: &str, n: usize) {
    outrider_testkit::wait_until(Duration::from_secs(20), what, || async {
        (seen.lock().unwrap().len() >= n).then_some(())
    })
    .await;
}

/// Each event reaches the handler; one it fails comes again until it is taken; one taken never
/// comes again.
async fn delivers_until_taken(q: Queue) {
    let (input, output) = q.open().await;
    let (handler, seen) = answering(|data, times| match (data, times) {
        ("fails twice", 1 | 2) => Outcome::Retry,
        _ => Outcome::Success,
    });
    let sub = input.read(handler).await.unwrap();
    for d in ["one", "fails twice", "two"] {
        assert_eq!(output.invoke(create(d)).await.unwrap(), None);
    }
    wait_for(&seen, "every event, the failed one three times", 5).await;
    // A last event, once it arrived, shows that nothing taken came back meanwhile.
    output.invoke(create("last")).await.unwrap();
    wait_for(&seen, "the last event", 6).await;
    sub.stop(Duration::from_secs(5)).await;
    let mut got = seen.lock().unwrap().clone();
    got.sort();
    assert_eq!(
        got,
        [
            "fails twice",
            "fails twice",
            "fails twice",
            "last",
            "one",
            "two"
        ]
    );
}

/// An event taken by no one (the reader stopped before answering) is delivered again to the
/// next instance: nothing is lost when a sidecar dies mid-delivery. (RabbitMQ gives such an
/// event back when the channel closes, which a live process does only after its drain period:
/// the end-to-end suite kills a sidecar to show it for both brokers.)
async fn an_unanswered_event_survives_its_reader(q: Queue) {
    let (first, output) = q.open().await;
    // This reader never answers: its deliveries are under way when it is stopped.
    let held = Arc::new(Mutex::new(Vec::<String>::new()));
    let h = held.clone();
    let hang: Handler = Arc::new(move |msg: Message| {
        h.lock()
            .unwrap()
            .push(String::from_utf8_lossy(&msg.data).into_owned());
        Box::pin(std::future::pending())
    });
    let sub = first.read(hang).await.unwrap();
    output.invoke(create("precious")).await.unwrap();
    wait_for(&held, "the first delivery", 1).await;
    // The reader dies without answering.
    assert!(
        !sub.stop(Duration::from_millis(200)).await,
        "the delivery was under way"
    );
    drop((first, output));
    let (again, _) = q.open().await;
    let (handler, seen) = answering(|_, _| Outcome::Success);
    let sub = again.read(handler).await.unwrap();
    wait_for(&seen, "the event again", 1).await;
    assert_eq!(seen.lock().unwrap()[0], "precious");
    drop(sub);
}

/// What is sent while the binding is stopped (paused with an unhealthy app, or restarting) waits
/// for it and arrives when it reads again.
async fn keeps_what_came_while_stopped(q: Queue) {
    let (input, output) = q.open().await;
    let (handler, seen) = answering(|_, _| Outcome::Success);
    let sub = input.read(handler.clone()).await.unwrap();
    output.invoke(create("before")).await.unwrap();
    wait_for(&seen, "the first event", 1).await;
    assert!(sub.stop(Duration::from_secs(5)).await);
    output.invoke(create("while away")).await.unwrap();
    let sub = input.read(handler).await.unwrap();
    wait_for(&seen, "the event sent while stopped", 2).await;
    assert_eq!(seen.lock().unwrap()[1], "while away");
    drop(sub);
}

#[tokio::test]
async fn mqtt_keeps_what_came_while_stopped() {
    keeps_what_came_while_stopped(mqtt()).await;
}

#[tokio::test]
async fn rabbitmq_keeps_what_came_while_stopped() {
    keeps_what_came_while_stopped(rabbitmq()).await;
}

#[tokio::test]
async fn mqtt_delivers_until_taken() {
    delivers_until_taken(mqtt()).await;
}

#[tokio::test]
async fn mqtt_an_unanswered_event_survives_its_reader() {
    an_unanswered_event_survives_its_reader(mqtt()).await;
}

#[tokio::test]
async fn rabbitmq_delivers_until_taken() {
    delivers_until_taken(rabbitmq()).await;
}
