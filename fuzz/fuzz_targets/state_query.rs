//! Fuzz target: see `outrider_fuzz::state_query`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| outrider_fuzz::state_query(data));
