//! Operation errors as gRPC statuses, the way daprd reports them: the status code of the error
//! (daprd's, which is not always the HTTP status's counterpart — an unknown state store is HTTP
//! 400 and `INVALID_ARGUMENT`, an unconfigured one HTTP 500 and `FAILED_PRECONDITION`), the
//! same message, and for the errors daprd describes richly a `google.rpc.Status` in
//! `grpc-status-details-bin` with an `ErrorInfo` (domain `dapr.io`, a reason such as
//! `DAPR_STATE_NOT_FOUND`) and, where a component is concerned, a `ResourceInfo`.

use std::collections::BTreeMap;

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode};
use outrider_proto::google::rpc;
use prost::Message as _;
use tonic::{Code, Status};

use crate::errors::ApiError;
use crate::net::http::Body;

/// The domain of every `ErrorInfo`.
const DOMAIN: &str = "dapr.io";

/// How daprd describes one kind of error on gRPC: its code, and its details.
struct Described {
    code: Code,
    /// `ErrorInfo.reason`, if the error has details at all.
    reason: Option<&'static str>,
    /// The kind of component in a `ResourceInfo` before the `ErrorInfo` (`state`, `pubsub`),
    /// if daprd adds one.
    resource: Option<&'static str>,
}

const fn described(code: Code, reason: &'static str, resource: Option<&'static str>) -> Described {
    Described {
        code,
        reason: Some(reason),
        resource,
    }
}

/// daprd's gRPC code and details for `e`: its component errors name a reason (and often the
/// component); its older errors name their `ERR_*` code as the reason; secret and invocation
/// errors carry no details.
fn describe(e: &ApiError) -> Described {
    const STATE: Option<&str> = Some("state");
    const PUBSUB: Option<&str> = Some("pubsub");
    use Code::{FailedPrecondition, Internal, InvalidArgument, PermissionDenied, Unimplemented};
    match e.reason {
        Some(r @ "DAPR_STATE_ILLEGAL_KEY") => return described(InvalidArgument, r, STATE),
        Some(r @ "DAPR_STATE_TRANSACTIONS_NOT_SUPPORTED") => {
            return described(Unimplemented, r, STATE);
        }
        Some(r @ "DAPR_STATE_QUERYING_NOT_SUPPORTED") => return described(Internal, r, STATE),
        _ => {}
    }
    match e.code {
        "ERR_STATE_STORE_NOT_CONFIGURED" => {
            described(FailedPrecondition, "DAPR_STATE_NOT_CONFIGURED", None)
        }
        "ERR_STATE_STORE_NOT_FOUND" => described(InvalidArgument, "DAPR_STATE_NOT_FOUND", None),
        "ERR_STATE_QUERY" => described(Internal, "DAPR_STATE_QUERY_FAILED", STATE),
        code @ ("ERR_STATE_SAVE"
        | "ERR_STATE_GET"
        | "ERR_STATE_DELETE"
        | "ERR_STATE_BULK_DELETE"
        | "ERR_STATE_TRANSACTION") => {
            // ETag errors: a mismatch is ABORTED, an invalid ETag INVALID_ARGUMENT.
            let code_of = match e.status {
                StatusCode::CONFLICT => Code::Aborted,
                StatusCode::BAD_REQUEST => InvalidArgument,
                _ => Internal,
            };
            described(code_of, code, None)
        }
        "ERR_NOT_SUPPORTED_STATE_OPERATION" => {
            described(Unimplemented, "ERR_NOT_SUPPORTED_STATE_OPERATION", None)
        }
        "ERR_PUBSUB_NOT_CONFIGURED" => {
            described(FailedPrecondition, "DAPR_PUBSUB_NOT_CONFIGURED", None)
        }
        "ERR_PUBSUB_NOT_FOUND" => described(InvalidArgument, "DAPR_PUBSUB_NOT_FOUND", None),
        "ERR_PUBSUB_EMPTY" => described(InvalidArgument, "DAPR_PUBSUB_NAME_EMPTY", PUBSUB),
        "ERR_TOPIC_NAME_EMPTY" => {
            described(InvalidArgument, "DAPR_PUBSUB_TOPIC_NAME_EMPTY", PUBSUB)
        }
        "ERR_PUBSUB_REQUEST_METADATA" => described(
            InvalidArgument,
            "DAPR_PUBSUB_METADATA_DESERIALIZATION",
            PUBSUB,
        ),
        "ERR_PUBSUB_CLOUD_EVENTS_SER" => {
            described(InvalidArgument, "DAPR_PUBSUB_CLOUD_EVENT_CREATION", PUBSUB)
        }
        "ERR_PUBSUB_EVENTS_SER" => described(InvalidArgument, "DAPR_PUBSUB_MARSHAL_EVENTS", PUBSUB),
        "ERR_PUBSUB_FORBIDDEN" => described(PermissionDenied, "DAPR_PUBSUB_FORBIDDEN", PUBSUB),
        "ERR_PUBSUB_PUBLISH_MESSAGE" => described(Internal, "DAPR_PUBSUB_PUBLISH_MESSAGE", PUBSUB),
        // The jobs API: its own reasons; a job that exists already is ALREADY_EXISTS.
        code if code.starts_with("DAPR_SCHEDULER_") => {
            let code_of = match e.status {
                StatusCode::BAD_REQUEST => InvalidArgument,
                StatusCode::CONFLICT => Code::AlreadyExists,
                _ => Internal,
            };
            described(code_of, code, None)
        }
        _ => Described {
            code: plain_code(e),
            reason: None,
            resource: None,
        },
    }
}

