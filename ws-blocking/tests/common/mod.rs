//! Helpers shared by the integration tests (all traffic on 127.0.0.1,
//! every wait bounded).
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use ws_blocking::{Config, Server, ServerHandle, ServerMode};
use ws_core::handshake::{ClientHandshake, ClientRequest};
use ws_core::{BytesMut, Connection, Message, Role};

/// Runs `f` on its own thread and fails the test if it takes longer than
/// `secs` (so a hang is a failure, not a stuck test run).
pub fn with_timeout<T: Send + 'static>(secs: u64, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    let handle = thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(Duration::from_secs(secs)) {
        Ok(v) => {
            let _ = handle.join();
            v
        }
        Err(mpsc::RecvTimeoutError::Disconnected) => match handle.join() {
            Err(panic) => std::panic::resume_unwind(panic),
            Ok(()) => unreachable!("sender dropped without sending"),
        },
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("test did not finish within {secs} s"),
    }
}

pub fn start(mode: ServerMode, config: Config, queue: usize) -> ServerHandle {
    Server::new("127.0.0.1:0")
        .mode(mode)
        .config(config)
        .flow_control(
            ws_blocking::FlowControl::default()
                .high_water(queue, 1 << 30)
                .slow_client_timeout(Duration::from_millis(500)),
        )
        .start()
        .expect("server starts")
}

pub fn url(h: &ServerHandle, path: &str) -> String {
    format!("ws://{}{}", h.local_addr(), path)
}

/// Polls `cond` every 5 ms until it holds or `timeout` passes.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        thread::sleep(Duration::from_millis(5));
    }
    cond()
}

/// A plain TCP socket that completed a WebSocket handshake by hand, plus
/// the bytes that followed the 101 response.
pub fn raw_ws(addr: SocketAddr, path: &str) -> (TcpStream, BytesMut) {
    let mut sock = TcpStream::connect(addr).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let req = ClientRequest::new("127.0.0.1", addr.port(), path);
    let (mut hs, request) = ClientHandshake::new(&req);
    sock.write_all(&request).unwrap();
    let mut buf = [0u8; 4096];
    loop {
        let n = sock.read(&mut buf).unwrap();
        assert!(n > 0, "server closed during handshake");
        if let Some(resp) = hs.feed(&buf[..n]).unwrap() {
            assert_eq!(resp.status(), 101);
            return (sock, hs.take_remaining());
        }
    }
}

/// Reads from a raw client socket until `conn` decodes one message.
pub fn raw_read(sock: &mut TcpStream, conn: &mut Connection) -> Option<Message> {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        if let Some(m) = conn.poll_message().unwrap() {
            return Some(m);
        }
        let n = sock.read(&mut buf).unwrap();
        if n == 0 {
            conn.handle_eof();
            return conn.poll_message().ok().flatten();
        }
        conn.handle_bytes(&buf[..n]);
    }
}

pub fn raw_client(leftover: BytesMut) -> Connection {
    Connection::with_buffered(Role::Client, Config::default(), leftover)
}

/// Sends a raw HTTP request and returns the whole response (the server
/// closes after answering).
pub fn http(addr: SocketAddr, request: &str) -> String {
    let mut sock = TcpStream::connect(addr).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    sock.write_all(request.as_bytes()).unwrap();
    let mut out = Vec::new();
    let _ = sock.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}
