//! Input bindings: events from a schedule or a queue, delivered to the app.
//!
//! Once the app is healthy, each input binding whose `direction` names `input` is read; any
//! other is read only if the app takes its events: an HTTP app answers `OPTIONS <route>` with a
//! 2xx or 405, a gRPC app lists the binding's name in `ListInputBindings`. Each event is
//! `POST <route>` (the `route` metadata, else `/<name>`) with the event's bytes as the body,
//! `Content-Type: application/json` and the event's metadata as headers; a gRPC app gets
//! `OnBindingEvent`. A 2xx acknowledges the event; anything else is a failure, which the
//! component's `inbound` resiliency policies may retry and which then goes back to the
//! component (a queue redelivers it; a schedule goes on to its next tick). Deliveries go through
//! the same stack as topic events (app concurrency limit, API token, inbound policies), count
//! under `dapr_component_input_binding_*`, and pause with the subscriptions while the app is
//! unhealthy.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use http::{HeaderName, HeaderValue, Method, Request, header};
use outrider_blocks::bindings::{BindingComponent, Input};
use outrider_blocks::pubsub::{Handler, Message, Outcome};
use outrider_filters::resiliency::{Direction, Policies, component_policies};
use outrider_filters::spans::{SpanKind, SpanRecord, Spans, is_sampled};
use outrider_filters::trace::TraceContext;
use outrider_policy::Caller;
use tower::ServiceExt as _;

use crate::net::http::{collect_within, empty, full};
use crate::telemetry::metrics;
use crate::to_app::channel::AppChannel;
use crate::to_app::deliver::{
    DeliveryClassify, delivery_stack, describes_the_body_or_connection, track,
};
use crate::to_app::subscriptions::{Prepared, Source, Subscriber};

/// How long the app has to answer `OPTIONS <route>` (daprd's `--app-binding-options-timeout`).
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// Marks the sidecar's own delivery of an input binding event.
#[derive(Clone, Debug)]
pub(crate) struct BindingDelivery {
    pub(crate) name: String,
    /// The event's metadata as the component gave it (a gRPC app gets it as such).
    pub(crate) metadata: BTreeMap<String, String>,
}

/// Marks the sidecar's own question for the input bindings a gRPC app takes.
#[derive(Clone, Copy, Debug)]
pub(crate) struct InputBindingsQuery;

impl Subscriber {
    /// Starts reading every input binding the app takes events from.
    pub(crate) async fn start_bindings(&self, bindings: &BTreeMap<String, BindingComponent>) {
        let inputs: Vec<(&BindingComponent, &Input)> = bindings
            .values()
            .filter_map(|b| b.input.as_ref().map(|i| (b, i)))
            .collect();
        if inputs.is_empty() {
            return;
        }
        let must_ask = inputs.iter().any(|(_, i)| !i.declared);
        let listed = match self.app.speaks_grpc() && must_ask {
            true => Some(listed_by_grpc_app(&self.app, &self.me).await),
            false => None,
        };
        for (b, input) in inputs {
            let takes = input.declared
                || match &listed {
                    Some(names) => names.contains(&b.name),
                    None => takes_events(&self.app, &self.me, &input.route).await,
                };
            if !takes {
                tracing::info!(binding = %b.name, route = %input.route, "the app does not take this input binding's events; it is not read");
                continue;
            }
            let policies =
                component_policies(&self.resiliency, &b.name, &b.type_, Direction::Inbound);
            let delivery = Delivery {
                app: self.app.clone(),
                me: self.me.clone(),
                name: b.name.clone(),
                route: input.route.clone(),
                spans: self.spans.clone(),
            };
            let handler = track(deliverer(delivery, policies), self.in_flight.clone(), None);
            let p = Prepared {
                index: None,
                what: format!("binding {:?}", b.name).into(),
                source: Source::Binding(input.source.clone()),
                handler,
            };
            self.add(p).await;
        }
    }
}

