//! `cargo fuzz run session`: see `ws_core::fuzzing::session` for what it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ws_core::fuzzing::session(data));
