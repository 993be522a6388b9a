//! The runtime-independent part of an async adapter's split halves: the
//! reading half's receive loop ([`SplitReader`]), the writing half's
//! operations ([`SplitWriter`]), and the write side they share in a
//! [`Handoff`].
//!
//! An adapter supplies only its runtime's calls: one read
//! ([`ReadTransport`]), a write and a shutdown ([`WriteTransport`]), and a
//! timer ([`Timer`]). Everything about who writes what, and when each half
//! wakes the other, lives here once.
//!
//! - The writer claims the write side for each send or flush (one
//!   compare-and-swap); a message a `Sink::start_send` cannot queue at that
//!   instant (the reader holds the write side) is staged and queued, in
//!   order, by the next operation, so `start_send` never waits.
//! - The reader owns the [`Receiver`] and the transport's read direction:
//!   receiving a data message touches nothing the writer uses. It claims the
//!   write side only when the receiver reports control replies
//!   ([`Receiver::control_pending`]) or when its own last write of them was
//!   incomplete; so pongs leave even while the application's writing task
//!   is idle.
//! - The writer wakes the reader when it sends a close (the reader's close
//!   timer starts) and once the close frame is written (the reader may be
//!   waiting for that to end); the reader wakes the writer when the
//!   connection ends under it (a flush waiting on a vanished peer stops).

use crate::close::CloseCode;
use crate::connection::Connection;
use crate::connection::split::{Receiver, Sender};
use crate::error::Error;
use crate::message::Message;
use crate::rt::handoff::{Handoff, HandoffGuard, Side};
use std::collections::VecDeque;
use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use crate::rt::driver::{POLL_BUDGET, ended_after_closing, fire_timers};
pub use crate::rt::driver::{ReadTransport, Timer, WriteTransport};

/// The [`Sender`] and the transport's write direction: what the writer owns
/// and lends the reader for control replies.
#[derive(Debug)]
pub struct WriteSide<W> {
    tx: Sender,
    io: W,
    /// The write direction was shut down.
    shut_down: bool,
    /// A write failed; nothing more is written.
    io_failed: bool,
}

impl<W: WriteTransport> WriteSide<W> {
    /// Writes everything queued (control replies included), then shuts the
    /// write direction down if the connection is over.
    fn poll_write_out(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        if self.io_failed {
            // Replies the reader handed over since cannot leave either.
            self.tx.discard_transmit();
            return Poll::Ready(Err(Error::Closed));
        }
        if self.tx.should_close_transport() && self.tx.wants_write() {
            // Timed out with bytes the peer never took: drop them.
            self.tx.discard_transmit();
        }
        if let Err(e) = ready!(self.io.poll_write_queued(&mut self.tx, cx)) {
            self.io_failed = true;
            self.tx.discard_transmit();
            return Poll::Ready(Err(Error::Io(e)));
        }
        if !self.shut_down && self.tx.should_close_transport() {
            // A failed shutdown changes nothing: the connection is over.
            let _ = ready!(self.io.poll_shutdown(cx));
            self.shut_down = true;
        }
        Poll::Ready(Ok(()))
    }

    /// Writes first if the queue reached the write buffer limit.
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        if self.tx.buffered_transmit() >= self.tx.config().get_write_buffer_limit() {
            ready!(self.poll_write_out(cx))?;
        }
        Poll::Ready(Ok(()))
    }
}

type Shared<W> = Arc<Handoff<WriteSide<W>>>;

/// Splits `conn` into the two async halves over a transport's read and
/// write directions, with `timer` for the reader's deadlines.
pub fn split_halves<R, T, W>(
    conn: Connection,
    read: R,
    write: W,
    timer: T,
) -> (SplitReader<R, T, W>, SplitWriter<W>) {
    let (rx, tx) = conn.split();
    let shared = Arc::new(Handoff::new(WriteSide {
        tx,
        io: write,
        shut_down: false,
        io_failed: false,
    }));
    (
        SplitReader {
            rx,
            io: read,
            timer,
            read_eof: false,
            ended: false,
            replies: ReplyWriter {
                shared: shared.clone(),
                owes_write: false,
            },
        },
        SplitWriter {
            shared,
            staged: VecDeque::new(),
            staged_error: None,
        },
    )
}

/// The receiving half of a split WebSocket stream: the receive loop every
/// async adapter's `WsReader` runs.
///
/// It answers pings and closes itself (through the writer's queue, writing
/// them when the writer is not), and drives the close and keepalive timers,
/// so keep polling it even if you only send.
pub struct SplitReader<R, T, W> {
    rx: Receiver,
    io: R,
    timer: T,
    read_eof: bool,
    ended: bool,
    replies: ReplyWriter<W>,
}

