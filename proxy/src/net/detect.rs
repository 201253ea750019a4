//! Protocol detection for intercepted connections: the first bytes a client sends say whether it
//! speaks HTTP/1, HTTP/2 with prior knowledge, TLS, or something else (opaque TCP).
//!
//! [`detect`] is pure and looks at no more than [`PEEK_LIMIT`] bytes. [`sniff`] reads them from
//! a socket within a deadline and hands back a stream that replays them ([`Rewind`]), so what
//! follows sees the connection from its first byte. A client that sends nothing within the
//! deadline is opaque: protocols whose server speaks first (SMTP, MySQL, …) must not wait on a
//! request that never comes.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use pin_project_lite::pin_project;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, ReadBuf};

/// The most bytes detection needs: the HTTP/2 preface is the longest thing it compares.
pub(crate) const PEEK_LIMIT: usize = 24;

const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// The methods that make a connection HTTP/1; anything else (extension methods included) is
/// carried as opaque bytes.
const METHODS: [&[u8]; 9] = [
    b"GET", b"HEAD", b"POST", b"PUT", b"DELETE", b"CONNECT", b"OPTIONS", b"TRACE", b"PATCH",
];

/// What an intercepted connection speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Protocol {
    /// A request line of a standard method: HTTP/1.x (a malformed rest is answered 400 by the
    /// HTTP server, not passed on).
    Http1,
    /// The HTTP/2 connection preface (h2c with prior knowledge).
    H2,
    /// A TLS record carrying a handshake: the app's own TLS, carried as it is.
    Tls,
    /// Anything else.
    Opaque,
}

/// What the bytes so far say.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    Known(Protocol),
    /// Too few bytes to tell.
    NeedMore,
}

/// Detects the protocol from the first bytes of a connection.
pub(crate) fn detect(buf: &[u8]) -> Verdict {
    use Protocol::*;
    use Verdict::*;
    let Some(&first) = buf.first() else {
        return NeedMore;
    };
    if first == 0x16 {
        // A handshake record: version 3.x (SSL 3.0 up to TLS 1.3's legacy 3.1–3.3).
        return match buf {
            [_] => NeedMore,
            [_, 3] => NeedMore,
            [_, 3, minor, ..] if *minor <= 4 => Known(Tls),
            _ => Known(Opaque),
        };
    }
    let n = buf.len().min(H2_PREFACE.len());
    if buf[..n] == H2_PREFACE[..n] {
        return if n == H2_PREFACE.len() {
            Known(H2)
        } else {
            NeedMore
        };
    }
    // HTTP/1 servers skip empty lines before a request line: so does detection, or an app could
    // pass HTTP off as opaque bytes with a leading CRLF.
    let buf = match buf.iter().position(|b| *b != b'\r' && *b != b'\n') {
        Some(start) => &buf[start..],
        None => return NeedMore,
    };
    let mut prefix_of_one = false;
    for m in METHODS {
        if buf.len() <= m.len() {
            prefix_of_one |= m.starts_with(buf);
        } else if buf.starts_with(m) && buf[m.len()] == b' ' {
            return Known(Http1);
        }
    }
    if prefix_of_one {
        NeedMore
    } else {
        Known(Opaque)
    }
}

/// Reads from `io` until the protocol is known, EOF, or `timeout`; returns the protocol (opaque
/// when the client stayed silent or closed early) and the bytes read, which the caller must
/// send on first (see [`Rewind`]). `None`: the client closed before sending anything.
pub(crate) async fn sniff<I>(io: &mut I, timeout: Duration) -> io::Result<Option<(Protocol, Bytes)>>
where
    I: AsyncRead + Unpin,
{
    let mut buf = BytesMut::with_capacity(PEEK_LIMIT);
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Verdict::Known(p) = detect(&buf) {
            return Ok(Some((p, buf.freeze())));
        }
        if buf.len() >= PEEK_LIMIT {
            // Nothing but empty lines so far.
            return Ok(Some((Protocol::Opaque, buf.freeze())));
        }
        let mut chunk = [0u8; PEEK_LIMIT];
        let room = PEEK_LIMIT - buf.len();
        match tokio::time::timeout_at(deadline, io.read(&mut chunk[..room])).await {
            // Silent past the deadline: a protocol whose server speaks first.
            Err(_) => return Ok(Some((Protocol::Opaque, buf.freeze()))),
            Ok(Ok(0)) if buf.is_empty() => return Ok(None),
            Ok(Ok(0)) => return Ok(Some((Protocol::Opaque, buf.freeze()))),
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
            Ok(Err(e)) => return Err(e),
        }
    }
}

pin_project! {
    /// A stream that first yields bytes already read from it.
    #[derive(Debug)]
    pub(crate) struct Rewind<I> {
        prefix: Bytes,
        #[pin]
        inner: I,
    }
}

impl<I> Rewind<I> {
    pub(crate) fn new(prefix: Bytes, inner: I) -> Self {
        Self { prefix, inner }
    }
}

