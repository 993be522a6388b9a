//! The convenience [`Client`], written once: ws-tokio and ws-async-std
//! (async-std and smol) name it with a [`Connector`], the little a runtime
//! supplies (connect a URL, sleep, read stdin lines, print a line), so every
//! async runtime's client has the same methods, documentation, reconnect
//! behaviour and cancel safety by construction
//! (`pub type Client = ws_core::rt::client::Client<TheirConnector>`).

use std::collections::VecDeque;
use std::fmt;
use std::future::{Future, poll_fn};
use std::io;
use std::pin::Pin;
use std::sync::{Mutex, PoisonError};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use futures_core::Stream;
use futures_sink::Sink;

use crate::close::{CloseCode, CloseFrame};
use crate::config::Config;
use crate::connection::State;
use crate::error::Error;
use crate::handshake::{ClientRequest, IntoClientRequest, Response};
use crate::message::Message;
use crate::proxy::Proxy;
use crate::rt::console::{Console, Ending};
use crate::rt::driver::Timer;
use crate::rt::reconnect::{Backoff, Reconnect, connect_with_retries};
use crate::rt::stream::{Transport, WebSocketStream};
use crate::url::WsUrl;

/// What a runtime adapter supplies to [`Client`]: how to open a connection,
/// how to sleep, and the console [`Client::run_interactive`] talks to.
/// Everything else about the client (the reconnect machinery, its cancel
/// safety, the interactive loop) is written once here.
pub trait Connector: 'static {
    /// The adapter's transport wrapper around its client stream, plain or
    /// TLS (the `IO` of its [`WebSocketStream`]).
    type Io: Transport + Unpin + Send + 'static;
    /// The adapter's connection timer.
    type Timer: Timer + Unpin + Send + 'static;
    /// The TLS configuration a `wss://` connection uses when the client
    /// was given one ([`Client::with_tls`]): `Arc<rustls::ClientConfig>`
    /// on every adapter (see `ws_core::rt::tls`, cargo feature `tls`).
    type TlsConfig: Clone + Send + Sync + Unpin + 'static;

    /// Connects to `url` and performs the opening handshake with `request`
    /// (made [`from_url`](ClientRequest::from_url) of `url`, with the
    /// client's extra headers and subprotocols): TCP (to
    /// `proxy` when given, then its `CONNECT` tunnel to the URL's host,
    /// [`crate::proxy::ProxyConnect`]), then for `wss://` the TLS handshake
    /// (with `tls`, or the default configuration when `None`), then the
    /// WebSocket handshake, all together bounded by the handshake timeout
    /// (the adapter's `connect_with` / `connect_tls` / `connect_proxy`). A
    /// `ws://` URL ignores `tls`.
    fn connect(
        url: &WsUrl,
        request: &ClientRequest,
        config: Config,
        tls: Option<Self::TlsConfig>,
        proxy: Option<Proxy>,
    ) -> impl Future<Output = Result<(Ws<Self>, Response), Error>> + Send;

    /// The runtime's timer: completes after `delay`.
    fn sleep(delay: Duration) -> impl Future<Output = ()> + Send;

    /// Standard input's bytes, in chunks as they are read (never empty),
    /// ending at end of input. Must be cancel-safe: bytes are never lost
    /// between polls.
    fn stdin() -> impl Stream<Item = io::Result<Vec<u8>>> + Unpin + Send;

    /// Writes `line` (newline included) to standard output and flushes it.
    fn print(line: String) -> impl Future<Output = io::Result<()>> + Send;
}

/// The stream a [`Client`] over `C` holds.
type Ws<C> = WebSocketStream<<C as Connector>::Io, <C as Connector>::Timer>;

/// The hook [`Client::on_reconnect`] installs.
type Hook = Box<dyn FnMut(u32) -> Vec<Message> + Send + 'static>;

/// A reconnection under way: ws-core's retry loop with its backoff, which
/// it hands back.
type Redial<C> = Pin<Box<dyn Future<Output = (Backoff, Result<(Ws<C>, Response), Error>)> + Send>>;

/// How the current connection is ending, as far as the client knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Link {
    /// We closed it ([`Client::close`], or the end of interactive input).
    Ours,
    /// The server closed it with a code the policy marks final.
    Final,
    /// The server closed it with any other code.
    Peer,
}

