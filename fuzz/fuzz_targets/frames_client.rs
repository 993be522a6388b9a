//! `cargo fuzz run frames_client`: a client `Connection` fed arbitrary bytes;
//! see `ws_core::fuzzing::frames` for what it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ws_core::fuzzing::frames(ws_core::Role::Client, data));
