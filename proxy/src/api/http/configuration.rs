//! The HTTP codec of the configuration API: `GET /v1.0[-alpha1]/configuration/{store}?key=…`
//! → `{key: {value, version, metadata}}` (204 when nothing matched), `…/subscribe?key=…` →
//! `{"id"}` with updates POSTed to the app, and `…/{id}/unsubscribe` → `{"ok": true}`, in
//! daprd's shapes. Keys are the repeated `key` parameters; `metadata.*` parameters are the
//! request's metadata.

use std::sync::Arc;

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use serde_json::json;

use super::{json_response, no_content, query_metadata, query_params};
use crate::api::ApiState;
use crate::api::configuration::{self, ConfigurationRequest, items_json};
use crate::errors::ApiError;
use crate::net::http::Body;

fn request<'a>(store_name: &'a str, req: &Request<Incoming>) -> ConfigurationRequest<'a> {
    let query = req.uri().query();
    ConfigurationRequest {
        store_name,
        keys: query_params(query, "key"),
        metadata: query_metadata(query),
    }
}

pub(in crate::api) async fn get(
    s: &ApiState,
    store_name: &str,
    req: &Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let items = configuration::get(s, request(store_name, req)).await?;
    if items.is_empty() {
        return Ok(no_content());
    }
    Ok(json_response(&items_json(&items)))
}

pub(in crate::api) async fn subscribe(
    s: &Arc<ApiState>,
    store_name: &str,
    req: &Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    // The store first, then the app channel, as daprd checks them.
    configuration::store(s, store_name)?;
    if s.app.is_none() {
        return Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "ERR_APP_CHANNEL_NIL",
            "app channel is not initialized. cannot subscribe to configuration updates",
        ));
    }
    let sub = configuration::subscribe(s, request(store_name, req)).await?;
    let id = sub.id.clone();
    tokio::spawn(configuration::deliver(
        s.clone(),
        store_name.to_owned(),
        sub,
    ));
    Ok(json_response(&json!({ "id": id })))
}

/// A failed unsubscribe is answered as daprd does: 500 with `{"message"}` and no error code.
pub(in crate::api) fn unsubscribe(
    s: &ApiState,
    store_name: &str,
    id: &str,
) -> Result<Response<Body>, ApiError> {
    match configuration::unsubscribe(s, Some(store_name), id) {
        Ok(()) => Ok(json_response(&json!({ "ok": true }))),
        Err(e) if e.code == "ERR_CONFIGURATION_UNSUBSCRIBE" => {
            let mut rsp = json_response(&json!({ "message": e.message }));
            *rsp.status_mut() = e.status;
            Ok(rsp)
        }
        Err(e) => Err(e),
    }
}
