//! WebSocketStream: split halves, timers, resumable (timed-out) reads.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use ws_blocking::{
    CloseCode, Config, Error, Message, NoReadTimeout, Role, WebSocketStream, accept, connect,
    connect_with,
};
use ws_core::handshake::{Accept, ServerHandshake};
use ws_core::{BytesMut, Connection, TimeoutKind};

/// A listener whose first connection gets a hand-made 101 and is then
/// handed to `peer` as a raw socket (for peers that misbehave on purpose).
fn raw_peer<T: Send + 'static>(
    peer: impl FnOnce(TcpStream, BytesMut) -> T + Send + 'static,
) -> (String, thread::JoinHandle<T>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("ws://{}/", listener.local_addr().unwrap());
    let handle = thread::spawn(move || {
        let (mut sock, _) = listener.accept().unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut hs = ServerHandshake::new();
        let mut buf = [0u8; 4096];
        let req = loop {
            let n = sock.read(&mut buf).unwrap();
            if let Some(req) = hs.feed(&buf[..n]).unwrap() {
                break req;
            }
        };
        sock.write_all(&req.accept(&Accept::new()).unwrap())
            .unwrap();
        peer(sock, hs.take_remaining())
    });
    (url, handle)
}

#[test]
fn ping_is_answered_by_the_read_half_while_the_write_half_is_idle() {
    with_timeout(20, || {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let (pong_seen, wait_pong) = std::sync::mpsc::channel();
        let server = thread::spawn(move || {
            let (sock, _) = listener.accept().unwrap();
            let mut ws = accept(sock).unwrap();
            ws.set_read_timeout(Some(Duration::from_secs(2)));
            ws.send(Message::Ping("are you there".into())).unwrap();
            // Only the reader half is active: the writer waits for this.
            let pong = ws.read().unwrap();
            pong_seen.send(()).unwrap();
            // The writer half sends while the reader half is blocked.
            let from_writer = ws.read().unwrap();
            ws.send(Message::text("bye")).unwrap();
            ws.close(CloseCode::NORMAL, "").unwrap();
            (pong, from_writer)
        });
        let (ws, _) = connect(&format!("ws://{addr}/")).unwrap();
        let (mut reader, mut writer) = ws.split();
        let reader_thread = thread::spawn(move || reader.messages().collect::<Vec<_>>());
        wait_pong
            .recv_timeout(Duration::from_secs(5))
            .expect("the pong went out while the writer was idle");
        writer.send(Message::text("from the writer")).unwrap();
        let (pong, from_writer) = server.join().unwrap();
        assert_eq!(pong, Message::Pong("are you there".into()));
        assert_eq!(from_writer, Message::text("from the writer"));
        let got: Vec<Message> = reader_thread
            .join()
            .unwrap()
            .into_iter()
            .map(|m| m.unwrap())
            .collect();
        assert_eq!(got[0], Message::Ping("are you there".into()));
        assert_eq!(got[1], Message::text("bye"));
        assert!(matches!(&got[2], Message::Close(Some(f)) if f.code == CloseCode::NORMAL));
        assert_eq!(got.len(), 3);
        assert!(matches!(
            writer.send(Message::text("late")),
            Err(Error::Closed)
        ));
    });
}

#[test]
fn split_writer_close_waits_for_the_reader_to_see_the_reply() {
    with_timeout(20, || {
        let server = start(ws_blocking::ServerMode::Echo, Config::default(), 8);
        let (ws, _) = connect(&url(&server, "/")).unwrap();
        let (mut reader, mut writer) = ws.split();
        let reader_thread = thread::spawn(move || reader.messages().collect::<Vec<_>>());
        writer.send_text("x").unwrap();
        let t = Instant::now();
        writer.close(CloseCode(4002), "done").unwrap();
        assert!(t.elapsed() < Duration::from_secs(2));
        let got: Vec<Message> = reader_thread
            .join()
            .unwrap()
            .into_iter()
            .map(|m| m.unwrap())
            .collect();
        assert_eq!(got[0], Message::text("x"));
        assert!(matches!(&got[1], Message::Close(Some(f)) if f.code == CloseCode(4002)));
        server.shutdown();
    });
}

