use super::*;
use serde_json::json;

fn method(m: &str) -> Callback<'_> {
    Callback {
        actor_type: "Counter",
        id: "ada",
        what: What::Method {
            method: m,
            query: Some("x=1"),
        },
    }
}

fn json_req(body: serde_json::Value) -> Request<Bytes> {
    Request::new(Bytes::from(body.to_string()))
}

/// The data of a timer's or reminder's request, as the app reads it: the JSON in the
/// `BytesValue`.
fn data_of(any: Option<prost_types::Any>) -> Option<serde_json::Value> {
    let any = any?;
    assert_eq!(any.type_url, BYTES_VALUE);
    let bytes = <Vec<u8> as prost::Message>::decode(any.value.as_slice()).unwrap();
    Some(serde_json::from_slice(&bytes).unwrap())
}

#[test]
fn methods_carry_the_callers_body_headers_and_chain() {
    let mut req = Request::new(Bytes::from_static(b"{\"n\":1}"));
    req.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    let Ask::InvokeRequest(r) = request(&method("increment"), "7", req, Some("chain-1")) else {
        panic!("not an invoke request")
    };
    assert_eq!(
        (
            r.id.as_str(),
            r.actor_type.as_str(),
            r.actor_id.as_str(),
            r.method.as_str()
        ),
        ("7", "Counter", "ada", "increment")
    );
    assert_eq!(&r.data[..], b"{\"n\":1}");
    assert_eq!(r.metadata["content-type"], "application/json");
    assert_eq!(r.metadata["dapr-reentrancy-id"], "chain-1");
}

#[test]
fn timers_and_reminders_carry_their_fields_and_json_data() {
    let body = json!({"callback": "tick", "dueTime": "1s", "period": "2s", "data": {"a": [1, 2]}});
    let Ask::TimerRequest(t) = request(&method("timer/beat"), "1", json_req(body), None) else {
        panic!("not a timer request")
    };
    assert_eq!(
        (
            t.name.as_str(),
            t.callback.as_str(),
            t.due_time.as_str(),
            t.period.as_str()
        ),
        ("beat", "tick", "1s", "2s")
    );
    assert_eq!(data_of(t.data), Some(json!({"a": [1, 2]})));

    let body = json!({"dueTime": "0s", "period": "", "data": "hi"});
    let Ask::ReminderRequest(r) = request(&method("remind/nudge"), "2", json_req(body), None)
    else {
        panic!("not a reminder request")
    };
    assert_eq!((r.name.as_str(), r.due_time.as_str()), ("nudge", "0s"));
    assert_eq!(data_of(r.data), Some(json!("hi")));

    let none = json!({"dueTime": "0s", "data": null});
    let Ask::ReminderRequest(r) = request(&method("remind/x"), "3", json_req(none), None) else {
        panic!("not a reminder request")
    };
    assert!(r.data.is_none(), "no data, no Any");
}

#[test]
fn deactivation_names_the_actor() {
    let cb = Callback {
        actor_type: "Counter",
        id: "ada",
        what: What::Deactivate,
    };
    let Ask::DeactivateRequest(d) = request(&cb, "9", Request::new(Bytes::new()), None) else {
        panic!("not a deactivation")
    };
    assert_eq!((d.id.as_str(), d.actor_id.as_str()), ("9", "ada"));
}

#[test]
fn answers_read_as_an_http_apps() {
    let ok = response(Reply::InvokeResponse(
        rt::SubscribeActorEventsRequestInvokeResponseAlpha1 {
            id: "1".into(),
            data: Bytes::from_static(b"42"),
            metadata: [("content-type".to_owned(), "application/json".to_owned())].into(),
            error: false,
        },
    ));
    assert_eq!(ok.status(), StatusCode::OK);
    assert_eq!(ok.headers()[header::CONTENT_TYPE], "application/json");
    assert!(!ok.headers().contains_key(ERROR_RESPONSE));
    assert_eq!(&ok.body()[..], b"42");

    let own = response(Reply::InvokeResponse(
        rt::SubscribeActorEventsRequestInvokeResponseAlpha1 {
            error: true,
            ..Default::default()
        },
    ));
    assert_eq!(own.status(), StatusCode::OK);
    assert_eq!(own.headers()[ERROR_RESPONSE], "true");

    let cancel = response(Reply::ReminderResponse(
        rt::SubscribeActorEventsRequestReminderResponseAlpha1 {
            id: "2".into(),
            cancel: true,
        },
    ));
    assert_eq!(cancel.headers()[REMINDER_CANCEL], "true");

    let failed = |code: tonic::Code| {
        response(Reply::RequestFailed(
            rt::SubscribeActorEventsRequestFailedAlpha1 {
                id: "3".into(),
                code: code as u32,
                message: "no such method".into(),
            },
        ))
    };
    assert_eq!(
        failed(tonic::Code::NotFound).status(),
        StatusCode::NOT_FOUND
    );
    let internal = failed(tonic::Code::Unknown);
    assert_eq!(internal.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(&internal.body()[..], b"no such method");
}

/// A call of method `m` through `stream`, running on its own.
fn in_background(
    stream: &Arc<ActorStream>,
) -> tokio::task::JoinHandle<Result<Response<Bytes>, InvokeError>> {
    let stream = stream.clone();
    tokio::spawn(async move {
        stream
            .call(&method("m"), Request::new(Bytes::new()), None)
            .await
    })
}

#[tokio::test]
async fn a_call_waits_for_its_own_answer_and_fails_when_the_stream_goes() {
    let stream = Arc::new(ActorStream::default());
    let closed = stream
        .call(&method("m"), Request::new(Bytes::new()), None)
        .await
        .unwrap_err();
    assert!(closed.to_string().contains("not open"), "{closed}");

    let mut conn = stream.connect();
    let answers = conn.answers();
    let caller = in_background(&stream);
    let Some(rt::SubscribeActorEventsResponseAlpha1 {
        response_type: Some(Ask::InvokeRequest(asked)),
    }) = conn.outbox.recv().await
    else {
        panic!("no invoke request sent")
    };
    // An answer for another id reaches no one; the right one reaches the caller.
    let reply = |id: &str| {
        Reply::InvokeResponse(rt::SubscribeActorEventsRequestInvokeResponseAlpha1 {
            id: id.to_owned(),
            data: Bytes::from_static(b"done"),
            ..Default::default()
        })
    };
    assert!(!answers.answer(reply("nobody")));
    assert!(answers.answer(reply(&asked.id)));
    let rsp = caller.await.unwrap().unwrap();
    assert_eq!(&rsp.body()[..], b"done");

    // A call under way when the app opens another stream fails; the new one serves.
    let waiting = in_background(&stream);
    assert!(conn.outbox.recv().await.is_some());
    let mut next = stream.connect();
    let failed = waiting.await.unwrap().unwrap_err();
    assert!(failed.to_string().contains("closed"), "{failed}");
    stream.disconnect(conn.serial);
    let served = in_background(&stream);
    let Some(rt::SubscribeActorEventsResponseAlpha1 {
        response_type: Some(Ask::InvokeRequest(asked)),
    }) = next.outbox.recv().await
    else {
        panic!("the new stream got nothing")
    };
    assert!(next.answers().answer(reply(&asked.id)));
    assert!(served.await.unwrap().is_ok());
    // Once the current stream is gone, calls fail at once.
    stream.disconnect(next.serial);
    let cb = method("m");
    let gone = stream.call(&cb, Request::new(Bytes::new()), None);
    assert!(gone.await.is_err());
}
