//! `SubscribeActorEventsAlpha1`: a gRPC app hosts actors over a stream it opens, rather than
//! over HTTP callbacks. The first message names the types it hosts and their settings (the
//! fields of `/dapr/config`); hosting starts (or, for the types already hosted over a stream,
//! goes on: the app reconnecting), `initial_response` goes out, and from then on the stream
//! carries the actors' callbacks down and the app's answers up ([`ActorStream`]). The stream
//! ends when the app closes its side, goes away or the sidecar stops; callbacks then fail until
//! the app opens another.

use std::collections::BTreeMap;
use std::sync::Arc;

use outrider_blocks::actors::config::{self, TypeConfig};
use outrider_proto::runtime::v1 as rt;
use rt::subscribe_actor_events_request_alpha1::RequestType as Incoming;
use rt::subscribe_actor_events_response_alpha1::ResponseType as Outgoing;
use serde_json::{Value, json};
use tonic::{Status, Streaming};

use crate::api::ApiState;
use crate::to_app::actors::hosting::Refused;
use crate::to_app::actors::stream::{ActorStream, Connection};

/// The answer stream of one actor event stream.
pub(super) type ActorEvents = std::pin::Pin<
    Box<
        dyn futures_util::Stream<Item = Result<rt::SubscribeActorEventsResponseAlpha1, Status>>
            + Send,
    >,
>;

/// Registers the types the first message names, then serves the stream.
pub(super) async fn subscribe(
    s: &Arc<ApiState>,
    mut inbound: Streaming<rt::SubscribeActorEventsRequestAlpha1>,
) -> Result<ActorEvents, Status> {
    if s.actors.app.get().is_none_or(|l| !l.channel.speaks_grpc()) {
        return Err(Status::failed_precondition(
            "actor callback streaming requires a gRPC app channel",
        ));
    }
    let first = tokio::time::timeout(s.body_idle_timeout, inbound.message())
        .await
        .map_err(|_| {
            Status::deadline_exceeded(format!(
                "no initial request within {:?}",
                s.body_idle_timeout
            ))
        })??;
    let Some(rt::SubscribeActorEventsRequestAlpha1 {
        request_type: Some(Incoming::InitialRequest(initial)),
    }) = first
    else {
        return Err(Status::invalid_argument(
            "first message must be SubscribeActorEventsRequestInitialAlpha1",
        ));
    };
    let types = hosted_types(&initial)?;
    // Refused for good: FAILED_PRECONDITION (the SDK gives up); for now: UNAVAILABLE (it
    // reconnects).
    let stream = crate::to_app::actors::hosting::start_streamed(&s.actors, types)
        .await
        .map_err(|r| match r {
            Refused::Always(why) => Status::failed_precondition(why),
            Refused::ForNow(why) => Status::unavailable(why),
        })?;
    tracing::info!(types = ?initial.entities, "the app opened its actor event stream");
    let conn = stream.connect();
    Ok(serve(s, stream, conn, inbound))
}

/// The types the first message names and their settings, read as `/dapr/config` is.
fn hosted_types(
    initial: &rt::SubscribeActorEventsRequestInitialAlpha1,
) -> Result<BTreeMap<String, TypeConfig>, Status> {
    let mut doc = settings(
        initial.actor_idle_timeout.as_ref(),
        initial.drain_ongoing_call_timeout.as_ref(),
        initial.drain_rebalanced_actors,
        initial.reentrancy.as_ref(),
    )?;
    doc["entities"] = json!(initial.entities);
    let mut per_type = Vec::new();
    for c in &initial.entities_config {
        let mut entry = settings(
            c.actor_idle_timeout.as_ref(),
            c.drain_ongoing_call_timeout.as_ref(),
            c.drain_rebalanced_actors,
            c.reentrancy.as_ref(),
        )?;
        entry["entities"] = json!(c.entities);
        per_type.push(entry);
    }
    doc["entitiesConfig"] = Value::Array(per_type);
    let (types, warnings) =
        config::parse(doc.to_string().as_bytes()).map_err(Status::invalid_argument)?;
    for w in warnings {
        tracing::warn!("actor event stream: {w}");
    }
    Ok(types)
}

/// One level of settings as `/dapr/config` spells them.
fn settings(
    idle: Option<&prost_types::Duration>,
    drain: Option<&prost_types::Duration>,
    drain_rebalanced: Option<bool>,
    reentrancy: Option<&rt::ActorReentrancyConfig>,
) -> Result<Value, Status> {
    let mut v = json!({});
    if let Some(d) = idle {
        v["actorIdleTimeout"] = json!(go_duration(d, "actor_idle_timeout")?);
    }
    if let Some(d) = drain {
        v["drainOngoingCallTimeout"] = json!(go_duration(d, "drain_ongoing_call_timeout")?);
    }
    if let Some(b) = drain_rebalanced {
        v["drainRebalancedActors"] = json!(b);
    }
    if let Some(r) = reentrancy {
        v["reentrancy"] = json!({"enabled": r.enabled});
        if let Some(depth) = r.max_stack_depth {
            v["reentrancy"]["maxStackDepth"] = json!(depth);
        }
    }
    Ok(v)
}

/// A protobuf duration as a Go duration (`90s`, `1500ms`); negative ones are refused.
fn go_duration(d: &prost_types::Duration, field: &str) -> Result<String, Status> {
    if d.seconds < 0 || d.nanos < 0 {
        return Err(Status::invalid_argument(format!(
            "{field} is negative: {}s {}ns",
            d.seconds, d.nanos
        )));
    }
    Ok(if d.nanos == 0 {
        format!("{}s", d.seconds)
    } else {
        let ms = i128::from(d.seconds) * 1000 + i128::from(d.nanos / 1_000_000);
        format!("{ms}ms")
    })
}

