//! The actor runtime's metrics, under daprd's names.

use super::{Counter, Gauge, Metric, metric};

const TYPE: &[&str] = &["app_id", "actor_type"];
const TYPE_SUCCESS: &[&str] = &["app_id", "actor_type", "success"];

pub(crate) const TIMERS_FIRED: Metric = metric(
    "dapr_runtime_actor_timers_fired_total",
    Counter,
    TYPE_SUCCESS,
    "Actor timer firings, by success (the app answered 200).",
);
pub(crate) const REMINDERS_FIRED: Metric = metric(
    "dapr_runtime_actor_reminders_fired_total",
    Counter,
    TYPE_SUCCESS,
    "Actor reminder firings, by success (the app answered 200).",
);
pub(crate) const DEACTIVATED: Metric = metric(
    "dapr_runtime_actor_deactivated_total",
    Counter,
    TYPE,
    "Actors deactivated that the app acknowledged.",
);
pub(crate) const DEACTIVATED_FAILED: Metric = metric(
    "dapr_runtime_actor_deactivated_failed_total",
    Counter,
    &["app_id", "actor_type", "reason"],
    "Actors deactivated that the app did not acknowledge: `invoke` (no answer) or \
     `status_code_<n>`.",
);
pub(crate) const REBALANCED: Metric = metric(
    "dapr_runtime_actor_rebalanced_total",
    Counter,
    TYPE,
    "Actors that left this host: idle, moved to their new owner, or at the stop.",
);
pub(crate) const PENDING_CALLS: Metric = metric(
    "dapr_runtime_actor_pending_actor_calls",
    Gauge,
    TYPE,
    "Calls waiting for an actor's turn.",
);

fn labels(app_id: &str, actor_type: &str) -> [(&'static str, String); 2] {
    [
        ("app_id", app_id.to_owned()),
        ("actor_type", actor_type.to_owned()),
    ]
}

/// Counts a timer or reminder firing.
pub(crate) fn fired(which: &Metric, app_id: &str, actor_type: &str, ok: bool) {
    let [a, t] = labels(app_id, actor_type);
    which
        .counter(&[a, t, ("success", ok.to_string())])
        .increment(1);
}

/// Counts an actor leaving this host; `failure` is why the app did not acknowledge it.
pub(crate) fn left(app_id: &str, actor_type: &str, failure: Option<String>) {
    REBALANCED.counter(&labels(app_id, actor_type)).increment(1);
    match failure {
        None => DEACTIVATED
            .counter(&labels(app_id, actor_type))
            .increment(1),
        Some(reason) => {
            let [a, t] = labels(app_id, actor_type);
            DEACTIVATED_FAILED
                .counter(&[a, t, ("reason", reason)])
                .increment(1);
        }
    }
}

/// The gauge of calls waiting for a turn of `actor_type`.
pub(crate) fn pending(app_id: &str, actor_type: &str) -> metrics::Gauge {
    PENDING_CALLS.gauge(&labels(app_id, actor_type))
}
