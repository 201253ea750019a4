use super::*;

fn file(json: &str, separator: &str, multi: bool) -> LocalFile {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("secrets.json");
    std::fs::write(&path, json).unwrap();
    let store = LocalFile::load(path, separator.into(), multi).unwrap();
    drop(dir.keep());
    store
}

const NESTED: &str = r#"{"db": {"user": "app", "password": "s3cret", "hosts": ["a", "b"]},
    "port": 5432, "tls": true, "plain": "value"}"#;

#[test]
fn nested_values_are_flattened_with_the_separator() {
    let s = file(NESTED, ":", false);
    assert_eq!(
        s.get("db:password").unwrap(),
        Secret::from([("db:password".into(), "s3cret".into())])
    );
    assert_eq!(s.get("db:hosts:1").unwrap()["db:hosts:1"], "b");
    assert_eq!(s.get("plain").unwrap()["plain"], "value");
    assert_eq!(
        s.get("port").unwrap()["port"],
        "5432",
        "numbers as their JSON text"
    );
    assert_eq!(s.get("tls").unwrap()["tls"], "true");
    assert_eq!(s.get("db"), Err(SecretError::NotFound("db".into())));
    let dotted = file(NESTED, ".", false);
    assert_eq!(dotted.get("db.user").unwrap()["db.user"], "app");
    assert_eq!(s.bulk().unwrap().len(), 7);
}

#[test]
fn multi_valued_secrets_keep_their_keys() {
    let s = file(NESTED, ":", true);
    let db = s.get("db").unwrap();
    assert_eq!(
        (
            db["user"].as_str(),
            db["password"].as_str(),
            db["hosts:0"].as_str()
        ),
        ("app", "s3cret", "a")
    );
    assert_eq!(
        s.get("plain").unwrap(),
        Secret::from([("plain".into(), "value".into())])
    );
    assert_eq!(s.get("port").unwrap()["port"], "5432");
    assert!(matches!(s.get("db:user"), Err(SecretError::NotFound(_))));
}

