//! The sidecar's current credentials and the TLS configurations built on them.
//!
//! [`Credentials`] keeps the workload certificate behind an [`ArcSwap`] so that every TLS
//! configuration built from it presents the newest certificate on the next handshake, without
//! being rebuilt; existing connections keep the certificate they were established with.
//! Observers (metrics, logs, the admin page) follow changes through [`Credentials::watch`].

use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use arc_swap::ArcSwap;
use rustls::client::ResolvesClientCert;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, ServerConfig, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::sync::watch;

use crate::ca::{hex, not_after_of};
use crate::verify::{Roots, ServerIdentityVerifier, WorkloadClientVerifier};
use crate::{Error, IssuedCert, SpiffeId, crypto_provider};

/// ALPN for the mesh: HTTP/2 only.
const MESH_ALPN: &[u8] = b"h2";

/// The set of roots peers' certificates must chain to. May hold several roots while a CA is
/// rotated (old and new), and all of them are trusted.
#[derive(Clone)]
pub struct TrustBundle {
    certs: Vec<CertificateDer<'static>>,
}

impl TrustBundle {
    /// A bundle of the given DER certificates.
    pub fn from_certs(certs: Vec<CertificateDer<'static>>) -> Self {
        Self { certs }
    }

    /// Reads every certificate of a PEM file.
    pub fn from_pem(path: &Path, pem: &[u8]) -> Result<Self, Error> {
        let certs = CertificateDer::pem_slice_iter(pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| Error::Pem {
                path: path.to_owned(),
                what: e.to_string(),
            })?;
        if certs.is_empty() {
            return Err(Error::Pem {
                path: path.to_owned(),
                what: "no certificate found".into(),
            });
        }
        Ok(Self { certs })
    }

    /// Reads a PEM file from disk.
    pub fn from_pem_file(path: &Path) -> Result<Self, Error> {
        let pem = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        Self::from_pem(path, &pem)
    }

    /// The roots, DER encoded.
    pub fn certs(&self) -> &[CertificateDer<'static>] {
        &self.certs
    }
}

/// Facts about the current workload certificate, for logs, metrics and status pages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertInfo {
    /// Serial number, hex.
    pub serial: String,
    /// When it was issued (its notBefore may be earlier, to absorb clock skew).
    pub issued_at: SystemTime,
    /// End of validity.
    pub not_after: SystemTime,
    /// How many certificates this process has installed (1 for the first).
    pub generation: u64,
}

struct Current {
    key: Arc<CertifiedKey>,
    info: CertInfo,
}

/// This sidecar's identity, its current certificate and the trust bundle.
#[derive(Clone)]
pub struct Credentials {
    inner: Arc<Inner>,
}

struct Inner {
    id: SpiffeId,
    roots: Arc<Roots>,
    current: ArcSwap<Current>,
    changes: watch::Sender<CertInfo>,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("id", &self.inner.id)
            .finish_non_exhaustive()
    }
}

impl Credentials {
    /// Builds credentials from a trust bundle and a first certificate, which must chain to the
    /// bundle and carry `id` as its URI SAN.
    pub fn new(id: SpiffeId, bundle: &TrustBundle, cert: IssuedCert) -> Result<Self, Error> {
        let roots = Arc::new(Roots::new(bundle, id.trust_domain())?);
        let current = load(&cert, 1)?;
        roots.check_own(&cert.chain, &id)?;
        let (changes, _) = watch::channel(current.info.clone());
        Ok(Self {
            inner: Arc::new(Inner {
                id,
                roots,
                current: ArcSwap::from_pointee(current),
                changes,
            }),
        })
    }

    /// Loads credentials issued by someone else: a trust bundle, a certificate chain (leaf first)
    /// and its private key, all PEM files.
    pub fn from_files(
        id: SpiffeId,
        bundle: &Path,
        chain: &Path,
        key: &Path,
    ) -> Result<Self, Error> {
        let bundle = TrustBundle::from_pem_file(bundle)?;
        let cert = read_issued(chain, key)?;
        Self::new(id, &bundle, cert)
    }

    /// This sidecar's identity.
    pub fn id(&self) -> &SpiffeId {
        &self.inner.id
    }

