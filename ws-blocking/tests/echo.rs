//! Echo server, clients, framing and the closing handshake over loopback.

mod common;

use std::io::Write;
use std::net::TcpListener;
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use ws_blocking::{
    Client, CloseCode, Config, Error, Message, ServerMode, accept, connect, connect_with,
};
use ws_core::url::UrlError;
use ws_core::{Connection, Role};

const SIZES: [usize; 6] = [0, 125, 126, 64 << 10, 1 << 20, 16 << 20];

fn text_of(len: usize) -> String {
    (0..len)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect()
}

fn binary_of(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 % 251) as u8).collect()
}

#[test]
fn echo_text_and_binary_of_every_size_through_client() {
    with_timeout(60, || {
        let server = start(ServerMode::Echo, Config::default(), 16);
        let mut client = Client::new(url(&server, "/echo")).unwrap();
        client.connect().unwrap();
        for len in SIZES {
            let text = text_of(len);
            client.send_message(&text).unwrap();
            match client.recv() {
                Some(Ok(Message::Text(t))) => assert!(t.as_str() == text, "text of {len} bytes"),
                other => panic!("expected text of {len} bytes, got {other:?}"),
            }
            let bin = binary_of(len);
            client.send_binary(&bin).unwrap();
            match client.recv() {
                Some(Ok(Message::Binary(b))) => assert!(b[..] == bin[..], "binary of {len} bytes"),
                other => panic!("expected binary of {len} bytes, got {other:?}"),
            }
        }
        client.close().unwrap();
        assert!(client.recv().is_none());
        server.shutdown();
    });
}

#[test]
fn echo_through_connect_stream_with_batched_feed() {
    with_timeout(20, || {
        let server = start(ServerMode::Echo, Config::default(), 16);
        let (mut ws, response) = connect(url(&server, "/")).unwrap();
        assert_eq!(response.status(), 101);
        // Many messages queued, one flush; they come back in order.
        for i in 0..200 {
            ws.feed(Message::text(format!("m{i}"))).unwrap();
        }
        assert!(ws.connection().buffered_transmit() > 0, "feed only queues");
        ws.flush().unwrap();
        assert_eq!(ws.connection().buffered_transmit(), 0);
        for i in 0..200 {
            assert_eq!(ws.read().unwrap(), Message::text(format!("m{i}")));
        }
        for len in [0, 126, 1 << 20] {
            ws.send(Message::binary(binary_of(len))).unwrap();
            assert_eq!(ws.read().unwrap(), Message::binary(binary_of(len)));
        }
        ws.close(CloseCode::NORMAL, "").unwrap();
        assert!(matches!(ws.read(), Err(Error::Closed)));
        server.shutdown();
    });
}

#[test]
fn fragmented_input_is_reassembled() {
    with_timeout(20, || {
        let server = start(ServerMode::Echo, Config::default(), 16);
        let (mut sock, leftover) = raw_ws(server.local_addr(), "/");
        sock.set_nodelay(true).unwrap();
        let mut conn = Connection::with_buffered(
            Role::Client,
            Config::default().fragment_size(Some(7)),
            leftover,
        );
        let text = "hello fragmented world, héllo ünïcode split across frames";
        let bin = binary_of(1000);
        conn.send_text(text).unwrap();
        conn.send_ping(b"in between").unwrap();
        conn.send_binary(&bin).unwrap();
        let wire = conn.take_transmit();
        // Trickle the frames in 3-byte writes so they also straddle reads.
        for chunk in wire.chunks(3) {
            sock.write_all(chunk).unwrap();
        }
        let mut got = Vec::new();
        while got.len() < 3 {
            got.push(raw_read(&mut sock, &mut conn).expect("a message"));
        }
        assert_eq!(got[0], Message::text(text));
        assert_eq!(got[1], Message::Pong("in between".into()));
        assert_eq!(got[2], Message::binary(bin));
        drop(sock); // a raw socket would not answer the shutdown's close
        assert!(wait_until(Duration::from_secs(2), || server.client_count() == 0));
        server.shutdown();
    });
}

#[test]
fn close_from_client_carries_code_and_reason_and_code_is_echoed() {
    with_timeout(20, || {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = thread::spawn(move || {
            let mut seen = Vec::new();
            for _ in 0..2 {
                let (sock, _) = listener.accept().unwrap();
                let mut ws = accept(sock).unwrap();
                match ws.read().unwrap() {
                    Message::Close(Some(f)) => seen.push((f.code, f.reason.to_string())),
                    other => panic!("expected close, got {other:?}"),
                }
                // The reply is flushed and the server closes TCP.
                assert!(matches!(ws.read(), Err(Error::Closed)));
            }
            seen
        });
        // 1: close() returns once the reply arrived and TCP ended.
        let (mut ws, _) = connect(format!("ws://{addr}/")).unwrap();
        let t = Instant::now();
        ws.close(CloseCode(4000), "bye").unwrap();
        assert!(t.elapsed() < Duration::from_secs(2));
        assert!(matches!(ws.read(), Err(Error::Closed)));
        // 2: the reply's code is the one we sent.
        let (mut ws, _) = connect(format!("ws://{addr}/")).unwrap();
        ws.send(Message::Close(Some(ws_blocking::CloseFrame::new(
            CloseCode(4001),
            "later",
        ))))
        .unwrap();
        match ws.read().unwrap() {
            Message::Close(Some(f)) => assert_eq!(f.code, CloseCode(4001)),
            other => panic!("expected the close reply, got {other:?}"),
        }
        assert!(matches!(ws.read(), Err(Error::Closed)));
        assert!(matches!(ws.send(Message::text("x")), Err(Error::Closed)));
        let seen = server.join().unwrap();
        assert_eq!(
            seen,
            vec![
                (CloseCode(4000), "bye".to_string()),
                (CloseCode(4001), "later".to_string())
            ]
        );
    });
}

