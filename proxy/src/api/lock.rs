//! Distributed lock operations (`/v1.0-alpha1/lock|unlock/{store}`, `TryLockAlpha1`,
//! `UnlockAlpha1`), whatever the transport: the lock store a request names, daprd's checks in
//! daprd's order, the key layout of the component's `keyPrefix`, and daprd's error codes. The
//! store's calls go through its resiliency policies (`components::resiliency::layer_lock`).

use http::StatusCode;
use outrider_blocks::lock::{
    LockComponent, LockError, TryLockRequest as Take, UnlockRequest as Give, UnlockStatus,
};

use super::ApiState;
use crate::errors::ApiError;

/// `TryLockRequest`.
pub(crate) struct TryLockRequest<'a> {
    pub(crate) store_name: &'a str,
    pub(crate) resource_id: &'a str,
    pub(crate) lock_owner: &'a str,
    pub(crate) expiry_in_seconds: i64,
}

/// `UnlockRequest`.
pub(crate) struct UnlockRequest<'a> {
    pub(crate) store_name: &'a str,
    pub(crate) resource_id: &'a str,
    pub(crate) lock_owner: &'a str,
}

fn malformed(message: String) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "ERR_MALFORMED_REQUEST", message)
}

/// The store, once the request's id and owner are known to be given.
fn store<'a>(
    s: &'a ApiState,
    name: &str,
    resource_id: &str,
    owner: &str,
) -> Result<&'a LockComponent, ApiError> {
    if s.locks.is_empty() {
        return Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "ERR_LOCK_STORE_NOT_CONFIGURED",
            "lock store is not configured",
        ));
    }
    if resource_id.is_empty() {
        return Err(malformed(format!(
            "ResourceId is empty in lock store {name}"
        )));
    }
    if owner.is_empty() {
        return Err(malformed(format!(
            "LockOwner is empty in lock store {name}"
        )));
    }
    s.locks.get(name).ok_or_else(|| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "ERR_LOCK_STORE_NOT_FOUND",
            format!("lock store {name} not found"),
        )
    })
}

fn try_failed(why: impl std::fmt::Display) -> ApiError {
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "ERR_TRY_LOCK",
        format!("failed to try acquiring lock: {why}"),
    )
}

fn unlock_failed(why: impl std::fmt::Display) -> ApiError {
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "ERR_UNLOCK",
        format!("failed to release lock: {why}"),
    )
}

/// Takes the lock if it is free: whether this owner now holds it.
pub(crate) async fn try_lock(s: &ApiState, req: TryLockRequest<'_>) -> Result<bool, ApiError> {
    // daprd checks the expiry before anything else.
    let secs = u64::try_from(req.expiry_in_seconds)
        .ok()
        .filter(|s| *s > 0)
        .ok_or_else(|| {
            malformed(format!(
                "ExpiryInSeconds is not positive in lock store {}",
                req.store_name
            ))
        })?;
    let c = store(s, req.store_name, req.resource_id, req.lock_owner)?;
    let key = c.key(req.resource_id, &s.app_id).map_err(try_failed)?;
    let take = Take {
        resource_id: key,
        owner: req.lock_owner.to_owned(),
        expiry: std::time::Duration::from_secs(secs),
    };
    c.store
        .try_lock(take)
        .await
        .map_err(|e: LockError| try_failed(e))
}

/// Releases the owner's lock: daprd's status of what the store found.
pub(crate) async fn unlock(s: &ApiState, req: UnlockRequest<'_>) -> Result<UnlockStatus, ApiError> {
    let c = store(s, req.store_name, req.resource_id, req.lock_owner)?;
    let key = c.key(req.resource_id, &s.app_id).map_err(unlock_failed)?;
    let give = Give {
        resource_id: key,
        owner: req.lock_owner.to_owned(),
    };
    c.store
        .unlock(give)
        .await
        .map_err(|e: LockError| unlock_failed(e))
}
