//! One connection's watch: what it has been doing, and the deadlines that close it.
//!
//! Three parts share an [`Activity`]: [`Watched`] wraps the socket (below TLS-free HTTP parsing,
//! above TLS) and sees bytes arrive and writes block; [`Tracked`] wraps the service and counts
//! requests from their head to the end of their response body; [`TrackedBody`] notices a
//! response the peer stops taking. [`Watch::run`] drives the connection and closes it when:
//!
//! - no request head completed within the head timeout of accept (silent connections, a TLS
//!   handshake or an HTTP/2 preface that never finishes, a head dripped a byte at a time: the
//!   framing guard holds partial heads below hyper, so hyper's own header timer never starts);
//! - a later HTTP/1 head started but did not complete within the head timeout;
//! - the peer stopped reading: a write stayed blocked, or a response body was not asked for its
//!   first frame or the next one, for the stall timeout (HTTP/2 flow control with a zero window
//!   never blocks the socket, so the body is watched too);
//! - nothing was in flight for the idle timeout — gracefully: HTTP/2 GOAWAY, HTTP/1 close.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use hyper_util::server::graceful::GracefulConnection;
use pin_project_lite::pin_project;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::Limits;

mod tracked;

pub(crate) use tracked::Tracked;

/// The largest frame a response body hands on at once. What the peer has not taken stays here,
/// where a stall is visible, rather than in the HTTP/2 send buffer, where it is not.
const MAX_FRAME: usize = 16 * 1024;

const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// `Activity::sniffed` once the first bytes differed from the preface.
const NOT_H2: usize = usize::MAX;

/// What one connection has been doing. Times are milliseconds since `born`, plus one, so that
/// zero can mean "not set".
#[derive(Debug)]
pub(crate) struct Activity {
    born: Instant,
    /// Requests between their head and the end of their response body.
    in_flight: AtomicUsize,
    /// A request arrived, or an HTTP/2 preface.
    served: AtomicBool,
    /// The connection speaks HTTP/2 (its first bytes were the preface).
    h2: AtomicBool,
    /// How many leading bytes matched the HTTP/2 preface; past its length, sniffing is over.
    sniffed: AtomicUsize,
    /// When the last request in flight ended.
    idle_since: AtomicU64,
    /// When bytes of an HTTP/1 head arrived with nothing in flight.
    head_since: AtomicU64,
    /// The framing guard holds the start of an HTTP/1 head (see [`Activity::partial_head`]).
    partial_head: AtomicBool,
    /// When a write to the peer last returned `Pending` without a write succeeding since.
    blocked_since: AtomicU64,
    /// When bytes were last written to the peer.
    written_at: AtomicU64,
    /// Response bodies waiting for the peer to take their first or next frame: (id, since when).
    /// Few at a time, so a list (its capacity kept) beats a map.
    stalled: Mutex<Vec<(u64, u64)>>,
    next_body: AtomicU64,
}

impl Activity {
    fn new() -> Self {
        Self {
            born: Instant::now(),
            in_flight: AtomicUsize::new(0),
            served: AtomicBool::new(false),
            h2: AtomicBool::new(false),
            sniffed: AtomicUsize::new(0),
            idle_since: AtomicU64::new(1),
            head_since: AtomicU64::new(0),
            partial_head: AtomicBool::new(false),
            blocked_since: AtomicU64::new(0),
            written_at: AtomicU64::new(1),
            stalled: Mutex::new(Vec::new()),
            next_body: AtomicU64::new(0),
        }
    }

    fn stamp(&self) -> u64 {
        u64::try_from(self.born.elapsed().as_millis()).unwrap_or(u64::MAX - 1) + 1
    }

    fn at(&self, stamp: u64) -> Instant {
        self.born + Duration::from_millis(stamp.saturating_sub(1))
    }

    fn request_started(&self) {
        self.served.store(true, Ordering::Relaxed);
        self.head_since.store(0, Ordering::Relaxed);
        self.in_flight.fetch_add(1, Ordering::AcqRel);
    }

