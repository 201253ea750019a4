//! Resiliency for actor calls: `spec.targets.actors.<type>` (`timeout`, `retry`,
//! `circuitBreaker`, `circuitBreakerScope`, `circuitBreakerCacheSize`) and the default policies
//! `DefaultActor<Kind>Policy` then `Default<Kind>Policy`.
//!
//! As in daprd, retry and circuit breaker apply on the sidecar where the call starts, around
//! finding the actor's host and the call to it (forwarding included); the timeout applies on the
//! host, once the actor's turn has begun, around the app's answer. A breaker is kept per actor
//! type (`circuitBreakerScope: type`) or per actor (`id`; `both` is read as `id`, which is what
//! daprd does with it), at most `circuitBreakerCacheSize` of them per type (5 000 by default, 100
//! for a default policy's, which is always per type).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use serde_json::Value;
use tokio::time::Instant;

use super::breaker::{Breaker, Refused, State};
use super::{FieldError, Names, Policies, Resiliency};

/// The breakers a named target keeps per type, by default.
const DEFAULT_CACHE_SIZE: usize = 5000;
/// The breakers a default policy keeps (one per type; the bound is daprd's).
const DEFAULT_POLICY_CACHE_SIZE: usize = 100;

/// How an actor type's circuit breakers are keyed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BreakerScope {
    /// One breaker for every actor of the type.
    Type,
    /// One breaker per actor.
    Id,
}

/// One `targets.actors` entry as read.
#[derive(Clone, Debug, Default, PartialEq)]
pub(super) struct ActorTarget {
    pub(super) names: Names,
    pub(super) scope: Option<BreakerScope>,
    pub(super) cache_size: Option<usize>,
}

/// The policies for calls to one actor type.
#[derive(Clone, Debug, Default)]
pub struct ActorPolicies {
    /// Timeout, retry and breaker, each with its name; `named_target` when a document names
    /// the type (which turns the built-in retries off, as in daprd).
    pub policies: Policies,
    /// How the breaker is keyed.
    pub scope: Option<BreakerScope>,
    /// How many breakers to keep.
    pub cache_size: usize,
}

impl Resiliency {
    /// `spec.targets.actors.<type>` at `at`.
    pub(super) fn actor_target(
        &self,
        v: &Value,
        at: &str,
        errs: &mut Vec<FieldError>,
    ) -> ActorTarget {
        let names = self.names(v, at, errs);
        let scope = match v.get("circuitBreakerScope") {
            None => None,
            Some(s) => match s.as_str() {
                Some("type") => Some(BreakerScope::Type),
                Some("id" | "both") => Some(BreakerScope::Id),
                _ => {
                    errs.push(FieldError {
                        field: format!("{at}.circuitBreakerScope"),
                        message: format!(
                            "{s} is not a scope; expected \"type\", \"id\" or \"both\""
                        ),
                    });
                    None
                }
            },
        };
        if names.breaker.is_some() && v.get("circuitBreakerScope").is_none() {
            errs.push(FieldError {
                field: format!("{at}.circuitBreakerScope"),
                message: "is required with circuitBreaker: \"type\", \"id\" or \"both\"".into(),
            });
        }
        let cache_size = v.get("circuitBreakerCacheSize").and_then(|n| {
            let size = n
                .as_u64()
                .filter(|n| *n > 0)
                .and_then(|n| usize::try_from(n).ok());
            if size.is_none() {
                errs.push(FieldError {
                    field: format!("{at}.circuitBreakerCacheSize"),
                    message: format!("{n} is not a positive number"),
                });
            }
            size
        });
        ActorTarget {
            names,
            scope,
            cache_size,
        }
    }

