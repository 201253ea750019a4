//! The names in actor routes, checked as daprd checks them, and never holding the state keys'
//! separator.

use http::StatusCode;

use crate::errors::ApiError;

/// daprd's name check for actor types and ids, and `||`, which would make one actor's state
/// keys another's (daprd lets it through).
pub(crate) fn check_name(what: &str, name: &str) -> Result<(), ApiError> {
    let bad = |why: String| {
        Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "ERR_BAD_REQUEST",
            format!("invalid request: invalid {what}: {why}"),
        ))
    };
    if name.is_empty() {
        return bad("name is empty".into());
    }
    if name == "." || name == ".." {
        return bad(format!("name is a path traversal sequence: {name:?}"));
    }
    if let Some((i, c)) = name.char_indices().find(|(_, c)| c.is_ascii_control()) {
        return bad(format!(
            "name contains control character at position {i}: {c:?}"
        ));
    }
    if name.contains(['#', '?', '\0', '/', '\\']) {
        return bad(format!("name contains forbidden character: {name:?}"));
    }
    if name.contains("||") {
        return bad(format!("name contains the key separator \"||\": {name:?}"));
    }
    Ok(())
}

/// An actor method: daprd's forbidden characters, and no empty, `.` or `..` segment (daprd
/// cleans those; here they are refused, so that nothing but the actor's method is ever reached
/// on the app).
pub(crate) fn check_method(method: &str) -> Result<(), ApiError> {
    let bad = |why: String| {
        Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "ERR_BAD_REQUEST",
            format!("invalid request: {why}"),
        ))
    };
    if let Some(c) = method
        .chars()
        .find(|c| c.is_control() || matches!(c, '#' | '?' | '\\'))
    {
        return bad(format!("method contains forbidden character: {c:?}"));
    }
    if method
        .split('/')
        .any(|seg| seg.is_empty() || seg == "." || seg == "..")
    {
        return bad(format!(
            "method {method:?} has an empty, '.' or '..' segment"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_never_leave_the_actor() {
        for ok in ["increment", "remind/nudge", "a.b", "..a"] {
            assert!(check_method(ok).is_ok(), "{ok}");
        }
        for bad in [
            "", "..", "a/../b", "./a", "a//b", "a/", "a?b", "a#b", "a\\b", "a\u{0}",
        ] {
            let e = check_method(bad).unwrap_err();
            assert_eq!(
                (e.status.as_u16(), e.code),
                (400, "ERR_BAD_REQUEST"),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn names_are_checked_as_daprd_checks_them_and_never_hold_the_separator() {
        for ok in ["counter", "a-b_c.d", "ünïcode", "a|b"] {
            assert!(check_name("actorId", ok).is_ok(), "{ok}");
        }
        for (bad, why) in [
            ("", "empty"),
            ("..", "traversal"),
            ("a/b", "forbidden character"),
            ("a\\b", "forbidden character"),
            ("a?b", "forbidden character"),
            ("a#b", "forbidden character"),
            ("a\u{7f}", "control character"),
            ("a||b", "separator"),
        ] {
            let e = check_name("actorId", bad).unwrap_err();
            assert_eq!(
                (e.status.as_u16(), e.code),
                (400, "ERR_BAD_REQUEST"),
                "{bad:?}"
            );
            assert!(e.message.contains(why), "{bad:?}: {}", e.message);
        }
    }
}
