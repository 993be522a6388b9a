//! The checks the fuzz targets (`fuzz/fuzz_targets/*.rs`) run, in one place
//! so that the corpus replay (`tests/fuzz_corpus.rs`) runs exactly the same
//! ones under a plain `cargo test`. Behind the `fuzzing` cargo feature; not
//! a stable API.
//!
//! Every check panics when an invariant breaks, and each checks more than
//! "no panic":
//!
//! - **Same result whatever the chunking**: the input is fed once whole and
//!   once in the chunks its first bytes describe ([`split_plan`]); the
//!   outcomes (messages, errors, the bytes queued in reply, what is left
//!   over) must be equal.
//! - **Bounded memory**: with the small limits below, the buffers a
//!   connection or a handshake keeps never exceed the configured limits
//!   plus one frame header, whatever arrives.
//! - **The right close code**: every protocol error maps to 1002, 1007 or
//!   1009 as its kind says, and the close frame actually queued on the wire
//!   (decoded by a peer) carries that code; a received close is echoed.
//! - **A message sent is the message received** ([`session`]): a client
//!   and a server, whole or split, exchange what the input says, in order,
//!   through every chunking and every passage of time.

use crate::close::CloseCode;
use crate::config::{Config, Role};
use crate::connection::{Connection, State};
use crate::deflate::{DeflateConfig, DeflateParams};
use crate::error::{Error, ProtocolError};
use crate::frame::{MAX_CONTROL_PAYLOAD, MAX_HEADER_LEN};
use crate::handshake::{ClientHandshake, ClientRequest, ServerHandshake, accept_key};
use crate::message::Message;
use crate::proxy::{Proxy, ProxyConnect};
use crate::split::{Receiver, Sender};
use crate::url::WsUrl;
use arbitrary::{Arbitrary, Unstructured};
use bytes::Bytes;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// The fuzzed connections' largest frame payload.
pub const MAX_FRAME: usize = 1024;
/// The fuzzed connections' largest message.
pub const MAX_MESSAGE: usize = 4096;
/// The fuzzed connections' write buffer limit.
pub const WRITE_LIMIT: usize = 2048;
/// The fuzzed handshakes' largest request or response head.
pub const MAX_HEAD: usize = 1024;
/// The largest control frame on the wire.
const MAX_CONTROL_FRAME: usize = MAX_HEADER_LEN + MAX_CONTROL_PAYLOAD;

/// The small limits the connection checks run with.
pub fn config() -> Config {
    Config::default()
        .max_frame_size(MAX_FRAME)
        .max_message_size(MAX_MESSAGE)
        .write_buffer_limit(WRITE_LIMIT)
}

/// [`config`] with permessage-deflate negotiated (default parameters:
/// 15-bit windows, context takeover), every message compressed.
pub fn deflate_config() -> Config {
    config()
        .deflate(DeflateConfig::enabled().threshold(0))
        .negotiated_deflate(Some(DeflateParams::default()))
}

/// Splits fuzz input into a chunk plan and the bytes to feed: the first
/// byte says how many of the next bytes (at most 15) are chunk lengths
/// (each byte `b` a chunk of `b + 1` bytes, cycled). No plan means one byte
/// at a time.
pub fn split_plan(data: &[u8]) -> (Vec<usize>, &[u8]) {
    let Some((&n, rest)) = data.split_first() else {
        return (Vec::new(), data);
    };
    let n = (n as usize % 16).min(rest.len());
    let (plan, bytes) = rest.split_at(n);
    (plan.iter().map(|&b| b as usize + 1).collect(), bytes)
}

/// `bytes` cut as `plan` says (see [`split_plan`]).
pub fn chunks<'a>(bytes: &'a [u8], plan: &[usize]) -> Vec<&'a [u8]> {
    let mut out = Vec::new();
    let mut rest = bytes;
    let mut i = 0;
    while !rest.is_empty() {
        let n = plan.get(i % plan.len().max(1)).copied().unwrap_or(1);
        let (a, b) = rest.split_at(n.min(rest.len()));
        out.push(a);
        rest = b;
        i += 1;
    }
    out
}

/// The bytes of `chunks` from chunk `from` on, concatenated.
fn rest_of(chunks: &[&[u8]], from: usize) -> Vec<u8> {
    chunks.get(from..).unwrap_or(&[]).concat()
}

