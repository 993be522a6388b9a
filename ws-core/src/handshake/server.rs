//! Server role: parse the client's upgrade request and answer it.

use std::ops::Range;

use bytes::{BufMut, Bytes, BytesMut};

use super::headers::{HeaderIter, Headers, check_extra_headers, describe, header_slots, range_in};
use super::reader::HeadReader;
use super::response::{put_header, put_status_line};
use crate::config::Config;

use super::{DEFAULT_MAX_HEADER_SIZE, HandshakeError, accept_key, is_valid_key};

/// Incrementally reads a client's HTTP request head.
///
/// Feed it whatever the socket produced; it buffers until the head is
/// complete, enforcing a size cap so a peer cannot grow the buffer forever.
#[derive(Debug)]
pub struct ServerHandshake {
    reader: HeadReader,
}

impl Default for ServerHandshake {
    fn default() -> Self {
        Self::new()
    }
}

impl ServerHandshake {
    /// A reader with the default 16 KiB head limit.
    pub fn new() -> Self {
        Self::with_max_header_size(DEFAULT_MAX_HEADER_SIZE)
    }

    /// A reader that fails with [`HandshakeError::HeadersTooLarge`] once the
    /// head exceeds `max` bytes.
    pub fn with_max_header_size(max: usize) -> Self {
        Self {
            reader: HeadReader::new(max),
        }
    }

    /// Buffer `data` and try to parse; `Ok(None)` means "need more bytes".
    ///
    /// # Errors
    ///
    /// Malformed or oversized heads, or calling again after completion.
    pub fn feed(&mut self, data: &[u8]) -> Result<Option<Request>, HandshakeError> {
        self.reader.feed(data)?;
        self.poll_request()
    }

    /// The internal buffer, for adapters that read from the socket straight
    /// into it (zero copy); call [`poll_request`](Self::poll_request) after.
    pub fn read_buf(&mut self) -> &mut BytesMut {
        self.reader.buf_mut()
    }

    /// Try to parse what has been buffered so far; only scans new bytes.
    ///
    /// # Errors
    ///
    /// As for [`feed`](Self::feed).
    pub fn poll_request(&mut self) -> Result<Option<Request>, HandshakeError> {
        let limit = self.reader.max();
        self.reader
            .poll(HandshakeError::HeadersTooLarge { limit }, parse_request)
    }

    /// Take the bytes received after the request head (pipelined frames).
    pub fn take_remaining(&mut self) -> BytesMut {
        self.reader.take_remaining()
    }

    /// Consume the handshake, returning the bytes after the request head.
    pub fn into_remaining(self) -> BytesMut {
        self.reader.into_remaining()
    }

    #[cfg(test)]
    pub(crate) fn reader(&self) -> &HeadReader {
        &self.reader
    }
}

fn parse_request(buf: &mut BytesMut, head_len: usize) -> Result<Request, HandshakeError> {
    let head = buf.get(..head_len).unwrap_or(&[]);
    let mut slots = header_slots(head);
    let mut req = httparse::Request::new(&mut slots);
    let n = match req.parse(head) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => {
            return Err(HandshakeError::Malformed("incomplete request head"));
        }
        Err(e) => return Err(HandshakeError::Malformed(describe(e))),
    };
    let method = req.method.ok_or(HandshakeError::Malformed("no method"))?;
    let target = req.path.ok_or(HandshakeError::Malformed("no target"))?;
    let method = range_in(head, method.as_bytes())?;
    let target = range_in(head, target.as_bytes())?;
    let version = req.version.unwrap_or(0);
    let entries = req
        .headers
        .iter()
        .map(|h| Ok((range_in(head, h.name.as_bytes())?, range_in(head, h.value)?)))
        .collect::<Result<Vec<_>, HandshakeError>>()?;
    let block = buf.split_to(n).freeze();
    Ok(Request {
        method,
        target,
        version,
        headers: Headers::new(block, entries),
    })
}

/// A parsed HTTP request head, owned and cheap to keep around.
///
/// It may be a WebSocket upgrade or a plain HTTP request (e.g. for a page);
/// use [`is_upgrade`](Self::is_upgrade) to tell them apart and
/// [`accept`](Self::accept) to answer an upgrade.
#[derive(Debug, Clone)]
pub struct Request {
    method: Range<usize>,
    target: Range<usize>,
    version: u8,
    headers: Headers,
}