/// The gRPC code of an error daprd sends without details.
fn plain_code(e: &ApiError) -> Code {
    match e.code {
        "ERR_SECRET_STORES_NOT_CONFIGURED"
        | "ERR_LOCK_STORE_NOT_CONFIGURED"
        | "ERR_CONFIGURATION_STORE_NOT_CONFIGURED" => Code::FailedPrecondition,
        // HTTP 401 in daprd.
        "ERR_SECRET_STORE_NOT_FOUND" => Code::InvalidArgument,
        // Every invocation failure before an app answered, whatever its HTTP status.
        "ERR_DIRECT_INVOKE" => Code::Internal,
        _ => match e.status {
            StatusCode::BAD_REQUEST => Code::InvalidArgument,
            StatusCode::UNAUTHORIZED => Code::Unauthenticated,
            StatusCode::FORBIDDEN => Code::PermissionDenied,
            StatusCode::NOT_FOUND => Code::NotFound,
            StatusCode::CONFLICT => Code::Aborted,
            StatusCode::PAYLOAD_TOO_LARGE | StatusCode::TOO_MANY_REQUESTS => {
                Code::ResourceExhausted
            }
            StatusCode::REQUEST_TIMEOUT | StatusCode::GATEWAY_TIMEOUT => Code::DeadlineExceeded,
            StatusCode::SERVICE_UNAVAILABLE => Code::Unavailable,
            StatusCode::NOT_IMPLEMENTED => Code::Unimplemented,
            _ => Code::Internal,
        },
    }
}

/// An operation's error as the status the caller receives.
pub(super) fn from_api(e: ApiError) -> Status {
    from_api_for(e, "")
}

/// [`from_api`] for a request that named the component `resource_name`, for the
/// `ResourceInfo` of the errors that concern one.
pub(super) fn from_api_for(e: ApiError, resource_name: &str) -> Status {
    let d = describe(&e);
    let Some(reason) = d.reason else {
        return Status::new(d.code, e.message);
    };
    let mut details = Vec::new();
    if reason == "DAPR_STATE_ILLEGAL_KEY"
        && let Some(key) = illegal_key(&e.message)
    {
        details.push(any(
            rpc::BAD_REQUEST_TYPE,
            &rpc::BadRequest {
                field_violations: vec![rpc::FieldViolation {
                    field: key.to_owned(),
                    description: e.message.clone(),
                }],
            },
        ));
    }
    if let Some(kind) = d.resource {
        // daprd describes pub/sub failures in the resource too; state ones not.
        let description = if kind == "pubsub" {
            e.message.clone()
        } else {
            String::new()
        };
        details.push(any(
            rpc::RESOURCE_INFO_TYPE,
            &rpc::ResourceInfo {
                resource_type: kind.to_owned(),
                resource_name: resource_name.to_owned(),
                owner: String::new(),
                description,
            },
        ));
    }
    details.push(error_info(reason, BTreeMap::new()));
    with_details(d.code, e.message, details)
}

/// The key of `input key/keyPrefix '<key>' can't contain '||'`.
fn illegal_key(message: &str) -> Option<&str> {
    message
        .strip_prefix("input key/keyPrefix '")?
        .rsplit_once("' can't contain")
        .map(|(key, _)| key)
}

/// A failure daprd reports as an HTTP status would be (a refused token, an endpoint the API
/// allow list leaves out, an app's answer that is not 2xx): the code of the HTTP status, the
/// status's text as the message and the reason, the status and `detail` (at most 63 bytes of it)
/// in the metadata.
pub(super) fn from_http(status: StatusCode, detail: &str) -> Status {
    let text = status.canonical_reason().unwrap_or_default();
    let mut cut = detail.len().min(63);
    while !detail.is_char_boundary(cut) {
        cut -= 1;
    }
    let metadata = BTreeMap::from([
        ("http.code".to_owned(), status.as_u16().to_string()),
        ("http.error_message".to_owned(), detail[..cut].to_owned()),
    ]);
    with_details(
        code_of_http(status),
        text.to_owned(),
        vec![error_info(text, metadata)],
    )
}

