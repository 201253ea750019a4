//! HTTP/3 message bodies as `http_body` bodies, and bodies sent onto HTTP/3 streams.
//!
//! Both directions stream: [`RecvBody`] yields each chunk as QUIC delivers it (flow control holds
//! the peer back while nobody reads), and [`send`] writes one chunk at a time, waiting for the
//! stream to take it before reading the next. A body that does not reach its end — its reader
//! went away, or its source failed — *resets* the stream with `H3_REQUEST_CANCELLED`: a QUIC send
//! stream that is merely dropped is finished cleanly, which would hand the peer a truncated
//! body as if it were whole. A receiving stream dropped before its end asks the peer to stop.

use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::{Buf, Bytes};
use h3::error::{Code, StreamError};
use http::HeaderMap;
use http_body::Frame;
use http_body_util::BodyExt as _;

use crate::net::http::{Body, BoxError};

type QuicRecv = h3_quinn::RecvStream;
type QuicSend = h3_quinn::SendStream<Bytes>;

/// The receiving half of an HTTP/3 request stream, client's or server's.
pub(crate) trait RecvHalf: Send + Unpin + 'static {
    /// The next chunk of the body; `None` at its end.
    fn poll_chunk(&mut self, cx: &mut Context<'_>) -> Poll<Result<Option<Bytes>, StreamError>>;
    /// The trailers, after the last chunk.
    fn poll_trailers(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Option<HeaderMap>, StreamError>>;
}

/// The sending half of an HTTP/3 request stream, client's or server's.
pub(crate) trait SendHalf: Send {
    /// Sends one chunk, once the stream has taken the previous one.
    fn data(&mut self, chunk: Bytes) -> impl Future<Output = Result<(), StreamError>> + Send;
    /// Sends the trailers (the body is over).
    fn trailers(&mut self, t: HeaderMap) -> impl Future<Output = Result<(), StreamError>> + Send;
    /// Ends the stream cleanly.
    fn finish(&mut self) -> impl Future<Output = Result<(), StreamError>> + Send;
    /// Ends the stream abruptly: the peer sees a reset, never a short body.
    fn reset(&mut self);
}

macro_rules! halves {
    ($stream:ident) => {
        impl RecvHalf for h3::$stream::RequestStream<QuicRecv, Bytes> {
            fn poll_chunk(
                &mut self,
                cx: &mut Context<'_>,
            ) -> Poll<Result<Option<Bytes>, StreamError>> {
                let chunk = ready!(self.poll_recv_data(cx))?;
                Poll::Ready(Ok(chunk.map(|mut b| b.copy_to_bytes(b.remaining()))))
            }
            fn poll_trailers(
                &mut self,
                cx: &mut Context<'_>,
            ) -> Poll<Result<Option<HeaderMap>, StreamError>> {
                self.poll_recv_trailers(cx)
            }
        }

        impl SendHalf for h3::$stream::RequestStream<QuicSend, Bytes> {
            fn data(
                &mut self,
                chunk: Bytes,
            ) -> impl Future<Output = Result<(), StreamError>> + Send {
                self.send_data(chunk)
            }
            fn trailers(
                &mut self,
                t: HeaderMap,
            ) -> impl Future<Output = Result<(), StreamError>> + Send {
                self.send_trailers(t)
            }
            fn finish(&mut self) -> impl Future<Output = Result<(), StreamError>> + Send {
                h3::$stream::RequestStream::finish(self)
            }
            fn reset(&mut self) {
                self.stop_stream(Code::H3_REQUEST_CANCELLED);
            }
        }
    };
}

halves!(server);
halves!(client);

#[derive(Clone, Copy, PartialEq, Eq)]
enum Part {
    Data,
    Trailers,
    Done,
}

/// The body arriving on an HTTP/3 stream. Dropped before its end, its QUIC stream asks the peer
/// to stop sending (QUIC's own `STOP_SENDING`: h3-quinn cannot send h3's code while a read is
/// pending, and panics if asked to). It may hold something that must live as long as the body (`keep`), such as the task
/// sending the other half of the exchange.
pub(crate) struct RecvBody<R: RecvHalf> {
    stream: R,
    part: Part,
    /// The length the head declared (`content-length`), if it did.
    length: Option<u64>,
    /// What arrived so far.
    received: u64,
    _keep: Option<Box<dyn std::any::Any + Send>>,
}

impl<R: RecvHalf> RecvBody<R> {
    /// The body of `stream`, whose head is `headers`: a declared `content-length` becomes the
    /// body's exact size hint, so the next hop declares it too (HTTP/1 apps read a body by it).
    pub(crate) fn new(stream: R, headers: &HeaderMap) -> Self {
        Self {
            stream,
            part: Part::Data,
            length: declared_length(headers).ok().flatten(),
            received: 0,
            _keep: None,
        }
    }

    /// The same, keeping `keep` until the body is dropped.
    pub(crate) fn keeping(stream: R, headers: &HeaderMap, keep: impl std::any::Any + Send) -> Self {
        Self {
            _keep: Some(Box::new(keep)),
            ..Self::new(stream, headers)
        }
    }
}

impl<R: RecvHalf> http_body::Body for RecvBody<R> {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        loop {
            match this.part {
                Part::Data => match ready!(this.stream.poll_chunk(cx)) {
                    Ok(Some(chunk)) if chunk.is_empty() => continue,
                    Ok(Some(chunk)) => {
                        this.received += chunk.len() as u64;
                        // More than declared: the next hop would cut it at the length and pass
                        // a body that looks whole.
                        if this.length.is_some_and(|n| this.received > n) {
                            this.part = Part::Done;
                            return Poll::Ready(Some(Err(LengthMismatch.into())));
                        }
                        return Poll::Ready(Some(Ok(Frame::data(chunk))));
                    }
                    Ok(None) if this.length.is_some_and(|n| this.received != n) => {
                        this.part = Part::Done;
                        return Poll::Ready(Some(Err(LengthMismatch.into())));
                    }
                    Ok(None) => this.part = Part::Trailers,
                    Err(e) => {
                        this.part = Part::Done;
                        return Poll::Ready(Some(Err(e.into())));
                    }
                },
                Part::Trailers => {
                    let got = ready!(this.stream.poll_trailers(cx));
                    this.part = Part::Done;
                    return Poll::Ready(match got {
                        Ok(Some(t)) => Some(Ok(Frame::trailers(t))),
                        Ok(None) => None,
                        Err(e) => Some(Err(e.into())),
                    });
                }
                Part::Done => return Poll::Ready(None),
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.part == Part::Done
    }

    fn size_hint(&self) -> http_body::SizeHint {
        match self.length {
            Some(n) if self.part == Part::Data => http_body::SizeHint::with_exact(n),
            _ => http_body::SizeHint::default(),
        }
    }
}

/// Why sending a body stopped early.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SendError {
    /// The body's source failed; the stream was reset.
    #[error("the body's source failed: {0}")]
    Source(BoxError),
    /// The stream failed (the peer stopped reading, or the connection is gone).
    #[error("the HTTP/3 stream failed: {0}")]
    Stream(#[from] StreamError),
    /// The peer took nothing for this long; the stream was reset.
    #[error("the peer took nothing of the body for {0:?}")]
    Stalled(Duration),
}

/// A body whose size differs from its declared `content-length`.
#[derive(Debug, thiserror::Error)]
#[error("the body's size differs from its content-length")]
pub(crate) struct LengthMismatch;

/// The `content-length` of `headers`: `Ok(None)` without one, `Err` when it is not one plain
/// decimal number (or several that differ), as HTTP/1 and HTTP/2 peers would refuse it.
pub(crate) fn declared_length(headers: &HeaderMap) -> Result<Option<u64>, LengthMismatch> {
    let mut found = None;
    for v in headers.get_all(http::header::CONTENT_LENGTH) {
        let s = v.to_str().map_err(|_| LengthMismatch)?;
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(LengthMismatch);
        }
        let n: u64 = s.parse().map_err(|_| LengthMismatch)?;
        if found.is_some_and(|f| f != n) {
            return Err(LengthMismatch);
        }
        found = Some(n);
    }
    Ok(found)
}

/// `headers` with the `content-length` of `body` when its size is known and the head does not
/// declare one: what hyper adds over HTTP/1 and HTTP/2, so the far side's app learns it too. An
/// empty body is declared only when `empty_too` (a POST, PUT or PATCH with no body says so).
pub(crate) fn declare_length(headers: &mut HeaderMap, body: &Body, empty_too: bool) {
    use http_body::Body as _;
    if let Some(n) = body.size_hint().exact()
        && (n > 0 || empty_too)
        && !headers.contains_key(http::header::CONTENT_LENGTH)
    {
        headers.insert(http::header::CONTENT_LENGTH, n.into());
    }
}

/// Sends `body` onto `stream` chunk by chunk, then its trailers, then ends the stream. If this
/// future is dropped or the body fails first, the stream is reset instead; so it is if the peer
/// takes nothing of it for `stall` (a reader that stopped reading holds no memory for good).
pub(crate) async fn send<S: SendHalf>(
    stream: &mut S,
    mut body: Body,
    stall: Duration,
) -> Result<(), SendError> {
    let mut sending = Sending {
        stream,
        ended: false,
    };
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(SendError::Source)?;
        match frame.into_data() {
            Ok(chunk) if chunk.is_empty() => {}
            Ok(chunk) => match tokio::time::timeout(stall, sending.stream.data(chunk)).await {
                Ok(sent) => sent?,
                Err(_) => return Err(SendError::Stalled(stall)),
            },
            Err(frame) => {
                if let Ok(t) = frame.into_trailers() {
                    match tokio::time::timeout(stall, sending.stream.trailers(t)).await {
                        Ok(sent) => sent?,
                        Err(_) => return Err(SendError::Stalled(stall)),
                    }
                    break;
                }
            }
        }
    }
    sending.stream.finish().await?;
    sending.ended = true;
    Ok(())
}

/// A stream being sent: reset when dropped before it ended cleanly.
struct Sending<'a, S: SendHalf> {
    stream: &'a mut S,
    ended: bool,
}

impl<S: SendHalf> Drop for Sending<'_, S> {
    fn drop(&mut self) {
        if !self.ended {
            self.stream.reset();
        }
    }
}
