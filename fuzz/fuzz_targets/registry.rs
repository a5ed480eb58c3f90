//! The registry target: see [`ei_fuzz::check_registry`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ei_fuzz::check_registry(data));
