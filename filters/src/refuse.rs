//! The future of a layer that either passes a request on or refuses it with a typed error: the
//! shape the canonical-form and access-policy layers share.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use pin_project_lite::pin_project;

pin_project! {
    /// The inner service's future, or the refusal `E`, converted into the inner service's error.
    pub struct PassOrRefuse<F, E> {
        #[pin]
        inner: Option<F>,
        refusal: Option<E>,
    }
}

impl<F, E> PassOrRefuse<F, E> {
    /// The request went on: its future.
    pub(crate) fn passed(inner: F) -> Self {
        Self {
            inner: Some(inner),
            refusal: None,
        }
    }

    /// The request was refused.
    pub(crate) fn refused(refusal: E) -> Self {
        Self {
            inner: None,
            refusal: Some(refusal),
        }
    }
}

impl<F, R, IE, E> Future for PassOrRefuse<F, E>
where
    F: Future<Output = Result<R, IE>>,
    IE: From<E>,
{
    type Output = Result<R, IE>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Some(e) = this.refusal.take() {
            return Poll::Ready(Err(e.into()));
        }
        match this.inner.as_pin_mut() {
            Some(inner) => inner.poll(cx),
            None => panic!("PassOrRefuse polled after completion"),
        }
    }
}
