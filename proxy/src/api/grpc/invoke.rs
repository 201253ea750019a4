//! The gRPC codec of service invocation: `InvokeService` as an HTTP request to the target app
//! (its method the path, `http_extension` the verb and query string, the call's metadata the
//! headers), carried out by [`crate::api::invoke`] like any other invocation. The app's answer
//! comes back as `InvokeResponse`; an answer that is not 2xx is an error whose code follows the
//! HTTP status as daprd converts it. Either way the `dapr-http-status` metadata has the status.

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, StatusCode, header};
use http_body_util::BodyExt as _;
use outrider_proto::common::v1 as common;
use outrider_proto::runtime::v1 as rt;
use tonic::Status;
use tonic::metadata::{MetadataMap, MetadataValue};

use super::status::{from_api, from_http};
use crate::api::ApiState;
use crate::api::invoke::invoke_whole;
use crate::errors::ApiError;

/// Metadata never passed to the app as headers: the call's own framing and hop-by-hop fields.
const NOT_HEADERS: [&str; 13] = [
    // Checked by the API; never the app's (a trailer could carry it past the check).
    "dapr-api-token",
    "content-type",
    "content-length",
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "upgrade",
    "http2-settings",
    "te",
    "trailer",
    "proxy-authorization",
    "proxy-authenticate",
];

/// Answer headers registered as permanent HTTP fields: daprd passes them back as metadata with a
/// `dapr-` prefix, so that they cannot be taken for the gRPC call's own.
const PERMANENT_HEADERS: [&str; 28] = [
    "accept",
    "accept-charset",
    "accept-language",
    "accept-ranges",
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "upgrade",
    "cache-control",
    "content-type",
    "content-length",
    "cookie",
    "date",
    "expect",
    "from",
    "host",
    "if-match",
    "if-modified-since",
    "if-none-match",
    "if-schedule-tag-match",
    "if-unmodified-since",
    "max-forwards",
    "origin",
    "pragma",
    "referer",
    "via",
    "warning",
];

pub(super) async fn invoke_service(
    s: &ApiState,
    req: tonic::Request<rt::InvokeServiceRequest>,
) -> Result<tonic::Response<common::InvokeResponse>, Status> {
    let (metadata, extensions, msg) = req.into_parts();
    let id = msg.id;
    let (mut parts, data) = http_request(&id, &metadata, msg.message.unwrap_or_default())?;
    parts.extensions = extensions;
    let rsp = invoke_whole(s, &id, parts, data).await.map_err(from_api)?;
    let status = rsp.status();
    let content_type = rsp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let mut answer_md = answer_metadata(rsp.headers());
    // Set only by the channel of a gRPC app that failed the call.
    let app_status = Status::from_header_map(rsp.headers());
    answer_md.insert("dapr-http-status", MetadataValue::from(status.as_u16()));
    let limit = usize::try_from(s.max_body_size).unwrap_or(usize::MAX);
    let body = read_answer(rsp.into_body(), limit, s.body_idle_timeout).await.map_err(|e| match e {
        Unread::TooLarge => Status::resource_exhausted(format!(
            "failed to invoke, id: {id}, err: the answer is larger than the limit of {limit} bytes (--max-body-size)"
        )),
        Unread::Failed(why) => from_api(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "ERR_DIRECT_INVOKE",
            format!("failed to invoke, id: {id}, err: reading the answer: {why}"),
        )),
    })?;
    if !status.is_success() {
        // A gRPC app's own status, as it answered it.
        if let Some(mut st) = app_status {
            *st.metadata_mut() = answer_md;
            return Err(st);
        }
        let start = &body[..body.len().min(64)];
        let mut st = from_http(status, &String::from_utf8_lossy(start));
        *st.metadata_mut() = answer_md;
        return Err(st);
    }
    let mut answer = tonic::Response::new(common::InvokeResponse {
        data: Some(prost_types::Any {
            type_url: String::new(),
            value: body,
        }),
        content_type,
    });
    *answer.metadata_mut() = answer_md;
    Ok(answer)
}

/// Why the app's answer could not be read.
enum Unread {
    TooLarge,
    Failed(String),
}

