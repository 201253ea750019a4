//! Fuzz target: see `outrider_fuzz::path_acl`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| outrider_fuzz::path_acl(data));
