//! The demo [`Server`]: echo or chat (broadcast) over tokio, one task per
//! connection.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, watch};
use ws_core::handshake::{Accept, ServerHandshake};
use ws_core::hub::{BroadcastReport, Hub, Outbox, PushError, SLOW_CLIENT_CLOSE};
use ws_core::session::ServerSession;
use ws_core::site::{Route, ServerMode, route};
use ws_core::{CloseCode, Config, Connection, Message, PreparedMessage, Role};

use crate::Result;
use crate::handshake::{read_request, respond_and_close, write_upgrade};

/// Default bound of each client's broadcast queue, in messages.
const DEFAULT_QUEUE_CAPACITY: usize = 1024;

/// A client's broadcast queue. A `VecDeque` under a mutex that allocates
/// only once a broadcast arrives: tokio's bounded channel allocated a
/// 32-slot block per client up front (~1 KiB of the idle footprint).
#[derive(Debug, Default)]
struct ClientQueue {
    state: std::sync::Mutex<QueueState>,
    /// Wakes the connection task when a message arrives.
    ready: Notify,
    /// Wakes the connection task when the hub drops its outbox (slow client
    /// or shutdown), even while it is not taking messages.
    dropped: Notify,
}

#[derive(Debug, Default)]
struct QueueState {
    items: std::collections::VecDeque<PreparedMessage>,
    capacity: usize,
    closed: bool,
}

impl ClientQueue {
    fn lock(&self) -> std::sync::MutexGuard<'_, QueueState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The next message; `None` once the hub let go and the queue is empty.
    /// Cancel-safe: a message is only taken inside the lock, never lost.
    async fn recv(&self) -> Option<PreparedMessage> {
        loop {
            {
                let mut st = self.lock();
                if let Some(m) = st.items.pop_front() {
                    return Some(m);
                }
                if st.closed {
                    return None;
                }
            }
            // `notify_one` stores a permit, so a push between the check and
            // this await is not missed.
            self.ready.notified().await;
        }
    }

    fn try_recv(&self) -> Option<PreparedMessage> {
        self.lock().items.pop_front()
    }

    /// Resolves once the hub has dropped this client.
    async fn closed(&self) {
        loop {
            if self.lock().closed {
                return;
            }
            self.dropped.notified().await;
        }
    }
}

/// The hub's end of a [`ClientQueue`]; dropping it closes the queue.
#[derive(Debug)]
struct TokioOutbox(Arc<ClientQueue>);

impl Outbox for TokioOutbox {
    fn try_push(&self, msg: &PreparedMessage) -> std::result::Result<(), PushError> {
        let mut st = self.0.lock();
        if st.closed {
            return Err(PushError::Closed);
        }
        if st.items.len() >= st.capacity {
            return Err(PushError::Full);
        }
        // Cloning a prepared message only bumps a reference count.
        st.items.push_back(msg.clone());
        drop(st);
        self.0.ready.notify_one();
        Ok(())
    }
}

impl Drop for TokioOutbox {
    fn drop(&mut self) {
        self.0.lock().closed = true;
        self.0.ready.notify_one();
        self.0.dropped.notify_one();
    }
}

/// State shared by the accept loop, the connection tasks and the handles.
#[derive(Debug)]
struct Shared {
    hub: Hub<TokioOutbox>,
    mode: ServerMode,
    config: Config,
    queue_capacity: usize,
    shutting_down: AtomicBool,
    stop: watch::Sender<bool>,
    /// Running accept loop and connection tasks.
    tasks: AtomicUsize,
    idle: Notify,
}

impl Shared {
    /// Counts a task until the returned guard is dropped.
    fn track(self: &Arc<Self>) -> TaskGuard {
        self.tasks.fetch_add(1, Ordering::SeqCst);
        TaskGuard(self.clone())
    }