impl Request {
    fn text(&self, r: &Range<usize>) -> &str {
        // httparse validated method and target as ASCII, so no fallback occurs.
        self.headers
            .block()
            .get(r.clone())
            .and_then(|b| std::str::from_utf8(b).ok())
            .unwrap_or("")
    }

    /// The request method, e.g. `GET`.
    pub fn method(&self) -> &str {
        self.text(&self.method)
    }

    /// The request target as sent (path plus optional query).
    pub fn target(&self) -> &str {
        self.text(&self.target)
    }

    /// The target without its query string, for routing.
    pub fn path(&self) -> &str {
        let t = self.target();
        t.split_once('?').map_or(t, |(p, _)| p)
    }

    /// The query string after `?`, if any.
    pub fn query(&self) -> Option<&str> {
        self.target().split_once('?').map(|(_, q)| q)
    }

    /// The HTTP minor version (`1` for HTTP/1.1).
    pub fn version(&self) -> u8 {
        self.version
    }

    /// First value of header `name` (case-insensitive), if present and UTF-8.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name)
    }

    /// First raw value of header `name`, for values that may not be UTF-8.
    pub fn header_bytes(&self, name: &str) -> Option<&[u8]> {
        self.headers.get_bytes(name)
    }

    /// All headers in the order received.
    pub fn headers(&self) -> HeaderIter<'_> {
        self.headers.iter()
    }

    /// The `Origin` header, which servers should check against browser CSRF
    /// (RFC 6455 10.2).
    pub fn origin(&self) -> Option<&str> {
        self.header("Origin")
    }

    /// The `Host` header.
    pub fn host(&self) -> Option<&str> {
        self.header("Host")
    }

    /// Whether the request asks for a WebSocket upgrade at all, so a server
    /// can tell a page request from a (possibly invalid) upgrade attempt.
    pub fn is_upgrade(&self) -> bool {
        self.headers.contains_token("Upgrade", "websocket")
    }

    /// Subprotocols offered via `Sec-WebSocket-Protocol`, in client
    /// preference order, across repeated headers.
    pub fn subprotocols(&self) -> impl Iterator<Item = &str> + '_ {
        self.headers
            .get_all("Sec-WebSocket-Protocol")
            .filter_map(|v| std::str::from_utf8(v).ok())
            .flat_map(|v| v.split(','))
            .map(|t| t.trim_matches([' ', '\t']))
            .filter(|t| !t.is_empty())
    }

    /// Raw `Sec-WebSocket-Extensions` values offered, one per header line.
    ///
    /// [`accept`](Self::accept) enables none of them;
    /// [`accept_with_config`](Self::accept_with_config) negotiates
    /// permessage-deflate.
    pub fn extensions(&self) -> impl Iterator<Item = &str> + '_ {
        self.headers
            .get_all("Sec-WebSocket-Extensions")
            .filter_map(|v| std::str::from_utf8(v).ok())
    }

    /// Check every RFC 6455 4.2.1 requirement of an upgrade request.
    ///
    /// # Errors
    ///
    /// The specific requirement that failed; its
    /// [`http_status`](HandshakeError::http_status) and
    /// [`response`](HandshakeError::response) say how to answer.
    pub fn validate_upgrade(&self) -> Result<UpgradeRequest<'_>, HandshakeError> {
        if self.method() != "GET" {
            return Err(HandshakeError::MethodNotAllowed);
        }
        if self.version < 1 {
            return Err(HandshakeError::UnsupportedHttpVersion);
        }
        match self.headers.exactly_one("Host") {
            Some(h) if !h.is_empty() => {}
            _ => return Err(HandshakeError::InvalidHost),
        }
        if !self.is_upgrade() {
            return Err(HandshakeError::MissingUpgrade);
        }
        if !self.headers.contains_token("Connection", "upgrade") {
            return Err(HandshakeError::MissingConnectionUpgrade);
        }
        let key = self
            .headers
            .exactly_one("Sec-WebSocket-Key")
            .filter(|k| is_valid_key(k))
            .and_then(|k| std::str::from_utf8(k).ok())
            .ok_or(HandshakeError::InvalidKey)?;
        let mut versions = self.headers.get_all("Sec-WebSocket-Version");
        match (versions.next(), versions.next()) {
            (Some(b"13"), None) => {}
            (v, _) => {
                let seen = v.map(|v| String::from_utf8_lossy(v).into());
                return Err(HandshakeError::UnsupportedVersion(seen));
            }
        }
        Ok(UpgradeRequest { key })
    }

    /// Validate the upgrade and produce the `101 Switching Protocols` bytes.
    ///
    /// # Errors
    ///
    /// Any [`validate_upgrade`](Self::validate_upgrade) failure, or
    /// [`HandshakeError::InvalidInput`] if `opts` holds a header that is
    /// malformed or one the handshake sets itself.
    pub fn accept(&self, opts: &Accept) -> Result<Bytes, HandshakeError> {
        self.respond(opts, None)
    }

    /// [`accept`](Self::accept), negotiating permessage-deflate by
    /// `config`'s [policy](Config::deflate): returns the `101` bytes and the
    /// connection's configuration, which carries what was agreed on (so the
    /// [`Connection`](crate::Connection) built from it compresses).
    ///
    /// # Errors
    ///
    /// As for [`accept`](Self::accept).
    pub fn accept_with_config(
        &self,
        opts: &Accept,
        config: Config,
    ) -> Result<(Bytes, Config), HandshakeError> {
        let mut out = BytesMut::with_capacity(160);
        put_status_line(&mut out, 101);
        let config = self.negotiate_into(opts, config, |name, value| {
            put_header(&mut out, name, value);
            Ok(())
        })?;
        out.put_slice(b"\r\n");
        Ok((out.freeze(), config))
    }

    /// [`accept_with_config`](Self::accept_with_config)'s work with the
    /// `101`'s headers handed to `put` (the bytes, or an `http::Response`).
    pub(crate) fn negotiate_into(
        &self,
        opts: &Accept,
        config: Config,
        put: impl FnMut(&str, &str) -> Result<(), HandshakeError>,
    ) -> Result<Config, HandshakeError> {
        let agreed = config
            .get_deflate()
            .accept(self.headers.get_all("Sec-WebSocket-Extensions"));
        self.upgrade_headers(opts, agreed.as_ref().map(|(_, h)| h.as_str()), put)?;
        Ok(config.negotiated_deflate(agreed.map(|(p, _)| p)))
    }

    /// A request from its parts (say from an `http::Request` another HTTP
    /// server parsed), held like one read from a socket: one block, ranges.
    #[cfg(feature = "http")]
    pub(crate) fn from_parts<'a>(
        method: &str,
        target: &str,
        version: u8,
        headers: impl Iterator<Item = (&'a str, &'a [u8])>,
    ) -> Request {
        let mut block = BytesMut::with_capacity(256);
        let mut push = |part: &[u8]| {
            let start = block.len();
            block.put_slice(part);
            start..block.len()
        };
        let method = push(method.as_bytes());
        let target = push(target.as_bytes());
        let entries = headers
            .map(|(name, value)| (push(name.as_bytes()), push(value)))
            .collect();
        Request {
            method,
            target,
            version,
            headers: Headers::new(block.freeze(), entries),
        }
    }

    fn respond(&self, opts: &Accept, extensions: Option<&str>) -> Result<Bytes, HandshakeError> {
        let mut out = BytesMut::with_capacity(160);
        put_status_line(&mut out, 101);
        self.upgrade_headers(opts, extensions, |name, value| {
            put_header(&mut out, name, value);
            Ok(())
        })?;
        out.put_slice(b"\r\n");
        Ok(out.freeze())
    }

    /// Validates the upgrade and hands each header of the `101` answer to
    /// `put`, in order: written once for the bytes ([`accept`](Self::accept))
    /// and for an `http::Response` (feature `http`).
    fn upgrade_headers(
        &self,
        opts: &Accept,
        extensions: Option<&str>,
        mut put: impl FnMut(&str, &str) -> Result<(), HandshakeError>,
    ) -> Result<(), HandshakeError> {
        let upgrade = self.validate_upgrade()?;
        check_extra_headers(&opts.headers, RESERVED_RESPONSE_HEADERS)?;
        put("Upgrade", "websocket")?;
        put("Connection", "Upgrade")?;
        put("Sec-WebSocket-Accept", &upgrade.accept_value())?;
        if let Some(p) = opts.select(self) {
            put("Sec-WebSocket-Protocol", p)?;
        }
        if let Some(e) = extensions {
            put("Sec-WebSocket-Extensions", e)?;
        }
        for (name, value) in &opts.headers {
            put(name, value)?;
        }
        Ok(())
    }
}

