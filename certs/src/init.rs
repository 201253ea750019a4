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
use time::OffsetDateTime;

use crate::ca::{BACKDATE, BUNDLE, CA_CERT, CA_KEY, fill_random, hex, random_serial, write_dir};
use crate::{Error, TrustBundle};

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
    let mut rnd = [0u8; 4];
    fill_random(&mut rnd);
    let now = SystemTime::now();
    let (kind, parent) = match req.root {
        None => ("root", None),
        Some((cert, key)) => ("intermediate", Some(load_root(cert, key)?)),
    };
    let name = format!("Outrider {kind} {}", hex(&rnd));
    let mut not_after = now + req.lifetime;
    if let Some((_, root_not_after, _)) = &parent {
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
    let (cert_pem, bundle_pem) = match parent {
        None => {
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            let cert = params.self_signed(&key)?;
            (cert.pem(), cert.pem())
        }
        Some((issuer, _, root_pem)) => {
            // It issues workload certificates only, never another CA; and carries their usages,
            // which peers require of every certificate in a chain below the root.
            params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
            params.extended_key_usages = vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ];
            (params.signed_by(&key, &issuer)?.pem(), root_pem)
        }
    };
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

/// The offline root: its issuer, its expiry and its PEM. Its certificate must be a CA's.
fn load_root(
    cert: &Path,
    key: &Path,
) -> Result<(Issuer<'static, KeyPair>, SystemTime, String), Error> {
    let cert_pem = fs::read_to_string(cert).map_err(|e| Error::io(cert, e))?;
    let key_pem = fs::read_to_string(key).map_err(|e| Error::io(key, e))?;
    let bundle = TrustBundle::from_pem(cert, cert_pem.as_bytes())?;
    let der = &bundle.certs()[0];
    let bad = |what: &str| Error::Pem {
        path: cert.to_owned(),
        what: what.into(),
    };
    let (_, parsed) =
        x509_parser::parse_x509_certificate(der).map_err(|_| bad("not a certificate"))?;
    if !parsed.is_ca() {
        return Err(bad(
            "not a CA certificate (basicConstraints CA:FALSE or absent)",
        ));
    }
    let not_after = crate::ca::not_after_of(der).ok_or_else(|| bad("unreadable validity"))?;
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
    let issuer = Issuer::from_ca_cert_pem(&cert_pem, key_pair)?;
    Ok((issuer, not_after, cert_pem))
}
