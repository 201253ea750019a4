//! Links the `outrider` binary with packed relative relocations (DT_RELR) where the toolchain
//! and the C library support them.
//!
//! A position-independent executable carries a relocation for every pointer in its read-only
//! data. In the classic format that table was 1.8 MB for `outrider`, read by the dynamic loader
//! at every start and then resident; packed, it is about 30 KB. Idle resident memory fell by
//! about 3 MB for `outrider proxy` and a sidecar alike (BENCHMARKS.md). Nothing changes at run
//! time past the loader. glibc loads such binaries from 2.36 on, and the linker makes one that
//! an older glibc refuses at start rather than misloads; so the flag is given only when building
//! for this very machine (no cross build) and its glibc is 2.36 or newer.

use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let env = |k: &str| std::env::var(k).unwrap_or_default();
    let native = env("HOST") == env("TARGET");
    let linux_gnu = env("CARGO_CFG_TARGET_OS") == "linux" && env("CARGO_CFG_TARGET_ENV") == "gnu";
    if native && linux_gnu && glibc_at_least(2, 36) {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
}

/// Whether this machine's glibc (`getconf GNU_LIBC_VERSION`: "glibc 2.36") is at least
/// `major.minor`.
fn glibc_at_least(major: u32, minor: u32) -> bool {
    let Ok(out) = Command::new("getconf").arg("GNU_LIBC_VERSION").output() else {
        return false;
    };
    let text = String::from_utf8_lossy(&out.stdout);
    let Some(version) = text.trim().strip_prefix("glibc ") else {
        return false;
    };
    let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    let found = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    found >= (major, minor)
}
