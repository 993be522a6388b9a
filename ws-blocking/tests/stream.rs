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
        let (ws, _) = connect(format!("ws://{addr}/")).unwrap();
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
fn split_writer_close_sends_and_the_reader_sees_the_reply_then_the_end() {
    with_timeout(20, || {
        let server = start(ws_blocking::ServerMode::Echo, Config::default(), 8);
        let (ws, _) = connect(url(&server, "/")).unwrap();
        let (mut reader, mut writer) = ws.split();
        let reader_thread = thread::spawn(move || reader.messages().collect::<Vec<_>>());
        writer.send_text("x").unwrap();
        let t = Instant::now();
        writer.close(CloseCode(4002), "done").unwrap();
        assert!(t.elapsed() < Duration::from_secs(1), "close does not wait");
        let got: Vec<Message> = reader_thread
            .join()
            .unwrap()
            .into_iter()
            .map(|m| m.unwrap())
            .collect();
        assert_eq!(got[0], Message::text("x"));
        assert!(matches!(&got[1], Message::Close(Some(f)) if f.code == CloseCode(4002)));
        assert_eq!(got.len(), 2, "the reader ends after the reply");
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

/// The 1 KiB payload of message `i`: its index, then a byte pattern that
/// depends on it (so a corrupted or misplaced frame shows).
fn payload(i: usize) -> Vec<u8> {
    let mut p = (i as u64).to_le_bytes().to_vec();
    p.extend((8..1024).map(|j| (i.wrapping_mul(31) + j) as u8));
    p
}

#[test]
fn every_ping_gets_one_pong_in_order_while_a_writer_streams() {
    const N: usize = 2000;
    const PINGS: usize = 200;
    with_timeout(60, || {
        let (url, peer) = raw_peer(|sock, rest| {
            sock.set_nodelay(true).unwrap();
            let mut ping_sock = sock.try_clone().unwrap();
            let mut pinger = Some(thread::spawn(move || {
                let mut enc = Connection::new(Role::Server, Config::default());
                for i in 0..PINGS {
                    enc.send_ping(format!("p{i}").as_bytes()).unwrap();
                    ping_sock.write_all(&enc.take_transmit()).unwrap();
                    thread::sleep(Duration::from_micros(300));
                }
            }));
            let mut sock = sock;
            let mut dec = Connection::new(Role::Server, Config::default());
            dec.handle_bytes(&rest);
            let mut data = 0;
            let mut pongs = 0;
            // How many data frames had arrived when the first pong did.
            let mut first_pong_at = None;
            let mut buf = vec![0u8; 4096];
            let mut closing = false;
            loop {
                while let Some(msg) = dec.poll_message().unwrap() {
                    match msg {
                        Message::Binary(b) => {
                            assert_eq!(&b[..], &payload(data)[..], "frame {data} intact");
                            data += 1;
                        }
                        Message::Pong(p) => {
                            assert_eq!(&p[..], format!("p{pongs}").as_bytes(), "in order");
                            first_pong_at.get_or_insert(data);
                            pongs += 1;
                        }
                        Message::Close(_) => {
                            assert!(closing, "the client only replies to our close");
                            sock.shutdown(std::net::Shutdown::Both).unwrap();
                            return (data, pongs, first_pong_at);
                        }
                        other => panic!("unexpected {other:?}"),
                    }
                }
                if !closing && data == N && pongs == PINGS {
                    pinger.take().unwrap().join().unwrap();
                    dec.close(CloseCode::NORMAL, "").unwrap();
                    sock.write_all(&dec.take_transmit()).unwrap();
                    closing = true;
                }
                let n = sock.read(&mut buf).unwrap();
                assert!(n > 0, "the client vanished ({data} frames, {pongs} pongs)");
                dec.handle_bytes(&buf[..n]);
                if data < N {
                    // Read slowly, so the writer blocks holding the write side
                    // while pings arrive.
                    thread::sleep(Duration::from_micros(200));
                }
            }
        });
        let (ws, _) = connect(&url).unwrap();
        let (mut reader, mut writer) = ws.split();
        reader.set_read_timeout(Some(Duration::from_secs(20)));
        let reader_thread = thread::spawn(move || {
            let mut pings = Vec::new();
            for msg in reader.messages() {
                match msg.unwrap() {
                    Message::Ping(p) => pings.push(p),
                    Message::Close(_) => {}
                    other => panic!("unexpected {other:?}"),
                }
            }
            pings
        });
        let writer_thread = thread::spawn(move || {
            for i in 0..N {
                writer.send_binary(&payload(i)).unwrap();
            }
        });
        writer_thread.join().unwrap();
        let (data, pongs, first_pong_at) = peer.join().unwrap();
        assert_eq!((data, pongs), (N, PINGS));
        assert!(
            first_pong_at.is_some_and(|at| at < N),
            "pongs went out between the data frames ({first_pong_at:?})"
        );
        let pings = reader_thread.join().unwrap();
        assert_eq!(pings.len(), PINGS);
    });
}

#[test]
fn a_reader_blocked_in_read_ends_at_the_close_timeout_if_the_peer_never_answers() {
    with_timeout(20, || {
        let (url, peer) = raw_peer(|mut sock, _| {
            // Read everything, answer nothing, until the client gives up.
            let mut sink = Vec::new();
            let _ = sock.read_to_end(&mut sink);
            sink
        });
        let config = Config::default().close_timeout(Duration::from_millis(300));
        let (ws, _) = connect_with(&url, config).unwrap();
        let (mut reader, mut writer) = ws.split();
        let (woke, wait_woke) = std::sync::mpsc::channel();
        let reader_thread = thread::spawn(move || {
            let first = reader.read();
            let _ = woke.send(());
            (first, reader.read())
        });
        thread::sleep(Duration::from_millis(50));
        assert!(
            wait_woke.try_recv().is_err(),
            "the reader is blocked in read"
        );
        let t = Instant::now();
        writer.close(CloseCode::NORMAL, "").unwrap();
        assert!(
            t.elapsed() < Duration::from_millis(250),
            "close does not wait"
        );
        wait_woke
            .recv_timeout(Duration::from_secs(2))
            .expect("the blocked reader wakes up once the transport is shut down");
        let took = t.elapsed();
        assert!(
            took >= Duration::from_millis(250),
            "not before the close timeout: {took:?}"
        );
        let (first, second) = reader_thread.join().unwrap();
        assert!(first.is_err(), "{first:?}");
        assert!(matches!(second, Err(Error::Closed)), "{second:?}");
        assert!(matches!(
            writer.send(Message::text("late")),
            Err(Error::Closed)
        ));
        // The peer saw our close frame, then the end of the connection.
        let wire = peer.join().unwrap();
        let mut dec = Connection::new(Role::Server, Config::default());
        dec.handle_bytes(&wire);
        assert!(
            matches!(dec.poll_message().unwrap(), Some(Message::Close(Some(f))) if f.code == CloseCode::NORMAL)
        );
    });
}
