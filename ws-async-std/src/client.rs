//! [`Client`]: a ready-made client over the runtime's `TcpStream`, for
//! programs that want "connect, send lines, print what comes back" without
//! touching streams.

use crate::runtime::Runtime;
use crate::stream::WebSocketStream;
use crate::{CloseCode, CloseFrame, Config, Error, Message, Result};
use futures_core::Stream;
use std::fmt;
use std::future::poll_fn;
use std::io::Write;
use std::pin::Pin;
use std::task::{Context, Poll};
use ws_core::url::WsUrl;

/// A WebSocket client for one `ws://` URL.
///
/// Sending before [`connect`](Self::connect) (or after the connection
/// ended) fails with [`Error::Closed`]; receiving yields `None`.
pub struct Client<R: Runtime> {
    url: String,
    config: Config,
    ws: Option<WebSocketStream<R::TcpStream>>,
}

impl<R: Runtime> fmt::Debug for Client<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("url", &self.url)
            .field("connected", &self.ws.is_some())
            .finish_non_exhaustive()
    }
}

impl<R: Runtime> Client<R> {
    /// A client for `url`, parsed now so mistakes surface before any I/O
    /// (`wss://` is [`UrlError::TlsNotSupported`](ws_core::url::UrlError::TlsNotSupported)).
    pub fn new(url: &str) -> Result<Self> {
        WsUrl::parse(url)?;
        Ok(Client {
            url: url.to_owned(),
            config: Config::default(),
            ws: None,
        })
    }

    /// Limits and timeouts for the connection.
    pub fn with_config(mut self, config: Config) -> Self {
        self.config = config;
        self
    }

    /// Connects and performs the opening handshake (bounded by the
    /// handshake timeout), replacing any previous connection. Dropping the
    /// future abandons the attempt.
    pub async fn connect(&mut self) -> Result<()> {
        let (ws, _response) =
            crate::handshake::connect_on::<R>(&self.url, self.config.clone()).await?;
        self.ws = Some(ws);
        Ok(())
    }

    fn ws(&mut self) -> Result<&mut WebSocketStream<R::TcpStream>> {
        self.ws.as_mut().ok_or(Error::Closed)
    }

    /// Sends a text message. Not cancel-safe (see [`WebSocketStream::send`]).
    pub async fn send_message(&mut self, text: &str) -> Result<()> {
        self.ws()?.send_text(text).await
    }

    /// Sends a binary message. Not cancel-safe.
    pub async fn send_binary(&mut self, data: &[u8]) -> Result<()> {
        self.ws()?.send_binary(data).await
    }

    /// Sends a ping (payload at most 125 bytes); the pong arrives through
    /// [`recv`](Self::recv). Not cancel-safe.
    pub async fn ping(&mut self, payload: &[u8]) -> Result<()> {
        self.ws()?
            .send(Message::Ping(payload.to_vec().into()))
            .await
    }

    /// Receives the next message, `None` after the end or when not
    /// connected. Cancel-safe.
    pub async fn recv(&mut self) -> Option<Result<Message>> {
        poll_fn(|cx| Pin::new(&mut *self).poll_next(cx)).await
    }

    /// Calls `f` for every message until the connection ends; the peer's
    /// close is passed to `f` too. Returns the first error. Cancel-safe
    /// (built on [`recv`](Self::recv)): messages not yet passed to `f` stay
    /// buffered.
    pub async fn receive_messages<F: FnMut(&Message)>(&mut self, mut f: F) -> Result<()> {
        while let Some(msg) = self.recv().await {
            f(&msg?);
        }
        Ok(())
    }

    /// Interactive mode: every stdin line is sent as a text message and
    /// every received message is printed as one line on stdout
    /// ([`display_line`](ws_core::server::session::display_line)). At end of input
    /// the client sends a close (1000) and keeps printing what still
    /// arrives (echoes in flight) until the server's reply ends the
    /// connection, bounded by the close timeout; returns `Ok` then, or when
    /// the server closes first. Not cancel-safe: a line read but not yet
    /// sent is lost if the future is dropped.
    pub async fn run_interactive(&mut self) -> Result<()> {
        use futures_util::io::AsyncBufReadExt;
        self.ws()?;
        let stdin = futures_util::io::BufReader::new(blocking::Unblock::new(std::io::stdin()));
        let mut lines = stdin.lines();
        let mut input_open = true;
        let mut first_err = None;
        loop {
            // Both sides are cancel-safe: `Lines` and `recv` keep their
            // progress, so racing them loses nothing.
            let event = poll_fn(|cx| {
                if input_open {
                    if let Poll::Ready(line) = Pin::new(&mut lines).poll_next(cx) {
                        return Poll::Ready(Event::Line(line));
                    }
                }
                Pin::new(&mut *self).poll_next(cx).map(Event::Message)
            })
            .await;
            match event {
                Event::Line(Some(Ok(line))) => {
                    let line = line.strip_suffix('\r').unwrap_or(&line);
                    match self.send_message(line).await {
                        // The server closed first: keep receiving to show
                        // its close and end normally.
                        Err(e) if e.is_closed() => {}
                        r => r?,
                    }
                }
                Event::Line(Some(Err(e))) => return Err(Error::Io(e)),
                Event::Line(None) => {
                    input_open = false;
                    match self
                        .ws()?
                        .send(Message::Close(Some(CloseFrame::new(CloseCode::NORMAL, ""))))
                        .await
                    {
                        Err(e) if e.is_closed() => {}
                        r => r?,
                    }
                }
                Event::Message(Some(Ok(msg))) => {
                    // The server's reply to our own close is not news.
                    let reply = !input_open && matches!(msg, Message::Close(_));
                    if let Some(line) =
                        ws_core::server::session::display_line(&msg).filter(|_| !reply)
                    {
                        let mut out = std::io::stdout().lock();
                        let _ = writeln!(out, "{line}");
                        let _ = out.flush();
                    }
                }
                Event::Message(Some(Err(e))) => {
                    first_err.get_or_insert(e);
                }
                Event::Message(None) => return first_err.map_or(Ok(()), Err),
            }
        }
    }

    /// Closes with 1000 and waits for the server's reply and the end of the
    /// connection (bounded by the close timeout). Not connected: `Ok`.
    /// Not cancel-safe (see [`WebSocketStream::close`]).
    pub async fn close(&mut self) -> Result<()> {
        match self.ws.as_mut() {
            Some(ws) => ws.close(CloseCode::NORMAL, "").await,
            None => Ok(()),
        }
    }
}

enum Event {
    Line(Option<std::io::Result<String>>),
    Message(Option<Result<Message>>),
}

impl<R: Runtime> Stream for Client<R> {
    type Item = Result<Message>;

    /// As [`Client::recv`]; cancel-safe.
    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        match self.get_mut().ws.as_mut() {
            Some(ws) => Pin::new(ws).poll_next(cx),
            None => Poll::Ready(None),
        }
    }
}
