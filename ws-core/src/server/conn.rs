//! One server-side connection from its first request byte to the closed
//! socket, sans-IO: the request head, routing (the handler's
//! [`on_upgrade`](crate::server::Handler::on_upgrade), the page, the errors),
//! the response, the upgrade into a [`ServerSession`], and the closing. Every
//! adapter's server is an accept loop plus an executor of this machine, so
//! the HTTP phase is written once, like the session.
//!
//! The executor's loop, on any runtime:
//!
//! 1. read into [`read_buf`](ServerConnection::read_buf) while
//!    [`wants_read`](ServerConnection::wants_read) (zero bytes:
//!    [`handle_eof`](ServerConnection::handle_eof));
//! 2. [`poll`](ServerConnection::poll) at `now` after anything happened;
//! 3. write what it has queued (it implements [`Transmit`], so
//!    [`rt::write`](crate::rt) or any vectored write loop drains it);
//! 4. when [`wants_write_shutdown`](ServerConnection::wants_write_shutdown),
//!    shut the socket's write side and call
//!    [`write_shut`](ServerConnection::write_shut);
//! 5. stop and close the socket once
//!    [`is_finished`](ServerConnection::is_finished); otherwise wait for
//!    readable (if it wants to read), writable (if it
//!    [`wants_write`](ServerConnection::wants_write)), the hub's wake, and
//!    [`poll_timeout`](ServerConnection::poll_timeout).
//!
//! If the socket fails, the executor hands the error to
//! [`Served::transport_error`] (for the connection's log) and drops the
//! connection.
//!
//! That loop is written against the [`Served`] trait, which this machine
//! implements and so does its TLS layer
//! (`server::tls::TlsConnection`, cargo feature
//! `tls`): the adapters' loops are generic over it, so one loop serves ws://
//! and wss://, monomorphised for each (nothing dynamic on the plaintext
//! path).

use std::io::IoSlice;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

use crate::config::{Config, Role};
use crate::connection::{Connection, Transmit};
use crate::error::Error;
use crate::handshake::ServerHandshake;
use crate::server::admission::{Admission, Permit, Ticket};
use crate::server::handler::Handler;
use crate::server::hub::{Hub, Wake};
use crate::server::registry::Registry;
use crate::server::session::ServerSession;
use crate::server::site::{Route, route_with_config};
use crate::trace::{self, ConnSpan};

/// How long a connection answered with a plain HTTP response keeps reading
/// (and discarding) after its write side is shut, so that request bytes it
/// never read do not turn the close into a reset that could destroy the
/// response on the way to the client.
pub const LINGER: Duration = Duration::from_millis(200);

/// Where the connection is.
// The session is by far the largest variant, and the one a connection
// spends its life in: boxing it would add an allocation and a pointer to
// every connection to save bytes only during the handshake. The other
// variants carry what only they need, inside the session's size.
#[allow(clippy::large_enum_variant)]
enum Phase<H: Handler> {
    /// Reading the request head, until the handshake deadline.
    Request(ServerHandshake),
    /// Writing a final HTTP response (the rest of it), until a deadline (a
    /// client that does not read its response does not hold the connection).
    Respond(Bytes, Instant, Discard),
    /// The response is written; the write side is to be shut (once), then
    /// what arrives is discarded until the peer's end or the deadline.
    Linger {
        until: Instant,
        shut: bool,
        discard: Discard,
    },
    /// The WebSocket session; its transmit queue starts with the 101.
    Open(ServerSession<H>),
    /// Over: close the socket.
    Done(Discard),
}

/// Where bytes read outside the request and the session go (emptied before
/// each read; no memory until a read needs it).
type Discard = BytesMut;

/// What only the HTTP phase needs: the session takes its own handler, hub
/// and wake, its connection the configuration, so an upgraded connection
/// drops these (an idle connection does not carry them twice).
struct Http<H: Handler> {
    handler: Arc<H>,
    hub: Arc<Hub>,
    wake: Arc<dyn Wake>,
    config: Config,
    /// When the request head must have arrived.
    deadline: Instant,
}

/// One server-side connection, from the first request byte to the end
/// (see the [module docs](self) for the executor's loop).
pub struct ServerConnection<H: Handler> {
    phase: Phase<H>,
    /// Until the session opens (kept by a connection answered in plain
    /// HTTP); boxed so that an open session's connection is only its
    /// session plus the fields below.
    http: Option<Box<Http<H>>>,
    peer: SocketAddr,
    /// The peer ended its side before the session existed.
    eof: bool,
    /// The time of the last poll.
    now: Instant,
    /// The connection's log span (empty without the `tracing` feature).
    span: ConnSpan,
    /// Its place under the server's `max_connections`, freed when the
    /// machine is dropped (see [`admitted`](Self::admitted)).
    permit: Option<Permit>,
}

