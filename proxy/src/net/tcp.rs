//! Plain TCP for intercepted connections: the destination a redirected connection was meant
//! for (`SO_ORIGINAL_DST`), and the copy of bytes both ways between two streams, counted.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use metrics::{Counter, Gauge};
use pin_project_lite::pin_project;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use crate::telemetry::metrics as catalogue;

/// The address a connection redirected by the nat table's `REDIRECT` was sent to. A connection
/// that was not redirected reports the address it was accepted on.
pub(crate) fn original_dst(tcp: &TcpStream) -> io::Result<SocketAddr> {
    let sock = socket2::SockRef::from(tcp);
    let addr = match tcp.local_addr()? {
        SocketAddr::V4(_) => sock.original_dst_v4()?,
        SocketAddr::V6(_) => sock.original_dst_v6()?,
    };
    addr.as_socket()
        .ok_or_else(|| io::Error::other("the original destination is not an IP address"))
}

/// Which way an intercepted connection goes, for the metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Direction {
    /// The local app connected out.
    Outbound,
    /// A peer connected in, to the local app.
    Inbound,
}

impl Direction {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Direction::Outbound => "outbound",
            Direction::Inbound => "inbound",
        }
    }
}

/// Counts a refused connection or tunnel.
pub(crate) fn refused(direction: Direction, reason: &'static str) {
    catalogue::TCP_REFUSED
        .counter(&[
            ("direction", direction.as_str().to_owned()),
            ("reason", reason.to_owned()),
        ])
        .increment(1);
}

/// The series of one (direction, peer): open connections, bytes read and written on the local
/// side. While a [`Meter`] lives, its connection counts as open.
pub(crate) struct Meter {
    open: Gauge,
    read: Counter,
    written: Counter,
}

impl Meter {
    /// `peer` is an app id of the mesh, or one of the fixed words of the catalogue.
    pub(crate) fn new(direction: Direction, peer: &str) -> Self {
        let labels = [
            ("direction", direction.as_str().to_owned()),
            ("peer", peer.to_owned()),
        ];
        let open = catalogue::TCP_OPEN.gauge(&labels);
        open.increment(1.0);
        Self {
            open,
            read: catalogue::TCP_READ.counter(&labels),
            written: catalogue::TCP_WRITE.counter(&labels),
        }
    }

    /// `io`, with every byte read from and written to it counted here.
    pub(crate) fn wrap<I>(self, io: I) -> Metered<I> {
        Metered { io, meter: self }
    }
}

impl Drop for Meter {
    fn drop(&mut self) {
        self.open.decrement(1.0);
    }
}

pin_project! {
    /// A stream whose bytes are counted by its [`Meter`].
    pub(crate) struct Metered<I> {
        #[pin]
        io: I,
        meter: Meter,
    }
}

impl<I: AsyncRead> AsyncRead for Metered<I> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.project();
        let before = buf.filled().len();
        let r = this.io.poll_read(cx, buf);
        this.meter
            .read
            .increment((buf.filled().len() - before) as u64);
        r
    }
}

impl<I: AsyncWrite> AsyncWrite for Metered<I> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, b: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.project();
        let r = this.io.poll_write(cx, b);
        if let Poll::Ready(Ok(n)) = &r {
            this.meter.written.increment(*n as u64);
        }
        r
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().io.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().io.poll_shutdown(cx)
    }
}

/// Copies bytes both ways until both directions have ended (each end's EOF is passed on as a
/// half-close), or either fails. Memory stays bounded: each direction holds one buffer, and a
/// side that does not read holds back the other.
pub(crate) async fn splice<A, B>(mut a: A, mut b: B) -> io::Result<(u64, u64)>
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    tokio::io::copy_bidirectional(&mut a, &mut b).await
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    use super::*;

    #[tokio::test]
    async fn splice_passes_bytes_and_half_closes_both_ways() {
        let (mut client, near) = tokio::io::duplex(1024);
        let (far, mut server) = tokio::io::duplex(1024);
        let spliced = tokio::spawn(splice(
            Meter::new(Direction::Outbound, "test").wrap(near),
            far,
        ));
        let payload: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let sent = payload.clone();
        let writer = tokio::spawn(async move {
            client.write_all(&sent).await.unwrap();
            client.shutdown().await.unwrap();
            let mut back = Vec::new();
            client.read_to_end(&mut back).await.unwrap();
            back
        });
        let mut got = Vec::new();
        server.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, payload);
        server.write_all(b"done").await.unwrap();
        server.shutdown().await.unwrap();
        assert_eq!(writer.await.unwrap(), b"done");
        let (up, down) = spliced.await.unwrap().unwrap();
        assert_eq!((up, down), (payload.len() as u64, 4));
    }
}
