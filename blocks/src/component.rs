//! The Dapr `Component` resource (`apiVersion: dapr.io/v1alpha1`, `kind: Component`).

use serde::Deserialize;

mod settings;
pub use settings::Settings;

/// A `Component` document as written.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Component {
    /// `metadata`: name and namespace.
    pub metadata: ObjectMeta,
    /// `spec`: type, version and settings.
    pub spec: ComponentSpec,
    /// `auth.secretStore`: where `secretKeyRef`s are resolved.
    #[serde(default)]
    pub auth: Option<Auth>,
    /// App ids allowed to use the component; empty means all.
    #[serde(default)]
    pub scopes: Vec<String>,
}

/// `metadata` of a resource.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct ObjectMeta {
    /// The resource's name.
    #[serde(default)]
    pub name: String,
    /// Its namespace, if given.
    #[serde(default)]
    pub namespace: Option<String>,
}

/// `spec` of a component.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ComponentSpec {
    /// `<category>.<kind>`, e.g. `state.redis`.
    #[serde(rename = "type", default)]
    pub type_: String,
    /// e.g. `v1`.
    #[serde(default)]
    pub version: String,
    /// Log an init failure and carry on instead of refusing to start.
    #[serde(default)]
    pub ignore_errors: bool,
    /// How long initialisation may take, e.g. `5s`.
    #[serde(default)]
    pub init_timeout: Option<String>,
    /// Settings. An empty `metadata:` (null), as Dapr's own examples write it, is no settings.
    #[serde(default, deserialize_with = "null_as_empty")]
    pub metadata: Vec<MetadataItem>,
}

/// A list that may be written as nothing at all (`key:` with no value).
fn null_as_empty<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Ok(Option::<Vec<T>>::deserialize(d)?.unwrap_or_default())
}

/// `auth` of a component.
#[derive(Clone, Debug, Deserialize)]
pub struct Auth {
    /// The secret store `secretKeyRef`s are read from.
    #[serde(alias = "secretstore", rename = "secretStore")]
    pub secret_store: String,
}

/// One `spec.metadata` entry: a name with a literal value, a secret reference or an env reference.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MetadataItem {
    /// The setting's name.
    #[serde(default)]
    pub name: String,
    /// A literal value (any YAML scalar).
    #[serde(default)]
    pub value: Option<serde_json::Value>,
    /// A secret to read the value from.
    #[serde(default)]
    pub secret_key_ref: Option<serde_json::Value>,
    /// An environment variable to read the value from.
    #[serde(default)]
    pub env_ref: Option<String>,
}

/// The component's literal metadata, names lower-cased (Dapr matches them case-insensitively);
/// secret and environment references must have been resolved to values.
pub fn literal_metadata(c: &Component) -> Result<Settings, Vec<ComponentError>> {
    crate::state::literal_metadata(c)
}

/// A problem in a component document: field path, and what is wrong with which value.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ComponentError {
    /// Dotted path of the field.
    pub field: String,
    /// What is wrong, quoting the value.
    pub message: String,
}

/// One problem at `field`, as opening a component reports it.
pub fn field_error(field: &str, message: impl Into<String>) -> Vec<ComponentError> {
    vec![ComponentError {
        field: field.into(),
        message: message.into(),
    }]
}

/// A `spec.type` of `kind` (e.g. `state store`) that this build cannot open.
pub(crate) fn unsupported_type(type_: &str, kind: &str) -> Vec<ComponentError> {
    field_error(
        "spec.type",
        format!("{type_:?} is not a {kind} type this build supports"),
    )
}

/// Component types this build can run.
pub const SUPPORTED_TYPES: &[&str] = &[
    "state.in-memory",
    "state.sqlite",
    "state.redis",
    "state.postgresql",
    "state.mysql",
    "pubsub.in-memory",
    "pubsub.redis",
    "pubsub.jetstream",
    "pubsub.rabbitmq",
    "pubsub.mqtt3",
    "secretstores.local.file",
    "secretstores.local.env",
    "lock.in-memory",
    "lock.redis",
    "configuration.redis",
    "configuration.postgresql",
    "bindings.cron",
    "bindings.http",
    "bindings.localstorage",
    "bindings.mqtt3",
    "bindings.rabbitmq",
    "bindings.mysql",
    "bindings.postgresql",
    "bindings.redis",
    "middleware.http.bearer",
    "middleware.http.ratelimit",
];

