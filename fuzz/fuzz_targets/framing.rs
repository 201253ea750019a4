//! Fuzz target: see `outrider_fuzz::framing`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| outrider_fuzz::framing(data));
