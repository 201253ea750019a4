//! An HTTP/1.1 client for tests, and raw TCP for what a well-behaved client cannot send.

use std::sync::OnceLock;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The headers of a request whose body is JSON.
pub const JSON: &[(&str, &str)] = &[("content-type", "application/json")];

/// The headers of a request whose body is plain text.
pub const TEXT: &[(&str, &str)] = &[("content-type", "text/plain")];

/// A response, fully read.
#[derive(Debug)]
pub struct Reply {
    /// Status code.
    pub status: u16,
    /// Headers.
    pub headers: HeaderMap,
    /// Body.
    pub body: Bytes,
}

impl Reply {
    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        json_body(&self.body)
    }

    /// The header `name` as text, if there is one.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// Asserts a Dapr error answer: `status`, with `code` as the body's `errorCode`. `what` names
    /// the case in the failure message, which also shows the body.
    #[track_caller]
    pub fn assert_error(&self, status: u16, code: &str, what: &str) {
        assert_eq!(
            (self.status, self.json()["errorCode"].as_str()),
            (status, Some(code)),
            "{what}: {}",
            self.text()
        );
    }

    /// [`Reply::assert_error`], and the body's `message` contains `says`.
    #[track_caller]
    pub fn assert_error_says(&self, status: u16, code: &str, says: &str) {
        self.assert_error(status, code, says);
        let message = self.json()["message"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        assert!(message.contains(says), "{says:?} not in {message:?}");
    }
}

/// `body` as JSON; panics with the body when it is not.
pub(crate) fn json_body(body: &[u8]) -> serde_json::Value {
    serde_json::from_slice(body)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", String::from_utf8_lossy(body)))
}

/// A shared pooled client.
pub fn http_client() -> &'static Client<HttpConnector, Full<Bytes>> {
    static C: OnceLock<Client<HttpConnector, Full<Bytes>>> = OnceLock::new();
    C.get_or_init(|| {
        Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(0)
            .build_http()
    })
}

/// Sends one request and reads the whole response (within 60 s).
pub async fn send(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> anyhow::Result<Reply> {
    let mut req = Request::builder().method(method).uri(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req.body(Full::new(body.into()))?;
    let fut = async {
        let rsp = http_client().request(req).await?;
        let (parts, body) = rsp.into_parts();
        let body = body.collect().await?.to_bytes();
        Ok::<_, anyhow::Error>(Reply {
            status: parts.status.as_u16(),
            headers: parts.headers,
            body,
        })
    };
    tokio::time::timeout(Duration::from_secs(60), fut).await?
}

/// Publishes `body` to `topic` of the component named `pubsub` through the sidecar API at `api`,
/// and returns the status code.
pub async fn publish(api: &str, topic: &str, content_type: &str, body: &str) -> u16 {
    let url = format!("{api}/v1.0/publish/pubsub/{topic}");
    send(
        "POST",
        &url,
        &[("content-type", content_type)],
        body.to_owned(),
    )
    .await
    .unwrap()
    .status
}

/// Writes `request` bytes to `127.0.0.1:port` and returns everything read until the server
/// closes or 5 s pass.
pub async fn raw_request(port: u16, request: &[u8]) -> String {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    s.write_all(request).await.expect("write");
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}
