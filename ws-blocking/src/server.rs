//! The demo chat/echo [`Server`] on threads: an accept thread, one thread
//! per connection, and one writer thread per client draining its broadcast
//! queue (in chat mode started with the client; in echo mode, where
//! broadcasts only come from [`ServerHandle::broadcast`], started by the
//! first wake from the hub, so idle echo clients cost one thread).
//!
//! The per-client behaviour (echo or broadcast, back-pressure, the hub's
//! flow control, the slow client close) is
//! [`ws_core::server::session::ServerSession`], HTTP routing is
//! [`ws_core::server::site::route`], and the client registry is [`ws_core::server::hub::Hub`];
//! this module only moves bytes between them and the sockets, and wakes
//! threads when the hub says so.
//!
//! No thread blocks forever: reads are bounded by the connection's timers
//! and the handshake timeout, writes by a socket write timeout of the
//! slow-client timeout plus `Config::close_timeout` (a client that accepts no
//! bytes for that long is disconnected; the hub drops a stalled chat client
//! after the first, and its close frame then has the second to get out), and
//! waits for a closing handshake by the close timeout.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use ws_core::connection::State;
use ws_core::handshake::{Accept, ServerHandshake};
use ws_core::server::hub::{BroadcastReport, FlowControl, Hub, HubStats, Wake};
use ws_core::server::session::ServerSession;
use ws_core::server::site::{self, ServerMode};
use ws_core::{Config, Connection, Message, PreparedMessage, Role};

use crate::Result;
use crate::handshake::read_head;
use crate::stream::{Shared, SharedState, Step, TimeoutCache};

/// Stack size of connection threads: they keep their buffers on the heap,
/// so a small stack lets one process hold many connections.
const THREAD_STACK: usize = 256 * 1024;

/// How long a rejected HTTP request may keep its thread while the response
/// drains before the socket is closed.
const LINGER: Duration = Duration::from_millis(200);

/// A server under construction: nothing is bound until
/// [`start`](Self::start) or [`run`](Self::run).
#[derive(Debug, Clone)]
pub struct Server {
    addr: String,
    mode: ServerMode,
    config: Config,
    flow: FlowControl,
}

impl Server {
    /// A server for `addr` (e.g. `"127.0.0.1:8080"`; port 0 picks a free
    /// port, see [`ServerHandle::local_addr`]), in chat mode.
    pub fn new(addr: impl Into<String>) -> Self {
        Server {
            addr: addr.into(),
            mode: ServerMode::Chat,
            config: Config::default(),
            flow: FlowControl::default(),
        }
    }

    /// Chat (page on `/`, broadcast on `/ws`) or echo (upgrade on any path).
    pub fn mode(mut self, mode: ServerMode) -> Self {
        self.mode = mode;
        self
    }

    /// The connection settings for every client.
    pub fn config(mut self, config: Config) -> Self {
        self.config = config;
        self
    }

    /// The broadcast queues' limits: high-water mark, hard byte bound and
    /// slow-client timeout (see [`FlowControl`] and [`ws_core::server::hub`]).
    pub fn flow_control(mut self, flow: FlowControl) -> Self {
        self.flow = flow;
        self
    }

    /// Binds, starts accepting on a background thread, and returns at once.
    pub fn start(self) -> io::Result<ServerHandle> {
        let listener = TcpListener::bind(self.addr.as_str())?;
        let inner = Arc::new(Inner::new(self, listener.local_addr()?));
        let acceptor = inner.clone();
        let thread = thread::Builder::new()
            .name("ws-accept".into())
            .spawn(move || accept_loop(&acceptor, listener))?;
        *lock(&inner.accept_thread) = Some(thread);
        Ok(ServerHandle { inner })
    }

    /// Binds and accepts on the calling thread until the process ends (a
    /// binary handles Ctrl-C itself). To be able to stop the server, use
    /// [`start`](Self::start) and [`ServerHandle::shutdown`] instead.
    pub fn run(self) -> io::Result<()> {
        let listener = TcpListener::bind(self.addr.as_str())?;
        let inner = Arc::new(Inner::new(self, listener.local_addr()?));
        accept_loop(&inner, listener);
        Ok(())
    }
}

