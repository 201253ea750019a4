//! Dapr's `Configuration.spec.accessControl`: parsing, merging and the decision.
//!
//! The decision is evaluated on the callee for each inbound mesh request, from the caller's
//! verified identity, the canonical path (the operation) and the HTTP verb. Precedence is
//! daprd's:
//!
//! 1. No access control configured at all: allow.
//! 2. The global `defaultAction` applies when the caller has no identity, when no policy names
//!    the caller's app id in the caller's namespace, or when that policy's `trustDomain` differs
//!    from the caller's.
//! 3. A matching policy's `defaultAction`, when set, replaces the global one.
//! 4. An operation rule that matches the path (see [`trie`]) decides by verb: an entry for the
//!    request's verb, else an entry `*`, else the action from step 2 or 3 stands. A verb that is
//!    not one of HTTP's standard methods gets the policy's own `defaultAction` (unset: deny).
//!
//! `defaultAction` left out is `allow` only when `policies` is an explicitly empty list, and
//! `deny` otherwise: when there are policies, and also when the key is missing altogether (as
//! daprd, whose list is then nil, decides).
//! Operations and request paths compare case-insensitively (the app speaks HTTP).

mod trie;

use std::collections::HashMap;
use std::fmt;

use serde_json::Value;

use crate::{Caller, Problem};
use trie::Trie;

/// The standard HTTP verbs an operation rule may name (besides `*`).
const VERBS: [&str; 9] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
];

/// What a rule says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Let the request through.
    Allow,
    /// Refuse it.
    Deny,
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Action::Allow => "allow",
            Action::Deny => "deny",
        })
    }
}

/// One parsed `spec.accessControl`, with the file it came from.
#[derive(Clone, Debug)]
pub struct AccessControlSpec {
    origin: String,
    default_action: Option<Action>,
    trust_domain: Option<String>,
    /// `None` when the resource has no `policies` key (which makes the default `deny` when a
    /// trust domain is set: daprd's behaviour).
    policies: Option<Vec<AppPolicy>>,
}

#[derive(Clone, Debug)]
struct AppPolicy {
    origin: String,
    app_id: String,
    namespace: String,
    trust_domain: String,
    default_action: Option<Action>,
    operations: Vec<Operation>,
    trie: Trie,
}

#[derive(Clone, Debug)]
struct Operation {
    /// As matched: leading `/`, lower case.
    name: String,
    /// Upper-case verbs, or `*`.
    verbs: Vec<String>,
    action: Action,
}

/// The access control a sidecar enforces: every source merged and validated.
#[derive(Clone, Debug)]
pub struct AccessControl {
    enabled: bool,
    default_action: Action,
    trust_domain: String,
    policies: HashMap<(String, String), AppPolicy>,
}

/// A decision and the rule that made it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    /// Whether the request may proceed.
    pub action: Action,
    /// Why.
    pub rule: Rule,
}

impl Decision {
    /// Whether the request may proceed.
    pub fn allowed(&self) -> bool {
        self.action == Action::Allow
    }
}

/// The rule behind a [`Decision`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Rule {
    /// No access control is configured.
    Open,
    /// The global `defaultAction`, for the reason given.
    Global(GlobalReason),
    /// A policy matched the caller; its `defaultAction` (or, unset, the global one) applied.
    AppDefault {
        /// The file the policy came from.
        origin: String,
        /// The policy's app id.
        app_id: String,
        /// The policy's namespace.
        namespace: String,
        /// Whether the policy sets `defaultAction` itself.
        own: bool,
    },
    /// An operation rule of a policy matched.
    Operation {
        /// The file the policy came from.
        origin: String,
        /// The policy's app id.
        app_id: String,
        /// The policy's namespace.
        namespace: String,
        /// The operation as configured (normalised).
        operation: String,
        /// The verb entry that matched (`*` included), or `None` when none did and the
        /// policy's default stood.
        verb: Option<String>,
    },
}

/// Why the global default decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GlobalReason {
    /// The request carried no verified identity.
    NoIdentity,
    /// No policy names the caller's app id in its namespace.
    NoPolicy,
    /// The caller's policy is for another trust domain.
    TrustDomain,
}

