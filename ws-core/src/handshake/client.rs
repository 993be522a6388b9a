//! Client role: write the upgrade request and verify the server's answer.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::{BufMut, Bytes, BytesMut};

use super::error::UnexpectedResponse;
use super::headers::{
    HeaderIter, Headers, check_extra_headers, describe, header_slots, is_token, range_in,
};
use super::reader::HeadReader;
use super::response::put_header;
use super::{DEFAULT_MAX_HEADER_SIZE, HandshakeError, accept_key};
use crate::config::Config;
use crate::deflate::{DeflateConfig, DeflateParams};
use crate::error::Error;
use crate::url::WsUrl;

/// What to ask the server for: where, which subprotocols, extra headers.
///
/// Host and resource are percent-encoded where needed, and extra headers
/// and subprotocols are validated when added, so the request this builds can
/// never contain an injected line.
#[derive(Debug, Clone)]
pub struct ClientRequest {
    host: String,
    port: u16,
    /// The port the URL's scheme implies, left out of `Host`.
    default_port: u16,
    resource: String,
    subprotocols: Vec<String>,
    headers: Vec<(String, String)>,
    max_response_size: usize,
}

impl ClientRequest {
    /// A request for `resource` (path plus query; `""` means `/`) on
    /// `host:port`. IPv6 literals may be given with or without brackets.
    pub fn new(host: &str, port: u16, resource: &str) -> Self {
        let bare = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        let mut res = String::with_capacity(resource.len() + 1);
        if !resource.starts_with('/') {
            res.push('/');
        }
        percent_encode_into(&mut res, resource, |b| {
            (0x21..=0x7e).contains(&b) && b != b'#'
        });
        let mut h = String::with_capacity(bare.len());
        // `%` stays: a host from a `WsUrl` may already be percent-encoded
        // (RFC 3986 reg-name), and encoding it again would change the name.
        percent_encode_into(&mut h, bare, |b| {
            b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:%".contains(&b)
        });
        Self {
            host: h,
            port,
            default_port: crate::url::DEFAULT_PORT,
            resource: res,
            subprotocols: Vec::new(),
            headers: Vec::new(),
            max_response_size: DEFAULT_MAX_HEADER_SIZE,
        }
    }

    /// A request for the host, port and resource of a parsed `ws://` or
    /// `wss://` URL (whose `Host` leaves out 443 for `wss://`).
    pub fn from_url(url: &WsUrl) -> Self {
        let mut req = Self::new(url.host(), url.port(), url.resource());
        req.default_port = url.default_port();
        req
    }

    /// Offer a subprotocol (in preference order).
    ///
    /// # Errors
    ///
    /// [`HandshakeError::InvalidInput`] if `protocol` is not an HTTP token,
    /// which RFC 6455 4.1 requires and which keeps the header well-formed.
    pub fn subprotocol(mut self, protocol: &str) -> Result<Self, HandshakeError> {
        if !is_token(protocol) {
            return Err(HandshakeError::InvalidInput(
                format!("subprotocol {protocol:?}").into(),
            ));
        }
        self.subprotocols.push(protocol.to_owned());
        Ok(self)
    }

    /// Add an extra request header such as `Origin` or `Authorization`.
    ///
    /// # Errors
    ///
    /// [`HandshakeError::InvalidInput`] if the name is not a token, the value
    /// contains CR/LF or other control bytes, or the name is one the
    /// handshake sets itself.
    pub fn header(mut self, name: &str, value: &str) -> Result<Self, HandshakeError> {
        let pair = [(name.to_owned(), value.to_owned())];
        check_extra_headers(&pair, RESERVED_REQUEST_HEADERS)?;
        let [pair] = pair;
        self.headers.push(pair);
        Ok(self)
    }

    /// Cap the size of the server's response head (default 16 KiB).
    pub fn max_response_size(mut self, max: usize) -> Self {
        self.max_response_size = max;
        self
    }

    /// The `Host` header value: host plus `:port` unless it is 80 (443
    /// for a request made [`from_url`](Self::from_url) of a `wss://` URL).
    pub fn host_header(&self) -> String {
        crate::url::host_header(&self.host, self.port, self.default_port)
    }

