//! The outbound mesh path: from a target app id to a response from one of its sidecars.
//!
//! Three stages, in request order:
//! - *logical* — the target (app id and namespace): its resiliency policies composed as
//!   retry(breaker(timeout(attempt))), its live endpoint set from the resolver and a TLS client
//!   that accepts only the target's SPIFFE id. Every attempt, retries included, goes through the
//!   concrete stage again, so a retry can reach another instance;
//! - *concrete* — the endpoint set: the balancer ([`crate::mesh::outbound::balance`]: round-robin or p2c over
//!   peak-EWMA load, with outlier ejection) picks an address, avoiding the one the previous
//!   attempt went to;
//! - *endpoint* — one address: a pooled HTTP/2 connection over mutual TLS 1.3.

pub(crate) mod balance;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, Uri, Version, header};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use outrider_certs::{Credentials, SpiffeId};
use outrider_discovery::{Balancing, Resolve, Target};
use outrider_filters::resiliency::{
    CircuitBreakerLayer, HttpClassify, Labels, Replay, Resiliency, RetryLayer, TimeoutLayer,
    app_policies,
};
use tower::util::BoxCloneSyncService;
use tower::{BoxError, ServiceBuilder, ServiceExt as _};

use crate::errors::InvokeError;
use crate::mesh::outbound::balance::{Balancer, EndpointView};
use crate::net::http::{Body, full, strip_hop_by_hop, strip_identity};

/// Request bodies up to this size are kept so that a retry can send them again; larger or
/// unsized bodies stream through once.
pub(crate) const REPLAY_LIMIT: u64 = 64 * 1024;

/// Sends requests to other sidecars.
pub(crate) struct Outbound {
    app_id: String,
    resolver: Arc<dyn Resolve>,
    balancing: Balancing,
    creds: Credentials,
    resiliency: Arc<[Resiliency]>,
    logical: Mutex<HashMap<Target, Arc<Logical>>>,
}

/// A target's resiliency stack over its concrete stage.
struct Logical {
    stack: BoxCloneSyncService<OutboundRequest, Response<Incoming>, BoxError>,
    concrete: Arc<Concrete>,
}

/// A target's balancer over its endpoints, with an identity-checking client.
struct Concrete {
    target: Target,
    resolver: Arc<dyn Resolve>,
    balancer: Balancer,
}

/// What the metadata API and the admin page show of a target.
#[derive(Debug, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct TargetView {
    pub(crate) app_id: String,
    pub(crate) namespace: String,
    pub(crate) endpoints: Vec<EndpointView>,
}

/// An invocation on its way to another sidecar: its head, and its body either kept for replay
/// or streaming (then it can be sent once only).
pub(crate) struct OutboundRequest {
    head: Arc<Head>,
    body: Option<Body>,
    kept: Option<Bytes>,
}

struct Head {
    method: Method,
    uri: Uri,
    version: Version,
    headers: HeaderMap,
    /// The endpoint the latest attempt went to; the next attempt avoids it.
    last_endpoint: Mutex<Option<SocketAddr>>,
}

impl OutboundRequest {
    /// A request whose body is `kept` whole (replayable), or streams from `body`.
    pub(crate) fn new(req: Request<Body>, kept: Option<Bytes>) -> Self {
        let (parts, body) = req.into_parts();
        let head = Arc::new(Head {
            method: parts.method,
            uri: parts.uri,
            version: parts.version,
            headers: parts.headers,
            last_endpoint: Mutex::new(None),
        });
        match kept {
            Some(bytes) => Self {
                head,
                body: None,
                kept: Some(bytes),
            },
            None => Self {
                head,
                body: Some(body),
                kept: None,
            },
        }
    }

    /// Notes the endpoint this attempt goes to, and returns the previous attempt's.
    fn swap_endpoint(&self, addr: Option<SocketAddr>) -> Option<SocketAddr> {
        let mut last = self
            .head
            .last_endpoint
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        match addr {
            Some(a) => last.replace(a),
            None => *last,
        }
    }

    fn into_request(self) -> Request<Body> {
        let body = match (self.body, self.kept) {
            (Some(b), _) => b,
            (None, Some(bytes)) => full(bytes),
            (None, None) => full(Bytes::new()),
        };
        let mut req = Request::new(body);
        *req.method_mut() = self.head.method.clone();
        *req.uri_mut() = self.head.uri.clone();
        *req.version_mut() = self.head.version;
        *req.headers_mut() = self.head.headers.clone();
        req
    }
}