    fn actor(&self, actor_type: &str) -> ActorPolicies {
        let target = self.actors.get(actor_type);
        let levels = ["DefaultActor".to_owned(), "Default".to_owned()];
        let policies = self.policies(target.map(|t| &t.names), &levels);
        let named_breaker = target.is_some_and(|t| t.names.breaker.is_some());
        ActorPolicies {
            scope: policies.breaker.as_ref().map(|_| match target {
                Some(t) if named_breaker => t.scope.unwrap_or(BreakerScope::Type),
                _ => BreakerScope::Type,
            }),
            cache_size: match target {
                Some(t) if named_breaker => t.cache_size.unwrap_or(DEFAULT_CACHE_SIZE),
                _ => DEFAULT_POLICY_CACHE_SIZE,
            },
            policies,
        }
    }
}

impl ActorPolicies {
    /// Whether nothing applies: no policy and no document naming the type.
    pub fn is_empty(&self) -> bool {
        let p = &self.policies;
        p.timeout.is_none() && p.retry.is_none() && p.breaker.is_none() && !p.named_target
    }

    /// The wait before retry number `retry` (0: the first) of a call that failed with the HTTP
    /// `status` (`None`: without one), `elapsed` after the first try; `None` to stop.
    pub fn retry_wait(
        &self,
        retry: u32,
        elapsed: Duration,
        status: Option<u16>,
    ) -> Option<Duration> {
        let (_, policy) = self.policies.retry.as_ref()?;
        if !policy.retries_status(status) {
            return None;
        }
        let wait = policy.delay(retry, elapsed, fastrand::f64())?;
        Some(wait.max(super::retry::MIN_WAIT))
    }
}

/// The actor types some document names under `targets.actors`.
pub fn named_actor_types(all: &[Resiliency]) -> std::collections::BTreeSet<String> {
    all.iter().flat_map(|d| d.actors.keys().cloned()).collect()
}

/// The policies for calls to `actor_type`, across documents: each kind from the first document
/// that resolves it (the breaker with its scope and cache size).
pub fn actor_policies(all: &[Resiliency], actor_type: &str) -> ActorPolicies {
    let mut out = ActorPolicies {
        cache_size: DEFAULT_POLICY_CACHE_SIZE,
        ..ActorPolicies::default()
    };
    for doc in all {
        let p = doc.actor(actor_type);
        out.policies.timeout = out.policies.timeout.or(p.policies.timeout);
        out.policies.retry = out.policies.retry.or(p.policies.retry);
        if out.policies.breaker.is_none() && p.policies.breaker.is_some() {
            out.policies.breaker = p.policies.breaker;
            out.scope = p.scope;
            out.cache_size = p.cache_size;
        }
        out.policies.named_target |= p.policies.named_target;
    }
    out
}

/// The breakers of one actor type's policy, keyed by type or by actor, at most `cap` of them:
/// when full, the breaker least recently added goes (a closed one first, so that an open
/// breaker is not forgotten while it protects its actor).
pub struct ActorBreakers {
    name: String,
    policy: super::BreakerPolicy,
    scope: BreakerScope,
    cap: usize,
    inner: Mutex<Kept>,
}

#[derive(Default)]
struct Kept {
    /// Each breaker with its serial: a breaker made again after eviction is another one.
    breakers: HashMap<String, (u64, Breaker)>,
    order: VecDeque<String>,
    made: u64,
}

/// A call let through: hand it back with the outcome.
#[derive(Debug)]
pub struct Admitted {
    key: String,
    serial: u64,
    generation: u64,
}

impl ActorBreakers {
    /// The breakers of `policies`, if a breaker applies.
    pub fn new(p: &ActorPolicies) -> Option<Self> {
        let (name, policy) = p.policies.breaker.clone()?;
        Some(Self {
            name,
            policy,
            scope: p.scope.unwrap_or(BreakerScope::Type),
            cap: p.cache_size.max(1),
            inner: Mutex::new(Kept::default()),
        })
    }

