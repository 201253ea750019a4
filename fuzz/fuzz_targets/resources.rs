//! Fuzz target: see `outrider_fuzz::resources`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| outrider_fuzz::resources(data));
