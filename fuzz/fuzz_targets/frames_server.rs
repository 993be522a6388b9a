//! `cargo fuzz run frames_server`: a server `Connection` fed arbitrary bytes;
//! see `ws_core::fuzzing::frames` for what it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ws_core::fuzzing::frames(ws_core::Role::Server, data));
