//! Reading a request body whole, for the routes that need all of it (state, publish, metadata):
//! a declared length over the limit is refused before a byte is read (so `Expect: 100-continue`
//! gets no `100 Continue`), the read stops at the limit, and a body that pauses for longer than
//! the inactivity timeout is abandoned.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, Request, StatusCode, header};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper::body::Incoming;

use super::ApiState;
use crate::errors::ApiError;

/// The `Content-Length` a request declares, if it declares one that parses.
pub(crate) fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers.get(header::CONTENT_LENGTH)?.to_str().ok()?.trim().parse().ok()
}

/// The body of `req`, at most `limit` bytes (or the sidecar's `--max-body-size`, if smaller).
pub(super) async fn read_body(s: &ApiState, req: Request<Incoming>, limit: u64) -> Result<Bytes, ApiError> {
    read_limited(req, limit.min(s.max_body_size), s.body_idle_timeout).await
}

async fn read_limited<B>(req: Request<B>, limit: u64, idle: Duration) -> Result<Bytes, ApiError>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    if declared_length(req.headers()).is_some_and(|n| n > limit) {
        return Err(too_large(limit));
    }
    let mut body = std::pin::pin!(Limited::new(req.into_body(), usize::try_from(limit).unwrap_or(usize::MAX)));
    let mut first: Option<Bytes> = None;
    let mut rest = BytesMut::new();
    loop {
        let frame = match tokio::time::timeout(idle, body.frame()).await {
            Err(_) => {
                return Err(ApiError::new(
                    StatusCode::REQUEST_TIMEOUT,
                    "ERR_BODY_READ",
                    format!("the request body paused for longer than {}s", idle.as_secs_f64()),
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
        let Ok(data) = frame.into_data() else { continue };
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
    ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "ERR_BODY_READ", format!("the body is larger than {limit} bytes"))
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use futures_util::StreamExt as _;
    use http_body::Frame;
    use http_body_util::StreamBody;

    use super::*;

    fn chunks(parts: &[&'static str]) -> Request<impl http_body::Body<Data = Bytes, Error = Infallible>> {
        let frames: Vec<_> = parts.iter().map(|p| Ok(Frame::data(Bytes::from_static(p.as_bytes())))).collect();
        Request::new(StreamBody::new(futures_util::stream::iter(frames)))
    }

    #[tokio::test]
    async fn frames_are_joined_and_one_frame_is_kept_whole() {
        let idle = Duration::from_secs(1);
        assert_eq!(read_limited(chunks(&["ab", "c", "de"]), 10, idle).await.unwrap(), "abcde");
        assert_eq!(read_limited(chunks(&["abc"]), 10, idle).await.unwrap(), "abc");
        assert_eq!(read_limited(chunks(&[]), 10, idle).await.unwrap(), "");
    }

    #[tokio::test]
    async fn a_declared_or_actual_excess_is_413() {
        let idle = Duration::from_secs(1);
        let mut req = chunks(&["abc"]);
        req.headers_mut().insert(header::CONTENT_LENGTH, "10000000000".parse().unwrap());
        assert_eq!(read_limited(req, 10, idle).await.unwrap_err().status, StatusCode::PAYLOAD_TOO_LARGE);
        let e = read_limited(chunks(&["abcdef", "ghijk"]), 10, idle).await.unwrap_err();
        assert_eq!((e.status, e.code), (StatusCode::PAYLOAD_TOO_LARGE, "ERR_BODY_READ"));
        assert_eq!(read_limited(chunks(&["abcde", "fghij"]), 10, idle).await.unwrap(), "abcdefghij");
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_that_stops_arriving_is_408() {
        let frames = futures_util::stream::iter([Ok::<_, Infallible>(Frame::data(Bytes::from_static(b"a")))])
            .chain(futures_util::stream::pending());
        let req = Request::new(StreamBody::new(frames));
        let e = read_limited(req, 10, Duration::from_secs(5)).await.unwrap_err();
        assert_eq!(e.status, StatusCode::REQUEST_TIMEOUT);
    }
}
