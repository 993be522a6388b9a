//! The demo chat/echo [`Server`] on threads: an accept thread, one thread
//! per connection, and one writer thread per client draining its bounded
//! broadcast queue (in chat mode started with the client; in echo mode,
//! where broadcasts only come from [`ServerHandle::broadcast`], started by
//! the first broadcast, so idle echo clients cost one thread).
//!
//! The per-client behaviour (echo or broadcast, back-pressure, the slow
//! client close) is [`ws_core::session::ServerSession`], HTTP routing is
//! [`ws_core::site::route`], and the client registry is [`ws_core::hub::Hub`];
//! this module only moves bytes between them and the sockets.
//!
//! No thread blocks forever: reads are bounded by the connection's timers
//! and the handshake timeout, writes by a socket write timeout equal to
//! `Config::close_timeout` (a client that accepts no bytes for that long is
//! disconnected), and waits for a closing handshake by the close timeout.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use ws_core::connection::State;
use ws_core::handshake::{Accept, ServerHandshake};
use ws_core::hub::{BroadcastReport, Hub, Outbox, PushError, SLOW_CLIENT_CLOSE};
use ws_core::session::ServerSession;
use ws_core::site::{self, ServerMode};
use ws_core::{CloseCode, Config, Connection, Message, PreparedMessage, Role};

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
    queue_capacity: usize,
}

