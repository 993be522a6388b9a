//! What an async adapter's WebSocket stream runs on, written once: the
//! transport calls an adapter supplies ([`ReadTransport`],
//! [`WriteTransport`], [`Timer`]) and the whole-stream loop over them
//! ([`StreamDriver`]). The split halves ([`crate::rt::halves`]) use the same
//! traits.
//!
//! No I/O happens here: the adapter's trait impls make the calls, and the
//! driver decides which, when, and what a result means for the connection
//! (so every runtime behaves the same on errors, timeouts and the end).

use crate::connection::{Connection, State, Transmit};
use crate::error::Error;
use crate::message::Message;
use bytes::BytesMut;
use std::io;
use std::task::{Context, Poll, ready};
use std::time::Instant;

/// How many read and timer steps one receive poll takes before yielding to
/// the executor, so a peer flooding us cannot starve other tasks.
pub(crate) const POLL_BUDGET: usize = 64;

/// A transport's read direction, as the driver and the reading half use it.
pub trait ReadTransport {
    /// Reads once, appending to `buf` (whose spare capacity
    /// [`Connection::read_buf`] or
    /// [`Receiver::read_buf`](crate::Receiver::read_buf) sized); `Ok(0)` is
    /// end of stream. Cancel-safe: nothing is appended unless bytes arrived.
    fn poll_read_into(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut BytesMut,
    ) -> Poll<io::Result<usize>>;
}

/// A runtime timer, armed at the connection's next deadline.
pub trait Timer {
    /// Waits for `at` (re-arming if it changed); true once it has passed,
    /// otherwise `cx` is woken then.
    fn poll_at(&mut self, cx: &mut Context<'_>, at: Instant) -> bool;
}

/// A transport's write direction, as the halves use it.
pub trait WriteTransport {
    /// Writes everything `queue` (a [`Connection`] or a split
    /// [`Sender`](crate::Sender)) has queued, in as few writes as the
    /// transport allows, then flushes the transport. Cancel-safe: progress
    /// is recorded in `queue` as it happens.
    fn poll_write_queued(
        &mut self,
        queue: &mut impl Transmit,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<()>>;
    /// Shuts the write direction down (TCP FIN).
    fn poll_shutdown(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;
}

/// One WebSocket connection driven over a transport that reads and writes:
/// the loop inside every async adapter's `WebSocketStream`.
///
/// A receive step decodes what is buffered, fires timers, writes whatever
/// is queued (echoes, pongs, close replies), shuts the transport down once
/// the connection is over, and reads. All progress lives in the
/// [`Connection`]'s buffers, so every poll can be abandoned and resumed:
/// receiving is cancel-safe.
#[derive(Debug)]
pub struct StreamDriver<IO, T> {
    conn: Connection,
    io: IO,
    timer: T,
    /// The transport reported end of stream.
    read_eof: bool,
    /// A transport read or write failed; nothing more is done with it.
    io_failed: bool,
    /// The stream yielded its end.
    ended: bool,
}

impl<IO, T> StreamDriver<IO, T> {
    /// Drives `conn` over `io`, arming `timer` at its deadlines.
    pub fn new(conn: Connection, io: IO, timer: T) -> Self {
        StreamDriver {
            conn,
            io,
            timer,
            read_eof: false,
            io_failed: false,
            ended: false,
        }
    }

    /// The protocol state.
    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    /// The protocol state, mutably: queue messages with it (then flush).
    pub fn connection_mut(&mut self) -> &mut Connection {
        &mut self.conn
    }

    /// The transport.
    pub fn io(&self) -> &IO {
        &self.io
    }

    /// The transport, mutably (reading or writing it directly corrupts the
    /// stream; this is for socket options).
    pub fn io_mut(&mut self) -> &mut IO {
        &mut self.io
    }

    /// Whether the stream has ended (yielded `None`).
    pub fn is_terminated(&self) -> bool {
        self.ended
    }

    /// The connection, the transport and the timer (e.g. to split them).
    pub fn into_parts(self) -> (Connection, IO, T) {
        (self.conn, self.io, self.timer)
    }
}

impl<IO: ReadTransport + WriteTransport, T: Timer> StreamDriver<IO, T> {
    /// The transport failed: the connection refuses further sends and
    /// nothing queued will be written.
    fn fail_io(&mut self) {
        self.io_failed = true;
        self.conn.handle_eof();
        self.conn.discard_transmit();
    }

    /// Writes everything queued; drops it instead once the connection timed
    /// out with bytes the peer never took.
    fn poll_write_out(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.conn.should_close_transport() && self.conn.wants_write() {
            self.conn.discard_transmit();
        }
        self.io.poll_write_queued(&mut self.conn, cx)
    }

    /// Writes everything queued. After a transport failure: `Closed`.
    pub fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        if self.io_failed {
            return Poll::Ready(Err(Error::Closed));
        }
        match ready!(self.poll_write_out(cx)) {
            Ok(()) => Poll::Ready(Ok(())),
            Err(e) => {
                self.fail_io();
                Poll::Ready(Err(Error::Io(e)))
            }
        }
    }

    /// Waits until a message may be queued: writes first if the queue
    /// reached [`Config::write_buffer_limit`](crate::Config::write_buffer_limit).
    pub fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        if self.conn.buffered_transmit() >= self.conn.config().get_write_buffer_limit() {
            ready!(self.poll_flush(cx))?;
        }
        Poll::Ready(Ok(()))
    }

