//! `HTTPEndpoint` resources: services outside the mesh this app may invoke. Read and checked
//! here (name, base URL, headers, client TLS, scopes); their `secretKeyRef`s and `envRef`s are
//! read when the sidecar opens its components, from the store `auth.secretStore` names.

use outrider_blocks::MetadataItem;
use outrider_blocks::component::{Auth, ObjectMeta};
use serde::Deserialize;
use serde_json::Value;

use super::Problem;
use crate::mesh::outbound::external::url::BaseUrl;

/// An `HTTPEndpoint` that applies to this app, its references not read yet.
#[derive(Clone, Debug)]
pub(crate) struct HttpEndpointDoc {
    /// The file (and document) it was read from.
    pub(crate) at: String,
    pub(crate) name: String,
    pub(crate) base_url: String,
    /// `spec.headers`: each a name with a value, a `secretKeyRef` or an `envRef`.
    pub(crate) headers: Vec<MetadataItem>,
    /// `spec.clientTLS`'s documents, named `rootCA`, `certificate` and `privateKey`.
    pub(crate) tls: Vec<MetadataItem>,
    /// `auth.secretStore`.
    pub(crate) secret_store: Option<String>,
}

#[derive(Deserialize)]
struct Doc {
    #[serde(default)]
    metadata: ObjectMeta,
    #[serde(default)]
    spec: Spec,
    #[serde(default)]
    auth: Option<Auth>,
    #[serde(default)]
    scopes: Option<Vec<String>>,
}

