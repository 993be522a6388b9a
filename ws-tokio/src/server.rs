//! The [`Server`] over tokio, one task per connection: your [`Handler`],
//! or the demo's echo and chat.

use std::future::{Future, poll_fn};
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::Poll;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, watch};
#[cfg(feature = "tls")]
use tokio_rustls::rustls::ServerConfig;
use ws_core::rt::wake::TaskWake;
#[cfg(feature = "tls")]
use ws_core::server::ServerConnection;
use ws_core::server::site::ServerMode;
#[cfg(feature = "tls")]
use ws_core::server::tls::TlsConnection;
use ws_core::server::{AcceptPacer, Handler, Registry, Served, ServerCore, ServerOptions, Ticket};

use crate::Result;

/// Polls of a connection in a row without waiting, before it checks in
/// with tokio's cooperative budget.
const SPIN_BUDGET: u32 = 64;

/// State shared by the accept loop, the connection tasks and the handles:
/// ws-core's [`ServerCore`] (hub, registry, config, TLS), which it
/// dereferences to, and tokio's signals.
#[derive(Debug)]
struct Shared {
    core: ServerCore,
    shutting_down: AtomicBool,
    stop: watch::Sender<bool>,
    /// Running accept loop and connection tasks.
    tasks: AtomicUsize,
    idle: Notify,
}

impl std::ops::Deref for Shared {
    type Target = ServerCore;

    fn deref(&self) -> &ServerCore {
        &self.core
    }
}

impl Shared {
    /// Counts a task until the returned guard is dropped.
    fn track(self: &Arc<Self>) -> TaskGuard {
        self.tasks.fetch_add(1, Ordering::SeqCst);
        TaskGuard(self.clone())
    }

