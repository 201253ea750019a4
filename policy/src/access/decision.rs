//! A decision and the rule behind it: what the authorization layer logs, counts and (for a
//! denial) quotes back. The decision itself is made in [`super::AccessControl::decide`].

use std::fmt;

use super::Action;

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
