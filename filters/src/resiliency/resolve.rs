//! Which policies apply to a call: the ones its target names, else Dapr's default policies from
//! the most specific level to the most general, each kind on its own, and across documents the
//! first that resolves.
//!
//! Pure lookups over parsed documents (reading them is `parse`'s business); the layers that apply
//! the result are [`super::retry`], [`super::breaker`] and [`super::timeout`].

use std::collections::BTreeMap;
use std::time::Duration;

use super::{Backoff, BreakerPolicy, Direction, Names, Resiliency, RetryPolicy, Retrying};

/// The policies that apply to one target, each with its name.
#[derive(Clone, Debug, Default)]
pub struct Policies {
    /// The deadline per attempt.
    pub timeout: Option<(String, Duration)>,
    /// The retry policy.
    pub retry: Option<(String, RetryPolicy)>,
    /// The circuit breaker.
    pub breaker: Option<(String, BreakerPolicy)>,
    /// Whether a `Resiliency` names the target (which turns the built-in retries off).
    pub named_target: bool,
}

/// Dapr's built-in retries for service invocation: three, one second apart.
pub const BUILTIN_SERVICE_RETRIES: &str = "DaprBuiltInServiceRetries";

impl Resiliency {
    /// The retry policy for `component` (of type `component_type`, e.g. `pubsub.redis`) in
    /// `dir`: the one its target names, else the first default policy that exists, from the
    /// most specific (`DefaultPubsubComponentInboundRetryPolicy`) to `DefaultRetryPolicy`.
    pub fn component_retry(
        &self,
        component: &str,
        component_type: &str,
        dir: Direction,
    ) -> Option<&RetryPolicy> {
        let names = self
            .components
            .get(component)
            .map(|(inbound, outbound)| match dir {
                Direction::Inbound => inbound,
                Direction::Outbound => outbound,
            });
        self.resolve(
            names.and_then(|n| n.retry.as_deref()),
            &component_defaults(component_type, dir),
            "Retry",
            &self.retries,
        )
        .map(|(_, p)| p)
    }

    /// The policies for calls to `component` (of type `component_type`) in `dir`.
    fn component(&self, component: &str, component_type: &str, dir: Direction) -> Policies {
        let names = self
            .components
            .get(component)
            .map(|(inbound, outbound)| match dir {
                Direction::Inbound => inbound,
                Direction::Outbound => outbound,
            });
        self.policies(names, &component_defaults(component_type, dir))
    }

    /// The policies for calls to app `app_id`.
    fn app(&self, app_id: &str) -> Policies {
        self.policies(
            self.apps.get(app_id),
            &["DefaultApp".to_owned(), "Default".to_owned()],
        )
    }

    /// Each kind of policy for a target with `names`, else from the default `levels`.
    pub(super) fn policies(&self, names: Option<&Names>, levels: &[String]) -> Policies {
        Policies {
            timeout: self
                .resolve(
                    names.and_then(|n| n.timeout.as_deref()),
                    levels,
                    "Timeout",
                    &self.timeouts,
                )
                .map(|(n, d)| (n, *d)),
            retry: self
                .resolve(
                    names.and_then(|n| n.retry.as_deref()),
                    levels,
                    "Retry",
                    &self.retries,
                )
                .map(|(n, p)| (n, p.clone())),
            breaker: self
                .resolve(
                    names.and_then(|n| n.breaker.as_deref()),
                    levels,
                    "CircuitBreaker",
                    &self.breakers,
                )
                .map(|(n, p)| (n, p.clone())),
            named_target: names.is_some(),
        }
    }

    /// The policy `named`, else the first of `<level><Kind>Policy` that exists.
    fn resolve<'a, T>(
        &'a self,
        named: Option<&str>,
        levels: &[String],
        kind: &str,
        policies: &'a BTreeMap<String, T>,
    ) -> Option<(String, &'a T)> {
        if let Some(n) = named {
            return policies.get(n).map(|p| (n.to_owned(), p));
        }
        levels
            .iter()
            .map(|l| format!("{l}{kind}Policy"))
            .find_map(|n| policies.get(&n).map(|p| (n, p)))
    }
}

/// The policies for calls to app `app_id`, across documents: each kind from the first document
/// that resolves it. Without a configured retry policy, the built-in one applies, unless a
/// document names the app as a target (as in Dapr); a policy named like the built-in replaces it.
pub fn app_policies(all: &[Resiliency], app_id: &str) -> (Policies, Option<Retrying>) {
    let mut out = Policies::default();
    for doc in all {
        let p = doc.app(app_id);
        out.timeout = out.timeout.or(p.timeout);
        out.retry = out.retry.or(p.retry);
        out.breaker = out.breaker.or(p.breaker);
        out.named_target |= p.named_target;
    }
    let retrying = match &out.retry {
        Some((name, policy)) => Some(Retrying {
            name: name.clone(),
            policy: policy.clone(),
            builtin: false,
        }),
        None if out.named_target => None,
        None => {
            let own = all
                .iter()
                .find_map(|d| d.retries.get(BUILTIN_SERVICE_RETRIES));
            let policy = own.cloned().unwrap_or(RetryPolicy {
                backoff: Backoff::Constant(Duration::from_secs(1)),
                max_retries: Some(3),
                http_codes: None,
                grpc_codes: None,
            });
            Some(Retrying {
                name: BUILTIN_SERVICE_RETRIES.to_owned(),
                policy,
                builtin: own.is_none(),
            })
        }
    };
    (out, retrying)
}

/// The policies for calls to `component` in `dir`, across documents: each kind from the first
/// document that resolves it. Components have no built-in retries.
pub fn component_policies(
    all: &[Resiliency],
    component: &str,
    component_type: &str,
    dir: Direction,
) -> Policies {
    let mut out = Policies::default();
    for doc in all {
        let p = doc.component(component, component_type, dir);
        out.timeout = out.timeout.or(p.timeout);
        out.retry = out.retry.or(p.retry);
        out.breaker = out.breaker.or(p.breaker);
        out.named_target |= p.named_target;
    }
    out
}

/// The default-policy levels for a component, most specific first.
fn component_defaults(component_type: &str, dir: Direction) -> Vec<String> {
    let d = dir.name();
    let mut levels = Vec::new();
    if let Some(k) = component_kind(component_type) {
        levels.push(format!("Default{k}Component{d}"));
    }
    levels.extend([
        format!("DefaultComponent{d}"),
        "DefaultComponent".to_owned(),
        "Default".to_owned(),
    ]);
    levels
}

/// The first policy found across documents, in order.
pub fn component_retry<'a>(
    all: &'a [Resiliency],
    component: &str,
    component_type: &str,
    dir: Direction,
) -> Option<&'a RetryPolicy> {
    all.iter()
        .find_map(|r| r.component_retry(component, component_type, dir))
}

fn component_kind(component_type: &str) -> Option<&'static str> {
    Some(match component_type.split('.').next()? {
        "state" => "Statestore",
        "pubsub" => "Pubsub",
        "bindings" => "Binding",
        "secretstores" => "Secretstore",
        "configuration" => "Configuration",
        "lock" => "Lock",
        "crypto" => "Crypto",
        "conversation" => "Conversation",
        _ => return None,
    })
}
