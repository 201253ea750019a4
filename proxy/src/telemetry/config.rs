//! `spec.tracing` of the Configuration (with the `OTEL_EXPORTER_OTLP_*` environment filling in):
//! where finished spans go and what share of traces is sampled.

use serde_json::Value;

use crate::cli::OtelEnv;

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
pub(super) fn without_userinfo(url: &str) -> String {
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
        let text = |p: &str| text(v, p);
        // As in daprd, the environment names the collector when the file does not, and then an
        // unset rate samples everything.
        let from_env = text("/otel/endpointAddress").is_none_or(|s| s.trim().is_empty())
            && text("/zipkin/endpointAddress").is_none_or(|s| s.trim().is_empty())
            && env.endpoint.is_some();
        let rate = sampling_rate(text("/samplingRate"), from_env, &mut problems);
        let otel = text("/otel/endpointAddress")
            .filter(|s| !s.trim().is_empty())
            .or_else(|| env.endpoint.clone().filter(|_| from_env));
        let zipkin = text("/zipkin/endpointAddress").filter(|s| !s.trim().is_empty());
        let export = match (otel, zipkin) {
            (Some(endpoint), _) => Some(otlp(v, env, &endpoint, &mut problems)),
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

/// A field as text (numbers and booleans as written).
fn text(v: &Value, pointer: &str) -> Option<String> {
    v.pointer(pointer)
        .map(|x| x.as_str().map_or_else(|| x.to_string(), str::to_owned))
}

/// `samplingRate`, as daprd reads it: unset samples almost nothing (everything when the
/// environment names the collector); "0" turns export off.
fn sampling_rate(
    written: Option<String>,
    from_env: bool,
    problems: &mut Vec<(String, String)>,
) -> f64 {
    match written.as_deref().map(str::trim) {
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
    }
}

/// The OTLP export to `endpoint`: protocol, TLS and headers from `spec.tracing.otel`, else from
/// the environment.
fn otlp(v: &Value, env: &OtelEnv, endpoint: &str, problems: &mut Vec<(String, String)>) -> Export {
    let protocol = text(v, "/otel/protocol")
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
    Export::Otlp {
        url: otlp_url(endpoint, secure),
        headers,
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
pub(super) fn otlp_url(endpoint: &str, secure: bool) -> String {
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