    /// Stops accepting and drops every client's queue, so each connection
    /// task closes its client with 1001. Idempotent.
    fn begin_shutdown(&self) {
        self.shutting_down.store(true, Ordering::SeqCst);
        self.stop.send_replace(true);
        self.hub.clear();
    }

    /// The close code for a client whose queue was dropped.
    fn dropped_close_code(&self) -> CloseCode {
        if self.shutting_down.load(Ordering::SeqCst) {
            CloseCode::GOING_AWAY
        } else {
            SLOW_CLIENT_CLOSE
        }
    }
}

/// Keeps [`Shared::tasks`] accurate however a task ends.
struct TaskGuard(Arc<Shared>);

impl Drop for TaskGuard {
    fn drop(&mut self) {
        if self.0.tasks.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

/// Shuts the server down if [`Server::run`]'s future is dropped, so its
/// clients are closed with 1001 rather than left running.
struct RunGuard(Arc<Shared>);

impl Drop for RunGuard {
    fn drop(&mut self) {
        self.0.begin_shutdown();
    }
}

/// Builder for the demo WebSocket server. Nothing is bound until
/// [`start`](Self::start) or [`run`](Self::run).
///
/// # How a connection is served
///
/// Each connection task does the opening handshake and routing with
/// ws-core ([`ServerHandshake`], [`route`]), then runs one loop that
/// `tokio::select!`s over:
///
/// - socket readable, while [`ServerSession::wants_read`]: read once straight
///   into the connection's buffer, let the session process *every* complete
///   message (echoes are queued, chat messages broadcast through the
///   [`Hub`]), then write everything queued with a single `write` call; when
///   a read would block, the connection's empty buffers are released
///   ([`Connection::release_idle_buffers`]) before the task parks, so an
///   idle client holds no buffer memory;
/// - socket writable, while bytes are queued: write them;
/// - the client's broadcast queue, while [`ServerSession::wants_outbox`]:
///   take one message plus whatever else is already queued, then write them
///   all at once;
/// - the client's queue being dropped by the hub (slow client: close 1013;
///   shutdown: close 1001);
/// - one timer at [`Connection::poll_timeout`].
///
/// Every branch is cancel-safe (`readable`, `writable`, the client queue's
/// `recv` and `closed`, and a `Sleep` lose nothing when another branch wins),
/// and all progress lives in ws-core's buffers, so the loop can be
/// re-entered at any point. No branch blocks: reads and writes use
/// `try_read_buf` / `try_write` after readiness. Nothing here needs a
/// multi-threaded runtime; the server works the same on a `current_thread`
/// runtime.
#[derive(Debug, Clone)]
pub struct Server {
    addr: String,
    mode: ServerMode,
    config: Config,
    queue_capacity: usize,
}

impl Server {
    /// A server that will listen on `addr`, e.g. `"127.0.0.1:8080"` (port 0
    /// picks a free port; see [`ServerHandle::local_addr`]).
    pub fn new(addr: impl Into<String>) -> Self {
        Server {
            addr: addr.into(),
            mode: ServerMode::Chat,
            config: Config::default(),
            queue_capacity: DEFAULT_QUEUE_CAPACITY,
        }
    }

    /// Echo each message back, or broadcast it to every client (chat, the
    /// default).
    pub fn mode(mut self, mode: ServerMode) -> Self {
        self.mode = mode;
        self
    }

    /// The configuration of every accepted connection (limits, timeouts).
    pub fn config(mut self, config: Config) -> Self {
        self.config = config;
        self
    }

    /// How many broadcast messages may wait for one client (default 1024);
    /// a client whose queue is full is dropped with close code 1013, so one
    /// slow reader never holds up the others. At least 1.
    pub fn queue_capacity(mut self, messages: usize) -> Self {
        self.queue_capacity = messages.max(1);
        self
    }

    fn into_shared(self) -> Arc<Shared> {
        Arc::new(Shared {
            hub: Hub::new(),
            mode: self.mode,
            config: self.config,
            queue_capacity: self.queue_capacity,
            shutting_down: AtomicBool::new(false),
            stop: watch::Sender::new(false),
            tasks: AtomicUsize::new(0),
            idle: Notify::new(),
        })
    }

    /// Binds and accepts connections in a background task; returns at once
    /// with a handle for the address, broadcasts and shutdown. Dropping
    /// every handle does not stop the server.
    pub async fn start(self) -> io::Result<ServerHandle> {
        let listener = TcpListener::bind(&self.addr).await?;
        let local_addr = listener.local_addr()?;
        let shared = self.into_shared();
        let guard = shared.track();
        tokio::spawn(accept_loop(listener, shared.clone(), guard));
        Ok(ServerHandle { shared, local_addr })
    }

    /// Binds and accepts connections on the current task, forever. Accept
    /// errors (e.g. out of file descriptors) are retried after a short
    /// pause rather than ending the server. Dropping the future (e.g. from a
    /// `select!` with Ctrl-C) stops accepting and closes every client with
    /// 1001 without waiting; use [`start`](Self::start) and
    /// [`ServerHandle::shutdown`] to wait for the clients.
    pub async fn run(self) -> io::Result<()> {
        let listener = TcpListener::bind(&self.addr).await?;
        let shared = self.into_shared();
        let _shutdown_on_drop = RunGuard(shared.clone());
        let guard = shared.track();
        accept_loop(listener, shared.clone(), guard).await;
        Ok(())
    }
}

/// A running server: its address, broadcasts, client count and shutdown.
/// Cheap to clone.
#[derive(Debug, Clone)]
pub struct ServerHandle {
    shared: Arc<Shared>,
    local_addr: SocketAddr,
}

impl ServerHandle {
    /// The bound address (with the real port when bound to port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
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
        Ok(self.shared.hub.broadcast(&PreparedMessage::new(msg)?))
    }

    /// Number of clients currently in the broadcast registry (the hub), in
    /// either mode: a client is registered once its upgrade succeeded and
    /// removed when its connection ends, or at once when the hub drops it
    /// for being too slow (its queue was full) or the server shuts down;
    /// such a connection is then closed (1013 or 1001) in the background,
    /// bounded by the timeouts, without being counted here.
    pub fn client_count(&self) -> usize {
        self.shared.hub.len()
    }

    /// Stops accepting, closes every client with 1001 (going away), and
    /// waits for the connection tasks to finish, at most the close timeout
    /// plus one second. Idempotent. Cancel-safe: dropping it stops only the
    /// waiting; the shutdown itself has started.
    pub async fn shutdown(&self) {
        self.shared.begin_shutdown();
        let limit = self.shared.config.get_close_timeout() + Duration::from_secs(1);
        let all_done = async {
            loop {
                let idle = self.shared.idle.notified();
                let mut idle = std::pin::pin!(idle);
                idle.as_mut().enable();
                if self.shared.tasks.load(Ordering::SeqCst) == 0 {
                    return;
                }
                idle.await;
            }
        };
        let _ = tokio::time::timeout(limit, all_done).await;
    }
}

/// Accepts until shutdown, spawning one task per connection.
async fn accept_loop(listener: TcpListener, shared: Arc<Shared>, _guard: TaskGuard) {
    let mut stop = shared.stop.subscribe();
    loop {
        if *stop.borrow_and_update() {
            return;
        }
        tokio::select! {
            biased;
            // The sender lives in `shared`, so this only reports a change.
            _ = stop.changed() => {}
            accepted = listener.accept() => match accepted {
                Ok((tcp, _peer)) => {
                    let guard = shared.track();
                    let shared = shared.clone();
                    tokio::spawn(async move {
                        let _guard = guard;
                        serve(&shared, tcp).await;
                    });
                }
                // Per-connection failures: the next accept is fine.
                Err(e) if matches!(
                    e.kind(),
                    io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset | io::ErrorKind::Interrupted
                ) => {}
                // Resource exhaustion (EMFILE...): pause instead of spinning.
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            },
        }
    }
}

/// Removes a client from the hub however its task ends.
struct Registration<'a> {
    shared: &'a Shared,
    id: ws_core::hub::ClientId,
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        self.shared.hub.unregister(self.id);
    }
}