#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Spec {
    #[serde(default)]
    base_url: Option<String>,
    #[serde(default)]
    headers: Option<Vec<MetadataItem>>,
    #[serde(default, rename = "clientTLS")]
    client_tls: Option<ClientTls>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ClientTls {
    #[serde(default, rename = "rootCA")]
    root_ca: Option<TlsDocument>,
    #[serde(default)]
    certificate: Option<TlsDocument>,
    #[serde(default)]
    private_key: Option<TlsDocument>,
    #[serde(default)]
    renegotiation: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TlsDocument {
    #[serde(default)]
    value: Option<Value>,
    #[serde(default)]
    secret_key_ref: Option<Value>,
}

/// Headers an endpoint may not set: they frame the message or belong to one connection, and
/// the client sets them itself.
const RESERVED: &[&str] = &[
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "upgrade",
];

/// Reads one `HTTPEndpoint` document; appends it to `out` if it applies to `app_id`.
pub(super) fn load(
    doc: Value,
    at: &str,
    app_id: &str,
    out: &mut Vec<HttpEndpointDoc>,
    (problems, warnings): (&mut Vec<Problem>, &mut Vec<Problem>),
) {
    let problem = |field: &str, message: String| Problem {
        at: format!("{at}: {field}"),
        message,
    };
    let d: Doc = match serde_json::from_value(doc) {
        Ok(d) => d,
        Err(e) => {
            problems.push(Problem {
                at: at.to_owned(),
                message: format!("not a valid HTTPEndpoint: {e}"),
            });
            return;
        }
    };
    let scopes = d.scopes.unwrap_or_default();
    if !scopes.is_empty() && !scopes.iter().any(|s| s == app_id) {
        return;
    }
    let before = problems.len();
    let name = d.metadata.name;
    if name.is_empty() {
        problems.push(problem(
            "metadata.name",
            "an HTTPEndpoint needs a name".into(),
        ));
    }
    let base_url = d.spec.base_url.unwrap_or_default();
    let base = match BaseUrl::parse(&base_url) {
        Ok(b) => Some(b),
        Err(e) if base_url.is_empty() => {
            problems.push(problem("spec.baseUrl", format!("is required ({e})")));
            None
        }
        Err(e) => {
            problems.push(problem("spec.baseUrl", e));
            None
        }
    };
    let headers = d.spec.headers.unwrap_or_default();
    check_headers(&headers, at, problems, warnings);
    let mut tls = Vec::new();
    match d.spec.client_tls {
        Some(_) if base.as_ref().is_some_and(|b| !b.https) => warnings.push(problem(
            "spec.clientTLS",
            "the base URL is http://: no TLS is used, so this is not read".into(),
        )),
        Some(t) => tls = client_tls(t, at, problems, warnings),
        None => {}
    }
    if problems.len() == before {
        out.push(HttpEndpointDoc {
            at: at.to_owned(),
            name,
            base_url,
            headers,
            tls,
            secret_store: d.auth.map(|a| a.secret_store).filter(|s| !s.is_empty()),
        });
    }
}

fn check_headers(
    headers: &[MetadataItem],
    at: &str,
    problems: &mut Vec<Problem>,
    warnings: &mut Vec<Problem>,
) {
    let mut seen = std::collections::BTreeSet::new();
    for (i, h) in headers.iter().enumerate() {
        let at = format!("{at}: spec.headers[{i}]");
        let lower = h.name.to_ascii_lowercase();
        let named = |message: String| Problem {
            at: at.clone(),
            message,
        };
        if http::HeaderName::from_bytes(h.name.as_bytes()).is_err() {
            problems.push(named(format!("{:?} is not a header name", h.name)));
        } else if RESERVED.contains(&lower.as_str()) {
            problems.push(named(format!(
                "{:?} cannot be set: the client sets it for each connection",
                h.name
            )));
        } else if !seen.insert(lower) {
            warnings.push(named(format!(
                "{:?} is set twice; the last one is sent",
                h.name
            )));
        }
        let sources = [
            h.value.is_some(),
            h.secret_key_ref.is_some(),
            h.env_ref.is_some(),
        ];
        match sources.iter().filter(|s| **s).count() {
            1 => {}
            0 => problems.push(named("needs a value, a secretKeyRef or an envRef".into())),
            _ => problems.push(named(
                "has more than one of value, secretKeyRef and envRef".into(),
            )),
        }
        if h.value
            .as_ref()
            .is_some_and(|v| v.is_object() || v.is_array())
        {
            problems.push(named("the value must be a string".into()));
        }
    }
}

/// `spec.clientTLS`'s documents, each as an item named for its field.
fn client_tls(
    t: ClientTls,
    at: &str,
    problems: &mut Vec<Problem>,
    warnings: &mut Vec<Problem>,
) -> Vec<MetadataItem> {
    let field = |f: &str| format!("{at}: spec.clientTLS.{f}");
    match t.renegotiation.as_deref() {
        None | Some("Never") => {}
        Some(v @ ("OnceAsClient" | "FreelyAsClient")) => warnings.push(Problem {
            at: field("renegotiation"),
            message: format!(
                "{v:?}: TLS renegotiation is never done (TLS 1.3 has none); a server that asks \
                 for it fails the call"
            ),
        }),
        Some(other) => problems.push(Problem {
            at: field("renegotiation"),
            message: format!("{other:?} is not one of Never, OnceAsClient, FreelyAsClient"),
        }),
    }
    if t.certificate.is_some() != t.private_key.is_some() {
        problems.push(Problem {
            at: field("certificate"),
            message: "a client certificate and its privateKey go together: give both or neither"
                .into(),
        });
    }
    let mut items = Vec::new();
    for (name, doc) in [
        ("rootCA", t.root_ca),
        ("certificate", t.certificate),
        ("privateKey", t.private_key),
    ] {
        let Some(doc) = doc else { continue };
        match (&doc.value, &doc.secret_key_ref) {
            (Some(Value::String(_)), None) | (None, Some(_)) => items.push(MetadataItem {
                name: name.into(),
                value: doc.value,
                secret_key_ref: doc.secret_key_ref,
                env_ref: None,
            }),
            (Some(_), None) => problems.push(Problem {
                at: field(name),
                message: "the value must be a PEM string".into(),
            }),
            _ => problems.push(Problem {
                at: field(name),
                message: "needs exactly one of value and secretKeyRef".into(),
            }),
        }
    }
    items
}

#[cfg(test)]
mod tests;
