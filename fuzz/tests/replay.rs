//! The fuzz targets' checks on stable Rust: every input kept in `corpus/<target>/`, then random
//! inputs from proptest, shaped so that they reach past the first parse.

use std::path::Path;

use proptest::prelude::*;

/// Runs `check` on every file of `corpus/<target>/`; there must be some.
fn replay(target: &str, check: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("corpus")
        .join(target);
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        check(&std::fs::read(&path).unwrap());
        n += 1;
    }
    assert!(n > 0, "{} holds no inputs", dir.display());
}

#[test]
fn corpus_framing() {
    replay("framing", outrider_fuzz::framing);
}

#[test]
fn corpus_path_acl() {
    replay("path_acl", outrider_fuzz::path_acl);
}

#[test]
fn corpus_spiffe_id() {
    replay("spiffe_id", outrider_fuzz::spiffe_id);
}

#[test]
fn corpus_cloudevent() {
    replay("cloudevent", outrider_fuzz::cloudevent);
}

#[test]
fn corpus_state_query() {
    replay("state_query", outrider_fuzz::state_query);
}

#[test]
fn corpus_resources() {
    replay("resources", outrider_fuzz::resources);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn random_framing(split in 1u8.., head in "(GET|POST) /[a-z%./]{0,12} HTTP/1\\.1\r\n((Content-Length|Transfer-Encoding|Host): [0-9a-z, ]{0,8}\r\n){0,3}\r\n", rest in proptest::collection::vec(any::<u8>(), 0..64)) {
        let mut data = vec![split];
        data.extend_from_slice(head.as_bytes());
        data.extend_from_slice(&rest);
        outrider_fuzz::framing(&data);
    }

    #[test]
    fn random_paths(p in "(/|//|\\\\|%2[fF]|%5[cC]|%2[eE]|\\.|\\.\\.|[a-zA-Z]|%[0-9a-fA-F]{2}|#|\\?|;){0,24}") {
        outrider_fuzz::path_acl(p.as_bytes());
    }

    #[test]
    fn random_spiffe_ids(s in "spiffe://[a-z0-9.\\-_]{0,10}(/ns/[a-zA-Z0-9.\\-_]{0,6}(/[a-zA-Z0-9.\\-_%]{0,8}){0,2})?") {
        outrider_fuzz::spiffe_id(s.as_bytes());
    }

    #[test]
    fn random_envelopes(ct in "(application/(json|cloudevents\\+json|octet-stream)|text/plain)?(; charset=utf-8)?", md in "(cloudevent\\.(id|type|source|traceid)=[a-z0-9]{0,4}&?){0,3}", body in proptest::collection::vec(any::<u8>(), 0..48)) {
        let mut data = format!("{ct}\n{md}\n").into_bytes();
        data.extend_from_slice(&body);
        outrider_fuzz::cloudevent(&data);
        outrider_fuzz::cloudevent(&[ct.as_bytes(), b"\n\n{\"specversion\":\"1.0\",\"data\":", &body].concat());
    }

    #[test]
    fn random_queries(field in "[abcd](\\.[cd])?", op in "EQ|NEQ|GT|GTE|LT|LTE|IN", v in "1|2\\.5|\"x\"|\"1\"|true|null|-3|\\[1\\]", desc in any::<bool>(), limit in 0u8..5, token in 0u8..6) {
        let value: serde_json::Value = serde_json::from_str(&v).unwrap();
        let arg = if op == "IN" { serde_json::json!([value]) } else { value };
        let q = serde_json::json!({
            "filter": {op.clone(): {field.clone(): arg}},
            "sort": [{"key": field, "order": if desc { "DESC" } else { "ASC" }}],
            "page": {"limit": limit, "token": if token == 0 { String::new() } else { token.to_string() }},
        });
        outrider_fuzz::state_query(q.to_string().as_bytes());
    }

    #[test]
    fn random_resources(kind in "Component|Subscription|Resiliency|Configuration", name in "[a-z]{0,5}", ty in "(state|pubsub|secretstores)\\.[a-z\\-]{0,10}", key in "[a-zA-Z]{0,12}", value in "[a-z0-9: ]{0,8}") {
        let doc = format!(
            "apiVersion: dapr.io/v1alpha1\nkind: {kind}\nmetadata:\n  name: {name}\nspec:\n  type: {ty}\n  version: v1\n  \
             metadata:\n  - name: {key}\n    value: \"{value}\"\n  topic: {name}\n  route: /{value}\n  \
             accessControl:\n    defaultAction: {value}\n---\nkind: {kind}\n"
        );
        outrider_fuzz::resources(doc.as_bytes());
    }
}