/// Bytes one lingering read takes.
const DISCARD: usize = 1024;

impl<H: Handler> std::fmt::Debug for ServerConnection<H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let phase = match &self.phase {
            Phase::Request(_) => "request",
            Phase::Respond(..) => "respond",
            Phase::Linger { .. } => "linger",
            Phase::Open(_) => "open",
            Phase::Done(_) => "done",
        };
        f.debug_struct("ServerConnection")
            .field("phase", &phase)
            .field("peer", &self.peer)
            .finish_non_exhaustive()
    }
}

impl<H: Handler> ServerConnection<H> {
    /// A connection from `peer` accepted at `now`, served by `handler`; a
    /// session it opens registers in `hub` and is woken through `wake`.
    /// The request head must arrive within `config`'s handshake timeout.
    pub fn new(
        handler: Arc<H>,
        hub: Arc<Hub>,
        wake: Arc<dyn Wake>,
        peer: SocketAddr,
        config: Config,
        now: Instant,
    ) -> Self {
        let span = ConnSpan::new(peer, hub.runtime_name());
        ServerConnection {
            phase: Phase::Request(ServerHandshake::new()),
            span,
            http: Some(Box::new(Http {
                handler,
                hub,
                wake,
                deadline: now + config.get_handshake_timeout(),
                config,
            })),
            peer,
            eof: false,
            now,
            permit: None,
        }
    }

    /// Applies the accept loop's decision (see
    /// [`admission`](crate::server::admission)): an admitted connection
    /// keeps its [`Permit`] until the machine is dropped, so the place frees
    /// when the connection ends however it ends; a refused one answers
    /// `503 Service Unavailable` with `Retry-After` at once, without
    /// reading its request (drained while lingering), and closes.
    pub fn admitted(mut self, ticket: Ticket) -> Self {
        match ticket {
            Ticket::Admitted(permit) => self.permit = Some(permit),
            Ticket::Refused => {
                let until = self.now + self.config().get_handshake_timeout();
                self.phase = Phase::Respond(Admission::refusal(), until, Discard::new());
            }
        }
        self
    }

    /// Where to read the next bytes into (read straight into it, then
    /// [`poll`](Self::poll)).
    pub fn read_buf(&mut self) -> &mut BytesMut {
        match &mut self.phase {
            Phase::Request(hs) => hs.read_buf(),
            Phase::Open(s) => s.connection().read_buf(),
            // Lingering (or read when not asked to): the bytes are dropped.
            Phase::Linger { discard, .. } | Phase::Respond(.., discard) | Phase::Done(discard) => {
                discard.clear();
                if discard.capacity() < DISCARD {
                    discard.reserve(DISCARD);
                }
                discard
            }
        }
    }

    /// The peer ended its side (a read returned zero bytes).
    pub fn handle_eof(&mut self) {
        match &mut self.phase {
            Phase::Open(s) => s.connection().handle_eof(),
            Phase::Request(_) | Phase::Linger { .. } => self.phase = Phase::Done(Discard::new()),
            // Still writing the response: finish it, then end.
            Phase::Respond(..) => self.eof = true,
            Phase::Done(_) => {}
        }
    }

