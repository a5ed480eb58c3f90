//! The reply target: see [`ei_fuzz::check_reply`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ei_fuzz::check_reply(data));
