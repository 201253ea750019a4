//! Access-control model: who is calling, and (from issue 6 on) whether they may.
//!
//! This crate owns the policy vocabulary and its evaluation as pure functions. Today it holds
//! [`Caller`], the verified identity of a peer as the inbound path hands it to policy and to the
//! app; Dapr's `Configuration.spec.accessControl` parsing and evaluation join it next. It never
//! sees sockets or certificates: the proxy converts a verified SPIFFE id into a [`Caller`].

use std::fmt;

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
        write!(f, "{}/{}/{}", self.trust_domain, self.namespace, self.app_id)
    }
}
