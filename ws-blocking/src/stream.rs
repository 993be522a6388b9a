//! [`WebSocketStream`]: one WebSocket connection over a blocking transport,
//! and its [`WsReader`]/[`WsWriter`] halves for reading and writing from two
//! threads.
//!
//! Everything protocol-related is [`ws_core::Connection`] (split into a
//! [`ws_core::Receiver`] and a [`ws_core::Sender`] for the halves); this
//! module only reads into the receive buffer, writes out what is queued, and
//! turns the connection's deadlines into transport read timeouts.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering, fence};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, TryLockError};
use std::thread;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use ws_core::{CloseCode, Config, Connection, Error, Message, Receiver, Role, Sender, Transmit};

use crate::Result;

// ------------------------------------------------------------- transports

/// A transport whose blocking reads can be given a timeout, which is how this
/// crate runs ws-core's timers (close handshake timeout, keepalive) without a
/// runtime: before each blocking read the timeout is set to the time left
/// until [`Connection::poll_timeout`], and when the read times out
/// (`WouldBlock`/`TimedOut`) the timers fire.
///
/// Implemented for `TcpStream` and (on Unix) `UnixStream`, and for references
/// and boxes of implementors. For a transport without read timeouts (an
/// in-memory pipe, a TLS wrapper you cannot reach into), implement it with
/// `Ok(())` bodies or wrap the transport in [`NoReadTimeout`]: everything
/// still works, but timers only fire when the next read returns.
pub trait SetReadTimeout {
    /// Sets the timeout of subsequent blocking reads (`None`: block forever).
    /// Never called with `Some(Duration::ZERO)`.
    fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()>;

    /// Shuts the transport down in both directions once the WebSocket is
    /// finished, so the peer sees the end (a server closes TCP first, RFC
    /// 6455 section 7.1.1) and a thread blocked reading it wakes up. The
    /// default does nothing; dropping the transport then closes it.
    fn close_transport(&self) -> io::Result<()> {
        Ok(())
    }
}

impl SetReadTimeout for TcpStream {
    fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        TcpStream::set_read_timeout(self, timeout)
    }
    fn close_transport(&self) -> io::Result<()> {
        ignore_not_connected(self.shutdown(Shutdown::Both))
    }
}

#[cfg(unix)]
impl SetReadTimeout for std::os::unix::net::UnixStream {
    fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        std::os::unix::net::UnixStream::set_read_timeout(self, timeout)
    }
    fn close_transport(&self) -> io::Result<()> {
        ignore_not_connected(self.shutdown(Shutdown::Both))
    }
}

impl<T: SetReadTimeout + ?Sized> SetReadTimeout for &T {
    fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        (**self).set_read_timeout(timeout)
    }
    fn close_transport(&self) -> io::Result<()> {
        (**self).close_transport()
    }
}

impl<T: SetReadTimeout + ?Sized> SetReadTimeout for &mut T {
    fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        (**self).set_read_timeout(timeout)
    }
    fn close_transport(&self) -> io::Result<()> {
        (**self).close_transport()
    }
}

impl<T: SetReadTimeout + ?Sized> SetReadTimeout for Box<T> {
    fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        (**self).set_read_timeout(timeout)
    }
    fn close_transport(&self) -> io::Result<()> {
        (**self).close_transport()
    }
}

/// A shutdown racing the peer's own close reports `NotConnected`; the
/// transport is finished either way.
fn ignore_not_connected(r: io::Result<()>) -> io::Result<()> {
    match r {
        Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(()),
        r => r,
    }
}

/// Wraps a transport that has no read timeouts so it can be used with
/// [`WebSocketStream`]: timers then fire only when a read returns.
#[derive(Debug, Clone, Default)]
pub struct NoReadTimeout<S>(pub S);

impl<S: Read> Read for NoReadTimeout<S> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf)
    }
}

impl<S: Write> Write for NoReadTimeout<S> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

impl<S> SetReadTimeout for NoReadTimeout<S> {
    fn set_read_timeout(&self, _: Option<Duration>) -> io::Result<()> {
        Ok(())
    }
}

// ---------------------------------------------------------------- helpers

/// Most bytes zeroed for one read: safe Rust must initialise the spare
/// capacity before `Read::read` may fill it, so this caps that cost per
/// syscall when the receive buffer has grown large for a big frame.
const MAX_READ: usize = 256 * 1024;

/// One `read` straight into the spare capacity of `buf` (no intermediate
/// buffer, no copy); returns the transport's result.
pub(crate) fn read_into<R: Read + ?Sized>(io: &mut R, buf: &mut BytesMut) -> io::Result<usize> {
    if buf.capacity() - buf.len() < 1024 {
        buf.reserve(4096);
    }
    let len = buf.len();
    let room = (buf.capacity() - len).min(MAX_READ);
    buf.resize(len + room, 0);
    let result = io.read(&mut buf[len..]);
    let n = result.as_ref().map_or(0, |n| (*n).min(room));
    buf.truncate(len + n);
    result
}