impl Rule {
    /// `app` when a policy matched the caller, `global` when the global default decided, `none`
    /// when no access control is configured: a bounded metric label.
    pub fn level(&self) -> &'static str {
        match self {
            Rule::Open => "none",
            Rule::Global(_) => "global",
            Rule::AppDefault { .. } | Rule::Operation { .. } => "app",
        }
    }

    /// The configured operation that matched, for a bounded metric label.
    pub fn operation(&self) -> Option<&str> {
        match self {
            Rule::Operation { operation, .. } => Some(operation),
            _ => None,
        }
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rule::Open => f.write_str("no access control is configured"),
            Rule::Global(GlobalReason::NoIdentity) => {
                f.write_str("global defaultAction (the caller has no identity)")
            }
            Rule::Global(GlobalReason::NoPolicy) => f.write_str(
                "global defaultAction (no policy for the caller's app id and namespace)",
            ),
            Rule::Global(GlobalReason::TrustDomain) => f.write_str(
                "global defaultAction (the caller's policy is for another trust domain)",
            ),
            Rule::AppDefault {
                origin,
                app_id,
                namespace,
                own,
            } => {
                let which = if *own {
                    "its defaultAction"
                } else {
                    "no operation matched, global defaultAction"
                };
                write!(
                    f,
                    "{origin}: policy for app {app_id:?} in namespace {namespace:?}: {which}"
                )
            }
            Rule::Operation {
                origin,
                app_id,
                namespace,
                operation,
                verb,
            } => {
                write!(
                    f,
                    "{origin}: policy for app {app_id:?} in namespace {namespace:?}: operation {operation:?}"
                )?;
                match verb {
                    Some(v) => write!(f, " verb {v}"),
                    None => f.write_str(" (no entry for this verb: the policy's defaultAction)"),
                }
            }
        }
    }
}

impl AccessControlSpec {
    /// Reads `spec.accessControl` (the value of that key) from `origin` (a file name, used in
    /// rules and problems). Problems name the field and the value.
    pub fn parse(value: &Value, origin: &str) -> Result<Self, Vec<Problem>> {
        let mut problems = Vec::new();
        let base = "spec.accessControl";
        let mut spec = AccessControlSpec {
            origin: origin.to_owned(),
            default_action: None,
            trust_domain: None,
            policies: None,
        };
        let Some(obj) = value.as_object() else {
            if !value.is_null() {
                problems.push(Problem::new(base, format!("{value} is not a mapping")));
            }
            return if problems.is_empty() {
                Ok(spec)
            } else {
                Err(problems)
            };
        };
        spec.default_action = action_field(
            obj.get("defaultAction"),
            &format!("{base}.defaultAction"),
            &mut problems,
        );
        spec.trust_domain = string_field(
            obj.get("trustDomain"),
            &format!("{base}.trustDomain"),
            &mut problems,
        );
        match obj.get("policies") {
            None | Some(Value::Null) => {}
            Some(Value::Array(items)) => {
                let mut policies = Vec::new();
                for (i, item) in items.iter().enumerate() {
                    if let Some(p) = AppPolicy::parse(
                        item,
                        &format!("{base}.policies[{i}]"),
                        origin,
                        &mut problems,
                    ) {
                        policies.push(p);
                    }
                }
                spec.policies = Some(policies);
            }
            Some(other) => problems.push(Problem::new(
                format!("{base}.policies"),
                format!("{other} is not a list"),
            )),
        }
        if problems.is_empty() {
            Ok(spec)
        } else {
            Err(problems)
        }
    }

    fn is_empty(&self) -> bool {
        self.default_action.is_none()
            && self.trust_domain.as_deref().is_none_or(str::is_empty)
            && self.policies.as_ref().is_none_or(Vec::is_empty)
    }
}

impl AppPolicy {
    fn parse(item: &Value, at: &str, origin: &str, problems: &mut Vec<Problem>) -> Option<Self> {
        let Some(obj) = item.as_object() else {
            problems.push(Problem::new(at, format!("{item} is not a mapping")));
            return None;
        };
        let before = problems.len();
        let mut required =
            |key: &str| match string_field(obj.get(key), &format!("{at}.{key}"), problems) {
                Some(s) if !s.is_empty() => s,
                _ => {
                    if obj.get(key).is_none_or(|v| v.as_str() == Some("")) {
                        problems.push(Problem::new(
                            format!("{at}.{key}"),
                            "is required".to_owned(),
                        ));
                    }
                    String::new()
                }
            };
        let app_id = required("appId");
        let namespace = required("namespace");
        let trust_domain = required("trustDomain");
        let default_action = action_field(
            obj.get("defaultAction"),
            &format!("{at}.defaultAction"),
            problems,
        );
        let mut operations = Vec::new();
        match obj.get("operations") {
            None | Some(Value::Null) => {}
            Some(Value::Array(ops)) => {
                for (i, op) in ops.iter().enumerate() {
                    if let Some(op) =
                        Operation::parse(op, &format!("{at}.operations[{i}]"), problems)
                    {
                        operations.push(op);
                    }
                }
            }
            Some(other) => problems.push(Problem::new(
                format!("{at}.operations"),
                format!("{other} is not a list"),
            )),
        }
        if problems.len() > before {
            return None;
        }
        let mut trie = Trie::default();
        for (i, op) in operations.iter().enumerate() {
            trie.insert(&op.name, i);
        }
        Some(AppPolicy {
            origin: origin.to_owned(),
            app_id,
            namespace,
            trust_domain,
            default_action,
            operations,
            trie,
        })
    }
}