    /// The resource (path plus query) that goes on the request line.
    pub fn resource(&self) -> &str {
        &self.resource
    }
}

/// What the adapters' `connect` functions take: where to connect (the
/// [`WsUrl`], which also says whether TLS is used) and the request to send
/// there.
///
/// A URL string (or a [`WsUrl`]) means a plain request for it; a pair of a
/// URL and a [`ClientRequest`] made from it carries subprotocols and extra
/// headers; with the cargo feature `http`, an `http::Request<()>` (custom
/// headers, `Sec-WebSocket-Protocol`, cookies, `Authorization`) or an
/// `http::Uri` does too, as tungstenite users are used to.
pub trait IntoClientRequest {
    /// The URL to connect to and the request to send there.
    ///
    /// # Errors
    ///
    /// [`Error::Url`] for an unusable URL, [`Error::Handshake`] with
    /// [`HandshakeError::InvalidInput`] for a request that cannot be a
    /// WebSocket request.
    fn into_client_request(self) -> Result<(WsUrl, ClientRequest), Error>;
}

impl IntoClientRequest for &str {
    fn into_client_request(self) -> Result<(WsUrl, ClientRequest), Error> {
        WsUrl::parse(self)?.into_client_request()
    }
}

impl IntoClientRequest for &String {
    fn into_client_request(self) -> Result<(WsUrl, ClientRequest), Error> {
        self.as_str().into_client_request()
    }
}

impl IntoClientRequest for String {
    fn into_client_request(self) -> Result<(WsUrl, ClientRequest), Error> {
        self.as_str().into_client_request()
    }
}

impl IntoClientRequest for WsUrl {
    fn into_client_request(self) -> Result<(WsUrl, ClientRequest), Error> {
        let req = ClientRequest::from_url(&self);
        Ok((self, req))
    }
}

impl IntoClientRequest for &WsUrl {
    fn into_client_request(self) -> Result<(WsUrl, ClientRequest), Error> {
        self.clone().into_client_request()
    }
}

/// The request is sent as given (build it with
/// [`ClientRequest::from_url`] of the same URL), to the URL's host and port.
impl IntoClientRequest for (WsUrl, ClientRequest) {
    fn into_client_request(self) -> Result<(WsUrl, ClientRequest), Error> {
        Ok(self)
    }
}

/// Headers the handshake writes itself; callers may not add them.
const RESERVED_REQUEST_HEADERS: &[&str] = &[
    "Host",
    "Upgrade",
    "Connection",
    "Sec-WebSocket-Key",
    "Sec-WebSocket-Version",
    "Sec-WebSocket-Protocol",
    "Sec-WebSocket-Extensions",
    "Content-Length",
    "Transfer-Encoding",
];

fn percent_encode_into(out: &mut String, s: &str, keep: impl Fn(u8) -> bool) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for b in s.bytes() {
        if keep(b) {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0xf)]));
        }
    }
}

/// The client side of the opening handshake: verifies the server's answer.
#[derive(Debug)]
pub struct ClientHandshake {
    reader: HeadReader,
    expected_accept: String,
    offered: Vec<String>,
    /// The permessage-deflate offer made (disabled: none).
    deflate: DeflateConfig,
}

impl ClientHandshake {
    /// Start a handshake with a fresh random key; returns the request bytes
    /// to send.
    ///
    /// The key comes from the thread-local CSPRNG because RFC 6455 10.3
    /// requires it to be unpredictable.
    pub fn new(req: &ClientRequest) -> (Self, Bytes) {
        let mut key = [0u8; 16];
        rand::fill(&mut key[..]);
        Self::with_key(req, key)
    }

    /// Start a handshake with a caller-chosen key, for deterministic tests.
    /// Production code should use [`new`](Self::new).
    pub fn with_key(req: &ClientRequest, key: [u8; 16]) -> (Self, Bytes) {
        Self::build(req, key, DeflateConfig::disabled())
    }

