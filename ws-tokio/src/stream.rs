//! [`WebSocketStream`]: one WebSocket connection over a tokio transport, and
//! its split halves [`WsReader`] / [`WsWriter`].

use std::future::{Future, poll_fn};
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Wake, Waker, ready};
use std::time::Instant;

use bytes::BytesMut;
use futures_core::Stream;
use futures_sink::Sink;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::time::Sleep;
use ws_core::{CloseCode, Config, Connection, Message, Role};

use crate::{Error, Result};

/// Everything one connection needs: protocol state, transport and timer.
#[derive(Debug)]
struct Inner<S> {
    conn: Connection,
    io: S,
    /// Created on first use (inside the runtime), then reset in place.
    timer: Option<Pin<Box<Sleep>>>,
    /// The deadline `timer` is currently set to.
    timer_at: Option<Instant>,
    /// The transport reported end of stream.
    read_eof: bool,
    /// A transport read or write failed; nothing more will be done with it.
    io_failed: bool,
    /// The stream yielded its end.
    ended: bool,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Inner<S> {
    fn new(io: S, role: Role, config: Config, buffered: BytesMut) -> Self {
        Inner {
            conn: Connection::with_buffered(role, config, buffered),
            io,
            timer: None,
            timer_at: None,
            read_eof: false,
            io_failed: false,
            ended: false,
        }
    }

    /// Drops everything queued for writing: the transport is unusable.
    fn abandon_output(&mut self) {
        self.conn.discard_transmit();
    }

    /// The transport failed: make the connection refuse further sends and
    /// stop writing.
    fn fail_io(&mut self) {
        self.io_failed = true;
        self.conn.handle_eof();
        self.abandon_output();
    }

    /// Writes everything queued, in as few `write` calls as the transport
    /// allows (normally one), then flushes the transport.
    fn poll_write_out(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            let mut slices = [io::IoSlice::new(&[]); 16];
            let count = self.conn.transmit_slices(&mut slices);
            if count == 0 {
                break;
            }
            let n = ready!(Pin::new(&mut self.io).poll_write_vectored(cx, &slices[..count]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.conn.advance_transmit(n);
        }
        Pin::new(&mut self.io).poll_flush(cx)
    }

    /// [`poll_write_out`](Self::poll_write_out), turning an I/O failure into
    /// a failed connection.
    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<Result<()>> {
        match ready!(self.poll_write_out(cx)) {
            Ok(()) => Poll::Ready(Ok(())),
            Err(e) => {
                self.fail_io();
                Poll::Ready(Err(Error::Io(e)))
            }
        }
    }

    /// Flushes first if the output queue reached the write buffer limit.
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<()>> {
        if self.conn.buffered_transmit() >= self.conn.config().get_write_buffer_limit() {
            ready!(self.poll_flush(cx))?;
        }
        Poll::Ready(Ok(()))
    }

    /// Arms the timer at the connection's next deadline and fires it if due.
    /// Returns whether a timeout was handled (state may have changed).
    fn poll_timer(&mut self, cx: &mut Context<'_>) -> bool {
        let now = Instant::now();
        // After the peer ended its side, ws-core's close timer also bounds how
        // long queued bytes may wait for a peer that does not read.
        let Some(deadline) = self.conn.poll_timeout(now) else {
            return false;
        };
        if deadline > now {
            let sleep = self
                .timer
                .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline.into())));
            if self.timer_at != Some(deadline) {
                sleep.as_mut().reset(deadline.into());
                self.timer_at = Some(deadline);
            }
            if sleep.as_mut().poll(cx).is_pending() {
                return false;
            }
        }
        // The sleep may round to the millisecond: never report a time before
        // the deadline it fired for, or the timer would fire again at once.
        let now = Instant::now().max(deadline);
        self.conn.handle_timeout(now);
        if self.conn.should_close_transport() && self.conn.wants_write() {
            // Timed out with bytes the peer never took: drop them.
            self.abandon_output();
        }
        true
    }

    /// One receive step; see the module docs.
    fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Message>>> {
        loop {
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
            if self.poll_timer(cx) {
                continue;
            }
            if self.conn.wants_write() {
                if let Poll::Ready(Err(e)) = self.poll_write_out(cx) {
                    self.fail_io();
                    self.ended = true;
                    return Poll::Ready(Some(Err(Error::Io(e))));
                }
            }
            if self.conn.should_close_transport() {
                // A failed shutdown changes nothing: the stream is over.
                let _ = ready!(Pin::new(&mut self.io).poll_shutdown(cx));
                self.ended = true;
                return Poll::Ready(None);
            }
            if self.read_eof {
                // Waiting for queued bytes to drain or for a timer.
                return Poll::Pending;
            }
            let read = {
                let fut = self.io.read_buf(self.conn.read_buf());
                std::pin::pin!(fut).poll(cx)
            };
            match ready!(read) {
                Ok(0) => {
                    self.read_eof = true;
                    self.conn.handle_eof();
                }
                Ok(_) => {}
                Err(e) => {
                    self.fail_io();
                    self.ended = true;
                    return Poll::Ready(Some(Err(Error::Io(e))));
                }
            }
        }
    }

    /// Best-effort write of queued replies while returning a message; an
    /// error ends the connection (reported by the next receive step).
    fn try_write(&mut self, cx: &mut Context<'_>) {
        if self.conn.wants_write() {
            if let Poll::Ready(Err(_)) = self.poll_write_out(cx) {
                self.fail_io();
            }
        }
    }

    /// Queues a close frame unless one was already sent.
    fn start_close(&mut self, code: CloseCode, reason: &str) -> Result<()> {
        self.conn.close(code, reason)
    }
}

