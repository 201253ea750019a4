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
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::{Buf, BytesMut};
use pin_project_lite::pin_project;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::net::serve::conn::Activity;

/// Longest request head the guard holds; longer ones are passed on for hyper to refuse (431).
const MAX_HEAD: usize = 64 * 1024;
/// Buffers up to this size are kept between requests; larger ones are given back.
const KEPT_CAPACITY: usize = 4096;
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
    /// An HTTP/2 connection (prior knowledge): pass bytes through.
    Passthrough,
    /// Refused: nothing more is read.
    Refused,
}

/// Why a connection was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Both `Content-Length` and `Transfer-Encoding`: two framings that hops may pick apart.
    ContentLengthAndTransferEncoding,
    /// Several `Content-Length` values that disagree.
    ConflictingContentLength,
    /// A `#` fragment in the request target, which hyper would cut off silently.
    Fragment,
    /// A head the guard cannot judge (unparsable, too large, an unknown transfer coding or a
    /// bad length): refused rather than left to another parser.
    Unjudgeable,
    /// Chunked framing the guard cannot follow, detected mid-body.
    BadChunk,
}

/// Longest chunk-size line (extensions included) and trailer section followed; hyper allows
/// the same 16 KiB of extensions.
const MAX_LINE: usize = 16 * 1024 + 64;

/// The framing state machine: pure, fed with input bytes, writing what hyper may read.
#[derive(Debug)]
pub struct Framing {
    state: State,
    /// A head (or chunk-size / trailer line) being collected.
    line: BytesMut,
    /// Bytes of trailers seen for the current request.
    trailer_bytes: usize,
    /// No request has completed yet: only then may the HTTP/2 preface appear.
    first: bool,
    refused: Option<Refusal>,
}

impl Default for Framing {
    fn default() -> Self {
        Self {
            state: State::Head,
            line: BytesMut::new(),
            trailer_bytes: 0,
            first: true,
            refused: None,
        }
    }
}

impl Framing {
    /// Why the connection was refused, if it was.
    pub fn refused(&self) -> Option<Refusal> {
        self.refused
    }

    /// Whether it holds the start of a request head that has not completed.
    pub fn holds_partial_head(&self) -> bool {
        self.state == State::Head && !self.line.is_empty()
    }

    /// Whether a refusal came after the head was handed on, so it must end the connection with
    /// an error rather than a poisoned head.
    fn refused_mid_body(&self) -> bool {
        self.refused == Some(Refusal::BadChunk)
    }

    fn refuse(&mut self, why: Refusal, out: &mut BytesMut) {
        if why != Refusal::BadChunk {
            out.extend_from_slice(POISON);
        }
        self.refused = Some(why);
        self.state = State::Refused;
        self.line.clear();
    }

    /// Consumes `input`, appending to `out` what the HTTP parser may see.
    pub fn feed(&mut self, mut input: &[u8], out: &mut BytesMut) {
        while !input.is_empty() {
            let rest = match self.state {
                State::Refused => None,
                State::Passthrough => {
                    out.extend_from_slice(input);
                    None
                }
                State::Head => self.head(input, out),
                State::Body(n) => {
                    let (rest, left) = pass(n, input, out);
                    self.state = if left == 0 {
                        State::Head
                    } else {
                        State::Body(left)
                    };
                    Some(rest)
                }
                State::ChunkSize => self.chunk_size(input, out),
                State::ChunkData(n) => {
                    let (rest, left) = pass(n, input, out);
                    self.state = if left == 0 {
                        State::ChunkSize
                    } else {
                        State::ChunkData(left)
                    };
                    Some(rest)
                }
                State::Trailers => self.trailers(input, out),
            };
            match rest {
                Some(rest) => input = rest,
                None => return,
            }
        }
    }

