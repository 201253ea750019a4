//! The sidecar calling its engines: what wraps the `blocks` components once they are open —
//! their resiliency policies (`resiliency`) and Dapr's component metrics (`metrics`).

pub(crate) mod metrics;
pub(crate) mod resiliency;
