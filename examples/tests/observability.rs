//! `ws-server --metrics --log debug` on every runtime (the counters are
//! kept by ws-core's engine, which every runtime shares):
//! a scripted chat exchange (three clients, four messages, one upgrade
//! refused for its version, closes with known codes), then `/metrics`
//! scraped over HTTP and every counter checked, and the log checked for the
//! refused handshake and the close codes.

mod support;

use std::io::Read;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::{RawClient, free_addr, raw_http};
use ws_core::{CloseCode, CloseFrame, Message};

/// A ws-server process, killed when dropped; its stderr (the log) is
/// collected by [`stop`](Self::stop).
struct Process {
    child: Child,
    addr: SocketAddr,
}

impl Process {
    fn start(runtime: &str, extra: &[&str]) -> Process {
        let addr = free_addr();
        let child = Command::new(env!("CARGO_BIN_EXE_ws-server"))
            .args(["--addr", &addr.to_string(), "--runtime", runtime])
            .args(["--threads", "2"])
            .args(extra)
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("ws-server starts");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(addr).is_err() {
            assert!(Instant::now() < deadline, "ws-server never listened");
            std::thread::sleep(Duration::from_millis(50));
        }
        Process { child, addr }
    }

    /// Kills the server and returns its log.
    fn stop(mut self) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let mut log = String::new();
        if let Some(mut err) = self.child.stderr.take() {
            let _ = err.read_to_string(&mut log);
        }
        log
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The body of a `GET path` (the whole response, head cut off).
fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    use std::io::Write;
    write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut out = String::new();
    // The server closes after its response (Connection: close).
    s.read_to_string(&mut out).unwrap();
    let status = out.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = out.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    (status, body.to_owned())
}

