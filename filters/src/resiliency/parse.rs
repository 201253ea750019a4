//! Reading a `Resiliency` document: the named timeouts, retries and circuit breakers, and the
//! targets that name them.
//!
//! Every problem is collected with its dotted field path and value, so that one run reports all
//! of them. This module only reads; which policy applies to a call is `resolve`'s business, and
//! the breaker reads its own policy fields in `breaker::policy` with the same [`Fields`] helper.

use std::ops::RangeInclusive;
use std::time::Duration;

use serde_json::{Map, Value};

use super::{Backoff, BreakerPolicy, FieldError, Names, Resiliency, RetryPolicy};

/// The examples a problem with a retry duration quotes.
const RETRY_DURATION_EXAMPLES: &str = "5s, 500ms, or milliseconds";

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
        out.read_policies(doc, &mut errs);
        out.read_targets(doc, &mut errs);
        if errs.is_empty() { Ok(out) } else { Err(errs) }
    }

    /// `spec.policies`: retries, timeouts and circuit breakers, each by name.
    fn read_policies(&mut self, doc: &Value, errs: &mut Vec<FieldError>) {
        for (name, v) in entries(doc, "/spec/policies/retries") {
            match retry_policy(v, &format!("spec.policies.retries.{name}")) {
                Ok(p) => {
                    self.retries.insert(name.clone(), p);
                }
                Err(e) => errs.extend(e),
            }
        }
        for (name, v) in entries(doc, "/spec/policies/timeouts") {
            let t = v.as_str().map_or_else(|| v.to_string(), str::to_owned);
            match duration_value(&t) {
                Some(d) if !d.is_zero() => {
                    self.timeouts.insert(name.clone(), d);
                }
                _ => errs.push(FieldError {
                    field: format!("spec.policies.timeouts.{name}"),
                    message: format!(
                        "{t:?} is not a positive duration (e.g. 5s, 500ms, or milliseconds)"
                    ),
                }),
            }
        }
        for (name, v) in entries(doc, "/spec/policies/circuitBreakers") {
            match BreakerPolicy::parse(v, &format!("spec.policies.circuitBreakers.{name}")) {
                Ok(p) => {
                    self.breakers.insert(name.clone(), p);
                }
                Err(e) => errs.extend(e),
            }
        }
    }

    /// `spec.targets`: the policy names of apps and of components in each direction; read after
    /// the policies, so that every name can be checked.
    fn read_targets(&mut self, doc: &Value, errs: &mut Vec<FieldError>) {
        for (app, v) in entries(doc, "/spec/targets/apps") {
            let names = self.names(v, &format!("spec.targets.apps.{app}"), errs);
            self.apps.insert(app.clone(), names);
        }
        for (component, v) in entries(doc, "/spec/targets/components") {
            let at = format!("spec.targets.components.{component}");
            let inbound = v
                .get("inbound")
                .map(|x| self.names(x, &format!("{at}.inbound"), errs));
            let outbound = v
                .get("outbound")
                .map(|x| self.names(x, &format!("{at}.outbound"), errs));
            self.components.insert(
                component.clone(),
                (inbound.unwrap_or_default(), outbound.unwrap_or_default()),
            );
        }
        self.actors = super::actors::read_actor_targets(self, doc, errs);
    }

    /// The policy names of a target, each checked against the policies of its kind.
    pub(super) fn names(&self, v: &Value, at: &str, errs: &mut Vec<FieldError>) -> Names {
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
}

/// The fields of one policy object at `at`, collecting a problem for every bad value.
pub(super) struct Fields<'a> {
    v: &'a Value,
    at: &'a str,
    errs: Vec<FieldError>,
}

impl<'a> Fields<'a> {
    /// Reads the object `v` found at the dotted path `at`.
    pub(super) fn new(v: &'a Value, at: &'a str) -> Self {
        Self {
            v,
            at,
            errs: Vec::new(),
        }
    }

    /// A field as text: a string as it is, any other value as JSON.
    pub(super) fn text(&self, field: &str) -> Option<String> {
        self.v
            .get(field)
            .map(|x| x.as_str().map_or_else(|| x.to_string(), str::to_owned))
    }

    /// Records a problem with `field`.
    pub(super) fn bad(&mut self, field: &str, message: String) {
        self.errs.push(FieldError {
            field: format!("{}.{field}", self.at),
            message,
        });
    }

    /// A duration field, `default` when absent or bad; a problem quotes `examples`.
    pub(super) fn duration(&mut self, field: &str, default: Duration, examples: &str) -> Duration {
        match self.text(field) {
            None => default,
            Some(t) => duration_value(&t).unwrap_or_else(|| {
                self.bad(field, format!("{t:?} is not a duration (e.g. {examples})"));
                default
            }),
        }
    }

