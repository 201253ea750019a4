//! The base URL of an HTTP endpoint, and whether a URL an app names lies under one.
//!
//! Pure: parsing and comparing only. A URL is compared in one canonical form: scheme and host
//! in lower case, the port always known (80 and 443 by default), the path with dot segments
//! resolved and escapes of unreserved characters decoded (as an invocation's method path is),
//! with no trailing slash. A URL with credentials, a query or a fragment is not a base URL.

use http::Uri;
use outrider_filters::normalize;

/// A base URL in canonical form.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct BaseUrl {
    pub(crate) https: bool,
    /// Lower case; an IPv6 address keeps its brackets.
    pub(crate) host: String,
    pub(crate) port: u16,
    /// Empty, or `/a/b`: never a trailing slash.
    pub(crate) path: String,
}

impl BaseUrl {
    /// A base URL as a resource declares it.
    pub(crate) fn parse(url: &str) -> Result<Self, String> {
        // Quoted in errors; credentials never are.
        let shown = without_userinfo(url);
        let uri: Uri = url
            .parse()
            .map_err(|e| format!("{shown:?} is not a URL: {e}"))?;
        let https = match uri.scheme_str().map(str::to_ascii_lowercase).as_deref() {
            Some("https") => true,
            Some("http") => false,
            Some(other) => {
                return Err(format!(
                    "{shown:?}: the scheme must be http or https, not {other}"
                ));
            }
            None => {
                return Err(format!(
                    "{shown:?} is not an absolute http:// or https:// URL"
                ));
            }
        };
        let authority = uri
            .authority()
            .ok_or_else(|| format!("{shown:?} names no host"))?;
        // Anywhere: a password holding '/' would move the '@' into the path.
        if url.contains('@') {
            return Err(format!(
                "{shown:?}: credentials in a URL are not accepted; set a header"
            ));
        }
        if authority.host().is_empty() {
            return Err(format!("{shown:?} names no host"));
        }
        let host_end = authority.as_str().rfind(']').unwrap_or(0);
        let port = match authority.as_str()[host_end..].rsplit_once(':') {
            Some((_, p)) => match p.parse::<u16>() {
                Ok(p) if p != 0 => Some(p),
                _ => return Err(format!("{shown:?}: {p:?} is not a port")),
            },
            None => None,
        };
        if uri.query().is_some() {
            return Err(format!("{shown:?}: a base URL has no query"));
        }
        let path = normalize::canonical_path(uri.path()).map_err(|r| format!("{shown:?}: {r}"))?;
        Ok(Self {
            https,
            host: authority.host().to_ascii_lowercase(),
            port: port.unwrap_or(if https { 443 } else { 80 }),
            path: path.trim_end_matches('/').to_owned(),
        })
    }

    /// A URL an app named as the target of an invocation (see [`restore_slashes`]).
    pub(crate) fn parse_named(id: &str) -> Result<Self, String> {
        Self::parse(&restore_slashes(id))
    }

    /// Whether `url` is this base URL or a path beneath it.
    pub(crate) fn covers(&self, url: &BaseUrl) -> bool {
        self.https == url.https
            && self.host == url.host
            && self.port == url.port
            && (url.path == self.path
                || url
                    .path
                    .strip_prefix(&self.path)
                    .is_some_and(|rest| rest.starts_with('/')))
    }

    pub(crate) fn scheme(&self) -> http::uri::Scheme {
        if self.https {
            http::uri::Scheme::HTTPS
        } else {
            http::uri::Scheme::HTTP
        }
    }

    /// `host[:port]`, the port left out when it is the scheme's default.
    pub(crate) fn authority(&self) -> String {
        match (self.https, self.port) {
            (true, 443) | (false, 80) => self.host.clone(),
            (_, port) => format!("{}:{port}", self.host),
        }
    }
}

impl std::fmt::Display for BaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}://{}{}", self.scheme(), self.authority(), self.path)
    }
}

/// A URL as the app wrote it: the API's router merges repeated slashes, so `http:/host` was
/// `http://host`.
pub(crate) fn restore_slashes(id: &str) -> std::borrow::Cow<'_, str> {
    match ["https:/", "http:/"]
        .iter()
        .find(|p| starts_with_ignoring_case(id, p))
    {
        Some(p) if !id[p.len()..].starts_with('/') => {
            format!("{}/{}", &id[..p.len()], &id[p.len()..]).into()
        }
        _ => id.into(),
    }
}

/// `s` with any credentials before an `@` in its authority replaced by `***`: a URL as error
/// messages quote it.
fn without_userinfo(s: &str) -> std::borrow::Cow<'_, str> {
    // Up to the last '@' anywhere: a password may hold '/', and hiding too much is harmless.
    let start = s.find("://").map_or(0, |i| i + 3);
    match s[start..].rfind('@') {
        Some(at) => format!("{}***{}", &s[..start], &s[start + at..]).into(),
        None => s.into(),
    }
}

