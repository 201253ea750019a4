//! The concrete stage: a target's endpoint set, from which the balancer picks the address of
//! each attempt (avoiding the one the previous attempt went to).

use std::sync::Arc;

use std::net::SocketAddr;

use http::{Method, Request, Response, StatusCode, Uri, header};
use outrider_certs::Credentials;
use outrider_discovery::{Balancing, Resolve, Target};

use super::OutboundRequest;
use super::balance::{Balancer, MeshClient};
use super::endpoint::Connect;
use crate::errors::InvokeError;
use crate::net::http::{Body, strip_hop_by_hop, strip_identity};

/// A target's balancer over its endpoints, with an identity-checking client.
pub(super) struct Concrete {
    pub(super) target: Target,
    resolver: Arc<dyn Resolve>,
    pub(super) balancer: Balancer,
    /// The balancer's client, for tunnels to one chosen endpoint and the transport per endpoint.
    pub(super) client: MeshClient,
}

impl Concrete {
    /// The endpoints of `target` as the resolver publishes them, and the client that reaches
    /// them.
    pub(super) fn new(
        target: &Target,
        resolver: Arc<dyn Resolve>,
        balancing: Balancing,
        creds: &Credentials,
        connect: &Connect,
    ) -> Result<Self, InvokeError> {
        let client = super::endpoint::client(creds, target, connect, resolver.resolve(target))?;
        Ok(Self {
            target: target.clone(),
            balancer: Balancer::new(balancing, resolver.resolve(target), client.clone()),
            resolver,
            client,
        })
    }

    /// One attempt: an endpoint from the balancer (not the previous attempt's, if another
    /// exists), then the request over its pooled connection. A failed connection ejects the
    /// endpoint for a while.
    pub(super) async fn send(&self, req: OutboundRequest) -> Result<Response<Body>, InvokeError> {
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
        // The transport sets its own version; hyper's HTTP/2 client wants this one.
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

    /// Sends `req` to the endpoint at `addr` (chosen by the caller, not the balancer: an actor's
    /// host), over the target's identity-checked client. `extra` headers are set after the
    /// caller's identity headers are stripped.
    pub(super) async fn send_to(
        &self,
        addr: SocketAddr,
        req: Request<Body>,
        extra: http::HeaderMap,
    ) -> Result<Response<Body>, InvokeError> {
        let target = &self.target;
        let req = addressed(req, addr, extra).map_err(|e| InvokeError::Upstream {
            target: target.clone(),
            source: Box::new(e),
        })?;
        // Always ready: the client's connections are pooled per endpoint.
        let sent = tower::Service::call(&mut self.client.clone(), req);
        match sent.await {
            Ok(mut rsp) => {
                strip_hop_by_hop(rsp.headers_mut());
                Ok(rsp)
            }
            Err(e) if e.is_connect() => Err(InvokeError::Connect {
                target: target.clone(),
                addr,
                source: Box::new(e),
            }),
            Err(e) => Err(InvokeError::Upstream {
                target: target.clone(),
                source: Box::new(e),
            }),
        }
    }

    /// Opens a byte stream to `port` of the app behind the sidecar at `addr` (an endpoint of the
    /// target): an HTTP/2 `CONNECT` on the pooled mesh connection to it, so the stream has the
    /// connection's mutual TLS and the target's identity check. `Ok(Err(status))`: the far
    /// sidecar refused it (its access policy, or not a port of its app).
    pub(super) async fn tunnel(
        &self,
        addr: SocketAddr,
        port: u16,
    ) -> Result<Result<hyper::upgrade::Upgraded, StatusCode>, InvokeError> {
        let target = &self.target;
        let upstream = |e: Box<dyn std::error::Error + Send + Sync>| InvokeError::Upstream {
            target: target.clone(),
            source: e,
        };
        let req = Request::builder()
            .method(Method::CONNECT)
            .uri(format!("https://{addr}"))
            .version(http::Version::HTTP_2)
            .header(crate::mesh::TUNNEL_PORT, port)
            .body(crate::net::http::empty())
            .map_err(|e| upstream(Box::new(e)))?;
        let rsp = match self.client.h2().request(req).await {
            Ok(rsp) => rsp,
            Err(e) if e.is_connect() => {
                return Err(InvokeError::Connect {
                    target: target.clone(),
                    addr,
                    source: Box::new(e),
                });
            }
            Err(e) => return Err(upstream(Box::new(e))),
        };
        if !rsp.status().is_success() {
            return Ok(Err(rsp.status()));
        }
        hyper::upgrade::on(rsp)
            .await
            .map(Ok)
            .map_err(|e| upstream(Box::new(e)))
    }

    /// Waits (up to the resolver's patience) for the target's first endpoint.
    pub(super) async fn resolved(&self) -> Result<(), InvokeError> {
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

/// `req` addressed to the sidecar at `addr` over HTTP/2, without the caller's identity or
/// hop-by-hop headers, with `extra` set.
fn addressed(
    req: Request<Body>,
    addr: SocketAddr,
    extra: http::HeaderMap,
) -> Result<Request<Body>, http::uri::InvalidUri> {
    let (mut parts, body) = req.into_parts();
    let pq = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
    parts.uri = format!("https://{addr}{pq}").parse()?;
    parts.version = http::Version::HTTP_2;
    let h = &mut parts.headers;
    strip_hop_by_hop(h);
    strip_identity(h);
    h.remove(header::HOST);
    h.extend(extra);
    Ok(Request::from_parts(parts, body))
}