impl Operation {
    fn parse(item: &Value, at: &str, problems: &mut Vec<Problem>) -> Option<Self> {
        let before = problems.len();
        let name = match item.get("name") {
            Some(Value::String(s)) if !s.trim().is_empty() => s.trim().to_owned(),
            Some(v) if !v.is_null() => {
                problems.push(Problem::new(
                    format!("{at}.name"),
                    format!("{v} is not an operation such as /orders/*"),
                ));
                String::new()
            }
            _ => {
                problems.push(Problem::new(format!("{at}.name"), "is required".to_owned()));
                String::new()
            }
        };
        let mut verbs = Vec::new();
        match item.get("httpVerb") {
            None | Some(Value::Null) => {}
            Some(Value::Array(vs)) => {
                for (i, v) in vs.iter().enumerate() {
                    let upper = v.as_str().map(str::to_ascii_uppercase);
                    match upper {
                        Some(u) if u == "*" || VERBS.contains(&u.as_str()) => verbs.push(u),
                        _ => problems.push(Problem::new(
                            format!("{at}.httpVerb[{i}]"),
                            format!("{v} is not an HTTP verb ({}) or *", VERBS.join(", ")),
                        )),
                    }
                }
            }
            Some(other) => problems.push(Problem::new(
                format!("{at}.httpVerb"),
                format!("{other} is not a list"),
            )),
        }
        // A rule without an action denies, as in daprd.
        let action = action_field(item.get("action"), &format!("{at}.action"), problems)
            .unwrap_or(Action::Deny);
        if problems.len() > before {
            return None;
        }
        let name = if name.starts_with('/') {
            name
        } else {
            format!("/{name}")
        };
        Some(Operation {
            name: name.to_lowercase(),
            verbs,
            action,
        })
    }
}

fn string_field(v: Option<&Value>, at: &str, problems: &mut Vec<Problem>) -> Option<String> {
    match v {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.trim().to_owned()),
        Some(other) => {
            problems.push(Problem::new(at, format!("{other} is not a string")));
            None
        }
    }
}

fn action_field(v: Option<&Value>, at: &str, problems: &mut Vec<Problem>) -> Option<Action> {
    let s = string_field(v, at, problems)?;
    if s.is_empty() {
        None
    } else if s.eq_ignore_ascii_case("allow") {
        Some(Action::Allow)
    } else if s.eq_ignore_ascii_case("deny") {
        Some(Action::Deny)
    } else {
        problems.push(Problem::new(at, format!("{s:?} is neither allow nor deny")));
        None
    }
}

impl AccessControl {
    /// No access control: every request is allowed.
    pub fn open() -> Self {
        AccessControl {
            enabled: false,
            default_action: Action::Allow,
            trust_domain: "public".to_owned(),
            policies: HashMap::new(),
        }
    }

