//! Your own server logic on the shared `Server`: the [`Handler`] trait that
//! every runtime adapter's `Server` calls, what it answers an upgrade with
//! ([`Upgrade`], [`Refusal`]), the connection it acts on inside a callback
//! ([`Socket`]), and the handle that reaches the connection from anywhere
//! else ([`ConnectionHandle`]).
//!
//! # Why synchronous callbacks
//!
//! The callbacks are plain functions called on the connection's own task
//! (or thread, on ws-blocking), from inside
//! [`ServerSession::poll`](crate::server::session::ServerSession::poll), as
//! uWebSockets does. That is the one form that works alike on tokio,
//! async-std, smol and threads: no boxed futures, no `Send` bounds on
//! futures, no runtime to spawn on, and no allocation per message. It also
//! keeps the guarantees of the built-in server: a reply sent from
//! `on_message` goes straight into the connection's write buffer, in order,
//! and flow control works as for the chat (a connection whose publishes
//! congest the hub stops being read). Work that must wait (a database, an
//! HTTP call) is spawned on the user's runtime with a [`ConnectionHandle`],
//! which sends later from any task or thread. A callback must not block:
//! it holds up its own connection (only its own: every connection has its
//! own task or thread).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;

use crate::close::CloseCode;
use crate::connection::{Connection, PreparedMessage};
use crate::error::Error;
use crate::handshake::{Accept, Request, http_response};
use crate::message::Message;
use crate::server::hub::{ClientId, Hub, Target};
use crate::server::metrics::Tally;
use crate::server::registry::Registry;

/// The application behind a `Server`: decides which upgrades to accept and
/// what to do with each connection's messages. One value serves every
/// connection (it is shared, hence `Sync`); per-connection data lives in
/// [`State`](Self::State).
///
/// Lifecycle of one connection, each step on the connection's task:
/// [`on_upgrade`](Self::on_upgrade) (accept or refuse), then
/// [`on_open`](Self::on_open), then [`on_message`](Self::on_message) for
/// every text or binary message in order, then exactly once
/// [`on_close`](Self::on_close) (after the client left the registry and its
/// topics). Pings are answered and close frames handled by the protocol
/// core; the handler sees only data.
pub trait Handler: Send + Sync + 'static {
    /// Per-connection data of your own type, made by
    /// [`on_upgrade`](Self::on_upgrade) and handed to every later callback.
    type State: Send + 'static;

    /// Whether `path` is a WebSocket endpoint. A plain HTTP request there is
    /// answered 426 Upgrade Required; an upgrade request anywhere else 404.
    /// Every path by default.
    fn is_endpoint(&self, path: &str) -> bool {
        let _ = path;
        true
    }

    /// The HTML page served to a plain `GET /` (or `/index.html`), if any.
    fn page(&self) -> Option<&str> {
        None
    }

    /// A plain HTTP `GET` or `HEAD` request (no upgrade) arrived from
    /// `peer`: answer it yourself (a status or monitoring endpoint, reading
    /// the server's counts and [metrics](Registry::metrics) in
    /// `registry`), or `None` (the default) for the usual routing: the
    /// [`page`](Self::page) on `/`, 426 on an endpoint, 404 elsewhere.
    /// Asked before those, so it can serve any path.
    fn on_request(
        &self,
        req: &Request,
        peer: SocketAddr,
        registry: &Registry,
    ) -> Option<PlainResponse> {
        let _ = (req, peer, registry);
        None
    }

    /// A valid upgrade request arrived on an endpoint from `peer`: accept it
    /// (with the connection's state, and optionally a subprotocol and
    /// response headers) or refuse it with an HTTP status and body. This is
    /// where authentication happens: the path, query, headers and cookies
    /// are all in `req`.
    fn on_upgrade(&self, req: &Request, peer: SocketAddr) -> Result<Upgrade<Self::State>, Refusal>;

    /// The connection is open (the 101 is written). Subscribe to topics or
    /// greet the client here.
    fn on_open(&self, ws: &mut Socket<'_>, state: &mut Self::State) {
        let _ = (ws, state);
    }

    /// A text or binary message arrived.
    fn on_message(&self, ws: &mut Socket<'_>, state: &mut Self::State, msg: Message);

    /// The connection ended: `code` and `reason` are those of the first
    /// close frame sent or received (1006 and an empty reason if the
    /// transport ended without one). The connection has left the registry
    /// and every topic; `ws` still tells its id and peer.
    fn on_close(&self, ws: &ConnectionHandle, state: Self::State, code: CloseCode, reason: &str) {
        let _ = (ws, state, code, reason);
    }
}

