//! JSON Web Tokens signed with RS256 or ES256, verified offline against a JWKS: the signature
//! (`none`, HMAC and every other algorithm refused), then issuer, audience and time with a
//! leeway. Used for Kubernetes service-account tokens and for bearer tokens on the API.

use std::time::{Duration, SystemTime};

use aws_lc_rs::signature::{self, RsaPublicKeyComponents, UnparsedPublicKey};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use serde_json::Value;

/// The largest token considered.
pub const MAX_TOKEN: usize = 16 * 1024;

/// Why a token was refused.
#[derive(Debug, thiserror::Error)]
pub enum JwtError {
    /// Not a JWT, or a part of it does not decode.
    #[error("malformed token: {0}")]
    Malformed(String),
    /// An algorithm other than RS256 or ES256.
    #[error("algorithm {0:?} is not accepted (RS256 or ES256)")]
    Algorithm(String),
    /// No key of the JWKS has the token's `kid`, or the signature does not verify.
    #[error("the signature does not verify with the issuer's keys")]
    Signature,
    /// Issuer, audience, time or binding wrong.
    #[error("{0}")]
    Claims(String),
    /// The JWKS could not be read.
    #[error("{path}: {what}")]
    Keys {
        /// Where it was read from.
        path: std::path::PathBuf,
        /// What is wrong with it.
        what: String,
    },
}

/// The public keys of a JWKS (`{"keys": [...]}`) that can verify RS256 or ES256.
#[derive(Clone, Debug, Deserialize)]
pub struct KeySet {
    keys: Vec<Jwk>,
}

#[derive(Clone, Debug, Deserialize)]
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

impl KeySet {
    /// Parses a JWKS document; one without keys is refused.
    pub fn parse(bytes: &[u8]) -> Result<Self, String> {
        let set: Self = serde_json::from_slice(bytes).map_err(|e| format!("not a JWKS: {e}"))?;
        if set.keys.is_empty() {
            return Err("holds no key".into());
        }
        Ok(set)
    }

    /// Verifies the signature of `token` and returns its claims.
    pub fn verify(&self, token: &str) -> Result<Value, JwtError> {
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
        let candidates = self
            .keys
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
        decode_json(p)
    }
}

/// Checks `iss`, `aud` (a string or a list), `exp` (required) and `nbf` of verified claims at
/// `now`, with `leeway` either side.
pub fn check_claims(
    claims: &Value,
    issuer: &str,
    audience: &str,
    now: SystemTime,
    leeway: Duration,
) -> Result<(), JwtError> {
    let bad = |m: String| Err(JwtError::Claims(m));
    let iss = claims["iss"].as_str().unwrap_or_default();
    if iss != issuer {
        return bad(format!("issuer {iss:?} is not {issuer:?}"));
    }
    let for_us = match &claims["aud"] {
        Value::String(a) => a == audience,
        Value::Array(v) => v.iter().any(|a| a.as_str() == Some(audience)),
        _ => false,
    };
    if !for_us {
        return bad(format!("the token is not for audience {audience:?}"));
    }
    let now = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let Some(exp) = claims["exp"].as_u64() else {
        return bad("the token has no expiry (exp)".into());
    };
    if now >= exp.saturating_add(leeway.as_secs()) {
        return bad("the token has expired".into());
    }
    if claims["nbf"]
        .as_u64()
        .is_some_and(|nbf| nbf > now + leeway.as_secs())
    {
        return bad("the token is not valid yet".into());
    }
    Ok(())
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