    /// [`new`](Self::new), offering permessage-deflate when `config`'s
    /// [policy](Config::deflate) has it on; [`Response::configure`] then
    /// carries the server's answer into the connection's configuration.
    pub fn with_config(req: &ClientRequest, config: &Config) -> (Self, Bytes) {
        let mut key = [0u8; 16];
        rand::fill(&mut key[..]);
        Self::build(req, key, *config.get_deflate())
    }

    fn build(req: &ClientRequest, key: [u8; 16], deflate: DeflateConfig) -> (Self, Bytes) {
        let key = BASE64.encode(key);
        let mut out = BytesMut::with_capacity(256);
        out.put_slice(b"GET ");
        out.put_slice(req.resource.as_bytes());
        out.put_slice(b" HTTP/1.1\r\n");
        put_header(&mut out, "Host", &req.host_header());
        put_header(&mut out, "Upgrade", "websocket");
        put_header(&mut out, "Connection", "Upgrade");
        put_header(&mut out, "Sec-WebSocket-Key", &key);
        put_header(&mut out, "Sec-WebSocket-Version", "13");
        if !req.subprotocols.is_empty() {
            put_header(
                &mut out,
                "Sec-WebSocket-Protocol",
                &req.subprotocols.join(", "),
            );
        }
        if let Some(offer) = deflate.offer() {
            put_header(&mut out, "Sec-WebSocket-Extensions", &offer);
        }
        for (name, value) in &req.headers {
            put_header(&mut out, name, value);
        }
        out.put_slice(b"\r\n");
        let hs = Self {
            reader: HeadReader::new(req.max_response_size),
            expected_accept: accept_key(key.as_bytes()),
            offered: req.subprotocols.clone(),
            deflate,
        };
        (hs, out.freeze())
    }

    /// Buffer `data` and try to complete; `Ok(None)` means "need more bytes".
    ///
    /// # Errors
    ///
    /// The first way the response violates RFC 6455 4.1, or calling again
    /// after completion.
    pub fn feed(&mut self, data: &[u8]) -> Result<Option<Response>, HandshakeError> {
        self.reader.feed(data)?;
        self.poll_response()
    }

    /// The internal buffer, for reading from the socket straight into it;
    /// call [`poll_response`](Self::poll_response) after.
    pub fn read_buf(&mut self) -> &mut BytesMut {
        self.reader.buf_mut()
    }

    /// Try to parse and verify what has been buffered so far.
    ///
    /// # Errors
    ///
    /// As for [`feed`](Self::feed).
    pub fn poll_response(&mut self) -> Result<Option<Response>, HandshakeError> {
        let limit = self.reader.max();
        let expected = &self.expected_accept;
        let offered = &self.offered;
        let deflate = &self.deflate;
        self.reader
            .poll(HandshakeError::ResponseTooLarge { limit }, |buf, len| {
                parse_response(buf, len, expected, offered, deflate)
            })
    }

    /// Take the bytes received after the response head (early frames).
    pub fn take_remaining(&mut self) -> BytesMut {
        self.reader.take_remaining()
    }

    /// Consume the handshake, returning the bytes after the response head.
    pub fn into_remaining(self) -> BytesMut {
        self.reader.into_remaining()
    }
}

