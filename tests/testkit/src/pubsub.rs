//! Pub/sub scenarios that several brokers' tests run alike.

use std::time::Duration;

use nix::sys::signal::Signal;
use serde_json::Value;

use crate::{FakeApp, Recorded, Sidecar, SidecarBuilder};

/// The numbers `n` of the events `{"n": …}` delivered as `got`, sorted.
pub fn numbers(got: &[Recorded]) -> Vec<u64> {
    let mut ns: Vec<u64> = got
        .iter()
        .map(|r| r.json()["data"]["n"].as_u64().unwrap())
        .collect();
    ns.sort_unstable();
    ns
}

/// Publishes `body` (no content type) to `topic` of the component `pubsub` through `sidecar`,
/// the sidecar of the subscribed `app`, and kills it (SIGKILL) while the app handles the
/// delivery at `route`. Then starts `restart` (the same app id and resources) in front of the app
/// and waits (bounded by `limit`) until `route` has received the message a second time. Returns
/// the `data` of every delivery at `route`.
pub async fn kill_mid_delivery(
    app: &FakeApp,
    mut sidecar: Sidecar,
    restart: SidecarBuilder,
    topic: &str,
    route: &str,
    body: &'static str,
    limit: Duration,
) -> Vec<Value> {
    let r = sidecar.publish("pubsub", topic, &[], body).await;
    assert_eq!(r.status, 204, "{}", r.text());
    app.wait_seen(Duration::from_secs(10), "the delivery to start", |seen| {
        (!seen.is_empty()).then_some(())
    })
    .await;
    sidecar.signal(Signal::SIGKILL);
    sidecar.wait_exit(Duration::from_secs(10)).await;
    let mut again = restart.app_port(app.port).start().await;
    again.wait_ready().await;
    app.wait_at(route, 2, limit).await;
    app.seen_at(route)
        .iter()
        .map(|r| r.json()["data"].clone())
        .collect()
}
