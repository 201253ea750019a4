//! Access control: who is calling, and whether they may.
//!
//! This crate owns Dapr's `Configuration.spec.accessControl` (parsing, merging, and the decision
//! as a pure function in [`access`]), the policy files per namespace with their hot reload
//! ([`files`]), and the app-facing API allow and deny lists of `spec.api` ([`api`]). It never sees sockets or certificates: the proxy converts a verified SPIFFE id
//! into a [`Caller`], and the authorization layer in `filters` asks for a [`Decision`].

pub mod access;
pub mod api;
pub mod files;

use std::fmt;

pub use access::{AccessControl, AccessControlSpec, Action, Decision, GlobalReason, Rule};

/// The verified identity of a calling sidecar.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Caller {
    /// The caller's app id.
    pub app_id: String,
    /// The caller's namespace.
    pub namespace: String,
    /// The caller's trust domain.
    pub trust_domain: String,
}

impl fmt::Display for Caller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{}/{}",
            self.trust_domain, self.namespace, self.app_id
        )
    }
}

/// A problem in a policy document: where (file and dotted field) and what, quoting the value.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct Problem {
    /// `file: field` or a dotted field path.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

impl Problem {
    pub(crate) fn new(field: impl Into<String>, message: String) -> Self {
        Problem {
            field: field.into(),
            message,
        }
    }
}
