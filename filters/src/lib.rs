//! Tower layers of the data path, shared by every listener: the canonical request form, access
//! policy, trace context propagation, request metrics, resiliency (retry, circuit breaker,
//! timeout) and the outbound balancer's picker.
//!
//! Each middleware has tower's shape: a `Foo<S>` service, a `FooLayer`, and a named
//! `ResponseFuture`. Decisions that need no I/O (path normalisation, traceparent parsing, retry
//! waits of the `Resiliency` spec) are
//! pure functions with table tests beside them. This crate owns no sockets and no configuration
//! files; it does not know about Dapr's API routes beyond the labels the router hands it.

pub mod access_log;
pub mod authz;
pub mod balance;
pub mod canonical;
pub mod duration;
pub mod metrics;
pub mod normalize;
pub mod refuse;
pub mod resiliency;
pub mod spans;
pub mod trace;

/// The route template that matched a request, set by the router on the response's extensions
/// so that layers outside the router can label metrics without looking at raw paths.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RouteLabel(pub &'static str);
