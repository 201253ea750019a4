//! Certificate signing requests: a sidecar asks a CA service for its certificate without its
//! private key ever leaving the process, and the CA service judges each request before signing.
//!
//! The CA decides everything a certificate says except its public key: the request contributes
//! the key and the one identity it asks for, which the service compares with what the caller is
//! entitled to. A request is refused rather than trimmed when it asks for more: another SAN, a
//! CA certificate, an extension we do not know, or a key that is not ECDSA P-256.

use std::time::SystemTime;

use rcgen::{CertificateParams, KeyPair, PublicKeyData, SanType};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, CertificateSigningRequestDer};
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::oid_registry::{
    OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY, OID_SIG_ECDSA_WITH_SHA256,
};
use x509_parser::prelude::FromDer;

use crate::ca::{BACKDATE, not_after_of, workload_params};
use crate::{DevCa, Error, IssuedCert, SpiffeId};

/// A key made here and the request that asks a CA to certify it for one identity.
pub struct KeyRequest {
    id: SpiffeId,
    key: KeyPair,
    pem: String,
}

impl KeyRequest {
    /// A new ECDSA P-256 key and a request for `id`, its only SAN.
    pub fn new(id: &SpiffeId) -> Result<Self, Error> {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let mut params = CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.subject_alt_names = vec![SanType::URI(id.to_string().try_into()?)];
        let pem = params.serialize_request(&key)?.pem()?;
        Ok(Self {
            id: id.clone(),
            key,
            pem,
        })
    }

    /// The request, PEM encoded.
    pub fn pem(&self) -> &str {
        &self.pem
    }

    /// Pairs the certificate chain the CA answered with (leaf first) with this request's key.
    /// The leaf must certify this key and carry this identity: a CA that answers with anything
    /// else is not believed.
    pub fn into_issued(
        self,
        chain: Vec<CertificateDer<'static>>,
        issued_at: SystemTime,
    ) -> Result<IssuedCert, Error> {
        let leaf = chain
            .first()
            .ok_or_else(|| Error::Identity("the CA answered with no certificate".into()))?;
        let (_, cert) = x509_parser::parse_x509_certificate(leaf)
            .map_err(|e| Error::Identity(format!("the CA's certificate is unparsable: {e}")))?;
        if cert.tbs_certificate.subject_pki.raw != self.key.subject_public_key_info() {
            return Err(Error::Identity(
                "the CA's certificate is not for the key we sent".into(),
            ));
        }
        let got = SpiffeId::from_certificate(leaf)?;
        if got != self.id {
            return Err(Error::Identity(format!(
                "the CA's certificate names {got}, we asked for {}",
                self.id
            )));
        }
        let not_after = not_after_of(leaf)
            .ok_or_else(|| Error::Identity("the CA's certificate has no readable expiry".into()))?;
        Ok(IssuedCert {
            key: rustls_pki_types::PrivateKeyDer::Pkcs8(self.key.serialize_der().into()),
            chain,
            not_after,
            issued_at,
        })
    }
}

/// Why a certificate signing request is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CsrError {
    /// Not a PEM or DER PKCS#10 request.
    #[error("malformed certificate signing request: {0}")]
    Malformed(String),
    /// Its signature does not verify with its own key: the sender does not hold the key.
    #[error("the request's signature does not verify with its public key")]
    BadSignature,
    /// A key or signature other than ECDSA P-256 with SHA-256.
    #[error("unsupported key: {0}; only ECDSA P-256 keys signed with SHA-256 are accepted")]
    KeyType(String),
    /// An extension we do not issue: another SAN, a CA, or an unknown extension.
    #[error("refused extension: {0}")]
    Extension(String),
}

/// A verified request: a P-256 public key its sender holds, and the identity it asks for.
pub struct SigningRequest {
    id: SpiffeId,
    public_key: rcgen::SubjectPublicKeyInfo,
}

impl SigningRequest {
    /// Parses and checks a request given as PEM (`CERTIFICATE REQUEST`) or DER.
    pub fn parse(input: &[u8]) -> Result<Self, CsrError> {
        let der =
            if input.starts_with(b"-----") || input.first().is_some_and(u8::is_ascii_whitespace) {
                CertificateSigningRequestDer::from_pem_slice(input)
                    .map_err(|e| CsrError::Malformed(e.to_string()))?
            } else {
                CertificateSigningRequestDer::from(input.to_vec())
            };
        let (rest, csr) = X509CertificationRequest::from_der(&der)
            .map_err(|e| CsrError::Malformed(e.to_string()))?;
        if !rest.is_empty() {
            return Err(CsrError::Malformed(
                "trailing bytes after the request".into(),
            ));
        }
        let info = &csr.certification_request_info;
        let spki = &info.subject_pki;
        let curve = spki
            .algorithm
            .parameters
            .as_ref()
            .and_then(|p| p.as_oid().ok());
        if spki.algorithm.algorithm != OID_KEY_TYPE_EC_PUBLIC_KEY || curve != Some(OID_EC_P256) {
            return Err(CsrError::KeyType(format!(
                "key algorithm {} {}",
                spki.algorithm.algorithm,
                curve.map(|c| c.to_id_string()).unwrap_or_default()
            )));
        }
        if csr.signature_algorithm.algorithm != OID_SIG_ECDSA_WITH_SHA256 {
            return Err(CsrError::KeyType(format!(
                "signature algorithm {}",
                csr.signature_algorithm.algorithm
            )));
        }
        csr.verify_signature().map_err(|_| CsrError::BadSignature)?;
        let id = requested_identity(&csr)?;
        let public_key = rcgen::SubjectPublicKeyInfo::from_der(spki.raw)
            .map_err(|e| CsrError::KeyType(e.to_string()))?;
        Ok(Self { id, public_key })
    }

