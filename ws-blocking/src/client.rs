//! [`Client`]: a convenience WebSocket client for scripts and the
//! interactive command-line client, optionally reconnecting
//! ([`Client::reconnect`]).
//!
//! It holds the connection as split halves, so [`Client::run_interactive`]
//! can send stdin lines from one thread while printing received messages on
//! another.

use std::fmt;
use std::io::{self, BufRead, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;

use ws_core::handshake::{ClientRequest, IntoClientRequest, Response};
use ws_core::proxy::Proxy;
use ws_core::rt::console::{Console, Ending};
use ws_core::rt::reconnect::{Backoff, Reconnect, connect_with_retries_blocking};
use ws_core::rt::tls::rustls::ClientConfig;
use ws_core::url::WsUrl;
use ws_core::{CloseCode, CloseFrame, Config, Error, Message};

use crate::Result;
use crate::handshake::{MaybeTls, connect_url};
use crate::stream::{Messages, WebSocketStream, WsReader, WsWriter};

mod console;

use console::{Outbox, close_normal, feed_input, interactive_result};

/// The hook [`Client::on_reconnect`] installs.
type Hook = Box<dyn FnMut(u32) -> Vec<Message> + Send + 'static>;

#[derive(Debug)]
enum Conn {
    Idle,
    Open {
        // Boxed: the reader holds the whole receiving state.
        reader: Box<WsReader<MaybeTls<TcpStream>>>,
        writer: WsWriter<MaybeTls<TcpStream>>,
    },
    Closed,
}

/// How the server ended the current connection, as far as the client knows
/// (our own close is [`Client::closing`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PeerEnding {
    /// With a code the policy marks final.
    Final,
    /// With any other code.
    Peer,
}

/// A WebSocket client for one `ws://` or `wss://` URL (`wss://` trusts the
/// default roots, or your configuration given to
/// [`with_tls`](Self::with_tls)), directly or through an HTTP proxy
/// ([`with_proxy`](Self::with_proxy)).
///
/// ```no_run
/// use ws_blocking::Client;
///
/// let mut client = Client::new("ws://127.0.0.1:8080/ws")?;
/// client.connect()?;
/// client.send_message("hello")?;
/// if let Some(msg) = client.recv() {
///     println!("{:?}", msg?);
/// }
/// client.close()?;
/// # Ok::<(), ws_blocking::Error>(())
/// ```
///
/// Sending before [`connect`](Self::connect) (or after the connection
/// ended) fails with [`Error::Closed`]; receiving yields `None` (as on every
/// runtime).
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
/// `recv`. Waiting between attempts blocks the calling thread. The backoff
/// starts over after each successful connection, so a server that accepts
/// and at once closes with a code not marked final is reconnected to at
/// once, every time: mark such codes final.
pub struct Client {
    url: WsUrl,
    /// What each connection sends to `url`.
    request: ClientRequest,
    config: Config,
    /// The TLS configuration for `wss://`; `None`: the default.
    tls: Option<Arc<ClientConfig>>,
    /// The HTTP proxy to tunnel through; `None`: connect directly.
    proxy: Option<Proxy>,
    conn: Conn,
    response: Option<Response>,
    /// With a policy: its backoff.
    retry: Option<Backoff>,
    /// In a `Mutex` only to keep the client `Sync`; reached through
    /// `get_mut`, never locked.
    hook: Mutex<Option<Hook>>,
    reconnects: u32,
    /// The connection was lost and the policy says to connect again.
    lost: bool,
    ending: Option<PeerEnding>,
    /// We are closing (shared with the interactive input thread, which
    /// sends the close at the end of input): the end is final.
    closing: Arc<AtomicBool>,
    /// Report reconnections on stderr (set while interactive).
    announce: bool,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("url", &self.url)
            .field("config", &self.config)
            .field("own_tls_config", &self.tls.is_some())
            .field("proxy", &self.proxy)
            .field("conn", &self.conn)
            .field("response", &self.response)
            .field("policy", &self.retry.as_ref().map(Backoff::policy))
            .field("reconnects", &self.reconnects)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// A client for a `ws://` or `wss://` URL, not yet connected; or for a
    /// request to one ([`IntoClientRequest`](crate::IntoClientRequest):
    /// with the cargo feature `http`, an `http::Request<()>` whose headers
    /// and subprotocols every connection and reconnection sends). Fails on
    /// an invalid URL (`Error::Url`), including one with another scheme, or
    /// a request that cannot be a WebSocket request (`Error::Handshake`).
    pub fn new(request: impl IntoClientRequest) -> Result<Client> {
        let (url, request) = request.into_client_request()?;
        Ok(Client {
            url,
            request,
            config: Config::default(),
            tls: None,
            proxy: None,
            conn: Conn::Idle,
            response: None,
            retry: None,
            hook: Mutex::new(None),
            reconnects: 0,
            lost: false,
            ending: None,
            closing: Arc::new(AtomicBool::new(false)),
            announce: false,
        })
    }