    /// Installs a renewed certificate. New handshakes use it at once; established connections
    /// are untouched.
    pub fn install(&self, cert: IssuedCert) -> Result<CertInfo, Error> {
        self.inner.roots.check_own(&cert.chain, &self.inner.id)?;
        let generation = self.inner.current.load().info.generation + 1;
        let current = load(&cert, generation)?;
        let info = current.info.clone();
        self.inner.current.store(Arc::new(current));
        self.inner.changes.send_replace(info.clone());
        Ok(info)
    }

    /// The current certificate's facts.
    pub fn info(&self) -> CertInfo {
        self.inner.current.load().info.clone()
    }

    /// Follows certificate changes.
    pub fn watch(&self) -> watch::Receiver<CertInfo> {
        self.inner.changes.subscribe()
    }

    /// The server side of the mesh: TLS 1.3, h2, a client certificate required, chaining to the
    /// trust bundle, with the clientAuth usage and a SPIFFE id of our trust domain as URI SAN.
    pub fn server_config(&self) -> Result<ServerConfig, Error> {
        let verifier = WorkloadClientVerifier::new(self.inner.roots.clone());
        let mut cfg = ServerConfig::builder_with_provider(crypto_provider())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_client_cert_verifier(Arc::new(verifier))
            .with_cert_resolver(Arc::new(Resolver(self.inner.clone())));
        cfg.alpn_protocols = vec![MESH_ALPN.to_vec()];
        Ok(cfg)
    }

    /// The client side of the mesh toward one peer: TLS 1.3, h2, our certificate presented, and
    /// the server's certificate accepted only if it chains to the trust bundle, has the
    /// serverAuth usage and carries exactly `expected` as its URI SAN.
    pub fn client_config(&self, expected: SpiffeId) -> Result<ClientConfig, Error> {
        let verifier = ServerIdentityVerifier::new(self.inner.roots.clone(), expected);
        let mut cfg = ClientConfig::builder_with_provider(crypto_provider())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            // Not a weakening: the custom verifier checks the chain and the SPIFFE id, which
            // rustls' built-in verifier cannot match (it only knows DNS and IP names).
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier))
            .with_client_cert_resolver(Arc::new(Resolver(self.inner.clone())));
        cfg.alpn_protocols = vec![MESH_ALPN.to_vec()];
        Ok(cfg)
    }
}

/// Reads a PEM chain and key from disk.
fn read_issued(chain: &Path, key: &Path) -> Result<IssuedCert, Error> {
    let certs = CertificateDer::pem_file_iter(chain)
        .map_err(|e| Error::Pem {
            path: chain.to_owned(),
            what: e.to_string(),
        })?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Error::Pem {
            path: chain.to_owned(),
            what: e.to_string(),
        })?;
    let leaf = certs.first().ok_or_else(|| Error::Pem {
        path: chain.to_owned(),
        what: "no certificate found".into(),
    })?;
    let not_after = not_after_of(leaf).ok_or_else(|| Error::Pem {
        path: chain.to_owned(),
        what: "unreadable validity".into(),
    })?;
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| Error::Pem {
        path: key.to_owned(),
        what: e.to_string(),
    })?;
    Ok(IssuedCert {
        chain: certs,
        key,
        not_after,
        issued_at: SystemTime::now(),
    })
}

fn load(cert: &IssuedCert, generation: u64) -> Result<Current, Error> {
    let provider = crypto_provider();
    let signer = provider
        .key_provider
        .load_private_key(cert.key.clone_key())?;
    let key = CertifiedKey::new(cert.chain.clone(), signer);
    key.keys_match()?;
    let serial = x509_parser::parse_x509_certificate(&cert.chain[0])
        .map(|(_, c)| hex(c.raw_serial()))
        .unwrap_or_default();
    let info = CertInfo {
        serial,
        issued_at: cert.issued_at,
        not_after: cert.not_after,
        generation,
    };
    Ok(Current {
        key: Arc::new(key),
        info,
    })
}

/// Presents the current certificate, on either side of a handshake.
struct Resolver(Arc<Inner>);

impl fmt::Debug for Resolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Resolver")
    }
}

impl ResolvesServerCert for Resolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.current.load().key.clone())
    }
}

impl ResolvesClientCert for Resolver {
    fn resolve(&self, _hints: &[&[u8]], _schemes: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        Some(self.0.current.load().key.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}
