//! The demo server: [`Server`] (builder) and [`ServerHandle`] (control).
//!
//! Each connection runs in its own task: ws-core's `ServerHandshake` and
//! `site::route` answer the HTTP request; an upgraded connection is driven
//! by ws-core's `ServerSession` in one poll loop over read, write, the
//! broadcast outbox and the timer. Broadcast bookkeeping is ws-core's `Hub`
//! with one bounded `async_channel` per client.

use crate::io::{
    handshake_timeout, poll_write_conn, read_spare, respond_and_close, timeout, write_all,
};
use crate::runtime::Runtime;
use crate::{Config, Message, Result, ServerMode};
use async_channel::{Receiver, Sender, TrySendError};
use async_io::{Async, Timer};
use async_net::TcpListener;
use bytes::BytesMut;
use futures_core::Stream;
use std::fmt;
use std::future::{Future, poll_fn};
use std::io::{self, Read};
use std::marker::PhantomData;
use std::net::SocketAddr;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};
use ws_core::handshake::{Accept, ServerHandshake};
use ws_core::hub::{BroadcastReport, ClientId, Hub, Outbox, PushError, SLOW_CLIENT_CLOSE};
use ws_core::session::ServerSession;
use ws_core::site::{Route, route};
use ws_core::{CloseCode, Connection, PreparedMessage, Role};

/// Steps one connection poll takes before yielding to the executor, so a
/// flooding client cannot starve other tasks.
const POLL_BUDGET: usize = 64;
/// Pause after a failed `accept` (e.g. out of file descriptors) so the loop
/// does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);
/// Extra time `shutdown` waits beyond the close timeout.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(1);

/// A client's broadcast queue as the hub sees it: a channel bounded to
/// `capacity` messages, plus a second channel that only signals (by
/// closing) that the hub let go of this client, which the connection task
/// can notice even while it is not taking broadcasts (it is behind on
/// writing).
///
/// The queue is an *unbounded* `async_channel` with the bound checked here:
/// a bounded one preallocates (and initialises) all its slots, about 40 KiB
/// per client for the default 1024, while the unbounded one allocates small
/// blocks only while messages are queued. The check cannot overshoot: the
/// hub pushes under its lock, and the connection task only takes messages
/// out.
struct ChannelOutbox {
    queue: Sender<PreparedMessage>,
    capacity: usize,
    _alive: Sender<()>,
}

impl Outbox for ChannelOutbox {
    fn try_push(&self, msg: &PreparedMessage) -> std::result::Result<(), PushError> {
        if self.queue.len() >= self.capacity {
            return Err(if self.queue.is_closed() {
                PushError::Closed
            } else {
                PushError::Full
            });
        }
        // A PreparedMessage clone shares the encoded bytes: no allocation.
        self.queue.try_send(msg.clone()).map_err(|e| match e {
            TrySendError::Full(_) => PushError::Full,
            TrySendError::Closed(_) => PushError::Closed,
        })
    }
}

/// State shared by the handle, the accept loop and the connection tasks.
struct Shared {
    hub: Hub<ChannelOutbox>,
    mode: ServerMode,
    config: Config,
    queue_capacity: usize,
    /// Set before the hub is cleared on shutdown: a closed outbox then means
    /// "going away" rather than "too slow".
    stopping: AtomicBool,
    /// Closed on shutdown; accept loop and handshakes watch it.
    stop_tx: Sender<()>,
    stop_rx: Receiver<()>,
    /// Ends (all senders dropped) once the accept loop and every connection
    /// task have finished.
    done_rx: Receiver<()>,
}

/// A WebSocket server builder: echo or chat mode, test page at `/`.
/// Nothing is bound until [`start`](Self::start) or [`run`](Self::run).
pub struct Server<R> {
    addr: String,
    mode: ServerMode,
    config: Config,
    queue_capacity: usize,
    _rt: PhantomData<fn() -> R>,
}

impl<R> fmt::Debug for Server<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Server")
            .field("addr", &self.addr)
            .field("mode", &self.mode)
            .field("queue_capacity", &self.queue_capacity)
            .finish_non_exhaustive()
    }
}

impl<R: Runtime> Server<R> {
    /// A server for `addr` (e.g. `"127.0.0.1:8080"`; port 0 picks a free
    /// port), in chat mode, with the default config and a queue of 1024
    /// broadcasts per client.
    pub fn new(addr: impl Into<String>) -> Self {
        Server {
            addr: addr.into(),
            mode: ServerMode::Chat,
            config: Config::default(),
            queue_capacity: 1024,
            _rt: PhantomData,
        }
    }

