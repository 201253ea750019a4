//! Kubernetes service-account tokens verified against a JWKS file: what entitles to an
//! identity, and every way a token is refused.

use std::time::{Duration, SystemTime};

use outrider_certs::{JwtError, KubernetesTokens};
use outrider_testkit::jwt::{Cluster, ISSUER};

const AUD: &str = "outrider-ca";
const HOUR: Duration = Duration::from_secs(3600);

fn setup() -> (tempfile::TempDir, Cluster, KubernetesTokens) {
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::new();
    let jwks = dir.path().join("jwks.json");
    std::fs::write(&jwks, cluster.jwks()).unwrap();
    let tokens = KubernetesTokens::new(&jwks, ISSUER, AUD).unwrap();
    (dir, cluster, tokens)
}

#[test]
fn a_projected_token_entitles_to_its_service_account_in_its_namespace() {
    let (_d, cluster, tokens) = setup();
    for alg in ["RS256", "ES256"] {
        let t = cluster.token(alg, &Cluster::pod_claims("shop", "orders", AUD, HOUR));
        let e = tokens.verify(&t, SystemTime::now()).unwrap();
        assert_eq!(
            (e.namespace.as_str(), e.app_id.as_str()),
            ("shop", "orders"),
            "{alg}"
        );
    }
}

#[test]
fn wrong_claims_are_refused() {
    let (_d, cluster, tokens) = setup();
    let now = SystemTime::now();
    let edit = |f: &dyn Fn(&mut serde_json::Value)| {
        let mut c = Cluster::pod_claims("shop", "orders", AUD, HOUR);
        f(&mut c);
        cluster.token("RS256", &c)
    };
    let cases: Vec<(&str, String)> = vec![
        (
            "another audience",
            cluster.token("RS256", &Cluster::pod_claims("shop", "orders", "api", HOUR)),
        ),
        (
            "another issuer",
            edit(&|c| c["iss"] = "https://evil.example".into()),
        ),
        ("expired", edit(&|c| c["exp"] = 1_000.into())),
        (
            "not yet valid",
            edit(&|c| c["nbf"] = (c["nbf"].as_u64().unwrap() + 7200).into()),
        ),
        (
            "not bound to a pod",
            edit(&|c| {
                c["kubernetes.io"].as_object_mut().unwrap().remove("pod");
            }),
        ),
        (
            "no kubernetes claim",
            edit(&|c| {
                c.as_object_mut().unwrap().remove("kubernetes.io");
            }),
        ),
        (
            "a bad namespace",
            edit(&|c| c["kubernetes.io"]["namespace"] = "a/b".into()),
        ),
    ];
    for (what, t) in cases {
        assert!(
            matches!(tokens.verify(&t, now), Err(JwtError::Claims(_))),
            "{what}: {:?}",
            tokens.verify(&t, now).err()
        );
    }
    // An hour later the token has expired (beyond the minute of leeway).
    let t = cluster.token("RS256", &Cluster::pod_claims("shop", "orders", AUD, HOUR));
    assert!(
        tokens
            .verify(&t, now + HOUR + Duration::from_secs(61))
            .is_err()
    );
}

#[test]
fn forged_and_foreign_tokens_are_refused() {
    let (_d, cluster, tokens) = setup();
    let now = SystemTime::now();
    let good = cluster.token("RS256", &Cluster::pod_claims("shop", "orders", AUD, HOUR));
    // Claims swapped for payments' under orders' signature.
    let (h, rest) = good.split_once('.').unwrap();
    let (_, sig) = rest.split_once('.').unwrap();
    let other = cluster.token("RS256", &Cluster::pod_claims("shop", "payments", AUD, HOUR));
    let payload = other.split('.').nth(1).unwrap();
    let swapped = format!("{h}.{payload}.{sig}");
    assert!(matches!(
        tokens.verify(&swapped, now),
        Err(JwtError::Signature)
    ));
    // Another cluster's keys.
    let stranger = Cluster::new().token("ES256", &Cluster::pod_claims("shop", "orders", AUD, HOUR));
    assert!(matches!(
        tokens.verify(&stranger, now),
        Err(JwtError::Signature)
    ));
    // Algorithms other than RS256 and ES256, "none" first.
    for alg in ["none", "HS256", "RS512", "PS256"] {
        let t = cluster.token(alg, &Cluster::pod_claims("shop", "orders", AUD, HOUR));
        assert!(
            matches!(tokens.verify(&t, now), Err(JwtError::Algorithm(_))),
            "{alg}"
        );
    }
    for bad in ["", "a.b", "a.b.c.d", "!!.!!.!!", &"x".repeat(20_000)] {
        assert!(
            matches!(tokens.verify(bad, now), Err(JwtError::Malformed(_))),
            "{bad:.20}"
        );
    }
}

#[test]
fn the_key_file_is_read_again_when_it_changes() {
    let (d, _old, tokens) = setup();
    let rotated = Cluster::new();
    let t = rotated.token("ES256", &Cluster::pod_claims("shop", "orders", AUD, HOUR));
    assert!(tokens.verify(&t, SystemTime::now()).is_err());
    // A different length is enough for the stamp to change even within one mtime tick.
    std::fs::write(d.path().join("jwks.json"), format!("{} ", rotated.jwks())).unwrap();
    assert!(tokens.verify(&t, SystemTime::now()).is_ok());
    std::fs::write(d.path().join("jwks.json"), "{}").unwrap();
    assert!(matches!(
        tokens.verify(&t, SystemTime::now()),
        Err(JwtError::Keys { .. })
    ));
    assert!(KubernetesTokens::new(&d.path().join("missing.json"), ISSUER, AUD).is_err());
}

#[test]
fn audience_as_a_string_kids_and_the_leeway() {
    let (_d, cluster, tokens) = setup();
    let now = SystemTime::now();
    let secs = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let mut c = Cluster::pod_claims("shop", "orders", AUD, HOUR);
    c["aud"] = AUD.into();
    assert!(
        tokens.verify(&cluster.token("RS256", &c), now).is_ok(),
        "aud as one string"
    );
    let c = Cluster::pod_claims("shop", "orders", AUD, HOUR);
    assert!(
        tokens
            .verify(&cluster.token_with_kid("ES256", None, &c), now)
            .is_ok(),
        "no kid: every EC key is tried"
    );
    assert!(
        matches!(
            tokens.verify(&cluster.token_with_kid("RS256", Some("rsa-2"), &c), now),
            Err(JwtError::Signature)
        ),
        "a kid of no key"
    );
    for (ago, ok) in [(30, true), (61, false)] {
        let mut c = Cluster::pod_claims("shop", "orders", AUD, HOUR);
        c["exp"] = (secs - ago).into();
        assert_eq!(
            tokens.verify(&cluster.token("RS256", &c), now).is_ok(),
            ok,
            "expired {ago}s ago"
        );
    }
}