/// Writes everything `t` (a Connection or a split Sender) has queued, with
/// one vectored write per batch of chunks (a large echo's header and its
/// shared payload leave in one syscall), then flushes `io` (always: a
/// buffering transport may hold bytes from an earlier attempt). Bytes leave
/// the queue only once written, so a write timeout is retryable.
pub(crate) fn write_queued<W: Write>(io: &mut W, t: &mut impl Transmit) -> io::Result<()> {
    ws_core::rt::write::write_transmit(t, |slices| io.write_vectored(slices))?;
    io.flush()
}

/// `read`'s result as `recv`'s: the end of the connection is `None`.
fn end_of_stream(read: Result<Message>) -> Option<Result<Message>> {
    match read {
        Err(Error::Closed) => None,
        r => Some(r),
    }
}

/// Whether a read error is a timeout (Unix reports `WouldBlock`, Windows
/// `TimedOut`).
pub(crate) fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

fn timed_out() -> Error {
    Error::Io(io::Error::new(
        io::ErrorKind::TimedOut,
        "no message within the read timeout",
    ))
}

/// Remembers the read timeout last set on a transport, so a read whose
/// deadline did not (meaningfully) change costs no extra `setsockopt`.
#[derive(Debug, Default)]
pub(crate) struct TimeoutCache {
    set: Option<Option<Duration>>,
}

impl TimeoutCache {
    /// Sets the read timeout for a read that should return by `deadline`.
    /// Returns `Ok(false)` (and sets nothing) when the deadline has passed.
    pub(crate) fn arm<T: SetReadTimeout + ?Sized>(
        &mut self,
        io: &T,
        deadline: Option<Instant>,
        now: Instant,
    ) -> io::Result<bool> {
        let want = match deadline {
            None => None,
            Some(d) => {
                let left = d.saturating_duration_since(now);
                if left.is_zero() {
                    return Ok(false);
                }
                Some(left)
            }
        };
        // A timeout a little late or early is harmless (an early wake only
        // re-arms), so keep the current one when it is close to the wanted.
        let keep = match (self.set, want) {
            (Some(None), None) => true,
            (Some(Some(cur)), Some(w)) => {
                cur >= w / 2 && cur <= w + (w / 16).max(Duration::from_millis(1))
            }
            _ => false,
        };
        if !keep {
            self.set = None;
            io.set_read_timeout(want)?;
            self.set = Some(want);
        }
        Ok(true)
    }
}

// ------------------------------------------------------------ the stream

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
    io: S,
    conn: Connection,
    timeouts: TimeoutCache,
    read_timeout: Option<Duration>,
    ended: bool,
}

/// The tungstenite-style name of [`WebSocketStream`].
pub type WebSocket<S> = WebSocketStream<S>;

impl<S> WebSocketStream<S> {
    /// Wraps a transport whose opening handshake was done elsewhere;
    /// `buffered` holds bytes that arrived after the handshake (they are
    /// decoded first).
    pub fn from_raw(io: S, role: Role, config: Config, buffered: BytesMut) -> Self {
        WebSocketStream {
            io,
            conn: Connection::with_buffered(role, config, buffered),
            timeouts: TimeoutCache::default(),
            read_timeout: None,
            ended: false,
        }
    }

    /// The protocol state (for inspection: state, close frames, buffered
    /// bytes).
    pub fn connection(&self) -> &ws_core::Connection {
        &self.conn
    }

    /// The transport.
    pub fn get_ref(&self) -> &S {
        &self.io
    }