fn parse_response(
    buf: &mut BytesMut,
    head_len: usize,
    expected_accept: &str,
    offered: &[String],
    deflate: &DeflateConfig,
) -> Result<Response, HandshakeError> {
    let head = buf.get(..head_len).unwrap_or(&[]);
    let mut slots = header_slots(head);
    let mut resp = httparse::Response::new(&mut slots);
    let n = match resp.parse(head) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => {
            return Err(HandshakeError::Malformed("incomplete response head"));
        }
        Err(e) => return Err(HandshakeError::Malformed(describe(e))),
    };
    let status = resp.code.ok_or(HandshakeError::Malformed("no status"))?;
    let version = resp.version.unwrap_or(0);
    let entries = resp
        .headers
        .iter()
        .map(|h| Ok((range_in(head, h.name.as_bytes())?, range_in(head, h.value)?)))
        .collect::<Result<Vec<_>, HandshakeError>>()?;
    let headers = Headers::new(buf.split_to(n).freeze(), entries);

    if status != 101 {
        return Err(HandshakeError::UnexpectedStatus(Box::new(
            UnexpectedResponse { status, headers },
        )));
    }
    if version < 1 {
        return Err(HandshakeError::UnsupportedHttpVersion);
    }
    if !headers.contains_token("Upgrade", "websocket") {
        return Err(HandshakeError::ResponseMissingUpgrade);
    }
    if !headers.contains_token("Connection", "upgrade") {
        return Err(HandshakeError::ResponseMissingConnectionUpgrade);
    }
    match headers.exactly_one("Sec-WebSocket-Accept") {
        Some(v) if v == expected_accept.as_bytes() => {}
        _ => return Err(HandshakeError::InvalidAccept),
    }
    let deflate = deflate.check_answer(headers.get_all("Sec-WebSocket-Extensions"))?;
    let subprotocol = select_subprotocol(&headers, offered)?;
    Ok(Response {
        status,
        headers,
        subprotocol,
        deflate,
    })
}

/// The server's protocol choice, which must be a single offered one.
fn select_subprotocol(
    headers: &Headers,
    offered: &[String],
) -> Result<Option<String>, HandshakeError> {
    let mut protocols = headers.get_all("Sec-WebSocket-Protocol");
    Ok(match (protocols.next(), protocols.next()) {
        (None, _) => None,
        (Some(p), None) => match offered.iter().find(|o| o.as_bytes() == p) {
            Some(o) => Some(o.clone()),
            None => {
                return Err(HandshakeError::SubprotocolNotOffered(
                    String::from_utf8_lossy(p).into(),
                ));
            }
        },
        (Some(_), Some(_)) => {
            return Err(HandshakeError::SubprotocolNotOffered(
                "several Sec-WebSocket-Protocol headers".into(),
            ));
        }
    })
}

/// A verified `101 Switching Protocols` answer.
#[derive(Debug, Clone)]
pub struct Response {
    status: u16,
    headers: Headers,
    subprotocol: Option<String>,
    deflate: Option<DeflateParams>,
}

impl Response {
    /// The permessage-deflate parameters the server accepted, if it did.
    pub fn deflate(&self) -> Option<&DeflateParams> {
        self.deflate.as_ref()
    }

    /// `config` with what this handshake agreed on, for the connection.
    pub fn configure(&self, config: Config) -> Config {
        config.negotiated_deflate(self.deflate)
    }

    /// The HTTP status (always 101 once verified).
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

    /// The subprotocol the server selected, always one the client offered.
    pub fn subprotocol(&self) -> Option<&str> {
        self.subprotocol.as_deref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handshake::{Accept, ServerHandshake};

    const KEY: [u8; 16] = *b"the sample nonce";

    fn handshake(req: &ClientRequest) -> (ClientHandshake, String) {
        let (hs, bytes) = ClientHandshake::with_key(req, KEY);
        (hs, String::from_utf8(bytes.to_vec()).unwrap())
    }

    fn response(extra: &str) -> String {
        format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\
             {extra}\r\n"
        )
    }

    fn feed(req: &ClientRequest, resp: &str) -> Result<Option<Response>, HandshakeError> {
        handshake(req).0.feed(resp.as_bytes())
    }

    fn simple() -> ClientRequest {
        ClientRequest::new("server.example.com", 80, "/chat")
    }

    #[test]
    fn request_bytes_follow_rfc_6455_4_1() {
        let req = simple()
            .subprotocol("chat")
            .unwrap()
            .subprotocol("superchat")
            .unwrap();
        let (_, text) = handshake(&req);
        assert_eq!(
            text,
            "GET /chat HTTP/1.1\r\nHost: server.example.com\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
             Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: chat, superchat\r\n\r\n"
        );
    }

    #[test]
    fn a_percent_encoded_host_from_a_url_is_sent_as_written() {
        let url = WsUrl::parse("ws://a%2Db:9001/").unwrap();
        assert_eq!(ClientRequest::from_url(&url).host_header(), "a%2Db:9001");
    }

