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
//! - *endpoint* — one address: a pooled HTTP/2 connection over mutual TLS 1.3 (TCP), or an
//!   HTTP/3 connection over QUIC where the endpoint offers it ([`transport`] chooses).

pub(crate) mod balance;
mod concrete;
pub(crate) mod endpoint;
pub(crate) mod external;
pub(crate) mod h3;
mod logical;
pub(crate) mod plan;
pub(crate) mod transport;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, Uri, Version};
use outrider_certs::Credentials;
use outrider_discovery::{Balancing, Resolve, Target};
use outrider_filters::resiliency::{Replay, Resiliency};
use tower::ServiceExt as _;

use crate::errors::InvokeError;
use crate::net::http::{Body, full};
use balance::EndpointView;
use concrete::Concrete;
use endpoint::Connect;
use logical::Logical;

/// Sends requests to other sidecars.
pub(crate) struct Outbound {
    app_id: String,
    resolver: Arc<dyn Resolve>,
    balancing: Balancing,
    creds: Credentials,
    resiliency: Arc<[Resiliency]>,
    connect: Connect,
    logical: Mutex<HashMap<Target, Arc<Logical>>>,
}

/// What the metadata API and the admin page show of a target.
#[derive(Debug, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct TargetView {
    pub(crate) app_id: String,
    pub(crate) namespace: String,
    pub(crate) endpoints: Vec<MeshEndpointView>,
}

/// One endpoint of a target as shown: its address and balancer state, and the transport
/// requests to it use now (`h2` or `h3`).
#[derive(Debug, serde::Serialize)]
pub(crate) struct MeshEndpointView {
    #[serde(flatten)]
    pub(crate) balancer: EndpointView,
    pub(crate) transport: &'static str,
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

impl Outbound {
    pub(crate) fn new(
        app_id: &str,
        resolver: Arc<dyn Resolve>,
        balancing: Balancing,
        creds: Credentials,
        resiliency: Arc<[Resiliency]>,
        connect: Connect,
    ) -> Self {
        Self {
            app_id: app_id.to_owned(),
            resolver,
            balancing,
            creds,
            resiliency,
            connect,
            logical: Mutex::new(HashMap::new()),
        }
    }

    /// This sidecar's credentials.
    pub(crate) fn creds(&self) -> &Credentials {
        &self.creds
    }

    /// The resolver's name, for the metadata API.
    pub(crate) fn resolver_name(&self) -> &'static str {
        self.resolver.name()
    }

    /// Every sidecar the resolver knows of now.
    pub(crate) fn peers(&self) -> Vec<outrider_discovery::Peer> {
        self.resolver.peers()
    }

    /// The balancing strategy's name.
    pub(crate) fn balancing(&self) -> &'static str {
        self.balancing.as_str()
    }

    /// `--mesh-transport`.
    pub(crate) fn transport(&self) -> &'static str {
        self.connect.mode.as_str()
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
                endpoints: l
                    .concrete
                    .balancer
                    .view()
                    .into_iter()
                    .map(|balancer| MeshEndpointView {
                        transport: balancer
                            .address
                            .parse()
                            .map_or("h2", |a| l.concrete.client.transport_of(a).as_str()),
                        balancer,
                    })
                    .collect(),
            })
            .collect();
        views.sort_by(|a, b| (&a.namespace, &a.app_id).cmp(&(&b.namespace, &b.app_id)));
        views
    }

    /// Whether discovery knows an instance of `target` now.
    pub(crate) fn knows(&self, target: &Target) -> bool {
        !self.resolver.resolve(target).borrow().is_empty()
    }

    /// Whether discovery knows an instance of `target`, waiting for it up to the resolver's
    /// patience.
    pub(crate) async fn finds(&self, target: &Target) -> bool {
        let mut rx = self.resolver.resolve(target);
        let patience = self.resolver.patience();
        matches!(
            tokio::time::timeout(patience, rx.wait_for(|s| !s.is_empty())).await,
            Ok(Ok(_))
        )
    }

    /// The apps discovery knows at `ip`, each with its sidecar's mesh address.
    pub(crate) fn at_address(&self, ip: IpAddr) -> Vec<(Target, SocketAddr)> {
        self.resolver.at_address(ip)
    }

    /// Opens a byte stream to `port` of `target`'s app, through its sidecar at `addr`. No retry:
    /// a stream cannot be replayed. `Ok(Err(status))` is the far sidecar's refusal.
    pub(crate) async fn tunnel(
        &self,
        target: &Target,
        addr: SocketAddr,
        port: u16,
    ) -> Result<Result<hyper::upgrade::Upgraded, http::StatusCode>, InvokeError> {
        /// A peer that takes longer to answer a tunnel is not going to.
        const OPEN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
        let logical = self.logical(target).await?;
        match tokio::time::timeout(OPEN_TIMEOUT, logical.concrete.tunnel(addr, port)).await {
            Ok(opened) => opened,
            Err(_) => Err(InvokeError::Upstream {
                target: target.clone(),
                source: format!("the tunnel did not open within {OPEN_TIMEOUT:?}").into(),
            }),
        }
    }

    /// Sends `req` to `target`'s sidecar at `addr` (an actor's host): the target's mutual TLS and
    /// identity check, no balancer and no retry (the actor layer decides what is tried again).
    pub(crate) async fn call_at(
        &self,
        target: &Target,
        addr: SocketAddr,
        req: Request<Body>,
        extra: HeaderMap,
    ) -> Result<Response<Body>, InvokeError> {
        let logical = self.logical(target).await?;
        logical.concrete.send_to(addr, req, extra).await
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
        let concrete = Concrete::new(
            target,
            self.resolver.clone(),
            self.balancing,
            &self.creds,
            &self.connect,
        )?;
        concrete.resolved().await?;
        let l = Arc::new(Logical::new(
            &self.app_id,
            &self.resiliency,
            target,
            Arc::new(concrete),
        ));
        let mut map = self.logical.lock().unwrap_or_else(|p| p.into_inner());
        Ok(map.entry(target.clone()).or_insert(l).clone())
    }

    /// Sends `req` (URI: the canonical method path and query) to an instance of `target`, with
    /// the target's resiliency policies.
    pub(crate) async fn call(
        &self,
        target: &Target,
        req: OutboundRequest,
    ) -> Result<Response<Body>, InvokeError> {
        let logical = self.logical(target).await?;
        match logical.stack.clone().oneshot(req).await {
            Ok(rsp) => Ok(rsp),
            Err(e) => {
                let e = InvokeError::from_stack(e, target);
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