    /// The transport, mutably. Reading or writing it directly corrupts the
    /// WebSocket stream; its read timeout is managed by [`read`](Self::read)
    /// (use [`set_read_timeout`](Self::set_read_timeout) instead).
    pub fn get_mut(&mut self) -> &mut S {
        // The caller may change the transport's timeout behind our back.
        self.timeouts = TimeoutCache::default();
        &mut self.io
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
        let user_deadline = self.read_timeout.map(|d| Instant::now() + d);
        loop {
            if self.ended {
                return Err(Error::Closed);
            }
            match self.conn.poll_message() {
                Ok(Some(msg)) => {
                    if self.conn.wants_write() {
                        // A fatal write error ends the stream; the next read reports it.
                        let _ = self.write_out();
                    }
                    return Ok(msg);
                }
                Ok(None) => {}
                Err(e) => {
                    let _ = self.write_out();
                    if self.conn.should_close_transport() {
                        self.end();
                    }
                    return Err(e);
                }
            }
            if self.conn.wants_write() {
                self.write_out()?;
            }
            if self.conn.should_close_transport() {
                self.end();
                return Err(Error::Closed);
            }
            let now = Instant::now();
            let timer = self.conn.poll_timeout(now);
            if user_deadline.is_some_and(|d| d <= now) {
                return Err(timed_out());
            }
            let deadline = earliest(timer, user_deadline);
            if !self.timeouts.arm(&self.io, deadline, now)? {
                self.conn.handle_timeout(now);
                continue;
            }
            match read_into(&mut self.io, self.conn.read_buf()) {
                Ok(0) => self.conn.handle_eof(),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if is_timeout(&e) => {
                    if deadline.is_none() {
                        // Not our timeout (non-blocking transport): retryable.
                        return Err(Error::Io(e));
                    }
                    self.conn.handle_timeout(Instant::now());
                }
                Err(e) => {
                    self.conn.handle_eof();
                    self.end();
                    return Err(Error::Io(e));
                }
            }
        }
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
        if self.ended {
            return Err(Error::Closed);
        }
        f(&mut self.conn)?;
        if self.conn.buffered_transmit() > self.conn.config().get_write_buffer_limit() {
            self.write_out()?;
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
        self.write_out()
    }

    /// Closes the connection: sends a close frame with `code` and `reason`
    /// (at most 123 bytes), then reads (discarding messages) until the
    /// peer's reply and the end of the transport, bounded by
    /// `Config::close_timeout` (`Error::Timeout` when the peer never
    /// answers). Returns `Ok(())` when the stream is already closed.
    pub fn close(&mut self, code: CloseCode, reason: &str) -> Result<()> {
        if self.ended {
            return Ok(());
        }
        self.conn.close(code, reason)?;
        self.flush()?;
        let user_timeout = self.read_timeout.take();
        let result = loop {
            match self.read() {
                Ok(_) => {}
                Err(Error::Closed) => break Ok(()),
                Err(e) => break Err(e),
            }
        };
        self.read_timeout = user_timeout;
        result
    }

    /// An iterator over incoming messages: `read` until `Err(Error::Closed)`
    /// (which ends the iteration; other errors are yielded).
    pub fn messages(&mut self) -> Messages<'_, Self> {
        Messages { source: self }
    }

    /// Writes the whole output buffer. Bytes leave the buffer only once
    /// written, so a timeout of the caller's own write timeout is retryable;
    /// any other error ends the stream.
    fn write_out(&mut self) -> Result<()> {
        match write_queued(&mut self.io, &mut self.conn) {
            Ok(_) => Ok(()),
            Err(e) if is_timeout(&e) => Err(Error::Io(e)),
            Err(e) => Err(self.write_failed(e)),
        }
    }

    fn write_failed(&mut self, e: io::Error) -> Error {
        self.conn.handle_eof();
        self.end();
        Error::Io(e)
    }

    fn end(&mut self) {
        if !self.ended {
            self.ended = true;
            let _ = self.io.flush();
            let _ = self.io.close_transport();
        }
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
    /// behind a write mutex that writers (every clone of the [`WsWriter`])
    /// hold while queueing and while writing, so frames never interleave; a
    /// writer blocked by back-pressure holds it that long.
    ///
    /// The reader answers pings and close frames and runs the timers (close
    /// timeout, keepalive). For a control reply it only *tries* the write
    /// mutex: when it is free, the reader writes the reply (and anything
    /// queued before it) itself, a write that blocks while the peer applies
    /// back-pressure; when a writer holds it, that writer writes the reply
    /// before it returns. So a pong goes out even while every writer is
    /// idle, and the reader never waits for the write mutex. Keep reading
    /// the [`WsReader`] even if you only send.
    pub fn split(self) -> (WsReader<S>, WsWriter<S>) {
        let (rx, tx) = self.conn.split();
        let split = Arc::new(Split {
            io: self.io,
            write: Mutex::new(WriteSide {
                tx,
                failed: false,
                shut_down: false,
            }),
            owed: AtomicBool::new(false),
            ended: AtomicBool::new(self.ended),
            done: Mutex::new(self.ended),
            done_cv: Condvar::new(),
        });
        (
            WsReader {
                rx,
                split: split.clone(),
                timeouts: self.timeouts,
                read_timeout: self.read_timeout,
                read_eof: false,
                ended: self.ended,
            },
            WsWriter { split },
        )
    }
}

/// Iterator over incoming messages, from [`WebSocketStream::messages`],
/// [`WsReader::messages`] or [`crate::Client::messages`]: ends after the
/// connection is closed, yields errors (including read timeouts) as items.
#[derive(Debug)]
pub struct Messages<'a, T> {
    pub(crate) source: &'a mut T,
}

fn message_item(r: Result<Message>) -> Option<Result<Message>> {
    match r {
        Err(Error::Closed) => None,
        r => Some(r),
    }
}

impl<S: Read + Write + SetReadTimeout> Iterator for Messages<'_, WebSocketStream<S>> {
    type Item = Result<Message>;
    fn next(&mut self) -> Option<Self::Item> {
        message_item(self.source.read())
    }
}

