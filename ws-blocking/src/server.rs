//! The [`Server`] on threads, running your [`Handler`] or the demo's echo
//! and chat: an accept thread, one thread per connection, and one writer
//! thread per client draining its queue in the hub (broadcasts, publishes,
//! sends through a [`ConnectionHandle`]), started by the first wake from the
//! hub, so a client that is never sent anything from elsewhere costs one
//! thread.
//!
//! Everything a connection does from its first request byte is
//! [`ws_core::server::ServerConnection`]: the request head and the
//! handshake timeout, HTTP routing, a plain response and the linger after
//! it, the 101, and the per-client behaviour of the session (the handler's
//! callbacks, back-pressure, the hub's flow control, the slow client
//! close); the client registry is [`ws_core::server::hub::Hub`]. This module
//! only executes that machine on threads, moves bytes between it and the
//! socket, and wakes threads when the hub says so.
//!
//! No thread blocks forever: reads are bounded by the machine's timers (the
//! handshake deadline, the linger, the protocol's), writes by a socket
//! write timeout of the slow-client timeout plus `Config::close_timeout` (a
//! client that accepts no bytes for that long is disconnected; the hub drops
//! a stalled client after the first, and its close frame then has the
//! second to get out), and waits for a closing handshake by the close
//! timeout.

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use ws_core::connection::State;
use ws_core::server::hub::{BroadcastReport, Target, Wake};
use ws_core::server::site::ServerMode;
#[cfg(feature = "tls")]
use ws_core::server::tls::TlsConnection;
use ws_core::server::{
    AcceptPacer, Handler, Registry, Served, ServerConnection, ServerCore, ServerOptions, Ticket,
};
use ws_core::{Message, PreparedMessage};

use crate::Result;
use crate::stream::{Shared, SharedState, Step, TimeoutCache};

/// Stack size of connection threads: they keep their buffers on the heap,
/// so a small stack lets one process hold many connections.
const THREAD_STACK: usize = 256 * 1024;

/// Builder for the WebSocket server: the demo's echo or chat
/// ([`Server::new`], [`mode`](Self::mode)) or your own [`Handler`]
/// ([`Server::with_handler`]). Nothing is bound until
/// [`start`](Self::start) or [`run`](Self::run).
///
/// ```no_run
/// use std::net::SocketAddr;
/// use ws_blocking::handler::{Handler, Refusal, Request, Socket, Upgrade};
/// use ws_blocking::{Message, Server};
///
/// /// Rooms named by the path: `/ws/NAME`.
/// struct Rooms;
///
/// impl Handler for Rooms {
///     type State = String;
///
///     fn on_upgrade(&self, req: &Request, _peer: SocketAddr) -> Result<Upgrade<String>, Refusal> {
///         match req.path().strip_prefix("/ws/") {
///             Some(room) if !room.is_empty() => Ok(Upgrade::new(room.to_owned())),
///             _ => Err(Refusal::not_found()),
///         }
///     }
///
///     fn on_open(&self, ws: &mut Socket<'_>, room: &mut String) {
///         ws.subscribe(room);
///     }
///
///     fn on_message(&self, ws: &mut Socket<'_>, room: &mut String, msg: Message) {
///         let _ = ws.publish(room, &msg);
///     }
/// }
///
/// Server::with_handler("127.0.0.1:8080", Rooms).run()?;
/// # Ok::<(), std::io::Error>(())
/// ```
///
/// # How a connection is served
///
/// Each connection's thread executes ws-core's [`ServerConnection`] from
/// the first request byte: it reads into it (the socket's read timeout set
/// from the machine's next deadline), polls it, and writes what it queues.
/// The machine reads the head (within `Config::handshake_timeout`) and
/// routes it (the handler accepts or refuses the upgrade, or a page or an
/// error is answered, after which the write side is shut and the socket
/// lingers briefly), or queues the 101 and opens the session (the handler's
/// `on_open`), which decodes, runs the handler's `on_message`, takes what
/// the hub queued for the client and applies the hub's flow control. The
/// handler's callbacks run on the connection's threads, under its lock: they
/// must not block.
///
/// A second thread per client, the writer, moves what the hub queues for it
/// (broadcasts, publishes to its topics, sends through a
/// [`ConnectionHandle`](ws_core::server::ConnectionHandle)) to its socket while the reader is blocked in a
/// read, and closes it when the hub lets go of it. It is started by the
/// first wake from the hub, so a client nothing is ever sent to from
/// elsewhere costs one thread.
///
/// A client whose queue stays above the high-water mark for the
/// slow-client timeout, or would pass the hard byte bound, is closed with
/// 1013. Set the limits with [`flow_control`](Self::flow_control).
///
/// # wss://
///
/// With [`tls`](Self::tls) the same threads execute ws-core's
/// [`TlsConnection`](ws_core::server::tls::TlsConnection) instead: the
/// machine above under rustls, written once and sans-IO in ws-core (the
/// records are encrypted under the connection's lock and written outside
/// it, like plaintext), so the TLS handshake is bounded by the handshake
/// timeout, a TLS failure ends only its connection, and close_notify
/// follows the closing handshake on every runtime alike.
#[derive(Debug, Clone)]
pub struct Server<H = ServerMode> {
    options: ServerOptions<H>,
}

