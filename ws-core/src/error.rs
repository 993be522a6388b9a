//! Errors: one [`Error`] for everything a WebSocket user can hit, with
//! predicates in the style of hyper, and [`ProtocolError`] naming each
//! RFC 6455 violation together with the close code it calls for.

use crate::close::CloseCode;
use crate::handshake::HandshakeError;
use crate::proxy::ProxyError;
use crate::url::UrlError;

/// A violation of RFC 6455 by the peer (or a configured limit it exceeded).
///
/// When the connection hits one, it has already queued a close frame with
/// [`close_code`](Self::close_code); the caller only has to flush and shut the
/// transport down.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProtocolError {
    /// An opcode from the reserved ranges.
    #[error("reserved opcode {0:#x}")]
    ReservedOpcode(u8),
    /// An RSV bit set without an extension that defines it.
    #[error("reserved bits set without a negotiated extension")]
    ReservedBits,
    /// A client sent an unmasked frame (section 5.1).
    #[error("frame from client is not masked")]
    UnmaskedFrame,
    /// A server sent a masked frame (section 5.1).
    #[error("frame from server is masked")]
    MaskedFrame,
    /// A 64-bit payload length with its most significant bit set.
    #[error("64-bit payload length has its top bit set")]
    LengthTopBitSet,
    /// A payload length not in its shortest encoding (section 5.2).
    #[error("payload length not minimally encoded")]
    NonMinimalLength,
    /// A control frame with a payload over 125 bytes.
    #[error("control frame payload longer than 125 bytes")]
    ControlFrameTooLong,
    /// A control frame without FIN.
    #[error("fragmented control frame")]
    FragmentedControlFrame,
    /// A continuation frame with no message in progress.
    #[error("continuation frame without a message to continue")]
    UnexpectedContinuation,
    /// A new text/binary frame while a fragmented message is in progress.
    #[error("new data frame inside a fragmented message")]
    ExpectedContinuation,
    /// A text message or close reason that is not UTF-8.
    #[error("invalid UTF-8 in text message or close reason")]
    InvalidUtf8,
    /// A close frame with a 1-byte payload.
    #[error("close frame payload of one byte")]
    InvalidClosePayload,
    /// A close code that may not be sent on the wire.
    #[error("close code {0} is not allowed on the wire")]
    InvalidCloseCode(u16),
    /// A compressed message (permessage-deflate) that does not inflate.
    #[error("compressed message is not a valid deflate stream")]
    InvalidCompressedData,
    /// A frame larger than the configured maximum frame size.
    #[error("frame of {size} bytes exceeds the limit of {max}")]
    FrameTooLarge {
        /// Announced payload length.
        size: u64,
        /// Configured limit.
        max: usize,
    },
    /// A message larger than the configured maximum message size.
    #[error("message of at least {size} bytes exceeds the limit of {max}")]
    MessageTooLarge {
        /// Message length including the frame that crossed the limit.
        size: u64,
        /// Configured limit.
        max: usize,
    },
}

impl ProtocolError {
    /// The close code to send for this violation.
    pub fn close_code(&self) -> CloseCode {
        match self {
            ProtocolError::InvalidUtf8 | ProtocolError::InvalidCompressedData => {
                CloseCode::INVALID_PAYLOAD
            }
            ProtocolError::FrameTooLarge { .. } | ProtocolError::MessageTooLarge { .. } => {
                CloseCode::MESSAGE_TOO_BIG
            }
            _ => CloseCode::PROTOCOL_ERROR,
        }
    }
}

/// Why a connection timed out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TimeoutKind {
    /// The peer did not complete the closing handshake in time.
    #[error("the peer did not answer the close frame in time")]
    Close,
    /// The peer did not answer a keepalive ping in time.
    #[error("the peer did not answer a keepalive ping in time")]
    Keepalive,
    /// The opening handshake did not finish in time.
    #[error("the opening handshake did not finish in time")]
    Handshake,
}