    /// Holds a request head until it is complete, then judges it. Returns what follows the
    /// head, or `None` when nothing more is to be read now (refused, or all input held).
    fn head<'a>(&mut self, mut input: &'a [u8], out: &mut BytesMut) -> Option<&'a [u8]> {
        // Empty lines before a request line are allowed (RFC 9112 §2.2).
        if self.line.is_empty() {
            let skip = input
                .iter()
                .take_while(|b| matches!(b, b'\r' | b'\n'))
                .count();
            out.extend_from_slice(&input[..skip]);
            input = &input[skip..];
            if input.is_empty() {
                return None;
            }
        }
        let before = self.line.len();
        let take = input.len().min(MAX_HEAD + 1 - before);
        self.line.extend_from_slice(&input[..take]);
        if self.first && self.line.starts_with(H2_PREFACE) {
            self.state = State::Passthrough;
            out.extend_from_slice(&self.line.split());
            return Some(&input[take..]);
        }
        // A head can only complete at a newline; parse only when one arrived.
        if !input[..take].contains(&b'\n') {
            if self.line.len() > MAX_HEAD {
                self.refuse(Refusal::Unjudgeable, out);
                return None;
            }
            return Some(&input[take..]);
        }
        match check_head(&self.line) {
            Judged::Partial if self.line.len() > MAX_HEAD => {
                self.refuse(Refusal::Unjudgeable, out);
                None
            }
            Judged::Partial => Some(&input[take..]),
            Judged::Refuse(why) => {
                self.refuse(why, out);
                None
            }
            Judged::Complete { len, next } => {
                // The head ends inside what was just taken: hand the rest back.
                let extra = self.line.len() - len;
                out.extend_from_slice(&self.line[..len]);
                if self.line.capacity() > KEPT_CAPACITY {
                    // A large head's buffer is not kept for the connection's life.
                    self.line = BytesMut::new();
                } else {
                    self.line.clear();
                }
                self.state = next;
                self.trailer_bytes = 0;
                self.first = false;
                Some(&input[take - extra..])
            }
        }
    }

    /// Follows a chunk-size line; the chunk's data (and its CRLF) comes next.
    fn chunk_size<'a>(&mut self, input: &'a [u8], out: &mut BytesMut) -> Option<&'a [u8]> {
        let (taken, done) = take_line(&mut self.line, input);
        out.extend_from_slice(&input[..taken]);
        if done {
            let line = self.line.split();
            match parse_chunk_size(&line) {
                Some(0) => self.state = State::Trailers,
                // The data is followed by CRLF.
                Some(n) => self.state = State::ChunkData(n.saturating_add(2)),
                None => {
                    self.refuse(Refusal::BadChunk, out);
                    return None;
                }
            }
        } else if self.line.len() > MAX_LINE {
            self.refuse(Refusal::BadChunk, out);
            return None;
        }
        Some(&input[taken..])
    }

    /// Follows the trailer section up to its empty line, within [`MAX_LINE`] bytes.
    fn trailers<'a>(&mut self, input: &'a [u8], out: &mut BytesMut) -> Option<&'a [u8]> {
        let (taken, done) = take_line(&mut self.line, input);
        out.extend_from_slice(&input[..taken]);
        self.trailer_bytes += taken;
        if self.trailer_bytes > MAX_LINE {
            self.refuse(Refusal::BadChunk, out);
            return None;
        }
        if done {
            let line = self.line.split();
            if line.as_ref() == b"\r\n" || line.as_ref() == b"\n" {
                self.state = State::Head;
            }
        }
        Some(&input[taken..])
    }
}

/// Passes up to `n` bytes of a body through; returns the input after them and what is left of
/// the `n`.
fn pass<'a>(n: u64, input: &'a [u8], out: &mut BytesMut) -> (&'a [u8], u64) {
    let k = usize::try_from(n).unwrap_or(usize::MAX).min(input.len());
    out.extend_from_slice(&input[..k]);
    (&input[k..], n - k as u64)
}

enum Judged {
    Partial,
    Complete { len: usize, next: State },
    Refuse(Refusal),
}

/// Judges a head (without leading empty lines) as far as it has arrived, and says how its body
/// is framed. Only a head httparse accepts completely is passed on.
fn check_head(buf: &[u8]) -> Judged {
    let mut headers = [httparse::EMPTY_HEADER; 128];
    let mut req = httparse::Request::new(&mut headers);
    let len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Judged::Partial,
        Err(_) => return Judged::Refuse(Refusal::Unjudgeable),
    };
    if req.path.is_some_and(|p| p.contains('#')) {
        return Judged::Refuse(Refusal::Fragment);
    }
    let mut length: Option<&[u8]> = None;
    let mut chunked = None;
    for h in req.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-length") {
            let v = h.value.trim_ascii();
            match length {
                Some(prev) if prev != v => {
                    return Judged::Refuse(Refusal::ConflictingContentLength);
                }
                _ => length = Some(v),
            }
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            let last = h
                .value
                .rsplit(|b| *b == b',')
                .next()
                .unwrap_or_default()
                .trim_ascii();
            chunked = Some(last.eq_ignore_ascii_case(b"chunked"));
        }
    }
    let next = match (length, chunked) {
        (Some(_), Some(_)) => return Judged::Refuse(Refusal::ContentLengthAndTransferEncoding),
        (None, Some(true)) => State::ChunkSize,
        (None, Some(false)) => return Judged::Refuse(Refusal::Unjudgeable),
        (Some(v), None) => match parse_length(v) {
            Some(0) => State::Head,
            Some(n) => State::Body(n),
            None => return Judged::Refuse(Refusal::Unjudgeable),
        },
        (None, None) => State::Head,
    };
    Judged::Complete { len, next }
}

