//! # ws-blocking: RFC 6455 WebSockets on `std::net` and plain threads
//!
//! The blocking runtime adapter for [`ws_core`]: no async runtime, no
//! executor, just `Read`/`Write` and one or two threads per connection. All
//! protocol logic (framing, the handshakes, HTTP routing, the server's
//! per-client behaviour and the broadcast registry) lives in `ws-core`; this
//! crate only moves bytes and owns the clocks, with the same public surface as
//! `ws-tokio` and `ws-async-std` minus `async`/`.await` (see
//! `docs/adapters.md`).
//!
//! - [`WebSocketStream`]: one connection over any `Read + Write` transport,
//!   with [`split`](WebSocketStream::split) into a reader and a writer half
//!   for sockets, so two threads can read and write at once.
//! - [`accept`], [`connect`] and friends: the opening handshake, bounded by
//!   [`Config::get_handshake_timeout`]. Clients speak `ws://` and `wss://`
//!   (rustls over a [`MaybeTls`] stream; [`tls`] has the configurations
//!   and the errors).
//! - [`Server`]: a server (threads per connection) running your
//!   [`Handler`] (see [`handler`]), or the demo's chat and echo.
//! - [`Client`]: a convenience client, including an interactive stdin mode.
//!
//! ## Timers without a runtime
//!
//! ws-core tells the adapter when its next deadline is
//! ([`ws_core::Connection::poll_timeout`]). Before every blocking read this
//! crate sets the transport's read timeout to the time left until that
//! deadline, through the [`SetReadTimeout`] trait (implemented for
//! `TcpStream` and `UnixStream`), and fires the timers when the read times
//! out. A transport without timeouts can implement it as a no-op (or be
//! wrapped in [`NoReadTimeout`]); its timers then only fire when data arrives.
//!
//! ```no_run
//! use ws_blocking::{connect, Message};
//!
//! let (mut ws, _response) = connect("ws://127.0.0.1:8080/ws")?;
//! ws.send(Message::text("hello"))?;
//! while let Ok(msg) = ws.read() {
//!     println!("{msg:?}");
//! }
//! # Ok::<(), ws_blocking::Error>(())
//! ```
//!
//! ## Your own server: a handler with rooms
//!
//! A [`Handler`] decides each upgrade (authentication goes here), keeps
//! per-connection state of its own type, and is called on open, on each
//! message and on close, synchronously on the connection's own thread.
//! Topics (rooms) carry publishes to their subscribers, encoded once, under
//! the server's flow control.
//!
//! ```
//! use std::net::SocketAddr;
//! use ws_blocking::handler::{Handler, Refusal, Request, Socket, Upgrade};
//! use ws_blocking::{Message, Server};
//!
//! /// `/ws/NAME` joins room NAME; a message reaches everyone in the room.
//! struct Rooms;
//!
//! impl Handler for Rooms {
//!     type State = String;
//!
//!     fn on_upgrade(&self, req: &Request, _: SocketAddr) -> Result<Upgrade<String>, Refusal> {
//!         match req.path().strip_prefix("/ws/") {
//!             Some(room) if !room.is_empty() => Ok(Upgrade::new(room.to_owned())),
//!             _ => Err(Refusal::not_found()),
//!         }
//!     }
//!
//!     fn on_open(&self, ws: &mut Socket<'_>, room: &mut String) {
//!         ws.subscribe(room);
//!     }
//!
//!     fn on_message(&self, ws: &mut Socket<'_>, room: &mut String, msg: Message) {
//!         let _ = ws.publish(room, &msg);
//!     }
//! }
//!
//! let server = Server::with_handler("127.0.0.1:0", Rooms).start()?;
//! let url = format!("ws://{}/ws/lobby", server.local_addr());
//! let (mut ws, _response) = ws_blocking::connect(&url)?;
//! ws.send(Message::text("hi"))?;
//! assert_eq!(ws.recv().expect("published back")?, Message::text("hi"));
//! server.publish("lobby", &Message::text("from the app"))?;
//! assert_eq!(ws.recv().expect("published")?, Message::text("from the app"));
//! assert_eq!(server.topic_count("lobby"), 1);
//! ws.close(ws_blocking::CloseCode::NORMAL, "bye")?;
//! server.shutdown();
//! # Ok::<(), ws_blocking::Error>(())
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![warn(unreachable_pub)]

mod client;
mod handshake;
/// The `http` crate (cargo feature `http`), whose `Request<()>` the
/// `connect` functions take and whose types the handshake converts to and
/// from.
#[cfg(feature = "http")]
pub use http;
mod server;
mod stream;

pub use client::Client;
pub use handshake::{
    MaybeTls, accept, accept_with, client_handshake, connect, connect_proxy, connect_tls,
    connect_with,
};
pub use server::{Server, ServerHandle};
pub use stream::{
    Messages, NoReadTimeout, SetReadTimeout, WebSocket, WebSocketStream, WsReader, WsWriter,
};
pub use ws_core::handshake::IntoClientRequest;
pub use ws_core::rt::reconnect::Reconnect;
pub use ws_core::server::hub::{BroadcastReport, ClientId, FlowControl, HubStats};
pub use ws_core::server::{ConnectionHandle, Handler, Registry};

/// What a [`Handler`] works with: the upgrade request, the answers to it,
/// the connection inside a callback, and the demo's handlers.
pub mod handler {
    pub use ws_core::handshake::Request;
    pub use ws_core::server::demo::{Chat, Echo};
    pub use ws_core::server::{ClientId, ConnectionHandle, Handler, Refusal, Socket, Upgrade};
}
pub use ws_core::server::site::ServerMode;
pub use ws_core::{Bytes, CloseCode, CloseFrame, Config, Error, Message, Role, Utf8Bytes};

/// TLS for `wss://` clients: ws-core's [`ws_core::rt::tls`] (rustls
/// configurations built with the ring provider, the default roots, roots
/// from PEM, TLS errors by kind, and `rustls` itself), and the
/// [`TlsStream`](tls::TlsStream) a [`MaybeTls`] holds for `wss://`.
pub mod tls {
    pub use crate::handshake::TlsStream;
    pub use ws_core::rt::tls::*;
}

/// HTTP proxies for clients: ws-core's [`ws_core::proxy`] (a [`Proxy`](proxy::Proxy)
/// from a URL or, opt-in, from the environment; the errors), for
/// [`connect_proxy`] and [`Client::with_proxy`].
pub mod proxy {
    pub use ws_core::proxy::{Proxy, ProxyError};
}

/// The result type of every fallible operation in this crate.
pub type Result<T> = std::result::Result<T, Error>;