/// Any error from this library or its runtime adapters.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The peer broke the protocol; a close frame with the matching code is queued.
    #[error("protocol error: {0}")]
    Protocol(#[from] ProtocolError),
    /// The opening handshake failed.
    #[error("handshake failed: {0}")]
    Handshake(#[from] HandshakeError),
    /// The URL could not be used.
    #[error("invalid URL: {0}")]
    Url(#[from] UrlError),
    /// The connection is closed (or closing): nothing more can be sent.
    #[error("connection closed")]
    Closed,
    /// The transport ended without a closing handshake (close code 1006).
    #[error("connection closed without a closing handshake")]
    AbnormalClosure,
    /// A timer expired.
    #[error("timeout: {0}")]
    Timeout(#[from] TimeoutKind),
    /// An outgoing message violates the protocol (e.g. a control payload
    /// over 125 bytes or a close code that may not be sent).
    #[error("invalid outgoing message: {0}")]
    InvalidMessage(&'static str),
    /// An I/O error from the transport (runtime adapters only).
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// The HTTP proxy could not be used or refused the tunnel (its status
    /// in [`ProxyError::status`]).
    #[error("proxy: {0}")]
    Proxy(#[from] ProxyError),
}

impl Error {
    /// The peer violated the protocol.
    pub fn is_protocol(&self) -> bool {
        matches!(self, Error::Protocol(_))
    }
    /// The opening handshake failed.
    pub fn is_handshake(&self) -> bool {
        matches!(self, Error::Handshake(_))
    }
    /// The connection was already closed.
    pub fn is_closed(&self) -> bool {
        matches!(self, Error::Closed)
    }
    /// A timer expired.
    pub fn is_timeout(&self) -> bool {
        matches!(self, Error::Timeout(_))
    }
    /// The transport failed.
    pub fn is_io(&self) -> bool {
        matches!(self, Error::Io(_))
    }
    /// The HTTP proxy could not be used or refused the tunnel.
    pub fn is_proxy(&self) -> bool {
        matches!(self, Error::Proxy(_))
    }
    /// The close code this error corresponds to, if it ends the connection.
    pub fn close_code(&self) -> Option<CloseCode> {
        match self {
            Error::Protocol(p) => Some(p.close_code()),
            Error::AbnormalClosure | Error::Io(_) => Some(CloseCode::ABNORMAL),
            Error::Timeout(_) => Some(CloseCode::ABNORMAL),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_stays_small() {
        assert!(
            std::mem::size_of::<Error>() <= 32,
            "{}",
            std::mem::size_of::<Error>()
        );
        assert!(std::mem::size_of::<ProtocolError>() <= 24);
    }

    /// One error of every kind that a caller can tell apart.
    fn one_of_each() -> Vec<Error> {
        vec![
            Error::Protocol(ProtocolError::ReservedBits),
            Error::Handshake(HandshakeError::InvalidKey),
            Error::Url(UrlError::EmptyHost),
            Error::Closed,
            Error::AbnormalClosure,
            Error::Timeout(TimeoutKind::Keepalive),
            Error::InvalidMessage("x"),
            Error::Io(std::io::ErrorKind::BrokenPipe.into()),
        ]
    }

    #[test]
    fn each_predicate_is_true_for_its_own_kind_only() {
        let kinds = one_of_each();
        type Predicate = fn(&Error) -> bool;
        let predicates: [(Predicate, usize); 5] = [
            (Error::is_protocol, 0),
            (Error::is_handshake, 1),
            (Error::is_closed, 3),
            (Error::is_timeout, 5),
            (Error::is_io, 7),
        ];
        for (predicate, own) in predicates {
            for (i, e) in kinds.iter().enumerate() {
                assert_eq!(predicate(e), i == own, "{e:?}");
            }
        }
    }

    #[test]
    fn close_codes_follow_the_cause_of_the_error() {
        let codes: Vec<_> = one_of_each().iter().map(Error::close_code).collect();
        assert_eq!(
            codes,
            [
                Some(CloseCode::PROTOCOL_ERROR),
                None,
                None,
                None,
                Some(CloseCode::ABNORMAL),
                Some(CloseCode::ABNORMAL),
                None,
                Some(CloseCode::ABNORMAL),
            ]
        );
        assert_eq!(
            Error::Protocol(ProtocolError::InvalidUtf8).close_code(),
            Some(CloseCode::INVALID_PAYLOAD)
        );
        assert_eq!(
            Error::Timeout(TimeoutKind::Close).close_code(),
            Some(CloseCode::ABNORMAL)
        );
    }

    #[test]
    fn protocol_errors_map_to_1002_1007_or_1009() {
        use ProtocolError::*;
        let too_big = [
            FrameTooLarge { size: 2, max: 1 },
            MessageTooLarge { size: 2, max: 1 },
        ];
        for p in too_big {
            assert_eq!(p.close_code(), CloseCode::MESSAGE_TOO_BIG, "{p}");
        }
        assert_eq!(InvalidUtf8.close_code(), CloseCode::INVALID_PAYLOAD);
        for p in [
            ReservedOpcode(3),
            ReservedBits,
            UnmaskedFrame,
            MaskedFrame,
            LengthTopBitSet,
            NonMinimalLength,
            ControlFrameTooLong,
            FragmentedControlFrame,
            UnexpectedContinuation,
            ExpectedContinuation,
            InvalidClosePayload,
            InvalidCloseCode(1005),
        ] {
            assert_eq!(p.close_code(), CloseCode::PROTOCOL_ERROR, "{p}");
        }
    }
}