/// The value of the sample named exactly `name` (with its labels).
fn sample(text: &str, name: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

/// Scrapes until `check` holds (the server counts a close when its
/// connection task ends, a moment after the client saw it), at most 10 s.
fn scrape_until(addr: SocketAddr, check: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, text) = http_get(addr, "/metrics");
        assert_eq!(status, 200, "{text}");
        if check(&text) || Instant::now() > deadline {
            return text;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Reads until the peer's close frame; returns its code.
fn close_and_wait(mut c: RawClient, code: u16, reason: &str) -> Option<CloseCode> {
    c.send(&Message::Close(Some(CloseFrame::new(
        CloseCode(code),
        reason,
    ))));
    for _ in 0..100 {
        match c.recv() {
            Ok(Message::Close(f)) => return f.map(|f| f.code),
            Ok(_) => {}
            Err(_) => return None,
        }
    }
    None
}

fn a_scripted_exchange_is_counted_in_metrics_and_logged(runtime: &str) {
    let server = Process::start(runtime, &["--metrics", "--log", "debug"]);
    let addr = server.addr;

    let before = scrape_until(addr, |_| true);
    assert_eq!(sample(&before, "ws_connections_total"), Some(0), "{before}");

    // Three chat clients in the lobby; the first sends four messages, which
    // reach all three (the sender too).
    let mut clients: Vec<RawClient> = (0..3).map(|_| RawClient::connect(addr, "/ws")).collect();
    let open = scrape_until(addr, |t| sample(t, "ws_connections_open") == Some(3));
    assert_eq!(sample(&open, "ws_connections_open"), Some(3), "{open}");
    let texts = ["a", "bb", "ccc", "dddd"];
    for t in texts {
        clients[0].send(&Message::text(t));
    }
    for c in &mut clients {
        for t in texts {
            assert_eq!(c.recv_data(), Message::text(t));
        }
    }

    // One upgrade refused: a version the server does not speak.
    let refused = raw_http(
        addr,
        &format!(
            "GET /ws HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 12\r\n\r\n"
        ),
    );
    let status = &refused[9..12];
    assert!(status == "426" || status == "400", "{refused}");

    // A plain request is not a handshake failure.
    assert_eq!(http_get(addr, "/").0, 200);

    // Closes with known codes: 4000 from the first client, 1000 from the
    // others.
    let mut it = clients.into_iter();
    assert_eq!(
        close_and_wait(it.next().unwrap(), 4000, "bye"),
        Some(CloseCode(4000))
    );
    for c in it {
        assert_eq!(close_and_wait(c, 1000, ""), Some(CloseCode::NORMAL));
    }

    let text = scrape_until(addr, |t| sample(t, "ws_connections_open") == Some(0));
    let bytes: u64 = texts.iter().map(|t| t.len() as u64).sum();
    for (name, want) in [
        ("ws_connections_open", 0),
        ("ws_connections_total", 3),
        ("ws_messages_received_total", 4),
        ("ws_received_bytes_total", bytes),
        ("ws_messages_sent_total", 12),
        ("ws_sent_bytes_total", 3 * bytes),
        (
            &format!("ws_handshake_failures_total{{status=\"{status}\"}}"),
            1,
        ),
        ("ws_closes_total{code=\"4000\"}", 1),
        ("ws_closes_total{code=\"1000\"}", 2),
        ("ws_slow_client_drops_total", 0),
        ("ws_broadcast_queue_messages", 0),
        ("ws_broadcast_queue_bytes", 0),
    ] {
        assert_eq!(sample(&text, name), Some(want), "{name} in\n{text}");
    }
    let failures = text
        .lines()
        .filter(|l| l.starts_with("ws_handshake_failures_total{"))
        .count();
    assert_eq!(failures, 1, "only the refused upgrade:\n{text}");

    let log = server.stop();
    let line = |needles: &[&str]| log.lines().any(|l| needles.iter().all(|n| l.contains(n)));
    assert!(
        line(&["handshake refused", &format!("status={status}")]),
        "the refusal is logged:\n{log}"
    );
    assert!(
        line(&["close received", "code=4000"]),
        "the client's close code is logged:\n{log}"
    );
    assert!(
        line(&["close sent", "code=4000"]),
        "the server's reply is logged:\n{log}"
    );
    assert!(
        line(&[
            "ws_conn{peer=127.0.0.1:",
            &format!("runtime=\"{runtime}\""),
            "path=\"/ws\"",
            "close received",
        ]),
        "events carry the connection's span:\n{log}"
    );
}

#[test]
fn tokio_counts_a_scripted_exchange_in_metrics_and_logs_it() {
    a_scripted_exchange_is_counted_in_metrics_and_logged("tokio");
}

#[test]
fn blocking_counts_a_scripted_exchange_in_metrics_and_logs_it() {
    a_scripted_exchange_is_counted_in_metrics_and_logged("blocking");
}

#[test]
fn async_std_counts_a_scripted_exchange_in_metrics_and_logs_it() {
    a_scripted_exchange_is_counted_in_metrics_and_logged("async-std");
}

#[test]
fn smol_counts_a_scripted_exchange_in_metrics_and_logs_it() {
    a_scripted_exchange_is_counted_in_metrics_and_logged("smol");
}

#[test]
fn metrics_are_off_without_the_flag() {
    let server = Process::start("tokio", &[]);
    let (status, _) = http_get(server.addr, "/metrics");
    assert_eq!(status, 404);
}

/// A wss:// server that gets plain HTTP instead of a ClientHello logs the
/// TLS error at `info` (the default level), inside the connection's span.
#[test]
fn a_tls_error_is_logged_at_the_default_level_in_the_connections_span() {
    use std::io::Write;
    let key = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
    let dir = std::env::temp_dir();
    let tag = format!("ws-obs-{}", std::process::id());
    let cert_path = dir.join(format!("{tag}-cert.pem"));
    let key_path = dir.join(format!("{tag}-key.pem"));
    std::fs::write(&cert_path, key.cert.pem()).unwrap();
    std::fs::write(&key_path, key.signing_key.serialize_pem()).unwrap();
    let server = Process::start(
        "tokio",
        &[
            "--tls-cert",
            cert_path.to_str().unwrap(),
            "--tls-key",
            key_path.to_str().unwrap(),
        ],
    );
    let mut s = std::net::TcpStream::connect(server.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    // The server answers with an alert and ends the connection.
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    assert_eq!(out.first(), Some(&0x15), "a TLS alert record: {out:?}");
    let log = server.stop();
    let _ = std::fs::remove_file(&cert_path);
    let _ = std::fs::remove_file(&key_path);
    assert!(
        log.lines().any(|l| l.contains("INFO")
            && l.contains("ws_conn{peer=127.0.0.1:")
            && l.contains("TLS error")),
        "{log}"
    );
    assert!(!log.contains("DEBUG"), "info by default:\n{log}");
}

/// A client that vanishes with a reset (its socket closed with a broadcast
/// unread) is logged as an I/O error in its connection's span, and its
/// session is counted as closed with 1006.
fn a_reset_is_logged_as_an_io_error_and_counted_as_1006(runtime: &str) {
    let server = Process::start(runtime, &["--metrics", "--log", "debug"]);
    let addr = server.addr;
    let vanishing = RawClient::connect(addr, "/ws");
    let mut sender = RawClient::connect(addr, "/ws");
    sender.send(&Message::text("unread by the other"));
    assert_eq!(sender.recv_data(), Message::text("unread by the other"));
    // Let the broadcast reach the other socket, then close it unread: the
    // kernel answers with a reset.
    std::thread::sleep(Duration::from_millis(500));
    drop(vanishing);
    let text = scrape_until(addr, |t| sample(t, "ws_connections_open") == Some(1));
    assert_eq!(
        sample(&text, "ws_closes_total{code=\"1006\"}"),
        Some(1),
        "{text}"
    );
    let log = server.stop();
    assert!(
        log.lines()
            .any(|l| l.contains("ws_conn{peer=127.0.0.1:") && l.contains("I/O error")),
        "{log}"
    );
}

#[test]
fn tokio_logs_a_reset_as_an_io_error() {
    a_reset_is_logged_as_an_io_error_and_counted_as_1006("tokio");
}

#[test]
fn blocking_logs_a_reset_as_an_io_error() {
    a_reset_is_logged_as_an_io_error_and_counted_as_1006("blocking");
}
