//! Reading the app's subscriptions and merging them with declared ones.

use super::*;

#[test]
fn the_apps_own_subscriptions_win() {
    use outrider_blocks::subscription::Declared;
    let declared = |topic: &str, path: &str| Declared {
        name: topic.into(),
        pubsub: "pubsub".into(),
        topic: topic.into(),
        path: path.into(),
        rules: Vec::new(),
        dead_letter: String::new(),
        metadata: BTreeMap::new(),
        bulk: None,
    };
    let (app, _) = parse(&json!([{"pubsubname": "pubsub", "topic": "a", "route": "/from-app"}]));
    let merged = merge(app, &[declared("a", "/declared"), declared("b", "/b")]);
    let got: Vec<(&str, &str, Kind)> = merged
        .iter()
        .map(|s| (s.topic.as_str(), s.path.as_str(), s.kind))
        .collect();
    assert_eq!(
        got,
        [
            ("a", "/from-app", Kind::Programmatic),
            ("b", "/b", Kind::Declarative)
        ]
    );
}

#[test]
fn subscribe_answers() {
    let v = json!([
        {"pubsubname": "pubsub", "topic": "a", "route": "orders"},
        {"pubsubname": "pubsub", "topic": "b", "routes": {"default": "/b"}, "deadLetterTopic": "dead", "metadata": {"rawPayload": "true", "n": 1}},
        {"pubsubname": "pubsub", "topic": "c", "routes": {"rules": [{"match": "event.type == \"x\"", "path": "/x"}], "default": "/c"}},
        {"pubsubname": "pubsub", "topic": "r", "routes": {"rules": [{"match": "event.type == \"x\"", "path": "x"}]}},
        {"pubsubname": "pubsub", "topic": "d"},
        {"topic": "e", "route": "/e"},
        {"pubsubname": "pubsub", "topic": "f", "routes": {"rules": [{"match": "event.type ===", "path": "/x"}], "default": "/f"}},
    ]);
    let (specs, refused) = parse(&v);
    assert_eq!(
        specs
            .iter()
            .map(|s| (s.topic.as_str(), s.path.as_str(), s.rules.len()))
            .collect::<Vec<_>>(),
        [
            ("a", "/orders", 0),
            ("b", "/b", 0),
            ("c", "/c", 1),
            ("r", "", 1)
        ]
    );
    assert_eq!(specs[1].dead_letter, "dead");
    assert_eq!(specs[1].metadata["n"], "1");
    assert_eq!(specs[3].rules[0].path, "/x");
    // Listed as daprd lists them: the rules, then the default matching everything.
    let listed = &specs[2].to_metadata()["rules"];
    assert_eq!(
        listed,
        &json!([{"match": "event.type == \"x\"", "path": "/x"}, {"match": "", "path": "/c"}])
    );
    assert_eq!(refused.len(), 3, "{refused:?}");
    assert!(
        refused[2].contains("routes.rules[0]") && refused[2].contains("CEL"),
        "{refused:?}"
    );
    assert_eq!(parse(&json!({"not": "an array"})).0, Vec::new());
}
