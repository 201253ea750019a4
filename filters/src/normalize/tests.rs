use super::*;
use proptest::prelude::*;

#[test]
fn canonical_table() {
    let ok = [
        ("", "/"),
        ("/", "/"),
        ("orders", "/orders"),
        ("/orders/1", "/orders/1"),
        ("admin%2F..%2Fpublic", "/public"),
        ("admin%2f..%2fpublic", "/public"),
        ("admin/%2E%2E/public", "/public"),
        ("admin/%2e./public", "/public"),
        ("admin%5C..%5Cpublic", "/public"),
        ("admin\\..\\public", "/public"),
        ("a//b///c", "/a/b/c"),
        ("a/./b/", "/a/b/"),
        ("../../etc/passwd", "/etc/passwd"),
        ("a%20b", "/a%20b"),
        ("a%3fb", "/a%3Fb"),
        ("a%23b", "/a%23b"),
        ("%252F", "/%252F"),
        ("%7Euser", "/~user"),
        ("%41%42", "/AB"),
        ("héllo/wörld", "/héllo/wörld"),
        ("a/b/..", "/a/"),
    ];
    for (input, want) in ok {
        assert_eq!(canonical_path(input).as_deref(), Ok(want), "{input:?}");
    }
    let bad = [
        ("a\0b", Rejection::ControlChar),
        ("a%00b", Rejection::ControlChar),
        ("a%0Ab", Rejection::ControlChar),
        ("a%7fb", Rejection::ControlChar),
        ("a\nb", Rejection::ControlChar),
        ("a#b", Rejection::Fragment),
        ("a%2", Rejection::BadEscape),
        ("a%zz", Rejection::BadEscape),
    ];
    for (input, want) in bad {
        assert_eq!(canonical_path(input), Err(want), "{input:?}");
    }
}

#[test]
fn route_table() {
    let ok = [
        ("/v1.0/state/s/a%2Fb", "/v1.0/state/s/a%2Fb"),
        ("/v1.0//state/./s/../s/k", "/v1.0/state/s/k"),
        ("/v1.0/invoke/b/method/x/", "/v1.0/invoke/b/method/x/"),
        ("\\v1.0\\healthz", "/v1.0/healthz"),
        ("/../../v1.0/healthz", "/v1.0/healthz"),
    ];
    for (input, want) in ok {
        assert_eq!(route_path(input).as_deref(), Ok(want), "{input:?}");
    }
    assert_eq!(route_path("/a%00"), Err(Rejection::ControlChar));
    assert_eq!(route_path("/a#"), Err(Rejection::Fragment));
    assert_eq!(route_path("a"), Err(Rejection::NotAbsolute));
}

#[test]
fn methods() {
    for m in ["GET", "POST", "MKCOL", "X-CUSTOM"] {
        assert!(method_ok(m), "{m}");
    }
    for m in ["get", "Get", "", "GE T", "GET\0"] {
        assert!(!method_ok(m), "{m:?}");
    }
}

#[test]
fn hosts() {
    for (input, want) in [
        ("Example.COM:8080", "example.com"),
        ("example.com", "example.com"),
        ("[::1]:3500", "[::1]"),
        ("[::1]", "[::1]"),
        ("ORDERS", "orders"),
        (" orders:80 ", "orders"),
    ] {
        assert_eq!(host(input), want, "{input:?}");
    }
}

proptest! {
    #[test]
    fn canonical_is_a_fixed_point(s in "[a-zA-Z0-9%./\\\\~_ -]{0,40}") {
        if let Ok(once) = canonical_path(&s) {
            prop_assert_eq!(canonical_path(&once), Ok(once.clone()));
            prop_assert!(once.starts_with('/'));
            prop_assert!(!once.contains("//"));
            prop_assert!(!once.split('/').any(|seg| seg == ".." || seg == "."));
        }
    }

    #[test]
    fn route_is_a_fixed_point(s in "/[a-zA-Z0-9%./\\\\~_-]{0,40}") {
        if let Ok(once) = route_path(&s) {
            prop_assert_eq!(route_path(&once), Ok(once.clone()));
        }
    }

    #[test]
    fn the_shortcut_agrees_with_merging_segments(s in "/[a-z./]{0,30}") {
        prop_assert_eq!(finish(&s).unwrap(), merge_segments(&s));
    }

    #[test]
    fn never_panics(s in "\\PC{0,60}") {
        let _ = canonical_path(&s);
        let _ = route_path(&s);
        let _ = host(&s);
    }
}
