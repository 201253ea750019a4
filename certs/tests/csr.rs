//! Certificate signing requests through the public API: what a CA service signs, and what it
//! refuses before signing anything.

use std::time::{Duration, SystemTime};

use outrider_certs::{Credentials, CsrError, DevCa, KeyRequest, SigningRequest, SpiffeId};
use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair, SanType};

fn id(app: &str) -> SpiffeId {
    SpiffeId::new("public", "shop", app).unwrap()
}

fn ca() -> (tempfile::TempDir, DevCa) {
    let dir = tempfile::tempdir().unwrap();
    let ca = DevCa::load_or_create(&dir.path().join("ca")).unwrap();
    (dir, ca)
}

/// A request made with rcgen directly, to say what our own sidecar never would.
fn crafted(key: &KeyPair, edit: impl FnOnce(&mut CertificateParams)) -> String {
    let mut params = CertificateParams::default();
    params.subject_alt_names = vec![SanType::URI(id("orders").to_string().try_into().unwrap())];
    edit(&mut params);
    params.serialize_request(key).unwrap().pem().unwrap()
}

fn p256() -> KeyPair {
    KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap()
}

#[test]
fn a_request_becomes_credentials_without_the_key_leaving() {
    let (_d, ca) = ca();
    let req = KeyRequest::new(&id("orders")).unwrap();
    let parsed = SigningRequest::parse(req.pem().as_bytes()).unwrap();
    assert_eq!(parsed.id(), &id("orders"));
    let signed = ca.sign(&parsed, Duration::from_secs(60)).unwrap();
    assert!(signed.not_after <= SystemTime::now() + Duration::from_secs(61));
    assert_eq!(signed.serial.len(), 32);
    let issued = req.into_issued(signed.chain, SystemTime::now()).unwrap();
    let creds = Credentials::new(id("orders"), &ca.trust_bundle(), issued).unwrap();
    assert_eq!(creds.id(), &id("orders"));
}

#[test]
fn an_answer_for_another_key_is_not_believed() {
    let (_d, ca) = ca();
    let mine = KeyRequest::new(&id("orders")).unwrap();
    let theirs = KeyRequest::new(&id("orders")).unwrap();
    let signed = ca
        .sign(
            &SigningRequest::parse(theirs.pem().as_bytes()).unwrap(),
            Duration::from_secs(60),
        )
        .unwrap();
    let Err(err) = mine.into_issued(signed.chain, SystemTime::now()) else {
        panic!("a certificate for another key was accepted")
    };
    assert!(err.to_string().contains("not for the key"), "{err}");
}

#[test]
fn extra_names_a_ca_request_and_unknown_extensions_are_refused() {
    let key = p256();
    let two_sans = crafted(&key, |p| {
        p.subject_alt_names
            .push(SanType::DnsName("payments.shop".try_into().unwrap()))
    });
    let dns_only = crafted(&key, |p| {
        p.subject_alt_names = vec![SanType::DnsName("orders".try_into().unwrap())]
    });
    let no_san = crafted(&key, |p| p.subject_alt_names.clear());
    let ca_true = crafted(&key, |p| {
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained)
    });
    let not_spiffe = crafted(&key, |p| {
        p.subject_alt_names = vec![SanType::URI("https://evil.example/".try_into().unwrap())]
    });
    let custom = crafted(&key, |p| {
        p.custom_extensions = vec![rcgen::CustomExtension::from_oid_content(
            &[1, 2, 3, 4],
            vec![5, 0],
        )]
    });
    let upper = crafted(&key, |p| {
        p.subject_alt_names = vec![SanType::URI(
            "spiffe://Public/ns/shop/orders".try_into().unwrap(),
        )]
    });
    let encoded = crafted(&key, |p| {
        p.subject_alt_names = vec![SanType::URI(
            "spiffe://public/ns/shop/or%2Fders".try_into().unwrap(),
        )]
    });
    for (what, pem) in [
        ("an upper-case trust domain", upper),
        ("a percent-encoded app id", encoded),
        ("two SANs", two_sans),
        ("a DNS SAN", dns_only),
        ("no SAN", no_san),
        ("CA:true", ca_true),
        ("not a SPIFFE id", not_spiffe),
        ("an unknown extension", custom),
    ] {
        match SigningRequest::parse(pem.as_bytes()) {
            Err(CsrError::Extension(why)) => assert!(!why.is_empty(), "{what}"),
            Err(other) => panic!("{what}: refused for the wrong reason: {other}"),
            Ok(_) => panic!("{what}: accepted"),
        }
    }
}

#[test]
fn keys_other_than_p256_are_refused() {
    let rsa = KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_2048).unwrap();
    let keys = [
        KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap(),
        KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap(),
        rsa,
    ];
    for key in keys {
        let alg = key.algorithm();
        let pem = crafted(&key, |_| {});
        assert!(
            matches!(
                SigningRequest::parse(pem.as_bytes()),
                Err(CsrError::KeyType(_))
            ),
            "{alg:?} accepted"
        );
    }
}

#[test]
fn malformed_and_forged_requests_are_refused() {
    let key = p256();
    let pem = crafted(&key, |_| {});
    let der = rustls_pki_types::pem::PemObject::from_pem_slice(pem.as_bytes())
        .map(|d: rustls_pki_types::CertificateSigningRequestDer<'_>| d.to_vec())
        .unwrap();
    // The signature is the request's last bytes: flipping one breaks proof of possession.
    let mut forged = der.clone();
    *forged.last_mut().unwrap() ^= 1;
    assert!(matches!(
        SigningRequest::parse(&forged),
        Err(CsrError::BadSignature | CsrError::Malformed(_))
    ));
    let mut trailing = der.clone();
    trailing.push(0);
    for (what, input) in [
        ("empty", Vec::new()),
        ("garbage", b"hello".to_vec()),
        (
            "PEM of nothing",
            b"-----BEGIN CERTIFICATE REQUEST-----\n-----END CERTIFICATE REQUEST-----\n".to_vec(),
        ),
        ("truncated", der[..der.len() / 2].to_vec()),
        ("trailing bytes", trailing),
    ] {
        assert!(
            matches!(SigningRequest::parse(&input), Err(CsrError::Malformed(_))),
            "{what}: {:?}",
            SigningRequest::parse(&input).err()
        );
    }
    // DER works as well as PEM.
    assert_eq!(SigningRequest::parse(&der).unwrap().id(), &id("orders"));
}

#[test]
fn request_attributes_other_than_extensions_are_refused() {
    let key = p256();
    let mut params = CertificateParams::default();
    params.subject_alt_names = vec![SanType::URI(id("orders").to_string().try_into().unwrap())];
    // challengePassword (1.2.840.113549.1.9.7), a SET of one PrintableString "secret".
    let attr = rcgen::Attribute {
        oid: &[1, 2, 840, 113549, 1, 9, 7],
        values: vec![0x31, 0x08, 0x13, 0x06, b's', b'e', b'c', b'r', b'e', b't'],
    };
    let pem = params
        .serialize_request_with_attributes(&key, vec![attr])
        .unwrap()
        .pem()
        .unwrap();
    assert!(matches!(
        SigningRequest::parse(pem.as_bytes()),
        Err(CsrError::Extension(_))
    ));
}
