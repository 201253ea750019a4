//! Kubernetes service-account tokens as the entitlement for a first certificate.
//!
//! A pod's projected token (audience `outrider-ca`, bound to the pod) is a JWT the cluster
//! signed. The CA verifies it offline against the cluster's public keys (its JWKS, from
//! `kubectl get --raw /openid/v1/jwks`, kept in a file and read again when it changes), checks
//! issuer, audience, expiry and that the token is bound to a pod, and entitles the bearer to
//! `(namespace, service account name)`: on Kubernetes an app's id is its service account's name.
//!
//! Only RS256 and ES256 are accepted; `none`, HMAC and every other algorithm are refused.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use aws_lc_rs::signature::{self, RsaPublicKeyComponents, UnparsedPublicKey};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;

use crate::Entitlement;

/// How far clocks may disagree when judging `exp` and `nbf`.
const LEEWAY: Duration = Duration::from_secs(60);
/// The largest token considered.
const MAX_TOKEN: usize = 16 * 1024;

/// Why a service-account token was refused.
#[derive(Debug, thiserror::Error)]
pub enum JwtError {
    /// Not a JWT, or a part of it does not decode.
    #[error("malformed token: {0}")]
    Malformed(String),
    /// An algorithm other than RS256 or ES256.
    #[error("algorithm {0:?} is not accepted (RS256 or ES256)")]
    Algorithm(String),
    /// No key of the JWKS has the token's `kid`, or the signature does not verify.
    #[error("the signature does not verify with the cluster's keys")]
    Signature,
    /// Issuer, audience, time or binding wrong.
    #[error("{0}")]
    Claims(String),
    /// The JWKS file could not be read.
    #[error("{path}: {what}")]
    Keys {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        what: String,
    },
}

/// What the CA accepts: the cluster's keys, its issuer and the audience tokens must name.
pub struct KubernetesTokens {
    jwks: PathBuf,
    issuer: String,
    audience: String,
    keys: Mutex<Option<(FileStamp, Arc<Vec<Jwk>>)>>,
}

type FileStamp = (SystemTime, u64);

#[derive(Deserialize)]
struct Jwks {
    keys: Vec<Jwk>,
}

#[derive(Deserialize, Clone)]
struct Jwk {
    kty: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    n: Option<String>,
    #[serde(default)]
    e: Option<String>,
    #[serde(default)]
    crv: Option<String>,
    #[serde(default)]
    x: Option<String>,
    #[serde(default)]
    y: Option<String>,
}

#[derive(Deserialize)]
struct Header {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
}

#[derive(Deserialize)]
struct Claims {
    iss: String,
    #[serde(default)]
    aud: Audience,
    exp: u64,
    #[serde(default)]
    nbf: Option<u64>,
    #[serde(rename = "kubernetes.io")]
    kubernetes: Option<Bound>,
}

#[derive(Deserialize, Default)]
#[serde(untagged)]
enum Audience {
    #[default]
    None,
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize)]
struct Bound {
    namespace: String,
    serviceaccount: Named,
    pod: Option<Named>,
}

#[derive(Deserialize)]
struct Named {
    name: String,
}

impl KubernetesTokens {
    /// Tokens from `issuer` for `audience`, verified with the keys in the JWKS file `jwks`.
    pub fn new(jwks: &Path, issuer: &str, audience: &str) -> Result<Self, JwtError> {
        let tokens = Self {
            jwks: jwks.to_owned(),
            issuer: issuer.to_owned(),
            audience: audience.to_owned(),
            keys: Mutex::new(None),
        };
        tokens.keys()?;
        Ok(tokens)
    }

    /// Verifies `token` at `now` and returns the identity it entitles to.
    pub fn verify(&self, token: &str, now: SystemTime) -> Result<Entitlement, JwtError> {
        if token.len() > MAX_TOKEN {
            return Err(JwtError::Malformed("too long".into()));
        }
        let mut parts = token.split('.');
        let (Some(h), Some(p), Some(s), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(JwtError::Malformed("not three dot-separated parts".into()));
        };
        let header: Header = decode_json(h)?;
        let sig = decode(s)?;
        let signed = &token.as_bytes()[..h.len() + 1 + p.len()];
        let keys = self.keys()?;
        let candidates = keys
            .iter()
            .filter(|k| header.kid.is_none() || k.kid == header.kid);
        let verified = match header.alg.as_str() {
            "RS256" => candidates
                .filter(|k| k.kty == "RSA")
                .any(|k| rsa_verifies(k, signed, &sig)),
            "ES256" => candidates
                .filter(|k| k.kty == "EC")
                .any(|k| ec_verifies(k, signed, &sig)),
            other => return Err(JwtError::Algorithm(other.to_owned())),
        };
        if !verified {
            return Err(JwtError::Signature);
        }
        let claims: Claims = decode_json(p)?;
        self.judge(claims, now)
    }

