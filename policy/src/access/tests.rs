use serde_json::{Value, json};

use super::*;

fn caller(app: &str, ns: &str, td: &str) -> Caller {
    Caller {
        app_id: app.into(),
        namespace: ns.into(),
        trust_domain: td.into(),
    }
}

fn acl(spec: Value) -> AccessControl {
    AccessControl::merge([AccessControlSpec::parse(&spec, "test.yaml").expect("valid spec")])
        .expect("merges")
}

/// The policy set most rows below use: app `a` in `default` has operation rules, app `b` a
/// default of its own and no rules, app `c` is in another trust domain.
fn shop() -> AccessControl {
    acl(json!({
        "defaultAction": "deny",
        "trustDomain": "public",
        "policies": [
            {"appId": "a", "namespace": "default", "trustDomain": "public", "defaultAction": "allow",
             "operations": [
                {"name": "/admin/**", "httpVerb": ["*"], "action": "deny"},
                {"name": "/orders/*", "httpVerb": ["GET"], "action": "allow"},
                {"name": "/orders/*", "httpVerb": ["POST"], "action": "deny"},
                {"name": "Reports", "httpVerb": ["post", "PUT"], "action": "deny"},
                {"name": "/noaction", "httpVerb": ["GET"]},
             ]},
            {"appId": "b", "namespace": "default", "trustDomain": "public", "defaultAction": "allow"},
            {"appId": "c", "namespace": "default", "trustDomain": "other", "defaultAction": "allow"},
            {"appId": "d", "namespace": "default", "trustDomain": "public",
             "operations": [{"name": "/open", "httpVerb": ["GET"], "action": "allow"}]},
        ],
    }))
}

/// (who, operation, verb, expected action, expected rule level, a fragment of the rule's text)
type Row<'a> = (Option<Caller>, &'a str, &'a str, Action, &'a str, &'a str);

#[test]
fn precedence_table() {
    let a = caller("a", "default", "public");
    let d = caller("d", "default", "public");
    let rows: Vec<Row<'_>> = vec![
        // The global default: no identity, no policy for the app, the app's policy in another
        // namespace, the policy's trust domain differing.
        (
            None,
            "/orders/1",
            "GET",
            Action::Deny,
            "global",
            "no identity",
        ),
        (
            Some(caller("z", "default", "public")),
            "/orders/1",
            "GET",
            Action::Deny,
            "global",
            "no policy",
        ),
        (
            Some(caller("a", "other-ns", "public")),
            "/orders/1",
            "GET",
            Action::Deny,
            "global",
            "no policy",
        ),
        (
            Some(caller("c", "default", "public")),
            "/x",
            "GET",
            Action::Deny,
            "global",
            "another trust domain",
        ),
        // The app's default replaces the global one when nothing more specific matches.
        (
            Some(a.clone()),
            "/elsewhere",
            "GET",
            Action::Allow,
            "app",
            "its defaultAction",
        ),
        (
            Some(caller("b", "default", "public")),
            "/anything",
            "DELETE",
            Action::Allow,
            "app",
            "its defaultAction",
        ),
        // An app policy without a default inherits the global one.
        (
            Some(d.clone()),
            "/closed",
            "GET",
            Action::Deny,
            "app",
            "global defaultAction",
        ),
        (
            Some(d.clone()),
            "/open",
            "GET",
            Action::Allow,
            "app",
            "verb GET",
        ),
        // Operation rules: the verb's own entry, then `*`, else the default stands.
        (
            Some(a.clone()),
            "/orders/1",
            "GET",
            Action::Allow,
            "app",
            "verb GET",
        ),
        (
            Some(a.clone()),
            "/orders/1",
            "POST",
            Action::Allow,
            "app",
            "no entry for this verb",
        ),
        (
            Some(a.clone()),
            "/admin/users/1",
            "GET",
            Action::Deny,
            "app",
            "verb *",
        ),
        (
            Some(a.clone()),
            "/admin",
            "DELETE",
            Action::Deny,
            "app",
            "verb *",
        ),
        (
            Some(d.clone()),
            "/open",
            "POST",
            Action::Deny,
            "app",
            "no entry for this verb",
        ),
        // Names and paths compare case-insensitively; a name without a leading slash gets one;
        // configured verbs are upper-cased.
        (
            Some(a.clone()),
            "/REPORTS",
            "POST",
            Action::Deny,
            "app",
            "verb POST",
        ),
        (
            Some(a.clone()),
            "/reports/2026",
            "PUT",
            Action::Deny,
            "app",
            "verb PUT",
        ),
        (
            Some(a.clone()),
            "reports",
            "GET",
            Action::Allow,
            "app",
            "no entry for this verb",
        ),
        // A rule without an action denies.
        (
            Some(a.clone()),
            "/noaction",
            "GET",
            Action::Deny,
            "app",
            "verb GET",
        ),
        // A verb no rule can name gets the policy's own default (unset: deny).
        (
            Some(a.clone()),
            "/orders/1",
            "PROPFIND",
            Action::Allow,
            "app",
            "no entry for this verb",
        ),
        (
            Some(d.clone()),
            "/open",
            "PROPFIND",
            Action::Deny,
            "app",
            "no entry for this verb",
        ),
    ];
    let acl = shop();
    for (who, op, verb, action, level, why) in rows {
        let d = acl.decide(who.as_ref(), op, verb);
        assert_eq!(d.action, action, "{who:?} {verb} {op}: {}", d.rule);
        assert_eq!(d.rule.level(), level, "{who:?} {verb} {op}: {}", d.rule);
        assert!(
            d.rule.to_string().contains(why),
            "{who:?} {verb} {op}: {:?} lacks {why:?}",
            d.rule.to_string()
        );
    }
}

