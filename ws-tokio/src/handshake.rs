//! The opening handshake over tokio transports: [`accept`] /
//! [`accept_with`] for servers, [`client_handshake`] / [`connect`] /
//! [`connect_with`] / [`connect_tls`] / [`connect_proxy`] for clients
//! (`ws://` and `wss://`, directly or through an HTTP proxy).
//!
//! ws-core parses and validates; this module only reads (straight into the
//! handshake's buffer), writes, and bounds the whole exchange by
//! [`Config::get_handshake_timeout`] (failing with
//! [`TimeoutKind::Handshake`]). Bytes the peer sent right after its head are
//! handed to the new [`WebSocketStream`], never dropped.
//!
//! None of these functions are cancel-safe in a useful sense: dropping one
//! abandons the handshake, and the transport must be discarded.

use std::io;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use ws_core::handshake::{
    Accept, ClientHandshake, ClientRequest, HandshakeError, IntoClientRequest, Request, Response,
    ServerHandshake,
};
use ws_core::proxy::{Proxy, ProxyConnect, ProxyError, first_hop};
use ws_core::rt::tls;
use ws_core::rt::tls::rustls::ClientConfig;
use ws_core::url::WsUrl;
use ws_core::{Config, Error, Role, TimeoutKind};

use crate::maybe_tls::{MaybeTls, tls_handshake};
use crate::{Result, WebSocketStream};

/// Spare room offered to each handshake read: a typical head fits in one.
const HEAD_READ: usize = 4096;

/// Runs `fut` within the configured handshake timeout.
async fn bounded<T>(config: &Config, fut: impl Future<Output = Result<T>>) -> Result<T> {
    match tokio::time::timeout(config.get_handshake_timeout(), fut).await {
        Ok(r) => r,
        Err(_) => Err(Error::Timeout(TimeoutKind::Handshake)),
    }
}

fn eof_during_handshake() -> Error {
    Error::Io(io::Error::new(
        io::ErrorKind::UnexpectedEof,
        "peer closed the connection during the opening handshake",
    ))
}

/// Reads a client's request head. On a malformed head, the matching error
/// response is written and the transport shut down before returning.
pub(crate) async fn read_request<S>(io: &mut S, hs: &mut ServerHandshake) -> Result<Request>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    loop {
        let buf = hs.read_buf();
        if buf.capacity() - buf.len() < HEAD_READ / 4 {
            buf.reserve(HEAD_READ);
        }
        if io.read_buf(buf).await? == 0 {
            return Err(eof_during_handshake());
        }
        match hs.poll_request() {
            Ok(Some(req)) => return Ok(req),
            Ok(None) => {}
            Err(e) => {
                respond_and_close(io, &e.response()).await;
                return Err(e.into());
            }
        }
    }
}

/// Writes a final HTTP response and shuts the transport down, ignoring
/// errors: the connection is being abandoned either way.
pub(crate) async fn respond_and_close<S: AsyncWrite + Unpin>(io: &mut S, response: &[u8]) {
    if io.write_all(response).await.is_ok() {
        let _ = io.shutdown().await;
    }
}

/// Writes the `101` response.
pub(crate) async fn write_upgrade<S: AsyncWrite + Unpin>(
    io: &mut S,
    response: &[u8],
) -> Result<()> {
    io.write_all(response).await?;
    io.flush().await?;
    Ok(())
}

/// Accepts a WebSocket connection on `io` with [`Config::default`], for any
/// request path and without a subprotocol.
pub async fn accept<S>(io: S) -> Result<WebSocketStream<S>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    accept_with(io, Config::default(), |_| Ok(Accept::new())).await
}

/// Accepts a WebSocket connection on `io`, letting `decide` inspect the
/// request (path, `Origin`, subprotocols...) and either accept it with
/// options or answer with a complete HTTP response of its own.
///
/// On a failed handshake the error's HTTP response (or `decide`'s) is
/// written and the transport shut down before the error is returned; a
/// rejection by `decide` returns [`Error::Handshake`] with
/// [`HandshakeError::Rejected`] carrying the response's status (500 if the
/// response does not start with a status line). Bounded by the handshake
/// timeout.
pub async fn accept_with<S, F>(mut io: S, config: Config, decide: F) -> Result<WebSocketStream<S>>
where
    S: AsyncRead + AsyncWrite + Unpin,
    F: FnOnce(&Request) -> std::result::Result<Accept, Bytes>,
{
    let (buffered, config) = bounded(&config, async {
        let mut hs = ServerHandshake::new();
        let req = read_request(&mut io, &mut hs).await?;
        // Negotiates permessage-deflate by `config`'s policy.
        let (response, config) = match decide(&req) {
            Ok(opts) => match req.accept_with_config(&opts, config.clone()) {
                Ok(accepted) => accepted,
                Err(e) => {
                    respond_and_close(&mut io, &e.response()).await;
                    return Err(e.into());
                }
            },
            Err(response) => {
                respond_and_close(&mut io, &response).await;
                return Err(HandshakeError::rejected_by(&response).into());
            }
        };
        write_upgrade(&mut io, &response).await?;
        Ok((hs.take_remaining(), config))
    })
    .await?;
    Ok(WebSocketStream::from_raw(
        io,
        Role::Server,
        config,
        buffered,
    ))
}

