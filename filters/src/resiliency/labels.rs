//! The labels of the resiliency metrics (`dapr_resiliency_*`), shared by the retry, breaker and
//! timeout layers, and the two ways those layers report through them.

use super::breaker;

/// The labels of one target's resiliency metrics. Every value comes from configuration or from a
/// target that resolved, so the series stay bounded.
#[derive(Clone, Debug)]
pub struct Labels {
    /// This sidecar's app id.
    pub app_id: String,
    /// `app_<id>` or `component_<name>`.
    pub target: String,
    /// `outbound` or `inbound`.
    pub flow_direction: &'static str,
}

impl Labels {
    /// The labels of calls from `app_id` to another app, `target`.
    pub fn app(app_id: &str, target: &str) -> Self {
        Self {
            app_id: app_id.to_owned(),
            target: format!("app_{target}"),
            flow_direction: "outbound",
        }
    }

    /// The labels of calls between `app_id` and component `name`: `outbound` to it, `inbound`
    /// from it (deliveries).
    pub fn component(app_id: &str, name: &str, flow_direction: &'static str) -> Self {
        Self {
            app_id: app_id.to_owned(),
            target: format!("component_{name}"),
            flow_direction,
        }
    }

    /// Counts one activation of policy `name` of `kind` (`retry`, `timeout`, `circuitbreaker`).
    pub(crate) fn activation(&self, kind: &'static str, name: &str) {
        metrics::counter!(
            "dapr_resiliency_activations_total",
            "app_id" => self.app_id.clone(),
            "name" => name.to_owned(),
            "policy" => kind,
            "flow_direction" => self.flow_direction,
            "target" => self.target.clone(),
        )
        .increment(1);
    }

    /// Exports the state of breaker `name`: 1 for the current state, 0 for the others.
    pub(crate) fn breaker_state(&self, name: &str, state: breaker::State) {
        for s in [
            breaker::State::Closed,
            breaker::State::Open,
            breaker::State::HalfOpen,
        ] {
            metrics::gauge!(
                "dapr_resiliency_cb_state",
                "app_id" => self.app_id.clone(),
                "name" => name.to_owned(),
                "policy" => "circuitbreaker",
                "flow_direction" => self.flow_direction,
                "target" => self.target.clone(),
                "status" => s.label(),
            )
            .set(if s == state { 1.0 } else { 0.0 });
        }
    }
}