    #[test]
    fn host_header_of_a_wss_url_leaves_out_443_only() {
        let at = |u: &str| ClientRequest::from_url(&WsUrl::parse(u).unwrap()).host_header();
        assert_eq!(at("wss://h/"), "h");
        assert_eq!(at("wss://h:443/"), "h");
        assert_eq!(at("wss://h:80/"), "h:80");
        assert_eq!(at("ws://h:443/"), "h:443");
    }

    #[test]
    fn host_header_includes_port_only_when_not_80() {
        assert_eq!(ClientRequest::new("h", 80, "/").host_header(), "h");
        assert_eq!(ClientRequest::new("h", 9001, "/").host_header(), "h:9001");
        assert_eq!(
            ClientRequest::new("::1", 9001, "/").host_header(),
            "[::1]:9001"
        );
        assert_eq!(ClientRequest::new("[::1]", 80, "/").host_header(), "[::1]");
    }

    #[test]
    fn resource_defaults_to_slash_and_is_percent_encoded() {
        assert_eq!(ClientRequest::new("h", 80, "").resource(), "/");
        assert_eq!(ClientRequest::new("h", 80, "?a=1").resource(), "/?a=1");
        assert_eq!(
            ClientRequest::new("h", 80, "/a b\r\nX: y#f").resource(),
            "/a%20b%0D%0AX:%20y%23f"
        );
    }

    #[test]
    fn host_cannot_inject_headers() {
        let (_, text) = handshake(&ClientRequest::new("evil\r\nX-Injected: 1", 80, "/"));
        assert!(!text.contains("\r\nX-Injected"));
    }

    #[test]
    fn header_rejects_crlf_injection_and_reserved_names() {
        assert!(matches!(
            simple().header("X-A", "b\r\nX-Injected: 1"),
            Err(HandshakeError::InvalidInput(_))
        ));
        assert!(matches!(
            simple().header("Sec-WebSocket-Key", "x"),
            Err(HandshakeError::InvalidInput(_))
        ));
        let (_, text) = handshake(&simple().header("Origin", "http://a.example").unwrap());
        assert!(text.ends_with("\r\nOrigin: http://a.example\r\n\r\n"));
    }

    #[test]
    fn subprotocol_must_be_a_token() {
        assert!(simple().subprotocol("a, b").is_err());
        assert!(simple().subprotocol("").is_err());
    }

    #[test]
    fn random_keys_differ_and_are_valid() {
        let (_, a) = ClientHandshake::new(&simple());
        let (_, b) = ClientHandshake::new(&simple());
        assert_ne!(a, b);
        let req = ServerHandshake::new().feed(&a).unwrap().unwrap();
        assert!(req.validate_upgrade().is_ok());
    }

    #[test]
    fn accepts_valid_response_and_keeps_trailing_frames() {
        let (mut hs, _) = handshake(&simple());
        let mut raw = response("").into_bytes();
        raw.extend_from_slice(b"\x81\x02hi");
        let resp = hs.feed(&raw).unwrap().unwrap();
        assert_eq!(resp.status(), 101);
        assert_eq!(resp.header("upgrade"), Some("websocket"));
        assert_eq!(resp.subprotocol(), None);
        assert_eq!(&hs.take_remaining()[..], b"\x81\x02hi");
    }

    #[test]
    fn a_response_read_into_read_buf_completes_and_into_remaining_keeps_the_frames() {
        let (mut hs, _) = handshake(&simple());
        hs.read_buf().extend_from_slice(response("").as_bytes());
        hs.read_buf().extend_from_slice(b"\x81\x02hi");
        assert_eq!(hs.poll_response().unwrap().unwrap().status(), 101);
        assert_eq!(&hs.into_remaining()[..], b"\x81\x02hi");
    }

    #[test]
    fn an_http_1_0_response_is_refused() {
        let resp = response("").replacen("HTTP/1.1", "HTTP/1.0", 1);
        assert!(matches!(
            feed(&simple(), &resp),
            Err(HandshakeError::UnsupportedHttpVersion)
        ));
    }

