//! The `Resiliency` resource (api.md §10): named policies and the targets that use them.
//!
//! This part reads retry policies and resolves which one applies to a component in a direction,
//! by name or through the default-policy names. The decisions are pure: how long to wait before
//! a retry, and whether an answer's status code is retried at all.

use std::collections::BTreeMap;
use std::ops::RangeInclusive;
use std::time::Duration;

use serde_json::Value;

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
            Backoff::Exponential { initial, randomization, multiplier, max_interval, max_elapsed } => {
                if !max_elapsed.is_zero() && elapsed >= *max_elapsed {
                    return None;
                }
                let exponent = i32::try_from(retry).unwrap_or(i32::MAX);
                let base = (initial.as_secs_f64() * multiplier.powi(exponent)).min(max_interval.as_secs_f64());
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
            (Some(code), Some(ranges)) if (100..=599).contains(&code) => ranges.iter().any(|r| r.contains(&code)),
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
    retries: BTreeMap<String, RetryPolicy>,
    /// component name → (inbound retry policy name, outbound retry policy name)
    components: BTreeMap<String, (Option<String>, Option<String>)>,
    /// App ids it applies to; empty means all.
    pub scopes: Vec<String>,
}

impl Resiliency {
    /// Reads a document; every problem is reported, naming its field and value.
    pub fn parse(doc: &Value) -> Result<Self, Vec<FieldError>> {
        let mut errs = Vec::new();
        let mut out = Self {
            name: doc.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default().to_owned(),
            ..Self::default()
        };
        if out.name.is_empty() {
            errs.push(FieldError { field: "metadata.name".into(), message: "is required".into() });
        }
        out.scopes = strings(doc.get("scopes"));
        if let Some(retries) = doc.pointer("/spec/policies/retries").and_then(Value::as_object) {
            for (name, v) in retries {
                match retry_policy(v, &format!("spec.policies.retries.{name}")) {
                    Ok(p) => {
                        out.retries.insert(name.clone(), p);
                    }
                    Err(e) => errs.extend(e),
                }
            }
        }
        if let Some(components) = doc.pointer("/spec/targets/components").and_then(Value::as_object) {
            for (component, v) in components {
                let mut named = |dir: &str| {
                    let name = v.pointer(&format!("/{dir}/retry")).and_then(Value::as_str)?;
                    if !out.retries.contains_key(name) {
                        errs.push(FieldError {
                            field: format!("spec.targets.components.{component}.{dir}.retry"),
                            message: format!("{name:?} is not a policy in spec.policies.retries"),
                        });
                    }
                    Some(name.to_owned())
                };
                let entry = (named("inbound"), named("outbound"));
                out.components.insert(component.clone(), entry);
            }
        }
        if errs.is_empty() { Ok(out) } else { Err(errs) }
    }

    /// Whether it applies to `app_id`.
    pub fn applies_to(&self, app_id: &str) -> bool {
        self.scopes.is_empty() || self.scopes.iter().any(|s| s == app_id)
    }

    /// The retry policy for `component` (of type `component_type`, e.g. `pubsub.redis`) in
    /// `dir`: the one its target names, else the first default policy that exists, from the
    /// most specific (`DefaultPubsubComponentInboundRetryPolicy`) to `DefaultRetryPolicy`.
    pub fn component_retry(&self, component: &str, component_type: &str, dir: Direction) -> Option<&RetryPolicy> {
        let named = self.components.get(component).and_then(|(inbound, outbound)| match dir {
            Direction::Inbound => inbound.as_ref(),
            Direction::Outbound => outbound.as_ref(),
        });
        if let Some(p) = named.and_then(|n| self.retries.get(n)) {
            return Some(p);
        }
        let d = dir.name();
        let kind = component_kind(component_type);
        let defaults = [
            kind.map(|k| format!("Default{k}Component{d}RetryPolicy")),
            Some(format!("DefaultComponent{d}RetryPolicy")),
            Some("DefaultComponentRetryPolicy".to_owned()),
            Some("DefaultRetryPolicy".to_owned()),
        ];
        defaults.into_iter().flatten().find_map(|name| self.retries.get(&name))
    }
}

/// The first policy found across documents, in order.
pub fn component_retry<'a>(
    all: &'a [Resiliency],
    component: &str,
    component_type: &str,
    dir: Direction,
) -> Option<&'a RetryPolicy> {
    all.iter().find_map(|r| r.component_retry(component, component_type, dir))
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
        .map(|a| a.iter().filter_map(Value::as_str).map(str::to_owned).collect())
        .unwrap_or_default()
}