impl<I: AsyncRead> AsyncRead for Rewind<I> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.project();
        if !this.prefix.is_empty() {
            let n = this.prefix.len().min(buf.remaining());
            buf.put_slice(&this.prefix[..n]);
            this.prefix.advance(n);
            return Poll::Ready(Ok(()));
        }
        this.inner.poll_read(cx, buf)
    }
}

impl<I: AsyncWrite> AsyncWrite for Rewind<I> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, b: &[u8]) -> Poll<io::Result<usize>> {
        self.project().inner.poll_write(cx, b)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().inner.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().inner.poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.project().inner.poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Protocol::*;
    use Verdict::*;

    #[test]
    fn first_bytes_decide() {
        let cases: &[(&[u8], Verdict)] = &[
            (b"", NeedMore),
            (b"G", NeedMore),
            (b"GET", NeedMore),
            (b"GET ", Known(Http1)),
            (b"GET /orders HTTP/1.1\r\n", Known(Http1)),
            (b"OPTIONS * HTTP/1.1\r\n", Known(Http1)),
            (b"DELETE /x", Known(Http1)),
            (b"PATCH /x", Known(Http1)),
            // Empty lines before the request line are skipped, as HTTP/1 servers do.
            (b"\r\nGET /x", Known(Http1)),
            (b"\r\n\r\n", NeedMore),
            (b"\n\nPOST ", Known(Http1)),
            (b"\r\nX", Known(Opaque)),
            // A malformed rest is the HTTP server's to answer with 400.
            (b"GET /x HTTX/9\r\n", Known(Http1)),
            // Not a method, or a method without its space.
            (b"GETX /", Known(Opaque)),
            (b"get / HTTP/1.1", Known(Opaque)),
            (b"PROPFIND / HTTP/1.1", Known(Opaque)),
            (b"*1\r\n$4\r\nPING\r\n", Known(Opaque)),
            (b"\x00\x00", Known(Opaque)),
            // The HTTP/2 preface, whole or in part.
            (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", Known(H2)),
            (b"PRI * HTTP/2.0\r\n", NeedMore),
            (b"PRI * HTTP/1.1\r\n", Known(Opaque)),
            (b"P", NeedMore),
            (b"PO", NeedMore),
            (b"PU", NeedMore),
            // TLS handshake records.
            (b"\x16", NeedMore),
            (b"\x16\x03", NeedMore),
            (b"\x16\x03\x01\x02\x00", Known(Tls)),
            (b"\x16\x03\x03", Known(Tls)),
            (b"\x16\x03\x09", Known(Opaque)),
            (b"\x16\x02\x01", Known(Opaque)),
        ];
        for (bytes, want) in cases {
            assert_eq!(detect(bytes), *want, "{:?}", String::from_utf8_lossy(bytes));
        }
    }

    #[test]
    fn every_verdict_comes_within_the_peek_limit() {
        // Whatever the bytes, detection never asks for more than PEEK_LIMIT of them (but for
        // nothing except empty lines, which `sniff` calls opaque at the limit).
        for seed in 0u8..=255 {
            let buf: Vec<u8> = (0..PEEK_LIMIT as u8)
                .map(|i| seed.wrapping_mul(31).wrapping_add(i))
                .collect();
            assert!(matches!(detect(&buf), Known(_)), "{buf:?}");
        }
        assert_eq!(detect(&H2_PREFACE[..PEEK_LIMIT]), Known(H2));
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_client_is_opaque_after_the_deadline() {
        let (client, mut server) = tokio::io::duplex(64);
        let sniffing =
            tokio::spawn(async move { sniff(&mut server, Duration::from_secs(1)).await.unwrap() });
        let (p, bytes) = sniffing.await.unwrap().unwrap();
        assert_eq!((p, bytes.len()), (Opaque, 0));
        // A slow preamble that stops half-way is opaque too, with its bytes kept.
        let (mut c2, mut s2) = tokio::io::duplex(64);
        tokio::io::AsyncWriteExt::write_all(&mut c2, b"GE")
            .await
            .unwrap();
        let (p, bytes) = sniff(&mut s2, Duration::from_secs(1))
            .await
            .unwrap()
            .unwrap();
        assert_eq!((p, &bytes[..]), (Opaque, &b"GE"[..]));
        drop((client, c2));
    }

    #[tokio::test]
    async fn the_bytes_read_are_replayed() {
        let (mut client, mut server) = tokio::io::duplex(64);
        tokio::io::AsyncWriteExt::write_all(&mut client, b"GET /a HTTP/1.1\r\n\r\n")
            .await
            .unwrap();
        drop(client);
        let (p, prefix) = sniff(&mut server, Duration::from_secs(5))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(p, Http1);
        let mut all = Vec::new();
        Rewind::new(prefix, server)
            .read_to_end(&mut all)
            .await
            .unwrap();
        assert_eq!(all, b"GET /a HTTP/1.1\r\n\r\n");
        // A client that closes at once sent nothing at all.
        let (client, mut server) = tokio::io::duplex(64);
        drop(client);
        assert!(
            sniff(&mut server, Duration::from_secs(5))
                .await
                .unwrap()
                .is_none()
        );
    }
}
