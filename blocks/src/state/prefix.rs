//! Key prefixing (`keyPrefix` component metadata): how an app's keys are namespaced in a store
//! shared by several apps.

/// How keys are prefixed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyPrefix {
    /// `<app-id>||key` (the default).
    AppId,
    /// `<store-name>||key`.
    Name,
    /// `<namespace>.<app-id>||key`.
    Namespace,
    /// `key` as given.
    None,
    /// `<literal>||key`.
    Literal(String),
}

/// A `keyPrefix` value that cannot be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("keyPrefix {0:?} must not contain '||'")]
pub struct KeyPrefixError(pub String);

impl KeyPrefix {
    /// Parses the metadata value (case-insensitive names; anything else is a literal prefix).
    pub fn parse(v: Option<&str>) -> Result<Self, KeyPrefixError> {
        let Some(v) = v.map(str::trim).filter(|v| !v.is_empty()) else {
            return Ok(Self::AppId);
        };
        Ok(match v.to_ascii_lowercase().as_str() {
            "appid" => Self::AppId,
            "name" => Self::Name,
            "namespace" => Self::Namespace,
            "none" => Self::None,
            _ if v.contains("||") => return Err(KeyPrefixError(v.to_owned())),
            _ => Self::Literal(v.to_owned()),
        })
    }

    /// The prefix for `app_id` in `namespace` on store `store`, including the `||` separator;
    /// empty for [`KeyPrefix::None`].
    pub fn prefix(&self, app_id: &str, store: &str, namespace: &str) -> String {
        match self {
            Self::AppId if app_id.is_empty() => String::new(),
            Self::AppId => format!("{app_id}||"),
            Self::Name => format!("{store}||"),
            Self::Namespace if namespace.is_empty() => format!("{app_id}||"),
            Self::Namespace => format!("{namespace}.{app_id}||"),
            Self::None => String::new(),
            Self::Literal(l) => format!("{l}||"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes() {
        let cases = [
            (None, "app||"),
            (Some("AppID"), "app||"),
            (Some("name"), "store||"),
            (Some("namespace"), "ns.app||"),
            (Some("NONE"), ""),
            (Some("tenant-7"), "tenant-7||"),
        ];
        for (v, want) in cases {
            assert_eq!(
                KeyPrefix::parse(v).unwrap().prefix("app", "store", "ns"),
                want,
                "{v:?}"
            );
        }
        assert!(KeyPrefix::parse(Some("a||b")).is_err());
        assert_eq!(KeyPrefix::AppId.prefix("", "s", "ns"), "");
    }
}
