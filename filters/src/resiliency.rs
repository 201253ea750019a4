//! The `Resiliency` resource (api.md §10): named policies, the targets that use them, and the
//! layers that apply them.
//!
//! This module reads timeouts, retries and circuit breakers and resolves which apply to an app or
//! to a component in a direction: by the target's name, else through Dapr's default-policy names
//! from the most specific to the most general, each kind on its own. The layers compose per
//! attempt as retry(breaker(timeout(call))): [`retry`], [`breaker`], [`timeout`], judging outcomes
//! through [`classify`]. The decisions (waits, what is retried, breaker transitions) are pure and
//! tested with paused time.

pub mod breaker;
pub mod classify;
pub mod retry;
pub mod timeout;

use std::collections::BTreeMap;
use std::ops::RangeInclusive;
use std::time::Duration;

use serde_json::Value;

pub use breaker::{BreakerPolicy, CircuitBreakerLayer};
pub use classify::HttpClassify;
pub use retry::{Cloned, Replay, RetryLayer, Retrying};
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
    /// App ids it applies to; empty means all.
    pub scopes: Vec<String>,
}

impl Resiliency {
    /// Reads a document; every problem is reported, naming its field and value.
    pub fn parse(doc: &Value) -> Result<Self, Vec<FieldError>> {
        let mut errs = Vec::new();
        let mut out = Self {
            name: doc
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            ..Self::default()
        };
        if out.name.is_empty() {
            errs.push(FieldError {
                field: "metadata.name".into(),
                message: "is required".into(),
            });
        }
        out.scopes = strings(doc.get("scopes"));
        if let Some(retries) = doc
            .pointer("/spec/policies/retries")
            .and_then(Value::as_object)
        {
            for (name, v) in retries {
                match retry_policy(v, &format!("spec.policies.retries.{name}")) {
                    Ok(p) => {
                        out.retries.insert(name.clone(), p);
                    }
                    Err(e) => errs.extend(e),
                }
            }
        }
        if let Some(timeouts) = doc
            .pointer("/spec/policies/timeouts")
            .and_then(Value::as_object)
        {
            for (name, v) in timeouts {
                let t = v.as_str().map_or_else(|| v.to_string(), str::to_owned);
                match duration_value(&t) {
                    Some(d) if !d.is_zero() => {
                        out.timeouts.insert(name.clone(), d);
                    }
                    _ => errs.push(FieldError {
                        field: format!("spec.policies.timeouts.{name}"),
                        message: format!(
                            "{t:?} is not a positive duration (e.g. 5s, 500ms, or milliseconds)"
                        ),
                    }),
                }
            }
        }
        if let Some(breakers) = doc
            .pointer("/spec/policies/circuitBreakers")
            .and_then(Value::as_object)
        {
            for (name, v) in breakers {
                match BreakerPolicy::parse(v, &format!("spec.policies.circuitBreakers.{name}")) {
                    Ok(p) => {
                        out.breakers.insert(name.clone(), p);
                    }
                    Err(e) => errs.extend(e),
                }
            }
        }
        if let Some(apps) = doc.pointer("/spec/targets/apps").and_then(Value::as_object) {
            for (app, v) in apps {
                let names = out.names(v, &format!("spec.targets.apps.{app}"), &mut errs);
                out.apps.insert(app.clone(), names);
            }
        }
        if let Some(components) = doc
            .pointer("/spec/targets/components")
            .and_then(Value::as_object)
        {
            for (component, v) in components {
                let at = format!("spec.targets.components.{component}");
                let inbound = v
                    .get("inbound")
                    .map(|x| out.names(x, &format!("{at}.inbound"), &mut errs));
                let outbound = v
                    .get("outbound")
                    .map(|x| out.names(x, &format!("{at}.outbound"), &mut errs));
                out.components.insert(
                    component.clone(),
                    (inbound.unwrap_or_default(), outbound.unwrap_or_default()),
                );
            }
        }
        if errs.is_empty() { Ok(out) } else { Err(errs) }
    }

    /// Whether it applies to `app_id`.
    pub fn applies_to(&self, app_id: &str) -> bool {
        self.scopes.is_empty() || self.scopes.iter().any(|s| s == app_id)
    }