#[test]
fn defaults_follow_daprd() {
    let any = caller("x", "default", "public");
    // (spec, expected action for an unknown caller, whether access control is on)
    let rows = [
        (Value::Null, Action::Allow, false),
        (json!({}), Action::Allow, false),
        (json!({"policies": []}), Action::Allow, false),
        (json!({"defaultAction": "DENY"}), Action::Deny, true),
        (
            json!({"defaultAction": "Allow", "policies": []}),
            Action::Allow,
            true,
        ),
        // Policies without a global default: deny.
        (
            json!({"policies": [{"appId": "a", "namespace": "n", "trustDomain": "public"}]}),
            Action::Deny,
            true,
        ),
        // A trust domain alone, without a `policies` key: daprd denies (its list is nil).
        (json!({"trustDomain": "public"}), Action::Deny, true),
        // The same with an empty list: allow.
        (
            json!({"trustDomain": "public", "policies": []}),
            Action::Allow,
            true,
        ),
    ];
    for (spec, want, enabled) in rows {
        let acl = acl(spec.clone());
        assert_eq!(acl.is_enabled(), enabled, "{spec}");
        assert_eq!(acl.decide(Some(&any), "/x", "GET").action, want, "{spec}");
    }
    assert_eq!(
        AccessControl::open().decide(None, "/x", "GET").rule,
        Rule::Open
    );
}

#[test]
fn bad_specs_name_field_and_value() {
    let rows = [
        (
            json!({"defaultAction": "alow"}),
            "spec.accessControl.defaultAction",
            "\"alow\"",
        ),
        (
            json!({"policies": {"a": 1}}),
            "spec.accessControl.policies",
            "not a list",
        ),
        (
            json!({"policies": [{"namespace": "n", "trustDomain": "t"}]}),
            "policies[0].appId",
            "required",
        ),
        (
            json!({"policies": [{"appId": "a", "trustDomain": "t"}]}),
            "policies[0].namespace",
            "required",
        ),
        (
            json!({"policies": [{"appId": "a", "namespace": "n"}]}),
            "policies[0].trustDomain",
            "required",
        ),
        (
            json!({"policies": [{"appId": "a", "namespace": "n", "trustDomain": "t", "defaultAction": "maybe"}]}),
            "policies[0].defaultAction",
            "maybe",
        ),
        (
            json!({"policies": [{"appId": "a", "namespace": "n", "trustDomain": "t", "operations": [{"httpVerb": ["GET"]}]}]}),
            "operations[0].name",
            "required",
        ),
        (
            json!({"policies": [{"appId": "a", "namespace": "n", "trustDomain": "t", "operations": [{"name": "/x", "httpVerb": ["FETCH"]}]}]}),
            "operations[0].httpVerb[0]",
            "FETCH",
        ),
        (
            json!({"policies": [{"appId": "a", "namespace": "n", "trustDomain": "t", "operations": [{"name": "/x", "httpVerb": "GET"}]}]}),
            "operations[0].httpVerb",
            "not a list",
        ),
        (
            json!({"policies": [{"appId": "a", "namespace": "n", "trustDomain": "t", "operations": [{"name": "/x", "action": "yes"}]}]}),
            "operations[0].action",
            "yes",
        ),
        (json!("deny"), "spec.accessControl", "not a mapping"),
    ];
    for (spec, field, value) in rows {
        let errs = AccessControlSpec::parse(&spec, "f.yaml").expect_err("invalid");
        assert!(
            errs.iter()
                .any(|e| e.field.ends_with(field) && e.message.contains(value)),
            "{spec}: {errs:?} should name {field} and {value}"
        );
    }
}

#[test]
fn merging_sources_keeps_them_consistent() {
    let parse = |v: Value, origin: &str| AccessControlSpec::parse(&v, origin).unwrap();
    let policy = |app: &str| json!({"appId": app, "namespace": "default", "trustDomain": "public", "defaultAction": "allow"});
    // Policies from several files combine.
    let merged = AccessControl::merge([
        parse(json!({"defaultAction": "deny"}), "config.yaml"),
        parse(json!({"policies": [policy("a")]}), "ns/a.yaml"),
        parse(
            json!({"defaultAction": "deny", "policies": [policy("b")]}),
            "ns/b.yaml",
        ),
    ])
    .unwrap();
    assert_eq!(merged.policy_count(), 2);
    let a = caller("a", "default", "public");
    assert!(merged.decide(Some(&a), "/x", "GET").allowed());
    assert!(
        merged
            .decide(Some(&a), "/x", "GET")
            .rule
            .to_string()
            .starts_with("ns/a.yaml: ")
    );
    // Conflicting globals and a second policy for one app are problems naming both files.
    let errs = AccessControl::merge([
        parse(
            json!({"defaultAction": "deny", "policies": [policy("a")]}),
            "one.yaml",
        ),
        parse(
            json!({"defaultAction": "allow", "policies": [policy("a")]}),
            "two.yaml",
        ),
        parse(json!({"trustDomain": "x"}), "three.yaml"),
        parse(json!({"trustDomain": "y"}), "four.yaml"),
    ])
    .unwrap_err();
    let text: Vec<String> = errs.iter().map(ToString::to_string).collect();
    assert!(
        text.iter().any(
            |t| t.starts_with("two.yaml: spec.accessControl.defaultAction")
                && t.contains("one.yaml")
        ),
        "{text:?}"
    );
    assert!(
        text.iter()
            .any(|t| t.starts_with("two.yaml: spec.accessControl.policies")
                && t.contains("one.yaml")),
        "{text:?}"
    );
    assert!(
        text.iter().any(
            |t| t.starts_with("four.yaml: spec.accessControl.trustDomain")
                && t.contains("three.yaml")
        ),
        "{text:?}"
    );
}
