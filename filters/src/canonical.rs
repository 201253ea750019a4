//! The canonical request form as a layer: what every layer after it and the app see.
//!
//! [`Canonical`] refuses a method that is not an upper-case token and a path that cannot be
//! made canonical (control characters, `#`, broken escapes) with a typed
//! [`Rejection`](crate::normalize::Rejection), and otherwise rewrites the request target to
//! [`canonical_path`] plus the untouched query. Access policy, metrics and the app channel then
//! all read the same one form (security rule 1).

use std::task::{Context, Poll};

use http::{Request, Response, Uri};
use tower::{Layer, Service};

use crate::normalize::{Rejection, canonical_path, method_ok};

/// Rewrites requests to their canonical form, refusing what has none.
#[derive(Clone, Debug)]
pub struct Canonical<S> {
    inner: S,
}

/// Applies [`Canonical`].
#[derive(Clone, Copy, Debug, Default)]
pub struct CanonicalLayer;

impl<S> Layer<S> for CanonicalLayer {
    type Service = Canonical<S>;

    fn layer(&self, inner: S) -> Canonical<S> {
        Canonical { inner }
    }
}

/// The canonical target of `uri`: its canonical path and its query, without scheme or authority.
fn canonical_target(uri: &Uri) -> Result<Uri, Rejection> {
    let path = canonical_path(uri.path())?;
    let target = match uri.query() {
        Some(q) => format!("{path}?{q}"),
        None => path,
    };
    // The canonical path holds only characters a request target may hold.
    target.parse().map_err(|_| Rejection::BadEscape)
}

impl<S, B, RB> Service<Request<B>> for Canonical<S>
where
    S: Service<Request<B>, Response = Response<RB>>,
    S::Error: From<Rejection>,
{
    type Response = Response<RB>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        if !method_ok(req.method().as_str()) {
            return ResponseFuture::refused(Rejection::BadMethod);
        }
        match canonical_target(req.uri()) {
            Ok(uri) => *req.uri_mut() = uri,
            Err(rejection) => return ResponseFuture::refused(rejection),
        }
        ResponseFuture::passed(self.inner.call(req))
    }
}

/// Future of [`Canonical`].
pub type ResponseFuture<F> = crate::refuse::PassOrRefuse<F, Rejection>;
