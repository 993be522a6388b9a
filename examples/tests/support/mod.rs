//! Test support: a server of any runtime behind one handle, and a neutral
//! client written directly on ws-core and std::net (so that no adapter is
//! tested with itself).

#![allow(dead_code)]

pub mod fault_proxy;
pub mod spawned;

/// Expands `$suite!(NAME, rt = PATH, krate = CRATE, runtime = RUNTIME,
/// block_on = EXPR, [AWAIT])` once for each runtime: tokio, async-std,
/// smol, blocking. A suite written as a macro over those parameters calls
/// each adapter's API with `.await` after each call (`[.await]`), or
/// without (`[]`, blocking: any executor runs the body, whose blocking
/// calls complete before it polls again). Needs `use examples::Runtime;`.
#[allow(unused_macros)]
macro_rules! on_every_runtime {
    ($suite:ident) => {
        $suite!(
            on_tokio,
            rt = ws_tokio,
            krate = ws_tokio,
            runtime = Runtime::Tokio,
            block_on = |f| tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap()
                .block_on(f),
            [.await]
        );
        $suite!(
            on_async_std,
            rt = ws_async_std,
            krate = ws_async_std,
            runtime = Runtime::AsyncStd,
            block_on = async_std::task::block_on,
            [.await]
        );
        $suite!(
            on_smol,
            rt = ws_async_std::smol,
            krate = ws_async_std,
            runtime = Runtime::Smol,
            block_on = smol::block_on,
            [.await]
        );
        $suite!(
            on_blocking,
            rt = ws_blocking,
            krate = ws_blocking,
            runtime = Runtime::Blocking,
            block_on = smol::block_on,
            []
        );
    };
}

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use examples::Runtime;
use ws_core::handshake::{ClientHandshake, ClientRequest};
use ws_core::server::Handler;
use ws_core::server::hub::{ClientId, FlowControl, HubStats};
use ws_core::server::site::ServerMode;
use ws_core::server::tls::rustls::ServerConfig;
use ws_core::{Config, Connection, Error, Message, Receiver, Role, Sender};

/// A running server of one runtime, driven synchronously from a test.
pub struct TestServer {
    addr: SocketAddr,
    inner: Inner,
}

enum Inner {
    Tokio(tokio::runtime::Runtime, ws_tokio::ServerHandle),
    AsyncStd(ws_async_std::ServerHandle),
    Smol(ws_async_std::smol::ServerHandle),
    Blocking(ws_blocking::ServerHandle),
}

impl TestServer {
    /// Starts a server on 127.0.0.1 with an OS-chosen port, a high-water
    /// mark of `high_water` messages and a slow-client timeout of 1 s.
    pub fn start(rt: Runtime, mode: ServerMode, high_water: usize) -> TestServer {
        let flow = FlowControl::default()
            .high_water(high_water, 1 << 30)
            .slow_client_timeout(Duration::from_secs(1));
        Self::start_flow(rt, mode, flow)
    }

    /// Starts a server on 127.0.0.1 with an OS-chosen port and these
    /// flow-control limits.
    pub fn start_flow(rt: Runtime, mode: ServerMode, flow: FlowControl) -> TestServer {
        Self::start_handler(rt, mode, flow)
    }

    /// Starts a server running `handler` on 127.0.0.1 with an OS-chosen
    /// port and these flow-control limits.
    pub fn start_handler<H: Handler>(rt: Runtime, handler: H, flow: FlowControl) -> TestServer {
        Self::start_with(rt, handler, flow, Config::default(), None)
    }