    /// Does everything that needs no I/O at `now`: parses the request head
    /// once complete and routes it (a response to write, or the upgrade: the
    /// 101 is queued, the session opened and the handler's `on_open` run),
    /// drives the session ([`ServerSession::poll`]), fires the handshake and
    /// linger deadlines.
    ///
    /// An error from the session (a protocol violation, the peer vanishing)
    /// is returned for logging; its close frame is already queued and the
    /// executor carries on until [`is_finished`](Self::is_finished).
    pub fn poll(&mut self, now: Instant) -> Result<(), Error> {
        self.now = now;
        let _entered = self.span.enter();
        loop {
            match &mut self.phase {
                Phase::Request(hs) => {
                    let Some(http) = self.http.as_deref() else {
                        // Not reached: the request phase keeps its state.
                        self.phase = Phase::Done(Discard::new());
                        return Ok(());
                    };
                    // Whether a refusal counts as a failed handshake.
                    let mut upgrade = true;
                    let routed = match hs.poll_request() {
                        Ok(Some(req)) => {
                            self.span.record_path(req.path());
                            upgrade = req.is_upgrade();
                            let plain = !upgrade && matches!(req.method(), "GET" | "HEAD");
                            let reply = if plain {
                                let registry = Registry::new(http.hub.clone());
                                http.handler.on_request(&req, self.peer, &registry)
                            } else {
                                None
                            };
                            match reply {
                                Some(r) => Route::Respond {
                                    response: r.to_bytes(req.method() != "HEAD"),
                                },
                                None => {
                                    route_with_config(&req, &*http.handler, self.peer, &http.config)
                                }
                            }
                        }
                        Ok(None) => {
                            if now >= http.deadline {
                                // Too slow to say what it wants: let go.
                                trace::info!(
                                    "timeout: no request head within the handshake timeout"
                                );
                                self.phase = Phase::Done(Discard::new());
                            }
                            return Ok(());
                        }
                        Err(e) => {
                            trace::debug!(error = %e, "malformed request head");
                            Route::Respond {
                                response: e.response(),
                            }
                        }
                    };
                    self.phase = match routed {
                        Route::Respond { response } => {
                            let status = trace::status_of(&response);
                            if upgrade {
                                http.hub.counters().handshake_failed(status);
                                trace::info!(status, "handshake refused");
                            } else {
                                trace::debug!(status, "plain HTTP request answered");
                            }
                            let until = now + http.config.get_handshake_timeout();
                            Phase::Respond(response, until, Discard::new())
                        }
                        Route::Upgrade {
                            response,
                            state,
                            deflate,
                        } => {
                            let buffered = hs.take_remaining();
                            let Some(http) = self.http.take() else {
                                return Ok(());
                            };
                            let Http {
                                handler,
                                hub,
                                wake,
                                config,
                                ..
                            } = *http;
                            let config = config.negotiated_deflate(deflate);
                            let mut conn =
                                Connection::with_buffered(Role::Server, config, buffered);
                            conn.queue_raw(response);
                            Phase::Open(ServerSession::new(
                                conn, handler, state, self.peer, &hub, wake, now,
                            ))
                        }
                    };
                }
                Phase::Respond(_, until, _) => {
                    if now >= *until {
                        self.phase = Phase::Done(Discard::new());
                    }
                    return Ok(());
                }
                Phase::Linger { until, .. } => {
                    if now >= *until {
                        self.phase = Phase::Done(Discard::new());
                    }
                    return Ok(());
                }
                Phase::Open(s) => {
                    let result = s.poll(now);
                    if s.is_finished() {
                        self.phase = Phase::Done(Discard::new());
                    }
                    return result;
                }
                Phase::Done(_) => return Ok(()),
            }
        }
    }

    /// Whether to read from the socket now.
    pub fn wants_read(&self) -> bool {
        match &self.phase {
            Phase::Request(_) | Phase::Linger { .. } => true,
            Phase::Open(s) => s.wants_read(),
            Phase::Respond(..) | Phase::Done(_) => false,
        }
    }

    /// Bytes queued for the socket now.
    pub fn buffered_transmit(&self) -> usize {
        match &self.phase {
            Phase::Respond(rest, ..) => rest.len(),
            Phase::Open(s) => s.buffered_transmit(),
            _ => 0,
        }
    }

    /// Whether bytes are queued for the socket.
    pub fn wants_write(&self) -> bool {
        match &self.phase {
            Phase::Respond(rest, ..) => !rest.is_empty(),
            Phase::Open(s) => s.wants_write(),
            _ => false,
        }
    }

    /// Whether the executor should shut the socket's write side now (a plain
    /// response was written); call [`write_shut`](Self::write_shut) after.
    pub fn wants_write_shutdown(&self) -> bool {
        matches!(self.phase, Phase::Linger { shut: false, .. })
    }

    /// The socket's write side is shut.
    pub fn write_shut(&mut self) {
        if let Phase::Linger { shut, .. } = &mut self.phase {
            *shut = true;
        }
    }

    /// When [`poll`](Self::poll) next needs calling for a timer.
    pub fn poll_timeout(&mut self, now: Instant) -> Option<Instant> {
        match &mut self.phase {
            Phase::Request(_) => self.http.as_ref().map(|h| h.deadline),
            Phase::Respond(_, until, _) | Phase::Linger { until, .. } => Some(*until),
            Phase::Open(s) => s.poll_timeout(now),
            Phase::Done(_) => None,
        }
    }

    /// Whether the connection is over: close the socket.
    pub fn is_finished(&self) -> bool {
        match &self.phase {
            Phase::Done(_) => true,
            Phase::Open(s) => s.is_finished(),
            _ => false,
        }
    }

    /// The WebSocket session, once upgraded.
    pub fn session(&mut self) -> Option<&mut ServerSession<H>> {
        match &mut self.phase {
            Phase::Open(s) => Some(s),
            _ => None,
        }
    }

    /// Whether the connection was upgraded (and not yet over).
    pub fn is_open(&self) -> bool {
        matches!(self.phase, Phase::Open(_))
    }

