//! A trace collector for tests: an HTTP server that accepts OTLP/HTTP protobuf on `/v1/traces`
//! and Zipkin v2 JSON on `/api/v2/spans`, decodes the spans and keeps them.
//!
//! The protobuf decoding is written here on purpose: it reads the wire format field by field,
//! independently of the encoder under test, so an encoding mistake cannot cancel itself out.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;

/// A span as the collector received it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CollectedSpan {
    /// 32 lower-case hex digits.
    pub trace_id: String,
    /// 16 lower-case hex digits.
    pub span_id: String,
    /// 16 hex digits, or empty for a root.
    pub parent_span_id: String,
    /// Its name.
    pub name: String,
    /// Its attributes (Zipkin: tags), as strings.
    pub attributes: BTreeMap<String, String>,
    /// The service (OTLP resource `service.name`, Zipkin `localEndpoint.serviceName`).
    pub service: String,
    /// Which protocol delivered it: `otlp` or `zipkin`.
    pub protocol: &'static str,
}

/// A running collector; stops when dropped.
pub struct Collector {
    /// Its port on 127.0.0.1.
    pub port: u16,
    spans: Arc<Mutex<Vec<CollectedSpan>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Collector {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Collector {
    /// Starts one on a free loopback port.
    pub async fn start() -> Self {
        Self::serve(None).await
    }

    /// Starts one that speaks only HTTPS, with a certificate for `127.0.0.1` and `localhost`
    /// from a fresh CA, whose PEM is written to `ca_pem` (not trusted by default: clients must
    /// be given it).
    pub async fn start_tls(ca_pem: &std::path::Path) -> Self {
        let ca_key = rcgen::KeyPair::generate().expect("key");
        let mut ca_params = rcgen::CertificateParams::default();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = ca_params.self_signed(&ca_key).expect("ca");
        let key = rcgen::KeyPair::generate().expect("key");
        let params = rcgen::CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()])
            .expect("params");
        let cert = params
            .signed_by(&key, &rcgen::Issuer::new(ca_params, ca_key))
            .expect("cert");
        std::fs::write(ca_pem, ca.pem()).expect("write the CA");
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let key_der = rustls_pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_no_client_auth()
            .with_single_cert(vec![cert.der().clone()], key_der)
            .expect("server config");
        Self::serve(Some(tokio_rustls::TlsAcceptor::from(Arc::new(config)))).await
    }

    async fn serve(tls: Option<tokio_rustls::TlsAcceptor>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind collector");
        let port = listener.local_addr().unwrap().port();
        let spans = Arc::new(Mutex::new(Vec::new()));
        let store = spans.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let (store, tls) = (store.clone(), tls.clone());
                tokio::spawn(async move {
                    let svc = service_fn(move |req| handle(req, store.clone()));
                    let builder = auto::Builder::new(TokioExecutor::new());
                    match tls {
                        Some(acceptor) => {
                            let Ok(stream) = acceptor.accept(tcp).await else {
                                return;
                            };
                            let _ = builder.serve_connection(TokioIo::new(stream), svc).await;
                        }
                        None => {
                            let _ = builder.serve_connection(TokioIo::new(tcp), svc).await;
                        }
                    }
                });
            }
        });
        Self { port, spans, task }
    }

    /// Every span received so far.
    pub fn spans(&self) -> Vec<CollectedSpan> {
        self.spans.lock().unwrap().clone()
    }
}

async fn handle(
    req: Request<Incoming>,
    store: Arc<Mutex<Vec<CollectedSpan>>>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path().to_owned();
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let decoded = match path.as_str() {
        "/v1/traces" => decode_otlp(&body),
        "/api/v2/spans" => decode_zipkin(&body),
        _ => Err(format!("unknown path {path}")),
    };
    let mut rsp = Response::new(Full::new(Bytes::new()));
    match decoded {
        Ok(spans) => store.lock().unwrap().extend(spans),
        Err(e) => {
            *rsp.status_mut() = StatusCode::BAD_REQUEST;
            *rsp.body_mut() = Full::new(Bytes::from(e));
        }
    }
    Ok(rsp)
}

/// One protobuf field: its number and value.
enum Field<'a> {
    Varint(u64),
    Fixed(u64),
    Bytes(&'a [u8]),
}

