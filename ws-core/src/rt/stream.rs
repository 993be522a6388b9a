//! The async `WebSocketStream`, written once: ws-tokio and ws-async-std
//! name it with their own transport wrapper and timer
//! (`pub type WebSocketStream<S> = ws_core::rt::stream::WebSocketStream<Io<S>, Timer>`),
//! so both runtimes have the same methods, documentation and behaviour by
//! construction.

use std::fmt;
use std::future::poll_fn;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::BytesMut;
use futures_core::{FusedStream, Stream};
use futures_sink::Sink;

use crate::close::CloseCode;
use crate::config::{Config, Role};
use crate::connection::{Connection, State};
use crate::error::Error;
use crate::message::Message;
use crate::rt::driver::{ReadTransport, StreamDriver, Timer, WriteTransport};
use crate::rt::halves::{SplitReader, SplitWriter, split_halves};

/// An adapter's wrapper around the user's transport (a `TcpStream`, a TLS
/// stream, ...): the calls the driver makes, and the way back to the
/// transport itself.
pub trait Transport: ReadTransport + WriteTransport + Sized {
    /// The user's transport.
    type Io;
    /// Wraps the user's transport.
    fn wrap(io: Self::Io) -> Self;
    /// The user's transport.
    fn get_ref(&self) -> &Self::Io;
    /// The user's transport, mutably.
    fn get_mut(&mut self) -> &mut Self::Io;
}

/// A transport the adapter knows how to split into a read and a write
/// direction (its `SplitIo`), and to join again.
pub trait SplitTransport: Transport {
    /// The read direction.
    type ReadHalf: ReadTransport;
    /// The write direction.
    type WriteHalf: WriteTransport;
    /// Splits the transport.
    fn split_halves(self) -> (Self::ReadHalf, Self::WriteHalf);
    /// Joins directions that [`split_halves`](Self::split_halves) made from
    /// one transport.
    fn unsplit(read: Self::ReadHalf, write: Self::WriteHalf) -> Self;
}

/// The writing half of a split [`WebSocketStream`]: `send`, `feed`,
/// `flush`, `close` and [`Sink`] ([`SplitWriter`]).
pub type WsWriter<IO> = SplitWriter<<IO as SplitTransport>::WriteHalf>;

/// The receiving half of a split [`WebSocketStream`]: [`SplitReader`] over
/// the transport's read direction, which can [`reunite`](Self::reunite)
/// with its writer into the stream.
///
/// It answers pings and closes itself (through the writer's queue, writing
/// them when the writer is not), and drives the close and keepalive timers,
/// so keep polling it even if you only send.
pub struct WsReader<IO: SplitTransport, T> {
    inner: SplitReader<IO::ReadHalf, T, IO::WriteHalf>,
}

impl<IO: SplitTransport, T> fmt::Debug for WsReader<IO, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WsReader").finish_non_exhaustive()
    }
}

impl<IO: SplitTransport, T: Timer> WsReader<IO, T> {
    /// Receives the next message, as [`WebSocketStream::recv`].
    /// Cancel-safe: every byte read is in the receiver's buffer before a
    /// future can be dropped.
    pub async fn recv(&mut self) -> Option<Result<Message, Error>> {
        self.inner.recv().await
    }

    /// Rejoins the halves into one stream; gives them back if they do not
    /// belong together. Messages a [`Sink::start_send`] could not queue yet
    /// are queued first.
    #[allow(clippy::result_large_err)]
    pub fn reunite(
        self,
        writer: WsWriter<IO>,
    ) -> Result<WebSocketStream<IO, T>, (Self, WsWriter<IO>)> {
        match self.inner.reunite(writer) {
            Ok((conn, read, write, timer)) => Ok(WebSocketStream::from_parts(
                conn,
                IO::unsplit(read, write),
                timer,
            )),
            Err((inner, writer)) => Err((WsReader { inner }, writer)),
        }
    }
}

impl<IO: SplitTransport, T: Timer> Stream for WsReader<IO, T>
where
    IO::ReadHalf: Unpin,
    T: Unpin,
{
    type Item = Result<Message, Error>;

    /// Cancel-safe, as [`WsReader::recv`].
    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().inner.poll_recv(cx)
    }
}

impl<IO: SplitTransport, T: Timer> FusedStream for WsReader<IO, T>
where
    IO::ReadHalf: Unpin,
    T: Unpin,
{
    fn is_terminated(&self) -> bool {
        self.inner.is_terminated()
    }
}