impl Replay for OutboundRequest {
    fn replay(&self) -> Option<Self> {
        let kept = self.kept.clone()?;
        Some(Self {
            head: self.head.clone(),
            body: None,
            kept: Some(kept),
        })
    }
}

/// Whether an error means the request never left this sidecar for an endpoint: the connection
/// failed. (No endpoint at all is not one of these: sending again at once would not help, and the
/// built-in retries must not keep a caller of a vanished app waiting.)
fn unsent(e: &(dyn std::error::Error + 'static)) -> bool {
    matches!(
        e.downcast_ref::<InvokeError>(),
        Some(InvokeError::Connect { .. })
    )
}

impl Outbound {
    pub(crate) fn new(
        app_id: &str,
        resolver: Arc<dyn Resolve>,
        balancing: Balancing,
        creds: Credentials,
        resiliency: Arc<[Resiliency]>,
    ) -> Self {
        Self {
            app_id: app_id.to_owned(),
            resolver,
            balancing,
            creds,
            resiliency,
            logical: Mutex::new(HashMap::new()),
        }
    }

    /// The resolver's name, for the metadata API.
    pub(crate) fn resolver_name(&self) -> &'static str {
        self.resolver.name()
    }

    /// The balancing strategy's name.
    pub(crate) fn balancing(&self) -> &'static str {
        self.balancing.as_str()
    }

    /// The targets called so far, with the endpoints the resolver gives and their state.
    pub(crate) fn targets(&self) -> Vec<TargetView> {
        let logical: Vec<Arc<Logical>> = self
            .logical
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .cloned()
            .collect();
        let mut views: Vec<TargetView> = logical
            .iter()
            .map(|l| TargetView {
                app_id: l.concrete.target.app_id.clone(),
                namespace: l.concrete.target.namespace.clone(),
                endpoints: l.concrete.balancer.view(),
            })
            .collect();
        views.sort_by(|a, b| (&a.namespace, &a.app_id).cmp(&(&b.namespace, &b.app_id)));
        views
    }

    /// The logical stage of `target`. A target is kept only once it has resolved, so that the
    /// cache, the breakers and the metric labels grow only with apps that exist.
    async fn logical(&self, target: &Target) -> Result<Arc<Logical>, InvokeError> {
        if let Some(l) = self
            .logical
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(target)
        {
            return Ok(l.clone());
        }
        let concrete = self.concrete(target)?;
        concrete.resolved().await?;
        let l = Arc::new(Logical {
            stack: self.stack(target, concrete.clone()),
            concrete,
        });
        let mut map = self.logical.lock().unwrap_or_else(|p| p.into_inner());
        Ok(map.entry(target.clone()).or_insert(l).clone())
    }

    /// A target's endpoints and its client, checking the target's SPIFFE id.
    fn concrete(&self, target: &Target) -> Result<Arc<Concrete>, InvokeError> {
        let expected = SpiffeId::new(
            self.creds.id().trust_domain(),
            &target.namespace,
            &target.app_id,
        )
        .map_err(|_| InvokeError::InvalidAppId(target.to_string()))?;
        let mut tls = self
            .creds
            .client_config(expected)
            .map_err(|e| InvokeError::Upstream {
                target: target.clone(),
                source: Box::new(e),
            })?;
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
        // HEADERS and DATA of a small request leave in one record (see `coalesce`).
        let connector = crate::net::coalesce::mesh_connector(https);
        let client = Client::builder(TokioExecutor::new())
            .http2_only(true)
            .timer(TokioTimer::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .http2_keep_alive_interval(Duration::from_secs(30))
            .build(connector);
        Ok(Arc::new(Concrete {
            target: target.clone(),
            resolver: self.resolver.clone(),
            balancer: Balancer::new(self.balancing, self.resolver.resolve(target), client),
        }))
    }

    /// The logical stage for `target`: its resiliency policies over the concrete stage.
    fn stack(
        &self,
        target: &Target,
        concrete: Arc<Concrete>,
    ) -> BoxCloneSyncService<OutboundRequest, Response<Incoming>, BoxError> {
        let (policies, retrying) = app_policies(&self.resiliency, &target.app_id);
        let labels = Labels {
            app_id: self.app_id.clone(),
            target: format!("app_{}", target.app_id),
            flow_direction: "outbound",
        };
        let classify = HttpClassify { unsent };
        let attempt = tower::service_fn(move |req: OutboundRequest| {
            let concrete = concrete.clone();
            async move { concrete.send(req).await.map_err(BoxError::from) }
        });
        let stack = ServiceBuilder::new()
            // Failed attempts the policy retries go back through the balancer.
            .option_layer(retrying.map(|r| RetryLayer::new(r, classify, labels.clone())))
            // One breaker per target app: open, it answers at once without sending.
            .option_layer(
                policies
                    .breaker
                    .map(|(name, p)| CircuitBreakerLayer::new(&name, p, classify, labels.clone())),
            )
            // A deadline per attempt.
            .option_layer(
                policies
                    .timeout
                    .map(|(name, d)| TimeoutLayer::new(&name, d, labels.clone())),
            )
            .service(attempt)
            .map_err(|e: BoxError| e);
        BoxCloneSyncService::new(stack)
    }

    /// Sends `req` (URI: the canonical method path and query) to an instance of `target`, with
    /// the target's resiliency policies.
    pub(crate) async fn call(
        &self,
        target: &Target,
        req: OutboundRequest,
    ) -> Result<Response<Incoming>, InvokeError> {
        let logical = self.logical(target).await?;
        match logical.stack.clone().oneshot(req).await {
            Ok(rsp) => Ok(rsp),
            Err(e) => {
                let e = InvokeError::from_resiliency(e, target);
                if matches!(e, InvokeError::NoEndpoints(..)) {
                    // Unknown targets are not kept: callers could otherwise grow the cache
                    // without bound.
                    let mut map = self.logical.lock().unwrap_or_else(|p| p.into_inner());
                    if map.get(target).is_some_and(|l| Arc::ptr_eq(l, &logical)) {
                        map.remove(target);
                    }
                }
                Err(e)
            }
        }
    }
}

