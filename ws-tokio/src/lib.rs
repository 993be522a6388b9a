//! # ws-tokio: WebSockets on tokio
//!
//! A thin binding of the sans-IO protocol core [`ws_core`] to tokio sockets
//! and timers. All protocol decisions (framing, masking, UTF-8, ping/pong,
//! the closing handshake, HTTP routing, broadcast bookkeeping) are made by
//! ws-core; this crate only moves bytes between a socket and a
//! [`ws_core::Connection`] and arms the timers the connection asks for.
//!
//! - [`WebSocketStream`]: one connection, as a
//!   [`Stream`](futures_core::Stream) of messages and a
//!   [`Sink`](futures_sink::Sink) for them, plus inherent `recv`/`send`/
//!   `feed`/`flush`/`close`; [`WebSocketStream::split`] gives independent
//!   read and write halves.
//! - [`accept`], [`connect`] and friends: the opening handshake, bounded by
//!   [`Config::handshake_timeout`]. Clients speak `ws://` and `wss://`
//!   (rustls through tokio-rustls, over a [`MaybeTls`] stream; [`tls`] has
//!   the configurations and the errors), directly or through an HTTP proxy
//!   ([`connect_proxy`], [`proxy`]).
//! - [`Server`]: the demo echo/chat server (one task per connection,
//!   broadcasts through a bounded per-client queue).
//! - [`Client`]: a small convenience client, including an interactive
//!   stdin/stdout mode.
//!
//! Coming from tokio-tungstenite? `docs/migrating-from-tungstenite.md` in
//! the repository maps its API to this crate's, call by call.
//!
//! The server works on both the multi-thread and the `current_thread`
//! runtime. The runtime must have the time driver enabled (the default with
//! `#[tokio::main]`), because connections arm close and keepalive timers.
//!
//! ## Echo server and client
//!
//! ```
//! use ws_tokio::{Message, Server, ServerMode};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> ws_tokio::Result<()> {
//! let server = Server::new("127.0.0.1:0").mode(ServerMode::Echo).start().await?;
//! let url = format!("ws://{}/", server.local_addr());
//!
//! let (mut ws, _response) = ws_tokio::connect(&url).await?;
//! ws.send(Message::text("hello")).await?;
//! let reply = ws.recv().await.expect("a reply")?;
//! assert_eq!(reply, Message::text("hello"));
//!
//! ws.close(ws_tokio::CloseCode::NORMAL, "bye").await?;
//! server.shutdown().await;
//! # Ok(())
//! # }
//! ```
//!
//! ## Your own server: a handler with rooms
//!
//! A [`Handler`] decides each upgrade (authentication goes here), keeps
//! per-connection state of its own type, and is called on open, on each
//! message and on close, synchronously on the connection's own task.
//! Topics (rooms) carry publishes to their subscribers, encoded once, under
//! the server's flow control.
//!
//! ```
//! use std::net::SocketAddr;
//! use ws_tokio::handler::{Handler, Refusal, Request, Socket, Upgrade};
//! use ws_tokio::{Message, Server};
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
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> ws_tokio::Result<()> {
//! let server = Server::with_handler("127.0.0.1:0", Rooms).start().await?;
//! let url = format!("ws://{}/ws/lobby", server.local_addr());
//! let (mut ws, _response) = ws_tokio::connect(&url).await?;
//! ws.send(Message::text("hi")).await?;
//! assert_eq!(ws.recv().await.expect("published back")?, Message::text("hi"));
//! server.publish("lobby", &Message::text("from the app")).await?;
//! assert_eq!(ws.recv().await.expect("published")?, Message::text("from the app"));
//! assert_eq!(server.topic_count("lobby"), 1);
//! ws.close(ws_tokio::CloseCode::NORMAL, "bye").await?;
//! server.shutdown().await;
//! # Ok(())
//! # }
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![warn(unreachable_pub)]

mod client;
mod handshake;
mod maybe_tls;
mod server;
mod split;
mod stream;
#[cfg(feature = "http")]
pub mod upgrade;

/// The `http` crate (cargo feature `http`), whose `Request<()>` [`connect`]
/// takes and whose types the handshake converts to and from.
#[cfg(feature = "http")]
pub use http;

pub use client::Client;
pub use handshake::{
    accept, accept_with, client_handshake, connect, connect_proxy, connect_tls, connect_with,
};
pub use maybe_tls::MaybeTls;
pub use server::{Server, ServerHandle};
pub use split::{Io, SplitIo, WsReader, WsWriter};
pub use stream::{Deadline, WebSocketStream};
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
/// from PEM, TLS errors by kind, and `rustls` itself), and the halves of a
/// split [`MaybeTls`].
pub mod tls {
    pub use crate::maybe_tls::{ReadHalf, WriteHalf};
    pub use ws_core::rt::tls::*;
}

/// HTTP proxies for clients: ws-core's [`ws_core::proxy`] (a [`Proxy`](proxy::Proxy)
/// from a URL or, opt-in, from the environment; the errors), for
/// [`connect_proxy`] and `Client::with_proxy`.
pub mod proxy {
    pub use ws_core::proxy::{Proxy, ProxyError};
}

/// `docs/migrating-from-tungstenite.md`, whose ws-tokio examples run as
/// this crate's doc tests so the guide cannot fall behind the API.
#[cfg(doctest)]
#[doc = include_str!("../../docs/migrating-from-tungstenite.md")]
struct MigrationGuide;

/// The result type of every fallible operation in this crate.
pub type Result<T> = std::result::Result<T, Error>;
