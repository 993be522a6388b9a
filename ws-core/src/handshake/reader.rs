//! Incremental detection of the end of an HTTP message head.

use bytes::BytesMut;

const TERMINATOR: &[u8; 4] = b"\r\n\r\n";

/// Where a handshake reader is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Reading,
    Done,
    Failed,
}

/// Buffers a message head and finds its end by scanning each byte about
/// once, so a peer trickling bytes cannot make us re-scan quadratically.
#[derive(Debug)]
pub(crate) struct HeadReader {
    buf: BytesMut,
    /// Bytes of `buf` already known not to complete a terminator.
    scanned: usize,
    max: usize,
    phase: Phase,
    #[cfg(test)]
    pub(crate) parse_calls: usize,
    #[cfg(test)]
    pub(crate) bytes_examined: usize,
}

impl HeadReader {
    pub(crate) fn new(max: usize) -> Self {
        Self {
            buf: BytesMut::new(),
            scanned: 0,
            max,
            phase: Phase::Reading,
            #[cfg(test)]
            parse_calls: 0,
            #[cfg(test)]
            bytes_examined: 0,
        }
    }

    pub(crate) fn max(&self) -> usize {
        self.max
    }

    /// The buffer, with spare capacity for one read (never past the limit
    /// by more than one read's worth).
    pub(crate) fn buf_mut(&mut self) -> &mut BytesMut {
        const READ: usize = 4096;
        if self.buf.capacity() - self.buf.len() < READ / 4 {
            self.buf.reserve(READ);
        }
        &mut self.buf
    }

    pub(crate) fn feed(&mut self, data: &[u8]) -> Result<(), super::HandshakeError> {
        if self.phase != Phase::Reading {
            return Err(super::HandshakeError::Finished);
        }
        self.buf.extend_from_slice(data);
        Ok(())
    }

    /// Scan new bytes for the head terminator, then hand the buffer and the
    /// head length to `parse` exactly once. Any failure poisons the reader
    /// and frees its buffer.
    pub(crate) fn poll<T>(
        &mut self,
        too_large: super::HandshakeError,
        parse: impl FnOnce(&mut BytesMut, usize) -> Result<T, super::HandshakeError>,
    ) -> Result<Option<T>, super::HandshakeError> {
        self.poll_or(super::HandshakeError::Finished, too_large, parse)
    }

    /// [`poll`](Self::poll) with the caller's error type (the proxy's
    /// CONNECT answer): `finished` when called after the end.
    pub(crate) fn poll_or<T, E>(
        &mut self,
        finished: E,
        too_large: E,
        parse: impl FnOnce(&mut BytesMut, usize) -> Result<T, E>,
    ) -> Result<Option<T>, E> {
        if self.phase != Phase::Reading {
            return Err(finished);
        }
        // A terminator may straddle the previous scan end: back up 3 bytes.
        let start = self.scanned.saturating_sub(TERMINATOR.len() - 1);
        let window = self.buf.get(start..).unwrap_or(&[]);
        #[cfg(test)]
        {
            self.bytes_examined += window.len();
        }
        // memchr's SIMD substring search: a byte-wise `windows(4)` scan was
        // most of the handshake's parsing cost (measured 1.04 us vs 0.16 us
        // for httparse itself on a browser request).
        let found = memchr::memmem::find(window, TERMINATOR);
        let result = match found {
            Some(pos) if start + pos + TERMINATOR.len() <= self.max => {
                #[cfg(test)]
                {
                    self.parse_calls += 1;
                }
                parse(&mut self.buf, start + pos + TERMINATOR.len()).map(Some)
            }
            Some(_) => Err(too_large),
            None if self.buf.len() > self.max => Err(too_large),
            None => {
                self.scanned = self.buf.len();
                return Ok(None);
            }
        };
        match result {
            Ok(_) => self.phase = Phase::Done,
            Err(_) => {
                self.phase = Phase::Failed;
                self.buf = BytesMut::new();
            }
        }
        result
    }

    pub(crate) fn take_remaining(&mut self) -> BytesMut {
        std::mem::take(&mut self.buf)
    }

    pub(crate) fn into_remaining(self) -> BytesMut {
        self.buf
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handshake::HandshakeError;

    fn too_large() -> HandshakeError {
        HandshakeError::Malformed("too large")
    }

    /// Feeds `head` and returns the head length `poll` reports.
    fn head_len(max: usize, head: &[u8]) -> Result<Option<usize>, HandshakeError> {
        let mut r = HeadReader::new(max);
        r.feed(head).unwrap();
        r.poll(too_large(), |_, n| Ok(n))
    }

    #[test]
    fn a_head_of_exactly_the_limit_is_accepted_and_one_byte_more_is_too_large() {
        let head = |len: usize| {
            let mut h = vec![b'x'; len - 4];
            h.extend_from_slice(b"\r\n\r\n");
            h
        };
        assert_eq!(head_len(100, &head(100)).unwrap(), Some(100));
        assert!(matches!(
            head_len(100, &head(101)),
            Err(HandshakeError::Malformed("too large"))
        ));
        // Bytes after the head do not count against the limit.
        let mut pipelined = head(100);
        pipelined.extend_from_slice(b"frame bytes");
        assert_eq!(head_len(100, &pipelined).unwrap(), Some(100));
    }

    #[test]
    fn every_byte_trickled_in_is_examined_about_once() {
        let head = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
        let mut r = HeadReader::new(1000);
        for (i, b) in head.iter().enumerate() {
            r.feed(&[*b]).unwrap();
            let got = r.poll(too_large(), |_, n| Ok(n)).unwrap();
            assert_eq!(got, (i + 1 == head.len()).then_some(head.len()));
        }
        assert!(r.bytes_examined >= head.len(), "{}", r.bytes_examined);
        assert!(r.bytes_examined <= 4 * head.len(), "{}", r.bytes_examined);
        assert_eq!(r.parse_calls, 1);
    }

    #[test]
    fn buf_mut_offers_a_read_and_grows_only_below_a_quarter_read() {
        let spare = |r: &mut HeadReader| {
            let b = r.buf_mut();
            b.capacity() - b.len()
        };
        let mut r = HeadReader::new(100_000);
        assert_eq!(spare(&mut r), 4096);
        // Exactly a quarter of a read left: not grown.
        r.buf_mut().extend_from_slice(&[b'x'; 3072]);
        assert_eq!(spare(&mut r), 1024);
        // Less than that: room for a whole read again.
        r.buf_mut().extend_from_slice(b"x");
        assert!(spare(&mut r) >= 4096, "{}", spare(&mut r));
        // Filled completely: still room for a read.
        let n = spare(&mut r);
        r.buf_mut().extend_from_slice(&vec![b'x'; n]);
        assert!(spare(&mut r) >= 4096);
    }
}
