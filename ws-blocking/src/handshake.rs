//! The opening handshake over blocking transports, both roles, and a
//! client's transport for `ws://` and `wss://` ([`MaybeTls`]), directly or
//! through an HTTP proxy ([`connect_proxy`]).
//!
//! Parsing, validation and the response bytes are ws-core's
//! ([`ws_core::handshake`]); this module reads the head straight into the
//! handshake's buffer, writes the answer, and bounds the whole exchange by
//! `Config::handshake_timeout` through the transport's read timeout
//! ([`SetReadTimeout`]).

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use ws_core::handshake::{
    Accept, ClientHandshake, ClientRequest, HandshakeError, IntoClientRequest, Request, Response,
    ServerHandshake,
};
use ws_core::proxy::{Proxy, ProxyConnect, ProxyError, Tunnel, first_hop};
use ws_core::rt::tls::rustls::{ClientConfig, ClientConnection};
use ws_core::rt::tls::{self, ServerName, TlsError};
use ws_core::url::WsUrl;
use ws_core::{Config, Error, Role, TimeoutKind};

use crate::Result;
use crate::stream::{SetReadTimeout, TimeoutCache, WebSocketStream, is_timeout, read_into};

/// Either side's incremental head parser (and a proxy's `CONNECT`
/// answer), so one read loop serves all.
pub(crate) trait HeadParser {
    type Head;
    type Error: Into<Error>;
    fn buf(&mut self) -> &mut BytesMut;
    fn poll(&mut self) -> std::result::Result<Option<Self::Head>, Self::Error>;
    /// The error for a peer that closed before its head was complete.
    fn eof() -> Error {
        Error::Io(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "connection closed during the opening handshake",
        ))
    }
}

impl HeadParser for ServerHandshake {
    type Head = Request;
    type Error = HandshakeError;
    fn buf(&mut self) -> &mut BytesMut {
        self.read_buf()
    }
    fn poll(&mut self) -> std::result::Result<Option<Request>, HandshakeError> {
        self.poll_request()
    }
}

impl HeadParser for ClientHandshake {
    type Head = Response;
    type Error = HandshakeError;
    fn buf(&mut self) -> &mut BytesMut {
        self.read_buf()
    }
    fn poll(&mut self) -> std::result::Result<Option<Response>, HandshakeError> {
        self.poll_response()
    }
}

