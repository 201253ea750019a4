//! Circuit breakers with Dapr's (gobreaker's) semantics, and the layer that applies one.
//!
//! A breaker is *closed* at first: calls pass and their outcomes are counted. When a failure
//! makes the `trip` expression true (CEL over `requests`, `totalSuccesses`, `totalFailures`,
//! `consecutiveSuccesses`, `consecutiveFailures`; default `consecutiveFailures > 5`) it *opens*:
//! calls fail at once, without reaching the target, for `timeout` (default 60 s). Then it is
//! *half-open*: up to `maxRequests` (default 1) calls pass as probes; as many successes in a row
//! close it, one failure opens it again. While closed, the counts reset every `interval` (0:
//! never). Outcomes of calls that started before a state change are ignored.
//!
//! [`Breaker`] is the state machine, a pure value driven with explicit instants; [`CircuitBreaker`]
//! is the tower layer that consults it around each call.

mod policy;

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use pin_project_lite::pin_project;
use tokio::time::Instant;
use tower::{Layer, Service};

use super::Labels;
use super::classify::{Classify, Verdict};

pub use policy::BreakerPolicy;

/// The counts a trip expression sees.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Calls let through since the last reset.
    pub requests: u32,
    /// Successes since the last reset.
    pub total_successes: u32,
    /// Failures since the last reset.
    pub total_failures: u32,
    /// Successes in a row.
    pub consecutive_successes: u32,
    /// Failures in a row.
    pub consecutive_failures: u32,
}

/// Where a breaker stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// Calls pass.
    Closed,
    /// Calls fail at once.
    Open,
    /// A few probes pass.
    HalfOpen,
}

impl State {
    /// Dapr's label value.
    pub fn label(self) -> &'static str {
        match self {
            State::Closed => "closed",
            State::Open => "open",
            State::HalfOpen => "half-open",
        }
    }
}

/// Why a call was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// The breaker is open.
    #[error("circuit breaker {0:?} is open")]
    Open(String),
    /// Half-open, and every probe slot is taken.
    #[error("circuit breaker {0:?} is half-open and already probing")]
    TooManyRequests(String),
}

/// A breaker's state machine.
#[derive(Debug)]
pub struct Breaker {
    name: String,
    policy: BreakerPolicy,
    state: State,
    counts: Counts,
    generation: u64,
    /// When the closed counts reset, or when open turns half-open.
    expiry: Option<Instant>,
}

impl Breaker {
    /// A closed breaker for the policy named `name`.
    pub fn new(name: &str, policy: BreakerPolicy, now: Instant) -> Self {
        let mut b = Breaker {
            name: name.to_owned(),
            policy,
            state: State::Closed,
            counts: Counts::default(),
            generation: 0,
            expiry: None,
        };
        b.enter(State::Closed, now);
        b
    }

    /// The state at `now`.
    pub fn state(&mut self, now: Instant) -> State {
        self.advance(now);
        self.state
    }

    /// The counts so far in this state.
    pub fn counts(&self) -> Counts {
        self.counts
    }

    /// Asks to let a call through at `now`: its generation, to hand back with the outcome.
    pub fn before(&mut self, now: Instant) -> Result<u64, Refused> {
        self.advance(now);
        match self.state {
            State::Open => return Err(Refused::Open(self.name.clone())),
            State::HalfOpen if self.counts.requests >= self.policy.max_requests => {
                return Err(Refused::TooManyRequests(self.name.clone()));
            }
            _ => {}
        }
        self.counts.requests = self.counts.requests.saturating_add(1);
        Ok(self.generation)
    }

    /// Records the outcome of a call let through in `generation`; returns the new state when it
    /// changed.
    pub fn after(&mut self, generation: u64, success: bool, now: Instant) -> Option<State> {
        self.advance(now);
        if generation != self.generation {
            return None;
        }
        let c = &mut self.counts;
        if success {
            c.total_successes = c.total_successes.saturating_add(1);
            c.consecutive_successes = c.consecutive_successes.saturating_add(1);
            c.consecutive_failures = 0;
            if self.state == State::HalfOpen && c.consecutive_successes >= self.policy.max_requests
            {
                self.enter(State::Closed, now);
                return Some(State::Closed);
            }
        } else {
            c.total_failures = c.total_failures.saturating_add(1);
            c.consecutive_failures = c.consecutive_failures.saturating_add(1);
            c.consecutive_successes = 0;
            let trip = match self.state {
                State::Closed => self.policy.trips(&self.counts),
                State::HalfOpen => true,
                State::Open => false,
            };
            if trip {
                self.enter(State::Open, now);
                return Some(State::Open);
            }
        }
        None
    }

    /// Forgets a call let through in `generation` whose outcome will never come: while
    /// half-open, its probe slot is free again.
    pub fn cancel(&mut self, generation: u64) {
        if generation == self.generation && self.state == State::HalfOpen {
            self.counts.requests = self.counts.requests.saturating_sub(1);
        }
    }

    fn advance(&mut self, now: Instant) {
        match (self.state, self.expiry) {
            (State::Closed, Some(at)) if now >= at => self.enter(State::Closed, now),
            (State::Open, Some(at)) if now >= at => self.enter(State::HalfOpen, now),
            _ => {}
        }
    }

