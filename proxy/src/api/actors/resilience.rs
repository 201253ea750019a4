//! `Resiliency` for actor calls, as daprd applies it: the retry and the circuit breaker of the
//! actor type's policies around the whole call on the sidecar where it starts (finding the host
//! and forwarding included), the timeout on the host around the app's answer (see
//! [`crate::to_app::actors`]). A type no document names keeps the built-in retries of what
//! failed before anything ran; a named type has only its own policies. A call the breaker
//! refuses fails at once with daprd's answer.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use http::Response;
use outrider_filters::resiliency::{
    ActorBreakers, ActorPolicies, Admitted, Resiliency, actor_policies, named_actor_types,
};
use tokio::time::Instant;

use super::{Actors, Hop, MethodCall, check_method, check_name, invoke_error};
use crate::errors::ApiError;
use crate::net::http::Body;

/// The policies of one actor type, and its breakers.
pub(crate) struct TypePolicy {
    policies: ActorPolicies,
    breakers: Option<ActorBreakers>,
}

/// The actor policies of the `Resiliency` documents that apply to this app: those of each type a
/// document names, worked out once, and the default ones every other type shares (whose
/// breakers, one per type, are bounded by their cache). Nothing grows with the types callers
/// name.
pub(crate) struct ActorResiliency {
    named: BTreeMap<String, TypePolicy>,
    others: TypePolicy,
}

impl TypePolicy {
    fn new(docs: &[Resiliency], actor_type: &str) -> Self {
        let policies = actor_policies(docs, actor_type);
        Self {
            breakers: ActorBreakers::new(&policies),
            policies,
        }
    }
}

impl ActorResiliency {
    pub(crate) fn new(docs: Arc<[Resiliency]>) -> Self {
        let named: BTreeMap<String, TypePolicy> = (named_actor_types(&docs).into_iter())
            .map(|t| {
                let p = TypePolicy::new(&docs, &t);
                (t, p)
            })
            .collect();
        // No document names this type (`||` is never a type's name): the defaults alone.
        let others = TypePolicy::new(&docs, "||");
        for (t, p) in named
            .iter()
            .chain([(&"(every other type)".to_owned(), &others)])
        {
            let p = &p.policies.policies;
            if p.timeout.is_some() || p.retry.is_some() || p.breaker.is_some() {
                tracing::info!(
                    actor_type = %t,
                    timeout = p.timeout.as_ref().map(|t| t.0.as_str()),
                    retry = p.retry.as_ref().map(|r| r.0.as_str()),
                    circuit_breaker = p.breaker.as_ref().map(|b| b.0.as_str()),
                    "resiliency policies apply to actor calls"
                );
            }
        }
        Self { named, others }
    }

    /// The policies of `actor_type`.
    fn of(&self, actor_type: &str) -> &TypePolicy {
        self.named.get(actor_type).unwrap_or(&self.others)
    }

    /// The timeout of calls to `actor_type`'s app methods, with the policy's name.
    pub(crate) fn timeout(&self, actor_type: &str) -> Option<(String, Duration)> {
        self.of(actor_type).policies.policies.timeout.clone()
    }
}

/// Hands a breaker's admission back as cancelled if the call never reports its outcome (the
/// caller went away mid-call), so a half-open breaker's probe slot is not lost.
struct Probe<'a> {
    breakers: &'a ActorBreakers,
    admitted: Option<Admitted>,
}

impl Probe<'_> {
    fn report(mut self, success: bool) {
        if let Some(a) = self.admitted.take() {
            self.breakers.after(a, success, Instant::now());
        }
    }
}

impl Drop for Probe<'_> {
    fn drop(&mut self) {
        if let Some(a) = self.admitted.take() {
            self.breakers.cancel(a);
        }
    }
}

/// The status an app answered, as an actor call's error quotes it (`error from actor service:
/// (500) …`).
fn app_status(message: &str) -> Option<u16> {
    let rest = message.split_once("error from actor service: (")?.1;
    rest.split_once(')')?.0.parse().ok()
}

impl Actors {
    /// Fires a reminder: a method call that only the built-in retries apply to (an actor type's
    /// retry and circuit breaker are for its callers, as in daprd; its timeout still applies on
    /// the host).
    pub(crate) async fn fire(&self, call: MethodCall) -> Result<Response<Body>, ApiError> {
        check_name("actorType", &call.actor_type)?;
        check_name("actorId", &call.id)?;
        check_method(&call.method)?;
        self.attempt(&call, None, true).await
    }

    /// Calls an actor's method from this sidecar's app (`hop: None`) or for another sidecar.
    pub(crate) async fn invoke(
        &self,
        call: MethodCall,
        hop: Option<Hop>,
    ) -> Result<Response<Body>, ApiError> {
        check_name("actorType", &call.actor_type)?;
        check_name("actorId", &call.id)?;
        check_method(&call.method)?;
        // Policies apply where the call starts, never again on the hosts it is forwarded to.
        if hop.is_some() {
            return self.attempt(&call, hop, false).await;
        }
        let policy = self.resiliency.of(&call.actor_type);
        let p = &policy.policies;
        if p.is_empty() {
            return self.attempt(&call, None, true).await;
        }
        let started = Instant::now();
        let mut retry = 0;
        loop {
            let probe = match &policy.breakers {
                Some(b) => match b.before(&call.actor_type, &call.id, Instant::now()) {
                    Ok(admitted) => Some(Probe {
                        breakers: b,
                        admitted: Some(admitted),
                    }),
                    Err(refused) => {
                        tracing::debug!(actor_type = %call.actor_type, id = %call.id, %refused, "actor call refused");
                        return Err(invoke_error("circuit breaker is open"));
                    }
                },
                None => None,
            };
            let result = self.attempt(&call, None, !p.policies.named_target).await;
            let ok = result.as_ref().is_ok_and(|r| r.status().is_success());
            if let Some(probe) = probe {
                probe.report(ok);
            }
            if ok {
                return result;
            }
            // The app's status, whether the actor ran here (an error quoting it) or on another
            // host (the answer): the policy's matching codes judge both alike. A failure with no
            // answer from an app (no host, the host unreachable) has none, and is retried.
            let status = match &result {
                Ok(r) => Some(r.status().as_u16()),
                Err(e) => app_status(&e.message),
            };
            let Some(wait) = p.retry_wait(retry, started.elapsed(), status) else {
                return result;
            };
            retry += 1;
            tokio::time::sleep(wait).await;
        }
    }
}