    /// The identity the request asks for.
    pub fn id(&self) -> &SpiffeId {
        &self.id
    }

    /// The SHA-256 of the request's public key (its SubjectPublicKeyInfo), hex: what a join
    /// token's use is spent on.
    pub fn key_fingerprint(&self) -> String {
        let spki = rcgen::PublicKeyData::subject_public_key_info(&self.public_key);
        crate::ca::hex(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &spki).as_ref())
    }
}

/// The one SPIFFE id a request asks for, refusing everything a workload may not ask for.
fn requested_identity(csr: &X509CertificationRequest<'_>) -> Result<SpiffeId, CsrError> {
    let mut id = None;
    let mut extension_requests = 0;
    for attr in csr.certification_request_info.iter_attributes() {
        use x509_parser::cri_attributes::ParsedCriAttribute as A;
        let A::ExtensionRequest(req) = attr.parsed_attribute() else {
            return Err(CsrError::Extension(format!(
                "request attribute {}",
                attr.oid
            )));
        };
        extension_requests += 1;
        for ext in &req.extensions {
            match ext.parsed_extension() {
                ParsedExtension::SubjectAlternativeName(san) => {
                    if id.is_some() {
                        return Err(CsrError::Extension("a second subjectAltName".into()));
                    }
                    id = Some(single_uri(&san.general_names)?);
                }
                ParsedExtension::BasicConstraints(bc) if bc.ca => {
                    return Err(CsrError::Extension(
                        "basicConstraints CA:TRUE (a workload cannot be a CA)".into(),
                    ));
                }
                // Usages are the CA's to decide; asking for them changes nothing.
                ParsedExtension::BasicConstraints(_)
                | ParsedExtension::KeyUsage(_)
                | ParsedExtension::ExtendedKeyUsage(_) => {}
                _ => return Err(CsrError::Extension(format!("extension {}", ext.oid))),
            }
        }
    }
    if extension_requests > 1 {
        return Err(CsrError::Extension(
            "more than one extension request".into(),
        ));
    }
    id.ok_or_else(|| CsrError::Extension("no subjectAltName with a SPIFFE id".into()))
}

fn single_uri(names: &[GeneralName<'_>]) -> Result<SpiffeId, CsrError> {
    match names {
        [GeneralName::URI(uri)] => uri
            .parse()
            .map_err(|e: crate::SpiffeIdError| CsrError::Extension(e.to_string())),
        [_] => Err(CsrError::Extension(
            "the subjectAltName must be one URI (a SPIFFE id)".into(),
        )),
        _ => Err(CsrError::Extension(format!(
            "{} names in subjectAltName, exactly one SPIFFE id is issued",
            names.len()
        ))),
    }
}

/// A certificate a CA signed for someone else's key: the chain to hand back.
pub struct SignedChain {
    /// The leaf first, then the issuer chain (without the root).
    pub chain: Vec<CertificateDer<'static>>,
    /// When the leaf stops being valid.
    pub not_after: SystemTime,
    /// The leaf's serial number, hex, for the issuance log.
    pub serial: String,
}

impl DevCa {
    /// Signs `req` for its identity, valid for `ttl` but never past this CA's own expiry. The
    /// caller has already decided that the sender is entitled to that identity.
    pub fn sign(
        &self,
        req: &SigningRequest,
        ttl: std::time::Duration,
    ) -> Result<SignedChain, Error> {
        let now = SystemTime::now();
        let not_after = now
            .checked_add(ttl)
            .unwrap_or(self.not_after())
            .min(self.not_after());
        let params = workload_params(&req.id, now - BACKDATE, not_after)?;
        let serial = params
            .serial_number
            .as_ref()
            .map(|s| crate::ca::hex(s.as_ref()))
            .unwrap_or_default();
        let cert = params.signed_by(&req.public_key, self.issuer())?;
        let mut chain = vec![cert.der().clone()];
        chain.extend(self.chain_above());
        Ok(SignedChain {
            chain,
            not_after,
            serial,
        })
    }
}
