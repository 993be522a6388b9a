//! The server: [`Server`] (builder) and [`ServerHandle`] (control), running
//! your [`Handler`] or the demo's echo and chat.
//!
//! Each connection runs in its own task, which executes ws-core's
//! `ServerConnection` from the first request byte (the head, routing: the
//! handler accepts or refuses the upgrade, the response or the 101, the
//! session with the handler's callbacks, the closing) in one poll loop over
//! read, write, the hub's wake and the timer. Broadcast queues, topics and
//! their flow control are ws-core's `Hub`; this adapter only supplies the
//! wake (ws-core's `TaskWake`).

use crate::ServerMode;
use crate::io::{poll_write_conn, read_spare, timeout};
use crate::runtime::Runtime;
use async_channel::{Receiver, Sender};
use async_io::{Async, Timer};
use async_net::TcpListener;
use std::fmt;
use std::future::{Future, poll_fn};
use std::io::{self, Read};
use std::marker::PhantomData;
use std::net::SocketAddr;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;
use std::time::Instant;
use ws_core::rt::wake::TaskWake;
#[cfg(feature = "tls")]
use ws_core::server::tls::TlsConnection;
use ws_core::server::{AcceptPacer, Handler, Registry, Served, ServerCore, ServerOptions, Ticket};

/// Steps one connection poll takes before yielding to the executor, so a
/// flooding client cannot starve other tasks.
const POLL_BUDGET: usize = 64;
/// Extra time `shutdown` waits beyond the close timeout.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(1);

/// State shared by the handle, the accept loop and the connection tasks:
/// ws-core's [`ServerCore`] (hub, registry, config, TLS), which it
/// dereferences to, and the runtime's signals.
struct Shared {
    core: ServerCore,
    /// Closed on shutdown; the accept loop and connections not yet upgraded
    /// watch it.
    stop_tx: Sender<()>,
    stop_rx: Receiver<()>,
    /// Ends (all senders dropped) once the accept loop and every connection
    /// task have finished.
    done_rx: Receiver<()>,
}

impl std::ops::Deref for Shared {
    type Target = ServerCore;

    fn deref(&self) -> &ServerCore {
        &self.core
    }
}

/// Builder for the WebSocket server on runtime `R`: the demo's echo or chat
/// ([`Server::new`], [`mode`](Self::mode)) or your own [`Handler`]
/// ([`Server::with_handler`]), test page at `/` in chat mode. Nothing is
/// bound until [`start`](Self::start) or [`run`](Self::run).
///
/// # How a connection is served
///
/// Each connection task executes ws-core's [`ServerConnection`], which
/// does everything from the first request byte: the head, routing (the
/// handler accepts or refuses the upgrade, or a page or an error is
/// answered, after which the write side is shut and the connection lingers
/// briefly), the 101 and the session (the handler's callbacks, the client's
/// queue, the hub's flow control), and the closing. After anything happens
/// the task calls `poll(now)` and writes what is queued with one vectored
/// write, then waits, in one poll loop, for:
///
/// - socket writable, while bytes are queued;
/// - socket readable, while the connection wants to read (not while the
///   client's own write buffer is full, nor while the hub is congested for a
///   connection that publishes: that is how TCP pushes back on senders);
///   when a read would block, the connection's empty buffers are released
///   before the task parks, so an idle client holds no buffer memory;
/// - the hub's wake (a broadcast arrived, the client was dropped, the
///   congestion cleared);
/// - one timer at the connection's `poll_timeout` (the handshake deadline,
///   the linger after a plain response, the protocol's timers, a paused
///   sender's slow-client deadline);
/// - the server's stop, until the connection is upgraded (an upgraded
///   client is closed with 1001 through the hub instead).
///
/// Dropping the session (however the task ends) unregisters the client and
/// runs the handler's `on_close`.
///
/// # wss://
///
/// With [`tls`](Self::tls) the same loop executes ws-core's
/// [`TlsConnection`](ws_core::server::tls::TlsConnection) instead: the
/// machine above under rustls, written once and sans-IO in ws-core, so the
/// TLS handshake is bounded by the handshake timeout, a TLS failure ends
/// only its connection, and close_notify follows the closing handshake on
/// every runtime alike.
pub struct Server<R, H = ServerMode> {
    options: ServerOptions<H>,
    _rt: PhantomData<fn() -> R>,
}

impl<R, H: fmt::Debug> fmt::Debug for Server<R, H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Server")
            .field("options", &self.options)
            .finish()
    }
}

