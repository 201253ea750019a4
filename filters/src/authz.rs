//! Access policy on the inbound mesh path.
//!
//! [`Authorize`] asks `policy` whether the caller may call the request's operation, and refuses
//! the request with a typed [`Denied`] error when not; the rescue layer turns that into the
//! caller's 403. It must run after [`crate::canonical`], so the path it decides on is exactly
//! the one the app receives, and it reads the caller from the request's extensions (an
//! `Arc<Caller>` the listener put there from the verified peer certificate): a request without
//! one is decided as a caller without identity.
//!
//! The policy set comes from a watch, so a reload applies to the next request without a restart.
//! Every decision made under configured access control is counted with Dapr's metric names;
//! labels are the caller's verified identity, the configured operation that matched (`other`
//! when none did) and a known verb, all bounded.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::SystemTime;

use http::{Request, Response};
use outrider_policy::{AccessControl, Caller, Decision, Rule};
use tokio::sync::watch;
use tower::{Layer, Service};

/// A request the access policy refused.
#[derive(Debug, thiserror::Error)]
#[error(
    "access control policy has denied access to appid: {caller} operation: {operation} verb: {verb}"
)]
pub struct Denied {
    /// The caller's app id (empty without an identity).
    pub caller: String,
    /// The canonical operation.
    pub operation: String,
    /// The request's verb.
    pub verb: String,
    /// The rule that decided.
    pub rule: Rule,
}

/// One denial as the dashboard lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Denial {
    /// When it was decided.
    pub at: SystemTime,
    /// The caller's identity (`app.namespace`), empty without one.
    pub caller: String,
    /// The canonical operation, cut to [`Denials::OPERATION_CHARS`] characters.
    pub operation: String,
    /// The request's verb.
    pub verb: String,
    /// The rule that decided, as the log names it.
    pub rule: String,
}

/// The latest denials of one sidecar, newest last, and how many there were in all. Bounded: the
/// oldest leave as new ones come.
#[derive(Debug, Default)]
pub struct Denials {
    kept: Mutex<VecDeque<Denial>>,
    total: AtomicU64,
}

impl Denials {
    /// Denials kept at most.
    pub const KEPT: usize = 64;
    /// Characters of an operation kept at most.
    pub const OPERATION_CHARS: usize = 200;
    /// Characters of a verb kept at most (an extension method may be long).
    pub const VERB_CHARS: usize = 16;

    fn push(&self, caller: Option<&Caller>, d: &Denied) {
        self.total.fetch_add(1, Ordering::Relaxed);
        let denial = Denial {
            at: SystemTime::now(),
            caller: caller.map(ToString::to_string).unwrap_or_default(),
            operation: d.operation.chars().take(Self::OPERATION_CHARS).collect(),
            verb: d.verb.chars().take(Self::VERB_CHARS).collect(),
            rule: d.rule.to_string(),
        };
        let mut kept = self.kept.lock().unwrap_or_else(PoisonError::into_inner);
        if kept.len() == Self::KEPT {
            kept.pop_front();
        }
        kept.push_back(denial);
    }

    /// The kept denials, oldest first.
    pub fn latest(&self) -> Vec<Denial> {
        let kept = self.kept.lock().unwrap_or_else(PoisonError::into_inner);
        kept.iter().cloned().collect()
    }

    /// Denials since the sidecar started, kept or not.
    pub fn total(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }
}

/// Refuses requests the access policy denies.
#[derive(Clone, Debug)]
pub struct Authorize<S> {
    inner: S,
    policies: watch::Receiver<Arc<AccessControl>>,
    denials: Arc<Denials>,
}

/// Applies [`Authorize`] with the policy set published on `policies`.
#[derive(Clone, Debug)]
pub struct AuthorizeLayer {
    policies: watch::Receiver<Arc<AccessControl>>,
    denials: Arc<Denials>,
}

impl AuthorizeLayer {
    /// Decides with the latest set on `policies`, keeping the denials in `denials`.
    pub fn new(policies: watch::Receiver<Arc<AccessControl>>, denials: Arc<Denials>) -> Self {
        Self { policies, denials }
    }
}

impl<S> Layer<S> for AuthorizeLayer {
    type Service = Authorize<S>;

    fn layer(&self, inner: S) -> Authorize<S> {
        Authorize {
            inner,
            policies: self.policies.clone(),
            denials: self.denials.clone(),
        }
    }
}

impl<S, B, RB> Service<Request<B>> for Authorize<S>
where
    S: Service<Request<B>, Response = Response<RB>>,
    S::Error: From<Denied>,
{
    type Response = Response<RB>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let caller = req.extensions().get::<Arc<Caller>>().map(Arc::as_ref);
        let path = req.uri().path();
        match check(&self.policies, &self.denials, caller, path, req.method()) {
            Ok(()) => ResponseFuture::passed(self.inner.call(req)),
            Err(denied) => ResponseFuture::refused(*denied),
        }
    }
}

/// The decision of the policies in force for `caller` calling `operation` with `method`,
/// counted, and logged and kept in `denials` with its rule when it denies. The layer decides
/// every request with it; a mesh tunnel decides with the operation `/tcp/<port>` and the verb
/// `CONNECT`.
pub fn check(
    policies: &watch::Receiver<Arc<AccessControl>>,
    denials: &Denials,
    caller: Option<&Caller>,
    operation: &str,
    method: &http::Method,
) -> Result<(), Box<Denied>> {
    let decision = policies.borrow().decide(caller, operation, method.as_str());
    record(caller, method, &decision);
    if decision.allowed() {
        return Ok(());
    }
    let denied = Denied {
        caller: caller.map(|c| c.app_id.clone()).unwrap_or_default(),
        operation: operation.to_owned(),
        verb: method.to_string(),
        rule: decision.rule,
    };
    tracing::info!(
        caller = %caller.map_or_else(|| "(no identity)".to_owned(), ToString::to_string),
        operation = %denied.operation,
        verb = %denied.verb,
        rule = %denied.rule,
        "denied by access policy"
    );
    denials.push(caller, &denied);
    Err(Box::new(denied))
}

fn record(caller: Option<&Caller>, method: &http::Method, decision: &Decision) {
    let level = decision.rule.level();
    if level == "none" {
        return;
    }
    let name = match (level, decision.allowed()) {
        ("app", true) => "dapr_runtime_acl_app_policy_action_allowed_total",
        ("app", false) => "dapr_runtime_acl_app_policy_action_blocked_total",
        (_, true) => "dapr_runtime_acl_global_policy_action_allowed_total",
        (_, false) => "dapr_runtime_acl_global_policy_action_blocked_total",
    };
    let (app_id, namespace, trust_domain) = caller.map_or(("", "", ""), |c| {
        (
            c.app_id.as_str(),
            c.namespace.as_str(),
            c.trust_domain.as_str(),
        )
    });
    metrics::counter!(
        name,
        "app_id" => app_id.to_owned(),
        "trust_domain" => trust_domain.to_owned(),
        "namespace" => namespace.to_owned(),
        "operation" => decision.rule.operation().unwrap_or("other").to_owned(),
        "httpverb" => crate::metrics::method_label(method),
    )
    .increment(1);
}

/// Future of [`Authorize`].
pub type ResponseFuture<F> = crate::refuse::PassOrRefuse<F, Denied>;

#[cfg(test)]
mod tests;
