//! Configuration operations (`/v1.0[-alpha1]/configuration/{store}…`, `GetConfiguration`,
//! `SubscribeConfiguration`, `UnsubscribeConfiguration`), whatever the transport: the store a
//! request names, daprd's codes, and the table of open subscriptions (by id) that unsubscribe
//! ends. How updates reach the app is the transport's: the HTTP API posts them to the app
//! (`deliver`), the gRPC API streams them to the caller.

use std::collections::BTreeMap;

use bytes::Bytes;
use http::{Method, Request, StatusCode, header};
use outrider_blocks::configuration::{ConfigError, ConfigurationComponent, Items, Keys, Watch};
use outrider_policy::Caller;
use serde_json::{Map, Value, json};
use tokio::sync::mpsc;

use super::ApiState;
use crate::errors::ApiError;
use crate::net::http::full;

/// Subscriptions open at once on this sidecar, over every store and transport.
pub(crate) const MAX_SUBSCRIPTIONS: usize = 1024;

/// Updates waiting for the app or the stream, per subscription: the watch waits beyond it.
const QUEUED_UPDATES: usize = 64;

/// `GetConfigurationRequest` / `SubscribeConfigurationRequest`.
pub(crate) struct ConfigurationRequest<'a> {
    pub(crate) store_name: &'a str,
    pub(crate) keys: Vec<String>,
    pub(crate) metadata: BTreeMap<String, String>,
}

/// The open subscriptions, by id.
#[derive(Default)]
pub(crate) struct Subscriptions(std::sync::Mutex<BTreeMap<String, (String, Watch)>>);

impl Subscriptions {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, (String, Watch)>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Forgets subscription `id` (ending its watch), if it is open.
    pub(crate) fn end(&self, id: &str) -> bool {
        self.lock().remove(id).is_some()
    }
}

/// The store named, with daprd's errors when there is none.
pub(crate) fn store<'a>(
    s: &'a ApiState,
    name: &str,
) -> Result<&'a ConfigurationComponent, ApiError> {
    if s.configurations.is_empty() {
        return Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "ERR_CONFIGURATION_STORE_NOT_CONFIGURED",
            "configuration stores not configured",
        ));
    }
    s.configurations.get(name).ok_or_else(|| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "ERR_CONFIGURATION_STORE_NOT_FOUND",
            format!("configuration store {name} not found"),
        )
    })
}

/// daprd prints the keys as Go prints a slice of strings: `[a b]`.
fn go_keys(keys: &[String]) -> String {
    format!("[{}]", keys.join(" "))
}

/// daprd answers every failure of a store's get or subscribe with 500, whatever the cause.
fn status_of(_: &ConfigError) -> StatusCode {
    StatusCode::INTERNAL_SERVER_ERROR
}

/// The items of the keys asked for (every item when none).
pub(crate) async fn get(s: &ApiState, req: ConfigurationRequest<'_>) -> Result<Items, ApiError> {
    let c = store(s, req.store_name)?;
    let shown = go_keys(&req.keys);
    let keys = Keys {
        keys: req.keys,
        metadata: req.metadata,
    };
    c.store.get(keys).await.map_err(|e| {
        ApiError::new(
            status_of(&e),
            "ERR_CONFIGURATION_GET",
            format!(
                "failed to get {shown} from Configuration store {}: {e}",
                req.store_name
            ),
        )
    })
}

/// Starts watching the keys (every key when none): the subscription's id, and its updates.
pub(crate) async fn subscribe(
    s: &ApiState,
    req: ConfigurationRequest<'_>,
) -> Result<Subscribed, ApiError> {
    let c = store(s, req.store_name)?;
    let name = req.store_name;
    let shown = go_keys(&req.keys);
    let refused = |status, why: String| {
        ApiError::new(
            status,
            "ERR_CONFIGURATION_SUBSCRIBE",
            format!("failed to subscribe {shown} from Configuration store {name}: {why}"),
        )
    };
    if s.configuration_subscriptions.lock().len() >= MAX_SUBSCRIPTIONS {
        let why = format!("{MAX_SUBSCRIPTIONS} subscriptions are open already; unsubscribe some");
        return Err(refused(StatusCode::TOO_MANY_REQUESTS, why));
    }
    let (tx, rx) = mpsc::channel(QUEUED_UPDATES);
    let keys = Keys {
        keys: req.keys,
        metadata: req.metadata,
    };
    let watch = c.store.subscribe(keys, tx).await;
    let watch = watch.map_err(|e| refused(status_of(&e), e.to_string()))?;
    let ended = watch.ended();
    let id = uuid::Uuid::new_v4().to_string();
    let mut open = s.configuration_subscriptions.lock();
    // Counted again: others may have subscribed while this one started.
    if open.len() >= MAX_SUBSCRIPTIONS {
        let why = format!("{MAX_SUBSCRIPTIONS} subscriptions are open already; unsubscribe some");
        return Err(refused(StatusCode::TOO_MANY_REQUESTS, why));
    }
    open.insert(id.clone(), (name.to_owned(), watch));
    Ok(Subscribed {
        id,
        updates: rx,
        ended,
    })
}

