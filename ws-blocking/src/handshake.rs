//! The opening handshake over blocking transports, both roles.
//!
//! Parsing, validation and the response bytes are ws-core's
//! ([`ws_core::handshake`]); this module reads the head straight into the
//! handshake's buffer, writes the answer, and bounds the whole exchange by
//! `Config::handshake_timeout` through the transport's read timeout
//! ([`SetReadTimeout`]).

use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use ws_core::handshake::{
    Accept, ClientHandshake, ClientRequest, HandshakeError, Request, Response, ServerHandshake,
};
use ws_core::url::WsUrl;
use ws_core::{Config, Error, Role, TimeoutKind};

use crate::Result;
use crate::stream::{SetReadTimeout, TimeoutCache, WebSocketStream, is_timeout, read_into};

/// Either side's incremental head parser, so one read loop serves both.
pub(crate) trait HeadParser {
    type Head;
    fn buf(&mut self) -> &mut BytesMut;
    fn poll(&mut self) -> std::result::Result<Option<Self::Head>, HandshakeError>;
}

impl HeadParser for ServerHandshake {
    type Head = Request;
    fn buf(&mut self) -> &mut BytesMut {
        self.read_buf()
    }
    fn poll(&mut self) -> std::result::Result<Option<Request>, HandshakeError> {
        self.poll_request()
    }
}

impl HeadParser for ClientHandshake {
    type Head = Response;
    fn buf(&mut self) -> &mut BytesMut {
        self.read_buf()
    }
    fn poll(&mut self) -> std::result::Result<Option<Response>, HandshakeError> {
        self.poll_response()
    }
}

/// Reads until `hs` has a complete head, or fails at `deadline`
/// (`Error::Timeout(TimeoutKind::Handshake)`).
pub(crate) fn read_head<S, H>(io: &mut S, hs: &mut H, deadline: Instant) -> Result<H::Head>
where
    S: Read + SetReadTimeout + ?Sized,
    H: HeadParser,
{
    let mut timeouts = TimeoutCache::default();
    loop {
        if let Some(head) = hs.poll()? {
            return Ok(head);
        }
        if !timeouts.arm(io, Some(deadline), Instant::now())? {
            return Err(Error::Timeout(TimeoutKind::Handshake));
        }
        match read_into(io, hs.buf()) {
            Ok(0) => {
                return Err(Error::Io(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "connection closed during the opening handshake",
                )));
            }
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if is_timeout(&e) => {
                if Instant::now() >= deadline {
                    return Err(Error::Timeout(TimeoutKind::Handshake));
                }
            }
            Err(e) => return Err(Error::Io(e)),
        }
    }
}

fn write_flush<S: Write + ?Sized>(io: &mut S, bytes: &[u8]) -> io::Result<()> {
    io.write_all(bytes)?;
    io.flush()
}

/// Accepts a WebSocket connection on `io` with `Config::default()`,
/// answering any valid upgrade request on any path.
///
/// On an invalid request the matching HTTP error response (400, 426 with
/// `Sec-WebSocket-Version: 13`, ...) is written before the error returns.
pub fn accept<S>(io: S) -> Result<WebSocketStream<S>>
where
    S: Read + Write + SetReadTimeout,
{
    accept_with(io, Config::default(), |_| Ok(Accept::new()))
}