    /// Frees the session's empty buffers (see
    /// [`Connection::release_idle_buffers`]); call when the socket has no
    /// more to read and the executor is about to wait. Returns the bytes
    /// freed.
    pub fn release_idle_buffers(&mut self) -> usize {
        match &mut self.phase {
            Phase::Open(s) => s.connection().release_idle_buffers(),
            _ => 0,
        }
    }

    /// Whether the session is paused by the hub's congestion (see
    /// [`ServerSession::is_paused`]); it is woken through its wake when
    /// that clears.
    pub fn is_paused(&self) -> bool {
        matches!(&self.phase, Phase::Open(s) if s.is_paused())
    }

    /// The queued bytes for one write made outside the executor's lock
    /// (the blocking server): a session's whole output buffer, which counts
    /// against its write buffer limit until [`written`](Self::written)
    /// (see [`ServerSession::take_for_write`]); a plain response stays
    /// queued (a cheap reference to it is returned) until written. Empty:
    /// nothing to write.
    pub fn take_for_write(&mut self) -> Bytes {
        match &mut self.phase {
            Phase::Open(s) => s.take_for_write(),
            Phase::Respond(rest, ..) => rest.clone(),
            _ => Bytes::new(),
        }
    }

    /// `n` bytes taken by [`take_for_write`](Self::take_for_write) are on
    /// the wire.
    pub fn written(&mut self, n: usize) {
        match &mut self.phase {
            Phase::Open(s) => s.written(n),
            _ => self.advance_transmit(n),
        }
    }

    /// The configuration the connection was accepted with (once upgraded,
    /// its WebSocket connection's, which adds the negotiated extension).
    /// After a session has ended (its configuration went with it), the
    /// default configuration.
    pub fn config(&self) -> &Config {
        static ENDED: std::sync::OnceLock<Config> = std::sync::OnceLock::new();
        match (&self.http, &self.phase) {
            (Some(http), _) => &http.config,
            (None, Phase::Open(s)) => s.config(),
            _ => ENDED.get_or_init(Config::default),
        }
    }

    /// The peer's address.
    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// The connection's log span (peer, runtime, path), for what an
    /// executor or a layer above does for it (empty without the `tracing`
    /// feature).
    pub fn span(&self) -> &ConnSpan {
        &self.span
    }
}

/// With `tracing`, a connection dropped by its executor before it finished
/// (the transport failed, the server stopped) says so, and its session ends
/// inside the connection's span.
#[cfg(feature = "tracing")]
impl<H: Handler> Drop for ServerConnection<H> {
    fn drop(&mut self) {
        let _entered = self.span.enter();
        if !self.is_finished() {
            trace::debug!("transport ended before the connection finished (I/O error or shutdown)");
        }
        self.phase = Phase::Done(Discard::new());
    }
}

/// What every adapter's server executes: [`ServerConnection`] (ws://) or
/// `server::tls::TlsConnection` (wss://, the same
/// machine under TLS), one executor loop for both (see the
/// [module docs](self) for that loop). The methods are
/// [`ServerConnection`]'s, with the same meaning for every implementor: raw
/// socket bytes go into [`read_buf`](Self::read_buf), and what
/// [`Transmit`] (or [`take_for_write`](Self::take_for_write)) hands out goes
/// to the socket as it is.
///
/// Adapters take it as a generic parameter, monomorphised per implementor:
/// the plaintext path runs exactly the code it ran before the trait existed.
pub trait Served: Transmit + Send + std::fmt::Debug + 'static {
    /// The application's handler.
    type Handler: Handler;

    /// Where to read the next socket bytes into (read straight into its
    /// spare capacity, then [`poll`](Self::poll)).
    fn read_buf(&mut self) -> &mut BytesMut;
    /// The peer ended its side (a read returned zero bytes).
    fn handle_eof(&mut self);
    /// Does everything that needs no I/O at `now` (see
    /// [`ServerConnection::poll`]). An error is for logging; the executor
    /// carries on until [`is_finished`](Self::is_finished).
    fn poll(&mut self, now: Instant) -> Result<(), Error>;
    /// Whether to read from the socket now.
    fn wants_read(&self) -> bool;
    /// Bytes queued for the socket now.
    fn buffered_transmit(&self) -> usize;
    /// Whether bytes are queued for the socket.
    fn wants_write(&self) -> bool;
    /// Whether to shut the socket's write side now; call
    /// [`write_shut`](Self::write_shut) after.
    fn wants_write_shutdown(&self) -> bool;
    /// The socket's write side is shut.
    fn write_shut(&mut self);
    /// When [`poll`](Self::poll) next needs calling for a timer.
    fn poll_timeout(&mut self, now: Instant) -> Option<Instant>;
    /// Whether the connection is over: close the socket.
    fn is_finished(&self) -> bool;
    /// Whether the connection was upgraded (and not yet over).
    fn is_open(&self) -> bool;
    /// Whether the session is paused by the hub's congestion.
    fn is_paused(&self) -> bool;
    /// The WebSocket session, once upgraded.
    fn session(&mut self) -> Option<&mut ServerSession<Self::Handler>>;
    /// Frees empty buffers; call when the socket has no more to read and
    /// the executor is about to wait.
    fn release_idle_buffers(&mut self);
    /// The queued bytes for one write made outside the executor's lock;
    /// they count as queued until [`written`](Self::written) (see
    /// [`ServerConnection::take_for_write`]).
    fn take_for_write(&mut self) -> Bytes;
    /// `n` bytes taken by [`take_for_write`](Self::take_for_write) are on
    /// the wire.
    fn written(&mut self, n: usize);
    /// The executor's socket failed with `error` and the connection is
    /// about to be dropped: logged (at `debug`, in the connection's span)
    /// with the `tracing` feature; nothing without it.
    fn transport_error(&mut self, error: &dyn std::fmt::Display);
}

