//! Test support for end-to-end tests: real `outrider` processes, a recording app, an HTTP client
//! and raw TCP, all on loopback. Waits are bounded; nothing sleeps for a fixed time to "let
//! things settle".

pub mod actor_app;
pub mod app;
pub mod ca;
pub mod client;
pub mod collector;
pub mod https;
pub mod intercept;
pub mod jwt;
pub mod mesh;
pub mod netns;
pub mod pki;
pub mod pubsub;
pub mod servers;
pub mod sidecar;
pub mod state;

pub use actor_app::{ActorApp, Callback, Turns};
pub use app::{FNV_START, FakeApp, Recorded, fnv};
pub use client::{JSON, Reply, TEXT, http_client, publish, raw_request, send};
pub use collector::{CollectedSpan, Collector};
pub use servers::{MariaDb, Mosquitto, Nats, Postgres, RabbitMq, RedisServer};
pub use sidecar::{
    Mesh, Sidecar, SidecarBuilder, WELL_KNOWN_PORTS, binary, outrider_command, shared_binary,
    sum_metric, wait_registered,
};

use std::future::Future;
use std::time::Duration;

/// A name no other run uses: `what`, this process's id and the time in nanoseconds.
pub fn unique(what: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{what}-{}-{nanos}", std::process::id())
}

/// A TCP port for a test to hand to a process it starts.
///
/// Ports come from below the kernel's ephemeral range, so no outbound connection (ours, a
/// broker's, another test's) can take one between this call and the child's bind, and each is
/// claimed with a lock file under the temp dir that this process holds until it exits, so
/// concurrent test processes never hand out the same port. Within the block, a port must also be
/// bindable on the wildcard and loopback addresses right now.
pub fn free_port() -> u16 {
    static HELD: std::sync::Mutex<Vec<(u16, std::fs::File)>> = std::sync::Mutex::new(Vec::new());
    let mut held = HELD.lock().unwrap_or_else(|p| p.into_inner());
    let (low, high) = claimable_ports();
    let span = u32::from(high - low);
    let dir = std::env::temp_dir().join("outrider-test-ports");
    std::fs::create_dir_all(&dir).expect("creating the port lock dir");
    // Start at a different place in each process so concurrent tests rarely contend on a lock.
    let seed = std::process::id().wrapping_mul(2_654_435_761) ^ held.len() as u32;
    for step in 0..span {
        let port = low + ((seed.wrapping_add(step.wrapping_mul(7919))) % span) as u16;
        if held.iter().any(|(p, _)| *p == port) {
            continue;
        }
        let Ok(file) = std::fs::File::create(dir.join(port.to_string())) else {
            continue;
        };
        if file.try_lock().is_err() {
            continue;
        }
        let bindable = ["0.0.0.0", "127.0.0.1"]
            .iter()
            .all(|ip| std::net::TcpListener::bind((*ip, port)).is_ok());
        if bindable {
            held.push((port, file));
            return port;
        }
    }
    panic!("no free port in {low}..{high}");
}

/// The block of ports tests claim from: the 8000 ports just below the ephemeral range (the
/// kernel never picks these for outbound connections).
fn claimable_ports() -> (u16, u16) {
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .next()
                .and_then(|n| n.parse::<u16>().ok())
        })
        .unwrap_or(32768);
    let high = ephemeral_low.max(10_000);
    (high - 8000, high)
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
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