impl<R: ReadTransport, T: Timer, W: WriteTransport> SplitReader<R, T, W> {
    /// Receives the next message; pings and closes are answered on the way.
    /// Yields the peer's `Close`, then `None` once the closing handshake is
    /// over. An error (protocol violation, timeout, I/O) is yielded once.
    ///
    /// Cancel-safe: every byte read is in the receiver's buffer before a
    /// future can be dropped.
    pub async fn recv(&mut self) -> Option<Result<Message, Error>> {
        poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// Whether the stream has ended (yielded `None`).
    pub fn is_terminated(&self) -> bool {
        self.ended
    }

    /// One receive step: decode, fire timers, write owed control replies,
    /// read; as [`recv`](Self::recv).
    pub fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Message, Error>>> {
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
            // Registered before the checks below, so a close the writer
            // sends from now on wakes this task (and one sent before is seen
            // by the timer step).
            self.replies.register(cx);
            if fire_timers(cx, &mut self.timer, &mut self.rx) {
                continue;
            }
            self.replies.write_replies(&self.rx, cx);
            if self.rx.should_close_transport() {
                // The connection is over: shut the write direction down
                // unless the writer did (its `close` returns once the close
                // frame is written), so that a TLS transport sends
                // close_notify rather than just being dropped.
                ready!(self.replies.poll_shut_down(cx));
                self.ended = true;
                // A writer waiting on a peer that is gone learns it.
                self.replies.wake_writer();
                return Poll::Ready(None);
            }
            if self.read_eof {
                // Waiting for the close frame to be written, or a timer.
                return Poll::Pending;
            }
            match ready!(self.io.poll_read_into(cx, self.rx.read_buf())) {
                Ok(0) => {
                    self.read_eof = true;
                    self.rx.handle_eof();
                    self.replies.wake_writer();
                }
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e)
                    if ended_after_closing(&e, self.rx.close_sent(), self.rx.close_received()) =>
                {
                    self.read_eof = true;
                    self.rx.handle_eof();
                    self.replies.wake_writer();
                }
                Err(e) => {
                    self.rx.handle_eof();
                    self.ended = true;
                    self.replies.wake_writer();
                    return Poll::Ready(Some(Err(Error::Io(e))));
                }
            }
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    }

    /// Whether `writer` is this reader's other half.
    pub fn belongs_with(&self, writer: &SplitWriter<W>) -> bool {
        self.replies.belongs_with(writer)
    }

    /// Joins the halves back into one connection, returning it with the
    /// read direction, the write direction and the timer (messages a
    /// `start_send` staged are queued first). Gives the halves back if they
    /// come from different connections.
    #[allow(clippy::result_large_err, clippy::type_complexity)]
    pub fn reunite(
        self,
        writer: SplitWriter<W>,
    ) -> Result<(Connection, R, W, T), (Self, SplitWriter<W>)> {
        if !self.belongs_with(&writer) {
            return Err((self, writer));
        }
        let (tx, write) = self.replies.reunite(writer);
        let conn = self
            .rx
            .reunite(tx)
            .unwrap_or_else(|_| unreachable!("the halves share their link"));
        Ok((conn, self.io, write, self.timer))
    }
}

impl<R: ReadTransport + Unpin, T: Timer + Unpin, W: WriteTransport> futures_core::Stream
    for SplitReader<R, T, W>
{
    type Item = Result<Message, Error>;

    /// Cancel-safe, as [`SplitReader::recv`].
    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().poll_recv(cx)
    }
}

impl<R: ReadTransport + Unpin, T: Timer + Unpin, W: WriteTransport> futures_core::FusedStream
    for SplitReader<R, T, W>
{
    fn is_terminated(&self) -> bool {
        self.ended
    }
}

/// The reading half's handle on the write side: writes the control replies
/// its [`Receiver`] handed over, when the writer is not around to.
struct ReplyWriter<W> {
    shared: Shared<W>,
    /// Control replies this half started writing are not all written yet.
    owes_write: bool,
}

impl<W: WriteTransport> ReplyWriter<W> {
    /// Writes the control replies `rx` handed to the sender, unless the
    /// writer is doing it: claims the write side (or is woken when the writer
    /// releases it, having written them) and writes everything queued. A
    /// write that would block leaves the bytes queued and arranges for `cx`
    /// to be woken on writability; an error ends the write side (the writer
    /// sees it), not the reader.
    fn write_replies(&mut self, rx: &Receiver, cx: &mut Context<'_>) {
        if !rx.control_pending() && !self.owes_write {
            return;
        }
        let Poll::Ready(mut side) = self.shared.poll_claim(Side::Reader, cx) else {
            return;
        };
        // The writer may be waiting for writability on this same transport,
        // which keeps one waker per direction: poll with a waker that wakes
        // both halves, so neither wakeup is displaced.
        self.shared.register(Side::Reader, cx);
        let mut both = Context::from_waker(self.shared.both());
        self.owes_write = side.poll_write_out(&mut both).is_pending();
        drop(side);
        if !self.owes_write {
            // A writer that waited for writability may find its bytes
            // written by us and no readiness edge left to wake it.
            self.shared.wake(Side::Writer);
        }
    }