/// A running server: its address, broadcasts, client count and shutdown.
/// Cheap to clone; all clones control the same server.
#[derive(Debug, Clone)]
pub struct ServerHandle {
    inner: Arc<Inner>,
}

impl ServerHandle {
    /// The address the server is bound to (with the real port if 0 was
    /// asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.inner.local_addr
    }

    /// Queues `msg` (text or binary) for every registered client (in either
    /// mode), encoding it once, under the same rules as a client's message:
    /// while the hub is congested it blocks (at most until the slow client
    /// holding it up is dropped), so an application that broadcasts faster
    /// than clients read is slowed down rather than losing messages. The
    /// report lists the clients dropped meanwhile (closed with 1013).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidMessage`](crate::Error::InvalidMessage) for anything
    /// but text or binary.
    pub fn broadcast(&self, msg: &Message) -> Result<BroadcastReport> {
        let msg = PreparedMessage::new(msg)?;
        let signal = Arc::new(Signal::default());
        let wake: Arc<dyn Wake> = signal.clone();
        let mut registered = None;
        loop {
            let seen = signal.seen();
            match self
                .inner
                .hub
                .offer(&msg, &wake, &mut registered, Instant::now())
            {
                Ok(report) => return Ok(report),
                Err(deadline) => signal.wait(seen, deadline),
            }
        }
    }

    /// Number of clients currently in the broadcast registry (the hub), in
    /// either mode: a client is registered once its upgrade succeeded and
    /// removed when its connection starts closing, or when the hub drops it
    /// (too slow: closed with 1013) or the server shuts down (1001).
    pub fn client_count(&self) -> usize {
        self.inner.hub.len()
    }

    /// The broadcast queues now: clients, stalled clients, queued bytes,
    /// the largest queue seen, slow clients dropped.
    pub fn stats(&self) -> HubStats {
        self.inner.hub.stats()
    }

    /// Stops accepting, closes every client with 1001 (Going Away), and
    /// waits for their threads, bounded by `Config::close_timeout` + 1 s:
    /// clients that did not finish the closing handshake by the close
    /// timeout are disconnected.
    ///
    /// The accept thread, blocked in `accept`, is woken by a connection to
    /// the server's own address (the loopback address when bound to a
    /// wildcard); if that fails it exits at its next accepted connection.
    pub fn shutdown(&self) {
        let inner = &self.inner;
        inner.shutting_down.store(true, Ordering::SeqCst);
        if let Some(thread) = lock(&inner.accept_thread).take() {
            let wake =
                TcpStream::connect_timeout(&wake_addr(inner.local_addr), Duration::from_secs(1));
            if wake.is_ok() {
                let _ = thread.join();
            }
        }
        let started = Instant::now();
        // Every client's writer thread (started by the wake if need be)
        // delivers what is queued, then closes with 1001.
        inner.hub.shutdown();
        // Connections still in their HTTP handshake are cut.
        for c in lock(&inner.conns).values() {
            if c.lock().session.is_none() {
                let _ = c.io.shutdown(Shutdown::Both);
            }
        }
        let close_timeout = inner.config.get_close_timeout();
        if !inner.wait_conns(started + close_timeout) {
            for c in lock(&inner.conns).values() {
                let _ = c.io.shutdown(Shutdown::Both);
            }
            inner.wait_conns(Instant::now() + Duration::from_secs(1));
        }
        *lock(&inner.stopped) = true;
        inner.stopped_cv.notify_all();
    }

    /// Blocks until [`shutdown`](Self::shutdown) (called from another
    /// thread, e.g. a Ctrl-C handler) has finished.
    pub fn wait(&self) {
        let guard = lock(&self.inner.stopped);
        let _guard = self
            .inner
            .stopped_cv
            .wait_while(guard, |stopped| !*stopped)
            .unwrap_or_else(|p| p.into_inner());
    }
}

/// Where to connect to wake our own `accept`.
fn wake_addr(local: SocketAddr) -> SocketAddr {
    let ip = match local.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, local.port())
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A wake for threads: a generation counter under a mutex and a condition
/// variable, so a wake between reading the generation and waiting is not
/// lost.
#[derive(Debug, Default)]
struct Signal {
    generation: Mutex<u64>,
    cv: Condvar,
}

impl Wake for Signal {
    fn wake(&self) {
        *lock(&self.generation) += 1;
        self.cv.notify_all();
    }
}

