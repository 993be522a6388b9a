//! Test support: a server of any runtime behind one handle, and a neutral
//! client written directly on ws-core and std::net (so that no adapter is
//! tested with itself).

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use examples::Runtime;
use ws_core::handshake::{ClientHandshake, ClientRequest};
use ws_core::site::ServerMode;
use ws_core::{Config, Connection, Error, Message, Role};

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
    /// Starts a server on 127.0.0.1 with an OS-chosen port.
    pub fn start(rt: Runtime, mode: ServerMode, queue_capacity: usize) -> TestServer {
        let addr = "127.0.0.1:0";
        let inner = match rt {
            Runtime::Tokio => {
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .unwrap();
                let h = runtime
                    .block_on(
                        ws_tokio::Server::new(addr)
                            .mode(mode)
                            .queue_capacity(queue_capacity)
                            .start(),
                    )
                    .unwrap();
                Inner::Tokio(runtime, h)
            }
            Runtime::AsyncStd => Inner::AsyncStd(
                async_std::task::block_on(
                    ws_async_std::Server::new(addr)
                        .mode(mode)
                        .queue_capacity(queue_capacity)
                        .start(),
                )
                .unwrap(),
            ),
            Runtime::Smol => Inner::Smol(
                smol::block_on(
                    ws_async_std::smol::Server::new(addr)
                        .mode(mode)
                        .queue_capacity(queue_capacity)
                        .start(),
                )
                .unwrap(),
            ),
            Runtime::Blocking => Inner::Blocking(
                ws_blocking::Server::new(addr)
                    .mode(mode)
                    .queue_capacity(queue_capacity)
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
        let mut stream = TcpStream::connect(addr).unwrap();
        stream.set_nodelay(true).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let req = ClientRequest::new(&addr.ip().to_string(), addr.port(), path);
        let (mut hs, bytes) = ClientHandshake::new(&req);
        stream.write_all(&bytes).unwrap();
        let mut buf = [0u8; 4096];
        loop {
            let n = stream.read(&mut buf).unwrap();
            assert!(n > 0, "server closed during handshake");
            if hs.feed(&buf[..n]).unwrap().is_some() {
                break;
            }
        }
        let conn = Connection::with_buffered(Role::Client, config, hs.take_remaining());
        RawClient { stream, conn }
    }

    pub fn send(&mut self, msg: &Message) {
        self.conn.send(msg).unwrap();
        self.flush();
    }

    pub fn flush(&mut self) {
        while self.conn.wants_write() {
            let n = self.stream.write(self.conn.pending_transmit()).unwrap();
            self.conn.advance_transmit(n);
        }
    }

    /// The next message, or the error that ended the connection.
    pub fn recv(&mut self) -> Result<Message, Error> {
        loop {
            if let Some(m) = self.conn.poll_message()? {
                self.flush();
                return Ok(m);
            }
            self.flush();
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
