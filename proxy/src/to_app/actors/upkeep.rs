//! Keeping the host's actors right while it runs: the session renewed every second, idle actors
//! deactivated, actors whose owner is now another host moved (calls under way drain first, as the
//! type says), claims refreshed long before they expire, and every actor dropped at once if the
//! session is lost. Also the orderly stop.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use outrider_blocks::actors::claim::{CLAIM_TTL, RenewError, SESSION_RENEW, Session};
use tokio::time::Instant;

use super::{Active, ActorKey, Host, holder};
use crate::mesh::placement::Owner;

/// How often active actors are looked over.
const SCAN: Duration = Duration::from_secs(1);
/// How long the app has to answer a deactivation.
const DEACTIVATE_TIMEOUT: Duration = Duration::from_secs(10);

/// Why an actor is deactivated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Why {
    Idle,
    Moved,
    Stopping,
}

/// The host's upkeep, until it stops: the session's renewal in a task of its own, so that no
/// amount of other work delays it.
pub(super) async fn run(host: Arc<Host>) {
    tokio::spawn(renew_until_stopped(host.clone()));
    let mut scan = tokio::time::interval(SCAN);
    scan.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = host.stop.cancelled() => return,
            _ = scan.tick() => look_over(&host).await,
        }
    }
}

async fn renew_until_stopped(host: Arc<Host>) {
    let mut renew = tokio::time::interval(SESSION_RENEW);
    renew.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = host.renewal_stop.cancelled() => return,
            _ = renew.tick() => renew_session(&host).await,
        }
    }
}

async fn renew_session(host: &Arc<Host>) {
    match host.session().renew().await {
        Ok(()) => {}
        Err(RenewError::Store(e)) => {
            tracing::warn!(error = %e, "renewing the actor host session failed; retrying");
        }
        Err(RenewError::Lost(e)) => {
            tracing::warn!(error = %e, "the actor host session was lost: dropping every actor");
            drop_all(host).await;
            loop {
                match Session::start(host.store.clone(), holder(&host.me, &host.placement)).await {
                    Ok(s) => {
                        *host.session.write().unwrap_or_else(|p| p.into_inner()) = s;
                        tracing::info!("a new actor host session started");
                        return;
                    }
                    Err(e) => tracing::warn!(error = %e, "starting an actor host session failed"),
                }
                tokio::select! {
                    () = host.stop.cancelled() => return,
                    () = tokio::time::sleep(SESSION_RENEW) => {}
                }
            }
        }
    }
}

/// Deactivates idle and moved actors, and refreshes old claims.
async fn look_over(host: &Arc<Host>) {
    let actors: Vec<(ActorKey, Arc<Active>)> = host
        .table()
        .iter()
        .map(|(k, a)| (k.clone(), a.clone()))
        .collect();
    for (key, active) in actors {
        let Some(cfg) = host.types.get(&key.0) else {
            continue;
        };
        let why = if active.idle_for() >= cfg.idle_timeout && !active.turns.busy() {
            Some(Why::Idle)
        } else if !matches!(host.placement.owner(&key.0, &key.1), Some(Owner::Me) | None) {
            Some(Why::Moved)
        } else {
            None
        };
        if let Some(why) = why {
            let host = host.clone();
            tokio::spawn(async move { deactivate(&host, key, active, why).await });
            continue;
        }
        refresh_claim(host, &key, &active).await;
    }
}

async fn refresh_claim(host: &Arc<Host>, key: &ActorKey, active: &Arc<Active>) {
    let due = active
        .claimed
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .elapsed()
        >= CLAIM_TTL / 3;
    if !due {
        return;
    }
    let mut claim = active.claim.lock().await;
    let Some(c) = claim.as_mut() else {
        return;
    };
    match active.session.refresh(c).await {
        Ok(true) => {
            *active.claimed.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
        }
        Ok(false) => {
            drop(claim);
            tracing::warn!(actor_type = %key.0, id = %key.1, "another host took over the actor");
            let host = host.clone();
            let (key, active) = (key.clone(), active.clone());
            tokio::spawn(async move { deactivate(&host, key, active, Why::Moved).await });
        }
        Err(e) => tracing::warn!(error = %e, "refreshing an actor's claim failed"),
    }
}

