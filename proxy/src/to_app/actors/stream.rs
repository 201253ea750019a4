//! Actors hosted by an app over the actor event stream (`SubscribeActorEventsAlpha1`): the app
//! dials the gRPC API, names the types it hosts in the stream's first message, and from then on
//! each callback for its actors (a method, a timer, a reminder, a deactivation) goes down the
//! stream as a request with an id, and the app's message with that id is the answer.
//!
//! One stream serves the app at a time: a new one replaces the last (the app reconnecting), and
//! callbacks under way on the old one fail. While no stream is open, callbacks fail at once, as
//! nothing ran (callers' calls are tried again for a few seconds; reminders as their retries say).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Request, Response, StatusCode, header};
use outrider_proto::runtime::v1 as rt;
use prost::Message as _;
use rt::subscribe_actor_events_request_alpha1::RequestType as Reply;
use rt::subscribe_actor_events_response_alpha1::ResponseType as Ask;
use tokio::sync::{mpsc, oneshot};

use super::{Callback, REENTRANCY_ID, What};
use crate::errors::InvokeError;

/// Marks the app's answer to a timer or reminder as "do not fire this again" (daprd's header;
/// an app over HTTP may send it too).
pub(crate) const REMINDER_CANCEL: HeaderName = HeaderName::from_static("x-daprremindercancel");
/// Marks an answer as the actor's own error, passed to the caller as it is.
const ERROR_RESPONSE: HeaderName = HeaderName::from_static("x-daprerrorresponseheader");
/// Requests waiting to go down a stream, at most.
const OUTBOX: usize = 256;
/// How timers' and reminders' data travels: a `BytesValue` of its JSON.
const BYTES_VALUE: &str = "type.googleapis.com/google.protobuf.BytesValue";

/// Whether an app's answer to a timer or reminder asks that it fire no more (daprd reads the
/// header's value as a truthy string).
pub(crate) fn cancels(headers: &http::HeaderMap) -> bool {
    headers
        .get(REMINDER_CANCEL)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            ["1", "true", "t", "yes", "y", "on"].contains(&v.trim().to_ascii_lowercase().as_str())
        })
}

/// Callbacks waiting for the app's answer, by id.
type Pending = Arc<Mutex<HashMap<String, oneshot::Sender<Reply>>>>;

/// The app's actor event stream, when one is open.
#[derive(Default)]
pub(crate) struct ActorStream {
    current: Mutex<Option<Conn>>,
    serial: AtomicU64,
    ids: AtomicU64,
}

#[derive(Clone)]
struct Conn {
    serial: u64,
    outbox: mpsc::Sender<rt::SubscribeActorEventsResponseAlpha1>,
    pending: Pending,
}

/// One open stream, as the gRPC API serves it: what to send down it, and where its answers go.
pub(crate) struct Connection {
    pub(crate) serial: u64,
    pub(crate) outbox: mpsc::Receiver<rt::SubscribeActorEventsResponseAlpha1>,
    pending: Pending,
}

impl Connection {
    /// Where the app's answers on this stream go.
    pub(crate) fn answers(&self) -> Answers {
        Answers(self.pending.clone())
    }
}

/// Hands the app's answers to the callbacks waiting for them.
pub(crate) struct Answers(Pending);

impl Answers {
    /// Hands the app's answer to the callback waiting for it; `false` for a message that
    /// answers nothing in flight (late, or not an answer).
    pub(crate) fn answer(&self, reply: Reply) -> bool {
        let id = match &reply {
            Reply::InvokeResponse(r) => &r.id,
            Reply::ReminderResponse(r) | Reply::TimerResponse(r) => &r.id,
            Reply::DeactivateResponse(r) => &r.id,
            Reply::RequestFailed(r) => &r.id,
            Reply::InitialRequest(_) => return false,
        };
        let waiting = lock(&self.0).remove(id);
        waiting.is_some_and(|w| w.send(reply).is_ok())
    }
}

impl ActorStream {
    /// Makes a newly opened stream the current one; callbacks waiting on the last one fail.
    pub(crate) fn connect(&self) -> Connection {
        let (tx, rx) = mpsc::channel(OUTBOX);
        let conn = Conn {
            serial: self.serial.fetch_add(1, Ordering::Relaxed) + 1,
            outbox: tx,
            pending: Arc::default(),
        };
        let connection = Connection {
            serial: conn.serial,
            outbox: rx,
            pending: conn.pending.clone(),
        };
        // The last stream's waiting callbacks fail (their senders are dropped).
        if let Some(last) = lock(&self.current).replace(conn) {
            lock(&last.pending).clear();
        }
        connection
    }

    /// Whether a stream is open.
    pub(crate) fn is_open(&self) -> bool {
        lock(&self.current).is_some()
    }

    /// Forgets stream `serial` if it is still the current one.
    pub(crate) fn disconnect(&self, serial: u64) {
        let mut current = lock(&self.current);
        if current.as_ref().is_some_and(|c| c.serial == serial)
            && let Some(last) = current.take()
        {
            lock(&last.pending).clear();
        }
    }