impl<H: Handler> Served for ServerConnection<H> {
    type Handler = H;

    #[inline]
    fn read_buf(&mut self) -> &mut BytesMut {
        ServerConnection::read_buf(self)
    }
    #[inline]
    fn handle_eof(&mut self) {
        ServerConnection::handle_eof(self)
    }
    #[inline]
    fn poll(&mut self, now: Instant) -> Result<(), Error> {
        ServerConnection::poll(self, now)
    }
    #[inline]
    fn wants_read(&self) -> bool {
        ServerConnection::wants_read(self)
    }
    #[inline]
    fn buffered_transmit(&self) -> usize {
        ServerConnection::buffered_transmit(self)
    }
    #[inline]
    fn wants_write(&self) -> bool {
        ServerConnection::wants_write(self)
    }
    #[inline]
    fn wants_write_shutdown(&self) -> bool {
        ServerConnection::wants_write_shutdown(self)
    }
    #[inline]
    fn write_shut(&mut self) {
        ServerConnection::write_shut(self)
    }
    #[inline]
    fn poll_timeout(&mut self, now: Instant) -> Option<Instant> {
        ServerConnection::poll_timeout(self, now)
    }
    #[inline]
    fn is_finished(&self) -> bool {
        ServerConnection::is_finished(self)
    }
    #[inline]
    fn is_open(&self) -> bool {
        ServerConnection::is_open(self)
    }
    #[inline]
    fn is_paused(&self) -> bool {
        ServerConnection::is_paused(self)
    }
    #[inline]
    fn session(&mut self) -> Option<&mut ServerSession<H>> {
        ServerConnection::session(self)
    }
    #[inline]
    fn release_idle_buffers(&mut self) {
        ServerConnection::release_idle_buffers(self);
    }
    #[inline]
    fn take_for_write(&mut self) -> Bytes {
        ServerConnection::take_for_write(self)
    }
    #[inline]
    fn written(&mut self, n: usize) {
        ServerConnection::written(self, n)
    }
    #[inline]
    fn transport_error(&mut self, error: &dyn std::fmt::Display) {
        let _entered = self.span.enter();
        trace::debug!(error = %error, "I/O error");
        let _ = error;
    }
}

impl<H: Handler> Transmit for ServerConnection<H> {
    fn transmit_slices<'a>(&'a mut self, dst: &mut [IoSlice<'a>]) -> usize {
        match &mut self.phase {
            Phase::Respond(rest, ..) if !rest.is_empty() && !dst.is_empty() => {
                dst[0] = IoSlice::new(rest);
                1
            }
            Phase::Open(s) => s.connection().transmit_slices(dst),
            _ => 0,
        }
    }