/// One connection: handshake and routing, then the session loop.
async fn serve(shared: &Shared, mut tcp: TcpStream) {
    // Latency matters more than packet count; the loop batches writes itself.
    let _ = tcp.set_nodelay(true);
    let config = shared.config.clone();
    let handshake = tokio::time::timeout(
        config.get_handshake_timeout(),
        handshake(&mut tcp, shared.mode),
    );
    let buffered = match handshake.await {
        Ok(Ok(Some(buffered))) => buffered,
        // Answered with a page or an error, failed, or timed out.
        _ => return,
    };
    let queue = Arc::new(ClientQueue::default());
    queue.lock().capacity = shared.queue_capacity;
    let id = shared.hub.register(TokioOutbox(queue.clone()));
    let _registration = Registration { shared, id };
    if shared.shutting_down.load(Ordering::SeqCst) {
        // Registered after the shutdown cleared the hub: close with 1001 too.
        shared.hub.unregister(id);
    }
    let session = ServerSession::new(
        Connection::with_buffered(Role::Server, config, buffered),
        shared.mode,
    );
    let _ = drive(shared, session, tcp, &queue).await;
}

/// Reads the request and routes it; `Some(bytes after the head)` when it
/// was upgraded to a WebSocket.
async fn handshake(tcp: &mut TcpStream, mode: ServerMode) -> Result<Option<BytesMut>> {
    let mut hs = ServerHandshake::new();
    let req = read_request(tcp, &mut hs).await?;
    match route(&req, mode, &Accept::new()) {
        Route::Upgrade { response } => {
            write_upgrade(tcp, &response).await?;
            Ok(Some(hs.take_remaining()))
        }
        Route::Respond { response } => {
            respond_and_close(tcp, &response).await;
            Ok(None)
        }
    }
}

