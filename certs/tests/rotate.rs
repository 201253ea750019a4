//! Rotating a CA directory: add, switch, retire, through the public API, for a root and for an
//! intermediate under offline roots.

use std::path::Path;
use std::time::Duration;

use outrider_certs::{
    Credentials, DevCa, NewAuthority, SpiffeId, TrustBundle, create_authority, rotate_add,
    rotate_retire, rotate_switch,
};

const YEAR: Duration = Duration::from_secs(365 * 24 * 3600);

fn id() -> SpiffeId {
    SpiffeId::new("public", "default", "orders").unwrap()
}

fn bundle(dir: &Path) -> TrustBundle {
    TrustBundle::from_pem_file(&dir.join("bundle.pem")).unwrap()
}

/// Whether a peer trusting `bundle` accepts a certificate `ca` issues.
fn accepted(ca: &DevCa, bundle: &TrustBundle) -> bool {
    Credentials::new(
        id(),
        bundle,
        ca.issue(&id(), Duration::from_secs(60)).unwrap(),
    )
    .is_ok()
}

fn root(dir: &Path) {
    create_authority(&NewAuthority {
        dir,
        lifetime: YEAR,
        root: None,
    })
    .unwrap();
}

#[test]
fn add_switch_retire_keeps_peers_of_both_roots_talking_until_the_old_one_goes() {
    let home = tempfile::tempdir().unwrap();
    let dir = home.path().join("ca");
    root(&dir);
    let old = DevCa::load(&dir).unwrap();

    let (created, roots) = rotate_add(&dir, YEAR, None).unwrap();
    assert_eq!(roots, 2);
    assert!(created.dir.ends_with("next"));
    assert!(
        accepted(&DevCa::load(&dir).unwrap(), &old.trust_bundle()),
        "the old root still issues"
    );
    let err = rotate_add(&dir, YEAR, None).unwrap_err().to_string();
    assert!(err.contains("under way"), "{err}");
    assert!(
        rotate_retire(&dir, Duration::ZERO)
            .unwrap_err()
            .to_string()
            .contains("under way")
    );

    rotate_switch(&dir).unwrap();
    let new = DevCa::load(&dir).unwrap();
    assert_ne!(new.trust_bundle().certs().len(), 0);
    assert!(!dir.join("next").exists() && dir.join("previous/ca.key").is_file());
    // During the overlap both roots are trusted: peers of either accept each other.
    let overlap = bundle(&dir);
    assert_eq!(overlap.certs().len(), 2);
    assert!(accepted(&old, &overlap) && accepted(&new, &overlap));

    let err = rotate_retire(&dir, Duration::from_secs(3600))
        .unwrap_err()
        .to_string();
    assert!(err.contains("switched 0s ago"), "{err}");
    assert_eq!(rotate_retire(&dir, Duration::ZERO).unwrap(), 1);
    let after = bundle(&dir);
    assert_eq!(after.certs().len(), 1);
    assert!(accepted(&new, &after), "the new root stays");
    assert!(
        !accepted(&old, &after),
        "a certificate from the retired root is refused"
    );
    assert!(!dir.join("previous").exists() && !dir.join("switched-at").exists());
    assert!(
        rotate_switch(&dir)
            .unwrap_err()
            .to_string()
            .contains("no rotation")
    );
}

#[test]
fn an_intermediate_moves_to_a_new_offline_root() {
    let home = tempfile::tempdir().unwrap();
    let (r1, r2, dir) = (
        home.path().join("r1"),
        home.path().join("r2"),
        home.path().join("int"),
    );
    root(&r1);
    root(&r2);
    let offline = |r: &Path| (r.join("ca.crt"), r.join("ca.key"));
    let (c1, k1) = offline(&r1);
    create_authority(&NewAuthority {
        dir: &dir,
        lifetime: YEAR,
        root: Some((&c1, &k1)),
    })
    .unwrap();
    let first = DevCa::load(&dir).unwrap();
    let (c2, k2) = offline(&r2);
    let (created, roots) = rotate_add(&dir, YEAR, Some((&c2, &k2))).unwrap();
    assert!(created.intermediate);
    assert_eq!(roots, 2);
    rotate_switch(&dir).unwrap();
    let second = DevCa::load(&dir).unwrap();
    assert!(accepted(&first, &bundle(&dir)) && accepted(&second, &bundle(&dir)));
    assert_eq!(rotate_retire(&dir, Duration::ZERO).unwrap(), 1);
    assert_eq!(
        bundle(&dir),
        TrustBundle::from_pem_file(&c2).unwrap(),
        "only the new root is left"
    );
    assert!(!accepted(&first, &bundle(&dir)));
}

#[test]
fn a_key_and_certificate_that_do_not_pair_do_not_load() {
    let home = tempfile::tempdir().unwrap();
    let dir = home.path().join("ca");
    root(&dir);
    rotate_add(&dir, YEAR, None).unwrap();
    // What a reader sees between the two renames of a switch.
    std::fs::copy(dir.join("next/ca.key"), dir.join("ca.key")).unwrap();
    let err = DevCa::load(&dir)
        .err()
        .expect("a mismatched pair loaded")
        .to_string();
    assert!(err.contains("not the key of"), "{err}");
}

#[test]
fn a_switch_cut_off_between_its_renames_is_finished_by_running_it_again() {
    let home = tempfile::tempdir().unwrap();
    let dir = home.path().join("ca");
    root(&dir);
    rotate_add(&dir, YEAR, None).unwrap();
    // The key moved, the certificate not yet: the directory does not load.
    std::fs::rename(dir.join("next/ca.key"), dir.join("ca.key")).unwrap();
    assert!(DevCa::load(&dir).is_err());
    rotate_switch(&dir).unwrap();
    let ca = DevCa::load(&dir).unwrap();
    assert!(accepted(&ca, &bundle(&dir)));
    assert!(!dir.join("next").exists());
    std::fs::write(dir.join("switched-at"), "soon").unwrap();
    let err = rotate_retire(&dir, Duration::ZERO).unwrap_err().to_string();
    assert!(err.contains("unreadable"), "{err}");
}

#[test]
fn a_switch_cut_off_after_its_renames_is_finished_too() {
    let home = tempfile::tempdir().unwrap();
    let dir = home.path().join("ca");
    root(&dir);
    rotate_add(&dir, YEAR, None).unwrap();
    // Both files moved; next/ (with its bundle.pem) not removed yet.
    for f in ["ca.key", "ca.crt"] {
        std::fs::rename(dir.join("next").join(f), dir.join(f)).unwrap();
    }
    rotate_switch(&dir).unwrap();
    assert!(!dir.join("next").exists());
    assert!(dir.join("switched-at").exists());
    let err = rotate_retire(&dir, Duration::from_secs(3600))
        .unwrap_err()
        .to_string();
    assert!(err.contains("switched 0s ago"), "{err}");
    rotate_add(&dir, YEAR, None).unwrap();
}
