//! The concrete stage: a target's endpoint set, from which the balancer picks the address of
//! each attempt (avoiding the one the previous attempt went to).

use std::sync::Arc;

use http::{Response, Uri, header};
use hyper::body::Incoming;
use outrider_certs::Credentials;
use outrider_discovery::{Balancing, Resolve, Target};

use super::OutboundRequest;
use super::balance::Balancer;
use crate::errors::InvokeError;
use crate::net::http::{strip_hop_by_hop, strip_identity};

/// A target's balancer over its endpoints, with an identity-checking client.
pub(super) struct Concrete {
    pub(super) target: Target,
    resolver: Arc<dyn Resolve>,
    pub(super) balancer: Balancer,
}

impl Concrete {
    /// The endpoints of `target` as the resolver publishes them, and the client that reaches
    /// them.
    pub(super) fn new(
        target: &Target,
        resolver: Arc<dyn Resolve>,
        balancing: Balancing,
        creds: &Credentials,
    ) -> Result<Self, InvokeError> {
        let client = super::endpoint::client(creds, target)?;
        Ok(Self {
            target: target.clone(),
            balancer: Balancer::new(balancing, resolver.resolve(target), client),
            resolver,
        })
    }

    /// One attempt: an endpoint from the balancer (not the previous attempt's, if another
    /// exists), then the request over its pooled connection. A failed connection ejects the
    /// endpoint for a while.
    pub(super) async fn send(
        &self,
        req: OutboundRequest,
    ) -> Result<Response<Incoming>, InvokeError> {
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