impl<S> Iterator for Messages<'_, WsReader<S>>
where
    S: SetReadTimeout,
    for<'a> &'a S: Read + Write,
{
    type Item = Result<Message>;
    fn next(&mut self) -> Option<Self::Item> {
        message_item(self.source.read())
    }
}

// ------------------------------------------------ the server's plumbing

/// Protocol state shared by the threads of one server connection (the
/// blocking server's per-connection state; the halves of a split
/// [`WebSocketStream`] use [`ws_core::Receiver`]/[`ws_core::Sender`]
/// instead, see below).
pub(crate) trait SharedState {
    /// Where the next read goes, while there is a connection to read for.
    fn read_buf(&mut self) -> Option<&mut BytesMut>;
    /// Whether bytes are queued for the transport.
    fn wants_write(&self) -> bool;
    /// Whether the reading side finished (the transport is done).
    fn is_done(&self) -> bool;
    /// The queued bytes for one write made outside the lock (empty or
    /// `None`: nothing to write). They may stay queued until
    /// [`written`](Self::written) reports them on the wire.
    fn take_for_write(&mut self) -> Option<Bytes>;
    /// `n` bytes taken by [`take_for_write`](Self::take_for_write) are on
    /// the wire.
    fn written(&mut self, n: usize);
}

/// A transport shared by a server connection's reading and writing threads,
/// the protocol state behind a mutex, and a write lock that keeps frames from
/// interleaving.
///
/// Lock order: `write_lock` before `state`; `state` is never held during
/// I/O.
pub(crate) struct Shared<S, St> {
    pub(crate) io: S,
    state: Mutex<St>,
    /// Notified when the reading side finishes (`is_done`).
    done_cv: Condvar,
    write_lock: Mutex<()>,
}

impl<S: fmt::Debug, St: fmt::Debug> fmt::Debug for Shared<S, St> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shared")
            .field("io", &self.io)
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

