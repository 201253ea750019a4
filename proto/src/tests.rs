use prost::Message as _;
use prost_types::FileDescriptorSet;

use super::runtime::v1 as rt;

/// The methods of service `name` in the vendored protos.
fn methods(name: &str) -> Vec<String> {
    let set = FileDescriptorSet::decode(super::FILE_DESCRIPTOR_SET).expect("a descriptor set");
    set.file
        .iter()
        .filter(|f| f.package() == "dapr.proto.runtime.v1")
        .flat_map(|f| &f.service)
        .filter(|s| s.name() == name)
        .flat_map(|s| s.method.iter().map(|m| m.name().to_owned()))
        .collect()
}

#[test]
fn the_pinned_protos_define_every_rpc_the_sidecar_serves_and_calls() {
    let dapr = methods("Dapr");
    for rpc in [
        "InvokeService",
        "GetState",
        "GetBulkState",
        "SaveState",
        "DeleteState",
        "DeleteBulkState",
        "ExecuteStateTransaction",
        "QueryStateAlpha1",
        "PublishEvent",
        "BulkPublishEventAlpha1",
        "SubscribeTopicEventsAlpha1",
        "GetSecret",
        "GetBulkSecret",
        "GetMetadata",
        "SetMetadata",
        "Shutdown",
    ] {
        assert!(dapr.iter().any(|m| m == rpc), "Dapr has no {rpc}: {dapr:?}");
    }
    let callback = methods("AppCallback");
    for rpc in ["OnInvoke", "ListTopicSubscriptions", "OnTopicEvent"] {
        assert!(
            callback.iter().any(|m| m == rpc),
            "AppCallback has no {rpc}: {callback:?}"
        );
    }
    assert!(
        methods("AppCallbackAlpha")
            .iter()
            .any(|m| m == "OnBulkTopicEventAlpha1"),
        "no bulk topic event callback"
    );
    assert_eq!(
        <rt::dapr_server::DaprServer<()> as tonic::server::NamedService>::NAME,
        "dapr.proto.runtime.v1.Dapr"
    );
}

#[test]
fn messages_round_trip_in_the_wire_format() {
    let req = rt::SaveStateRequest {
        store_name: "statestore".into(),
        states: vec![super::common::v1::StateItem {
            key: "k".into(),
            value: prost::bytes::Bytes::from_static(b"{\"n\":1}"),
            etag: Some(super::common::v1::Etag { value: "1".into() }),
            ..Default::default()
        }],
    };
    let bytes = req.encode_to_vec();
    assert_eq!(rt::SaveStateRequest::decode(bytes.as_slice()).unwrap(), req);
    assert!(
        rt::SaveStateRequest::decode(&[0xff, 0xff, 0xff][..]).is_err(),
        "a malformed frame is an error"
    );
}
