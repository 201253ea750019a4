//! What the dashboard shows of each subscription beyond Dapr's ingress metrics: deliveries in
//! flight and messages dead-lettered.

use super::{Counter, Gauge, Metric, metric};

const SUBSCRIPTION: &[&str] = &["app_id", "component", "namespace", "topic"];
pub(crate) const IN_FLIGHT: Metric = metric(
    "outrider_pubsub_ingress_in_flight",
    Gauge,
    SUBSCRIPTION,
    "Messages of a subscription being delivered to the app now, dead-letter tries included.",
);
pub(crate) const DEAD_LETTERS: Metric = metric(
    "outrider_pubsub_dead_letters_total",
    Counter,
    SUBSCRIPTION,
    "Messages the app kept failing that were moved to the subscription's dead-letter topic.",
);
