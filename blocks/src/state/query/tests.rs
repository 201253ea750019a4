use super::*;
use serde_json::json;

fn people() -> Vec<(&'static str, Value)> {
    vec![
        (
            "ana",
            json!({"name": "Ana", "age": 31, "org": {"team": "core"}, "tags": ["a"]}),
        ),
        (
            "bo",
            json!({"name": "Bo", "age": 25, "org": {"team": "edge"}}),
        ),
        (
            "cy",
            json!({"name": "Cy", "age": 40.0, "org": {"team": "core"}}),
        ),
        ("di", json!({"name": "Di", "age": "unknown"})),
        ("raw", json!("not an object")),
    ]
}

fn keys(q: &Value) -> Vec<&'static str> {
    Query::parse(q)
        .unwrap()
        .run(people())
        .0
        .into_iter()
        .map(|(k, _)| k)
        .collect()
}

#[test]
fn filters() {
    let cases = [
        (
            json!({"filter": {"EQ": {"org.team": "core"}}}),
            vec!["ana", "cy"],
        ),
        (
            json!({"filter": {"NEQ": {"org.team": "core"}}}),
            vec!["bo", "di", "raw"],
        ),
        (
            json!({"filter": {"IN": {"name": ["Bo", "Di", "Zed"]}}}),
            vec!["bo", "di"],
        ),
        (json!({"filter": {"GT": {"age": 30}}}), vec!["ana", "cy"]),
        (json!({"filter": {"GTE": {"age": 31}}}), vec!["ana", "cy"]),
        (json!({"filter": {"LT": {"age": 31}}}), vec!["bo"]),
        (
            json!({"filter": {"LTE": {"age": 40}}}),
            vec!["ana", "bo", "cy"],
        ),
        (json!({"filter": {"EQ": {"age": 40}}}), vec!["cy"]),
        (
            json!({"filter": {"AND": [{"EQ": {"org.team": "core"}}, {"LT": {"age": 35}}]}}),
            vec!["ana"],
        ),
        (
            json!({"filter": {"OR": [{"EQ": {"name": "Bo"}}, {"EQ": {"name": "Di"}}]}}),
            vec!["bo", "di"],
        ),
        (json!({"filter": {}}), vec!["ana", "bo", "cy", "di", "raw"]),
        (json!({}), vec!["ana", "bo", "cy", "di", "raw"]),
    ];
    for (q, want) in cases {
        assert_eq!(keys(&q), want, "{q}");
    }
}

#[test]
fn sort_and_pages() {
    let q = json!({"filter": {"GT": {"age": 0}}, "sort": [{"key": "age", "order": "DESC"}], "page": {"limit": 2}});
    let parsed = Query::parse(&q).unwrap();
    let (page, token) = parsed.run(people());
    assert_eq!(
        page.iter().map(|(k, _)| *k).collect::<Vec<_>>(),
        ["cy", "ana"]
    );
    let token = token.expect("more results");
    let next = json!({"filter": {"GT": {"age": 0}}, "sort": [{"key": "age", "order": "DESC"}], "page": {"limit": 2, "token": token}});
    let (page, token) = Query::parse(&next).unwrap().run(people());
    assert_eq!(page.iter().map(|(k, _)| *k).collect::<Vec<_>>(), ["bo"]);
    assert_eq!(token, None, "the last page has no token");
    assert_eq!(
        keys(&json!({"sort": [{"key": "name"}]})),
        ["raw", "ana", "bo", "cy", "di"],
        "missing fields sort first"
    );
}

#[test]
fn refusals() {
    for q in [
        json!([]),
        json!({"filter": {"LIKE": {"a": 1}}}),
        json!({"filter": {"EQ": {"a": 1, "b": 2}}}),
        json!({"filter": {"EQ": {"": 1}}}),
        json!({"filter": {"EQ": {"a..b": 1}}}),
        json!({"filter": {"IN": {"a": 1}}}),
        json!({"filter": {"AND": []}}),
        json!({"filter": {"EQ": {"a": 1}, "NEQ": {"b": 1}}}),
        json!({"sort": [{"order": "ASC"}]}),
        json!({"sort": [{"key": "a", "order": "UP"}]}),
        json!({"page": {"limit": -1}}),
        json!({"page": {"token": "x"}}),
    ] {
        assert!(Query::parse(&q).is_err(), "{q}");
    }
}
