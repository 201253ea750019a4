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

mod decision;
mod merge;
mod parse;
mod trie;

use std::collections::HashMap;
use std::fmt;

use crate::Caller;
use trie::Trie;

pub use decision::{Decision, GlobalReason, Rule};

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

impl AccessControlSpec {
    fn is_empty(&self) -> bool {
        self.default_action.is_none()
            && self.trust_domain.as_deref().is_none_or(str::is_empty)
            && self.policies.as_ref().is_none_or(Vec::is_empty)
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
        self.by_operation(policy, operation, verb)
    }

    /// The decision of `policy`, which matched the caller: by the operation rule that matches
    /// `operation` and its entry for `verb`, else by the policy's default.
    fn by_operation(&self, policy: &AppPolicy, operation: &str, verb: &str) -> Decision {
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