/// The outcome of feeding a head parser chunk by chunk, as text to compare.
/// `feed` returns the parsed head's description (with whatever it left
/// buffered), `None` for "need more", or an error's description; `buffered`
/// is what the parser holds between feeds.
fn head_outcome<P>(
    parser: &mut P,
    chunks: &[&[u8]],
    mut feed: impl FnMut(&mut P, &[u8]) -> Result<Option<(String, Vec<u8>)>, String>,
    mut buffered: impl FnMut(&mut P) -> usize,
) -> String {
    for (i, chunk) in chunks.iter().enumerate() {
        match feed(parser, chunk) {
            Ok(None) => {
                let held = buffered(parser);
                assert!(
                    held <= MAX_HEAD,
                    "a head parser holds {held} bytes, over its {MAX_HEAD}-byte limit"
                );
            }
            Ok(Some((head, mut left))) => {
                left.extend_from_slice(&rest_of(chunks, i + 1));
                return format!("{head} then {left:?}");
            }
            Err(e) => return format!("error {e}"),
        }
    }
    "incomplete".to_owned()
}

/// Feeds `data` (after its chunk plan) whole and in chunks to `run`, which
/// must describe the outcome the same way both times.
fn same_whatever_the_chunking(data: &[u8], run: impl Fn(&[&[u8]]) -> String) {
    let (plan, bytes) = split_plan(data);
    let whole = run(&[bytes]);
    let chunked = run(&chunks(bytes, &plan));
    assert_eq!(
        whole, chunked,
        "fed whole and in chunks {plan:?}, the same bytes gave different outcomes"
    );
}

// ----------------------------------------------------------- handshakes

/// The server's request parser ([`ServerHandshake`]): same outcome whatever
/// the chunking, at most [`MAX_HEAD`] bytes held, and an accepted upgrade
/// answered with a `101` whose accept value is the key's.
pub fn server_handshake(data: &[u8]) {
    same_whatever_the_chunking(data, |chunks| {
        let mut hs = ServerHandshake::with_max_header_size(MAX_HEAD);
        head_outcome(
            &mut hs,
            chunks,
            |hs, chunk| {
                let Some(req) = hs.feed(chunk).map_err(|e| format!("{e:?}"))? else {
                    return Ok(None);
                };
                let headers: Vec<_> = req.headers().collect();
                let upgrade = match req.validate_upgrade() {
                    Ok(up) => {
                        let key = up.key().to_owned();
                        assert_eq!(up.accept_value(), accept_key(key.as_bytes()));
                        let response = req
                            .accept(&crate::handshake::Accept::new())
                            .expect("a valid upgrade can be accepted");
                        assert!(response.starts_with(b"HTTP/1.1 101 "));
                        let accept = format!("\r\nSec-WebSocket-Accept: {}\r\n", up.accept_value());
                        assert!(
                            memchr::memmem::find(&response, accept.as_bytes()).is_some(),
                            "the 101 carries the key's accept value"
                        );
                        format!("upgrade key {key}")
                    }
                    Err(e) => format!("not an upgrade: {e:?}"),
                };
                let head = format!(
                    "{} {} path {} query {:?} 1.{} {headers:?} {upgrade}",
                    req.method(),
                    req.target(),
                    req.path(),
                    req.query(),
                    req.version(),
                );
                Ok(Some((head, hs.take_remaining().to_vec())))
            },
            |hs| hs.read_buf().len(),
        )
    });
}

/// The request the client handshake target answers, and its key.
fn client_request() -> ClientRequest {
    ClientRequest::new("example.com", 80, "/chat")
        .subprotocol("chat")
        .expect("a valid subprotocol")
        .max_response_size(MAX_HEAD)
}

/// The key [`client_handshake`] offers.
pub const CLIENT_KEY: [u8; 16] = *b"fuzzing-key-0001";

/// The client's response parser ([`ClientHandshake`]): same outcome
/// whatever the chunking, at most [`MAX_HEAD`] bytes held, and a response
/// accepted only with status 101, the right accept value and an offered (or
/// no) subprotocol.
pub fn client_handshake(data: &[u8]) {
    let expected_accept = {
        use base64::Engine as _;
        accept_key(
            base64::engine::general_purpose::STANDARD
                .encode(CLIENT_KEY)
                .as_bytes(),
        )
    };
    same_whatever_the_chunking(data, |chunks| {
        let (mut hs, _request) = ClientHandshake::with_key(&client_request(), CLIENT_KEY);
        head_outcome(
            &mut hs,
            chunks,
            |hs, chunk| {
                let Some(resp) = hs.feed(chunk).map_err(|e| format!("{e:?}"))? else {
                    return Ok(None);
                };
                assert_eq!(resp.status(), 101, "only a 101 completes the handshake");
                let accept = resp
                    .header("sec-websocket-accept")
                    .expect("an accepted response has Sec-WebSocket-Accept");
                assert_eq!(accept.trim(), expected_accept);
                let proto = resp.subprotocol();
                assert!(
                    matches!(proto, None | Some("chat")),
                    "subprotocol {proto:?} was not offered"
                );
                let headers: Vec<_> = resp.headers().collect();
                let head = format!("101 {proto:?} {headers:?}");
                Ok(Some((head, hs.take_remaining().to_vec())))
            },
            |hs| hs.read_buf().len(),
        )
    });
}

