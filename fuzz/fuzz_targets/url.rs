//! `cargo fuzz run url`: see `ws_core::fuzzing::url` for what it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ws_core::fuzzing::url(data));