    /// Sends `callback` down the current stream and waits for the app's answer, as the answer
    /// an app over HTTP would give.
    pub(crate) async fn call(
        &self,
        callback: &Callback<'_>,
        req: Request<Bytes>,
        chain: Option<&str>,
    ) -> Result<Response<Bytes>, InvokeError> {
        let conn = lock(&self.current).clone().ok_or_else(|| {
            InvokeError::AppChannel("the app's actor event stream is not open".into())
        })?;
        let id = self.ids.fetch_add(1, Ordering::Relaxed).to_string();
        let ask = request(callback, &id, req, chain);
        let (tx, rx) = oneshot::channel();
        lock(&conn.pending).insert(id.clone(), tx);
        // Whatever ends this call (an answer, the stream, a timeout dropping it), the id goes.
        let _forget = Forget(&conn.pending, &id);
        let msg = rt::SubscribeActorEventsResponseAlpha1 {
            response_type: Some(ask),
        };
        if conn.outbox.send(msg).await.is_err() {
            return Err(InvokeError::AppChannel(
                "the app's actor event stream closed".into(),
            ));
        }
        let reply = rx.await.map_err(|_| {
            InvokeError::AppChannel("the app's actor event stream closed before it answered".into())
        })?;
        Ok(response(reply))
    }
}

/// Removes a callback's id from the waiting ones when dropped.
struct Forget<'a>(&'a Pending, &'a str);

impl Drop for Forget<'_> {
    fn drop(&mut self) {
        lock(self.0).remove(self.1);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The stream's request for `callback`: a method call with the caller's body and headers, or a
/// timer or reminder with the fields of the body an HTTP app would get, or a deactivation.
fn request(callback: &Callback<'_>, id: &str, req: Request<Bytes>, chain: Option<&str>) -> Ask {
    let (actor_type, actor_id) = (callback.actor_type.to_owned(), callback.id.to_owned());
    let method = match callback.what {
        What::Deactivate => {
            return Ask::DeactivateRequest(
                rt::SubscribeActorEventsResponseDeactivateRequestAlpha1 {
                    id: id.to_owned(),
                    actor_type,
                    actor_id,
                },
            );
        }
        What::Method { method, .. } => method,
    };
    let fired =
        |body: &Bytes| serde_json::from_slice::<serde_json::Value>(body).unwrap_or_default();
    let text = |v: &serde_json::Value, f: &str| v[f].as_str().unwrap_or_default().to_owned();
    if let Some(name) = method.strip_prefix("remind/") {
        let v = fired(req.body());
        return Ask::ReminderRequest(rt::SubscribeActorEventsResponseReminderRequestAlpha1 {
            id: id.to_owned(),
            actor_type,
            actor_id,
            name: name.to_owned(),
            due_time: text(&v, "dueTime"),
            period: text(&v, "period"),
            data: data_any(&v),
        });
    }
    if let Some(name) = method.strip_prefix("timer/") {
        let v = fired(req.body());
        return Ask::TimerRequest(rt::SubscribeActorEventsResponseTimerRequestAlpha1 {
            id: id.to_owned(),
            actor_type,
            actor_id,
            name: name.to_owned(),
            due_time: text(&v, "dueTime"),
            period: text(&v, "period"),
            callback: text(&v, "callback"),
            data: data_any(&v),
        });
    }
    let (parts, body) = req.into_parts();
    let mut metadata: std::collections::BTreeMap<String, String> = (parts.headers.iter())
        .filter_map(|(k, v)| Some((k.as_str().to_owned(), v.to_str().ok()?.to_owned())))
        .collect();
    if let Some(chain) = chain {
        metadata.insert(REENTRANCY_ID.as_str().to_owned(), chain.to_owned());
    }
    Ask::InvokeRequest(rt::SubscribeActorEventsResponseInvokeRequestAlpha1 {
        id: id.to_owned(),
        actor_type,
        actor_id,
        method: method.to_owned(),
        data: body,
        metadata,
    })
}

/// A timer's or reminder's `data`, as daprd sends it down the stream: a `BytesValue` holding
/// its JSON; none when it has none.
fn data_any(fired: &serde_json::Value) -> Option<prost_types::Any> {
    let data = fired.get("data").filter(|d| !d.is_null())?;
    Some(prost_types::Any {
        type_url: BYTES_VALUE.to_owned(),
        // prost's `Vec<u8>` is the `BytesValue` wrapper.
        value: data.to_string().into_bytes().encode_to_vec(),
    })
}

/// The app's answer as an HTTP app's: a method's data and headers (its own error marked as
/// such), 200 for a timer, reminder or deactivation (a cancelled timer or reminder marked),
/// 404 for what the app says does not exist, else 500 with the app's message.
fn response(reply: Reply) -> Response<Bytes> {
    let mut rsp = Response::new(Bytes::new());
    let truthy = HeaderValue::from_static("true");
    match reply {
        Reply::InvokeResponse(r) => {
            for (k, v) in &r.metadata {
                if let (Ok(k), Ok(v)) = (HeaderName::try_from(k), HeaderValue::try_from(v)) {
                    rsp.headers_mut().insert(k, v);
                }
            }
            if r.error {
                rsp.headers_mut().insert(ERROR_RESPONSE, truthy);
            }
            *rsp.body_mut() = r.data;
        }
        Reply::ReminderResponse(r) | Reply::TimerResponse(r) => {
            if r.cancel {
                rsp.headers_mut().insert(REMINDER_CANCEL, truthy);
            }
        }
        Reply::DeactivateResponse(_) => {}
        Reply::RequestFailed(f) => {
            *rsp.status_mut() = if f.code == tonic::Code::NotFound as u32 {
                StatusCode::NOT_FOUND
            } else {
                StatusCode::INTERNAL_SERVER_ERROR
            };
            rsp.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            );
            *rsp.body_mut() = Bytes::from(f.message);
        }
        Reply::InitialRequest(_) => {
            *rsp.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
            *rsp.body_mut() = Bytes::from_static(b"the app sent a second initial request");
        }
    }
    rsp
}

#[cfg(test)]
mod tests;
