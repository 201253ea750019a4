//! The HTTP codec of distributed locks: `POST /v1.0-alpha1/lock/{store}` with `{resourceId,
//! lockOwner, expiryInSeconds}` → `{"success": bool}`, and `POST /v1.0-alpha1/unlock/{store}`
//! with `{resourceId, lockOwner}` → `{"status": n}` (the number, as daprd writes it).

use http::{Request, Response};
use hyper::body::Incoming;
use serde_json::json;

use super::json_response;
use super::protojson::Message;
use crate::api::ApiState;
use crate::api::lock::{self, TryLockRequest, UnlockRequest};
use crate::errors::ApiError;
use crate::net::http::Body;

async fn message(s: &ApiState, req: Request<Incoming>) -> Result<Message, ApiError> {
    let body = super::body::read_body(s, req, u64::MAX).await?;
    Message::parse(&body)
}

pub(in crate::api) async fn try_lock(
    s: &ApiState,
    store_name: &str,
    req: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let m = message(s, req).await?;
    let req = TryLockRequest {
        store_name,
        resource_id: m.string("resourceId", "resource_id")?,
        lock_owner: m.string("lockOwner", "lock_owner")?,
        expiry_in_seconds: m.int32("expiryInSeconds", "expiry_in_seconds")?.into(),
    };
    let success = lock::try_lock(s, req).await?;
    Ok(json_response(&json!({ "success": success })))
}

pub(in crate::api) async fn unlock(
    s: &ApiState,
    store_name: &str,
    req: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let m = message(s, req).await?;
    let req = UnlockRequest {
        store_name,
        resource_id: m.string("resourceId", "resource_id")?,
        lock_owner: m.string("lockOwner", "lock_owner")?,
    };
    let status = lock::unlock(s, req).await?;
    Ok(json_response(&json!({ "status": status as i32 })))
}
