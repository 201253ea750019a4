//! A stand-in for a Kubernetes cluster's token signer: RSA and EC keys, their JWKS, and
//! projected service-account tokens (JWTs) signed with them, for tests of the CA service.

use std::time::{Duration, SystemTime};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{self, EcdsaKeyPair, KeyPair, RsaKeyPair, RsaPublicKeyComponents};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// The issuer tokens carry, as a cluster's API server names itself.
pub const ISSUER: &str = "https://kubernetes.default.svc.cluster.local";

/// A cluster's signing keys.
pub struct Cluster {
    rsa: RsaKeyPair,
    ec: EcdsaKeyPair,
}

impl Default for Cluster {
    fn default() -> Self {
        Self::new()
    }
}

impl Cluster {
    /// New keys: RSA 2048 (kid `rsa-1`) and P-256 (kid `ec-1`).
    pub fn new() -> Self {
        Self {
            rsa: RsaKeyPair::generate(KeySize::Rsa2048).expect("RSA key"),
            ec: EcdsaKeyPair::generate(&signature::ECDSA_P256_SHA256_FIXED_SIGNING)
                .expect("EC key"),
        }
    }

    /// The public keys as a JWKS document.
    pub fn jwks(&self) -> String {
        let b64 = |b: &[u8]| URL_SAFE_NO_PAD.encode(b);
        let rsa: RsaPublicKeyComponents<Vec<u8>> = self.rsa.public_key().into();
        let point = self.ec.public_key().as_ref();
        serde_json::json!({"keys": [
            {"kty": "RSA", "kid": "rsa-1", "alg": "RS256", "use": "sig", "n": b64(&rsa.n), "e": b64(&rsa.e)},
            {"kty": "EC", "kid": "ec-1", "alg": "ES256", "use": "sig", "crv": "P-256",
             "x": b64(&point[1..33]), "y": b64(&point[33..65])},
        ]})
        .to_string()
    }

    /// A JWT of `claims`, signed with `alg` (`RS256` or `ES256`; anything else is sent with
    /// the RSA signature, to test refusal).
    pub fn token(&self, alg: &str, claims: &serde_json::Value) -> String {
        let kid = if alg == "ES256" { "ec-1" } else { "rsa-1" };
        self.token_with_kid(alg, Some(kid), claims)
    }

    /// The same with the header's `kid` given (or left out).
    pub fn token_with_kid(
        &self,
        alg: &str,
        kid: Option<&str>,
        claims: &serde_json::Value,
    ) -> String {
        let mut header = serde_json::json!({"alg": alg, "typ": "JWT"});
        if let Some(kid) = kid {
            header["kid"] = kid.into();
        }
        let signed = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let rng = SystemRandom::new();
        let sig = if alg == "ES256" {
            self.ec
                .sign(&rng, signed.as_bytes())
                .expect("EC signature")
                .as_ref()
                .to_vec()
        } else {
            let mut sig = vec![0u8; self.rsa.public_modulus_len()];
            self.rsa
                .sign(
                    &signature::RSA_PKCS1_SHA256,
                    &rng,
                    signed.as_bytes(),
                    &mut sig,
                )
                .expect("RSA signature");
            sig
        };
        format!("{signed}.{}", URL_SAFE_NO_PAD.encode(sig))
    }

    /// The claims of a projected token for a pod of `service_account` in `namespace`, for
    /// `audience`, valid for `ttl` from now.
    pub fn pod_claims(
        namespace: &str,
        service_account: &str,
        audience: &str,
        ttl: Duration,
    ) -> serde_json::Value {
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        serde_json::json!({
            "iss": ISSUER,
            "aud": [audience],
            "sub": format!("system:serviceaccount:{namespace}:{service_account}"),
            "iat": now,
            "nbf": now,
            "exp": now + ttl.as_secs(),
            "kubernetes.io": {
                "namespace": namespace,
                "pod": {"name": format!("{service_account}-7d4b9c-x2x9q"), "uid": "5b1e7d2c-0000-4000-8000-000000000001"},
                "serviceaccount": {"name": service_account, "uid": "5b1e7d2c-0000-4000-8000-000000000002"},
            },
        })
    }
}
