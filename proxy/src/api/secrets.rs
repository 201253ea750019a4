//! Secret operations (api.md §5.1), whatever the transport: the secret store a request names,
//! `Configuration.spec.secrets.scopes` (§5.2), and daprd's error codes. Requests and results are
//! shaped after `GetSecretRequest` and `GetBulkSecretRequest`; `api::http::secrets` encodes them.

use std::collections::BTreeMap;

use http::StatusCode;
use outrider_blocks::secrets::{Secret, SecretStoreComponent};

use super::ApiState;
use crate::errors::ApiError;

/// `GetSecretRequest`.
pub(crate) struct GetSecretRequest<'a> {
    pub(crate) store_name: &'a str,
    pub(crate) key: &'a str,
}

/// `GetBulkSecretRequest`.
pub(crate) struct GetBulkSecretRequest<'a> {
    pub(crate) store_name: &'a str,
}

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
pub(crate) fn get(s: &ApiState, req: GetSecretRequest<'_>) -> Result<Secret, ApiError> {
    let GetSecretRequest { store_name, key } = req;
    let c = store(s, store_name)?;
    if !s.secret_scopes.allows(store_name, key) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "ERR_PERMISSION_DENIED",
            format!("access denied by policy to get \"{key}\" from \"{store_name}\""),
        ));
    }
    c.store.get(key).map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "ERR_SECRET_GET",
            format!("failed getting secret with key {key} from secret store {store_name}: {e}"),
        )
    })
}

/// Every secret the scopes allow, by name (denied ones are left out silently).
pub(crate) fn bulk(
    s: &ApiState,
    req: GetBulkSecretRequest<'_>,
) -> Result<BTreeMap<String, Secret>, ApiError> {
    let store_name = req.store_name;
    let c = store(s, store_name)?;
    let mut all = c.store.bulk().map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "ERR_SECRET_GET",
            format!("failed getting secrets from secret store {store_name}: {e}"),
        )
    })?;
    all.retain(|name, _| s.secret_scopes.allows(store_name, name));
    Ok(all)
}