impl HeadParser for ProxyConnect {
    type Head = Tunnel;
    type Error = ProxyError;
    fn buf(&mut self) -> &mut BytesMut {
        self.read_buf()
    }
    fn poll(&mut self) -> std::result::Result<Option<Tunnel>, ProxyError> {
        self.poll_response()
    }
    fn eof() -> Error {
        ProxyError::Closed.into()
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
        if let Some(head) = hs.poll().map_err(Into::into)? {
            return Ok(head);
        }
        if !timeouts.arm(io, Some(deadline), Instant::now())? {
            return Err(Error::Timeout(TimeoutKind::Handshake));
        }
        match read_into(io, hs.buf()) {
            Ok(0) => return Err(H::eof()),
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
    // Negotiates permessage-deflate by `config`'s policy.
    let config = match req.accept_with_config(&accept, config) {
        Ok((response, config)) => {
            write_flush(&mut io, &response)?;
            config
        }
        Err(e) => {
            let _ = write_flush(&mut io, &e.response());
            return Err(Error::Handshake(e));
        }
    };
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
    client_handshake_until(io, req, config, deadline, BytesMut::new())
}

/// The client handshake; `early` holds bytes already received on the
/// connection (after a proxy's answer), the start of the server's answer.
fn client_handshake_until<S>(
    mut io: S,
    req: &ClientRequest,
    config: Config,
    deadline: Instant,
    early: BytesMut,
) -> Result<(WebSocketStream<S>, Response)>
where
    S: Read + Write + SetReadTimeout,
{
    let (mut hs, request) = ClientHandshake::with_config(req, &config);
    write_flush(&mut io, &request)?;
    // `read_head` parses what is buffered before it reads.
    hs.read_buf().extend_from_slice(&early);
    let response = read_head(&mut io, &mut hs, deadline)?;
    let config = response.configure(config);
    let ws = WebSocketStream::from_raw(io, Role::Client, config, hs.take_remaining());
    Ok((ws, response))
}

/// Connects to a `ws://` or `wss://` URL with `Config::default()`; see
/// [`connect_with`].
///
/// `request` is a URL (`&str`, `String`, [`WsUrl`]), a URL with a
/// [`ClientRequest`] made from it, or (cargo feature `http`, on by default)
/// an `http::Request<()>` carrying headers, cookies, a bearer token and
/// subprotocols ([`IntoClientRequest`]).
pub fn connect(
    request: impl IntoClientRequest,
) -> Result<(WebSocketStream<MaybeTls<TcpStream>>, Response)> {
    connect_with(request, Config::default())
}

/// Connects to a `ws://` or `wss://` URL with `config`. `wss://` verifies
/// the server against the default roots
/// ([`tls::default_client_config`](crate::tls::default_client_config),
/// chosen by this crate's cargo features); [`connect_tls`] takes a
/// configuration of your own.
///
/// The TCP connect, the TLS handshake and the WebSocket handshake together
/// are bounded by the handshake timeout (name resolution is the system
/// resolver's and not covered by it).
///
/// # Errors
///
/// `Error::Url` for an unusable URL (a scheme other than `ws`/`wss`),
/// `Error::Timeout` when the handshake timeout passed, a TLS failure as a
/// [`TlsError`](crate::tls::TlsError) inside `Error::Io` (an untrusted
/// certificate, a name mismatch, a protocol error: see
/// [`TlsError::find`](crate::tls::TlsError::find)), `Error::Handshake`
/// when the server refuses the upgrade.
pub fn connect_with(
    request: impl IntoClientRequest,
    config: Config,
) -> Result<(WebSocketStream<MaybeTls<TcpStream>>, Response)> {
    let (url, req) = request.into_client_request()?;
    connect_url(&url, &req, config, None, None)
}

/// [`connect_with`] using `tls` for a `wss://` URL instead of the default
/// configuration: your roots, client certificate, ALPN. Build it with
/// [`tls::builder`](crate::tls::builder) (or any
/// `ClientConfig::builder_with_provider`) so no process-level crypto
/// provider is needed. A `ws://` URL connects without TLS.
///
/// ```no_run
/// use ws_blocking::tls;
///
/// let ca = tls::certs_from_pem(&std::fs::read("ca.pem")?)?;
/// let config = tls::client_config(tls::root_store(ca)?); // trusts ca.pem only
/// let (mut ws, _response) =
///     ws_blocking::connect_tls("wss://localhost:9443/ws", ws_blocking::Config::default(), config)?;
/// ws.send(ws_blocking::Message::text("hello"))?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn connect_tls(
    request: impl IntoClientRequest,
    config: Config,
    tls: Arc<ClientConfig>,
) -> Result<(WebSocketStream<MaybeTls<TcpStream>>, Response)> {
    let (url, req) = request.into_client_request()?;
    connect_url(&url, &req, config, Some(tls), None)
}

/// [`connect_tls`] through the HTTP proxy `proxy`: TCP to the proxy, its
/// `CONNECT` tunnel to the URL's host and port (with the proxy URL's
/// credentials as `Proxy-Authorization: Basic`), then for `wss://` TLS to
/// the server inside the tunnel (verified against the URL's host, with
/// `tls` or the default roots), then the WebSocket handshake; all of it
/// bounded by the handshake timeout.
///
/// ```no_run
/// use ws_blocking::proxy::Proxy;
///
/// let proxy = Proxy::parse("http://user:secret@proxy.internal:3128")?;
/// let (mut ws, _response) =
///     ws_blocking::connect_proxy("wss://chat.example/ws", ws_blocking::Config::default(), &proxy, None)?;
/// ws.send(ws_blocking::Message::text("hello"))?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # Errors
///
/// As [`connect_with`], and `Error::Proxy` when the proxy refuses the
/// tunnel (its status in
/// [`ProxyError::status`](crate::proxy::ProxyError::status): 407, 403,
/// 502, ...), closes the connection or does not answer in HTTP.
pub fn connect_proxy(
    request: impl IntoClientRequest,
    config: Config,
    proxy: &Proxy,
    tls: Option<Arc<ClientConfig>>,
) -> Result<(WebSocketStream<MaybeTls<TcpStream>>, Response)> {
    let (url, req) = request.into_client_request()?;
    connect_url(&url, &req, config, tls, Some(proxy))
}

/// Opens `proxy`'s `CONNECT` tunnel to `target` on `sock` by `deadline`;
/// returns the bytes that followed the proxy's answer (ws-core decides
/// what they may be).
fn open_tunnel(
    mut sock: &TcpStream,
    proxy: &Proxy,
    target: &WsUrl,
    deadline: Instant,
) -> Result<BytesMut> {
    let (mut connect, request) = ProxyConnect::new(proxy, target);
    write_flush(&mut sock, &request)?;
    let tunnel = read_head(&mut sock, &mut connect, deadline)?;
    Ok(tunnel.into_buffered())
}

/// [`connect_proxy`] for an already parsed URL and the request to send
/// there; `None` is the default TLS configuration, or no proxy.
pub(crate) fn connect_url(
    url: &WsUrl,
    req: &ClientRequest,
    config: Config,
    tls: Option<Arc<ClientConfig>>,
    proxy: Option<&Proxy>,
) -> Result<(WebSocketStream<MaybeTls<TcpStream>>, Response)> {
    // The TLS setup fails before any I/O.
    let tls = tls::client_setup(url, tls)?;
    let deadline = Instant::now() + config.get_handshake_timeout();
    let mut last_err = None;
    let mut sock = None;
    for addr in first_hop(url, proxy).to_socket_addrs()? {
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
    let early = match proxy {
        Some(proxy) => open_tunnel(&sock, proxy, url, deadline)?,
        None => BytesMut::new(),
    };
    let io = match tls {
        None => MaybeTls::Plain(sock),
        Some((name, tls)) => MaybeTls::Tls(Box::new(tls_handshake(sock, name, tls, deadline)?)),
    };
    let (ws, response) = client_handshake_until(io, req, config, deadline, early)?;
    ws.get_ref().get_ref().set_write_timeout(None)?;
    Ok((ws, response))
}

// ------------------------------------------------------------------ TLS

/// A client's transport: `S` itself for `ws://`, or a TLS session over `S`
/// for `wss://` ([`TlsStream`]). It reads and writes like `S` either way
/// (closing sends TLS close_notify before shutting `S` down), so the
/// [`WebSocketStream`] above it is the same, and like `S` it is usable
/// through a shared reference, so [`WebSocketStream::split`] works on it.
pub enum MaybeTls<S> {
    /// `ws://`: the transport itself.
    Plain(S),
    /// `wss://`: a TLS session over the transport (boxed: the session
    /// state is large).
    Tls(Box<TlsStream<S>>),
}

impl<S> MaybeTls<S> {
    /// True for a TLS session.
    pub fn is_tls(&self) -> bool {
        matches!(self, MaybeTls::Tls(_))
    }

    /// The transport under TLS (or the plain one), for socket options.
    pub fn get_ref(&self) -> &S {
        match self {
            MaybeTls::Plain(s) => s,
            MaybeTls::Tls(tls) => &tls.sock,
        }
    }

    /// The TLS session (negotiated version, cipher suite, ALPN protocol,
    /// the server's certificates), if this is one. It is locked while the
    /// guard lives: drop it before reading or writing the stream.
    pub fn tls_connection(&self) -> Option<MutexGuard<'_, ClientConnection>> {
        match self {
            MaybeTls::Plain(_) => None,
            MaybeTls::Tls(tls) => Some(tls.lock()),
        }
    }
}

impl<S> fmt::Debug for MaybeTls<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MaybeTls::Plain(_) => "MaybeTls::Plain",
            MaybeTls::Tls(_) => "MaybeTls::Tls",
        })
    }
}