/// The gRPC code of an HTTP status, as daprd converts them.
pub(super) fn code_of_http(status: StatusCode) -> Code {
    match status.as_u16() {
        200..=299 => Code::Ok,
        400 => Code::Internal,
        401 => Code::Unauthenticated,
        403 => Code::PermissionDenied,
        404 => Code::NotFound,
        408 => Code::Cancelled,
        409 => Code::AlreadyExists,
        429 => Code::ResourceExhausted,
        501 => Code::Unimplemented,
        503 => Code::Unavailable,
        504 => Code::DeadlineExceeded,
        _ => Code::Unknown,
    }
}

fn error_info(reason: &str, metadata: BTreeMap<String, String>) -> prost_types::Any {
    any(
        rpc::ERROR_INFO_TYPE,
        &rpc::ErrorInfo {
            reason: reason.to_owned(),
            domain: DOMAIN.to_owned(),
            metadata,
        },
    )
}

/// A status whose `grpc-status-details-bin` repeats its code and message, as clients check.
fn with_details(code: Code, message: String, details: Vec<prost_types::Any>) -> Status {
    let status = rpc::Status {
        code: code as i32,
        message: message.clone(),
        details,
    };
    Status::with_details(code, message, Bytes::from(status.encode_to_vec()))
}

fn any(type_url: &str, m: &impl prost::Message) -> prost_types::Any {
    prost_types::Any {
        type_url: type_url.to_owned(),
        value: m.encode_to_vec(),
    }
}

/// The refusal of a message over `--max-body-size` in gRPC's own words (`RESOURCE_EXHAUSTED`),
/// for an answer in tonic's (`OUT_OF_RANGE`), if `rsp` is one.
pub(super) fn too_large<B>(rsp: &Response<B>) -> Option<Status> {
    let s = Status::from_header_map(rsp.headers())?;
    let rest = s
        .message()
        .strip_prefix("Error, decoded message length too large: found ")?;
    let (found, rest) = rest.split_once(" bytes, the limit is: ")?;
    let limit = rest.strip_suffix(" bytes")?;
    (s.code() == tonic::Code::OutOfRange).then(|| {
        Status::resource_exhausted(format!(
            "grpc: received message larger than max ({found} vs. {limit})"
        ))
    })
}

/// The gRPC status of an answer that is not a gRPC one: its HTTP status, with the start of its
/// body as the detail.
pub(super) async fn not_grpc(rsp: Response<Body>) -> Status {
    let status = rsp.status();
    let body = crate::net::http::collect_within(rsp.into_body(), 64 * 1024)
        .await
        .unwrap_or_default();
    let start = &body[..body.len().min(64)];
    from_http(status, &String::from_utf8_lossy(start))
}

/// A status as a trailers-only response.
pub(super) fn status_response(status: &Status) -> Response<Body> {
    let mut rsp = status.clone().into_http::<Body>();
    rsp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    rsp
}

#[cfg(test)]
mod tests {
    use super::*;

    fn details(s: &Status) -> rpc::Status {
        rpc::Status::decode(s.details()).expect("google.rpc.Status details")
    }

    fn info(d: &prost_types::Any) -> rpc::ErrorInfo {
        assert_eq!(d.type_url, rpc::ERROR_INFO_TYPE);
        rpc::ErrorInfo::decode(d.value.as_slice()).unwrap()
    }

    #[test]
    fn component_errors_carry_their_reason_and_the_component() {
        let e = ApiError::new(
            StatusCode::FORBIDDEN,
            "ERR_PUBSUB_FORBIDDEN",
            "topic t is not allowed for app id a",
        );
        let s = from_api_for(e, "orders");
        assert_eq!(s.code(), Code::PermissionDenied);
        assert_eq!(s.message(), "topic t is not allowed for app id a");
        let d = details(&s);
        assert_eq!(
            (d.code, d.message.as_str()),
            (Code::PermissionDenied as i32, s.message())
        );
        assert_eq!(d.details.len(), 2);
        assert_eq!(d.details[0].type_url, rpc::RESOURCE_INFO_TYPE);
        let res = rpc::ResourceInfo::decode(d.details[0].value.as_slice()).unwrap();
        assert_eq!(
            (
                res.resource_type.as_str(),
                res.resource_name.as_str(),
                res.description.as_str()
            ),
            ("pubsub", "orders", s.message())
        );
        let i = info(&d.details[1]);
        assert_eq!(
            (i.reason.as_str(), i.domain.as_str()),
            ("DAPR_PUBSUB_FORBIDDEN", "dapr.io")
        );
    }