#[test]
fn timed_out_reads_lose_nothing() {
    const N: usize = 300;
    with_timeout(30, || {
        let (url, peer) = raw_peer(|mut sock, _| {
            sock.set_nodelay(true).unwrap();
            let mut enc = Connection::new(Role::Server, Config::default());
            let mut seed = 12345u32;
            let mut next = move || {
                seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
                (seed >> 16) as usize
            };
            for i in 0..N {
                let len = [0, 1, 125, 126, 1000, 70_000][i % 6];
                let body: String =
                    std::iter::repeat_n(char::from(b'a' + (i % 26) as u8), len).collect();
                enc.send_text(&format!("{i}:{body}")).unwrap();
                let wire = enc.take_transmit();
                // Random-sized pieces with pauses, so reads time out mid-frame.
                let mut rest = &wire[..];
                while !rest.is_empty() {
                    let n = (next() % 4000 + 1).min(rest.len());
                    sock.write_all(&rest[..n]).unwrap();
                    rest = &rest[n..];
                    if next() % 8 == 0 {
                        thread::sleep(Duration::from_micros(1500));
                    }
                }
            }
            enc.close(CloseCode::NORMAL, "").unwrap();
            sock.write_all(&enc.take_transmit()).unwrap();
            // A server closes TCP first once it has said goodbye.
            sock.shutdown(std::net::Shutdown::Write).unwrap();
            let mut sink = Vec::new();
            let _ = sock.read_to_end(&mut sink);
        });
        let (mut ws, _) = connect(&url).unwrap();
        ws.set_read_timeout(Some(Duration::from_micros(500)));
        let mut timeouts = 0;
        let mut next = 0;
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            assert!(Instant::now() < deadline);
            match ws.read() {
                Ok(Message::Text(t)) => {
                    let (idx, body) = t.split_once(':').unwrap();
                    assert_eq!(idx.parse::<usize>().unwrap(), next, "in order, none lost");
                    let len = [0, 1, 125, 126, 1000, 70_000][next % 6];
                    assert_eq!(body.len(), len);
                    assert!(
                        body.bytes().all(|b| b == b'a' + (next % 26) as u8),
                        "not corrupted"
                    );
                    next += 1;
                }
                Ok(Message::Close(_)) => break,
                Ok(other) => panic!("unexpected {other:?}"),
                Err(Error::Io(e)) if e.kind() == std::io::ErrorKind::TimedOut => timeouts += 1,
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(next, N);
        assert!(
            timeouts > 10,
            "the test must actually interrupt reads ({timeouts})"
        );
        ws.set_read_timeout(None);
        assert!(matches!(ws.read(), Err(Error::Closed)));
        peer.join().unwrap();
    });
}

#[test]
fn close_is_bounded_by_the_close_timeout_when_the_peer_never_answers() {
    with_timeout(20, || {
        let (url, peer) = raw_peer(|mut sock, _| {
            // Read everything, answer nothing, until the client gives up.
            sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut sink = Vec::new();
            let _ = sock.read_to_end(&mut sink);
            sink
        });
        let config = Config::default().close_timeout(Duration::from_millis(300));
        let (mut ws, _) = connect_with(&url, config).unwrap();
        let t = Instant::now();
        let r = ws.close(CloseCode::NORMAL, "");
        assert!(
            matches!(r, Err(Error::Timeout(TimeoutKind::Close))),
            "{r:?}"
        );
        assert!(t.elapsed() >= Duration::from_millis(250));
        assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
        assert!(matches!(ws.read(), Err(Error::Closed)));
        // The peer saw our close frame, then the end of the connection.
        let wire = peer.join().unwrap();
        let mut dec = Connection::new(Role::Server, Config::default());
        dec.handle_bytes(&wire);
        assert!(
            matches!(dec.poll_message().unwrap(), Some(Message::Close(Some(f))) if f.code == CloseCode::NORMAL)
        );
    });
}

#[test]
fn keepalive_pings_and_gives_up_on_a_silent_peer() {
    with_timeout(20, || {
        let (url, peer) = raw_peer(|mut sock, _| {
            let mut sink = Vec::new();
            let _ = sock.read_to_end(&mut sink);
            sink
        });
        let config = Config::default()
            .keepalive(Some(Duration::from_millis(100)))
            .keepalive_timeout(Duration::from_millis(200));
        let (mut ws, _) = connect_with(&url, config).unwrap();
        let t = Instant::now();
        let r = ws.read();
        assert!(
            matches!(r, Err(Error::Timeout(TimeoutKind::Keepalive))),
            "{r:?}"
        );
        assert!(
            t.elapsed() >= Duration::from_millis(250),
            "{:?}",
            t.elapsed()
        );
        assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
        assert!(matches!(ws.read(), Err(Error::Closed)));
        let wire = peer.join().unwrap();
        let mut dec = Connection::new(Role::Server, Config::default());
        dec.handle_bytes(&wire);
        assert_eq!(
            dec.poll_message().unwrap(),
            Some(Message::Ping("keepalive".into()))
        );
    });
}

#[test]
fn works_over_any_read_write_with_no_read_timeout() {
    with_timeout(20, || {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = thread::spawn(move || {
            let (sock, _) = listener.accept().unwrap();
            let mut ws = accept(NoReadTimeout(sock)).unwrap();
            let msg = ws.read().unwrap();
            ws.send(msg).unwrap();
            ws.read().unwrap()
        });
        let sock = TcpStream::connect(addr).unwrap();
        let req = ws_core::handshake::ClientRequest::new("127.0.0.1", addr.port(), "/");
        let (mut ws, _) =
            ws_blocking::client_handshake(NoReadTimeout(sock), &req, Config::default()).unwrap();
        ws.send(Message::binary(&b"abc"[..])).unwrap();
        assert_eq!(ws.read().unwrap(), Message::binary(&b"abc"[..]));
        ws.send(Message::Close(None)).unwrap();
        assert_eq!(ws.read().unwrap(), Message::Close(None));
        assert_eq!(server.join().unwrap(), Message::Close(None));
        let _: &WebSocketStream<NoReadTimeout<TcpStream>> = &ws;
    });
}