impl<S> Read for &MaybeTls<S>
where
    for<'a> &'a S: Read + Write,
{
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            MaybeTls::Plain(s) => (&*s).read(buf),
            MaybeTls::Tls(tls) => (&**tls).read(buf),
        }
    }
}

impl<S> Write for &MaybeTls<S>
where
    for<'a> &'a S: Read + Write,
{
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            MaybeTls::Plain(s) => (&*s).write(buf),
            MaybeTls::Tls(tls) => (&**tls).write(buf),
        }
    }

    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        match self {
            MaybeTls::Plain(s) => (&*s).write_vectored(bufs),
            MaybeTls::Tls(tls) => (&**tls).write_vectored(bufs),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            MaybeTls::Plain(s) => (&*s).flush(),
            MaybeTls::Tls(tls) => (&**tls).flush(),
        }
    }
}

impl<S> Read for MaybeTls<S>
where
    for<'a> &'a S: Read + Write,
{
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        (&*self).read(buf)
    }
}

impl<S> Write for MaybeTls<S>
where
    for<'a> &'a S: Read + Write,
{
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        (&*self).write(buf)
    }

    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        (&*self).write_vectored(bufs)
    }

    fn flush(&mut self) -> io::Result<()> {
        (&*self).flush()
    }
}

impl<S> SetReadTimeout for MaybeTls<S>
where
    S: SetReadTimeout,
    for<'a> &'a S: Read + Write,
{
    /// Reaches the transport under TLS: the TLS session reads it.
    fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.get_ref().set_read_timeout(timeout)
    }

    /// For TLS, sends close_notify first (best effort), then shuts the
    /// transport down.
    fn close_transport(&self) -> io::Result<()> {
        if let MaybeTls::Tls(tls) = self {
            tls.send_close_notify();
        }
        self.get_ref().close_transport()
    }
}

