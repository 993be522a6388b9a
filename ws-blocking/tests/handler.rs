//! The `Server` running an application's `Handler` on threads: `on_open`
//! output right after the 101 (even when it wakes the writer before the
//! session is stored), the handle's topic, send and close methods, the chat
//! losing nothing with writers started lazily, and a panicking handler.

mod common;

use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use ws_blocking::handler::{Handler, Refusal, Request, Socket, Upgrade};
use ws_blocking::{
    ClientId, CloseCode, Config, ConnectionHandle, Error, FlowControl, Message, Server,
    ServerHandle, ServerMode, connect,
};
use ws_core::Connection;

/// What the handler saw, shared with the test.
type Log = Arc<Mutex<Vec<String>>>;

/// Rooms named by the path (`/ROOM`). `on_open` greets the client with its
/// id, then publishes `joined ID` to its own room (so the client's writer
/// is started before its session is even stored) and lingers a moment. Every message is published
/// to the room, except `panic`, which panics.
#[derive(Clone, Default)]
struct Rooms {
    log: Log,
}

impl Rooms {
    fn lines(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    fn wait_for(&self, prefix: &str) -> String {
        let mut found = None;
        let ok = wait_until(Duration::from_secs(5), || {
            found = self.lines().into_iter().find(|l| l.starts_with(prefix));
            found.is_some()
        });
        assert!(ok, "no {prefix:?} in {:?}", self.lines());
        found.unwrap()
    }
}

impl Handler for Rooms {
    type State = String;

    fn on_upgrade(&self, req: &Request, _peer: SocketAddr) -> Result<Upgrade<String>, Refusal> {
        match req.path().strip_prefix('/') {
            Some(room) if !room.is_empty() => Ok(Upgrade::new(room.to_owned())),
            _ => Err(Refusal::not_found()),
        }
    }

    fn on_open(&self, ws: &mut Socket<'_>, room: &mut String) {
        ws.send(&Message::text(format!("id {}", ws.id().0)))
            .unwrap();
        ws.subscribe(room);
        ws.publish(room, &Message::text(format!("joined {}", ws.id().0)))
            .unwrap();
        // A callback should not block; this one does, briefly, so the writer
        // its publish started runs before the session is stored.
        thread::sleep(Duration::from_millis(5));
    }

    fn on_message(&self, ws: &mut Socket<'_>, room: &mut String, msg: Message) {
        assert!(msg != Message::text("panic"), "the handler panics");
        ws.publish(room, &msg).unwrap();
    }