#[test]
fn wss_urls_are_accepted_and_other_schemes_refused() {
    assert!(Client::new("wss://127.0.0.1:1/").is_ok());
    // wss:// gets as far as the TCP connect (nothing listens on port 1).
    assert!(matches!(connect("wss://127.0.0.1:1/"), Err(Error::Io(_))));
    assert!(matches!(
        connect_with("HTTPS://example.com/", Config::default()),
        Err(Error::Url(UrlError::UnsupportedScheme(_)))
    ));
}

#[test]
fn run_interactive_sends_lines_prints_replies_and_closes_on_eof() {
    let out = with_timeout(20, || {
        let server = start(ServerMode::Echo, Config::default(), 16);
        let mut client = Client::new(url(&server, "/")).unwrap();
        client.connect().unwrap();
        let mut out = Vec::new();
        client
            .run_interactive_with(&b"hello\nworld\n"[..], &mut out)
            .unwrap();
        assert!(client.recv().is_none(), "connection is over");
        assert!(wait_until(Duration::from_secs(2), || server.client_count() == 0));
        server.shutdown();
        String::from_utf8(out).unwrap()
    });
    // Every echo is printed; the server's reply to our own close is not
    // (as in ws-tokio and ws-async-std).
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines, ["hello", "world"], "{out:?}");
}

#[test]
fn echo_clients_are_registered_and_reached_by_broadcast() {
    with_timeout(20, || {
        let server = start(ServerMode::Echo, Config::default(), 16);
        let mut a = Client::new(url(&server, "/")).unwrap();
        let mut b = Client::new(url(&server, "/any/path")).unwrap();
        a.connect().unwrap();
        b.connect().unwrap();
        assert!(wait_until(Duration::from_secs(2), || server.client_count() == 2));
        let report = server.broadcast(&Message::text("to all")).unwrap();
        assert_eq!(report.delivered, 2);
        for c in [&mut a, &mut b] {
            assert_eq!(c.recv().unwrap().unwrap(), Message::text("to all"));
            // Echo still works once the client's writer runs.
            c.send_message("mine").unwrap();
            assert_eq!(c.recv().unwrap().unwrap(), Message::text("mine"));
        }
        a.close().unwrap();
        assert!(wait_until(Duration::from_secs(2), || server.client_count() == 1));
        b.close().unwrap();
        assert!(wait_until(Duration::from_secs(2), || server.client_count() == 0));
        server.shutdown();
    });
}

#[test]
fn accept_with_rejection_is_a_rejected_handshake_error() {
    use ws_core::handshake::{Accept, HandshakeError};
    with_timeout(20, || {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = thread::spawn(move || {
            let (sock, _) = listener.accept().unwrap();
            ws_blocking::accept_with(sock, Config::default(), |req| {
                assert_eq!(req.path(), "/private");
                Err::<Accept, _>(ws_core::Bytes::from_static(
                    b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                ))
            })
            .map(|_| ())
        });
        let err = connect(format!("ws://{addr}/private")).unwrap_err();
        match err {
            Error::Handshake(HandshakeError::UnexpectedStatus(r)) => assert_eq!(r.status(), 403),
            other => panic!("expected a 403, got {other:?}"),
        }
        match server.join().unwrap() {
            Err(Error::Handshake(HandshakeError::Rejected { status: 403 })) => {}
            other => panic!("expected Rejected {{ status: 403 }}, got {other:?}"),
        }
    });
}

#[test]
fn client_messages_and_receive_messages_end_at_close() {
    with_timeout(20, || {
        let server = start(ServerMode::Echo, Config::default(), 16);
        let mut client = Client::new(url(&server, "/")).unwrap();
        assert!(client.send_message("too early").is_err());
        client.connect().unwrap();
        client.ping(b"p").unwrap();
        assert_eq!(
            client.messages().next().unwrap().unwrap(),
            Message::Pong("p".into())
        );
        client.send_message("one").unwrap();
        client.send_message("two").unwrap();
        let handle = server.clone();
        let stopper = thread::spawn(move || {
            thread::sleep(Duration::from_millis(100));
            handle.shutdown();
        });
        let mut seen = Vec::new();
        client.receive_messages(|m| seen.push(m.clone())).unwrap();
        stopper.join().unwrap();
        assert_eq!(&seen[..2], [Message::text("one"), Message::text("two")]);
        assert!(matches!(&seen[2], Message::Close(Some(f)) if f.code == CloseCode::GOING_AWAY));
        assert_eq!(seen.len(), 3);
    });
}
