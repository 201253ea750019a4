//! Dapr's `Configuration.spec.api`: which app-facing API routes a sidecar serves.
//!
//! A rule `{name, version, protocol}` names an endpoint group (`name: state, version: v1`) or,
//! through the route itself, a path prefix (`name: state, version: v1.0` covers every route under
//! `/v1.0/state/`). A rule applies to one protocol: `http` (also when none is given) or `grpc`,
//! where it names an endpoint group and its version, and each protocol's lists stand alone.
//! The decision, as in daprd: a denied rule that matches wins; when an allow list exists only the
//! routes it matches are served; health checks are always served. A route that is not served is
//! not routed at all: the request falls through to invocation, as an unknown path would.

use serde_json::Value;

use crate::Problem;

/// The endpoint groups a rule may name.
const GROUPS: [&str; 17] = [
    "invoke",
    "state",
    "publish",
    "bindings",
    "secrets",
    "actors",
    "metadata",
    "configuration",
    "lock",
    "unlock",
    "crypto",
    "subtlecrypto",
    "workflows",
    "healthz",
    "jobs",
    "shutdown",
    "conversation",
];

/// The endpoint groups of the gRPC API, as `version/name`: what a gRPC rule may name.
const GRPC_ENDPOINTS: [&str; 22] = [
    "v1/invoke",
    "v1/state",
    "v1alpha1/state",
    "v1/publish",
    "v1alpha1/publish",
    "v1alpha1/subscribe",
    "v1/bindings",
    "v1/secrets",
    "v1/actors",
    "v1/metadata",
    "v1alpha1/configuration",
    "v1/configuration",
    "v1alpha1/lock",
    "v1alpha1/unlock",
    "v1alpha1/crypto",
    "v1alpha1/workflows",
    "v1beta1/workflows",
    "v1/shutdown",
    "v1alpha1/jobs",
    "v1/jobs",
    "v1alpha1/conversation",
    "v1alpha2/conversation",
];

/// One route of the API, as the rules see it.
#[derive(Clone, Copy, Debug)]
pub struct Endpoint {
    /// The endpoint group (`state`, `invoke`, …).
    pub group: &'static str,
    /// The group's version (`v1`, `v1alpha1`).
    pub version: &'static str,
    /// The route template without its leading `/` (`v1.0/state/{store}/{key}`).
    pub route: &'static str,
}

/// The allow and deny lists of each protocol.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ApiAccess {
    allowed: Vec<String>,
    denied: Vec<String>,
    grpc_allowed: Vec<String>,
    grpc_denied: Vec<String>,
}

impl ApiAccess {
    /// Reads `spec.api` (the value of that key). Problems name the field and the value.
    pub fn parse(value: &Value) -> Result<Self, Vec<Problem>> {
        let mut problems = Vec::new();
        let mut access = ApiAccess::default();
        if !value.is_null() && !value.is_object() {
            return Err(vec![Problem::new(
                "spec.api",
                format!("{value} is not a mapping"),
            )]);
        }
        for (list, http, grpc) in [
            ("allowed", &mut access.allowed, &mut access.grpc_allowed),
            ("denied", &mut access.denied, &mut access.grpc_denied),
        ] {
            let at = format!("spec.api.{list}");
            match value.get(list) {
                None | Some(Value::Null) => {}
                Some(Value::Array(rules)) => {
                    for (i, rule) in rules.iter().enumerate() {
                        match rule_key(rule, &format!("{at}[{i}]"), &mut problems) {
                            Some((Protocol::Http, key)) => http.push(key),
                            Some((Protocol::Grpc, key)) => grpc.push(key),
                            None => {}
                        }
                    }
                }
                Some(other) => problems.push(Problem::new(at, format!("{other} is not a list"))),
            }
        }
        if problems.is_empty() {
            Ok(access)
        } else {
            Err(problems)
        }
    }

    /// Whether `endpoint` is served.
    pub fn allows(&self, endpoint: Endpoint) -> bool {
        if endpoint.group == "healthz" {
            return true;
        }
        let matches = |key: &String| {
            endpoint.route.starts_with(key.as_str())
                || key
                    .split_once('/')
                    .is_some_and(|(v, n)| v == endpoint.version && n == endpoint.group)
        };
        if self.denied.iter().any(matches) {
            return false;
        }
        self.allowed.is_empty() || self.allowed.iter().any(matches)
    }