    /// Echo (every path upgrades, messages come back) or chat (`/ws`
    /// upgrades, messages go to every client).
    pub fn mode(mut self, mode: ServerMode) -> Self {
        self.mode = mode;
        self
    }

    /// Limits and timeouts for every connection.
    pub fn config(mut self, config: Config) -> Self {
        self.config = config;
        self
    }

    /// How many broadcasts may wait for one client before it is dropped as
    /// too slow (close 1013). At least 1.
    pub fn queue_capacity(mut self, messages: usize) -> Self {
        self.queue_capacity = messages.max(1);
        self
    }

    /// Binds and returns at once; connections are accepted by a background
    /// task until [`ServerHandle::shutdown`] (dropping the handle does not
    /// stop the server). Dropping this future before it resolves binds
    /// nothing lasting.
    pub async fn start(self) -> io::Result<ServerHandle<R>> {
        let (handle, listener, done_tx) = self.bind().await?;
        let shared = handle.shared.clone();
        R::spawn(accept_loop::<R>(shared, listener, done_tx));
        Ok(handle)
    }

    /// Binds and accepts in the calling task, forever (shutting down, e.g. on
    /// Ctrl-C, is the caller's business: drop the future, or use
    /// [`start`](Self::start) and [`ServerHandle::shutdown`]). Dropping the
    /// future stops accepting; connections already accepted run on in their
    /// own tasks.
    pub async fn run(self) -> io::Result<()> {
        let (handle, listener, done_tx) = self.bind().await?;
        accept_loop::<R>(handle.shared.clone(), listener, done_tx).await;
        Ok(())
    }

    async fn bind(self) -> io::Result<(ServerHandle<R>, TcpListener, Sender<()>)> {
        let listener = TcpListener::bind(self.addr.as_str()).await?;
        let local_addr = listener.local_addr()?;
        let (stop_tx, stop_rx) = async_channel::bounded(1);
        let (done_tx, done_rx) = async_channel::bounded(1);
        let shared = Arc::new(Shared {
            hub: Hub::new(),
            mode: self.mode,
            config: self.config,
            queue_capacity: self.queue_capacity,
            stopping: AtomicBool::new(false),
            stop_tx,
            stop_rx,
            done_rx,
        });
        let handle = ServerHandle {
            shared,
            local_addr,
            _rt: PhantomData,
        };
        Ok((handle, listener, done_tx))
    }
}

/// Controls a started server; cheap to clone and share between tasks.
pub struct ServerHandle<R> {
    shared: Arc<Shared>,
    local_addr: SocketAddr,
    _rt: PhantomData<fn() -> R>,
}

impl<R> Clone for ServerHandle<R> {
    fn clone(&self) -> Self {
        ServerHandle {
            shared: self.shared.clone(),
            local_addr: self.local_addr,
            _rt: PhantomData,
        }
    }
}

impl<R> fmt::Debug for ServerHandle<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerHandle")
            .field("local_addr", &self.local_addr)
            .field("clients", &self.shared.hub.len())
            .finish_non_exhaustive()
    }
}

