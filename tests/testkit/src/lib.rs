//! Test support for end-to-end tests: real `outrider` processes, a recording app, an HTTP client
//! and raw TCP, all on loopback. Waits are bounded; nothing sleeps for a fixed time to "let
//! things settle".

pub mod app;
pub mod client;
pub mod mesh;
pub mod servers;
pub mod sidecar;
pub mod state;

pub use app::{FNV_START, FakeApp, Recorded, fnv};
pub use client::{Reply, http_client, raw_request, send};
pub use servers::{Postgres, RedisServer};
pub use sidecar::{Mesh, Sidecar, SidecarBuilder, binary, sum_metric, wait_registered};

use std::future::Future;
use std::time::Duration;

/// A TCP port that was free a moment ago and that this process has not handed out before (the
/// kernel may offer a just-released port again, and a test often asks for several at once).
pub fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut given = GIVEN.lock().unwrap_or_else(|p| p.into_inner());
    loop {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("no free port");
        if !given.contains(&port) {
            given.push(port);
            return port;
        }
    }
}

/// Polls `check` every 50 ms until it returns `Some`, for at most `limit`; panics with `what`
/// otherwise.
pub async fn wait_until<T, F, Fut>(limit: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out after {limit:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