impl<R: Runtime> Server<R> {
    ws_core::server_builder!(demo);
}

impl<R: Runtime, H: Handler> Server<R, H> {
    ws_core::server_builder!(handler);

    fn from_options(options: ServerOptions<H>) -> Self {
        Server {
            options,
            _rt: PhantomData,
        }
    }

    /// Binds and returns at once; connections are accepted by a background
    /// task until [`ServerHandle::shutdown`] (dropping the handle does not
    /// stop the server). Dropping this future before it resolves binds
    /// nothing lasting.
    pub async fn start(self) -> io::Result<ServerHandle<R>> {
        let (handle, handler, listener, done_tx) = self.bind().await?;
        let shared = handle.shared.clone();
        R::spawn(accept_loop::<R, H>(shared, handler, listener, done_tx));
        Ok(handle)
    }

    /// Binds and accepts in the calling task, forever. Dropping the future
    /// (e.g. from a `select!` with Ctrl-C) stops accepting and closes every
    /// client with 1001 without waiting (as on every runtime); use
    /// [`start`](Self::start) and [`ServerHandle::shutdown`] to wait for the
    /// clients.
    pub async fn run(self) -> io::Result<()> {
        let (handle, handler, listener, done_tx) = self.bind().await?;
        let _shutdown_on_drop = RunGuard(handle.shared.clone());
        accept_loop::<R, H>(handle.shared.clone(), handler, listener, done_tx).await;
        Ok(())
    }

