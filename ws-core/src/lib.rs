//! # ws-core: a sans-IO WebSocket (RFC 6455) protocol core
//!
//! ws-core is the protocol as a pure state machine: it consumes bytes and
//! produces messages and bytes to send. It opens no sockets, spawns nothing,
//! and reads no clock (time is passed in), so the same code runs under tokio,
//! async-std, smol, plain threads, or your own event loop, and every rule is
//! unit-testable without a network.
//!
//! The crate has three layers, one above the other (`docs/architecture.md`
//! has the picture):
//!
//! 1. **The protocol** (the modules at the root; pure: no clock, no I/O, no
//!    futures, no threads):
//!    - [`handshake`]: the opening handshake, both roles
//!      ([`handshake::ClientHandshake`], [`handshake::ServerHandshake`]), as
//!      its own layer.
//!    - [`Connection`]: framing, masking, fragmentation, UTF-8 validation,
//!      ping/pong, the closing handshake, limits and timers;
//!      [`Connection::split`] into a [`Receiver`] and a [`Sender`] for two
//!      tasks.
//!    - [`frame`], [`mask`], [`utf8`], [`close`], [`message`]: the wire
//!      pieces, usable on their own; [`deflate`]: permessage-deflate
//!      (RFC 7692), negotiated by the handshake and run by the connection; [`url`]: `ws://` URLs; [`config`],
//!      [`error`].
//!    - [`proxy`]: HTTP proxies for clients (the `CONNECT` exchange, and
//!      the opt-in choice of a proxy from the environment).
//! 2. **Adapter support**, [`rt`] (cargo feature `rt`): the loops every
//!    runtime adapter runs, written once (the stream driver, the split
//!    halves, the handoff cell).
//! 3. **The demo server**, [`server`] (cargo feature `server`): routing and
//!    the test page, the per-connection session, the broadcast hub and its
//!    flow control.
//!
//! With `default-features = false` only the protocol is compiled (and its
//! dependencies: `bytes`, `httparse`, `sha1`, `base64`, `simdutf8`, ...).
//!
//! ## A client and a server in memory
//!
//! ```
//! use ws_core::handshake::{Accept, ClientHandshake, ClientRequest, ServerHandshake};
//! use ws_core::{Config, Connection, Message, Role};
//!
//! // Opening handshake.
//! let (mut client_hs, request) = ClientHandshake::new(&ClientRequest::new("example.com", 80, "/chat"));
//! let mut server_hs = ServerHandshake::new();
//! let req = server_hs.feed(&request).unwrap().expect("complete request");
//! assert_eq!(req.path(), "/chat");
//! let response = req.accept(&Accept::new()).unwrap();
//! client_hs.feed(&response).unwrap().expect("complete response");
//!
//! // Framing, with any bytes that followed the handshakes.
//! let mut client = Connection::with_buffered(Role::Client, Config::default(), client_hs.take_remaining());
//! let mut server = Connection::with_buffered(Role::Server, Config::default(), server_hs.take_remaining());
//!
//! client.send_text("hello").unwrap();
//! server.handle_bytes(&client.take_transmit());
//! assert_eq!(server.poll_message().unwrap(), Some(Message::text("hello")));
//!
//! server.send_binary(b"\x00\x01").unwrap();
//! client.handle_bytes(&server.take_transmit());
//! assert_eq!(client.poll_message().unwrap(), Some(Message::binary(&b"\x00\x01"[..])));
//! ```
// Audited exceptions, each with a SAFETY comment: `Utf8Bytes::as_str`, and
// the `Handoff` cell's `Sync` impl and guard.
#![deny(unsafe_code)]
#![warn(missing_docs)]
#![warn(unreachable_pub)]

// Layer 1, the protocol: pure (no clock, no I/O, no futures).
pub mod close;
pub mod config;
pub mod connection;
pub mod deflate;
pub mod error;
pub mod frame;
pub mod handshake;
pub mod mask;
pub mod message;
pub mod proxy;
pub mod url;
pub mod utf8;

// The fuzz targets' checks, shared with the corpus replay (not a stable API).
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;

// Layer 2, runtime-independent adapter support.
#[cfg(feature = "rt")]
pub mod rt;

// Layer 3, the demo server's application logic.
#[cfg(feature = "server")]
pub mod server;
// The server engine's spans and events (cargo feature `tracing`; free
// without it).
#[cfg(feature = "server")]
pub mod trace;

pub use bytes::{Bytes, BytesMut};
pub use close::{CloseCode, CloseFrame};
pub use config::{Config, Role};
pub use connection::split::{self, Receiver, Sender};
pub use connection::{Connection, PreparedMessage, State, Transmit};
pub use deflate::{DeflateConfig, DeflateParams};
pub use error::{Error, ProtocolError, TimeoutKind};
pub use message::{Message, Utf8Bytes};
