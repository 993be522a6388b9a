//! [`WebSocketStream`]: one WebSocket over any futures-io transport, and
//! its split halves [`WsReader`] / [`WsWriter`].
//!
//! The stream is ws-core's [`StreamDriver`] over the transport and one
//! timer: every operation is a non-blocking poll, and all progress lives in
//! the [`Connection`]'s buffers, which is what makes `recv` cancel-safe. The
//! split halves live in [`crate::split`].

use crate::split::{Alarm, Io, SplitIo, WsReader, WsWriter};
use crate::{CloseCode, Config, Error, Message, Result, Role};
use bytes::BytesMut;
use futures_core::{FusedStream, Stream};
use futures_io::{AsyncRead, AsyncWrite};
use futures_sink::Sink;
use std::fmt;
use std::future::poll_fn;
use std::pin::Pin;
use std::task::{Context, Poll};
use ws_core::rt::driver::StreamDriver;
use ws_core::{Connection, State};

/// The whole-stream loop (ws-core's) over a futures-io transport and an
/// async-io timer.
type Driver<S> = StreamDriver<Io<S>, Alarm>;

/// One WebSocket connection over a futures-io transport `S` (an async-std or
/// smol `TcpStream`, or anything `AsyncRead + AsyncWrite + Unpin`).
///
/// Receive with [`recv`](Self::recv) or as a [`Stream`]; send with
/// [`send`](Self::send)/[`feed`](Self::feed)/[`flush`](Self::flush) or as a
/// [`Sink`]. Automatic replies (pongs, the close echo) are written whenever
/// the stream is polled. Use [`split`](Self::split) to receive and send from
/// different tasks.
///
/// There is no background task: timers (keepalive pings, the close
/// timeout) advance while the stream is being received from, so keep a
/// `recv` (or the reader half) running. Dropping the stream drops the
/// transport without a close frame; use [`close`](Self::close) first.
pub struct WebSocketStream<S> {
    core: Driver<S>,
}

