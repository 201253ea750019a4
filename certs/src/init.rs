//! Creating a CA of one's own (`outrider ca init`): a root, or an intermediate signed by a root
//! whose key stays offline. The directory it fills is what sidecars load with `--ca-dir`:
//! `ca.crt` and `ca.key` (mode 0600) are the issuing CA, `bundle.pem` the root peers must chain
//! to. Every CA gets a name of its own, so that two roots in one trust bundle (during a
//! rotation) never share a subject.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use rustls_pki_types::CertificateDer;
use time::OffsetDateTime;

use crate::ca::{
    BACKDATE, BUNDLE, CA_CERT, CA_KEY, fill_random, hex, random_serial, sign_workload, write_dir,
};
use crate::verify::Roots;
use crate::{Error, SpiffeId, TrustBundle};

/// What to create.
pub struct NewAuthority<'a> {
    /// The directory to fill; it must not hold a CA yet.
    pub dir: &'a Path,
    /// How long the CA is valid (an intermediate never outlives its root).
    pub lifetime: Duration,
    /// For an intermediate: the root's certificate and key (PEM files).
    pub root: Option<(&'a Path, &'a Path)>,
}

/// What was created.
#[derive(Debug)]
pub struct CreatedAuthority {
    /// The CA's subject common name.
    pub name: String,
    /// Where the files are.
    pub dir: PathBuf,
    /// Whether it is an intermediate.
    pub intermediate: bool,
    /// When the CA expires.
    pub not_after: SystemTime,
}

/// Creates the CA; an existing one in `dir` is never overwritten.
pub fn create_authority(req: &NewAuthority<'_>) -> Result<CreatedAuthority, Error> {
    if req.dir.join(CA_KEY).exists() || req.dir.join(CA_CERT).exists() {
        return Err(Error::Pem {
            path: req.dir.to_owned(),
            what: "already holds a CA (ca.crt or ca.key); choose another directory".into(),
        });
    }
    if req.dir.exists() {
        return Err(Error::Pem {
            path: req.dir.to_owned(),
            what: "exists; give a directory to create".into(),
        });
    }
    let mut rnd = [0u8; 4];
    fill_random(&mut rnd);
    let now = SystemTime::now();
    let (kind, parent) = match req.root {
        None => ("root", None),
        Some((cert, key)) => ("intermediate", Some(load_root(cert, key)?)),
    };
    let name = format!("Outrider {kind} {}", hex(&rnd));
    let mut not_after = now.checked_add(req.lifetime).ok_or_else(|| Error::Pem {
        path: req.dir.to_owned(),
        what: "lifetime too long".into(),
    })?;
    if let Some((_, root_not_after, _, _)) = &parent {
        not_after = not_after.min(*root_not_after);
    }
    let mut params = CertificateParams::default();
    params.not_before = OffsetDateTime::from(now - BACKDATE);
    params.not_after = OffsetDateTime::from(not_after);
    params.serial_number = Some(random_serial());
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "Outrider");
    dn.push(DnType::CommonName, name.as_str());
    params.distinguished_name = dn;
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.use_authority_key_identifier_extension = parent.is_some();
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let (cert_pem, bundle_pem, cert_der, root_der) = match parent {
        None => {
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            let cert = params.self_signed(&key)?;
            let der = cert.der().clone();
            (cert.pem(), cert.pem(), der.clone(), der)
        }
        Some((issuer, _, root_der, root_pem)) => {
            // It issues workload certificates only, never another CA; and carries their usages,
            // which peers require of every certificate in a chain below the root.
            params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
            params.extended_key_usages = vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ];
            let cert = params.signed_by(&key, &issuer)?;
            // The root's certificate alone, whatever else its file held.
            (cert.pem(), root_pem, cert.der().clone(), root_der)
        }
    };
    check_issues(&cert_der, &root_der, &key, req.root.is_some())?;
    write_dir(
        req.dir,
        &[
            (CA_CERT, cert_pem.as_bytes(), 0o644),
            (CA_KEY, key.serialize_pem().as_bytes(), 0o600),
            (BUNDLE, bundle_pem.as_bytes(), 0o644),
        ],
    )?;
    Ok(CreatedAuthority {
        name,
        dir: req.dir.to_owned(),
        intermediate: req.root.is_some(),
        not_after,
    })
}