impl<R: Runtime> ServerHandle<R> {
    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Queues `msg` (text or binary) for every registered client (in either
    /// mode), encoding it once. Clients whose queue is full are dropped (and
    /// closed with 1013); the report lists them.
    /// Never waits.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidMessage`](crate::Error::InvalidMessage) for anything
    /// but text or binary.
    pub fn broadcast(&self, msg: &Message) -> Result<BroadcastReport> {
        let prepared = PreparedMessage::new(msg)?;
        Ok(self.shared.hub.broadcast(&prepared))
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
    /// plus one second. Idempotent. Cancel-safe: the shutdown proceeds even
    /// if this future is dropped.
    pub async fn shutdown(&self) {
        let shared = &self.shared;
        shared.stopping.store(true, Ordering::SeqCst);
        shared.stop_tx.close();
        // Dropping every outbox makes each task close with 1001.
        shared.hub.clear();
        let limit = shared.config.get_close_timeout() + SHUTDOWN_GRACE;
        // `recv` fails once every task (each holds a done sender) has ended.
        let _ = timeout(limit, shared.done_rx.recv()).await;
    }
}

/// Waits for `fut` unless the server stops first (`None`).
async fn unless_stopped<T>(stop: &Receiver<()>, fut: impl Future<Output = T>) -> Option<T> {
    let mut fut = pin!(fut);
    let mut stopped = pin!(stop.recv());
    poll_fn(|cx| {
        if let Poll::Ready(v) = fut.as_mut().poll(cx) {
            return Poll::Ready(Some(v));
        }
        match stopped.as_mut().poll(cx) {
            Poll::Ready(_) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    })
    .await
}

async fn accept_loop<R: Runtime>(shared: Arc<Shared>, listener: TcpListener, done: Sender<()>) {
    loop {
        if shared.stop_tx.is_closed() {
            return;
        }
        match unless_stopped(&shared.stop_rx, listener.accept()).await {
            None => return,
            Some(Ok((tcp, _peer))) => {
                R::spawn(serve_connection(shared.clone(), tcp, done.clone()));
            }
            Some(Err(_)) => {
                // Transient (e.g. EMFILE, a reset before accept): back off.
                let _ = unless_stopped(&shared.stop_rx, Timer::after(ACCEPT_BACKOFF)).await;
            }
        }
    }
}

/// Removes the client from the hub however its task ends.
struct Registration<'a> {
    hub: &'a Hub<ChannelOutbox>,
    id: ClientId,
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        self.hub.unregister(self.id);
    }
}

/// One TCP connection: HTTP handshake and routing, then the WebSocket
/// session. `_done` is dropped when the task ends (see `shutdown`).
async fn serve_connection(shared: Arc<Shared>, tcp: async_net::TcpStream, _done: Sender<()>) {
    // The async-io handle underneath, for readiness without a read buffer
    // (see `SessionDriver::poll_read`). Nothing else holds it right after
    // `accept`.
    let Some(mut tcp) = Arc::into_inner(Arc::<Async<std::net::TcpStream>>::from(tcp)) else {
        return;
    };
    let _ = tcp.get_ref().set_nodelay(true);
    let limit = shared.config.get_handshake_timeout();
    // Boxed: the handshake's state (parser, timer, stop listener) is large
    // and short-lived; inline, it would size every connection's task for
    // its whole life.
    let hs = Box::pin(unless_stopped(
        &shared.stop_rx,
        handshake_timeout(limit, http_exchange(&mut tcp, shared.mode)),
    ))
    .await;
    let buffered = match hs {
        Some(Ok(Some(buffered))) => buffered,
        _ => return, // answered over HTTP, failed, timed out, or stopping
    };

    let (queue_tx, queue_rx) = async_channel::unbounded();
    let (alive_tx, alive_rx) = async_channel::bounded(1);
    let id = shared.hub.register(ChannelOutbox {
        queue: queue_tx,
        capacity: shared.queue_capacity,
        _alive: alive_tx,
    });
    let _registration = Registration {
        hub: &shared.hub,
        id,
    };
    // A shutdown that cleared the hub before we registered: leave at once.
    if shared.stopping.load(Ordering::SeqCst) {
        shared.hub.unregister(id);
    }

    let conn = Connection::with_buffered(Role::Server, shared.config.clone(), buffered);
    // async-channel receivers are `!Unpin` (they hold an event listener).
    let queue_rx = pin!(queue_rx);
    let alive_rx = pin!(alive_rx);
    let mut driver = SessionDriver {
        io: tcp,
        session: ServerSession::new(conn, shared.mode),
        queue: queue_rx,
        alive: alive_rx,
        outbox_done: false,
        timer: Timer::never(),
        deadline: None,
        read_eof: false,
        read_parked: false,
        shared: &shared,
    };
    poll_fn(|cx| driver.poll_drive(cx)).await;
    use futures_util::io::AsyncWriteExt;
    let _ = driver.io.close().await;
}

/// Reads the request and answers it as ws-core's router says. Returns the
/// bytes after the request head when the connection became a WebSocket.
async fn http_exchange(
    io: &mut Async<std::net::TcpStream>,
    mode: ServerMode,
) -> Result<Option<BytesMut>> {
    let mut hs = ServerHandshake::new();
    let req = crate::handshake::read_request(io, &mut hs).await?;
    match route(&req, mode, &Accept::new()) {
        Route::Upgrade { response } => {
            write_all(io, &response).await?;
            Ok(Some(hs.take_remaining()))
        }
        Route::Respond { response } => {
            respond_and_close(io, &response).await;
            Ok(None)
        }
    }
}

/// One upgraded client, driven by a single poll loop (so there is nothing
/// to cancel half-way): decode and dispatch, write, timer, outbox, read.
struct SessionDriver<'a> {
    io: Async<std::net::TcpStream>,
    session: ServerSession,
    queue: Pin<&'a mut Receiver<PreparedMessage>>,
    alive: Pin<&'a mut Receiver<()>>,
    outbox_done: bool,
    timer: Timer,
    deadline: Option<Instant>,
    read_eof: bool,
    /// A read found the socket empty: wait for readiness (without a buffer)
    /// before reading again.
    read_parked: bool,
    shared: &'a Shared,
}

