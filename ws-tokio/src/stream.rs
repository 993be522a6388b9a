//! [`WebSocketStream`]: one WebSocket connection over a tokio transport, and
//! its split halves [`WsReader`] / [`WsWriter`].

use std::future::{Future, poll_fn};
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Instant;

use bytes::BytesMut;
use futures_core::{FusedStream, Stream};
use futures_sink::Sink;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Sleep;
use ws_core::rt::driver::StreamDriver;
use ws_core::{CloseCode, Config, Connection, Message, Role, Transmit};

use crate::split::{Io, SplitIo, WsReader, WsWriter};
use crate::{Error, Result};

/// The whole-stream loop (ws-core's) over a tokio transport and timer.
type Driver<S> = StreamDriver<Io<S>, Deadline>;

/// One WebSocket connection over any tokio transport.
///
/// It is a [`Stream`] of received messages (ending after the peer's `Close`)
/// and a [`Sink`] of messages to send, with inherent async methods for the
/// common cases.
///
/// # How the stream drives ws-core
///
/// All protocol state lives in a [`ws_core::Connection`], and the loop is
/// ws-core's [`StreamDriver`] (the same on every async runtime); this crate
/// supplies the tokio read, write and `Sleep` it runs on. A receive step
/// reads from the transport straight into [`Connection::read_buf`] (no
/// intermediate copy), decodes with [`Connection::poll_message`], writes out
/// whatever the connection queued in reply (pongs, close replies), and arms
/// one [`tokio::time::Sleep`] (allocated once per stream, reset in place) at
/// [`Connection::poll_timeout`]. When the sleep fires,
/// [`Connection::handle_timeout`] runs. Once
/// [`Connection::should_close_transport`] says so, the transport is shut
/// down and the stream ends.
///
/// Sending only queues into the connection's output buffer
/// ([`feed`](WebSocketStream::feed), [`Sink::start_send`]); bytes leave in
/// one `write` call per buffer on [`flush`](WebSocketStream::flush),
/// [`send`](WebSocketStream::send), when the queue reaches
/// [`Config::write_buffer_limit`](ws_core::Config::write_buffer_limit), or
/// opportunistically while receiving (a receive step writes everything
/// queued, not only control replies, because the connection keeps a single
/// ordered output buffer).
///
/// Timers (close timeout, keepalive) are driven by the receiving side: keep
/// calling [`recv`](WebSocketStream::recv) (or polling the
/// [`Stream`](futures_core::Stream)) for them to fire.
///
/// # Cancel safety
///
/// - `recv` / `Stream::poll_next` are cancel-safe: every byte read is already
///   inside the connection's buffers when a future is dropped, so dropping a
///   `recv` future never loses or corrupts a message.
/// - `send`, `feed`, `flush` and `close` are not: when such a future is
///   dropped, its message (or close frame) may be queued but not yet written,
///   or only partly written; the rest stays queued, in order, and is written
///   by the next `flush`, `send` or `recv`.
#[derive(Debug)]
pub struct WebSocketStream<S> {
    inner: Driver<S>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> WebSocketStream<S> {
    /// Wraps a transport whose opening handshake was done elsewhere;
    /// `buffered` holds bytes already read past the handshake (pipelined
    /// frames), which are decoded first.
    pub fn from_raw(io: S, role: Role, config: Config, buffered: BytesMut) -> Self {
        let conn = Connection::with_buffered(role, config, buffered);
        WebSocketStream::from_parts(conn, io, Deadline::default())
    }

    /// Receives the next message, answering pings and closes on the way.
    ///
    /// Yields the peer's `Close` message, then `None` once the closing
    /// handshake is over and the transport is shut down. An error (protocol
    /// violation, timeout, I/O) ends the connection; the following call
    /// returns `None`.
    ///
    /// Cancel-safe: dropping the future loses no data.
    pub async fn recv(&mut self) -> Option<Result<Message>> {
        poll_fn(|cx| self.inner.poll_recv(cx)).await
    }

    /// Queues `msg` and writes everything queued.
    ///
    /// Not cancel-safe: if dropped, the message may be queued but unwritten
    /// (the next `flush`/`send`/`recv` writes it).
    pub async fn send(&mut self, msg: Message) -> Result<()> {
        self.feed(msg).await?;
        self.flush().await
    }

    /// Sends a text message (and flushes it), as on every runtime.
    pub async fn send_text(&mut self, text: &str) -> Result<()> {
        self.send(Message::text(text)).await
    }

    /// Sends a binary message (and flushes it), as on every runtime.
    pub async fn send_binary(&mut self, data: &[u8]) -> Result<()> {
        self.send(Message::binary(crate::Bytes::copy_from_slice(data)))
            .await
    }

    /// Queues `msg` without writing, so many messages leave in one write.
    /// Writes first only if the queue reached
    /// [`Config::write_buffer_limit`](ws_core::Config::write_buffer_limit).
    ///
    /// Not cancel-safe: if dropped while waiting for that write, the message
    /// was not queued, and earlier ones may be partly written (the rest stays
    /// queued).
    pub async fn feed(&mut self, msg: Message) -> Result<()> {
        poll_fn(|cx| self.inner.poll_ready(cx)).await?;
        self.inner.connection_mut().send(&msg)
    }

    /// Writes everything queued.
    ///
    /// Not cancel-safe: if dropped, part of the queue may have been written;
    /// the rest stays queued, in order.
    pub async fn flush(&mut self) -> Result<()> {
        poll_fn(|cx| self.inner.poll_flush(cx)).await
    }

    /// Runs the closing handshake: sends a close frame with `code` and
    /// `reason` (unless one was sent already), waits for the peer's reply and
    /// for the transport to end, bounded by
    /// [`Config::close_timeout`](ws_core::Config::close_timeout). Messages
    /// that arrive meanwhile are discarded.
    ///
    /// Returns the first error met on the way (e.g. the close timeout).
    /// Not cancel-safe: if dropped, the close frame stays queued and `recv`
    /// continues the handshake.
    pub async fn close(&mut self, code: CloseCode, reason: &str) -> Result<()> {
        self.inner.connection_mut().close(code, reason)?;
        let mut first_error = None;
        while let Some(r) = self.recv().await {
            if let Err(e) = r {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// The protocol state, e.g. to check [`Connection::state`].
    pub fn connection(&self) -> &Connection {
        self.inner.connection()
    }

    /// The transport.
    pub fn get_ref(&self) -> &S {
        &self.inner.io().0
    }

    /// The transport, mutably. Reading or writing it directly corrupts the
    /// WebSocket stream; this is for socket options.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner.io_mut().0
    }

    /// Wraps a connection already under way (used to rejoin split halves).
    pub(crate) fn from_parts(conn: Connection, io: S, deadline: Deadline) -> Self {
        WebSocketStream {
            inner: StreamDriver::new(conn, Io(io), deadline),
        }
    }
}

impl<S: SplitIo> WebSocketStream<S> {
    /// Splits into a reading and a writing half that can live in different
    /// tasks, with no lock on the data path.
    ///
    /// The [`WsReader`] owns the transport's read half and the receive state
    /// ([`ws_core::Receiver`]); receiving never touches what the writer
    /// uses. The [`WsWriter`] owns the send state ([`ws_core::Sender`]) and
    /// the write half, kept in a [`ws_core::rt::handoff::Handoff`] that it claims
    /// with one compare-and-swap per send or flush. When the reader decodes a
    /// ping or a close, the reply goes to the writer's queue; if the writer
    /// is busy it writes the reply with its next flush, and if not the reader
    /// claims the write side and writes the reply itself. So pongs go out
    /// even while the application never sends, and a pong never lands inside
    /// a half-written frame.
    ///
    /// Other things to know:
    ///
    /// - the transport must implement [`SplitIo`]: `TcpStream` and
    ///   `UnixStream` split without a lock; see the trait for others;
    /// - a control reply the reader queues may also carry out bytes the
    ///   writer only [`feed`](WsWriter::feed)s, since they share one ordered
    ///   queue;
    /// - timers (close timeout, keepalive) are driven by the reader: keep
    ///   polling it;
    /// - [`WsWriter::close`] sends the close frame and flushes; the reply
    ///   arrives on the reader, which ends after the closing handshake.
    pub fn split(self) -> (WsReader<S>, WsWriter<S>) {
        let (conn, io, deadline) = self.inner.into_parts();
        crate::split::split(conn, io.0, deadline)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Stream for WebSocketStream<S> {
    type Item = Result<Message>;

    /// Cancel-safe, as [`WebSocketStream::recv`].
    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().inner.poll_recv(cx)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> FusedStream for WebSocketStream<S> {
    fn is_terminated(&self) -> bool {
        self.inner.is_terminated()
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Sink<Message> for WebSocketStream<S> {
    type Error = Error;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        self.get_mut().inner.poll_ready(cx)
    }

    fn start_send(self: Pin<&mut Self>, item: Message) -> Result<()> {
        self.get_mut().inner.connection_mut().send(&item)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        self.get_mut().inner.poll_flush(cx)
    }

    /// Sends a normal (1000) close frame and flushes. The peer's reply is
    /// read by the `Stream` side, which ends after it; use the inherent
    /// [`WebSocketStream::close`] to wait for the whole handshake.
    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        let inner = &mut self.get_mut().inner;
        inner.connection_mut().close(CloseCode::NORMAL, "")?;
        inner.poll_flush(cx)
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

/// One tokio sleep per connection, created on first use (inside the
/// runtime) and reset in place.
#[derive(Debug, Default)]
pub(crate) struct Deadline {
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