/// The most TLS bytes one socket read takes: what rustls takes in one
/// `read_tls` (so a read never leaves much for later).
const TLS_READ: usize = 4096;

/// A TLS client session over `S` (rustls' [`ClientConnection`]), readable
/// and writable through a shared reference, as `TcpStream` is, so the
/// halves of a split stream can read and write it from two threads.
///
/// Not [`rustls::StreamOwned`](ws_core::rt::tls::rustls::StreamOwned): a
/// `StreamOwned` read blocks in the socket read while it holds the
/// session, so behind a lock a reader waiting for the peer would keep every
/// writer out. Here a read takes the session's lock only to decrypt what
/// it already read (the socket read itself runs unlocked), and a write
/// holds it while it encrypts and writes. The cost: that lock on every
/// read and write, and a reader with bytes to decrypt waits for a writer's
/// blocking write to finish.
pub struct TlsStream<S> {
    conn: Mutex<ClientConnection>,
    /// TLS bytes read from the socket that rustls did not take yet (only
    /// the reader touches it).
    unread: Mutex<Vec<u8>>,
    sock: S,
}

impl<S> TlsStream<S> {
    fn lock(&self) -> MutexGuard<'_, ClientConnection> {
        self.conn.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The transport under TLS.
    pub fn get_ref(&self) -> &S {
        &self.sock
    }
}

impl<S> TlsStream<S>
where
    for<'a> &'a S: Read + Write,
{
    /// Queues close_notify and writes it (best effort: the stream is
    /// ending).
    fn send_close_notify(&self) {
        let mut conn = self.lock();
        conn.send_close_notify();
        let _ = write_records(&mut conn, &self.sock);
    }

    /// Hands rustls the TLS bytes in `unread` (once: plaintext it yields
    /// is read before more is handed over) and writes what it answers.
    fn take_in(&self, conn: &mut ClientConnection, unread: &mut Vec<u8>) -> io::Result<()> {
        let mut rest = &unread[..];
        let taken = conn.read_tls(&mut rest);
        let consumed = unread.len() - rest.len();
        unread.drain(..consumed);
        taken?;
        process(conn, &self.sock)
    }
}

