//! `spec.httpPipeline`: the HTTP middleware a Configuration puts in front of the Dapr HTTP API,
//! in its order, on every route of the API listener (health included, as in daprd; the public
//! health port has none); and `spec.appHttpPipeline`, the same kinds on every call the app
//! channel makes to an HTTP app (`to_app::channel`). Two kinds are served: `middleware.http.bearer` (a JWT from the
//! issuer the component names, checked against its keys) and `middleware.http.ratelimit`
//! (requests per second per client and path). A Configuration naming any other kind, or a
//! component that is not there, stops the start (`config`): the API never serves without the
//! protection asked for.

mod bearer;
mod ratelimit;

use std::net::IpAddr;
use std::sync::Arc;

use http::{HeaderMap, Response};
use outrider_blocks::{Component, ComponentError};

use crate::net::http::Body;
pub(crate) use bearer::Bearer;
pub(crate) use ratelimit::RateLimit;

/// The steps, in order; empty when the Configuration has none. Shared: the app channel, and
/// with it the pipeline, is cloned for every request it serves.
#[derive(Clone, Default)]
pub(crate) struct Pipeline {
    steps: Arc<[Step]>,
}

#[derive(Clone)]
enum Step {
    Bearer(Arc<Bearer>),
    RateLimit(Arc<RateLimit>),
}

/// The client a request came from, put in its extensions by the API listener.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Peer(pub(crate) IpAddr);

impl Pipeline {
    /// Opens each middleware component, in the pipeline's order (a bearer's keys are fetched
    /// now: the API does not serve before it can check tokens).
    pub(crate) async fn open(
        components: &[Component],
        ca_file: Option<&std::path::Path>,
    ) -> Result<Self, Vec<ComponentError>> {
        let mut steps = Vec::new();
        for c in components {
            let md = outrider_blocks::component::literal_metadata(c)?;
            steps.push(match c.spec.type_.as_str() {
                "middleware.http.bearer" => Step::Bearer(Bearer::open(&md, ca_file).await?),
                "middleware.http.ratelimit" => Step::RateLimit(Arc::new(RateLimit::new(&md)?)),
                other => {
                    return Err(vec![ComponentError {
                        field: "spec.type".into(),
                        message: format!("{other:?} is not HTTP middleware this build has"),
                    }]);
                }
            });
            md.warn_unread(&c.metadata.name, &c.spec.type_);
        }
        Ok(Self {
            steps: steps.into(),
        })
    }

    /// Runs the request through every step: `None` lets it on, `Some` is the answer of the
    /// step that stopped it.
    pub(crate) fn admit(
        &self,
        path: &str,
        headers: &HeaderMap,
        peer: Option<IpAddr>,
    ) -> Option<Response<Body>> {
        self.steps.iter().find_map(|step| match step {
            Step::Bearer(b) => b.admit(headers),
            Step::RateLimit(r) => r.admit(path, peer),
        })
    }
}

/// A plain-text answer, as the middleware write theirs.
fn text(status: http::StatusCode, body: &'static str) -> Response<Body> {
    let mut rsp = Response::new(crate::net::http::full(body));
    *rsp.status_mut() = status;
    rsp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    rsp
}