impl Server {
    ws_core::server_builder!(demo);
}

impl<H: Handler> Server<H> {
    ws_core::server_builder!(handler);

    fn from_options(options: ServerOptions<H>) -> Self {
        Server { options }
    }

    fn into_inner(self, local_addr: SocketAddr) -> io::Result<(Arc<Inner>, Arc<H>)> {
        let (core, handler) = self.options.start("blocking")?;
        Ok((Arc::new(Inner::new(core, local_addr)), handler))
    }

    /// Binds, starts accepting on a background thread, and returns at once.
    pub fn start(self) -> io::Result<ServerHandle> {
        let listener = TcpListener::bind(self.options.addr.as_str())?;
        let (inner, handler) = self.into_inner(listener.local_addr()?)?;
        let acceptor = inner.clone();
        let thread = thread::Builder::new()
            .name("ws-accept".into())
            .spawn(move || accept_loop(&acceptor, &handler, listener))?;
        *lock(&inner.accept_thread) = Some(thread);
        Ok(ServerHandle { inner })
    }

    /// Binds and accepts on the calling thread until the process ends (a
    /// binary handles Ctrl-C itself). To be able to stop the server, use
    /// [`start`](Self::start) and [`ServerHandle::shutdown`] instead.
    pub fn run(self) -> io::Result<()> {
        let listener = TcpListener::bind(self.options.addr.as_str())?;
        let (inner, handler) = self.into_inner(listener.local_addr()?)?;
        accept_loop(&inner, &handler, listener);
        Ok(())
    }
}

/// A running server: its address, broadcasts, client count and shutdown.
/// Cheap to clone; all clones control the same server.
#[derive(Debug, Clone)]
pub struct ServerHandle {
    inner: Arc<Inner>,
}

/// Everything a handle answers without waiting (client count, statistics,
/// topics, one client by id: [`Registry::send_to`], [`Registry::connection`],
/// [`Registry::close`]) is written once in ws-core's [`Registry`]; the
/// handle dereferences to it.
impl std::ops::Deref for ServerHandle {
    type Target = Registry;

