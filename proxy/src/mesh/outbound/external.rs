//! Services outside the mesh, declared as `HTTPEndpoint` resources. An invocation that names one
//! (`/v1.0/invoke/<name>/method/…`) goes to its base URL with its headers and client TLS; one
//! that names a URL goes there only if the URL lies under a declared base URL, without the
//! headers (as daprd sends none to a URL). Nothing else outside the mesh can be reached through
//! invocation (security rule 7). Calls go through the endpoint's resiliency policies (a
//! `targets.apps` entry keyed by its name, else by its base URL as written); there are no
//! built-in retries, as daprd has none for HTTP endpoints. A redirect is the endpoint's answer,
//! passed back to the caller, never followed.

pub(crate) mod binding;
mod client;
pub(crate) mod url;

use std::collections::BTreeMap;
use std::sync::Arc;

use http::{HeaderMap, HeaderName, HeaderValue, Response, Uri, header};
use outrider_filters::resiliency::{
    HttpClassify, Labels, Resiliency, Stack, Stacked, app_policies,
};
use tower::ServiceExt as _;

use super::OutboundRequest;
use crate::errors::InvokeError;
use crate::net::http::{Body, strip_hop_by_hop, strip_identity};
pub(crate) use client::ClientTls;
use url::BaseUrl;

/// An endpoint ready to open: its secrets read.
pub(crate) struct Declared {
    /// The file it was read from, for error messages.
    pub(crate) at: String,
    pub(crate) name: String,
    /// The base URL as written (a resiliency target may name it so).
    pub(crate) base_url: String,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) tls: ClientTls,
}

/// The declared endpoints, by name.
#[derive(Debug, Default)]
pub(crate) struct Externals {
    by_name: BTreeMap<String, Arc<Endpoint>>,
}

/// One declared endpoint, open.
pub(crate) struct Endpoint {
    pub(crate) name: String,
    base: BaseUrl,
    headers: HeaderMap,
    stack: Stacked<OutboundRequest, Response<Body>, InvokeError>,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Header values may be secrets: never printed.
        write!(f, "Endpoint({} at {})", self.name, self.base)
    }
}

impl PartialEq for Endpoint {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

impl Eq for Endpoint {}

/// How an invocation named an endpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Found {
    pub(crate) endpoint: Arc<Endpoint>,
    /// The path the method path is appended to: the base URL's, or the named URL's.
    pub(crate) prefix: String,
    /// Named by a URL: the endpoint's headers are not sent.
    pub(crate) by_url: bool,
}

impl Externals {
    /// Opens every declared endpoint; the problems name file, field and value.
    pub(crate) fn open(
        declared: Vec<Declared>,
        app_id: &str,
        resiliency: &[Resiliency],
        ca_file: Option<&std::path::Path>,
    ) -> Result<Self, Vec<String>> {
        let mut by_name = BTreeMap::new();
        let mut problems = Vec::new();
        for d in declared {
            match Endpoint::open(&d, app_id, resiliency, ca_file) {
                Ok(e) => {
                    by_name.insert(d.name.clone(), Arc::new(e));
                }
                Err(e) => problems.push(format!("{}: {e}", d.at)),
            }
        }
        if problems.is_empty() {
            Ok(Self { by_name })
        } else {
            Err(problems)
        }
    }

    /// The endpoint an invocation's target names: a declared name, or a URL under a declared
    /// base URL (the longest one, if several hold it). `Err`: a URL no endpoint covers.
    pub(crate) fn find(&self, id: &str) -> Result<Option<Found>, InvokeError> {
        if let Some(e) = self.by_name.get(id) {
            return Ok(Some(Found {
                endpoint: e.clone(),
                prefix: e.base.path.clone(),
                by_url: false,
            }));
        }
        if !url::is_url(id) {
            return Ok(None);
        }
        let refused = || InvokeError::ExternalUrl(id.to_owned());
        let named = BaseUrl::parse_named(id).map_err(|_| refused())?;
        self.by_name
            .values()
            .filter(|e| e.base.covers(&named))
            .max_by_key(|e| e.base.path.len())
            .map(|e| {
                Some(Found {
                    endpoint: e.clone(),
                    prefix: named.path.clone(),
                    by_url: true,
                })
            })
            .ok_or_else(refused)
    }

