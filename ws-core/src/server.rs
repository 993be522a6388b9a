//! Layer 3: the `Server` the runtime crates share, as sans-IO application
//! logic: the [`Handler`] API that applications implement ([`handler`]),
//! HTTP routing and the test page ([`site`]), one server-side connection's
//! behaviour ([`session::ServerSession`]: the handler's callbacks,
//! back-pressure, closing), the registry with its topics and flow control
//! ([`hub::Hub`]), the sans-IO half of the scale-out backplane that joins
//! several servers into one cluster ([`backplane`]), and the demo's echo
//! and chat handlers ([`demo`]), the counters the engine keeps for
//! monitoring ([`metrics`]), and what the accept loops decide
//! (`max_connections`, failed accepts: [`admission`]), and the `Server`
//! builder every adapter shares ([`options`]).
//! Nothing here is RFC 6455; it is what a server does with it. Every
//! adapter's server executes one [`ServerConnection`] per client, through
//! the [`Served`] trait, which `tls::TlsConnection` (wss://, cargo
//! feature `tls`) implements as well.
//!
//! Behind the `server` cargo feature (on by default).

pub mod admission;
pub mod backplane;
pub mod conn;
pub mod demo;
pub mod handler;
pub mod hub;
pub mod metrics;
pub mod options;
pub mod origin;
pub mod registry;
pub mod session;
pub mod site;
#[cfg(feature = "tls")]
pub mod tls;

pub use admission::{AcceptPacer, Admission, Permit, Ticket};
pub use conn::{Served, ServerConnection};
pub use handler::{ConnectionHandle, Handler, PlainResponse, Refusal, Socket, Upgrade};
pub use hub::{ClientId, Target};
pub use options::{ServerCore, ServerOptions};
pub use origin::{AllowOrigins, OriginPolicy};
pub use registry::Registry;
