//! Subscriptions follow the app's health: while it fails its checks they stop pulling (the
//! broker keeps what was not acknowledged, and redelivers it), and they subscribe again when
//! it passes one. Deliveries already in flight when the app turns unhealthy finish, or fail and
//! stay with the broker, within the grace period.

use std::sync::atomic::Ordering;
use std::time::Duration;

use outrider_blocks::pubsub::Subscription;
use tokio::sync::watch;

use super::{SubState, Subscriber};

impl Subscriber {
    /// Pauses and resumes with the app's health until the sidecar stops.
    pub(crate) async fn follow(self, mut healthy: watch::Receiver<bool>, grace: Duration) {
        loop {
            tokio::select! {
                changed = healthy.changed() => if changed.is_err() { return },
                () = self.stop.cancelled() => return,
            }
            let now = *healthy.borrow_and_update();
            if now {
                self.resume().await;
            } else {
                self.pause(grace, false).await;
            }
        }
    }

    /// Stops every live subscription; nothing more is pulled until [`resume`](Self::resume)
    /// (never again when `for_good`: a blocked shutdown).
    pub(crate) async fn pause(&self, grace: Duration, for_good: bool) {
        let live: Vec<Subscription> = {
            let mut live = self.live.lock().unwrap_or_else(|p| p.into_inner());
            if for_good {
                self.held.store(true, Ordering::Release);
            }
            if self.paused.swap(true, Ordering::AcqRel) {
                return;
            }
            self.epoch.fetch_add(1, Ordering::AcqRel);
            std::mem::take(&mut *live)
        };
        let prepared = self
            .prepared
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        {
            let mut listed = self.listed.lock().unwrap_or_else(|p| p.into_inner());
            for p in &prepared {
                if let Some(l) = p.index.and_then(|i| listed.get_mut(i))
                    && matches!(l.state, SubState::Active | SubState::Retrying(_))
                {
                    l.state = SubState::Paused;
                }
            }
        }
        tracing::info!(
            subscriptions = prepared.len(),
            for_good,
            "subscriptions paused"
        );
        futures_util::future::join_all(live.into_iter().map(|s| s.stop(grace))).await;
    }

    /// Subscribes again to everything paused; nothing to do unless paused (and not for good).
    pub(crate) async fn resume(&self) {
        let epoch = {
            let _live = self.live.lock().unwrap_or_else(|p| p.into_inner());
            if self.held.load(Ordering::Acquire) || !self.paused.swap(false, Ordering::AcqRel) {
                return;
            }
            self.epoch.fetch_add(1, Ordering::AcqRel) + 1
        };
        let prepared = self
            .prepared
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        tracing::info!(
            subscriptions = prepared.len(),
            "the app is healthy: subscriptions resume"
        );
        for p in prepared {
            if self.stop.is_cancelled() {
                return;
            }
            self.subscribe(p, epoch).await;
        }
    }
}
