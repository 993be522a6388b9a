//! Opening handshakes over a futures-io transport: [`accept`] /
//! [`accept_with`] for servers, [`client_handshake`] and (per runtime)
//! `connect` / `connect_with` for clients. The HTTP parsing and validation
//! are ws-core's; this module only reads, writes and bounds the time.

use crate::io::{handshake_timeout, read_into, respond_and_close, write_all};
use crate::stream::WebSocketStream;
use crate::{Config, Error, Result, Role};
use bytes::{Bytes, BytesMut};
use futures_io::{AsyncRead, AsyncWrite};
use std::io;
use ws_core::handshake::{
    Accept, ClientHandshake, ClientRequest, HandshakeError, Request, Response, ServerHandshake,
};

/// The transport ended before the peer's handshake head was complete.
fn eof_during_handshake() -> Error {
    Error::Io(io::Error::new(
        io::ErrorKind::UnexpectedEof,
        "connection closed during the opening handshake",
    ))
}

/// Accepts a WebSocket upgrade on `io` with [`Config::default()`] and no
/// subprotocol. See [`accept_with`].
///
/// Dropping the future abandons the handshake.
pub async fn accept<S>(io: S) -> Result<WebSocketStream<S>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    accept_with(io, Config::default(), |_| Ok(Accept::new())).await
}

