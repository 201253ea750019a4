//! A `circuitBreakers` policy: its fields as read from a `Resiliency` document and its `trip`
//! expression, compiled once and checked on zero counts so that a bad expression is a
//! configuration error. The state machine that consults it is [`super::Breaker`].

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use super::Counts;
use crate::resiliency::FieldError;
use crate::resiliency::parse::Fields;

/// The examples a problem with a breaker duration quotes.
const DURATION_EXAMPLES: &str = "30s, or milliseconds";

/// Dapr's default trip expression.
const DEFAULT_TRIP: &str = "consecutiveFailures > 5";

/// A named `circuitBreakers` policy.
#[derive(Clone)]
pub struct BreakerPolicy {
    /// Probes let through while half-open, and successes needed to close.
    pub max_requests: u32,
    /// While closed, the counts reset this often (zero: never).
    pub interval: Duration,
    /// How long the breaker stays open.
    pub timeout: Duration,
    trip: Arc<cel::Program>,
    pub(super) trip_source: String,
}

impl fmt::Debug for BreakerPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BreakerPolicy")
            .field("max_requests", &self.max_requests)
            .field("interval", &self.interval)
            .field("timeout", &self.timeout)
            .field("trip", &self.trip_source)
            .finish()
    }
}

impl PartialEq for BreakerPolicy {
    fn eq(&self, other: &Self) -> bool {
        (
            self.max_requests,
            self.interval,
            self.timeout,
            &self.trip_source,
        ) == (
            other.max_requests,
            other.interval,
            other.timeout,
            &other.trip_source,
        )
    }
}

impl BreakerPolicy {
    /// Reads a policy at `at` (`spec.policies.circuitBreakers.<name>`).
    pub(crate) fn parse(v: &serde_json::Value, at: &str) -> Result<Self, Vec<FieldError>> {
        let mut f = Fields::new(v, at);
        let max_requests = max_requests(&mut f);
        let interval = f.duration("interval", Duration::ZERO, DURATION_EXAMPLES);
        let timeout = f.duration("timeout", Duration::from_secs(60), DURATION_EXAMPLES);
        let trip_source = f.text("trip").unwrap_or_else(|| DEFAULT_TRIP.to_owned());
        match compile_trip(&trip_source) {
            Ok(trip) => f.finish(BreakerPolicy {
                max_requests,
                interval,
                timeout,
                trip: Arc::new(trip),
                trip_source,
            }),
            Err(message) => {
                f.bad("trip", format!("{trip_source:?}: {message}"));
                Err(f.into_errors())
            }
        }
    }

    /// Whether `counts` trip the breaker.
    pub(super) fn trips(&self, counts: &Counts) -> bool {
        eval_trip(&self.trip, counts).unwrap_or(false)
    }
}

/// `maxRequests`: a whole number of at least 1, 1 when absent or bad.
fn max_requests(f: &mut Fields<'_>) -> u32 {
    match f.text("maxRequests") {
        None => 1,
        Some(t) => match t.trim().parse::<u32>() {
            Ok(n) if n >= 1 => n,
            _ => {
                f.bad(
                    "maxRequests",
                    format!("{t:?} is not a whole number of at least 1"),
                );
                1
            }
        },
    }
}

fn compile_trip(source: &str) -> Result<cel::Program, String> {
    // The parser is generated code; a panic on odd input must not take the sidecar down.
    let program = match std::panic::catch_unwind(|| cel::Program::compile(source)) {
        Ok(Ok(p)) => p,
        Ok(Err(e)) => return Err(format!("not a valid CEL expression: {e}")),
        Err(_) => return Err("not a valid CEL expression (the parser failed on it)".to_owned()),
    };
    // Evaluate it once on zero counts so that a non-boolean or an unknown variable is a
    // configuration error, not a breaker that silently never trips.
    eval_trip(&program, &Counts::default()).map(|_| program)
}

fn eval_trip(program: &cel::Program, c: &Counts) -> Result<bool, String> {
    let mut cx = cel::Context::default();
    for (name, value) in [
        ("requests", c.requests),
        ("totalSuccesses", c.total_successes),
        ("totalFailures", c.total_failures),
        ("consecutiveSuccesses", c.consecutive_successes),
        ("consecutiveFailures", c.consecutive_failures),
    ] {
        cx.add_variable_from_value(name, i64::from(value));
    }
    match program.execute(&cx) {
        Ok(cel::Value::Bool(b)) => Ok(b),
        Ok(other) => Err(format!("gives {other:?}, not true or false")),
        Err(e) => Err(format!("cannot be evaluated: {e}")),
    }
}
