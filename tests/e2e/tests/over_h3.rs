//! The invocation behaviour suites again, with every sidecar forced onto HTTP/3 over QUIC: verbs,
//! encoded paths, large streamed bodies, statuses, headers, caller identity, round-robin,
//! resiliency retries and breakers, and access policy denials (403). `invoke.rs`,
//! `resiliency.rs` and `access_policy.rs` run the same suites over HTTP/2.

/// Every mesh in the suites: its sidecars call each other over HTTP/3 only.
fn mesh() -> outrider_testkit::Mesh {
    outrider_testkit::Mesh::over("h3")
}

#[path = "invoke/suite.rs"]
mod invoke;

#[path = "resiliency/invoke.rs"]
mod resiliency;

#[path = "access_policy/invoke.rs"]
mod access_policy;