/// The proxy's `CONNECT` answer ([`ProxyConnect`]), for a `ws://` and a
/// `wss://` target: same outcome whatever the chunking, at most
/// [`MAX_HEAD`] bytes held, a tunnel only on a 2xx, a refusal's status
/// reported, and no early bytes before TLS.
pub fn proxy_connect(data: &[u8]) {
    let proxy = Proxy::parse("http://user:pass@proxy.example:3128").expect("a valid proxy");
    for target in ["ws://example.com/chat", "wss://example.com/chat"] {
        let target = WsUrl::parse(target).expect("a valid target");
        same_whatever_the_chunking(data, |chunks| {
            let (connect, request) = ProxyConnect::new(&proxy, &target);
            assert!(request.starts_with(b"CONNECT example.com:"));
            let mut connect = connect.max_response_size(MAX_HEAD);
            let outcome = head_outcome(
                &mut connect,
                chunks,
                |c, chunk| match c.feed(chunk) {
                    Ok(None) => Ok(None),
                    Ok(Some(tunnel)) => {
                        assert!((200..300).contains(&tunnel.status()));
                        let head = format!("tunnel {}", tunnel.status());
                        Ok(Some((head, tunnel.into_buffered().to_vec())))
                    }
                    Err(e) => {
                        if let Some(status) = e.status() {
                            assert!(!(200..300).contains(&status), "{status} refused");
                        }
                        Err(format!("{e:?}"))
                    }
                },
                |c| c.read_buf().len(),
            );
            // Bytes after the answer in a TLS tunnel are refused when they
            // come with the answer (`DataBeforeTls`), and break the TLS
            // handshake when they come later: a failure either way.
            let early = outcome.starts_with("error DataBeforeTls")
                || (outcome.starts_with("tunnel") && !outcome.ends_with("then []"));
            if target.is_tls() && early {
                "data before TLS".to_owned()
            } else {
                outcome
            }
        });
    }
}

/// The URL parser ([`WsUrl::parse`]): an accepted URL prints as a URL that
/// parses back to itself, and the request a client makes for it is one
/// this crate's server parses, for the same resource. Also runs
/// [`Proxy::parse`] on the same text.
pub fn url(data: &[u8]) {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let _ = Proxy::parse(s).map(|p| (p.to_string(), p.socket_addr_string()));
    let Ok(url) = WsUrl::parse(s) else {
        return;
    };
    let printed = url.to_string();
    let again = WsUrl::parse(&printed)
        .unwrap_or_else(|e| panic!("{s:?} parsed, but its printed form {printed:?} does not: {e}"));
    assert_eq!(again, url, "{s:?} printed as {printed:?}");
    assert!(!url.host().is_empty(), "{s:?}: empty host");
    assert!(url.resource().starts_with('/'), "{s:?}: resource");
    let _ = (url.host_header(), url.socket_addr_string());

    let (_, request) = ClientHandshake::with_key(&ClientRequest::from_url(&url), CLIENT_KEY);
    let mut server = ServerHandshake::new();
    let req = server
        .feed(&request)
        .unwrap_or_else(|e| panic!("{s:?}: our server refuses our request: {e}"))
        .expect("a complete request");
    assert_eq!(req.target(), url.resource(), "{s:?}");
    assert!(req.validate_upgrade().is_ok(), "{s:?}");
}

// ---------------------------------------------------------- connections

/// The close code each protocol error calls for, written out independently
/// of [`ProtocolError::close_code`].
pub fn expected_close_code(p: &ProtocolError) -> CloseCode {
    match p {
        ProtocolError::InvalidUtf8 | ProtocolError::InvalidCompressedData => CloseCode(1007),
        ProtocolError::FrameTooLarge { .. } | ProtocolError::MessageTooLarge { .. } => {
            CloseCode(1009)
        }
        _ => CloseCode(1002),
    }
}

/// Decodes what a connection in `role` wrote, as its peer would.
fn decode_output(role: Role, bytes: &[u8]) -> Vec<Message> {
    let peer_role = match role {
        Role::Client => Role::Server,
        Role::Server => Role::Client,
    };
    let mut peer = Connection::new(peer_role, Config::default());
    peer.handle_bytes(bytes);
    let mut out = Vec::new();
    loop {
        match peer.poll_message() {
            Ok(Some(m)) => out.push(m),
            Ok(None) => return out,
            Err(e) => panic!("our own output does not decode: {e}"),
        }
    }
}

