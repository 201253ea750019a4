//! Workload identity for the mesh: SPIFFE ids, a development CA, workload certificates and the
//! rustls configurations that enforce them.
//!
//! This crate owns everything about *who* a peer is: issuing and renewing the sidecar's own
//! certificate (ECDSA P-256, one URI SAN `spiffe://<trust-domain>/ns/<namespace>/<app-id>`),
//! verifying peers' chains against the trust bundle, matching identities against URI SANs only,
//! and checking extended key usages (clientAuth inbound, serverAuth outbound). It knows nothing
//! about HTTP, discovery or policy: the proxy asks it for a [`rustls::ServerConfig`] and for a
//! [`rustls::ClientConfig`] that expects one identity, and reads the peer's [`SpiffeId`] after a
//! handshake.
//!
//! Credentials change at runtime (renewal, rotation, files written anew) and are published
//! through [`Credentials::watch`]; configurations built once keep reading the newest
//! certificate. A new trust bundle applies to client configurations at their next handshake;
//! server configurations are built again ([`Credentials::bundle_changes`]).

mod ca;
mod creds;
mod csr;
mod error;
mod files;
mod init;
pub mod jwt;
mod k8s;
mod renew;
mod rotate;
mod spiffe;
mod tokens;
mod verify;

pub use ca::{DevCa, IssuedCert};
pub use creds::{CertInfo, Credentials, TrustBundle, anonymous_service_client_config};
pub use csr::{CsrError, KeyRequest, SignedChain, SigningRequest};
pub use error::Error;
pub use files::{CredentialFiles, FilesPem};
pub use init::{CreatedAuthority, NewAuthority, create_authority};
pub use jwt::JwtError;
pub use k8s::KubernetesTokens;
pub use renew::{RenewalSchedule, renew_forever, renewal_due};
pub use rotate::{rotate_add, rotate_retire, rotate_switch};
pub use spiffe::{SpiffeId, SpiffeIdError};
pub use tokens::{Entitlement, NewToken, TokenError, TokenStore};

use std::sync::Arc;

/// The app id the CA service serves as, in its own namespace: sidecars accept the service only
/// as `spiffe://<trust-domain>/ns/<namespace>/outrider-ca`, and it issues that identity to no one.
pub const CA_SERVICE_APP_ID: &str = "outrider-ca";

/// The one crypto provider of the process: aws-lc-rs, passed explicitly to every TLS config so
/// that no other provider can become the process default by accident.
pub fn crypto_provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}