/// Decrypts what rustls holds; on a TLS error, sends the alert rustls
/// queued (best effort) and reports the error.
fn process(conn: &mut ClientConnection, sock: impl Write) -> io::Result<()> {
    if let Err(e) = conn.process_new_packets() {
        let _ = write_records(conn, sock);
        return Err(io::Error::new(io::ErrorKind::InvalidData, e));
    }
    // Whatever the session answers on its own (a key update).
    write_records(conn, sock)
}

/// Writes every TLS record the session has queued.
fn write_records(conn: &mut ClientConnection, mut sock: impl Write) -> io::Result<()> {
    while conn.wants_write() {
        match conn.write_tls(&mut sock) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

impl<S> Read for &TlsStream<S>
where
    for<'a> &'a S: Read + Write,
{
    /// Plaintext the session holds, else one socket read (unlocked, with
    /// the transport's read timeout) handed to rustls. `Ok(0)` only after
    /// the server's close_notify; a transport that ends without it is
    /// `UnexpectedEof`.
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let mut unread = self.unread.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            {
                let mut conn = self.lock();
                match conn.reader().read(buf) {
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    r => return r,
                }
                if !unread.is_empty() {
                    self.take_in(&mut conn, &mut unread)?;
                    continue;
                }
            }
            let room = buf.len().min(TLS_READ);
            let n = (&self.sock).read(&mut buf[..room])?;
            let mut conn = self.lock();
            if n == 0 {
                // The end of the transport, for rustls to judge.
                conn.read_tls(&mut io::empty())?;
                process(&mut conn, &self.sock)?;
            } else {
                unread.extend_from_slice(&buf[..n]);
                self.take_in(&mut conn, &mut unread)?;
            }
        }
    }
}

impl<S> Write for &TlsStream<S>
where
    for<'a> &'a S: Read + Write,
{
    /// Encrypts what the session takes of `buf` and writes the records. A
    /// timeout writing them still reports the bytes taken: the records
    /// stay queued and the next write or flush sends them.
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut conn = self.lock();
        let n = conn.writer().write(buf)?;
        sent(n, write_records(&mut conn, &self.sock))
    }

    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        let mut conn = self.lock();
        let n = conn.writer().write_vectored(bufs)?;
        sent(n, write_records(&mut conn, &self.sock))
    }

    fn flush(&mut self) -> io::Result<()> {
        let mut conn = self.lock();
        conn.writer().flush()?;
        write_records(&mut conn, &self.sock)?;
        (&self.sock).flush()
    }
}

/// `n` bytes were taken; a timeout writing their records is for the next
/// write or flush to finish.
fn sent(n: usize, written: io::Result<()>) -> io::Result<usize> {
    match written {
        Err(e) if n == 0 || !is_timeout(&e) => Err(e),
        _ => Ok(n),
    }
}

/// The TLS handshake on `sock` for `name`, bounded by `deadline` (the
/// socket's timeouts are set to what is left). A rustls failure is a
/// [`TlsError`] inside `Error::Io`.
fn tls_handshake(
    sock: TcpStream,
    name: ServerName<'static>,
    config: Arc<ClientConfig>,
    deadline: Instant,
) -> Result<TlsStream<TcpStream>> {
    let mut conn = ClientConnection::new(config, name)
        .map_err(|e| TlsError::from_handshake(io::Error::new(io::ErrorKind::InvalidData, e)))?;
    while conn.is_handshaking() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(Error::Timeout(TimeoutKind::Handshake));
        }
        sock.set_read_timeout(Some(left))?;
        sock.set_write_timeout(Some(left))?;
        match conn.complete_io(&mut &sock) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted || is_timeout(&e) => {}
            Err(e) => return Err(TlsError::from_handshake(e)),
        }
    }
    Ok(TlsStream {
        conn: Mutex::new(conn),
        unread: Mutex::new(Vec::new()),
        sock,
    })
}
