//! The `Resiliency` resource (api.md §10): named policies, the targets that use them, and the
//! layers that apply them.
//!
//! This module reads timeouts, retries and circuit breakers and resolves which apply to an app or
//! to a component in a direction: by the target's name, else through Dapr's default-policy names
//! from the most specific to the most general, each kind on its own. The layers compose per
//! attempt as retry(breaker(timeout(call))): [`retry`], [`breaker`], [`timeout`], judging outcomes
//! through [`classify`]. The decisions (waits, what is retried, breaker transitions) are pure and
//! tested with paused time.

mod actors;
pub mod breaker;
pub mod classify;
mod labels;
mod parse;
mod resolve;
pub mod retry;
mod stack;
pub mod timeout;

use std::collections::BTreeMap;
use std::ops::RangeInclusive;
use std::time::Duration;

pub use actors::{
    ActorBreakers, ActorPolicies, Admitted, BreakerScope, actor_policies, named_actor_types,
};
pub use breaker::{BreakerPolicy, CircuitBreakerLayer};
pub use classify::{Failed, HttpClassify, StackError};
pub use labels::Labels;
pub use resolve::{
    BUILTIN_SERVICE_RETRIES, Policies, app_policies, component_policies, component_retry,
};
pub use retry::{Cloned, Replay, RetryLayer, Retrying};
pub use stack::{Stack, Stacked};
pub use timeout::TimeoutLayer;

/// A problem in a `Resiliency` document: the dotted field and what is wrong with its value.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct FieldError {
    /// Dotted path of the field.
    pub field: String,
    /// What is wrong, quoting the value.
    pub message: String,
}

/// How long to wait between attempts.
#[derive(Clone, Debug, PartialEq)]
pub enum Backoff {
    /// The same interval every time.
    Constant(Duration),
    /// Growing intervals with jitter, as Dapr's exponential policy.
    Exponential {
        /// The first interval.
        initial: Duration,
        /// Each interval is randomised by ± this fraction.
        randomization: f64,
        /// Each interval is this many times the previous one.
        multiplier: f64,
        /// No interval is longer than this.
        max_interval: Duration,
        /// No retry starts after this much time since the first attempt (zero: no limit).
        max_elapsed: Duration,
    },
}

/// A named retry policy.
#[derive(Clone, Debug, PartialEq)]
pub struct RetryPolicy {
    /// The waits.
    pub backoff: Backoff,
    /// Retries after the first attempt; `None` retries without limit.
    pub max_retries: Option<u32>,
    /// HTTP status codes that are retried; `None` retries every code.
    pub http_codes: Option<Vec<RangeInclusive<u16>>>,
    /// gRPC status codes that are retried (`matching.gRPCStatusCodes`); `None` retries every
    /// gRPC error.
    pub grpc_codes: Option<Vec<RangeInclusive<u16>>>,
}

impl RetryPolicy {
    /// The wait before retry number `retry` (0 is the first retry), or `None` when the policy
    /// is exhausted. `elapsed` is the time since the first attempt; `jitter` is a uniform
    /// random number in `[0, 1)` (injected, so that the decision stays a pure function).
    pub fn delay(&self, retry: u32, elapsed: Duration, jitter: f64) -> Option<Duration> {
        if self.max_retries.is_some_and(|max| retry >= max) {
            return None;
        }
        match &self.backoff {
            Backoff::Constant(d) => Some(*d),
            Backoff::Exponential {
                initial,
                randomization,
                multiplier,
                max_interval,
                max_elapsed,
            } => {
                if !max_elapsed.is_zero() && elapsed >= *max_elapsed {
                    return None;
                }
                let exponent = i32::try_from(retry).unwrap_or(i32::MAX);
                let base = (initial.as_secs_f64() * multiplier.powi(exponent))
                    .min(max_interval.as_secs_f64());
                let spread = base * randomization;
                let wait = (base - spread + jitter.clamp(0.0, 1.0) * 2.0 * spread).max(0.0);
                let wait = Duration::from_secs_f64(wait).min(*max_interval);
                // A retry that would start past maxElapsedTime does not happen.
                (max_elapsed.is_zero() || elapsed + wait <= *max_elapsed).then_some(wait)
            }
        }
    }

    /// Whether a failure that carried the HTTP status `status` is retried (`None`: the failure
    /// had no status, e.g. a network error or a RETRY answer, and is always retried).
    pub fn retries_status(&self, status: Option<u16>) -> bool {
        match (status, &self.http_codes) {
            (Some(code), Some(ranges)) if (100..=599).contains(&code) => {
                ranges.iter().any(|r| r.contains(&code))
            }
            _ => true,
        }
    }
}

/// Traffic between the sidecar and a component.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Component → app: pub/sub deliveries, input bindings.
    Inbound,
    /// Sidecar → component: state calls, publishes.
    Outbound,
}

impl Direction {
    fn name(self) -> &'static str {
        match self {
            Self::Inbound => "Inbound",
            Self::Outbound => "Outbound",
        }
    }
}

/// One `Resiliency` document.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Resiliency {
    /// Its name.
    pub name: String,
    timeouts: BTreeMap<String, Duration>,
    retries: BTreeMap<String, RetryPolicy>,
    breakers: BTreeMap<String, BreakerPolicy>,
    /// app id → the policy names it uses
    apps: BTreeMap<String, Names>,
    /// component name → (inbound names, outbound names)
    components: BTreeMap<String, (Names, Names)>,
    /// actor type → its policy names, breaker scope and cache size
    actors: BTreeMap<String, actors::ActorTarget>,
    /// App ids it applies to; empty means all.
    pub scopes: Vec<String>,
}

impl Resiliency {
    /// Whether it applies to `app_id`.
    pub fn applies_to(&self, app_id: &str) -> bool {
        self.scopes.is_empty() || self.scopes.iter().any(|s| s == app_id)
    }
}

/// The names a target gives its policies.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Names {
    timeout: Option<String>,
    retry: Option<String>,
    breaker: Option<String>,
}

#[cfg(test)]
mod tests;
