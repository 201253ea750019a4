//! The development CA: a root created once per user and host, shared by every sidecar of that
//! user, that issues short-lived workload certificates.
//!
//! The root lives in a directory (by default `$HOME/.outrider/ca/`) as `ca.crt` and `ca.key`.
//! Creation is race-free: the files are written into a private temporary directory that is then
//! renamed into place; a sidecar that loses the race loads the winner's root instead.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PublicKeyData, SanType, SerialNumber,
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use time::OffsetDateTime;

use crate::{Error, SpiffeId, TrustBundle};

pub(crate) const CA_CERT: &str = "ca.crt";
pub(crate) const CA_KEY: &str = "ca.key";
/// The roots peers must chain to, when the issuing CA is not itself the root (`ca init`).
pub(crate) const BUNDLE: &str = "bundle.pem";
/// How long a freshly created development root is valid.
const ROOT_LIFETIME: Duration = Duration::from_secs(365 * 24 * 3600);
/// Certificates start this far in the past to tolerate small clock differences between hosts.
pub(crate) const BACKDATE: Duration = Duration::from_secs(60);

/// A CA that can issue workload certificates.
pub struct DevCa {
    dir: PathBuf,
    issuer: Issuer<'static, KeyPair>,
    cert_der: CertificateDer<'static>,
    /// The roots: `bundle.pem` if the directory has one, else the CA's own certificate.
    bundle: TrustBundle,
    /// Whether the CA is an intermediate, whose certificate follows each leaf in its chain.
    intermediate: bool,
    not_after: SystemTime,
}

/// A certificate issued to a workload, with its private key.
pub struct IssuedCert {
    /// The leaf first, then the issuer chain (without the root).
    pub chain: Vec<CertificateDer<'static>>,
    /// The leaf's private key (PKCS#8).
    pub key: PrivateKeyDer<'static>,
    /// When the leaf stops being valid.
    pub not_after: SystemTime,
    /// When the leaf was issued. Its notBefore is a minute earlier, to absorb clock skew;
    /// renewal is scheduled from this instant, not from notBefore.
    pub issued_at: SystemTime,
}

impl DevCa {
    /// Loads the root in `dir`, creating it first if it does not exist yet.
    pub fn load_or_create(dir: &Path) -> Result<Self, Error> {
        if !dir.join(CA_CERT).exists() {
            create(dir)?;
        }
        Self::load(dir)
    }

    /// Loads an existing root from `dir`.
    pub fn load(dir: &Path) -> Result<Self, Error> {
        let cert_path = dir.join(CA_CERT);
        let key_path = dir.join(CA_KEY);
        let cert_pem = fs::read_to_string(&cert_path).map_err(|e| Error::io(&cert_path, e))?;
        let key_pem = fs::read_to_string(&key_path).map_err(|e| Error::io(&key_path, e))?;
        let key = KeyPair::from_pem(&key_pem)?;
        let own = TrustBundle::from_pem(&cert_path, cert_pem.as_bytes())?;
        let cert_der = own.certs()[0].clone();
        // The two files are replaced one after the other when a CA is rotated: a pair caught
        // between the two renames does not load.
        if !public_key_is(&cert_der, &key.subject_public_key_info()) {
            return Err(Error::Pem {
                path: key_path,
                what: format!("not the key of {}", cert_path.display()),
            });
        }
        let issuer = Issuer::from_ca_cert_pem(&cert_pem, key)?;
        let not_after = not_after_of(&cert_der).ok_or_else(|| Error::Pem {
            path: cert_path.clone(),
            what: "unreadable validity".into(),
        })?;
        let bundle_path = dir.join(BUNDLE);
        let bundle = match fs::metadata(&bundle_path) {
            Ok(_) => TrustBundle::from_pem_file(&bundle_path)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => own,
            Err(e) => return Err(Error::io(&bundle_path, e)),
        };
        let intermediate = !bundle.certs().contains(&cert_der);
        Ok(Self {
            dir: dir.to_owned(),
            issuer,
            cert_der,
            bundle,
            intermediate,
            not_after,
        })
    }