    async fn bind(self) -> io::Result<(ServerHandle<R>, Arc<H>, TcpListener, Sender<()>)> {
        let listener = TcpListener::bind(self.options.addr.as_str()).await?;
        let local_addr = listener.local_addr()?;
        let (stop_tx, stop_rx) = async_channel::bounded(1);
        let (done_tx, done_rx) = async_channel::bounded(1);
        let (core, handler) = self.options.start(R::NAME)?;
        let shared = Arc::new(Shared {
            core,
            stop_tx,
            stop_rx,
            done_rx,
        });
        let handle = ServerHandle {
            shared,
            local_addr,
            _rt: PhantomData,
        };
        Ok((handle, handler, listener, done_tx))
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

/// Everything a handle answers without waiting (client count, statistics,
/// topics, one client by id: [`Registry::send_to`], [`Registry::connection`],
/// [`Registry::close`]) is written once in ws-core's [`Registry`]; the
/// handle dereferences to it.
impl<R> std::ops::Deref for ServerHandle<R> {
    type Target = Registry;

    fn deref(&self) -> &Registry {
        &self.shared.registry
    }
}

impl<R: Runtime> ServerHandle<R> {
    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    ws_core::server_handle_broadcast!(|at: Instant| async move {
        Timer::at(at).await;
    });

    /// Stops accepting, closes every client with 1001 (going away), and
    /// waits for the connection tasks to finish, at most the close timeout
    /// plus one second. Idempotent. Cancel-safe: the shutdown proceeds even
    /// if this future is dropped.
    pub async fn shutdown(&self) {
        let shared = &self.shared;
        shared.stop_tx.close();
        // Every task closes its client with 1001 once its queue is empty.
        shared.hub.shutdown();
        let limit = shared.config.get_close_timeout() + SHUTDOWN_GRACE;
        // `recv` fails once every task (each holds a done sender) has ended.
        let _ = timeout(limit, shared.done_rx.recv()).await;
    }
}

/// Shuts the server down if [`Server::run`]'s future is dropped, so its
/// clients are closed with 1001 rather than left running.
struct RunGuard(Arc<Shared>);

impl Drop for RunGuard {
    fn drop(&mut self) {
        self.0.stop_tx.close();
        self.0.hub.shutdown();
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

/// Accepts until shutdown, spawning one task per connection.
async fn accept_loop<R: Runtime, H: Handler>(
    shared: Arc<Shared>,
    handler: Arc<H>,
    listener: TcpListener,
    done: Sender<()>,
) {
    let mut pacer = AcceptPacer::default();
    loop {
        if shared.stop_tx.is_closed() {
            return;
        }
        match unless_stopped(&shared.stop_rx, listener.accept()).await {
            None => return,
            Some(Ok((tcp, peer))) => {
                // The handshake deadline runs from here, not from the
                // task's first poll, however late a busy worker gets to it.
                let at = Instant::now();
                pacer.accepted(at);
                let ticket = shared.registry.admission().admit();
                // The async-io handle underneath, for readiness without a
                // read buffer (see `ConnDriver::poll_read`), taken before
                // the task starts: the task does not carry async-net's
                // wrapper. Nothing else holds it right after `accept`.
                let Some(tcp) = Arc::into_inner(Arc::<Async<std::net::TcpStream>>::from(tcp))
                else {
                    continue;
                };
                R::spawn(serve_connection(
                    shared.clone(),
                    handler.clone(),
                    (tcp, peer, at, ticket),
                    done.clone(),
                ));
            }
            Some(Err(e)) => {
                // Out of descriptors: the connections already open go on
                // in their tasks while this one pauses.
                if let Some(pause) = pacer.failed(&e, Instant::now()) {
                    let _ = unless_stopped(&shared.stop_rx, Timer::after(pause)).await;
                }
            }
        }
    }
}

/// One TCP connection, from its first byte to the end: an executor of
/// ws-core's [`ServerConnection`] (request head, routing, the response or
/// the 101, the session, the closing). `_done` is dropped when the task
/// ends (see `shutdown`).
async fn serve_connection<H: Handler>(
    shared: Arc<Shared>,
    handler: Arc<H>,
    (tcp, peer, accepted, ticket): (Async<std::net::TcpStream>, SocketAddr, Instant, Ticket),
    _done: Sender<()>,
) {
    let _ = tcp.get_ref().set_nodelay(true);
    // The machine is built inside blocks that end before the awaits: a
    // local that lived across them would keep a second copy of its size in
    // this task next to the one moved into `execute`'s future.
    let machine = || {
        let wake = Arc::new(TaskWake::default());
        let conn = shared.connection(handler, wake.clone(), peer, accepted, ticket);
        (conn, wake)
    };
    #[cfg(feature = "tls")]
    if let Some(tls) = &shared.tls {
        // Boxed: a plain connection's task does not carry the size of
        // rustls' state.
        let tls = {
            let (conn, wake) = machine();
            TlsConnection::new(tls.clone(), conn)
                .ok()
                .map(|conn| Box::pin(execute(&shared, tcp, conn, wake)))
        };
        if let Some(tls) = tls {
            tls.await;
        }
        return;
    }
    let plain = {
        let (conn, wake) = machine();
        execute(&shared, tcp, conn, wake)
    };
    plain.await;
}

/// Drives `conn` on `tcp` until it is over, then closes the socket.
///
/// Not an `async fn`: its arguments would stay in the future next to the
/// driver they are moved into (the connection twice); the driver is built
/// first and only it is moved into the future.
fn execute<C: Served>(
    shared: &Shared,
    tcp: Async<std::net::TcpStream>,
    conn: C,
    wake: Arc<TaskWake>,
) -> impl Future<Output = ()> + Send + '_ {
    let mut driver = ConnDriver {
        io: tcp,
        conn,
        wake,
        timer: None,
        deadline: None,
        read_eof: false,
        read_parked: false,
    };
    async move {
        // Until the upgrade, a stop lets the connection go (as the accept loop
        // does); a session is closed with 1001 through the hub instead, so the
        // wait (and the listener it registered) is dropped once the session is
        // open: an idle session does not keep it.
        let mut stopped = pin!(Some(shared.stop_rx.recv()));
        poll_fn(|cx| {
            if driver.conn.is_open() {
                stopped.as_mut().set(None);
            } else if let Some(stop) = stopped.as_mut().as_pin_mut() {
                if stop.poll(cx).is_ready() {
                    return Poll::Ready(());
                }
            }
            driver.poll_drive(cx)
        })
        .await;
        use futures_util::io::AsyncWriteExt;
        let _ = driver.io.close().await;
    }
}

/// One connection, driven by a single poll loop (so there is nothing to
/// cancel half-way): the connection's poll, write, write shutdown, timer,
/// wake, read.
struct ConnDriver<C: Served> {
    io: Async<std::net::TcpStream>,
    conn: C,
    wake: Arc<TaskWake>,
    /// Allocated the first time the connection needs a timer (an idle
    /// connection without keepalive never does), not held inline.
    timer: Option<Box<Timer>>,
    deadline: Option<Instant>,
    read_eof: bool,
    /// A read found the socket empty: wait for readiness (without a buffer)
    /// before reading again.
    read_parked: bool,
}

impl<C: Served> ConnDriver<C> {
    /// One read step: `Ready(Ok)` when something happened (bytes, end of
    /// stream, an interrupted read), `Pending` when the socket is empty.
    ///
    /// Once a read would block, the connection's empty buffers are released
    /// ([`Served::release_idle_buffers`]) and readiness is awaited
    /// with [`Async::poll_readable`], which needs no buffer (and no syscall
    /// while nothing arrived): an idle client holds no buffer memory, and
    /// wakes for other reasons (broadcasts, timers) do not read. A busy
    /// connection keeps its buffers: they are released only when the
    /// socket runs dry, never after every message.
    fn poll_read(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.read_parked {
            ready!(self.io.poll_readable(cx))?;
            self.read_parked = false;
        }
        let mut tcp = self.io.get_ref();
        match read_spare(self.conn.read_buf(), |spare| tcp.read(spare)) {
            Ok(0) => {
                self.read_eof = true;
                self.conn.handle_eof();
                Poll::Ready(Ok(()))
            }
            Ok(_) => Poll::Ready(Ok(())),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                self.conn.release_idle_buffers();
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
        let mut fired: Option<Instant> = None;
        for _ in 0..POLL_BUDGET {
            // Timers round; never let a deadline look early.
            let now = Instant::now().max(fired.take().unwrap_or_else(Instant::now));
            // The head, routing, decode and dispatch, broadcasts, flow
            // control, deadlines. An error has already queued the close
            // frame; keep driving.
            let _ = self.conn.poll(now);

            let mut progressed = false;
            let queued = self.conn.buffered_transmit();
            if self.conn.wants_write() {
                match poll_write_conn(&mut self.io, &mut self.conn, cx) {
                    Poll::Ready(Ok(())) | Poll::Pending => {}
                    Poll::Ready(Err(e)) => {
                        self.conn.transport_error(&e);
                        return Poll::Ready(());
                    }
                }
                // Room was made: the session may take more broadcasts. (A
                // written response has nothing more to take.)
                progressed = self.conn.buffered_transmit() < queued && self.conn.is_open();
            }
            // Checked after the write: emptying the queue may have moved
            // the connection on (a response out: shut and linger; the last
            // bytes of a closing session out: finished).
            if self.conn.wants_write_shutdown() {
                let _ = self.io.get_ref().shutdown(std::net::Shutdown::Write);
                self.conn.write_shut();
            }
            if self.conn.is_finished() {
                return Poll::Ready(());
            }

            match self.conn.poll_timeout(now) {
                Some(at) => {
                    let timer = match &mut self.timer {
                        Some(timer) => timer,
                        None => self.timer.insert(Box::new(Timer::at(at))),
                    };
                    if self.deadline != Some(at) {
                        timer.set_at(at);
                        self.deadline = Some(at);
                    }
                    if Pin::new(&mut **timer).poll(cx).is_ready() {
                        self.deadline = None;
                        fired = Some(at);
                        progressed = true;
                    }
                }
                None => self.deadline = None,
            }

            if self.wake.poll(cx).is_ready() {
                progressed = true;
            }

            if !self.read_eof && self.conn.wants_read() {
                match self.poll_read(cx) {
                    Poll::Ready(Ok(())) => progressed = true,
                    Poll::Ready(Err(e)) => {
                        self.conn.transport_error(&e);
                        return Poll::Ready(());
                    }
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

#[cfg(all(test, feature = "smol"))]
mod tests {
    use super::*;

    /// The task an idle client costs, beyond its socket's async-io source
    /// and its hub entry: ws-core's connection plus this loop's state, once
    /// (not also as the arguments of the functions that built it), with no
    /// TLS state (boxed, wss:// only) and no timer (boxed, allocated when
    /// first armed). Measured 1,096 bytes (debug, x86_64); 2,360 with the
    /// connection built in `serve_connection`'s body and passed to an
    /// `async fn execute`.
    #[test]
    fn an_idle_connection_task_carries_no_tls_or_timer_state() {
        smol::block_on(async {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let _client = async_net::TcpStream::connect(addr).await.unwrap();
            let (tcp, peer) = listener.accept().await.unwrap();
            let tcp = Arc::into_inner(Arc::<Async<std::net::TcpStream>>::from(tcp)).unwrap();
            let server = Server::<crate::runtime::Smol>::new("127.0.0.1:0");
            let (handle, handler, _listener, done) = server.bind().await.unwrap();
            let ticket = handle.shared.registry.admission().admit();
            let task = serve_connection(
                handle.shared.clone(),
                handler,
                (tcp, peer, Instant::now(), ticket),
                done,
            );
            let size = std::mem::size_of_val(&task);
            assert!(size <= 1200, "the connection task is {size} bytes");
        });
    }
}