    /// The policy names of a target, each checked against the policies of its kind.
    fn names(&self, v: &Value, at: &str, errs: &mut Vec<FieldError>) -> Names {
        let mut named = |key: &str, exists: &dyn Fn(&str) -> bool, kind: &str| {
            let name = v
                .get(key)
                .and_then(Value::as_str)
                .filter(|n| !n.is_empty())?;
            if !exists(name) {
                errs.push(FieldError {
                    field: format!("{at}.{key}"),
                    message: format!("{name:?} is not a policy in spec.policies.{kind}"),
                });
            }
            Some(name.to_owned())
        };
        Names {
            timeout: named("timeout", &|n| self.timeouts.contains_key(n), "timeouts"),
            retry: named("retry", &|n| self.retries.contains_key(n), "retries"),
            breaker: named(
                "circuitBreaker",
                &|n| self.breakers.contains_key(n),
                "circuitBreakers",
            ),
        }
    }

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
    fn policies(&self, names: Option<&Names>, levels: &[String]) -> Policies {
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

/// The names a target gives its policies.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Names {
    timeout: Option<String>,
    retry: Option<String>,
    breaker: Option<String>,
}

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

fn strings(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

fn retry_policy(v: &Value, at: &str) -> Result<RetryPolicy, Vec<FieldError>> {
    let mut errs = Vec::new();
    let mut bad = |field: &str, message: String| {
        errs.push(FieldError {
            field: format!("{at}.{field}"),
            message,
        })
    };
    let text = |field: &str| {
        v.get(field)
            .map(|x| x.as_str().map_or_else(|| x.to_string(), str::to_owned))
    };
    let mut duration = |field: &str, default: Duration| match text(field) {
        None => default,
        Some(t) => duration_value(&t).unwrap_or_else(|| {
            bad(
                field,
                format!("{t:?} is not a duration (e.g. 5s, 500ms, or milliseconds)"),
            );
            default
        }),
    };
    let constant = duration("duration", Duration::from_secs(5));
    let initial = duration("initialInterval", Duration::from_millis(500));
    let max_interval = duration("maxInterval", Duration::from_secs(60));
    let max_elapsed = duration("maxElapsedTime", Duration::from_secs(15 * 60));
    let mut errs2 = Vec::new();
    let mut bad2 = |field: &str, message: String| {
        errs2.push(FieldError {
            field: format!("{at}.{field}"),
            message,
        })
    };
    let mut fraction = |field: &str, default: f64| match text(field) {
        None => default,
        Some(t) => match t.parse::<f64>() {
            Ok(f) if f.is_finite() && f >= 0.0 => f,
            _ => {
                bad2(field, format!("{t:?} is not a non-negative number"));
                default
            }
        },
    };
    let randomization = fraction("randomizationFactor", 0.5).min(1.0);
    let multiplier = fraction("multiplier", 1.5);
    let max_retries = match text("maxRetries").map(|t| t.parse::<i64>()) {
        None => None,
        Some(Ok(n)) if n < 0 => None,
        Some(Ok(n)) => Some(u32::try_from(n).unwrap_or(u32::MAX)),
        Some(Err(_)) => {
            bad2(
                "maxRetries",
                format!(
                    "{:?} is not a whole number",
                    text("maxRetries").unwrap_or_default()
                ),
            );
            None
        }
    };
    let backoff = match text("policy")
        .as_deref()
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        None | Some("" | "constant") => Backoff::Constant(constant),
        Some("exponential") => Backoff::Exponential {
            initial,
            randomization,
            multiplier,
            max_interval,
            max_elapsed,
        },
        Some(other) => {
            bad2(
                "policy",
                format!("{other:?} is not constant or exponential"),
            );
            Backoff::Constant(constant)
        }
    };
    let http_codes = match v
        .pointer("/matching/httpStatusCodes")
        .and_then(Value::as_str)
    {
        None => None,
        Some(list) => match code_ranges(list, 100..=599) {
            Ok(r) => Some(r),
            Err(e) => {
                bad2("matching.httpStatusCodes", format!("{list:?}: {e}"));
                None
            }
        },
    };
    // gRPC codes are checked like HTTP ones; they would apply to gRPC calls, which this build
    // does not make, so they are not kept.
    if let Some(list) = v
        .pointer("/matching/gRPCStatusCodes")
        .and_then(Value::as_str)
        && let Err(e) = code_ranges(list, 0..=16)
    {
        bad2("matching.gRPCStatusCodes", format!("{list:?}: {e}"));
    }
    errs.extend(errs2);
    if errs.is_empty() {
        Ok(RetryPolicy {
            backoff,
            max_retries,
            http_codes,
        })
    } else {
        Err(errs)
    }
}

/// `"429,500-599"` into ranges, each within `allowed`.
fn code_ranges(
    list: &str,
    allowed: RangeInclusive<u16>,
) -> Result<Vec<RangeInclusive<u16>>, String> {
    list.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|part| {
            let (a, b) = part.split_once('-').unwrap_or((part, part));
            let parse = |s: &str| s.trim().parse::<u16>().ok().filter(|c| allowed.contains(c));
            match (parse(a), parse(b)) {
                (Some(a), Some(b)) if a <= b => Ok(a..=b),
                _ => Err(format!(
                    "{part:?} is not a code or range within {}-{}",
                    allowed.start(),
                    allowed.end()
                )),
            }
        })
        .collect()
}

/// A Go duration (`5s`, `1m30s`) or a bare number of milliseconds, as Resiliency fields take.
fn duration_value(v: &str) -> Option<Duration> {
    match v.trim().parse::<u64>() {
        Ok(ms) => Some(Duration::from_millis(ms)),
        Err(_) => crate::duration::go_duration(v),
    }
}

#[cfg(test)]
mod tests;
