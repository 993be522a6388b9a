//! The `hyper-upgrade` example, run as its own process on 127.0.0.1: its
//! ordinary route answers plain HTTP, its `/ws` route upgrades (ws-tokio's
//! `upgrade::upgrade` inside a hyper 1.x service) and echoes text and
//! binary to a client written on ws-core and std::net alone, closes
//! cleanly, and a bad upgrade gets the 4xx a socket server would send.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use support::RawClient;
use ws_core::{CloseCode, Message};

/// The example's process, killed when dropped.
struct Example {
    child: Child,
    addr: SocketAddr,
}

impl Drop for Example {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `hyper-upgrade` on an OS-chosen loopback port and waits (at most
/// 20 s) for the line that names it.
fn start() -> Example {
    let mut child = Command::new(env!("CARGO_BIN_EXE_hyper-upgrade"))
        .args(["--addr", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("hyper-upgrade starts");
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = match rx.recv_timeout(Duration::from_secs(20)) {
        Ok(line) => line,
        Err(e) => {
            let _ = child.kill();
            panic!("hyper-upgrade did not say where it listens: {e}");
        }
    };
    let addr = line
        .trim()
        .strip_prefix("listening on http://")
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"));
    Example { child, addr }
}

/// Sends `request` and reads the whole answer (the request asks the server
/// to close after it), bounded by a 10 s read timeout.
fn http(addr: SocketAddr, request: &str) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while out.len() < 1 << 20 {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) => panic!("reading the answer: {e}; so far {out:?}"),
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// An upgrade request with `extra` header lines, minus the header named
/// `without`.
fn upgrade_request(without: &str, extra: &str) -> String {
    let mut req = String::from("GET /ws HTTP/1.1\r\n");
    for line in [
        "Host: 127.0.0.1",
        "Upgrade: websocket",
        "Connection: Upgrade",
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
        "Sec-WebSocket-Version: 13",
    ] {
        if without.is_empty() || !line.starts_with(without) {
            req.push_str(line);
            req.push_str("\r\n");
        }
    }
    req.push_str(extra);
    req.push_str("Connection: close\r\n\r\n");
    req
}

#[test]
fn the_ordinary_routes_answer_plain_http() {
    let ex = start();
    let ok = http(
        ex.addr,
        "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
    );
    assert!(ok.starts_with("HTTP/1.1 200 OK\r\n"), "{ok}");
    assert!(
        ok.ends_with("\r\n\r\nhello from hyper; WebSockets on /ws\n"),
        "{ok}"
    );
    let missing = http(
        ex.addr,
        "GET /nothing HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
    );
    assert!(
        missing.starts_with("HTTP/1.1 404 Not Found\r\n"),
        "{missing}"
    );
}

#[test]
fn the_ws_route_echoes_text_and_binary_and_closes_cleanly() {
    let ex = start();
    let mut ws = RawClient::connect(ex.addr, "/ws");
    ws.send(&Message::text("hello hyper"));
    assert_eq!(ws.recv_data(), Message::text("hello hyper"));
    let bytes: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
    ws.send(&Message::binary(bytes.clone()));
    assert_eq!(ws.recv_data(), Message::binary(bytes));
    ws.conn.close(CloseCode::NORMAL, "done").unwrap();
    ws.flush();
    let answer = loop {
        match ws.recv() {
            Ok(Message::Close(frame)) => break frame,
            Ok(other) => assert!(!other.is_data(), "data after our close: {other:?}"),
            Err(e) => panic!("no close answer: {e}"),
        }
    };
    assert_eq!(answer.map(|f| f.code), Some(CloseCode::NORMAL));
    // The server then ends the TCP connection.
    assert!(matches!(ws.recv(), Err(ws_core::Error::Closed)));
}

#[test]
fn the_ws_route_and_a_tokio_client_agree_on_http_types() {
    let ex = start();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let request = ws_tokio::http::Request::builder()
            .uri(format!("ws://{}/ws", ex.addr))
            .header("Cookie", "a=1")
            .body(())
            .unwrap();
        let (mut ws, response) =
            tokio::time::timeout(Duration::from_secs(10), ws_tokio::connect(request))
                .await
                .expect("bounded")
                .unwrap();
        let response = response.to_http().unwrap();
        assert_eq!(response.status(), 101);
        assert_eq!(
            response.headers()["sec-websocket-accept"].len(),
            28,
            "{response:?}"
        );
        ws.send(Message::text("x")).await.unwrap();
        assert_eq!(ws.recv().await.unwrap().unwrap(), Message::text("x"));
        ws.close(CloseCode::NORMAL, "").await.unwrap();
    });
}

#[test]
fn a_bad_upgrade_gets_the_right_4xx() {
    let ex = start();
    let no_key = http(ex.addr, &upgrade_request("Sec-WebSocket-Key", ""));
    assert!(
        no_key.starts_with("HTTP/1.1 400 Bad Request\r\n"),
        "{no_key}"
    );
    assert!(no_key.contains("Sec-WebSocket-Key"), "{no_key}");

    let old = http(
        ex.addr,
        &upgrade_request("Sec-WebSocket-Version", "Sec-WebSocket-Version: 8\r\n"),
    );
    assert!(
        old.starts_with("HTTP/1.1 426 Upgrade Required\r\n"),
        "{old}"
    );
    assert!(
        old.to_ascii_lowercase()
            .contains("\r\nsec-websocket-version: 13\r\n"),
        "{old}"
    );

    let post = http(ex.addr, &upgrade_request("", "").replacen("GET", "POST", 1));
    assert!(
        post.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"),
        "{post}"
    );
    assert!(
        post.to_ascii_lowercase().contains("\r\nallow: get\r\n"),
        "{post}"
    );

    // And the server still upgrades a good one afterwards.
    let mut ws = RawClient::connect(ex.addr, "/ws");
    ws.send(&Message::text("still here"));
    assert_eq!(ws.recv_data(), Message::text("still here"));
}