/// Performs the client side of the handshake on an already connected `io`:
/// sends `req`, verifies the server's `101` answer, and returns the stream
/// and the verified response (for its subprotocol and headers). Bounded by
/// the handshake timeout.
pub async fn client_handshake<S>(
    mut io: S,
    req: &ClientRequest,
    config: Config,
) -> Result<(WebSocketStream<S>, Response)>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let early = BytesMut::new();
    let (response, buffered) =
        bounded(&config, client_exchange(&mut io, req, &config, early)).await?;
    let config = response.configure(config);
    Ok((
        WebSocketStream::from_raw(io, Role::Client, config, buffered),
        response,
    ))
}

/// Sends `req` (offering what `config` enables) and reads the answer;
/// `early` holds bytes already received on the connection (after a
/// proxy's answer), the start of the answer.
async fn client_exchange<S>(
    io: &mut S,
    req: &ClientRequest,
    config: &Config,
    early: BytesMut,
) -> Result<(Response, BytesMut)>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (mut hs, request) = ClientHandshake::with_config(req, config);
    io.write_all(&request).await?;
    io.flush().await?;
    if !early.is_empty() {
        if let Some(response) = hs.feed(&early)? {
            return Ok((response, hs.take_remaining()));
        }
    }
    loop {
        let buf = hs.read_buf();
        if buf.capacity() - buf.len() < HEAD_READ / 4 {
            buf.reserve(HEAD_READ);
        }
        if io.read_buf(buf).await? == 0 {
            return Err(eof_during_handshake());
        }
        if let Some(response) = hs.poll_response()? {
            return Ok((response, hs.take_remaining()));
        }
    }
}

/// Connects to a `ws://` or `wss://` URL with [`Config::default`]; see
/// [`connect_with`].
///
/// `request` is a URL (`&str`, `String`, [`WsUrl`]), a URL with a
/// [`ClientRequest`] made from it, or (cargo feature `http`, on by default)
/// an `http::Request<()>` carrying headers, cookies, a bearer token and
/// subprotocols ([`IntoClientRequest`]):
///
/// ```no_run
/// use ws_tokio::http;
///
/// # async fn run() -> ws_tokio::Result<()> {
/// let request = http::Request::builder()
///     .uri("wss://chat.example/ws")
///     .header("Authorization", "Bearer secret")
///     .header("Cookie", "session=42")
///     .header("Sec-WebSocket-Protocol", "chat")
///     .body(())
///     .expect("a valid request");
/// let (mut ws, response) = ws_tokio::connect(request).await?;
/// // The server's 101 as the `http` crate's type.
/// let response: http::Response<()> = response.to_http()?;
/// assert_eq!(response.headers()["sec-websocket-protocol"], "chat");
/// ws.send_text("hello").await?;
/// # Ok(())
/// # }
/// ```
pub async fn connect(
    request: impl IntoClientRequest,
) -> Result<(WebSocketStream<MaybeTls<TcpStream>>, Response)> {
    connect_with(request, Config::default()).await
}

/// Connects to a `ws://` or `wss://` URL (or sends a request,
/// [`IntoClientRequest`], as for [`connect`]) with `config`. `wss://` verifies
/// the server against the default roots
/// ([`tls::default_client_config`](crate::tls::default_client_config),
/// chosen by this crate's cargo features); [`connect_tls`] takes a
/// configuration of your own.
///
/// The TCP connect, the TLS handshake and the WebSocket handshake together
/// are bounded by the handshake timeout. Nagle's algorithm is disabled:
/// this crate batches writes itself.
///
/// # Errors
///
/// [`Error::Url`] for an unusable URL (a scheme other than `ws`/`wss`),
/// [`Error::Timeout`] when the handshake timeout passed, a TLS failure as a
/// [`TlsError`](crate::tls::TlsError) inside [`Error::Io`] (an untrusted
/// certificate, a name mismatch, a protocol error: see
/// [`TlsError::find`](crate::tls::TlsError::find)), [`Error::Handshake`]
/// when the server refuses the upgrade.
pub async fn connect_with(
    request: impl IntoClientRequest,
    config: Config,
) -> Result<(WebSocketStream<MaybeTls<TcpStream>>, Response)> {
    let (url, req) = request.into_client_request()?;
    connect_url(&url, &req, config, None, None).await
}