/// The offline root: its issuer, its expiry and its certificate (the first of its file; nothing
/// else of the file is kept). Its certificate must be a CA's that may sign certificates.
fn load_root(
    cert: &Path,
    key: &Path,
) -> Result<
    (
        Issuer<'static, KeyPair>,
        SystemTime,
        CertificateDer<'static>,
        String,
    ),
    Error,
> {
    let cert_pem = fs::read(cert).map_err(|e| Error::io(cert, e))?;
    let key_pem = fs::read_to_string(key).map_err(|e| Error::io(key, e))?;
    let bundle = TrustBundle::from_pem(cert, &cert_pem)?;
    let der = bundle.certs()[0].clone();
    let bad = |what: &str| Error::Pem {
        path: cert.to_owned(),
        what: what.into(),
    };
    let (_, parsed) =
        x509_parser::parse_x509_certificate(&der).map_err(|_| bad("not a certificate"))?;
    let signs = parsed
        .key_usage()
        .ok()
        .flatten()
        .is_none_or(|ku| ku.value.key_cert_sign());
    if !parsed.is_ca() || !signs {
        return Err(bad(
            "not a CA certificate that may sign certificates (basicConstraints CA:TRUE, keyCertSign)",
        ));
    }
    let not_after = crate::ca::not_after_of(&der).ok_or_else(|| bad("unreadable validity"))?;
    if not_after <= SystemTime::now() {
        return Err(bad("the root has expired"));
    }
    let key_pair = KeyPair::from_pem(&key_pem).map_err(|e| Error::Pem {
        path: key.to_owned(),
        what: e.to_string(),
    })?;
    if key_pair.public_key_raw() != parsed.public_key().subject_public_key.data.as_ref() {
        return Err(Error::Pem {
            path: key.to_owned(),
            what: format!("is not the key of {}", cert.display()),
        });
    }
    let issuer = Issuer::from_ca_cert_der(&der, key_pair)?;
    let block = first_certificate(&String::from_utf8_lossy(&cert_pem))
        .ok_or_else(|| bad("no certificate block"))?;
    Ok((issuer, not_after, der, block))
}

/// The text of the first `CERTIFICATE` block of a PEM file, its markers included.
fn first_certificate(pem: &str) -> Option<String> {
    const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
    const END: &str = "-----END CERTIFICATE-----";
    let start = pem.find(BEGIN)?;
    let end = start + pem[start..].find(END)? + END.len();
    Some(format!("{}\n", &pem[start..end]))
}

/// Checks, before anything is written, that a workload certificate from the new CA is one
/// peers trusting the root will accept.
fn check_issues(
    ca_der: &CertificateDer<'static>,
    root_der: &CertificateDer<'static>,
    key: &KeyPair,
    intermediate: bool,
) -> Result<(), Error> {
    let issuer = Issuer::from_ca_cert_der(ca_der, key)?;
    let id = SpiffeId::new("check.invalid", "default", "ca-init")
        .map_err(|e| Error::Identity(e.to_string()))?;
    let now = SystemTime::now();
    let (leaf, _) = sign_workload(&issuer, &id, now - BACKDATE, now + Duration::from_secs(60))?;
    let mut chain = vec![leaf];
    if intermediate {
        chain.push(ca_der.clone());
    }
    let roots = Roots::new(
        &TrustBundle::from_certs(vec![root_der.clone()]),
        id.trust_domain(),
    )?;
    roots
        .check_own(&chain, &id)
        .map_err(|e| Error::Identity(format!("the new CA's certificates would not verify: {e}")))
}