/// What one blocking read produced.
pub(crate) enum Step {
    Data,
    Eof,
    /// The read timed out, or the deadline had already passed.
    TimedOut,
    Interrupted,
    /// The read (or setting its timeout) failed: the transport is done.
    Failed,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // The protected state stays consistent even if a holder panicked (no
    // multi-step invariants span a panic point), so poisoning is ignored.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl<S, St: SharedState> Shared<S, St> {
    pub(crate) fn new(io: S, state: St) -> Self {
        Shared {
            io,
            state: Mutex::new(state),
            done_cv: Condvar::new(),
            write_lock: Mutex::new(()),
        }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, St> {
        lock(&self.state)
    }

    /// Wakes threads waiting in [`wait_done`](Self::wait_done); call after
    /// making `is_done` true.
    pub(crate) fn notify_done(&self) {
        self.done_cv.notify_all();
    }

    /// Waits up to `timeout` for the reading side to finish; returns whether
    /// it did.
    pub(crate) fn wait_done(&self, timeout: Duration) -> bool {
        let guard = self.lock();
        let (guard, _) = self
            .done_cv
            .wait_timeout_while(guard, timeout, |s| !s.is_done())
            .unwrap_or_else(|p| p.into_inner());
        guard.is_done()
    }
}

impl<S, St: SharedState> Shared<S, St>
where
    for<'a> &'a S: Write,
{
    /// Writes out everything the connection has queued. Under the write
    /// lock it repeatedly takes the whole output buffer (no copy for a
    /// session's) and writes it, so bytes queued by another thread meanwhile
    /// leave in the same pass. With `wait == false` it does not wait for the
    /// write lock: the current holder re-checks for queued bytes after
    /// releasing it, so nothing is stranded.
    ///
    /// An error means bytes were lost: the transport must be shut down.
    pub(crate) fn flush(&self, wait: bool) -> io::Result<()> {
        loop {
            let guard = if wait {
                lock(&self.write_lock)
            } else {
                match self.write_lock.try_lock() {
                    Ok(g) => g,
                    Err(TryLockError::WouldBlock) => return Ok(()),
                    Err(TryLockError::Poisoned(p)) => p.into_inner(),
                }
            };
            let mut wrote = false;
            loop {
                let bytes = match self.lock().take_for_write() {
                    Some(bytes) => bytes,
                    None => break,
                };
                if bytes.is_empty() {
                    break;
                }
                // Each write's progress is reported at once: a server
                // session takes more broadcasts as room appears, so a client
                // that reads slowly drains its queue as it goes.
                let mut rest = &bytes[..];
                while !rest.is_empty() {
                    match (&self.io).write(rest) {
                        Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                        Ok(n) => {
                            rest = &rest[n..];
                            self.lock().written(n);
                        }
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => return Err(e),
                    }
                }
                wrote = true;
            }
            if wrote {
                (&self.io).flush()?;
            }
            drop(guard);
            if !self.lock().wants_write() {
                return Ok(());
            }
        }
    }
}

impl<S, St: SharedState> Shared<S, St>
where
    S: SetReadTimeout,
    for<'a> &'a S: Read,
{
    /// One blocking read straight into the connection's read buffer (the
    /// request head's, then the session's), without holding the state lock
    /// while blocked: the buffer is swapped out (with `spare`, an empty
    /// buffer) for the duration of the read and swapped back after. Only the
    /// reading thread touches the receive side, so nothing else needs it
    /// meanwhile. Call without holding the lock.
    pub(crate) fn read_once(
        &self,
        spare: &mut BytesMut,
        timeouts: &mut TimeoutCache,
        deadline: Option<Instant>,
        now: Instant,
    ) -> Step {
        match self.lock().read_buf() {
            Some(buf) => std::mem::swap(buf, spare),
            None => return Step::Eof,
        }
        let step = match timeouts.arm(&self.io, deadline, now) {
            Ok(false) => Step::TimedOut,
            Err(_) => Step::Failed,
            Ok(true) => match read_into(&mut &self.io, spare) {
                Ok(0) => Step::Eof,
                Ok(_) => Step::Data,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => Step::Interrupted,
                Err(e) if is_timeout(&e) => Step::TimedOut,
                Err(_) => Step::Failed,
            },
        };
        if let Some(buf) = self.lock().read_buf() {
            std::mem::swap(buf, spare);
        }
        step
    }
}

// ----------------------------------------------------------- the halves

/// What the halves of a split [`WebSocketStream`] share: the transport, the
/// sending side behind the write mutex, and the reader's lifecycle.
///
/// The reader never blocks on `write`: it only `try_lock`s it to write
/// control replies, after raising `owed`. Whoever releases `write` checks
/// `owed` afterwards and writes them if so (see [`write_owed`]), so a reply
/// the reader could not write is written by the holder that kept it out.
///
/// [`write_owed`]: Split::write_owed
struct Split<S> {
    io: S,
    /// The sending side: held to queue and to write.
    write: Mutex<WriteSide>,
    /// The reader handed control replies to the sender (or waits for its
    /// close frame to be written): they must be written by whoever holds, or
    /// next gets, `write`.
    owed: AtomicBool,
    /// The reader has ended (a lock-free check for the writers).
    ended: AtomicBool,
    /// The same, for the close watchdog to wait on with `done_cv`.
    done: Mutex<bool>,
    done_cv: Condvar,
}

/// The sending side of a split stream, behind [`Split::write`].
#[derive(Debug)]
struct WriteSide {
    tx: Sender,
    /// A write failed (bytes may be lost): the transport was shut down and
    /// nothing more is written.
    failed: bool,
    /// The transport was shut down because the connection is finished.
    shut_down: bool,
}

impl<S: fmt::Debug> fmt::Debug for Split<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Split")
            .field("io", &self.io)
            .field("write", &self.write)
            .field("ended", &self.ended)
            .finish_non_exhaustive()
    }
}

impl<S: SetReadTimeout> Split<S> {
    /// Marks the reading side finished: shuts the transport down (the peer
    /// sees the end; a writer blocked on it wakes up) and wakes
    /// [`WsWriter::close`].
    fn end(&self) {
        self.ended.store(true, Ordering::Release);
        let _ = self.io.close_transport();
        *lock(&self.done) = true;
        self.done_cv.notify_all();
    }

    /// Waits up to `timeout` for the reader to end; returns whether it did.
    fn wait_done(&self, timeout: Duration) -> bool {
        let guard = lock(&self.done);
        let (guard, _) = self
            .done_cv
            .wait_timeout_while(guard, timeout, |done| !*done)
            .unwrap_or_else(|p| p.into_inner());
        *guard
    }
}