/// Everything a connection has queued for writing.
fn drain_output(conn: &mut Connection) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let chunk = conn.take_transmit();
        if chunk.is_empty() {
            return out;
        }
        out.extend_from_slice(&chunk);
    }
}

/// A message as an event to compare: its kind, length and a hash of its
/// payload (formatting whole payloads made the targets several times
/// slower).
fn describe(m: &Message) -> String {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    m.payload().hash(&mut h);
    let kind = match m {
        Message::Text(_) => "text",
        Message::Binary(_) => "binary",
        Message::Ping(_) => "ping",
        Message::Pong(_) => "pong",
        Message::Close(f) => return format!("close {f:?}"),
    };
    format!("{kind} {} {:x}", m.payload().len(), h.finish())
}

/// Checks a received message's size against the limits.
fn check_size(m: &Message) {
    match m {
        Message::Text(_) | Message::Binary(_) => assert!(
            m.payload().len() <= MAX_MESSAGE,
            "a {}-byte message got through a {MAX_MESSAGE}-byte limit",
            m.payload().len()
        ),
        Message::Ping(p) | Message::Pong(p) => assert!(p.len() <= MAX_CONTROL_PAYLOAD),
        Message::Close(_) => {}
    }
}

/// Checks the receive buffers `(read buffer, message buffer)` against the
/// limits: after decoding, at most one frame in progress and one message.
fn check_buffers((read, message): (usize, usize)) {
    assert!(
        read <= MAX_FRAME + MAX_HEADER_LEN,
        "{read} bytes held in the read buffer (frame limit {MAX_FRAME})"
    );
    assert!(
        message <= MAX_MESSAGE,
        "{message} bytes held for a fragmented message (limit {MAX_MESSAGE})"
    );
}

/// Checks an error from `poll_message` and returns the close code it
/// queued, if any.
fn check_error(e: &Error, eof: bool) -> Option<CloseCode> {
    match e {
        Error::Protocol(p) => {
            let code = expected_close_code(p);
            assert_eq!(p.close_code(), code, "{p:?}");
            assert_eq!(e.close_code(), Some(code), "{p:?}");
            Some(code)
        }
        Error::AbnormalClosure => {
            assert!(eof, "an abnormal closure before the end of stream");
            None
        }
        other => panic!("unexpected error from poll_message: {other:?}"),
    }
}

/// The frame decoder of a `role` connection fed arbitrary bytes (whole and
/// in chunks): same messages, errors and replies whatever the chunking,
/// bounded buffers, every error's close code right and on the wire, every
/// received close echoed, every ping answered by a pong with its payload.
pub fn frames(role: Role, data: &[u8]) {
    frames_with(role, config(), data);
}

/// [`frames`] with permessage-deflate negotiated: compressed messages
/// (RSV1) inflate within the message limit, a bad deflate stream is 1007,
/// and everything `frames` checks.
pub fn frames_deflate(role: Role, data: &[u8]) {
    frames_with(role, deflate_config(), data);
}

