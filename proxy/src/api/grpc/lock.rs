//! The gRPC codec of distributed locks: `TryLockAlpha1` and `UnlockAlpha1` as the typed
//! requests of [`crate::api::lock`].

use outrider_proto::runtime::v1 as rt;
use tonic::Status;

use super::status::from_api_for;
use crate::api::ApiState;
use crate::api::lock::{self, TryLockRequest, UnlockRequest};

pub(super) async fn try_lock(
    s: &ApiState,
    req: &rt::TryLockRequest,
) -> Result<rt::TryLockResponse, Status> {
    let take = TryLockRequest {
        store_name: &req.store_name,
        resource_id: &req.resource_id,
        lock_owner: &req.lock_owner,
        expiry_in_seconds: req.expiry_in_seconds.into(),
    };
    let success = lock::try_lock(s, take)
        .await
        .map_err(|e| from_api_for(e, &req.store_name))?;
    Ok(rt::TryLockResponse { success })
}

pub(super) async fn unlock(
    s: &ApiState,
    req: &rt::UnlockRequest,
) -> Result<rt::UnlockResponse, Status> {
    let give = UnlockRequest {
        store_name: &req.store_name,
        resource_id: &req.resource_id,
        lock_owner: &req.lock_owner,
    };
    let status = lock::unlock(s, give)
        .await
        .map_err(|e| from_api_for(e, &req.store_name))?;
    Ok(rt::UnlockResponse {
        status: status as i32,
    })
}