impl Concrete {
    /// One attempt: an endpoint from the balancer (not the previous attempt's, if another
    /// exists), then the request over its pooled connection. A failed connection ejects the
    /// endpoint for a while.
    async fn send(&self, req: OutboundRequest) -> Result<Response<Incoming>, InvokeError> {
        let target = &self.target;
        let avoid = req.swap_endpoint(None);
        let attempt = match self.balancer.pick(avoid) {
            Some(a) => a,
            None => {
                self.resolved().await?;
                self.balancer
                    .pick(avoid)
                    .ok_or_else(|| self.no_endpoints())?
            }
        };
        let addr = attempt.addr();
        req.swap_endpoint(Some(addr));
        let mut req = req.into_request();
        let pq = req.uri().path_and_query().map_or("/", |pq| pq.as_str());
        let uri: Uri =
            format!("https://{addr}{pq}")
                .parse()
                .map_err(|e| InvokeError::Upstream {
                    target: target.clone(),
                    source: Box::new(e),
                })?;
        *req.uri_mut() = uri;
        *req.version_mut() = http::Version::HTTP_2;
        let h = req.headers_mut();
        strip_hop_by_hop(h);
        strip_identity(h);
        h.remove(header::HOST);
        match attempt.endpoint.call(req).await {
            Ok(mut rsp) => {
                attempt.connected();
                strip_hop_by_hop(rsp.headers_mut());
                Ok(rsp)
            }
            Err(e) if e.is_connect() => {
                attempt.unreachable();
                Err(InvokeError::Connect {
                    target: target.clone(),
                    addr,
                    source: Box::new(e),
                })
            }
            Err(e) => {
                // The connection was made; what failed after it is not the endpoint's reachability.
                attempt.connected();
                Err(InvokeError::Upstream {
                    target: target.clone(),
                    source: Box::new(e),
                })
            }
        }
    }

    /// Waits (up to the resolver's patience) for the target's first endpoint.
    async fn resolved(&self) -> Result<(), InvokeError> {
        let mut rx = self.balancer.endpoints();
        match tokio::time::timeout(self.resolver.patience(), rx.wait_for(|s| !s.is_empty())).await {
            Ok(Ok(_)) => Ok(()),
            _ => Err(self.no_endpoints()),
        }
    }

    fn no_endpoints(&self) -> InvokeError {
        InvokeError::NoEndpoints(
            self.target.clone(),
            self.resolver.why_unresolved(&self.target),
        )
    }
}
