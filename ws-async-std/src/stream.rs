//! [`WebSocketStream`]: one WebSocket over any futures-io transport, and
//! its split halves [`WsReader`] / [`WsWriter`].
//!
//! The stream owns a ws-core [`Connection`], the transport and one timer.
//! Every operation is a non-blocking poll over those three, so all progress
//! lives in the Connection's buffers: that is what makes `recv` cancel-safe.
//! The split halves live in [`crate::split`].

use crate::io::{poll_read_into, poll_write_conn};
use crate::split::{SplitIo, WsReader, WsWriter};
use crate::{CloseCode, Config, Error, Message, Result, Role};
use async_io::Timer;
use bytes::BytesMut;
use futures_core::{FusedStream, Stream};
use futures_io::{AsyncRead, AsyncWrite};
use futures_sink::Sink;
use std::fmt;
use std::future::{Future, poll_fn};
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Instant;
use ws_core::{Connection, State};

/// How many read/timer steps one poll takes before yielding to the
/// executor, so a peer flooding us cannot starve other tasks.
const POLL_BUDGET: usize = 64;

/// The stream's state.
struct Core<S> {
    io: S,
    conn: Connection,
    timer: Timer,
    /// The deadline `timer` is armed for.
    deadline: Option<Instant>,
    /// The transport reported end of stream.
    read_eof: bool,
    /// The stream has ended (yielded `None`): transport shut down or failed.
    ended: bool,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Core<S> {
    fn new(io: S, conn: Connection) -> Self {
        Core {
            io,
            conn,
            timer: Timer::never(),
            deadline: None,
            read_eof: false,
            ended: false,
        }
    }

    /// Writes all queued bytes.
    fn poll_write_out(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        poll_write_conn(&mut self.io, &mut self.conn, cx)
    }

    /// Flush for the sending side: queued bytes out, or an error. A failed
    /// transport also fails the connection so later sends see `Closed`.
    fn poll_flush_out(&mut self, cx: &mut Context<'_>) -> Poll<Result<()>> {
        match ready!(self.poll_write_out(cx)) {
            Ok(()) => Poll::Ready(Ok(())),
            Err(e) => {
                self.conn.handle_eof();
                Poll::Ready(Err(Error::Io(e)))
            }
        }
    }

    /// Waits until the queue is below the write buffer limit.
    fn poll_send_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<()>> {
        if self.conn.buffered_transmit() >= self.conn.config().get_write_buffer_limit() {
            ready!(self.poll_flush_out(cx))?;
        }
        Poll::Ready(Ok(()))
    }

    /// The receive loop: decode, flush control replies, end the transport
    /// when the connection says so, fire timers, read more.
    fn poll_next_msg(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Message>>> {
        for _ in 0..POLL_BUDGET {
            if self.ended {
                return Poll::Ready(None);
            }
            match self.conn.poll_message() {
                Ok(Some(msg)) => {
                    self.flush_replies(cx);
                    return Poll::Ready(Some(Ok(msg)));
                }
                Err(e) => {
                    self.flush_replies(cx);
                    return Poll::Ready(Some(Err(e)));
                }
                Ok(None) => {}
            }
            if self.conn.wants_write() {
                match self.poll_write_out(cx) {
                    Poll::Ready(Ok(())) | Poll::Pending => {}
                    Poll::Ready(Err(e)) => {
                        let was_closed = self.conn.state() == State::Closed;
                        self.conn.handle_eof();
                        self.ended = true;
                        // Once the connection is over, a peer that already
                        // went away is not worth reporting.
                        return Poll::Ready(if was_closed {
                            None
                        } else {
                            Some(Err(Error::Io(e)))
                        });
                    }
                }
            }
            if self.conn.should_close_transport() {
                // Shut down our sending side (FIN); errors mean it is gone anyway.
                let _ = ready!(Pin::new(&mut self.io).poll_close(cx));
                self.ended = true;
                return Poll::Ready(None);
            }
            match self.conn.poll_timeout(Instant::now()) {
                Some(at) => {
                    if self.deadline != Some(at) {
                        self.timer.set_at(at);
                        self.deadline = Some(at);
                    }
                    if Pin::new(&mut self.timer).poll(cx).is_ready() {
                        self.deadline = None;
                        self.conn.handle_timeout(Instant::now().max(at));
                        continue;
                    }
                }
                None => self.deadline = None,
            }
            if self.read_eof {
                return Poll::Pending; // waiting for writes or the close timer
            }
            match poll_read_into(&mut self.io, cx, self.conn.read_buf()) {
                Poll::Ready(Ok(0)) => {
                    self.read_eof = true;
                    self.conn.handle_eof();
                }
                Poll::Ready(Ok(_)) => {}
                Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::Interrupted => {}
                Poll::Ready(Err(e)) => {
                    self.read_eof = true;
                    self.conn.handle_eof();
                    self.ended = true;
                    return Poll::Ready(Some(Err(Error::Io(e))));
                }
                Poll::Pending => return Poll::Pending,
            }
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    }

    /// After decoding a message: push out any automatic reply (pong, close
    /// echo) right away, so it leaves even if nobody sends or receives
    /// again. A pending or failed write is picked up by the next poll.
    fn flush_replies(&mut self, cx: &mut Context<'_>) {
        if self.conn.wants_write() {
            let _ = self.poll_write_out(cx);
        }
    }

    fn start_send(&mut self, msg: &Message) -> Result<()> {
        self.conn.send(msg)
    }

    /// Sink-style close: queue a normal close frame (if none was sent) and
    /// flush; the closing handshake then finishes on the receive side.
    fn poll_close_sink(&mut self, cx: &mut Context<'_>) -> Poll<Result<()>> {
        self.conn.close(CloseCode::NORMAL, "")?;
        self.poll_flush_out(cx)
    }
}

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
    core: Core<S>,
}

impl<S> fmt::Debug for WebSocketStream<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebSocketStream")
            .field("conn", &self.core.conn)
            .field("ended", &self.core.ended)
            .finish_non_exhaustive()
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> WebSocketStream<S> {
    /// Wraps a transport whose opening handshake was done elsewhere;
    /// `buffered` are bytes already read past the handshake (pipelined
    /// frames), which are decoded first.
    pub fn from_raw(io: S, role: Role, config: Config, buffered: BytesMut) -> Self {
        WebSocketStream {
            core: Core::new(io, Connection::with_buffered(role, config, buffered)),
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
        poll_fn(|cx| self.core.poll_next_msg(cx)).await
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

    /// Queues `msg` without writing, so many messages leave in one write;
    /// it only flushes when the queue exceeds
    /// [`Config::write_buffer_limit`](Config::write_buffer_limit).
    ///
    /// Not cancel-safe in the same way as [`send`](Self::send): the message
    /// is queued on the first poll.
    pub async fn feed(&mut self, msg: Message) -> Result<()> {
        self.core.start_send(&msg)?;
        poll_fn(|cx| self.core.poll_send_ready(cx)).await
    }

    /// Queues through `queue` (a ws-core send on the Connection, e.g.
    /// `send_text(&str)` without building a `Message`) and flushes.
    #[cfg(any(feature = "async-std", feature = "smol"))]
    pub(crate) async fn send_with(
        &mut self,
        queue: impl FnOnce(&mut Connection) -> Result<()>,
    ) -> Result<()> {
        queue(&mut self.core.conn)?;
        self.flush().await
    }

    /// Writes everything queued. Cancel-safe in that no byte is lost or
    /// duplicated: whatever was not written stays queued.
    pub async fn flush(&mut self) -> Result<()> {
        poll_fn(|cx| self.core.poll_flush_out(cx)).await
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
        self.core.conn.close(code, reason)?;
        if let Err(e) = self.flush().await {
            if self.core.conn.state() != State::Closed {
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
        &self.core.conn
    }

    /// The transport.
    pub fn get_ref(&self) -> &S {
        &self.core.io
    }

    /// The transport, mutably (reading or writing it directly corrupts the
    /// WebSocket stream).
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.core.io
    }

    /// Wraps a connection already under way (rejoined split halves).
    pub(crate) fn from_parts(conn: Connection, io: S, timer: Timer) -> Self {
        let mut core = Core::new(io, conn);
        core.timer = timer;
        WebSocketStream { core }
    }
}

impl<S: SplitIo> WebSocketStream<S> {
    /// Splits into a receiving and a sending half that can live in
    /// different tasks, with no lock on the data path.
    ///
    /// The [`WsReader`] owns a read handle and the receive state
    /// ([`ws_core::Receiver`]); receiving never touches what the writer
    /// uses. The [`WsWriter`] owns the send state ([`ws_core::Sender`]) and
    /// a write handle, kept in a [`ws_core::handoff::Handoff`] that it claims
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
        let Core {
            io, conn, timer, ..
        } = self.core;
        crate::split::split(conn, io, timer)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Stream for WebSocketStream<S> {
    type Item = Result<Message>;

    /// As [`WebSocketStream::recv`]; cancel-safe.
    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().core.poll_next_msg(cx)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> FusedStream for WebSocketStream<S> {
    fn is_terminated(&self) -> bool {
        self.core.ended
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Sink<Message> for WebSocketStream<S> {
    type Error = Error;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        self.get_mut().core.poll_send_ready(cx)
    }

    fn start_send(self: Pin<&mut Self>, item: Message) -> Result<()> {
        self.get_mut().core.start_send(&item)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        self.get_mut().core.poll_flush_out(cx)
    }

    /// Sends a normal close (1000) if no close was sent yet, and flushes.
    /// The peer's reply is received through the `Stream` side.
    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        self.get_mut().core.poll_close_sink(cx)
    }
}