fn retry_policy(v: &Value, at: &str) -> Result<RetryPolicy, Vec<FieldError>> {
    let mut errs = Vec::new();
    let mut bad = |field: &str, message: String| errs.push(FieldError { field: format!("{at}.{field}"), message });
    let text = |field: &str| v.get(field).map(|x| x.as_str().map_or_else(|| x.to_string(), str::to_owned));
    let mut duration = |field: &str, default: Duration| match text(field) {
        None => default,
        Some(t) => duration_value(&t).unwrap_or_else(|| {
            bad(field, format!("{t:?} is not a duration (e.g. 5s, 500ms, or milliseconds)"));
            default
        }),
    };
    let constant = duration("duration", Duration::from_secs(5));
    let initial = duration("initialInterval", Duration::from_millis(500));
    let max_interval = duration("maxInterval", Duration::from_secs(60));
    let max_elapsed = duration("maxElapsedTime", Duration::from_secs(15 * 60));
    let mut errs2 = Vec::new();
    let mut bad2 = |field: &str, message: String| errs2.push(FieldError { field: format!("{at}.{field}"), message });
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
            bad2("maxRetries", format!("{:?} is not a whole number", text("maxRetries").unwrap_or_default()));
            None
        }
    };
    let backoff = match text("policy").as_deref().map(str::to_ascii_lowercase).as_deref() {
        None | Some("" | "constant") => Backoff::Constant(constant),
        Some("exponential") => Backoff::Exponential { initial, randomization, multiplier, max_interval, max_elapsed },
        Some(other) => {
            bad2("policy", format!("{other:?} is not constant or exponential"));
            Backoff::Constant(constant)
        }
    };
    let http_codes = match v.pointer("/matching/httpStatusCodes").and_then(Value::as_str) {
        None => None,
        Some(list) => match code_ranges(list, 100..=599) {
            Ok(r) => Some(r),
            Err(e) => {
                bad2("matching.httpStatusCodes", format!("{list:?}: {e}"));
                None
            }
        },
    };
    errs.extend(errs2);
    if errs.is_empty() { Ok(RetryPolicy { backoff, max_retries, http_codes }) } else { Err(errs) }
}