    fn request_ended(&self) {
        if self.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            let now = self.stamp();
            self.idle_since.store(now, Ordering::Relaxed);
            // The next head's first bytes came while this request was in flight (pipelined):
            // its clock starts now, as if they had come now.
            if self.partial_head.load(Ordering::Relaxed) {
                self.head_since.store(now, Ordering::Relaxed);
            }
        }
    }

    /// Whether the framing guard, after its latest read, holds the start of a head that has
    /// not completed. Bytes that arrive with nothing in flight start the head clock by
    /// themselves ([`Activity::read`]); this covers those that arrived during a request.
    pub(crate) fn partial_head(&self, held: bool) {
        self.partial_head.store(held, Ordering::Relaxed);
    }

    /// Counts work that outlives its request's response as in flight until the guard drops:
    /// a tunnel lives as long as its stream, and the connection carrying it is not idle.
    pub(crate) fn hold(self: &Arc<Self>) -> Holding {
        self.request_started();
        Holding(self.clone())
    }

    /// Bytes arrived from the peer.
    fn read(&self, bytes: &[u8]) {
        let sniffed = self.sniffed.load(Ordering::Relaxed);
        if sniffed < H2_PREFACE.len() {
            let want = &H2_PREFACE[sniffed..];
            let n = want.len().min(bytes.len());
            if bytes[..n] == want[..n] {
                self.sniffed.store(sniffed + n, Ordering::Relaxed);
                if sniffed + n == H2_PREFACE.len() {
                    self.h2.store(true, Ordering::Relaxed);
                    self.served.store(true, Ordering::Relaxed);
                }
            } else {
                self.sniffed.store(NOT_H2, Ordering::Relaxed);
            }
        }
        // HTTP/1 only (sniffing ruled the preface out): bytes with nothing in flight are a head.
        if self.sniffed.load(Ordering::Relaxed) == NOT_H2
            && self.in_flight.load(Ordering::Acquire) == 0
            && self.head_since.load(Ordering::Relaxed) == 0
        {
            self.head_since.store(self.stamp(), Ordering::Relaxed);
        }
    }

    fn write_done(&self, pending: bool, wrote: bool) {
        if wrote {
            self.written_at.store(self.stamp(), Ordering::Relaxed);
        }
        let blocked = self.blocked_since.load(Ordering::Relaxed);
        match (pending, blocked) {
            (true, 0) => self.blocked_since.store(self.stamp(), Ordering::Relaxed),
            (false, b) if b != 0 => self.blocked_since.store(0, Ordering::Relaxed),
            _ => {}
        }
    }

    fn stall(&self) -> u64 {
        let id = self.next_body.fetch_add(1, Ordering::Relaxed);
        let since = self.stamp();
        self.stalled
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((id, since));
        id
    }

    fn unstall(&self, id: u64) {
        let mut stalled = self.stalled.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(i) = stalled.iter().position(|(sid, _)| *sid == id) {
            stalled.swap_remove(i);
        }
    }

    /// What the connection's deadlines say at `now`.
    fn verdict(&self, limits: &Limits, now: Instant) -> Verdict {
        let mut next = now + limits.head_timeout.min(limits.stall_timeout);
        let mut expired = None;
        let mut check = |deadline: Instant, why: &'static str| {
            if deadline <= now {
                expired.get_or_insert(why);
            } else {
                next = next.min(deadline);
            }
        };
        if !self.served.load(Ordering::Relaxed) {
            check(
                self.born + limits.head_timeout,
                "no request head within the head timeout",
            );
        }
        match self.head_since.load(Ordering::Relaxed) {
            0 => {}
            t => check(
                self.at(t) + limits.head_timeout,
                "a request head did not complete in time",
            ),
        }
        match self.blocked_since.load(Ordering::Relaxed) {
            0 => {}
            t => check(
                self.at(t) + limits.stall_timeout,
                "the peer stopped reading",
            ),
        }
        let oldest_stall = self
            .stalled
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(_, t)| *t)
            .min();
        if let Some(t) = oldest_stall {
            let stalled_until = self.at(t) + limits.stall_timeout;
            if limits.multiplexed {
                // One caller pausing its stream must not fail every other caller's: only a
                // connection that sent nothing at all for as long is closed.
                let silent_until =
                    self.at(self.written_at.load(Ordering::Relaxed)) + limits.stall_timeout;
                check(
                    stalled_until.max(silent_until),
                    "the peer stopped taking responses",
                );
            } else {
                check(stalled_until, "the peer stopped taking a response");
            }
        }
        if let Some(why) = expired {
            return Verdict::Expired(why);
        }
        if self.served.load(Ordering::Relaxed) && self.in_flight.load(Ordering::Acquire) == 0 {
            let idle_until = self.at(self.idle_since.load(Ordering::Relaxed)) + limits.idle_timeout;
            if idle_until <= now {
                return Verdict::Idle;
            }
            next = next.min(idle_until);
        }
        Verdict::Wait(next)
    }
}

