//! Byte-moving helpers shared by the stream, the handshakes and the server:
//! read straight into a ws-core buffer, write a Connection's queued bytes,
//! and bound a future by a deadline.

use bytes::BytesMut;
use futures_io::{AsyncRead, AsyncWrite};
use std::future::Future;
use std::io;
use std::pin::{Pin, pin};
use std::task::{Context, Poll, ready};
use std::time::Duration;
use ws_core::{Error, TimeoutKind, Transmit};

/// Most bytes one transport read asks for (the size of the per-thread read
/// buffer).
const MAX_READ: usize = 64 * 1024;
/// Reserve more when less spare capacity than this is left (handshake
/// buffers do not reserve on their own).
const MIN_SPARE: usize = 1024;
/// How much a handshake buffer grows by.
const GROW: usize = 4 * 1024;

/// Reads once from `io` and appends what arrived to `buf`. `Ok(0)` is end
/// of stream.
///
/// Cancel-safe: on `Pending` or error nothing is appended.
pub(crate) fn poll_read_into<S: AsyncRead + Unpin + ?Sized>(
    io: &mut S,
    cx: &mut Context<'_>,
    buf: &mut BytesMut,
) -> Poll<io::Result<usize>> {
    let mut pending = false;
    let res = read_spare(buf, |spare| match Pin::new(io).poll_read(cx, spare) {
        Poll::Ready(r) => r,
        Poll::Pending => {
            pending = true;
            Ok(0)
        }
    });
    if pending {
        Poll::Pending
    } else {
        Poll::Ready(res)
    }
}

thread_local! {
    /// A read buffer per thread, zeroed once. futures-io reads need an
    /// initialised slice and this crate has no `unsafe`: zeroing the spare
    /// capacity before every read (up to 64 KiB) cost more than copying what
    /// a read actually returns, which for small messages is a few hundred
    /// bytes. Measured on the 1 KiB pipelined echo, see the project notes.
    static SCRATCH: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(vec![0; MAX_READ]);
}

/// Offers one read as much room as the spare capacity of `buf` (at most
/// [`MAX_READ`] bytes, reserved first if little is left), through a
/// per-thread zeroed buffer, and appends what it returned. Nothing is
/// appended on an error.
pub(crate) fn read_spare(
    buf: &mut BytesMut,
    read: impl FnOnce(&mut [u8]) -> io::Result<usize>,
) -> io::Result<usize> {
    if buf.capacity() - buf.len() < MIN_SPARE {
        buf.reserve(GROW);
    }
    let spare = (buf.capacity() - buf.len()).min(MAX_READ);
    SCRATCH.with(|scratch| match scratch.try_borrow_mut() {
        Ok(mut scratch) => {
            let res = read(&mut scratch[..spare]);
            if let Ok(n) = res {
                buf.extend_from_slice(&scratch[..n.min(spare)]);
            }
            res
        }
        // Re-entered from within a read (not expected): zero in place.
        Err(_) => {
            let len = buf.len();
            buf.resize(len + spare, 0);
            let res = read(&mut buf[len..]);
            let n = res.as_ref().map_or(0, |&n| n.min(spare));
            buf.truncate(len + n);
            res
        }
    })
}

/// Writes everything `conn` (a Connection or a split Sender) has queued
/// (one write call per contiguous batch, so many small messages leave in
/// one syscall), then flushes `io`.
///
/// Cancel-safe: progress is recorded in `conn` as it happens.
pub(crate) fn poll_write_conn<S: AsyncWrite + Unpin + ?Sized>(
    io: &mut S,
    conn: &mut impl Transmit,
    cx: &mut Context<'_>,
) -> Poll<io::Result<()>> {
    ready!(ws_core::rt::write::poll_write_transmit(conn, |slices| {
        Pin::new(&mut *io).poll_write_vectored(cx, slices)
    }))?;
    Pin::new(&mut *io).poll_flush(cx)
}

/// Reads once into `buf`; `Ok(0)` is end of stream. Cancel-safe.
pub(crate) async fn read_into<S: AsyncRead + Unpin + ?Sized>(
    io: &mut S,
    buf: &mut BytesMut,
) -> io::Result<usize> {
    std::future::poll_fn(|cx| {
        loop {
            match ready!(poll_read_into(io, cx, buf)) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                r => return Poll::Ready(r),
            }
        }
    })
    .await
}

/// Writes a whole HTTP response (or request) and flushes it.
pub(crate) async fn write_all<S: AsyncWrite + Unpin + ?Sized>(
    io: &mut S,
    bytes: &[u8],
) -> io::Result<()> {
    use futures_util::io::AsyncWriteExt;
    io.write_all(bytes).await?;
    io.flush().await
}

/// Writes a final HTTP response and shuts the write side down; errors are
/// ignored because the connection is being abandoned either way.
pub(crate) async fn respond_and_close<S: AsyncWrite + Unpin + ?Sized>(io: &mut S, bytes: &[u8]) {
    use futures_util::io::AsyncWriteExt;
    if write_all(io, bytes).await.is_ok() {
        let _ = io.close().await;
    }
}

/// Runs `fut` for at most `limit`; `None` if time ran out first (the
/// future is then dropped).
pub(crate) async fn timeout<F: Future>(limit: Duration, fut: F) -> Option<F::Output> {
    let mut fut = pin!(fut);
    let mut timer = async_io::Timer::after(limit);
    std::future::poll_fn(|cx| {
        if let Poll::Ready(r) = fut.as_mut().poll(cx) {
            return Poll::Ready(Some(r));
        }
        match Pin::new(&mut timer).poll(cx) {
            Poll::Ready(_) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    })
    .await
}

/// Bounds an opening handshake: on expiry,
/// [`Error::Timeout`]`(`[`TimeoutKind::Handshake`]`)`.
pub(crate) async fn handshake_timeout<T>(
    limit: Duration,
    fut: impl Future<Output = Result<T, Error>>,
) -> Result<T, Error> {
    timeout(limit, fut)
        .await
        .unwrap_or(Err(Error::Timeout(TimeoutKind::Handshake)))
}
