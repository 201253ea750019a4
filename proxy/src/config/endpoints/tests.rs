use super::*;

/// Loads one document for app `a`: (endpoints kept, problems, warnings), each problem as
/// `field: message`.
fn read(yaml: &str) -> (Vec<HttpEndpointDoc>, Vec<String>, Vec<String>) {
    let doc: Value = serde_saphyr::from_str(yaml).unwrap();
    let (mut out, mut problems, mut warnings) = (Vec::new(), Vec::new(), Vec::new());
    load(doc, "f.yaml", "a", &mut out, (&mut problems, &mut warnings));
    let text = |ps: Vec<Problem>| ps.iter().map(|p| format!("{p}")).collect();
    (out, text(problems), text(warnings))
}

const FULL: &str = r#"
apiVersion: dapr.io/v1alpha1
kind: HTTPEndpoint
metadata: {name: ext}
spec:
  baseUrl: https://api.example.com/v1
  headers:
    - {name: Authorization, secretKeyRef: {name: token, key: token}}
    - {name: X-Plain, value: plain}
    - {name: X-Env, envRef: SOME_VAR}
  clientTLS:
    rootCA: {value: "-----BEGIN CERTIFICATE-----"}
    certificate: {secretKeyRef: {name: client, key: cert}}
    privateKey: {secretKeyRef: {name: client, key: key}}
    renegotiation: Never
auth: {secretStore: vault}
scopes: [a, b]
"#;

#[test]
fn a_full_endpoint_loads_with_its_references_unread() {
    let (out, problems, warnings) = read(FULL);
    assert_eq!((problems, warnings), (vec![], vec![]));
    let e = &out[0];
    assert_eq!(
        (
            e.name.as_str(),
            e.base_url.as_str(),
            e.secret_store.as_deref()
        ),
        ("ext", "https://api.example.com/v1", Some("vault"))
    );
    assert_eq!(e.headers.len(), 3);
    assert!(e.headers[0].secret_key_ref.is_some() && e.headers[0].value.is_none());
    let tls: Vec<&str> = e.tls.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(tls, ["rootCA", "certificate", "privateKey"]);
}

#[test]
fn an_endpoint_scoped_to_other_apps_is_not_this_apps() {
    let (out, problems, _) = read(&FULL.replace("scopes: [a, b]", "scopes: [b]"));
    assert!(out.is_empty() && problems.is_empty(), "{problems:?}");
}

#[test]
fn bad_endpoints_are_refused_naming_the_field() {
    let minimal = "kind: HTTPEndpoint\nmetadata: {name: ext}\nspec:\n  baseUrl: https://h\n";
    let cases: &[(&str, &str)] = &[
        (
            "kind: HTTPEndpoint\nspec: {baseUrl: 'https://h'}",
            "metadata.name",
        ),
        (
            "kind: HTTPEndpoint\nmetadata: {name: ext}",
            "spec.baseUrl: is required",
        ),
        (
            &minimal.replace("https://h", "h.example.com"),
            "spec.baseUrl",
        ),
        (&minimal.replace("https://h", "ftp://h"), "scheme"),
        (
            &minimal.replace("https://h", "https://u:p@h"),
            "credentials",
        ),
        (&minimal.replace("https://h", "https://h/?q=1"), "query"),
        (
            &format!("{minimal}  headers: [{{name: 'bad name', value: x}}]"),
            "spec.headers[0]: \"bad name\" is not a header name",
        ),
        (
            &format!("{minimal}  headers: [{{name: Host, value: x}}]"),
            "cannot be set",
        ),
        (
            &format!("{minimal}  headers: [{{name: Content-Length, value: '1'}}]"),
            "cannot be set",
        ),
        (
            &format!("{minimal}  headers: [{{name: X-A}}]"),
            "needs a value, a secretKeyRef or an envRef",
        ),
        (
            &format!("{minimal}  headers: [{{name: X-A, value: x, envRef: V}}]"),
            "more than one",
        ),
        (
            &format!("{minimal}  headers: [{{name: X-A, value: {{a: 1}}}}]"),
            "must be a string",
        ),
        (
            &format!("{minimal}  clientTLS: {{certificate: {{value: x}}}}"),
            "spec.clientTLS.certificate: a client certificate and its privateKey go together",
        ),
        (
            &format!("{minimal}  clientTLS: {{privateKey: {{value: x}}}}"),
            "go together",
        ),
        (
            &format!("{minimal}  clientTLS: {{rootCA: {{}}}}"),
            "spec.clientTLS.rootCA: needs exactly one of value and secretKeyRef",
        ),
        (
            &format!("{minimal}  clientTLS: {{rootCA: {{value: 3}}}}"),
            "must be a PEM string",
        ),
        (
            &format!("{minimal}  clientTLS: {{renegotiation: Sometimes}}"),
            "spec.clientTLS.renegotiation: \"Sometimes\" is not one of",
        ),
        (
            "kind: HTTPEndpoint\nmetadata: {name: ext}\nspec: [1]",
            "not a valid HTTPEndpoint",
        ),
    ];
    for (yaml, wanted) in cases {
        let (out, problems, _) = read(yaml);
        assert!(out.is_empty(), "{yaml}");
        assert!(
            problems
                .iter()
                .any(|p| p.starts_with("f.yaml") && p.contains(wanted)),
            "{yaml}: {problems:?}"
        );
    }
}

#[test]
fn what_is_accepted_with_a_warning() {
    let minimal = "kind: HTTPEndpoint\nmetadata: {name: ext}\nspec:\n  baseUrl: https://h\n";
    let cases = [
        (
            format!("{minimal}  clientTLS: {{renegotiation: OnceAsClient}}"),
            "spec.clientTLS.renegotiation: \"OnceAsClient\": TLS renegotiation is never done",
        ),
        (
            format!(
                "{}  clientTLS: {{rootCA: {{value: x}}}}",
                minimal.replace("https://h", "http://h")
            ),
            "spec.clientTLS: the base URL is http://: no TLS is used",
        ),
        (
            format!("{minimal}  headers: [{{name: X-A, value: x}}, {{name: x-a, value: y}}]"),
            "spec.headers[1]: \"x-a\" is set twice",
        ),
    ];
    for (yaml, wanted) in cases {
        let (out, problems, warnings) = read(&yaml);
        assert_eq!((out.len(), problems), (1, vec![]), "{yaml}");
        assert!(
            warnings.iter().any(|w| w.contains(wanted)),
            "{yaml}: {warnings:?}"
        );
    }
}
