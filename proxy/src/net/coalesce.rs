//! Write coalescing for mesh connections: what is written before a flush leaves in one write.
//!
//! An HTTP/2 client queues a request's HEADERS frame as soon as the stream opens, but the body's
//! DATA frames only once the task piping the body has been granted flow-control capacity, which
//! happens in the connection task's next turn. Flushed as they come, a small request costs two
//! TLS records, two system calls and two wake-ups of the peer. [`Coalesce`] keeps written bytes
//! until the writer flushes, and yields to the scheduler once before the first flush of a batch,
//! so that frames from tasks already woken join the same write (the idea of Netty's flush
//! consolidation). A batch of [`YIELD_BELOW`] bytes or more is written without yielding (h2
//! flushes after each large DATA frame, so a large body would otherwise pay a scheduler turn per
//! frame), and writes past [`LIMIT`] bytes go out without waiting for a flush at all.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf, BytesMut};
use hyper::rt::{Read, ReadBufCursor, Write};
use hyper_rustls::{HttpsConnector, MaybeHttpsStream};
use hyper_util::client::legacy::connect::{Connected, Connection, HttpConnector};
use hyper_util::rt::TokioIo;
use pin_project_lite::pin_project;
use tokio::net::TcpStream;
use tower::util::MapResponse;

/// A mesh connection: mutual TLS over TCP, writes coalesced.
pub(crate) type MeshStream = Coalesce<MaybeHttpsStream<TokioIo<TcpStream>>>;

/// Connects mesh connections.
pub(crate) type MeshConnector = MapResponse<
    HttpsConnector<HttpConnector>,
    fn(MaybeHttpsStream<TokioIo<TcpStream>>) -> MeshStream,
>;

/// Wraps `https` so that its connections coalesce writes.
pub(crate) fn mesh_connector(https: HttpsConnector<HttpConnector>) -> MeshConnector {
    MapResponse::new(https, Coalesce::new)
}

/// A batch this large is flushed without yielding first: nothing is gained by waiting.
pub(crate) const YIELD_BELOW: usize = 16 * 1024;

/// Bytes held at most before they are written without waiting for a flush.
pub(crate) const LIMIT: usize = 64 * 1024;

pin_project! {
    /// An IO whose writes are held until a flush (see the module docs).
    pub(crate) struct Coalesce<T> {
        #[pin]
        inner: T,
        buf: BytesMut,
        // Whether the current batch already yielded once.
        yielded: bool,
    }
}

impl<T> Coalesce<T> {
    pub(crate) fn new(inner: T) -> Self {
        Self {
            inner,
            buf: BytesMut::new(),
            yielded: false,
        }
    }
}

/// Writes all of `buf` to `inner`.
fn drain<T: Write>(
    mut inner: Pin<&mut T>,
    buf: &mut BytesMut,
    cx: &mut Context<'_>,
) -> Poll<io::Result<()>> {
    while !buf.is_empty() {
        let n = ready!(inner.as_mut().poll_write(cx, buf))?;
        if n == 0 {
            return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
        }
        buf.advance(n);
    }
    Poll::Ready(Ok(()))
}

impl<T: Write> Write for Coalesce<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.poll_write_vectored(cx, &[io::IoSlice::new(data)])
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.project();
        if this.buf.len() >= LIMIT {
            ready!(drain(this.inner, this.buf, cx))?;
        }
        let mut taken = 0;
        for b in bufs {
            let room = LIMIT - this.buf.len();
            if room == 0 {
                break;
            }
            let n = b.len().min(room);
            this.buf.extend_from_slice(&b[..n]);
            taken += n;
        }
        Poll::Ready(Ok(taken))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut this = self.project();
        if !this.buf.is_empty() {
            if !*this.yielded && this.buf.len() < YIELD_BELOW {
                *this.yielded = true;
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            ready!(drain(this.inner.as_mut(), this.buf, cx))?;
        }
        *this.yielded = false;
        this.inner.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut this = self.project();
        ready!(drain(this.inner.as_mut(), this.buf, cx))?;
        this.inner.poll_shutdown(cx)
    }
}