    fn deref(&self) -> &Registry {
        &self.inner.registry
    }
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
        self.push(Target::All, msg)
    }

    /// Queues `msg` (text or binary) for every subscriber of `topic`,
    /// encoded once, under the rules of [`broadcast`](Self::broadcast)
    /// (blocking while the hub is congested).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidMessage`](crate::Error::InvalidMessage) for anything
    /// but text or binary.
    pub fn publish(&self, topic: &str, msg: &Message) -> Result<BroadcastReport> {
        self.push(Target::Topic(topic), msg)
    }

    /// Queues `msg` for `target` once the hub is not congested (see
    /// [`Hub::offer`]): until then it waits for the congestion to clear, or
    /// at most until the stalled client's deadline, and offers again.
    fn push(&self, target: Target<'_>, msg: &Message) -> Result<BroadcastReport> {
        let msg = PreparedMessage::new(msg)?;
        let signal = Arc::new(Signal::default());
        let wake: Arc<dyn Wake> = signal.clone();
        let mut registered = None;
        loop {
            let seen = signal.seen();
            match self
                .inner
                .hub
                .offer(target, &msg, &wake, &mut registered, Instant::now())
            {
                Ok(report) => return Ok(report),
                Err(deadline) => signal.wait(seen, deadline),
            }
        }
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
            if !c.is_upgraded() {
                c.cut();
            }
        }
        let close_timeout = inner.config.get_close_timeout();
        if !inner.wait_conns(started + close_timeout) {
            for c in lock(&inner.conns).values() {
                c.cut();
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
/// started by the first wake if it is not running yet.
struct ConnWake<C: Served> {
    signal: Signal,
    writer: Mutex<WriterState<C>>,
    /// This wake itself, for the writer thread it starts.
    me: Weak<ConnWake<C>>,
}

impl<C: Served> fmt::Debug for ConnWake<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnWake")
            .field("signal", &self.signal)
            .finish_non_exhaustive()
    }
}

impl<C: Served> Wake for ConnWake<C> {
    fn wake(&self) {
        self.signal.wake();
        if let Some(me) = self.me.upgrade() {
            me.ensure_started();
        }
    }
}

/// The writer thread of one client: not started yet (holding what it
/// needs), running, or over.
enum WriterState<C: Served> {
    Idle {
        inner: Arc<Inner>,
        conn: Arc<ServerConn<C>>,
    },
    Running(JoinHandle<()>),
    Over,
}

impl<C: Served> ConnWake<C> {
    fn new(inner: Arc<Inner>, conn: Arc<ServerConn<C>>) -> Arc<Self> {
        Arc::new_cyclic(|me| ConnWake {
            signal: Signal::default(),
            writer: Mutex::new(WriterState::Idle { inner, conn }),
            me: me.clone(),
        })
    }

