//! The Dapr gRPC API on --dapr-grpc-port, driven by a generated client over plain HTTP/2 and by
//! hand-made frames: error statuses and their details field by field, the API token, the allow
//! list, metrics, and hostile input (malformed and oversized messages, many streams at once).
//! The official SDKs' view of the same API is in sdk.rs.

use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use outrider_proto::google::rpc;
use outrider_proto::runtime::v1 as rt;
use outrider_testkit::{Mesh, Sidecar};
use prost::Message as _;
use rt::dapr_client::DaprClient;
use tonic::Code;

type Channel = Client<HttpConnector, tonic::body::Body>;

/// A client of `s`'s gRPC API, with `token` as its `dapr-api-token` if given.
fn client(s: &Sidecar) -> DaprClient<Channel> {
    let http = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http();
    let origin = format!("http://127.0.0.1:{}", s.grpc).parse().unwrap();
    DaprClient::with_origin(http, origin)
}

fn with_token<T>(msg: T, token: &str) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    r.metadata_mut()
        .insert("dapr-api-token", token.parse().unwrap());
    r
}

/// The `google.rpc.Status` of `s`'s details, which must repeat its code and message.
fn details(s: &tonic::Status) -> rpc::Status {
    let d = rpc::Status::decode(s.details())
        .expect("grpc-status-details-bin holds a google.rpc.Status");
    assert_eq!((d.code, d.message.as_str()), (s.code() as i32, s.message()));
    d
}

fn error_info(d: &prost_types::Any) -> rpc::ErrorInfo {
    assert_eq!(d.type_url, rpc::ERROR_INFO_TYPE);
    rpc::ErrorInfo::decode(d.value.as_slice()).unwrap()
}

fn get_state(store: &str, key: &str) -> rt::GetStateRequest {
    rt::GetStateRequest {
        store_name: store.into(),
        key: key.into(),
        ..Default::default()
    }
}

