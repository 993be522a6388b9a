//! Layer 2: what every runtime adapter needs and no protocol rule does,
//! written once so the adapters stay thin. Runtime-independent (no tokio,
//! no async-std, no threads), but not pure: [`driver`] reads the clock when
//! its caller does not pass one, and [`halves`] speaks `Future`, `Stream`
//! and `Sink`.
//!
//! - [`driver`]: the whole-stream receive/send loop over a transport that
//!   the adapter implements with one read, one write, a shutdown and a
//!   timer.
//! - [`stream`]: the async `WebSocketStream` itself, which ws-tokio and
//!   ws-async-std name with their transport wrapper and timer.
//! - [`halves`]: the split reader's receive loop and the split writer.
//! - [`handoff`]: the exclusive cell the split halves pass the write side
//!   through (the crate's audited `unsafe`).
//! - [`wake`]: the hub's wake for async tasks, and the waiting application
//!   broadcast.
//! - [`write`](mod@write): the vectored write loop, one behaviour on `Interrupted`,
//!   zero-byte and short writes for every transport.
//! - [`client`]: the async convenience `Client` (connect by URL, send,
//!   receive, reconnect, the interactive session) over an adapter's
//!   [`Connector`](client::Connector): its connect, its sleep, stdin, stdout.
//! - [`console`]: the interactive session's decisions, shared by the
//!   async client and ws-blocking's: stdin to messages, messages to lines
//!   (hex or base64 for binary, control frames on request), how it ended.
//! - [`block`]: the blocking adapter's executor: runs the loops above on a
//!   plain thread (a waker that unparks it, a timer that bounds its reads).
//! - [`reconnect`]: a reconnecting client's policy (backoff with jitter, a
//!   cap, stability, final endings) and its retry loops.
//! - `tls` (cargo feature `tls`): the client side of `wss://` for every
//!   adapter: rustls configurations with an explicit provider, default and
//!   PEM roots, the server name, TLS errors by kind.
//!
//! Behind the `rt` cargo feature (on by default); the protocol layer does
//! not need it.

pub mod block;
pub mod client;
pub mod console;
pub mod driver;
pub mod halves;
pub mod handoff;
pub mod reconnect;
pub mod stream;
#[cfg(feature = "tls")]
pub mod tls;
pub mod wake;
pub mod write;
