//! The halves of a split [`WebSocketStream`](crate::WebSocketStream):
//! [`WsReader`] and [`WsWriter`], with no lock on the data path.
//!
//! The same design as ws-tokio's, over futures-io:
//!
//! - The reader owns a handle for reading and a [`ws_core::Receiver`]:
//!   receiving touches nothing the writer uses.
//! - The writer side, a [`ws_core::Sender`] and a handle for writing, sits
//!   in a [`ws_core::handoff::Handoff`]. The writer claims it for each send
//!   or flush with one compare-and-swap; the reader claims it only to write
//!   a control reply (a pong, a close reply) while the writer's task is
//!   elsewhere. A claim never blocks a thread: it returns `Pending`, and the
//!   holder's release wakes the claimer.
//! - Each half wakes the other only on lifecycle changes: the writer wakes
//!   the reader when it sends a close (to start the close timer) and when
//!   the close frame is written; the reader wakes the writer when the
//!   connection ends under it.

use std::collections::VecDeque;
use std::fmt;
use std::future::{Future, poll_fn};
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Instant;

use async_io::Timer;
use futures_core::{FusedStream, Stream};
use futures_io::{AsyncRead, AsyncWrite};
use futures_sink::Sink;
use ws_core::handoff::{Handoff, HandoffGuard, Side};
use ws_core::{CloseCode, Message, Receiver, Sender};

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

/// What the writer owns and lends the reader for control replies.
pub(crate) struct WriteSide<W> {
    tx: Sender,
    io: W,
    /// The write direction was shut down.
    shut_down: bool,
    /// A write failed; nothing more is written.
    io_failed: bool,
}

impl<W: AsyncWrite + Unpin> WriteSide<W> {
    /// Writes everything queued (control replies included), then shuts the
    /// write direction down if the connection is over.
    fn poll_write_out(&mut self, cx: &mut Context<'_>) -> Poll<Result<()>> {
        if self.io_failed {
            return Poll::Ready(Err(Error::Closed));
        }
        if self.tx.should_close_transport() && self.tx.wants_write() {
            // Timed out with bytes the peer never took: drop them.
            self.tx.discard_transmit();
        }
        if let Err(e) = ready!(poll_write_conn(&mut self.io, &mut self.tx, cx)) {
            self.io_failed = true;
            self.tx.discard_transmit();
            return Poll::Ready(Err(Error::Io(e)));
        }
        if !self.shut_down && self.tx.should_close_transport() {
            // A failed shutdown changes nothing: the connection is over.
            let _ = ready!(Pin::new(&mut self.io).poll_close(cx));
            self.shut_down = true;
        }
        Poll::Ready(Ok(()))
    }

    /// Writes first if the queue reached the write buffer limit.
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<()>> {
        if self.tx.buffered_transmit() >= self.tx.config().get_write_buffer_limit() {
            ready!(self.poll_write_out(cx))?;
        }
        Poll::Ready(Ok(()))
    }
}

type Shared<S> = Arc<Handoff<WriteSide<<S as SplitIo>::WriteHalf>>>;

/// Splits a stream's parts into the two halves.
pub(crate) fn split<S: SplitIo>(
    conn: ws_core::Connection,
    io: S,
    timer: Timer,
) -> (WsReader<S>, WsWriter<S>) {
    let (rx, tx) = conn.split();
    let (read_io, write_io) = io.split_io();
    let shared = Arc::new(Handoff::new(WriteSide {
        tx,
        io: write_io,
        shut_down: false,
        io_failed: false,
    }));
    (
        WsReader {
            rx,
            io: read_io,
            timer,
            deadline: None,
            read_eof: false,
            ended: false,
            owes_write: false,
            shared: shared.clone(),
        },
        WsWriter {
            shared,
            staged: VecDeque::new(),
            staged_error: None,
        },
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
    /// Control replies this half started writing are not all written yet.
    owes_write: bool,
    shared: Shared<S>,
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
    /// from different streams. Messages a [`Sink::start_send`] could not
    /// queue yet are queued first.
    #[allow(clippy::result_large_err)]
    pub fn reunite(
        self,
        mut writer: WsWriter<S>,
    ) -> std::result::Result<crate::WebSocketStream<S>, (WsReader<S>, WsWriter<S>)> {
        if !Arc::ptr_eq(&self.shared, &writer.shared) {
            return Err((self, writer));
        }
        // A staged message the connection refuses here (it closed) is
        // dropped, as it would be had the writer been dropped unflushed.
        writer.unstage_now();
        drop(writer);
        let side = match Arc::try_unwrap(self.shared) {
            Ok(cell) => cell.into_inner(),
            Err(_) => unreachable!("both halves were given and the writer was dropped"),
        };
        let conn = match self.rx.reunite(side.tx) {
            Ok(conn) => conn,
            Err(_) => unreachable!("the halves share their link"),
        };
        let io = S::unsplit_io(self.io, side.io);
        Ok(crate::WebSocketStream::from_parts(conn, io, self.timer))
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
                    self.write_replies(cx);
                    return Poll::Ready(Some(Ok(msg)));
                }
                Ok(None) => {}
                Err(e) => {
                    self.write_replies(cx);
                    self.shared.wake(Side::Writer);
                    return Poll::Ready(Some(Err(e)));
                }
            }
            // Registered before the checks below, so a close the writer
            // sends from now on wakes this task (and one sent before is seen
            // by `poll_timer`).
            self.shared.register(Side::Reader, cx);
            if self.poll_timer(cx) {
                continue;
            }
            self.write_replies(cx);
            if self.rx.should_close_transport() {
                self.ended = true;
                // A writer waiting on a peer that is gone learns it.
                self.shared.wake(Side::Writer);
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
                    self.shared.wake(Side::Writer);
                }
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.rx.handle_eof();
                    self.ended = true;
                    self.shared.wake(Side::Writer);
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
        if self.rx.should_close_transport() {
            self.shared.wake(Side::Writer);
        }
        true
    }

    /// Writes the control replies the receiver handed to the sender, unless
    /// the writer is doing it: claim the write side (or be woken when the
    /// writer releases it, having written them) and write everything queued.
    fn write_replies(&mut self, cx: &mut Context<'_>) {
        if !self.rx.control_pending() && !self.owes_write {
            return;
        }
        let Poll::Ready(mut side) = self.shared.poll_claim(Side::Reader, cx) else {
            return;
        };
        // Pending: the bytes stay queued and writability wakes this task. An
        // error ends the write side; the reader goes on until its own end.
        self.owes_write = side.poll_write_out(cx).is_pending();
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

/// The sending half of a split [`WebSocketStream`](crate::WebSocketStream).
pub struct WsWriter<S: SplitIo> {
    shared: Shared<S>,
    /// Messages [`Sink::start_send`] accepted while the reader held the
    /// write side for a control reply; queued, in order, before anything else.
    staged: VecDeque<Message>,
    /// An error queueing a staged message, reported by the next poll.
    staged_error: Option<Error>,
}

impl<S: SplitIo> fmt::Debug for WsWriter<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WsWriter")
            .field("staged", &self.staged.len())
            .finish_non_exhaustive()
    }
}