/// Reads the client's upgrade request from `io`, lets `decide` accept it
/// (choosing subprotocol and extra headers) or reject it with a complete
/// HTTP response, and answers.
///
/// Bounded by [`Config::handshake_timeout`] ([`Error::Timeout`] with
/// [`TimeoutKind::Handshake`](ws_core::TimeoutKind::Handshake)). An invalid
/// request is answered with its error response
/// ([`HandshakeError::response`](ws_core::handshake::HandshakeError::response),
/// e.g. 426 with `Sec-WebSocket-Version: 13`) before the
/// [`Error::Handshake`] is returned. A rejection by `decide` writes its
/// response, shuts the transport down and returns
/// [`HandshakeError::Rejected`] with the response's status. Dropping the
/// future abandons the handshake.
pub async fn accept_with<S, F>(mut io: S, config: Config, decide: F) -> Result<WebSocketStream<S>>
where
    S: AsyncRead + AsyncWrite + Unpin,
    F: FnOnce(&Request) -> std::result::Result<Accept, Bytes>,
{
    let limit = config.get_handshake_timeout();
    let (buffered, config) = handshake_timeout(limit, async {
        let mut hs = ServerHandshake::new();
        let req = read_request(&mut io, &mut hs).await?;
        let accept = match decide(&req) {
            Ok(a) => a,
            Err(response) => {
                respond_and_close(&mut io, &response).await;
                return Err(HandshakeError::rejected_by(&response).into());
            }
        };
        // Negotiates permessage-deflate by `config`'s policy.
        let config = match req.accept_with_config(&accept, config) {
            Ok((response, config)) => {
                write_all(&mut io, &response).await?;
                config
            }
            Err(e) => {
                respond_and_close(&mut io, &e.response()).await;
                return Err(e.into());
            }
        };
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

/// Reads until a complete request head; a malformed one is answered with
/// its error response.
async fn read_request<S>(io: &mut S, hs: &mut ServerHandshake) -> Result<Request>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    loop {
        if read_into(io, hs.read_buf()).await? == 0 {
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

/// Performs the client side of the opening handshake for `req` on an
/// already connected `io`, returning the stream and the server's 101
/// response (subprotocol, headers).
///
/// Dropping the future abandons the handshake (the transport with it).
///
/// Bounded by [`Config::handshake_timeout`]. A non-101 answer is
/// [`HandshakeError::UnexpectedStatus`](ws_core::handshake::HandshakeError::UnexpectedStatus).
pub async fn client_handshake<S>(
    io: S,
    req: &ClientRequest,
    config: Config,
) -> Result<(WebSocketStream<S>, Response)>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let limit = config.get_handshake_timeout();
    let early = BytesMut::new();
    handshake_timeout(limit, client_handshake_untimed(io, req, config, early)).await
}

/// The client handshake; `early` holds bytes already received on the
/// connection (after a proxy's answer), the start of the server's answer.
async fn client_handshake_untimed<S>(
    mut io: S,
    req: &ClientRequest,
    config: Config,
    early: BytesMut,
) -> Result<(WebSocketStream<S>, Response)>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (mut hs, request) = ClientHandshake::with_config(req, &config);
    write_all(&mut io, &request).await?;
    let early_response = if early.is_empty() {
        None
    } else {
        hs.feed(&early)?
    };
    let response = if let Some(r) = early_response {
        r
    } else {
        loop {
            if read_into(&mut io, hs.read_buf()).await? == 0 {
                return Err(eof_during_handshake());
            }
            if let Some(r) = hs.poll_response()? {
                break r;
            }
        }
    };
    let buffered = hs.take_remaining();
    let config = response.configure(config);
    Ok((
        WebSocketStream::from_raw(io, Role::Client, config, buffered),
        response,
    ))
}

/// `connect`/`connect_with`/`connect_tls`/`connect_proxy` for runtime `R`:
/// the URL and request of `request`, set TLS up (`wss://`: `tls`, or the default
/// configuration), connect TCP (to `proxy` if given, then its `CONNECT`
/// tunnel), TLS handshake, WebSocket handshake; all bounded together by
/// the handshake timeout.
#[cfg(any(feature = "async-std", feature = "smol"))]
pub(crate) async fn connect_on<R: crate::runtime::Runtime>(
    request: impl ws_core::handshake::IntoClientRequest,
    config: Config,
    tls: Option<std::sync::Arc<ws_core::rt::tls::rustls::ClientConfig>>,
    proxy: Option<&ws_core::proxy::Proxy>,
) -> Result<(WebSocketStream<crate::MaybeTls<R::TcpStream>>, Response)> {
    let (url, req) = request.into_client_request()?;
    connect_url::<R>(&url, &req, config, tls, proxy).await
}

/// Opens `proxy`'s `CONNECT` tunnel to `target` on `io`; returns the bytes
/// that followed the proxy's answer (ws-core decides what they may be).
#[cfg(any(feature = "async-std", feature = "smol"))]
async fn open_tunnel<S>(
    io: &mut S,
    proxy: &ws_core::proxy::Proxy,
    target: &ws_core::url::WsUrl,
) -> Result<BytesMut>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    use ws_core::proxy::{ProxyConnect, ProxyError};
    let (mut connect, request) = ProxyConnect::new(proxy, target);
    write_all(io, &request).await?;
    loop {
        if read_into(io, connect.read_buf()).await? == 0 {
            return Err(ProxyError::Closed.into());
        }
        if let Some(tunnel) = connect.poll_response()? {
            return Ok(tunnel.into_buffered());
        }
    }
}

/// [`connect_on`] for an already parsed URL and the request to send there.
#[cfg(any(feature = "async-std", feature = "smol"))]
pub(crate) async fn connect_url<R: crate::runtime::Runtime>(
    url: &ws_core::url::WsUrl,
    req: &ClientRequest,
    config: Config,
    tls: Option<std::sync::Arc<ws_core::rt::tls::rustls::ClientConfig>>,
    proxy: Option<&ws_core::proxy::Proxy>,
) -> Result<(WebSocketStream<crate::MaybeTls<R::TcpStream>>, Response)> {
    use ws_core::rt::tls;
    // The TLS setup fails before any I/O.
    let tls = tls::client_setup(url, tls)?;
    let limit = config.get_handshake_timeout();
    handshake_timeout(limit, async {
        let (host, port) = ws_core::proxy::first_hop(url, proxy);
        let mut tcp = R::connect_tcp(host, port).await?;
        let early = match proxy {
            Some(proxy) => open_tunnel(&mut tcp, proxy, url).await?,
            None => BytesMut::new(),
        };
        let io = match tls {
            None => crate::MaybeTls::Plain(tcp),
            Some((name, tls)) => crate::maybe_tls::tls_handshake(tcp, name, tls).await?,
        };
        client_handshake_untimed(io, req, config, early).await
    })
    .await
}
