//! `Client`: ws-core's convenience client
//! ([`ws_core::rt::client::Client`], the same on every runtime) on async-std
//! or smol. This file holds only the glue it runs on.

use std::io::{self, Write};
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use futures_core::Stream;
use futures_util::io::AsyncRead;
use ws_core::Config;
use ws_core::handshake::{ClientRequest, Response};
use ws_core::proxy::Proxy;
use ws_core::rt::client::Connector;
use ws_core::rt::tls::rustls::ClientConfig;
use ws_core::url::WsUrl;

use crate::runtime::Runtime;
use crate::split::{Alarm, Io};
use crate::{MaybeTls, Result, WebSocketStream};

/// ws-core's client on runtime `R` (the crate root's `Client` on async-std,
/// `smol::Client` on smol).
pub(crate) type Client<R> = ws_core::rt::client::Client<On<R>>;

/// What runtime `R` supplies to ws-core's client: its `TcpStream`
/// connection (with futures-rustls for `wss://`), async-io's timer, stdin
/// read on a blocking thread ([`blocking::Unblock`]) and stdout.
#[derive(Debug)]
pub struct On<R>(PhantomData<R>);

impl<R: Runtime> Connector for On<R> {
    type Io = Io<MaybeTls<R::TcpStream>>;
    type Timer = Alarm;
    type TlsConfig = Arc<ClientConfig>;

    async fn connect(
        url: &WsUrl,
        request: &ClientRequest,
        config: Config,
        tls: Option<Arc<ClientConfig>>,
        proxy: Option<Proxy>,
    ) -> Result<(WebSocketStream<MaybeTls<R::TcpStream>>, Response)> {
        crate::handshake::connect_url::<R>(url, request, config, tls, proxy.as_ref()).await
    }

    async fn sleep(delay: Duration) {
        async_io::Timer::after(delay).await;
    }

    fn stdin() -> impl Stream<Item = io::Result<Vec<u8>>> + Unpin + Send {
        StdinChunks(blocking::Unblock::new(io::stdin()))
    }

    async fn print(line: String) -> io::Result<()> {
        let mut stdout = io::stdout().lock();
        stdout.write_all(line.as_bytes())?;
        stdout.flush()
    }
}

/// Stdin, read on a blocking thread, as a [`Stream`] of chunks (cancel-safe:
/// `Unblock` keeps what its thread read until it is polled again).
struct StdinChunks(blocking::Unblock<io::Stdin>);

impl Stream for StdinChunks {
    type Item = io::Result<Vec<u8>>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        let mut buf = [0u8; 8192];
        let read = std::pin::Pin::new(&mut self.0).poll_read(cx, &mut buf);
        std::task::ready!(read).map_or_else(
            |e| std::task::Poll::Ready(Some(Err(e))),
            |n| std::task::Poll::Ready((n > 0).then(|| Ok(buf[..n].to_vec()))),
        )
    }
}
