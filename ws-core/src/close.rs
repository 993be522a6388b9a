//! Close codes and close frame payloads (RFC 6455 sections 5.5.1 and 7.4).

use crate::error::ProtocolError;
use crate::message::Utf8Bytes;
use bytes::{BufMut, Bytes, BytesMut};
use std::fmt;

/// A close status code (RFC 6455 section 7.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CloseCode(pub u16);

impl CloseCode {
    /// 1000: the purpose of the connection has been fulfilled.
    pub const NORMAL: CloseCode = CloseCode(1000);
    /// 1001: the endpoint is going away (server shutdown, page navigation).
    pub const GOING_AWAY: CloseCode = CloseCode(1001);
    /// 1002: the peer violated the protocol.
    pub const PROTOCOL_ERROR: CloseCode = CloseCode(1002);
    /// 1003: the peer sent a data type this endpoint cannot accept.
    pub const UNSUPPORTED_DATA: CloseCode = CloseCode(1003);
    /// 1005: no status code was present (never sent on the wire).
    pub const NO_STATUS: CloseCode = CloseCode(1005);
    /// 1006: the connection closed without a close frame (never sent on the wire).
    pub const ABNORMAL: CloseCode = CloseCode(1006);
    /// 1007: a text message was not valid UTF-8.
    pub const INVALID_PAYLOAD: CloseCode = CloseCode(1007);
    /// 1008: a message violated the endpoint's policy.
    pub const POLICY_VIOLATION: CloseCode = CloseCode(1008);
    /// 1009: a frame or message exceeded the configured size limit.
    pub const MESSAGE_TOO_BIG: CloseCode = CloseCode(1009);
    /// 1010: the client expected an extension the server did not negotiate.
    pub const MANDATORY_EXTENSION: CloseCode = CloseCode(1010);
    /// 1011: the server hit an unexpected condition.
    pub const INTERNAL_ERROR: CloseCode = CloseCode(1011);
    /// 1012: the service is restarting.
    pub const SERVICE_RESTART: CloseCode = CloseCode(1012);
    /// 1013: try again later (used for clients too slow to keep up).
    pub const TRY_AGAIN_LATER: CloseCode = CloseCode(1013);

    /// Whether this code may appear in a close frame on the wire: 1000-1003,
    /// 1007-1014 and the registered/private range 3000-4999.
    pub fn is_sendable(self) -> bool {
        matches!(self.0, 1000..=1003 | 1007..=1014 | 3000..=4999)
    }
}

impl From<u16> for CloseCode {
    fn from(v: u16) -> Self {
        CloseCode(v)
    }
}

impl fmt::Display for CloseCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The content of a close frame: a status code and a UTF-8 reason of at most
/// 123 bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloseFrame {
    /// Why the connection is closing.
    pub code: CloseCode,
    /// Human-readable reason, possibly empty.
    pub reason: Utf8Bytes,
}

impl CloseFrame {
    /// Longest reason that fits in a control frame (125 - 2 bytes of code).
    pub const MAX_REASON_LEN: usize = 123;

    /// A close frame with `code` and `reason`.
    pub fn new(code: CloseCode, reason: impl Into<Utf8Bytes>) -> Self {
        CloseFrame {
            code,
            reason: reason.into(),
        }
    }

    /// Parses and validates a received close payload: empty (no status),
    /// or a sendable code followed by a UTF-8 reason. A 1-byte payload, a code
    /// that may not appear on the wire and a non-UTF-8 reason are protocol
    /// errors.
    pub fn parse(payload: Bytes) -> Result<Option<CloseFrame>, ProtocolError> {
        match payload.len() {
            0 => Ok(None),
            1 => Err(ProtocolError::InvalidClosePayload),
            _ => {
                let code = CloseCode(u16::from_be_bytes([payload[0], payload[1]]));
                if !code.is_sendable() {
                    return Err(ProtocolError::InvalidCloseCode(code.0));
                }
                let reason = Utf8Bytes::try_from(payload.slice(2..))
                    .map_err(|_| ProtocolError::InvalidUtf8)?;
                Ok(Some(CloseFrame { code, reason }))
            }
        }
    }

    /// Writes the close payload (code then reason) into `out`.
    pub(crate) fn write_payload(&self, out: &mut BytesMut) {
        out.put_u16(self.code.0);
        out.extend_from_slice(self.reason.as_bytes());
    }

    /// Payload length on the wire.
    pub(crate) fn payload_len(&self) -> usize {
        2 + self.reason.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_close_payload_means_no_status() {
        assert_eq!(CloseFrame::parse(Bytes::new()), Ok(None));
    }

    #[test]
    fn one_byte_close_payload_is_a_protocol_error() {
        let e = CloseFrame::parse(Bytes::from_static(&[3])).unwrap_err();
        assert_eq!(e.close_code(), CloseCode::PROTOCOL_ERROR);
    }

    #[test]
    fn allowed_codes_parse_and_reserved_codes_fail() {
        for code in [
            1000u16, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 4999,
        ] {
            let p = Bytes::copy_from_slice(&code.to_be_bytes());
            assert_eq!(CloseFrame::parse(p).unwrap().unwrap().code, CloseCode(code));
        }
        for code in [
            0u16, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535,
        ] {
            let p = Bytes::copy_from_slice(&code.to_be_bytes());
            let e = CloseFrame::parse(p).unwrap_err();
            assert_eq!(e, ProtocolError::InvalidCloseCode(code));
            assert_eq!(e.close_code(), CloseCode::PROTOCOL_ERROR);
        }
    }

    #[test]
    fn close_reason_must_be_utf8() {
        let p = Bytes::from_static(&[
            0x03, 0xe8, 0xce, 0xba, 0xe1, 0xbd, 0xb9, 0xcf, 0x83, 0xed, 0xa0, 0x80,
        ]);
        let e = CloseFrame::parse(p).unwrap_err();
        assert_eq!(e.close_code(), CloseCode::INVALID_PAYLOAD);
    }

    #[test]
    fn payload_len_is_what_write_payload_writes() {
        for reason in ["", "x", "κόσμε", &"r".repeat(CloseFrame::MAX_REASON_LEN)] {
            let f = CloseFrame::new(CloseCode(4001), reason);
            let mut out = BytesMut::new();
            f.write_payload(&mut out);
            assert_eq!(f.payload_len(), 2 + reason.len());
            assert_eq!(out.len(), f.payload_len());
            assert_eq!(&out[..2], &[0x0f, 0xa1]);
            assert_eq!(CloseFrame::parse(out.freeze()), Ok(Some(f)));
        }
    }

    #[test]
    fn sendable_codes_end_exactly_at_the_range_edges() {
        let sendable: Vec<u16> = (0..=u16::MAX)
            .filter(|&c| CloseCode(c).is_sendable())
            .collect();
        let expected: Vec<u16> = (1000..=1003)
            .chain(1007..=1014)
            .chain(3000..=4999)
            .collect();
        assert_eq!(sendable, expected);
    }

    #[test]
    fn close_codes_convert_and_display_as_numbers() {
        assert_eq!(CloseCode::from(1001), CloseCode::GOING_AWAY);
        assert_eq!(CloseCode::TRY_AGAIN_LATER.to_string(), "1013");
    }
}
