//! The RFC 6455 section 4 opening handshake, for both roles, sans-IO.
//!
//! Both [`ServerHandshake`] and [`ClientHandshake`] are fed arbitrary byte
//! chunks (or read into directly via `read_buf`) and yield a parsed message
//! once the full head has arrived. Bytes that follow the head — a peer may
//! pipeline its first frames — are kept and handed back by
//! `take_remaining`/`into_remaining`, never dropped.

mod client;
mod error;
mod headers;
#[cfg(feature = "http")]
mod http_types;
pub(crate) mod reader;
pub(crate) mod response;
mod server;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use sha1::{Digest, Sha1};

pub use client::{ClientHandshake, ClientRequest, IntoClientRequest, Response};
pub use error::{HandshakeError, UnexpectedResponse};
pub use headers::HeaderIter;
pub(crate) use headers::{is_token, trim_ows};
#[cfg(feature = "http")]
pub use http_types::response_bytes;
pub use response::{http_response, reason_phrase};
pub use server::{Accept, Request, ServerHandshake, UpgradeRequest};

/// Default cap on the size of a handshake message head (16 KiB), which bounds
/// the memory a slow or hostile peer can pin before the handshake completes.
pub const DEFAULT_MAX_HEADER_SIZE: usize = 16 * 1024;

/// The GUID RFC 6455 appends to the key when computing the accept value.
const WS_GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// The `Sec-WebSocket-Accept` value for a `Sec-WebSocket-Key`.
///
/// Proves to the client that the server understood the WebSocket handshake
/// (RFC 6455 section 4.2.2): base64(SHA-1(key + GUID)).
pub fn accept_key(key: &[u8]) -> String {
    let mut sha = Sha1::new();
    sha.update(key);
    sha.update(WS_GUID);
    BASE64.encode(sha.finalize())
}

/// Whether `key` is base64 of exactly 16 bytes, as RFC 6455 4.2.1 requires.
fn is_valid_key(key: &[u8]) -> bool {
    // 16 bytes always encode to 24 characters; checking first bounds the work.
    if key.len() != 24 {
        return false;
    }
    let mut out = [0u8; 18];
    matches!(BASE64.decode_slice(key, &mut out), Ok(16))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_key_matches_rfc_6455_example() {
        assert_eq!(
            accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn handshake_error_stays_three_words() {
        assert!(std::mem::size_of::<HandshakeError>() <= 3 * std::mem::size_of::<usize>());
    }

    #[test]
    fn key_must_decode_to_exactly_16_bytes() {
        assert!(is_valid_key(b"dGhlIHNhbXBsZSBub25jZQ=="));
        // 15 bytes.
        assert!(!is_valid_key(b"dGhlIHNhbXBsZSBub25jZQ="));
        // 17 bytes (28 chars).
        assert!(!is_valid_key(b"dGhlIHNhbXBsZSBub25jZSEhIQ=="));
        // Right length, not base64.
        assert!(!is_valid_key(b"dGhlIHNhbXBsZSBub25jZ!=="));
        // Non-canonical trailing bits.
        assert!(!is_valid_key(b"dGhlIHNhbXBsZSBub25jZR=="));
    }
}