/// Headers [`Request::accept`] writes itself; callers may not override them.
const RESERVED_RESPONSE_HEADERS: &[&str] = &[
    "Upgrade",
    "Connection",
    "Sec-WebSocket-Accept",
    "Sec-WebSocket-Protocol",
    "Sec-WebSocket-Extensions",
    "Content-Length",
    "Transfer-Encoding",
];

/// Proof that a [`Request`] is a valid upgrade, carrying the client's key.
#[derive(Debug, Clone, Copy)]
pub struct UpgradeRequest<'a> {
    key: &'a str,
}

impl UpgradeRequest<'_> {
    /// The client's `Sec-WebSocket-Key`, already checked to be 16 bytes.
    pub fn key(&self) -> &str {
        self.key
    }

    /// The `Sec-WebSocket-Accept` value the response must carry.
    pub fn accept_value(&self) -> String {
        accept_key(self.key.as_bytes())
    }
}

/// Server-side choices for answering an upgrade, built fluently.
#[derive(Debug, Clone, Default)]
pub struct Accept {
    subprotocols: Vec<String>,
    headers: Vec<(String, String)>,
}

impl Accept {
    /// Accept with no subprotocol and no extra headers.
    pub fn new() -> Self {
        Self::default()
    }

    /// Add a subprotocol the server supports, in server preference order.
    ///
    /// The first one the client offered is selected; if the client offered
    /// none of them, no subprotocol is selected (RFC 6455 lets the client
    /// decide whether to proceed), so a server never names an unoffered one.
    pub fn subprotocol(mut self, protocol: impl Into<String>) -> Self {
        self.subprotocols.push(protocol.into());
        self
    }

