//! The gRPC codec of the configuration API: `GetConfiguration`, `SubscribeConfiguration` (a
//! stream whose first message carries the subscription's id and each later one an update; it
//! ends when the subscription is ended, and the subscription ends when the caller goes) and
//! `UnsubscribeConfiguration`, each with its `Alpha1` twin.

use std::sync::Arc;

use futures_util::StreamExt as _;
use outrider_blocks::configuration::Items;
use outrider_proto::common::v1 as common;
use outrider_proto::runtime::v1 as rt;
use tonic::Status;

use super::status::from_api_for;
use crate::api::ApiState;
use crate::api::configuration::{self, ConfigurationRequest};

fn items(items: Items) -> std::collections::BTreeMap<String, common::ConfigurationItem> {
    items
        .into_iter()
        .map(|(k, i)| {
            let item = common::ConfigurationItem {
                value: i.value,
                version: i.version,
                metadata: i.metadata,
            };
            (k, item)
        })
        .collect()
}

pub(super) async fn get(
    s: &ApiState,
    req: rt::GetConfigurationRequest,
) -> Result<rt::GetConfigurationResponse, Status> {
    let asked = ConfigurationRequest {
        store_name: &req.store_name,
        keys: req.keys,
        metadata: req.metadata,
    };
    let found = configuration::get(s, asked).await;
    let found = found.map_err(|e| from_api_for(e, &req.store_name))?;
    Ok(rt::GetConfigurationResponse {
        items: items(found),
    })
}

/// The answer stream of one subscription.
pub(super) type Updates = std::pin::Pin<
    Box<dyn futures_util::Stream<Item = Result<rt::SubscribeConfigurationResponse, Status>> + Send>,
>;

/// Ends the subscription when the stream is dropped (the caller went away).
struct Ender {
    s: Arc<ApiState>,
    id: String,
}

impl Drop for Ender {
    fn drop(&mut self) {
        self.s.configuration_subscriptions.end(&self.id);
    }
}

pub(super) async fn subscribe(
    s: &Arc<ApiState>,
    mut req: rt::SubscribeConfigurationRequest,
) -> Result<Updates, Status> {
    req.keys.sort();
    let asked = ConfigurationRequest {
        store_name: &req.store_name,
        keys: req.keys,
        metadata: req.metadata,
    };
    let sub = configuration::subscribe(s, asked).await.map_err(|mut e| {
        // daprd answers a store refusing the subscription with INVALID_ARGUMENT.
        if e.code == "ERR_CONFIGURATION_SUBSCRIBE" {
            e.status = http::StatusCode::BAD_REQUEST;
        }
        from_api_for(e, &req.store_name)
    })?;
    let id = sub.id.clone();
    let first = rt::SubscribeConfigurationResponse {
        id: id.clone(),
        items: Default::default(),
    };
    let ender = Ender {
        s: s.clone(),
        id: id.clone(),
    };
    // The stream ends when the subscription is ended, or the sidecar stops.
    let stopping = s.shutdown.clone().cancelled_owned();
    let later = tokio_stream_of(sub.updates)
        .take_until(stopping)
        .map(move |update| {
            let _keep = &ender;
            Ok(rt::SubscribeConfigurationResponse {
                id: id.clone(),
                items: items(update),
            })
        });
    Ok(Box::pin(
        futures_util::stream::once(async { Ok(first) }).chain(later),
    ))
}

/// A receiver as a stream: it ends when the subscription is ended.
fn tokio_stream_of(
    mut rx: tokio::sync::mpsc::Receiver<Items>,
) -> impl futures_util::Stream<Item = Items> + Send {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

pub(super) fn unsubscribe(
    s: &ApiState,
    req: &rt::UnsubscribeConfigurationRequest,
) -> Result<rt::UnsubscribeConfigurationResponse, Status> {
    Ok(match configuration::unsubscribe(s, None, &req.id) {
        Ok(()) => rt::UnsubscribeConfigurationResponse {
            ok: true,
            message: String::new(),
        },
        // As daprd: an unknown subscription is an answer, not an error.
        Err(e) if e.code == "ERR_CONFIGURATION_UNSUBSCRIBE" => {
            rt::UnsubscribeConfigurationResponse {
                ok: false,
                message: e.message,
            }
        }
        Err(e) => return Err(from_api_for(e, &req.store_name)),
    })
}
