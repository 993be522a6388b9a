//! The vectored write loop every adapter runs, written once: take the
//! queued chunks as `IoSlice`s (small frames batched in the connection's
//! buffer and large payloads queued by reference leave together), write,
//! mark what was written, repeat. One behaviour for every transport: an
//! `Interrupted` write is retried, a zero-byte write is `WriteZero`, short
//! writes just continue, and bytes leave the queue only once written (so a
//! timed-out write can be retried).

use std::io::{self, IoSlice};
use std::task::Poll;

use crate::connection::Transmit;

/// Chunks offered per write call: enough for a batch of frames plus a few
/// payloads queued by reference.
const SLICES: usize = 16;

/// Writes what `t` has queued with `write` (one write call: a blocking
/// `write_vectored`, or a non-blocking `try_write_vectored`) until the queue
/// is empty or `write` fails. `WouldBlock` and every other error come back
/// as they are, with what was written so far already taken off the queue.
pub fn write_transmit(
    t: &mut impl Transmit,
    mut write: impl FnMut(&[IoSlice<'_>]) -> io::Result<usize>,
) -> io::Result<()> {
    loop {
        let mut slices = [IoSlice::new(&[]); SLICES];
        let count = t.transmit_slices(&mut slices);
        if count == 0 {
            return Ok(());
        }
        match write(&slices[..count]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => t.advance_transmit(n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// [`write_transmit`] for a poll-based transport (`AsyncWrite` of tokio or
/// futures-io): `poll_write` is one `poll_write_vectored`. `Ready(Ok)` once
/// the queue is empty (the caller flushes its transport if it buffers);
/// `Pending` with the waker registered by `poll_write`.
pub fn poll_write_transmit(
    t: &mut impl Transmit,
    mut poll_write: impl FnMut(&[IoSlice<'_>]) -> Poll<io::Result<usize>>,
) -> Poll<io::Result<()>> {
    let mut pending = false;
    let result = write_transmit(t, |slices| match poll_write(slices) {
        Poll::Ready(r) => r,
        Poll::Pending => {
            pending = true;
            Err(io::ErrorKind::WouldBlock.into())
        }
    });
    match result {
        Err(_) if pending => Poll::Pending,
        r => Poll::Ready(r),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Config, Connection, Message, Role};

    fn conn_with(msgs: &[Message]) -> Connection {
        let mut c = Connection::new(Role::Server, Config::default());
        for m in msgs {
            c.send(m).unwrap();
        }
        c
    }

    fn decode(bytes: &[u8]) -> Vec<Message> {
        let mut c = Connection::new(Role::Client, Config::default());
        c.handle_bytes(bytes);
        std::iter::from_fn(|| c.poll_message().unwrap()).collect()
    }

    #[test]
    fn short_writes_and_interruptions_lose_and_repeat_nothing() {
        let msgs = [Message::binary(vec![1; 40_000]), Message::text("tail")];
        let mut c = conn_with(&msgs);
        let mut out = Vec::new();
        let mut calls = 0;
        write_transmit(&mut c, |slices| {
            calls += 1;
            if calls % 3 == 0 {
                return Err(io::ErrorKind::Interrupted.into());
            }
            // At most 1,000 bytes per call, from the first slice.
            let n = slices[0].len().min(1000);
            out.extend_from_slice(&slices[0][..n]);
            Ok(n)
        })
        .unwrap();
        assert_eq!(decode(&out), msgs);
        assert!(!c.wants_write());
    }

    #[test]
    fn a_zero_byte_write_is_write_zero_and_would_block_keeps_the_rest() {
        let mut c = conn_with(&[Message::text("abc")]);
        let e = write_transmit(&mut c, |_| Ok(0)).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::WriteZero);
        let mut first = true;
        let e = write_transmit(&mut c, |_| {
            if std::mem::take(&mut first) {
                Ok(2)
            } else {
                Err(io::ErrorKind::WouldBlock.into())
            }
        })
        .unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
        assert_eq!(c.buffered_transmit(), 3, "two of five bytes taken off");
    }

    #[test]
    fn poll_write_is_pending_when_the_transport_is_and_ready_when_drained() {
        let mut c = conn_with(&[Message::text("abc")]);
        assert!(poll_write_transmit(&mut c, |_| Poll::Pending).is_pending());
        assert!(c.wants_write());
        let mut out = Vec::new();
        let r = poll_write_transmit(&mut c, |s| {
            out.extend_from_slice(&s[0]);
            Poll::Ready(Ok(s[0].len()))
        });
        assert!(matches!(r, Poll::Ready(Ok(()))));
        assert_eq!(decode(&out), vec![Message::text("abc")]);
        let r = poll_write_transmit(&mut conn_with(&[Message::text("x")]), |_| {
            Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()))
        });
        assert!(matches!(r, Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::BrokenPipe));
    }
}
