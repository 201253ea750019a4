use super::*;

const MAX: u64 = 4 << 20;

/// A head for `named`, from app `a` in namespace `dev`, with an empty body.
fn head(named: Named<'_>) -> Head<'_> {
    Head {
        named,
        query: None,
        declared: None,
        end_stream: true,
        max_body: MAX,
        app_id: "a",
        namespace: "dev",
        external: None,
    }
}

/// (target app, namespace, uri, route) of a plan, or the refusal's (id, status) in its place.
fn decide(h: &Head<'_>) -> Result<(String, String, String, Route), (String, String)> {
    match plan(h) {
        Ok(Plan {
            dest: Dest::App(t),
            uri,
            route,
            ..
        }) => Ok((t.app_id, t.namespace, uri.to_string(), route)),
        Ok(p) => panic!("not an app: {p:?}"),
        Err(r) => Err((r.id, format!("{:?}", r.error))),
    }
}

fn ok(
    app: &str,
    ns: &str,
    uri: &str,
    route: Route,
) -> Result<(String, String, String, Route), (String, String)> {
    Ok((app.into(), ns.into(), uri.into(), route))
}

#[test]
fn targets_and_method_paths_by_path() {
    use Route::*;
    let cases = [
        ("b/method/orders", ok("b", "dev", "/orders", Replayable)),
        (
            "b.prod/method/orders/1",
            ok("b", "prod", "/orders/1", Replayable),
        ),
        // The method may be empty, with or without the final slash.
        ("b/method", ok("b", "dev", "/", Replayable)),
        ("b/method/", ok("b", "dev", "/", Replayable)),
        // The id is what comes before the first `/method/`; a method may contain `method`.
        (
            "b/method/x/method/y",
            ok("b", "dev", "/x/method/y", Replayable),
        ),
        // Escapes in the id are decoded once.
        ("%62/method/x", ok("b", "dev", "/x", Replayable)),
        // Dot segments are resolved: the app gets the canonical form.
        ("b/method/x/../y", ok("b", "dev", "/y", Replayable)),
        // Calling our own app id goes straight to our own app.
        ("a/method/x", ok("a", "dev", "/x", OwnApp)),
        ("a.dev/method/x", ok("a", "dev", "/x", OwnApp)),
        // The same app id in another namespace is another app.
        ("a.prod/method/x", ok("a", "prod", "/x", Replayable)),
    ];
    for (rest, want) in cases {
        assert_eq!(decide(&head(Named::Path(rest))), want, "{rest}");
    }
}

#[test]
fn refusals_name_the_target_as_written() {
    let refused = |named| decide(&head(named)).unwrap_err();
    // No `/method`: the whole rest is reported as the id.
    assert_eq!(refused(Named::Path("b")), ("b".into(), "NoAppId".into()));
    assert_eq!(
        refused(Named::Header {
            id: None,
            path: "/x"
        }),
        ("".into(), "NoAppId".into())
    );
    let (id, e) = refused(Named::Path("b.c.d/method/x"));
    assert_eq!(
        (id.as_str(), e.starts_with("InvalidAppId")),
        ("b.c.d", true)
    );
    let (id, e) = refused(Named::Path("http:%2F%2Fevil/method/x"));
    assert_eq!(
        (id.as_str(), e.starts_with("ExternalUrl")),
        ("http://evil", true)
    );
    // The slashes the router merged are given back.
    let (id, e) = refused(Named::Path("https:/evil:8443/method/x"));
    assert_eq!(
        (id.as_str(), e.as_str()),
        ("https://evil:8443", "ExternalUrl(\"https://evil:8443\")")
    );
    let (_, e) = refused(Named::Path("b/method/x%00y"));
    assert!(e.starts_with("BadPath"), "{e}");
    assert_eq!(
        refused(Named::Path("/method/x")),
        ("".into(), "NoAppId".into())
    );
}

#[test]
fn by_header_the_whole_path_is_the_method() {
    let h = |path| {
        decide(&head(Named::Header {
            id: Some("b"),
            path,
        }))
    };
    assert_eq!(
        h("/orders/1"),
        ok("b", "dev", "/orders/1", Route::Replayable)
    );
    assert_eq!(h("/"), ok("b", "dev", "/", Route::Replayable));
    assert_eq!(
        h("/v1.0/unknown"),
        ok("b", "dev", "/v1.0/unknown", Route::Replayable)
    );
}

#[test]
fn the_query_is_passed_on_as_it_is() {
    let mut h = head(Named::Path("b/method/x"));
    h.query = Some("a=1&b=%20");
    assert_eq!(
        decide(&h),
        ok("b", "dev", "/x?a=1&b=%20", Route::Replayable)
    );
}

#[test]
fn small_known_bodies_are_kept_for_replay_and_others_stream() {
    let cases = [
        // (declared length, ended with the head, route)
        (None, true, Route::Replayable),
        (Some(0), false, Route::Replayable),
        (Some(REPLAY_LIMIT), false, Route::Replayable),
        (Some(REPLAY_LIMIT + 1), false, Route::Streamed),
        // Chunked, of unknown size.
        (None, false, Route::Streamed),
    ];
    for (declared, end_stream, route) in cases {
        let mut h = head(Named::Path("b/method/x"));
        (h.declared, h.end_stream) = (declared, end_stream);
        assert_eq!(plan(&h).unwrap().route, route, "{declared:?} {end_stream}");
    }
    // Our own app gets the body as it comes, whatever its size.
    let mut h = head(Named::Path("a/method/x"));
    (h.declared, h.end_stream) = (Some(REPLAY_LIMIT + 1), false);
    assert_eq!(plan(&h).unwrap().route, Route::OwnApp);
}

#[test]
fn a_declared_body_over_the_limit_is_refused_before_anything_is_sent() {
    let mut h = head(Named::Path("b/method/x"));
    (h.declared, h.end_stream) = (Some(MAX + 1), false);
    let r = plan(&h).unwrap_err();
    assert!(matches!(r.error, InvokeError::BodyTooLarge(MAX)), "{r:?}");
    h.declared = Some(MAX);
    assert_eq!(plan(&h).unwrap().route, Route::Streamed);
    // A bad target is reported before the size.
    h.named = Named::Path("b.c.d/method/x");
    h.declared = Some(MAX + 1);
    assert!(matches!(
        plan(&h).unwrap_err().error,
        InvokeError::InvalidAppId(_)
    ));
}

#[test]
fn targets() {
    assert_eq!(parse_target("b", "dev").unwrap(), Target::new("b", "dev"));
    assert_eq!(
        parse_target("b.prod", "dev").unwrap(),
        Target::new("b", "prod")
    );
    for bad in ["b.c.d", "b.", ".b", "b c", "b/c"] {
        assert!(
            matches!(parse_target(bad, "dev"), Err(InvokeError::InvalidAppId(_))),
            "{bad}"
        );
    }
    for url in ["http://evil", "https://evil:443", "http:evil"] {
        assert!(
            matches!(parse_target(url, "dev"), Err(InvokeError::ExternalUrl(_))),
            "{url}"
        );
    }
    assert!(matches!(parse_target("", "dev"), Err(InvokeError::NoAppId)));
}

#[test]
fn declared_endpoints_by_name_or_by_a_url_under_their_base() {
    let external = Externals::for_tests(&[
        ("ext", "https://api.example.com/v1"),
        ("ext-root", "http://127.0.0.1:8080"),
        // A name that is also an app id's shape: the endpoint wins, as in daprd.
        ("b", "http://b.example.com"),
    ]);
    // (name of the endpoint, uri, sent by URL (without its headers)) or the refusal.
    let decide = |named: Named<'_>, query: Option<&str>| {
        let mut h = head(named);
        (h.external, h.query) = (Some(&external), query);
        match plan(&h) {
            Ok(Plan {
                dest: Dest::Endpoint(f),
                uri,
                route,
                ..
            }) => {
                assert_eq!(route, Route::Replayable);
                Ok((f.endpoint.name.clone(), uri.to_string(), f.by_url))
            }
            Ok(p) => panic!("not an endpoint: {p:?}"),
            Err(r) => Err(format!("{:?}", r.error)),
        }
    };
    let ok = |name: &str, uri: &str, by_url| Ok((name.to_owned(), uri.to_owned(), by_url));
    let path = |rest| decide(Named::Path(rest), None);
    assert_eq!(path("ext/method/items/1"), ok("ext", "/v1/items/1", false));
    assert_eq!(path("ext/method"), ok("ext", "/v1", false));
    assert_eq!(path("ext/method/x/../../y"), ok("ext", "/v1/y", false));
    assert_eq!(
        decide(Named::Path("ext/method/items"), Some("a=1")),
        ok("ext", "/v1/items?a=1", false)
    );
    assert_eq!(path("b/method/x"), ok("b", "/x", false));
    assert_eq!(
        decide(
            Named::Header {
                id: Some("ext"),
                path: "/items"
            },
            None
        ),
        ok("ext", "/v1/items", false)
    );
    // By URL: escaped, or with the slashes the router merged.
    assert_eq!(
        path("https%3A%2F%2Fapi.example.com%2Fv1/method/items"),
        ok("ext", "/v1/items", true)
    );
    assert_eq!(
        path("https:/api.example.com/v1/sub/method/items"),
        ok("ext", "/v1/sub/items", true)
    );
    assert_eq!(
        path("http:/127.0.0.1:8080/method/"),
        ok("ext-root", "/", true)
    );
    // URLs no declared base covers are refused, whatever their form.
    for rest in [
        "https:/api.example.com/v2/method/x",
        "https:/api.example.com/v1/../admin/method/x",
        "http:/api.example.com/v1/method/x",
        "https:/api.example.com:8443/v1/method/x",
        "http:/127.0.0.1:8081/method/x",
        "https:/evil.example.com/method/x",
        "https:/user@api.example.com/v1/method/x",
        "ftp:%2F%2Fapi.example.com/method/x",
    ] {
        let e = path(rest).unwrap_err();
        assert!(e.starts_with("ExternalUrl"), "{rest}: {e}");
    }
    // Other apps are apps still.
    let mut h = head(Named::Path("c/method/x"));
    h.external = Some(&external);
    assert!(matches!(plan(&h).unwrap().dest, Dest::App(_)));
}
