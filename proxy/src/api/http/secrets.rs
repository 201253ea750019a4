//! The HTTP codec of secrets: `GET /v1.0/secrets/{store}/{name}` → `{key: value}` and
//! `GET /v1.0/secrets/{store}/bulk` → `{name: {key: value}}`.

use http::Response;
use serde_json::json;

use super::json_response;
use crate::api::ApiState;
use crate::api::secrets::{self, GetBulkSecretRequest, GetSecretRequest};
use crate::errors::ApiError;
use crate::net::http::Body;

pub(in crate::api) fn get(
    s: &ApiState,
    store_name: &str,
    key: &str,
) -> Result<Response<Body>, ApiError> {
    let secret = secrets::get(s, GetSecretRequest { store_name, key })?;
    Ok(json_response(&json!(secret)))
}

pub(in crate::api) fn bulk(s: &ApiState, store_name: &str) -> Result<Response<Body>, ApiError> {
    let all = secrets::bulk(s, GetBulkSecretRequest { store_name })?;
    Ok(json_response(&json!(all)))
}