/// An open subscription: its id, its updates, and a token cancelled when it is ended.
pub(crate) struct Subscribed {
    pub(crate) id: String,
    pub(crate) updates: mpsc::Receiver<Items>,
    pub(crate) ended: tokio_util::sync::CancellationToken,
}

/// Ends subscription `id` of store `store_name` (of any store when `None`: daprd's gRPC API
/// finds subscriptions by id alone).
pub(crate) fn unsubscribe(
    s: &ApiState,
    store_name: Option<&str>,
    id: &str,
) -> Result<(), ApiError> {
    if let Some(name) = store_name {
        store(s, name)?;
    }
    let mut open = s.configuration_subscriptions.lock();
    match open.get(id) {
        Some((of, _)) if store_name.is_none_or(|name| of == name) => {
            open.remove(id);
            Ok(())
        }
        _ => Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "ERR_CONFIGURATION_UNSUBSCRIBE",
            format!(
                "failed to unsubscribe to configuration request {id}: subscription with id {id} \
                 does not exist"
            ),
        )),
    }
}

/// An item as daprd writes it in JSON: empty fields left out.
pub(crate) fn item_json(i: &outrider_blocks::configuration::Item) -> Value {
    let mut m = Map::new();
    if !i.value.is_empty() {
        m.insert("value".into(), json!(i.value));
    }
    if !i.version.is_empty() {
        m.insert("version".into(), json!(i.version));
    }
    if !i.metadata.is_empty() {
        m.insert("metadata".into(), json!(i.metadata));
    }
    Value::Object(m)
}

/// Items as daprd writes them in JSON: `{key: item}`.
pub(crate) fn items_json(items: &Items) -> Value {
    Value::Object(
        items
            .iter()
            .map(|(k, i)| (k.clone(), item_json(i)))
            .collect(),
    )
}

fn in_path(s: &str) -> percent_encoding::PercentEncode<'_> {
    percent_encoding::utf8_percent_encode(s, crate::net::http::NOT_IN_PATH)
}

/// How long the app may take to answer one update.
const DELIVERY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Posts each update of a subscription to the app at `/configuration/{store}/{key}` (for every
/// key it holds, the whole update: `{"id", "items"}`), until the subscription ends or the
/// sidecar stops. An answer other than 200, or none within [`DELIVERY_TIMEOUT`], is logged, as
/// daprd does; the next update still goes.
pub(crate) async fn deliver(s: std::sync::Arc<ApiState>, store_name: String, sub: Subscribed) {
    let Some(app) = s.app.clone() else { return };
    let Subscribed {
        id,
        mut updates,
        ended,
    } = sub;
    let me = Caller {
        app_id: s.app_id.clone(),
        namespace: s.namespace.clone(),
        trust_domain: String::new(),
    };
    loop {
        let items = tokio::select! {
            () = s.shutdown.cancelled() => return,
            () = ended.cancelled() => return,
            items = updates.recv() => items,
        };
        let Some(items) = items else { return };
        let body = Bytes::from(json!({"id": id, "items": items_json(&items)}).to_string());
        for key in items.keys() {
            let path = format!("/configuration/{}/{}", in_path(&store_name), in_path(key));
            let req = Request::builder()
                .method(Method::POST)
                .uri(&path)
                .header(header::CONTENT_TYPE, "application/json")
                .body(full(body.clone()));
            let Ok(req) = req else { continue };
            let answer = tokio::select! {
                () = ended.cancelled() => return,
                a = tokio::time::timeout(DELIVERY_TIMEOUT, app.call(req, &me)) => a,
            };
            match answer {
                Ok(Ok(rsp)) if rsp.status() == StatusCode::OK => {}
                Ok(Ok(rsp)) => tracing::error!(
                    store = %store_name, key, status = rsp.status().as_u16(),
                    "the app did not take a configuration update"
                ),
                Ok(Err(e)) => tracing::error!(
                    store = %store_name, key, error = %e,
                    "sending a configuration update to the app failed"
                ),
                Err(_) => tracing::error!(
                    store = %store_name, key,
                    "the app did not answer a configuration update within {DELIVERY_TIMEOUT:?}"
                ),
            }
        }
    }
}
