//! `Client`: ws-core's convenience client
//! ([`ws_core::rt::client::Client`], the same on every runtime) on async-std
//! or smol. This file holds only the glue it runs on.

use std::io::{self, Write};
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use futures_core::Stream;
use futures_util::io::{AsyncBufReadExt, BufReader};
use ws_core::Config;
use ws_core::handshake::Response;
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
        request: &ws_core::handshake::ClientRequest,
        config: Config,
        tls: Option<Arc<ClientConfig>>,
        proxy: Option<Proxy>,
    ) -> Result<(WebSocketStream<MaybeTls<R::TcpStream>>, Response)> {
        crate::handshake::connect_url::<R>(url, request, config, tls, proxy.as_ref()).await
    }

    async fn sleep(delay: Duration) {
        async_io::Timer::after(delay).await;
    }

    fn stdin_lines() -> impl Stream<Item = io::Result<String>> + Unpin + Send {
        BufReader::new(blocking::Unblock::new(io::stdin())).lines()
    }

    async fn print(line: String) -> io::Result<()> {
        let mut stdout = io::stdout().lock();
        stdout.write_all(line.as_bytes())?;
        stdout.flush()
    }
}
