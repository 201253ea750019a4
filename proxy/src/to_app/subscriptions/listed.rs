//! Where each subscription stands, as `/v1.0/metadata` lists it.

use serde_json::{Value, json};

use super::Spec;

/// Where a subscription stands, as `/v1.0/metadata` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum SubState {
    /// Receiving messages.
    Active,
    /// The broker refused or failed; trying again (the last error).
    Retrying(String),
    /// Never going to work as configured (the reason).
    Failed(String),
    /// Not pulling while the app fails its health checks.
    Paused,
}

/// A subscription and its state.
#[derive(Clone, Debug)]
pub(crate) struct Listed {
    pub(crate) spec: Spec,
    pub(crate) state: SubState,
}

impl Listed {
    /// How `/v1.0/metadata` lists it: daprd's fields, plus `status` and, unless active, `error`.
    pub(crate) fn to_metadata(&self) -> Value {
        let mut v = self.spec.to_metadata();
        let (status, error) = match &self.state {
            SubState::Active => ("ACTIVE", None),
            SubState::Retrying(e) => ("RETRYING", Some(e)),
            SubState::Failed(e) => ("FAILED", Some(e)),
            SubState::Paused => ("PAUSED", None),
        };
        v["status"] = json!(status);
        if let Some(e) = error {
            v["error"] = json!(e);
        }
        v
    }
}