fn frames_with(role: Role, config: Config, data: &[u8]) {
    same_whatever_the_chunking(data, |chunks| {
        let mut conn = Connection::new(role, config.clone());
        let mut events = Vec::new();
        // The close frame the connection owes: `Some(code)` (or
        // `Some(None)`: a close without a code).
        let mut owed_close: Option<Option<CloseCode>> = None;
        let mut pings = Vec::new();
        let mut eof = false;
        for chunk in chunks.iter().map(Some).chain([None]) {
            match chunk {
                Some(c) => conn.handle_bytes(c),
                None => {
                    conn.handle_eof();
                    eof = true;
                }
            }
            loop {
                match conn.poll_message() {
                    Ok(Some(m)) => {
                        check_size(&m);
                        match &m {
                            Message::Ping(p) => pings.push(p.clone()),
                            Message::Close(f) => {
                                assert!(owed_close.is_none());
                                owed_close = Some(f.as_ref().map(|f| f.code));
                                assert!(conn.close_received());
                            }
                            _ => {}
                        }
                        events.push(describe(&m));
                    }
                    Ok(None) => break,
                    Err(e) => {
                        if let Some(code) = check_error(&e, eof) {
                            assert!(owed_close.is_none());
                            owed_close = Some(Some(code));
                        }
                        assert_eq!(conn.state(), State::Closed, "after {e:?}");
                        assert!(
                            matches!(conn.poll_message(), Ok(None)),
                            "an error is reported once"
                        );
                        events.push(format!("error {e:?}"));
                        break;
                    }
                }
            }
            check_buffers(conn.buffered_receive());
            assert!(
                conn.buffered_transmit() <= WRITE_LIMIT + 2 * MAX_CONTROL_FRAME,
                "{} bytes of replies queued (write limit {WRITE_LIMIT})",
                conn.buffered_transmit()
            );
        }
        let sent = decode_output(role, &drain_output(&mut conn));
        // Every pong answers a ping, in order; a close comes last.
        let mut unanswered = pings.iter();
        for (i, m) in sent.iter().enumerate() {
            match m {
                Message::Pong(p) => assert!(
                    unanswered.any(|q| q == p),
                    "a pong {p:?} that answers no ping (pings {pings:?})"
                ),
                Message::Close(f) => {
                    assert_eq!(i, sent.len() - 1, "a close is the last frame sent");
                    assert_eq!(
                        Some(f.as_ref().map(|f| f.code)),
                        owed_close,
                        "the close sent carries the wrong code"
                    );
                }
                other => panic!("the connection sent {other:?} unasked"),
            }
        }
        if owed_close.is_some() {
            assert!(
                matches!(sent.last(), Some(Message::Close(_))),
                "no close frame sent for {owed_close:?}"
            );
        }
        if let (Some(last), false) = (pings.last(), owed_close.is_some()) {
            assert!(
                sent.iter().any(|m| *m == Message::Pong(last.clone())),
                "the newest ping {last:?} was not answered"
            );
        }
        events.extend(sent.iter().map(|m| format!("sent {}", describe(m))));
        events.join("\n")
    });
}

// ------------------------------------------------------------- sessions

/// One step of a [`session`].
#[derive(Debug, Arbitrary)]
pub enum Op {
    /// A text message of about `len` bytes (mixed one- to four-byte
    /// characters), through `send_text` or `send` (the shared path).
    Text {
        /// Sent by the client (else the server).
        from_client: bool,
        /// Length in bytes, modulo 6000.
        len: u16,
        /// Through `send` rather than `send_text`.
        shared: bool,
    },
    /// A binary message of `len` bytes.
    Binary {
        /// Sent by the client (else the server).
        from_client: bool,
        /// Length in bytes, modulo 6000.
        len: u16,
        /// Through `send` rather than `send_binary`.
        shared: bool,
        /// The first byte; the rest count up from it.
        seed: u8,
    },
    /// A ping with `len` bytes of payload (over 125 is refused).
    Ping {
        /// Sent by the client (else the server).
        from_client: bool,
        /// Payload length, modulo 130.
        len: u8,
    },
    /// A close with `code` and a reason of `reason` bytes.
    Close {
        /// Sent by the client (else the server).
        from_client: bool,
        /// Any code: codes that may not be sent are refused.
        code: u16,
        /// Reason length, modulo 130 (over 123 is refused).
        reason: u8,
    },
    /// Time passes: `ms` milliseconds, then both sides' timers run.
    Advance {
        /// Milliseconds.
        ms: u16,
    },
    /// Bytes on the wire reach one side, in chunks of these sizes (`b + 1`
    /// bytes each; none: everything on the wire at once).
    Deliver {
        /// To the server (else to the client).
        to_server: bool,
        /// Chunk sizes.
        chunks: Vec<u8>,
    },
}

/// A fuzzed exchange between a client and a server.
#[derive(Debug, Arbitrary)]
pub struct Session {
    /// Both sides negotiated permessage-deflate.
    pub deflate: bool,
    /// The client runs split into a `Receiver` and a `Sender`.
    pub client_split: bool,
    /// The server runs split.
    pub server_split: bool,
    /// Outgoing fragment size: `1 + f % 1500` (over [`MAX_FRAME`]: frames
    /// the peer refuses with 1009).
    pub fragment: Option<u16>,
    /// Keepalive interval in milliseconds, `10 + k`.
    pub keepalive: Option<u8>,
    /// The steps.
    pub ops: Vec<Op>,
}

/// A whole or split connection, driven the same way.
// Two per session: the size difference does not matter.
#[allow(clippy::large_enum_variant)]
enum Peer {
    Whole(Connection),
    Split(Receiver, Sender),
}