/// The fields of one protobuf message, in order.
fn fields(mut buf: &[u8]) -> Result<Vec<(u64, Field<'_>)>, String> {
    fn varint(buf: &mut &[u8]) -> Result<u64, String> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let (&b, rest) = buf.split_first().ok_or("truncated varint")?;
            *buf = rest;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err("varint too long".into())
    }
    let mut out = Vec::new();
    while !buf.is_empty() {
        let key = varint(&mut buf)?;
        let (number, wire) = (key >> 3, key & 7);
        let field = match wire {
            0 => Field::Varint(varint(&mut buf)?),
            1 | 5 => {
                let n = if wire == 1 { 8 } else { 4 };
                let (bytes, rest) = buf.split_at_checked(n).ok_or("truncated fixed field")?;
                buf = rest;
                let mut v = [0u8; 8];
                v[..n].copy_from_slice(bytes);
                Field::Fixed(u64::from_le_bytes(v))
            }
            2 => {
                let len = usize::try_from(varint(&mut buf)?).map_err(|e| e.to_string())?;
                let (bytes, rest) = buf
                    .split_at_checked(len)
                    .ok_or("truncated length-delimited field")?;
                buf = rest;
                Field::Bytes(bytes)
            }
            other => return Err(format!("unexpected wire type {other}")),
        };
        out.push((number, field));
    }
    Ok(out)
}

fn sub<'a>(f: &Field<'a>) -> Result<&'a [u8], String> {
    match f {
        Field::Bytes(b) => Ok(b),
        _ => Err("expected a length-delimited field".into()),
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// `KeyValue { key = 1; AnyValue value = 2 }` as strings.
fn key_value(buf: &[u8]) -> Result<(String, String), String> {
    let (mut key, mut value) = (String::new(), String::new());
    for (n, f) in fields(buf)? {
        match n {
            1 => key = String::from_utf8_lossy(sub(&f)?).into_owned(),
            2 => {
                for (vn, vf) in fields(sub(&f)?)? {
                    value = match (vn, vf) {
                        (1, Field::Bytes(s)) => String::from_utf8_lossy(s).into_owned(),
                        (2 | 3, Field::Varint(v)) => v.to_string(),
                        (4, Field::Fixed(v)) => f64::from_bits(v).to_string(),
                        _ => value,
                    };
                }
            }
            _ => {}
        }
    }
    Ok((key, value))
}

/// `ExportTraceServiceRequest` → spans.
fn decode_otlp(body: &[u8]) -> Result<Vec<CollectedSpan>, String> {
    let mut out = Vec::new();
    for (n, rs) in fields(body)? {
        if n != 1 {
            continue;
        }
        let mut service = String::new();
        let mut spans = Vec::new();
        for (rn, rf) in fields(sub(&rs)?)? {
            match rn {
                // Resource { repeated KeyValue attributes = 1 }
                1 => {
                    for (an, af) in fields(sub(&rf)?)? {
                        if an == 1 {
                            let (k, v) = key_value(sub(&af)?)?;
                            if k == "service.name" {
                                service = v;
                            }
                        }
                    }
                }
                // ScopeSpans { scope = 1; repeated Span spans = 2 }
                2 => {
                    for (sn, sf) in fields(sub(&rf)?)? {
                        if sn == 2 {
                            spans.push(span(sub(&sf)?)?);
                        }
                    }
                }
                _ => {}
            }
        }
        for mut s in spans {
            s.service.clone_from(&service);
            out.push(s);
        }
    }
    Ok(out)
}

/// `Span { trace_id = 1; span_id = 2; parent_span_id = 4; name = 5; attributes = 9 }`.
fn span(buf: &[u8]) -> Result<CollectedSpan, String> {
    let mut s = CollectedSpan {
        protocol: "otlp",
        ..CollectedSpan::default()
    };
    for (n, f) in fields(buf)? {
        match n {
            1 => s.trace_id = hex(sub(&f)?),
            2 => s.span_id = hex(sub(&f)?),
            4 => s.parent_span_id = hex(sub(&f)?),
            5 => s.name = String::from_utf8_lossy(sub(&f)?).into_owned(),
            9 => {
                let (k, v) = key_value(sub(&f)?)?;
                s.attributes.insert(k, v);
            }
            _ => {}
        }
    }
    Ok(s)
}

/// A Zipkin v2 JSON array → spans.
fn decode_zipkin(body: &[u8]) -> Result<Vec<CollectedSpan>, String> {
    let spans: Vec<serde_json::Value> = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    spans
        .iter()
        .map(|v| {
            let text = |k: &str| v[k].as_str().unwrap_or_default().to_owned();
            let tags = v["tags"].as_object().ok_or("a span without tags")?;
            Ok(CollectedSpan {
                trace_id: text("traceId"),
                span_id: text("id"),
                parent_span_id: text("parentId"),
                name: text("name"),
                attributes: tags
                    .iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                    .collect(),
                service: v["localEndpoint"]["serviceName"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                protocol: "zipkin",
            })
        })
        .collect()
}
