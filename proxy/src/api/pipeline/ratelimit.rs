//! `middleware.http.ratelimit`: at most `maxRequestsPerSecond` requests (default 100, a burst
//! of as many) per client and path; past it, `429` with daprd's body. The client is the
//! connection's address: `X-Forwarded-For` and `X-Real-IP` are the caller's to write, and a
//! caller writing a new one each time would get a fresh allowance each time.
//! The buckets are bounded: past [`MAX_BUCKETS`] the full ones are dropped first, then the
//! oldest, so a client sending to endless paths cannot grow the table.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Mutex;
use std::time::Instant;

use http::{HeaderValue, Response, StatusCode};
use outrider_blocks::ComponentError;

use crate::net::http::Body;

/// Buckets kept at most.
const MAX_BUCKETS: usize = 16 * 1024;
/// The longest path kept as part of a key.
const MAX_PATH: usize = 256;

pub(crate) struct RateLimit {
    /// Tokens per second, and the most a bucket holds.
    rate: f64,
    burst: f64,
    buckets: Mutex<HashMap<(IpAddr, String), Bucket>>,
}

#[derive(Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl RateLimit {
    pub(crate) fn new(
        md: &outrider_blocks::component::Settings,
    ) -> Result<Self, Vec<ComponentError>> {
        let rate = match md.get("maxrequestspersecond").map(|v| v.trim()) {
            None | Some("") => 100.0,
            Some(v) => match v.parse::<f64>() {
                Ok(r) if r.is_finite() && r > 0.0 => r,
                _ => {
                    return Err(vec![ComponentError {
                        field: "spec.metadata.maxRequestsPerSecond".into(),
                        message: format!("{v:?} is not a number of requests above 0"),
                    }]);
                }
            },
        };
        Ok(Self {
            rate,
            burst: rate.max(1.0),
            buckets: Mutex::new(HashMap::new()),
        })
    }

    /// `None` lets the request on; `Some(429)` when its client has used its requests.
    pub(super) fn admit(&self, path: &str, peer: Option<IpAddr>) -> Option<Response<Body>> {
        let client = peer.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        let mut key_path = path;
        if key_path.len() > MAX_PATH {
            key_path = &key_path[..key_path.floor_char_boundary(MAX_PATH)];
        }
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if buckets.len() >= MAX_BUCKETS && !buckets.contains_key(&(client, key_path.to_owned())) {
            self.evict(&mut buckets, now);
        }
        let b = buckets
            .entry((client, key_path.to_owned()))
            .or_insert(Bucket {
                tokens: self.burst,
                at: now,
            });
        b.tokens = (b.tokens + now.duration_since(b.at).as_secs_f64() * self.rate).min(self.burst);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            return None;
        }
        drop(buckets);
        let mut rsp = super::text(
            StatusCode::TOO_MANY_REQUESTS,
            "You have reached maximum request limit.",
        );
        let limit = format!("{}", self.rate);
        if let Ok(v) = HeaderValue::try_from(limit.as_str()) {
            rsp.headers_mut().insert("x-rate-limit-limit", v.clone());
            rsp.headers_mut().insert("ratelimit-limit", v);
        }
        rsp.headers_mut()
            .insert("x-rate-limit-duration", HeaderValue::from_static("1"));
        rsp.headers_mut()
            .insert("ratelimit-remaining", HeaderValue::from_static("0"));
        Some(rsp)
    }

    /// Makes room: buckets that have filled up again say nothing a new one would not; failing
    /// those, the least recently used half goes.
    fn evict(&self, buckets: &mut HashMap<(IpAddr, String), Bucket>, now: Instant) {
        let (rate, burst) = (self.rate, self.burst);
        buckets.retain(|_, b| b.tokens + now.duration_since(b.at).as_secs_f64() * rate < burst);
        if buckets.len() >= MAX_BUCKETS {
            let mut ages: Vec<Instant> = buckets.values().map(|b| b.at).collect();
            ages.sort_unstable();
            let cut = ages[ages.len() / 2];
            buckets.retain(|_, b| b.at > cut);
        }
    }
}
