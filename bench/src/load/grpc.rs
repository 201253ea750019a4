//! Dapr gRPC calls as load: `GetState` and `InvokeService` messages built with the vendored
//! protos and framed as gRPC sends them (h2c, one message per request).

use anyhow::Context as _;
use bytes::Bytes;

/// The Dapr gRPC call a load asks for, if any (`--grpc-get-state STORE/KEY` or
/// `--grpc-invoke APP/METHOD` with `data`): its path and its framed message.
pub fn call(
    get_state: Option<&str>,
    invoke: Option<&str>,
    data: &Bytes,
) -> anyhow::Result<Option<(String, Bytes)>> {
    use outrider_proto::common::v1 as common;
    use outrider_proto::runtime::v1 as rt;
    use prost::Message as _;
    let split = |what: &str, v: &str| -> anyhow::Result<(String, String)> {
        v.split_once('/')
            .map(|(a, b)| (a.to_owned(), b.to_owned()))
            .with_context(|| format!("--{what} {v:?} is not `A/B`"))
    };
    let (rpc, message) = match (get_state, invoke) {
        (Some(v), _) => {
            let (store_name, key) = split("grpc-get-state", v)?;
            let m = rt::GetStateRequest {
                store_name,
                key,
                ..Default::default()
            };
            ("GetState", m.encode_to_vec())
        }
        (_, Some(v)) => {
            let (id, method) = split("grpc-invoke", v)?;
            let m = rt::InvokeServiceRequest {
                id,
                message: Some(common::InvokeRequest {
                    method,
                    data: Some(prost_types::Any {
                        type_url: String::new(),
                        value: data.to_vec(),
                    }),
                    content_type: "application/octet-stream".into(),
                    http_extension: Some(common::HttpExtension {
                        verb: common::http_extension::Verb::Post as i32,
                        querystring: String::new(),
                    }),
                }),
            };
            ("InvokeService", m.encode_to_vec())
        }
        _ => return Ok(None),
    };
    // The gRPC frame: not compressed, the length, the message.
    let mut framed = vec![0u8];
    framed.extend_from_slice(&u32::try_from(message.len())?.to_be_bytes());
    framed.extend_from_slice(&message);
    Ok(Some((
        format!("/dapr.proto.runtime.v1.Dapr/{rpc}"),
        Bytes::from(framed),
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use outrider_proto::runtime::v1 as rt;
    use prost::Message as _;

    #[test]
    fn calls_are_framed_messages_of_the_dapr_service() {
        let (path, framed) = call(Some("statestore/bench"), None, &Bytes::new())
            .unwrap()
            .unwrap();
        assert_eq!(path, "/dapr.proto.runtime.v1.Dapr/GetState");
        assert_eq!(framed[0], 0, "not compressed");
        let len = u32::from_be_bytes([framed[1], framed[2], framed[3], framed[4]]) as usize;
        assert_eq!(len, framed.len() - 5);
        let m = rt::GetStateRequest::decode(&framed[5..]).unwrap();
        assert_eq!(
            (m.store_name.as_str(), m.key.as_str()),
            ("statestore", "bench")
        );
        let (path, framed) = call(None, Some("b/echo"), &Bytes::from_static(b"xy"))
            .unwrap()
            .unwrap();
        assert_eq!(path, "/dapr.proto.runtime.v1.Dapr/InvokeService");
        let m = rt::InvokeServiceRequest::decode(&framed[5..]).unwrap();
        let inner = m.message.unwrap();
        assert_eq!((m.id.as_str(), inner.method.as_str()), ("b", "echo"));
        assert_eq!(inner.data.unwrap().value, b"xy");
        assert!(call(Some("no-slash"), None, &Bytes::new()).is_err());
        assert!(call(None, None, &Bytes::new()).unwrap().is_none());
    }
}
