//! permessage-deflate (RFC 7692): compressed messages, negotiated in the
//! opening handshake.
//!
//! - [`DeflateConfig`] is the policy: off by default; on, it says what a
//!   client offers and what a server accepts, the compression level, and the
//!   size below which messages go uncompressed. It lives in
//!   [`Config::deflate`](crate::Config::deflate), so every adapter takes it
//!   the same way.
//! - [`DeflateParams`] is what one handshake agreed on. The handshake puts it
//!   in the connection's [`Config`](crate::Config)
//!   ([`Request::accept_with_config`](crate::handshake::Request::accept_with_config),
//!   [`Response::deflate`](crate::handshake::Response::deflate)), and the
//!   [`Connection`](crate::Connection) compresses and inflates accordingly.
//!
//! The sub-modules keep one concept each: [`negotiate`] parses and answers
//! the `Sec-WebSocket-Extensions` header; `codec` runs zlib (the pure-Rust
//! zlib-rs backend of `flate2`, which takes window bits).

pub(crate) mod codec;
pub mod negotiate;

pub use negotiate::{DeflateConfig, DeflateParams};
