//! [`WebSocketStream`]: one WebSocket connection over a blocking transport,
//! and its [`WsReader`]/[`WsWriter`] halves for reading and writing from two
//! threads.
//!
//! Everything protocol-related is [`ws_core::Connection`] (split into a
//! [`ws_core::Receiver`] and a [`ws_core::Sender`] for the halves), and the
//! receive loops are ws-core's too: the stream runs
//! [`StreamDriver`](ws_core::rt::driver::StreamDriver) and the halves run
//! [`ws_core::rt::halves`], each operation on the calling thread with
//! [`ws_core::rt::block`]. This module only supplies the transport: reads
//! and writes that complete before they return, with the connection's next
//! deadline as the read timeout (`transport`).

mod shared;
mod split;
mod transport;

use std::future::poll_fn;
use std::io::{self, Read, Write};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use ws_core::rt::block::{self, BlockTimer, Stop};
use ws_core::rt::driver::StreamDriver;
use ws_core::{CloseCode, Config, Connection, Error, Message, Role};

use crate::Result;

pub(crate) use shared::{Shared, SharedState, Step};
pub use split::{WsReader, WsWriter};
use transport::Io;
pub use transport::{NoReadTimeout, SetReadTimeout};
pub(crate) use transport::{TimeoutCache, is_timeout, read_into};

/// A WebSocket connection over a blocking transport `S` (after the opening
/// handshake; see [`crate::accept`] and [`crate::connect`] to get one).
///
/// Reads block until a whole message arrived; writes are batched: [`feed`]
/// only queues a message in the connection's output buffer, [`flush`] writes
/// everything queued in as few `write` calls as the transport allows.
/// Pings are answered and close frames replied to automatically while
/// reading.
///
/// The I/O methods need `S: Read + Write + SetReadTimeout`; see
/// [`SetReadTimeout`] for how timers work and for transports without
/// timeouts.
///
/// [`feed`]: Self::feed
/// [`flush`]: Self::flush
#[derive(Debug)]
pub struct WebSocketStream<S> {
    inner: StreamDriver<Io<S>, BlockTimer>,
    read_timeout: Option<Duration>,
}

/// The tungstenite-style name of [`WebSocketStream`].
pub type WebSocket<S> = WebSocketStream<S>;

impl<S> WebSocketStream<S> {
    /// Wraps a transport whose opening handshake was done elsewhere;
    /// `buffered` holds bytes that arrived after the handshake (they are
    /// decoded first).
    pub fn from_raw(io: S, role: Role, config: Config, buffered: BytesMut) -> Self {
        let conn = Connection::with_buffered(role, config, buffered);
        WebSocketStream {
            inner: StreamDriver::new(conn, Io::new(io), BlockTimer),
            read_timeout: None,
        }
    }

    /// The protocol state (for inspection: state, close frames, buffered
    /// bytes).
    pub fn connection(&self) -> &ws_core::Connection {
        self.inner.connection()
    }

    /// The transport.
    pub fn get_ref(&self) -> &S {
        &self.inner.io().io
    }

    /// The transport, mutably. Reading or writing it directly corrupts the
    /// WebSocket stream; its read timeout is managed by [`read`](Self::read)
    /// (use [`set_read_timeout`](Self::set_read_timeout) instead).
    pub fn get_mut(&mut self) -> &mut S {
        let io = self.inner.io_mut();
        // The caller may change the transport's timeout behind our back.
        io.timeouts = TimeoutCache::default();
        &mut io.io
    }

    /// Makes [`read`](Self::read) give up with an `Error::Io` of kind
    /// `TimedOut` when no complete message arrived within `timeout` (`None`,
    /// the default: wait as long as it takes). Nothing is lost when it does:
    /// partial frames stay buffered in the connection and the next `read`
    /// continues where this one stopped, so a timed-out read is the blocking
    /// counterpart of a cancelled async `recv`.
    pub fn set_read_timeout(&mut self, timeout: Option<Duration>) {
        self.read_timeout = timeout.filter(|d| !d.is_zero());
    }
}

impl<S: Read + Write + SetReadTimeout> WebSocketStream<S> {
    /// The next message, `None` once the connection has ended: the same
    /// contract as `recv` on every runtime ([`read`](Self::read) is the same
    /// with the end reported as `Err(Error::Closed)`, as tungstenite's).
    pub fn recv(&mut self) -> Option<Result<Message>> {
        end_of_stream(self.read())
    }

    /// Blocks until the next message arrives, answering pings and close
    /// frames on the way and firing timers when they are due.
    ///
    /// The peer's `Message::Close` is returned like any message; after it
    /// (or any error that ends the connection) every call returns
    /// `Err(Error::Closed)`. A timeout error from the transport itself (a
    /// non-blocking socket, or the timeout of
    /// [`set_read_timeout`](Self::set_read_timeout)) is returned without
    /// losing anything; calling `read` again resumes.
    pub fn read(&mut self) -> Result<Message> {
        let deadline = self.read_timeout.map(|d| Instant::now() + d);
        self.read_until(deadline)
    }

    fn read_until(&mut self, deadline: Option<Instant>) -> Result<Message> {
        let r = block::block_on_until(poll_fn(|cx| self.inner.poll_recv(cx)), deadline);
        if matches!(r, Ok(Some(Err(_)))) && self.connection().should_close_transport() {
            // The error ended the connection: the peer sees the end now,
            // not at the next read.
            self.inner.io_mut().shut_down();
        }
        received(r)
    }

    /// Queues `msg` and writes out everything queued.
    ///
    /// Sending `Message::Close` starts the closing handshake; keep reading
    /// to finish it, or use [`close`](Self::close).
    pub fn send(&mut self, msg: Message) -> Result<()> {
        self.feed(msg)?;
        self.flush()
    }

