//! The zlib streams of permessage-deflate (RFC 7692 section 7.2): raw
//! deflate with a negotiated window, one sync flush per message, the
//! trailing `00 00 ff ff` stripped on send and put back on receive.
//!
//! Both directions allocate their zlib state only when first used and can
//! drop it when the peer agreed to no context takeover (each message then
//! starts from an empty dictionary anyway), so an idle connection holds none.

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

use super::negotiate::MIN_WINDOW_BITS;

/// What a sync flush ends with, removed from every compressed message.
const TRAILER: [u8; 4] = [0x00, 0x00, 0xff, 0xff];
/// Inflated bytes produced per step at first; the output then doubles, never
/// past the message limit.
const INFLATE_STEP: usize = 16 * 1024;

/// Why inflating a message failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum InflateError {
    /// The inflated message would exceed the limit (at least `size` bytes).
    TooLarge { size: u64 },
    /// The data is not a valid deflate stream.
    Corrupt,
}

/// Our compressor: one message at a time.
#[derive(Debug)]
pub(crate) struct Deflater {
    z: Option<Box<Compress>>,
    level: u32,
    bits: u8,
    /// No context takeover: every message starts from an empty dictionary.
    reset: bool,
}

impl Deflater {
    /// A compressor with window `bits` (9 to 15), allocated on first use.
    pub(crate) fn new(level: u8, bits: u8, reset: bool) -> Self {
        Deflater {
            z: None,
            level: u32::from(level),
            bits: bits.clamp(MIN_WINDOW_BITS, 15),
            reset,
        }
    }

    /// Whether every message starts from an empty dictionary.
    pub(crate) fn resets(&self) -> bool {
        self.reset
    }

    /// The window this compressor uses.
    pub(crate) fn bits(&self) -> u8 {
        self.bits
    }

    /// Compresses one whole message into `out` (cleared first), without the
    /// trailing `00 00 ff ff`.
    pub(crate) fn compress(&mut self, input: &[u8], out: &mut Vec<u8>) {
        out.clear();
        let (level, bits) = (self.level, self.bits);
        let z = self.z.get_or_insert_with(|| {
            Box::new(Compress::new_with_window_bits(
                Compression::new(level),
                false,
                bits,
            ))
        });
        // Deflate rarely grows data by more than a few bytes per block.
        out.reserve(input.len() / 2 + 64);
        let mut consumed = 0;
        loop {
            if out.capacity() - out.len() < 64 {
                out.reserve(out.capacity().max(64));
            }
            let before = z.total_in();
            // Neither error can happen with a valid stream and a non-empty
            // output buffer; stop rather than loop if one ever did.
            if z.compress_vec(&input[consumed..], out, FlushCompress::Sync)
                .is_err()
            {
                break;
            }
            consumed += (z.total_in() - before) as usize;
            // The flush is complete once all input is in and zlib left room.
            if consumed == input.len() && out.len() < out.capacity() {
                break;
            }
        }
        if out.ends_with(&TRAILER) {
            out.truncate(out.len() - TRAILER.len());
        }
        if out.is_empty() {
            // zlib emits nothing for a second flush in a row (an empty
            // message with context takeover); the receiver will append the
            // trailer, which needs a block header first: an empty stored
            // block's, the single `00` of RFC 7692 section 7.2.3.6.
            out.push(0x00);
        }
        if self.reset {
            z.reset();
        }
    }

    /// Drops the zlib state if it holds no context worth keeping; returns
    /// whether it did.
    pub(crate) fn release_if_idle(&mut self) -> bool {
        self.reset && self.z.take().is_some()
    }

    /// Whether [`release_if_idle`](Self::release_if_idle) would free something.
    pub(crate) fn releasable(&self) -> bool {
        self.reset && self.z.is_some()
    }

    /// Whether the zlib state is allocated.
    #[cfg(test)]
    pub(crate) fn is_allocated(&self) -> bool {
        self.z.is_some()
    }
}