    fn on_close(&self, ws: &ConnectionHandle, room: String, code: CloseCode, reason: &str) {
        self.log
            .lock()
            .unwrap()
            .push(format!("close {} {room} {} {reason:?}", ws.id().0, code.0));
    }
}

fn start_rooms(h: &Rooms) -> ServerHandle {
    Server::with_handler("127.0.0.1:0", h.clone())
        .config(Config::default().close_timeout(Duration::from_secs(1)))
        .flow_control(FlowControl::default().slow_client_timeout(Duration::from_secs(1)))
        .start()
        .expect("server starts")
}

fn text(msg: Option<Message>) -> String {
    match msg {
        Some(Message::Text(t)) => t.to_string(),
        other => panic!("expected text, got {other:?}"),
    }
}

/// A raw client in `room`: the 101 must come before any frame. Returns it
/// with its id.
fn join(addr: SocketAddr, room: &str) -> (TcpStream, Connection, ClientId) {
    let (mut sock, leftover) = raw_ws(addr, &format!("/{room}"));
    let mut conn = raw_client(leftover);
    let id = text(raw_read(&mut sock, &mut conn));
    let id = ClientId(id.strip_prefix("id ").unwrap().parse().unwrap());
    assert_eq!(
        text(raw_read(&mut sock, &mut conn)),
        format!("joined {}", id.0),
        "its own join, published in on_open"
    );
    (sock, conn, id)
}

fn send(sock: &mut TcpStream, msg: &Message) {
    use std::io::Write;
    let mut c = Connection::new(ws_core::Role::Client, Config::default());
    c.send(msg).unwrap();
    sock.write_all(&c.take_transmit()).unwrap();
}

#[test]
fn on_open_output_follows_the_101_even_when_it_wakes_the_writer() {
    with_timeout(30, || {
        let h = Rooms::default();
        let server = start_rooms(&h);
        // Each join races the writer its own publish starts against the
        // 101; `raw_ws` fails on any frame before the 101.
        for i in 0..50 {
            let (sock, _, _) = join(server.local_addr(), &format!("r{i}"));
            drop(sock);
        }
        assert!(wait_until(Duration::from_secs(5), || server.client_count() == 0));
        server.shutdown();
    });
}

#[test]
fn the_handle_publishes_sends_and_closes_by_id() {
    with_timeout(30, || {
        let h = Rooms::default();
        let server = start_rooms(&h);
        let addr = server.local_addr();
        let (mut a, mut ac, a_id) = join(addr, "news");
        let (mut b, mut bc, b_id) = join(addr, "news");
        let (mut c, mut cc, c_id) = join(addr, "sport");
        // Everything below is delivered at once, by the clients' writers,
        // while their readers are blocked in a read (that ends by a timer
        // only after a second).
        for s in [&a, &b, &c] {
            s.set_read_timeout(Some(Duration::from_millis(500)))
                .unwrap();
        }
        // a hears b join.
        assert_eq!(
            text(raw_read(&mut a, &mut ac)),
            format!("joined {}", b_id.0)
        );
        assert_eq!(server.topic_count("news"), 2);
        assert_eq!(server.topic_count("nobody"), 0);
        assert_eq!(
            server.topics(),
            [("news".to_string(), 2), ("sport".to_string(), 1)]
        );

        let report = server.publish("news", &Message::text("extra")).unwrap();
        assert_eq!((report.delivered, report.dropped.len()), (2, 0));
        assert_eq!(text(raw_read(&mut a, &mut ac)), "extra");
        assert_eq!(text(raw_read(&mut b, &mut bc)), "extra");
        assert!(matches!(
            server.publish("news", &Message::Ping(Default::default())),
            Err(Error::InvalidMessage(_))
        ));

        // From another thread, to c alone.
        let s = server.clone();
        thread::spawn(move || s.send_to(c_id, &Message::text("just for c")))
            .join()
            .unwrap()
            .unwrap();
        assert_eq!(text(raw_read(&mut c, &mut cc)), "just for c");
        // The room still works, and a and b got nothing meanwhile.
        send(&mut a, &Message::text("from a"));
        assert_eq!(text(raw_read(&mut a, &mut ac)), "from a");
        assert_eq!(text(raw_read(&mut b, &mut bc)), "from a");

        let handle = server.connection(a_id).expect("a is connected");
        assert_eq!(handle.id(), a_id);
        assert_eq!(handle.peer_addr(), a.local_addr().unwrap());
        assert_eq!(handle.topics(), ["news"]);

        server.close(b_id, CloseCode(4000), "bye").unwrap();
        match raw_read(&mut b, &mut bc) {
            Some(Message::Close(Some(f))) => {
                assert_eq!((f.code, f.reason.as_str()), (CloseCode(4000), "bye"))
            }
            other => panic!("expected close 4000, got {other:?}"),
        }
        drop(b);
        assert_eq!(
            h.wait_for(&format!("close {}", b_id.0)),
            format!("close {} news 4000 \"bye\"", b_id.0)
        );
        assert!(wait_until(Duration::from_secs(2), || server
            .connection(b_id)
            .is_none()));
        assert!(matches!(
            server.send_to(b_id, &Message::text("late")),
            Err(Error::Closed)
        ));
        assert!(matches!(
            server.close(b_id, CloseCode::NORMAL, ""),
            Err(Error::Closed)
        ));
        assert_eq!(server.topic_count("news"), 1);
        // A code that may not be sent is the caller's error.
        assert!(matches!(
            server.close(a_id, CloseCode::ABNORMAL, ""),
            Err(Error::InvalidMessage(_))
        ));
        drop((a, c));
        assert!(wait_until(Duration::from_secs(2), || server
            .topics()
            .is_empty()));
        assert_eq!(
            h.lines().len(),
            3,
            "on_close ran once each: {:?}",
            h.lines()
        );
        server.shutdown();
    });
}

#[test]
fn a_panicking_handler_ends_only_its_connection_and_on_close_runs() {
    with_timeout(30, || {
        let h = Rooms::default();
        let server = start_rooms(&h);
        let addr = server.local_addr();
        let (mut a, mut ac, a_id) = join(addr, "x");
        let (mut b, mut bc, b_id) = join(addr, "x");
        assert_eq!(
            text(raw_read(&mut a, &mut ac)),
            format!("joined {}", b_id.0)
        );
        send(&mut a, &Message::text("panic"));
        // a's connection is cut; on_close still ran, with 1006.
        assert_eq!(
            h.wait_for(&format!("close {}", a_id.0)),
            format!("close {} x 1006 \"\"", a_id.0)
        );
        assert!(raw_read(&mut a, &mut ac).is_none_or(|m| matches!(m, Message::Close(_))));
        assert!(wait_until(Duration::from_secs(2), || server.client_count() == 1));
        send(&mut b, &Message::text("still here"));
        assert_eq!(text(raw_read(&mut b, &mut bc)), "still here");
        let t = Instant::now();
        server.shutdown();
        assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    });
}

/// Every chat client sends numbered messages as fast as it can while
/// another thread reads: everyone gets every message, each sender's in
/// order (the writers start lazily, on the first publish).
#[test]
fn chat_loses_nothing_with_lazily_started_writers() {
    with_timeout(60, || {
        const CLIENTS: usize = 8;
        const MESSAGES: usize = 200;
        let server = start(ServerMode::Chat, Config::default(), 1 << 20);
        let clients: Vec<_> = (0..CLIENTS)
            .map(|_| connect(url(&server, "/ws")).unwrap().0)
            .collect();
        assert!(wait_until(Duration::from_secs(2), || server.client_count() == CLIENTS));
        let workers: Vec<_> = clients
            .into_iter()
            .enumerate()
            .map(|(me, ws)| {
                thread::spawn(move || {
                    let (mut reader, mut writer) = ws.split();
                    let sender = thread::spawn(move || {
                        for i in 0..MESSAGES {
                            writer.send(Message::text(format!("{me} {i}"))).unwrap();
                        }
                        writer
                    });
                    let mut next = [0usize; CLIENTS];
                    for _ in 0..CLIENTS * MESSAGES {
                        let msg = reader.read().unwrap();
                        let Message::Text(t) = msg else {
                            panic!("{msg:?}")
                        };
                        let (from, i) = t.as_str().split_once(' ').unwrap();
                        let (from, i): (usize, usize) = (from.parse().unwrap(), i.parse().unwrap());
                        assert_eq!(i, next[from], "from {from}, in order");
                        next[from] += 1;
                    }
                    let writer = sender.join().unwrap();
                    drop((reader, writer));
                })
            })
            .collect();
        for w in workers {
            w.join().unwrap();
        }
        assert_eq!(server.stats().dropped_slow, 0);
        server.shutdown();
    });
}

#[test]
fn chat_rooms_are_separate_and_listed() {
    with_timeout(20, || {
        let server = start(ServerMode::Chat, Config::default(), 64);
        let (mut lobby, _) = connect(url(&server, "/ws")).unwrap();
        let (mut dev, _) = connect(url(&server, "/ws?room=dev")).unwrap();
        assert!(wait_until(Duration::from_secs(2), || server.client_count() == 2));
        assert_eq!(
            server.topics(),
            [("dev".to_string(), 1), ("lobby".to_string(), 1)]
        );
        dev.send(Message::text("dev only")).unwrap();
        assert_eq!(dev.read().unwrap(), Message::text("dev only"));
        server
            .publish("lobby", &Message::text("lobby only"))
            .unwrap();
        assert_eq!(lobby.read().unwrap(), Message::text("lobby only"));
        drop((lobby, dev));
        assert!(wait_until(Duration::from_secs(2), || server
            .topics()
            .is_empty()));
        server.shutdown();
    });
}