/// Accepts a WebSocket connection on `io`, letting `decide` inspect the
/// request (path, `Origin`, subprotocols) and either accept it with options
/// or answer with a complete HTTP response of its own.
///
/// Bounded by `config`'s handshake timeout for reading the request. When
/// `decide` rejects, its response is written, the transport is dropped
/// (which closes a socket) and
/// `Error::Handshake(HandshakeError::Rejected { status })` is returned with
/// the response's status (500 if it does not start with a status line); an
/// invalid request gets ws-core's error response and returns
/// `Error::Handshake`.
pub fn accept_with<S, F>(mut io: S, config: Config, decide: F) -> Result<WebSocketStream<S>>
where
    S: Read + Write + SetReadTimeout,
    F: FnOnce(&Request) -> std::result::Result<Accept, Bytes>,
{
    let deadline = Instant::now() + config.get_handshake_timeout();
    let mut hs = ServerHandshake::new();
    let req = match read_head(&mut io, &mut hs, deadline) {
        Ok(req) => req,
        Err(Error::Handshake(e)) => {
            let _ = write_flush(&mut io, &e.response());
            return Err(Error::Handshake(e));
        }
        Err(e) => return Err(e),
    };
    let accept = match decide(&req) {
        Ok(accept) => accept,
        Err(response) => {
            let _ = write_flush(&mut io, &response);
            return Err(HandshakeError::rejected_by(&response).into());
        }
    };
    match req.accept(&accept) {
        Ok(response) => write_flush(&mut io, &response)?,
        Err(e) => {
            let _ = write_flush(&mut io, &e.response());
            return Err(Error::Handshake(e));
        }
    }
    Ok(WebSocketStream::from_raw(
        io,
        Role::Server,
        config,
        hs.take_remaining(),
    ))
}

/// Performs the client side of the handshake on an already connected `io`:
/// sends `req`, verifies the server's answer, and returns the stream with
/// the server's response (for its headers and chosen subprotocol).
pub fn client_handshake<S>(
    io: S,
    req: &ClientRequest,
    config: Config,
) -> Result<(WebSocketStream<S>, Response)>
where
    S: Read + Write + SetReadTimeout,
{
    let deadline = Instant::now() + config.get_handshake_timeout();
    client_handshake_until(io, req, config, deadline)
}

fn client_handshake_until<S>(
    mut io: S,
    req: &ClientRequest,
    config: Config,
    deadline: Instant,
) -> Result<(WebSocketStream<S>, Response)>
where
    S: Read + Write + SetReadTimeout,
{
    let (mut hs, request) = ClientHandshake::new(req);
    write_flush(&mut io, &request)?;
    let response = read_head(&mut io, &mut hs, deadline)?;
    let ws = WebSocketStream::from_raw(io, Role::Client, config, hs.take_remaining());
    Ok((ws, response))
}

/// Connects to a `ws://` URL with `Config::default()`. `wss://` fails with
/// `Error::Url(UrlError::TlsNotSupported)`.
pub fn connect(url: &str) -> Result<(WebSocketStream<TcpStream>, Response)> {
    connect_with(url, Config::default())
}

/// Connects to a `ws://` URL with `config`. TCP connect and handshake
/// together are bounded by the handshake timeout (name resolution is the
/// system resolver's and not covered by it).
pub fn connect_with(url: &str, config: Config) -> Result<(WebSocketStream<TcpStream>, Response)> {
    connect_url(&WsUrl::parse(url)?, config)
}

pub(crate) fn connect_url(
    url: &WsUrl,
    config: Config,
) -> Result<(WebSocketStream<TcpStream>, Response)> {
    let deadline = Instant::now() + config.get_handshake_timeout();
    let mut last_err = None;
    let mut sock = None;
    for addr in url.socket_addr_string().to_socket_addrs()? {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(Error::Timeout(TimeoutKind::Handshake));
        }
        match TcpStream::connect_timeout(&addr, left) {
            Ok(s) => {
                sock = Some(s);
                break;
            }
            Err(e) => last_err = Some(e),
        }
    }
    let sock = match (sock, last_err) {
        (Some(s), _) => s,
        (None, Some(e)) if is_timeout(&e) => return Err(Error::Timeout(TimeoutKind::Handshake)),
        (None, Some(e)) => return Err(Error::Io(e)),
        (None, None) => {
            return Err(Error::Io(io::Error::new(
                io::ErrorKind::NotFound,
                "the host name resolved to no address",
            )));
        }
    };
    // Small frames should leave at once; batching is done by `feed`.
    sock.set_nodelay(true)?;
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(Error::Timeout(TimeoutKind::Handshake));
    }
    sock.set_write_timeout(Some(left))?;
    let req = ClientRequest::from_url(url);
    let (ws, response) = client_handshake_until(sock, &req, config, deadline)?;
    ws.get_ref().set_write_timeout(None)?;
    Ok((ws, response))
}