/// A WebSocket client for one `ws://` or `wss://` URL: a small convenience
/// client over the runtime's [`WebSocketStream`], for scripts, demos and
/// the interactive command-line client, optionally reconnecting
/// ([`reconnect`](Self::reconnect)).
///
/// `wss://` verifies the server against the default roots
/// (`ws_core::rt::tls::default_client_config`, chosen by the adapter's
/// cargo features), or against your own configuration given to
/// [`with_tls`](Self::with_tls). Through an HTTP proxy with
/// [`with_proxy`](Self::with_proxy).
///
/// Until [`connect`](Self::connect) succeeds (and after the connection
/// ended), sending fails with [`Error::Closed`] and receiving yields
/// `None`. It is also a [`Stream`] of received messages.
///
/// # Reconnecting
///
/// Opt in with [`reconnect`](Self::reconnect) and a [`Reconnect`] policy
/// (the same on every runtime; the backoff, the jitter and which endings
/// are final live in [`crate::rt::reconnect`]):
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
pub struct Client<C: Connector> {
    url: WsUrl,
    /// What each connection sends to `url`: the URL's request, plus extra
    /// headers and subprotocols.
    request: ClientRequest,
    /// The server's handshake response, once connected.
    response: Option<Response>,
    config: Config,
    tls: Option<C::TlsConfig>,
    proxy: Option<Proxy>,
    ws: Option<Ws<C>>,
    policy: Option<Reconnect>,
    /// The policy's backoff; `None` while a [`Redial`] holds it (or after
    /// one was dropped: a fresh one is made then).
    backoff: Option<Backoff>,
    /// In a `Mutex` only to keep the client `Sync`; reached through
    /// `get_mut`, never locked.
    hook: Mutex<Option<Hook>>,
    /// As `hook`: a `Mutex` for `Sync`, reached through `get_mut`.
    redial: Mutex<Option<Redial<C>>>,
    reconnects: u32,
    /// The connection was lost and the policy says to connect again.
    lost: bool,
    ending: Option<Link>,
    /// The hook's messages not yet queued on the new connection.
    pending: VecDeque<Message>,
    /// Hook messages were queued and not yet flushed.
    flush_owed: bool,
    /// Report reconnections on stderr (set while interactive).
    announce: bool,
}

impl<C: Connector> fmt::Debug for Client<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("url", &self.url)
            .field("config", &self.config)
            .field("own_tls_config", &self.tls.is_some())
            .field("proxy", &self.proxy)
            .field("ws", &self.ws)
            .field("policy", &self.policy)
            .field("reconnects", &self.reconnects)
            .finish_non_exhaustive()
    }
}