/// Work in flight on a connection beyond a request (see [`Activity::hold`]).
pub(crate) struct Holding(Arc<Activity>);

impl Drop for Holding {
    fn drop(&mut self) {
        self.0.request_ended();
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    /// Nothing is due before this instant.
    Wait(Instant),
    /// Nothing in flight for the idle timeout: close gracefully.
    Idle,
    /// A deadline passed: close now.
    Expired(&'static str),
}

/// One accepted connection's slot under its listener's cap, its limits and its activity.
pub(crate) struct Watch {
    listener: &'static str,
    limits: Limits,
    activity: Arc<Activity>,
    _slot: OwnedSemaphorePermit,
}

impl Watch {
    pub(crate) fn new(listener: &'static str, limits: Limits, slot: OwnedSemaphorePermit) -> Self {
        Self {
            listener,
            limits,
            activity: Arc::new(Activity::new()),
            _slot: slot,
        }
    }

    /// Wraps the connection's stream so that the watch sees its bytes.
    pub(crate) fn io<I>(&self, io: I) -> Watched<I> {
        Watched {
            io,
            activity: self.activity.clone(),
        }
    }

    pub(crate) fn activity(&self) -> Arc<Activity> {
        self.activity.clone()
    }

    /// How long a TLS handshake may take: it counts against the head timeout.
    pub(crate) fn handshake_deadline(&self) -> Instant {
        self.activity.born + self.limits.head_timeout
    }

    /// Drives `conn` until it ends, a deadline closes it, or `stop` asks it to finish.
    pub(crate) async fn run<C>(self, conn: C, stop: CancellationToken)
    where
        C: GracefulConnection,
        C::Error: std::fmt::Display,
    {
        tokio::pin!(conn);
        let mut closing: Option<Instant> = None;
        loop {
            let now = Instant::now();
            let wake = match self.activity.verdict(&self.limits, now) {
                Verdict::Wait(at) => at,
                Verdict::Expired(why) => return self.closed(why),
                Verdict::Idle => match closing {
                    None => {
                        conn.as_mut().graceful_shutdown();
                        closing = Some(now);
                        now + self.limits.head_timeout
                    }
                    Some(since) if now >= since + self.limits.head_timeout => {
                        return self.closed("idle");
                    }
                    Some(since) => since + self.limits.head_timeout,
                },
            };
            tokio::select! {
                ended = conn.as_mut() => {
                    if let Err(e) = ended {
                        tracing::debug!(listener = self.listener, error = %e, "connection ended with an error");
                    }
                    return;
                }
                () = tokio::time::sleep_until(wake) => {}
                () = stop.cancelled(), if closing.is_none() => {
                    conn.as_mut().graceful_shutdown();
                    closing = Some(Instant::now());
                }
            }
        }
    }

    /// Logs and counts a connection closed by a deadline.
    pub(crate) fn closed(&self, why: &'static str) {
        tracing::debug!(listener = self.listener, why, "closing a connection");
        crate::telemetry::metrics::CONNECTIONS_CLOSED
            .counter(&[
                ("listener", self.listener.to_owned()),
                ("reason", why.to_owned()),
            ])
            .increment(1);
    }
}

pin_project! {
    /// A stream whose reads and blocked writes are reported to the connection's [`Activity`].
    pub(crate) struct Watched<IO> {
        #[pin]
        io: IO,
        activity: Arc<Activity>,
    }
}

impl<IO: AsyncRead> AsyncRead for Watched<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.project();
        let before = buf.filled().len();
        ready!(this.io.poll_read(cx, buf))?;
        let got = &buf.filled()[before..];
        if !got.is_empty() {
            this.activity.read(got);
        }
        Poll::Ready(Ok(()))
    }
}

impl<IO: AsyncWrite> AsyncWrite for Watched<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.project();
        let r = this.io.poll_write(cx, buf);
        this.activity
            .write_done(r.is_pending(), matches!(r, Poll::Ready(Ok(n)) if n > 0));
        r
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.project();
        let r = this.io.poll_flush(cx);
        this.activity.write_done(r.is_pending(), false);
        r
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().io.poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.project();
        let r = this.io.poll_write_vectored(cx, bufs);
        this.activity
            .write_done(r.is_pending(), matches!(r, Poll::Ready(Ok(n)) if n > 0));
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

#[cfg(test)]
mod tests;