#[tokio::test]
async fn state_errors_carry_daprd_codes_and_details() {
    let mesh = Mesh::new();
    let s = mesh.sidecar("grpc-errors").start().await;
    let mut c = client(&s);
    let key = format!("grpc-err-{}", std::process::id());

    let e = c.get_state(get_state("nope", &key)).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert_eq!(e.message(), "state store nope is not found");
    let d = details(&e);
    assert_eq!(d.details.len(), 1);
    let info = error_info(&d.details[0]);
    assert_eq!(
        (info.reason.as_str(), info.domain.as_str()),
        ("DAPR_STATE_NOT_FOUND", "dapr.io")
    );

    let save = |etag: Option<&str>| rt::SaveStateRequest {
        store_name: "statestore".into(),
        states: vec![outrider_proto::common::v1::StateItem {
            key: key.clone(),
            value: Bytes::from_static(b"\"v\""),
            etag: etag.map(|e| outrider_proto::common::v1::Etag { value: e.into() }),
            ..Default::default()
        }],
    };
    c.save_state(save(None)).await.unwrap();
    let got = c
        .get_state(get_state("statestore", &key))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(&got.data[..], b"\"v\"");
    assert!(!got.etag.is_empty(), "the store gives ETags");
    let e = c.save_state(save(Some("not-the-etag"))).await.unwrap_err();
    assert_eq!(e.code(), Code::Aborted, "{e:?}");
    assert!(
        e.message()
            .starts_with("failed saving state in state store statestore: "),
        "{}",
        e.message()
    );
    assert_eq!(error_info(&details(&e).details[0]).reason, "ERR_STATE_SAVE");
    c.save_state(save(Some(&got.etag)))
        .await
        .expect("the current ETag is accepted");

    // DeleteBulkState: a stale ETag stops it with daprd's bulk error, then every key goes.
    let item = |k: &str, etag: Option<&str>| outrider_proto::common::v1::StateItem {
        key: k.into(),
        etag: etag.map(|e| outrider_proto::common::v1::Etag { value: e.into() }),
        ..Default::default()
    };
    let other = format!("{key}-other");
    c.save_state(rt::SaveStateRequest {
        store_name: "statestore".into(),
        states: vec![item(&other, None)],
    })
    .await
    .unwrap();
    let e = c
        .delete_bulk_state(rt::DeleteBulkStateRequest {
            store_name: "statestore".into(),
            states: vec![item(&key, Some("stale"))],
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Aborted, "{e:?}");
    assert!(
        e.message()
            .starts_with("failed deleting state in state store statestore: "),
        "{}",
        e.message()
    );
    assert_eq!(
        error_info(&details(&e).details[0]).reason,
        "ERR_STATE_BULK_DELETE"
    );
    c.delete_bulk_state(rt::DeleteBulkStateRequest {
        store_name: "statestore".into(),
        states: vec![item(&key, None), item(&other, None)],
    })
    .await
    .unwrap();
    for k in [&key, &other] {
        let gone = c
            .get_state(get_state("statestore", k))
            .await
            .unwrap()
            .into_inner();
        assert!(
            gone.data.is_empty() && gone.etag.is_empty(),
            "{k} is still there"
        );
    }

    // A missing key is no error: empty data, empty ETag.
    let missing = c
        .get_state(get_state("statestore", &format!("{key}-missing")))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((missing.data.len(), missing.etag.as_str()), (0, ""));

    let e = c
        .get_state(get_state("statestore", "a||b"))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert_eq!(e.message(), "input key/keyPrefix 'a||b' can't contain '||'");
    let d = details(&e);
    assert_eq!(d.details.len(), 3, "BadRequest, ResourceInfo, ErrorInfo");
    assert_eq!(d.details[0].type_url, rpc::BAD_REQUEST_TYPE);
    let bad = rpc::BadRequest::decode(d.details[0].value.as_slice()).unwrap();
    assert_eq!(bad.field_violations.len(), 1);
    assert_eq!(
        (
            bad.field_violations[0].field.as_str(),
            bad.field_violations[0].description.as_str()
        ),
        ("a||b", e.message())
    );
    assert_eq!(d.details[1].type_url, rpc::RESOURCE_INFO_TYPE);
    let res = rpc::ResourceInfo::decode(d.details[1].value.as_slice()).unwrap();
    assert_eq!(
        (res.resource_type.as_str(), res.resource_name.as_str()),
        ("state", "statestore")
    );
    assert_eq!(error_info(&d.details[2]).reason, "DAPR_STATE_ILLEGAL_KEY");
}

#[tokio::test]
async fn token_unimplemented_rpcs_and_the_allow_list() {
    let mesh = Mesh::new();
    let config = mesh.home().join("grpc-api.yaml");
    std::fs::write(
        &config,
        "kind: Configuration\nspec:\n  api:\n    denied:\n    - {name: secrets, version: v1, protocol: grpc}\n",
    )
    .unwrap();
    let s = mesh
        .sidecar("grpc-token")
        .env("DAPR_API_TOKEN", "tok-grpc")
        .args(["--config", config.to_str().unwrap()])
        .start()
        .await;
    let mut c = client(&s);
    let md = || rt::GetMetadataRequest {};

    for (req, detail) in [
        (
            tonic::Request::new(md()),
            "missing api token in request metadata",
        ),
        (
            with_token(md(), "wrong"),
            "authentication error: api token mismatch",
        ),
    ] {
        let e = c.get_metadata(req).await.unwrap_err();
        assert_eq!(
            (e.code(), e.message()),
            (Code::Unauthenticated, "Unauthorized")
        );
        let info = error_info(&details(&e).details[0]);
        assert_eq!(info.reason, "Unauthorized");
        assert_eq!(info.metadata["http.code"], "401");
        assert_eq!(info.metadata["http.error_message"], detail);
    }
    let m = c
        .get_metadata(with_token(md(), "tok-grpc"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(m.id, "grpc-token");

    // An RPC of the service this sidecar does not serve names itself.
    let e = c
        .list_jobs(with_token(rt::ListJobsRequest::default(), "tok-grpc"))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unimplemented);
    assert!(e.message().contains("/ListJobs "), "{}", e.message());

    // `spec.api` denies the secrets API over gRPC only.
    let e = c
        .get_secret(with_token(rt::GetSecretRequest::default(), "tok-grpc"))
        .await
        .unwrap_err();
    assert_eq!(
        (e.code(), e.message()),
        (Code::Unimplemented, "Not Implemented")
    );
    let info = error_info(&details(&e).details[0]);
    assert_eq!(
        info.metadata["http.error_message"],
        "requested endpoint is not available"
    );
    let r = s
        .request(
            "GET",
            "/v1.0/secrets/nope/k",
            &[("dapr-api-token", "tok-grpc")],
            "",
        )
        .await;
    assert_ne!(r.status, 404, "the HTTP route is still served: {r:?}");

    // Counted under daprd's names, refusals of the token and the allow list not at all.
    let text = s.metrics().await;
    let ok = "dapr_grpc_io_server_completed_rpcs{app_id=\"grpc-token\",grpc_server_method=\"/dapr.proto.runtime.v1.Dapr/GetMetadata\",grpc_server_status=\"OK\"} 1";
    assert!(text.contains(ok), "{ok} is missing:\n{text}");
    assert!(
        text.contains("grpc_server_status=\"Unimplemented\"} 1"),
        "{text}"
    );
    assert!(!text.contains("Unauthenticated"), "{text}");
}

/// One raw gRPC call: `frame` is the whole request body.
async fn raw_call(
    s: &Sidecar,
    rpc: &str,
    body: Full<Bytes>,
) -> http::Response<hyper::body::Incoming> {
    let http: Client<HttpConnector, Full<Bytes>> = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http();
    let req = http::Request::post(format!(
        "http://127.0.0.1:{}/dapr.proto.runtime.v1.Dapr/{rpc}",
        s.grpc
    ))
    .header("content-type", "application/grpc")
    .header("te", "trailers")
    .body(body)
    .unwrap();
    tokio::time::timeout(Duration::from_secs(10), http.request(req))
        .await
        .expect("an answer in time")
        .expect("an HTTP/2 answer")
}

/// The gRPC status of a raw answer: from its headers (trailers-only) or its trailers.
async fn raw_status(rsp: http::Response<hyper::body::Incoming>) -> (Code, String) {
    let (parts, body) = rsp.into_parts();
    if let Some(s) = tonic::Status::from_header_map(&parts.headers) {
        return (s.code(), s.message().to_owned());
    }
    let collected = body.collect().await.expect("the body ends");
    let trailers = collected.trailers().cloned().unwrap_or_default();
    let s = tonic::Status::from_header_map(&trailers).expect("grpc-status in the trailers");
    (s.code(), s.message().to_owned())
}

fn frame(message: &[u8], declared: u32) -> Bytes {
    let mut b = BytesMut::new();
    b.put_u8(0);
    b.put_u32(declared);
    b.put_slice(message);
    b.freeze()
}

#[tokio::test]
async fn hostile_messages_get_clean_errors_and_the_api_keeps_serving() {
    let mesh = Mesh::new();
    let s = mesh
        .sidecar("grpc-hostile")
        .args(["--max-body-size", "1Mi"])
        .start()
        .await;

    // Not protobuf at all.
    let garbage = [0xff_u8; 12];
    let rsp = raw_call(&s, "GetState", Full::new(frame(&garbage, 12))).await;
    let (code, msg) = raw_status(rsp).await;
    assert_eq!(code, Code::Internal, "{msg}");

    // A frame cut short of its declared length.
    let rsp = raw_call(&s, "GetState", Full::new(frame(b"\x0a\x01a", 100))).await;
    let (code, msg) = raw_status(rsp).await;
    assert_eq!(code, Code::Internal, "{msg}");

    // A message declared larger than --max-body-size is refused from its length prefix alone:
    // nothing of it is buffered.
    let rsp = raw_call(&s, "SaveState", Full::new(frame(b"", 1 << 30))).await;
    let (code, msg) = raw_status(rsp).await;
    assert_eq!(code, Code::ResourceExhausted, "{msg}");
    assert_eq!(
        msg,
        format!(
            "grpc: received message larger than max ({} vs. {})",
            1u64 << 30,
            1 << 20
        )
    );

    // 10 000 calls at once on one connection: each is answered or cleanly refused.
    let c = client(&s);
    let calls = (0..10_000).map(|_| {
        let mut c = c.clone();
        async move { c.get_metadata(rt::GetMetadataRequest {}).await.map(|_| ()) }
    });
    let results = tokio::time::timeout(Duration::from_secs(120), join_all(calls))
        .await
        .expect("10 000 calls end in time");
    // The client waits for stream credit beyond the server's 256 at once: every call is served.
    let failed: Vec<_> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    assert!(
        failed.is_empty(),
        "{} failed, e.g. {:?}",
        failed.len(),
        failed.first()
    );
    let m = client(&s)
        .get_metadata(rt::GetMetadataRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(m.id, "grpc-hostile", "the API still serves");
}

/// Awaits every future, all at once.
async fn join_all<F>(futs: impl IntoIterator<Item = F>) -> Vec<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futs.into_iter().map(tokio::spawn).collect();
    let mut out = Vec::with_capacity(handles.len());
    for h in handles {
        out.push(h.await.expect("a call task"));
    }
    out
}

fn initial(pubsub: &str, topic: &str) -> rt::SubscribeTopicEventsRequestAlpha1 {
    use rt::subscribe_topic_events_request_alpha1::SubscribeTopicEventsRequestType as T;
    rt::SubscribeTopicEventsRequestAlpha1 {
        subscribe_topic_events_request_type: Some(T::InitialRequest(
            rt::SubscribeTopicEventsRequestInitialAlpha1 {
                pubsub_name: pubsub.into(),
                topic: topic.into(),
                ..Default::default()
            },
        )),
    }
}

#[tokio::test]
async fn streaming_subscriptions_refuse_bad_openings_and_end_with_the_sidecar() {
    use tonic::codegen::tokio_stream::{self, StreamExt as _};
    let mesh = Mesh::new();
    let mut s = mesh.sidecar("grpc-streams").start().await;
    let mut c = client(&s);
    let processed = rt::SubscribeTopicEventsRequestAlpha1 {
        subscribe_topic_events_request_type: Some(
            rt::subscribe_topic_events_request_alpha1::SubscribeTopicEventsRequestType::EventProcessed(
                rt::SubscribeTopicEventsRequestProcessedAlpha1::default(),
            ),
        ),
    };
    // (first messages, code, message) — daprd's plain errors.
    let cases = [
        (
            vec![processed],
            Code::Unknown,
            "initial request is required",
        ),
        (
            vec![initial("", "t")],
            Code::Unknown,
            "pubsubName is required",
        ),
        (
            vec![initial("pubsub", "")],
            Code::Unknown,
            "topic is required",
        ),
        (
            vec![initial("nope", "t")],
            Code::InvalidArgument,
            "pubsub nope is not found",
        ),
        (vec![], Code::Unknown, "EOF"),
    ];
    for (msgs, code, message) in cases {
        let e = c
            .subscribe_topic_events_alpha1(tokio_stream::iter(msgs))
            .await
            .unwrap_err();
        assert_eq!((e.code(), e.message()), (code, message));
    }

    // A stream whose app side closes after opening: initial_response, then daprd's EOF.
    let mut events = c
        .subscribe_topic_events_alpha1(tokio_stream::iter(vec![initial("pubsub", "t-eof")]))
        .await
        .expect("opened")
        .into_inner();
    let first = events
        .message()
        .await
        .expect("an answer")
        .expect("the initial response");
    assert!(matches!(
        first.subscribe_topic_events_response_type,
        Some(rt::subscribe_topic_events_response_alpha1::SubscribeTopicEventsResponseType::InitialResponse(_))
    ));
    let e = events.message().await.unwrap_err();
    assert_eq!((e.code(), e.message()), (Code::Unknown, "EOF"));

    // An open stream ends when the sidecar stops, and does not hold the stop up.
    let (_keep_open, held) = tokio::sync::mpsc::channel(1);
    let stream = tokio_stream::iter(vec![initial("pubsub", "t-stop")])
        .chain(tokio_stream::wrappers::ReceiverStream::new(held));
    let mut events = c
        .subscribe_topic_events_alpha1(stream)
        .await
        .expect("opened")
        .into_inner();
    events
        .message()
        .await
        .expect("an answer")
        .expect("the initial response");
    let r = s.request("POST", "/v1.0/shutdown", &[], "").await;
    assert_eq!(r.status, 204);
    let e = tokio::time::timeout(Duration::from_secs(10), events.message())
        .await
        .expect("the stream ends with the sidecar")
        .unwrap_err();
    assert_eq!((e.code(), e.message()), (Code::Unknown, "stream closed"));
    assert_eq!(s.wait_exit(Duration::from_secs(15)).await, Some(0));
}