impl<S: SplitIo> WsWriter<S> {
    /// Queues `msg` and flushes; as
    /// [`WebSocketStream::send`](crate::WebSocketStream::send) (not
    /// cancel-safe).
    pub async fn send(&mut self, msg: Message) -> Result<()> {
        self.feed(msg).await?;
        self.flush().await
    }

    /// Queues `msg`, flushing first only above the write buffer limit. Not
    /// cancel-safe: if dropped while waiting, the message was not queued.
    pub async fn feed(&mut self, msg: Message) -> Result<()> {
        poll_fn(|cx| {
            let mut side = ready!(self.poll_claim(cx))?;
            ready!(side.poll_ready(cx))?;
            Poll::Ready(side.tx.send(&msg))
        })
        .await
    }

    /// Writes everything queued (no byte lost if dropped early).
    pub async fn flush(&mut self) -> Result<()> {
        poll_fn(|cx| self.poll_flush_inner(cx)).await
    }

    /// Sends a close frame with `code` and `reason` and flushes it. Unlike
    /// [`WebSocketStream::close`](crate::WebSocketStream::close) it does not
    /// wait for the reply: the [`WsReader`] receives it and sees the stream
    /// end (bounded by the close timeout, which the reader drives). Not
    /// cancel-safe.
    pub async fn close(&mut self, code: CloseCode, reason: &str) -> Result<()> {
        poll_fn(|cx| {
            let mut side = ready!(self.poll_claim(cx))?;
            Poll::Ready(side.tx.close(code, reason))
        })
        .await?;
        self.shared.wake(Side::Reader);
        self.flush().await
    }

    /// Claims the write side, first queueing what `start_send` staged.
    fn poll_claim(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Result<HandoffGuard<'_, WriteSide<S::WriteHalf>>>> {
        let mut side = ready!(self.shared.poll_claim(Side::Writer, cx));
        while let Some(msg) = self.staged.pop_front() {
            if let Err(e) = side.tx.send(&msg) {
                self.staged_error.get_or_insert(e);
            }
        }
        if let Some(e) = self.staged_error.take() {
            return Poll::Ready(Err(e));
        }
        Poll::Ready(Ok(side))
    }

    /// Queues staged messages when the write side is free right now.
    fn unstage_now(&mut self) {
        if self.staged.is_empty() {
            return;
        }
        let Some(mut side) = self.shared.try_claim() else {
            return;
        };
        while let Some(msg) = self.staged.pop_front() {
            if let Err(e) = side.tx.send(&msg) {
                self.staged_error.get_or_insert(e);
            }
        }
    }

    fn poll_flush_inner(&mut self, cx: &mut Context<'_>) -> Poll<Result<()>> {
        let mut side = ready!(self.poll_claim(cx))?;
        let r = side.poll_write_out(cx);
        let closing = side.tx.close_sent();
        drop(side);
        if r.is_pending() {
            // Lets the reader wake us when the connection ends under us.
            self.shared.register(Side::Writer, cx);
        } else if closing {
            // The close frame is written: the reader may be waiting for it.
            self.shared.wake(Side::Reader);
        }
        r
    }
}

impl<S: SplitIo> Sink<Message> for WsWriter<S> {
    type Error = Error;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        let this = self.get_mut();
        let mut side = ready!(this.poll_claim(cx))?;
        side.poll_ready(cx)
    }

    /// Queues `item`. Never waits: if the reader holds the write side for a
    /// control reply at this instant, the message is staged and queued, in
    /// order, by the next poll.
    fn start_send(self: Pin<&mut Self>, item: Message) -> Result<()> {
        let this = self.get_mut();
        if this.staged.is_empty() {
            if let Some(mut side) = this.shared.try_claim() {
                return side.tx.send(&item);
            }
        }
        this.staged.push_back(item);
        Ok(())
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        self.get_mut().poll_flush_inner(cx)
    }

    /// Sends a normal close (1000) if none was sent, and flushes; the reply
    /// arrives through the [`WsReader`].
    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        let this = self.get_mut();
        {
            let mut side = ready!(this.poll_claim(cx))?;
            if !side.tx.close_sent() {
                side.tx.close(CloseCode::NORMAL, "")?;
                drop(side);
                this.shared.wake(Side::Reader);
            }
        }
        this.poll_flush_inner(cx)
    }
}