impl<C: Connector> Client<C> {
    /// A client for a `ws://` or `wss://` URL, parsed now so mistakes
    /// surface before any I/O; or for a request to one
    /// ([`IntoClientRequest`]: with the cargo feature `http`, an
    /// `http::Request<()>` whose headers and subprotocols every connection
    /// and reconnection sends).
    ///
    /// # Errors
    ///
    /// [`Error::Url`]: [`UrlError::UnsupportedScheme`](crate::url::UrlError::UnsupportedScheme)
    /// for a scheme other than `ws` and `wss`, or another problem with the
    /// URL; [`Error::Handshake`] for a request that cannot be a WebSocket
    /// request.
    pub fn new(request: impl IntoClientRequest) -> Result<Self, Error> {
        let (url, request) = request.into_client_request()?;
        Ok(Client {
            url,
            request,
            response: None,
            config: Config::default(),
            tls: None,
            proxy: None,
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

    /// Uses `config` (limits and timeouts) for the next connection.
    pub fn with_config(mut self, config: Config) -> Self {
        self.config = config;
        self
    }

    /// Uses `tls` for `wss://` connections instead of the default
    /// configuration: your roots, client certificate, ALPN (build it with
    /// `ws_core::rt::tls::builder` to keep the explicit crypto provider). Reconnections use it too; a `ws://` URL ignores
    /// it.
    pub fn with_tls(mut self, tls: C::TlsConfig) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Connects through `proxy` (an HTTP `CONNECT` tunnel; `None`:
    /// directly), for `ws://` and `wss://` (TLS to the server inside the
    /// tunnel); reconnections too. [`Proxy::from_env`] picks one from the
    /// environment (`https_proxy`, `no_proxy`, ...) if you want that; the
    /// client never reads the environment itself. A proxy's refusal is
    /// [`Error::Proxy`] with its status; with a policy, a 4xx from the
    /// proxy (407, 403) ends the retries.
    pub fn with_proxy(mut self, proxy: impl Into<Option<Proxy>>) -> Self {
        self.proxy = proxy.into();
        self
    }

    /// The URL this client connects to (for [`Proxy::from_env`], say).
    pub fn url(&self) -> &WsUrl {
        &self.url
    }

    /// Adds an extra header to the opening request (every connection's),
    /// such as `Authorization` or `Origin` (`ws-client -H`).
    ///
    /// # Errors
    ///
    /// [`Error::Handshake`] for a name that is not a token, a value with
    /// control bytes, or a header the handshake sets itself
    /// ([`ClientRequest::header`]).
    pub fn header(mut self, name: &str, value: &str) -> Result<Self, Error> {
        self.request = self.request.header(name, value)?;
        Ok(self)
    }

    /// Offers a subprotocol (in preference order; `ws-client --protocol`);
    /// the server's choice is in [`response`](Self::response).
    ///
    /// # Errors
    ///
    /// [`Error::Handshake`] if `protocol` is not an HTTP token.
    pub fn subprotocol(mut self, protocol: &str) -> Result<Self, Error> {
        self.request = self.request.subprotocol(protocol)?;
        Ok(self)
    }

    /// The server's handshake response of the latest connection (its
    /// subprotocol, headers), once connected.
    pub fn response(&self) -> Option<&Response> {
        self.response.as_ref()
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
    /// handshake timeout), replacing any previous connection. Dropping the
    /// future abandons the attempt. With a [`reconnect`](Self::reconnect)
    /// policy, retries per the policy.
    ///
    /// # Errors
    ///
    /// The (last) attempt's error; with a policy, a final refusal ends the
    /// retries at once.
    pub async fn connect(&mut self) -> Result<(), Error> {
        let Some(policy) = &self.policy else {
            let (ws, response) = C::connect(
                &self.url,
                &self.request,
                self.config.clone(),
                self.tls.clone(),
                self.proxy.clone(),
            )
            .await?;
            self.ws = Some(ws);
            self.response = Some(response);
            return Ok(());
        };
        let mut backoff = self.backoff.take().unwrap_or_else(|| policy.backoff());
        *self
            .redial
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner) = None;
        let (url, request) = (&self.url, &self.request);
        let (config, tls, proxy) = (&self.config, &self.tls, &self.proxy);
        let connected = connect_with_retries(
            &mut backoff,
            || C::connect(url, request, config.clone(), tls.clone(), proxy.clone()),
            C::sleep,
        )
        .await;
        self.backoff = Some(backoff);
        let (ws, response) = connected?;
        self.ws = Some(ws);
        self.response = Some(response);
        self.lost = false;
        self.ending = None;
        self.pending.clear();
        self.flush_owed = false;
        Ok(())
    }

    fn ws(&mut self) -> Result<&mut Ws<C>, Error> {
        self.ws.as_mut().ok_or(Error::Closed)
    }

    /// The connection to send on: with a policy, reconnects first when
    /// the connection is lost or the server closed it (not finally).
    async fn ws_to_send(&mut self) -> Result<&mut Ws<C>, Error> {
        if self.policy.is_some() {
            if self.ws.is_some() && self.ending == Some(Link::Peer) {
                self.connection_ended();
            }
            poll_fn(|cx| self.poll_link(cx)).await?;
        }
        self.ws()
    }

    /// After a send: with a policy, a connection the failure ended is lost.
    fn sent(&mut self, result: Result<(), Error>) -> Result<(), Error> {
        let over = |ws: &Ws<C>| ws.connection().state() == State::Closed;
        if result.is_err() && self.policy.is_some() && self.ws.as_ref().is_some_and(over) {
            self.connection_ended();
        }
        result
    }

    /// Sends a text message and flushes. Not cancel-safe (see
    /// [`WebSocketStream::send`]).
    pub async fn send_message(&mut self, text: &str) -> Result<(), Error> {
        let result = self.ws_to_send().await?.send_text(text).await;
        self.sent(result)
    }

    /// Sends a binary message and flushes. Not cancel-safe.
    pub async fn send_binary(&mut self, data: &[u8]) -> Result<(), Error> {
        let result = self.ws_to_send().await?.send_binary(data).await;
        self.sent(result)
    }

    /// Sends a ping (payload at most 125 bytes); the pong arrives through
    /// [`recv`](Self::recv). Not cancel-safe.
    pub async fn ping(&mut self, payload: &[u8]) -> Result<(), Error> {
        let msg = Message::Ping(bytes::Bytes::copy_from_slice(payload));
        let result = self.ws_to_send().await?.send(msg).await;
        self.sent(result)
    }

    /// Receives the next message (pings are answered automatically); `None`
    /// after the closing handshake or when not connected. With a
    /// [`reconnect`](Self::reconnect) policy, continues on a new connection
    /// when the old one ends (see [Reconnecting](Self#reconnecting)).
    /// Cancel-safe, reconnection included.
    pub async fn recv(&mut self) -> Option<Result<Message, Error>> {
        poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// Calls `f` with every received message, including the final `Close`,
    /// until the connection ends (with a policy: until the final end).
    /// Cancel-safe (built on [`recv`](Self::recv)): messages not yet passed
    /// to `f` stay buffered.
    ///
    /// # Errors
    ///
    /// The first receive error; messages before it were delivered.
    pub async fn receive_messages<F: FnMut(&Message)>(&mut self, mut f: F) -> Result<(), Error> {
        while let Some(msg) = self.recv().await {
            f(&msg?);
        }
        Ok(())
    }

    /// Sends each line of stdin as a text message and prints each received
    /// message as one line on stdout ([`Console::new`]; received lines
    /// marked with `< ` when stdout is a terminal, so they stand apart from
    /// the lines being typed). At end of input it sends a close (1000) and
    /// keeps printing what still arrives (echoes in flight) until the
    /// server's reply ends the connection, bounded by the close timeout; it
    /// returns `Ok(())` then, or when the server closes first. The server's
    /// reply to our own close is not printed. A trailing `\r` is dropped
    /// from each line. [`run_console`](Self::run_console) takes the
    /// console's options and says how the session ended.
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
    /// An error reading stdin or writing stdout, or the error that broke
    /// the connection ([`Ending::Broken`]).
    ///
    /// Not cancel-safe: a line read but not yet sent is lost if the future is
    /// dropped.
    pub async fn run_interactive(&mut self) -> Result<(), Error> {
        use std::io::IsTerminal;
        let console = Console::new().mark_received(io::stdout().is_terminal());
        match self.run_console(&console).await? {
            Ending::Broken(e) => Err(e),
            _ => Ok(()),
        }
    }

    /// The interactive session as `console` says (`ws-client`'s flags):
    /// stdin through [`Console::framer`] to messages, received messages
    /// through [`Console::render`] to stdout lines, pings every
    /// [`ping_interval`](Console::ping_interval); at the end of input a
    /// close (1000), or with [`one_message`](Console::one_message) the one
    /// message, then a close (1000) once the first reply was printed (or
    /// the [reply timeout](Console::reply_timeout) passed). Otherwise as
    /// [`run_interactive`](Self::run_interactive), reconnecting included.
    /// Returns how the session ended; ws-blocking's `run_console_with` makes
    /// the same decisions (they are [`crate::rt::console`]'s).
    ///
    /// # Errors
    ///
    /// Only the console's own: reading stdin (or text input that is not
    /// UTF-8; the session is closed first), writing stdout, or
    /// [`Error::Closed`] when not connected.
    /// How the connection ended, errors included, is the [`Ending`].
    ///
    /// Not cancel-safe, as [`run_interactive`](Self::run_interactive).
    pub async fn run_console(&mut self, console: &Console) -> Result<Ending, Error> {
        if !self.lost {
            self.ws()?;
        }
        let announce = std::mem::replace(&mut self.announce, self.policy.is_some());
        let result = self.console(console).await;
        self.announce = announce;
        result
    }

    async fn console(&mut self, console: &Console) -> Result<Ending, Error> {
        enum Event {
            Input(Option<io::Result<Vec<u8>>>),
            Ping,
            NoReply,
            Message(Option<Result<Message, Error>>),
        }
        type Sleep = Pin<Box<dyn Future<Output = ()> + Send>>;
        let sleep = |d: Duration| -> Sleep { Box::pin(C::sleep(d)) };
        let mut input = C::stdin();
        let mut framer = console.framer();
        let mut input_open = true;
        let mut ping = console.get_ping_interval().map(sleep);
        let mut no_reply: Option<Sleep> = None;
        let mut awaiting_reply = false;
        let mut timed_out = false;
        // Our close was sent: a close now is the server's reply.
        let mut closing = false;
        let mut peer_close: Option<Option<CloseFrame>> = None;
        let mut reply: Option<CloseFrame> = None;
        let mut first_err = None;
        // The input failed: reported once the session closed.
        let mut input_err = None;
        loop {
            // All sides are cancel-safe (stdin, the timers, `poll_recv`
            // with its reconnection), so racing them loses nothing.
            let event = poll_fn(|cx| {
                if input_open {
                    if let Poll::Ready(chunk) = Pin::new(&mut input).poll_next(cx) {
                        return Poll::Ready(Event::Input(chunk));
                    }
                }
                if let Some(timer) = no_reply.as_mut() {
                    if timer.as_mut().poll(cx).is_ready() {
                        return Poll::Ready(Event::NoReply);
                    }
                }
                if let Some(timer) = ping.as_mut() {
                    if timer.as_mut().poll(cx).is_ready() {
                        return Poll::Ready(Event::Ping);
                    }
                }
                self.poll_recv(cx).map(Event::Message)
            })
            .await;
            match event {
                Event::Input(Some(chunk)) => {
                    match chunk.map_err(Error::Io).and_then(|c| framer.push(&c)) {
                        Ok(msgs) => {
                            for msg in msgs {
                                self.send_input(msg, &mut first_err).await;
                            }
                        }
                        Err(e) => {
                            // Close cleanly, then report it (as ws-blocking).
                            input_err = Some(e);
                            input_open = false;
                            closing = true;
                            self.send_close_frame(&mut first_err).await;
                        }
                    }
                }
                Event::Input(None) => {
                    // Queue the close and keep receiving: echoes still in
                    // flight arrive before the server's reply, and the
                    // connection's close timer bounds the wait.
                    input_open = false;
                    let last = match framer.finish() {
                        Ok(last) => last,
                        Err(e) => {
                            input_err = Some(e);
                            None
                        }
                    };
                    let sent_one = last.is_some();
                    if let Some(msg) = last {
                        self.send_input(msg, &mut first_err).await;
                    }
                    if console.is_one_message() && sent_one && peer_close.is_none() {
                        awaiting_reply = true;
                        no_reply = console.get_reply_timeout().map(sleep);
                    } else {
                        closing = true;
                        self.send_close_frame(&mut first_err).await;
                    }
                }
                Event::Ping => {
                    ping = console.get_ping_interval().map(sleep);
                    if let (Some(ws), false, None) = (self.ws.as_mut(), closing, self.ending) {
                        if let Err(e) = ws.send(Message::Ping(bytes::Bytes::new())).await {
                            if !e.is_closed() {
                                first_err.get_or_insert(e);
                            }
                        }
                    }
                }
                Event::NoReply => {
                    no_reply = None;
                    awaiting_reply = false;
                    timed_out = true;
                    closing = true;
                    self.send_close_frame(&mut first_err).await;
                }
                Event::Message(Some(Ok(msg))) => {
                    if let Some(mut line) = console.render(&msg, closing) {
                        line.push('\n');
                        C::print(line).await?;
                    }
                    if awaiting_reply && Console::is_reply(&msg) {
                        awaiting_reply = false;
                        no_reply = None;
                        closing = true;
                        self.send_close_frame(&mut first_err).await;
                    }
                    match msg {
                        Message::Close(frame) if closing => reply = frame,
                        Message::Close(frame) => peer_close = Some(frame),
                        // Anything after the server's close is from a new
                        // connection (reconnected).
                        _ => peer_close = None,
                    }
                }
                Event::Message(Some(Err(e))) => {
                    first_err.get_or_insert(e);
                }
                Event::Message(None) => {
                    if let Some(e) = input_err {
                        return Err(e);
                    }
                    return Ok(Ending::decide(
                        timed_out, peer_close, closing, reply, first_err,
                    ));
                }
            }
        }
    }

    /// Sends one message of input; once more on the next connection when
    /// the connection just broke. A connection error is kept in
    /// `first_err` (receiving will end the session).
    async fn send_input(&mut self, msg: Message, first_err: &mut Option<Error>) {
        let mut sent = self.send_msg(msg.clone()).await;
        if sent.is_err() && self.lost {
            // The connection just broke: once more, on the next.
            sent = self.send_msg(msg).await;
        }
        match sent {
            // The server closed first: keep receiving to show its close
            // and end normally.
            Err(e) if e.is_closed() => {}
            Err(e) => {
                first_err.get_or_insert(e);
            }
            Ok(()) => {}
        }
    }

    async fn send_msg(&mut self, msg: Message) -> Result<(), Error> {
        let result = self.ws_to_send().await?.send(msg).await;
        self.sent(result)
    }

    /// Our close, sent without waiting for the reply: the end is final.
    /// A connection error is kept in `first_err`.
    async fn send_close_frame(&mut self, first_err: &mut Option<Error>) {
        self.closing_ourselves();
        if let Some(ws) = self.ws.as_mut() {
            let close = Message::Close(Some(CloseFrame::new(CloseCode::NORMAL, "")));
            match ws.send(close).await {
                Err(e) if !e.is_closed() => {
                    first_err.get_or_insert(e);
                }
                _ => {}
            }
        }
    }

    /// Runs the closing handshake with 1000 (normal closure): sends the
    /// close and waits for the server's reply and the end of the connection
    /// (bounded by the close timeout); see [`WebSocketStream::close`].
    /// Closing a client that is not connected does nothing. Not cancel-safe.
    /// The end is final: a reconnecting client stops reconnecting.
    pub async fn close(&mut self) -> Result<(), Error> {
        self.closing_ourselves();
        match self.ws.as_mut() {
            Some(ws) => ws.close(CloseCode::NORMAL, "").await,
            None => Ok(()),
        }
    }

    fn closing_ourselves(&mut self) {
        self.ending = Some(Link::Ours);
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
        self.lost = self.policy.is_some() && !matches!(self.ending, Some(Link::Ours | Link::Final));
    }

    /// With a policy: finishes a reconnection under way (or starts one when
    /// the connection was lost) and sends the hook's messages. `Ok` once
    /// connected, or not connected with nothing more to try; `Err` when
    /// reconnecting gave up.
    fn poll_link(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
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
                    let request = self.request.clone();
                    let (tls, proxy) = (self.tls.clone(), self.proxy.clone());
                    Box::pin(async move {
                        let connected = connect_with_retries(
                            &mut backoff,
                            || {
                                C::connect(
                                    &url,
                                    &request,
                                    config.clone(),
                                    tls.clone(),
                                    proxy.clone(),
                                )
                            },
                            C::sleep,
                        )
                        .await;
                        (backoff, connected)
                    })
                });
                let (backoff, connected) = ready!(fut.as_mut().poll(cx));
                *redial = None;
                self.backoff = Some(backoff);
                match connected {
                    Ok((ws, response)) => {
                        self.response = Some(response);
                        self.reconnected(ws);
                    }
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
        if self.ending == Some(Link::Ours) {
            return;
        }
        let policy = self.policy.as_ref();
        let is_final = frame.is_some_and(|f| policy.is_some_and(|p| p.is_final_close(f.code)));
        self.ending = Some(if is_final { Link::Final } else { Link::Peer });
    }

    fn reconnected(&mut self, ws: Ws<C>) {
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
    fn poll_send_pending(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
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

    fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Message, Error>>> {
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

impl<C: Connector> Stream for Client<C> {
    type Item = Result<Message, Error>;

    /// Cancel-safe, as [`Client::recv`] (reconnecting likewise).
    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().poll_recv(cx)
    }
}