impl Signal {
    /// The generation to pass to [`wait`](Self::wait).
    fn seen(&self) -> u64 {
        *lock(&self.generation)
    }

    /// Waits until woken after `seen` was read, or until `deadline`.
    fn wait(&self, seen: u64, deadline: Option<Instant>) {
        let mut generation = lock(&self.generation);
        while *generation == seen {
            let Some(deadline) = deadline else {
                generation = self.cv.wait(generation).unwrap_or_else(|p| p.into_inner());
                continue;
            };
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            generation = self
                .cv
                .wait_timeout(generation, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }
}

/// How the hub wakes one connection's threads: the [`Signal`] they wait on
/// (the writer always, the reader while paused), and the writer thread,
/// started by the first wake if it is not running yet (echo mode).
#[derive(Debug)]
struct ConnWake {
    signal: Signal,
    writer: Mutex<WriterState>,
    /// This wake itself, for the writer thread it starts.
    me: Weak<ConnWake>,
}

impl Wake for ConnWake {
    fn wake(&self) {
        self.signal.wake();
        if let Some(me) = self.me.upgrade() {
            me.ensure_started();
        }
    }
}

/// The writer thread of one client: not started yet (holding what it
/// needs), running, or over.
#[derive(Debug)]
enum WriterState {
    Idle {
        inner: Arc<Inner>,
        conn: Arc<ServerConn>,
    },
    Running(JoinHandle<()>),
    Over,
}

impl ConnWake {
    fn new(inner: Arc<Inner>, conn: Arc<ServerConn>) -> Arc<Self> {
        Arc::new_cyclic(|me| ConnWake {
            signal: Signal::default(),
            writer: Mutex::new(WriterState::Idle { inner, conn }),
            me: me.clone(),
        })
    }

    /// Starts the writer unless it runs (or ran) already. Returns `false`
    /// if no thread could be started: the connection is then cut (there
    /// is nobody to deliver its broadcasts or close it politely).
    fn ensure_started(self: &Arc<Self>) -> bool {
        let mut state = lock(&self.writer);
        if !matches!(*state, WriterState::Idle { .. }) {
            return true;
        }
        let WriterState::Idle { inner, conn } = std::mem::replace(&mut *state, WriterState::Over)
        else {
            unreachable!()
        };
        let c = conn.clone();
        let wake = self.clone();
        let spawned = thread::Builder::new()
            .name("ws-writer".into())
            .stack_size(THREAD_STACK)
            .spawn(move || writer_loop(&inner, &c, &wake));
        match spawned {
            Ok(handle) => {
                *state = WriterState::Running(handle);
                true
            }
            Err(_) => {
                let _ = conn.io.shutdown(Shutdown::Both);
                false
            }
        }
    }

    /// After the reader finished: waits for the writer thread, if one was
    /// started, and lets go of what an idle writer held (which breaks the
    /// reference cycle through the session's outbox).
    fn join(&self) {
        let state = std::mem::replace(&mut *lock(&self.writer), WriterState::Over);
        if let WriterState::Running(handle) = state {
            let _ = handle.join();
        }
    }
}

/// One connection's state: the session once upgraded, and whether its
/// reading thread has finished.
#[derive(Debug)]
struct ConnState {
    session: Option<ServerSession>,
    done: bool,
}

impl SharedState for ConnState {
    fn conn(&mut self) -> Option<&mut Connection> {
        self.session.as_mut().map(|s| s.connection())
    }
    fn is_done(&self) -> bool {
        self.done
    }
    // Bytes being written outside the lock still count against the write
    // buffer limit, so the session takes no more broadcasts meanwhile (and
    // a client that does not read fills its queue, not our memory).
    fn take_for_write(&mut self) -> Option<bytes::Bytes> {
        self.session.as_mut().map(ServerSession::take_for_write)
    }
    fn written(&mut self, n: usize) {
        if let Some(s) = self.session.as_mut() {
            s.written(n);
        }
    }
}

type ServerConn = Shared<TcpStream, ConnState>;

#[derive(Debug)]
struct Inner {
    local_addr: SocketAddr,
    mode: ServerMode,
    config: Config,
    hub: Arc<Hub>,
    shutting_down: AtomicBool,
    /// Every connection with a thread, upgraded or not, for shutdown.
    conns: Mutex<HashMap<u64, Arc<ServerConn>>>,
    conns_cv: Condvar,
    next_conn: AtomicU64,
    accept_thread: Mutex<Option<JoinHandle<()>>>,
    stopped: Mutex<bool>,
    stopped_cv: Condvar,
}

impl Inner {
    fn new(server: Server, local_addr: SocketAddr) -> Self {
        Inner {
            local_addr,
            mode: server.mode,
            config: server.config,
            hub: Arc::new(Hub::new(server.flow)),
            shutting_down: AtomicBool::new(false),
            conns: Mutex::new(HashMap::new()),
            conns_cv: Condvar::new(),
            next_conn: AtomicU64::new(0),
            accept_thread: Mutex::new(None),
            stopped: Mutex::new(false),
            stopped_cv: Condvar::new(),
        }
    }

    fn remove_conn(&self, id: u64) {
        let removed = lock(&self.conns).remove(&id);
        self.conns_cv.notify_all();
        drop(removed);
    }

    /// Waits until every connection thread ended or `deadline`; returns
    /// whether they all did.
    fn wait_conns(&self, deadline: Instant) -> bool {
        let mut conns = lock(&self.conns);
        while !conns.is_empty() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            conns = self
                .conns_cv
                .wait_timeout(conns, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        true
    }
}

fn accept_loop(inner: &Arc<Inner>, listener: TcpListener) {
    loop {
        let accepted = listener.accept();
        if inner.shutting_down.load(Ordering::SeqCst) {
            return;
        }
        match accepted {
            Ok((sock, _)) => spawn_conn(inner, sock),
            Err(e) => {
                if let Some(pause) = ws_core::server::accept_backoff(&e) {
                    thread::sleep(pause);
                }
            }
        }
    }
}

fn spawn_conn(inner: &Arc<Inner>, sock: TcpStream) {
    let _ = sock.set_nodelay(true);
    let id = inner.next_conn.fetch_add(1, Ordering::Relaxed);
    let conn = Arc::new(Shared::new(
        sock,
        ConnState {
            session: None,
            done: false,
        },
    ));
    lock(&inner.conns).insert(id, conn.clone());
    let server = inner.clone();
    let spawned = thread::Builder::new()
        .name("ws-conn".into())
        .stack_size(THREAD_STACK)
        .spawn(move || {
            serve(&server, &conn);
            let _ = conn.io.shutdown(Shutdown::Both);
            server.remove_conn(id);
        });
    if spawned.is_err() {
        inner.remove_conn(id);
    }
}

/// Writes a plain HTTP response and closes gracefully: shut down our
/// sending side, then drain briefly so unread request bytes do not turn
/// the close into a reset that could destroy the response.
fn respond_and_close(sock: &TcpStream, response: &[u8]) {
    let mut w = sock;
    if w.write_all(response).and_then(|()| w.flush()).is_err() {
        return;
    }
    let _ = sock.shutdown(Shutdown::Write);
    let _ = sock.set_read_timeout(Some(LINGER));
    let deadline = Instant::now() + LINGER;
    let mut sink = [0u8; 1024];
    let mut r = sock;
    while Instant::now() < deadline {
        match r.read(&mut sink) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
    }
}

/// One connection, from the handshake to the end.
fn serve(inner: &Arc<Inner>, conn: &Arc<ServerConn>) {
    let config = &inner.config;
    let stall = inner.hub.limits().get_slow_client_timeout();
    let _ = conn
        .io
        .set_write_timeout(Some(stall + config.get_close_timeout()));
    let mut hs = ServerHandshake::new();
    let deadline = Instant::now() + config.get_handshake_timeout();
    let mut io = &conn.io;
    let req = match read_head(&mut io, &mut hs, deadline) {
        Ok(req) => req,
        Err(ws_core::Error::Handshake(e)) => return respond_and_close(&conn.io, &e.response()),
        Err(_) => return,
    };
    let route = site::route(&req, inner.mode, &Accept::new());
    if !route.is_upgrade() {
        return respond_and_close(&conn.io, route.response());
    }
    if io.write_all(route.response()).is_err() {
        return;
    }
    // Every upgraded client is registered, in both modes, so that
    // `ServerHandle::broadcast` reaches it and `client_count` counts it
    // (closed at once with 1001 if the server is shutting down).
    let wake = ConnWake::new(inner.clone(), conn.clone());
    let session = ServerSession::new(
        Connection::with_buffered(Role::Server, config.clone(), hs.take_remaining()),
        inner.mode,
        &inner.hub,
        wake.clone(),
    );
    conn.lock().session = Some(session);
    // Chat clients take broadcasts from the start; an echo client's writer
    // is started by the first wake from the hub.
    if inner.mode == ServerMode::Chat && !wake.ensure_started() {
        conn.lock().session = None;
        return;
    }

    reader_loop(conn, &wake);

    let _ = conn.io.shutdown(Shutdown::Both);
    {
        let mut st = conn.lock();
        st.done = true;
        // Leaves the hub: nothing can start the writer any more.
        st.session = None;
    }
    conn.notify_done();
    wake.signal.wake();
    wake.join();
}

/// Reads from the client and feeds the session (echoes are batched: all
/// echoes of one read leave in one write); writes what the session queues.
/// While the hub pauses the session (chat mode, some client's queue above
/// its mark), it waits for the wake instead of reading, so TCP pushes back
/// on the client.
fn reader_loop(conn: &ServerConn, wake: &ConnWake) {
    let mut spare = BytesMut::new();
    let mut timeouts = TimeoutCache::default();
    let mut eof = false;
    loop {
        let seen = wake.signal.seen();
        let now = Instant::now();
        let (timer, wait) = {
            let mut st = conn.lock();
            let Some(s) = st.session.as_mut() else { return };
            // A protocol error has queued its close frame; the loop below
            // writes it and finishes.
            let _ = s.poll(now);
            if s.connection().wants_write() {
                drop(st);
                if conn.flush(true).is_err() {
                    return;
                }
                continue;
            }
            if s.is_finished() {
                return;
            }
            let wait = eof || !s.wants_read();
            if wait && !eof && !s.is_paused() {
                // No room because the other thread's write is in flight:
                // wait for it on the write lock (no wake comes when a write
                // ends), then look again.
                drop(st);
                if conn.flush(true).is_err() {
                    return;
                }
                continue;
            }
            if !wait {
                // Nothing buffered: let ws-core drop what a burst grew
                // (large buffers after its idle delay, via the timer).
                s.connection().release_idle_buffers();
            }
            (s.poll_timeout(now), wait)
        };
        if wait {
            wake.signal.wait(seen, timer);
            continue;
        }
        match conn.read_once(&mut spare, &mut timeouts, timer, now) {
            Step::Data | Step::Interrupted | Step::TimedOut => {}
            Step::Eof => {
                eof = true;
                if let Some(s) = conn.lock().session.as_mut() {
                    s.connection().handle_eof();
                }
            }
            Step::Failed => return,
        }
    }
}

/// Moves broadcasts from the client's queue to its socket, in batches
/// (everything waiting leaves in one write), and closes the client when the
/// hub drops it (1013) or the server shuts down (1001).
fn writer_loop(inner: &Inner, conn: &ServerConn, wake: &ConnWake) {
    let close_timeout = inner.config.get_close_timeout();
    loop {
        let seen = wake.signal.seen();
        let now = Instant::now();
        let (timer, open, wants_write) = {
            let mut st = conn.lock();
            if st.done {
                return;
            }
            let Some(s) = st.session.as_mut() else { return };
            let _ = s.poll(now);
            let open = s.connection().state() == State::Open;
            (s.poll_timeout(now), open, s.connection().wants_write())
        };
        if wants_write {
            if conn.flush(true).is_err() {
                // Stalled past the write timeout or gone: cut it, which
                // also ends the reader.
                let _ = conn.io.shutdown(Shutdown::Both);
                return;
            }
            // Room was made: the session may take more broadcasts.
            continue;
        }
        if !open {
            // Closing: the reader finishes the handshake; bound the wait.
            return finish_close(conn, close_timeout);
        }
        wake.signal.wait(seen, timer);
    }
}

/// Waits for the reader to finish the closing handshake; disconnects the
/// client if it does not within the close timeout (the reader's blocking
/// read may have started before the close and have no deadline).
fn finish_close(conn: &ServerConn, close_timeout: Duration) {
    if !conn.wait_done(close_timeout) {
        let _ = conn.io.shutdown(Shutdown::Both);
    }
}