    /// Uses `config` for the next [`connect`](Self::connect).
    pub fn with_config(mut self, config: Config) -> Self {
        self.config = config;
        self
    }

    /// Uses `tls` for `wss://` connections instead of the default
    /// configuration (the default roots): your roots, client certificate,
    /// ALPN (build it with [`tls::builder`](crate::tls::builder) to keep
    /// the explicit crypto provider). Reconnections use it too; a `ws://`
    /// URL ignores it.
    pub fn with_tls(mut self, tls: Arc<ClientConfig>) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Connects through `proxy` (an HTTP `CONNECT` tunnel; `None`:
    /// directly), for `ws://` and `wss://` (TLS to the server inside the
    /// tunnel); reconnections too. [`Proxy::from_env`] picks one from the
    /// environment (`https_proxy`, `no_proxy`, ...) if you want that; the
    /// client never reads the environment itself. A proxy's refusal is
    /// `Error::Proxy` with its status; with a policy, a 4xx from the proxy
    /// (407, 403) ends the retries.
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
    /// `Error::Handshake` for a name that is not a token, a value with
    /// control bytes, or a header the handshake sets itself.
    pub fn header(mut self, name: &str, value: &str) -> Result<Self> {
        self.request = self.request.header(name, value)?;
        Ok(self)
    }

    /// Offers a subprotocol (in preference order; `ws-client --protocol`);
    /// the server's choice is in [`response`](Self::response).
    ///
    /// # Errors
    ///
    /// `Error::Handshake` if `protocol` is not an HTTP token.
    pub fn subprotocol(mut self, protocol: &str) -> Result<Self> {
        self.request = self.request.subprotocol(protocol)?;
        Ok(self)
    }

    /// Reconnects per `policy` (opt-in; see [Reconnecting](Self#reconnecting)).
    pub fn reconnect(mut self, policy: Reconnect) -> Self {
        self.retry = Some(policy.backoff());
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
    /// runs on the thread that receives).
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
    /// handshake timeout). Replaces any previous connection (dropping it
    /// without a closing handshake). With a [`reconnect`](Self::reconnect)
    /// policy, retries per the policy.
    ///
    /// # Errors
    ///
    /// The (last) attempt's error; with a policy, a final refusal ends the
    /// retries at once.
    pub fn connect(&mut self) -> Result<()> {
        let (ws, response) = match self.retry.as_mut() {
            None => connect_url(
                &self.url,
                &self.request,
                self.config.clone(),
                self.tls.clone(),
                self.proxy.as_ref(),
            )?,
            Some(backoff) => {
                let (url, request) = (&self.url, &self.request);
                let (config, tls, proxy) = (&self.config, &self.tls, &self.proxy);
                connect_with_retries_blocking(backoff, || {
                    connect_url(url, request, config.clone(), tls.clone(), proxy.as_ref())
                })?
            }
        };
        self.open(ws, response);
        Ok(())
    }

    fn open(&mut self, ws: WebSocketStream<MaybeTls<TcpStream>>, response: Response) {
        let (reader, writer) = ws.split();
        self.conn = Conn::Open {
            reader: Box::new(reader),
            writer,
        };
        self.response = Some(response);
        self.lost = false;
        self.ending = None;
        // A new flag: an interactive input thread left behind by an earlier
        // session cannot end this connection.
        self.closing = Arc::new(AtomicBool::new(false));
    }

    /// The socket, once connected, e.g. to set a write timeout (sends
    /// otherwise block for as long as the server does not read). Its read
    /// timeout is managed by the client.
    pub fn get_ref(&self) -> Option<&TcpStream> {
        match &self.conn {
            Conn::Open { writer, .. } => Some(writer.get_ref().get_ref()),
            _ => None,
        }
    }

    /// The server's handshake response, once connected.
    pub fn response(&self) -> Option<&Response> {
        self.response.as_ref()
    }

    fn writer(&mut self) -> Result<&mut WsWriter<MaybeTls<TcpStream>>> {
        match &mut self.conn {
            Conn::Open { writer, .. } => Ok(writer),
            Conn::Idle => Err(Error::Closed),
            Conn::Closed => Err(Error::Closed),
        }
    }

    /// The writer to send with: with a policy, reconnects first when the
    /// connection is lost or the server closed it (not finally).
    fn writer_to_send(&mut self) -> Result<&mut WsWriter<MaybeTls<TcpStream>>> {
        if self.retry.is_some() {
            if matches!(self.conn, Conn::Open { .. }) && self.ending == Some(PeerEnding::Peer) {
                self.connection_ended();
            }
            self.relink(&mut |_| {})?;
        }
        self.writer()
    }

    /// After a send: with a policy, a connection the failure ended is lost.
    fn sent(&mut self, result: Result<()>) -> Result<()> {
        if self.retry.is_some() && matches!(result, Err(Error::Closed | Error::Io(_))) {
            self.connection_ended();
        }
        result
    }

    /// Sends a text message (and flushes it).
    pub fn send_message(&mut self, text: &str) -> Result<()> {
        let result = self.writer_to_send()?.send_text(text);
        self.sent(result)
    }

    /// Sends a binary message (and flushes it).
    pub fn send_binary(&mut self, data: &[u8]) -> Result<()> {
        let result = self.writer_to_send()?.send_binary(data);
        self.sent(result)
    }

    /// Sends a ping (payload at most 125 bytes); the pong arrives as a
    /// `Message::Pong` from [`recv`](Self::recv).
    pub fn ping(&mut self, payload: &[u8]) -> Result<()> {
        let msg = Message::Ping(ws_core::Bytes::copy_from_slice(payload));
        let result = self.writer_to_send()?.send(msg);
        self.sent(result)
    }

    /// Blocks for the next message: `Some(Ok(_))` for each message
    /// (including the server's close frame), `Some(Err(_))` for an error,
    /// `None` once the connection is over. With a
    /// [`reconnect`](Self::reconnect) policy, continues on a new connection
    /// when the old one ends (see [Reconnecting](Self#reconnecting)).
    pub fn recv(&mut self) -> Option<Result<Message>> {
        self.recv_relinking(&mut |_| {})
    }

    /// [`recv`](Self::recv), calling `relinked` with the new writer after
    /// each reconnection.
    fn recv_relinking(
        &mut self,
        relinked: &mut dyn FnMut(&WsWriter<MaybeTls<TcpStream>>),
    ) -> Option<Result<Message>> {
        if self.retry.is_none() {
            let reader = match &mut self.conn {
                Conn::Open { reader, .. } => reader,
                Conn::Idle => return None,
                Conn::Closed => return None,
            };
            return match reader.read() {
                Ok(msg) => Some(Ok(msg)),
                Err(Error::Closed) => {
                    self.conn = Conn::Closed;
                    None
                }
                Err(e) => Some(Err(e)),
            };
        }
        loop {
            if let Err(e) = self.relink(relinked) {
                return Some(Err(e));
            }
            let Conn::Open { reader, .. } = &mut self.conn else {
                return None;
            };
            match reader.read() {
                Ok(Message::Close(frame)) => {
                    self.peer_closed(frame.as_ref());
                    return Some(Ok(Message::Close(frame)));
                }
                Ok(msg) => return Some(Ok(msg)),
                Err(e) => {
                    self.connection_ended();
                    if !self.lost {
                        return (!e.is_closed()).then_some(Err(e));
                    }
                }
            }
        }
    }

    /// With a policy and a lost connection: reconnects (ws-core's retry
    /// loop), runs the hook and sends its messages, then calls `relinked`.
    /// `Err` when reconnecting gave up (the end is final then).
    fn relink(&mut self, relinked: &mut dyn FnMut(&WsWriter<MaybeTls<TcpStream>>)) -> Result<()> {
        while self.lost {
            let backoff = self.retry.as_mut().expect("lost implies a policy");
            let (url, request) = (&self.url, &self.request);
            let (config, tls, proxy) = (&self.config, &self.tls, &self.proxy);
            let connected = connect_with_retries_blocking(backoff, || {
                connect_url(url, request, config.clone(), tls.clone(), proxy.as_ref())
            });
            let (ws, response) = match connected {
                Ok(connected) => connected,
                Err(e) => {
                    self.lost = false;
                    if self.announce {
                        eprintln!("[gave up reconnecting: {e}]");
                    }
                    return Err(e);
                }
            };
            // Keep our flag: an interactive session may be ending meanwhile.
            let closing = self.closing.clone();
            self.open(ws, response);
            self.closing = closing;
            self.reconnects += 1;
            let hook = self.hook.get_mut().unwrap_or_else(PoisonError::into_inner);
            let msgs = hook.as_mut().map(|hook| hook(self.reconnects));
            let Conn::Open { writer, .. } = &mut self.conn else {
                unreachable!("just opened");
            };
            let sent = msgs
                .into_iter()
                .flatten()
                .try_for_each(|msg| writer.feed(msg))
                .and_then(|()| writer.flush());
            match sent {
                Ok(()) => {
                    relinked(writer);
                    if self.announce {
                        eprintln!("[reconnected]");
                    }
                }
                // The new connection broke at once: again (or not, if final).
                Err(_) => self.connection_ended(),
            }
        }
        Ok(())
    }

    /// The server's close arrived: final if the policy says so.
    fn peer_closed(&mut self, frame: Option<&CloseFrame>) {
        let policy = self.retry.as_ref().map(Backoff::policy);
        let is_final = frame.is_some_and(|f| policy.is_some_and(|p| p.is_final_close(f.code)));
        self.ending = Some(if is_final {
            PeerEnding::Final
        } else {
            PeerEnding::Peer
        });
    }

    /// The current connection is over: drop it, and with a policy note
    /// whether to connect again.
    fn connection_ended(&mut self) {
        self.conn = Conn::Closed;
        self.lost = self.retry.is_some()
            && self.ending != Some(PeerEnding::Final)
            && !self.closing.load(Ordering::SeqCst);
    }

    /// An iterator over [`recv`](Self::recv).
    pub fn messages(&mut self) -> Messages<'_, Self> {
        Messages { source: self }
    }

    /// Calls `f` with every message until the connection is closed (the
    /// close frame included; with a policy: until the final end); returns
    /// the first error.
    pub fn receive_messages<F: FnMut(&Message)>(&mut self, mut f: F) -> Result<()> {
        while let Some(msg) = self.recv() {
            f(&msg?);
        }
        Ok(())
    }

    /// Reads lines from stdin and sends each as a text message while
    /// printing every received message as one line on stdout
    /// ([`Console::new`]; received lines marked with `< ` when stdout is a
    /// terminal, so they stand apart from the lines being typed). At the
    /// end of stdin it sends a close (1000) and keeps printing what still
    /// arrives (echoes in flight) until the server's reply ends the
    /// connection, bounded by the close timeout; it returns `Ok(())` then,
    /// or when the server closes first. The server's reply to our own close
    /// is not printed. [`run_console`](Self::run_console) takes the
    /// console's options and says how the session ended.
    ///
    /// With a [`reconnect`](Self::reconnect) policy the session survives
    /// the server going away: `[reconnected]` is printed on stderr after
    /// each reconnection, and `[gave up reconnecting: ...]` when the client
    /// gives up (the session then ends with that error). Lines typed while
    /// disconnected are sent once reconnected. Input that ends while the
    /// client is reconnecting ends the session when that reconnection
    /// succeeds (closing at once) or gives up.
    ///
    /// # Errors
    ///
    /// An error reading the input or writing the output, or the error that
    /// broke the connection ([`Ending::Broken`]).
    pub fn run_interactive(&mut self) -> Result<()> {
        use std::io::IsTerminal;
        let console = Console::new().mark_received(io::stdout().is_terminal());
        interactive_result(self.run_console(&console))
    }

    /// [`run_interactive`](Self::run_interactive) with any input and
    /// output (for tests and embedding; received lines are not marked).
    /// Input is read on its own thread, which is left behind (blocked
    /// reading) if the server closes first.
    pub fn run_interactive_with<R, W>(&mut self, input: R, output: W) -> Result<()>
    where
        R: BufRead + Send + 'static,
        W: Write,
    {
        interactive_result(self.run_console_with(&Console::new(), input, output))
    }

    /// The interactive session on stdin and stdout as `console` says
    /// (`ws-client`'s flags); see [`run_console_with`](Self::run_console_with).
    ///
    /// # Errors
    ///
    /// As [`run_console_with`](Self::run_console_with).
    pub fn run_console(&mut self, console: &Console) -> Result<Ending> {
        self.run_console_with(console, io::stdin(), io::stdout())
    }

    /// The interactive session as `console` says, on any input and output:
    /// input through [`Console::framer`] to messages (read on its own
    /// thread), received messages through [`Console::render`] to output
    /// lines, a ping every [`ping_interval`](Console::ping_interval) (from
    /// a timer thread); at the end of input a close (1000), or with
    /// [`one_message`](Console::one_message) the one message, then a close
    /// once the first reply was printed (or the
    /// [reply timeout](Console::reply_timeout) passed). Otherwise as
    /// [`run_interactive`](Self::run_interactive), reconnecting included.
    /// The decisions are ws-core's [`ws_core::rt::console`], shared with
    /// the async clients' `run_console`; this only moves the bytes.
    ///
    /// # Errors
    ///
    /// Only the console's own: reading the input (or text input that is
    /// not UTF-8; the session is closed first), writing the output, or
    /// [`Error::Closed`] when not connected. How the connection ended,
    /// errors included, is the [`Ending`].
    pub fn run_console_with<R, W>(
        &mut self,
        console: &Console,
        input: R,
        mut output: W,
    ) -> Result<Ending>
    where
        R: Read + Send + 'static,
        W: Write,
    {
        if let Err(e) = self.relink(&mut |_| {}) {
            self.conn = Conn::Closed;
            return Ok(Ending::Broken(e));
        }
        let writer = match &self.conn {
            Conn::Open { writer, .. } => writer.clone(),
            Conn::Idle => return Err(Error::Closed),
            Conn::Closed => return Ok(Ending::Broken(Error::Closed)),
        };
        let reconnecting = self.retry.is_some();
        let outbox = Arc::new(Outbox::new(writer));
        // Set once the input ended and our close is about to leave: a close
        // received after that is the server's reply, not news, and the end
        // is final.
        let closing = self.closing.clone();
        let input_thread = {
            let (outbox, console) = (outbox.clone(), console.clone());
            thread::Builder::new()
                .name("ws-stdin".into())
                .spawn(move || feed_input(input, &console, &outbox, &closing, reconnecting))?
        };
        let pinger = match console.get_ping_interval() {
            Some(every) => {
                let (outbox, closing) = (outbox.clone(), self.closing.clone());
                let ping = move || {
                    while !outbox.wait_over(every) {
                        if !closing.load(Ordering::SeqCst) {
                            outbox.send(Message::Ping(ws_core::Bytes::new()), false);
                        }
                    }
                };
                Some(thread::Builder::new().name("ws-ping".into()).spawn(ping)?)
            }
            None => None,
        };
        let announce = std::mem::replace(&mut self.announce, reconnecting);
        let mut first_err = None;
        let mut peer_close: Option<Option<CloseFrame>> = None;
        let mut reply: Option<CloseFrame> = None;
        let result = loop {
            match self.recv_relinking(&mut |writer| outbox.relink(writer)) {
                Some(Ok(msg)) => {
                    let closing = self.closing.load(Ordering::SeqCst);
                    if let Some(line) = console.render(&msg, closing) {
                        let printed = writeln!(output, "{line}").and_then(|()| output.flush());
                        if let Err(e) = printed {
                            if let Ok(writer) = self.writer() {
                                let _ = writer.send(Message::Close(None));
                            }
                            break Err(Error::Io(e));
                        }
                    }
                    if Console::is_reply(&msg) && outbox.replied() {
                        // The one reply: close (the input thread is done).
                        self.closing.store(true, Ordering::SeqCst);
                        outbox.send(close_normal(), false);
                    }
                    match msg {
                        Message::Close(frame) if closing => reply = frame,
                        Message::Close(frame) => peer_close = Some(frame),
                        // Anything after the server's close is from a new
                        // connection (reconnected).
                        _ => peer_close = None,
                    }
                }
                Some(Err(e)) => {
                    first_err.get_or_insert(e);
                }
                None => break Ok(()),
            }
        };
        self.announce = announce;
        let (timed_out, input_err) = outbox.end();
        if let Some(pinger) = pinger {
            let _ = pinger.join();
        }
        if input_thread.is_finished() {
            let _ = input_thread.join();
        }
        self.conn = Conn::Closed;
        self.lost = false;
        result?;
        if let Some(e) = input_err {
            return Err(e);
        }
        let closing = self.closing.load(Ordering::SeqCst);
        Ok(Ending::decide(
            timed_out, peer_close, closing, reply, first_err,
        ))
    }

    /// Closes with 1000 (Normal Closure) and waits for the server's reply
    /// and the end of the connection, bounded by the close timeout.
    /// Messages still arriving meanwhile are discarded. Does nothing when
    /// not connected. The end is final: a reconnecting client stops
    /// reconnecting.
    pub fn close(&mut self) -> Result<()> {
        self.closing.store(true, Ordering::SeqCst);
        self.lost = false;
        let Conn::Open { reader, writer } = &mut self.conn else {
            return Ok(());
        };
        let sent = writer.send(Message::Close(Some(CloseFrame::new(CloseCode::NORMAL, ""))));
        let result = match sent {
            Ok(()) | Err(Error::Closed) => loop {
                match reader.read() {
                    Ok(_) => {}
                    Err(Error::Closed) => break Ok(()),
                    Err(e) => break Err(e),
                }
            },
            Err(e) => Err(e),
        };
        self.conn = Conn::Closed;
        result
    }
}

impl Iterator for Messages<'_, Client> {
    type Item = Result<Message>;
    fn next(&mut self) -> Option<Self::Item> {
        self.source.recv()
    }
}
