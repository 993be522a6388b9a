//! The error type shared by both handshake roles.

use bytes::Bytes;

use super::headers::{HeaderIter, Headers};
use super::response::{ResponseHead, build_response};

/// Why an opening handshake failed.
///
/// Server-side variants map to the HTTP status a server should answer with
/// ([`http_status`](Self::http_status)) and to ready-made response bytes
/// ([`response`](Self::response)), so adapters never hand-write error replies.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HandshakeError {
    /// The peer sent bytes that are not a valid HTTP/1.x message head.
    #[error("malformed HTTP: {0}")]
    Malformed(&'static str),
    /// The request head grew past the configured limit without ending.
    #[error("request headers exceed {limit} bytes")]
    HeadersTooLarge {
        /// The configured maximum head size in bytes.
        limit: usize,
    },
    /// A WebSocket upgrade must use `GET` (RFC 6455 section 4.1).
    #[error("method not allowed: an upgrade must use GET")]
    MethodNotAllowed,
    /// The request used HTTP/1.0; RFC 6455 requires HTTP/1.1 or later.
    #[error("HTTP/1.1 or later is required")]
    UnsupportedHttpVersion,
    /// The request had no `Host` header, an empty one, or more than one.
    #[error("exactly one non-empty Host header is required")]
    InvalidHost,
    /// The request's `Upgrade` header does not list `websocket`.
    #[error("missing `Upgrade: websocket` header")]
    MissingUpgrade,
    /// The request's `Connection` header does not list `upgrade`.
    #[error("missing `Connection: upgrade` header")]
    MissingConnectionUpgrade,
    /// `Sec-WebSocket-Key` is missing, repeated, or not base64 of 16 bytes.
    #[error("missing or invalid Sec-WebSocket-Key")]
    InvalidKey,
    /// `Sec-WebSocket-Version` is missing or not `13`; the value seen, if any.
    #[error("unsupported Sec-WebSocket-Version {0:?}; only 13 is supported")]
    UnsupportedVersion(Option<Box<str>>),
    /// The server answered with something other than `101 Switching Protocols`.
    #[error("server answered with HTTP status {} instead of 101", .0.status())]
    UnexpectedStatus(Box<UnexpectedResponse>),
    /// `Sec-WebSocket-Accept` is missing or does not match our key.
    #[error("missing or wrong Sec-WebSocket-Accept")]
    InvalidAccept,
    /// The 101 response lacks `Upgrade: websocket`.
    #[error("response lacks `Upgrade: websocket`")]
    ResponseMissingUpgrade,
    /// The 101 response lacks `Connection: upgrade`.
    #[error("response lacks `Connection: upgrade`")]
    ResponseMissingConnectionUpgrade,
    /// The server selected a subprotocol the client did not offer.
    #[error("server selected subprotocol {0:?} which was not offered")]
    SubprotocolNotOffered(Box<str>),
    /// The server enabled an extension the client did not offer.
    #[error("server enabled extension {0:?} which was not offered")]
    ExtensionNotOffered(Box<str>),
    /// The server's permessage-deflate answer is malformed or breaks
    /// RFC 7692 section 7 (see [`DeflateConfig::check_answer`](crate::deflate::DeflateConfig::check_answer)).
    #[error("invalid permessage-deflate answer: {0}")]
    InvalidExtension(Box<str>),
    /// The response head grew past the configured limit without ending.
    #[error("response headers exceed {limit} bytes")]
    ResponseTooLarge {
        /// The configured maximum head size in bytes.
        limit: usize,
    },
    /// A header, status, host or resource supplied by the caller would have
    /// produced an invalid (or injected) HTTP message.
    #[error("invalid caller-supplied value: {0}")]
    InvalidInput(Box<str>),
    /// The handshake already completed or failed; it accepts no more input.
    #[error("handshake already finished")]
    Finished,
    /// The application looked at the request and refused it with this HTTP
    /// status (the response was already written by the adapter).
    #[error("request rejected by the application with HTTP status {status}")]
    Rejected {
        /// The status the application answered with.
        status: u16,
    },
}

impl HandshakeError {
    /// The error for an application that answered a request with its own
    /// complete HTTP `response` instead of accepting it: [`Rejected`](Self::Rejected)
    /// with the response's status (500 if it has no status line).
    pub fn rejected_by(response: &[u8]) -> Self {
        let status = response
            .split(|&b| b == b' ')
            .nth(1)
            .and_then(|code| std::str::from_utf8(code).ok())
            .and_then(|code| code.parse().ok())
            .unwrap_or(500);
        HandshakeError::Rejected { status }
    }

    /// The HTTP status a server should answer this failure with.
    ///
    /// Only request-side failures have a meaningful status; client-side and
    /// caller-misuse variants return 500 because they are never the peer's
    /// fault and should not normally be answered.
    pub fn http_status(&self) -> u16 {
        match self {
            Self::Malformed(_)
            | Self::UnsupportedHttpVersion
            | Self::InvalidHost
            | Self::MissingUpgrade
            | Self::MissingConnectionUpgrade
            | Self::InvalidKey => 400,
            Self::MethodNotAllowed => 405,
            Self::UnsupportedVersion(_) => 426,
            Self::HeadersTooLarge { .. } => 431,
            Self::Rejected { status } => *status,
            _ => 500,
        }
    }

    /// The complete HTTP/1.1 error response a server should write before
    /// closing the connection.
    ///
    /// Includes `Allow: GET` for 405 and, for 426, `Sec-WebSocket-Version: 13`
    /// so the client learns which version to retry with (RFC 6455 4.4).
    pub fn response(&self) -> Bytes {
        let status = self.http_status();
        let extra: &[(&str, &str)] = match status {
            405 => &[("Allow", "GET")],
            426 => super::response::UPGRADE_REQUIRED,
            _ => &[],
        };
        let body = format!("{self}\n");
        build_response(ResponseHead {
            status,
            content_type: "text/plain; charset=utf-8",
            headers: extra,
            body: body.as_bytes(),
            include_body: true,
        })
    }
}

/// A non-101 answer to a client handshake, kept so callers can inspect it
/// (for example to follow a redirect or report an auth failure).
#[derive(Debug, Clone)]
pub struct UnexpectedResponse {
    pub(crate) status: u16,
    pub(crate) headers: Headers,
}

impl UnexpectedResponse {
    /// The HTTP status code the server sent.
    pub fn status(&self) -> u16 {
        self.status
    }

    /// First value of header `name` (case-insensitive), if present and UTF-8.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name)
    }

    /// All response headers in the order received.
    pub fn headers(&self) -> HeaderIter<'_> {
        self.headers.iter()
    }
}

#[cfg(test)]
mod rejection_tests {
    use super::HandshakeError;

    #[test]
    fn rejection_carries_the_status_of_the_applications_response() {
        let e = HandshakeError::rejected_by(b"HTTP/1.1 403 Forbidden\r\n\r\n");
        assert!(matches!(e, HandshakeError::Rejected { status: 403 }));
        assert_eq!(e.http_status(), 403);
        let e = HandshakeError::rejected_by(b"garbage");
        assert!(matches!(e, HandshakeError::Rejected { status: 500 }));
    }
}
