//! The ordered stop of a running sidecar.
//!
//! On SIGTERM, SIGINT, `POST /v1.0/shutdown`, the gRPC `Shutdown` RPC or the app child exiting: not ready → out of the
//! registry (mDNS: goodbye) → drain delay → stop accepting mesh traffic and finish in-flight
//! requests within the grace period → stop deliveries → SIGTERM the child and wait → close the
//! HTTP and gRPC APIs, then the admin listener → flush the last spans → exit with the child's status (or 0).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use nix::sys::signal::Signal;
use tokio::process::Child;
use tokio_util::sync::CancellationToken;

use super::child;
use super::listen::Listeners;
use super::wire::Discovery;
use crate::api::Health;
use crate::telemetry::Exporting;
use crate::to_app::health::AppHealth;
use crate::to_app::subscriptions::Subscriber;

/// How long a stopping sidecar keeps accepting mesh traffic after leaving the registry.
const DRAIN_DELAY: Duration = Duration::from_secs(1);

/// Everything a serving sidecar holds that the stop sequence releases, in its order.
pub(crate) struct Running {
    pub(super) grace: Duration,
    pub(super) health: Arc<Health>,
    /// Cancelled by `POST /v1.0/shutdown` and the `Shutdown` RPC, and by the stop sequence once
    /// deliveries stopped (streaming subscriptions end with it).
    pub(super) shutdown: CancellationToken,
    pub(super) discovery: Discovery,
    pub(super) listeners: Listeners,
    pub(super) subscriber: Option<Subscriber>,
    /// The actor runtime, whose actors are deactivated before the app stops.
    pub(super) actors: Arc<crate::api::actors::Actors>,
    pub(super) child: Option<Child>,
    pub(super) span_export: Option<Exporting>,
    /// `--dapr-block-shutdown-duration`, and the app's health that may end it early.
    pub(super) block: Option<(Duration, Arc<AppHealth>)>,
    /// Keeps the policy files watched for as long as the sidecar runs.
    pub(super) _policy_watch: outrider_policy::files::Watching,
}

impl Running {
    /// Waits for a reason to stop, then stops in order; returns the exit code and whether the
    /// app exited by itself (rather than being stopped).
    pub(crate) async fn run(
        mut self,
        stop: impl Future<Output = ()>,
    ) -> anyhow::Result<(i32, bool)> {
        let exited = tokio::select! {
            () = stop => None,
            () = self.shutdown.cancelled() => None,
            status = wait_child(&mut self.child) => {
                let status = status?;
                tracing::info!(%status, "the app exited");
                Some(child::exit_code(status))
            }
        };
        // An exit during a blocked shutdown follows a stop asked for: not one by itself.
        let by_itself = exited.is_some();
        let exited = match (exited, self.block.clone()) {
            (None, Some((longest, app))) => self.block_shutdown(longest, &app).await?,
            (exited, _) => exited,
        };
        Ok((self.stop(exited).await?, by_itself))
    }

    /// daprd's `--dapr-block-shutdown-duration`: subscriptions stop for good, and everything
    /// else keeps serving the app until the duration ends, the app turns unhealthy or it
    /// exits (its exit code is returned then).
    async fn block_shutdown(
        &mut self,
        longest: Duration,
        app: &AppHealth,
    ) -> anyhow::Result<Option<i32>> {
        tracing::info!(?longest, "shutdown blocked while the app finishes its work");
        if let Some(subscriber) = &self.subscriber {
            subscriber.pause(self.grace, true).await;
        }
        let mut healthy = app.watch();
        tokio::select! {
            () = tokio::time::sleep(longest) => tracing::info!("the shutdown block ended"),
            _ = healthy.wait_for(|h| !*h) => tracing::info!("the app is unhealthy: shutting down"),
            status = wait_child(&mut self.child) => {
                let status = status?;
                tracing::info!(%status, "the app exited");
                return Ok(Some(child::exit_code(status)));
            }
        }
        Ok(None)
    }