    /// Starts the writer unless it runs (or ran) already. If no thread can
    /// be started the connection is cut (there is nobody to deliver what
    /// the hub queues for it or to close it politely).
    fn ensure_started(self: &Arc<Self>) {
        let mut state = lock(&self.writer);
        if !matches!(*state, WriterState::Idle { .. }) {
            return;
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
            Ok(handle) => *state = WriterState::Running(handle),
            Err(_) => {
                let _ = conn.io.shutdown(Shutdown::Both);
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

/// One connection's state: its [`ServerConnection`] (from the first
/// request byte; taken out by [`Finish`] when the reader ends), and whether
/// its reading thread has finished.
struct ConnState<C: Served> {
    connection: Option<C>,
    done: bool,
}

impl<C: Served> fmt::Debug for ConnState<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnState")
            .field("connection", &self.connection)
            .field("done", &self.done)
            .finish()
    }
}

impl<C: Served> SharedState for ConnState<C> {
    fn read_buf(&mut self) -> Option<&mut BytesMut> {
        self.connection.as_mut().map(C::read_buf)
    }
    fn wants_write(&self) -> bool {
        self.connection.as_ref().is_some_and(C::wants_write)
    }
    fn is_done(&self) -> bool {
        self.done
    }
    // Once upgraded, bytes being written outside the lock still count
    // against the write buffer limit, so the session takes no more
    // broadcasts meanwhile (and a client that does not read fills its
    // queue, not our memory). Before that only a plain HTTP response is
    // written, by the reader alone: it stays queued until written, which is
    // when the machine starts its linger. Under TLS the records are handed
    // out the same way (see `Served::take_for_write`).
    fn take_for_write(&mut self) -> Option<Bytes> {
        self.connection.as_mut().map(C::take_for_write)
    }
    fn written(&mut self, n: usize) {
        if let Some(c) = self.connection.as_mut() {
            c.written(n);
        }
    }
}

type ServerConn<C> = Shared<TcpStream, ConnState<C>>;

/// What shutdown needs of a connection, whatever its handler.
trait Conn: Send + Sync + fmt::Debug {
    /// Whether it got past its HTTP handshake (has an open session).
    fn is_upgraded(&self) -> bool;
    /// Shuts the socket down both ways (its threads then finish).
    fn cut(&self);
}

impl<C: Served> Conn for ServerConn<C> {
    fn is_upgraded(&self) -> bool {
        self.lock().connection.as_ref().is_some_and(C::is_open)
    }
    fn cut(&self) {
        let _ = self.io.shutdown(Shutdown::Both);
    }
}

/// What the server's threads and its handle share: ws-core's
/// [`ServerCore`] (hub, registry, config, TLS), which it dereferences to,
/// and the threads' bookkeeping. The handler is not in it (the accept and
/// connection threads hold it), so the handle needs no type parameter.
#[derive(Debug)]
struct Inner {
    core: ServerCore,
    local_addr: SocketAddr,
    shutting_down: AtomicBool,
    /// Every connection with a thread, upgraded or not, for shutdown.
    conns: Mutex<HashMap<u64, Arc<dyn Conn>>>,
    conns_cv: Condvar,
    next_conn: AtomicU64,
    accept_thread: Mutex<Option<JoinHandle<()>>>,
    stopped: Mutex<bool>,
    stopped_cv: Condvar,
}

impl std::ops::Deref for Inner {
    type Target = ServerCore;

    fn deref(&self) -> &ServerCore {
        &self.core
    }
}

impl Inner {
    fn new(core: ServerCore, local_addr: SocketAddr) -> Self {
        Inner {
            core,
            local_addr,
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

fn accept_loop<H: Handler>(inner: &Arc<Inner>, handler: &Arc<H>, listener: TcpListener) {
    let mut pacer = AcceptPacer::default();
    loop {
        let accepted = listener.accept();
        if inner.shutting_down.load(Ordering::SeqCst) {
            return;
        }
        match accepted {
            Ok((sock, peer)) => {
                // The handshake deadline runs from here, not from when the
                // connection's thread first runs.
                let at = Instant::now();
                pacer.accepted(at);
                let ticket = inner.registry.admission().admit();
                accepted_conn(inner, handler, sock, (peer, at), ticket);
            }
            Err(e) => {
                // Out of descriptors: the connections already open go on
                // in their threads while this one pauses.
                if let Some(pause) = pacer.failed(&e, Instant::now()) {
                    thread::sleep(pause);
                }
            }
        }
    }
}

/// Serves an accepted connection: plain, or under TLS when the server has
/// a TLS configuration (the same threads executing ws-core's
/// `TlsConnection`).
fn accepted_conn<H: Handler>(
    inner: &Arc<Inner>,
    handler: &Arc<H>,
    sock: TcpStream,
    peer: (SocketAddr, Instant),
    ticket: Ticket,
) {
    #[cfg(feature = "tls")]
    if let Some(tls) = &inner.tls {
        let tls = tls.clone();
        return spawn_conn(inner, handler, sock, peer, move |c| {
            TlsConnection::new(tls, c.admitted(ticket)).ok()
        });
    }
    spawn_conn(inner, handler, sock, peer, move |c| {
        Some(c.admitted(ticket))
    });
}

/// Starts the thread of a connection whose machine is `wrap` applied to
/// the plain one (`None`: dropped at once).
fn spawn_conn<H: Handler, C: Served<Handler = H>>(
    inner: &Arc<Inner>,
    handler: &Arc<H>,
    sock: TcpStream,
    peer: (SocketAddr, Instant),
    wrap: impl FnOnce(ServerConnection<H>) -> Option<C> + Send + 'static,
) {
    let _ = sock.set_nodelay(true);
    let id = inner.next_conn.fetch_add(1, Ordering::Relaxed);
    let conn = Arc::new(Shared::new(
        sock,
        ConnState {
            connection: None,
            done: false,
        },
    ));
    lock(&inner.conns).insert(id, conn.clone());
    let server = inner.clone();
    let handler = handler.clone();
    let spawned = thread::Builder::new()
        .name("ws-conn".into())
        .stack_size(THREAD_STACK)
        .spawn(move || {
            let _done = Done {
                inner: &server,
                conn: &*conn,
                id,
            };
            serve(&server, handler, &conn, peer, wrap);
        });
    if spawned.is_err() {
        inner.remove_conn(id);
    }
}

/// Closes a connection's socket and forgets it once its thread ends,
/// however it ends (a panicking handler too), so shutdown does not wait
/// for it.
struct Done<'a> {
    inner: &'a Inner,
    conn: &'a dyn Conn,
    id: u64,
}

impl Drop for Done<'_> {
    fn drop(&mut self) {
        self.conn.cut();
        self.inner.remove_conn(self.id);
    }
}

/// One connection, from its first byte to the end: the reader executes
/// ws-core's [`ServerConnection`] (request head, routing, the response and
/// its linger or the 101 and the session, the closing), or that machine
/// under TLS.
fn serve<H: Handler, C: Served<Handler = H>>(
    inner: &Arc<Inner>,
    handler: Arc<H>,
    conn: &Arc<ServerConn<C>>,
    (peer, accepted): (SocketAddr, Instant),
    wrap: impl FnOnce(ServerConnection<H>) -> Option<C>,
) {
    let config = &inner.config;
    let stall = inner.hub.limits().get_slow_client_timeout();
    let _ = conn
        .io
        .set_write_timeout(Some(stall + config.get_close_timeout()));
    let wake = ConnWake::new(inner.clone(), conn.clone());
    // From here on the connection is ended by `Finish`, also when a
    // handler callback panics on this thread.
    let finish = Finish {
        conn,
        wake: wake.clone(),
    };
    // The handshake deadline runs from the accept. An upgrade registers in the
    // hub (closed at once with 1001 if shutting down) and runs `on_open`
    // inside the machine's `poll`, under the connection's lock, with the
    // 101 queued ahead of what `on_open` sends: a writer started by a wake
    // during `on_open` waits for the lock and then writes the 101 first.
    let Some(machine) = wrap(ServerConnection::new(
        handler,
        inner.hub.clone(),
        wake.clone(),
        peer,
        config.clone(),
        accepted,
    )) else {
        return;
    };
    conn.lock().connection = Some(machine);
    reader_loop(conn, &wake);
    drop(finish);
}

/// Ends a connection when its reader returns (or unwinds from a panicking
/// handler): cuts the socket, drops the [`ServerConnection`] (a session
/// still open leaves the hub, so nothing can start the writer any more, and
/// the handler's `on_close` runs, outside the connection's lock; a session
/// that finished in `poll` did so there), and waits for the writer.
struct Finish<'a, C: Served> {
    conn: &'a ServerConn<C>,
    wake: Arc<ConnWake<C>>,
}

impl<C: Served> Drop for Finish<'_, C> {
    fn drop(&mut self) {
        let conn = self.conn;
        let _ = conn.io.shutdown(Shutdown::Both);
        let connection = {
            let mut st = conn.lock();
            st.done = true;
            st.connection.take()
        };
        conn.notify_done();
        drop(connection);
        self.wake.signal.wake();
        self.wake.join();
    }
}

/// Cuts a connection whose writer thread unwinds from a panicking handler
/// (its callbacks also run on the writer, in `ServerConnection::poll`), so
/// the reader does not go on without it.
struct CutOnPanic<'a, C: Served>(&'a ServerConn<C>);

