//! App health checks (`--enable-app-health-check`): the sidecar probes the app — `GET` of
//! `--app-health-check-path` for an HTTP app, `AppCallbackHealthCheck/HealthCheck` for a gRPC
//! one — every `--app-health-probe-interval`, each probe bounded by `--app-health-probe-timeout`.
//! The app starts unhealthy and is healthy from its first passing probe; `--app-health-threshold`
//! failed probes in a row make it unhealthy again. While it is, invocations of it fail at once
//! and its subscriptions stop pulling (`Subscriber::follow`); both resume when a probe passes.
//!
//! Probes carry no API token and pass no concurrency limit, as in daprd.

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::config::AppHealthCheck;
use crate::telemetry::metrics::{APP_HEALTHY, HEALTH_PROBE_LATENCY, HEALTH_PROBES};
use crate::to_app::channel::AppChannel;

/// Whether the app is healthy, for whoever needs to know or to wait for a change.
pub(crate) struct AppHealth {
    healthy: watch::Sender<bool>,
    /// The checks, when enabled.
    pub(crate) check: Option<AppHealthCheck>,
}

impl AppHealth {
    /// Without checks the app is healthy for good; with them, unhealthy until a probe passes.
    pub(crate) fn new(check: Option<AppHealthCheck>) -> Arc<Self> {
        let healthy = check.is_none();
        APP_HEALTHY.gauge(&[]).set(f64::from(u8::from(healthy)));
        Arc::new(Self {
            healthy: watch::Sender::new(healthy),
            check,
        })
    }

    pub(crate) fn is_healthy(&self) -> bool {
        *self.healthy.borrow()
    }

    /// Follows changes.
    pub(crate) fn watch(&self) -> watch::Receiver<bool> {
        self.healthy.subscribe()
    }

    fn set(&self, healthy: bool, reason: &str) {
        let changed = self.healthy.send_if_modified(|h| {
            let changed = *h != healthy;
            *h = healthy;
            changed
        });
        if changed {
            APP_HEALTHY.gauge(&[]).set(f64::from(u8::from(healthy)));
            if healthy {
                tracing::info!("the app is healthy");
            } else {
                tracing::warn!(
                    reason,
                    "the app is unhealthy: invocations fail and subscriptions stop pulling"
                );
            }
        }
    }
}

/// Probes the app until `stop`, the first probe at once.
pub(crate) async fn probe(
    health: Arc<AppHealth>,
    app: AppChannel,
    app_id: String,
    stop: CancellationToken,
) {
    let Some(check) = health.check.clone() else {
        return;
    };
    tracing::info!(
        path = %check.path, interval = ?check.interval, timeout = ?check.timeout,
        threshold = check.threshold, "app health probes starting"
    );
    let mut tick = tokio::time::interval(check.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failures = 0u32;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = stop.cancelled() => return,
        }
        let started = Instant::now();
        let result = app.probe(&check.path, check.timeout).await;
        let status = match &result {
            Ok(s) | Err((Some(s), _)) => s.to_string(),
            Err((None, _)) => "500".to_owned(),
        };
        let labels = [("app_id", app_id.clone()), ("status", status)];
        HEALTH_PROBES.counter(&labels).increment(1);
        HEALTH_PROBE_LATENCY
            .histogram(&labels)
            .record(started.elapsed().as_secs_f64() * 1000.0);
        match result {
            Ok(_) => {
                failures = 0;
                health.set(true, "");
            }
            Err((_, reason)) => {
                failures = failures.saturating_add(1);
                tracing::debug!(failures, reason, "app health probe failed");
                if failures >= check.threshold {
                    health.set(false, &reason);
                }
            }
        }
    }
}