/// A Content-Length value: digits only (no sign, no spaces inside), as RFC 9110 §8.6 has it.
fn parse_length(v: &[u8]) -> Option<u64> {
    if v.is_empty() || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(v).ok()?.parse().ok()
}

/// Appends to `buf` from `input` up to and including the first `\n`. Returns how many input
/// bytes were taken and whether the line is complete.
fn take_line(buf: &mut BytesMut, input: &[u8]) -> (usize, bool) {
    match input.iter().position(|b| *b == b'\n') {
        Some(i) => {
            buf.extend_from_slice(&input[..=i]);
            (i + 1, true)
        }
        None => {
            buf.extend_from_slice(input);
            (input.len(), false)
        }
    }
}

/// A chunk-size line: hex digits (leading zeros allowed, as hyper allows them), optional
/// extensions after `;`, then CRLF or LF.
fn parse_chunk_size(line: &[u8]) -> Option<u64> {
    let line = line.strip_suffix(b"\n")?;
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let size = line.split(|b| *b == b';').next()?.trim_ascii();
    if size.is_empty() || !size.iter().all(u8::is_ascii_hexdigit) {
        return None;
    }
    let significant = &size[size.iter().position(|b| *b != b'0').unwrap_or(size.len())..];
    if significant.len() > 16 {
        return None;
    }
    if significant.is_empty() {
        return Some(0);
    }
    u64::from_str_radix(std::str::from_utf8(significant).ok()?, 16).ok()
}

pin_project! {
    /// An HTTP/1 connection with its inbound bytes passed through [`Framing`]. Bytes are read
    /// into the reader's own buffer and checked from there: an idle connection holds no buffer
    /// of the guard's.
    pub(crate) struct Guarded<IO> {
        #[pin]
        io: IO,
        framing: Framing,
        ready: BytesMut,
        // Told whether a partial head is held, for its deadline.
        watch: Option<Arc<Activity>>,
    }
}

impl<IO> Guarded<IO> {
    pub(crate) fn new(io: IO) -> Self {
        Self {
            io,
            framing: Framing::default(),
            ready: BytesMut::new(),
            watch: None,
        }
    }

    /// A guarded connection whose watch learns when a partial head is held: the start of a
    /// pipelined head that arrived during a request is held here, and its deadline runs from
    /// that request's end.
    pub(crate) fn watched(io: IO, activity: Arc<Activity>) -> Self {
        Self {
            watch: Some(activity),
            ..Self::new(io)
        }
    }
}

impl<IO: AsyncRead> AsyncRead for Guarded<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let mut this = self.project();
        loop {
            if !this.ready.is_empty() {
                let n = this.ready.len().min(buf.remaining());
                buf.put_slice(&this.ready[..n]);
                this.ready.advance(n);
                if this.ready.is_empty() && this.ready.capacity() > KEPT_CAPACITY {
                    // An idle connection keeps no large buffer of the guard's.
                    *this.ready = BytesMut::new();
                }
                return Poll::Ready(Ok(()));
            }
            if let Some(why) = this.framing.refused() {
                tracing::info!(?why, "refused an ambiguous HTTP/1 request");
                if this.framing.refused_mid_body() {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "ambiguous chunked framing",
                    )));
                }
                return Poll::Ready(Ok(())); // EOF after the poisoned head
            }
            if this.framing.state == State::Passthrough {
                return this.io.as_mut().poll_read(cx, buf);
            }
            // Read into the caller's buffer, then take the bytes back out through the check.
            let before = buf.filled().len();
            ready!(this.io.as_mut().poll_read(cx, buf))?;
            if buf.filled().len() == before {
                // EOF: a partial head is dropped (hyper sees a closed connection); body bytes
                // were already handed on.
                return Poll::Ready(Ok(()));
            }
            this.framing.feed(&buf.filled()[before..], this.ready);
            buf.set_filled(before);
            if let Some(watch) = this.watch {
                watch.partial_head(this.framing.holds_partial_head());
            }
        }
    }
}

impl<IO: AsyncWrite> AsyncWrite for Guarded<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
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
