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

use serde::Deserialize;

use crate::Entitlement;
use crate::jwt::{JwtError, KeySet, check_claims};

/// How far clocks may disagree when judging `exp` and `nbf`.
const LEEWAY: Duration = Duration::from_secs(60);

/// What the CA accepts: the cluster's keys, its issuer and the audience tokens must name.
pub struct KubernetesTokens {
    jwks: PathBuf,
    issuer: String,
    audience: String,
    keys: Mutex<Option<(FileStamp, Arc<KeySet>)>>,
}

type FileStamp = (SystemTime, u64);

/// The claim the pod binding is read from (issuer, audience and time are checked before).
#[derive(Deserialize)]
struct Claims {
    #[serde(rename = "kubernetes.io")]
    kubernetes: Option<Bound>,
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
        let claims = self.keys()?.verify(token)?;
        check_claims(&claims, &self.issuer, &self.audience, now, LEEWAY)?;
        let claims: Claims =
            serde_json::from_value(claims).map_err(|e| JwtError::Malformed(e.to_string()))?;
        self.judge(claims)
    }

    /// The pod binding, once signature, issuer, audience and time were checked.
    fn judge(&self, c: Claims) -> Result<Entitlement, JwtError> {
        let bad = |m: String| Err(JwtError::Claims(m));
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
    fn keys(&self) -> Result<Arc<KeySet>, JwtError> {
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
        let keys = Arc::new(KeySet::parse(&text).map_err(fail)?);
        *cached = Some((stamp, keys.clone()));
        Ok(keys)
    }
}
