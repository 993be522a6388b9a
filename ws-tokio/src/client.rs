//! [`Client`]: ws-core's convenience client
//! ([`ws_core::rt::client::Client`], the same on every runtime) on tokio.
//! This file holds only the tokio calls it runs on.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_core::Stream;
use tokio::io::{AsyncRead, AsyncWriteExt, ReadBuf, Stdin};
use tokio::net::TcpStream;
use ws_core::Config;
use ws_core::handshake::{ClientRequest, Response};
use ws_core::proxy::Proxy;
use ws_core::rt::client::Connector;
use ws_core::rt::tls::rustls::ClientConfig;
use ws_core::url::WsUrl;

use crate::handshake::connect_url;
use crate::maybe_tls::MaybeTls;
use crate::split::Io;
use crate::{Deadline, Result, WebSocketStream};

/// A WebSocket client for one `ws://` or `wss://` URL on tokio: connect,
/// send, receive (a [`Stream`] of messages), an interactive stdin/stdout
/// mode, and opt-in reconnecting. All of it is ws-core's
/// [`Client`](ws_core::rt::client::Client), documented there; tokio
/// supplies the socket, TLS (tokio-rustls), the timer and the console.
/// `wss://` trusts the default roots unless given your own
/// `Arc<rustls::ClientConfig>` with
/// [`with_tls`](ws_core::rt::client::Client::with_tls); an HTTP proxy
/// with [`with_proxy`](ws_core::rt::client::Client::with_proxy).
///
/// tokio reads stdin on a blocking thread: in
/// [`run_interactive`](ws_core::rt::client::Client::run_interactive), a line
/// being read when it returns keeps that thread busy until the line (or
/// EOF) arrives.
pub type Client = ws_core::rt::client::Client<Tokio>;

/// What tokio supplies to [`Client`]: a `TcpStream` connection (with
/// tokio-rustls for `wss://`), tokio's sleep, and tokio's stdin and stdout.
#[derive(Debug)]
pub struct Tokio;

impl Connector for Tokio {
    type Io = Io<MaybeTls<TcpStream>>;
    type Timer = Deadline;
    type TlsConfig = Arc<ClientConfig>;

    async fn connect(
        url: &WsUrl,
        request: &ClientRequest,
        config: Config,
        tls: Option<Arc<ClientConfig>>,
        proxy: Option<Proxy>,
    ) -> Result<(WebSocketStream<MaybeTls<TcpStream>>, Response)> {
        connect_url(url, request, config, tls, proxy.as_ref()).await
    }

    fn sleep(delay: Duration) -> impl Future<Output = ()> + Send {
        tokio::time::sleep(delay)
    }

    fn stdin() -> impl Stream<Item = io::Result<Vec<u8>>> + Unpin + Send {
        StdinChunks(tokio::io::stdin())
    }

    async fn print(line: String) -> io::Result<()> {
        let mut stdout = tokio::io::stdout();
        stdout.write_all(line.as_bytes()).await?;
        stdout.flush().await
    }
}

/// tokio's stdin as a [`Stream`] of chunks (a read is cancel-safe: tokio
/// reads on its blocking thread into its own buffer, and this copies out
/// only what it returns).
struct StdinChunks(Stdin);

impl Stream for StdinChunks {
    type Item = io::Result<Vec<u8>>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let mut buf = [0u8; 8192];
        let mut read = ReadBuf::new(&mut buf);
        match std::task::ready!(Pin::new(&mut self.0).poll_read(cx, &mut read)) {
            Ok(()) if read.filled().is_empty() => Poll::Ready(None),
            Ok(()) => Poll::Ready(Some(Ok(read.filled().to_vec()))),
            Err(e) => Poll::Ready(Some(Err(e))),
        }
    }
}