/// An accepted upgrade: the connection's state and the 101's options.
#[derive(Debug)]
pub struct Upgrade<S> {
    pub(crate) state: S,
    pub(crate) accept: Accept,
}

impl<S> Upgrade<S> {
    /// Accept with this per-connection state, no subprotocol and no extra
    /// headers.
    pub fn new(state: S) -> Self {
        Upgrade {
            state,
            accept: Accept::new(),
        }
    }

    /// Offer subprotocol `protocol`, in preference order: the first one the
    /// client offered is selected (see [`Accept::subprotocol`]).
    pub fn subprotocol(mut self, protocol: impl Into<String>) -> Self {
        self.accept = self.accept.subprotocol(protocol);
        self
    }

    /// The same upgrade with its state mapped (to wrap a handler in another).
    pub fn map_state<T>(self, f: impl FnOnce(S) -> T) -> Upgrade<T> {
        Upgrade {
            state: f(self.state),
            accept: self.accept,
        }
    }

    /// Adds a response header to the 101 (a handshake header such as
    /// `Sec-WebSocket-Accept` may not be set; the request is then answered
    /// 500, since that is a bug in the handler).
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.accept = self.accept.header(name, value);
        self
    }
}

/// A refused upgrade: the HTTP status, headers and body to answer with
/// (then the connection is closed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Refusal {
    /// Refuse with `status` (e.g. 401, 403, 429) and an empty body.
    pub fn new(status: u16) -> Self {
        Refusal {
            status,
            headers: Vec::new(),
            body: String::new(),
        }
    }

    /// 401 Unauthorized with `WWW-Authenticate: Bearer`.
    pub fn unauthorized() -> Self {
        Refusal::new(401)
            .header("WWW-Authenticate", "Bearer")
            .body("unauthorized\n")
    }

    /// 404 Not Found.
    pub fn not_found() -> Self {
        Refusal::new(404).body("not found\n")
    }

    /// Adds a response header.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// The body (sent as `text/plain; charset=utf-8`).
    pub fn body(mut self, body: impl Into<String>) -> Self {
        self.body = body.into();
        self
    }

    /// The status code.
    pub fn status(&self) -> u16 {
        self.status
    }

    /// The complete response; a status or header that cannot be written
    /// (a bug in the handler) becomes a plain 500.
    pub(crate) fn response(&self) -> Bytes {
        let headers: Vec<(&str, &str)> = self
            .headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        http_response(
            self.status,
            "text/plain; charset=utf-8",
            &headers,
            self.body.as_bytes(),
        )
        .unwrap_or_else(|_| internal_error())
    }
}

/// A complete answer to a plain HTTP request
/// ([`Handler::on_request`]): status, content type, body, then the
/// connection is closed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlainResponse {
    status: u16,
    content_type: String,
    headers: Vec<(String, String)>,
    body: Bytes,
}

impl PlainResponse {
    /// `status` with `body` of `content_type`.
    pub fn new(status: u16, content_type: impl Into<String>, body: impl Into<Bytes>) -> Self {
        PlainResponse {
            status,
            content_type: content_type.into(),
            headers: Vec::new(),
            body: body.into(),
        }
    }

    /// `status` with a `text/plain; charset=utf-8` body.
    pub fn text(status: u16, body: impl Into<String>) -> Self {
        Self::new(status, "text/plain; charset=utf-8", body.into())
    }

    /// `200 OK` with an `application/json` body.
    pub fn json(body: impl Into<String>) -> Self {
        Self::new(200, "application/json", body.into())
    }

    /// Adds a response header.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// The status code.
    pub fn status(&self) -> u16 {
        self.status
    }

    /// The body.
    pub fn body(&self) -> &Bytes {
        &self.body
    }

    /// The response's bytes (without the body for a `HEAD`); a status or
    /// header that cannot be written (a bug in the handler) becomes a plain
    /// 500.
    pub(crate) fn to_bytes(&self, include_body: bool) -> Bytes {
        let headers: Vec<(&str, &str)> = self
            .headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        match http_response(self.status, &self.content_type, &headers, &self.body) {
            Ok(mut bytes) if !include_body => bytes.split_to(bytes.len() - self.body.len()),
            Ok(bytes) => bytes,
            Err(_) => internal_error(),
        }
    }
}

/// The answer when the handler's own response cannot be written.
pub(crate) fn internal_error() -> Bytes {
    // Constant parts: cannot fail.
    http_response(
        500,
        "text/plain; charset=utf-8",
        &[],
        b"internal server error\n",
    )
    .unwrap_or_default()
}

