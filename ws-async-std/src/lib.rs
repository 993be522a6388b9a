//! # ws-async-std: ws-core on futures-io, for async-std and smol
//!
//! A thin adapter that binds the sans-IO protocol in [`ws_core`] to any
//! transport implementing the `futures-io` traits ([`futures_io::AsyncRead`] +
//! [`futures_io::AsyncWrite`]), so the same [`WebSocketStream`] works with
//! async-std's and smol's sockets (and any other futures-io transport).
//! All protocol logic (framing, the closing handshake, HTTP routing, the
//! per-client server logic, broadcast bookkeeping) lives in ws-core; this
//! crate only moves bytes, owns timers, and spawns tasks.
//!
//! - The crate root's [`Server`], [`ServerHandle`], [`Client`], [`connect`]
//!   and [`connect_with`] run on **async-std** (cargo feature `async-std`).
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
#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![warn(unreachable_pub)]

#[cfg(any(feature = "async-std", feature = "smol"))]
mod client;
mod handshake;
mod io;
#[cfg(any(feature = "async-std", feature = "smol"))]
mod runtime;
#[cfg(any(feature = "async-std", feature = "smol"))]
mod server;
mod split;
mod stream;

pub use handshake::{accept, accept_with, client_handshake};
pub use split::{Alarm, Io, SplitIo, WsReader, WsWriter};
pub use stream::WebSocketStream;
pub use ws_core::server::hub::{BroadcastReport, FlowControl, HubStats};
pub use ws_core::server::site::ServerMode;
pub use ws_core::{Bytes, CloseCode, CloseFrame, Config, Error, Message, Role, Utf8Bytes};

/// The result type of every fallible operation in this crate.
pub type Result<T> = std::result::Result<T, Error>;

#[cfg(feature = "async-std")]
mod async_std_api {
    use crate::runtime::AsyncStd;

    /// The demo server on async-std: a builder; nothing is bound until
    /// `start` or `run`.
    pub type Server = crate::server::Server<AsyncStd>;
    /// A running async-std server: broadcast, count clients, shut down.
    pub type ServerHandle = crate::server::ServerHandle<AsyncStd>;
    /// A ready-made async-std WebSocket client (connect, send, receive,
    /// interactive stdin/stdout mode).
    pub type Client = crate::client::Client<AsyncStd>;

    /// Connects to a `ws://` URL over an async-std `TcpStream` with
    /// [`Config::default()`](crate::Config); `wss://` fails with
    /// [`UrlError::TlsNotSupported`](ws_core::url::UrlError::TlsNotSupported).
    /// TCP connect and handshake together are bounded by the handshake timeout.
    pub async fn connect(
        url: &str,
    ) -> crate::Result<(
        crate::WebSocketStream<async_std::net::TcpStream>,
        ws_core::handshake::Response,
    )> {
        crate::handshake::connect_on::<AsyncStd>(url, crate::Config::default()).await
    }

    /// [`connect`] with an explicit [`Config`](crate::Config).
    pub async fn connect_with(
        url: &str,
        config: crate::Config,
    ) -> crate::Result<(
        crate::WebSocketStream<async_std::net::TcpStream>,
        ws_core::handshake::Response,
    )> {
        crate::handshake::connect_on::<AsyncStd>(url, config).await
    }
}
#[cfg(feature = "async-std")]
pub use async_std_api::{Client, Server, ServerHandle, connect, connect_with};

/// The same `Server`, `ServerHandle`, `Client`, `connect` and `connect_with`
/// as the crate root, running on smol (tasks on smol's global executor,
/// `connect` returning a `smol::net::TcpStream`).
#[cfg(feature = "smol")]
pub mod smol {
    use crate::runtime::Smol;

    /// The demo server on smol: a builder; nothing is bound until
    /// `start` or `run`.
    pub type Server = crate::server::Server<Smol>;
    /// A running smol server: broadcast, count clients, shut down.
    pub type ServerHandle = crate::server::ServerHandle<Smol>;
    /// A ready-made smol WebSocket client (connect, send, receive,
    /// interactive stdin/stdout mode).
    pub type Client = crate::client::Client<Smol>;

    /// Connects to a `ws://` URL over a smol `TcpStream` with
    /// [`Config::default()`](crate::Config); `wss://` fails with
    /// [`UrlError::TlsNotSupported`](ws_core::url::UrlError::TlsNotSupported).
    /// TCP connect and handshake together are bounded by the handshake timeout.
    pub async fn connect(
        url: &str,
    ) -> crate::Result<(
        crate::WebSocketStream<::smol::net::TcpStream>,
        ws_core::handshake::Response,
    )> {
        crate::handshake::connect_on::<Smol>(url, crate::Config::default()).await
    }

    /// [`connect`] with an explicit [`Config`](crate::Config).
    pub async fn connect_with(
        url: &str,
        config: crate::Config,
    ) -> crate::Result<(
        crate::WebSocketStream<::smol::net::TcpStream>,
        ws_core::handshake::Response,
    )> {
        crate::handshake::connect_on::<Smol>(url, config).await
    }
}
