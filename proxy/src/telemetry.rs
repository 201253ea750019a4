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

use crate::cli::OtelEnv;
use serde_json::{Value, json};
use tokio::sync::mpsc;

/// Most spans per batch.
const BATCH: usize = 512;
/// How long a span waits for its batch to fill.
const FLUSH_EVERY: Duration = Duration::from_millis(500);
/// Spans waiting for export at most; more are dropped (and counted).
const QUEUE: usize = 4096;

/// Where spans go.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Export {
    /// OTLP over HTTP (or HTTPS, by the URL's scheme), protobuf, to this URL (`…/v1/traces`).
    Otlp {
        url: String,
        headers: Vec<(String, String)>,
    },
    /// Zipkin v2 JSON, to this URL (`…/api/v2/spans`).
    Zipkin { url: String },
}

impl std::fmt::Display for Export {
    /// The collector without credentials: userinfo is cut from the URL and only header names are
    /// shown (OTLP headers usually carry an API key).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Export::Otlp { url, headers } => {
                let names: Vec<&str> = headers.iter().map(|(k, _)| k.as_str()).collect();
                write!(f, "OTLP/HTTP to {}", without_userinfo(url))?;
                if !names.is_empty() {
                    write!(f, " with headers {}", names.join(", "))?;
                }
                Ok(())
            }
            Export::Zipkin { url } => write!(f, "Zipkin to {}", without_userinfo(url)),
        }
    }
}

/// `scheme://user:pass@host/…` → `scheme://host/…`.
fn without_userinfo(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}://{}", &rest[at + 1..]),
        None => url.to_owned(),
    }
}

/// The tracing settings in force.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct TracingConfig {
    /// Share of new traces sampled, 0 to 1.
    pub(crate) rate: f64,
    pub(crate) export: Export,
}