    #[test]
    fn response_split_byte_by_byte_completes_once() {
        let (mut hs, _) = handshake(&simple());
        let raw = response("");
        let mut done = 0;
        for b in raw.as_bytes() {
            if hs.feed(std::slice::from_ref(b)).unwrap().is_some() {
                done += 1;
            }
        }
        assert_eq!(done, 1);
    }

    #[test]
    fn wrong_accept_is_rejected() {
        let bad = response("").replace(
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=",
            "AAAAAAAAAAAAAAAAAAAAAAAAAAA=",
        );
        assert!(matches!(
            feed(&simple(), &bad),
            Err(HandshakeError::InvalidAccept)
        ));
        let missing =
            response("").replace("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n", "");
        assert!(matches!(
            feed(&simple(), &missing),
            Err(HandshakeError::InvalidAccept)
        ));
    }

    #[test]
    fn non_101_status_is_reported_with_headers() {
        let raw = "HTTP/1.1 403 Forbidden\r\nX-Reason: nope\r\nContent-Length: 0\r\n\r\n";
        match feed(&simple(), raw) {
            Err(HandshakeError::UnexpectedStatus(r)) => {
                assert_eq!(r.status(), 403);
                assert_eq!(r.header("x-reason"), Some("nope"));
                assert_eq!(r.headers().count(), 2);
            }
            other => panic!("expected UnexpectedStatus, got {other:?}"),
        }
    }

    #[test]
    fn response_without_upgrade_or_connection_is_rejected() {
        let no_upgrade = response("").replace("Upgrade: websocket\r\n", "");
        assert!(matches!(
            feed(&simple(), &no_upgrade),
            Err(HandshakeError::ResponseMissingUpgrade)
        ));
        let no_conn = response("").replace("Connection: Upgrade\r\n", "Connection: keep-alive\r\n");
        assert!(matches!(
            feed(&simple(), &no_conn),
            Err(HandshakeError::ResponseMissingConnectionUpgrade)
        ));
    }

    #[test]
    fn response_tokens_are_case_insensitive() {
        let raw = response("")
            .replace("Upgrade: websocket", "UPGRADE: WebSocket")
            .replace("Connection: Upgrade", "connection: upgrade");
        assert!(feed(&simple(), &raw).unwrap().is_some());
    }

    #[test]
    fn offered_subprotocol_is_reported() {
        let req = simple().subprotocol("chat").unwrap();
        let resp = feed(&req, &response("Sec-WebSocket-Protocol: chat\r\n"))
            .unwrap()
            .unwrap();
        assert_eq!(resp.subprotocol(), Some("chat"));
    }

    #[test]
    fn unoffered_subprotocol_is_rejected() {
        let req = simple().subprotocol("chat").unwrap();
        let e = feed(&req, &response("Sec-WebSocket-Protocol: mqtt\r\n")).unwrap_err();
        assert!(matches!(&e, HandshakeError::SubprotocolNotOffered(p) if &**p == "mqtt"));
        let none_offered = feed(&simple(), &response("Sec-WebSocket-Protocol: chat\r\n"));
        assert!(matches!(
            none_offered,
            Err(HandshakeError::SubprotocolNotOffered(_))
        ));
    }

    #[test]
    fn more_than_one_subprotocol_is_rejected() {
        let req = simple().subprotocol("a").unwrap().subprotocol("b").unwrap();
        let list = feed(&req, &response("Sec-WebSocket-Protocol: a, b\r\n"));
        assert!(matches!(
            list,
            Err(HandshakeError::SubprotocolNotOffered(_))
        ));
        let twice = feed(
            &req,
            &response("Sec-WebSocket-Protocol: a\r\nSec-WebSocket-Protocol: b\r\n"),
        );
        assert!(matches!(
            twice,
            Err(HandshakeError::SubprotocolNotOffered(_))
        ));
    }

    fn deflate_on() -> Config {
        Config::default().deflate(DeflateConfig::enabled().server_no_context_takeover(true))
    }