impl<S> Split<S>
where
    S: SetReadTimeout,
    for<'a> &'a S: Write,
{
    /// Locks the write side (blocking); the guard writes what the reader
    /// owes when it is dropped.
    fn claim(&self) -> WriteGuard<'_, S> {
        WriteGuard {
            side: Some(lock(&self.write)),
            split: self,
        }
    }

    /// Writes everything `side` has queued, control replies included, then
    /// shuts the transport down if the connection is finished. Bytes leave
    /// the queue only once written, so the reader does not see our close
    /// frame as sent before it is. A write error is fatal: the queue is
    /// dropped and the transport shut down (which also ends the reader).
    fn write_out(&self, side: &mut WriteSide) -> Result<()> {
        // Everything owed so far leaves in this pass (the reader raises
        // `owed` after handing the replies over, so this swap sees them).
        self.owed.swap(false, Ordering::AcqRel);
        if side.failed {
            return Err(Error::Closed);
        }
        if side.tx.should_close_transport() && side.tx.wants_write() {
            // Timed out with bytes the peer never took: drop them.
            side.tx.discard_transmit();
        }
        if let Err(e) = write_queued(&mut &self.io, &mut side.tx) {
            side.failed = true;
            side.tx.discard_transmit();
            let _ = self.io.close_transport();
            return Err(Error::Io(e));
        }
        if !side.shut_down && side.tx.should_close_transport() {
            // Finished (e.g. a server's close reply is written): shutting the
            // transport down wakes the reader, which may be blocked reading.
            side.shut_down = true;
            let _ = self.io.close_transport();
        }
        Ok(())
    }

    /// The reader's side of the hand-over: raises `owed`, then writes what is
    /// owed unless the write side is held (its holder then does it).
    fn owe(&self) -> Result<()> {
        self.owed.store(true, Ordering::Release);
        self.write_owed()
    }

    /// Writes what the reader owes if the write side is free; if it is held,
    /// returns at once: the holder calls this after releasing it. Returns the
    /// error of a write done here.
    ///
    /// The `SeqCst` fences make the raise-then-try of [`owe`](Self::owe) and
    /// the release-then-check of a holder see each other: either the holder
    /// sees `owed` raised, or the reader's `try_lock` sees the write side
    /// free (or held by a later holder, which checks in turn).
    fn write_owed(&self) -> Result<()> {
        let mut result = Ok(());
        loop {
            fence(Ordering::SeqCst);
            if !self.owed.load(Ordering::Acquire) {
                return result;
            }
            let mut side = match self.write.try_lock() {
                Ok(side) => side,
                Err(TryLockError::WouldBlock) => return result,
                Err(TryLockError::Poisoned(p)) => p.into_inner(),
            };
            let r = self.write_out(&mut side);
            drop(side);
            if result.is_ok() {
                result = r;
            }
        }
    }
}

/// The write side, locked; dropping it unlocks it and then writes what the
/// reader owes meanwhile (see [`Split::write_owed`]).
struct WriteGuard<'a, S: SetReadTimeout>
where
    for<'b> &'b S: Write,
{
    side: Option<MutexGuard<'a, WriteSide>>,
    split: &'a Split<S>,
}

impl<S: SetReadTimeout> std::ops::Deref for WriteGuard<'_, S>
where
    for<'b> &'b S: Write,
{
    type Target = WriteSide;
    fn deref(&self) -> &WriteSide {
        self.side.as_ref().expect("held until dropped")
    }
}

impl<S: SetReadTimeout> std::ops::DerefMut for WriteGuard<'_, S>
where
    for<'b> &'b S: Write,
{
    fn deref_mut(&mut self) -> &mut WriteSide {
        self.side.as_mut().expect("held until dropped")
    }
}

impl<S: SetReadTimeout> Drop for WriteGuard<'_, S>
where
    for<'b> &'b S: Write,
{
    fn drop(&mut self) {
        drop(self.side.take());
        // A failed write here shut the transport down; the halves' next
        // operations report it.
        let _ = self.split.write_owed();
    }
}

/// The reading half of a split [`WebSocketStream`]: receives messages,
/// answers pings and close frames, and runs the connection's timers. It owns
/// the receiving side of the connection, so reading takes no lock (see
/// [`WebSocketStream::split`]).
#[derive(Debug)]
pub struct WsReader<S> {
    rx: Receiver,
    split: Arc<Split<S>>,
    timeouts: TimeoutCache,
    read_timeout: Option<Duration>,
    /// The transport reached end of stream.
    read_eof: bool,
    ended: bool,
}

/// Longest nap while, after end of stream, the reader waits for a writer to
/// finish writing our close frame.
const MAX_NAP: Duration = Duration::from_millis(10);

