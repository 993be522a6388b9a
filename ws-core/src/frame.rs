//! Frame headers on the wire (RFC 6455 section 5.2), in the style of
//! smoltcp's `wire` module: [`FrameHeader`] is the parsed representation, with
//! [`FrameHeader::parse`] from bytes and [`FrameHeader::emit`] back to them.
//!
//! Only rules that can be checked from the header alone live here (reserved
//! opcodes, length encoding, control-frame shape). Rules that depend on the
//! connection (masking by role, RSV bits, fragmentation order, size limits) are
//! checked by the connection.

use crate::error::ProtocolError;

/// A frame opcode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum OpCode {
    /// Continues a fragmented data message.
    Continuation = 0x0,
    /// First frame of a text message.
    Text = 0x1,
    /// First frame of a binary message.
    Binary = 0x2,
    /// Starts the closing handshake.
    Close = 0x8,
    /// Asks the peer for a pong.
    Ping = 0x9,
    /// Answers a ping (or an unsolicited heartbeat).
    Pong = 0xA,
}

impl OpCode {
    /// Decodes the low nibble of the first header byte; `None` for the
    /// reserved opcodes 0x3-0x7 and 0xB-0xF.
    pub fn from_u8(v: u8) -> Option<OpCode> {
        Some(match v {
            0x0 => OpCode::Continuation,
            0x1 => OpCode::Text,
            0x2 => OpCode::Binary,
            0x8 => OpCode::Close,
            0x9 => OpCode::Ping,
            0xA => OpCode::Pong,
            _ => return None,
        })
    }

    /// Whether this is a control opcode (close, ping, pong).
    pub fn is_control(self) -> bool {
        (self as u8) & 0x8 != 0
    }
}

/// A parsed frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// Final fragment of a message.
    pub fin: bool,
    /// The three reserved bits (RSV1..RSV3) as `0b0000_0rrr`, RSV1 highest.
    pub rsv: u8,
    /// The opcode.
    pub opcode: OpCode,
    /// The masking key, present on every client-to-server frame.
    pub mask: Option<[u8; 4]>,
    /// Payload length in bytes.
    pub payload_len: u64,
}

/// Longest possible header: 2 + 8 (64-bit length) + 4 (mask).
pub const MAX_HEADER_LEN: usize = 14;

/// Longest control-frame payload (RFC 6455 section 5.5).
pub const MAX_CONTROL_PAYLOAD: usize = 125;

impl FrameHeader {
    /// Parses a header from the start of `buf`.
    ///
    /// Returns `Ok(None)` when `buf` does not yet hold the whole header, and
    /// otherwise the header with its length in bytes.
    #[inline]
    pub fn parse(buf: &[u8]) -> Result<Option<(FrameHeader, usize)>, ProtocolError> {
        let [b0, b1, ..] = *buf else { return Ok(None) };
        let opcode = OpCode::from_u8(b0 & 0x0f).ok_or(ProtocolError::ReservedOpcode(b0 & 0x0f))?;
        let fin = b0 & 0x80 != 0;
        let masked = b1 & 0x80 != 0;
        let len7 = b1 & 0x7f;
        let (payload_len, mut pos) = match len7 {
            126 => {
                let Some(b) = buf.get(2..4) else {
                    return Ok(None);
                };
                let len = u16::from_be_bytes([b[0], b[1]]) as u64;
                if len < 126 {
                    return Err(ProtocolError::NonMinimalLength);
                }
                (len, 4)
            }
            127 => {
                let Some(b) = buf.get(2..10) else {
                    return Ok(None);
                };
                let len = u64::from_be_bytes(b.try_into().expect("8 bytes"));
                if len >> 63 != 0 {
                    return Err(ProtocolError::LengthTopBitSet);
                }
                if len <= u16::MAX as u64 {
                    return Err(ProtocolError::NonMinimalLength);
                }
                (len, 10)
            }
            n => (n as u64, 2),
        };
        if opcode.is_control() {
            if !fin {
                return Err(ProtocolError::FragmentedControlFrame);
            }
            if payload_len > MAX_CONTROL_PAYLOAD as u64 {
                return Err(ProtocolError::ControlFrameTooLong);
            }
        }
        let mask = if masked {
            let Some(k) = buf.get(pos..pos + 4) else {
                return Ok(None);
            };
            pos += 4;
            Some([k[0], k[1], k[2], k[3]])
        } else {
            None
        };
        let rsv = (b0 >> 4) & 0x7;
        Ok(Some((
            FrameHeader {
                fin,
                rsv,
                opcode,
                mask,
                payload_len,
            },
            pos,
        )))
    }

    /// Number of bytes [`emit`](Self::emit) writes.
    #[inline]
    pub fn len(&self) -> usize {
        let len_bytes = match self.payload_len {
            0..=125 => 0,
            126..=0xffff => 2,
            _ => 8,
        };
        2 + len_bytes + if self.mask.is_some() { 4 } else { 0 }
    }

