//! # ws-async-std: ws-core on futures-io, for async-std and smol
//!
//! A thin adapter that binds the sans-IO protocol in [`ws_core`] to any
//! transport implementing the `futures-io` traits ([`futures_io::AsyncRead`] +
//! [`futures_io::AsyncWrite`]), so the same [`WebSocketStream`] works with
//! async-std's and smol's sockets (and any other futures-io transport).
//! All protocol logic (framing, the closing handshake, HTTP routing, the
//! per-client server logic and the [`Handler`] API, broadcast and topic
//! bookkeeping) lives in ws-core; this crate only moves bytes, owns timers,
//! and spawns tasks.
//!
//! - The crate root's [`Server`], [`ServerHandle`], [`Client`], [`connect`],
//!   [`connect_with`], [`connect_tls`] and [`connect_proxy`] run on
//!   **async-std** (cargo feature `async-std`). Clients speak `ws://` and
//!   `wss://` (rustls through futures-rustls, see [`tls`]), directly or
//!   through an HTTP proxy ([`proxy`]).
//! - The [`smol`] module has the same surface running on
//!   **smol** (cargo feature `smol`). async-std is deprecated upstream in
//!   favour of smol; both features are on by default.
//! - [`WebSocketStream`], [`accept`], [`accept_with`] and
//!   [`client_handshake`] are runtime-neutral and always available.
//!
//! Timers use [`async_io::Timer`] and the server's sockets
//! [`async_net`], which run under either executor; the only runtime-specific
//! part is which executor spawns the server's tasks and which `TcpStream`
//! type [`connect`] returns.
//!
//! ```no_run
//! # #[cfg(feature = "async-std")]
//! # async_std::task::block_on(async {
//! use ws_async_std::{connect, Message};
//!
//! let (mut ws, _response) = connect("ws://127.0.0.1:9001/ws").await?;
//! ws.send(Message::text("hello")).await?;
//! if let Some(msg) = ws.recv().await {
//!     println!("{:?}", msg?);
//! }
//! ws.close(ws_async_std::CloseCode::NORMAL, "bye").await?;
//! # Ok::<(), ws_async_std::Error>(())
//! # });
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
//! use ws_async_std::handler::{Handler, Refusal, Request, Socket, Upgrade};
//! use ws_async_std::{Message, Server};
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
//! # #[cfg(feature = "async-std")]
//! # async_std::task::block_on(async {
//! let server = Server::with_handler("127.0.0.1:0", Rooms).start().await?;
//! let url = format!("ws://{}/ws/lobby", server.local_addr());
//! let (mut ws, _response) = ws_async_std::connect(&url).await?;
//! ws.send(Message::text("hi")).await?;
//! assert_eq!(ws.recv().await.expect("published back")?, Message::text("hi"));
//! server.publish("lobby", &Message::text("from the app")).await?;
//! assert_eq!(ws.recv().await.expect("published")?, Message::text("from the app"));
//! assert_eq!(server.topic_count("lobby"), 1);
//! ws.close(ws_async_std::CloseCode::NORMAL, "bye").await?;
//! server.shutdown().await;
//! # Ok::<(), ws_async_std::Error>(())
//! # }).unwrap();
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![warn(unreachable_pub)]

#[cfg(any(feature = "async-std", feature = "smol"))]
mod client;
mod handshake;
/// The `http` crate (cargo feature `http`), whose `Request<()>` the
/// `connect` functions take and whose types the handshake converts to and
/// from.
#[cfg(feature = "http")]
pub use http;
mod io;
mod maybe_tls;
#[cfg(any(feature = "async-std", feature = "smol"))]
mod runtime;
#[cfg(any(feature = "async-std", feature = "smol"))]
mod server;
mod split;
mod stream;

pub use handshake::{accept, accept_with, client_handshake};
pub use maybe_tls::MaybeTls;
pub use split::{Alarm, Io, SplitIo, WsReader, WsWriter};
pub use stream::WebSocketStream;
pub use ws_core::handshake::IntoClientRequest;
pub use ws_core::rt::reconnect::Reconnect;
pub use ws_core::server::hub::{BroadcastReport, ClientId, FlowControl, HubStats};
pub use ws_core::server::{ConnectionHandle, Handler, Registry};

/// What a [`Handler`] works with: the upgrade request, the answers to it,
/// the connection inside a callback, and the demo's handlers. The same for
/// the async-std and the smol `Server`.
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
/// `connect_proxy` and `Client::with_proxy` on async-std and smol.
pub mod proxy {
    pub use ws_core::proxy::{Proxy, ProxyError};
}

