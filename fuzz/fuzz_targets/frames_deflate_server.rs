//! `cargo fuzz run frames_deflate_server`: a server `Connection` that negotiated
//! permessage-deflate, fed arbitrary bytes; see
//! `ws_core::fuzzing::frames_deflate` for what it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ws_core::fuzzing::frames_deflate(
    ws_core::Role::Server,
    data
));