    /// Registers `cx` to be woken by the writer's lifecycle news (a close
    /// sent, the close frame written). Call it before checking
    /// [`Receiver::poll_timeout`] and [`Receiver::should_close_transport`],
    /// so that news arriving after the check still wakes the task.
    fn register(&self, cx: &mut Context<'_>) {
        self.shared.register(Side::Reader, cx);
    }

    /// Writes what is still queued and shuts the write direction down, once
    /// the connection is over, unless that was done or writing failed.
    /// Pending while the writer holds the write side (it wakes us on
    /// release) or the transport cannot take the bytes yet.
    fn poll_shut_down(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let Poll::Ready(mut side) = self.shared.poll_claim(Side::Reader, cx) else {
            return Poll::Pending;
        };
        if side.shut_down || side.io_failed {
            return Poll::Ready(());
        }
        // As in `write_replies`: a waker for both halves.
        self.shared.register(Side::Reader, cx);
        let mut both = Context::from_waker(self.shared.both());
        let done = side.poll_write_out(&mut both).is_ready();
        drop(side);
        self.owes_write = !done;
        if done { Poll::Ready(()) } else { Poll::Pending }
    }

    /// Wakes the writer: the connection ended under it (end of stream, an
    /// error, a timeout, the closing handshake finished).
    fn wake_writer(&self) {
        self.shared.wake(Side::Writer);
    }

    /// Whether `writer` shares this write side.
    fn belongs_with(&self, writer: &SplitWriter<W>) -> bool {
        Arc::ptr_eq(&self.shared, &writer.shared)
    }

    /// Takes the write side back from both handles: the [`Sender`] (with any
    /// staged messages queued) and the transport's write direction. The
    /// caller checked [`belongs_with`](Self::belongs_with).
    fn reunite(self, mut writer: SplitWriter<W>) -> (Sender, W) {
        {
            // Both handles are here and no guard outlives an operation.
            let mut side = self
                .shared
                .try_claim()
                .expect("nobody holds the write side");
            // A staged message the connection refuses here (it closed) is
            // dropped, as it would be had the writer been dropped unflushed.
            writer.unstage(&mut side);
        }
        drop(writer);
        let Ok(cell) = Arc::try_unwrap(self.shared) else {
            unreachable!("the two handles were the only owners")
        };
        let side = cell.into_inner();
        (side.tx, side.io)
    }
}

/// The sending half of a split WebSocket stream: each async adapter's
/// `WsWriter` is this type over its transport's write half.
///
/// Send with [`send`](Self::send) / [`feed`](Self::feed) /
/// [`flush`](Self::flush), or use it as a [`Sink`](futures_sink::Sink) of
/// messages. Every operation claims the write side with one
/// compare-and-swap (see [`Handoff`]); the reader half answers pings and
/// closes through the same queue, writing the replies itself when this half
/// is idle.
pub struct SplitWriter<W> {
    shared: Shared<W>,
    /// Messages [`start_send`](Self::start_send) accepted while the reader
    /// held the write side; queued, in order, before anything else.
    staged: VecDeque<Message>,
    /// An error queueing a staged message, reported by the next operation.
    staged_error: Option<Error>,
}

impl<W: WriteTransport> SplitWriter<W> {
    /// Claims the write side, first queueing what `start_send` staged.
    fn poll_claim(&mut self, cx: &mut Context<'_>) -> Poll<Result<Guard<'_, W>, Error>> {
        let mut side = ready!(self.shared.poll_claim(Side::Writer, cx));
        while let Some(msg) = self.staged.pop_front() {
            if let Err(e) = side.tx.send(&msg) {
                self.staged_error.get_or_insert(e);
            }
        }
        match self.staged_error.take() {
            Some(e) => Poll::Ready(Err(e)),
            None => Poll::Ready(Ok(side)),
        }
    }

    fn unstage(&mut self, side: &mut WriteSide<W>) {
        while let Some(msg) = self.staged.pop_front() {
            if let Err(e) = side.tx.send(&msg) {
                self.staged_error.get_or_insert(e);
            }
        }
    }

    /// Waits until a message may be queued: writes first if the queue
    /// reached [`Config::write_buffer_limit`](crate::Config::write_buffer_limit).
    pub fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        let mut side = ready!(self.poll_claim(cx))?;
        side.poll_ready(cx)
    }