    /// Stops accepting and lets go of every client, so each connection
    /// task closes its client with 1001. Idempotent.
    fn begin_shutdown(&self) {
        self.shutting_down.store(true, Ordering::SeqCst);
        self.stop.send_replace(true);
        self.hub.shutdown();
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

/// Builder for the WebSocket server: the demo's echo or chat
/// ([`Server::new`], [`mode`](Self::mode)) or your own [`Handler`]
/// ([`Server::with_handler`]). Nothing is bound until
/// [`start`](Self::start) or [`run`](Self::run).
///
/// ```no_run
/// use std::net::SocketAddr;
/// use ws_tokio::handler::{Handler, Refusal, Request, Socket, Upgrade};
/// use ws_tokio::{Message, Server};
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
/// # async fn run() -> std::io::Result<()> {
/// Server::with_handler("127.0.0.1:8080", Rooms).run().await
/// # }
/// ```
///
/// # How a connection is served
///
/// Each connection task executes ws-core's
/// [`ServerConnection`](ws_core::server::ServerConnection), which does
/// everything from the first request byte: the head, routing (the handler
/// accepts or refuses the upgrade, or a page or an error is answered), the
/// 101 and the session (the handler's callbacks, the client's queue, the
/// hub's flow control), and the closing. After anything happens the task
/// calls `poll(now)` and writes what is queued with one vectored write, then
/// `tokio::select!`s over:
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
///   the protocol's timers, a paused sender's slow-client deadline).
///
/// Every branch is cancel-safe and all progress lives in ws-core, so the
/// loop can be re-entered at any point. Nothing here needs a multi-threaded
/// runtime; the server works the same on a `current_thread` runtime.
///
/// # wss://
///
/// With [`tls`](Self::tls) the same loop executes ws-core's
/// [`TlsConnection`](ws_core::server::tls::TlsConnection) instead: the
/// machine above under rustls, written once and sans-IO in ws-core, so the
/// TLS handshake is bounded by the handshake timeout, a TLS failure ends
/// only its connection, and close_notify follows the closing handshake on
/// every runtime alike.
///
/// # Flow control
///
/// See [`ws_core::server::hub`]: a client that keeps reading loses nothing; senders
/// are paused while some client's queue is above its high-water mark; a
/// client whose queue stays above it for the slow-client timeout, or passes
/// the hard byte bound, is closed with 1013. Set the limits with
/// [`flow_control`](Self::flow_control).
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

    fn into_shared(self) -> io::Result<(Arc<Shared>, Arc<H>)> {
        let (core, handler) = self.options.start("tokio")?;
        let shared = Arc::new(Shared {
            core,
            shutting_down: AtomicBool::new(false),
            stop: watch::Sender::new(false),
            tasks: AtomicUsize::new(0),
            idle: Notify::new(),
        });
        Ok((shared, handler))
    }

    /// Binds and accepts connections in a background task; returns at once
    /// with a handle for the address, broadcasts and shutdown. Dropping
    /// every handle does not stop the server.
    pub async fn start(self) -> io::Result<ServerHandle> {
        let listener = TcpListener::bind(&self.options.addr).await?;
        let local_addr = listener.local_addr()?;
        let (shared, handler) = self.into_shared()?;
        let guard = shared.track();
        tokio::spawn(accept_loop(listener, shared.clone(), handler, guard));
        Ok(ServerHandle { shared, local_addr })
    }

    /// Binds and accepts connections on the current task, forever. Accept
    /// errors (e.g. out of file descriptors) are retried after a pause of
    /// 10 to 100 ms rather than ending the server, logged once per episode
    /// (see [`ws_core::server::admission`]). Dropping the future (e.g. from a
    /// `select!` with Ctrl-C) stops accepting and closes every client with
    /// 1001 without waiting; use [`start`](Self::start) and
    /// [`ServerHandle::shutdown`] to wait for the clients.
    pub async fn run(self) -> io::Result<()> {
        let listener = TcpListener::bind(&self.options.addr).await?;
        let (shared, handler) = self.into_shared()?;
        let _shutdown_on_drop = RunGuard(shared.clone());
        let guard = shared.track();
        accept_loop(listener, shared.clone(), handler, guard).await;
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

/// Everything a handle answers without waiting (client count, statistics,
/// topics, one client by id: [`Registry::send_to`], [`Registry::connection`],
/// [`Registry::close`]) is written once in ws-core's [`Registry`]; the
/// handle dereferences to it.
impl std::ops::Deref for ServerHandle {
    type Target = Registry;

    fn deref(&self) -> &Registry {
        &self.shared.registry
    }
}

impl ServerHandle {
    /// The bound address (with the real port when bound to port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    ws_core::server_handle_broadcast!(|at: Instant| tokio::time::sleep_until(at.into()));

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
async fn accept_loop<H: Handler>(
    listener: TcpListener,
    shared: Arc<Shared>,
    handler: Arc<H>,
    _guard: TaskGuard,
) {
    let mut stop = shared.stop.subscribe();
    let mut pacer = AcceptPacer::default();
    loop {
        if *stop.borrow_and_update() {
            return;
        }
        tokio::select! {
            biased;
            // The sender lives in `shared`, so this only reports a change.
            _ = stop.changed() => {}
            accepted = listener.accept() => match accepted {
                Ok((tcp, peer)) => {
                    // The handshake deadline runs from here, not from the
                    // task's first poll, however late a busy worker gets
                    // to it.
                    let at = Instant::now();
                    pacer.accepted(at);
                    let ticket = shared.registry.admission().admit();
                    let guard = shared.track();
                    tokio::spawn(connection_task(
                        shared.clone(),
                        handler.clone(),
                        (tcp, peer, at),
                        ticket,
                        guard,
                    ));
                }
                Err(e) => {
                    // Out of descriptors: the connections already open go
                    // on in their tasks while this one pauses.
                    if let Some(pause) = pacer.failed(&e, Instant::now()) {
                        tokio::time::sleep(pause).await;
                    }
                }
            },
        }
    }
}

/// The task spawned for each accepted connection: [`serve`] under the
/// guard that counts it. What it holds while a client is idle is what an
/// idle connection costs beyond its socket and hub entry (a test pins its
/// size).
async fn connection_task<H: Handler>(
    shared: Arc<Shared>,
    handler: Arc<H>,
    accepted: (TcpStream, SocketAddr, Instant),
    ticket: Ticket,
    _guard: TaskGuard,
) {
    serve(&shared, handler, accepted, ticket).await;
}

/// One connection, from its first byte to the end: an executor of
/// ws-core's [`ServerConnection`](ws_core::server::ServerConnection) (request head, routing, the response or
/// the 101, the session, the closing), under TLS when the server has a TLS
/// configuration.
///
/// Not an `async fn`: its arguments would stay in the future next to the
/// connection built from them; the connection is built first and moved
/// into the future once.
fn serve<H: Handler>(
    shared: &Shared,
    handler: Arc<H>,
    (tcp, peer, accepted): (TcpStream, SocketAddr, Instant),
    ticket: Ticket,
) -> impl std::future::Future<Output = ()> + Send + '_ {
    // Latency matters more than packet count; the loop batches writes itself.
    let _ = tcp.set_nodelay(true);
    let wake = Arc::new(TaskWake::default());
    let mut conn = shared.connection(handler, wake.clone(), peer, accepted, ticket);
    let mut tcp = tcp;
    async move {
        #[cfg(feature = "tls")]
        if let Some(tls) = &shared.tls {
            // Boxed, with the TLS connection inside: a plain connection's
            // task does not carry the size of rustls' state.
            Box::pin(serve_tls(tls.clone(), conn, tcp, &wake)).await;
            return;
        }
        if let Err(e) = drive(&mut conn, &mut tcp, &wake).await {
            conn.transport_error(&e);
        }
    }
}

/// [`serve`]'s wss:// path: the same loop over ws-core's
/// [`TlsConnection`].
#[cfg(feature = "tls")]
async fn serve_tls<H: Handler>(
    tls: Arc<ServerConfig>,
    conn: ServerConnection<H>,
    tcp: TcpStream,
    wake: &TaskWake,
) {
    let mut tcp = tcp;
    if let Ok(mut conn) = TlsConnection::new(tls, conn) {
        if let Err(e) = drive(&mut conn, &mut tcp, wake).await {
            conn.transport_error(&e);
        }
    }
}

/// Writes as much of the queued output as the socket takes now, normally in
/// one call. `Err` means the socket is unusable.
fn write_queued<C: Served>(tcp: &TcpStream, conn: &mut C) -> io::Result<()> {
    let written = ws_core::rt::write::write_transmit(conn, |slices| match slices {
        [one] => tcp.try_write(one),
        many => tcp.try_write_vectored(many),
    });
    match written {
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(()),
        r => r,
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
fn read_ready(tcp: &mut TcpStream, buf: &mut BytesMut) -> io::Result<(usize, bool)> {
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    let offered = buf.capacity() - buf.len();
    match tokio_util::io::poll_read_buf(std::pin::Pin::new(tcp), &mut cx, buf) {
        // Fewer bytes than offered: the socket is drained.
        std::task::Poll::Ready(r) => r.map(|n| (n, n < offered)),
        std::task::Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
    }
}

/// The connection loop (see [`Server`]). Returns when the connection is
/// finished, the socket fails, or a peer that ended its side does not take
/// our remaining bytes within the close timeout.
async fn drive<C: Served>(conn: &mut C, tcp: &mut TcpStream, wake: &TaskWake) -> Result<()> {
    let mut read_eof = false;
    // Allocated the first time the connection needs a timer, not held
    // inline: tokio's `Sleep` is larger than the rest of this loop's state,
    // and an idle connection without keepalive never needs one.
    let mut timer: Option<Pin<Box<tokio::time::Sleep>>> = None;
    let mut armed: Option<Instant> = None;
    let mut timer_fired = false;
    let mut drained = false;
    let mut spins = 0;

    loop {
        let mut now = Instant::now();
        if std::mem::take(&mut timer_fired) {
            // Timers round; never let a deadline look early.
            now = now.max(armed.unwrap_or(now));
        }
        // An error (protocol violation, peer vanished) has already queued
        // the right close frame; the loop flushes it.
        let _ = conn.poll(now);
        let queued = conn.buffered_transmit();
        write_queued(tcp, conn)?;
        if conn.buffered_transmit() < queued && conn.is_open() {
            // Room was made: the session may take more broadcasts (or
            // decode more echoes) at once; nothing else would wake us for
            // them. The budget keeps a connection that always has work
            // from holding the worker.
            if spins < SPIN_BUDGET {
                spins += 1;
                continue;
            }
            spins = 0;
            tokio::task::coop::consume_budget().await;
            continue;
        }
        spins = 0;
        if std::mem::take(&mut drained) {
            // A short read emptied the socket (and cleared its readiness):
            // the loop parks next, so free what is empty.
            conn.release_idle_buffers();
        }
        if conn.wants_write_shutdown() {
            // A plain HTTP response is out: end our side, then linger.
            let _ = tcp.shutdown().await;
            conn.write_shut();
        }
        if conn.is_finished() {
            let _ = tcp.shutdown().await;
            return Ok(());
        }
        // After the peer ended its side, ws-core's close timer (armed by
        // `handle_eof`) bounds how long queued bytes wait for a peer that does
        // not read; when it fires the connection is finished.
        let deadline = conn.poll_timeout(now);
        if let Some(d) = deadline {
            if armed != Some(d) {
                match &mut timer {
                    Some(t) => t.as_mut().reset(d.into()),
                    None => timer = Some(Box::pin(tokio::time::sleep_until(d.into()))),
                }
                armed = Some(d);
            }
        }
        let want_write = conn.wants_write();
        let want_read = !read_eof && conn.wants_read();

        // Readiness through the socket's own waker slots
        // (`poll_*_ready`), not the `readable()`/`writable()` futures: no
        // waiter node per direction in this task's state.
        tokio::select! {
            biased;
            ready = poll_fn(|cx| tcp.poll_write_ready(cx)), if want_write => {
                ready?;
                write_queued(tcp, conn)?;
            }
            ready = poll_fn(|cx| tcp.poll_read_ready(cx)), if want_read => {
                ready?;
                match read_ready(tcp, conn.read_buf()) {
                    Ok((0, _)) => {
                        read_eof = true;
                        conn.handle_eof();
                    }
                    Ok((_, short)) => drained = short,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        // Drained: free the empty buffers so an idle
                        // connection holds none (the next read allocates
                        // again). Only here, not after every message, so a
                        // busy connection keeps its buffers.
                        drained = true;
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            () = poll_fn(|cx| wake.poll(cx)) => {}
            () = poll_fn(|cx| match &mut timer {
                Some(t) => t.as_mut().poll(cx),
                None => Poll::Pending,
            }), if deadline.is_some() => timer_fired = true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The task an idle client costs, beyond its socket's registration and
    /// its hub entry: ws-core's connection plus this loop's state, once
    /// (not also as the arguments it was built from), with no TLS state
    /// (boxed, wss:// only) and no timer (boxed, allocated when first
    /// armed). Measured 1,168 bytes (debug, x86_64); 5,256 while the TLS
    /// connection was held inline, 1,336 with `serve` an `async fn`.
    #[tokio::test]
    async fn an_idle_connection_task_carries_no_tls_or_timer_state() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let _client = TcpStream::connect(addr).await.unwrap();
        let (tcp, peer) = listener.accept().await.unwrap();
        let (shared, handler) = Server::new("127.0.0.1:0").into_shared().unwrap();
        let ticket = shared.registry.admission().admit();
        let guard = shared.track();
        let task = connection_task(
            shared.clone(),
            handler,
            (tcp, peer, Instant::now()),
            ticket,
            guard,
        );
        let size = std::mem::size_of_val(&task);
        assert!(size <= 1250, "the connection task is {size} bytes");
    }
}