    fn enter(&mut self, state: State, now: Instant) {
        self.state = state;
        self.generation += 1;
        self.counts = Counts::default();
        self.expiry = match state {
            State::Closed if !self.policy.interval.is_zero() => Some(now + self.policy.interval),
            State::Open => Some(now + self.policy.timeout),
            _ => None,
        };
    }
}

/// Applies a shared [`Breaker`] around each call.
#[derive(Clone)]
pub struct CircuitBreaker<S, C> {
    inner: S,
    breaker: Arc<Mutex<Breaker>>,
    classify: C,
    labels: Arc<Labels>,
}

/// Makes [`CircuitBreaker`]s that share one breaker.
#[derive(Clone)]
pub struct CircuitBreakerLayer<C> {
    breaker: Arc<Mutex<Breaker>>,
    classify: C,
    labels: Arc<Labels>,
}

impl<C> CircuitBreakerLayer<C> {
    /// A layer around the breaker of policy `name`; outcomes are judged by `classify`, and the
    /// state is exported with `labels`.
    pub fn new(name: &str, policy: BreakerPolicy, classify: C, labels: Labels) -> Self {
        let breaker = Arc::new(Mutex::new(Breaker::new(name, policy, Instant::now())));
        let labels = Arc::new(labels);
        labels.breaker_state(name, State::Closed);
        Self {
            breaker,
            classify,
            labels,
        }
    }
}

impl<S, C: Clone> Layer<S> for CircuitBreakerLayer<C> {
    type Service = CircuitBreaker<S, C>;

    fn layer(&self, inner: S) -> Self::Service {
        CircuitBreaker {
            inner,
            breaker: self.breaker.clone(),
            classify: self.classify.clone(),
            labels: self.labels.clone(),
        }
    }
}

impl<S, C, Req> Service<Req> for CircuitBreaker<S, C>
where
    S: Service<Req>,
    S::Error: From<Refused>,
    C: Classify<S::Response, S::Error> + Clone,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, C>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        let (admitted, turned) = {
            let mut b = lock(&self.breaker);
            let was = b.state;
            let admitted = b.before(Instant::now());
            (
                admitted,
                (b.state != was).then(|| (b.name.clone(), b.state)),
            )
        };
        if let Some((name, state)) = turned {
            // Open turned half-open: the next calls are probes.
            self.labels.breaker_state(&name, state);
            tracing::info!(policy = %name, target = %self.labels.target, state = state.label(), "circuit breaker probing");
        }
        match admitted {
            Ok(generation) => ResponseFuture {
                inner: Some(self.inner.call(req)),
                refused: None,
                watch: Some(Watch {
                    breaker: self.breaker.clone(),
                    generation,
                    classify: self.classify.clone(),
                    labels: self.labels.clone(),
                    reported: false,
                }),
            },
            Err(refused) => ResponseFuture {
                inner: None,
                refused: Some(refused),
                watch: None,
            },
        }
    }
}

fn lock(b: &Mutex<Breaker>) -> std::sync::MutexGuard<'_, Breaker> {
    b.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// What a call that was let through reports back.
struct Watch<C> {
    breaker: Arc<Mutex<Breaker>>,
    generation: u64,
    classify: C,
    labels: Arc<Labels>,
    reported: bool,
}

impl<C> Drop for Watch<C> {
    /// A call dropped before its outcome (the caller went away) gives its probe slot back, so a
    /// half-open breaker is never left waiting for an answer that will not come.
    fn drop(&mut self) {
        if !self.reported {
            lock(&self.breaker).cancel(self.generation);
        }
    }
}

pin_project! {
    /// Future of [`CircuitBreaker`].
    pub struct ResponseFuture<F, C> {
        #[pin]
        inner: Option<F>,
        refused: Option<Refused>,
        watch: Option<Watch<C>>,
    }
}

impl<F, C, R, E> Future for ResponseFuture<F, C>
where
    F: Future<Output = Result<R, E>>,
    E: From<Refused>,
    C: Classify<R, E>,
{
    type Output = Result<R, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Some(refused) = this.refused.take() {
            return Poll::Ready(Err(refused.into()));
        }
        let Some(inner) = this.inner.as_pin_mut() else {
            panic!("ResponseFuture polled after completion")
        };
        let result = std::task::ready!(inner.poll(cx));
        if let Some(mut w) = this.watch.take() {
            w.reported = true;
            let success = w.classify.verdict(&result) == Verdict::Success;
            let (name, changed) = {
                let mut b = lock(&w.breaker);
                (
                    b.name.clone(),
                    b.after(w.generation, success, Instant::now()),
                )
            };
            if let Some(state) = changed {
                w.labels.breaker_state(&name, state);
                if state == State::Open {
                    tracing::warn!(policy = %name, target = %w.labels.target, "circuit breaker opened");
                    w.labels.activation("circuitbreaker", &name);
                } else {
                    tracing::info!(policy = %name, target = %w.labels.target, state = state.label(), "circuit breaker closed again");
                }
            }
        }
        Poll::Ready(result)
    }
}

#[cfg(test)]
mod tests;
