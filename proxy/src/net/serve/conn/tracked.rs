//! The service side of a connection's watch: requests are counted in flight from their head
//! to the end of their response body, and a response body the peer stops asking for is seen.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http::{Request, Response};
use http_body::Frame;
use pin_project_lite::pin_project;

use super::{Activity, MAX_FRAME};

/// A service whose requests are counted in flight until their response body ends.
#[derive(Clone)]
pub(crate) struct Tracked<S> {
    inner: S,
    activity: Arc<Activity>,
}

impl<S> Tracked<S> {
    pub(crate) fn new(inner: S, activity: Arc<Activity>) -> Self {
        Self { inner, activity }
    }
}

/// One request in flight; ends when dropped.
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.request_ended();
    }
}

impl<S, B, ReqB> tower::Service<Request<ReqB>> for Tracked<S>
where
    S: tower::Service<Request<ReqB>, Response = Response<B>>,
    B: http_body::Body,
{
    type Response = Response<TrackedBody<B>>;
    type Error = S::Error;
    type Future = TrackedFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqB>) -> Self::Future {
        self.activity.request_started();
        let in_flight = InFlight(self.activity.clone());
        TrackedFuture {
            inner: self.inner.call(req),
            in_flight: Some(in_flight),
        }
    }
}

pin_project! {
    /// The response future of [`Tracked`].
    pub(crate) struct TrackedFuture<F> {
        #[pin]
        inner: F,
        in_flight: Option<InFlight>,
    }
}

impl<F, B, E> Future for TrackedFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
    B: http_body::Body,
{
    type Output = Result<Response<TrackedBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let rsp = ready!(this.inner.poll(cx))?;
        let in_flight = this.in_flight.take();
        Poll::Ready(Ok(rsp.map(|inner| {
            // Until the peer asks for the first frame, the body waits on it.
            let stalled = match &in_flight {
                Some(f) if !inner.is_end_stream() => Some(f.0.stall()),
                _ => None,
            };
            TrackedBody {
                inner,
                in_flight,
                rest: Bytes::new(),
                stalled,
            }
        })))
    }
}

pin_project! {
    /// A response body that hands on at most [`MAX_FRAME`] bytes at a time and reports when the
    /// peer stops asking for more.
    pub(crate) struct TrackedBody<B> {
        #[pin]
        inner: B,
        in_flight: Option<InFlight>,
        // What is left of a frame larger than MAX_FRAME.
        rest: Bytes,
        stalled: Option<u64>,
    }

    impl<B> PinnedDrop for TrackedBody<B> {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if let (Some(id), Some(f)) = (this.stalled.take(), this.in_flight.as_ref()) {
                f.0.unstall(id);
            }
        }
    }
}

impl<B> http_body::Body for TrackedBody<B>
where
    B: http_body::Body<Data = Bytes>,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let mut this = self.project();
        let activity = this.in_flight.as_ref().map(|f| &f.0);
        // Asked again: the peer took the last frame.
        if let (Some(id), Some(a)) = (this.stalled.take(), activity) {
            a.unstall(id);
        }
        let data = if this.rest.is_empty() {
            match ready!(this.inner.as_mut().poll_frame(cx)) {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => data,
                    Err(trailers) => return Poll::Ready(Some(Ok(trailers))),
                },
                other => return Poll::Ready(other),
            }
        } else {
            std::mem::take(this.rest)
        };
        let mut data = data;
        if data.len() > MAX_FRAME {
            *this.rest = data.split_off(MAX_FRAME);
        }
        // Until it is asked again or dropped, the body waits on the peer. That holds for the last
        // frame too: HTTP/2 asks for a frame before it has window to send it, then keeps the body
        // until that frame is sent; HTTP/1 drops the body once it has seen the end.
        if let Some(a) = activity {
            *this.stalled = Some(a.stall());
        }
        Poll::Ready(Some(Ok(Frame::data(data))))
    }

    fn is_end_stream(&self) -> bool {
        self.rest.is_empty() && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        let inner = self.inner.size_hint();
        let rest = self.rest.len() as u64;
        let mut hint = http_body::SizeHint::new();
        if let Some(upper) = inner.upper() {
            hint.set_upper(upper.saturating_add(rest));
        }
        hint.set_lower(inner.lower().saturating_add(rest));
        hint
    }
}
