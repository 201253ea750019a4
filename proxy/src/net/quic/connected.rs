//! A client UDP socket connected to its one peer, that tells when the peer refuses: the kernel
//! turns the ICMP "port unreachable" of a host whose sidecar died into `ECONNREFUSED` on the next
//! send, where quinn would log it and go on waiting for its idle timeout. Here the refusal is
//! kept (see [`Refusal`]) so the connector can end the connection at once, as a TCP reset ends an
//! HTTP/2 connection. Otherwise the socket does what quinn's own tokio socket does.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, ready};

use quinn::udp::{RecvMeta, Transmit, UdpSocketState};
use quinn::{AsyncUdpSocket, UdpPoller};
use tokio::io::Interest;
use tokio::sync::Notify;

/// Whether the peer refused a datagram; `refused().await` waits for it.
#[derive(Default)]
pub(crate) struct Refusal {
    seen: AtomicBool,
    notify: Notify,
}

impl Refusal {
    /// Resolves once the peer has refused a datagram.
    pub(crate) async fn refused(&self) {
        loop {
            let notified = self.notify.notified();
            if self.seen.load(Ordering::Acquire) {
                return;
            }
            notified.await;
        }
    }

    fn set(&self) {
        if !self.seen.swap(true, Ordering::AcqRel) {
            self.notify.notify_waiters();
        }
    }
}

/// The socket: tokio's UDP socket with quinn's state for segmentation offload and ECN.
pub(crate) struct Connected {
    io: tokio::net::UdpSocket,
    state: UdpSocketState,
    refusal: Arc<Refusal>,
}

impl fmt::Debug for Connected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connected").field("io", &self.io).finish()
    }
}

impl Connected {
    /// A socket on an ephemeral port connected to `peer`, and where its refusals show.
    pub(crate) fn to(peer: SocketAddr) -> io::Result<(Arc<Self>, Arc<Refusal>)> {
        let local: SocketAddr = match peer {
            SocketAddr::V4(_) => (std::net::Ipv4Addr::UNSPECIFIED, 0).into(),
            SocketAddr::V6(_) => (std::net::Ipv6Addr::UNSPECIFIED, 0).into(),
        };
        let socket = std::net::UdpSocket::bind(local)?;
        socket.connect(peer)?;
        socket.set_nonblocking(true)?;
        let state = UdpSocketState::new((&socket).into())?;
        let refusal = Arc::new(Refusal::default());
        let io = tokio::net::UdpSocket::from_std(socket)?;
        let connected = Self {
            io,
            state,
            refusal: refusal.clone(),
        };
        Ok((Arc::new(connected), refusal))
    }
}

impl AsyncUdpSocket for Connected {
    fn create_io_poller(self: Arc<Self>) -> Pin<Box<dyn UdpPoller>> {
        Box::pin(Writable(self))
    }

    fn try_send(&self, transmit: &Transmit) -> io::Result<()> {
        let sent = self.io.try_io(Interest::WRITABLE, || {
            self.state.try_send((&self.io).into(), transmit)
        });
        match sent {
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                self.refusal.set();
                Ok(())
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Err(e),
            // As quinn's own socket: a datagram that could not be sent is lost, and QUIC's loss
            // recovery sends it again (EMSGSIZE, for one, is expected of path MTU probes).
            Err(e) => {
                tracing::trace!(error = %e, "a QUIC datagram was not sent");
                Ok(())
            }
            Ok(()) => Ok(()),
        }
    }

    fn poll_recv(
        &self,
        cx: &mut Context,
        bufs: &mut [io::IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> Poll<io::Result<usize>> {
        loop {
            ready!(self.io.poll_recv_ready(cx))?;
            match self.io.try_io(Interest::READABLE, || {
                self.state.recv((&self.io).into(), bufs, meta)
            }) {
                Ok(n) => return Poll::Ready(Ok(n)),
                // The refusal may show on a read rather than a send. Other errors are passed
                // over, as quinn's own socket does.
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => self.refusal.set(),
                Err(_) => {}
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.io.local_addr()
    }

    fn may_fragment(&self) -> bool {
        self.state.may_fragment()
    }

    fn max_transmit_segments(&self) -> usize {
        self.state.max_gso_segments()
    }

    fn max_receive_segments(&self) -> usize {
        self.state.gro_segments()
    }
}

#[derive(Debug)]
struct Writable(Arc<Connected>);

impl UdpPoller for Writable {
    fn poll_writable(self: Pin<&mut Self>, cx: &mut Context) -> Poll<io::Result<()>> {
        self.0.io.poll_send_ready(cx)
    }
}