    /// Whether the gRPC endpoint group `group` at `version` (`state`, `v1`) is served.
    pub fn allows_grpc(&self, group: &str, version: &str) -> bool {
        let matches = |key: &String| {
            key.split_once('/')
                .is_some_and(|(v, n)| v == version && n == group)
        };
        if self.grpc_denied.iter().any(matches) {
            return false;
        }
        self.grpc_allowed.is_empty() || self.grpc_allowed.iter().any(matches)
    }
}

/// The protocol a rule applies to.
enum Protocol {
    Http,
    Grpc,
}

/// The protocol and `version/name` of a rule; `None` for a problem.
fn rule_key(rule: &Value, at: &str, problems: &mut Vec<Problem>) -> Option<(Protocol, String)> {
    let field = |key: &str| {
        rule.get(key)
            .and_then(Value::as_str)
            .map(str::trim)
            .unwrap_or_default()
    };
    let (name, version, protocol) = (
        field("name"),
        field("version"),
        field("protocol").to_ascii_lowercase(),
    );
    let before = problems.len();
    if !rule.is_object() {
        problems.push(Problem::new(at, format!("{rule} is not a mapping")));
        return None;
    }
    if name.is_empty() {
        problems.push(Problem::new(format!("{at}.name"), "is required".to_owned()));
    } else if !GROUPS.contains(&name) {
        problems.push(Problem::new(
            format!("{at}.name"),
            format!("{name:?} is not an API ({})", GROUPS.join(", ")),
        ));
    }
    if version.is_empty() {
        problems.push(Problem::new(
            format!("{at}.version"),
            "is required (e.g. v1.0 or v1)".to_owned(),
        ));
    }
    let key = format!("{version}/{name}");
    if protocol == "grpc"
        && GROUPS.contains(&name)
        && !version.is_empty()
        && !GRPC_ENDPOINTS.contains(&key.as_str())
    {
        problems.push(Problem::new(
            format!("{at}.version"),
            format!(
                "{version:?} is not a version of the gRPC API {name:?} (gRPC rules name {})",
                GRPC_ENDPOINTS.join(", ")
            ),
        ));
    }
    if !["", "http", "grpc"].contains(&protocol.as_str()) {
        problems.push(Problem::new(
            format!("{at}.protocol"),
            format!("{protocol:?} is neither http nor grpc"),
        ));
    }
    let protocol = if protocol == "grpc" {
        Protocol::Grpc
    } else {
        Protocol::Http
    };
    (problems.len() == before).then_some((protocol, key))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const STATE_KEY: Endpoint = Endpoint {
        group: "state",
        version: "v1",
        route: "v1.0/state/{store}/{key}",
    };
    const STATE_QUERY: Endpoint = Endpoint {
        group: "state",
        version: "v1alpha1",
        route: "v1.0-alpha1/state/{store}/query",
    };
    const PUBLISH: Endpoint = Endpoint {
        group: "publish",
        version: "v1",
        route: "v1.0/publish/{pubsub}/{*topic}",
    };
    const INVOKE: Endpoint = Endpoint {
        group: "invoke",
        version: "v1",
        route: "v1.0/invoke/{id}/method/{method}",
    };
    const HEALTHZ: Endpoint = Endpoint {
        group: "healthz",
        version: "v1",
        route: "v1.0/healthz",
    };

    fn access(v: Value) -> ApiAccess {
        ApiAccess::parse(&v).expect("valid")
    }

    #[test]
    fn decisions() {
        // (spec.api, endpoint, served)
        let rows = [
            (json!(null), STATE_KEY, true),
            (json!({}), PUBLISH, true),
            // An allow list serves only what it names, by route prefix or by group.
            (
                json!({"allowed": [{"name": "state", "version": "v1.0"}]}),
                STATE_KEY,
                true,
            ),
            (
                json!({"allowed": [{"name": "state", "version": "v1.0"}]}),
                STATE_QUERY,
                false,
            ),
            (
                json!({"allowed": [{"name": "state", "version": "v1.0-alpha1"}]}),
                STATE_QUERY,
                true,
            ),
            (
                json!({"allowed": [{"name": "state", "version": "v1"}]}),
                STATE_KEY,
                true,
            ),
            (
                json!({"allowed": [{"name": "state", "version": "v1alpha1"}]}),
                STATE_QUERY,
                true,
            ),
            (
                json!({"allowed": [{"name": "state", "version": "v1.0"}]}),
                PUBLISH,
                false,
            ),
            (
                json!({"allowed": [{"name": "state", "version": "v1.0"}]}),
                INVOKE,
                false,
            ),
            // Health checks are always served.
            (
                json!({"allowed": [{"name": "state", "version": "v1.0"}]}),
                HEALTHZ,
                true,
            ),
            (
                json!({"denied": [{"name": "healthz", "version": "v1.0"}]}),
                HEALTHZ,
                true,
            ),
            // Denied wins over allowed.
            (
                json!({"allowed": [{"name": "state", "version": "v1.0"}], "denied": [{"name": "state", "version": "v1"}]}),
                STATE_KEY,
                false,
            ),
            (
                json!({"denied": [{"name": "publish", "version": "v1.0", "protocol": "HTTP"}]}),
                PUBLISH,
                false,
            ),
            (
                json!({"denied": [{"name": "publish", "version": "v1.0"}]}),
                STATE_KEY,
                true,
            ),
            // gRPC rules do not apply to the HTTP API.
            (
                json!({"denied": [{"name": "publish", "version": "v1", "protocol": "grpc"}]}),
                PUBLISH,
                true,
            ),
            (
                json!({"allowed": [{"name": "publish", "version": "v1", "protocol": "grpc"}]}),
                STATE_KEY,
                true,
            ),
        ];
        for (spec, endpoint, served) in rows {
            assert_eq!(
                access(spec.clone()).allows(endpoint),
                served,
                "{spec} {}",
                endpoint.route
            );
        }
    }

    #[test]
    fn grpc_decisions() {
        // (spec.api, group, version, served)
        let rows = [
            (json!(null), "state", "v1", true),
            // HTTP rules leave the gRPC API alone, and the other way round.
            (
                json!({"allowed": [{"name": "publish", "version": "v1"}]}),
                "state",
                "v1",
                true,
            ),
            (
                json!({"allowed": [{"name": "publish", "version": "v1", "protocol": "grpc"}]}),
                "publish",
                "v1",
                true,
            ),
            (
                json!({"allowed": [{"name": "publish", "version": "v1", "protocol": "gRPC"}]}),
                "state",
                "v1",
                false,
            ),
            // The version is part of the name: v1alpha1 is another endpoint.
            (
                json!({"allowed": [{"name": "state", "version": "v1", "protocol": "grpc"}]}),
                "state",
                "v1alpha1",
                false,
            ),
            (
                json!({"denied": [{"name": "state", "version": "v1", "protocol": "grpc"}]}),
                "state",
                "v1",
                false,
            ),
            (
                json!({"denied": [{"name": "state", "version": "v1", "protocol": "grpc"}]}),
                "secrets",
                "v1",
                true,
            ),
        ];
        for (spec, group, version, served) in rows {
            assert_eq!(
                access(spec.clone()).allows_grpc(group, version),
                served,
                "{spec} {group} {version}"
            );
        }
    }

    #[test]
    fn problems_name_field_and_value() {
        let rows = [
            (
                json!({"allowed": [{"name": "stat", "version": "v1.0"}]}),
                "spec.api.allowed[0].name",
                "\"stat\"",
            ),
            (
                json!({"denied": [{"version": "v1.0"}]}),
                "spec.api.denied[0].name",
                "required",
            ),
            // gRPC rules name an endpoint group's version, not a route prefix.
            (
                json!({"allowed": [{"name": "state", "version": "v1.0", "protocol": "grpc"}]}),
                "spec.api.allowed[0].version",
                "\"v1.0\" is not a version of the gRPC API \"state\"",
            ),
            (
                json!({"denied": [{"name": "state"}]}),
                "spec.api.denied[0].version",
                "required",
            ),
            (
                json!({"allowed": [{"name": "state", "version": "v1", "protocol": "tcp"}]}),
                "spec.api.allowed[0].protocol",
                "tcp",
            ),
            (
                json!({"allowed": "state"}),
                "spec.api.allowed",
                "not a list",
            ),
            (json!(["state"]), "spec.api", "not a mapping"),
        ];
        for (spec, field, value) in rows {
            let errs = ApiAccess::parse(&spec).expect_err("invalid");
            assert!(
                errs.iter()
                    .any(|e| e.field == field && e.message.contains(value)),
                "{spec}: {errs:?}"
            );
        }
    }
}
