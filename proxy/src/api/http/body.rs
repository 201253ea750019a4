//! Reading a request body whole, for the routes that need all of it (state, publish, metadata):
//! a declared length over the limit is refused before a byte is read (so `Expect: 100-continue`
//! gets no `100 Continue`), the read stops at the limit, and a body that pauses for longer than
//! the inactivity timeout, or takes longer than [`WHOLE_BODY_PAUSES`] such pauses in all, is
//! abandoned.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, Request, StatusCode, header};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper::body::Incoming;

use crate::api::ApiState;

/// A whole body may take at most this many inactivity timeouts (60 s by default): a sender that
/// drips a byte just inside each one cannot hold the request for days.
pub(in crate::api) const WHOLE_BODY_PAUSES: u32 = 6;
use crate::errors::ApiError;

/// The `Content-Length` a request declares, if it declares one that parses.
pub(crate) fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// The body of `req`, at most `limit` bytes (or the sidecar's `--max-body-size`, if smaller).
pub(super) async fn read_body(
    s: &ApiState,
    req: Request<Incoming>,
    limit: u64,
) -> Result<Bytes, ApiError> {
    read_limited(req, limit.min(s.max_body_size), s.body_idle_timeout).await
}

/// `req` with its body read whole, under the same limits as [`read_body`]: for requests
/// passed on with their headers (actor calls).
pub(crate) async fn read_request<B>(
    req: Request<B>,
    limit: u64,
    idle: Duration,
) -> Result<Request<Bytes>, ApiError>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let (mut parts, body) = req.into_parts();
    let mut only_body = Request::new(body);
    *only_body.headers_mut() = parts.headers.clone();
    let bytes = read_limited(only_body, limit, idle).await?;
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.remove(header::TRANSFER_ENCODING);
    Ok(Request::from_parts(parts, bytes))
}

/// Refuses a request whose declared body is over the limit, without waiting for the body. A
/// client that sends its body anyway is still sending it when the answer comes: the body is read
/// and dropped in the background (at most [`DRAIN_MAX`] bytes for [`DRAIN_TIME`]), so that the
/// client reads the 413 instead of failing on a reset connection. A client that asked
/// `Expect: 100-continue` has sent nothing, and gets no `100 Continue` (the body is never read).
pub(crate) fn refuse_declared<B>(req: Request<B>)
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
{
    let expects = req
        .headers()
        .get(header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    if expects {
        return;
    }
    let body = req.into_body();
    tokio::spawn(async move {
        let mut body = std::pin::pin!(body);
        let mut drained = 0u64;
        let drain = async {
            while let Some(Ok(frame)) = body.frame().await {
                drained += frame.data_ref().map_or(0, |d| d.len() as u64);
                if drained > DRAIN_MAX {
                    break;
                }
            }
        };
        let _ = tokio::time::timeout(DRAIN_TIME, drain).await;
    });
}

/// How much of a refused body is read and dropped, and for how long at most.
const DRAIN_MAX: u64 = 16 << 20;
const DRAIN_TIME: Duration = Duration::from_secs(5);

async fn read_limited<B>(req: Request<B>, limit: u64, idle: Duration) -> Result<Bytes, ApiError>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    if declared_length(req.headers()).is_some_and(|n| n > limit) {
        refuse_declared(req);
        return Err(too_large(limit));
    }
    let mut body = std::pin::pin!(Limited::new(
        req.into_body(),
        usize::try_from(limit).unwrap_or(usize::MAX)
    ));
    let deadline = tokio::time::Instant::now() + idle * WHOLE_BODY_PAUSES;
    let mut first: Option<Bytes> = None;
    let mut rest = BytesMut::new();
    loop {
        let wait_until = deadline.min(tokio::time::Instant::now() + idle);
        let frame = match tokio::time::timeout_at(wait_until, body.frame()).await {
            Err(_) if wait_until == deadline => {
                return Err(ApiError::new(
                    StatusCode::REQUEST_TIMEOUT,
                    "ERR_BODY_READ",
                    format!(
                        "the request body took longer than {}s",
                        (idle * WHOLE_BODY_PAUSES).as_secs_f64()
                    ),
                ));
            }
            Err(_) => {
                return Err(ApiError::new(
                    StatusCode::REQUEST_TIMEOUT,
                    "ERR_BODY_READ",
                    format!(
                        "the request body paused for longer than {}s",
                        idle.as_secs_f64()
                    ),
                ));
            }
            Ok(None) => break,
            Ok(Some(Ok(frame))) => frame,
            Ok(Some(Err(e))) if e.is::<LengthLimitError>() => return Err(too_large(limit)),
            Ok(Some(Err(_))) => {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "ERR_BODY_READ",
                    "the request body is malformed or was cut off",
                ));
            }
        };
        let Ok(data) = frame.into_data() else {
            continue;
        };
        // One frame (the common case) is kept as it came, without a copy.
        match &first {
            None if rest.is_empty() => first = Some(data),
            _ => {
                if let Some(f) = first.take() {
                    rest.extend_from_slice(&f);
                }
                rest.extend_from_slice(&data);
            }
        }
    }
    Ok(first.unwrap_or_else(|| rest.freeze()))
}

