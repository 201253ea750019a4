//! Credentials issued outside the sidecar and handed over as files: a trust bundle, a
//! certificate chain and its private key, in PEM (as cert-manager's csi-driver-spiffe or
//! spiffe-helper write them). The files are read whole, judged together, and installed together
//! or not at all, so a half-written set never replaces a good one.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::ca::not_after_of;
use crate::{Error, IssuedCert, TrustBundle};

/// Where externally issued credentials are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CredentialFiles {
    /// PEM roots peers' certificates must chain to (`--trust-bundle`).
    pub bundle: PathBuf,
    /// PEM certificate chain, leaf first (`--cert-chain`).
    pub chain: PathBuf,
    /// PEM private key of the leaf (`--cert-key`).
    pub key: PathBuf,
}

/// What the three files held at one reading.
pub struct FilesPem {
    bundle: Vec<u8>,
    chain: Vec<u8>,
    key: Vec<u8>,
}

impl FilesPem {
    /// A digest of the three contents, to tell a new reading from one already judged without
    /// keeping the key's bytes around.
    pub fn fingerprint(&self) -> u64 {
        let mut h = std::hash::DefaultHasher::new();
        (&self.bundle, &self.chain, &self.key).hash(&mut h);
        h.finish()
    }
}

impl CredentialFiles {
    /// Reads the three files (an error names the one that failed).
    pub fn read(&self) -> Result<FilesPem, Error> {
        let read = |path: &Path| std::fs::read(path).map_err(|e| Error::io(path, e));
        Ok(FilesPem {
            bundle: read(&self.bundle)?,
            chain: read(&self.chain)?,
            key: read(&self.key)?,
        })
    }

    /// Parses a reading: the bundle's roots, and the chain with its key. Whether they fit
    /// together (the key matches the leaf, the leaf chains to the roots) is judged on install.
    pub(crate) fn parse(&self, pem: &FilesPem) -> Result<(TrustBundle, IssuedCert), Error> {
        let bundle = TrustBundle::from_pem(&self.bundle, &pem.bundle)?;
        let bad_chain = |what: String| Error::Pem {
            path: self.chain.clone(),
            what,
        };
        let chain = CertificateDer::pem_slice_iter(&pem.chain)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| bad_chain(e.to_string()))?;
        let leaf = chain
            .first()
            .ok_or_else(|| bad_chain("no certificate found".into()))?;
        let not_after =
            not_after_of(leaf).ok_or_else(|| bad_chain("unreadable validity".into()))?;
        let key = PrivateKeyDer::from_pem_slice(&pem.key).map_err(|e| Error::Pem {
            path: self.key.clone(),
            what: e.to_string(),
        })?;
        Ok((
            bundle,
            IssuedCert {
                chain,
                key,
                not_after,
                issued_at: SystemTime::now(),
            },
        ))
    }
}