    fn judge(&self, c: Claims, now: SystemTime) -> Result<Entitlement, JwtError> {
        let bad = |m: String| Err(JwtError::Claims(m));
        if c.iss != self.issuer {
            return bad(format!("issuer {:?} is not {:?}", c.iss, self.issuer));
        }
        let audiences = match &c.aud {
            Audience::None => vec![],
            Audience::One(a) => vec![a.as_str()],
            Audience::Many(v) => v.iter().map(String::as_str).collect(),
        };
        if !audiences.contains(&self.audience.as_str()) {
            return bad(format!("the token is not for audience {:?}", self.audience));
        }
        let secs = |t: SystemTime| {
            t.duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs())
        };
        if secs(now) >= c.exp.saturating_add(LEEWAY.as_secs()) {
            return bad("the token has expired".into());
        }
        if c.nbf.is_some_and(|nbf| nbf > secs(now) + LEEWAY.as_secs()) {
            return bad("the token is not valid yet".into());
        }
        let Some(bound) = c.kubernetes else {
            return bad("not a service-account token (no kubernetes.io claim)".into());
        };
        if bound.pod.is_none() {
            return bad(
                "the token is not bound to a pod: use a projected service-account token".into(),
            );
        }
        let ok = |s: &str| crate::spiffe::is_segment(s);
        if !ok(&bound.namespace) || !ok(&bound.serviceaccount.name) {
            return bad("namespace or service account is not a valid identity segment".into());
        }
        Ok(Entitlement {
            namespace: bound.namespace,
            app_id: bound.serviceaccount.name,
        })
    }

    /// The keys, read again when the file changed.
    fn keys(&self) -> Result<Arc<Vec<Jwk>>, JwtError> {
        let fail = |what: String| JwtError::Keys {
            path: self.jwks.clone(),
            what,
        };
        let meta = std::fs::metadata(&self.jwks).map_err(|e| fail(e.to_string()))?;
        let stamp = (
            meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
            meta.len(),
        );
        let mut cached = self.keys.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((at, keys)) = cached.as_ref()
            && *at == stamp
        {
            return Ok(keys.clone());
        }
        let text = std::fs::read(&self.jwks).map_err(|e| fail(e.to_string()))?;
        let jwks: Jwks =
            serde_json::from_slice(&text).map_err(|e| fail(format!("not a JWKS: {e}")))?;
        if jwks.keys.is_empty() {
            return Err(fail("holds no key".into()));
        }
        let keys = Arc::new(jwks.keys);
        *cached = Some((stamp, keys.clone()));
        Ok(keys)
    }
}

fn decode(part: &str) -> Result<Vec<u8>, JwtError> {
    URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|e| JwtError::Malformed(e.to_string()))
}

fn decode_json<T: serde::de::DeserializeOwned>(part: &str) -> Result<T, JwtError> {
    serde_json::from_slice(&decode(part)?).map_err(|e| JwtError::Malformed(e.to_string()))
}

fn rsa_verifies(k: &Jwk, msg: &[u8], sig: &[u8]) -> bool {
    let (Some(Ok(n)), Some(Ok(e))) = (k.n.as_deref().map(decode), k.e.as_deref().map(decode))
    else {
        return false;
    };
    RsaPublicKeyComponents { n, e }
        .verify(&signature::RSA_PKCS1_2048_8192_SHA256, msg, sig)
        .is_ok()
}

fn ec_verifies(k: &Jwk, msg: &[u8], sig: &[u8]) -> bool {
    if k.crv.as_deref() != Some("P-256") {
        return false;
    }
    let (Some(Ok(x)), Some(Ok(y))) = (k.x.as_deref().map(decode), k.y.as_deref().map(decode))
    else {
        return false;
    };
    if x.len() != 32 || y.len() != 32 {
        return false;
    }
    let point: Vec<u8> = [&[4u8][..], &x, &y].concat();
    UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, point)
        .verify(msg, sig)
        .is_ok()
}
