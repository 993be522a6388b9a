//! ws-core: placeholder, being written.
#![forbid(unsafe_code)]

pub mod handshake;
pub mod url;
pub mod site;
