//! [`Client`]: a small convenience client over [`WebSocketStream`], for
//! scripts, demos and the interactive command-line client, optionally
//! reconnecting ([`Client::reconnect`]).

use std::collections::VecDeque;
use std::fmt;
use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::sync::{Mutex, PoisonError};
use std::task::{Context, Poll, ready};

use futures_core::Stream;
use futures_sink::Sink;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use ws_core::rt::reconnect::{Backoff, Reconnect, connect_with_retries};
use ws_core::server::session::display_line;
use ws_core::url::WsUrl;
use ws_core::{Bytes, CloseCode, CloseFrame, Config, Error, Message, State};

use crate::handshake::connect_url;
use crate::{Result, WebSocketStream};

/// The hook [`Client::on_reconnect`] installs.
type Hook = Box<dyn FnMut(u32) -> Vec<Message> + Send + 'static>;

/// A reconnection under way: ws-core's retry loop with its backoff, which
/// it hands back.
type Redial = Pin<Box<dyn Future<Output = (Backoff, Result<WebSocketStream<TcpStream>>)> + Send>>;

/// How the current connection is ending, as far as the client knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ending {
    /// We closed it ([`Client::close`], or the end of interactive input).
    Ours,
    /// The server closed it with a code the policy marks final.
    Final,
    /// The server closed it with any other code.
    Peer,
}

