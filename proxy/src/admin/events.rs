//! `/api/events`: the dashboard's live feed, as server-sent events. A new stream gets the whole
//! history (`history`) and the overview (`overview`); after each reading of the metrics it gets
//! the newest points (`tick`) and the overview again. At most [`super::MAX_STREAMS`] are open at
//! once; each ends when the sidecar stops, and a client that stops reading is cut by the
//! listener's stall deadline.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body::Frame;
use http_body_util::StreamBody;

use super::{Admin, assets, overview, plain};
use crate::net::http::{Body, boxed};

pub(super) fn stream(admin: &Arc<Admin>) -> Response<Body> {
    let Ok(permit) = admin.streams.clone().try_acquire_owned() else {
        return plain(
            StatusCode::SERVICE_UNAVAILABLE,
            "too many dashboard streams are open; close one\n",
        );
    };
    // Subscribed before the history is read: a reading in between is sent, never lost (the
    // page skips a point it has).
    let ticks = admin.history.ticks();
    let first = format!(
        "retry: 2000\nevent: history\ndata: {}\n\nevent: overview\ndata: {}\n\n",
        admin.history.all(),
        overview::build(admin)
    );
    let state = (admin.clone(), ticks, permit, Some(first));
    let frames =
        futures_util::stream::unfold(state, |(admin, mut ticks, permit, first)| async move {
            let data = match first {
                Some(first) => first,
                None => {
                    tokio::select! {
                        changed = ticks.changed() => changed.ok()?,
                        () = admin.stop.cancelled() => return None,
                    }
                    let tick = *ticks.borrow_and_update();
                    format!(
                        "event: tick\ndata: {}\n\nevent: overview\ndata: {}\n\n",
                        admin.history.latest(),
                        overview::shared(&admin, tick)
                    )
                }
            };
            let frame = Ok::<_, Infallible>(Frame::data(Bytes::from(data)));
            Some((frame, (admin, ticks, permit, None)))
        });
    let mut rsp = Response::new(boxed(StreamBody::new(frames)));
    let h = rsp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    assets::secured(&mut rsp);
    rsp
}
