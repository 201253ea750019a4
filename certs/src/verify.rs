//! Verifying peers: the chain against the trust bundle (webpki), the extended key usage for the
//! side of the connection, and the SPIFFE id from the URI SAN — never from a DNS SAN or the
//! subject.

use std::fmt;
use std::sync::Arc;

use arc_swap::ArcSwap;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, TrustAnchor, UnixTime};
use webpki::{EndEntityCert, KeyUsage};
use x509_parser::extensions::GeneralName;

use crate::{Error, SpiffeId, TrustBundle, crypto_provider};

/// id-kp-clientAuth (1.3.6.1.5.5.7.3.2). Required, not merely allowed: webpki's
/// `KeyUsage::client_auth()` also accepts a certificate without any EKU extension.
const CLIENT_AUTH: KeyUsage = KeyUsage::required(&[0x2b, 6, 1, 5, 5, 7, 3, 2]);
/// id-kp-serverAuth (1.3.6.1.5.5.7.3.1), required likewise.
const SERVER_AUTH: KeyUsage = KeyUsage::required(&[0x2b, 6, 1, 5, 5, 7, 3, 1]);

/// The roots in force, replaced whole when the trust bundle changes.
pub(crate) type SharedRoots = Arc<ArcSwap<Roots>>;

/// The trust anchors of a bundle, with the trust domain identities must belong to.
pub(crate) struct Roots {
    bundle: TrustBundle,
    anchors: Vec<TrustAnchor<'static>>,
    subjects: Vec<DistinguishedName>,
    trust_domain: String,
    algs: WebPkiSupportedAlgorithms,
}

impl Roots {
    pub(crate) fn new(bundle: &TrustBundle, trust_domain: &str) -> Result<Self, Error> {
        let mut anchors = Vec::new();
        let mut subjects = Vec::new();
        for der in bundle.certs() {
            let anchor = webpki::anchor_from_trusted_cert(der)
                .map_err(|e| Error::Identity(format!("trust bundle entry unusable: {e}")))?
                .to_owned();
            // The hint is a whole DER `Name`; webpki keeps only its contents, without the
            // SEQUENCE around them, which OpenSSL-based clients refuse to parse.
            subjects.push(DistinguishedName::in_sequence(anchor.subject.as_ref()));
            anchors.push(anchor);
        }
        Ok(Self {
            bundle: bundle.clone(),
            anchors,
            subjects,
            trust_domain: trust_domain.to_owned(),
            algs: crypto_provider().signature_verification_algorithms,
        })
    }

    /// The bundle these roots were made from.
    pub(crate) fn bundle(&self) -> TrustBundle {
        self.bundle.clone()
    }

    /// Whether these are the roots of `bundle`.
    pub(crate) fn holds(&self, bundle: &TrustBundle) -> bool {
        self.bundle == *bundle
    }

    /// How many roots there are.
    pub(crate) fn len(&self) -> usize {
        self.anchors.len()
    }

    /// Verifies a peer's chain for `usage` and returns the SPIFFE id of its URI SAN.
    fn verify(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
        usage: KeyUsage,
    ) -> Result<SpiffeId, rustls::Error> {
        let cert = EndEntityCert::try_from(end_entity).map_err(pki_error)?;
        cert.verify_for_usage(
            self.algs.all,
            &self.anchors,
            intermediates,
            now,
            usage,
            None,
            None,
        )
        .map_err(pki_error)?;
        let id = spiffe_id_of(end_entity).map_err(|e| other_error(e.to_string()))?;
        if id.trust_domain() != self.trust_domain {
            return Err(other_error(format!(
                "peer {id} is outside trust domain {}",
                self.trust_domain
            )));
        }
        Ok(id)
    }

    /// Checks that our own certificate is one peers will accept, before installing it.
    pub(crate) fn check_own(
        &self,
        chain: &[CertificateDer<'_>],
        id: &SpiffeId,
    ) -> Result<(), Error> {
        let (leaf, rest) = chain
            .split_first()
            .ok_or_else(|| Error::Identity("empty chain".into()))?;
        for usage in [SERVER_AUTH, CLIENT_AUTH] {
            let got = self
                .verify(leaf, rest, UnixTime::now(), usage)
                .map_err(|e| Error::Identity(format!("own certificate rejected: {e}")))?;
            if &got != id {
                return Err(Error::Identity(format!(
                    "own certificate names {got}, expected {id}"
                )));
            }
        }
        Ok(())
    }
}

/// Reads the SPIFFE id of a certificate: it must have exactly one URI SAN, and it must parse.
pub(crate) fn spiffe_id_of(der: &CertificateDer<'_>) -> Result<SpiffeId, Error> {
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| Error::Identity(format!("unparsable certificate: {e}")))?;
    let san = cert
        .subject_alternative_name()
        .map_err(|e| Error::Identity(format!("bad SAN extension: {e}")))?
        .ok_or_else(|| Error::Identity("no subjectAltName".into()))?;
    let mut uris = san.value.general_names.iter().filter_map(|n| match n {
        GeneralName::URI(u) => Some(*u),
        _ => None,
    });
    match (uris.next(), uris.next()) {
        (Some(uri), None) => uri
            .parse()
            .map_err(|e: crate::SpiffeIdError| Error::Identity(e.to_string())),
        (None, _) => Err(Error::Identity("no URI SAN".into())),
        (Some(_), Some(_)) => Err(Error::Identity("more than one URI SAN".into())),
    }
}

