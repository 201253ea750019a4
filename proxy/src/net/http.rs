//! The body type every listener uses and the header hygiene every hop applies.

use std::future::Future as _;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http::header::{self, HeaderMap};
use http_body::Frame;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Empty, Full};
use pin_project_lite::pin_project;

mod headers;

pub(crate) use headers::{names, strip_hop_by_hop, strip_identity};

/// Any error a body can fail with.
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// A streamed body: requests and responses are passed through without buffering.
pub(crate) type Body = UnsyncBoxBody<Bytes, BoxError>;

/// The body's bytes, whole, if they are at most `limit`.
pub(crate) async fn collect_within(mut body: Body, limit: usize) -> Result<Bytes, BoxError> {
    let mut out = bytes::BytesMut::new();
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame?.into_data() {
            if out.len() + data.len() > limit {
                return Err(format!("the body is larger than {limit} bytes").into());
            }
            out.extend_from_slice(&data);
        }
    }
    Ok(out.freeze())
}

/// A body holding `bytes`.
pub(crate) fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// An empty body.
pub(crate) fn empty() -> Body {
    Empty::new().map_err(|never| match never {}).boxed_unsync()
}

/// A body made of `chunks`, sent one after the other without being joined first; its length
/// is known, so HTTP/1 gets a `Content-Length`.
pub(crate) fn chunks(chunks: Vec<Bytes>) -> Body {
    let left = chunks.iter().map(|c| c.len() as u64).sum();
    Chunks {
        chunks: chunks.into(),
        left,
    }
    .boxed_unsync()
}

struct Chunks {
    chunks: std::collections::VecDeque<Bytes>,
    left: u64,
}

impl http_body::Body for Chunks {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let next = self.chunks.pop_front();
        if let Some(c) = &next {
            self.left -= c.len() as u64;
        }
        Poll::Ready(next.map(|c| Ok(Frame::data(c))))
    }

    fn is_end_stream(&self) -> bool {
        self.chunks.is_empty()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        http_body::SizeHint::with_exact(self.left)
    }
}

/// Wraps any body into [`Body`].
pub(crate) fn boxed<B>(body: B) -> Body
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    body.map_err(Into::into).boxed_unsync()
}

/// What went wrong with a [`capped`] body, if anything. Clients may turn the body's error into a
/// generic stream reset, so the caller asks these flags rather than the error chain.
#[derive(Clone, Debug, Default)]
pub(crate) struct Tripped(Arc<(AtomicBool, AtomicBool, AtomicBool)>);

impl Tripped {
    /// The body passed its limit.
    pub(crate) fn get(&self) -> bool {
        self.0.0.load(Ordering::Acquire)
    }

    /// The sender's body itself failed: malformed framing, or the sender went away mid-body.
    pub(crate) fn broken(&self) -> bool {
        self.0.1.load(Ordering::Acquire)
    }

    /// The sender paused mid-body for longer than the body's idle timeout.
    pub(crate) fn timed_out(&self) -> bool {
        self.0.2.load(Ordering::Acquire)
    }
}

/// The body paused for longer than its idle timeout.
#[derive(Debug, thiserror::Error)]
#[error("the body paused for longer than {0:?}")]
pub(crate) struct Paused(pub(crate) std::time::Duration);

/// The body exceeded its limit.
#[derive(Debug, thiserror::Error)]
#[error("the body is larger than the limit of {0} bytes")]
pub(crate) struct TooLarge(pub(crate) u64);

pin_project! {
    /// A body that fails once more than `limit` bytes have streamed through it, or when its
    /// sender pauses for longer than `idle`.
    pub(crate) struct Capped<B> {
        #[pin]
        inner: B,
        left: u64,
        limit: u64,
        idle: std::time::Duration,
        // Armed at the first pause, and reset at each frame after it.
        timer: Option<Pin<Box<tokio::time::Sleep>>>,
        // The end of the whole body, if it has one.
        deadline: Option<Pin<Box<tokio::time::Sleep>>>,
        tripped: Tripped,
    }
}

/// Streams `body` with at most `limit` bytes and pauses of at most `idle`; the flags tell what
/// went wrong, if anything.
pub(crate) fn capped<B>(body: B, limit: u64, idle: std::time::Duration) -> (Body, Tripped)
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    cap(body, limit, idle, None)
}

/// [`capped`], and the whole body must have arrived within `total`: a sender that drips a byte
/// just inside each pause cannot hold a request that is read whole for good.
pub(crate) fn capped_within<B>(
    body: B,
    limit: u64,
    idle: std::time::Duration,
    total: std::time::Duration,
) -> (Body, Tripped)
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    cap(body, limit, idle, Some(total))
}

fn cap<B>(
    body: B,
    limit: u64,
    idle: std::time::Duration,
    total: Option<std::time::Duration>,
) -> (Body, Tripped)
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let tripped = Tripped::default();
    let body = Capped {
        inner: body,
        left: limit,
        limit,
        idle,
        timer: None,
        deadline: total.map(|t| Box::pin(tokio::time::sleep(t))),
        tripped: tripped.clone(),
    };
    (boxed(body), tripped)
}