impl<C: Served> Drop for CutOnPanic<'_, C> {
    fn drop(&mut self) {
        if thread::panicking() {
            let _ = self.0.io.shutdown(Shutdown::Both);
        }
    }
}

/// Executes the connection from its first byte: reads into it (with the
/// socket's read timeout set from its `poll_timeout`: the handshake
/// deadline, the linger, the protocol's timers), polls it, writes what it
/// queues (the response, or the 101 and frames; echoes are batched: all
/// echoes of one read leave in one write), shuts the write side when it
/// asks (after a plain HTTP response), and returns once it is finished.
/// While the hub pauses the session (it publishes, and some client's queue
/// is above its mark), it waits for the wake instead of reading, so TCP
/// pushes back on the client.
fn reader_loop<C: Served>(conn: &ServerConn<C>, wake: &ConnWake<C>) {
    let mut spare = BytesMut::new();
    let mut timeouts = TimeoutCache::default();
    let mut eof = false;
    loop {
        let seen = wake.signal.seen();
        let now = Instant::now();
        let (timer, wait) = {
            let mut st = conn.lock();
            let Some(c) = st.connection.as_mut() else {
                return;
            };
            // A protocol error has queued its close frame; the loop below
            // writes it and finishes.
            let _ = c.poll(now);
            if c.wants_write() {
                drop(st);
                if let Err(e) = conn.flush(true) {
                    failed(conn, &e);
                    return;
                }
                continue;
            }
            if c.wants_write_shutdown() {
                // A plain HTTP response is out: end our side, then linger.
                let _ = conn.io.shutdown(Shutdown::Write);
                c.write_shut();
            }
            if c.is_finished() {
                return;
            }
            let wait = eof || !c.wants_read();
            if wait && !eof && !c.is_paused() {
                // No room because the other thread's write is in flight:
                // wait for it on the write lock (no wake comes when a write
                // ends), then look again.
                drop(st);
                if let Err(e) = conn.flush(true) {
                    failed(conn, &e);
                    return;
                }
                continue;
            }
            if !wait {
                // Nothing buffered: let ws-core drop what a burst grew
                // (large buffers after its idle delay, via the timer).
                c.release_idle_buffers();
            }
            (c.poll_timeout(now), wait)
        };
        if wait {
            wake.signal.wait(seen, timer);
            continue;
        }
        match conn.read_once(&mut spare, &mut timeouts, timer, now) {
            Step::Data | Step::Interrupted | Step::TimedOut => {}
            Step::Eof => {
                eof = true;
                if let Some(c) = conn.lock().connection.as_mut() {
                    c.handle_eof();
                }
            }
            Step::Failed => return,
        }
    }
}