/// A connection's identity and a way to reach it from any thread or task:
/// send to it, close it, change its topics. Cheap to clone. Every method
/// goes through the server's registry (the hub), under its flow-control
/// rules, so a send from another thread is ordered with the broadcasts and
/// publishes that reach the same client.
#[derive(Debug, Clone)]
pub struct ConnectionHandle {
    id: ClientId,
    peer: SocketAddr,
    hub: Arc<Hub>,
}

impl ConnectionHandle {
    pub(crate) fn new(id: ClientId, peer: SocketAddr, hub: Arc<Hub>) -> Self {
        ConnectionHandle { id, peer, hub }
    }

    /// The connection's id in the server (unique for the server's lifetime).
    pub fn id(&self) -> ClientId {
        self.id
    }

    /// The client's address.
    pub fn peer_addr(&self) -> SocketAddr {
        self.peer
    }

    /// Whether the connection is still registered (open, not closing).
    pub fn is_open(&self) -> bool {
        self.hub.contains(self.id)
    }

    /// Queues `msg` (text or binary) for this connection. It never waits: a
    /// client that does not keep up is dropped with 1013 under the hub's
    /// rules, as for broadcasts. Reads the clock for those rules (the only
    /// place in this module that does).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidMessage`] for a control message, [`Error::Closed`]
    /// once the connection has left the registry.
    pub fn send(&self, msg: &Message) -> Result<(), Error> {
        self.send_prepared(&PreparedMessage::new(msg)?)
    }

    /// [`send`](Self::send) for a message encoded once for many sends.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] once the connection has left the registry.
    pub fn send_prepared(&self, msg: &PreparedMessage) -> Result<(), Error> {
        let report = self.hub.deliver(
            Target::Client(self.id),
            std::slice::from_ref(msg),
            Instant::now(),
        );
        if report.delivered == 1 {
            Ok(())
        } else {
            Err(Error::Closed)
        }
    }

    /// Closes the connection with `code` and `reason` after what is already
    /// queued for it; it leaves its topics at once.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidMessage`] for a code that may not be sent or a reason
    /// over 123 bytes, [`Error::Closed`] if it is already closing.
    pub fn close(&self, code: CloseCode, reason: &str) -> Result<(), Error> {
        check_close(code, reason)?;
        if self.hub.close_client(self.id, code, reason) {
            Ok(())
        } else {
            Err(Error::Closed)
        }
    }

    /// Subscribes the connection to `topic`; `false` if it has left.
    pub fn subscribe(&self, topic: &str) -> bool {
        self.hub.subscribe(self.id, topic)
    }

    /// Unsubscribes the connection from `topic`; `false` if it was not in it.
    pub fn unsubscribe(&self, topic: &str) -> bool {
        self.hub.unsubscribe(self.id, topic)
    }

    /// The topics the connection is in, sorted.
    pub fn topics(&self) -> Vec<String> {
        self.hub.subscriptions(self.id)
    }
}

/// Checks a close code and reason before they reach a queue, so the error
/// is the caller's and not a silent fallback later.
fn check_close(code: CloseCode, reason: &str) -> Result<(), Error> {
    if !code.is_sendable() {
        return Err(Error::InvalidMessage("close code may not be sent"));
    }
    if reason.len() > crate::close::CloseFrame::MAX_REASON_LEN {
        return Err(Error::InvalidMessage("close reason over 123 bytes"));
    }
    Ok(())
}

/// Broadcasts and publishes made by one poll, sent in order with one hub
/// lock per run of the same target (the chat's batching, see
/// [`Hub::broadcast_all`]).
#[derive(Debug, Default)]
pub(crate) struct Batch {
    target: Option<OwnedTarget>,
    msgs: Vec<PreparedMessage>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum OwnedTarget {
    All,
    Topic(Box<str>),
}

impl OwnedTarget {
    fn as_target(&self) -> Target<'_> {
        match self {
            OwnedTarget::All => Target::All,
            OwnedTarget::Topic(t) => Target::Topic(t),
        }
    }

    fn is(&self, target: Target<'_>) -> bool {
        match (self, target) {
            (OwnedTarget::All, Target::All) => true,
            (OwnedTarget::Topic(a), Target::Topic(b)) => &**a == b,
            _ => false,
        }
    }
}

/// Messages one poll pushes per hub lock, at most: the congestion is
/// checked per message but seen by others per batch, so a batch is also
/// how far one sender can overshoot a high-water mark.
const BATCH: usize = 64;

impl Batch {
    fn push(&mut self, hub: &Hub, target: Target<'_>, msg: PreparedMessage, now: Instant) {
        if !self.target.as_ref().is_some_and(|t| t.is(target)) {
            self.flush(hub, now);
            self.target = Some(match target {
                Target::Topic(t) => OwnedTarget::Topic(t.into()),
                _ => OwnedTarget::All,
            });
        }
        self.msgs.push(msg);
        if self.msgs.len() == BATCH {
            self.flush(hub, now);
        }
    }