impl<S> fmt::Debug for WebSocketStream<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebSocketStream")
            .field("conn", self.core.connection())
            .field("ended", &self.core.is_terminated())
            .finish_non_exhaustive()
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> WebSocketStream<S> {
    /// Wraps a transport whose opening handshake was done elsewhere;
    /// `buffered` are bytes already read past the handshake (pipelined
    /// frames), which are decoded first.
    pub fn from_raw(io: S, role: Role, config: Config, buffered: BytesMut) -> Self {
        WebSocketStream {
            core: StreamDriver::new(
                Connection::with_buffered(role, config, buffered),
                Io(io),
                Alarm::default(),
            ),
        }
    }

    /// Receives the next message: data, pings and pongs (already answered
    /// automatically), then the peer's `Close`, then `None` once the
    /// transport is finished. An error is yielded once; the stream then
    /// finishes closing (flushing the close frame ws-core queued) and ends.
    ///
    /// Cancel-safe: dropping the future loses nothing, because partial
    /// frames and decoded state live in the Connection's buffers.
    pub async fn recv(&mut self) -> Option<Result<Message>> {
        poll_fn(|cx| self.core.poll_recv(cx)).await
    }

    /// Queues `msg` and flushes everything queued.
    ///
    /// Not cancel-safe: if the future is dropped, the message may stay
    /// queued and unflushed; the next `send`/`flush` (or receive, which
    /// writes queued bytes too) sends it.
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

    /// Queues `msg` without writing, so many messages leave in one write;
    /// it only flushes when the queue exceeds
    /// [`Config::write_buffer_limit`](Config::write_buffer_limit).
    ///
    /// Not cancel-safe: if dropped while waiting for that write, the message
    /// was not queued.
    pub async fn feed(&mut self, msg: Message) -> Result<()> {
        poll_fn(|cx| self.core.poll_ready(cx)).await?;
        self.core.connection_mut().send(&msg)
    }

    /// Queues through `queue` (a ws-core send on the Connection, e.g.
    /// `send_text(&str)` without building a `Message`) and flushes.
    #[cfg(any(feature = "async-std", feature = "smol"))]
    pub(crate) async fn send_with(
        &mut self,
        queue: impl FnOnce(&mut Connection) -> Result<()>,
    ) -> Result<()> {
        queue(self.core.connection_mut())?;
        self.flush().await
    }

    /// Writes everything queued. Cancel-safe in that no byte is lost or
    /// duplicated: whatever was not written stays queued.
    pub async fn flush(&mut self) -> Result<()> {
        poll_fn(|cx| self.core.poll_flush(cx)).await
    }

    /// Starts the closing handshake with `code` and `reason`, then keeps
    /// receiving (discarding data messages) until the peer's close reply
    /// and the end of the transport, bounded by the close timeout.
    ///
    /// Returns an error if writing fails or the peer did not finish the
    /// handshake in time ([`TimeoutKind::Close`](ws_core::TimeoutKind::Close));
    /// closing an already closed stream is `Ok`. Not cancel-safe: dropped
    /// early, the close frame is queued and may be unflushed.
    pub async fn close(&mut self, code: CloseCode, reason: &str) -> Result<()> {
        self.core.connection_mut().close(code, reason)?;
        if let Err(e) = self.flush().await {
            if self.core.connection().state() != State::Closed {
                return Err(e);
            }
        }
        let mut first_err = None;
        while let Some(r) = self.recv().await {
            if let Err(e) = r {
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    /// The protocol state (for inspection: state, close codes, buffered bytes).
    pub fn connection(&self) -> &Connection {
        self.core.connection()
    }

    /// The transport.
    pub fn get_ref(&self) -> &S {
        &self.core.io().0
    }

    /// The transport, mutably (reading or writing it directly corrupts the
    /// WebSocket stream).
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.core.io_mut().0
    }

    /// Wraps a connection already under way (rejoined split halves).
    pub(crate) fn from_parts(conn: Connection, io: S, alarm: Alarm) -> Self {
        WebSocketStream {
            core: StreamDriver::new(conn, Io(io), alarm),
        }
    }
}

impl<S: SplitIo> WebSocketStream<S> {
    /// Splits into a receiving and a sending half that can live in
    /// different tasks, with no lock on the data path.
    ///
    /// The [`WsReader`] owns a read handle and the receive state
    /// ([`ws_core::Receiver`]); receiving never touches what the writer
    /// uses. The [`WsWriter`] owns the send state ([`ws_core::Sender`]) and
    /// a write handle, kept in a [`ws_core::rt::handoff::Handoff`] that it claims
    /// with one compare-and-swap per send or flush. When the reader decodes
    /// a ping or a close, the reply goes to the writer's queue; if the writer
    /// is busy it writes the reply with its next flush, and if not the
    /// reader claims the write side and writes it itself, so pongs go out
    /// even while the application never sends.
    ///
    /// The transport must implement [`SplitIo`] (async-std's and smol's
    /// sockets do, by cloning the handle). Timers (close timeout,
    /// keepalive) are driven by the reader: keep polling it.
    pub fn split(self) -> (WsReader<S>, WsWriter<S>) {
        let (conn, io, alarm) = self.core.into_parts();
        crate::split::split(conn, io.0, alarm)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Stream for WebSocketStream<S> {
    type Item = Result<Message>;

    /// As [`WebSocketStream::recv`]; cancel-safe.
    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().core.poll_recv(cx)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> FusedStream for WebSocketStream<S> {
    fn is_terminated(&self) -> bool {
        self.core.is_terminated()
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Sink<Message> for WebSocketStream<S> {
    type Error = Error;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        self.get_mut().core.poll_ready(cx)
    }

    fn start_send(self: Pin<&mut Self>, item: Message) -> Result<()> {
        self.get_mut().core.connection_mut().send(&item)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        self.get_mut().core.poll_flush(cx)
    }

    /// Sends a normal close (1000) if no close was sent yet, and flushes.
    /// The peer's reply is received through the `Stream` side.
    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        let core = &mut self.get_mut().core;
        core.connection_mut().close(CloseCode::NORMAL, "")?;
        core.poll_flush(cx)
    }
}
