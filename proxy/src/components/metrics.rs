//! Dapr's pub/sub component metrics (api.md §13.1): `dapr_component_pubsub_egress_*` for
//! publishing and `dapr_component_pubsub_ingress_*` for deliveries to the app, each labelled with
//! `app_id`, `component`, `namespace` and `topic`.
//!
//! Topic labels stay bounded (security.md §5): delivered topics come from subscriptions, which
//! are configured; published topics come from callers, so only the first [`MAX_TOPICS`] distinct
//! ones get their own label and later ones are counted as `other`.

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::Instant;

use crate::telemetry::metrics as catalogue;

use outrider_blocks::pubsub::Outcome;

/// Distinct published topics that get a label of their own.
const MAX_TOPICS: usize = 100;

/// Who is recording: the labels every pub/sub metric carries.
#[derive(Debug)]
pub(crate) struct PubSubMetrics {
    app_id: String,
    namespace: String,
    published_topics: Mutex<HashSet<String>>,
}

fn ms(start: Instant) -> f64 {
    start.elapsed().as_secs_f64() * 1000.0
}

impl PubSubMetrics {
    pub(crate) fn new(app_id: &str, namespace: &str) -> Self {
        Self {
            app_id: app_id.into(),
            namespace: namespace.into(),
            published_topics: Mutex::default(),
        }
    }

    /// `topic` if it has, or may still get, a label of its own; else `other`.
    fn published_topic(&self, topic: &str) -> String {
        let mut known = self
            .published_topics
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if known.contains(topic) || (known.len() < MAX_TOPICS && known.insert(topic.to_owned())) {
            topic.to_owned()
        } else {
            "other".to_owned()
        }
    }

    fn labels(&self, component: &str, topic: String) -> Vec<(&'static str, String)> {
        vec![
            ("app_id", self.app_id.clone()),
            ("component", component.to_owned()),
            ("namespace", self.namespace.clone()),
            ("topic", topic),
        ]
    }

    /// The gauge of the messages of a subscription being delivered now.
    pub(crate) fn in_flight(&self, component: &str, topic: &str) -> metrics::Gauge {
        catalogue::subscriptions::IN_FLIGHT.gauge(&self.labels(component, topic.to_owned()))
    }

    /// The counter of the messages of a subscription moved to its dead-letter topic.
    pub(crate) fn dead_letters(&self, component: &str, topic: &str) -> metrics::Counter {
        catalogue::subscriptions::DEAD_LETTERS.counter(&self.labels(component, topic.to_owned()))
    }

    /// One publish that started at `start`.
    pub(crate) fn egress(&self, component: &str, topic: &str, success: bool, start: Instant) {
        let mut labels = self.labels(component, self.published_topic(topic));
        labels.push(("success", success.to_string()));
        catalogue::PUBSUB_EGRESS_COUNT.counter(&labels).increment(1);
        catalogue::PUBSUB_EGRESS_LATENCIES
            .histogram(&labels)
            .record(ms(start));
    }

    /// One bulk publish of `events` entries that started at `start`; `success` when all landed.
    pub(crate) fn egress_bulk(
        &self,
        component: &str,
        topic: &str,
        events: usize,
        success: bool,
        start: Instant,
    ) {
        let mut labels = self.labels(component, self.published_topic(topic));
        labels.push(("success", success.to_string()));
        catalogue::PUBSUB_EGRESS_BULK_COUNT
            .counter(&labels)
            .increment(1);
        catalogue::PUBSUB_EGRESS_BULK_EVENT_COUNT
            .counter(&labels)
            .increment(events as u64);
        catalogue::PUBSUB_EGRESS_BULK_LATENCIES
            .histogram(&labels)
            .record(ms(start));
    }

    /// One delivery to the app that started at `start`. `status` is `success` only for a `DROP`
    /// the app asked for, as daprd labels it; empty otherwise.
    pub(crate) fn ingress(
        &self,
        component: &str,
        topic: &str,
        outcome: Outcome,
        status: &str,
        start: Instant,
    ) {
        let process_status = match outcome {
            Outcome::Success => "success",
            Outcome::Retry => "retry",
            Outcome::Drop => "drop",
        };
        let mut labels = self.labels(component, topic.to_owned());
        labels.push(("process_status", process_status.to_owned()));
        labels.push(("status", status.to_owned()));
        catalogue::PUBSUB_INGRESS_COUNT
            .counter(&labels)
            .increment(1);
        catalogue::PUBSUB_INGRESS_LATENCIES
            .histogram(&labels)
            .record(ms(start));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn published_topic_labels_are_bounded() {
        let m = PubSubMetrics::new("a", "default");
        for i in 0..MAX_TOPICS {
            assert_eq!(m.published_topic(&format!("t{i}")), format!("t{i}"));
        }
        assert_eq!(m.published_topic("one-too-many"), "other");
        assert_eq!(
            m.published_topic("t7"),
            "t7",
            "known topics keep their label"
        );
    }
}