    /// Starts a server running `handler` on 127.0.0.1 with an OS-chosen
    /// port, these flow-control limits and this connection config, serving
    /// wss:// (and https://) with `tls` if given.
    pub fn start_with<H: Handler>(
        rt: Runtime,
        handler: H,
        flow: FlowControl,
        config: Config,
        tls: Option<Arc<ServerConfig>>,
    ) -> TestServer {
        let addr = "127.0.0.1:0";
        let inner = match rt {
            Runtime::Tokio => {
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .unwrap();
                let mut server = ws_tokio::Server::with_handler(addr, handler)
                    .flow_control(flow)
                    .config(config);
                if let Some(tls) = tls {
                    server = server.tls(tls);
                }
                let h = runtime.block_on(server.start()).unwrap();
                Inner::Tokio(runtime, h)
            }
            Runtime::AsyncStd => {
                let mut server = ws_async_std::Server::with_handler(addr, handler)
                    .flow_control(flow)
                    .config(config);
                if let Some(tls) = tls {
                    server = server.tls(tls);
                }
                Inner::AsyncStd(async_std::task::block_on(server.start()).unwrap())
            }
            Runtime::Smol => {
                let mut server = ws_async_std::smol::Server::with_handler(addr, handler)
                    .flow_control(flow)
                    .config(config);
                if let Some(tls) = tls {
                    server = server.tls(tls);
                }
                Inner::Smol(smol::block_on(server.start()).unwrap())
            }
            Runtime::Blocking => {
                let mut server = ws_blocking::Server::with_handler(addr, handler)
                    .flow_control(flow)
                    .config(config);
                if let Some(tls) = tls {
                    server = server.tls(tls);
                }
                Inner::Blocking(server.start().unwrap())
            }
        };
        let addr = match &inner {
            Inner::Tokio(_, h) => h.local_addr(),
            Inner::AsyncStd(h) => h.local_addr(),
            Inner::Smol(h) => h.local_addr(),
            Inner::Blocking(h) => h.local_addr(),
        };
        TestServer { addr, inner }
    }