impl SpiffeId {
    /// The identity a verified peer certificate carries (its single URI SAN).
    pub fn from_certificate(der: &CertificateDer<'_>) -> Result<Self, Error> {
        spiffe_id_of(der)
    }
}

fn pki_error(e: webpki::Error) -> rustls::Error {
    use webpki::Error as E;
    let ce = match e {
        E::UnknownIssuer => CertificateError::UnknownIssuer,
        E::CertExpired { .. } => CertificateError::Expired,
        E::CertNotValidYet { .. } => CertificateError::NotValidYet,
        E::InvalidSignatureForPublicKey => CertificateError::BadSignature,
        E::RequiredEkuNotFoundContext(_) => CertificateError::InvalidPurpose,
        _ => return other_error(e.to_string()),
    };
    rustls::Error::InvalidCertificate(ce)
}

fn other_error(msg: String) -> rustls::Error {
    rustls::Error::InvalidCertificate(CertificateError::Other(rustls::OtherError(Arc::new(
        IdentityError(msg),
    ))))
}

#[derive(Debug)]
struct IdentityError(String);

impl fmt::Display for IdentityError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for IdentityError {}

/// The handshake signature checks of a verifier holding `roots`: the same on both sides of a
/// connection, with the algorithms of the crypto provider.
macro_rules! handshake_signatures_by_roots {
    () => {
        handshake_signatures_by_roots!(verify_tls12_signature);
        handshake_signatures_by_roots!(verify_tls13_signature);

        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.algs.supported_schemes()
        }
    };
    // Each check is rustls' function of the same name.
    ($check:ident) => {
        fn $check(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::$check(message, cert, dss, &self.algs)
        }
    };
}

/// Inbound: requires a client certificate chaining to the bundle, with clientAuth and a SPIFFE id
/// of our trust domain. Which callers may do what is decided later, by policy.
pub(crate) struct WorkloadClientVerifier {
    /// Fixed for the configuration's life: the root hints are borrowed from it.
    roots: Arc<Roots>,
    algs: WebPkiSupportedAlgorithms,
    /// Whether a client without a certificate is refused (the mesh) or let through to be judged
    /// by other means (the CA service and its join tokens).
    mandatory: bool,
}

impl WorkloadClientVerifier {
    pub(crate) fn new(roots: Arc<Roots>) -> Self {
        let algs = roots.algs;
        Self {
            roots,
            algs,
            mandatory: true,
        }
    }

    /// A verifier that lets clients without a certificate through; one that presents a
    /// certificate must still pass.
    pub(crate) fn optional(roots: Arc<Roots>) -> Self {
        Self {
            mandatory: false,
            ..Self::new(roots)
        }
    }
}

impl fmt::Debug for WorkloadClientVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WorkloadClientVerifier")
    }
}

impl ClientCertVerifier for WorkloadClientVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &self.roots.subjects
    }

    fn client_auth_mandatory(&self) -> bool {
        self.mandatory
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.roots
            .verify(end_entity, intermediates, now, CLIENT_AUTH)?;
        Ok(ClientCertVerified::assertion())
    }

    handshake_signatures_by_roots!();
}

/// Outbound: the server must chain to the bundle, have serverAuth, and be exactly `expected`.
/// The TLS server name (SNI) is ignored: workload certificates carry no DNS names.
pub(crate) struct ServerIdentityVerifier {
    /// Read at each handshake: a new trust bundle applies to connections made after it.
    roots: SharedRoots,
    algs: WebPkiSupportedAlgorithms,
    expected: SpiffeId,
}

impl ServerIdentityVerifier {
    pub(crate) fn new(roots: SharedRoots, expected: SpiffeId) -> Self {
        let algs = crypto_provider().signature_verification_algorithms;
        Self {
            roots,
            algs,
            expected,
        }
    }
}

impl fmt::Debug for ServerIdentityVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ServerIdentityVerifier({})", self.expected)
    }
}

impl ServerCertVerifier for ServerIdentityVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let id = self
            .roots
            .load()
            .verify(end_entity, intermediates, now, SERVER_AUTH)?;
        if id != self.expected {
            return Err(other_error(format!(
                "peer is {id}, expected {}",
                self.expected
            )));
        }
        Ok(ServerCertVerified::assertion())
    }

    handshake_signatures_by_roots!();
}