/// Writes as much of the queued output as the socket takes now, normally in
/// one call. `Err` means the socket is unusable.
fn write_queued(tcp: &TcpStream, conn: &mut Connection) -> io::Result<()> {
    loop {
        let written = {
            // One vectored write: small frames batched in ws-core's buffer and
            // large payloads it queued by reference leave together.
            let mut slices = [io::IoSlice::new(&[]); 16];
            match conn.transmit_slices(&mut slices) {
                0 => return Ok(()),
                1 => tcp.try_write(&slices[0]),
                n => tcp.try_write_vectored(&slices[..n]),
            }
        };
        match written {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => conn.advance_transmit(n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) => return Err(e),
        }
    }
}

/// One read after `readable()` fired, straight into the connection's buffer;
/// returns the bytes read and whether that drained the socket.
///
/// Goes through `AsyncRead::poll_read` rather than `try_read_buf`: on a
/// short read tokio then clears the socket's readiness itself, so the next
/// `readable()` parks instead of costing a read that fails with EAGAIN.
/// (`try_read_buf` only clears it on EAGAIN: measured one failed `recvfrom`
/// per echoed message in the 20 B closed-loop benchmark.) `Pending` is
/// reported as `WouldBlock`; the loop's next `readable()` registers the real
/// waker.
fn read_ready(tcp: &mut TcpStream, conn: &mut Connection) -> io::Result<(usize, bool)> {
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    let buf = conn.read_buf();
    let offered = buf.capacity() - buf.len();
    match tokio_util::io::poll_read_buf(std::pin::Pin::new(tcp), &mut cx, buf) {
        // Fewer bytes than offered: the socket is drained.
        std::task::Poll::Ready(r) => r.map(|n| (n, n < offered)),
        std::task::Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
    }
}

