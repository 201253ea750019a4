//! Service invocation between two sidecars over mutual TLS, with HTTP/2 forced between the
//! sidecars here; `over_h3.rs` runs the same suite over HTTP/3.

/// Every mesh in the suite: its sidecars call each other over HTTP/2 only.
fn mesh() -> outrider_testkit::Mesh {
    outrider_testkit::Mesh::over("h2")
}

#[path = "invoke/suite.rs"]
mod suite;
