//! One MQTT connection's event loop: reconnecting with backoff, subscribing again when a new
//! session starts, and handing incoming publishes on, each marked with the connection
//! (generation) it arrived on. Delivering them to the app is the subscription's business.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use rumqttc::{AsyncClient, Event, EventLoop, Packet, QoS, SubAck, SubscribeReasonCode};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::pubsub::consumer::Backoff;

/// What a subscription's connection subscribes to.
pub(super) struct Filter {
    /// The filter sent to the broker (`$share/<group>/<topic>` or the topic).
    pub(super) filter: String,
    /// The topic, or topic filter, messages must match.
    pub(super) topic: String,
    pub(super) qos: QoS,
}

/// A message as it arrived, with the connection (generation) it arrived on.
pub(super) struct Incoming {
    pub(super) publish: rumqttc::Publish,
    pub(super) generation: u64,
}

/// Where a connection stands, as its event loop sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum LinkState {
    Connecting,
    Ready,
    Failed(String),
}

/// One connection's event loop and whom it reports to.
pub(super) struct Driver {
    pub(super) client: AsyncClient,
    /// The subscription to make on each new session (none for the publisher).
    pub(super) filter: Option<Filter>,
    /// Where incoming publishes go (none for the publisher).
    pub(super) incoming: Option<mpsc::Sender<Incoming>>,
    pub(super) state: watch::Sender<LinkState>,
    /// Bumped on every new or lost connection.
    pub(super) generation: Arc<AtomicU64>,
}

impl Driver {
    /// Polls the event loop until `stop` (or our DISCONNECT went out).
    pub(super) async fn drive(self, mut events: EventLoop, stop: CancellationToken) {
        let mut backoff = Backoff::new();
        loop {
            let event = tokio::select! {
                biased;
                () = stop.cancelled() => return,
                e = events.poll() => e,
            };
            match event {
                Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                    backoff.reset();
                    self.connected(ack.session_present);
                }
                Ok(Event::Incoming(Packet::SubAck(ack))) => self.subscribed(&ack),
                Ok(Event::Incoming(Packet::Publish(p))) => self.received(p).await,
                // The connection is closing after our DISCONNECT: done.
                Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect)) => return,
                Ok(_) => {}
                Err(e) => {
                    // Deliveries of the lost connection must not be acknowledged on the next one.
                    self.generation.fetch_add(1, Ordering::SeqCst);
                    tracing::debug!(error = %e, "the MQTT connection failed; reconnecting");
                    self.state.send_replace(LinkState::Failed(e.to_string()));
                    if !backoff.wait(&stop).await {
                        return;
                    }
                }
            }
        }
    }

    fn connected(&self, session_present: bool) {
        // Acks of messages from an earlier connection must not be sent on this one: the client
        // forgot them, and their packet ids may name new messages.
        self.generation.fetch_add(1, Ordering::SeqCst);
        match &self.filter {
            // A new session has no subscription: make it (ready once the SUBACK is in).
            Some(Filter { filter, qos, .. }) if !session_present => {
                if let Err(e) = self.client.try_subscribe(filter.clone(), *qos) {
                    self.state.send_replace(LinkState::Failed(e.to_string()));
                }
            }
            _ => {
                self.state.send_replace(LinkState::Ready);
            }
        }
    }

    fn subscribed(&self, ack: &SubAck) {
        let refused = ack
            .return_codes
            .iter()
            .any(|c| matches!(c, SubscribeReasonCode::Failure));
        self.state.send_replace(if refused {
            LinkState::Failed("the broker refused the subscription".into())
        } else {
            LinkState::Ready
        });
    }

    async fn received(&self, p: rumqttc::Publish) {
        let Some(tx) = &self.incoming else { return };
        if self.filter.as_ref().is_some_and(|f| {
            !std::str::from_utf8(&p.topic).is_ok_and(|t| super::matches_filter(&f.topic, t))
        }) {
            // A session kept from another configuration: not this subscription's message.
            tracing::warn!(topic = %String::from_utf8_lossy(&p.topic), "ignoring a message for a topic this subscription does not have");
            let _ = self.client.try_ack(&p);
            return;
        }
        // Once stopping, nothing takes messages any more: they stay unacknowledged.
        let _ = tx
            .send(Incoming {
                publish: p,
                generation: self.generation.load(Ordering::SeqCst),
            })
            .await;
    }
}