/// Tells the connection its socket failed (logged in its span with the
/// `tracing` feature).
fn failed<C: Served>(conn: &ServerConn<C>, e: &std::io::Error) {
    if let Some(c) = conn.lock().connection.as_mut() {
        c.transport_error(e);
    }
}

/// Moves what the hub queues for the client (broadcasts, publishes, sends)
/// to its socket, in batches (everything waiting leaves in one write), and
/// closes the client when the hub lets go of it (1013 too slow, 1001 on
/// shutdown, or the application's [`ServerHandle::close`]).
fn writer_loop<C: Served>(inner: &Inner, conn: &ServerConn<C>, wake: &ConnWake<C>) {
    let close_timeout = inner.config.get_close_timeout();
    let _cut = CutOnPanic(conn);
    loop {
        let seen = wake.signal.seen();
        let now = Instant::now();
        let (timer, open, wants_write) = {
            let mut st = conn.lock();
            if st.done {
                return;
            }
            // Started by a wake from the hub, so the machine is stored and
            // its session was opened (under this lock); `Finish` takes the
            // machine only when it sets `done`. Once the session is over the
            // machine is not open, and the closing below applies.
            let Some(c) = st.connection.as_mut() else {
                return;
            };
            let _ = c.poll(now);
            let open = c
                .session()
                .is_some_and(|s| s.connection().state() == State::Open);
            (c.poll_timeout(now), open, c.wants_write())
        };
        if wants_write {
            if let Err(e) = conn.flush(true) {
                failed(conn, &e);
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
fn finish_close<C: Served>(conn: &ServerConn<C>, close_timeout: Duration) {
    if !conn.wait_done(close_timeout) {
        let _ = conn.io.shutdown(Shutdown::Both);
    }
}
