//! [`WebSocketStream`]: ws-core's async stream
//! ([`ws_core::rt::stream::WebSocketStream`], the same on every runtime)
//! over a tokio transport and a tokio timer. This file holds only the tokio
//! calls it runs on.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Instant;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Sleep;
use ws_core::Transmit;
use ws_core::rt::stream::Transport;

use crate::split::Io;

/// One WebSocket connection over any tokio transport: a [`Stream`] of
/// received messages and a [`Sink`] of messages to send, with `recv`,
/// `send`, `feed`, `flush`, `close`, `split` and the rest. All of it is
/// ws-core's [`WebSocketStream`](ws_core::rt::stream::WebSocketStream),
/// documented there (how it drives the connection, cancel safety); tokio
/// supplies the reads, the writes and one [`Deadline`].
///
/// [`Stream`]: futures_core::Stream
/// [`Sink`]: futures_sink::Sink
pub type WebSocketStream<S> = ws_core::rt::stream::WebSocketStream<Io<S>, Deadline>;

impl<S: AsyncRead + AsyncWrite + Unpin> Transport for Io<S> {
    type Io = S;

    fn wrap(io: S) -> Self {
        Io(io)
    }

    fn get_ref(&self) -> &S {
        &self.0
    }

    fn get_mut(&mut self) -> &mut S {
        &mut self.0
    }
}

/// Writes everything `t` has queued to `io`, in as few `write` calls as the
/// transport allows (normally one vectored write), then flushes `io`.
pub(crate) fn poll_write_all<W: AsyncWrite + Unpin>(
    io: &mut W,
    t: &mut impl Transmit,
    cx: &mut Context<'_>,
) -> Poll<io::Result<()>> {
    ready!(ws_core::rt::write::poll_write_transmit(t, |slices| {
        Pin::new(&mut *io).poll_write_vectored(cx, slices)
    }))?;
    Pin::new(io).poll_flush(cx)
}

/// The timer a tokio [`WebSocketStream`] arms: one tokio sleep per
/// connection, created on first use (inside the runtime) and reset in place.
#[derive(Debug, Default)]
pub struct Deadline {
    sleep: Option<Pin<Box<Sleep>>>,
    /// The instant `sleep` is currently set to.
    at: Option<Instant>,
}

impl Deadline {
    /// Waits for `at`; true once it has passed.
    pub(crate) fn poll(&mut self, cx: &mut Context<'_>, at: Instant) -> bool {
        let sleep = self
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(at.into())));
        if self.at != Some(at) {
            sleep.as_mut().reset(at.into());
            self.at = Some(at);
        }
        sleep.as_mut().poll(cx).is_ready()
    }
}