/// What the answer stream holds between two items.
struct Serving {
    first: bool,
    stream: Arc<ActorStream>,
    conn: Connection,
    /// How the app's side ended, once it has: `None` when it closed it.
    ended: tokio::sync::oneshot::Receiver<Option<Status>>,
    reader: tokio::task::JoinHandle<()>,
    stop: tokio_util::sync::CancellationToken,
    done: bool,
}

impl Drop for Serving {
    /// A stream no one reads any more is no longer the app's: its callbacks fail.
    fn drop(&mut self) {
        self.reader.abort();
        self.stream.disconnect(self.conn.serial);
        tracing::info!("the app's actor event stream closed");
    }
}

/// The answer stream: `initial_response`, then each callback, while a task hands the app's
/// answers to the callbacks waiting for them.
fn serve(
    s: &ApiState,
    stream: Arc<ActorStream>,
    conn: Connection,
    inbound: Streaming<rt::SubscribeActorEventsRequestAlpha1>,
) -> ActorEvents {
    let (ended_tx, ended) = tokio::sync::oneshot::channel();
    let reader = tokio::spawn(read_answers(inbound, conn.answers(), ended_tx));
    let state = Serving {
        first: true,
        stream,
        conn,
        ended,
        reader,
        stop: s.shutdown.clone(),
        done: false,
    };
    Box::pin(futures_util::stream::unfold(state, |mut st| async move {
        if st.done {
            return None;
        }
        if std::mem::take(&mut st.first) {
            let ack = Outgoing::InitialResponse(rt::SubscribeActorEventsResponseInitialAlpha1 {});
            return Some((
                Ok(rt::SubscribeActorEventsResponseAlpha1 {
                    response_type: Some(ack),
                }),
                st,
            ));
        }
        let item = tokio::select! {
            next = st.conn.outbox.recv() => next.ok_or_else(|| Status::unavailable("stream replaced")),
            end = &mut st.ended => match end {
                Ok(None) => return None,
                Ok(Some(status)) => Err(status),
                Err(_) => Err(Status::unknown("stream closed")),
            },
            () = st.stop.cancelled() => Err(Status::unavailable("the sidecar is stopping")),
        };
        if item.is_err() {
            st.done = true;
        }
        Some((item, st))
    }))
}

/// Reads the app's answers until its side ends; `ended` gets how (`None`: the app closed it,
/// and the answer stream ends too).
async fn read_answers(
    mut inbound: Streaming<rt::SubscribeActorEventsRequestAlpha1>,
    answers: crate::to_app::actors::stream::Answers,
    ended: tokio::sync::oneshot::Sender<Option<Status>>,
) {
    let end = loop {
        match inbound.message().await {
            Ok(Some(rt::SubscribeActorEventsRequestAlpha1 {
                request_type: Some(Incoming::InitialRequest(_)),
            })) => {
                break Some(Status::invalid_argument(
                    "duplicate initial request received",
                ));
            }
            Ok(Some(rt::SubscribeActorEventsRequestAlpha1 {
                request_type: Some(reply),
            })) => {
                if !answers.answer(reply) {
                    tracing::debug!("an actor event stream answer for no callback in flight");
                }
            }
            Ok(Some(_)) => {}
            Ok(None) => break None,
            Err(status) => break Some(status),
        }
    };
    let _ = ended.send(end);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dur(seconds: i64, nanos: i32) -> prost_types::Duration {
        prost_types::Duration { seconds, nanos }
    }

    #[test]
    fn the_first_message_reads_as_dapr_config() {
        let initial = rt::SubscribeActorEventsRequestInitialAlpha1 {
            entities: vec!["Counter".into(), "Timer".into()],
            actor_idle_timeout: Some(dur(90, 0)),
            drain_ongoing_call_timeout: Some(dur(1, 500_000_000)),
            drain_rebalanced_actors: Some(false),
            reentrancy: Some(rt::ActorReentrancyConfig {
                enabled: true,
                max_stack_depth: Some(5),
            }),
            entities_config: vec![rt::ActorEntityConfig {
                entities: vec!["Timer".into()],
                actor_idle_timeout: Some(dur(60, 0)),
                reentrancy: Some(rt::ActorReentrancyConfig {
                    enabled: false,
                    max_stack_depth: None,
                }),
                ..Default::default()
            }],
        };
        let types = hosted_types(&initial).unwrap();
        assert_eq!(types.keys().collect::<Vec<_>>(), ["Counter", "Timer"]);
        let (counter, timer) = (&types["Counter"], &types["Timer"]);
        assert_eq!(counter.idle_timeout, std::time::Duration::from_secs(90));
        assert_eq!(
            counter.drain_timeout,
            std::time::Duration::from_millis(1500)
        );
        assert_eq!(counter.reentrancy, Some(5));
        assert_eq!(timer.idle_timeout, std::time::Duration::from_secs(60));
        assert_eq!(timer.reentrancy, None);
    }

    #[test]
    fn negative_durations_are_refused() {
        let initial = rt::SubscribeActorEventsRequestInitialAlpha1 {
            entities: vec!["Counter".into()],
            actor_idle_timeout: Some(dur(-1, 0)),
            ..Default::default()
        };
        let e = hosted_types(&initial).unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument);
        assert!(e.message().contains("actor_idle_timeout"), "{e:?}");
    }
}