/// A WebSocket client for one `ws://` URL.
///
/// Until [`connect`](Self::connect) succeeds, sending fails with
/// [`Error::Closed`] and receiving yields `None`. It is also a
/// [`Stream`] of received messages.
///
/// # Reconnecting
///
/// Opt in with [`reconnect`](Self::reconnect) and a [`Reconnect`] policy
/// (the same on every runtime; the backoff, the jitter and which endings
/// are final live in [`ws_core::rt::reconnect`]):
///
/// - [`connect`](Self::connect) retries per the policy; a final refusal (a
///   4xx answer to the upgrade, an unusable URL) ends it at once.
/// - When the connection ends while receiving (the server closed, went
///   away or broke the connection), the client connects again with
///   backoff, runs the [`on_reconnect`](Self::on_reconnect) hook, sends
///   the hook's messages first, and [`recv`](Self::recv) continues on the
///   new connection: a loop over `recv` survives a server restart. The
///   server's `Close` is still delivered (so the loop sees the restart);
///   errors that ended the old connection are not.
/// - The end is final, and `recv` yields `None`, after our own
///   [`close`](Self::close), or a close with a code the policy marks
///   [final](Reconnect::final_close_code); when reconnecting gives up
///   (a final refusal, or the attempts used up), `recv` yields that error
///   once, then `None`.
/// - A send while disconnected (after `recv` saw the end, or after the
///   server's `Close`) reconnects first, by the same rules. A send that
///   fails because the connection just broke returns its error; the next
///   send or `recv` reconnects.
///
/// The client notices a lost connection by receiving, so keep calling
/// `recv` (which the connection needs anyway, for pings and its timers).
/// The backoff starts over after each successful connection, so a server
/// that accepts and at once closes with a code not marked final is
/// reconnected to at once, every time: mark such codes final.
pub struct Client {
    url: WsUrl,
    config: Config,
    ws: Option<WebSocketStream<TcpStream>>,
    policy: Option<Reconnect>,
    /// The policy's backoff; `None` while a [`Redial`] holds it (or after
    /// one was dropped: a fresh one is made then).
    backoff: Option<Backoff>,
    /// In a `Mutex` only to keep the client `Sync`; reached through
    /// `get_mut`, never locked.
    hook: Mutex<Option<Hook>>,
    /// As `hook`: a `Mutex` for `Sync`, reached through `get_mut`.
    redial: Mutex<Option<Redial>>,
    reconnects: u32,
    /// The connection was lost and the policy says to connect again.
    lost: bool,
    ending: Option<Ending>,
    /// The hook's messages not yet queued on the new connection.
    pending: VecDeque<Message>,
    /// Hook messages were queued and not yet flushed.
    flush_owed: bool,
    /// Report reconnections on stderr (set while interactive).
    announce: bool,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("url", &self.url)
            .field("config", &self.config)
            .field("ws", &self.ws)
            .field("policy", &self.policy)
            .field("reconnects", &self.reconnects)
            .finish_non_exhaustive()
    }
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
            policy: None,
            backoff: None,
            hook: Mutex::new(None),
            redial: Mutex::new(None),
            reconnects: 0,
            lost: false,
            ending: None,
            pending: VecDeque::new(),
            flush_owed: false,
            announce: false,
        })
    }

    /// Uses `config` for the next connection.
    pub fn with_config(mut self, config: Config) -> Self {
        self.config = config;
        self
    }

    /// Reconnects per `policy` (opt-in; see [Reconnecting](Self#reconnecting)).
    pub fn reconnect(mut self, policy: Reconnect) -> Self {
        self.backoff = Some(policy.backoff());
        self.policy = Some(policy);
        self
    }

    /// Runs `hook` after every successful reconnection (not the first
    /// [`connect`](Self::connect)) with the number of reconnections so far
    /// (1 the first time), and sends the messages it returns on the new
    /// connection before anything else: to subscribe again or
    /// re-authenticate. Only used with a [`reconnect`](Self::reconnect)
    /// policy.
    ///
    /// The hook is a plain synchronous function, the same on every runtime:
    /// it decides what to send and the client sends it. Keep it short (it
    /// runs on the task that receives).
    pub fn on_reconnect<F>(mut self, hook: F) -> Self
    where
        F: FnMut(u32) -> Vec<Message> + Send + 'static,
    {
        *self.hook.get_mut().unwrap_or_else(PoisonError::into_inner) = Some(Box::new(hook));
        self
    }

    /// How many times the client reconnected (the first connection and
    /// explicit [`connect`](Self::connect) calls not counted).
    pub fn reconnects(&self) -> u32 {
        self.reconnects
    }

    /// Connects and performs the opening handshake (bounded by the
    /// handshake timeout), replacing any previous connection. With a
    /// [`reconnect`](Self::reconnect) policy, retries per the policy.
    ///
    /// # Errors
    ///
    /// The (last) attempt's error; with a policy, a final refusal ends the
    /// retries at once.
    pub async fn connect(&mut self) -> Result<()> {
        let Some(policy) = &self.policy else {
            let (ws, _response) = connect_url(&self.url, self.config.clone()).await?;
            self.ws = Some(ws);
            return Ok(());
        };
        let mut backoff = self.backoff.take().unwrap_or_else(|| policy.backoff());
        *self
            .redial
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner) = None;
        let (url, config) = (&self.url, &self.config);
        let connected = connect_with_retries(
            &mut backoff,
            || connect_url(url, config.clone()),
            tokio::time::sleep,
        )
        .await;
        self.backoff = Some(backoff);
        let (ws, _response) = connected?;
        self.ws = Some(ws);
        self.lost = false;
        self.ending = None;
        self.pending.clear();
        self.flush_owed = false;
        Ok(())
    }

    fn ws(&mut self) -> Result<&mut WebSocketStream<TcpStream>> {
        self.ws.as_mut().ok_or(Error::Closed)
    }

    /// The connection to send on: with a policy, reconnects first when
    /// the connection is lost or the server closed it (not finally).
    async fn ws_to_send(&mut self) -> Result<&mut WebSocketStream<TcpStream>> {
        if self.policy.is_some() {
            if self.ws.is_some() && self.ending == Some(Ending::Peer) {
                self.connection_ended();
            }
            poll_fn(|cx| self.poll_link(cx)).await?;
        }
        self.ws()
    }

    /// After a send: with a policy, a connection the failure ended is lost.
    fn sent(&mut self, result: Result<()>) -> Result<()> {
        let over = |ws: &WebSocketStream<TcpStream>| ws.connection().state() == State::Closed;
        if result.is_err() && self.policy.is_some() && self.ws.as_ref().is_some_and(over) {
            self.connection_ended();
        }
        result
    }

    /// Sends a text message and flushes. Not cancel-safe (see
    /// [`WebSocketStream::send`]).
    pub async fn send_message(&mut self, text: &str) -> Result<()> {
        let result = self.ws_to_send().await?.send(Message::text(text)).await;
        self.sent(result)
    }

    /// Sends a binary message and flushes. Not cancel-safe.
    pub async fn send_binary(&mut self, data: &[u8]) -> Result<()> {
        let msg = Message::Binary(Bytes::copy_from_slice(data));
        let result = self.ws_to_send().await?.send(msg).await;
        self.sent(result)
    }

    /// Sends a ping (payload at most 125 bytes); the pong arrives through
    /// [`recv`](Self::recv). Not cancel-safe.
    pub async fn ping(&mut self, payload: &[u8]) -> Result<()> {
        let msg = Message::Ping(Bytes::copy_from_slice(payload));
        let result = self.ws_to_send().await?.send(msg).await;
        self.sent(result)
    }

    /// Receives the next message (pings are answered automatically); `None`
    /// after the closing handshake or when not connected. With a
    /// [`reconnect`](Self::reconnect) policy, continues on a new connection
    /// when the old one ends (see [Reconnecting](Self#reconnecting)).
    /// Cancel-safe, reconnection included.
    pub async fn recv(&mut self) -> Option<Result<Message>> {
        if self.policy.is_none() {
            return self.ws.as_mut()?.recv().await;
        }
        poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// Calls `f` with every received message, including the final `Close`,
    /// until the connection ends (with a policy: until the final end).
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
    /// With a [`reconnect`](Self::reconnect) policy the session survives
    /// the server going away: `[reconnected]` is printed on stderr after
    /// each reconnection, and `[gave up reconnecting: ...]` when the client
    /// gives up (the session then ends with that error). A line whose send
    /// failed because the connection just broke is sent again on the next
    /// connection.
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
        if !self.lost {
            self.ws()?;
        }
        let announce = std::mem::replace(&mut self.announce, self.policy.is_some());
        let result = self.interact().await;
        self.announce = announce;
        result
    }

    async fn interact(&mut self) -> Result<()> {
        let mut lines = BufReader::new(tokio::io::stdin()).lines();
        let mut stdout = tokio::io::stdout();
        let mut input_open = true;
        let mut first_err = None;
        loop {
            tokio::select! {
                // Both branches are cancel-safe (`next_line` and `recv`,
                // reconnection included), so racing them loses nothing.
                line = lines.next_line(), if input_open => match line? {
                    Some(line) => {
                        let mut sent = self.send_message(&line).await;
                        if sent.is_err() && self.lost {
                            // The connection just broke: once more, on the next.
                            sent = self.send_message(&line).await;
                        }
                        match sent {
                            // The server closed first: keep receiving to show
                            // its close and end normally.
                            Err(e) if e.is_closed() => {}
                            r => r?,
                        }
                    }
                    None => {
                        // Queue the close and keep receiving: echoes still in
                        // flight arrive before the server's reply, and the
                        // connection's close timer bounds the wait.
                        input_open = false;
                        match self.send_close_frame().await {
                            Err(e) if e.is_closed() => {}
                            r => r?,
                        }
                    }
                },
                msg = self.recv() => match msg {
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

    /// Our close, sent without waiting for the reply: the end is final.
    async fn send_close_frame(&mut self) -> Result<()> {
        self.closing_ourselves();
        match self.ws.as_mut() {
            Some(ws) => {
                let close = Message::Close(Some(CloseFrame::new(CloseCode::NORMAL, "")));
                ws.send(close).await
            }
            None => Ok(()),
        }
    }

    /// Runs the closing handshake with 1000 (normal closure); see
    /// [`WebSocketStream::close`]. Closing a client that is not connected
    /// does nothing. The end is final: a reconnecting client stops
    /// reconnecting.
    pub async fn close(&mut self) -> Result<()> {
        self.closing_ourselves();
        match self.ws.as_mut() {
            Some(ws) => ws.close(CloseCode::NORMAL, "").await,
            None => Ok(()),
        }
    }

    fn closing_ourselves(&mut self) {
        self.ending = Some(Ending::Ours);
        self.lost = false;
        *self
            .redial
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner) = None;
        self.pending.clear();
    }

    /// The current connection is over: drop it, and with a policy note
    /// whether to connect again.
    fn connection_ended(&mut self) {
        self.ws = None;
        self.pending.clear();
        self.flush_owed = false;
        self.lost =
            self.policy.is_some() && !matches!(self.ending, Some(Ending::Ours | Ending::Final));
    }

    /// With a policy: finishes a reconnection under way (or starts one when
    /// the connection was lost) and sends the hook's messages. `Ok` once
    /// connected, or not connected with nothing more to try; `Err` when
    /// reconnecting gave up.
    fn poll_link(&mut self, cx: &mut Context<'_>) -> Poll<Result<()>> {
        loop {
            if self.ws.is_none() && self.lost {
                let redial = self
                    .redial
                    .get_mut()
                    .unwrap_or_else(PoisonError::into_inner);
                let fut = redial.get_or_insert_with(|| {
                    let policy = self.policy.as_ref().expect("lost implies a policy");
                    let mut backoff = self.backoff.take().unwrap_or_else(|| policy.backoff());
                    let (url, config) = (self.url.clone(), self.config.clone());
                    Box::pin(async move {
                        let connected = connect_with_retries(
                            &mut backoff,
                            || connect_url(&url, config.clone()),
                            tokio::time::sleep,
                        )
                        .await;
                        (backoff, connected.map(|(ws, _response)| ws))
                    })
                });
                let (backoff, connected) = ready!(fut.as_mut().poll(cx));
                *redial = None;
                self.backoff = Some(backoff);
                match connected {
                    Ok(ws) => self.reconnected(ws),
                    Err(e) => {
                        self.lost = false;
                        if self.announce {
                            eprintln!("[gave up reconnecting: {e}]");
                        }
                        return Poll::Ready(Err(e));
                    }
                }
            }
            match ready!(self.poll_send_pending(cx)) {
                Ok(()) => return Poll::Ready(Ok(())),
                // The new connection broke at once: again (or not, if final).
                Err(_) => self.connection_ended(),
            }
        }
    }

    /// The server's close arrived: final if the policy says so (unless we
    /// were closing anyway).
    fn peer_closed(&mut self, frame: Option<&CloseFrame>) {
        if self.ending == Some(Ending::Ours) {
            return;
        }
        let policy = self.policy.as_ref();
        let is_final = frame.is_some_and(|f| policy.is_some_and(|p| p.is_final_close(f.code)));
        self.ending = Some(if is_final {
            Ending::Final
        } else {
            Ending::Peer
        });
    }

    fn reconnected(&mut self, ws: WebSocketStream<TcpStream>) {
        self.ws = Some(ws);
        self.lost = false;
        self.ending = None;
        self.reconnects += 1;
        let hook = self.hook.get_mut().unwrap_or_else(PoisonError::into_inner);
        if let Some(hook) = hook.as_mut() {
            self.pending.extend(hook(self.reconnects));
        }
        if self.announce {
            eprintln!("[reconnected]");
        }
    }

    /// Queues and flushes the hook's messages; cancel-safe (a message
    /// leaves `pending` only once queued).
    fn poll_send_pending(&mut self, cx: &mut Context<'_>) -> Poll<Result<()>> {
        let Some(ws) = self.ws.as_mut() else {
            return Poll::Ready(Ok(()));
        };
        while !self.pending.is_empty() {
            ready!(Pin::new(&mut *ws).poll_ready(cx))?;
            let msg = self.pending.pop_front().expect("not empty");
            Pin::new(&mut *ws).start_send(msg)?;
            self.flush_owed = true;
        }
        if self.flush_owed {
            ready!(Pin::new(ws).poll_flush(cx))?;
            self.flush_owed = false;
        }
        Poll::Ready(Ok(()))
    }

    fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Message>>> {
        if self.policy.is_none() {
            return match self.ws.as_mut() {
                Some(ws) => Pin::new(ws).poll_next(cx),
                None => Poll::Ready(None),
            };
        }
        loop {
            if let Err(e) = ready!(self.poll_link(cx)) {
                return Poll::Ready(Some(Err(e)));
            }
            let Some(ws) = self.ws.as_mut() else {
                return Poll::Ready(None);
            };
            match ready!(Pin::new(ws).poll_next(cx)) {
                Some(Ok(Message::Close(frame))) => {
                    self.peer_closed(frame.as_ref());
                    return Poll::Ready(Some(Ok(Message::Close(frame))));
                }
                Some(Ok(msg)) => return Poll::Ready(Some(Ok(msg))),
                Some(Err(e)) => {
                    self.connection_ended();
                    if !self.lost {
                        return Poll::Ready(Some(Err(e)));
                    }
                }
                None => {
                    self.connection_ended();
                    if !self.lost {
                        return Poll::Ready(None);
                    }
                }
            }
        }
    }
}

impl Stream for Client {
    type Item = Result<Message>;

    /// Cancel-safe, as [`Client::recv`] (reconnecting likewise).
    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().poll_recv(cx)
    }
}
