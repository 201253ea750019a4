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
    }
}

/// (target app, namespace, uri, route) of a plan, or the refusal's (id, status) in its place.
fn decide(h: &Head<'_>) -> Result<(String, String, String, Route), (String, String)> {
    match plan(h) {
        Ok(p) => Ok((
            p.target.app_id,
            p.target.namespace,
            p.uri.to_string(),
            p.route,
        )),
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
