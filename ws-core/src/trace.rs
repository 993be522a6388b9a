//! What the server engine tells the `tracing` crate, behind the cargo
//! feature `tracing` (off by default): one span per server connection
//! ([`ConnSpan`]: the peer's address, the request path once known, the
//! runtime's name) and events for what an operator wants to see: handshake
//! refusals with their HTTP status, close codes in both directions,
//! slow-client drops, timeouts, TLS errors and I/O errors (which the
//! adapter hands over with `Served::transport_error`).
//!
//! Without the feature the macros below expand to nothing and [`ConnSpan`]
//! is an empty struct, so the engine compiles to the code it had before
//! the instrumentation existed: no field, no branch, no call (measured with
//! callgrind on a fixed echo workload: README, "Tracing and metrics").
//!
//! The instrumentation lives in the shared engine (`server::conn`,
//! `server::session`, `server::tls`), so every runtime adapter gets it; an
//! adapter only names its runtime
//! ([`Hub::runtime`](crate::server::hub::Hub::runtime)).
//!
//! Levels: `warn` for the server itself in trouble (its accept loop out
//! of descriptors or memory: `server::admission`), `info` for what an
//! operator of a public server acts on (refused handshakes, slow clients
//! dropped, TLS failures, timeouts, accepting again after a failed-accept
//! episode), `debug` for every connection's life (request, upgrade, close
//! codes, early ends).

/// An event at `info` level (nothing without the `tracing` feature).
#[cfg(feature = "tracing")]
macro_rules! info {
    ($($t:tt)*) => { ::tracing::info!($($t)*) };
}
/// An event at `info` level (nothing without the `tracing` feature).
#[cfg(not(feature = "tracing"))]
macro_rules! info {
    ($($t:tt)*) => {};
}

/// An event at `warn` level (nothing without the `tracing` feature).
#[cfg(feature = "tracing")]
macro_rules! warning {
    ($($t:tt)*) => { ::tracing::warn!($($t)*) };
}
/// An event at `warn` level (nothing without the `tracing` feature).
#[cfg(not(feature = "tracing"))]
macro_rules! warning {
    ($($t:tt)*) => {};
}

/// An event at `debug` level (nothing without the `tracing` feature).
#[cfg(feature = "tracing")]
macro_rules! debug {
    ($($t:tt)*) => { ::tracing::debug!($($t)*) };
}
/// An event at `debug` level (nothing without the `tracing` feature).
#[cfg(not(feature = "tracing"))]
macro_rules! debug {
    ($($t:tt)*) => {};
}

#[allow(unused_imports)]
pub(crate) use {debug, info, warning};

#[cfg(feature = "tracing")]
use std::net::SocketAddr;

/// One server connection's span, `ws_conn{peer, runtime, path}`: created
/// when the connection is accepted, entered by the engine around
/// everything it does for that connection, so every event of the
/// connection carries its peer, runtime and path. Empty (and free) without
/// the `tracing` feature.
#[derive(Debug, Clone)]
pub struct ConnSpan {
    #[cfg(feature = "tracing")]
    span: tracing::Span,
}

/// The guard of an entered [`ConnSpan`] (nothing without the feature).
#[must_use = "the span is exited when the guard is dropped"]
#[derive(Debug)]
pub struct Entered<'a> {
    #[cfg(feature = "tracing")]
    _guard: tracing::span::Entered<'a>,
    #[cfg(not(feature = "tracing"))]
    _span: std::marker::PhantomData<&'a ()>,
}

impl ConnSpan {
    /// The span of a connection from `peer`, served on `runtime`.
    #[cfg(feature = "tracing")]
    #[inline]
    pub(crate) fn new(peer: SocketAddr, runtime: &'static str) -> Self {
        ConnSpan {
            span: tracing::info_span!(
                "ws_conn",
                peer = %peer,
                runtime,
                path = tracing::field::Empty
            ),
        }
    }

    /// The span of a connection (nothing without the `tracing` feature).
    #[cfg(not(feature = "tracing"))]
    #[inline(always)]
    pub(crate) fn new(_peer: std::net::SocketAddr, _runtime: &'static str) -> Self {
        ConnSpan {}
    }

    /// Enters the span until the guard is dropped.
    #[inline(always)]
    pub fn enter(&self) -> Entered<'_> {
        Entered {
            #[cfg(feature = "tracing")]
            _guard: self.span.enter(),
            #[cfg(not(feature = "tracing"))]
            _span: std::marker::PhantomData,
        }
    }

    /// Records the request's path, once the head is parsed.
    #[inline(always)]
    pub(crate) fn record_path(&self, path: &str) {
        #[cfg(feature = "tracing")]
        self.span.record("path", path);
        #[cfg(not(feature = "tracing"))]
        let _ = path;
    }

    /// The `tracing` span itself, to run an adapter's own work in it.
    #[cfg(feature = "tracing")]
    pub fn span(&self) -> &tracing::Span {
        &self.span
    }
}

/// The HTTP status of a complete response (`HTTP/1.1 NNN ...`), 0 if it
/// does not start like one.
pub(crate) fn status_of(response: &[u8]) -> u16 {
    response
        .get(9..12)
        .and_then(|s| std::str::from_utf8(s).ok())
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_status_is_read_from_a_response_and_garbage_is_zero() {
        assert_eq!(status_of(b"HTTP/1.1 426 Upgrade Required\r\n\r\n"), 426);
        assert_eq!(status_of(b"HTTP/1.1 101 Switching Protocols\r\n"), 101);
        assert_eq!(status_of(b"HTTP/1.1"), 0);
        assert_eq!(status_of(b"HTTP/1.1 abc x"), 0);
    }
}