    /// The names, for the metadata API.
    pub(crate) fn names(&self) -> impl Iterator<Item = &str> {
        self.by_name.keys().map(String::as_str)
    }
}

impl Endpoint {
    fn open(
        d: &Declared,
        app_id: &str,
        resiliency: &[Resiliency],
        ca_file: Option<&std::path::Path>,
    ) -> Result<Self, String> {
        let base = BaseUrl::parse(&d.base_url).map_err(|e| format!("spec.baseUrl: {e}"))?;
        let mut headers = HeaderMap::new();
        for (i, (name, value)) in d.headers.iter().enumerate() {
            let field = format!("spec.headers[{i}] ({name})");
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| format!("{field}: not a header name"))?;
            // Never the value in the message: it may be a secret.
            let mut value = HeaderValue::from_str(value)
                .map_err(|_| format!("{field}: the value is not a valid header value"))?;
            // Often a credential: kept out of debug output and of HTTP/2 header tables.
            value.set_sensitive(true);
            headers.insert(name, value);
        }
        let client = client::Client::new(&d.name, &d.tls, ca_file)?;
        // Policies for the endpoint's name, else for its base URL as written.
        let (mut policies, _) = app_policies(resiliency, &d.name);
        if !policies.named_target {
            policies = app_policies(resiliency, &d.base_url).0;
        }
        let target = (base.scheme(), base.authority());
        let client = Arc::new(client);
        let attempt = tower::service_fn(move |req: OutboundRequest| {
            let (client, (scheme, authority)) = (client.clone(), target.clone());
            async move { client.send(req, scheme, &authority).await }
        });
        let stack = Stack::from_policies(Labels::app(app_id, &d.name), HttpClassify, policies)
            .around(attempt);
        Ok(Self {
            name: d.name.clone(),
            base,
            headers,
            stack,
        })
    }

    /// Sends `req` (URI: the path and query the endpoint gets) through the endpoint's
    /// resiliency policies.
    pub(crate) async fn call(&self, req: OutboundRequest) -> Result<Response<Body>, InvokeError> {
        self.stack
            .clone()
            .oneshot(req)
            .await
            .map_err(|e| InvokeError::from_stack(e, &self.name))
    }

    /// The caller's headers as the endpoint gets them: no hop-by-hop headers, no `Host` (the
    /// endpoint's own is set), none of the mesh's identity headers, and the endpoint's own
    /// headers unless it was `by_url`.
    pub(crate) fn prepare(&self, headers: &mut HeaderMap, by_url: bool) {
        strip_hop_by_hop(headers);
        strip_identity(headers);
        headers.remove(header::HOST);
        if !by_url {
            for (name, value) in &self.headers {
                headers.insert(name, value.clone());
            }
        }
    }
}

/// `scheme://authority` with the path and query of `uri`.
fn absolute(uri: &Uri, scheme: http::uri::Scheme, authority: &str) -> Result<Uri, http::Error> {
    Uri::builder()
        .scheme(scheme)
        .authority(authority)
        .path_and_query(uri.path_and_query().map_or("/", |pq| pq.as_str()))
        .build()
}

#[cfg(test)]
impl Externals {
    /// Endpoints with these names and base URLs, no headers, TLS or policies.
    pub(crate) fn for_tests(endpoints: &[(&str, &str)]) -> Self {
        let declared = endpoints
            .iter()
            .map(|(name, base)| Declared {
                at: "test".into(),
                name: (*name).into(),
                base_url: (*base).into(),
                headers: Vec::new(),
                tls: ClientTls::default(),
            })
            .collect();
        Self::open(declared, "a", &[], None).unwrap()
    }
}