/// One WebSocket connection over an async transport.
///
/// It is a [`Stream`] of received messages (ending after the peer's `Close`)
/// and a [`Sink`] of messages to send, with inherent async methods for the
/// common cases.
///
/// # How the stream drives ws-core
///
/// All protocol state lives in a [`Connection`], and the loop is
/// [`StreamDriver`]; the runtime crate supplies the read, the write and the
/// timer it runs on. A receive step reads from the transport straight into
/// [`Connection::read_buf`] (no intermediate copy), decodes with
/// [`Connection::poll_message`], writes out whatever the connection queued
/// in reply (pongs, close replies), and arms one timer at
/// [`Connection::poll_timeout`]. Once [`Connection::should_close_transport`]
/// says so, the transport is shut down and the stream ends.
///
/// Sending only queues into the connection's output buffer
/// ([`feed`](Self::feed), [`Sink::start_send`]); bytes leave in one `write`
/// call per buffer on [`flush`](Self::flush), [`send`](Self::send), when the
/// queue reaches [`Config::write_buffer_limit`], or while receiving (a
/// receive step writes everything queued, since the connection keeps one
/// ordered output buffer).
///
/// Timers (close timeout, keepalive) are driven by the receiving side: keep
/// calling [`recv`](Self::recv) (or polling the [`Stream`]) for them to fire.
/// Dropping the stream drops the transport without a close frame; use
/// [`close`](Self::close) first.
///
/// # Cancel safety
///
/// - `recv` / `Stream::poll_next` are cancel-safe: every byte read is
///   already inside the connection's buffers when a future is dropped.
/// - `send`, `feed`, `flush` and `close` are not: when such a future is
///   dropped, its message (or close frame) may be queued but not yet
///   written, or only partly written; the rest stays queued, in order, and
///   is written by the next `flush`, `send` or `recv`.
pub struct WebSocketStream<IO, T> {
    inner: StreamDriver<IO, T>,
}

impl<IO, T> fmt::Debug for WebSocketStream<IO, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebSocketStream")
            .field("conn", self.inner.connection())
            .field("ended", &self.inner.is_terminated())
            .finish_non_exhaustive()
    }
}

impl<IO: Transport, T: Timer> WebSocketStream<IO, T> {
    /// Wraps a transport whose opening handshake was done elsewhere;
    /// `buffered` holds bytes already read past the handshake (pipelined
    /// frames), which are decoded first.
    pub fn from_raw(io: IO::Io, role: Role, config: Config, buffered: BytesMut) -> Self
    where
        T: Default,
    {
        let conn = Connection::with_buffered(role, config, buffered);
        Self::from_parts(conn, IO::wrap(io), T::default())
    }

