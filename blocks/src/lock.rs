//! The distributed lock building block: the [`LockStore`] contract every lock component
//! implements, and the key layout daprd gives lock resources.
//!
//! A lock is a resource id held by one owner until the owner unlocks it or its expiry passes.
//! Taking a held lock fails at once (no queueing, no reentrancy: the owner taking its own lock
//! again is refused too, as on Redis), so callers retry. Unlocking answers daprd's status values
//! rather than errors, because "not yours" and "not there" are answers, not failures.

mod memory;
mod open;
mod redis;

use std::time::Duration;

use crate::fault::Fault;
use crate::state::BoxFuture;

pub use memory::MemoryLock;
pub use open::{KeyPrefix, LockComponent, open};
pub use redis::RedisLock;

/// Take the lock on `resource_id` for `owner` for `expiry`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TryLockRequest {
    /// The resource, already given its key prefix.
    pub resource_id: String,
    /// Who takes it; only the same owner may unlock it.
    pub owner: String,
    /// How long the lock holds unless unlocked first (at least a second).
    pub expiry: Duration,
}

/// Release the lock on `resource_id` held by `owner`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnlockRequest {
    /// The resource, already given its key prefix.
    pub resource_id: String,
    /// Who releases it.
    pub owner: String,
}

/// What an unlock found, with daprd's numbers (`UnlockResponse.Status`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnlockStatus {
    /// The owner held the lock; it is released.
    Success = 0,
    /// Nobody holds the lock (never taken, released, or expired).
    LockDoesNotExist = 1,
    /// Someone else holds it; nothing changed.
    LockBelongsToOthers = 2,
    /// The store failed.
    InternalError = 3,
}

/// A lock store failing.
#[derive(Clone, Debug, thiserror::Error)]
pub enum LockError {
    /// The store failed or is unreachable.
    #[error(transparent)]
    Store(Fault),
    /// The store did not answer in time.
    #[error("the lock store did not answer within {0:?}")]
    Timeout(Duration),
}

impl LockError {
    /// Whether trying again may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Store(f) => f.is_retryable(),
            Self::Timeout(_) => true,
        }
    }
}

/// A lock store.
///
/// Contract, checked for every component by the conformance suite (`blocks/tests/lock.rs`):
/// - `try_lock` answers `true` for exactly one of any number of concurrent callers of a free
///   resource, and `false` to everyone (its owner included) while it is held;
/// - a lock not unlocked is free again once its expiry has passed, and not before;
/// - `unlock` releases only the owner's lock and answers [`UnlockStatus`]; the check and the
///   release are one atomic step, so a lock that expires and is taken by another owner in
///   between is never released by the first;
/// - resource ids and owners are opaque strings: any bytes of UTF-8 work, none is interpreted.
pub trait LockStore: Send + Sync {
    /// Takes the lock if it is free.
    fn try_lock(&self, req: TryLockRequest) -> BoxFuture<Result<bool, LockError>>;
    /// Releases the owner's lock.
    fn unlock(&self, req: UnlockRequest) -> BoxFuture<Result<UnlockStatus, LockError>>;
}
