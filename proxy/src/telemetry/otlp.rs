//! OTLP over HTTP (protobuf) through `opentelemetry-otlp` and its hyper client: our span records
//! become the SDK's `SpanData`, keeping the ids the trace layers minted and propagated.

use std::collections::HashMap;
use std::time::Duration;

use opentelemetry::trace::{
    SpanContext, SpanId, SpanKind as OtelKind, Status, TraceFlags, TraceId, TraceState,
};
use opentelemetry::{InstrumentationScope, KeyValue};
use opentelemetry_otlp::{Protocol, WithExportConfig as _, WithHttpConfig as _};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{SpanData, SpanExporter as _};
use outrider_filters::spans::{SpanKind, SpanRecord};

/// An OTLP/HTTP exporter, or why it could not be built.
pub(super) struct Otlp {
    exporter: Result<opentelemetry_otlp::SpanExporter, String>,
    scope: InstrumentationScope,
}

impl Otlp {
    pub(super) fn new(
        url: &str,
        headers: Vec<(String, String)>,
        app_id: &str,
        connector: super::Connector,
    ) -> Self {
        let timeout = Duration::from_secs(10);
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_http_client(opentelemetry_http::hyper::HyperClient::new(
                connector, timeout, None,
            ))
            .with_endpoint(url)
            .with_protocol(Protocol::HttpBinary)
            .with_timeout(timeout)
            .with_headers(headers.into_iter().collect::<HashMap<_, _>>())
            .build()
            .map(|mut e| {
                e.set_resource(
                    &Resource::builder_empty()
                        .with_service_name(app_id.to_owned())
                        .build(),
                );
                e
            })
            .map_err(|e| e.to_string());
        let scope = InstrumentationScope::builder("outrider")
            .with_version(env!("CARGO_PKG_VERSION"))
            .build();
        Self { exporter, scope }
    }

    pub(super) async fn send(&mut self, batch: Vec<SpanRecord>) -> Result<(), String> {
        let exporter = self.exporter.as_ref().map_err(Clone::clone)?;
        let data = batch
            .into_iter()
            .map(|s| span_data(s, &self.scope))
            .collect();
        exporter.export(data).await.map_err(|e| e.to_string())
    }
}

fn span_data(s: SpanRecord, scope: &InstrumentationScope) -> SpanData {
    SpanData {
        span_context: SpanContext::new(
            TraceId::from(s.trace_id),
            SpanId::from(s.span_id),
            TraceFlags::SAMPLED,
            false,
            TraceState::default(),
        ),
        parent_span_id: SpanId::from(s.parent_span_id),
        parent_span_is_remote: s.parent_span_id != 0,
        span_kind: match s.kind {
            SpanKind::Server => OtelKind::Server,
            SpanKind::Client => OtelKind::Client,
            SpanKind::Consumer => OtelKind::Consumer,
        },
        name: s.name,
        start_time: s.start,
        end_time: s.end,
        attributes: s
            .attributes
            .into_iter()
            .map(|(k, v)| KeyValue::new(k, v))
            .collect(),
        dropped_attributes_count: 0,
        events: Default::default(),
        links: Default::default(),
        status: if s.error {
            Status::error("")
        } else {
            Status::Unset
        },
        instrumentation_scope: scope.clone(),
    }
}