    /// One receive step (see the type docs): the next message, an error
    /// (yielded once), or `None` once the connection is over and the
    /// transport shut down.
    pub fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Message, Error>>> {
        for _ in 0..POLL_BUDGET {
            if self.ended {
                return Poll::Ready(None);
            }
            match self.conn.poll_message() {
                Ok(Some(msg)) => {
                    self.try_write(cx);
                    return Poll::Ready(Some(Ok(msg)));
                }
                Ok(None) => {}
                Err(e) => {
                    self.try_write(cx);
                    return Poll::Ready(Some(Err(e)));
                }
            }
            if self.io_failed {
                self.ended = true;
                return Poll::Ready(None);
            }
            if fire_timers(cx, &mut self.timer, &mut self.conn) {
                continue;
            }
            if self.conn.wants_write() {
                if let Poll::Ready(Err(e)) = self.poll_write_out(cx) {
                    // Once the connection is over, a peer that already went
                    // away is not worth reporting.
                    let was_closed = self.conn.state() == State::Closed;
                    self.fail_io();
                    self.ended = true;
                    return Poll::Ready((!was_closed).then_some(Err(Error::Io(e))));
                }
            }
            if self.conn.should_close_transport() {
                // A failed shutdown changes nothing: the stream is over.
                let _ = ready!(self.io.poll_shutdown(cx));
                self.ended = true;
                return Poll::Ready(None);
            }
            if self.read_eof {
                // Waiting for queued bytes to drain or for a timer.
                return Poll::Pending;
            }
            match ready!(self.io.poll_read_into(cx, self.conn.read_buf())) {
                Ok(0) => {
                    self.read_eof = true;
                    self.conn.handle_eof();
                }
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e)
                    if ended_after_closing(
                        &e,
                        self.conn.close_sent(),
                        self.conn.close_received(),
                    ) =>
                {
                    self.read_eof = true;
                    self.conn.handle_eof();
                }
                Err(e) => {
                    self.fail_io();
                    self.ended = true;
                    return Poll::Ready(Some(Err(Error::Io(e))));
                }
            }
        }
        // A peer flooding us must not starve other tasks.
        cx.waker().wake_by_ref();
        Poll::Pending
    }

    /// Best-effort write of queued replies while returning a message; an
    /// error ends the connection (the next receive step reports the end).
    fn try_write(&mut self, cx: &mut Context<'_>) {
        if self.conn.wants_write() {
            if let Poll::Ready(Err(_)) = self.poll_write_out(cx) {
                self.fail_io();
            }
        }
    }
}

/// What has deadlines: a [`Connection`] or a split receiver.
pub(crate) trait Deadlines {
    fn poll_timeout(&mut self, now: Instant) -> Option<Instant>;
    fn handle_timeout(&mut self, now: Instant);
}

impl Deadlines for Connection {
    fn poll_timeout(&mut self, now: Instant) -> Option<Instant> {
        Connection::poll_timeout(self, now)
    }
    fn handle_timeout(&mut self, now: Instant) {
        Connection::handle_timeout(self, now)
    }
}

impl Deadlines for crate::Receiver {
    fn poll_timeout(&mut self, now: Instant) -> Option<Instant> {
        crate::Receiver::poll_timeout(self, now)
    }
    fn handle_timeout(&mut self, now: Instant) {
        crate::Receiver::handle_timeout(self, now)
    }
}

/// Arms `timer` at `target`'s next deadline and, once it has passed, fires
/// it; true if it did (state may have changed). Shared by the stream driver
/// and the split reader.
pub(crate) fn fire_timers(
    cx: &mut Context<'_>,
    timer: &mut impl Timer,
    target: &mut impl Deadlines,
) -> bool {
    let now = Instant::now();
    let Some(at) = target.poll_timeout(now) else {
        return false;
    };
    if at > now && !timer.poll_at(cx, at) {
        return false;
    }
    // Never report a time before the deadline (timers may round).
    target.handle_timeout(Instant::now().max(at));
    true
}

/// Whether a read error is only the transport ending without its own
/// goodbye after the closing handshake: TLS without close_notify (rustls
/// reports `UnexpectedEof`). Both close frames crossed inside the session,
/// so nothing can have been cut off; it ends the stream like a clean end
/// of stream. Before the closing handshake it is an error (a truncation).
pub(crate) fn ended_after_closing(e: &io::Error, close_sent: bool, close_received: bool) -> bool {
    e.kind() == io::ErrorKind::UnexpectedEof && close_sent && close_received
}