    /// Wraps a connection already under way (e.g. split halves rejoined).
    pub fn from_parts(conn: Connection, io: IO, timer: T) -> Self {
        WebSocketStream {
            inner: StreamDriver::new(conn, io, timer),
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
    pub async fn recv(&mut self) -> Option<Result<Message, Error>> {
        poll_fn(|cx| self.inner.poll_recv(cx)).await
    }

    /// Queues `msg` and writes everything queued.
    ///
    /// Not cancel-safe: if dropped, the message may be queued but unwritten
    /// (the next `flush`/`send`/`recv` writes it).
    pub async fn send(&mut self, msg: Message) -> Result<(), Error> {
        self.feed(msg).await?;
        self.flush().await
    }

    /// Sends a text message (and flushes it), as on every runtime, without
    /// building a [`Message`] (the payload is masked straight into the
    /// output buffer).
    pub async fn send_text(&mut self, text: &str) -> Result<(), Error> {
        poll_fn(|cx| self.inner.poll_ready(cx)).await?;
        self.inner.connection_mut().send_text(text)?;
        self.flush().await
    }

    /// Sends a binary message (and flushes it), as
    /// [`send_text`](Self::send_text).
    pub async fn send_binary(&mut self, data: &[u8]) -> Result<(), Error> {
        poll_fn(|cx| self.inner.poll_ready(cx)).await?;
        self.inner.connection_mut().send_binary(data)?;
        self.flush().await
    }

    /// Queues `msg` without writing, so many messages leave in one write.
    /// Writes first only if the queue reached
    /// [`Config::write_buffer_limit`].
    ///
    /// Not cancel-safe: if dropped while waiting for that write, the message
    /// was not queued, and earlier ones may be partly written (the rest stays
    /// queued).
    pub async fn feed(&mut self, msg: Message) -> Result<(), Error> {
        poll_fn(|cx| self.inner.poll_ready(cx)).await?;
        self.inner.connection_mut().send(&msg)
    }

    /// Writes everything queued.
    ///
    /// Not cancel-safe: if dropped, part of the queue may have been written;
    /// the rest stays queued, in order.
    pub async fn flush(&mut self) -> Result<(), Error> {
        poll_fn(|cx| self.inner.poll_flush(cx)).await
    }

    /// Runs the closing handshake: sends a close frame with `code` and
    /// `reason` (unless one was sent already), waits for the peer's reply and
    /// for the transport to end, bounded by [`Config::close_timeout`].
    /// Messages that arrive meanwhile are discarded.
    ///
    /// Returns the first error met on the way: a failed write, or the peer
    /// not finishing in time ([`TimeoutKind::Close`](crate::TimeoutKind));
    /// closing an already closed stream is `Ok`. Not cancel-safe: if
    /// dropped, the close frame stays queued and `recv` continues the
    /// handshake.
    pub async fn close(&mut self, code: CloseCode, reason: &str) -> Result<(), Error> {
        self.inner.connection_mut().close(code, reason)?;
        if let Err(e) = self.flush().await {
            if self.inner.connection().state() != State::Closed {
                return Err(e);
            }
        }
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
    pub fn get_ref(&self) -> &IO::Io {
        self.inner.io().get_ref()
    }

    /// The transport, mutably. Reading or writing it directly corrupts the
    /// WebSocket stream; this is for socket options.
    pub fn get_mut(&mut self) -> &mut IO::Io {
        self.inner.io_mut().get_mut()
    }

    /// The connection, the transport and the timer.
    pub fn into_parts(self) -> (Connection, IO, T) {
        self.inner.into_parts()
    }

    /// Splits into a reading and a writing half that can live in different
    /// tasks, with no lock on the data path.
    ///
    /// The reader owns the transport's read half and the receive state
    /// ([`crate::Receiver`]); receiving never touches what the writer uses.
    /// The writer owns the send state ([`crate::Sender`]) and the write
    /// half, kept in a [`crate::rt::handoff::Handoff`] that it claims with
    /// one compare-and-swap per send or flush. When the reader decodes a
    /// ping or a close, the reply goes to the writer's queue; if the writer
    /// is busy it writes the reply with its next flush, and if not the reader
    /// claims the write side and writes the reply itself. So pongs go out
    /// even while the application never sends, and a pong never lands inside
    /// a half-written frame.
    ///
    /// - the transport must implement the runtime crate's `SplitIo` (TCP and
    ///   Unix sockets split without a lock; see the trait for others);
    /// - a control reply the reader queues may also carry out bytes the
    ///   writer only `feed`s, since they share one ordered queue;
    /// - timers (close timeout, keepalive) are driven by the reader: keep
    ///   polling it;
    /// - the writer's `close` sends the close frame and flushes; the reply
    ///   arrives on the reader, which ends after the closing handshake.
    pub fn split(self) -> (WsReader<IO, T>, WsWriter<IO>)
    where
        IO: SplitTransport,
    {
        let (conn, io, timer) = self.inner.into_parts();
        let (read, write) = io.split_halves();
        let (inner, writer) = split_halves(conn, read, write, timer);
        (WsReader { inner }, writer)
    }
}

impl<IO: Transport + Unpin, T: Timer + Unpin> Stream for WebSocketStream<IO, T> {
    type Item = Result<Message, Error>;

    /// Cancel-safe, as [`WebSocketStream::recv`].
    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().inner.poll_recv(cx)
    }
}

impl<IO: Transport + Unpin, T: Timer + Unpin> FusedStream for WebSocketStream<IO, T> {
    fn is_terminated(&self) -> bool {
        self.inner.is_terminated()
    }
}

impl<IO: Transport + Unpin, T: Timer + Unpin> Sink<Message> for WebSocketStream<IO, T> {
    type Error = Error;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        self.get_mut().inner.poll_ready(cx)
    }

    fn start_send(self: Pin<&mut Self>, item: Message) -> Result<(), Error> {
        self.get_mut().inner.connection_mut().send(&item)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        self.get_mut().inner.poll_flush(cx)
    }

    /// Sends a normal (1000) close frame and flushes. The peer's reply is
    /// read by the `Stream` side, which ends after it; use the inherent
    /// [`WebSocketStream::close`] to wait for the whole handshake.
    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        let inner = &mut self.get_mut().inner;
        inner.connection_mut().close(CloseCode::NORMAL, "")?;
        inner.poll_flush(cx)
    }
}