    /// The stop sequence; `exited` is the child's exit code if it has exited already.
    async fn stop(self, exited: Option<i32>) -> anyhow::Result<i32> {
        // 1. Not ready, and out of the registry: peers stop choosing this instance.
        tracing::info!("shutting down: not ready, deregistering, draining");
        self.health.draining.store(true, Ordering::Release);
        self.discovery.registration.remove();
        if let Some(mdns) = &self.discovery.mdns {
            mdns.withdraw().await;
        }
        // 2. Peers that picked us a moment ago still arrive: keep serving them briefly.
        tokio::time::sleep(DRAIN_DELAY.min(self.grace)).await;
        // Actors: calls under way drain, the app deactivates each, and the claims are freed at
        // once for the hosts that take over; the mesh still serves the calls forwarded here
        // meanwhile, and reminders and jobs stop firing here.
        self.actors.stop.cancel();
        if let Some(host) = self.actors.host() {
            host.stop().await;
        }
        // 3. No new inbound work; in-flight requests finish within the grace period.
        if let Err(e) = self.listeners.mesh.stop().await {
            tracing::warn!(error = %e, "mesh listener failed");
        }
        stop_all(self.listeners.intercept_in, "transparent inbound").await;
        if let Some(t) = &self.listeners.transparent {
            t.drain_inbound(self.grace).await;
        }
        // Stop deliveries: what is in flight finishes within the grace period, the rest stays
        // with the broker.
        if let Some(subscriber) = &self.subscriber {
            subscriber.shut_down(self.grace).await;
        }
        // Streaming subscriptions on the gRPC API end too (whatever asked for the stop).
        self.shutdown.cancel();
        // 4. Then the app, which may still use its API while it stops.
        let exit_code = match (self.child, exited) {
            (_, Some(code)) => code,
            (Some(c), None) => stop_child(c, self.grace).await?,
            (None, None) => 0,
        };
        // 5. The APIs, then the admin listener (readiness stays observable until the end).
        tokio::join!(
            stop_all(self.listeners.api, "HTTP API"),
            stop_all(self.listeners.grpc, "gRPC API")
        );
        stop_all(self.listeners.intercept_out, "transparent outbound").await;
        if let Some(t) = &self.listeners.transparent {
            t.drain_outbound(self.grace).await;
        }
        let _ = self.listeners.admin.stop().await;
        // 6. The spans of the last requests.
        if let Some(exporting) = self.span_export {
            exporting.finish(Duration::from_secs(2)).await;
        }
        tracing::info!(exit_code, "stopped");
        Ok(exit_code)
    }
}

/// SIGTERMs the app whatever stopped us (an app started in the background may ignore SIGINT)
/// and waits for it, killing it if it outlasts the grace period.
async fn stop_child(mut c: Child, grace: Duration) -> anyhow::Result<i32> {
    child::signal(&c, Signal::SIGTERM);
    Ok(
        match tokio::time::timeout(grace + Duration::from_secs(5), c.wait()).await {
            Ok(status) => child::exit_code(status?),
            Err(_) => {
                tracing::warn!("the app did not exit in time; killing it");
                c.kill().await.ok();
                child::exit_code(c.wait().await?)
            }
        },
    )
}

async fn wait_child(child: &mut Option<Child>) -> std::io::Result<std::process::ExitStatus> {
    match child {
        Some(c) => c.wait().await,
        None => std::future::pending().await,
    }
}

/// Stops listeners together (each drains within the grace period at the same time).
async fn stop_all(listeners: Vec<super::listen::Serving>, what: &str) {
    let stopped = futures_util::future::join_all(listeners.into_iter().map(|l| l.stop())).await;
    for e in stopped.into_iter().filter_map(Result::err) {
        tracing::warn!(error = %e, "{what} listener failed");
    }
}