/// One WebSocket connection over any tokio transport.
///
/// It is a [`Stream`] of received messages (ending after the peer's `Close`)
/// and a [`Sink`] of messages to send, with inherent async methods for the
/// common cases.
///
/// # How the stream drives ws-core
///
/// All protocol state lives in a [`ws_core::Connection`]. A receive step
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
    inner: Inner<S>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> WebSocketStream<S> {
    /// Wraps a transport whose opening handshake was done elsewhere;
    /// `buffered` holds bytes already read past the handshake (pipelined
    /// frames), which are decoded first.
    pub fn from_raw(io: S, role: Role, config: Config, buffered: BytesMut) -> Self {
        WebSocketStream {
            inner: Inner::new(io, role, config, buffered),
        }
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

    /// Queues `msg` without writing, so many messages leave in one write.
    /// Writes first only if the queue reached
    /// [`Config::write_buffer_limit`](ws_core::Config::write_buffer_limit).
    ///
    /// Not cancel-safe: if dropped while waiting for that write, the message
    /// was not queued, and earlier ones may be partly written (the rest stays
    /// queued).
    pub async fn feed(&mut self, msg: Message) -> Result<()> {
        poll_fn(|cx| self.inner.poll_ready(cx)).await?;
        self.inner.conn.send(&msg)
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
        self.inner.start_close(code, reason)?;
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
        &self.inner.conn
    }

    /// The transport.
    pub fn get_ref(&self) -> &S {
        &self.inner.io
    }

    /// The transport, mutably. Reading or writing it directly corrupts the
    /// WebSocket stream; this is for socket options.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner.io
    }

    /// Splits into a reading and a writing half that can be used from
    /// different tasks.
    ///
    /// This moves the connection, transport and timer into an
    /// `Arc<std::sync::Mutex<..>>` shared by a [`WsReader`] and a
    /// [`WsWriter`]. The lock is held only for the duration of one
    /// non-blocking poll call (never across an `.await`), so the halves can
    /// live in different tasks. When the reader decodes a ping or a close,
    /// the reply is queued in the shared connection and the reader writes it
    /// itself, so a pong goes out even while the writer is idle; whichever
    /// half polls next writes whatever is pending.
    ///
    /// The cost, honestly:
    ///
    /// - every poll takes an (almost always uncontended) mutex;
    /// - the transport keeps one waker per direction, but both halves may
    ///   wait to write, so the halves poll the transport with a shared waker
    ///   that wakes *both* halves' tasks (one more small mutex). A half may
    ///   therefore be woken spuriously (it re-polls and goes back to sleep);
    ///   no wakeup is ever lost;
    /// - because the reader writes out everything pending, bytes the writer
    ///   only [`feed`](WsWriter::feed)s may leave before its `flush`;
    /// - timers (close timeout, keepalive) are driven by the reader only:
    ///   keep polling it;
    /// - [`WsWriter::close`] sends the close frame and flushes, but the reply
    ///   arrives on the reader, which ends after the closing handshake.
    pub fn split(self) -> (WsReader<S>, WsWriter<S>) {
        let shared = Arc::new(Mutex::new(self.inner));
        let slots = Arc::new(WakerSlots::default());
        let waker = Waker::from(slots.clone());
        let half = |slot| Half {
            shared: shared.clone(),
            slots: slots.clone(),
            waker: waker.clone(),
            slot,
        };
        (
            WsReader { half: half(READER) },
            WsWriter { half: half(WRITER) },
        )
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Stream for WebSocketStream<S> {
    type Item = Result<Message>;

    /// Cancel-safe, as [`WebSocketStream::recv`].
    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().inner.poll_recv(cx)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Sink<Message> for WebSocketStream<S> {
    type Error = Error;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        self.get_mut().inner.poll_ready(cx)
    }

    fn start_send(self: Pin<&mut Self>, item: Message) -> Result<()> {
        self.get_mut().inner.conn.send(&item)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        self.get_mut().inner.poll_flush(cx)
    }

    /// Sends a normal (1000) close frame and flushes. The peer's reply is
    /// read by the `Stream` side, which ends after it; use the inherent
    /// [`WebSocketStream::close`] to wait for the whole handshake.
    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        let inner = &mut self.get_mut().inner;
        inner.start_close(CloseCode::NORMAL, "")?;
        inner.poll_flush(cx)
    }
}

// ------------------------------------------------------------------ split

const READER: usize = 0;
const WRITER: usize = 1;

/// The wakers of the tasks driving each half; the transport and timer are
/// polled with a waker that wakes both (see the module docs).
#[derive(Debug, Default)]
struct WakerSlots {
    slots: Mutex<[Option<Waker>; 2]>,
}

impl WakerSlots {
    fn lock(&self) -> MutexGuard<'_, [Option<Waker>; 2]> {
        self.slots.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn register(&self, slot: usize, waker: &Waker) {
        let mut slots = self.lock();
        match &mut slots[slot] {
            Some(w) if w.will_wake(waker) => {}
            other => *other = Some(waker.clone()),
        }
    }
}

impl Wake for WakerSlots {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        let [a, b] = {
            let mut slots = self.lock();
            [slots[0].take(), slots[1].take()]
        };
        // Woken outside the lock: a waker may run arbitrary code.
        a.into_iter().chain(b).for_each(Waker::wake);
    }
}