impl<B> http_body::Body for Capped<B>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.project();
        let polled = this.inner.poll_frame(cx);
        if polled.is_pending()
            && let Some(deadline) = this.deadline.as_mut()
            && deadline.as_mut().poll(cx).is_ready()
        {
            this.tripped.0.2.store(true, Ordering::Release);
            return Poll::Ready(Some(Err(Box::new(Paused(*this.idle)))));
        }
        if polled.is_pending() {
            let idle = *this.idle;
            let timer = this
                .timer
                .get_or_insert_with(|| Box::pin(tokio::time::sleep(idle)));
            if timer.as_mut().poll(cx).is_ready() {
                this.tripped.0.2.store(true, Ordering::Release);
                return Poll::Ready(Some(Err(Box::new(Paused(idle)))));
            }
            return Poll::Pending;
        }
        if let Some(timer) = this.timer.as_mut() {
            timer
                .as_mut()
                .reset(tokio::time::Instant::now() + *this.idle);
        }
        let frame = match ready!(polled) {
            Some(Ok(f)) => f,
            Some(Err(e)) => {
                this.tripped.0.1.store(true, Ordering::Release);
                return Poll::Ready(Some(Err(e.into())));
            }
            None => return Poll::Ready(None),
        };
        if let Some(data) = frame.data_ref() {
            let n = data.len() as u64;
            if n > *this.left {
                this.tripped.0.0.store(true, Ordering::Release);
                return Poll::Ready(Some(Err(Box::new(TooLarge(*this.limit)))));
            }
            *this.left -= n;
        }
        Poll::Ready(Some(Ok(frame)))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// What may not stand as itself in a path: controls, space and the characters that end or
/// change a path. `/` stays: for names put in a path as they are.
pub(crate) const NOT_IN_PATH: &percent_encoding::AsciiSet = &percent_encoding::CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'`')
    .add(b'{')
    .add(b'}');

/// [`NOT_IN_PATH`] and `/`: for a name that must stay one path segment.
pub(crate) const NOT_IN_SEGMENT: &percent_encoding::AsciiSet = &NOT_IN_PATH.add(b'/');

/// Decodes percent-escapes (as Dapr unescapes route parameters); invalid UTF-8 is replaced.
pub(crate) fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

/// Whether `headers` describe a gRPC message (`application/grpc`, `application/grpc+proto`, …).
pub(crate) fn is_grpc(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"))
}

pin_project! {
    /// A gRPC body (a stream of length-prefixed messages) whose every message is checked
    /// against `limit` from its 5-byte prefix: the first one over it ends the body with
    /// [`TooLarge`] before any of its bytes go on. A stream may last as long as both ends keep
    /// it; each message is bounded.
    pub(crate) struct GrpcMessages<B> {
        #[pin]
        inner: B,
        limit: u64,
        prefix: [u8; 5],
        have: usize,
        // Bytes of the current message still to come.
        left: u64,
    }
}

/// `body`'s messages, each at most `limit` bytes.
pub(crate) fn grpc_messages<B>(body: B, limit: u64) -> Body
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    boxed(GrpcMessages {
        inner: body,
        limit,
        prefix: [0; 5],
        have: 0,
        left: 0,
    })
}

impl<B> http_body::Body for GrpcMessages<B>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.project();
        let frame = match ready!(this.inner.poll_frame(cx)) {
            Some(Ok(f)) => f,
            Some(Err(e)) => return Poll::Ready(Some(Err(e.into()))),
            None => return Poll::Ready(None),
        };
        if let Some(mut data) = frame.data_ref().map(|d| &d[..]) {
            while !data.is_empty() {
                if *this.left > 0 {
                    let n = usize::try_from(*this.left)
                        .unwrap_or(usize::MAX)
                        .min(data.len());
                    *this.left -= n as u64;
                    data = &data[n..];
                    continue;
                }
                let n = (5 - *this.have).min(data.len());
                this.prefix[*this.have..*this.have + n].copy_from_slice(&data[..n]);
                *this.have += n;
                data = &data[n..];
                if *this.have == 5 {
                    *this.have = 0;
                    let len = u64::from(u32::from_be_bytes([
                        this.prefix[1],
                        this.prefix[2],
                        this.prefix[3],
                        this.prefix[4],
                    ]));
                    if len > *this.limit {
                        return Poll::Ready(Some(Err(Box::new(TooLarge(*this.limit)))));
                    }
                    *this.left = len;
                }
            }
        }
        Poll::Ready(Some(Ok(frame)))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }
}

#[cfg(test)]
mod grpc_messages_tests {
    use super::*;

    /// The messages of `chunks` (a body cut anywhere), each checked against `limit`.
    async fn read(chunks: Vec<Vec<u8>>, limit: u64) -> Result<usize, String> {
        let frames = chunks
            .into_iter()
            .map(|c| Ok::<_, std::convert::Infallible>(Frame::data(Bytes::from(c))));
        let body = http_body_util::StreamBody::new(futures_util::stream::iter(frames));
        let mut body = grpc_messages(body, limit);
        let mut n = 0;
        while let Some(f) = body.frame().await {
            n += f
                .map_err(|e| e.to_string())?
                .into_data()
                .map_or(0, |d| d.len());
        }
        Ok(n)
    }

    fn message(len: u32) -> Vec<u8> {
        let mut m = vec![0];
        m.extend_from_slice(&len.to_be_bytes());
        m.extend(std::iter::repeat_n(7u8, len as usize));
        m
    }

    #[tokio::test]
    async fn every_message_is_checked_wherever_the_body_is_cut() {
        let mut two = message(10);
        two.extend(message(20));
        // Whole, then cut inside the second prefix and inside a message.
        assert_eq!(read(vec![two.clone()], 20).await, Ok(two.len()));
        let cuts = vec![two[..17].to_vec(), two[17..19].to_vec(), two[19..].to_vec()];
        assert_eq!(read(cuts.clone(), 20).await, Ok(two.len()));
        // The second message is over 19 bytes: refused from its prefix.
        let e = read(cuts, 19).await.unwrap_err();
        assert!(e.contains("19 bytes"), "{e}");
        // Many small messages in one chunk pass.
        let many: Vec<u8> = (0..100).flat_map(|_| message(3)).collect();
        assert_eq!(read(vec![many.clone()], 3).await, Ok(many.len()));
    }
}