/// Our decompressor: inflates a message frame by frame, within a limit.
#[derive(Debug)]
pub(crate) struct Inflater {
    z: Option<Box<Decompress>>,
    bits: u8,
    /// The peer uses no context takeover: reset after every message.
    reset: bool,
}

impl Inflater {
    /// A decompressor for a peer window of `bits` (8 is read with 9, which
    /// a raw inflater needs and which reads the smaller window safely).
    pub(crate) fn new(bits: u8, reset: bool) -> Self {
        Inflater {
            z: None,
            bits: bits.clamp(MIN_WINDOW_BITS, 15),
            reset,
        }
    }

    /// Inflates `input` (a frame's payload) onto `out`, failing as soon as
    /// `out` would pass `limit` bytes: the output grows in bounded steps, so
    /// a small message that inflates to gigabytes costs at most `limit`.
    pub(crate) fn inflate(
        &mut self,
        input: &[u8],
        out: &mut Vec<u8>,
        limit: usize,
    ) -> Result<(), InflateError> {
        let bits = self.bits;
        let z = self
            .z
            .get_or_insert_with(|| Box::new(Decompress::new_with_window_bits(false, bits)));
        let mut consumed = 0;
        loop {
            if out.len() > limit {
                return Err(InflateError::TooLarge {
                    size: out.len() as u64,
                });
            }
            if out.len() == out.capacity() {
                // Double, but never past one byte over the limit: that byte
                // is how an oversized message is noticed.
                let room = out
                    .len()
                    .max(INFLATE_STEP)
                    .min(limit.saturating_add(1) - out.len());
                out.reserve_exact(room);
            }
            let (in_before, out_before) = (z.total_in(), z.total_out());
            let status = z
                .decompress_vec(&input[consumed..], out, FlushDecompress::Sync)
                .map_err(|_| InflateError::Corrupt)?;
            consumed += (z.total_in() - in_before) as usize;
            let progress = z.total_out() != out_before || z.total_in() != in_before;
            match status {
                Status::StreamEnd => {
                    // A final block (BFINAL): the stream is over; whatever
                    // follows starts a new one.
                    z.reset(false);
                    if consumed == input.len() {
                        return Ok(());
                    }
                }
                _ if consumed == input.len() && out.len() < out.capacity() => return Ok(()),
                // Room and input left but no progress: not a deflate stream
                // zlib can continue.
                _ if !progress && consumed < input.len() => return Err(InflateError::Corrupt),
                _ if !progress => return Ok(()),
                _ => {}
            }
        }
    }

    /// Ends a message: inflates the `00 00 ff ff` the sender stripped, and
    /// resets the dictionary when the peer does not take context over.
    pub(crate) fn finish(&mut self, out: &mut Vec<u8>, limit: usize) -> Result<(), InflateError> {
        self.inflate(&TRAILER, out, limit)?;
        if self.reset {
            if let Some(z) = &mut self.z {
                z.reset(false);
            }
        }
        Ok(())
    }

    /// Drops the zlib state if it holds no context worth keeping; returns
    /// whether it did. Call it only between messages.
    pub(crate) fn release_if_idle(&mut self) -> bool {
        self.reset && self.z.take().is_some()
    }

    /// Whether [`release_if_idle`](Self::release_if_idle) would free something.
    pub(crate) fn releasable(&self) -> bool {
        self.reset && self.z.is_some()
    }

