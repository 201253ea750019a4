//! Span export: `Configuration.spec.tracing` and the task that ships finished spans.
//!
//! The trace layers hand finished spans to a bounded channel ([`Spans`]); one task here batches
//! them (up to [`BATCH`] spans, or whatever arrived within [`FLUSH_EVERY`]) and sends each batch
//! to the configured collector: OTLP over HTTP (protobuf, through `opentelemetry-otlp` and its
//! hyper client) or Zipkin v2 JSON. A collector that is down costs a log line per failed batch,
//! never a request's latency.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, header};
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use outrider_filters::spans::{SpanKind, SpanRecord, Spans};

use serde_json::{Value, json};
use tokio::sync::mpsc;

/// Most spans per batch.
const BATCH: usize = 512;
/// How long a span waits for its batch to fill.
const FLUSH_EVERY: Duration = Duration::from_millis(500);
/// Spans waiting for export at most; more are dropped (and counted).
const QUEUE: usize = 4096;

/// The running export task.
pub(crate) struct Exporting {
    stop: tokio_util::sync::CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Exporting {
    /// Sends what is queued and stops, waiting at most `limit`.
    pub(crate) async fn finish(self, limit: Duration) {
        self.stop.cancel();
        if tokio::time::timeout(limit, self.task).await.is_err() {
            tracing::warn!("the last spans could not be exported in time");
        }
    }
}

/// Starts the export task; returns the sink for the trace layers and the task. HTTPS collectors
/// are verified against `ca_file` (`SSL_CERT_FILE`) or the system's CA bundle.
pub(crate) fn start(
    config: &TracingConfig,
    app_id: &str,
    ca_file: Option<&Path>,
) -> anyhow::Result<(Spans, Exporting)> {
    let connector = https_connector(ca_file)?;
    let (spans, rx) = Spans::new(QUEUE, config.rate, app_id);
    let exporter = Exporter::new(config.export.clone(), app_id, connector);
    tracing::info!(export = %config.export, rate = config.rate, "exporting spans");
    let stop = tokio_util::sync::CancellationToken::new();
    let task = tokio::spawn(run(rx, exporter, stop.clone()));
    Ok((spans, Exporting { stop, task }))
}

/// Where the system keeps its CA bundle (Debian).
const SYSTEM_CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// A connector for `http://` and `https://` collectors; HTTPS verifies the collector's
/// certificate against `ca_file` or the system bundle.
pub(crate) fn https_connector(ca_file: Option<&Path>) -> anyhow::Result<Connector> {
    use anyhow::Context as _;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS versions")?
        .with_root_certificates(root_store(ca_file)?)
        .with_no_client_auth();
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    Ok(hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http))
}

/// The CA certificates servers outside the mesh are verified against: `ca_file`
/// (`SSL_CERT_FILE`), else the system's bundle (none if the system has no bundle).
pub(crate) fn root_store(ca_file: Option<&Path>) -> anyhow::Result<rustls::RootCertStore> {
    use anyhow::Context as _;
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject as _;
    let path = ca_file.unwrap_or(Path::new(SYSTEM_CA_BUNDLE));
    let mut roots = rustls::RootCertStore::empty();
    if path.exists() || ca_file.is_some() {
        let certs = CertificateDer::pem_file_iter(path)
            .with_context(|| format!("reading CA certificates from {}", path.display()))?;
        // A bundle may hold certificates this verifier cannot use; the others still count.
        let (added, _ignored) = roots.add_parsable_certificates(certs.flatten());
        anyhow::ensure!(
            added > 0 || ca_file.is_none(),
            "{} holds no usable CA certificate",
            path.display()
        );
    }
    Ok(roots)
}

/// The connector of collector clients.
pub(crate) type Connector = hyper_rustls::HttpsConnector<HttpConnector>;