    /// The breaker policy's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Asks to let a call to actor `id` of `actor_type` through at `now`.
    pub fn before(&self, actor_type: &str, id: &str, now: Instant) -> Result<Admitted, Refused> {
        let key = match self.scope {
            BreakerScope::Type => actor_type.to_owned(),
            BreakerScope::Id => format!("{actor_type}-{id}"),
        };
        let mut kept = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        if !kept.breakers.contains_key(&key) {
            if kept.breakers.len() >= self.cap {
                kept.evict(now);
            }
            kept.made += 1;
            let b = Breaker::new(&self.name, self.policy.clone(), now);
            let serial = kept.made;
            kept.breakers.insert(key.clone(), (serial, b));
            kept.order.push_back(key.clone());
        }
        let (serial, b) = kept.breakers.get_mut(&key).expect("inserted above");
        let (serial, generation) = (*serial, b.before(now)?);
        Ok(Admitted {
            key,
            serial,
            generation,
        })
    }

    /// Records the outcome of an admitted call; the breaker's new state when it changed.
    pub fn after(&self, call: Admitted, success: bool, now: Instant) -> Option<State> {
        let mut kept = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        match kept.breakers.get_mut(&call.key) {
            Some((serial, b)) if *serial == call.serial => b.after(call.generation, success, now),
            _ => None,
        }
    }

    /// Forgets an admitted call whose outcome will never come.
    pub fn cancel(&self, call: Admitted) {
        let mut kept = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((serial, b)) = kept.breakers.get_mut(&call.key)
            && *serial == call.serial
        {
            b.cancel(call.generation);
        }
    }
}

impl Kept {
    fn evict(&mut self, now: Instant) {
        let closed = (self.order.iter()).position(|k| {
            (self.breakers.get_mut(k)).is_none_or(|(_, b)| b.state(now) == State::Closed)
        });
        let at = closed.unwrap_or(0);
        if let Some(k) = self.order.remove(at) {
            self.breakers.remove(&k);
        }
    }
}

