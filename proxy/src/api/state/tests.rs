//! Table tests of the checks the state operations make, without a transport or a store call.

use std::sync::Arc;

use outrider_blocks::state::{
    Concurrency, Consistency, MemoryStore, Metadata, Operation, StateComponent,
};

use super::bulk::distinct_keys;
use super::transaction::{TransactionalStateOperation, operation};
use super::{StateItem, StateOptions, Store};

fn component(prefix: &str) -> StateComponent {
    StateComponent {
        name: "statestore".into(),
        type_: "state.in-memory".into(),
        version: "v1".into(),
        store: Arc::new(MemoryStore::new()),
        prefix: prefix.into(),
        layered: None,
        actor_store: false,
    }
}

fn options(concurrency: Option<&str>, consistency: Option<&str>) -> StateOptions {
    StateOptions {
        concurrency: concurrency.map(str::to_owned),
        consistency: consistency.map(str::to_owned),
    }
}

#[test]
fn options_in_daprd_words() {
    let ok = [
        (None, None, Concurrency::LastWrite, Consistency::Eventual),
        (
            Some(""),
            Some(""),
            Concurrency::LastWrite,
            Consistency::Eventual,
        ),
        (
            Some("first-write"),
            Some("strong"),
            Concurrency::FirstWrite,
            Consistency::Strong,
        ),
        (
            Some("last-write"),
            Some("eventual"),
            Concurrency::LastWrite,
            Consistency::Eventual,
        ),
    ];
    for (cc, cs, concurrency, consistency) in ok {
        let o = options(cc, cs).parse().unwrap();
        assert_eq!(
            (o.concurrency, o.consistency),
            (concurrency, consistency),
            "{cc:?} {cs:?}"
        );
    }
    let bad = [
        (
            Some("maybe"),
            None,
            "concurrency \"maybe\" is not first-write or last-write",
        ),
        (
            None,
            Some("STRONG"),
            "consistency \"STRONG\" is not eventual or strong",
        ),
        // Concurrency is checked first.
        (
            Some("x"),
            Some("y"),
            "concurrency \"x\" is not first-write or last-write",
        ),
    ];
    for (cc, cs, message) in bad {
        let e = options(cc, cs).parse().unwrap_err();
        assert_eq!((e.status.as_u16(), e.code), (400, "ERR_MALFORMED_REQUEST"));
        assert_eq!(e.message, message);
    }
}

#[test]
fn keys_are_prefixed_and_checked() {
    let c = component("app||");
    let store = Store {
        name: "statestore",
        c: &c,
    };
    assert_eq!(store.stored_key("k").unwrap(), "app||k");
    let cases = [
        ("a||b", "input key/keyPrefix 'a||b' can't contain '||'"),
        ("", "\"key\" is a required field"),
    ];
    for (key, message) in cases {
        let e = store.stored_key(key).unwrap_err();
        assert_eq!((e.status.as_u16(), e.code), (400, "ERR_MALFORMED_REQUEST"));
        assert_eq!(e.message, message);
    }
}

#[test]
fn transaction_operations_check_options_then_kind_then_key() {
    let c = component("app||");
    let store = Store {
        name: "statestore",
        c: &c,
    };
    let base = Metadata::from([
        ("a".into(), "request".into()),
        ("b".into(), "request".into()),
    ]);
    let op = |kind: &str, key: &str, opts: StateOptions| TransactionalStateOperation {
        operation_type: kind.into(),
        request: StateItem {
            key: key.into(),
            metadata: Metadata::from([("b".into(), "op".into())]),
            options: opts,
            ..StateItem::default()
        },
    };
    let Operation::Upsert(set) =
        operation(&store, &base, op("upsert", "k", options(None, None))).unwrap()
    else {
        panic!("not an upsert")
    };
    assert_eq!(set.key, "app||k");
    assert_eq!(&set.value[..], b"null");
    // The operation's own metadata wins over the request's.
    assert_eq!(set.metadata["a"], "request");
    assert_eq!(set.metadata["b"], "op");
    let del = operation(&store, &base, op("delete", "k", options(None, None))).unwrap();
    assert!(matches!(del, Operation::Delete(d) if d.key == "app||k"));
    let cases = [
        ("merge", "k", None, "ERR_NOT_SUPPORTED_STATE_OPERATION"),
        ("merge", "a||b", Some("bad"), "ERR_MALFORMED_REQUEST"),
        ("upsert", "a||b", None, "ERR_MALFORMED_REQUEST"),
        ("delete", "a||b", None, "ERR_MALFORMED_REQUEST"),
    ];
    for (kind, key, concurrency, code) in cases {
        let e = operation(&store, &base, op(kind, key, options(concurrency, None))).unwrap_err();
        assert_eq!((e.status.as_u16(), e.code), (400, code), "{kind} {key}");
    }
}

#[test]
fn bulk_keys_are_read_once_and_bounded() {
    let keys = ["a", "b", "a", "c", "b"].map(String::from).to_vec();
    assert_eq!(distinct_keys(keys).unwrap(), ["a", "b", "c"]);
    let many: Vec<String> = (0..10_001).map(|i| i.to_string()).collect();
    let e = distinct_keys(many).unwrap_err();
    assert_eq!((e.status.as_u16(), e.code), (400, "ERR_MALFORMED_REQUEST"));
    let repeated: Vec<String> = (0..20_000).map(|i| (i % 10_000).to_string()).collect();
    assert_eq!(distinct_keys(repeated).unwrap().len(), 10_000);
}
