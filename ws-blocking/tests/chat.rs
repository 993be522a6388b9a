//! Chat-mode server: broadcast, registry, shutdown, slow clients, HTTP.

mod common;

use std::io::ErrorKind;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use ws_blocking::{Client, CloseCode, Config, Message, ServerMode};

#[test]
fn broadcast_reaches_all_three_clients() {
    with_timeout(20, || {
        let server = start(ServerMode::Chat, Config::default(), 64);
        let mut clients: Vec<Client> = (0..3)
            .map(|_| {
                let mut c = Client::new(url(&server, "/ws")).unwrap();
                c.connect().unwrap();
                c
            })
            .collect();
        assert!(wait_until(Duration::from_secs(2), || server.client_count() == 3));
        for (i, c) in clients.iter_mut().enumerate() {
            c.send_message(&format!("from {i}")).unwrap();
        }
        let report = server.broadcast(&Message::text("from server")).unwrap();
        assert_eq!(report.delivered, 3);
        for c in &mut clients {
            let mut got: Vec<String> = (0..4)
                .map(|_| match c.recv() {
                    Some(Ok(Message::Text(t))) => t.to_string(),
                    other => panic!("expected a broadcast, got {other:?}"),
                })
                .collect();
            got.sort();
            assert_eq!(got, ["from 0", "from 1", "from 2", "from server"]);
        }
        for c in &mut clients {
            c.close().unwrap();
        }
        assert!(wait_until(Duration::from_secs(2), || server.client_count() == 0));
        server.shutdown();
    });
}

#[test]
fn client_dropping_tcp_without_close_is_unregistered() {
    with_timeout(20, || {
        let server = start(ServerMode::Chat, Config::default(), 64);
        let mut client = Client::new(url(&server, "/ws")).unwrap();
        client.connect().unwrap();
        let (raw, _) = raw_ws(server.local_addr(), "/ws");
        assert!(wait_until(Duration::from_secs(2), || server.client_count() == 2));
        drop(raw);
        assert!(wait_until(Duration::from_secs(3), || server.client_count() == 1));
        drop(client);
        assert!(wait_until(Duration::from_secs(3), || server.client_count() == 0));
        // Broadcasting to nobody is fine.
        assert_eq!(server.broadcast(&Message::text("x")).unwrap().delivered, 0);
        server.shutdown();
    });
}

fn shutdown_closes_everyone_with_1001(mode: ServerMode, path: &str) {
    let config = Config::default().close_timeout(Duration::from_secs(2));
    let server = start(mode, config, 64);
    let readers: Vec<_> = (0..3)
        .map(|_| {
            let mut c = Client::new(url(&server, path)).unwrap();
            c.connect().unwrap();
            thread::spawn(move || {
                let first = c.recv();
                let end = c.recv();
                (first, end)
            })
        })
        .collect();
    assert!(wait_until(Duration::from_secs(2), || server.client_count() == 3));
    let t = Instant::now();
    server.shutdown();
    assert!(
        t.elapsed() < Duration::from_secs(3),
        "shutdown took {:?}",
        t.elapsed()
    );
    assert_eq!(server.client_count(), 0);
    for r in readers {
        let (first, end) = r.join().unwrap();
        match first {
            Some(Ok(Message::Close(Some(f)))) => assert_eq!(f.code, CloseCode::GOING_AWAY),
            other => panic!("expected close 1001, got {other:?}"),
        }
        assert!(end.is_none(), "then the connection ends: {end:?}");
    }
    // No longer accepting.
    let refused = Client::new(url(&server, path)).unwrap().connect();
    assert!(refused.is_err());
}

#[test]
fn shutdown_sends_1001_to_every_chat_client() {
    with_timeout(20, || {
        shutdown_closes_everyone_with_1001(ServerMode::Chat, "/ws")
    });
}

#[test]
fn shutdown_sends_1001_to_every_echo_client() {
    with_timeout(20, || {
        shutdown_closes_everyone_with_1001(ServerMode::Echo, "/")
    });
}

