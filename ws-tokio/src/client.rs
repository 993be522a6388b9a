//! [`Client`]: a small convenience client over [`WebSocketStream`], for
//! scripts, demos and the interactive command-line client.

use std::pin::Pin;
use std::task::{Context, Poll};

use futures_core::Stream;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use ws_core::server::session::display_line;
use ws_core::url::WsUrl;
use ws_core::{Bytes, CloseCode, CloseFrame, Config, Error, Message};

use crate::handshake::connect_url;
use crate::{Result, WebSocketStream};

/// A WebSocket client for one `ws://` URL.
///
/// Until [`connect`](Self::connect) succeeds, sending fails with
/// [`Error::Closed`] and receiving yields `None`. It is also a
/// [`Stream`] of received messages.
#[derive(Debug)]
pub struct Client {
    url: WsUrl,
    config: Config,
    ws: Option<WebSocketStream<TcpStream>>,
}

impl Client {
    /// Parses `url` so mistakes surface before connecting.
    ///
    /// # Errors
    ///
    /// [`Error::Url`], including
    /// [`UrlError::TlsNotSupported`](ws_core::url::UrlError::TlsNotSupported)
    /// for `wss://`.
    pub fn new(url: &str) -> Result<Client> {
        Ok(Client {
            url: WsUrl::parse(url)?,
            config: Config::default(),
            ws: None,
        })
    }

    /// Uses `config` for the next connection.
    pub fn with_config(mut self, config: Config) -> Self {
        self.config = config;
        self
    }

    /// Connects and performs the opening handshake (bounded by the
    /// handshake timeout), replacing any previous connection.
    pub async fn connect(&mut self) -> Result<()> {
        let (ws, _response) = connect_url(&self.url, self.config.clone()).await?;
        self.ws = Some(ws);
        Ok(())
    }

    fn ws(&mut self) -> Result<&mut WebSocketStream<TcpStream>> {
        self.ws.as_mut().ok_or(Error::Closed)
    }

    /// Sends a text message and flushes. Not cancel-safe (see
    /// [`WebSocketStream::send`]).
    pub async fn send_message(&mut self, text: &str) -> Result<()> {
        self.ws()?.send(Message::text(text)).await
    }

    /// Sends a binary message and flushes. Not cancel-safe.
    pub async fn send_binary(&mut self, data: &[u8]) -> Result<()> {
        self.ws()?
            .send(Message::Binary(Bytes::copy_from_slice(data)))
            .await
    }

    /// Sends a ping (payload at most 125 bytes); the pong arrives through
    /// [`recv`](Self::recv). Not cancel-safe.
    pub async fn ping(&mut self, payload: &[u8]) -> Result<()> {
        self.ws()?
            .send(Message::Ping(Bytes::copy_from_slice(payload)))
            .await
    }

    /// Receives the next message (pings are answered automatically); `None`
    /// after the closing handshake or when not connected. Cancel-safe.
    pub async fn recv(&mut self) -> Option<Result<Message>> {
        self.ws.as_mut()?.recv().await
    }

    /// Calls `f` with every received message, including the final `Close`,
    /// until the connection ends.
    ///
    /// # Errors
    ///
    /// The first receive error; messages before it were delivered.
    pub async fn receive_messages<F: FnMut(&Message)>(&mut self, mut f: F) -> Result<()> {
        while let Some(msg) = self.recv().await {
            f(&msg?);
        }
        Ok(())
    }

    /// Sends each line of stdin as a text message and prints each received
    /// message as one line on stdout ([`display_line`]). At end of input it
    /// sends a close (1000) and keeps printing what still arrives (echoes in
    /// flight) until the server's reply ends the connection, bounded by the
    /// close timeout; it returns `Ok(())` then, or when the server closes
    /// first. The server's reply to our own close is not printed.
    ///
    /// # Errors
    ///
    /// An error reading stdin or writing stdout, or the first receive error
    /// (reported once the connection has ended).
    ///
    /// Not cancel-safe: a line read but not yet sent is lost if the future is
    /// dropped. tokio reads stdin on a blocking thread; a line being read
    /// when this returns keeps that thread busy until the line (or EOF)
    /// arrives.
    pub async fn run_interactive(&mut self) -> Result<()> {
        self.ws()?;
        let mut lines = BufReader::new(tokio::io::stdin()).lines();
        let mut stdout = tokio::io::stdout();
        let mut input_open = true;
        let mut first_err = None;
        loop {
            let ws = self.ws()?;
            tokio::select! {
                // Both branches are cancel-safe (`next_line` and `recv`), so
                // racing them loses nothing.
                line = lines.next_line(), if input_open => match line? {
                    Some(line) => match ws.send(Message::text(line)).await {
                        // The server closed first: keep receiving to show
                        // its close and end normally.
                        Err(e) if e.is_closed() => {}
                        r => r?,
                    },
                    None => {
                        // Queue the close and keep receiving: echoes still in
                        // flight arrive before the server's reply, and the
                        // connection's close timer bounds the wait.
                        input_open = false;
                        let close = Message::Close(Some(CloseFrame::new(CloseCode::NORMAL, "")));
                        match ws.send(close).await {
                            Err(e) if e.is_closed() => {}
                            r => r?,
                        }
                    }
                },
                msg = ws.recv() => match msg {
                    Some(Ok(msg)) => {
                        // The server's reply to our own close is not news.
                        let reply = !input_open && matches!(msg, Message::Close(_));
                        if let Some(mut line) = display_line(&msg).filter(|_| !reply) {
                            line.push('\n');
                            stdout.write_all(line.as_bytes()).await?;
                            stdout.flush().await?;
                        }
                    }
                    Some(Err(e)) => {
                        first_err.get_or_insert(e);
                    }
                    None => return first_err.map_or(Ok(()), Err),
                },
            }
        }
    }

    /// Runs the closing handshake with 1000 (normal closure); see
    /// [`WebSocketStream::close`]. Closing a client that is not connected
    /// does nothing.
    pub async fn close(&mut self) -> Result<()> {
        match self.ws.as_mut() {
            Some(ws) => ws.close(CloseCode::NORMAL, "").await,
            None => Ok(()),
        }
    }
}

impl Stream for Client {
    type Item = Result<Message>;

    /// Cancel-safe, as [`Client::recv`].
    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        match self.get_mut().ws.as_mut() {
            Some(ws) => Pin::new(ws).poll_next(cx),
            None => Poll::Ready(None),
        }
    }
}