/// The HTTP request an `InvokeRequest` for `id` stands for: its method the path, the HTTP
/// extension's verb and query, the call's metadata the headers; and its data. Refusals read as
/// daprd words a failed invocation.
fn http_request(
    id: &str,
    metadata: &MetadataMap,
    message: common::InvokeRequest,
) -> Result<(http::request::Parts, Bytes), Status> {
    // Refusals of the request's shape read as daprd words a failed invocation.
    let refuse = |why: &str| {
        Status::internal(format!(
            "failed to invoke, id: {id}, err: rpc error: code = InvalidArgument desc = {why}"
        ))
    };
    let (verb, query) = http_extension(message.http_extension.as_ref()).map_err(refuse)?;
    // A fragment or query in the method would change the path the app receives.
    if let Some(c) = message
        .method
        .chars()
        .find(|c| matches!(c, '#' | '?') || c.is_control())
    {
        return Err(refuse(&format!(
            "invalid method: method contains forbidden character: {c:?}"
        )));
    }
    let method = message.method.trim_start_matches('/');
    let path_and_query = match query {
        Some(q) => format!("/{method}?{q}"),
        None => format!("/{method}"),
    };
    let uri = path_and_query
        .parse::<http::Uri>()
        .map_err(|_| refuse(&format!("invalid method: {}", message.method)))?;
    let (mut parts, ()) = Request::builder()
        .method(verb)
        .uri(uri)
        .body(())
        .map_err(|e| refuse(&e.to_string()))?
        .into_parts();
    parts.headers = headers(metadata);
    let data = message.data.unwrap_or_default();
    let content_type = if data.type_url.is_empty() {
        message.content_type
    } else {
        "application/x-protobuf".to_owned()
    };
    if !content_type.is_empty() {
        let ct = HeaderValue::try_from(&content_type)
            .map_err(|_| refuse(&format!("invalid content type {content_type:?}")))?;
        parts.headers.insert(header::CONTENT_TYPE, ct);
    }
    Ok((parts, Bytes::from(data.value)))
}

/// The app's answer, whole, if it is at most `limit` bytes and never pauses for `idle`.
async fn read_answer(
    mut body: crate::net::http::Body,
    limit: usize,
    idle: std::time::Duration,
) -> Result<Vec<u8>, Unread> {
    let mut out = Vec::new();
    loop {
        let frame = match tokio::time::timeout(idle, body.frame()).await {
            Err(_) => return Err(Unread::Failed(format!("the answer paused for {idle:?}"))),
            Ok(None) => return Ok(out),
            Ok(Some(frame)) => {
                frame.map_err(|e| Unread::Failed(crate::errors::chain(e.as_ref())))?
            }
        };
        if let Ok(data) = frame.into_data() {
            if out.len() + data.len() > limit {
                return Err(Unread::TooLarge);
            }
            out.extend_from_slice(&data);
        }
    }
}

/// The verb and query string of `HTTPExtension`, which an HTTP app needs: there is no default
/// verb.
fn http_extension(
    ext: Option<&common::HttpExtension>,
) -> Result<(Method, Option<String>), &'static str> {
    use common::http_extension::Verb;
    let ext = ext.ok_or("missing HTTP extension field")?;
    let verb = match Verb::try_from(ext.verb) {
        Ok(Verb::Get) => Method::GET,
        Ok(Verb::Head) => Method::HEAD,
        Ok(Verb::Post) => Method::POST,
        Ok(Verb::Put) => Method::PUT,
        Ok(Verb::Delete) => Method::DELETE,
        Ok(Verb::Options) => Method::OPTIONS,
        Ok(Verb::Trace) => Method::TRACE,
        Ok(Verb::Patch) => Method::PATCH,
        Ok(Verb::None | Verb::Connect) | Err(_) => return Err("invalid HTTP verb"),
    };
    let query = Some(ext.querystring.clone()).filter(|q| !q.is_empty());
    Ok((verb, query))
}

/// The call's metadata as the app's request headers: `grpc-*` entries become `dapr-grpc-*`;
/// binary entries, framing and hop-by-hop fields stay behind.
fn headers(md: &MetadataMap) -> HeaderMap {
    let mut out = HeaderMap::new();
    for (k, v) in md.as_ref() {
        let name = k.as_str();
        if NOT_HEADERS.contains(&name) || name.ends_with("-bin") {
            continue;
        }
        let k = match name.strip_prefix("grpc-") {
            Some(rest) => match HeaderName::try_from(format!("dapr-grpc-{rest}")) {
                Ok(k) => k,
                Err(_) => continue,
            },
            None => k.clone(),
        };
        out.append(k, v.clone());
    }
    out
}

/// The app's answer headers as metadata: permanent HTTP fields with a `dapr-` prefix, the rest
/// as they are, less what gRPC reserves.
fn answer_metadata(h: &HeaderMap) -> MetadataMap {
    let mut out = HeaderMap::new();
    for (k, v) in h {
        let name = k.as_str();
        if name.starts_with("grpc-") || name.ends_with("-bin") {
            continue;
        }
        let k = if PERMANENT_HEADERS.contains(&name) {
            match HeaderName::try_from(format!("dapr-{name}")) {
                Ok(k) => k,
                Err(_) => continue,
            }
        } else {
            k.clone()
        };
        out.append(k, v.clone());
    }
    MetadataMap::from_headers(out)
}