    /// Whether the zlib state is allocated.
    #[cfg(test)]
    pub(crate) fn is_allocated(&self) -> bool {
        self.z.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(d: &mut Deflater, i: &mut Inflater, msg: &[u8]) -> Vec<u8> {
        let mut wire = Vec::new();
        d.compress(msg, &mut wire);
        assert!(!wire.ends_with(&TRAILER) || msg.is_empty());
        let mut out = Vec::new();
        i.inflate(&wire, &mut out, usize::MAX / 2)
            .unwrap_or_else(|e| panic!("{e:?} {} {:02x?}", msg.len(), &wire[..wire.len().min(20)]));
        i.finish(&mut out, usize::MAX / 2).unwrap();
        out
    }

    #[test]
    fn messages_round_trip_with_and_without_takeover() {
        for reset in [false, true] {
            let mut d = Deflater::new(6, 15, reset);
            let mut i = Inflater::new(15, reset);
            assert!(!d.is_allocated() && !i.is_allocated());
            for msg in [
                &b"hello hello hello hello"[..],
                b"",
                b"hello again hello",
                &[7; 100_000],
            ] {
                assert_eq!(round_trip(&mut d, &mut i, msg), msg);
            }
            assert!(d.is_allocated() && i.is_allocated());
            assert_eq!(d.release_if_idle(), reset);
            assert_eq!(i.release_if_idle(), reset);
        }
    }

    #[test]
    fn context_takeover_shrinks_a_repeated_message() {
        let msg = b"{\"user\":\"alice\",\"text\":\"the same chat line again\"}";
        let mut keep = Deflater::new(6, 15, false);
        let mut reset = Deflater::new(6, 15, true);
        let (mut a, mut b) = (Vec::new(), Vec::new());
        keep.compress(msg, &mut a);
        let first = a.len();
        keep.compress(msg, &mut a);
        reset.compress(msg, &mut b);
        reset.compress(msg, &mut b);
        assert!(a.len() < first / 2, "{} vs {first}", a.len());
        assert_eq!(b.len(), first);
    }

    #[test]
    fn an_empty_message_is_one_zero_byte() {
        let mut wire = Vec::new();
        Deflater::new(6, 15, false).compress(b"", &mut wire);
        assert_eq!(wire, [0x00]);
    }

    #[test]
    fn window_8_is_read_with_9() {
        // 8 bits on the wire becomes a 9-bit inflater; 8 cannot be asked of
        // zlib-rs's raw encoder either.
        assert_eq!(Inflater::new(8, false).bits, 9);
        assert_eq!(Deflater::new(6, 8, false).bits, 9);
    }

    #[test]
    fn inflating_stops_at_the_limit_with_bounded_memory() {
        let mut wire = Vec::new();
        let big = vec![0u8; 10 << 20];
        Deflater::new(9, 15, false).compress(&big, &mut wire);
        assert!(wire.len() < 20_000);
        let mut out = Vec::new();
        let e = Inflater::new(15, false).inflate(&wire, &mut out, 100_000);
        assert!(matches!(e, Err(InflateError::TooLarge { size }) if size > 100_000));
        assert!(out.capacity() <= 100_001, "{}", out.capacity());
        // Exactly at the limit is fine.
        let mut out = Vec::new();
        let mut i = Inflater::new(15, false);
        i.inflate(&wire, &mut out, big.len()).unwrap();
        i.finish(&mut out, big.len()).unwrap();
        assert_eq!(out.len(), big.len());
    }

    #[test]
    fn corrupt_data_is_an_error() {
        let mut out = Vec::new();
        let e = Inflater::new(15, false).inflate(&[0xff; 16], &mut out, 1000);
        assert_eq!(e, Err(InflateError::Corrupt));
    }

    #[test]
    fn a_final_block_ends_the_stream_and_the_next_one_starts_fresh() {
        // Raw deflate of "abc" with BFINAL set, then a new stream.
        let mut z = Compress::new_with_window_bits(Compression::new(6), false, 15);
        let mut wire = Vec::with_capacity(64);
        z.compress_vec(b"abc", &mut wire, FlushCompress::Finish)
            .unwrap();
        let mut i = Inflater::new(15, false);
        let mut out = Vec::new();
        i.inflate(&wire, &mut out, 100).unwrap();
        i.finish(&mut out, 100).unwrap();
        assert_eq!(out, b"abc");
    }
}