    #[test]
    fn a_deflate_policy_offers_and_takes_the_answer_into_the_config() {
        let (mut hs, bytes) = ClientHandshake::with_config(&simple(), &deflate_on());
        let text = String::from_utf8(bytes.to_vec()).unwrap();
        assert!(text.contains(
            "\r\nSec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover; \
             client_max_window_bits\r\n"
        ));
        // Answer with the right accept value for this (random) key.
        let key = text
            .lines()
            .find_map(|l| l.strip_prefix("Sec-WebSocket-Key: "))
            .unwrap();
        let resp = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: {}\r\n\
             Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover; \
             client_max_window_bits=10\r\n\r\n",
            accept_key(key.as_bytes())
        );
        let r = hs.feed(resp.as_bytes()).unwrap().unwrap();
        let want = DeflateParams {
            server_no_context_takeover: true,
            client_no_context_takeover: false,
            server_max_window_bits: None,
            client_max_window_bits: Some(10),
        };
        assert_eq!(r.deflate(), Some(&want));
        let cfg = r.configure(Config::default());
        assert_eq!(cfg.get_negotiated_deflate(), Some(&want));
    }

    #[test]
    fn a_bad_deflate_answer_fails_the_handshake() {
        let (mut hs, _) = ClientHandshake::build(&simple(), KEY, *deflate_on().get_deflate());
        let e = hs
            .feed(response("Sec-WebSocket-Extensions: permessage-deflate\r\n").as_bytes())
            .unwrap_err();
        assert!(matches!(e, HandshakeError::InvalidExtension(_)), "{e}");
    }

    #[test]
    fn without_a_policy_nothing_is_offered() {
        let (hs, bytes) = ClientHandshake::with_config(&simple(), &Config::default());
        assert!(!String::from_utf8_lossy(&bytes).contains("Extensions"));
        assert_eq!(hs.deflate, DeflateConfig::disabled());
    }

    #[test]
    fn unsolicited_extension_is_rejected() {
        let e = feed(
            &simple(),
            &response("Sec-WebSocket-Extensions: permessage-deflate\r\n"),
        );
        assert!(
            matches!(&e, Err(HandshakeError::ExtensionNotOffered(x)) if &**x == "permessage-deflate")
        );
    }

    #[test]
    fn oversized_response_is_rejected() {
        let (mut hs, _) = ClientHandshake::with_key(&simple().max_response_size(64), KEY);
        let e = hs.feed(&[b'x'; 65]).unwrap_err();
        assert!(matches!(e, HandshakeError::ResponseTooLarge { limit: 64 }));
    }

    #[test]
    fn round_trip_with_server_side() {
        let req = ClientRequest::new("localhost", 9001, "/ws?x=1")
            .subprotocol("superchat")
            .unwrap()
            .subprotocol("chat")
            .unwrap()
            .header("Origin", "http://localhost:9001")
            .unwrap();
        let (mut client, request) = ClientHandshake::new(&req);
        let mut server = ServerHandshake::new();
        let parsed = server.feed(&request).unwrap().unwrap();
        assert_eq!(parsed.host(), Some("localhost:9001"));
        assert_eq!(parsed.path(), "/ws");
        assert_eq!(parsed.query(), Some("x=1"));
        assert_eq!(parsed.origin(), Some("http://localhost:9001"));
        let answer = parsed.accept(&Accept::new().subprotocol("chat")).unwrap();
        let resp = client.feed(&answer).unwrap().unwrap();
        assert_eq!(resp.subprotocol(), Some("chat"));
        assert!(client.take_remaining().is_empty());
        assert!(server.take_remaining().is_empty());
    }

    #[test]
    fn round_trip_from_url() {
        let url = WsUrl::parse("ws://[::1]:9001/echo?q").unwrap();
        let (mut client, request) = ClientHandshake::new(&ClientRequest::from_url(&url));
        let parsed = ServerHandshake::new().feed(&request).unwrap().unwrap();
        assert_eq!(parsed.host(), Some("[::1]:9001"));
        assert_eq!(parsed.target(), "/echo?q");
        let answer = parsed.accept(&Accept::new()).unwrap();
        assert!(client.feed(&answer).unwrap().is_some());
    }
}