    pub(crate) fn flush(&mut self, hub: &Hub, now: Instant) {
        if self.msgs.is_empty() {
            return;
        }
        if let Some(target) = &self.target {
            hub.deliver(target.as_target(), &self.msgs, now);
        }
        self.msgs.clear();
    }
}

/// The connection inside a [`Handler`] callback: send to it directly, close
/// it, change its topics, publish to topics and broadcast.
///
/// A [`send`](Self::send) goes straight into this connection's write buffer
/// (in order, before anything sent later). A [`publish`](Self::publish) or
/// [`broadcast`](Self::broadcast) goes through the hub, encoded once, under
/// its flow control: when it leaves the hub congested, this connection
/// stops being read until the congestion clears (TCP then pushes back on
/// its client), exactly as the chat does.
pub struct Socket<'a> {
    pub(crate) conn: &'a mut Connection,
    pub(crate) handle: &'a ConnectionHandle,
    pub(crate) batch: &'a mut Batch,
    pub(crate) now: Instant,
    /// Whether this callback published or broadcast anything.
    pub(crate) published: bool,
    /// The close this callback started, for `on_close`.
    pub(crate) closed: Option<(CloseCode, String)>,
    /// The messages sent, for the server's counters.
    pub(crate) tally: &'a mut Tally,
}

impl std::fmt::Debug for Socket<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Socket")
            .field("id", &self.handle.id)
            .field("peer", &self.handle.peer)
            .finish_non_exhaustive()
    }
}

impl Socket<'_> {
    /// The connection's id.
    pub fn id(&self) -> ClientId {
        self.handle.id
    }

    /// The client's address.
    pub fn peer_addr(&self) -> SocketAddr {
        self.handle.peer
    }

    /// A handle to this connection for use outside the callback (another
    /// task, another thread, the state of another connection).
    pub fn handle(&self) -> ConnectionHandle {
        self.handle.clone()
    }

    /// The hub's time for this callback (what the adapter passed to
    /// `poll`).
    pub fn now(&self) -> Instant {
        self.now
    }

    /// Sends `msg` to this connection now (into its write buffer, no
    /// queue). Control messages are allowed (a ping, for instance).
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] once the connection is closing,
    /// [`Error::InvalidMessage`] for an invalid control message.
    pub fn send(&mut self, msg: &Message) -> Result<(), Error> {
        self.conn.send(msg)?;
        if msg.is_data() {
            self.tally.sent(msg.payload().len());
        }
        Ok(())
    }

    /// [`send`](Self::send) for a message encoded once for many sends.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] once the connection is closing.
    pub fn send_prepared(&mut self, msg: &PreparedMessage) -> Result<(), Error> {
        self.conn.send_prepared(msg)?;
        self.tally.sent(msg.payload_len());
        Ok(())
    }

    /// Starts the closing handshake with `code` and `reason`.
    ///
    /// # Errors
    ///
    /// As [`Connection::close`].
    pub fn close(&mut self, code: CloseCode, reason: &str) -> Result<(), Error> {
        self.conn.close(code, reason)?;
        self.closed.get_or_insert_with(|| (code, reason.to_owned()));
        Ok(())
    }

    /// Subscribes this connection to `topic` (a connection can be in many).
    pub fn subscribe(&mut self, topic: &str) -> bool {
        self.handle.subscribe(topic)
    }

    /// Unsubscribes this connection from `topic`.
    pub fn unsubscribe(&mut self, topic: &str) -> bool {
        self.handle.unsubscribe(topic)
    }

    /// Queues `msg` (text or binary) for every subscriber of `topic`
    /// (this connection too, if it is one), encoded once.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidMessage`] for a control message.
    pub fn publish(&mut self, topic: &str, msg: &Message) -> Result<(), Error> {
        let msg = PreparedMessage::with_deflate(msg, self.conn.config().get_deflate())?;
        self.push(Target::Topic(topic), msg);
        Ok(())
    }

    /// Queues `msg` (text or binary) for every client of the server (this
    /// one too), encoded once.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidMessage`] for a control message.
    pub fn broadcast(&mut self, msg: &Message) -> Result<(), Error> {
        let msg = PreparedMessage::with_deflate(msg, self.conn.config().get_deflate())?;
        self.push(Target::All, msg);
        Ok(())
    }

    fn push(&mut self, target: Target<'_>, msg: PreparedMessage) {
        self.published = true;
        self.batch.push(&self.handle.hub, target, msg, self.now);
    }
}