impl Peer {
    fn send(&mut self, m: &Message, shared: bool) -> Result<(), Error> {
        match (self, m, shared) {
            (Peer::Whole(c), _, true) => c.send(m),
            (Peer::Whole(c), Message::Text(t), false) => c.send_text(t),
            (Peer::Whole(c), Message::Binary(b), false) => c.send_binary(b),
            (Peer::Split(_, tx), _, true) => tx.send(m),
            (Peer::Split(_, tx), Message::Text(t), false) => tx.send_text(t),
            (Peer::Split(_, tx), Message::Binary(b), false) => tx.send_binary(b),
            (_, m, _) => panic!("not a data message: {m:?}"),
        }
    }
    fn send_ping(&mut self, p: &[u8]) -> Result<(), Error> {
        match self {
            Peer::Whole(c) => c.send_ping(p),
            Peer::Split(_, tx) => tx.send_ping(p),
        }
    }
    fn close(&mut self, code: CloseCode, reason: &str) -> Result<(), Error> {
        match self {
            Peer::Whole(c) => c.close(code, reason),
            Peer::Split(_, tx) => tx.close(code, reason),
        }
    }
    fn close_sent(&self) -> bool {
        match self {
            Peer::Whole(c) => c.close_sent(),
            Peer::Split(_, tx) => tx.close_sent(),
        }
    }
    fn state(&self) -> State {
        match self {
            Peer::Whole(c) => c.state(),
            Peer::Split(_, tx) => tx.state(),
        }
    }
    fn handle_bytes(&mut self, b: &[u8]) {
        match self {
            Peer::Whole(c) => c.handle_bytes(b),
            Peer::Split(rx, _) => rx.handle_bytes(b),
        }
    }
    fn poll_message(&mut self) -> Result<Option<Message>, Error> {
        match self {
            Peer::Whole(c) => c.poll_message(),
            Peer::Split(rx, _) => rx.poll_message(),
        }
    }
    fn timers(&mut self, now: Instant, fire: bool) {
        match self {
            Peer::Whole(c) => {
                c.poll_timeout(now);
                if fire {
                    c.handle_timeout(now);
                }
            }
            Peer::Split(rx, _) => {
                rx.poll_timeout(now);
                if fire {
                    rx.handle_timeout(now);
                }
            }
        }
    }
    fn take_output(&mut self, wire: &mut VecDeque<u8>) {
        loop {
            let chunk = match self {
                Peer::Whole(c) => c.take_transmit(),
                Peer::Split(_, tx) => tx.take_transmit(),
            };
            if chunk.is_empty() {
                return;
            }
            wire.extend(chunk.iter());
        }
    }
    fn buffered_receive(&self) -> (usize, usize) {
        match self {
            Peer::Whole(c) => c.buffered_receive(),
            Peer::Split(rx, _) => rx.buffered_receive(),
        }
    }
}

/// What one side expects to receive next from the other, in order.
#[derive(Debug, PartialEq)]
enum Expect {
    /// A data message, and whether it fits the limits as sent.
    Data(Message, Fit),
    /// An application ping.
    Ping(Bytes),
}

/// One side of a session and what it has seen.
struct Side {
    peer: Peer,
    role: Role,
    /// What the other side sent and this one should receive, in order.
    incoming: VecDeque<Expect>,
    /// The first close frame this side queued (`Some(None)`: without a
    /// code).
    first_close: Option<Option<CloseCode>>,
    /// This side stopped receiving (close received, failed, timed out).
    done: bool,
    timed_out: bool,
    /// Every byte delivered to this side, and what it made of them.
    delivered: Vec<u8>,
    events: Vec<String>,
}

impl Side {
    fn new(role: Role, config: &Config, split: bool) -> Side {
        let conn = Connection::new(role, config.clone());
        let peer = if split {
            let (rx, tx) = conn.split();
            Peer::Split(rx, tx)
        } else {
            Peer::Whole(conn)
        };
        Side {
            peer,
            role,
            incoming: VecDeque::new(),
            first_close: None,
            done: false,
            timed_out: false,
            delivered: Vec::new(),
            events: Vec::new(),
        }
    }
}

/// Text of about `len` bytes mixing one- to four-byte characters, so that
/// fragments split characters.
fn text_of(len: usize) -> String {
    let alphabet = ['a', 'é', '€', '😀', ' ', 'z'];
    let mut s = String::with_capacity(len + 4);
    let mut i = 0;
    while s.len() < len {
        s.push(alphabet[i % alphabet.len()]);
        i += 1;
    }
    s
}

/// Whether a message fits the receiver's limits.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Fit {
    Yes,
    No,
    /// Compressed: its frames' size is not known in advance.
    Maybe,
}

