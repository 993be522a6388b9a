//! The blocking transport as ws-core's loops see it: [`SetReadTimeout`]
//! (how a deadline reaches a blocking read), the read and write calls, and
//! their [`ReadTransport`]/[`WriteTransport`] implementations for the whole
//! stream ([`Io`]) and for the split halves ([`ReadHalf`], [`WriteHalf`]).
//!
//! Every call completes before it returns, as
//! [`ws_core::rt::block`] expects: a read blocks until data arrives, the
//! transport ends, or [`block::io_deadline`] (the connection's next timer,
//! or the caller's read timeout) passes; then it returns `Pending` after
//! waking the task, and the loop's next step fires the timer.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use ws_core::Transmit;
use ws_core::rt::block;
use ws_core::rt::driver::{ReadTransport, WriteTransport};

/// A transport whose blocking reads can be given a timeout, which is how this
/// crate runs ws-core's timers (close handshake timeout, keepalive) without a
/// runtime: before each blocking read the timeout is set to the time left
/// until [`ws_core::Connection::poll_timeout`], and when the read times out
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
/// [`WebSocketStream`](crate::WebSocketStream): timers then fire only when a
/// read returns.
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

// ------------------------------------------------------------ the calls

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

/// Whether a read error is a timeout (Unix reports `WouldBlock`, Windows
/// `TimedOut`).
pub(crate) fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
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

/// One blocking read into `buf` for a loop run by [`block::block_on`],
/// bounded by [`block::io_deadline`]: `Pending` (task woken) when that
/// deadline passes, so the loop fires its timer; `Pending` after
/// [`block::give_up`] for a timeout that is not ours (a non-blocking
/// transport), which the caller returns as a retryable error. A failed
/// read shuts the transport down.
fn poll_read<T: Read + SetReadTimeout>(
    io: &mut T,
    timeouts: &mut TimeoutCache,
    cx: &mut Context<'_>,
    buf: &mut BytesMut,
) -> Poll<io::Result<usize>> {
    if block::gave_up() {
        return Poll::Pending;
    }
    let deadline = block::io_deadline();
    match timeouts.arm(&*io, deadline, Instant::now()) {
        Ok(true) => {}
        Ok(false) => {
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        Err(e) => {
            block::give_up(e);
            return Poll::Pending;
        }
    }
    match read_into(io, buf) {
        Err(e) if is_timeout(&e) => {
            if deadline.is_some() {
                cx.waker().wake_by_ref();
            } else {
                block::give_up(e);
            }
            Poll::Pending
        }
        Err(e) if e.kind() != io::ErrorKind::Interrupted => {
            let _ = io.close_transport();
            Poll::Ready(Err(e))
        }
        r => Poll::Ready(r),
    }
}

// ------------------------------------------------ the whole stream's

/// The transport of a whole [`WebSocketStream`](crate::WebSocketStream).
#[derive(Debug)]
pub(crate) struct Io<S> {
    pub(crate) io: S,
    pub(crate) timeouts: TimeoutCache,
    /// The transport was shut down.
    shut: bool,
}

impl<S> Io<S> {
    pub(crate) fn new(io: S) -> Self {
        Io {
            io,
            timeouts: TimeoutCache::default(),
            shut: false,
        }
    }
}

impl<S: Write + SetReadTimeout> Io<S> {
    /// Flushes and shuts the transport down, once.
    pub(crate) fn shut_down(&mut self) {
        if !self.shut {
            self.shut = true;
            let _ = self.io.flush();
            let _ = self.io.close_transport();
        }
    }
}

impl<S: Read + SetReadTimeout> ReadTransport for Io<S> {
    fn poll_read_into(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut BytesMut,
    ) -> Poll<io::Result<usize>> {
        let r = poll_read(&mut self.io, &mut self.timeouts, cx, buf);
        // A failed read shut the transport down.
        self.shut |= matches!(&r, Poll::Ready(Err(e)) if e.kind() != io::ErrorKind::Interrupted);
        r
    }
}

impl<S: Write + SetReadTimeout> WriteTransport for Io<S> {
    /// A timeout (the transport's own write timeout) gives up, retryably:
    /// bytes leave the queue only once written. Any other error shuts the
    /// transport down.
    fn poll_write_queued(
        &mut self,
        queue: &mut impl Transmit,
        _: &mut Context<'_>,
    ) -> Poll<io::Result<()>> {
        if block::gave_up() {
            return Poll::Pending;
        }
        match write_queued(&mut self.io, queue) {
            Err(e) if is_timeout(&e) => {
                block::give_up(e);
                Poll::Pending
            }
            Err(e) => {
                self.shut_down();
                Poll::Ready(Err(e))
            }
            Ok(()) => Poll::Ready(Ok(())),
        }
    }

    fn poll_shutdown(&mut self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        if block::gave_up() {
            // Not before what is queued is written.
            return Poll::Pending;
        }
        self.shut_down();
        Poll::Ready(Ok(()))
    }
}

// ------------------------------------------------------- the halves'

/// The reading half's transport: the shared transport, read through `&S`.
#[derive(Debug)]
pub(crate) struct ReadHalf<S> {
    pub(crate) io: Arc<S>,
    pub(crate) timeouts: TimeoutCache,
}

impl<S: SetReadTimeout> ReadTransport for ReadHalf<S>
where
    for<'a> &'a S: Read,
{
    fn poll_read_into(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut BytesMut,
    ) -> Poll<io::Result<usize>> {
        poll_read(&mut &*self.io, &mut self.timeouts, cx, buf)
    }
}

/// The writing half's transport: the shared transport, written through
/// `&S`. Any write error is fatal for the halves (as on every runtime) and
/// shuts the transport down, which also ends the reader.
#[derive(Debug)]
pub(crate) struct WriteHalf<S>(pub(crate) Arc<S>);

impl<S: SetReadTimeout> WriteTransport for WriteHalf<S>
where
    for<'a> &'a S: Write,
{
    fn poll_write_queued(
        &mut self,
        queue: &mut impl Transmit,
        _: &mut Context<'_>,
    ) -> Poll<io::Result<()>> {
        let r = write_queued(&mut &*self.0, queue);
        if r.is_err() {
            let _ = self.0.close_transport();
        }
        Poll::Ready(r)
    }

    /// Shuts the transport down in both directions: the peer sees the end,
    /// and a reader blocked reading it wakes up.
    fn poll_shutdown(&mut self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(self.0.close_transport())
    }
}
