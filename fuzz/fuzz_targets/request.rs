//! The request target: see [`ei_fuzz::check_request`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ei_fuzz::check_request(data));