    /// The key that signs, with the certificate it signs as.
    pub(crate) fn issuer(&self) -> &Issuer<'static, KeyPair> {
        &self.issuer
    }

    /// What follows a leaf of this CA in its chain: the CA's certificate if it is an
    /// intermediate, else nothing (peers hold the root).
    pub(crate) fn chain_above(&self) -> Option<CertificateDer<'static>> {
        self.intermediate.then(|| self.cert_der.clone())
    }

    /// The directory the root was loaded from.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The trust bundle peers need to verify certificates from this CA: the root alone.
    pub fn trust_bundle(&self) -> TrustBundle {
        self.bundle.clone()
    }

    /// When the root itself expires.
    pub fn not_after(&self) -> SystemTime {
        self.not_after
    }

    /// Issues a workload certificate for `id`, valid for `ttl` but never past the root's own
    /// expiry. The certificate carries `id` as its only SAN (a URI), and is usable both as a TLS
    /// server (serverAuth) and as a TLS client (clientAuth).
    pub fn issue(&self, id: &SpiffeId, ttl: Duration) -> Result<IssuedCert, Error> {
        let now = SystemTime::now();
        let not_before = now - BACKDATE;
        let not_after = now
            .checked_add(ttl)
            .unwrap_or(self.not_after)
            .min(self.not_after);
        let (cert, key) = sign_workload(&self.issuer, id, not_before, not_after)?;
        let mut chain = vec![cert];
        if self.intermediate {
            chain.push(self.cert_der.clone());
        }
        Ok(IssuedCert {
            chain,
            key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
            not_after,
            issued_at: now,
        })
    }
}

/// A workload certificate for `id` from `issuer`: `id` as its only SAN (a URI), usable both as
/// a TLS server (serverAuth) and as a TLS client (clientAuth); and its new key.
pub(crate) fn sign_workload<S: rcgen::SigningKey>(
    issuer: &Issuer<'_, S>,
    id: &SpiffeId,
    not_before: SystemTime,
    not_after: SystemTime,
) -> Result<(CertificateDer<'static>, KeyPair), Error> {
    let params = workload_params(id, not_before, not_after)?;
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let cert = params.signed_by(&key, issuer)?;
    Ok((cert.der().clone(), key))
}

/// What every workload certificate says, whoever holds its key: `id` as its only SAN (a URI),
/// not a CA, usable as a TLS server (serverAuth) and client (clientAuth), a random serial.
pub(crate) fn workload_params(
    id: &SpiffeId,
    not_before: SystemTime,
    not_after: SystemTime,
) -> Result<CertificateParams, Error> {
    let mut params = CertificateParams::default();
    params.not_before = OffsetDateTime::from(not_before);
    params.not_after = OffsetDateTime::from(not_after);
    params.serial_number = Some(random_serial());
    params.distinguished_name = DistinguishedName::new();
    params.subject_alt_names = vec![SanType::URI(id.to_string().try_into()?)];
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.use_authority_key_identifier_extension = true;
    Ok(params)
}

/// Writes a new root into a private temporary directory beside `dir` and renames it into place.
fn create(dir: &Path) -> Result<(), Error> {
    let (cert_pem, key_pem) = new_root()?;
    match write_dir(
        dir,
        &[
            (CA_CERT, cert_pem.as_bytes(), 0o644),
            (CA_KEY, key_pem.as_bytes(), 0o600),
        ],
    ) {
        Ok(()) => {
            tracing::info!(dir = %dir.display(), "created a development CA");
            Ok(())
        }
        // Another sidecar created it first: use theirs.
        Err(_) if dir.join(CA_CERT).exists() => Ok(()),
        Err(e) => Err(e),
    }
}

/// Creates `dir` holding `files` (name, contents, mode), all or nothing: they are written into
/// a private temporary directory beside it, which is then renamed into place. Fails if `dir`
/// exists and is not empty.
pub(crate) fn write_dir(dir: &Path, files: &[(&str, &[u8], u32)]) -> Result<(), Error> {
    let parent = match dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
    let tmp = tempdir_in(parent)?;
    let written = files
        .iter()
        .try_for_each(|(name, contents, mode)| write_file(&tmp.join(name), contents, *mode));
    let moved = written.and_then(|()| fs::rename(&tmp, dir).map_err(|e| Error::io(dir, e)));
    if moved.is_err() {
        let _ = fs::remove_dir_all(&tmp);
    }
    moved
}

fn new_root() -> Result<(String, String), Error> {
    let now = SystemTime::now();
    let mut params = CertificateParams::default();
    params.not_before = OffsetDateTime::from(now - BACKDATE);
    params.not_after = OffsetDateTime::from(now + ROOT_LIFETIME);
    params.serial_number = Some(random_serial());
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "Outrider");
    dn.push(DnType::CommonName, "Outrider development root");
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let cert = params.self_signed(&key)?;
    Ok((cert.pem(), key.serialize_pem()))
}

