//! A guard below the HTTP/1 parser that refuses ambiguous framing (security rules 1 and 6).
//!
//! hyper resolves some ambiguities silently: with both `Content-Length` and `Transfer-Encoding`
//! it drops the length and decodes chunks, and it cuts a request target at `#`. A sidecar must
//! refuse such requests instead, because another hop may resolve them differently (request
//! smuggling, policy bypass). This guard reads the inbound byte stream ahead of hyper, holds
//! each request head until it is complete (hyper waits for the whole head anyway), checks it,
//! and follows the body's framing byte by byte without buffering it. A refused head is replaced
//! by one hyper cannot parse, so hyper answers `400 Bad Request` and closes the connection.
//! A connection that starts with the HTTP/2 preface is passed through untouched.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf, BytesMut};
use pin_project_lite::pin_project;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Longest request head the guard holds; longer ones are passed on for hyper to refuse (431).
const MAX_HEAD: usize = 64 * 1024;
/// What hyper receives instead of a refused head: a method that is not a token.
const POISON: &[u8] = b"\x01 / HTTP/1.1\r\n\r\n";
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Collecting a request head.
    Head,
    /// `n` body bytes of a Content-Length body remain.
    Body(u64),
    /// Reading a chunk-size line.
    ChunkSize,
    /// `n` bytes of chunk data remain, then CRLF.
    ChunkData(u64),
    /// Reading trailer lines until an empty one.
    Trailers,
    /// Not HTTP/1 (h2 preface) or already refused: pass bytes through.
    Passthrough,
}

/// Why a head was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    ContentLengthAndTransferEncoding,
    ConflictingContentLength,
    Fragment,
}

/// The framing state machine: pure, fed with input bytes, writing what hyper may read.
#[derive(Debug)]
pub(crate) struct Framing {
    state: State,
    /// A head (or chunk-size / trailer line) being collected.
    line: BytesMut,
    refused: Option<Refusal>,
}

impl Default for Framing {
    fn default() -> Self {
        Self { state: State::Head, line: BytesMut::new(), refused: None }
    }
}

impl Framing {
    /// Why the connection was refused, if it was.
    pub(crate) fn refused(&self) -> Option<Refusal> {
        self.refused
    }

    /// Consumes `input`, appending to `out` what the HTTP parser may see.
    pub(crate) fn feed(&mut self, mut input: &[u8], out: &mut BytesMut) {
        while !input.is_empty() {
            match self.state {
                State::Passthrough => {
                    if self.refused.is_none() {
                        out.extend_from_slice(input);
                    }
                    return;
                }
                State::Head => {
                    let (taken, done) = take_until(&mut self.line, input, b"\r\n\r\n");
                    input = &input[taken..];
                    if self.line.starts_with(H2_PREFACE) {
                        self.state = State::Passthrough;
                        out.extend_from_slice(&self.line.split());
                        continue;
                    }
                    if !done {
                        if self.line.len() > MAX_HEAD {
                            self.state = State::Passthrough;
                            out.extend_from_slice(&self.line.split());
                        }
                        continue;
                    }
                    let head = self.line.split();
                    match check_head(&head) {
                        Ok(next) => {
                            out.extend_from_slice(&head);
                            self.state = next;
                        }
                        Err(Refused::Refuse(r)) => {
                            out.extend_from_slice(POISON);
                            self.refused = Some(r);
                            self.state = State::Passthrough;
                            return;
                        }
                        // Unparsable: hyper will refuse it itself.
                        Err(Refused::Unparsable) => {
                            out.extend_from_slice(&head);
                            self.state = State::Passthrough;
                        }
                    }
                }
                State::Body(n) => {
                    let k = usize::try_from(n).unwrap_or(usize::MAX).min(input.len());
                    out.extend_from_slice(&input[..k]);
                    input = &input[k..];
                    let left = n - k as u64;
                    self.state = if left == 0 { State::Head } else { State::Body(left) };
                }
                State::ChunkSize => {
                    let (taken, done) = take_until(&mut self.line, input, b"\n");
                    out.extend_from_slice(&input[..taken]);
                    input = &input[taken..];
                    if done {
                        let line = self.line.split();
                        self.state = match parse_chunk_size(&line) {
                            Some(0) => State::Trailers,
                            // The data is followed by CRLF.
                            Some(n) => State::ChunkData(n.saturating_add(2)),
                            None => State::Passthrough,
                        };
                    } else if self.line.len() > 1024 {
                        self.state = State::Passthrough;
                    }
                }
                State::ChunkData(n) => {
                    let k = usize::try_from(n).unwrap_or(usize::MAX).min(input.len());
                    out.extend_from_slice(&input[..k]);
                    input = &input[k..];
                    let left = n - k as u64;
                    self.state = if left == 0 { State::ChunkSize } else { State::ChunkData(left) };
                }
                State::Trailers => {
                    let (taken, done) = take_until(&mut self.line, input, b"\n");
                    out.extend_from_slice(&input[..taken]);
                    input = &input[taken..];
                    if done {
                        let line = self.line.split();
                        if line.as_ref() == b"\r\n" || line.as_ref() == b"\n" {
                            self.state = State::Head;
                        }
                    } else if self.line.len() > MAX_HEAD {
                        self.state = State::Passthrough;
                    }
                }
            }
        }
    }
}

