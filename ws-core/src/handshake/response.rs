//! Building plain HTTP/1.1 responses (errors, pages, redirects).

use bytes::{BufMut, Bytes, BytesMut};

use super::HandshakeError;
use super::headers::{is_field_value, is_token};

/// Everything needed to serialise a non-101 response.
pub(crate) struct ResponseHead<'a> {
    pub(crate) status: u16,
    pub(crate) content_type: &'a str,
    pub(crate) headers: &'a [(&'a str, &'a str)],
    pub(crate) body: &'a [u8],
    /// `false` for answers to HEAD: same headers, no body.
    pub(crate) include_body: bool,
}

/// The headers of a 426 that tell the client to upgrade, and to which
/// WebSocket version (RFC 6455 section 4.4).
pub(crate) const UPGRADE_REQUIRED: &[(&str, &str)] = &[
    ("Upgrade", "websocket"),
    ("Connection", "Upgrade"),
    ("Sec-WebSocket-Version", "13"),
];

/// Serialise a response from trusted parts (no validation).
pub(crate) fn build_response(r: ResponseHead<'_>) -> Bytes {
    let mut out = BytesMut::with_capacity(128 + r.body.len());
    put_status_line(&mut out, r.status);
    put_header(&mut out, "Content-Type", r.content_type);
    put_header(&mut out, "Content-Length", &r.body.len().to_string());
    // One `Connection` header: a caller's token (e.g. `Upgrade` on a 426)
    // joins `close` instead of repeating the field.
    match r
        .headers
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case("connection"))
    {
        Some((_, token)) => put_header(&mut out, "Connection", &format!("{token}, close")),
        None => put_header(&mut out, "Connection", "close"),
    }
    for (name, value) in r.headers {
        if !name.eq_ignore_ascii_case("connection") {
            put_header(&mut out, name, value);
        }
    }
    out.put_slice(b"\r\n");
    if r.include_body {
        out.put_slice(r.body);
    }
    out.freeze()
}

pub(crate) fn put_status_line(out: &mut BytesMut, status: u16) {
    out.put_slice(b"HTTP/1.1 ");
    out.put_slice(status.to_string().as_bytes());
    out.put_u8(b' ');
    out.put_slice(reason_phrase(status).as_bytes());
    out.put_slice(b"\r\n");
}

pub(crate) fn put_header(out: &mut BytesMut, name: &str, value: &str) {
    out.put_slice(name.as_bytes());
    out.put_slice(b": ");
    out.put_slice(value.as_bytes());
    out.put_slice(b"\r\n");
}

/// Build a complete HTTP/1.1 response that closes the connection.
///
/// Adapters use this to serve pages or custom rejections without writing
/// HTTP by hand. `Content-Type`, `Content-Length` and `Connection: close`
/// (merged with a `Connection` header in `headers` into one field)
/// are always written; `headers` are appended after them.
///
/// # Errors
///
/// [`HandshakeError::InvalidInput`] if `status` is not a three-digit code
/// or any name/value (including `content_type`) could inject a line break,
/// so a caller bug can never split the response.
pub fn http_response(
    status: u16,
    content_type: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<Bytes, HandshakeError> {
    if !(100..=999).contains(&status) {
        return Err(HandshakeError::InvalidInput(
            format!("status {status}").into(),
        ));
    }
    if !is_field_value(content_type) {
        return Err(HandshakeError::InvalidInput("content type".into()));
    }
    for (name, value) in headers {
        if !is_token(name) || !is_field_value(value) {
            return Err(HandshakeError::InvalidInput(
                format!("header {name:?}").into(),
            ));
        }
    }
    Ok(build_response(ResponseHead {
        status,
        content_type,
        headers,
        body,
        include_body: true,
    }))
}

/// The standard reason phrase for `status`, or `"Unknown"`.
///
/// Clients ignore the phrase (RFC 7230 3.1.2), but humans reading logs don't.
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        101 => "Switching Protocols",
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        413 => "Content Too Large",
        414 => "URI Too Long",
        426 => "Upgrade Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        _ => "Unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_response_has_length_type_and_close() {
        let r = http_response(
            200,
            "text/html; charset=utf-8",
            &[("X-A", "b")],
            b"<p>hi</p>",
        )
        .unwrap();
        assert_eq!(
            &r[..],
            &b"HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\n\
               Content-Length: 9\r\nConnection: close\r\nX-A: b\r\n\r\n<p>hi</p>"[..]
        );
    }

    #[test]
    fn http_response_rejects_crlf_injection() {
        let bad_value = http_response(200, "text/plain", &[("X-A", "b\r\nSet-Cookie: x")], b"");
        assert!(matches!(bad_value, Err(HandshakeError::InvalidInput(_))));
        let bad_name = http_response(200, "text/plain", &[("X-A\r\nB", "b")], b"");
        assert!(matches!(bad_name, Err(HandshakeError::InvalidInput(_))));
        let bad_type = http_response(200, "text/plain\r\nX: y", &[], b"");
        assert!(matches!(bad_type, Err(HandshakeError::InvalidInput(_))));
    }

    #[test]
    fn http_response_rejects_non_three_digit_status() {
        assert!(http_response(99, "text/plain", &[], b"").is_err());
        assert!(http_response(1000, "text/plain", &[], b"").is_err());
    }

    #[test]
    fn reason_phrase_covers_handshake_statuses() {
        assert_eq!(reason_phrase(101), "Switching Protocols");
        assert_eq!(reason_phrase(426), "Upgrade Required");
        assert_eq!(reason_phrase(431), "Request Header Fields Too Large");
        assert_eq!(reason_phrase(299), "Unknown");
    }

    #[test]
    fn reason_phrase_gives_the_standard_phrase_of_every_status_it_knows() {
        // RFC 9110 section 15 (413 is "Content Too Large" since RFC 9110).
        let table = [
            (100, "Continue"),
            (101, "Switching Protocols"),
            (200, "OK"),
            (201, "Created"),
            (204, "No Content"),
            (301, "Moved Permanently"),
            (302, "Found"),
            (304, "Not Modified"),
            (307, "Temporary Redirect"),
            (308, "Permanent Redirect"),
            (400, "Bad Request"),
            (401, "Unauthorized"),
            (403, "Forbidden"),
            (404, "Not Found"),
            (405, "Method Not Allowed"),
            (408, "Request Timeout"),
            (413, "Content Too Large"),
            (414, "URI Too Long"),
            (426, "Upgrade Required"),
            (429, "Too Many Requests"),
            (431, "Request Header Fields Too Large"),
            (500, "Internal Server Error"),
            (501, "Not Implemented"),
            (502, "Bad Gateway"),
            (503, "Service Unavailable"),
            (505, "HTTP Version Not Supported"),
        ];
        for (status, phrase) in table {
            assert_eq!(reason_phrase(status), phrase, "{status}");
        }
        for status in [0, 102, 202, 300, 418, 451, 504, 999] {
            assert_eq!(reason_phrase(status), "Unknown", "{status}");
        }
    }

    #[test]
    fn status_line_carries_code_and_phrase() {
        let mut out = BytesMut::new();
        put_status_line(&mut out, 404);
        assert_eq!(&out[..], b"HTTP/1.1 404 Not Found\r\n");
    }
}
