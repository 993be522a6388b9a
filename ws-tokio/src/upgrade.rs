//! Upgrading inside another HTTP server: a hyper 1.x (or axum) route that
//! turns into a WebSocket, next to the server's ordinary routes.
//!
//! The HTTP server has parsed the request; ws-core judges it by the same
//! rules as a request [`accept`](crate::accept) reads from a socket
//! ([`Request::from_http`](ws_core::handshake::Request::from_http)), so the
//! answers are the same too: a `101` whose `Sec-WebSocket-Accept`, chosen
//! subprotocol and permessage-deflate agreement come from the same code, or
//! the same 400/405/426 with the same headers.
//!
//! - [`upgrade_response`] (cargo feature `http`): the `101` to send, or the
//!   error whose [`to_http_response`](HandshakeError::to_http_response) is
//!   the 4xx to send. For any HTTP server built on the `http` crate.
//! - `upgrade` (cargo feature `hyper`): the same, plus the connection
//!   itself: a future that resolves, once hyper has sent the `101`, to a
//!   [`WebSocketStream`](crate::WebSocketStream) over hyper's upgraded connection. One call per
//!   route.
//! - `from_upgraded` (cargo feature `hyper`): a `hyper::upgrade::Upgraded`
//!   (from `hyper::upgrade::on` or axum's upgrade) as a
//!   [`WebSocketStream`](crate::WebSocketStream), when you call `hyper::upgrade::on` yourself.
//!
//! `examples/src/bin/hyper-upgrade.rs` runs a hyper server with an ordinary
//! route and an echoing `/ws` route; `examples/tests/hyper_upgrade.rs`
//! drives it.

use ws_core::Config;
use ws_core::handshake::Request;

/// The options of an accept (subprotocols, extra headers) and the error a
/// refused upgrade carries, named here so a route needs no other import.
pub use ws_core::handshake::{Accept, HandshakeError};

/// Checks that `req` is a valid WebSocket upgrade (RFC 6455 4.2.1) and
/// builds the `101 Switching Protocols` to answer it with, choosing a
/// subprotocol and extra headers by `accept` and negotiating
/// permessage-deflate by `config`'s policy. Returns the `101` and the
/// configuration the connection must run with (what was agreed on).
///
/// Neither looks at the body nor takes the connection: with hyper, send
/// the `101` from the service and take the connection with
/// `hyper::upgrade::on` (`upgrade` does both).
///
/// # Errors
///
/// The requirement the request failed; answer with its
/// [`to_http_response`](HandshakeError::to_http_response) (400 for a
/// missing or bad key, 426 with `Sec-WebSocket-Version: 13` for another
/// version, 405 with `Allow: GET` for another method, ...).
/// [`HandshakeError::UnsupportedHttpVersion`] for an HTTP/2 request (its
/// WebSocket bootstrap, RFC 8441, is not supported).
pub fn upgrade_response<B>(
    req: &http::Request<B>,
    accept: &Accept,
    config: Config,
) -> Result<(http::Response<()>, Config), HandshakeError> {
    Request::from_http(req)?.accept_http(accept, config)
}

#[cfg(feature = "hyper")]
pub use with_hyper::{Upgrading, from_upgraded, upgrade};

#[cfg(feature = "hyper")]
mod with_hyper {
    use std::future::Future;
    use std::io;
    use std::pin::Pin;
    use std::task::{Context, Poll, ready};

    use bytes::BytesMut;
    use hyper::upgrade::{OnUpgrade, Upgraded};
    use hyper_util::rt::TokioIo;
    use ws_core::handshake::{Accept, HandshakeError};
    use ws_core::{Config, Error, Role};

    use super::upgrade_response;
    use crate::{Result, WebSocketStream};

    /// The stream over a connection hyper upgraded.
    type Upgraded101 = WebSocketStream<TokioIo<Upgraded>>;

    /// The connection hyper upgraded, as a [`WebSocketStream`] of the
    /// server role running with `config` (the configuration
    /// [`upgrade_response`] returned, which carries the permessage-deflate
    /// agreement).
    ///
    /// Built as [`accept_with`](crate::accept_with) builds its stream after
    /// its own handshake; bytes the client sent after its request head are
    /// not lost: hyper's `Upgraded` yields them first.
    pub fn from_upgraded(upgraded: Upgraded, config: Config) -> Upgraded101 {
        WebSocketStream::from_raw(
            TokioIo::new(upgraded),
            Role::Server,
            config,
            BytesMut::new(),
        )
    }

    /// Answers a WebSocket upgrade inside a hyper 1.x service in one call:
    /// checks `req` ([`upgrade_response`]) and, if it is a valid upgrade,
    /// returns the `101` for the service to return and an [`Upgrading`]
    /// future that resolves to the [`WebSocketStream`] once hyper has sent
    /// the `101` and handed over the connection (spawn a task that awaits
    /// it). Serve the connection with `.with_upgrades()` on hyper's
    /// `http1` connection builder, or hyper never hands it over.
    ///
    /// ```no_run
    /// use http_body_util::Full;
    /// use hyper::body::{Bytes, Incoming};
    /// use ws_tokio::upgrade::Accept;
    /// use ws_tokio::{Config, http};
    ///
    /// async fn route(mut req: http::Request<Incoming>) -> http::Response<Full<Bytes>> {
    ///     match ws_tokio::upgrade::upgrade(&mut req, &Accept::new(), Config::default()) {
    ///         Ok((response, upgrading)) => {
    ///             tokio::spawn(async move {
    ///                 let Ok(mut ws) = upgrading.await else { return };
    ///                 while let Some(Ok(msg)) = ws.recv().await {
    ///                     if ws.send(msg).await.is_err() {
    ///                         break;
    ///                     }
    ///                 }
    ///             });
    ///             response.map(|()| Full::default())
    ///         }
    ///         Err(refusal) => refusal.to_http_response().map(Full::from),
    ///     }
    /// }
    /// ```
    ///
    /// # Errors
    ///
    /// As for [`upgrade_response`]: the error's
    /// [`to_http_response`](HandshakeError::to_http_response) is the 4xx to
    /// return instead.
    pub fn upgrade<B>(
        req: &mut http::Request<B>,
        accept: &Accept,
        config: Config,
    ) -> std::result::Result<(http::Response<()>, Upgrading), HandshakeError> {
        let (response, config) = upgrade_response(req, accept, config)?;
        let on = hyper::upgrade::on(req);
        Ok((
            response,
            Upgrading {
                on,
                config: Some(config),
            },
        ))
    }

    /// The connection of an accepted upgrade, once hyper has sent the `101`
    /// ([`upgrade`]); resolves to the [`WebSocketStream`], or to
    /// [`Error::Io`] if the connection closed first or was not served with
    /// upgrades enabled.
    #[derive(Debug)]
    #[must_use = "the connection is handed over only when this is awaited"]
    pub struct Upgrading {
        on: OnUpgrade,
        config: Option<Config>,
    }

    impl Future for Upgrading {
        type Output = Result<Upgraded101>;

        fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
            let upgraded = ready!(Pin::new(&mut self.on).poll(cx));
            let upgraded = upgraded.map_err(|e| Error::Io(io::Error::other(e)))?;
            let config = self.config.take().unwrap_or_default();
            Poll::Ready(Ok(from_upgraded(upgraded, config)))
        }
    }
}