    /// Starts a chat server whose broadcast flow control drops a recipient
    /// only after its queue stayed above the high-water mark for
    /// `slow_client_timeout`.
    pub fn start_chat_flow(rt: Runtime, slow_client_timeout: Duration) -> TestServer {
        let flow = FlowControl::default().slow_client_timeout(slow_client_timeout);
        Self::start_flow(rt, ServerMode::Chat, flow)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn url(&self, path: &str) -> String {
        format!("ws://{}{}", self.addr, path)
    }

    pub fn client_count(&self) -> usize {
        match &self.inner {
            Inner::Tokio(_, h) => h.client_count(),
            Inner::AsyncStd(h) => h.client_count(),
            Inner::Smol(h) => h.client_count(),
            Inner::Blocking(h) => h.client_count(),
        }
    }

    /// The hub's queue statistics (queued bytes, peak queue, slow drops).
    pub fn stats(&self) -> HubStats {
        match &self.inner {
            Inner::Tokio(_, h) => h.stats(),
            Inner::AsyncStd(h) => h.stats(),
            Inner::Smol(h) => h.stats(),
            Inner::Blocking(h) => h.stats(),
        }
    }

    /// Queues `msg` for client `id` (from whatever thread calls this).
    pub fn send_to(&self, id: ClientId, msg: &Message) -> Result<(), Error> {
        match &self.inner {
            Inner::Tokio(_, h) => h.send_to(id, msg),
            Inner::AsyncStd(h) => h.send_to(id, msg),
            Inner::Smol(h) => h.send_to(id, msg),
            Inner::Blocking(h) => h.send_to(id, msg),
        }
    }

    /// Publishes `msg` to `topic` from the application; returns how many
    /// subscribers it was queued for.
    pub fn publish(&self, topic: &str, msg: &Message) -> usize {
        let report = match &self.inner {
            Inner::Tokio(rt, h) => rt.block_on(h.publish(topic, msg)),
            Inner::AsyncStd(h) => async_std::task::block_on(h.publish(topic, msg)),
            Inner::Smol(h) => smol::block_on(h.publish(topic, msg)),
            Inner::Blocking(h) => h.publish(topic, msg),
        };
        report.unwrap().delivered
    }

    /// Subscribers of `topic`.
    pub fn topic_count(&self, topic: &str) -> usize {
        match &self.inner {
            Inner::Tokio(_, h) => h.topic_count(topic),
            Inner::AsyncStd(h) => h.topic_count(topic),
            Inner::Smol(h) => h.topic_count(topic),
            Inner::Blocking(h) => h.topic_count(topic),
        }
    }

    /// Every topic with a subscriber.
    pub fn topics(&self) -> Vec<(String, usize)> {
        match &self.inner {
            Inner::Tokio(_, h) => h.topics(),
            Inner::AsyncStd(h) => h.topics(),
            Inner::Smol(h) => h.topics(),
            Inner::Blocking(h) => h.topics(),
        }
    }

    /// Waits (bounded) until `check` holds.
    pub fn wait_until(&self, what: &str, mut check: impl FnMut(&TestServer) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !check(self) {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits (bounded) until the registry holds `n` clients.
    pub fn wait_for_clients(&self, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.client_count() != n {
            assert!(
                Instant::now() < deadline,
                "client_count stayed {} (wanted {n})",
                self.client_count()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn shutdown(&self) {
        match &self.inner {
            Inner::Tokio(rt, h) => rt.block_on(h.shutdown()),
            Inner::AsyncStd(h) => async_std::task::block_on(h.shutdown()),
            Inner::Smol(h) => smol::block_on(h.shutdown()),
            Inner::Blocking(h) => h.shutdown(),
        }
    }
}

/// A blocking client on ws-core and a plain TcpStream.
pub struct RawClient {
    pub stream: TcpStream,
    pub conn: Connection,
}

impl RawClient {
    pub fn connect(addr: SocketAddr, path: &str) -> RawClient {
        Self::connect_with(addr, path, Config::default())
    }

    pub fn connect_with(addr: SocketAddr, path: &str, config: Config) -> RawClient {
        let req = ClientRequest::new(&addr.ip().to_string(), addr.port(), path);
        Self::connect_request(addr, &req, config).unwrap()
    }

    /// Connects with a request of the caller's (extra headers); the
    /// handshake's error if the server refuses.
    pub fn connect_request(
        addr: SocketAddr,
        req: &ClientRequest,
        config: Config,
    ) -> Result<RawClient, Error> {
        let mut stream = TcpStream::connect(addr).unwrap();
        stream.set_nodelay(true).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let (mut hs, bytes) = ClientHandshake::with_config(req, &config);
        stream.write_all(&bytes).unwrap();
        let mut buf = [0u8; 4096];
        loop {
            let n = stream.read(&mut buf).unwrap();
            assert!(n > 0, "server closed during handshake");
            if let Some(response) = hs.feed(&buf[..n])? {
                // With `config`'s deflate policy on, what the server agreed.
                let config = response.configure(config);
                let conn = Connection::with_buffered(Role::Client, config, hs.take_remaining());
                return Ok(RawClient { stream, conn });
            }
        }
    }

    pub fn send(&mut self, msg: &Message) {
        self.try_send(msg).unwrap();
    }

    /// Sends `msg`, or the error that stopped it (the connection closing,
    /// the socket failing).
    pub fn try_send(&mut self, msg: &Message) -> Result<(), Error> {
        self.conn.send(msg)?;
        self.try_flush().map_err(Error::Io)
    }

    pub fn flush(&mut self) {
        self.try_flush().unwrap();
    }

    /// Writes everything queued, or the socket's error.
    pub fn try_flush(&mut self) -> std::io::Result<()> {
        while self.conn.wants_write() {
            let n = self.stream.write(self.conn.pending_transmit())?;
            if n == 0 {
                return Err(std::io::ErrorKind::WriteZero.into());
            }
            self.conn.advance_transmit(n);
        }
        Ok(())
    }

    /// The next message, or the error that ended the connection.
    pub fn recv(&mut self) -> Result<Message, Error> {
        loop {
            if let Some(m) = self.conn.poll_message()? {
                self.try_flush()?;
                return Ok(m);
            }
            self.try_flush()?;
            if self.conn.should_close_transport() {
                return Err(Error::Closed);
            }
            let buf = self.conn.read_buf();
            let start = buf.len();
            buf.resize(buf.capacity(), 0);
            let n = match self.stream.read(&mut buf[start..]) {
                Ok(n) => n,
                Err(e) => {
                    buf.truncate(start);
                    return Err(Error::Io(e));
                }
            };
            buf.truncate(start + n);
            if n == 0 {
                self.conn.handle_eof();
            }
        }
    }

    /// The next text or binary message (skipping pings and pongs).
    pub fn recv_data(&mut self) -> Message {
        loop {
            match self.recv() {
                Ok(m) if m.is_data() => return m,
                Ok(Message::Close(c)) => panic!("unexpected close {c:?}"),
                Ok(_) => continue,
                Err(e) => panic!("connection ended: {e}"),
            }
        }
    }

    /// Drops the TCP connection without a close frame.
    pub fn abort(self) {
        let _ = self.stream.shutdown(Shutdown::Both);
    }

    /// Splits the client into a writing half and a reading half, each with
    /// its own handle on the socket, for two threads. The socket's read and
    /// write timeouts (shared by both handles) become `io_timeout`.
    ///
    /// Control replies the reader owes the server (pongs, the reply to a
    /// close) leave with the writer's next [`ClientWriter::flush`].
    pub fn split(self, io_timeout: Duration) -> (ClientWriter, ClientReader) {
        self.stream.set_read_timeout(Some(io_timeout)).unwrap();
        self.stream.set_write_timeout(Some(io_timeout)).unwrap();
        let write_stream = self.stream.try_clone().unwrap();
        let (rx, tx) = self.conn.split();
        (
            ClientWriter {
                stream: write_stream,
                tx,
            },
            ClientReader {
                stream: self.stream,
                rx,
            },
        )
    }
}

/// The writing half of a split [`RawClient`].
pub struct ClientWriter {
    pub stream: TcpStream,
    pub tx: Sender,
}

impl ClientWriter {
    /// Encodes `msg` without writing it; [`flush`](Self::flush) writes.
    pub fn queue(&mut self, msg: &Message) -> Result<(), Error> {
        self.tx.send(msg)
    }

    /// Bytes encoded and not yet written.
    pub fn buffered(&self) -> usize {
        self.tx.buffered_transmit()
    }

    /// Writes everything queued; blocks while TCP pushes back (bounded by
    /// the socket's write timeout).
    pub fn flush(&mut self) -> std::io::Result<()> {
        while self.tx.wants_write() {
            let n = self.stream.write(self.tx.pending_transmit())?;
            if n == 0 {
                return Err(std::io::ErrorKind::WriteZero.into());
            }
            self.tx.advance_transmit(n);
        }
        Ok(())
    }
}

/// The reading half of a split [`RawClient`].
pub struct ClientReader {
    pub stream: TcpStream,
    pub rx: Receiver,
}

impl ClientReader {
    /// The next message (a close frame included), or the error that ended
    /// the connection; a read that waited past the socket's read timeout is
    /// `Err(Error::Io(_))` of kind `WouldBlock` or `TimedOut`.
    pub fn recv(&mut self) -> Result<Message, Error> {
        loop {
            if let Some(m) = self.rx.poll_message()? {
                return Ok(m);
            }
            if self.rx.state() == ws_core::State::Closed {
                return Err(Error::Closed);
            }
            let buf = self.rx.read_buf();
            let start = buf.len();
            buf.resize(buf.capacity(), 0);
            let n = match self.stream.read(&mut buf[start..]) {
                Ok(n) => n,
                Err(e) => {
                    buf.truncate(start);
                    return Err(Error::Io(e));
                }
            };
            buf.truncate(start + n);
            if n == 0 {
                self.rx.handle_eof();
            }
        }
    }
}

/// Sends a raw HTTP request and returns the whole response head.
pub fn raw_http(addr: SocketAddr, request: &str) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                out.extend_from_slice(&buf[..n]);
                if out.windows(4).any(|w| w == b"\r\n\r\n") {
                    break;
                }
            }
            Err(e) => panic!("reading HTTP response: {e}"),
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A loopback address whose port is free right now (bound by the OS,
/// noted, released), for a server that must come back on the same port.
pub fn free_addr() -> SocketAddr {
    let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    probe.local_addr().unwrap()
}

impl TestServer {
    /// Starts a server running `handler` on `addr` (e.g. from [`free_addr`],
    /// to restart a server where its clients expect it). A bind that fails
    /// with `AddrInUse` (the previous listener not released yet) is retried
    /// for up to 10 s.
    pub fn start_handler_at<H: Handler + Clone>(
        rt: Runtime,
        addr: SocketAddr,
        handler: H,
        flow: FlowControl,
    ) -> TestServer {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match Self::try_start_at(rt, addr, handler.clone(), flow.clone()) {
                Ok(server) => return server,
                Err(e)
                    if e.kind() == std::io::ErrorKind::AddrInUse && Instant::now() < deadline =>
                {
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => panic!("binding {addr}: {e}"),
            }
        }
    }

    fn try_start_at<H: Handler>(
        rt: Runtime,
        addr: SocketAddr,
        handler: H,
        flow: FlowControl,
    ) -> std::io::Result<TestServer> {
        let at = addr.to_string();
        let inner = match rt {
            Runtime::Tokio => {
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()?;
                let h = runtime.block_on(
                    ws_tokio::Server::with_handler(at, handler)
                        .flow_control(flow)
                        .start(),
                )?;
                Inner::Tokio(runtime, h)
            }
            Runtime::AsyncStd => Inner::AsyncStd(async_std::task::block_on(
                ws_async_std::Server::with_handler(at, handler)
                    .flow_control(flow)
                    .start(),
            )?),
            Runtime::Smol => Inner::Smol(smol::block_on(
                ws_async_std::smol::Server::with_handler(at, handler)
                    .flow_control(flow)
                    .start(),
            )?),
            Runtime::Blocking => Inner::Blocking(
                ws_blocking::Server::with_handler(at, handler)
                    .flow_control(flow)
                    .start()?,
            ),
        };
        Ok(TestServer { addr, inner })
    }
}

impl TestServer {
    /// Starts a chat server on 127.0.0.1 (OS-chosen port, default flow
    /// control) joined to a cluster through `backplane`: an in-process node,
    /// for tests that need its handle (`broadcast`, backplane statistics).
    pub fn start_node(rt: Runtime, backplane: ws_redis::RedisBackplane) -> TestServer {
        let addr = "127.0.0.1:0";
        let inner = match rt {
            Runtime::Tokio => {
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .unwrap();
                let server = ws_tokio::Server::new(addr).backplane(backplane);
                let h = runtime.block_on(server.start()).unwrap();
                Inner::Tokio(runtime, h)
            }
            Runtime::AsyncStd => Inner::AsyncStd(
                async_std::task::block_on(
                    ws_async_std::Server::new(addr).backplane(backplane).start(),
                )
                .unwrap(),
            ),
            Runtime::Smol => Inner::Smol(
                smol::block_on(
                    ws_async_std::smol::Server::new(addr)
                        .backplane(backplane)
                        .start(),
                )
                .unwrap(),
            ),
            Runtime::Blocking => Inner::Blocking(
                ws_blocking::Server::new(addr)
                    .backplane(backplane)
                    .start()
                    .unwrap(),
            ),
        };
        let addr = match &inner {
            Inner::Tokio(_, h) => h.local_addr(),
            Inner::AsyncStd(h) => h.local_addr(),
            Inner::Smol(h) => h.local_addr(),
            Inner::Blocking(h) => h.local_addr(),
        };
        TestServer { addr, inner }
    }

    /// Broadcasts `msg` from the application (`ServerHandle::broadcast`);
    /// returns how many local clients it was queued for.
    pub fn broadcast(&self, msg: &Message) -> usize {
        let report = match &self.inner {
            Inner::Tokio(rt, h) => rt.block_on(h.broadcast(msg)),
            Inner::AsyncStd(h) => async_std::task::block_on(h.broadcast(msg)),
            Inner::Smol(h) => smol::block_on(h.broadcast(msg)),
            Inner::Blocking(h) => h.broadcast(msg),
        };
        report.unwrap().delivered
    }

    /// The backplane's counters (`None` outside a cluster).
    pub fn backplane_stats(&self) -> Option<ws_core::server::backplane::BackplaneStats> {
        match &self.inner {
            Inner::Tokio(_, h) => h.backplane_stats(),
            Inner::AsyncStd(h) => h.backplane_stats(),
            Inner::Smol(h) => h.backplane_stats(),
            Inner::Blocking(h) => h.backplane_stats(),
        }
    }
}
