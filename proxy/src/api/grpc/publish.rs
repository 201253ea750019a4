//! The gRPC codec of publishing: `PublishEvent` and `BulkPublishEvent(Alpha1)` as the typed
//! requests of [`crate::api::publish`]. The event is the message's bytes; the trace context of
//! the call (its `traceparent` metadata, continued by the trace layer) goes into the envelope.

use http::StatusCode;
use outrider_filters::trace::TraceContext;
use outrider_proto::runtime::v1 as rt;
use tonic::Status;

use super::status::from_api_for;
use crate::api::ApiState;
use crate::api::publish::{
    self, BulkPublishRequest, BulkPublishRequestEntry, BulkPublishResponseFailedEntry, Origin,
    PublishEventRequest,
};
use crate::errors::ApiError;

/// The trace the publisher's call carries, for the envelope.
fn origin<T>(req: &tonic::Request<T>) -> Origin {
    let tracestate = req
        .metadata()
        .get("tracestate")
        .and_then(|v| v.to_str().ok());
    Origin::new(req.extensions().get::<TraceContext>(), tracestate)
}

/// With no pub/sub at all, daprd's gRPC API answers as for an unknown one.
fn not_found_if_none(e: ApiError, name: &str) -> ApiError {
    if e.code == "ERR_PUBSUB_NOT_CONFIGURED" {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "ERR_PUBSUB_NOT_FOUND",
            format!("pubsub {name} is not found"),
        )
    } else {
        e
    }
}

pub(super) async fn publish(
    s: &ApiState,
    req: tonic::Request<rt::PublishEventRequest>,
) -> Result<(), Status> {
    let origin = origin(&req);
    let req = req.into_inner();
    let name = req.pubsub_name.as_str();
    let fail = |e| from_api_for(not_found_if_none(e, name), name);
    let to = publish::single(s, name, &req.topic, req.metadata).map_err(fail)?;
    let event = PublishEventRequest {
        data: req.data,
        data_content_type: Some(req.data_content_type).filter(|c| !c.is_empty()),
        origin,
    };
    publish::publish(s, to, event).await.map_err(fail)
}

pub(super) async fn bulk(
    s: &ApiState,
    req: tonic::Request<rt::BulkPublishRequest>,
) -> Result<rt::BulkPublishResponse, Status> {
    let origin = origin(&req);
    let req = req.into_inner();
    let name = req.pubsub_name.as_str();
    let fail = |e| from_api_for(not_found_if_none(e, name), name);
    let to = publish::bulk_target(s, name, &req.topic, req.metadata).map_err(fail)?;
    let entries = req.entries.into_iter().map(|e| {
        Ok(BulkPublishRequestEntry {
            entry_id: e.entry_id,
            event: e.event,
            content_type: e.content_type,
            metadata: e.metadata,
        })
    });
    let topic = req.topic.clone();
    let failed = publish::publish_bulk(s, to, BulkPublishRequest { entries, origin })
        .await
        .map_err(fail)?;
    // As daprd: a bulk publish with any entry that failed fails as a whole, with the first.
    if let Some(BulkPublishResponseFailedEntry { error, .. }) = failed.into_iter().next() {
        return Err(fail(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "ERR_PUBSUB_PUBLISH_MESSAGE",
            format!("error when publishing to topic {topic} in pubsub {name}: {error}"),
        )));
    }
    Ok(rt::BulkPublishResponse::default())
}