#[cfg(test)]
mod tests {
    //! The stream and its split halves over an in-memory transport, polled
    //! by hand: no runtime.

    use super::*;
    use crate::connection::Transmit;
    use std::future::Future;
    use std::io;
    use std::sync::{Arc, Mutex};
    use std::task::Waker;
    use std::time::Instant;

    /// Bytes for us to read, and what we wrote; both shared with the test.
    #[derive(Clone, Default)]
    struct Mem {
        incoming: Arc<Mutex<Vec<u8>>>,
        wire: Arc<Mutex<Vec<u8>>>,
    }

    impl ReadTransport for Mem {
        fn poll_read_into(
            &mut self,
            _cx: &mut Context<'_>,
            buf: &mut BytesMut,
        ) -> Poll<io::Result<usize>> {
            let mut data = self.incoming.lock().unwrap();
            if data.is_empty() {
                return Poll::Pending;
            }
            buf.extend_from_slice(&data);
            let n = data.len();
            data.clear();
            Poll::Ready(Ok(n))
        }
    }

    impl WriteTransport for Mem {
        fn poll_write_queued(
            &mut self,
            queue: &mut impl Transmit,
            _cx: &mut Context<'_>,
        ) -> Poll<io::Result<()>> {
            let wire = &self.wire;
            Poll::Ready(crate::rt::write::write_transmit(queue, |slices| {
                wire.lock().unwrap().extend_from_slice(&slices[0]);
                Ok(slices[0].len())
            }))
        }