async fn run(
    mut rx: mpsc::Receiver<SpanRecord>,
    mut exporter: Exporter,
    stop: tokio_util::sync::CancellationToken,
) {
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        let first = tokio::select! {
            span = rx.recv() => span,
            () = stop.cancelled() => None,
        };
        let Some(first) = first else {
            // Stopping (or every sender is gone): what is queued goes out in a last batch.
            while let Ok(span) = rx.try_recv() {
                batch.push(span);
            }
            if !batch.is_empty() {
                send(&mut exporter, std::mem::take(&mut batch)).await;
            }
            return;
        };
        batch.push(first);
        let deadline = tokio::time::Instant::now() + FLUSH_EVERY;
        while batch.len() < BATCH {
            tokio::select! {
                span = rx.recv() => match span {
                    Some(span) => batch.push(span),
                    None => break,
                },
                () = tokio::time::sleep_until(deadline) => break,
                () = stop.cancelled() => break,
            }
        }
        send(&mut exporter, std::mem::take(&mut batch)).await;
    }
}

async fn send(exporter: &mut Exporter, batch: Vec<SpanRecord>) {
    let n = batch.len();
    if let Err(e) = exporter.send(batch).await {
        metrics::SPANS_DROPPED.counter(&[]).increment(n as u64);
        tracing::warn!(error = %e, spans = n, "span export failed; the batch is dropped");
    }
}

/// A collector client.
enum Exporter {
    Otlp(otlp::Otlp),
    Zipkin {
        url: String,
        app_id: String,
        client: Client<Connector, Full<Bytes>>,
    },
}

impl Exporter {
    fn new(export: Export, app_id: &str, connector: Connector) -> Self {
        match export {
            Export::Otlp { url, headers } => {
                Exporter::Otlp(otlp::Otlp::new(&url, headers, app_id, connector))
            }
            Export::Zipkin { url } => Exporter::Zipkin {
                url,
                app_id: app_id.to_owned(),
                client: Client::builder(TokioExecutor::new()).build(connector),
            },
        }
    }

    async fn send(&mut self, batch: Vec<SpanRecord>) -> Result<(), String> {
        match self {
            Exporter::Otlp(o) => o.send(batch).await,
            Exporter::Zipkin {
                url,
                app_id,
                client,
            } => {
                let body = zipkin_json(&batch, app_id);
                let req = Request::post(url.as_str())
                    .header(header::CONTENT_TYPE, "application/json")
                    .body(Full::new(Bytes::from(body.to_string())))
                    .map_err(|e| e.to_string())?;
                let rsp = tokio::time::timeout(Duration::from_secs(10), client.request(req))
                    .await
                    .map_err(|_| "the collector did not answer within 10s".to_owned())?
                    .map_err(|e| e.to_string())?;
                if rsp.status().is_success() {
                    Ok(())
                } else {
                    Err(format!("the collector answered {}", rsp.status()))
                }
            }
        }
    }
}

/// Zipkin v2 JSON for a batch.
fn zipkin_json(batch: &[SpanRecord], app_id: &str) -> Value {
    let micros = |t: std::time::SystemTime| {
        t.duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_micros() as u64
    };
    let spans: Vec<Value> = batch
        .iter()
        .map(|s| {
            let mut tags: serde_json::Map<String, Value> =
                s.attributes.iter().map(|(k, v)| ((*k).to_owned(), Value::String(v.clone()))).collect();
            if s.error {
                tags.insert("error".to_owned(), Value::String("true".to_owned()));
            }
            let mut span = json!({
                "traceId": format!("{:032x}", s.trace_id),
                "id": format!("{:016x}", s.span_id),
                "name": s.name,
                "kind": match s.kind { SpanKind::Server => "SERVER", SpanKind::Client => "CLIENT", SpanKind::Consumer => "CONSUMER" },
                "timestamp": micros(s.start),
                "duration": micros(s.end).saturating_sub(micros(s.start)).max(1),
                "localEndpoint": {"serviceName": app_id},
                "tags": tags,
            });
            if s.parent_span_id != 0 {
                span["parentId"] = Value::String(format!("{:016x}", s.parent_span_id));
            }
            span
        })
        .collect();
    Value::Array(spans)
}

mod config;
pub(crate) mod exposition;
pub(crate) mod metrics;
mod otlp;
pub(crate) mod traffic;

pub(crate) use config::{Export, TracingConfig};

#[cfg(test)]
mod tests;
