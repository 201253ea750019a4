//! The HTTP codec of output bindings: `POST|PUT /v1.0/bindings/{name}` with `{data, metadata,
//! operation}` (field names in any case, as Go's decoder reads them; `data` passed on as its
//! JSON text) → the binding's data (200, `metadata.<name>` headers) or 204 when it answers
//! nothing.

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use outrider_blocks::bindings::{InvokeRequest, Metadata};
use serde_json::Value;

use super::no_content;
use crate::api::ApiState;
use crate::api::bindings;
use crate::errors::ApiError;
use crate::net::http::{Body, full};

fn malformed(message: String) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "ERR_MALFORMED_REQUEST", message)
}

/// The request body as an [`InvokeRequest`].
fn decode(body: &[u8]) -> Result<InvokeRequest, ApiError> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| malformed(format!("failed deserializing HTTP body: {e}")))?;
    let Value::Object(obj) = v else {
        return Err(malformed(format!(
            "failed deserializing HTTP body: expected an object, got {v}"
        )));
    };
    let field = |name: &str| {
        obj.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    };
    let operation = match field("operation") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => {
            return Err(malformed(format!(
                "operation must be a string, got {other}"
            )));
        }
    };
    let metadata: Metadata = match field("metadata") {
        None | Some(Value::Null) => Metadata::new(),
        Some(Value::Object(m)) => m
            .iter()
            .map(|(k, v)| match v {
                Value::String(s) => Ok((k.clone(), s.clone())),
                other => Err(malformed(format!(
                    "metadata.{k} must be a string, got {other}"
                ))),
            })
            .collect::<Result<_, _>>()?,
        Some(other) => {
            return Err(malformed(format!(
                "metadata must be an object, got {other}"
            )));
        }
    };
    // As daprd: the data is passed on as its JSON text (`null` when absent).
    let data = serde_json::to_vec(field("data").unwrap_or(&Value::Null)).unwrap_or_default();
    Ok(InvokeRequest {
        operation,
        data: Bytes::from(data),
        metadata,
    })
}

pub(in crate::api) async fn invoke(
    s: &ApiState,
    name: &str,
    req: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let body = super::body::read_body(s, req, u64::MAX).await?;
    let call = decode(&body)?;
    let Some(answer) = bindings::invoke(s, name, call).await? else {
        return Ok(no_content());
    };
    let mut rsp = Response::new(full(answer.data));
    rsp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    for (k, v) in &answer.metadata {
        // As daprd writes them: UTF-8 as is (a Go duration under a millisecond is `…µs`).
        let header = HeaderName::try_from(format!("metadata.{k}"));
        match (header, HeaderValue::from_bytes(v.as_bytes())) {
            (Ok(header), Ok(value)) => {
                rsp.headers_mut().append(header, value);
            }
            _ => tracing::warn!(
                binding = name,
                key = %k,
                "the binding's answer has metadata that cannot be an HTTP header; left out"
            ),
        }
    }
    Ok(rsp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_decode_as_gos_decoder_reads_them() {
        let r = decode(br#"{"Operation":"create","DATA":{"b":1,"a":"x"},"metadata":{"key":"k"}}"#)
            .unwrap();
        assert_eq!(r.operation, "create");
        assert_eq!(&r.data[..], br#"{"a":"x","b":1}"#);
        assert_eq!(r.metadata["key"], "k");
        assert_eq!(&decode(b"{}").unwrap().data[..], b"null");
        assert_eq!(&decode(br#"{"data":"hi"}"#).unwrap().data[..], br#""hi""#);
        for bad in [
            &b"[]"[..],
            b"{",
            br#"{"operation":1}"#,
            br#"{"metadata":{"a":2}}"#,
        ] {
            assert_eq!(decode(bad).unwrap_err().code, "ERR_MALFORMED_REQUEST");
        }
    }
}
