//! `GET /v1.0/secrets/{store}/{name}` and `GET /v1.0/secrets/{store}/bulk` (api.md §5.1), within
//! `Configuration.spec.secrets.scopes` (§5.2).

use http::StatusCode;
use outrider_blocks::secrets::SecretStoreComponent;
use serde_json::json;

use super::ApiState;
use super::http::json_response;
use crate::errors::ApiError;
use crate::net::http::Body;

fn store<'a>(s: &'a ApiState, name: &str) -> Result<&'a SecretStoreComponent, ApiError> {
    if s.secret_stores.is_empty() {
        return Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "ERR_SECRET_STORES_NOT_CONFIGURED",
            "secret store is not configured",
        ));
    }
    // daprd answers an unknown store with 401.
    s.secret_stores.get(name).ok_or_else(|| {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "ERR_SECRET_STORE_NOT_FOUND",
            format!("failed finding secret store with key {name}"),
        )
    })
}

/// One secret: `{key: value, …}`.
pub(crate) fn get(
    s: &ApiState,
    store_name: &str,
    name: &str,
) -> Result<http::Response<Body>, ApiError> {
    let c = store(s, store_name)?;
    if !s.secret_scopes.allows(store_name, name) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "ERR_PERMISSION_DENIED",
            format!("access denied by policy to get \"{name}\" from \"{store_name}\""),
        ));
    }
    let secret = c.store.get(name).map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "ERR_SECRET_GET",
            format!("failed getting secret with key {name} from secret store {store_name}: {e}"),
        )
    })?;
    Ok(json_response(&json!(secret)))
}

/// Every secret the scopes allow: `{name: {key: value}}` (denied ones are left out silently).
pub(crate) fn bulk(s: &ApiState, store_name: &str) -> Result<http::Response<Body>, ApiError> {
    let c = store(s, store_name)?;
    let mut all = c.store.bulk().map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "ERR_SECRET_GET",
            format!("failed getting secrets from secret store {store_name}: {e}"),
        )
    })?;
    all.retain(|name, _| s.secret_scopes.allows(store_name, name));
    Ok(json_response(&json!(all)))
}