    /// Queues `msg` without writing, so many messages leave in one write;
    /// writes only when the queue exceeds `Config::write_buffer_limit`.
    pub fn feed(&mut self, msg: Message) -> Result<()> {
        self.queue(|c| c.send(&msg))
    }

    /// Queues and flushes a text message without building a [`Message`]
    /// (no allocation for the payload).
    pub fn send_text(&mut self, text: &str) -> Result<()> {
        self.queue(|c| c.send_text(text))?;
        self.flush()
    }

    /// Queues and flushes a binary message without building a [`Message`].
    pub fn send_binary(&mut self, data: &[u8]) -> Result<()> {
        self.queue(|c| c.send_binary(data))?;
        self.flush()
    }

    fn queue(&mut self, f: impl FnOnce(&mut Connection) -> Result<()>) -> Result<()> {
        if self.inner.is_terminated() {
            return Err(Error::Closed);
        }
        let conn = self.inner.connection_mut();
        f(conn)?;
        if conn.buffered_transmit() > conn.config().get_write_buffer_limit() {
            self.flush()?;
        }
        Ok(())
    }

    /// Writes out everything queued (messages, pongs, close frames), in as
    /// few `write` calls as the transport accepts.
    ///
    /// Bytes leave the queue only once written, so when the transport's own
    /// write timeout expires (`Error::Io` of kind `WouldBlock`/`TimedOut`)
    /// calling `flush` again continues exactly where it stopped; any other
    /// write error ends the stream. Without a write timeout this blocks for
    /// as long as the peer applies back-pressure.
    pub fn flush(&mut self) -> Result<()> {
        block::block_on(poll_fn(|cx| self.inner.poll_flush(cx))).unwrap_or_else(|e| Err(e.into()))
    }

    /// Closes the connection: sends a close frame with `code` and `reason`
    /// (at most 123 bytes), then reads (discarding messages) until the
    /// peer's reply and the end of the transport, bounded by
    /// `Config::close_timeout` (`Error::Timeout` when the peer never
    /// answers). Returns `Ok(())` when the stream is already closed.
    pub fn close(&mut self, code: CloseCode, reason: &str) -> Result<()> {
        if self.inner.is_terminated() {
            return Ok(());
        }
        self.inner.connection_mut().close(code, reason)?;
        self.flush()?;
        loop {
            match self.read_until(None) {
                Ok(_) => {}
                Err(Error::Closed) => return Ok(()),
                Err(e) => return Err(e),
            }
        }
    }

    /// An iterator over incoming messages: `read` until `Err(Error::Closed)`
    /// (which ends the iteration; other errors are yielded).
    pub fn messages(&mut self) -> Messages<'_, Self> {
        Messages { source: self }
    }
}

impl<S> WebSocketStream<S>
where
    S: SetReadTimeout,
    for<'a> &'a S: Read + Write,
{
    /// Splits the connection into a reader and a writer half that can be
    /// moved to different threads (for `TcpStream`, `UnixStream`: any
    /// transport usable through a shared reference).
    ///
    /// The halves share the transport, not the protocol state. The
    /// [`WsReader`] owns the receiving side ([`ws_core::Receiver`]): reading
    /// and decoding take no lock. The sending side ([`ws_core::Sender`]) is
    /// the write side of [`ws_core::rt::halves`], which a writer (any clone
    /// of the [`WsWriter`], one at a time) holds while queueing and while
    /// writing, so frames never interleave; a writer blocked by
    /// back-pressure holds it that long.
    ///
    /// The reader answers pings and close frames and runs the timers (close
    /// timeout, keepalive). For a control reply it only *tries* to take the
    /// write side: when it is free, the reader writes the reply (and
    /// anything queued before it) itself, a write that blocks while the peer
    /// applies back-pressure; when a writer holds it, that writer writes the
    /// reply before it returns. So a pong goes out even while every writer is
    /// idle, and the reader never waits for a writer. Keep reading the
    /// [`WsReader`] even if you only send.
    pub fn split(self) -> (WsReader<S>, WsWriter<S>) {
        let ended = self.inner.is_terminated();
        let (conn, io, BlockTimer) = self.inner.into_parts();
        split::split(conn, io.io, io.timeouts, self.read_timeout, ended)
    }
}

/// Iterator over incoming messages, from [`WebSocketStream::messages`],
/// [`WsReader::messages`] or [`crate::Client::messages`]: ends after the
/// connection is closed, yields errors (including read timeouts) as items.
#[derive(Debug)]
pub struct Messages<'a, T> {
    pub(crate) source: &'a mut T,
}

impl<S: Read + Write + SetReadTimeout> Iterator for Messages<'_, WebSocketStream<S>> {
    type Item = Result<Message>;
    fn next(&mut self) -> Option<Self::Item> {
        self.source.recv()
    }
}

/// `read`'s result as `recv`'s: the end of the connection is `None`.
fn end_of_stream(read: Result<Message>) -> Option<Result<Message>> {
    match read {
        Err(Error::Closed) => None,
        r => Some(r),
    }
}

/// What a receive run by [`block::block_on_until`] gave, as `read` returns
/// it: the end is `Err(Error::Closed)`.
fn received(r: std::result::Result<Option<Result<Message>>, Stop>) -> Result<Message> {
    match r {
        Ok(Some(r)) => r,
        Ok(None) => Err(Error::Closed),
        Err(Stop::Deadline) => Err(Error::Io(io::Error::new(
            io::ErrorKind::TimedOut,
            "no message within the read timeout",
        ))),
        Err(Stop::Io(e)) => Err(Error::Io(e)),
    }
}
