//! The outbound mesh path: from a target app id to a response from one of its sidecars.
//!
//! Three stages, in request order:
//! - *logical* — the target (app id and namespace): its live endpoint set from the resolver and
//!   a TLS client that accepts only the target's SPIFFE id;
//! - *concrete* — the endpoint set: round-robin over the current addresses;
//! - *endpoint* — one address: a pooled HTTP/2 connection over mutual TLS 1.3.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{Request, Response, Uri, header};
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use outrider_certs::{Credentials, SpiffeId};
use outrider_discovery::{EndpointSet, Resolve, Target};
use tokio::sync::watch;

use crate::errors::InvokeError;
use crate::http::{Body, strip_hop_by_hop, strip_identity};

/// How long a request waits for a target with no known endpoint to appear.
const RESOLVE_WAIT: Duration = Duration::from_millis(500);

/// Sends requests to other sidecars.
pub(crate) struct Outbound {
    resolver: Arc<dyn Resolve>,
    creds: Credentials,
    logical: Mutex<HashMap<Target, Arc<Logical>>>,
}

/// A target's endpoints, balancer position and identity-checking client.
struct Logical {
    target: Target,
    endpoints: watch::Receiver<Arc<EndpointSet>>,
    next: AtomicUsize,
    client: Client<HttpsConnector<HttpConnector>, Body>,
}

impl Outbound {
    pub(crate) fn new(resolver: Arc<dyn Resolve>, creds: Credentials) -> Self {
        Self { resolver, creds, logical: Mutex::new(HashMap::new()) }
    }

    /// The resolver's name, for the metadata API.
    pub(crate) fn resolver_name(&self) -> &'static str {
        self.resolver.name()
    }

    fn logical(&self, target: &Target) -> Result<Arc<Logical>, InvokeError> {
        let mut map = self.logical.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(l) = map.get(target) {
            return Ok(l.clone());
        }
        let expected = SpiffeId::new(self.creds.id().trust_domain(), &target.namespace, &target.app_id)
            .map_err(|_| InvokeError::InvalidAppId(target.to_string()))?;
        let mut tls = self
            .creds
            .client_config(expected)
            .map_err(|e| InvokeError::Upstream { target: target.clone(), source: Box::new(e) })?;
        // The connector negotiates h2 itself and refuses a config with ALPN already set.
        tls.alpn_protocols.clear();
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(Duration::from_secs(5)));
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_only()
            .enable_http2()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .http2_only(true)
            .timer(TokioTimer::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .http2_keep_alive_interval(Duration::from_secs(30))
            .build(https);
        let l = Arc::new(Logical {
            target: target.clone(),
            endpoints: self.resolver.resolve(target),
            next: AtomicUsize::new(0),
            client,
        });
        map.insert(target.clone(), l.clone());
        Ok(l)
    }

    /// Sends `req` (URI: the canonical method path and query) to an instance of `target`.
    pub(crate) async fn call(
        &self,
        target: &Target,
        mut req: Request<Body>,
    ) -> Result<Response<Incoming>, InvokeError> {
        let logical = self.logical(target)?;
        let addr = match logical.pick().await {
            Ok(addr) => addr,
            Err(e) => {
                // Unknown targets are not kept: callers could otherwise grow the cache without bound.
                let mut map = self.logical.lock().unwrap_or_else(|p| p.into_inner());
                if map.get(target).is_some_and(|l| Arc::ptr_eq(l, &logical)) {
                    map.remove(target);
                }
                return Err(e);
            }
        };
        let pq = req.uri().path_and_query().map_or("/", |pq| pq.as_str());
        let uri: Uri = format!("https://{addr}{pq}")
            .parse()
            .map_err(|e| InvokeError::Upstream { target: target.clone(), source: Box::new(e) })?;
        *req.uri_mut() = uri;
        *req.version_mut() = http::Version::HTTP_2;
        let h = req.headers_mut();
        strip_hop_by_hop(h);
        strip_identity(h);
        h.remove(header::HOST);
        match logical.client.request(req).await {
            Ok(mut rsp) => {
                strip_hop_by_hop(rsp.headers_mut());
                Ok(rsp)
            }
            Err(e) if e.is_connect() => Err(InvokeError::Connect { target: target.clone(), addr, source: Box::new(e) }),
            Err(e) => Err(InvokeError::Upstream { target: target.clone(), source: Box::new(e) }),
        }
    }
}

impl Logical {
    /// The concrete stage: the next address in round-robin order, waiting briefly for one to
    /// appear if none is known yet.
    async fn pick(&self) -> Result<std::net::SocketAddr, InvokeError> {
        let mut rx = self.endpoints.clone();
        // One read of the set: it may change between two borrows.
        let current = rx.borrow().clone();
        let set = if current.is_empty() {
            match tokio::time::timeout(RESOLVE_WAIT, rx.wait_for(|s| !s.is_empty())).await {
                Ok(Ok(set)) => set.clone(),
                _ => return Err(InvokeError::NoEndpoints(self.target.clone())),
            }
        } else {
            current
        };
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        Ok(set.addrs[n % set.addrs.len()])
    }
}