/// Whether an HTTP app takes events on `route`: its answer to `OPTIONS` is a 2xx or 405.
async fn takes_events(app: &AppChannel, me: &Caller, route: &str) -> bool {
    let req = Request::builder()
        .method(Method::OPTIONS)
        .uri(route)
        .header(header::CONTENT_TYPE, "application/json")
        .body(empty());
    let Ok(req) = req else {
        tracing::warn!(%route, "the input binding's route is not a valid path");
        return false;
    };
    match tokio::time::timeout(PROBE_TIMEOUT, app.call(req, me)).await {
        Ok(Ok(rsp)) => rsp.status().is_success() || rsp.status() == 405,
        Ok(Err(e)) => {
            tracing::warn!(%route, error = %e, "asking the app whether it takes the input binding's events failed");
            false
        }
        Err(_) => {
            tracing::warn!(%route, "the app did not answer OPTIONS within {PROBE_TIMEOUT:?}");
            false
        }
    }
}

/// The input bindings a gRPC app lists (`ListInputBindings`); none when it fails to answer.
async fn listed_by_grpc_app(app: &AppChannel, me: &Caller) -> Vec<String> {
    let req = Request::builder()
        .method(Method::GET)
        .uri("/dapr/bindings")
        .extension(InputBindingsQuery)
        .body(empty())
        .expect("a static request is valid");
    let answer = match tokio::time::timeout(PROBE_TIMEOUT, app.call(req, me)).await {
        Ok(Ok(rsp)) if rsp.status().is_success() => {
            collect_within(rsp.into_body(), 1 << 20).await.ok()
        }
        Ok(Ok(_)) => None,
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "asking the app for its input bindings failed");
            None
        }
        Err(_) => {
            tracing::warn!("the app did not list its input bindings within {PROBE_TIMEOUT:?}");
            None
        }
    };
    answer
        .and_then(|b| serde_json::from_slice::<Vec<String>>(&b).ok())
        .unwrap_or_default()
}

/// The parts of one binding's deliveries that do not change between events.
struct Delivery {
    app: AppChannel,
    me: Caller,
    name: String,
    route: String,
    spans: Option<Spans>,
}

/// Delivers each event through the binding's `inbound` policies: retry(timeout(attempt)).
fn deliverer(delivery: Delivery, policies: Policies) -> Handler {
    let stack = delivery_stack(&delivery.me, &delivery.name, policies, DeliveryClassify);
    let delivery = Arc::new(delivery);
    let d = delivery.clone();
    let once = tower::service_fn(move |msg: Message| {
        let d = d.clone();
        async move { Ok::<_, Infallible>(d.once(msg).await) }
    });
    let stack = stack.around_cloned(once);
    Arc::new(move |msg: Message| {
        let (call, delivery) = (stack.clone().oneshot(msg), delivery.clone());
        Box::pin(async move {
            let started = Instant::now();
            let outcome = match call.await {
                Ok((outcome, _)) => outcome,
                Err(e) => {
                    tracing::info!(binding = %delivery.name, error = %e, "input binding delivery failed");
                    Outcome::Retry
                }
            };
            delivery.record(outcome == Outcome::Success, started);
            outcome
        })
    })
}