/// Whether an invocation's target looks like a URL rather than an app id.
pub(crate) fn is_url(id: &str) -> bool {
    id.contains("://")
        || starts_with_ignoring_case(id, "http:")
        || starts_with_ignoring_case(id, "https:")
}

/// Every invocation asks [`is_url`] and [`restore_slashes`]: no allocation for the answer.
fn starts_with_ignoring_case(s: &str, prefix: &str) -> bool {
    s.as_bytes()
        .get(..prefix.len())
        .is_some_and(|head| head.eq_ignore_ascii_case(prefix.as_bytes()))
}

/// The path the endpoint receives: `prefix` (a base URL's path) and then the method path,
/// which is canonical and starts with `/`. An empty method is the prefix alone.
pub(crate) fn joined(prefix: &str, method_path: &str) -> String {
    match (prefix, method_path) {
        ("", m) => m.to_owned(),
        (p, "/") => p.to_owned(),
        (p, m) => format!("{p}{m}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base(s: &str) -> BaseUrl {
        BaseUrl::parse(s).unwrap()
    }

    #[test]
    fn base_urls_in_canonical_form() {
        let b = base("HTTPS://API.Example.com/v1/");
        assert_eq!(
            (b.https, b.host.as_str(), b.port, b.path.as_str()),
            (true, "api.example.com", 443, "/v1")
        );
        assert_eq!(b.to_string(), "https://api.example.com/v1");
        let b = base("http://127.0.0.1:8080");
        assert_eq!((b.port, b.path.as_str()), (8080, ""));
        assert_eq!(b.authority(), "127.0.0.1:8080");
        assert_eq!(base("http://h:80/a/../b").to_string(), "http://h/b");
        assert_eq!(base("http://h/%61pi").path, "/api");
        assert_eq!(base("https://[::1]:8443/x").authority(), "[::1]:8443");
    }

    #[test]
    fn what_is_not_a_base_url() {
        for bad in [
            "",
            "api.example.com",
            "/v1",
            "ftp://example.com",
            "https://user:pw@example.com",
            "https://example.com/?a=1",
            "https://example.com/%00",
            "https://",
            "https://h:8x43/v1",
            "https://h:99999/v1",
            "https://h:0/v1",
            "https://h/a@b",
        ] {
            assert!(BaseUrl::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn credentials_are_never_quoted() {
        let e = BaseUrl::parse("https://user:pw@h/x").unwrap_err();
        assert!(e.contains("***@h/x") && !e.contains("pw"), "{e}");
        assert_eq!(without_userinfo("http://a:b@h:1/p"), "http://***@h:1/p");
        // A '/' in the password.
        let e = BaseUrl::parse("https://user:pa/ss@api/v1").unwrap_err();
        assert!(e.contains("credentials") && !e.contains("pa/ss"), "{e}");
    }

    #[test]
    fn urls_under_a_base() {
        let b = base("https://api.example.com:8443/v1");
        let named = |s: &str| BaseUrl::parse_named(s).unwrap();
        for yes in [
            "https://api.example.com:8443/v1",
            "https://API.example.com:8443/v1/",
            "https:/api.example.com:8443/v1/items",
            "HTTPS://api.example.com:8443/v1/x/../items",
        ] {
            assert!(b.covers(&named(yes)), "{yes}");
        }
        for no in [
            "http://api.example.com:8443/v1",
            "https://api.example.com/v1",
            "https://api.example.com:8443/v10",
            "https://api.example.com:8443/",
            "https://api.example.com:8443/v1/../admin",
            "https://other.example.com:8443/v1",
            "https://api.example.com.evil:8443/v1",
        ] {
            assert!(!b.covers(&named(no)), "{no}");
        }
        // A base at the root covers every path of its origin.
        assert!(base("http://h:1").covers(&named("http://h:1/anything")));
        assert!(BaseUrl::parse_named("https://u@h/").is_err());
    }

    #[test]
    fn targets_that_are_urls() {
        for yes in ["http://h", "https:/h", "HTTP:h", "ftp://x"] {
            assert!(is_url(yes), "{yes}");
        }
        for no in ["orders", "orders.prod", "http-app", "https_app"] {
            assert!(!is_url(no), "{no}");
        }
    }

    #[test]
    fn slashes_the_router_merged_are_restored() {
        assert_eq!(restore_slashes("http:/h/x"), "http://h/x");
        assert_eq!(restore_slashes("HTTPS:/h"), "HTTPS://h");
        assert_eq!(restore_slashes("https://h"), "https://h");
        assert_eq!(restore_slashes("orders"), "orders");
        assert_eq!(restore_slashes("http:"), "http:");
    }

    #[test]
    fn paths_joined() {
        assert_eq!(joined("", "/items"), "/items");
        assert_eq!(joined("/v1", "/items"), "/v1/items");
        assert_eq!(joined("/v1", "/"), "/v1");
        assert_eq!(joined("", "/"), "/");
    }
}
