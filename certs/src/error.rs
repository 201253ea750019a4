//! Errors of certificate handling.

use std::path::PathBuf;

/// Why a certificate operation failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// A PEM file held no usable item of the expected kind.
    #[error("{path}: {what}")]
    Pem {
        /// The file that was read.
        path: PathBuf,
        /// What was wrong with it.
        what: String,
    },
    /// Issuing a certificate failed.
    #[error("issuing a certificate failed: {0}")]
    Issue(#[from] rcgen::Error),
    /// A certificate does not carry a usable SPIFFE id.
    #[error("certificate has no usable SPIFFE id: {0}")]
    Identity(String),
    /// rustls refused a configuration.
    #[error("TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }
}