/// The result type of every fallible operation in this crate.
pub type Result<T> = std::result::Result<T, Error>;

#[cfg(feature = "async-std")]
mod async_std_api {
    use crate::ServerMode;
    use crate::runtime::AsyncStd;

    /// The WebSocket server on async-std, a builder: the demo's echo or chat
    /// (`Server::new`, `mode`) or your own [`Handler`](crate::Handler)
    /// (`Server::with_handler`). Nothing is bound until `start` or `run`.
    ///
    /// ```no_run
    /// use std::net::SocketAddr;
    /// use ws_async_std::handler::{Handler, Refusal, Request, Socket, Upgrade};
    /// use ws_async_std::{Message, Server};
    ///
    /// /// Rooms named by the path: `/ws/NAME`.
    /// struct Rooms;
    ///
    /// impl Handler for Rooms {
    ///     type State = String;
    ///
    ///     fn on_upgrade(&self, req: &Request, _peer: SocketAddr) -> Result<Upgrade<String>, Refusal> {
    ///         match req.path().strip_prefix("/ws/") {
    ///             Some(room) if !room.is_empty() => Ok(Upgrade::new(room.to_owned())),
    ///             _ => Err(Refusal::not_found()),
    ///         }
    ///     }
    ///
    ///     fn on_open(&self, ws: &mut Socket<'_>, room: &mut String) {
    ///         ws.subscribe(room);
    ///     }
    ///
    ///     fn on_message(&self, ws: &mut Socket<'_>, room: &mut String, msg: Message) {
    ///         let _ = ws.publish(room, &msg);
    ///     }
    /// }
    ///
    /// # async fn run() -> std::io::Result<()> {
    /// Server::with_handler("127.0.0.1:8080", Rooms).run().await
    /// # }
    /// ```
    pub type Server<H = ServerMode> = crate::server::Server<AsyncStd, H>;
    /// A running async-std server: broadcast or publish to a topic, send to
    /// or close one client, count clients and subscribers, shut down.
    pub type ServerHandle = crate::server::ServerHandle<AsyncStd>;
    /// A ready-made async-std WebSocket client (connect, send, receive,
    /// interactive stdin/stdout mode).
    pub type Client = crate::client::Client<AsyncStd>;

    /// Connects to a `ws://` or `wss://` URL over an async-std `TcpStream` with
    /// [`Config::default()`](crate::Config); see [`connect_with`].
    /// `request` is a URL, a URL with a `ClientRequest`, or (cargo feature
    /// `http`, on by default) an `http::Request<()>` with headers and
    /// subprotocols ([`IntoClientRequest`](crate::IntoClientRequest)).
    pub async fn connect(
        request: impl ws_core::handshake::IntoClientRequest,
    ) -> crate::Result<(
        crate::WebSocketStream<crate::MaybeTls<async_std::net::TcpStream>>,
        ws_core::handshake::Response,
    )> {
        crate::handshake::connect_on::<AsyncStd>(request, crate::Config::default(), None, None)
            .await
    }

    /// Connects to a `ws://` or `wss://` URL with `config`. `wss://`
    /// verifies the server against the default roots
    /// ([`tls::default_client_config`](crate::tls::default_client_config),
    /// chosen by this crate's cargo features); [`connect_tls`] takes a
    /// configuration of your own. The TCP connect, the TLS handshake and
    /// the WebSocket handshake together are bounded by the handshake
    /// timeout.
    ///
    /// # Errors
    ///
    /// [`Error::Url`](crate::Error::Url) for an unusable URL (a scheme
    /// other than `ws`/`wss`), [`Error::Timeout`](crate::Error::Timeout)
    /// when the handshake timeout passed, a TLS failure as a
    /// [`TlsError`](crate::tls::TlsError) inside
    /// [`Error::Io`](crate::Error::Io) (an untrusted certificate, a name
    /// mismatch, a protocol error: see
    /// [`TlsError::find`](crate::tls::TlsError::find)),
    /// [`Error::Handshake`](crate::Error::Handshake) when the server
    /// refuses the upgrade.
    pub async fn connect_with(
        request: impl ws_core::handshake::IntoClientRequest,
        config: crate::Config,
    ) -> crate::Result<(
        crate::WebSocketStream<crate::MaybeTls<async_std::net::TcpStream>>,
        ws_core::handshake::Response,
    )> {
        crate::handshake::connect_on::<AsyncStd>(request, config, None, None).await
    }

