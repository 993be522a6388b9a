//! The halves of a split [`WebSocketStream`](crate::WebSocketStream):
//! [`WsReader`] and [`WsWriter`], with no lock on the data path.
//!
//! The same design as ws-tokio's, over futures-io: the reader owns a
//! handle for reading and a [`ws_core::Receiver`]; the writer's side (a
//! [`ws_core::Sender`] and a handle for writing) is shared through
//! [`ws_core::halves`], which decides who writes what and when each half
//! wakes the other. This file is only the futures-io calls: the read loop,
//! the timer, and the write handle's `poll_write`/`poll_close`.

use std::fmt;
use std::future::{Future, poll_fn};
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Instant;

use async_io::Timer;
use futures_core::{FusedStream, Stream};
use futures_io::{AsyncRead, AsyncWrite};
use ws_core::halves::{ReplyWriter, SplitWriter, WriteTransport, write_halves};
use ws_core::{Message, Receiver, Sender};

use crate::io::{poll_read_into, poll_write_conn};
use crate::stream::POLL_BUDGET;
use crate::{Error, Result};

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

/// The transport's write handle, as ws-core's halves write through it.
pub struct WriteIo<W>(W);

impl<W> fmt::Debug for WriteIo<W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WriteIo").finish_non_exhaustive()
    }
}

impl<W: AsyncWrite + Unpin> WriteTransport for WriteIo<W> {
    fn poll_write_queued(&mut self, tx: &mut Sender, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        poll_write_conn(&mut self.0, tx, cx)
    }

    fn poll_shutdown(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_close(cx)
    }
}

/// The write half of `S`, as the writer holds it.
pub type Write<S> = WriteIo<<S as SplitIo>::WriteHalf>;

/// Splits a stream's parts into the two halves.
pub(crate) fn split<S: SplitIo>(
    conn: ws_core::Connection,
    io: S,
    timer: Timer,
) -> (WsReader<S>, WsWriter<S>) {
    let (rx, tx) = conn.split();
    let (read_io, write_io) = io.split_io();
    let (replies, writer) = write_halves(tx, WriteIo(write_io));
    (
        WsReader {
            rx,
            io: read_io,
            timer,
            deadline: None,
            read_eof: false,
            ended: false,
            replies,
        },
        writer,
    )
}

/// The receiving half of a split [`WebSocketStream`](crate::WebSocketStream).
///
/// It answers pings and closes itself (through the writer's queue, writing
/// them when the writer is not), and drives the close and keepalive timers,
/// so keep polling it even if you only send.
pub struct WsReader<S: SplitIo> {
    rx: Receiver,
    io: S::ReadHalf,
    timer: Timer,
    /// The instant `timer` is armed for.
    deadline: Option<Instant>,
    read_eof: bool,
    ended: bool,
    replies: ReplyWriter<Write<S>>,
}

impl<S: SplitIo> fmt::Debug for WsReader<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WsReader")
            .field("rx", &self.rx)
            .field("ended", &self.ended)
            .finish_non_exhaustive()
    }
}

impl<S: SplitIo> WsReader<S> {
    /// As [`WebSocketStream::recv`](crate::WebSocketStream::recv);
    /// cancel-safe.
    pub async fn recv(&mut self) -> Option<Result<Message>> {
        poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// Puts the halves back together; fails (returning both) if they come
    /// from different streams. Messages a
    /// [`Sink::start_send`](futures_sink::Sink::start_send) could not queue
    /// yet are queued first.
    #[allow(clippy::result_large_err)]
    pub fn reunite(
        self,
        writer: WsWriter<S>,
    ) -> std::result::Result<crate::WebSocketStream<S>, (WsReader<S>, WsWriter<S>)> {
        if !self.replies.belongs_with(&writer) {
            return Err((self, writer));
        }
        let WsReader {
            rx,
            io,
            timer,
            replies,
            ..
        } = self;
        let (tx, write_io) = replies
            .reunite(writer)
            .unwrap_or_else(|_| unreachable!("checked above"));
        let conn = rx
            .reunite(tx)
            .unwrap_or_else(|_| unreachable!("the halves share their link"));
        let io = S::unsplit_io(io, write_io.0);
        Ok(crate::WebSocketStream::from_parts(conn, io, timer))
    }

    /// One receive step: decode, fire timers, write owed control replies,
    /// read.
    fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Message>>> {
        for _ in 0..POLL_BUDGET {
            if self.ended {
                return Poll::Ready(None);
            }
            match self.rx.poll_message() {
                Ok(Some(msg)) => {
                    self.replies.write_replies(&self.rx, cx);
                    return Poll::Ready(Some(Ok(msg)));
                }
                Ok(None) => {}
                Err(e) => {
                    self.replies.write_replies(&self.rx, cx);
                    self.replies.wake_writer();
                    return Poll::Ready(Some(Err(e)));
                }
            }
            self.replies.register(cx);
            if self.poll_timer(cx) {
                continue;
            }
            self.replies.write_replies(&self.rx, cx);
            if self.rx.should_close_transport() {
                self.ended = true;
                self.replies.wake_writer();
                return Poll::Ready(None);
            }
            if self.read_eof {
                // Waiting for the close frame to be written, or a timer.
                return Poll::Pending;
            }
            match ready!(poll_read_into(&mut self.io, cx, self.rx.read_buf())) {
                Ok(0) => {
                    self.read_eof = true;
                    self.rx.handle_eof();
                    self.replies.wake_writer();
                }
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.rx.handle_eof();
                    self.ended = true;
                    self.replies.wake_writer();
                    return Poll::Ready(Some(Err(Error::Io(e))));
                }
            }
        }
        // A peer flooding us must not starve other tasks.
        cx.waker().wake_by_ref();
        Poll::Pending
    }

    /// Fires the receiver's timers; true if one fired.
    fn poll_timer(&mut self, cx: &mut Context<'_>) -> bool {
        let Some(at) = self.rx.poll_timeout(Instant::now()) else {
            self.deadline = None;
            return false;
        };
        if self.deadline != Some(at) {
            self.timer.set_at(at);
            self.deadline = Some(at);
        }
        if Pin::new(&mut self.timer).poll(cx).is_pending() {
            return false;
        }
        self.deadline = None;
        self.rx.handle_timeout(Instant::now().max(at));
        true
    }
}

impl<S: SplitIo> Stream for WsReader<S> {
    type Item = Result<Message>;

    /// As [`WsReader::recv`]; cancel-safe.
    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().poll_recv(cx)
    }
}

impl<S: SplitIo> FusedStream for WsReader<S> {
    fn is_terminated(&self) -> bool {
        self.ended
    }
}

/// The sending half of a split [`WebSocketStream`](crate::WebSocketStream):
/// `send`, `feed`, `flush`, `close` and [`Sink`](futures_sink::Sink), written once in ws-core
/// for every async adapter (see [`SplitWriter`]).
pub type WsWriter<S> = SplitWriter<Write<S>>;