/// Deactivates one actor: no new calls, those under way finish (within the type's drain
/// timeout when it moves), the app is told, and the claim is given up.
pub(super) async fn deactivate(host: &Arc<Host>, key: ActorKey, active: Arc<Active>, why: Why) {
    if active.deactivating.swap(true, Ordering::AcqRel) {
        return;
    }
    let drain = host
        .types
        .get(&key.0)
        .map(|c| (c.drain_rebalanced, c.drain_timeout));
    match (why, drain) {
        (Why::Moved | Why::Stopping, Some((true, longest))) => {
            if tokio::time::timeout(longest, active.turns.close())
                .await
                .is_err()
            {
                active.turns.close_now();
            }
        }
        (Why::Moved | Why::Stopping, _) => active.turns.close_now(),
        (Why::Idle, _) => active.turns.close().await,
    }
    // No call runs on it any more: from here, calls wait for it to be gone.
    active.closing.store(true, Ordering::Release);
    stop_timers(&active);
    tell_app(host, &key).await;
    // The claim goes while the actor is still in the table (so no call of this host takes it
    // again in between and loses it to this release), then the actor leaves the table.
    let claim = active.claim.lock().await.take();
    if let Some(claim) = claim
        && let Err(e) = active.session.release(claim).await
    {
        tracing::warn!(error = %e, actor_type = %key.0, id = %key.1, "releasing an actor's claim failed");
    }
    {
        let mut table = host.table();
        if table.get(&key).is_some_and(|a| Arc::ptr_eq(a, &active)) {
            table.remove(&key);
        }
    }
    tracing::debug!(actor_type = %key.0, id = %key.1, ?why, "actor deactivated");
}

/// Timers go with the actor.
fn stop_timers(active: &Active) {
    let timers = std::mem::take(&mut *active.timers.lock().unwrap_or_else(|p| p.into_inner()));
    for timer in timers.into_values() {
        timer.abort();
    }
}

/// `DELETE /actors/{type}/{id}` to the app; a failure is logged, the actor is gone either way.
async fn tell_app(host: &Host, key: &ActorKey) {
    let callback = super::Callback {
        actor_type: &key.0,
        id: &key.1,
        what: super::What::Deactivate,
    };
    let req = Request::new(Bytes::new());
    let answer =
        tokio::time::timeout(DEACTIVATE_TIMEOUT, host.call_app(&callback, req, None)).await;
    let failure = match answer {
        Ok(Ok(rsp)) if rsp.status().is_success() => None,
        Ok(Ok(rsp)) => {
            tracing::warn!(actor_type = %key.0, id = %key.1, status = rsp.status().as_u16(), "the app failed to deactivate an actor");
            Some(format!("status_code_{}", rsp.status().as_u16()))
        }
        Ok(Err(e)) => {
            tracing::warn!(actor_type = %key.0, id = %key.1, error = %e, "the app could not be told to deactivate an actor");
            Some("invoke".to_owned())
        }
        Err(_) => {
            tracing::warn!(actor_type = %key.0, id = %key.1, "the app did not answer a deactivation within {DEACTIVATE_TIMEOUT:?}");
            Some("invoke".to_owned())
        }
    };
    crate::telemetry::metrics::actors::left(&host.me.app_id, &key.0, failure);
}

/// The session is gone: other hosts may hold these actors already. Each is closed at once and
/// the app told; the claims are not released (they are not this host's any more).
async fn drop_all(host: &Arc<Host>) {
    let actors: Vec<(ActorKey, Arc<Active>)> = host.table().drain().collect();
    let told = actors.into_iter().map(|(key, active)| async move {
        active.deactivating.store(true, Ordering::Release);
        active.closing.store(true, Ordering::Release);
        active.turns.close_now();
        stop_timers(&active);
        active.claim.lock().await.take();
        tell_app(host, &key).await;
    });
    futures_util::future::join_all(told).await;
}

impl Host {
    /// The orderly stop: every actor deactivated (calls under way drain as the type says), then
    /// the session ended so that other hosts may take the actors at once.
    pub(crate) async fn stop(self: &Arc<Self>) {
        // No more idle or moved deactivations; the session stays renewed until every actor is
        // gone, so that no other host takes one still draining here.
        self.stop.cancel();
        let actors: Vec<(ActorKey, Arc<Active>)> = self
            .table()
            .iter()
            .map(|(k, a)| (k.clone(), a.clone()))
            .collect();
        let all = actors
            .into_iter()
            .map(|(key, active)| deactivate(self, key, active, Why::Stopping));
        futures_util::future::join_all(all).await;
        self.renewal_stop.cancel();
        self.session().end().await;
    }
}