fn too_large(limit: u64) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "ERR_BODY_READ",
        format!("the body is larger than {limit} bytes"),
    )
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use futures_util::StreamExt as _;
    use http_body::Frame;
    use http_body_util::StreamBody;

    use super::*;

    fn chunks(
        parts: &[&'static str],
    ) -> Request<impl http_body::Body<Data = Bytes, Error = Infallible>> {
        let frames: Vec<_> = parts
            .iter()
            .map(|p| Ok(Frame::data(Bytes::from_static(p.as_bytes()))))
            .collect();
        Request::new(StreamBody::new(futures_util::stream::iter(frames)))
    }

    #[tokio::test]
    async fn frames_are_joined_and_one_frame_is_kept_whole() {
        let idle = Duration::from_secs(1);
        assert_eq!(
            read_limited(chunks(&["ab", "c", "de"]), 10, idle)
                .await
                .unwrap(),
            "abcde"
        );
        assert_eq!(
            read_limited(chunks(&["abc"]), 10, idle).await.unwrap(),
            "abc"
        );
        assert_eq!(read_limited(chunks(&[]), 10, idle).await.unwrap(), "");
    }

    #[tokio::test]
    async fn a_declared_or_actual_excess_is_413() {
        let idle = Duration::from_secs(1);
        let mut req = chunks(&["abc"]);
        req.headers_mut()
            .insert(header::CONTENT_LENGTH, "10000000000".parse().unwrap());
        assert_eq!(
            read_limited(req, 10, idle).await.unwrap_err().status,
            StatusCode::PAYLOAD_TOO_LARGE
        );
        let e = read_limited(chunks(&["abcdef", "ghijk"]), 10, idle)
            .await
            .unwrap_err();
        assert_eq!(
            (e.status, e.code),
            (StatusCode::PAYLOAD_TOO_LARGE, "ERR_BODY_READ")
        );
        assert_eq!(
            read_limited(chunks(&["abcde", "fghij"]), 10, idle)
                .await
                .unwrap(),
            "abcdefghij"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_dripped_just_inside_each_pause_still_ends() {
        let drip = futures_util::stream::unfold((), |()| async {
            tokio::time::sleep(Duration::from_secs(4)).await;
            Some((
                Ok::<_, Infallible>(Frame::data(Bytes::from_static(b"a"))),
                (),
            ))
        });
        let started = tokio::time::Instant::now();
        let e = read_limited(
            Request::new(StreamBody::new(drip)),
            1 << 20,
            Duration::from_secs(5),
        )
        .await
        .unwrap_err();
        assert_eq!(e.status, StatusCode::REQUEST_TIMEOUT);
        assert_eq!(started.elapsed(), Duration::from_secs(30));
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_that_stops_arriving_is_408() {
        let frames = futures_util::stream::iter([Ok::<_, Infallible>(Frame::data(
            Bytes::from_static(b"a"),
        ))])
        .chain(futures_util::stream::pending());
        let req = Request::new(StreamBody::new(frames));
        let e = read_limited(req, 10, Duration::from_secs(5))
            .await
            .unwrap_err();
        assert_eq!(e.status, StatusCode::REQUEST_TIMEOUT);
    }
}