    fn advance_transmit(&mut self, n: usize) {
        match &mut self.phase {
            Phase::Respond(rest, _, discard) => {
                let _ = rest.split_to(n.min(rest.len()));
                if rest.is_empty() {
                    // The response is out: linger (from the last poll's
                    // time, at most one write earlier), or end at once if
                    // the peer already left.
                    let discard = std::mem::take(discard);
                    self.phase = if self.eof {
                        Phase::Done(discard)
                    } else {
                        Phase::Linger {
                            until: self.now + LINGER,
                            shut: false,
                            discard,
                        }
                    };
                }
            }
            Phase::Open(s) => s.connection().advance_transmit(n),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handshake::{ClientHandshake, ClientRequest};
    use crate::message::Message;
    use crate::server::demo::Echo;
    use crate::server::site::INDEX_HTML;

    const PEER: SocketAddr = SocketAddr::V4(std::net::SocketAddrV4::new(
        std::net::Ipv4Addr::LOCALHOST,
        40000,
    ));

    struct Nop;
    impl Wake for Nop {
        fn wake(&self) {}
    }

    fn conn_at(now: Instant) -> (ServerConnection<Echo>, Arc<Hub>) {
        let hub = Arc::new(Hub::default());
        let c = ServerConnection::new(
            Arc::new(Echo),
            hub.clone(),
            Arc::new(Nop),
            PEER,
            Config::default().handshake_timeout(Duration::from_secs(2)),
            now,
        );
        (c, hub)
    }

    fn feed(c: &mut ServerConnection<Echo>, bytes: &[u8], now: Instant) {
        assert!(c.wants_read());
        c.read_buf().extend_from_slice(bytes);
        c.poll(now).unwrap();
    }

    /// Everything queued, as one write loop would drain it.
    fn drain(c: &mut ServerConnection<Echo>) -> Vec<u8> {
        let mut out = Vec::new();
        loop {
            let mut slices = [IoSlice::new(&[]); 8];
            let count = c.transmit_slices(&mut slices);
            let n: usize = slices[..count].iter().map(|s| s.len()).sum();
            if n == 0 {
                return out;
            }
            for s in &slices[..count] {
                out.extend_from_slice(s);
            }
            c.advance_transmit(n);
        }
    }

    fn upgrade_request() -> (ClientHandshake, bytes::Bytes) {
        ClientHandshake::new(&ClientRequest::new("127.0.0.1", 80, "/ws"))
    }

    /// What an idle upgraded connection holds inline (its executor's task
    /// stores this): the session and its `Connection`, not a second copy
    /// of the configuration, handler, hub and wake the HTTP phase needed.
    /// Measured 808 bytes (session 736; 848 with `tracing`, its span) on x86_64; before the HTTP phase's
    /// state moved out, 1,064 (session 792). A field added here costs every
    /// idle connection its size: move rarely used state behind a `Box`.
    #[test]
    fn an_upgraded_connection_keeps_no_http_phase_state_inline() {
        use crate::server::site::ServerMode;
        let conn = std::mem::size_of::<ServerConnection<ServerMode>>();
        let session = std::mem::size_of::<ServerSession<ServerMode>>();
        // With the `tracing` feature each connection also holds its span.
        #[cfg(feature = "tracing")]
        let span = std::mem::size_of::<tracing::Span>();
        #[cfg(not(feature = "tracing"))]
        let span = 0;
        assert!(conn <= 832 + span, "ServerConnection is {conn} bytes");
        assert!(session <= 736, "ServerSession is {session} bytes");
        // The connection adds at most its own bookkeeping to the session.
        assert!(conn - session <= 96 + span, "{conn} - {session}");
    }

    #[test]
    fn a_connection_refused_at_the_limit_answers_503_drains_and_ends() {
        let now = Instant::now();
        let admission = Admission::new(Some(1));
        let (first, hub) = conn_at(now);
        let first = first.admitted(admission.admit());
        let (second, _) = conn_at(now);
        let mut second = second.admitted(admission.admit());
        assert_eq!((admission.live(), admission.refused()), (1, 1));
        // The 503 leaves before the request is read; no session opens.
        assert!(second.wants_write() && !second.wants_read());
        let out = String::from_utf8(drain(&mut second)).unwrap();
        assert!(out.starts_with("HTTP/1.1 503 "), "{out}");
        assert!(out.contains("Retry-After: 1\r\n"), "{out}");
        assert!(second.wants_write_shutdown());
        second.write_shut();
        let (_, request) = upgrade_request();
        feed(&mut second, &request, now);
        assert!(!second.is_open() && hub.is_empty());
        second.poll(now + LINGER).unwrap();
        assert!(second.is_finished());
        // The admitted connection's place frees when it is dropped.
        drop(first);
        assert_eq!(admission.live(), 0);
        assert!(matches!(admission.admit(), Ticket::Admitted(_)));
    }

    #[test]
    fn an_upgrade_writes_the_101_then_serves_frames_sent_right_behind_it() {
        let now = Instant::now();
        let (mut c, hub) = conn_at(now);
        let (mut hs, request) = upgrade_request();
        let mut client = Connection::new(Role::Client, Config::default());
        client.send(&Message::text("pipelined")).unwrap();
        let mut bytes = request.to_vec();
        bytes.extend_from_slice(&client.take_transmit());
        // In two reads, split inside the head.
        feed(&mut c, &bytes[..20], now);
        assert!(!c.is_open() && !c.wants_write());
        feed(&mut c, &bytes[20..], now);
        assert!(c.is_open() && c.wants_write());
        assert_eq!(hub.len(), 1, "registered before the 101 leaves");
        let out = drain(&mut c);
        let response = hs.feed(&out).unwrap().expect("a complete 101");
        assert_eq!(response.status(), 101);
        client.handle_bytes(&hs.take_remaining());
        assert_eq!(
            client.poll_message().unwrap(),
            Some(Message::text("pipelined"))
        );
        c.handle_eof();
        assert!(matches!(c.poll(now), Err(Error::AbnormalClosure)));
        drain(&mut c);
        assert!(c.is_finished());
    }

    /// Another connection on the same hub.
    fn on_hub(hub: &Arc<Hub>, now: Instant) -> ServerConnection<Echo> {
        ServerConnection::new(
            Arc::new(Echo),
            hub.clone(),
            Arc::new(Nop),
            PEER,
            Config::default(),
            now,
        )
    }

    #[test]
    fn a_refused_upgrade_is_counted_by_its_status_and_a_plain_request_is_not() {
        let now = Instant::now();
        let (mut c, hub) = conn_at(now);
        let (_, request) = upgrade_request();
        let bad = String::from_utf8(request.to_vec())
            .unwrap()
            .replace("Sec-WebSocket-Version: 13", "Sec-WebSocket-Version: 12");
        feed(&mut c, bad.as_bytes(), now);
        let out = String::from_utf8(drain(&mut c)).unwrap();
        assert!(out.starts_with("HTTP/1.1 426 "), "{out}");
        let mut c = on_hub(&hub, now);
        feed(&mut c, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", now);
        assert!(
            String::from_utf8(drain(&mut c))
                .unwrap()
                .starts_with("HTTP/1.1 200 ")
        );
        let m = hub.metrics();
        assert_eq!(m.handshake_failures, [(426, 1)], "the page is no failure");
        assert_eq!(m.connections_total, 0);
    }

    #[test]
    fn the_handler_answers_plain_requests_before_the_default_routing() {
        let now = Instant::now();
        let (mut up, hub) = conn_at(now);
        let (_, request) = upgrade_request();
        feed(&mut up, &request, now);
        let mut c = on_hub(&hub, now);
        feed(&mut c, b"GET /clients HTTP/1.1\r\nHost: x\r\n\r\n", now);
        let out = String::from_utf8(drain(&mut c)).unwrap();
        assert!(out.starts_with("HTTP/1.1 200 "), "{out}");
        assert!(out.contains("Content-Type: application/json\r\n"), "{out}");
        assert!(out.ends_with("\r\n\r\n{\"clients\":1}"), "{out}");
        let (mut head, _) = conn_at(now);
        feed(&mut head, b"HEAD /clients HTTP/1.1\r\nHost: x\r\n\r\n", now);
        let out = String::from_utf8(drain(&mut head)).unwrap();
        assert!(
            out.starts_with("HTTP/1.1 200 ") && out.ends_with("\r\n\r\n"),
            "{out}"
        );
        assert!(out.contains("Content-Length: 13\r\n"), "{out}");
    }

    #[test]
    fn a_plain_request_is_answered_then_the_write_side_shut_then_it_lingers() {
        let now = Instant::now();
        let (mut c, hub) = conn_at(now);
        feed(&mut c, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", now);
        assert!(!c.wants_read(), "not read while the response is written");
        let out = String::from_utf8(drain(&mut c)).unwrap();
        assert!(out.starts_with("HTTP/1.1 200 OK\r\n") && out.ends_with(INDEX_HTML));
        assert!(
            c.wants_write_shutdown(),
            "as soon as the response is written"
        );
        c.write_shut();
        assert!(!c.wants_write_shutdown(), "once");
        assert!(c.wants_read() && !c.is_finished(), "lingering");
        feed(&mut c, b"unread junk", now);
        assert!(!c.is_finished());
        assert_eq!(c.poll_timeout(now), Some(now + LINGER));
        c.poll(now + LINGER).unwrap();
        assert!(c.is_finished(), "the linger ends at its deadline");
        assert_eq!(hub.len(), 0, "no session");
    }

    #[test]
    fn a_malformed_head_gets_400_and_the_peers_end_ends_the_linger() {
        let now = Instant::now();
        let (mut c, _) = conn_at(now);
        feed(&mut c, b"GARBAGE\r\n\r\n", now);
        let out = String::from_utf8(drain(&mut c)).unwrap();
        assert!(out.starts_with("HTTP/1.1 400 "), "{out}");
        c.poll(now).unwrap();
        c.write_shut();
        c.handle_eof();
        assert!(c.is_finished());
    }

    #[test]
    fn a_head_that_does_not_arrive_in_time_is_let_go_silently() {
        let now = Instant::now();
        let (mut c, _) = conn_at(now);
        feed(&mut c, b"GET / HTTP/1.1\r\n", now);
        let deadline = c.poll_timeout(now).unwrap();
        assert_eq!(deadline, now + Duration::from_secs(2));
        c.poll(deadline - Duration::from_millis(1)).unwrap();
        assert!(!c.is_finished());
        c.poll(deadline).unwrap();
        assert!(c.is_finished() && !c.wants_write());
    }

    #[test]
    fn a_client_that_does_not_read_its_response_is_let_go_at_a_deadline() {
        let now = Instant::now();
        let (mut c, _) = conn_at(now);
        feed(&mut c, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", now);
        assert!(c.wants_write());
        let later = now + Duration::from_secs(1);
        assert_eq!(c.poll_timeout(later), Some(now + Duration::from_secs(2)));
        c.poll(later).unwrap();
        assert!(!c.is_finished());
        c.poll(now + Duration::from_secs(2)).unwrap();
        assert!(c.is_finished() && !c.wants_write());
    }

    #[test]
    fn the_peers_end_during_the_head_or_the_response_ends_the_connection() {
        let now = Instant::now();
        let (mut c, _) = conn_at(now);
        feed(&mut c, b"GET / HT", now);
        c.handle_eof();
        assert!(c.is_finished());
        let (mut c, _) = conn_at(now);
        feed(&mut c, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", now);
        c.handle_eof();
        assert!(!c.is_finished(), "the response is still written");
        drain(&mut c);
        assert!(c.is_finished(), "then it ends without lingering");
    }

    #[test]
    fn the_queued_bytes_are_counted_in_every_phase() {
        let now = Instant::now();
        let (mut c, _) = conn_at(now);
        assert_eq!(c.buffered_transmit(), 0, "nothing before the head");
        feed(&mut c, b"GET /nowhere HTTP/1.1\r\nHost: x\r\n\r\n", now);
        let queued = c.buffered_transmit();
        assert!(queued > 20, "the 404 response is queued: {queued}");
        // An empty slice array takes nothing (and does not panic).
        assert_eq!(c.transmit_slices(&mut []), 0);
        c.advance_transmit(10);
        assert_eq!(c.buffered_transmit(), queued - 10);
        drain(&mut c);
        assert_eq!(c.buffered_transmit(), 0, "lingering: nothing queued");
        assert!(format!("{c:?}").contains("\"linger\""), "{c:?}");
        // Open: the session's output (the 101) counts.
        let (mut c, _) = conn_at(now);
        assert!(format!("{c:?}").contains("\"request\""), "{c:?}");
        assert!(format!("{c:?}").contains("127.0.0.1:40000"), "{c:?}");
        let (_, request) = upgrade_request();
        feed(&mut c, &request, now);
        assert!(format!("{c:?}").contains("\"open\""), "{c:?}");
        let out = drain(&mut c).len();
        assert!(out > 0);
        let mut client = Connection::new(Role::Client, Config::default());
        client.send(&Message::binary(vec![7u8; 300])).unwrap();
        feed(&mut c, &client.take_transmit(), now);
        assert!(c.buffered_transmit() >= 300, "the echo is queued");
        assert_eq!(c.buffered_transmit(), drain(&mut c).len());
    }

    #[test]
    fn a_lingering_read_takes_at_least_a_kibibyte_and_keeps_nothing() {
        let now = Instant::now();
        let (mut c, _) = conn_at(now);
        feed(&mut c, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", now);
        drain(&mut c);
        c.write_shut();
        let buf = c.read_buf();
        assert!(buf.capacity() - buf.len() >= DISCARD);
        buf.extend_from_slice(&[1; 700]);
        c.poll(now).unwrap();
        assert!(c.read_buf().is_empty(), "lingering bytes are dropped");
    }

    #[test]
    fn an_open_session_is_reachable_and_its_idle_buffers_are_freed() {
        let now = Instant::now();
        let (mut c, _) = conn_at(now);
        assert!(c.session().is_none());
        assert_eq!(c.release_idle_buffers(), 0, "nothing to free before");
        let (_, request) = upgrade_request();
        feed(&mut c, &request, now);
        assert!(!c.is_finished(), "open and not over, before anything else");
        assert!(c.session().is_some());
        drain(&mut c);
        let mut client = Connection::new(Role::Client, Config::default());
        client.send(&Message::binary(vec![1u8; 2000])).unwrap();
        feed(&mut c, &client.take_transmit(), now);
        drain(&mut c);
        assert!(c.release_idle_buffers() > 0, "the emptied buffers go");
        assert_eq!(c.release_idle_buffers(), 0, "and only once");
    }
}