impl<S> WsReader<S>
where
    S: SetReadTimeout,
    for<'a> &'a S: Read + Write,
{
    /// The next message, `None` once the connection has ended (as
    /// [`WebSocketStream::recv`]).
    pub fn recv(&mut self) -> Option<Result<Message>> {
        end_of_stream(self.read())
    }

    /// Blocks until the next message; as [`WebSocketStream::read`]. No lock
    /// is taken to read or decode, so the writer half keeps sending
    /// meanwhile; control replies are written as [`WebSocketStream::split`]
    /// describes.
    pub fn read(&mut self) -> Result<Message> {
        let user_deadline = self.read_timeout.map(|d| Instant::now() + d);
        let mut nap = Duration::from_millis(1);
        loop {
            if self.ended {
                return Err(Error::Closed);
            }
            match self.rx.poll_message() {
                Ok(Some(msg)) => {
                    // A failed write shuts the transport down; the next read
                    // reports the end.
                    let _ = self.write_replies();
                    return Ok(msg);
                }
                Ok(None) => {}
                Err(e) => {
                    let _ = self.write_replies();
                    if self.rx.should_close_transport() {
                        self.end();
                    }
                    return Err(e);
                }
            }
            self.write_replies()?;
            if self.rx.should_close_transport() {
                self.end();
                return Err(Error::Closed);
            }
            let now = Instant::now();
            let timer = self.rx.poll_timeout(now);
            if user_deadline.is_some_and(|d| d <= now) {
                return Err(timed_out());
            }
            let deadline = earliest(timer, user_deadline);
            if self.read_eof {
                // Nothing more to read; only our close frame is still to be
                // written, by the writer holding the write side or here once
                // it is free. The close timer bounds the wait.
                let _ = self.split.owe();
                if !self.rx.should_close_transport() {
                    let left = deadline.map_or(nap, |d| d.saturating_duration_since(now));
                    thread::sleep(nap.min(left));
                    nap = (nap * 2).min(MAX_NAP);
                    self.rx.handle_timeout(Instant::now());
                }
                continue;
            }
            match self.timeouts.arm(&self.split.io, deadline, now) {
                Ok(true) => {}
                Ok(false) => {
                    self.rx.handle_timeout(now);
                    continue;
                }
                Err(e) => return Err(Error::Io(e)),
            }
            match read_into(&mut &self.split.io, self.rx.read_buf()) {
                Ok(0) => {
                    self.read_eof = true;
                    self.rx.handle_eof();
                }
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if is_timeout(&e) => {
                    if deadline.is_none() {
                        // Not our timeout (non-blocking transport): retryable.
                        return Err(Error::Io(e));
                    }
                    self.rx.handle_timeout(Instant::now());
                }
                Err(e) => {
                    self.rx.handle_eof();
                    self.end();
                    return Err(Error::Io(e));
                }
            }
        }
    }

    /// As [`WebSocketStream::set_read_timeout`].
    pub fn set_read_timeout(&mut self, timeout: Option<Duration>) {
        self.read_timeout = timeout.filter(|d| !d.is_zero());
    }

    /// An iterator over incoming messages (see [`Messages`]).
    pub fn messages(&mut self) -> Messages<'_, Self> {
        Messages { source: self }
    }

    /// The transport shared by both halves.
    pub fn get_ref(&self) -> &S {
        &self.split.io
    }

    /// Writes the control replies the receiver handed to the sender, unless
    /// a writer holds the write side (it writes them when it lets go).
    fn write_replies(&self) -> Result<()> {
        if self.rx.control_pending() {
            self.split.owe()
        } else {
            Ok(())
        }
    }

    fn end(&mut self) {
        if !self.ended {
            self.ended = true;
            self.split.end();
        }
    }
}

/// The writing half of a split [`WebSocketStream`]. Cloning it gives
/// another handle to the same connection (for several producer threads);
/// messages from different handles never interleave within a frame.
#[derive(Debug)]
pub struct WsWriter<S> {
    split: Arc<Split<S>>,
}

impl<S> Clone for WsWriter<S> {
    fn clone(&self) -> Self {
        WsWriter {
            split: self.split.clone(),
        }
    }
}

