//! Layer 3: the `Server` the runtime crates share, as sans-IO application
//! logic: the [`Handler`] API that applications implement ([`handler`]),
//! HTTP routing and the test page ([`site`]), one server-side connection's
//! behaviour ([`session::ServerSession`]: the handler's callbacks,
//! back-pressure, closing), the registry with its topics and flow control
//! ([`hub::Hub`]), the sans-IO half of the scale-out backplane that joins
//! several servers into one cluster ([`backplane`]), and the demo's echo
//! and chat handlers ([`demo`]), and the counters the engine keeps for
//! monitoring ([`metrics`]).
//! Nothing here is RFC 6455; it is what a server does with it. Every
//! adapter's server executes one [`ServerConnection`] per client, through
//! the [`Served`] trait, which `tls::TlsConnection` (wss://, cargo
//! feature `tls`) implements as well.
//!
//! Behind the `server` cargo feature (on by default).

pub mod backplane;
pub mod conn;
pub mod demo;
pub mod handler;
pub mod hub;
pub mod metrics;
pub mod origin;
pub mod registry;
pub mod session;
pub mod site;
#[cfg(feature = "tls")]
pub mod tls;

pub use conn::{Served, ServerConnection};
pub use handler::{ConnectionHandle, Handler, PlainResponse, Refusal, Socket, Upgrade};
pub use hub::{ClientId, Target};
pub use origin::{AllowOrigins, OriginPolicy};
pub use registry::Registry;

use std::io;
use std::time::Duration;

/// How long an accept loop pauses after `accept` failed with `e`: `None`
/// for failures of one connection (reset or aborted before it was accepted,
/// an interrupted call), after which the next accept is fine at once;
/// [`ACCEPT_BACKOFF`] for anything else (out of file descriptors, ...), so
/// the loop does not spin while the condition lasts. Every runtime's
/// `Server` follows it.
pub fn accept_backoff(e: &io::Error) -> Option<Duration> {
    match e.kind() {
        io::ErrorKind::ConnectionAborted
        | io::ErrorKind::ConnectionReset
        | io::ErrorKind::Interrupted => None,
        _ => Some(ACCEPT_BACKOFF),
    }
}

/// The pause after a failed `accept` that is not one connection's failure.
pub const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_connections_accept_failure_is_retried_at_once_and_others_back_off() {
        for kind in [
            io::ErrorKind::ConnectionAborted,
            io::ErrorKind::ConnectionReset,
            io::ErrorKind::Interrupted,
        ] {
            assert_eq!(accept_backoff(&kind.into()), None, "{kind:?}");
        }
        let emfile = io::Error::from_raw_os_error(24);
        assert_eq!(accept_backoff(&emfile), Some(ACCEPT_BACKOFF));
        assert_eq!(
            accept_backoff(&io::ErrorKind::OutOfMemory.into()),
            Some(ACCEPT_BACKOFF)
        );
    }
}
