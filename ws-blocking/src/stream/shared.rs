//! The blocking server's per-connection plumbing: the transport shared by a
//! connection's reading and writing threads, its protocol state behind a
//! mutex, and one read and one flush over them (the server's session loop
//! in `server.rs` runs on these; the stream and its halves do not).

use std::fmt;
use std::io::{self, Read, Write};
use std::sync::{Condvar, Mutex, MutexGuard, TryLockError};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

use super::transport::{SetReadTimeout, TimeoutCache, is_timeout, read_into};

/// Protocol state shared by the threads of one server connection (the
/// blocking server's per-connection state).
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