/// Whether `len` bytes sent with `fragment` (compressed if `deflate`) fit
/// the receiver's limits.
fn fit(len: usize, fragment: Option<usize>, deflate: bool) -> Fit {
    let frame = match fragment {
        Some(f) if len > f => f,
        _ => len,
    };
    if len > MAX_MESSAGE {
        Fit::No
    } else if !deflate {
        if frame > MAX_FRAME { Fit::No } else { Fit::Yes }
    } else if len + 64 <= MAX_FRAME {
        // Deflate expands nothing this small by more than a few bytes.
        Fit::Yes
    } else {
        Fit::Maybe
    }
}

/// Decodes everything `to` has received so far, checking each message
/// against what `from` sent.
fn receive(to: &mut Side, from: &mut Side, keepalive: bool) {
    loop {
        let m = match to.peer.poll_message() {
            Ok(Some(m)) => m,
            Ok(None) => break,
            Err(Error::Timeout(kind)) => {
                assert!(to.timed_out || !to.done, "a timeout after the end");
                to.done = true;
                to.timed_out = true;
                to.events.push(format!("timeout {kind:?}"));
                continue;
            }
            Err(e) => {
                let code = check_error(&e, false).expect("a protocol error");
                assert_eq!(
                    code,
                    CloseCode(1009),
                    "two correct peers disagree on more than size: {e:?}"
                );
                match to.incoming.pop_front() {
                    Some(Expect::Data(_, Fit::No | Fit::Maybe)) => {}
                    other => panic!("{e:?} but the next message sent was {other:?}"),
                }
                to.first_close.get_or_insert(Some(code));
                to.done = true;
                to.events.push(format!("error {e:?}"));
                continue;
            }
        };
        check_size(&m);
        to.events.push(describe(&m));
        match m {
            Message::Text(_) | Message::Binary(_) => match to.incoming.pop_front() {
                Some(Expect::Data(sent, Fit::Yes | Fit::Maybe)) => {
                    assert!(sent == m, "sent {sent:?}, received {m:?}")
                }
                other => panic!("received {m:?}, expected {other:?}"),
            },
            Message::Ping(p) if keepalive && p == b"keepalive"[..] => {}
            Message::Ping(p) => {
                let next = to.incoming.pop_front();
                assert_eq!(next, Some(Expect::Ping(p)), "pings arrive in order");
            }
            Message::Pong(_) => {}
            Message::Close(f) => {
                let code = f.map(|f| f.code);
                assert_eq!(
                    Some(code),
                    from.first_close,
                    "the close received is not the one the peer queued first"
                );
                assert!(
                    to.incoming.is_empty(),
                    "a close arrived before {:?}",
                    to.incoming
                );
                to.first_close.get_or_insert(code);
                to.done = true;
            }
        }
    }
    check_buffers(to.peer.buffered_receive());
}

/// Moves up to `chunks` of `wire` to `to` and decodes them.
fn deliver(to: &mut Side, from: &mut Side, wire: &mut VecDeque<u8>, sizes: &[u8], ka: bool) {
    let mut plan: Vec<usize> = sizes.iter().map(|&b| b as usize + 1).collect();
    if plan.is_empty() {
        plan.push(wire.len());
    }
    for n in plan {
        let n = n.min(wire.len());
        if n == 0 {
            break;
        }
        let chunk: Vec<u8> = wire.drain(..n).collect();
        to.peer.handle_bytes(&chunk);
        to.delivered.extend_from_slice(&chunk);
        receive(to, from, ka);
    }
}