/// What both halves hold.
#[derive(Debug)]
struct Half<S> {
    shared: Arc<Mutex<Inner<S>>>,
    slots: Arc<WakerSlots>,
    waker: Waker,
    slot: usize,
}

impl<S> Half<S> {
    /// Runs one non-blocking poll step on the shared state, with the waker
    /// that wakes both halves. The lock is released before returning.
    fn with<R>(
        &self,
        cx: &mut Context<'_>,
        f: impl FnOnce(&mut Inner<S>, &mut Context<'_>) -> R,
    ) -> R {
        self.slots.register(self.slot, cx.waker());
        let mut shared_cx = Context::from_waker(&self.waker);
        // Nothing panics while holding the lock, but a poisoned lock would
        // still hold consistent state: every step leaves it valid.
        let mut inner = self.shared.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut inner, &mut shared_cx)
    }

    /// Runs a synchronous step on the shared state.
    fn lock(&self) -> MutexGuard<'_, Inner<S>> {
        self.shared.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The receiving half of a split [`WebSocketStream`].
///
/// It also writes control replies (pongs, close replies) itself and drives
/// the connection's timers, so keep polling it even if you only send.
#[derive(Debug)]
pub struct WsReader<S> {
    half: Half<S>,
}

/// The sending half of a split [`WebSocketStream`].
#[derive(Debug)]
pub struct WsWriter<S> {
    half: Half<S>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> WsReader<S> {
    /// Receives the next message, as [`WebSocketStream::recv`]. Cancel-safe.
    pub async fn recv(&mut self) -> Option<Result<Message>> {
        poll_fn(|cx| self.half.with(cx, Inner::poll_recv)).await
    }

    /// Rejoins the halves into one stream; gives them back if they do not
    /// belong together.
    pub fn reunite(
        self,
        writer: WsWriter<S>,
    ) -> std::result::Result<WebSocketStream<S>, (WsReader<S>, WsWriter<S>)> {
        if !Arc::ptr_eq(&self.half.shared, &writer.half.shared) {
            return Err((self, writer));
        }
        drop(writer);
        let shared = self.half.shared;
        match Arc::try_unwrap(shared) {
            Ok(m) => Ok(WebSocketStream {
                inner: m.into_inner().unwrap_or_else(|p| p.into_inner()),
            }),
            // Unreachable: both halves were given and the writer was dropped.
            Err(shared) => {
                let half = |slot| Half {
                    shared: shared.clone(),
                    slots: self.half.slots.clone(),
                    waker: self.half.waker.clone(),
                    slot,
                };
                Err((
                    WsReader { half: half(READER) },
                    WsWriter { half: half(WRITER) },
                ))
            }
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Stream for WsReader<S> {
    type Item = Result<Message>;

    /// Cancel-safe, as [`WebSocketStream::recv`].
    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.half.with(cx, Inner::poll_recv)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> WsWriter<S> {
    /// Queues `msg` and writes everything queued, as
    /// [`WebSocketStream::send`]. Not cancel-safe.
    pub async fn send(&mut self, msg: Message) -> Result<()> {
        self.feed(msg).await?;
        self.flush().await
    }

    /// Queues `msg`, writing first only above the write buffer limit, as
    /// [`WebSocketStream::feed`]. Not cancel-safe.
    pub async fn feed(&mut self, msg: Message) -> Result<()> {
        poll_fn(|cx| self.half.with(cx, Inner::poll_ready)).await?;
        self.half.lock().conn.send(&msg)
    }

    /// Writes everything queued. Not cancel-safe (see
    /// [`WebSocketStream::flush`]).
    pub async fn flush(&mut self) -> Result<()> {
        poll_fn(|cx| self.half.with(cx, Inner::poll_flush)).await
    }

    /// Sends a close frame and flushes it. The peer's reply arrives on the
    /// [`WsReader`], which ends once the closing handshake is over (bounded
    /// by the close timeout, which the reader drives). Not cancel-safe: if
    /// dropped, the close frame stays queued.
    pub async fn close(&mut self, code: CloseCode, reason: &str) -> Result<()> {
        self.half.lock().start_close(code, reason)?;
        self.flush().await
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Sink<Message> for WsWriter<S> {
    type Error = Error;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        self.half.with(cx, Inner::poll_ready)
    }

    fn start_send(self: Pin<&mut Self>, item: Message) -> Result<()> {
        self.half.lock().conn.send(&item)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        self.half.with(cx, Inner::poll_flush)
    }

    /// Sends a normal (1000) close frame and flushes; the reply arrives on
    /// the [`WsReader`].
    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        self.half.with(cx, |inner, cx| {
            inner.start_close(CloseCode::NORMAL, "")?;
            inner.poll_flush(cx)
        })
    }
}
