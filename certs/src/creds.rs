//! The sidecar's current credentials and the TLS configurations built on them.
//!
//! [`Credentials`] keeps the workload certificate behind an [`ArcSwap`] so that every TLS
//! configuration built from it presents the newest certificate on the next handshake, without
//! being rebuilt; existing connections keep the certificate they were established with.
//! Observers (metrics, logs, the admin page) follow changes through [`Credentials::watch`].

use std::fmt;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use arc_swap::ArcSwap;
use rustls::client::ResolvesClientCert;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, ServerConfig, SignatureScheme};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use tokio::sync::watch;

use crate::ca::hex;
use crate::files::{CredentialFiles, FilesPem};
use crate::verify::{Roots, ServerIdentityVerifier, SharedRoots, WorkloadClientVerifier};
use crate::{Error, IssuedCert, SpiffeId, crypto_provider};

/// ALPN for the mesh: HTTP/2 only.
const MESH_ALPN: &[u8] = b"h2";

/// The set of roots peers' certificates must chain to. May hold several roots while a CA is
/// rotated (old and new), and all of them are trusted.
#[derive(Clone, Debug, PartialEq, Eq)]
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

    /// The roots of both bundles, each once.
    pub fn union(&self, other: &TrustBundle) -> TrustBundle {
        let mut certs = self.certs.clone();
        for c in &other.certs {
            if !certs.contains(c) {
                certs.push(c.clone());
            }
        }
        Self { certs }
    }

    /// The SHA-256 of the roots, hex: the same for the same roots in the same order, whatever
    /// the build or the host.
    pub fn fingerprint(&self) -> String {
        let mut h = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
        for c in &self.certs {
            h.update(&(c.len() as u64).to_be_bytes());
            h.update(c);
        }
        crate::ca::hex(h.finish().as_ref())
    }

    /// The bundle as PEM, one certificate after the other.
    pub fn to_pem(&self) -> String {
        crate::ca::pem_certs(&self.certs)
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
    /// Read at every handshake of a client configuration; a server configuration takes a copy
    /// and is built again when it changes (see [`Credentials::bundle_changes`]).
    roots: SharedRoots,
    current: ArcSwap<Current>,
    changes: watch::Sender<CertInfo>,
    /// How many trust bundles this process has installed (1 for the first).
    bundles: watch::Sender<u64>,
    /// For credentials read from files: `Ok` while the files' latest content is in force, else
    /// why it was refused (the last good credentials stay).
    files: Mutex<Option<Result<(), String>>>,
    /// Held by each install from its check to its last store, so that installs from two
    /// sources (renewal, files) cannot interleave.
    installing: Mutex<()>,
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
        let roots = Roots::new(bundle, id.trust_domain())?;
        let current = load(&cert, 1)?;
        roots.check_own(&cert.chain, &id)?;
        let (changes, _) = watch::channel(current.info.clone());
        let (bundles, _) = watch::channel(1);
        Ok(Self {
            inner: Arc::new(Inner {
                id,
                roots: Arc::new(ArcSwap::from_pointee(roots)),
                current: ArcSwap::from_pointee(current),
                changes,
                bundles,
                files: Mutex::new(None),
                installing: Mutex::new(()),
            }),
        })
    }

    /// Credentials issued by someone else, from what `files` held when read into `pem`: a trust
    /// bundle, a certificate chain (leaf first) and its private key.
    pub fn from_files(
        id: SpiffeId,
        files: &CredentialFiles,
        pem: &FilesPem,
    ) -> Result<Self, Error> {
        let (bundle, cert) = files.parse(pem)?;
        let creds = Self::new(id, &bundle, cert)?;
        creds.set_files_status(Ok(()));
        Ok(creds)
    }

    /// Installs what `files` hold now (read into `pem`): the trust bundle and the certificate
    /// together, or neither. The certificate must chain to the new bundle.
    pub fn install_files(
        &self,
        files: &CredentialFiles,
        pem: &FilesPem,
    ) -> Result<CertInfo, Error> {
        let (bundle, cert) = files.parse(pem)?;
        self.install_with_bundle(&bundle, cert)
    }

    /// Installs a trust bundle and a certificate that chains to it, together. Peers are judged
    /// by the new bundle from the next handshake; established connections are untouched.
    pub fn install_with_bundle(
        &self,
        bundle: &TrustBundle,
        cert: IssuedCert,
    ) -> Result<CertInfo, Error> {
        if self.inner.roots.load().holds(bundle) {
            return self.install(cert);
        }
        let _installing = self
            .inner
            .installing
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let roots = Roots::new(bundle, self.inner.id.trust_domain())?;
        roots.check_own(&cert.chain, &self.inner.id)?;
        let generation = self.inner.current.load().info.generation + 1;
        let current = load(&cert, generation)?;
        let info = current.info.clone();
        // Two stores, not one swap: a handshake between them judges the peer by the new roots
        // and presents the old certificate, which is still valid.
        self.inner.roots.store(Arc::new(roots));
        self.inner.current.store(Arc::new(current));
        self.inner.bundles.send_modify(|n| *n += 1);
        self.inner.changes.send_replace(info.clone());
        Ok(info)
    }

    /// Follows trust bundle changes: each one means server configurations must be built again
    /// (client configurations read the bundle at every handshake).
    pub fn bundle_changes(&self) -> watch::Receiver<u64> {
        self.inner.bundles.subscribe()
    }

    /// How many roots the trust bundle in force holds.
    pub fn trust_roots(&self) -> usize {
        self.inner.roots.load().len()
    }

    /// For credentials read from files: `Ok` while the files' latest content is in force, else
    /// why it was refused. `None` for credentials issued here.
    pub fn files_status(&self) -> Option<Result<(), String>> {
        self.inner
            .files
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Records how the latest reading of the credential files went.
    pub fn set_files_status(&self, status: Result<(), String>) {
        *self
            .inner
            .files
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(status);
    }

    /// This sidecar's identity.
    pub fn id(&self) -> &SpiffeId {
        &self.inner.id
    }

    /// Installs a renewed certificate. New handshakes use it at once; established connections
    /// are untouched.
    pub fn install(&self, cert: IssuedCert) -> Result<CertInfo, Error> {
        let _installing = self
            .inner
            .installing
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        self.inner
            .roots
            .load()
            .check_own(&cert.chain, &self.inner.id)?;
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
        let verifier = WorkloadClientVerifier::new(self.inner.roots.load_full());
        let mut cfg = ServerConfig::builder_with_provider(crypto_provider())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_client_cert_verifier(Arc::new(verifier))
            .with_cert_resolver(Arc::new(Resolver(self.inner.clone())));
        cfg.alpn_protocols = vec![MESH_ALPN.to_vec()];
        Ok(cfg)
    }

    /// The server side of the CA service, with this CA's serving certificate: TLS 1.3, HTTP/2
    /// or HTTP/1.1, and a client certificate optional — a sidecar renewing presents its current
    /// one (verified like a mesh caller's), a sidecar with a join token has none yet.
    pub fn service_server_config(&self) -> Result<ServerConfig, Error> {
        let verifier = WorkloadClientVerifier::optional(self.inner.roots.load_full());
        let mut cfg = ServerConfig::builder_with_provider(crypto_provider())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_client_cert_verifier(Arc::new(verifier))
            .with_cert_resolver(Arc::new(Resolver(self.inner.clone())));
        cfg.alpn_protocols = vec![MESH_ALPN.to_vec(), b"http/1.1".to_vec()];
        Ok(cfg)
    }

    /// A client of the CA service that presents this certificate (to renew it), and accepts the
    /// service only as `ca`, chaining to `anchors` or to the trust bundle in force.
    pub fn service_client_config(
        &self,
        anchors: &TrustBundle,
        ca: SpiffeId,
    ) -> Result<ClientConfig, Error> {
        let bundle = anchors.union(&self.inner.roots.load().bundle());
        service_client(&bundle, ca, Some(Arc::new(Resolver(self.inner.clone()))))
    }

    /// Installs a new trust bundle and keeps the current certificate, which must chain to it.
    /// Returns whether the bundle differs from the one in force.
    pub fn install_bundle(&self, bundle: &TrustBundle) -> Result<bool, Error> {
        let _installing = self
            .inner
            .installing
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if self.inner.roots.load().holds(bundle) {
            return Ok(false);
        }
        let roots = Roots::new(bundle, self.inner.id.trust_domain())?;
        roots.check_own(&self.inner.current.load().key.cert, &self.inner.id)?;
        self.inner.roots.store(Arc::new(roots));
        self.inner.bundles.send_modify(|n| *n += 1);
        Ok(true)
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

/// A client of the CA service before this sidecar has any certificate: it accepts the service
/// only as `ca`, chaining to `anchors`, and presents nothing.
pub fn anonymous_service_client_config(
    anchors: &TrustBundle,
    ca: SpiffeId,
) -> Result<ClientConfig, Error> {
    service_client(anchors, ca, None)
}

fn service_client(
    bundle: &TrustBundle,
    ca: SpiffeId,
    cert: Option<Arc<dyn ResolvesClientCert>>,
) -> Result<ClientConfig, Error> {
    let roots = Roots::new(bundle, ca.trust_domain())?;
    let verifier = ServerIdentityVerifier::new(Arc::new(ArcSwap::from_pointee(roots)), ca);
    let builder = ClientConfig::builder_with_provider(crypto_provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        // The custom verifier checks the chain and the SPIFFE id (see `client_config`).
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier));
    let mut cfg = match cert {
        Some(resolver) => builder.with_client_cert_resolver(resolver),
        None => builder.with_no_client_auth(),
    };
    cfg.alpn_protocols = vec![MESH_ALPN.to_vec()];
    Ok(cfg)
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