    /// [`connect_with`] using `tls` for a `wss://` URL instead of the
    /// default configuration: your roots, client certificate, ALPN (build
    /// it with [`tls::builder`](crate::tls::builder) so no process-level
    /// crypto provider is needed). A `ws://` URL connects without TLS.
    pub async fn connect_tls(
        request: impl ws_core::handshake::IntoClientRequest,
        config: crate::Config,
        tls: std::sync::Arc<crate::tls::rustls::ClientConfig>,
    ) -> crate::Result<(
        crate::WebSocketStream<crate::MaybeTls<async_std::net::TcpStream>>,
        ws_core::handshake::Response,
    )> {
        crate::handshake::connect_on::<AsyncStd>(request, config, Some(tls), None).await
    }

    /// [`connect_tls`] through the HTTP proxy `proxy`: TCP to the proxy,
    /// its `CONNECT` tunnel to the URL's host and port (with the proxy
    /// URL's credentials as `Proxy-Authorization: Basic`), then for
    /// `wss://` TLS to the server inside the tunnel (verified against the
    /// URL's host, with `tls` or the default roots), then the WebSocket
    /// handshake; all of it bounded by the handshake timeout.
    ///
    /// # Errors
    ///
    /// As [`connect_with`], and [`Error::Proxy`](crate::Error::Proxy) when
    /// the proxy refuses the tunnel (its status in
    /// [`ProxyError::status`](crate::proxy::ProxyError::status): 407, 403,
    /// 502, ...), closes the connection or does not answer in HTTP.
    pub async fn connect_proxy(
        request: impl ws_core::handshake::IntoClientRequest,
        config: crate::Config,
        proxy: &crate::proxy::Proxy,
        tls: Option<std::sync::Arc<crate::tls::rustls::ClientConfig>>,
    ) -> crate::Result<(
        crate::WebSocketStream<crate::MaybeTls<async_std::net::TcpStream>>,
        ws_core::handshake::Response,
    )> {
        crate::handshake::connect_on::<AsyncStd>(request, config, tls, Some(proxy)).await
    }
}
#[cfg(feature = "async-std")]
pub use async_std_api::{
    Client, Server, ServerHandle, connect, connect_proxy, connect_tls, connect_with,
};

/// The same `Server`, `ServerHandle`, `Client`, `connect`, `connect_with`,
/// `connect_tls` and `connect_proxy` as the crate root, running on smol (tasks on smol's
/// global executor, `connect` over a `smol::net::TcpStream`).
#[cfg(feature = "smol")]
pub mod smol {
    use crate::ServerMode;
    use crate::runtime::Smol;

    /// The WebSocket server on smol, a builder: the demo's echo or chat
    /// (`Server::new`, `mode`) or your own [`Handler`](crate::Handler)
    /// (`Server::with_handler`). Nothing is bound until `start` or `run`.
    /// The handler API is runtime-neutral: [`crate::handler`].
    ///
    /// ```no_run
    /// use std::net::SocketAddr;
    /// use ws_async_std::handler::{Handler, Refusal, Request, Socket, Upgrade};
    /// use ws_async_std::Message;
    /// use ws_async_std::smol::Server;
    ///
    /// /// Echo, prefixed with the connection's id.
    /// struct Tagged;
    ///
    /// impl Handler for Tagged {
    ///     type State = ();
    ///
    ///     fn on_upgrade(&self, _req: &Request, _peer: SocketAddr) -> Result<Upgrade<()>, Refusal> {
    ///         Ok(Upgrade::new(()))
    ///     }
    ///
    ///     fn on_message(&self, ws: &mut Socket<'_>, _: &mut (), msg: Message) {
    ///         if let Message::Text(text) = msg {
    ///             let _ = ws.send(&Message::text(format!("{}: {}", ws.id().0, text.as_str())));
    ///         }
    ///     }
    /// }
    ///
    /// # async fn run() -> std::io::Result<()> {
    /// Server::with_handler("127.0.0.1:8080", Tagged).run().await
    /// # }
    /// ```
    pub type Server<H = ServerMode> = crate::server::Server<Smol, H>;
    /// A running smol server: broadcast or publish to a topic, send to or
    /// close one client, count clients and subscribers, shut down.
    pub type ServerHandle = crate::server::ServerHandle<Smol>;
    /// A ready-made smol WebSocket client (connect, send, receive,
    /// interactive stdin/stdout mode).
    pub type Client = crate::client::Client<Smol>;

