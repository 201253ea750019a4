//! Reading JSON bodies the way daprd's newer routes do (protobuf's JSON mapping, unknown fields
//! ignored): a field is found by its JSON name (`resourceId`) or its proto name
//! (`resource_id`); `null` is the field's default; an `int32` may be a number or a string of
//! one. Anything else is a 400 naming the field.

use bytes::Bytes;
use http::StatusCode;
use serde_json::{Map, Value};

use crate::errors::ApiError;

fn malformed(message: String) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "ERR_MALFORMED_REQUEST", message)
}

/// A request body: an object, or nothing (every field its default).
pub(super) struct Message(Map<String, Value>);

impl Message {
    /// Parses `body`; an empty body is an empty message.
    pub(super) fn parse(body: &Bytes) -> Result<Self, ApiError> {
        if body.is_empty() {
            return Ok(Self(Map::new()));
        }
        match serde_json::from_slice(body) {
            Ok(Value::Object(m)) => Ok(Self(m)),
            Ok(other) => Err(malformed(format!(
                "failed deserializing HTTP body: expected an object, got {other}"
            ))),
            Err(e) => Err(malformed(format!("failed deserializing HTTP body: {e}"))),
        }
    }

    /// The value of field `json` (or its proto name `proto`), unless absent or `null`.
    fn field(&self, json: &str, proto: &str) -> Option<&Value> {
        (self.0.get(json))
            .or_else(|| self.0.get(proto))
            .filter(|v| !v.is_null())
    }

    /// A `string` field; `""` when absent.
    pub(super) fn string(&self, json: &str, proto: &str) -> Result<&str, ApiError> {
        match self.field(json, proto) {
            None => Ok(""),
            Some(Value::String(s)) => Ok(s),
            Some(other) => Err(malformed(format!("{json} must be a string, got {other}"))),
        }
    }

    /// An `optional string` field.
    pub(super) fn optional_string(
        &self,
        json: &str,
        proto: &str,
    ) -> Result<Option<String>, ApiError> {
        match self.field(json, proto) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(other) => Err(malformed(format!("{json} must be a string, got {other}"))),
        }
    }

    /// An `optional uint32` field.
    pub(super) fn optional_uint32(&self, json: &str, proto: &str) -> Result<Option<u32>, ApiError> {
        let Some(v) = self.field(json, proto) else {
            return Ok(None);
        };
        let n = match v {
            Value::Number(n) => n.as_u64(),
            Value::String(s) => s.trim().parse().ok(),
            _ => None,
        };
        n.and_then(|n| u32::try_from(n).ok())
            .map(Some)
            .ok_or_else(|| malformed(format!("{json} must be a 32-bit unsigned integer, got {v}")))
    }

    /// A `bool` field; false when absent.
    pub(super) fn bool(&self, json: &str, proto: &str) -> Result<bool, ApiError> {
        match self.field(json, proto) {
            None => Ok(false),
            Some(Value::Bool(b)) => Ok(*b),
            Some(other) => Err(malformed(format!("{json} must be a boolean, got {other}"))),
        }
    }

    /// A field of any JSON (a `google.protobuf.Value`, a message read later).
    pub(super) fn value(&self, json: &str, proto: &str) -> Option<Value> {
        self.field(json, proto).cloned()
    }

    /// An `int32` field; 0 when absent.
    pub(super) fn int32(&self, json: &str, proto: &str) -> Result<i32, ApiError> {
        let bad = |v: &Value| malformed(format!("{json} must be a 32-bit integer, got {v}"));
        match self.field(json, proto) {
            None => Ok(0),
            Some(v @ Value::Number(n)) => {
                // Protobuf's mapping takes 5.0 as 5, not 5.5.
                let whole = n.as_i64().or_else(|| {
                    n.as_f64()
                        .filter(|f| f.fract() == 0.0 && f.abs() < 1e15)
                        .map(|f| f as i64)
                });
                whole
                    .and_then(|i| i32::try_from(i).ok())
                    .ok_or_else(|| bad(v))
            }
            Some(v @ Value::String(s)) => s.trim().parse().map_err(|_| bad(v)),
            Some(other) => Err(bad(other)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(json: &str) -> Message {
        Message::parse(&Bytes::copy_from_slice(json.as_bytes())).unwrap()
    }

    #[test]
    fn fields_by_either_name_with_defaults() {
        let m = msg(r#"{"resourceId":"r","lock_owner":"o","expiryInSeconds":"7","x":1}"#);
        assert_eq!(m.string("resourceId", "resource_id").unwrap(), "r");
        assert_eq!(m.string("lockOwner", "lock_owner").unwrap(), "o");
        assert_eq!(m.int32("expiryInSeconds", "expiry_in_seconds").unwrap(), 7);
        assert_eq!(m.string("storeName", "store_name").unwrap(), "");
        let empty = Message::parse(&Bytes::new()).unwrap();
        assert_eq!(empty.int32("n", "n").unwrap(), 0);
        assert_eq!(msg(r#"{"n":null}"#).int32("n", "n").unwrap(), 0);
        assert_eq!(msg(r#"{"n":5.0}"#).int32("n", "n").unwrap(), 5);
    }

    #[test]
    fn wrong_types_are_refused_naming_the_field() {
        for (body, field) in [
            (r#"{"n":5.5}"#, "n"),
            (r#"{"n":4294967296}"#, "n"),
            (r#"{"n":"x"}"#, "n"),
            (r#"{"n":true}"#, "n"),
            (r#"{"s":3}"#, "s"),
        ] {
            let m = msg(body);
            let e = match field {
                "n" => m.int32("n", "n").unwrap_err(),
                _ => m.string("s", "s").unwrap_err(),
            };
            assert_eq!(e.status, StatusCode::BAD_REQUEST, "{body}");
            assert!(e.message.contains(field), "{body}: {}", e.message);
        }
        for body in ["[1]", "{", "\"s\""] {
            let e = Message::parse(&Bytes::from(body)).err().expect(body);
            assert_eq!(e.code, "ERR_MALFORMED_REQUEST");
        }
    }
}