impl<S> WsWriter<S>
where
    S: SetReadTimeout,
    for<'a> &'a S: Read + Write,
{
    /// Queues `msg` and writes out everything queued.
    pub fn send(&mut self, msg: Message) -> Result<()> {
        self.feed(msg)?;
        self.flush()
    }

    /// Queues `msg` without writing (writes only above
    /// `Config::write_buffer_limit`).
    pub fn feed(&mut self, msg: Message) -> Result<()> {
        self.queue(|tx| tx.send(&msg))
    }

    /// Queues and flushes a text message without building a [`Message`].
    pub fn send_text(&mut self, text: &str) -> Result<()> {
        self.queue(|tx| tx.send_text(text))?;
        self.flush()
    }

    /// Queues and flushes a binary message without building a [`Message`].
    pub fn send_binary(&mut self, data: &[u8]) -> Result<()> {
        self.queue(|tx| tx.send_binary(data))?;
        self.flush()
    }

    /// Writes out everything queued (control replies the reader handed over
    /// included). A write error shuts the transport down (bytes may have
    /// been lost), which also ends the reader half.
    pub fn flush(&mut self) -> Result<()> {
        let mut side = self.split.claim();
        self.split.write_out(&mut side)
    }

    /// Sends a close frame with `code` and `reason` (unless one was sent)
    /// and flushes it, as on every runtime. The peer's reply arrives on the
    /// [`WsReader`], which ends once the closing handshake is over.
    ///
    /// The close timeout still bounds that: a reader blocked in `read` cannot
    /// see a timer, so a watchdog thread shuts the transport down if the
    /// reader has not ended by then (which ends the blocked read). If no
    /// thread can be started, this waits for the reader itself.
    pub fn close(&mut self, code: CloseCode, reason: &str) -> Result<()>
    where
        S: Send + Sync + 'static,
    {
        if self.split.ended.load(Ordering::Acquire) {
            return Ok(());
        }
        let timeout = {
            let mut side = self.split.claim();
            side.tx.close(code, reason)?;
            self.split.write_out(&mut side)?;
            side.tx.config().get_close_timeout()
        };
        let split = self.split.clone();
        let watchdog = move || {
            if !split.wait_done(timeout) {
                let _ = split.io.close_transport();
            }
        };
        let spawned = std::thread::Builder::new()
            .name("ws-close-watchdog".into())
            .stack_size(64 * 1024)
            .spawn(watchdog.clone());
        if spawned.is_err() {
            watchdog();
        }
        Ok(())
    }

    /// The transport shared by both halves.
    pub fn get_ref(&self) -> &S {
        &self.split.io
    }

    fn queue(&mut self, f: impl FnOnce(&mut Sender) -> Result<()>) -> Result<()> {
        let mut side = self.split.claim();
        if side.failed || self.split.ended.load(Ordering::Acquire) {
            return Err(Error::Closed);
        }
        f(&mut side.tx)?;
        if side.tx.buffered_transmit() > side.tx.config().get_write_buffer_limit() {
            self.split.write_out(&mut side)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;
    use std::sync::mpsc;

    /// A connected pair of sockets on 127.0.0.1, with bounded reads.
    fn socket_pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let ours = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (peer, _) = listener.accept().unwrap();
        peer.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        (ours, peer)
    }

    /// Reads from the raw peer socket until `dec` decodes a message.
    fn peer_read(sock: &mut TcpStream, dec: &mut Connection) -> io::Result<Message> {
        let mut buf = [0u8; 4096];
        loop {
            if let Some(msg) = dec.poll_message().unwrap() {
                return Ok(msg);
            }
            let n = sock.read(&mut buf)?;
            if n == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            dec.handle_bytes(&buf[..n]);
        }
    }

    #[test]
    fn a_pong_the_reader_cannot_write_is_written_when_the_writer_lets_go() {
        let (ours, mut peer) = socket_pair();
        let ws = WebSocketStream::from_raw(ours, Role::Client, Config::default(), BytesMut::new());
        let (mut reader, writer) = ws.split();
        reader.set_read_timeout(Some(Duration::from_secs(5)));
        let mut enc = Connection::new(Role::Server, Config::default());
        enc.send_ping(b"x").unwrap();
        peer.write_all(&enc.take_transmit()).unwrap();

        // A writer holds the write side (as while queueing or writing).
        let held = writer.split.claim();
        assert_eq!(reader.read().unwrap(), Message::Ping("x".into()));
        peer.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let r = peer_read(&mut peer, &mut enc);
        assert!(
            r.as_ref().is_err_and(is_timeout),
            "the reader did not write past the holder: {r:?}"
        );

        // Letting go writes the pong, though no writer does anything more.
        drop(held);
        peer.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        assert_eq!(
            peer_read(&mut peer, &mut enc).unwrap(),
            Message::Pong("x".into())
        );
    }

    #[test]
    fn a_server_reader_ends_once_a_writer_has_written_the_close_reply() {
        let (ours, mut peer) = socket_pair();
        let config = Config::default().close_timeout(Duration::from_secs(10));
        let ws = WebSocketStream::from_raw(ours, Role::Server, config, BytesMut::new());
        let (mut reader, writer) = ws.split();
        reader.set_read_timeout(Some(Duration::from_secs(5)));
        let mut enc = Connection::new(Role::Client, Config::default());
        enc.close(CloseCode::NORMAL, "").unwrap();
        peer.write_all(&enc.take_transmit()).unwrap();

        // The close arrives while a writer holds the write side: the writer
        // writes the reply when it lets go.
        let held = writer.split.claim();
        assert!(matches!(reader.read().unwrap(), Message::Close(Some(_))));
        let (done, wait_done) = mpsc::channel();
        let reader_thread = thread::spawn(move || {
            let t = Instant::now();
            let r = reader.read();
            let _ = done.send(());
            (r, t.elapsed())
        });
        thread::sleep(Duration::from_millis(50));
        drop(held);

        // The client gets the reply and then the end of the stream, and the
        // reader (blocked reading) ends at once, not at the close timeout.
        assert!(matches!(
            peer_read(&mut peer, &mut enc).unwrap(),
            Message::Close(Some(f)) if f.code == CloseCode::NORMAL
        ));
        wait_done
            .recv_timeout(Duration::from_secs(3))
            .expect("the reader ended");
        let (r, took) = reader_thread.join().unwrap();
        assert!(matches!(r, Err(Error::Closed)), "{r:?}");
        assert!(took < Duration::from_secs(3), "{took:?}");
        let mut rest = Vec::new();
        assert_eq!(peer.read_to_end(&mut rest).unwrap(), 0, "then the end");
    }
}