    /// Connects to a `ws://` or `wss://` URL over a smol `TcpStream` with
    /// [`Config::default()`](crate::Config); see [`connect_with`].
    /// `request` is a URL, a URL with a `ClientRequest`, or (cargo feature
    /// `http`, on by default) an `http::Request<()>` with headers and
    /// subprotocols ([`IntoClientRequest`](crate::IntoClientRequest)).
    pub async fn connect(
        request: impl ws_core::handshake::IntoClientRequest,
    ) -> crate::Result<(
        crate::WebSocketStream<crate::MaybeTls<::smol::net::TcpStream>>,
        ws_core::handshake::Response,
    )> {
        crate::handshake::connect_on::<Smol>(request, crate::Config::default(), None, None).await
    }

    /// Connects to a `ws://` or `wss://` URL with `config`. `wss://`
    /// verifies the server against the default roots
    /// ([`tls::default_client_config`](crate::tls::default_client_config),
    /// chosen by this crate's cargo features); [`connect_tls`] takes a
    /// configuration of your own. The TCP connect, the TLS handshake and
    /// the WebSocket handshake together are bounded by the handshake
    /// timeout.
    ///
    /// # Errors
    ///
    /// [`Error::Url`](crate::Error::Url) for an unusable URL (a scheme
    /// other than `ws`/`wss`), [`Error::Timeout`](crate::Error::Timeout)
    /// when the handshake timeout passed, a TLS failure as a
    /// [`TlsError`](crate::tls::TlsError) inside
    /// [`Error::Io`](crate::Error::Io) (an untrusted certificate, a name
    /// mismatch, a protocol error: see
    /// [`TlsError::find`](crate::tls::TlsError::find)),
    /// [`Error::Handshake`](crate::Error::Handshake) when the server
    /// refuses the upgrade.
    pub async fn connect_with(
        request: impl ws_core::handshake::IntoClientRequest,
        config: crate::Config,
    ) -> crate::Result<(
        crate::WebSocketStream<crate::MaybeTls<::smol::net::TcpStream>>,
        ws_core::handshake::Response,
    )> {
        crate::handshake::connect_on::<Smol>(request, config, None, None).await
    }

    /// [`connect_with`] using `tls` for a `wss://` URL instead of the
    /// default configuration: your roots, client certificate, ALPN (build
    /// it with [`tls::builder`](crate::tls::builder) so no process-level
    /// crypto provider is needed). A `ws://` URL connects without TLS.
    pub async fn connect_tls(
        request: impl ws_core::handshake::IntoClientRequest,
        config: crate::Config,
        tls: std::sync::Arc<crate::tls::rustls::ClientConfig>,
    ) -> crate::Result<(
        crate::WebSocketStream<crate::MaybeTls<::smol::net::TcpStream>>,
        ws_core::handshake::Response,
    )> {
        crate::handshake::connect_on::<Smol>(request, config, Some(tls), None).await
    }

    /// [`connect_tls`] through the HTTP proxy `proxy`: TCP to the proxy,
    /// its `CONNECT` tunnel to the URL's host and port (with the proxy
    /// URL's credentials as `Proxy-Authorization: Basic`), then for
    /// `wss://` TLS to the server inside the tunnel (verified against the
    /// URL's host, with `tls` or the default roots), then the WebSocket
    /// handshake; all of it bounded by the handshake timeout.
    ///
    /// # Errors
    ///
    /// As [`connect_with`], and [`Error::Proxy`](crate::Error::Proxy) when
    /// the proxy refuses the tunnel (its status in
    /// [`ProxyError::status`](crate::proxy::ProxyError::status): 407, 403,
    /// 502, ...), closes the connection or does not answer in HTTP.
    pub async fn connect_proxy(
        request: impl ws_core::handshake::IntoClientRequest,
        config: crate::Config,
        proxy: &crate::proxy::Proxy,
        tls: Option<std::sync::Arc<crate::tls::rustls::ClientConfig>>,
    ) -> crate::Result<(
        crate::WebSocketStream<crate::MaybeTls<::smol::net::TcpStream>>,
        ws_core::handshake::Response,
    )> {
        crate::handshake::connect_on::<Smol>(request, config, tls, Some(proxy)).await
    }
}