impl Delivery {
    /// One attempt: the outcome and, when the app answered, its status code.
    async fn once(&self, msg: Message) -> (Outcome, Option<u16>) {
        let mut req = Request::builder()
            .method(Method::POST)
            .uri(self.route.as_str())
            .header(header::CONTENT_TYPE, "application/json")
            .extension(BindingDelivery {
                name: self.name.clone(),
                metadata: msg.metadata.clone(),
            });
        // The event continues the trace its metadata names, or starts one.
        let parent = msg
            .metadata
            .get("traceparent")
            .and_then(|t| TraceContext::parse(t));
        let child = parent.map_or_else(TraceContext::new_root, |p| p.child());
        let started = SystemTime::now();
        if let Some(headers) = req.headers_mut() {
            for (k, v) in &msg.metadata {
                if let Some((name, value)) = header_of(k, v) {
                    headers.append(name, value);
                }
            }
            if self.spans.is_some() {
                headers.insert("traceparent", child.header_value());
            }
        }
        let Ok(req) = req.body(full(msg.data)) else {
            return (Outcome::Retry, None);
        };
        let answer = match self.app.call(req, &self.me).await {
            Ok(rsp) => {
                let status = rsp.status().as_u16();
                // Read (and dropped) whole, so the connection can be used again.
                let _ = collect_within(rsp.into_body(), 64 * 1024).await;
                if !(200..300).contains(&status) {
                    tracing::info!(binding = %self.name, status, "the app failed an input binding event");
                }
                let outcome = match status {
                    200..=299 => Outcome::Success,
                    _ => Outcome::Retry,
                };
                (outcome, (!(200..300).contains(&status)).then_some(status))
            }
            Err(e) => {
                tracing::info!(binding = %self.name, error = %e, "delivering an input binding event failed");
                (Outcome::Retry, None)
            }
        };
        if let Some(spans) = &self.spans {
            self.span(spans, parent, child, started, answer.0);
        }
        answer
    }

    /// Records the delivery as a consumer span, when its trace is sampled.
    fn span(
        &self,
        spans: &Spans,
        parent: Option<TraceContext>,
        child: TraceContext,
        started: SystemTime,
        outcome: Outcome,
    ) {
        if !is_sampled(&child) {
            return;
        }
        spans.record(SpanRecord {
            trace_id: child.trace_id,
            span_id: child.span_id,
            parent_span_id: parent.map_or(0, |p| p.span_id),
            name: format!("bindings/{}", self.name).into(),
            kind: SpanKind::Consumer,
            start: started,
            end: SystemTime::now(),
            attributes: vec![
                ("app_id", self.me.app_id.clone()),
                ("binding", self.name.clone()),
                ("binding.route", self.route.clone()),
            ],
            error: outcome != Outcome::Success,
        });
    }

    /// Counts one delivery (with its retries) under `dapr_component_input_binding_*`.
    fn record(&self, success: bool, started: Instant) {
        let labels = [
            ("app_id", self.me.app_id.clone()),
            ("component", self.name.clone()),
            ("namespace", self.me.namespace.clone()),
            ("success", success.to_string()),
        ];
        metrics::INPUT_BINDING_COUNT.counter(&labels).increment(1);
        metrics::INPUT_BINDING_LATENCIES
            .histogram(&labels)
            .record(started.elapsed().as_secs_f64() * 1000.0);
    }
}

/// An event's metadata entry as a request header, as daprd turns metadata into headers: none
/// for what describes the body or the connection, binary (`-bin`) entries or a destination;
/// `grpc-*` names are sent as `dapr-grpc-*`.
fn header_of(key: &str, value: &str) -> Option<(HeaderName, HeaderValue)> {
    let lower = key.to_ascii_lowercase();
    if lower.ends_with("-bin") || lower == "dapr-destination-id" || lower == "proxy-connection" {
        return None;
    }
    let name = match lower.strip_prefix("grpc-") {
        Some(rest) => format!("dapr-grpc-{rest}"),
        None => lower,
    };
    let name = HeaderName::try_from(name).ok()?;
    if describes_the_body_or_connection(&name) {
        return None;
    }
    Some((name, HeaderValue::try_from(value).ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_becomes_headers_as_daprd_sends_them() {
        let h = |k: &str| header_of(k, "v").map(|(n, _)| n.to_string());
        assert_eq!(h("timeZone").as_deref(), Some("timezone"));
        assert_eq!(h("readTimeUTC").as_deref(), Some("readtimeutc"));
        assert_eq!(h("grpc-timeout").as_deref(), Some("dapr-grpc-timeout"));
        for dropped in [
            "Content-Type",
            "content-length",
            "trace-bin",
            "Connection",
            "transfer-encoding",
            "host",
            "dapr-destination-id",
        ] {
            assert_eq!(h(dropped), None, "{dropped}");
        }
        assert!(header_of("bad name", "v").is_none());
        assert!(header_of("ok", "bad\nvalue").is_none());
    }
}