        fn poll_shutdown(&mut self, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    impl Transport for Mem {
        type Io = Mem;
        fn wrap(io: Mem) -> Self {
            io
        }
        fn get_ref(&self) -> &Mem {
            self
        }
        fn get_mut(&mut self) -> &mut Mem {
            self
        }
    }

    impl SplitTransport for Mem {
        type ReadHalf = Mem;
        type WriteHalf = Mem;
        fn split_halves(self) -> (Mem, Mem) {
            (self.clone(), self)
        }
        fn unsplit(read: Mem, _write: Mem) -> Mem {
            read
        }
    }

    /// A timer that never fires.
    #[derive(Default)]
    struct Never;

    impl Timer for Never {
        fn poll_at(&mut self, _cx: &mut Context<'_>, _at: Instant) -> bool {
            false
        }
    }

    type Ws = WebSocketStream<Mem, Never>;

    /// A receive's result with errors turned into panics (`Error` has no
    /// `PartialEq`): `None` if pending, `Some(None)` at the end.
    fn got(r: Option<Option<Result<Message, Error>>>) -> Option<Option<Message>> {
        r.map(|m| m.map(|m| m.expect("no error")))
    }

    /// Polls `fut` once; `None` if it is pending.
    fn now<F: Future>(fut: F) -> Option<F::Output> {
        let mut cx = Context::from_waker(Waker::noop());
        match std::pin::pin!(fut).poll(&mut cx) {
            Poll::Ready(v) => Some(v),
            Poll::Pending => None,
        }
    }

    fn from_client(msgs: &[Message]) -> Vec<u8> {
        let mut c = Connection::new(Role::Client, Config::default());
        for m in msgs {
            c.send(m).unwrap();
        }
        c.take_transmit().to_vec()
    }

    fn decode(wire: &Mem) -> Vec<Message> {
        let mut c = Connection::new(Role::Client, Config::default());
        c.handle_bytes(&std::mem::take(&mut *wire.wire.lock().unwrap()));
        std::iter::from_fn(|| c.poll_message().unwrap()).collect()
    }

    fn server() -> (Ws, Mem) {
        let mem = Mem::default();
        let ws = Ws::from_raw(
            mem.clone(),
            Role::Server,
            Config::default(),
            BytesMut::new(),
        );
        (ws, mem)
    }

    fn close_reply() -> Vec<u8> {
        from_client(&[Message::Close(Some(crate::CloseFrame::new(
            CloseCode::NORMAL,
            "",
        )))])
    }

    #[test]
    fn recv_yields_what_arrived_answers_pings_and_is_pending_when_empty() {
        let buffered = BytesMut::from(&from_client(&[Message::text("a")])[..]);
        let mem = Mem::default();
        let mut ws = Ws::from_raw(mem.clone(), Role::Server, Config::default(), buffered);
        assert_eq!(got(now(ws.recv())), Some(Some(Message::text("a"))));
        mem.incoming.lock().unwrap().extend(from_client(&[
            Message::Ping("p".into()),
            Message::binary(vec![1]),
        ]));
        assert_eq!(got(now(ws.recv())), Some(Some(Message::Ping("p".into()))));
        assert_eq!(got(now(ws.recv())), Some(Some(Message::binary(vec![1]))));
        assert_eq!(got(now(ws.recv())), None, "nothing more: pending");
        assert_eq!(decode(&mem), vec![Message::Pong("p".into())]);
        assert!(format!("{ws:?}").starts_with("WebSocketStream"));
    }

    #[test]
    fn every_send_reaches_the_wire_in_order() {
        let (mut ws, mem) = server();
        now(ws.send(Message::text("1"))).unwrap().unwrap();
        now(ws.send_text("2")).unwrap().unwrap();
        now(ws.send_binary(b"3")).unwrap().unwrap();
        now(ws.feed(Message::text("4"))).unwrap().unwrap();
        assert_eq!(decode(&mem).len(), 3, "feed only queues");
        now(ws.flush()).unwrap().unwrap();
        assert_eq!(decode(&mem), vec![Message::text("4")]);
        assert!(ws.get_ref().wire.lock().unwrap().is_empty());
        let _ = ws.get_mut();
    }

    #[test]
    fn close_runs_the_handshake_and_the_stream_ends() {
        let (mut ws, mem) = server();
        mem.incoming.lock().unwrap().extend(close_reply());
        assert!(!FusedStream::is_terminated(&ws));
        assert!(matches!(
            now(ws.close(CloseCode::NORMAL, "bye")),
            Some(Ok(()))
        ));
        assert!(matches!(
            decode(&mem).as_slice(),
            [Message::Close(Some(f))] if f.reason == "bye"
        ));
        assert!(FusedStream::is_terminated(&ws));
        assert_eq!(got(now(ws.recv())), Some(None));
        assert!(ws.connection().close_sent());
    }

    #[test]
    fn the_stream_and_sink_traits_do_what_the_methods_do() {
        let (mut ws, mem) = server();
        let mut cx = Context::from_waker(Waker::noop());
        let mut pinned = Pin::new(&mut ws);
        assert!(matches!(
            pinned.as_mut().poll_ready(&mut cx),
            Poll::Ready(Ok(()))
        ));
        pinned.as_mut().start_send(Message::text("s")).unwrap();
        assert!(matches!(
            pinned.as_mut().poll_flush(&mut cx),
            Poll::Ready(Ok(()))
        ));
        assert_eq!(decode(&mem), vec![Message::text("s")]);
        mem.incoming
            .lock()
            .unwrap()
            .extend(from_client(&[Message::text("in")]));
        assert!(matches!(
            pinned.as_mut().poll_next(&mut cx),
            Poll::Ready(Some(Ok(m))) if m == Message::text("in")
        ));
        assert!(matches!(
            pinned.as_mut().poll_close(&mut cx),
            Poll::Ready(Ok(()))
        ));
        assert!(matches!(
            decode(&mem).as_slice(),
            [Message::Close(Some(f))] if f.code == CloseCode::NORMAL
        ));
        assert!(ws.connection().close_sent());
    }

    #[test]
    fn split_halves_read_write_and_reunite() {
        let (ws, mem) = server();
        let (mut reader, mut writer) = ws.split();
        now(writer.send_text("w")).unwrap().unwrap();
        assert_eq!(decode(&mem), vec![Message::text("w")]);
        mem.incoming
            .lock()
            .unwrap()
            .extend(from_client(&[Message::text("r1"), Message::text("r2")]));
        assert_eq!(got(now(reader.recv())), Some(Some(Message::text("r1"))));
        let mut cx = Context::from_waker(Waker::noop());
        assert!(matches!(
            Pin::new(&mut reader).poll_next(&mut cx),
            Poll::Ready(Some(Ok(m))) if m == Message::text("r2")
        ));
        assert!(!FusedStream::is_terminated(&reader));
        assert!(format!("{reader:?}").starts_with("WsReader"));
        let mut ws = reader.reunite(writer).map_err(|_| ()).unwrap();
        now(ws.send_text("again")).unwrap().unwrap();
        assert_eq!(decode(&mem), vec![Message::text("again")]);
        mem.incoming.lock().unwrap().extend(close_reply());
        let (mut reader, mut writer) = ws.split();
        now(writer.close(CloseCode::NORMAL, "")).unwrap().unwrap();
        assert!(matches!(
            now(reader.recv()),
            Some(Some(Ok(Message::Close(_))))
        ));
        assert_eq!(got(now(reader.recv())), Some(None));
        assert!(FusedStream::is_terminated(&reader));
    }
}