/// Reads every `spec.targets.actors` entry of `doc`.
pub(super) fn read_actor_targets(
    r: &Resiliency,
    doc: &Value,
    errs: &mut Vec<FieldError>,
) -> BTreeMap<String, ActorTarget> {
    (doc.pointer("/spec/targets/actors")
        .and_then(Value::as_object))
    .into_iter()
    .flatten()
    .map(|(t, v)| {
        (
            t.clone(),
            r.actor_target(v, &format!("spec.targets.actors.{t}"), errs),
        )
    })
    .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn doc(targets: Value) -> Value {
        json!({"kind": "Resiliency", "metadata": {"name": "r"}, "spec": {
            "policies": {
                "timeouts": {"fast": "2s", "DefaultActorTimeoutPolicy": "9s"},
                "retries": {"three": {"policy": "constant", "duration": "10ms", "maxRetries": 3}},
                "circuitBreakers": {
                    "cb": {"maxRequests": 1, "timeout": "30s", "trip": "consecutiveFailures >= 2"},
                    "DefaultCircuitBreakerPolicy": {"trip": "consecutiveFailures > 9"}
                }
            },
            "targets": targets
        }})
    }

    #[test]
    fn a_named_type_gets_its_policies_and_others_the_defaults() {
        let r = Resiliency::parse(&doc(json!({"actors": {"Counter": {
            "timeout": "fast", "retry": "three", "circuitBreaker": "cb",
            "circuitBreakerScope": "both", "circuitBreakerCacheSize": 7
        }}})))
        .unwrap();
        let p = actor_policies(std::slice::from_ref(&r), "Counter");
        assert!(p.policies.named_target);
        assert_eq!(
            p.policies.timeout,
            Some(("fast".into(), Duration::from_secs(2)))
        );
        assert_eq!(
            p.policies.retry.as_ref().map(|r| r.0.as_str()),
            Some("three")
        );
        assert_eq!(
            p.policies.breaker.as_ref().map(|b| b.0.as_str()),
            Some("cb")
        );
        assert_eq!((p.scope, p.cache_size), (Some(BreakerScope::Id), 7));

        let other = actor_policies(&[r], "Timer");
        assert!(!other.policies.named_target);
        assert_eq!(
            other.policies.timeout.map(|t| t.0),
            Some("DefaultActorTimeoutPolicy".into())
        );
        assert!(other.policies.retry.is_none());
        assert_eq!(
            other.policies.breaker.as_ref().map(|b| b.0.as_str()),
            Some("DefaultCircuitBreakerPolicy")
        );
        assert_eq!(
            (other.scope, other.cache_size),
            (Some(BreakerScope::Type), 100)
        );
    }

    #[test]
    fn bad_actor_targets_name_their_field() {
        let errs = Resiliency::parse(&doc(json!({"actors": {
            "A": {"circuitBreaker": "cb"},
            "B": {"circuitBreaker": "cb", "circuitBreakerScope": "actor"},
            "C": {"retry": "nope", "circuitBreakerCacheSize": 0}
        }})))
        .unwrap_err();
        let fields: Vec<&str> = errs.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "spec.targets.actors.A.circuitBreakerScope",
                "spec.targets.actors.B.circuitBreakerScope",
                "spec.targets.actors.C.retry",
                "spec.targets.actors.C.circuitBreakerCacheSize"
            ]
        );
        assert!(errs[1].message.contains("\"actor\""), "{}", errs[1].message);
    }

    fn breakers(scope: &str, cache: u64) -> ActorBreakers {
        let r = Resiliency::parse(&doc(json!({"actors": {"Counter": {
            "circuitBreaker": "cb", "circuitBreakerScope": scope, "circuitBreakerCacheSize": cache
        }}})))
        .unwrap();
        ActorBreakers::new(&actor_policies(&[r], "Counter")).unwrap()
    }

    fn fail(b: &ActorBreakers, id: &str, now: Instant) -> Result<(), Refused> {
        let call = b.before("Counter", id, now)?;
        b.after(call, false, now);
        Ok(())
    }

    #[tokio::test(start_paused = true)]
    async fn per_id_breakers_open_for_one_actor_and_close_after_their_timeout() {
        let b = breakers("id", 100);
        let now = Instant::now();
        fail(&b, "a", now).unwrap();
        fail(&b, "a", now).unwrap();
        assert!(matches!(
            b.before("Counter", "a", now),
            Err(Refused::Open(_))
        ));
        // Another actor of the type is not held back.
        let other = b.before("Counter", "b", now).expect("b's own breaker");
        b.after(other, true, now);
        // After the breaker's timeout one probe passes; its success closes the breaker.
        let later = now + Duration::from_secs(30);
        let probe = b.before("Counter", "a", later).expect("half-open probe");
        assert!(matches!(
            b.before("Counter", "a", later),
            Err(Refused::TooManyRequests(_))
        ));
        assert_eq!(b.after(probe, true, later), Some(State::Closed));
        b.before("Counter", "a", later).expect("closed again");
    }

    #[tokio::test(start_paused = true)]
    async fn a_type_breaker_holds_back_every_actor_and_the_cache_keeps_open_ones() {
        let b = breakers("type", 100);
        let now = Instant::now();
        fail(&b, "a", now).unwrap();
        fail(&b, "b", now).unwrap();
        assert!(
            b.before("Counter", "c", now).is_err(),
            "one breaker for the type"
        );

        // At most two breakers: a third actor evicts the closed one, not the open one.
        let b = breakers("id", 2);
        fail(&b, "open", now).unwrap();
        fail(&b, "open", now).unwrap();
        let ok = b.before("Counter", "closed", now).unwrap();
        b.after(ok, true, now);
        let third = b.before("Counter", "third", now).unwrap();
        b.cancel(third);
        assert!(
            b.before("Counter", "open", now).is_err(),
            "the open breaker was kept"
        );
    }
}