    /// Add an extra response header (validated when the response is built).
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// The subprotocol this configuration selects for `req`, if any.
    pub fn select<'a>(&'a self, req: &Request) -> Option<&'a str> {
        self.subprotocols
            .iter()
            .find(|p| req.subprotocols().any(|o| o == p.as_str()))
            .map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const GOOD: &str = "GET /chat?room=1 HTTP/1.1\r\n\
        Host: server.example.com\r\n\
        Upgrade: websocket\r\n\
        Connection: Upgrade\r\n\
        Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
        Origin: http://example.com\r\n\
        Sec-WebSocket-Protocol: chat, superchat\r\n\
        Sec-WebSocket-Version: 13\r\n\r\n";

    fn parse(raw: &str) -> Request {
        ServerHandshake::new()
            .feed(raw.as_bytes())
            .expect("parses")
            .expect("complete")
    }

    /// GOOD with header line `from` replaced by `to` (empty `to` removes it).
    fn variant(from: &str, to: &str) -> Request {
        let from = format!("{from}\r\n");
        assert!(GOOD.contains(&from), "fixture lacks {from:?}");
        let to = if to.is_empty() {
            String::new()
        } else {
            format!("{to}\r\n")
        };
        parse(&GOOD.replace(&from, &to))
    }

    fn err_of(req: &Request) -> HandshakeError {
        req.validate_upgrade().expect_err("must be rejected")
    }

    #[test]
    fn parses_request_line_and_accessors() {
        let r = parse(GOOD);
        assert_eq!(r.method(), "GET");
        assert_eq!(r.target(), "/chat?room=1");
        assert_eq!(r.path(), "/chat");
        assert_eq!(r.query(), Some("room=1"));
        assert_eq!(r.version(), 1);
        assert_eq!(r.host(), Some("server.example.com"));
        assert_eq!(r.origin(), Some("http://example.com"));
        assert_eq!(r.header("sec-websocket-version"), Some("13"));
        assert_eq!(r.headers().len(), 7);
        assert_eq!(r.subprotocols().collect::<Vec<_>>(), ["chat", "superchat"]);
        assert!(r.is_upgrade());
        assert_eq!(
            r.validate_upgrade().unwrap().key(),
            "dGhlIHNhbXBsZSBub25jZQ=="
        );
    }

    #[test]
    fn accept_produces_rfc_101_response() {
        let resp = parse(GOOD).accept(&Accept::new()).unwrap();
        assert_eq!(
            &resp[..],
            &b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
               Connection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"[..]
        );
    }

    #[test]
    fn accept_selects_first_server_preferred_offered_subprotocol() {
        let req = parse(GOOD);
        let opts = Accept::new()
            .subprotocol("mqtt")
            .subprotocol("superchat")
            .subprotocol("chat");
        assert_eq!(opts.select(&req), Some("superchat"));
        let resp = req.accept(&opts).unwrap();
        let text = std::str::from_utf8(&resp).unwrap();
        assert!(text.contains("\r\nSec-WebSocket-Protocol: superchat\r\n"));
    }

    #[test]
    fn accept_never_names_an_unoffered_subprotocol() {
        let resp = parse(GOOD)
            .accept(&Accept::new().subprotocol("mqtt"))
            .unwrap();
        assert!(
            !std::str::from_utf8(&resp)
                .unwrap()
                .contains("Sec-WebSocket-Protocol")
        );
    }

    #[test]
    fn subprotocols_span_repeated_headers() {
        let r = variant(
            "Sec-WebSocket-Protocol: chat, superchat",
            "Sec-WebSocket-Protocol: a ,b\r\nSec-WebSocket-Protocol: c",
        );
        assert_eq!(r.subprotocols().collect::<Vec<_>>(), ["a", "b", "c"]);
    }

    #[test]
    fn accept_appends_extra_headers() {
        let resp = parse(GOOD)
            .accept(&Accept::new().header("X-Foo", "bar"))
            .unwrap();
        assert!(resp.ends_with(b"\r\nX-Foo: bar\r\n\r\n"));
    }

    #[test]
    fn accept_rejects_header_injection() {
        let req = parse(GOOD);
        let e = req.accept(&Accept::new().header("X-Foo", "bar\r\nSet-Cookie: a=b"));
        assert!(matches!(e, Err(HandshakeError::InvalidInput(_))));
        let e = req.accept(&Accept::new().header("X-Foo\r\n", "bar"));
        assert!(matches!(e, Err(HandshakeError::InvalidInput(_))));
    }

    #[test]
    fn accept_rejects_overriding_handshake_headers() {
        let e = parse(GOOD).accept(&Accept::new().header("sec-websocket-accept", "x"));
        assert!(matches!(e, Err(HandshakeError::InvalidInput(_))));
    }

    #[test]
    fn non_get_method_is_405_with_allow_header() {
        let r = parse(&GOOD.replacen("GET", "POST", 1));
        let e = err_of(&r);
        assert!(matches!(e, HandshakeError::MethodNotAllowed));
        assert_eq!(e.http_status(), 405);
        let resp = e.response();
        assert!(resp.starts_with(b"HTTP/1.1 405 Method Not Allowed\r\n"));
        assert!(
            std::str::from_utf8(&resp)
                .unwrap()
                .contains("\r\nAllow: GET\r\n")
        );
    }

    #[test]
    fn http_1_0_is_rejected_with_400() {
        let e = err_of(&parse(&GOOD.replacen("HTTP/1.1", "HTTP/1.0", 1)));
        assert!(matches!(e, HandshakeError::UnsupportedHttpVersion));
        assert_eq!(e.http_status(), 400);
    }

    #[test]
    fn missing_host_is_rejected_with_400() {
        let e = err_of(&variant("Host: server.example.com", ""));
        assert!(matches!(e, HandshakeError::InvalidHost));
        assert_eq!(e.http_status(), 400);
    }

    #[test]
    fn the_default_head_limit_is_16_kib() {
        assert_eq!(ServerHandshake::new().reader().max(), 16 * 1024);
    }

    #[test]
    fn empty_host_is_rejected_with_400() {
        let e = err_of(&variant("Host: server.example.com", "Host: "));
        assert!(matches!(e, HandshakeError::InvalidHost));
        assert_eq!(e.http_status(), 400);
    }

    #[test]
    fn http_1_0_version_and_offered_extensions_are_reported() {
        let r = parse(&GOOD.replacen("HTTP/1.1", "HTTP/1.0", 1));
        assert_eq!(r.version(), 0);
        assert!(matches!(
            r.validate_upgrade(),
            Err(HandshakeError::UnsupportedHttpVersion)
        ));
        let r = variant(
            "Origin: http://example.com",
            "Sec-WebSocket-Extensions: permessage-deflate\r\nSec-WebSocket-Extensions: x-foo; a=1",
        );
        assert_eq!(
            r.extensions().collect::<Vec<_>>(),
            ["permessage-deflate", "x-foo; a=1"]
        );
        assert_eq!(parse(GOOD).extensions().count(), 0);
    }

    #[test]
    fn duplicate_host_is_rejected() {
        let e = err_of(&variant(
            "Host: server.example.com",
            "Host: a.example\r\nHost: b.example",
        ));
        assert!(matches!(e, HandshakeError::InvalidHost));
    }

    #[test]
    fn missing_upgrade_is_rejected_with_400() {
        let r = variant("Upgrade: websocket", "Upgrade: h2c");
        assert!(!r.is_upgrade());
        let e = err_of(&r);
        assert!(matches!(e, HandshakeError::MissingUpgrade));
        assert_eq!(e.http_status(), 400);
    }

    #[test]
    fn missing_connection_upgrade_is_rejected_with_400() {
        let e = err_of(&variant("Connection: Upgrade", "Connection: keep-alive"));
        assert!(matches!(e, HandshakeError::MissingConnectionUpgrade));
        assert_eq!(e.http_status(), 400);
    }

    #[test]
    fn connection_token_list_with_keep_alive_is_accepted() {
        let r = variant("Connection: Upgrade", "Connection: keep-alive, Upgrade");
        assert!(r.validate_upgrade().is_ok());
    }

    #[test]
    fn tokens_are_case_insensitive() {
        let r = parse(
            &GOOD
                .replace("Upgrade: websocket", "upgrade: WebSocket")
                .replace("Connection: Upgrade", "CONNECTION: UPGRADE"),
        );
        assert!(r.is_upgrade());
        assert!(r.validate_upgrade().is_ok());
    }

    #[test]
    fn missing_key_is_rejected_with_400() {
        let e = err_of(&variant("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==", ""));
        assert!(matches!(e, HandshakeError::InvalidKey));
        assert_eq!(e.http_status(), 400);
    }

    #[test]
    fn key_not_16_bytes_is_rejected() {
        let e = err_of(&variant(
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
            "Sec-WebSocket-Key: c2hvcnQ=",
        ));
        assert!(matches!(e, HandshakeError::InvalidKey));
    }

    #[test]
    fn duplicate_key_is_rejected() {
        let e = err_of(&variant(
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
        ));
        assert!(matches!(e, HandshakeError::InvalidKey));
    }

    #[test]
    fn wrong_version_is_426_advertising_13() {
        let e = err_of(&variant(
            "Sec-WebSocket-Version: 13",
            "Sec-WebSocket-Version: 8",
        ));
        assert!(matches!(&e, HandshakeError::UnsupportedVersion(Some(v)) if &**v == "8"));
        assert_eq!(e.http_status(), 426);
        let resp = e.response();
        let text = std::str::from_utf8(&resp).unwrap();
        assert!(text.starts_with("HTTP/1.1 426 Upgrade Required\r\n"));
        assert!(text.contains("\r\nSec-WebSocket-Version: 13\r\n"));
        assert!(text.contains("\r\nConnection: Upgrade, close\r\n"));
        assert_eq!(
            text.to_ascii_lowercase().matches("\r\nconnection:").count(),
            1,
            "one Connection header: {text}"
        );
    }

    #[test]
    fn missing_version_is_426() {
        let e = err_of(&variant("Sec-WebSocket-Version: 13", ""));
        assert!(matches!(e, HandshakeError::UnsupportedVersion(None)));
        assert_eq!(e.http_status(), 426);
    }

    #[test]
    fn error_response_has_consistent_content_length() {
        let resp = HandshakeError::InvalidKey.response();
        let text = std::str::from_utf8(&resp).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 400 Bad Request\r\n"));
        assert!(head.contains(&format!("\r\nContent-Length: {}\r\n", body.len())));
        assert!(head.contains("\r\nConnection: close"));
    }

    #[test]
    fn malformed_request_is_400() {
        let e = ServerHandshake::new()
            .feed(b"GET / HTTP/1.1\r\nBad Header\r\n\r\n")
            .unwrap_err();
        assert!(matches!(e, HandshakeError::Malformed(_)));
        assert_eq!(e.http_status(), 400);
    }

    #[test]
    fn non_utf8_header_value_is_kept_as_bytes() {
        let mut raw = b"GET / HTTP/1.1\r\nHost: h\r\nX-Bin: a\xffb\r\n\r\n".to_vec();
        raw.extend_from_slice(b"");
        let r = ServerHandshake::new().feed(&raw).unwrap().unwrap();
        assert_eq!(r.header("X-Bin"), None);
        assert_eq!(r.header_bytes("x-bin"), Some(&b"a\xffb"[..]));
    }

    #[test]
    fn pipelined_bytes_after_head_are_kept() {
        let mut hs = ServerHandshake::new();
        let frame = [0x81u8, 0x85, 1, 2, 3, 4, 0x49, 0x67, 0x6f, 0x68, 0x6e];
        let mut raw = GOOD.as_bytes().to_vec();
        raw.extend_from_slice(&frame);
        assert!(hs.feed(&raw).unwrap().is_some());
        assert_eq!(&hs.take_remaining()[..], &frame);
    }

    #[test]
    fn read_buf_then_poll_matches_feed() {
        let mut hs = ServerHandshake::new();
        hs.read_buf().extend_from_slice(&GOOD.as_bytes()[..10]);
        assert!(hs.poll_request().unwrap().is_none());
        hs.read_buf().extend_from_slice(&GOOD.as_bytes()[10..]);
        hs.read_buf().extend_from_slice(b"tail");
        let r = hs.poll_request().unwrap().unwrap();
        assert_eq!(r.target(), "/chat?room=1");
        assert_eq!(&hs.into_remaining()[..], b"tail");
    }

    #[test]
    fn feeding_after_completion_is_an_error() {
        let mut hs = ServerHandshake::new();
        hs.feed(GOOD.as_bytes()).unwrap().unwrap();
        assert!(matches!(hs.feed(b"x"), Err(HandshakeError::Finished)));
    }

    #[test]
    fn oversized_head_fails_with_bounded_buffer() {
        let limit = 16 * 1024;
        let chunk = [b'a'; 4096];
        let mut hs = ServerHandshake::with_max_header_size(limit);
        hs.feed(b"GET / HTTP/1.1\r\nX-Junk: ").unwrap();
        let mut fed = 0usize;
        let err = loop {
            assert!(fed < 1024 * 1024, "no error after 1 MiB");
            match hs.feed(&chunk) {
                Ok(None) => fed += chunk.len(),
                Ok(Some(_)) => panic!("junk parsed as a request"),
                Err(e) => break e,
            }
            assert!(hs.read_buf().len() <= limit + chunk.len());
        };
        assert!(matches!(err, HandshakeError::HeadersTooLarge { limit: l } if l == limit));
        assert_eq!(err.http_status(), 431);
        assert!(fed <= limit, "error came late, after {fed} bytes");
        // Poisoned and freed: more junk is refused, not buffered.
        assert!(matches!(hs.feed(&chunk), Err(HandshakeError::Finished)));
        assert_eq!(hs.read_buf().len(), 0);
    }

    #[test]
    fn terminator_beyond_limit_is_rejected() {
        let mut hs = ServerHandshake::with_max_header_size(32);
        let raw = "GET / HTTP/1.1\r\nHost: a-rather-long-host-name\r\n\r\n";
        assert!(matches!(
            hs.feed(raw.as_bytes()),
            Err(HandshakeError::HeadersTooLarge { .. })
        ));
    }

    #[test]
    fn byte_at_a_time_scan_is_linear_and_parses_once() {
        let mut raw = String::from("GET / HTTP/1.1\r\nHost: h\r\n");
        while raw.len() < 16 * 1024 - 64 {
            raw.push_str("X-Pad: 0123456789abcdef0123456789abcdef\r\n");
        }
        raw.push_str("\r\n");
        let mut hs = ServerHandshake::with_max_header_size(16 * 1024);
        let mut got = None;
        for b in raw.as_bytes() {
            if let Some(r) = hs.feed(std::slice::from_ref(b)).unwrap() {
                got = Some(r);
            }
        }
        assert!(got.is_some());
        assert_eq!(hs.reader().parse_calls, 1);
        // Each poll looks at the new byte plus at most 3 already-scanned ones.
        assert!(hs.reader().bytes_examined <= 4 * raw.len());
    }

    fn parse_in_chunks(raw: &[u8], cuts: &[usize]) -> (Request, BytesMut) {
        let mut hs = ServerHandshake::new();
        let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (raw.len() + 1)).collect();
        cuts.push(0);
        cuts.push(raw.len());
        cuts.sort_unstable();
        let mut got = None;
        for w in cuts.windows(2) {
            if let Some(r) = hs.feed(&raw[w[0]..w[1]]).unwrap() {
                got = Some(r);
            } else if got.is_some() {
                unreachable!("feed after completion returns Finished");
            }
            if got.is_some() {
                // Remaining input goes into the buffer directly.
                hs.read_buf().extend_from_slice(&raw[w[1]..]);
                break;
            }
        }
        (got.expect("complete"), hs.into_remaining())
    }

    #[test]
    fn every_single_split_point_gives_same_request() {
        let mut raw = GOOD.as_bytes().to_vec();
        raw.extend_from_slice(b"\x81\x80abcd");
        let whole = parse(GOOD);
        for cut in 0..=raw.len() {
            let (r, rest) = parse_in_chunks(&raw, &[cut]);
            assert_eq!(r.target(), whole.target());
            assert_eq!(
                r.headers().collect::<Vec<_>>(),
                whole.headers().collect::<Vec<_>>()
            );
            assert_eq!(&rest[..], b"\x81\x80abcd", "cut at {cut}");
        }
    }

    proptest! {
        #[test]
        fn random_chunkings_give_same_request(
            cuts in proptest::collection::vec(any::<usize>(), 0..40),
            tail in proptest::collection::vec(any::<u8>(), 0..64),
        ) {
            let mut raw = GOOD.as_bytes().to_vec();
            raw.extend_from_slice(&tail);
            let whole = parse(GOOD);
            let (r, rest) = parse_in_chunks(&raw, &cuts);
            prop_assert_eq!(r.method(), whole.method());
            prop_assert_eq!(r.target(), whole.target());
            prop_assert_eq!(r.headers().collect::<Vec<_>>(), whole.headers().collect::<Vec<_>>());
            prop_assert_eq!(&rest[..], &tail[..]);
        }

        #[test]
        fn arbitrary_input_never_panics(
            data in proptest::collection::vec(any::<u8>(), 0..512),
        ) {
            let mut hs = ServerHandshake::with_max_header_size(256);
            if let Ok(Some(r)) = hs.feed(&data) {
                let _ = r.validate_upgrade();
                let _ = r.accept(&Accept::new().subprotocol("chat"));
                let _ = r.subprotocols().count();
            }
        }
    }

    #[test]
    fn accept_with_config_negotiates_deflate_by_the_policy() {
        let raw = GOOD.replace(
            "Sec-WebSocket-Version: 13\r\n",
            "Sec-WebSocket-Version: 13\r\n\
             Sec-WebSocket-Extensions: x-foo, permessage-deflate; client_max_window_bits\r\n",
        );
        let req = parse(&raw);
        let on = crate::deflate::DeflateConfig::enabled().client_max_window_bits(12);
        let (resp, cfg) = req
            .accept_with_config(&Accept::new(), Config::default().deflate(on))
            .unwrap();
        let text = String::from_utf8(resp.to_vec()).unwrap();
        assert!(text.contains(
            "\r\nSec-WebSocket-Extensions: permessage-deflate; client_max_window_bits=12\r\n"
        ));
        let agreed = cfg.get_negotiated_deflate().unwrap();
        assert_eq!(agreed.client_max_window_bits, Some(12));
        // Off: the same request gets no extension.
        let (resp, cfg) = req
            .accept_with_config(&Accept::new(), Config::default())
            .unwrap();
        assert!(!String::from_utf8_lossy(&resp).contains("Extensions"));
        assert!(cfg.get_negotiated_deflate().is_none());
        assert_eq!(resp, req.accept(&Accept::new()).unwrap());
    }
}
