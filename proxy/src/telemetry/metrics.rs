//! Every metric this crate records, in one catalogue: name, kind, labels and help text. Code that
//! records a metric names it through a constant here, and [`describe`] gives each a `# HELP`
//! line. The HTTP and resiliency metrics that `filters` layers record are that crate's
//! catalogue (`outrider_filters::metrics`), described from here too.

use metrics::Unit;

/// What kind of series a metric is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Counter,
    Gauge,
    /// In milliseconds, with Dapr's latency buckets.
    HistogramMs,
}

/// One metric: its name, kind, the labels it is recorded with, and what it means.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Metric {
    pub(crate) name: &'static str,
    pub(crate) kind: Kind,
    pub(crate) labels: &'static [&'static str],
    pub(crate) help: &'static str,
}

impl Metric {
    /// The counter of this metric with `labels`: the catalogued ones, in their order.
    pub(crate) fn counter(&self, labels: &[(&'static str, String)]) -> metrics::Counter {
        self.check(labels, Counter);
        metrics::counter!(self.name, labels)
    }

    /// The gauge of this metric with `labels`.
    pub(crate) fn gauge(&self, labels: &[(&'static str, String)]) -> metrics::Gauge {
        self.check(labels, Gauge);
        metrics::gauge!(self.name, labels)
    }

    /// The histogram of this metric with `labels`, in milliseconds.
    pub(crate) fn histogram(&self, labels: &[(&'static str, String)]) -> metrics::Histogram {
        self.check(labels, HistogramMs);
        metrics::histogram!(self.name, labels)
    }

    /// A series recorded with other labels or as another kind than catalogued is a bug, caught
    /// by the tests that record it.
    fn check(&self, labels: &[(&'static str, String)], kind: Kind) {
        debug_assert_eq!(
            self.kind, kind,
            "{} is catalogued as another kind",
            self.name
        );
        debug_assert!(
            labels
                .iter()
                .map(|(k, _)| *k)
                .eq(self.labels.iter().copied()),
            "{} is recorded with labels {:?}, catalogued with {:?}",
            self.name,
            labels.iter().map(|(k, _)| k).collect::<Vec<_>>(),
            self.labels
        );
    }
}

const fn metric(
    name: &'static str,
    kind: Kind,
    labels: &'static [&'static str],
    help: &'static str,
) -> Metric {
    Metric {
        name,
        kind,
        labels,
        help,
    }
}

use Kind::{Counter, Gauge, HistogramMs};

const PUBSUB: &[&str] = &["app_id", "component", "namespace", "topic", "success"];
const INGRESS: &[&str] = &[
    "app_id",
    "component",
    "namespace",
    "topic",
    "process_status",
    "status",
];
const STATE: &[&str] = &["app_id", "component", "namespace", "operation", "success"];
const INPUT_BINDING: &[&str] = &["app_id", "component", "namespace", "success"];
const OUTPUT_BINDING: &[&str] = &["app_id", "component", "namespace", "operation", "success"];
const SENT: &[&str] = &["app_id", "destination_app_id", "type", "status"];
const RECEIVED: &[&str] = &["app_id", "source_app_id", "type", "status"];

// Dapr's component metrics.
pub(crate) const PUBSUB_INGRESS_COUNT: Metric = metric(
    "dapr_component_pubsub_ingress_count",
    Counter,
    INGRESS,
    "Messages delivered to the app, by outcome.",
);
pub(crate) const PUBSUB_INGRESS_LATENCIES: Metric = metric(
    "dapr_component_pubsub_ingress_latencies",
    HistogramMs,
    INGRESS,
    "Delivery to the app until its answer, in ms.",
);
pub(crate) const INPUT_BINDING_COUNT: Metric = metric(
    "dapr_component_input_binding_count",
    Counter,
    INPUT_BINDING,
    "Input binding events delivered to the app, by success (the app answered 2xx).",
);
pub(crate) const INPUT_BINDING_LATENCIES: Metric = metric(
    "dapr_component_input_binding_latencies",
    HistogramMs,
    INPUT_BINDING,
    "Input binding event delivered to the app until its answer, in ms.",
);
pub(crate) const OUTPUT_BINDING_COUNT: Metric = metric(
    "dapr_component_output_binding_count",
    Counter,
    OUTPUT_BINDING,
    "Output binding calls, by operation and success.",
);
pub(crate) const OUTPUT_BINDING_LATENCIES: Metric = metric(
    "dapr_component_output_binding_latencies",
    HistogramMs,
    OUTPUT_BINDING,
    "Output binding call until the component answered, in ms.",
);
pub(crate) const PUBSUB_EGRESS_COUNT: Metric = metric(
    "dapr_component_pubsub_egress_count",
    Counter,
    PUBSUB,
    "Messages published, by success.",
);
pub(crate) const PUBSUB_EGRESS_LATENCIES: Metric = metric(
    "dapr_component_pubsub_egress_latencies",
    HistogramMs,
    PUBSUB,
    "Publish until the broker has it, in ms.",
);
pub(crate) const PUBSUB_EGRESS_BULK_COUNT: Metric = metric(
    "dapr_component_pubsub_egress_bulk_count",
    Counter,
    PUBSUB,
    "Bulk publish requests, by success.",
);
pub(crate) const PUBSUB_EGRESS_BULK_EVENT_COUNT: Metric = metric(
    "dapr_component_pubsub_egress_bulk_event_count",
    Counter,
    PUBSUB,
    "Events in bulk publish requests.",
);
pub(crate) const PUBSUB_EGRESS_BULK_LATENCIES: Metric = metric(
    "dapr_component_pubsub_egress_bulk_latencies",
    HistogramMs,
    PUBSUB,
    "Bulk publish until the broker has every entry, in ms.",
);
pub(crate) const STATE_COUNT: Metric = metric(
    "dapr_component_state_count",
    Counter,
    STATE,
    "State store calls, by operation and success.",
);
pub(crate) const STATE_LATENCIES: Metric = metric(
    "dapr_component_state_latencies",
    HistogramMs,
    STATE,
    "State store calls, in ms.",
);

// Dapr's service invocation metrics, on the caller's side and on the callee's.
pub(crate) const INVOCATION_REQ_SENT: Metric = metric(
    "dapr_runtime_service_invocation_req_sent_total",
    Counter,
    &["app_id", "destination_app_id", "type"],
    "Invocations sent to other apps.",
);
pub(crate) const INVOCATION_RES_RECV: Metric = metric(
    "dapr_runtime_service_invocation_res_recv_total",
    Counter,
    SENT,
    "Responses received from invoked apps, by status.",
);
pub(crate) const INVOCATION_RES_RECV_LATENCY: Metric = metric(
    "dapr_runtime_service_invocation_res_recv_latency_ms",
    HistogramMs,
    SENT,
    "Invocation round trip from the caller's sidecar, in ms.",
);
pub(crate) const INVOCATION_REQ_RECV: Metric = metric(
    "dapr_runtime_service_invocation_req_recv_total",
    Counter,
    &["app_id", "source_app_id", "type"],
    "Invocations received from other apps.",
);
pub(crate) const INVOCATION_RES_SENT: Metric = metric(
    "dapr_runtime_service_invocation_res_sent_total",
    Counter,
    RECEIVED,
    "Responses sent to invoking apps, by status.",
);

// Dapr's gRPC server metrics, for the gRPC API.
const GRPC_SERVER: &[&str] = &["app_id", "grpc_server_method", "grpc_server_status"];
pub(crate) const GRPC_SERVER_COMPLETED: Metric = metric(
    "dapr_grpc_io_server_completed_rpcs",
    Counter,
    GRPC_SERVER,
    "gRPC API calls completed, by method and status.",
);
pub(crate) const GRPC_SERVER_LATENCY: Metric = metric(
    "dapr_grpc_io_server_server_latency",
    HistogramMs,
    GRPC_SERVER,
    "gRPC API calls from the first request byte to the last response byte, in ms.",
);

// Dapr's gRPC client metrics, for the app channel to a gRPC app.
const GRPC_CLIENT: &[&str] = &["app_id", "grpc_client_method", "grpc_client_status"];
pub(crate) const GRPC_CLIENT_COMPLETED: Metric = metric(
    "dapr_grpc_io_client_completed_rpcs",
    Counter,
    GRPC_CLIENT,
    "AppCallback calls to a gRPC app completed, by method and status.",
);
pub(crate) const GRPC_CLIENT_LATENCY: Metric = metric(
    "dapr_grpc_io_client_roundtrip_latency",
    HistogramMs,
    GRPC_CLIENT,
    "AppCallback calls to a gRPC app, from sending to the answer, in ms.",
);

// Dapr's app health probe metrics (HTTP and gRPC apps alike; a probe that got no answer is
// status `500`, as in daprd).
pub(crate) const HEALTH_PROBES: Metric = metric(
    "dapr_http_healthprobes_completed_count",
    Counter,
    &["app_id", "status"],
    "App health probes completed, by the app's status (500: no answer).",
);
pub(crate) const HEALTH_PROBE_LATENCY: Metric = metric(
    "dapr_http_healthprobes_roundtrip_latency",
    HistogramMs,
    &["app_id", "status"],
    "App health probes, from sending to the answer, in ms.",
);

// The sidecar's own.
pub(crate) const APP_HEALTHY: Metric = metric(
    "outrider_app_healthy",
    Gauge,
    &[],
    "1 while the app passes its health checks (or has none), 0 while it fails them.",
);
pub(crate) const APP_WAITING: Metric = metric(
    "outrider_app_requests_waiting",
    Gauge,
    &[],
    "Requests waiting for a free slot under --app-max-concurrency.",
);
pub(crate) const POLICY_RELOADS: Metric = metric(
    "outrider_policy_reloads_total",
    Counter,
    &["result"],
    "Reloads of the access policy files, by result.",
);
pub(crate) const SPANS_DROPPED: Metric = metric(
    "outrider_spans_dropped_total",
    Counter,
    &[],
    "Spans dropped because the exporter was behind or the collector failed.",
);
pub(crate) const CERT_RENEWALS: Metric = metric(
    "outrider_workload_cert_renewals_total",
    Counter,
    &[],
    "Workload certificate renewals.",
);
pub(crate) const CERT_RELOADS: Metric = metric(
    "outrider_workload_cert_reloads_total",
    Counter,
    &["result"],
    "Readings of changed certificate files (--cert-chain, --cert-key, --trust-bundle), by result.",
);
pub(crate) const CA_ISSUED: Metric = metric(
    "outrider_ca_certificates_issued_total",
    Counter,
    &["by"],
    "Workload certificates the CA service issued, by what entitled the caller (token, renewal).",
);
pub(crate) const CA_REFUSED: Metric = metric(
    "outrider_ca_requests_refused_total",
    Counter,
    &["reason"],
    "Certificate requests the CA service refused, by reason.",
);
pub(crate) const CA_RELOADS: Metric = metric(
    "outrider_ca_reloads_total",
    Counter,
    &["result"],
    "Loadings of the CA service's directory after it changed, by result (loaded, refused).",
);
pub(crate) const TRUST_ROOTS: Metric = metric(
    "outrider_trust_bundle_roots",
    Gauge,
    &[],
    "How many roots the trust bundle in force holds (two while a CA is rotated).",
);
pub(crate) const CERT_EXPIRY: Metric = metric(
    "outrider_workload_cert_expiry_timestamp_seconds",
    Gauge,
    &[],
    "When the workload certificate expires (Unix time).",
);
pub(crate) const CERT_GENERATION: Metric = metric(
    "outrider_workload_cert_generation",
    Gauge,
    &[],
    "How many workload certificates this sidecar has loaded.",
);
pub(crate) const CERT_EXPIRING_SOON: Metric = metric(
    "outrider_cert_expiring_soon",
    Gauge,
    &["what"],
    "1 when the workload certificate or its issuer expires within 30 days.",
);
pub(crate) const CONNECTIONS_REFUSED: Metric = metric(
    "outrider_connections_refused_total",
    Counter,
    &["listener"],
    "Connections closed on accept because the listener was at its connection cap.",
);
pub(crate) const CONNECTIONS_CLOSED: Metric = metric(
    "outrider_connections_closed_total",
    Counter,
    &["listener", "reason"],
    "Connections closed by a deadline (request head, idle, stalled peer).",
);
pub(crate) const ACCEPT_ERRORS: Metric = metric(
    "outrider_accept_errors_total",
    Counter,
    &["listener"],
    "Errors accepting a connection (out of descriptors, and the like).",
);
pub(crate) const PANICS: Metric = metric(
    "outrider_panics_total",
    Counter,
    &[],
    "Request handlers that panicked (a bug; the request got a 500).",
);
pub(crate) const PUBLISH_FULL: Metric = metric(
    "outrider_pubsub_publish_full_total",
    Counter,
    &["component"],
    "Publishes refused because a subscriber of the in-memory broker had no room left.",
);
pub(crate) const TCP_OPEN: Metric = metric(
    "outrider_tcp_open_connections",
    Gauge,
    &["direction", "peer"],
    "Intercepted TCP connections open now, by direction and peer: the peer's app id, \
     `passthrough` (a destination outside the mesh), `unmeshed` (a plain client of this app) or \
     `http` (intercepted HTTP, counted per target by the invocation metrics).",
);
pub(crate) const TCP_READ: Metric = metric(
    "outrider_tcp_read_bytes_total",
    Counter,
    &["direction", "peer"],
    "Bytes read from the local side of intercepted TCP connections.",
);
pub(crate) const TCP_WRITE: Metric = metric(
    "outrider_tcp_write_bytes_total",
    Counter,
    &["direction", "peer"],
    "Bytes written to the local side of intercepted TCP connections.",
);
pub(crate) const MESH_REQUESTS: Metric = metric(
    "outrider_mesh_requests_total",
    Counter,
    &["direction", "transport"],
    "Requests between sidecars, by direction (`outbound`: sent by this sidecar, retries \
     included; `inbound`: received) and transport (`h2`: HTTP/2 over TLS on TCP; `h3`: HTTP/3 \
     over QUIC).",
);
pub(crate) const TRANSPORT_FALLBACKS: Metric = metric(
    "outrider_mesh_transport_fallbacks_total",
    Counter,
    &[],
    "Requests to an endpoint that advertises HTTP/3 sent over HTTP/2 because no QUIC connection \
     was made within the head start; HTTP/2 is then used with that endpoint for \
     `--mesh-transport-memory`.",
);
pub(crate) const PASSTHROUGH_REQUESTS: Metric = metric(
    "outrider_passthrough_requests_total",
    Counter,
    &["status"],
    "Intercepted HTTP requests for destinations outside the mesh, forwarded as they were, by \
     status class (`2xx`, …; `error`: no answer).",
);
pub(crate) const TCP_REFUSED: Metric = metric(
    "outrider_tcp_refused_total",
    Counter,
    &["direction", "reason"],
    "Intercepted connections and mesh tunnels refused: `strict` (plain traffic in strict mode), \
     `policy` (access policy), `port` (not a port of the app), `loop` (addressed to the \
     sidecar itself), `ambiguous` (several apps at the destination), `unreachable`.",
);

/// Every metric of this crate.
pub(crate) const ALL: &[Metric] = &[
    PUBSUB_INGRESS_COUNT,
    PUBSUB_INGRESS_LATENCIES,
    PUBSUB_EGRESS_COUNT,
    PUBSUB_EGRESS_LATENCIES,
    INPUT_BINDING_COUNT,
    INPUT_BINDING_LATENCIES,
    OUTPUT_BINDING_COUNT,
    OUTPUT_BINDING_LATENCIES,
    PUBSUB_EGRESS_BULK_COUNT,
    PUBSUB_EGRESS_BULK_EVENT_COUNT,
    PUBSUB_EGRESS_BULK_LATENCIES,
    STATE_COUNT,
    STATE_LATENCIES,
    INVOCATION_REQ_SENT,
    INVOCATION_RES_RECV,
    INVOCATION_RES_RECV_LATENCY,
    INVOCATION_REQ_RECV,
    INVOCATION_RES_SENT,
    GRPC_SERVER_COMPLETED,
    GRPC_SERVER_LATENCY,
    GRPC_CLIENT_COMPLETED,
    GRPC_CLIENT_LATENCY,
    HEALTH_PROBES,
    HEALTH_PROBE_LATENCY,
    APP_HEALTHY,
    APP_WAITING,
    POLICY_RELOADS,
    SPANS_DROPPED,
    CERT_RENEWALS,
    CERT_RELOADS,
    CA_ISSUED,
    CA_REFUSED,
    CA_RELOADS,
    TRUST_ROOTS,
    CERT_EXPIRY,
    CERT_GENERATION,
    CERT_EXPIRING_SOON,
    CONNECTIONS_REFUSED,
    CONNECTIONS_CLOSED,
    ACCEPT_ERRORS,
    PANICS,
    PUBLISH_FULL,
    subscriptions::IN_FLIGHT,
    subscriptions::DEAD_LETTERS,
    TCP_OPEN,
    TCP_READ,
    TCP_WRITE,
    TCP_REFUSED,
    PASSTHROUGH_REQUESTS,
    MESH_REQUESTS,
    TRANSPORT_FALLBACKS,
    actors::TIMERS_FIRED,
    actors::REMINDERS_FIRED,
    actors::DEACTIVATED,
    actors::DEACTIVATED_FAILED,
    actors::REBALANCED,
    actors::PENDING_CALLS,
];

/// A `# HELP` line for every metric, ours and the `filters` layers'.
pub(crate) fn describe() {
    outrider_filters::metrics::describe();
    for m in ALL {
        match m.kind {
            Counter => metrics::describe_counter!(m.name, m.help),
            Gauge => metrics::describe_gauge!(m.name, m.help),
            HistogramMs => metrics::describe_histogram!(m.name, Unit::Milliseconds, m.help),
        }
    }
}

pub(crate) mod actors;
mod mesh;
pub(crate) mod subscriptions;
pub(crate) use mesh::{record_mesh_request, record_transport_fallback};

#[cfg(test)]
mod tests;