    #[test]
    fn codes_and_reasons_follow_daprd() {
        // (HTTP status, error code, message, gRPC code, reason)
        let cases = [
            (
                400,
                "ERR_STATE_STORE_NOT_FOUND",
                "m",
                Code::InvalidArgument,
                Some("DAPR_STATE_NOT_FOUND"),
            ),
            (
                500,
                "ERR_STATE_STORE_NOT_CONFIGURED",
                "m",
                Code::FailedPrecondition,
                Some("DAPR_STATE_NOT_CONFIGURED"),
            ),
            (
                409,
                "ERR_STATE_SAVE",
                "m",
                Code::Aborted,
                Some("ERR_STATE_SAVE"),
            ),
            (
                400,
                "ERR_STATE_DELETE",
                "m",
                Code::InvalidArgument,
                Some("ERR_STATE_DELETE"),
            ),
            (
                500,
                "ERR_STATE_TRANSACTION",
                "m",
                Code::Internal,
                Some("ERR_STATE_TRANSACTION"),
            ),
            (
                500,
                "ERR_STATE_STORE_NOT_SUPPORTED",
                "state store s doesn't support transactions",
                Code::Unimplemented,
                Some("DAPR_STATE_TRANSACTIONS_NOT_SUPPORTED"),
            ),
            (
                500,
                "ERR_STATE_STORE_NOT_SUPPORTED",
                "state store does not support querying",
                Code::Internal,
                Some("DAPR_STATE_QUERYING_NOT_SUPPORTED"),
            ),
            (
                400,
                "ERR_MALFORMED_REQUEST",
                "input key/keyPrefix 'a||b' can't contain '||'",
                Code::InvalidArgument,
                Some("DAPR_STATE_ILLEGAL_KEY"),
            ),
            (
                404,
                "ERR_PUBSUB_NOT_FOUND",
                "m",
                Code::InvalidArgument,
                Some("DAPR_PUBSUB_NOT_FOUND"),
            ),
            (
                401,
                "ERR_SECRET_STORE_NOT_FOUND",
                "m",
                Code::InvalidArgument,
                None,
            ),
            (
                403,
                "ERR_PERMISSION_DENIED",
                "m",
                Code::PermissionDenied,
                None,
            ),
            (500, "ERR_SECRET_GET", "m", Code::Internal, None),
            (404, "ERR_DIRECT_INVOKE", "m", Code::Internal, None),
            (
                429,
                "ERR_STATE_BULK_GET",
                "m",
                Code::ResourceExhausted,
                None,
            ),
        ];
        for (status, code, message, want, reason) in cases {
            let mut e = ApiError::new(StatusCode::from_u16(status).unwrap(), code, message);
            // The operations name the reason where the code is shared.
            if let Some(
                r @ ("DAPR_STATE_TRANSACTIONS_NOT_SUPPORTED"
                | "DAPR_STATE_QUERYING_NOT_SUPPORTED"
                | "DAPR_STATE_ILLEGAL_KEY"),
            ) = reason
            {
                e = e.with_reason(r);
            }
            let s = from_api_for(e, "c");
            assert_eq!(s.code(), want, "{code} {status}");
            match reason {
                None => assert!(s.details().is_empty(), "{code}: no details"),
                Some(r) => {
                    let d = details(&s);
                    assert_eq!(info(d.details.last().unwrap()).reason, r, "{code}");
                }
            }
        }
    }

    #[test]
    fn http_failures_read_as_daprd_converts_them() {
        let s = from_http(
            StatusCode::UNAUTHORIZED,
            "missing api token in request metadata",
        );
        assert_eq!(
            (s.code(), s.message()),
            (Code::Unauthenticated, "Unauthorized")
        );
        let i = info(&details(&s).details[0]);
        assert_eq!(i.reason, "Unauthorized");
        assert_eq!(i.metadata["http.code"], "401");
        assert_eq!(
            i.metadata["http.error_message"],
            "missing api token in request metadata"
        );
        // The detail is cut to 63 bytes; 400 is INTERNAL, as daprd has it.
        let long = "x".repeat(100);
        let s = from_http(StatusCode::BAD_REQUEST, &long);
        assert_eq!((s.code(), s.message()), (Code::Internal, "Bad Request"));
        assert_eq!(
            info(&details(&s).details[0]).metadata["http.error_message"].len(),
            63
        );
    }
}
