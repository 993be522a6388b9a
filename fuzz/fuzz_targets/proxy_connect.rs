//! `cargo fuzz run proxy_connect`: see `ws_core::fuzzing::proxy_connect` for what it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ws_core::fuzzing::proxy_connect(data));