impl<T: Read> Read for Coalesce<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        self.project().inner.poll_read(cx, buf)
    }
}

impl<T: Connection> Connection for Coalesce<T> {
    fn connected(&self) -> Connected {
        self.inner.connected()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    /// Counts the writes that reach the socket.
    struct Counting {
        inner: TokioIo<tokio::io::DuplexStream>,
        writes: usize,
    }

    impl Write for Counting {
        fn poll_write(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            data: &[u8],
        ) -> Poll<io::Result<usize>> {
            self.writes += 1;
            Pin::new(&mut self.inner).poll_write(cx, data)
        }
        fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Pin::new(&mut self.inner).poll_flush(cx)
        }
        fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Pin::new(&mut self.inner).poll_shutdown(cx)
        }
    }

    fn pair() -> (Coalesce<Counting>, tokio::io::DuplexStream) {
        let (a, b) = tokio::io::duplex(1 << 20);
        (
            Coalesce::new(Counting {
                inner: TokioIo::new(a),
                writes: 0,
            }),
            b,
        )
    }

    async fn write_all(io: &mut Coalesce<Counting>, mut data: &[u8]) {
        while !data.is_empty() {
            let n = std::future::poll_fn(|cx| Pin::new(&mut *io).poll_write(cx, data))
                .await
                .unwrap();
            data = &data[n..];
        }
    }

    #[tokio::test]
    async fn writes_before_a_flush_leave_together() {
        let (mut io, mut peer) = pair();
        write_all(&mut io, b"headers ").await;
        write_all(&mut io, b"data").await;
        assert_eq!(io.inner.writes, 0, "nothing leaves before the flush");
        std::future::poll_fn(|cx| Pin::new(&mut io).poll_flush(cx))
            .await
            .unwrap();
        assert_eq!(io.inner.writes, 1);
        let mut got = [0; 12];
        peer.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"headers data");
    }

    #[tokio::test]
    async fn the_first_flush_yields_once_then_writes() {
        let (mut io, _peer) = pair();
        write_all(&mut io, b"x").await;
        let mut cx = Context::from_waker(std::task::Waker::noop());
        assert!(Pin::new(&mut io).poll_flush(&mut cx).is_pending());
        assert!(matches!(
            Pin::new(&mut io).poll_flush(&mut cx),
            Poll::Ready(Ok(()))
        ));
        assert_eq!(io.inner.writes, 1);
        // An empty buffer flushes at once.
        assert!(matches!(
            Pin::new(&mut io).poll_flush(&mut cx),
            Poll::Ready(Ok(()))
        ));
    }

    #[tokio::test]
    async fn a_large_batch_flushes_without_yielding() {
        let (mut io, _peer) = pair();
        write_all(&mut io, &vec![1u8; YIELD_BELOW]).await;
        let mut cx = Context::from_waker(std::task::Waker::noop());
        assert!(matches!(
            Pin::new(&mut io).poll_flush(&mut cx),
            Poll::Ready(Ok(()))
        ));
        assert_eq!(io.inner.writes, 1);
    }

    #[tokio::test]
    async fn large_writes_stream_without_waiting_for_a_flush() {
        let (mut io, mut peer) = pair();
        let big = vec![7u8; 3 * LIMIT];
        let reader = tokio::spawn(async move {
            let mut got = vec![0; 3 * LIMIT];
            peer.read_exact(&mut got).await.unwrap();
            got
        });
        write_all(&mut io, &big).await;
        assert!(
            io.inner.writes >= 2,
            "past the limit, bytes go out before any flush"
        );
        std::future::poll_fn(|cx| Pin::new(&mut io).poll_flush(cx))
            .await
            .unwrap();
        std::future::poll_fn(|cx| Pin::new(&mut io).poll_shutdown(cx))
            .await
            .unwrap();
        assert_eq!(reader.await.unwrap(), big);
    }
}