    /// Queues `msg` and writes everything queued.
    ///
    /// Not cancel-safe: if dropped, the message may be queued but unwritten
    /// (the next `flush` or `send` writes it).
    pub async fn send(&mut self, msg: Message) -> Result<(), Error> {
        self.feed(msg).await?;
        self.flush().await
    }

    /// Sends a text message (and flushes it), as on every runtime.
    pub async fn send_text(&mut self, text: &str) -> Result<(), Error> {
        self.send(Message::text(text)).await
    }

    /// Sends a binary message (and flushes it), as on every runtime.
    pub async fn send_binary(&mut self, data: &[u8]) -> Result<(), Error> {
        self.send(Message::binary(bytes::Bytes::copy_from_slice(data)))
            .await
    }

    /// Queues `msg` without writing, so many messages leave in one write;
    /// writes first only if the queue reached
    /// [`Config::write_buffer_limit`](crate::Config::write_buffer_limit).
    ///
    /// Not cancel-safe: if dropped while waiting for that write, the message
    /// was not queued.
    pub async fn feed(&mut self, msg: Message) -> Result<(), Error> {
        poll_fn(|cx| self.poll_feed(cx, &msg)).await
    }

    /// Writes everything queued.
    ///
    /// Not cancel-safe: if dropped, part of the queue may be written; the
    /// rest stays queued, in order.
    pub async fn flush(&mut self) -> Result<(), Error> {
        poll_fn(|cx| self.poll_flush(cx)).await
    }

    /// Sends a close frame with `code` and `reason` (unless one was sent)
    /// and flushes it. The peer's reply arrives on the reading half, which
    /// ends once the closing handshake is over (bounded by the close
    /// timeout, which the reader drives).
    ///
    /// Not cancel-safe: if dropped, the close frame stays queued.
    pub async fn close(&mut self, code: CloseCode, reason: &str) -> Result<(), Error> {
        poll_fn(|cx| self.poll_close(cx, code, reason)).await
    }

    /// [`poll_ready`](Self::poll_ready), then queues `msg`: an async `feed`.
    pub fn poll_feed(&mut self, cx: &mut Context<'_>, msg: &Message) -> Poll<Result<(), Error>> {
        let mut side = ready!(self.poll_claim(cx))?;
        ready!(side.poll_ready(cx))?;
        Poll::Ready(side.tx.send(msg))
    }

    /// Queues `msg` without waiting (`Sink::start_send`): if the reader
    /// holds the write side at this instant, the message is staged and
    /// queued by the next operation.
    pub fn start_send(&mut self, msg: Message) -> Result<(), Error> {
        if self.staged.is_empty() {
            if let Some(mut side) = self.shared.try_claim() {
                return side.tx.send(&msg);
            }
        }
        self.staged.push_back(msg);
        Ok(())
    }

    /// Writes everything queued.
    pub fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
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

    /// Queues a close frame with `code` and `reason` unless one was sent,
    /// then flushes. The reply arrives on the reader.
    pub fn poll_close(
        &mut self,
        cx: &mut Context<'_>,
        code: CloseCode,
        reason: &str,
    ) -> Poll<Result<(), Error>> {
        {
            let mut side = ready!(self.poll_claim(cx))?;
            if !side.tx.close_sent() {
                side.tx.close(code, reason)?;
                drop(side);
                // The reader's close timer starts now.
                self.shared.wake(Side::Reader);
            }
        }
        self.poll_flush(cx)
    }
}

type Guard<'a, W> = HandoffGuard<'a, WriteSide<W>>;

impl<W: WriteTransport> futures_sink::Sink<Message> for SplitWriter<W> {
    type Error = Error;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        SplitWriter::poll_ready(self.get_mut(), cx)
    }

    /// Queues `item`. Never waits: if the reader holds the write side for a
    /// control reply at this instant, the message is staged and queued, in
    /// order, by the next poll.
    fn start_send(self: Pin<&mut Self>, item: Message) -> Result<(), Error> {
        SplitWriter::start_send(self.get_mut(), item)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        SplitWriter::poll_flush(self.get_mut(), cx)
    }

    /// Sends a normal (1000) close frame unless one was sent, and flushes;
    /// the reply arrives on the reading half.
    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        SplitWriter::poll_close(self.get_mut(), cx, CloseCode::NORMAL, "")
    }
}

impl<R, T, W> std::fmt::Debug for SplitReader<R, T, W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SplitReader")
            .field("rx", &self.rx)
            .field("read_eof", &self.read_eof)
            .field("ended", &self.ended)
            .field("owes_write", &self.replies.owes_write)
            .finish_non_exhaustive()
    }
}

impl<W> std::fmt::Debug for SplitWriter<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SplitWriter")
            .field("staged", &self.staged.len())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests;