/// daprd's other names for the types this build runs (its registry takes several names for one
/// component).
const ALIASES: &[(&str, &str)] = &[
    ("pubsub.mqtt", "pubsub.mqtt3"),
    ("state.sqlite3", "state.sqlite"),
    ("state.postgres", "state.postgresql"),
    ("configuration.postgres", "configuration.postgresql"),
    ("bindings.postgres", "bindings.postgresql"),
    ("bindings.mqtt", "bindings.mqtt3"),
];

impl ComponentSpec {
    /// `spec.initTimeout` (a Go duration such as `10s`), when given and valid.
    pub fn init_timeout(&self) -> Option<std::time::Duration> {
        self.init_timeout
            .as_deref()
            .and_then(crate::pubsub::cloudevent::go_duration)
            .filter(|d| !d.is_zero())
    }

    /// `version` in lower case, `v1` when the document leaves it out (for matching deny lists).
    pub fn version_label(&self) -> String {
        self.version_or_v1().to_ascii_lowercase()
    }

    /// `version`, or `v1` when the document leaves it out.
    pub(crate) fn version_or_v1(&self) -> String {
        if self.version.is_empty() {
            "v1".into()
        } else {
            self.version.clone()
        }
    }
}

impl Component {
    /// Writes `spec.type` as this build names it: lower case (daprd's lookup ignores case), and
    /// daprd's other names (`pubsub.mqtt`, `state.postgres`, `state.sqlite3`) as the ones they
    /// stand for.
    pub fn canonicalize(&mut self) {
        let t = self.spec.type_.trim().to_ascii_lowercase();
        self.spec.type_ = ALIASES
            .iter()
            .find(|(alias, _)| *alias == t)
            .map_or(t, |(_, name)| (*name).to_owned());
    }

