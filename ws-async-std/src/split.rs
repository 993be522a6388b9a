//! The halves of a split [`WebSocketStream`](crate::WebSocketStream):
//! [`WsReader`] and [`WsWriter`], with no lock on the data path.
//!
//! The halves themselves live in [`ws_core::rt::halves`] (the receive loop,
//! the writer's operations, who writes a control reply and when each half
//! wakes the other), shared with ws-tokio. This file is only the futures-io
//! calls they run on: one read, one vectored write and a `poll_close`, and
//! an async-io `Timer`.

use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use futures_io::{AsyncRead, AsyncWrite};
use ws_core::rt::halves::{ReadTransport, Timer, WriteTransport};
use ws_core::rt::stream::SplitTransport;
use ws_core::{BytesMut, Transmit};

use crate::io::{poll_read_into, poll_write_conn};

/// A transport that splits into a handle for reading and a handle for
/// writing, usable from different tasks, as
/// [`WebSocketStream::split`](crate::WebSocketStream::split) needs.
///
/// async-std's and smol's `TcpStream` and `UnixStream` split by cloning:
/// each clone is a reference to the same socket, reads and writes through
/// them run concurrently, and there is no lock. For another transport (a TLS
/// stream, say), implement it with `futures_util::io::AsyncReadExt::split`,
/// which puts the transport behind a lock of its own.
pub trait SplitIo: AsyncRead + AsyncWrite + Unpin + Sized {
    /// The handle the reader reads from.
    type ReadHalf: AsyncRead + Unpin;
    /// The handle the writer writes to.
    type WriteHalf: AsyncWrite + Unpin;
    /// Splits the transport.
    fn split_io(self) -> (Self::ReadHalf, Self::WriteHalf);
    /// Joins halves that [`split_io`](Self::split_io) made from one
    /// transport.
    fn unsplit_io(read: Self::ReadHalf, write: Self::WriteHalf) -> Self;
}

/// Sockets whose clones share one file descriptor.
macro_rules! split_by_clone {
    ($($(#[$attr:meta])* $ty:ty),* $(,)?) => {$(
        $(#[$attr])*
        impl SplitIo for $ty {
            type ReadHalf = $ty;
            type WriteHalf = $ty;
            fn split_io(self) -> (Self, Self) {
                (self.clone(), self)
            }
            fn unsplit_io(_read: Self, write: Self) -> Self {
                write
            }
        }
    )*};
}

split_by_clone!(
    async_net::TcpStream,
    #[cfg(unix)]
    async_net::unix::UnixStream,
    #[cfg(feature = "async-std")]
    async_std::net::TcpStream,
    #[cfg(all(unix, feature = "async-std"))]
    async_std::os::unix::net::UnixStream,
);

/// A futures-io transport (or a handle on it), as ws-core's stream driver
/// and split halves read from and write to it.
pub struct Io<T>(pub(crate) T);

impl<T> fmt::Debug for Io<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Io").finish_non_exhaustive()
    }
}

impl<R: AsyncRead + Unpin> ReadTransport for Io<R> {
    fn poll_read_into(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut BytesMut,
    ) -> Poll<io::Result<usize>> {
        poll_read_into(&mut self.0, cx, buf)
    }
}

impl<W: AsyncWrite + Unpin> WriteTransport for Io<W> {
    fn poll_write_queued(
        &mut self,
        queue: &mut impl Transmit,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<()>> {
        poll_write_conn(&mut self.0, queue, cx)
    }

    fn poll_shutdown(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_close(cx)
    }
}

/// The timer a [`WebSocketStream`](crate::WebSocketStream) arms: async-io's
/// timer, re-armed in place when the deadline moves.
#[derive(Debug)]
pub struct Alarm {
    timer: async_io::Timer,
    /// The instant `timer` is armed for.
    at: Option<Instant>,
}

impl Default for Alarm {
    fn default() -> Self {
        Alarm {
            timer: async_io::Timer::never(),
            at: None,
        }
    }
}

impl Timer for Alarm {
    fn poll_at(&mut self, cx: &mut Context<'_>, at: Instant) -> bool {
        if self.at != Some(at) {
            self.timer.set_at(at);
            self.at = Some(at);
        }
        let fired = Pin::new(&mut self.timer).poll(cx).is_ready();
        if fired {
            self.at = None;
        }
        fired
    }
}

/// The receiving half of a split [`WebSocketStream`](crate::WebSocketStream):
/// ws-core's [`WsReader`](ws_core::rt::stream::WsReader) (`recv`, `Stream`,
/// `reunite`) over `S`'s read half. It answers pings and closes itself and
/// drives the close and keepalive timers, so keep polling it even if you
/// only send.
pub type WsReader<S> = ws_core::rt::stream::WsReader<Io<S>, Alarm>;

/// The sending half of a split [`WebSocketStream`](crate::WebSocketStream):
/// `send`, `send_text`, `send_binary`, `feed`, `flush`, `close` and
/// [`Sink`](futures_sink::Sink), written once in ws-core for every async
/// adapter (see [`SplitWriter`](ws_core::rt::halves::SplitWriter)).
pub type WsWriter<S> = ws_core::rt::stream::WsWriter<Io<S>>;

impl<S: SplitIo> SplitTransport for Io<S> {
    type ReadHalf = Io<S::ReadHalf>;
    type WriteHalf = Io<S::WriteHalf>;

    fn split_halves(self) -> (Self::ReadHalf, Self::WriteHalf) {
        let (read, write) = self.0.split_io();
        (Io(read), Io(write))
    }

    fn unsplit(read: Self::ReadHalf, write: Self::WriteHalf) -> Self {
        Io(S::unsplit_io(read.0, write.0))
    }
}
