//! `lock.in-memory`: locks held in this process, for one host (the sidecars of other hosts, or
//! another process on this one, do not see them).
//!
//! Expired locks are dropped lazily: a lookup treats them as absent, and the table is swept
//! whenever it has doubled since the last sweep, so memory follows the locks actually held.

use std::collections::HashMap;
use std::sync::Mutex;

use tokio::time::Instant;

use super::{LockError, LockStore, TryLockRequest, UnlockRequest, UnlockStatus};
use crate::state::BoxFuture;

/// The in-memory lock store.
#[derive(Debug, Default)]
pub struct MemoryLock {
    table: Mutex<Table>,
}

#[derive(Debug, Default)]
struct Table {
    /// Resource → (owner, when the lock expires).
    held: HashMap<String, (String, Instant)>,
    /// The size that triggers the next sweep of expired locks.
    sweep_at: usize,
}

/// The smallest table worth sweeping.
const FIRST_SWEEP: usize = 1024;

impl Table {
    /// The owner of `resource`, if its lock has not expired.
    fn owner(&self, resource: &str, now: Instant) -> Option<&str> {
        let (owner, until) = self.held.get(resource)?;
        (*until > now).then_some(owner.as_str())
    }

    fn sweep_if_grown(&mut self, now: Instant) {
        if self.held.len() < self.sweep_at.max(FIRST_SWEEP) {
            return;
        }
        self.held.retain(|_, (_, until)| *until > now);
        self.sweep_at = self.held.len() * 2;
    }
}

impl MemoryLock {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn table(&self) -> std::sync::MutexGuard<'_, Table> {
        // The table is consistent after every statement, so a panic elsewhere cannot leave it
        // half-changed.
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl LockStore for MemoryLock {
    fn try_lock(&self, req: TryLockRequest) -> BoxFuture<Result<bool, LockError>> {
        let now = Instant::now();
        let mut t = self.table();
        let taken = if t.owner(&req.resource_id, now).is_some() {
            false
        } else {
            t.sweep_if_grown(now);
            let until = now + req.expiry;
            t.held.insert(req.resource_id, (req.owner, until));
            true
        };
        Box::pin(std::future::ready(Ok(taken)))
    }

    fn unlock(&self, req: UnlockRequest) -> BoxFuture<Result<UnlockStatus, LockError>> {
        let now = Instant::now();
        let mut t = self.table();
        let status = match t.owner(&req.resource_id, now) {
            None => UnlockStatus::LockDoesNotExist,
            Some(owner) if owner != req.owner => UnlockStatus::LockBelongsToOthers,
            Some(_) => {
                t.held.remove(&req.resource_id);
                UnlockStatus::Success
            }
        };
        Box::pin(std::future::ready(Ok(status)))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn take(resource: &str, owner: &str, secs: u64) -> TryLockRequest {
        TryLockRequest {
            resource_id: resource.into(),
            owner: owner.into(),
            expiry: Duration::from_secs(secs),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_lock_expires_exactly_at_its_expiry() {
        let l = MemoryLock::new();
        assert!(l.try_lock(take("r", "a", 10)).await.unwrap());
        tokio::time::advance(Duration::from_millis(9_999)).await;
        assert!(!l.try_lock(take("r", "b", 10)).await.unwrap());
        tokio::time::advance(Duration::from_millis(1)).await;
        let gone = UnlockRequest {
            resource_id: "r".into(),
            owner: "a".into(),
        };
        assert_eq!(
            l.unlock(gone).await.unwrap(),
            UnlockStatus::LockDoesNotExist
        );
        assert!(l.try_lock(take("r", "b", 10)).await.unwrap());
    }

    #[tokio::test(start_paused = true)]
    async fn expired_locks_are_swept_as_the_table_grows() {
        let l = MemoryLock::new();
        for i in 0..FIRST_SWEEP {
            assert!(l.try_lock(take(&format!("old-{i}"), "a", 1)).await.unwrap());
        }
        tokio::time::advance(Duration::from_secs(2)).await;
        for i in 0..10 {
            assert!(
                l.try_lock(take(&format!("new-{i}"), "a", 60))
                    .await
                    .unwrap()
            );
        }
        // The first insert past the threshold swept every expired lock.
        assert_eq!(l.table().held.len(), 10);
    }
}