    /// Checks the document's shape and that this build supports its type and version. Every
    /// problem is reported.
    pub fn validate(&self) -> Vec<ComponentError> {
        let mut errs = Vec::new();
        let mut err = |field: String, message: String| errs.push(ComponentError { field, message });
        if self.metadata.name.is_empty() {
            err("metadata.name".into(), "is required".into());
        }
        let ty = &self.spec.type_;
        match ty.split_once('.') {
            Some((cat, kind)) if !cat.is_empty() && !kind.is_empty() => {
                if !SUPPORTED_TYPES.contains(&ty.as_str()) {
                    err(
                        "spec.type".into(),
                        format!("{ty:?} is not supported by this build of Outrider"),
                    );
                }
            }
            _ => err(
                "spec.type".into(),
                format!("{ty:?} is not of the form <category>.<kind>"),
            ),
        }
        // As daprd: v1 (or v0, or nothing) names the one version of each type this build has.
        let v = self.spec.version.trim().to_ascii_lowercase();
        if !["", "v0", "v1"].contains(&v.as_str()) {
            err(
                "spec.version".into(),
                format!(
                    "{:?} of {ty} is not supported by this build of Outrider (v1 is)",
                    self.spec.version
                ),
            );
        }
        if let Some(t) = self.spec.init_timeout.as_deref()
            && crate::pubsub::cloudevent::go_duration(t).is_none()
        {
            err(
                "spec.initTimeout".into(),
                format!("{t:?} is not a duration like 5s or 1m"),
            );
        }
        for (i, item) in self.spec.metadata.iter().enumerate() {
            if item.name.is_empty() {
                err(format!("spec.metadata[{i}].name"), "is required".into());
            }
            let sources = [
                item.value.is_some(),
                item.secret_key_ref.is_some(),
                item.env_ref.is_some(),
            ];
            if sources.iter().filter(|s| **s).count() > 1 {
                err(
                    format!("spec.metadata[{i}]"),
                    format!(
                        "{:?} has more than one of value, secretKeyRef and envRef",
                        item.name
                    ),
                );
            }
        }
        errs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> Component {
        crate::from_yaml(yaml)
    }

    #[test]
    fn an_empty_metadata_is_no_settings() {
        let c = parse(
            "metadata: {name: cache}\nspec:\n  type: state.in-memory\n  version: v1\n  metadata:\n",
        );
        assert!(c.spec.metadata.is_empty());
        assert!(c.validate().is_empty(), "{:?}", c.validate());
    }

    #[test]
    fn reports_every_problem() {
        let c = parse(
            "metadata: {name: ''}\nspec:\n  type: redis\n  metadata:\n  - {name: a, value: 1, envRef: X}\n  - {value: 2}\n",
        );
        let fields: Vec<_> = c.validate().into_iter().map(|e| e.field).collect();
        assert_eq!(
            fields,
            [
                "metadata.name",
                "spec.type",
                "spec.metadata[0]",
                "spec.metadata[1].name"
            ]
        );
    }

    #[test]
    fn unsupported_types_are_named() {
        let c = parse(
            "metadata: {name: statestore}\nspec: {type: state.cassandra, version: v1}\nauth: {secretstore: s}\n",
        );
        let errs = c.validate();
        assert_eq!(errs.len(), 1);
        assert!(errs[0].message.contains("state.cassandra"), "{errs:?}");
        assert_eq!(c.auth.unwrap().secret_store, "s");
    }
}

/// A duration in component metadata: `500ms`, `90s`, `30m`, `1h`, or a bare whole number in
/// `bare` units (daprd reads bare numbers as seconds for some fields, milliseconds for others).
pub(crate) fn metadata_duration(v: &str, bare: std::time::Duration) -> Option<std::time::Duration> {
    let v = v.trim();
    let (num, unit_ms) = if let Some(n) = v.strip_suffix("ms") {
        (n, 1)
    } else if let Some(n) = v.strip_suffix('s') {
        (n, 1000)
    } else if let Some(n) = v.strip_suffix('m') {
        (n, 60_000)
    } else if let Some(n) = v.strip_suffix('h') {
        (n, 3_600_000)
    } else {
        return bare.checked_mul(u32::try_from(v.parse::<u64>().ok()?).ok()?);
    };
    num.trim()
        .parse::<u64>()
        .ok()?
        .checked_mul(unit_ms)
        .map(std::time::Duration::from_millis)
}

/// `url` (or a comma-separated list of them) with any `user:password@` replaced by `***@`, for
/// messages and logs. Everything before the last `@` of each URL goes: passwords may hold `/`.
pub(crate) fn redact_userinfo(url: &str) -> String {
    url.split(',')
        .map(|one| {
            let (scheme, rest) = match one.split_once("://") {
                Some((scheme, rest)) => (format!("{scheme}://"), rest),
                None => (String::new(), one),
            };
            match rest.rfind('@') {
                Some(at) => format!("{scheme}***{}", &rest[at..]),
                None => one.to_owned(),
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod duration_tests {
    use super::metadata_duration;
    use std::time::Duration;

    #[test]
    fn userinfo_is_redacted() {
        use super::redact_userinfo;
        assert_eq!(
            redact_userinfo("nats://u:hunter2@h:4222"),
            "nats://***@h:4222"
        );
        assert_eq!(
            redact_userinfo("amqp://guest:p@ss@h/%2f"),
            "amqp://***@h/%2f"
        );
        assert_eq!(redact_userinfo("amqp:u:hunter2@h"), "***@h");
        assert_eq!(
            redact_userinfo("amqp://u:a/b+c==@h:5672"),
            "amqp://***@h:5672",
            "a / in the password"
        );
        assert_eq!(
            redact_userinfo("nats://u:p@h1,nats://u:q@h2"),
            "nats://***@h1,nats://***@h2"
        );
        assert_eq!(redact_userinfo("nats://h:4222"), "nats://h:4222");
    }

    #[test]
    fn metadata_durations() {
        let (ms, s) = (Duration::from_millis(1), Duration::from_secs(1));
        assert_eq!(
            metadata_duration("500", ms),
            Some(Duration::from_millis(500))
        );
        assert_eq!(metadata_duration("90", s), Some(Duration::from_secs(90)));
        assert_eq!(
            metadata_duration(" 200ms ", s),
            Some(Duration::from_millis(200))
        );
        assert_eq!(metadata_duration("15s", ms), Some(Duration::from_secs(15)));
        assert_eq!(metadata_duration("2m", ms), Some(Duration::from_secs(120)));
        assert_eq!(metadata_duration("1h", s), Some(Duration::from_secs(3600)));
        for bad in ["", "soon", "1.5s", "-1", "10d", "99999999999999999999"] {
            assert_eq!(metadata_duration(bad, s), None, "{bad:?}");
        }
    }
}
