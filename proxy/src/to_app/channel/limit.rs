//! `--app-max-concurrency`: at most N requests in flight to the app, invocations and deliveries
//! alike. A request past them waits for a slot; invocations wait in a bounded line (past it they
//! fail at once: a burst of callers cannot pile up unbounded), deliveries always wait (their
//! number is bounded by each subscription's own concurrency). A slot is held until the app's
//! answer has been read to its end, so a streamed answer counts for as long as it streams.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::errors::InvokeError;
use crate::net::http::{Body, BoxError};
use crate::telemetry::metrics::APP_WAITING;

/// The slots, and the line of invocations waiting for one.
pub(crate) struct Limit {
    slots: Arc<Semaphore>,
    max: usize,
    waiting: AtomicUsize,
    max_waiting: usize,
}

impl Limit {
    /// `max` requests in flight; invocations past them wait in a line of 32 per slot (at least
    /// 64, at most 4096).
    pub(crate) fn new(max: usize) -> Self {
        Self {
            slots: Arc::new(Semaphore::new(max)),
            max,
            waiting: AtomicUsize::new(0),
            max_waiting: max.saturating_mul(32).clamp(64, 4096),
        }
    }

    /// A slot; `bounded` for an invocation, which fails rather than wait past a full line.
    pub(crate) async fn acquire(&self, bounded: bool) -> Result<OwnedSemaphorePermit, InvokeError> {
        if let Ok(p) = self.slots.clone().try_acquire_owned() {
            return Ok(p);
        }
        let waiting = self.waiting.fetch_add(1, Ordering::AcqRel) + 1;
        let _in_line = InLine(&self.waiting);
        if bounded && waiting > self.max_waiting {
            return Err(InvokeError::AppBusy {
                max: self.max,
                waiting: self.max_waiting,
            });
        }
        let _counted = Counted::new();
        let permit = self.slots.clone().acquire_owned().await;
        permit.map_err(|_| InvokeError::AppChannel("the app channel is closed".into()))
    }
}

/// Leaves the line however the wait ends (a slot, or the caller gone).
struct InLine<'a>(&'a AtomicUsize);

impl Drop for InLine<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// One request in the waiting gauge, for as long as it waits (even if its caller goes away).
struct Counted;

impl Counted {
    fn new() -> Self {
        APP_WAITING.gauge(&[]).increment(1.0);
        Self
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        APP_WAITING.gauge(&[]).decrement(1.0);
    }
}

/// A response body that gives its slot back when it ends or is dropped.
pub(crate) struct Holding {
    inner: Body,
    permit: Option<OwnedSemaphorePermit>,
}

impl Holding {
    pub(crate) fn new(inner: Body, permit: OwnedSemaphorePermit) -> Self {
        Self {
            inner,
            permit: Some(permit),
        }
    }
}

impl HttpBody for Holding {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if matches!(polled, Poll::Ready(None | Some(Err(_)))) {
            self.permit = None;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