    /// A non-negative number field, `default` when absent or bad.
    fn fraction(&mut self, field: &str, default: f64) -> f64 {
        match self.text(field) {
            None => default,
            Some(t) => match t.parse::<f64>() {
                Ok(f) if f.is_finite() && f >= 0.0 => f,
                _ => {
                    self.bad(field, format!("{t:?} is not a non-negative number"));
                    default
                }
            },
        }
    }

    /// `value` when no field was bad, else every problem in the order found.
    pub(super) fn finish<T>(self, value: T) -> Result<T, Vec<FieldError>> {
        if self.errs.is_empty() {
            Ok(value)
        } else {
            Err(self.errs)
        }
    }

    /// Every problem found so far.
    pub(super) fn into_errors(self) -> Vec<FieldError> {
        self.errs
    }
}

/// A named retry policy at `at` (`spec.policies.retries.<name>`).
fn retry_policy(v: &Value, at: &str) -> Result<RetryPolicy, Vec<FieldError>> {
    let mut f = Fields::new(v, at);
    let constant = f.duration("duration", Duration::from_secs(5), RETRY_DURATION_EXAMPLES);
    let exponential = exponential(&mut f);
    let max_retries = max_retries(&mut f);
    let backoff = match f.text("policy").map(|t| t.to_ascii_lowercase()).as_deref() {
        None | Some("" | "constant") => Backoff::Constant(constant),
        Some("exponential") => exponential,
        Some(other) => {
            f.bad(
                "policy",
                format!("{other:?} is not constant or exponential"),
            );
            Backoff::Constant(constant)
        }
    };
    let (http_codes, grpc_codes) = status_codes(&mut f);
    f.finish(RetryPolicy {
        backoff,
        max_retries,
        http_codes,
        grpc_codes,
    })
}

/// The exponential backoff's fields, read (and checked) whatever the policy kind.
fn exponential(f: &mut Fields<'_>) -> Backoff {
    let initial = f.duration(
        "initialInterval",
        Duration::from_millis(500),
        RETRY_DURATION_EXAMPLES,
    );
    let max_interval = f.duration(
        "maxInterval",
        Duration::from_secs(60),
        RETRY_DURATION_EXAMPLES,
    );
    let max_elapsed = f.duration(
        "maxElapsedTime",
        Duration::from_secs(15 * 60),
        RETRY_DURATION_EXAMPLES,
    );
    Backoff::Exponential {
        initial,
        randomization: f.fraction("randomizationFactor", 0.5).min(1.0),
        multiplier: f.fraction("multiplier", 1.5),
        max_interval,
        max_elapsed,
    }
}

/// `maxRetries`: absent or negative means no limit.
fn max_retries(f: &mut Fields<'_>) -> Option<u32> {
    let t = f.text("maxRetries")?;
    match t.parse::<i64>() {
        Ok(n) if n < 0 => None,
        Ok(n) => Some(u32::try_from(n).unwrap_or(u32::MAX)),
        Err(_) => {
            f.bad("maxRetries", format!("{t:?} is not a whole number"));
            None
        }
    }
}

/// `matching.httpStatusCodes` and `matching.gRPCStatusCodes`, kept as ranges.
type CodeRanges = Option<Vec<RangeInclusive<u16>>>;

fn status_codes(f: &mut Fields<'_>) -> (CodeRanges, CodeRanges) {
    let v = f.v;
    let http_codes = match v
        .pointer("/matching/httpStatusCodes")
        .and_then(Value::as_str)
    {
        None => None,
        Some(list) => match code_ranges(list, 100..=599) {
            Ok(r) => Some(r),
            Err(e) => {
                f.bad("matching.httpStatusCodes", format!("{list:?}: {e}"));
                None
            }
        },
    };
    let grpc_codes = match v
        .pointer("/matching/gRPCStatusCodes")
        .and_then(Value::as_str)
    {
        None => None,
        Some(list) => match code_ranges(list, 0..=16) {
            Ok(r) => Some(r),
            Err(e) => {
                f.bad("matching.gRPCStatusCodes", format!("{list:?}: {e}"));
                None
            }
        },
    };
    (http_codes, grpc_codes)
}

/// `"429,500-599"` into ranges, each within `allowed`.
pub(super) fn code_ranges(
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
pub(super) fn duration_value(v: &str) -> Option<Duration> {
    match v.trim().parse::<u64>() {
        Ok(ms) => Some(Duration::from_millis(ms)),
        Err(_) => crate::duration::go_duration(v),
    }
}

/// The entries of the object at `pointer`, none when it is absent or not an object.
fn entries<'a>(doc: &'a Value, pointer: &str) -> impl Iterator<Item = (&'a String, &'a Value)> {
    doc.pointer(pointer)
        .and_then(Value::as_object)
        .into_iter()
        .flat_map(Map::iter)
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
