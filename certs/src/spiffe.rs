//! SPIFFE ids of the form `spiffe://<trust-domain>/ns/<namespace>/<app-id>`.

use std::fmt;
use std::str::FromStr;

/// A workload identity: trust domain, namespace and app id.
///
/// Parsing is strict: the scheme must be `spiffe`, the trust domain lower-case letters, digits,
/// `.`, `-` and `_`, and the path exactly `/ns/<namespace>/<app-id>` with non-empty segments of
/// the characters an app id may contain. Anything else is refused rather than guessed at.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SpiffeId {
    trust_domain: String,
    namespace: String,
    app_id: String,
}

/// Why a string is not a SPIFFE id of ours.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid SPIFFE id {input:?}: {reason}")]
pub struct SpiffeIdError {
    input: String,
    reason: &'static str,
}

impl SpiffeId {
    /// Builds an id from its parts, validating each.
    pub fn new(trust_domain: &str, namespace: &str, app_id: &str) -> Result<Self, SpiffeIdError> {
        let s = format!("spiffe://{trust_domain}/ns/{namespace}/{app_id}");
        s.parse()
    }

    /// The trust domain, e.g. `public`.
    pub fn trust_domain(&self) -> &str {
        &self.trust_domain
    }

    /// The namespace, e.g. `default`.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The app id.
    pub fn app_id(&self) -> &str {
        &self.app_id
    }
}

/// Whether `s` may be an app id or namespace segment: ASCII letters, digits, `-` and `_`.
/// Dots are excluded because `app.namespace` is how callers name another namespace.
pub(crate) fn is_segment(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn is_trust_domain(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 255
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
}

impl FromStr for SpiffeId {
    type Err = SpiffeIdError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let err = |reason| SpiffeIdError {
            input: input.to_owned(),
            reason,
        };
        let rest = input
            .strip_prefix("spiffe://")
            .ok_or_else(|| err("scheme is not spiffe://"))?;
        let (td, path) = rest.split_once('/').ok_or_else(|| err("no path"))?;
        if !is_trust_domain(td) {
            return Err(err("bad trust domain"));
        }
        let mut parts = path.split('/');
        match (parts.next(), parts.next(), parts.next(), parts.next()) {
            (Some("ns"), Some(ns), Some(app), None) if is_segment(ns) && is_segment(app) => {
                Ok(Self {
                    trust_domain: td.to_owned(),
                    namespace: ns.to_owned(),
                    app_id: app.to_owned(),
                })
            }
            _ => Err(err("path is not /ns/<namespace>/<app-id>")),
        }
    }
}

impl fmt::Display for SpiffeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "spiffe://{}/ns/{}/{}",
            self.trust_domain, self.namespace, self.app_id
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_and_prints() {
        let id: SpiffeId = "spiffe://public/ns/default/orders".parse().unwrap();
        assert_eq!(
            (id.trust_domain(), id.namespace(), id.app_id()),
            ("public", "default", "orders")
        );
        assert_eq!(id.to_string(), "spiffe://public/ns/default/orders");
    }

    #[test]
    fn refuses_malformed() {
        for bad in [
            "",
            "spiffe://",
            "https://public/ns/default/a",
            "spiffe://public/ns/default",
            "spiffe://public/ns/default/a/b",
            "spiffe://public/ns//a",
            "spiffe://public/sa/default/a",
            "spiffe://Public/ns/default/a",
            "spiffe://public/ns/default/a.b",
            "spiffe://public/ns/default/a%2Fb",
            "spiffe://public/ns/default/a?x",
            "spiffe:///ns/default/a",
        ] {
            assert!(bad.parse::<SpiffeId>().is_err(), "{bad:?} parsed");
        }
    }

    proptest! {
        #[test]
        fn never_panics_and_round_trips(s in "\\PC{0,60}") {
            if let Ok(id) = s.parse::<SpiffeId>() {
                prop_assert_eq!(id.to_string(), s);
            }
        }

        #[test]
        fn built_ids_round_trip(td in "[a-z0-9.-]{1,20}", ns in "[A-Za-z0-9_-]{1,20}", app in "[A-Za-z0-9_-]{1,20}") {
            let id = SpiffeId::new(&td, &ns, &app).unwrap();
            prop_assert_eq!(id.to_string().parse::<SpiffeId>().unwrap(), id);
        }
    }
}