fn tempdir_in(parent: &Path) -> Result<PathBuf, Error> {
    let mut rnd = [0u8; 8];
    fill_random(&mut rnd);
    let name = format!(".ca-{}-{}", std::process::id(), hex(&rnd));
    let path = parent.join(name);
    // Private whatever the umask: it becomes the CA's directory.
    fs::DirBuilder::new()
        .mode(0o700)
        .create(&path)
        .map_err(|e| Error::io(&path, e))?;
    Ok(path)
}

fn write_file(path: &Path, contents: &[u8], mode: u32) -> Result<(), Error> {
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|e| Error::io(path, e))?;
    f.write_all(contents)
        .and_then(|()| f.sync_all())
        .map_err(|e| Error::io(path, e))
}

pub(crate) fn random_serial() -> SerialNumber {
    let mut b = [0u8; 16];
    fill_random(&mut b);
    b[0] &= 0x7f; // positive
    SerialNumber::from_slice(&b)
}

pub(crate) fn fill_random(buf: &mut [u8]) {
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    // The system RNG failing is not something a sidecar can recover from.
    provider
        .secure_random
        .fill(buf)
        .expect("system random source failed");
}

pub(crate) fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Certificates as PEM, one after the other.
pub(crate) fn pem_certs(certs: &[CertificateDer<'_>]) -> String {
    use base64::Engine as _;
    let mut out = String::new();
    for c in certs {
        let b64 = base64::engine::general_purpose::STANDARD.encode(c.as_ref());
        out.push_str("-----BEGIN CERTIFICATE-----\n");
        for line in b64.as_bytes().chunks(64) {
            out.push_str(std::str::from_utf8(line).unwrap_or_default());
            out.push('\n');
        }
        out.push_str("-----END CERTIFICATE-----\n");
    }
    out
}

/// Whether `der` certifies the public key `spki` (a DER SubjectPublicKeyInfo).
pub(crate) fn public_key_is(der: &CertificateDer<'_>, spki: &[u8]) -> bool {
    x509_parser::parse_x509_certificate(der)
        .is_ok_and(|(_, c)| c.tbs_certificate.subject_pki.raw == spki)
}

/// Reads a certificate's `notAfter`.
pub(crate) fn not_after_of(der: &CertificateDer<'_>) -> Option<SystemTime> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let secs = cert.validity().not_after.timestamp();
    Some(SystemTime::UNIX_EPOCH + Duration::from_secs(u64::try_from(secs).ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn concurrent_creation_yields_one_root() {
        let home = tempfile::tempdir().unwrap();
        let dir = home.path().join("ca");
        let roots: Vec<Vec<u8>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|_| s.spawn(|| DevCa::load_or_create(&dir).unwrap().cert_der.to_vec()))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(
            roots.windows(2).all(|w| w[0] == w[1]),
            "sidecars disagree on the root"
        );
        let leftovers: Vec<_> = fs::read_dir(home.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(leftovers, vec![std::ffi::OsString::from("ca")]);
        let mode = fs::metadata(dir.join(CA_KEY)).unwrap().permissions();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
            0o600
        );
    }

    #[test]
    fn leaf_never_outlives_root_and_carries_only_the_uri_san() {
        let home = tempfile::tempdir().unwrap();
        let ca = DevCa::load_or_create(&home.path().join("ca")).unwrap();
        let id = SpiffeId::new("public", "default", "orders").unwrap();
        let leaf = ca
            .issue(&id, Duration::from_secs(10 * 365 * 24 * 3600))
            .unwrap();
        assert!(leaf.not_after <= ca.not_after());
        let short = ca.issue(&id, Duration::from_secs(3)).unwrap();
        let delay = crate::RenewalSchedule {
            ttl: Duration::from_secs(3),
        }
        .delay(short.issued_at, short.not_after, short.issued_at);
        assert_eq!(
            delay,
            Duration::from_secs(2),
            "renewal counts from issue, not the backdated notBefore"
        );
        let (_, cert) = x509_parser::parse_x509_certificate(&leaf.chain[0]).unwrap();
        let san = cert.subject_alternative_name().unwrap().unwrap();
        let names: Vec<String> = san
            .value
            .general_names
            .iter()
            .map(|n| format!("{n:?}"))
            .collect();
        assert_eq!(names, vec![format!("URI(\"{id}\")")]);
        let eku = cert.extended_key_usage().unwrap().unwrap().value;
        assert!(eku.server_auth && eku.client_auth);
    }
}