/// `"429,500-599"` into ranges, each within `allowed`.
fn code_ranges(list: &str, allowed: RangeInclusive<u16>) -> Result<Vec<RangeInclusive<u16>>, String> {
    list.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|part| {
            let (a, b) = part.split_once('-').unwrap_or((part, part));
            let parse = |s: &str| s.trim().parse::<u16>().ok().filter(|c| allowed.contains(c));
            match (parse(a), parse(b)) {
                (Some(a), Some(b)) if a <= b => Ok(a..=b),
                _ => Err(format!("{part:?} is not a code or range within {}-{}", allowed.start(), allowed.end())),
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
mod tests {
    use super::*;
    use serde_json::json;

    fn doc(spec: Value) -> Value {
        json!({"apiVersion": "dapr.io/v1alpha1", "kind": "Resiliency", "metadata": {"name": "r"}, "spec": spec})
    }

    #[test]
    fn constant_and_exponential_waits() {
        let ms = Duration::from_millis;
        let constant = RetryPolicy { backoff: Backoff::Constant(ms(200)), max_retries: Some(2), http_codes: None };
        assert_eq!(constant.delay(0, ms(0), 0.3), Some(ms(200)));
        assert_eq!(constant.delay(1, ms(0), 0.9), Some(ms(200)));
        assert_eq!(constant.delay(2, ms(0), 0.0), None, "two retries, then exhausted");
        let exp = RetryPolicy {
            backoff: Backoff::Exponential {
                initial: ms(100),
                randomization: 0.5,
                multiplier: 2.0,
                max_interval: ms(1000),
                max_elapsed: ms(10_000),
            },
            max_retries: None,
            http_codes: None,
        };
        // jitter 0.5 is the midpoint: no randomisation.
        let waits: Vec<Duration> = (0..6).map(|n| exp.delay(n, ms(0), 0.5).unwrap()).collect();
        assert_eq!(waits, [ms(100), ms(200), ms(400), ms(800), ms(1000), ms(1000)]);
        assert_eq!(exp.delay(1, ms(0), 0.0), Some(ms(100)), "-50 %");
        assert_eq!(exp.delay(1, ms(0), 1.0), Some(ms(300)), "+50 %");
        assert_eq!(exp.delay(3, ms(0), 1.0), Some(ms(1000)), "never beyond maxInterval");
        assert_eq!(exp.delay(50, ms(10_000), 0.5), None, "maxElapsedTime reached");
        assert_eq!(exp.delay(4, ms(9_500), 0.5), None, "the wait would end past maxElapsedTime");
        assert_eq!(exp.delay(4, ms(9_000), 0.5), Some(ms(1000)), "ends exactly at maxElapsedTime");
    }

    #[test]
    fn matching_status_codes() {
        let p = RetryPolicy {
            backoff: Backoff::Constant(Duration::ZERO),
            max_retries: None,
            http_codes: Some(code_ranges("429, 500-503", 100..=599).unwrap()),
        };
        assert!(p.retries_status(Some(429)) && p.retries_status(Some(502)));
        assert!(!p.retries_status(Some(404)) && !p.retries_status(Some(504)));
        assert!(p.retries_status(None), "a failure without a status is always retried");
        for bad in ["600", "50-40", "abc", "99"] {
            assert!(code_ranges(bad, 100..=599).is_err(), "{bad}");
        }
    }

    #[test]
    fn named_targets_then_defaults_from_most_specific() {
        let r = Resiliency::parse(&doc(json!({
            "policies": {"retries": {
                "important": {"policy": "constant", "duration": "50ms", "maxRetries": 4},
                "DefaultPubsubComponentInboundRetryPolicy": {"duration": "1s", "maxRetries": 2},
                "DefaultRetryPolicy": {"policy": "exponential", "maxInterval": "15s"},
            }},
            "targets": {"components": {"orders": {"inbound": {"retry": "important"}}}},
        })))
        .unwrap();
        let inbound = |name: &str, ty: &str| r.component_retry(name, ty, Direction::Inbound).map(|p| p.max_retries);
        assert_eq!(inbound("orders", "pubsub.redis"), Some(Some(4)), "named");
        assert_eq!(inbound("other", "pubsub.redis"), Some(Some(2)), "the pub/sub inbound default");
        assert_eq!(inbound("store", "state.redis"), Some(None), "the top-level default");
        let out = r.component_retry("orders", "pubsub.redis", Direction::Outbound).unwrap();
        assert!(matches!(out.backoff, Backoff::Exponential { .. }), "outbound falls back to DefaultRetryPolicy");
        assert!(
            Resiliency::parse(&doc(json!({})))
                .unwrap()
                .component_retry("x", "pubsub.redis", Direction::Inbound)
                .is_none()
        );
    }

    #[test]
    fn problems_name_field_and_value() {
        let errs = Resiliency::parse(&json!({"kind": "Resiliency", "metadata": {"name": ""}, "spec": {
            "policies": {"retries": {
                "a": {"policy": "linear", "duration": "soon", "maxRetries": "x"},
                "b": {"matching": {"httpStatusCodes": "200-100"}},
            }},
            "targets": {"components": {"pubsub": {"inbound": {"retry": "missing"}}}},
        }}))
        .unwrap_err();
        let got: Vec<String> = errs.iter().map(ToString::to_string).collect();
        let expect = [
            "metadata.name: is required",
            "spec.policies.retries.a.duration: \"soon\"",
            "spec.policies.retries.a.maxRetries: \"x\"",
            "spec.policies.retries.a.policy: \"linear\"",
            "spec.policies.retries.b.matching.httpStatusCodes: \"200-100\"",
            "spec.targets.components.pubsub.inbound.retry: \"missing\"",
        ];
        for e in expect {
            assert!(got.iter().any(|g| g.starts_with(e)), "{e} not in {got:#?}");
        }
    }

    #[test]
    fn durations() {
        let ms = Duration::from_millis;
        assert_eq!(duration_value("500"), Some(ms(500)), "bare numbers are milliseconds");
        assert_eq!(duration_value("5s"), Some(ms(5000)));
        assert_eq!(duration_value("1m30s"), Some(ms(90_000)));
        assert_eq!(duration_value("1.5h"), Some(ms(5_400_000)));
        for bad in ["", "soon", "5d", "-1s"] {
            assert_eq!(duration_value(bad), None, "{bad}");
        }
    }

    #[test]
    fn scopes() {
        let mut d = doc(json!({}));
        d["scopes"] = json!(["a"]);
        let r = Resiliency::parse(&d).unwrap();
        assert!(r.applies_to("a") && !r.applies_to("b"));
        assert!(Resiliency::parse(&doc(json!({}))).unwrap().applies_to("anyone"));
    }
}