#[test]
fn slow_client_is_dropped_while_others_keep_receiving() {
    with_timeout(30, || {
        let config = Config::default().close_timeout(Duration::from_millis(500));
        let server = start(ServerMode::Chat, config, 4);
        // The slow client: a valid handshake, then it never reads.
        let (mut slow, _) = raw_ws(server.local_addr(), "/ws");
        let mut good = Client::new(url(&server, "/ws")).unwrap();
        good.connect().unwrap();
        assert!(wait_until(Duration::from_secs(2), || server.client_count() == 2));

        let received = Arc::new(AtomicUsize::new(0));
        let counter = received.clone();
        let good_reader = thread::spawn(move || {
            while let Some(Ok(Message::Binary(b))) = good.recv() {
                assert_eq!(b.len(), 64 << 10);
                counter.fetch_add(1, Ordering::SeqCst);
            }
            good
        });

        let payload = Message::binary(vec![7u8; 64 << 10]);
        let mut sent = 0;
        let mut dropped_at = None;
        // Up to 64 MiB, far more than loopback socket buffers hold.
        while sent < 1024 {
            // Pace on the good client so only the slow one falls behind.
            assert!(wait_until(Duration::from_secs(5), || {
                received.load(Ordering::SeqCst) + 2 >= sent
            }));
            let report = server.broadcast(&payload).unwrap();
            sent += 1;
            // The hub drops it after its slow-client timeout, noticed by
            // whoever waits on it first: this broadcast or a paused session.
            if dropped_at.is_none() && server.stats().dropped_slow > 0 {
                assert!(report.dropped.len() <= 1, "only the slow client is dropped");
                assert_eq!(
                    server.stats().dropped_slow,
                    1,
                    "only the slow client is dropped"
                );
                dropped_at = Some(sent);
            }
            if dropped_at.is_some_and(|d| sent >= d + 20) {
                break;
            }
        }
        let dropped_at = dropped_at.expect("the slow client was dropped");
        assert!(wait_until(Duration::from_secs(5), || received
            .load(Ordering::SeqCst)
            == sent));
        // Its connection ends (bounded by the write/close timeout).
        assert!(wait_until(Duration::from_secs(3), || server.client_count() == 1));
        slow.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut buf = vec![0u8; 1 << 20];
        let t = Instant::now();
        loop {
            match slow.read(&mut buf) {
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    panic!("slow client never cut: {e}")
                }
                Ok(0) | Err(_) => break,
                Ok(_) => assert!(
                    t.elapsed() < Duration::from_secs(5),
                    "slow client never cut"
                ),
            }
        }
        // The good one is still served.
        let report = server.broadcast(&payload).unwrap();
        assert_eq!(report.delivered, 1);
        assert!(wait_until(Duration::from_secs(5), || received
            .load(Ordering::SeqCst)
            == sent + 1));
        assert!(dropped_at < 1024);
        server.shutdown();
        let good = good_reader.join().unwrap();
        drop(good);
    });
}

#[test]
fn handshake_rejections_and_page_while_server_keeps_serving() {
    with_timeout(20, || {
        let server = start(ServerMode::Chat, Config::default(), 64);
        let addr = server.local_addr();
        let upgrade = |path: &str, version: &str| {
            format!(
                "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n\
                 Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
                 Sec-WebSocket-Version: {version}\r\n\r\n"
            )
        };
        let r = http(addr, &upgrade("/ws", "8"));
        assert!(r.starts_with("HTTP/1.1 426 "), "{r}");
        assert!(r.contains("\r\nSec-WebSocket-Version: 13\r\n"), "{r}");

        let r = http(addr, "GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
        assert!(r.starts_with("HTTP/1.1 426 "), "{r}");

        let r = http(addr, "GET /nope HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
        assert!(r.starts_with("HTTP/1.1 404 "), "{r}");

        let r = http(addr, "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
        assert!(r.starts_with("HTTP/1.1 200 "), "{r}");
        assert!(r.contains("text/html"));
        assert!(r.ends_with(ws_core::server::site::INDEX_HTML));

        let r = http(addr, "garbage\r\n\r\n");
        assert!(r.starts_with("HTTP/1.1 400 "), "{r}");

        // Still serving WebSocket clients.
        let mut c = Client::new(url(&server, "/ws")).unwrap();
        c.connect().unwrap();
        assert!(wait_until(Duration::from_secs(2), || server.client_count() == 1));
        c.send_message("still here").unwrap();
        assert_eq!(c.recv().unwrap().unwrap(), Message::text("still here"));
        assert_eq!(server.client_count(), 1, "HTTP requests are not clients");
        c.close().unwrap();
        server.shutdown();
    });
}

#[test]
fn silent_connection_is_cut_after_the_handshake_timeout() {
    with_timeout(20, || {
        let config = Config::default().handshake_timeout(Duration::from_millis(200));
        let server = start(ServerMode::Chat, config, 64);
        let mut sock = TcpStream::connect(server.local_addr()).unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        sock.write_all(b"GET /ws HTTP/1.1\r\n").unwrap(); // and never the rest
        let t = Instant::now();
        let mut buf = [0u8; 256];
        let n = sock.read(&mut buf).unwrap_or(0);
        assert_eq!(n, 0, "closed without a response");
        assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
        server.shutdown();
    });
}