impl TracingConfig {
    /// Reads `spec.tracing`. `None` when nothing is exported (no collector, or `samplingRate: "0"`).
    /// Problems are `(field, message)`.
    pub(crate) fn parse(v: &Value, env: &OtelEnv) -> Result<Option<Self>, Vec<(String, String)>> {
        let mut problems = Vec::new();
        let text = |p: &str| {
            v.pointer(p)
                .map(|x| x.as_str().map_or_else(|| x.to_string(), str::to_owned))
        };
        // As in daprd, the environment names the collector when the file does not, and then an
        // unset rate samples everything.
        let from_env = text("/otel/endpointAddress").is_none_or(|s| s.trim().is_empty())
            && text("/zipkin/endpointAddress").is_none_or(|s| s.trim().is_empty())
            && env.endpoint.is_some();
        // As in daprd: an unset rate samples almost nothing; "0" turns export off.
        let rate = match text("/samplingRate").as_deref().map(str::trim) {
            None | Some("") if from_env => 1.0,
            None | Some("") => 0.0001,
            Some(t) => match t.parse::<f64>() {
                Ok(r) if (0.0..=1.0).contains(&r) => r,
                _ => {
                    problems.push((
                        "spec.tracing.samplingRate".to_owned(),
                        format!("{t:?} is not a number from 0 to 1"),
                    ));
                    0.0
                }
            },
        };
        let otel = text("/otel/endpointAddress")
            .filter(|s| !s.trim().is_empty())
            .or_else(|| env.endpoint.clone().filter(|_| from_env));
        let zipkin = text("/zipkin/endpointAddress").filter(|s| !s.trim().is_empty());
        let export = match (otel, zipkin) {
            (Some(endpoint), _) => {
                let protocol = text("/otel/protocol")
                    .or_else(|| env.protocol.clone())
                    .unwrap_or_else(|| "http".to_owned())
                    .to_ascii_lowercase();
                if protocol != "http" && protocol != "http/protobuf" {
                    problems.push((
                        "spec.tracing.otel.protocol".to_owned(),
                        format!("{protocol:?}: only http is available (OTLP over HTTP, protobuf)"),
                    ));
                }
                // Dapr's default is TLS; `http://` or `https://` in the address decides on its own.
                let secure = v
                    .pointer("/otel/isSecure")
                    .and_then(Value::as_bool)
                    .or(env.insecure.map(|insecure| !insecure))
                    .unwrap_or(true);
                let mut headers: Vec<(String, String)> = v
                    .pointer("/otel/headers")
                    .and_then(Value::as_array)
                    .map(|hs| {
                        hs.iter()
                            .filter_map(|h| {
                                Some((
                                    h["name"].as_str()?.to_owned(),
                                    h["value"].as_str()?.to_owned(),
                                ))
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                if headers.is_empty() {
                    headers = env.headers.as_deref().map(env_headers).unwrap_or_default();
                }
                Some(Export::Otlp {
                    url: otlp_url(&endpoint, secure),
                    headers,
                })
            }
            (None, Some(url)) => {
                if !(url.starts_with("http://") || url.starts_with("https://")) {
                    problems.push((
                        "spec.tracing.zipkin.endpointAddress".to_owned(),
                        format!("{url:?} must be an http:// or https:// URL (e.g. http://localhost:9411/api/v2/spans)"),
                    ));
                }
                Some(Export::Zipkin { url })
            }
            (None, None) => None,
        };
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(export
            .filter(|_| rate > 0.0)
            .map(|export| TracingConfig { rate, export }))
    }
}

/// `key=value,key2=value2` (values percent-encoded, as the OTLP exporter spec has it).
fn env_headers(s: &str) -> Vec<(String, String)> {
    s.split(',')
        .filter_map(|kv| {
            let (k, v) = kv.split_once('=')?;
            let v = percent_encoding::percent_decode_str(v.trim())
                .decode_utf8_lossy()
                .into_owned();
            Some((k.trim().to_owned(), v))
        })
        .filter(|(k, _)| !k.is_empty())
        .collect()
}

/// `localhost:4318` (scheme by `secure`) or `http(s)://host:4318[/path]` → the traces URL.
fn otlp_url(endpoint: &str, secure: bool) -> String {
    let e = endpoint.trim().trim_end_matches('/');
    let scheme = if secure { "https" } else { "http" };
    let with_scheme = if e.contains("://") {
        e.to_owned()
    } else {
        format!("{scheme}://{e}")
    };
    let path_given = with_scheme
        .splitn(4, '/')
        .nth(3)
        .is_some_and(|p| !p.is_empty());
    if path_given {
        with_scheme
    } else {
        format!("{with_scheme}/v1/traces")
    }
}

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
fn https_connector(ca_file: Option<&Path>) -> anyhow::Result<Connector> {
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
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS versions")?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    Ok(hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http))
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

pub(crate) mod metrics;
mod otlp;

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(v: Value) -> Result<Option<TracingConfig>, Vec<(String, String)>> {
        TracingConfig::parse(&v, &OtelEnv::default())
    }

    #[test]
    fn the_environment_names_a_collector_the_file_does_not() {
        let env = OtelEnv {
            endpoint: Some("collector:4318".into()),
            protocol: Some("http/protobuf".into()),
            insecure: Some(true),
            headers: Some("api-key=s%3Dcret, x=1".into()),
        };
        let c = TracingConfig::parse(&Value::Null, &env).unwrap().unwrap();
        assert_eq!(
            c.rate, 1.0,
            "an unset rate samples everything when the environment names the collector"
        );
        assert_eq!(
            c.export,
            Export::Otlp {
                url: "http://collector:4318/v1/traces".into(),
                headers: vec![
                    ("api-key".into(), "s=cret".into()),
                    ("x".into(), "1".into())
                ],
            }
        );
        // The file wins; a protocol we do not speak is refused.
        let file = json!({"samplingRate": "0.5", "zipkin": {"endpointAddress": "http://z:9411/api/v2/spans"}});
        assert!(matches!(
            TracingConfig::parse(&file, &env).unwrap().unwrap().export,
            Export::Zipkin { .. }
        ));
        let grpc = OtelEnv {
            protocol: Some("grpc".into()),
            ..env
        };
        assert!(TracingConfig::parse(&Value::Null, &grpc).is_err());
        assert!(
            TracingConfig::parse(&Value::Null, &OtelEnv::default())
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn settings() {
        let otel = |extra: Value| {
            let mut v = json!({"samplingRate": "1", "otel": {"endpointAddress": "127.0.0.1:4318", "isSecure": false}});
            if let (Some(o), Some(e)) = (v["otel"].as_object_mut(), extra.as_object()) {
                o.extend(e.clone());
            }
            v
        };
        let c = parse(otel(json!({}))).unwrap().unwrap();
        assert_eq!(
            c.export,
            Export::Otlp {
                url: "http://127.0.0.1:4318/v1/traces".into(),
                headers: vec![]
            }
        );
        assert_eq!(c.rate, 1.0);
        assert!(
            parse(json!({"samplingRate": "0", "zipkin": {"endpointAddress": "http://z:9411/api/v2/spans"}}))
                .unwrap()
                .is_none()
        );
        assert!(
            parse(json!({"samplingRate": "1"})).unwrap().is_none(),
            "no collector, nothing exported"
        );
        let z = parse(json!({"samplingRate": 0.5, "zipkin": {"endpointAddress": "http://z:9411/api/v2/spans"}}))
            .unwrap()
            .unwrap();
        assert_eq!(
            (z.rate, z.export),
            (
                0.5,
                Export::Zipkin {
                    url: "http://z:9411/api/v2/spans".into()
                }
            )
        );
        assert_eq!(
            otlp_url("http://c:4318/custom/traces", true),
            "http://c:4318/custom/traces"
        );
        assert_eq!(otlp_url("http://c:4318/", true), "http://c:4318/v1/traces");
        assert_eq!(
            otlp_url("c:4318", true),
            "https://c:4318/v1/traces",
            "isSecure (Dapr's default) is TLS"
        );
        for (v, field, value) in [
            (
                json!({"samplingRate": "often", "zipkin": {"endpointAddress": "http://z"}}),
                "spec.tracing.samplingRate",
                "often",
            ),
            (
                json!({"samplingRate": "2", "zipkin": {"endpointAddress": "http://z"}}),
                "spec.tracing.samplingRate",
                "\"2\"",
            ),
            (
                otel(json!({"protocol": "grpc"})),
                "spec.tracing.otel.protocol",
                "grpc",
            ),
            (
                json!({"zipkin": {"endpointAddress": "z:9411"}}),
                "spec.tracing.zipkin.endpointAddress",
                "z:9411",
            ),
        ] {
            let errs = parse(v.clone()).unwrap_err();
            assert!(
                errs.iter().any(|(f, m)| f == field && m.contains(value)),
                "{v}: {errs:?}"
            );
        }
    }

    #[test]
    fn the_collector_is_shown_without_credentials() {
        let e = Export::Otlp {
            url: "https://u:p4ss@c:4318/v1/traces".into(),
            headers: vec![("api-key".into(), "s3cret".into())],
        };
        let shown = e.to_string();
        assert_eq!(
            shown,
            "OTLP/HTTP to https://c:4318/v1/traces with headers api-key"
        );
        assert_eq!(
            without_userinfo("http://z:9411/a@b"),
            "http://z:9411/a@b",
            "an @ in the path is not userinfo"
        );
    }

    #[test]
    fn zipkin_spans() {
        let t = std::time::UNIX_EPOCH + Duration::from_secs(1);
        let span = SpanRecord {
            trace_id: 0xabc,
            span_id: 0x12,
            parent_span_id: 0x34,
            name: "GET /v1.0/metadata".into(),
            kind: SpanKind::Server,
            start: t,
            end: t + Duration::from_millis(2),
            attributes: vec![("app_id", "a".into())],
            error: true,
        };
        let v = zipkin_json(&[span], "a");
        assert_eq!(v[0]["traceId"], "00000000000000000000000000000abc");
        assert_eq!(
            (v[0]["id"].as_str(), v[0]["parentId"].as_str()),
            (Some("0000000000000012"), Some("0000000000000034"))
        );
        assert_eq!(
            (v[0]["timestamp"].as_u64(), v[0]["duration"].as_u64()),
            (Some(1_000_000), Some(2000))
        );
        assert_eq!(v[0]["tags"]["error"], "true");
        assert_eq!(v[0]["localEndpoint"]["serviceName"], "a");
    }
}
