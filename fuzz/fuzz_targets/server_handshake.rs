//! `cargo fuzz run server_handshake`: see `ws_core::fuzzing::server_handshake` for what it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ws_core::fuzzing::server_handshake(data));