/// The session loop (see the module docs). Returns when the session is
/// finished, the socket fails, or a peer that ended its side does not take
/// our remaining bytes within the close timeout.
async fn drive(
    shared: &Shared,
    mut session: ServerSession,
    mut tcp: TcpStream,
    outbox: &ClientQueue,
) -> Result<()> {
    let mut outbox_open = true;
    let mut read_eof = false;
    let timer = tokio::time::sleep(Duration::ZERO);
    let mut timer = std::pin::pin!(timer);
    let mut armed: Option<Instant> = None;

    // Frames the client pipelined behind its handshake are already buffered.
    let _ = session.process(|frame| {
        shared.hub.broadcast(frame);
    });
    write_queued(&tcp, session.connection())?;
    // The handshake's reads may have left the socket's readiness cleared
    // (tokio clears it on a short read), so the first wait can park without
    // a would-block read: release the (empty) handshake buffer now.
    session.connection().release_idle_buffers();

    loop {
        if session.is_finished() {
            let _ = tcp.shutdown().await;
            return Ok(());
        }
        // After the peer ended its side, ws-core's close timer (armed by
        // `handle_eof`) bounds how long queued bytes wait for a peer that does
        // not read; when it fires the session is finished.
        let deadline = session.connection().poll_timeout(Instant::now());
        if let Some(d) = deadline {
            if armed != Some(d) {
                timer.as_mut().reset(d.into());
                armed = Some(d);
            }
        }
        let want_write = session.connection().wants_write();
        let want_read = !read_eof && session.wants_read();
        let want_outbox = outbox_open && session.wants_outbox();

        tokio::select! {
            biased;
            ready = tcp.writable(), if want_write => {
                ready?;
                write_queued(&tcp, session.connection())?;
            }
            ready = tcp.readable(), if want_read => {
                ready?;
                let mut drained = false;
                match read_ready(&mut tcp, session.connection()) {
                    Ok((0, _)) => {
                        read_eof = true;
                        session.connection().handle_eof();
                    }
                    Ok((_, short)) => drained = short,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        // Drained: the loop now parks until readable. Free
                        // the empty buffers so an idle connection holds
                        // none (the next read allocates again). Only here,
                        // not after every message, so a busy connection
                        // keeps its buffers.
                        session.connection().release_idle_buffers();
                        continue;
                    }
                    Err(e) => return Err(e.into()),
                }
                // Every complete message, then all echoes in one write. An
                // error here (protocol violation, peer vanished) has already
                // queued the right close frame; the loop flushes it.
                let _ = session.process(|frame| {
                    shared.hub.broadcast(frame);
                });
                write_queued(&tcp, session.connection())?;
                if drained {
                    // A short read emptied the socket (and cleared its
                    // readiness): the loop parks next, so free what is empty.
                    session.connection().release_idle_buffers();
                }
            }
            msg = outbox.recv(), if want_outbox => match msg {
                Some(frame) => {
                    session.push_outbox(&frame);
                    // Batch whatever else is already waiting.
                    while session.wants_outbox() {
                        match outbox.try_recv() {
                            Some(frame) => session.push_outbox(&frame),
                            None => break,
                        }
                    }
                    write_queued(&tcp, session.connection())?;
                }
                None => {
                    outbox_open = false;
                    session.outbox_closed(shared.dropped_close_code());
                }
            },
            // `recv` already reports a closed queue while it is polled; this
            // branch (a lock and a `Notified` per park) is only needed while
            // back-pressure keeps `recv` out of the select.
            () = outbox.closed(), if outbox_open && !want_outbox => {
                outbox_open = false;
                session.outbox_closed(shared.dropped_close_code());
            }
            () = &mut timer, if deadline.is_some() => {
                let now = Instant::now().max(armed.unwrap_or_else(Instant::now));
                session.connection().handle_timeout(now);
                write_queued(&tcp, session.connection())?;
            }
        }
    }
}
