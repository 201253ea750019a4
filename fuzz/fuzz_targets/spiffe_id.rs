//! Fuzz target: see `outrider_fuzz::spiffe_id`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| outrider_fuzz::spiffe_id(data));