#[test]
fn a_bad_file_is_refused_and_a_bad_reload_keeps_the_last_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.json");
    assert!(
        LocalFile::load(path.clone(), ":".into(), false).is_err(),
        "missing"
    );
    std::fs::write(&path, "[1]").unwrap();
    assert!(
        LocalFile::load(path.clone(), ":".into(), false)
            .unwrap_err()
            .contains("object")
    );
    std::fs::write(&path, r#"{"a": "1"}"#).unwrap();
    let s = LocalFile::load(path.clone(), ":".into(), false).unwrap();
    std::fs::write(&path, "{not json").unwrap();
    assert!(s.reload().is_err());
    assert_eq!(s.get("a").unwrap()["a"], "1", "the last good secrets stay");
    std::fs::write(&path, r#"{"a": "2"}"#).unwrap();
    s.reload().unwrap();
    assert_eq!(s.get("a").unwrap()["a"], "2");
}

#[test]
fn references_resolve_through_the_named_store_or_fail_naming_the_secret() {
    let files = SecretStoreComponent {
        name: "files".into(),
        type_: "secretstores.local.file".into(),
        version: "v1".into(),
        store: Arc::new(file(NESTED, ":", true)),
    };
    let stores = BTreeMap::from([("files".to_owned(), files)]);
    let component = |auth: &str, md: Value| -> Component {
        let mut doc = serde_json::json!({"metadata": {"name": "c"}, "spec": {"type": "state.redis", "metadata": md}});
        if !auth.is_empty() {
            doc["auth"] = serde_json::json!({"secretStore": auth});
        }
        serde_json::from_value(doc).unwrap()
    };
    let c = component(
        "files",
        serde_json::json!([
            {"name": "redisHost", "value": "localhost:6379"},
            {"name": "redisPassword", "secretKeyRef": {"name": "db", "key": "password"}},
            {"name": "user", "secretKeyRef": {"name": "plain"}},
        ]),
    );
    let resolved = resolve_references(&c, &stores).unwrap();
    let values: Vec<Option<&str>> = resolved
        .spec
        .metadata
        .iter()
        .map(|m| m.value.as_ref().and_then(Value::as_str))
        .collect();
    assert_eq!(
        values,
        [Some("localhost:6379"), Some("s3cret"), Some("value")]
    );
    let bad = component(
        "files",
        serde_json::json!([
            {"name": "redisPassword", "secretKeyRef": {"name": "db", "key": "nokey"}},
            {"name": "other", "secretKeyRef": {"name": "absent", "key": "k"}},
        ]),
    );
    let errs = resolve_references(&bad, &stores).unwrap_err();
    assert_eq!(errs.len(), 2);
    assert!(
        errs[0].field.contains("redisPassword") && errs[0].message.contains("\"nokey\""),
        "{errs:?}"
    );
    assert!(
        errs[1].message.contains("secret absent not found"),
        "{errs:?}"
    );
    assert!(
        errs.iter().all(|e| !e.message.contains("s3cret")),
        "no value in errors"
    );
    let elsewhere = component(
        "vault",
        serde_json::json!([{"name": "p", "secretKeyRef": {"name": "x"}}]),
    );
    assert!(
        resolve_references(&elsewhere, &stores).unwrap_err()[0]
            .message
            .contains("\"vault\"")
    );
    // Without auth.secretStore the environment answers.
    let env = component(
        "",
        serde_json::json!([{"name": "p", "secretKeyRef": {"name": "PATH"}}, {"name": "q", "envRef": "PATH"}]),
    );
    let resolved = resolve_references(&env, &stores).unwrap();
    assert!(resolved.spec.metadata.iter().all(|m| {
        m.value
            .as_ref()
            .and_then(Value::as_str)
            .is_some_and(|v| !v.is_empty())
    }));
    let hidden_ref = component(
        "",
        serde_json::json!([{"name": "q", "envRef": "DAPR_API_TOKEN"}]),
    );
    assert!(resolve_references(&hidden_ref, &stores).is_err());
}

#[test]
fn a_watched_file_serves_its_new_values() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.json");
    std::fs::write(&path, r#"{"a": "1"}"#).unwrap();
    let store = Arc::new(LocalFile::load(path.clone(), ":".into(), false).unwrap());
    LocalFile::watch(&store).unwrap();
    // Written elsewhere and renamed into place, as editors and Kubernetes do.
    let tmp = dir.path().join("s.json.tmp");
    std::fs::write(&tmp, r#"{"a": "2", "b": "3"}"#).unwrap();
    std::fs::rename(&tmp, &path).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while store.get("b").is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "the change was not picked up"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(store.get("a").unwrap()["a"], "2");
}

#[test]
fn scopes_follow_daprds_precedence() {
    let scope = |default: &str, allowed: &[&str], denied: &[&str]| SecretScope {
        store_name: "s".into(),
        default_access: default.into(),
        allowed_secrets: allowed.iter().map(|s| (*s).to_owned()).collect(),
        denied_secrets: denied.iter().map(|s| (*s).to_owned()).collect(),
    };
    // (default, allowed, denied, secret) → allowed?
    type Row<'a> = (&'a str, &'a [&'a str], &'a [&'a str], &'a str, bool);
    let table: [Row; 10] = [
        ("", &[], &[], "x", true),
        ("allow", &[], &[], "x", true),
        ("deny", &[], &[], "x", false),
        ("DENY", &[], &[], "x", false),
        ("deny", &["x"], &[], "x", true),
        ("deny", &["x"], &[], "y", false),
        ("allow", &["x"], &[], "y", false),
        ("allow", &[], &["x"], "x", false),
        ("allow", &["x"], &["x"], "x", true),
        ("whatever", &[], &[], "x", true),
    ];
    for (default, allowed, denied, secret, want) in table {
        let scopes = SecretScopes::new(vec![scope(default, allowed, denied)]).unwrap();
        assert_eq!(
            scopes.allows("s", secret),
            want,
            "{default:?} {allowed:?} {denied:?} {secret}"
        );
        assert!(
            scopes.allows("other-store", secret),
            "stores without an entry allow all"
        );
    }
    let twice = SecretScopes::new(vec![scope("", &[], &[]), scope("deny", &[], &[])]).unwrap_err();
    assert_eq!(twice[0].field, "spec.secrets.scopes[1].storeName");
    assert!(SecretScopes::new(vec![SecretScope::default()]).is_err());
}

#[test]
fn env_secrets_hide_the_sidecars_own() {
    let env = LocalEnv {
        prefix: String::new(),
    };
    // PATH is always set in tests; DAPR_ and APP_API_TOKEN never come out.
    assert!(!env.get("PATH").unwrap()["PATH"].is_empty());
    assert_eq!(
        env.get("OUTRIDER_SURELY_UNSET_VARIABLE").unwrap()["OUTRIDER_SURELY_UNSET_VARIABLE"],
        ""
    );
    assert!(env.bulk().unwrap().keys().all(|k| !hidden(k)));
    assert!(hidden("DAPR_API_TOKEN") && hidden("APP_API_TOKEN") && !hidden("APP_PORT"));
    let prefixed = LocalEnv {
        prefix: "PA".into(),
    };
    assert!(
        prefixed.bulk().unwrap().contains_key("TH"),
        "the prefix is stripped"
    );
}