impl SessionDriver<'_> {
    fn outbox_close_code(&self) -> CloseCode {
        if self.shared.stopping.load(Ordering::SeqCst) {
            CloseCode::GOING_AWAY
        } else {
            SLOW_CLIENT_CLOSE
        }
    }

    /// One read step: `Ready(Ok)` when something happened (bytes, end of
    /// stream, an interrupted read), `Pending` when the socket is empty.
    ///
    /// Once a read would block, the connection's empty buffers are released
    /// ([`Connection::release_idle_buffers`]) and readiness is awaited with
    /// [`Async::poll_readable`], which needs no buffer (and no syscall while
    /// nothing arrived): an idle client holds no buffer memory, and wakes
    /// for other reasons (broadcasts, timers) do not read. A busy
    /// connection keeps its buffers: they are released only when the
    /// socket runs dry, never after every message.
    fn poll_read(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.read_parked {
            ready!(self.io.poll_readable(cx))?;
            self.read_parked = false;
        }
        let conn = self.session.connection();
        let mut tcp = self.io.get_ref();
        match read_spare(conn.read_buf(), |spare| tcp.read(spare)) {
            Ok(0) => {
                self.read_eof = true;
                conn.handle_eof();
                Poll::Ready(Ok(()))
            }
            Ok(_) => Poll::Ready(Ok(())),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                conn.release_idle_buffers();
                // The next turn arms any timer the release started (large
                // buffers are freed after an idle delay), then registers for
                // readiness (or finds that it came meanwhile).
                self.read_parked = true;
                Poll::Ready(Ok(()))
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Poll::Ready(Ok(())),
            Err(e) => Poll::Ready(Err(e)),
        }
    }

    /// Ready when the connection is over (finished, or the transport failed).
    fn poll_drive(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        for _ in 0..POLL_BUDGET {
            // Everything decoded from the last read: echoes are queued
            // together and leave in the single write below.
            let hub = &self.shared.hub;
            // An error has already queued the close frame; keep driving.
            let _ = self.session.process(|frame| {
                hub.broadcast(frame);
            });

            if self.session.connection().wants_write() {
                match poll_write_conn(&mut self.io, self.session.connection(), cx) {
                    Poll::Ready(Ok(())) | Poll::Pending => {}
                    Poll::Ready(Err(_)) => return Poll::Ready(()),
                }
            }
            if self.session.is_finished() {
                return Poll::Ready(());
            }

            let mut progressed = false;

            let conn = self.session.connection();
            match conn.poll_timeout(Instant::now()) {
                Some(at) => {
                    if self.deadline != Some(at) {
                        self.timer.set_at(at);
                        self.deadline = Some(at);
                    }
                    if Pin::new(&mut self.timer).poll(cx).is_ready() {
                        self.deadline = None;
                        conn.handle_timeout(Instant::now().max(at));
                        progressed = true;
                    }
                }
                None => self.deadline = None,
            }

            if !self.outbox_done {
                if self.session.wants_outbox() {
                    // Take every queued broadcast now: they leave in one write.
                    while self.session.wants_outbox() {
                        match self.queue.as_mut().poll_next(cx) {
                            Poll::Ready(Some(frame)) => {
                                self.session.push_outbox(&frame);
                                progressed = true;
                            }
                            Poll::Ready(None) => {
                                self.outbox_done = true;
                                let code = self.outbox_close_code();
                                self.session.outbox_closed(code);
                                progressed = true;
                                break;
                            }
                            Poll::Pending => break,
                        }
                    }
                } else if let Poll::Ready(None) = self.alive.as_mut().poll_next(cx) {
                    // Dropped by the hub while behind on writing (too slow,
                    // or shutting down): close now; the close timer bounds
                    // how long a client that never reads keeps us.
                    self.outbox_done = true;
                    let code = self.outbox_close_code();
                    self.session.outbox_closed(code);
                    progressed = true;
                }
            }

            if !self.read_eof && self.session.wants_read() {
                match self.poll_read(cx) {
                    Poll::Ready(Ok(())) => progressed = true,
                    Poll::Ready(Err(_)) => return Poll::Ready(()),
                    Poll::Pending => {}
                }
            }

            if !progressed {
                return Poll::Pending;
            }
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}