/// [`connect_with`] using `tls` for a `wss://` URL instead of the default
/// configuration: your roots, client certificate, ALPN. Build it with
/// [`tls::builder`](crate::tls::builder) (or any
/// `ClientConfig::builder_with_provider`) so no process-level crypto
/// provider is needed. A `ws://` URL connects without TLS.
///
/// ```no_run
/// use ws_tokio::tls;
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let ca = tls::certs_from_pem(&std::fs::read("ca.pem")?)?;
/// let config = tls::client_config(tls::root_store(ca)?); // trusts ca.pem only
/// let (mut ws, _response) =
///     ws_tokio::connect_tls("wss://localhost:9443/ws", ws_tokio::Config::default(), config)
///         .await?;
/// ws.send_text("hello").await?;
/// # Ok(())
/// # }
/// ```
pub async fn connect_tls(
    request: impl IntoClientRequest,
    config: Config,
    tls: Arc<ClientConfig>,
) -> Result<(WebSocketStream<MaybeTls<TcpStream>>, Response)> {
    let (url, req) = request.into_client_request()?;
    connect_url(&url, &req, config, Some(tls), None).await
}

/// [`connect_tls`] through the HTTP proxy `proxy`: TCP to the proxy, its
/// `CONNECT` tunnel to the URL's host and port (with the proxy URL's
/// credentials as `Proxy-Authorization: Basic`), then for `wss://` TLS to
/// the server inside the tunnel (verified against the URL's host, with
/// `tls` or the default roots), then the WebSocket handshake; all of it
/// bounded by the handshake timeout.
///
/// ```no_run
/// use ws_tokio::proxy::Proxy;
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let proxy = Proxy::parse("http://user:secret@proxy.internal:3128")?;
/// let (mut ws, _response) =
///     ws_tokio::connect_proxy("wss://chat.example/ws", ws_tokio::Config::default(), &proxy, None)
///         .await?;
/// ws.send_text("hello").await?;
/// # Ok(())
/// # }
/// ```
///
/// # Errors
///
/// As [`connect_with`], and [`Error::Proxy`] when the proxy refuses the
/// tunnel (its status in [`ProxyError::status`]: 407, 403, 502, ...),
/// closes the connection or does not answer in HTTP.
pub async fn connect_proxy(
    request: impl IntoClientRequest,
    config: Config,
    proxy: &Proxy,
    tls: Option<Arc<ClientConfig>>,
) -> Result<(WebSocketStream<MaybeTls<TcpStream>>, Response)> {
    let (url, req) = request.into_client_request()?;
    connect_url(&url, &req, config, tls, Some(proxy)).await
}

/// Opens `proxy`'s `CONNECT` tunnel to `target` on `io`; returns the bytes
/// that followed the proxy's answer (ws-core decides what they may be).
async fn open_tunnel<S>(io: &mut S, proxy: &Proxy, target: &WsUrl) -> Result<BytesMut>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (mut connect, request) = ProxyConnect::new(proxy, target);
    io.write_all(&request).await?;
    io.flush().await?;
    loop {
        if io.read_buf(connect.read_buf()).await? == 0 {
            return Err(ProxyError::Closed.into());
        }
        if let Some(tunnel) = connect.poll_response()? {
            return Ok(tunnel.into_buffered());
        }
    }
}

/// [`connect_proxy`] for an already parsed URL and the request to send
/// there; `None` is the default TLS configuration, or no proxy.
pub(crate) async fn connect_url(
    url: &WsUrl,
    req: &ClientRequest,
    config: Config,
    tls: Option<Arc<ClientConfig>>,
    proxy: Option<&Proxy>,
) -> Result<(WebSocketStream<MaybeTls<TcpStream>>, Response)> {
    // The TLS setup fails before any I/O.
    let tls = tls::client_setup(url, tls)?;
    let (io, response, buffered) = bounded(&config, async {
        let mut tcp = TcpStream::connect(first_hop(url, proxy)).await?;
        // Latency matters more than packet count here; writes are batched.
        let _ = tcp.set_nodelay(true);
        let early = match proxy {
            Some(proxy) => open_tunnel(&mut tcp, proxy, url).await?,
            None => BytesMut::new(),
        };
        let mut io = match tls {
            None => MaybeTls::Plain(tcp),
            Some((name, tls)) => tls_handshake(tcp, name, tls).await?,
        };
        let (response, buffered) = client_exchange(&mut io, req, &config, early).await?;
        Ok((io, response, buffered))
    })
    .await?;
    let config = response.configure(config);
    Ok((
        WebSocketStream::from_raw(io, Role::Client, config, buffered),
        response,
    ))
}