    /// A header is never empty; provided for clippy's `len_without_is_empty`.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Writes the header into the start of `out` (at least [`len`](Self::len)
    /// bytes long, [`MAX_HEADER_LEN`] always suffices) and returns its length.
    /// Always uses the minimal length encoding.
    #[inline]
    pub fn emit(&self, out: &mut [u8]) -> usize {
        out[0] = (self.fin as u8) << 7 | (self.rsv & 7) << 4 | self.opcode as u8;
        let mask_bit = (self.mask.is_some() as u8) << 7;
        let mut pos = match self.payload_len {
            n @ 0..=125 => {
                out[1] = mask_bit | n as u8;
                2
            }
            n @ 126..=0xffff => {
                out[1] = mask_bit | 126;
                out[2..4].copy_from_slice(&(n as u16).to_be_bytes());
                4
            }
            n => {
                out[1] = mask_bit | 127;
                out[2..10].copy_from_slice(&n.to_be_bytes());
                10
            }
        };
        if let Some(k) = self.mask {
            out[pos..pos + 4].copy_from_slice(&k);
            pos += 4;
        }
        pos
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(fin: bool, opcode: OpCode, mask: Option<[u8; 4]>, len: u64) -> FrameHeader {
        FrameHeader {
            fin,
            rsv: 0,
            opcode,
            mask,
            payload_len: len,
        }
    }

    #[test]
    fn rfc_section_5_7_examples_parse() {
        // Unmasked "Hello".
        let (h, n) = FrameHeader::parse(&[0x81, 0x05, 0x48]).unwrap().unwrap();
        assert_eq!((h, n), (header(true, OpCode::Text, None, 5), 2));
        // Masked "Hello".
        let (h, n) = FrameHeader::parse(&[0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f])
            .unwrap()
            .unwrap();
        assert_eq!(
            (h, n),
            (
                header(true, OpCode::Text, Some([0x37, 0xfa, 0x21, 0x3d]), 5),
                6
            )
        );
        // Fragmented unmasked text: "Hel" then "lo".
        assert_eq!(
            FrameHeader::parse(&[0x01, 0x03]).unwrap().unwrap().0,
            header(false, OpCode::Text, None, 3)
        );
        assert_eq!(
            FrameHeader::parse(&[0x80, 0x02]).unwrap().unwrap().0,
            header(true, OpCode::Continuation, None, 2)
        );
        // 256 bytes binary, 16-bit length.
        assert_eq!(
            FrameHeader::parse(&[0x82, 0x7e, 0x01, 0x00])
                .unwrap()
                .unwrap(),
            (header(true, OpCode::Binary, None, 256), 4)
        );
        // 64 KiB binary, 64-bit length.
        let b = [0x82, 0x7f, 0, 0, 0, 0, 0, 1, 0, 0];
        assert_eq!(
            FrameHeader::parse(&b).unwrap().unwrap(),
            (header(true, OpCode::Binary, None, 65536), 10)
        );
    }

    #[test]
    fn emit_gives_rfc_bytes_and_round_trips() {
        let mut buf = [0u8; MAX_HEADER_LEN];
        let h = header(true, OpCode::Ping, None, 5);
        let n = h.emit(&mut buf);
        assert_eq!(&buf[..n], &[0x89, 0x05]);
        let h = header(true, OpCode::Pong, Some([0x37, 0xfa, 0x21, 0x3d]), 5);
        let n = h.emit(&mut buf);
        assert_eq!(&buf[..n], &[0x8a, 0x85, 0x37, 0xfa, 0x21, 0x3d]);
        for len in [0u64, 125, 126, 65535, 65536, 1 << 40] {
            for mask in [None, Some([1, 2, 3, 4])] {
                let h = header(len % 2 == 0, OpCode::Binary, mask, len);
                let n = h.emit(&mut buf);
                assert_eq!(n, h.len());
                assert_eq!(FrameHeader::parse(&buf[..n]).unwrap().unwrap(), (h, n));
                // Every strict prefix asks for more bytes.
                for i in 0..n {
                    assert_eq!(FrameHeader::parse(&buf[..i]).unwrap(), None);
                }
            }
        }
    }

    #[test]
    fn rsv_bits_are_emitted_in_place_and_parsed_back() {
        let mut buf = [0u8; MAX_HEADER_LEN];
        for rsv in 0..8u8 {
            let h = FrameHeader {
                rsv,
                ..header(true, OpCode::Text, None, 3)
            };
            assert!(!h.is_empty());
            let n = h.emit(&mut buf);
            assert_eq!(&buf[..n], &[0x81 | rsv << 4, 3]);
            assert_eq!(FrameHeader::parse(&buf[..n]).unwrap().unwrap().0.rsv, rsv);
        }
    }

    #[test]
    fn reserved_opcodes_are_rejected() {
        for op in [3u8, 4, 5, 6, 7, 0xb, 0xc, 0xd, 0xe, 0xf] {
            let e = FrameHeader::parse(&[0x80 | op, 0]).unwrap_err();
            assert_eq!(e, ProtocolError::ReservedOpcode(op));
            assert_eq!(e.close_code().0, 1002);
        }
    }

    #[test]
    fn length_with_top_bit_set_is_rejected() {
        let b = [0x82, 0x7f, 0x80, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(
            FrameHeader::parse(&b).unwrap_err(),
            ProtocolError::LengthTopBitSet
        );
    }

    #[test]
    fn non_minimal_lengths_are_rejected() {
        assert_eq!(
            FrameHeader::parse(&[0x82, 0x7e, 0, 5]).unwrap_err(),
            ProtocolError::NonMinimalLength
        );
        let b = [0x82, 0x7f, 0, 0, 0, 0, 0, 0, 0xff, 0xff];
        assert_eq!(
            FrameHeader::parse(&b).unwrap_err(),
            ProtocolError::NonMinimalLength
        );
    }

    #[test]
    fn control_frames_must_be_short_and_final() {
        assert_eq!(
            FrameHeader::parse(&[0x89, 0x7e, 0, 126]).unwrap_err(),
            ProtocolError::ControlFrameTooLong
        );
        assert_eq!(
            FrameHeader::parse(&[0x09, 0x00]).unwrap_err(),
            ProtocolError::FragmentedControlFrame
        );
        assert!(FrameHeader::parse(&[0x89, 125]).unwrap().is_some());
    }
}