    /// Merges sources in order (the sidecar's `--config` first, then policy files by name). A
    /// global field set by two sources must agree, and an app id and namespace may have one
    /// policy only; each conflict is a problem naming both files.
    pub fn merge(specs: impl IntoIterator<Item = AccessControlSpec>) -> Result<Self, Vec<Problem>> {
        let specs: Vec<AccessControlSpec> = specs.into_iter().filter(|s| !s.is_empty()).collect();
        if specs.is_empty() {
            return Ok(Self::open());
        }
        let mut problems = Vec::new();
        let mut default_action: Option<(Action, &str)> = None;
        let mut trust_domain: Option<(&str, &str)> = None;
        let mut has_policies_key = false;
        let mut policies: HashMap<(String, String), AppPolicy> = HashMap::new();
        for spec in &specs {
            if let Some(a) = spec.default_action {
                match default_action {
                    Some((b, from)) if a != b => problems.push(Problem::new(
                        format!("{}: spec.accessControl.defaultAction", spec.origin),
                        format!("{a} conflicts with {b} in {from}"),
                    )),
                    Some(_) => {}
                    None => default_action = Some((a, &spec.origin)),
                }
            }
            if let Some(td) = spec.trust_domain.as_deref().filter(|t| !t.is_empty()) {
                match trust_domain {
                    Some((other, from)) if other != td => problems.push(Problem::new(
                        format!("{}: spec.accessControl.trustDomain", spec.origin),
                        format!("{td:?} conflicts with {other:?} in {from}"),
                    )),
                    Some(_) => {}
                    None => trust_domain = Some((td, &spec.origin)),
                }
            }
            has_policies_key |= spec.policies.is_some();
            for p in spec.policies.iter().flatten() {
                let key = (p.app_id.clone(), p.namespace.clone());
                if let Some(first) = policies.get(&key) {
                    problems.push(Problem::new(
                        format!("{}: spec.accessControl.policies", p.origin),
                        format!(
                            "app {:?} in namespace {:?} already has a policy in {}",
                            p.app_id, p.namespace, first.origin
                        ),
                    ));
                    continue;
                }
                policies.insert(key, p.clone());
            }
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        // daprd: without a default, deny when the resource has a `policies` key at all (even
        // when only `trustDomain` is set, since its list is then nil); allow for an empty list.
        let any_policies = specs
            .iter()
            .any(|s| s.policies.as_ref().is_some_and(|p| !p.is_empty()));
        let default_action = match default_action {
            Some((a, _)) => a,
            None if any_policies || !has_policies_key => Action::Deny,
            None => Action::Allow,
        };
        Ok(AccessControl {
            enabled: true,
            default_action,
            trust_domain: trust_domain.map_or_else(|| "public".to_owned(), |(t, _)| t.to_owned()),
            policies,
        })
    }

    /// Whether any access control is configured.
    pub fn is_enabled(&self) -> bool {
        self.enabled
    }

    /// How many app policies are loaded.
    pub fn policy_count(&self) -> usize {
        self.policies.len()
    }

    /// The global default action.
    pub fn default_action(&self) -> Action {
        self.default_action
    }

    /// The configured trust domain (informational: decisions compare each policy's own).
    pub fn trust_domain(&self) -> &str {
        &self.trust_domain
    }

    /// Decides whether `caller` may call `operation` (the canonical request path) with `verb`.
    pub fn decide(&self, caller: Option<&Caller>, operation: &str, verb: &str) -> Decision {
        if !self.enabled {
            return Decision {
                action: Action::Allow,
                rule: Rule::Open,
            };
        }
        let global = |reason| Decision {
            action: self.default_action,
            rule: Rule::Global(reason),
        };
        let Some(caller) = caller.filter(|c| !c.app_id.is_empty()) else {
            return global(GlobalReason::NoIdentity);
        };
        let Some(policy) = self
            .policies
            .get(&(caller.app_id.clone(), caller.namespace.clone()))
        else {
            return global(GlobalReason::NoPolicy);
        };
        if policy.trust_domain != caller.trust_domain {
            return global(GlobalReason::TrustDomain);
        }
        let app_default = policy.default_action.unwrap_or(self.default_action);
        let op = if operation.starts_with('/') {
            operation.to_lowercase()
        } else {
            format!("/{}", operation.to_lowercase())
        };
        let Some(rule) = policy.trie.find(&op).map(|i| &policy.operations[i]) else {
            return Decision {
                action: app_default,
                rule: Rule::AppDefault {
                    origin: policy.origin.clone(),
                    app_id: policy.app_id.clone(),
                    namespace: policy.namespace.clone(),
                    own: policy.default_action.is_some(),
                },
            };
        };
        let matched = |verb: Option<String>, action| Decision {
            action,
            rule: Rule::Operation {
                origin: policy.origin.clone(),
                app_id: policy.app_id.clone(),
                namespace: policy.namespace.clone(),
                operation: rule.name.clone(),
                verb,
            },
        };
        if !VERBS.contains(&verb) {
            // Not a verb a rule can name: the policy's own default, unset meaning deny.
            return matched(None, policy.default_action.unwrap_or(Action::Deny));
        }
        if rule.verbs.iter().any(|v| v == verb) {
            matched(Some(verb.to_owned()), rule.action)
        } else if rule.verbs.iter().any(|v| v == "*") {
            matched(Some("*".to_owned()), rule.action)
        } else {
            matched(None, app_default)
        }
    }
}

#[cfg(test)]
mod tests;