impl Server {
    /// A server for `addr` (e.g. `"127.0.0.1:8080"`; port 0 picks a free
    /// port, see [`ServerHandle::local_addr`]), in chat mode.
    pub fn new(addr: impl Into<String>) -> Self {
        Server {
            addr: addr.into(),
            mode: ServerMode::Chat,
            config: Config::default(),
            queue_capacity: 1024,
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

    /// How many broadcasts may wait for one client (default 1024); a client
    /// that falls further behind is dropped with close code 1013.
    pub fn queue_capacity(mut self, messages: usize) -> Self {
        self.queue_capacity = messages.max(1);
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
    /// mode), encoding it once. Clients whose queue is full are dropped (and
    /// closed with 1013); the report lists them.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidMessage`](crate::Error::InvalidMessage) for anything
    /// but text or binary.
    pub fn broadcast(&self, msg: &Message) -> Result<BroadcastReport> {
        Ok(self.inner.hub.broadcast(&PreparedMessage::new(msg)?))
    }

    /// Number of clients currently in the broadcast registry (the hub), in
    /// either mode: a client is registered once its upgrade succeeded and
    /// removed when its connection ends, or at once when the hub drops it
    /// for being too slow (its queue was full) or the server shuts down;
    /// such a connection is then closed (1013 or 1001) in the background,
    /// bounded by the timeouts, without being counted here.
    pub fn client_count(&self) -> usize {
        self.inner.hub.len()
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
        inner.hub.clear();
        let conns: Vec<Arc<ServerConn>> = lock(&inner.conns).values().cloned().collect();
        // Queue 1001 for every client and write it without waiting on a
        // connection that is mid-write (its writer sends it right after);
        // a helper thread writes so a stalled client cannot stall shutdown.
        let closer = move || {
            for c in &conns {
                let upgraded = match c.lock().session.as_mut() {
                    Some(s) => {
                        s.outbox_closed(CloseCode::GOING_AWAY);
                        true
                    }
                    None => false,
                };
                if !upgraded || c.flush(false).is_err() {
                    let _ = c.io.shutdown(Shutdown::Both);
                }
            }
        };
        let helper = thread::Builder::new()
            .name("ws-shutdown".into())
            .spawn(closer);
        if helper.is_err() {
            // No thread for the polite close: cut every connection instead.
            for c in lock(&inner.conns).values() {
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

/// A client's broadcast queue as the hub sees it: a channel bounded to
/// `capacity` messages whose sender never blocks (a full queue gets the
/// client dropped), and the client's writer thread, started by the first
/// message if it is not running yet (echo mode).
///
/// The channel is std's unbounded one with the bound counted here: a
/// `sync_channel` preallocates (and initialises) all its slots, about
/// 40 KiB per client for the default 1024, while the unbounded one
/// allocates small blocks only while messages are queued. The count cannot
/// overshoot: the hub pushes under its lock, and the writer only takes
/// messages out.
#[derive(Debug)]
struct ChannelOutbox {
    tx: Sender<PreparedMessage>,
    queued: Arc<AtomicUsize>,
    capacity: usize,
    writer: Arc<WriterThread>,
}

impl Outbox for ChannelOutbox {
    fn try_push(&self, msg: &PreparedMessage) -> std::result::Result<(), PushError> {
        if self.queued.load(Ordering::SeqCst) >= self.capacity {
            return Err(PushError::Full);
        }
        self.queued.fetch_add(1, Ordering::SeqCst);
        // Cloning a prepared message shares its bytes; nothing is copied.
        if self.tx.send(msg.clone()).is_err() {
            self.queued.fetch_sub(1, Ordering::SeqCst);
            return Err(PushError::Closed);
        }
        if self.writer.ensure_started() {
            Ok(())
        } else {
            Err(PushError::Closed)
        }
    }
}

/// The receiving end of a [`ChannelOutbox`], keeping its count.
#[derive(Debug)]
struct OutboxQueue {
    rx: mpsc::Receiver<PreparedMessage>,
    queued: Arc<AtomicUsize>,
}

impl OutboxQueue {
    /// The next message; `None` once the hub dropped the sender.
    fn recv(&self) -> Option<PreparedMessage> {
        let msg = self.rx.recv().ok()?;
        self.queued.fetch_sub(1, Ordering::SeqCst);
        Some(msg)
    }

    /// A message if one is waiting.
    fn try_recv(&self) -> Option<PreparedMessage> {
        let msg = self.rx.try_recv().ok()?;
        self.queued.fetch_sub(1, Ordering::SeqCst);
        Some(msg)
    }
}

/// The writer thread of one client: not started yet (holding what it
/// needs), running, or over.
#[derive(Debug)]
enum WriterState {
    Idle {
        inner: Arc<Inner>,
        conn: Arc<ServerConn>,
        rx: OutboxQueue,
    },
    Running(JoinHandle<()>),
    Over,
}

#[derive(Debug)]
struct WriterThread(Mutex<WriterState>);

impl WriterThread {
    /// Starts the writer unless it runs (or ran) already. Returns `false`
    /// if no thread could be started: the connection is then cut (there
    /// is nobody to deliver its broadcasts or close it politely).
    fn ensure_started(&self) -> bool {
        let mut state = lock(&self.0);
        if !matches!(*state, WriterState::Idle { .. }) {
            return true;
        }
        let WriterState::Idle { inner, conn, rx } =
            std::mem::replace(&mut *state, WriterState::Over)
        else {
            unreachable!()
        };
        let c = conn.clone();
        let spawned = thread::Builder::new()
            .name("ws-writer".into())
            .stack_size(THREAD_STACK)
            .spawn(move || writer_loop(&inner, &c, rx));
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

    /// After the client left the hub (nothing can start the writer any
    /// more): waits for the writer thread, if one was started.
    fn join(&self) {
        let state = std::mem::replace(&mut *lock(&self.0), WriterState::Over);
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
}

type ServerConn = Shared<TcpStream, ConnState>;

#[derive(Debug)]
struct Inner {
    local_addr: SocketAddr,
    mode: ServerMode,
    config: Config,
    queue_capacity: usize,
    hub: Hub<ChannelOutbox>,
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
            queue_capacity: server.queue_capacity,
            hub: Hub::new(),
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
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            // E.g. out of file descriptors: back off instead of spinning.
            Err(_) => thread::sleep(Duration::from_millis(10)),
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
    let _ = conn.io.set_write_timeout(Some(config.get_close_timeout()));
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
    let session = ServerSession::new(
        Connection::with_buffered(Role::Server, config.clone(), hs.take_remaining()),
        inner.mode,
    );
    conn.lock().session = Some(session);

    // Every upgraded client is registered, in both modes, so that
    // `ServerHandle::broadcast` reaches it and `client_count` counts it.
    let (tx, rx) = mpsc::channel();
    let queued = Arc::new(AtomicUsize::new(0));
    let rx = OutboxQueue {
        rx,
        queued: queued.clone(),
    };
    let writer = Arc::new(WriterThread(Mutex::new(WriterState::Idle {
        inner: inner.clone(),
        conn: conn.clone(),
        rx,
    })));
    let id = inner.hub.register(ChannelOutbox {
        tx,
        queued,
        capacity: inner.queue_capacity,
        writer: writer.clone(),
    });
    // Chat clients take broadcasts from the start; an echo client's writer
    // is started by the first broadcast that reaches it.
    if inner.mode == ServerMode::Chat && !writer.ensure_started() {
        inner.hub.unregister(id);
    }
    // A shutdown that started while we were upgrading may have missed us.
    if inner.shutting_down.load(Ordering::SeqCst) {
        inner.hub.unregister(id);
        if let Some(s) = conn.lock().session.as_mut() {
            s.outbox_closed(CloseCode::GOING_AWAY);
        }
    }

    reader_loop(inner, conn);

    let _ = conn.io.shutdown(Shutdown::Both);
    conn.lock().done = true;
    conn.notify_done();
    // Drops our sender (if the hub still had it), which wakes the writer
    // thread so it exits; once unregistered nothing can start it any more.
    inner.hub.unregister(id);
    writer.join();
}

/// Reads from the client and feeds the session (echoes are batched: all
/// echoes of one read leave in one write); writes control replies itself.
fn reader_loop(inner: &Inner, conn: &ServerConn) {
    let mut spare = BytesMut::new();
    let mut timeouts = TimeoutCache::default();
    loop {
        let (timer, now) = {
            let mut st = conn.lock();
            let Some(s) = st.session.as_mut() else { return };
            // A protocol error has queued its close frame; the loop below
            // writes it and finishes.
            let _ = s.process(|frame| {
                inner.hub.broadcast(frame);
            });
            if s.connection().wants_write() || !s.wants_read() {
                drop(st);
                if conn.flush(true).is_err() {
                    return;
                }
                continue;
            }
            if s.is_finished() {
                return;
            }
            // Nothing buffered: let ws-core drop what a burst grew (large
            // buffers after its idle delay, via the timer armed below).
            s.connection().release_idle_buffers();
            let now = Instant::now();
            (s.connection().poll_timeout(now), now)
        };
        let step = conn.read_once(&mut spare, &mut timeouts, timer, now);
        let mut st = conn.lock();
        let Some(s) = st.session.as_mut() else { return };
        match step {
            Step::Data | Step::Interrupted => {}
            Step::Eof => s.connection().handle_eof(),
            Step::TimedOut => s.connection().handle_timeout(Instant::now()),
            Step::Failed => return,
        }
    }
}

/// Moves broadcasts from the client's queue to its socket, in
/// batches (everything waiting leaves in one write), and closes the client
/// when the hub drops it (1013) or the server shuts down (1001).
fn writer_loop(inner: &Inner, conn: &ServerConn, rx: OutboxQueue) {
    let close_timeout = inner.config.get_close_timeout();
    loop {
        let (open, wants) = {
            let mut st = conn.lock();
            if st.done {
                return;
            }
            let Some(s) = st.session.as_mut() else { return };
            (s.connection().state() == State::Open, s.wants_outbox())
        };
        if !open {
            // Closing: the reader finishes the handshake; bound the wait.
            return finish_close(conn, close_timeout);
        }
        if !wants {
            if conn.flush(true).is_err() {
                let _ = conn.io.shutdown(Shutdown::Both);
                return;
            }
            continue;
        }
        let Some(first) = rx.recv() else { break };
        {
            let mut st = conn.lock();
            if st.done {
                return;
            }
            let Some(s) = st.session.as_mut() else { return };
            s.push_outbox(&first);
            while s.wants_outbox() {
                match rx.try_recv() {
                    Some(msg) => s.push_outbox(&msg),
                    None => break,
                }
            }
        }
        if conn.flush(true).is_err() {
            // Stalled past the write timeout or gone: cut it, which also
            // ends the reader.
            let _ = conn.io.shutdown(Shutdown::Both);
            return;
        }
    }
    // The hub dropped our sender: too slow, or shutting down.
    let code = if inner.shutting_down.load(Ordering::SeqCst) {
        CloseCode::GOING_AWAY
    } else {
        SLOW_CLIENT_CLOSE
    };
    {
        let mut st = conn.lock();
        if st.done {
            return;
        }
        if let Some(s) = st.session.as_mut() {
            s.outbox_closed(code);
        }
    }
    if conn.flush(true).is_err() {
        let _ = conn.io.shutdown(Shutdown::Both);
        return;
    }
    finish_close(conn, close_timeout);
}

/// Waits for the reader to finish the closing handshake; disconnects the
/// client if it does not within the close timeout (the reader's blocking
/// read may have started before the close and have no deadline).
fn finish_close(conn: &ServerConn, close_timeout: Duration) {
    if !conn.wait_done(close_timeout) {
        let _ = conn.io.shutdown(Shutdown::Both);
    }
}