/// A client and a server (each whole or split) run the [`Session`] the
/// input describes. Checks: every data message and ping arrives intact and
/// in order (or, if it breaks the limits, fails the receiver with 1009,
/// which the sender then receives as its close); every close received is
/// the one its sender queued first, after everything sent before it; the
/// receive buffers stay bounded; and replaying all the bytes a side
/// received, whole, into a fresh connection gives the same messages (up to
/// a timeout that cut the live side short).
pub fn session(data: &[u8]) {
    let Ok(s) = Unstructured::new(data).arbitrary::<Session>() else {
        return;
    };
    let fragment = s.fragment.map(|f| 1 + f as usize % 1500);
    let keepalive = s.keepalive.map(|k| Duration::from_millis(10 + k as u64));
    let config = if s.deflate {
        deflate_config()
    } else {
        config()
    };
    let config = config
        .fragment_size(fragment)
        .keepalive(keepalive)
        .keepalive_timeout(Duration::from_millis(50))
        .close_timeout(Duration::from_millis(100));
    let ka = keepalive.is_some();
    let mut client = Side::new(Role::Client, &config, s.client_split);
    let mut server = Side::new(Role::Server, &config, s.server_split);
    let mut to_server = VecDeque::new();
    let mut to_client = VecDeque::new();
    let mut now = Instant::now();
    for op in s.ops.iter().take(64) {
        match *op {
            Op::Text {
                from_client,
                len,
                shared,
            } => {
                let m = Message::text(text_of(len as usize % 6000));
                let (from, to) = pick(&mut client, &mut server, from_client);
                if from.peer.send(&m, shared).is_ok() {
                    let fits = fit(m.payload().len(), fragment, s.deflate);
                    to.incoming.push_back(Expect::Data(m, fits));
                }
            }
            Op::Binary {
                from_client,
                len,
                shared,
                seed,
            } => {
                let bytes: Vec<u8> = (0..len as usize % 6000)
                    .map(|i| seed.wrapping_add(i as u8))
                    .collect();
                let m = Message::binary(bytes);
                let (from, to) = pick(&mut client, &mut server, from_client);
                if from.peer.send(&m, shared).is_ok() {
                    let fits = fit(m.payload().len(), fragment, s.deflate);
                    to.incoming.push_back(Expect::Data(m, fits));
                }
            }
            Op::Ping { from_client, len } => {
                let payload = Bytes::from(vec![0xfe; len as usize % 130]);
                let (from, to) = pick(&mut client, &mut server, from_client);
                if from.peer.send_ping(&payload).is_ok() {
                    to.incoming.push_back(Expect::Ping(payload));
                }
            }
            Op::Close {
                from_client,
                code,
                reason,
            } => {
                let (from, _) = pick(&mut client, &mut server, from_client);
                let already = from.peer.close_sent();
                let reason = "r".repeat(reason as usize % 130);
                let ok = from.peer.close(CloseCode(code), &reason).is_ok();
                if ok && !already {
                    if from.peer.close_sent() {
                        assert!(from.first_close.is_none());
                        from.first_close = Some(Some(CloseCode(code)));
                    } else {
                        // Accepted but not sent: only on a connection that
                        // is over (timed out), which sends nothing more.
                        assert_eq!(
                            from.peer.state(),
                            State::Closed,
                            "a close accepted, not sent"
                        );
                    }
                }
            }
            Op::Advance { ms } => {
                now += Duration::from_millis(ms as u64);
                client.peer.timers(now, true);
                server.peer.timers(now, true);
                receive(&mut client, &mut server, ka);
                receive(&mut server, &mut client, ka);
            }
            Op::Deliver {
                to_server: true,
                ref chunks,
            } => {
                client.peer.take_output(&mut to_server);
                deliver(&mut server, &mut client, &mut to_server, chunks, ka);
            }
            Op::Deliver {
                to_server: false,
                ref chunks,
            } => {
                server.peer.take_output(&mut to_client);
                deliver(&mut client, &mut server, &mut to_client, chunks, ka);
            }
        }
        client.peer.timers(now, false);
        server.peer.timers(now, false);
    }
    // Everything on the wire arrives, with no more time passing.
    for _ in 0..4 {
        client.peer.take_output(&mut to_server);
        deliver(&mut server, &mut client, &mut to_server, &[], ka);
        server.peer.take_output(&mut to_client);
        deliver(&mut client, &mut server, &mut to_client, &[], ka);
    }
    for side in [&client, &server] {
        if !side.done {
            assert!(
                side.incoming.is_empty(),
                "{:?} never received {:?}",
                side.role,
                side.incoming
            );
        }
        replay(side, &config);
    }
}

/// `(from, to)`: the client and the server in the order `from_client` says.
fn pick<'a>(
    client: &'a mut Side,
    server: &'a mut Side,
    from_client: bool,
) -> (&'a mut Side, &'a mut Side) {
    if from_client {
        (client, server)
    } else {
        (server, client)
    }
}

/// Feeds everything `side` received, at once, to a fresh connection: the
/// messages must be the live ones (which a timeout may have cut short).
fn replay(side: &Side, config: &Config) {
    let mut conn = Connection::new(side.role, config.clone());
    conn.handle_bytes(&side.delivered);
    let mut events = Vec::new();
    loop {
        match conn.poll_message() {
            Ok(Some(m)) => events.push(describe(&m)),
            Ok(None) => break,
            Err(e) => {
                events.push(format!("error {e:?}"));
                break;
            }
        }
    }
    let live: Vec<_> = side
        .events
        .iter()
        .take_while(|e| !e.starts_with("timeout"))
        .cloned()
        .collect();
    if side.timed_out {
        assert!(
            events.starts_with(&live),
            "{:?}: live {live:?}, replayed {events:?}",
            side.role
        );
    } else {
        assert_eq!(live, events, "{:?}: live and replayed differ", side.role);
    }
}