enum Refused {
    Refuse(Refusal),
    Unparsable,
}

/// Checks a complete head and says how its body is framed.
fn check_head(head: &[u8]) -> Result<State, Refused> {
    let mut headers = [httparse::EMPTY_HEADER; 128];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(head) {
        Ok(httparse::Status::Complete(_)) => {}
        _ => return Err(Refused::Unparsable),
    }
    if req.path.is_some_and(|p| p.contains('#')) {
        return Err(Refused::Refuse(Refusal::Fragment));
    }
    let mut length: Option<&[u8]> = None;
    let mut chunked = None;
    for h in req.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-length") {
            let v = h.value.trim_ascii();
            match length {
                Some(prev) if prev != v => return Err(Refused::Refuse(Refusal::ConflictingContentLength)),
                _ => length = Some(v),
            }
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            let last = h.value.rsplit(|b| *b == b',').next().unwrap_or_default().trim_ascii();
            chunked = Some(last.eq_ignore_ascii_case(b"chunked"));
        }
    }
    match (length, chunked) {
        (Some(_), Some(_)) => Err(Refused::Refuse(Refusal::ContentLengthAndTransferEncoding)),
        (None, Some(true)) => Ok(State::ChunkSize),
        // A non-chunked transfer coding: hyper refuses it.
        (None, Some(false)) => Ok(State::Passthrough),
        (Some(v), None) => match std::str::from_utf8(v).ok().and_then(|s| s.parse::<u64>().ok()) {
            Some(0) => Ok(State::Head),
            Some(n) => Ok(State::Body(n)),
            None => Ok(State::Passthrough),
        },
        (None, None) => Ok(State::Head),
    }
}

/// Appends to `buf` from `input` up to and including the first `delim` that completes in `buf`.
/// Returns how many input bytes were taken and whether `delim` was found.
fn take_until(buf: &mut BytesMut, input: &[u8], delim: &[u8]) -> (usize, bool) {
    let before = buf.len();
    // The delimiter may straddle the previous input and this one.
    let search_from = before.saturating_sub(delim.len() - 1);
    buf.extend_from_slice(input);
    match buf[search_from..].windows(delim.len()).position(|w| w == delim) {
        Some(pos) => {
            let end = search_from + pos + delim.len();
            buf.truncate(end);
            (end - before, true)
        }
        None => (input.len(), false),
    }
}

fn parse_chunk_size(line: &[u8]) -> Option<u64> {
    let line = line.strip_suffix(b"\n")?;
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let size = line.split(|b| *b == b';').next()?.trim_ascii();
    if size.is_empty() || size.len() > 16 {
        return None;
    }
    u64::from_str_radix(std::str::from_utf8(size).ok()?, 16).ok()
}

pin_project! {
    /// An HTTP/1 connection with its inbound bytes passed through [`Framing`].
    pub(crate) struct Guarded<IO> {
        #[pin]
        io: IO,
        framing: Framing,
        ready: BytesMut,
        scratch: Box<[u8]>,
    }
}

impl<IO> Guarded<IO> {
    pub(crate) fn new(io: IO) -> Self {
        Self { io, framing: Framing::default(), ready: BytesMut::new(), scratch: vec![0; 16 * 1024].into_boxed_slice() }
    }
}

impl<IO: AsyncRead> AsyncRead for Guarded<IO> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let mut this = self.project();
        loop {
            if !this.ready.is_empty() {
                let n = this.ready.len().min(buf.remaining());
                buf.put_slice(&this.ready[..n]);
                this.ready.advance(n);
                return Poll::Ready(Ok(()));
            }
            if let Some(why) = this.framing.refused() {
                tracing::info!(?why, "refused an ambiguous HTTP/1 request");
                return Poll::Ready(Ok(())); // EOF after the poisoned head
            }
            if this.framing.state == State::Passthrough {
                return this.io.as_mut().poll_read(cx, buf);
            }
            let mut rb = ReadBuf::new(this.scratch);
            ready!(this.io.as_mut().poll_read(cx, &mut rb))?;
            let got = rb.filled();
            if got.is_empty() {
                // EOF: hand over whatever partial head there is; hyper decides.
                let rest = this.framing.line.split();
                if rest.is_empty() {
                    return Poll::Ready(Ok(()));
                }
                this.ready.extend_from_slice(&rest);
                this.framing.state = State::Passthrough;
                continue;
            }
            this.framing.feed(got, this.ready);
        }
    }
}

impl<IO: AsyncWrite> AsyncWrite for Guarded<IO> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.project().io.poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().io.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().io.poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.project().io.poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

#[cfg(test)]
mod tests;
