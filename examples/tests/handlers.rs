//! The handler API on every runtime (tokio, async-std, smol, blocking),
//! over real loopback sockets: lifecycle order and close codes, refusals,
//! per-connection state, topics (reach, order, unsubscribe, cleanup), a send
//! to one client by id from another thread, and a slow subscriber dropped
//! without loss for the others. One handler, [`Scripted`], driven by the
//! clients' messages; the macro at the bottom runs each scenario per runtime.

mod support;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use examples::Runtime;
use examples::feed::{self, Feed, user_topic};
use support::{RawClient, TestServer, raw_http};
use ws_core::handshake::ClientRequest;
use ws_core::handshake::Request;
use ws_core::server::hub::{ClientId, FlowControl, SLOW_CLIENT_CLOSE};
use ws_core::server::{ConnectionHandle, Handler, Refusal, Socket, Upgrade};
use ws_core::{CloseCode, CloseFrame, Config, Error, Message};

/// What the handler saw, shared with the test.
type Log = Arc<Mutex<Vec<String>>>;

/// A handler whose behaviour the client scripts with text commands:
/// `id?` (answers with the connection's id), `count?` (answers with the
/// messages this connection sent so far: the per-connection state),
/// `sub:T`, `unsub:T`, `pub:T:X` (publish X to topic T), `close` (closes
/// with 4001 "scripted"). Anything else is echoed. Upgrades whose query is
/// `deny` are refused with 403 and a body. Every callback is logged.
#[derive(Clone, Default)]
struct Scripted {
    log: Log,
}

/// The per-connection state: the path it connected on and a message count.
struct Conn {
    path: String,
    messages: usize,
}

impl Scripted {
    fn push(&self, line: String) {
        self.log.lock().unwrap().push(line);
    }

    fn lines(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    /// Waits (bounded) until a logged line starts with `prefix`.
    fn wait_for(&self, prefix: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(l) = self.lines().into_iter().find(|l| l.starts_with(prefix)) {
                return l;
            }
            assert!(
                Instant::now() < deadline,
                "no {prefix:?} in {:?}",
                self.lines()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Handler for Scripted {
    type State = Conn;

    fn is_endpoint(&self, path: &str) -> bool {
        path.starts_with("/app")
    }

    fn on_upgrade(&self, req: &Request, peer: SocketAddr) -> Result<Upgrade<Conn>, Refusal> {
        self.push(format!("upgrade {} {}", req.target(), peer.ip()));
        if req.query() == Some("deny") {
            return Err(Refusal::new(403)
                .header("X-Reason", "scripted")
                .body("denied\n"));
        }
        Ok(Upgrade::new(Conn {
            path: req.path().to_owned(),
            messages: 0,
        })
        .header("X-Handler", "scripted"))
    }

    fn on_open(&self, ws: &mut Socket<'_>, state: &mut Conn) {
        self.push(format!("open {}", state.path));
        let _ = ws.send(&Message::text(format!("welcome {}", ws.id().0)));
    }

    fn on_message(&self, ws: &mut Socket<'_>, state: &mut Conn, msg: Message) {
        state.messages += 1;
        let Message::Text(text) = &msg else {
            let _ = ws.send(&msg);
            return;
        };
        self.push(format!("message {} {}", state.messages, text.as_str()));
        let text = text.as_str();
        let reply = if text == "id?" {
            Some(ws.id().0.to_string())
        } else if text == "count?" {
            Some(state.messages.to_string())
        } else if let Some(t) = text.strip_prefix("sub:") {
            Some(format!("subscribed {}", ws.subscribe(t)))
        } else if let Some(t) = text.strip_prefix("unsub:") {
            Some(format!("unsubscribed {}", ws.unsubscribe(t)))
        } else if let Some(rest) = text.strip_prefix("pub:") {
            let (topic, body) = rest.split_once(':').unwrap();
            ws.publish(topic, &Message::text(body)).unwrap();
            None
        } else if text == "close" {
            ws.close(CloseCode(4001), "scripted").unwrap();
            None
        } else {
            Some(text.to_owned())
        };
        if let Some(reply) = reply {
            let _ = ws.send(&Message::text(reply));
        }
    }

    fn on_close(&self, ws: &ConnectionHandle, state: Conn, code: CloseCode, reason: &str) {
        self.push(format!(
            "close {} {} {:?} after {} open={}",
            state.path,
            code.0,
            reason,
            state.messages,
            ws.is_open()
        ));
    }
}

fn start(rt: Runtime, handler: &Scripted) -> TestServer {
    let flow = FlowControl::default().slow_client_timeout(Duration::from_secs(1));
    TestServer::start_handler(rt, handler.clone(), flow)
}

fn text(msg: Message) -> String {
    match msg {
        Message::Text(t) => t.to_string(),
        other => panic!("expected text, got {other:?}"),
    }
}

/// Connects to `path` and reads the welcome; returns the client and its id.
fn join(server: &TestServer, path: &str) -> (RawClient, ClientId) {
    let mut c = RawClient::connect(server.addr(), path);
    let welcome = text(c.recv_data());
    let id = welcome.strip_prefix("welcome ").unwrap().parse().unwrap();
    (c, ClientId(id))
}

fn ask(c: &mut RawClient, question: &str) -> String {
    c.send(&Message::text(question));
    text(c.recv_data())
}

fn lifecycle_in_order_with_the_close_codes(rt: Runtime) {
    let h = Scripted::default();
    let server = start(rt, &h);
    let (mut c, _) = join(&server, "/app/one?x=1");
    assert_eq!(ask(&mut c, "hello"), "hello");
    c.send(&Message::binary(vec![1, 2]));
    assert_eq!(c.recv_data(), Message::binary(vec![1u8, 2]));
    c.send(&Message::Close(Some(CloseFrame::new(
        CloseCode(4000),
        "bye",
    ))));
    let close = h.wait_for("close ");
    assert_eq!(
        h.lines(),
        [
            "upgrade /app/one?x=1 127.0.0.1",
            "open /app/one",
            "message 1 hello",
            &close,
        ]
    );
    assert_eq!(close, "close /app/one 4000 \"bye\" after 2 open=false");
    // The handler closing: the client gets its code, on_close reports it.
    let (mut c, _) = join(&server, "/app/two");
    c.send(&Message::text("close"));
    match c.recv() {
        Ok(Message::Close(Some(f))) => {
            assert_eq!((f.code, f.reason.as_str()), (CloseCode(4001), "scripted"))
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        h.wait_for("close /app/two"),
        "close /app/two 4001 \"scripted\" after 1 open=false"
    );
    // A client that vanishes: 1006.
    let (c, _) = join(&server, "/app/three");
    c.abort();
    assert_eq!(
        h.wait_for("close /app/three"),
        "close /app/three 1006 \"\" after 0 open=false"
    );
    server.wait_for_clients(0);
}

fn refusal_with_status_headers_and_body(rt: Runtime) {
    let h = Scripted::default();
    let server = start(rt, &h);
    let upgrade = "Host: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
        Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
    let r = raw_http(
        server.addr(),
        &format!("GET /app?deny HTTP/1.1\r\n{upgrade}"),
    );
    assert!(r.starts_with("HTTP/1.1 403 "), "{r}");
    assert!(r.contains("\r\nX-Reason: scripted\r\n"), "{r}");
    let r = raw_http(
        server.addr(),
        &format!("GET /elsewhere HTTP/1.1\r\n{upgrade}"),
    );
    assert!(r.starts_with("HTTP/1.1 404 "), "not an endpoint: {r}");
    let r = raw_http(server.addr(), &format!("GET /app HTTP/1.1\r\n{upgrade}"));
    assert!(r.starts_with("HTTP/1.1 101 "), "{r}");
    assert!(r.contains("\r\nX-Handler: scripted\r\n"), "{r}");
    assert!(!h.lines().iter().any(|l| l.starts_with("open /app?deny")));
    assert_eq!(
        h.lines()
            .iter()
            .filter(|l| l.starts_with("upgrade"))
            .count(),
        2,
        "404 never reached the handler"
    );
}

fn per_connection_state(rt: Runtime) {
    let h = Scripted::default();
    let server = start(rt, &h);
    let (mut a, _) = join(&server, "/app");
    let (mut b, _) = join(&server, "/app");
    for _ in 0..3 {
        ask(&mut a, "x");
    }
    assert_eq!(ask(&mut a, "count?"), "4");
    assert_eq!(ask(&mut b, "count?"), "1");
}

fn topics_reach_subscribers_only_once_in_order_and_clean_up(rt: Runtime) {
    let h = Scripted::default();
    let server = start(rt, &h);
    let (mut a, _) = join(&server, "/app");
    let (mut b, _) = join(&server, "/app");
    let (mut c, c_id) = join(&server, "/app");
    assert_eq!(ask(&mut a, "sub:news"), "subscribed true");
    assert_eq!(ask(&mut a, "sub:sport"), "subscribed true");
    assert_eq!(ask(&mut b, "sub:news"), "subscribed true");
    assert_eq!(server.topic_count("news"), 2);
    for i in 0..50 {
        c.send(&Message::text(format!("pub:news:n{i}")));
    }
    // c is not subscribed: its next reply comes first.
    assert_eq!(ask(&mut c, "id?"), c_id.0.to_string());
    for client in [&mut a, &mut b] {
        for i in 0..50 {
            assert_eq!(text(client.recv_data()), format!("n{i}"), "once, in order");
        }
    }
    assert_eq!(ask(&mut a, "unsub:news"), "unsubscribed true");
    assert_eq!(ask(&mut a, "unsub:news"), "unsubscribed false");
    assert_eq!(server.publish("news", &Message::text("app")), 1);
    assert_eq!(text(b.recv_data()), "app");
    assert_eq!(ask(&mut a, "still?"), "still?", "a got nothing from news");
    assert_eq!(
        server.topics(),
        [("news".to_string(), 1), ("sport".to_string(), 1)]
    );
    a.abort();
    drop(b);
    server.wait_until("every topic to empty", |s| s.topics().is_empty());
    assert_eq!(server.stats().topics, 0);
}

fn send_to_one_client_by_id_from_another_thread(rt: Runtime) {
    let h = Scripted::default();
    let server = Arc::new(start(rt, &h));
    let (mut a, _) = join(&server, "/app");
    let (mut b, b_id) = join(&server, "/app");
    let s = server.clone();
    std::thread::spawn(move || s.send_to(b_id, &Message::text("just for b")))
        .join()
        .unwrap()
        .unwrap();
    assert_eq!(text(b.recv_data()), "just for b");
    assert_eq!(ask(&mut a, "ping?"), "ping?", "a got nothing");
    drop(b);
    server.wait_for_clients(1);
    assert!(matches!(
        server.send_to(b_id, &Message::text("late")),
        Err(Error::Closed)
    ));
}

fn a_slow_subscriber_is_dropped_and_the_others_lose_nothing(rt: Runtime) {
    let h = Scripted::default();
    let flow = FlowControl::default()
        .high_water(8, 1 << 30)
        .slow_client_timeout(Duration::from_secs(1));
    let server = TestServer::start_handler(rt, h.clone(), flow);
    let (mut slow, _) = join(&server, "/app");
    assert_eq!(ask(&mut slow, "sub:t"), "subscribed true");
    slow.stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let (mut fast, _) = join(&server, "/app");
    assert_eq!(ask(&mut fast, "sub:t"), "subscribed true");
    let big = "x".repeat(256 * 1024);
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut sent = 0;
    while server.topic_count("t") == 2 {
        assert!(
            Instant::now() < deadline && sent < 2000,
            "never dropped after {sent}"
        );
        fast.send(&Message::text(format!("pub:t:{sent}{big}")));
        let got = text(fast.recv_data());
        assert!(
            got.starts_with(&sent.to_string()),
            "the fast subscriber lost nothing"
        );
        sent += 1;
    }
    assert_eq!(ask(&mut fast, "after"), "after");
    let end = loop {
        match slow.recv() {
            Ok(Message::Close(c)) => break c.map(|f| f.code),
            Ok(_) => continue,
            Err(Error::AbnormalClosure) | Err(Error::Io(_)) | Err(Error::Closed) => break None,
            Err(e) => panic!("{e}"),
        }
    };
    assert!(end.is_none() || end == Some(SLOW_CLIENT_CLOSE), "{end:?}");
    assert!(
        h.wait_for("close /app 1013").contains("open=false"),
        "on_close saw the 1013"
    );
}

fn feed_request(server: &TestServer, target: &str) -> ClientRequest {
    ClientRequest::new("127.0.0.1", server.addr().port(), target)
}

fn the_notification_feed_authenticates_at_the_upgrade(rt: Runtime) {
    let feed = Feed::new().token("s3cret", "alice").token("t0ken", "bob");
    let server = TestServer::start_handler(rt, feed, FlowControl::default());
    let refused = |req: &ClientRequest| match RawClient::connect_request(
        server.addr(),
        req,
        Config::default(),
    ) {
        Err(Error::Handshake(e)) => e.to_string(),
        Ok(_) => panic!("let in without a valid token"),
        Err(e) => panic!("{e}"),
    };
    for target in ["/feed", "/feed?token=wrong"] {
        assert!(
            refused(&feed_request(&server, target)).contains("401"),
            "{target}"
        );
    }
    let wrong_header = feed_request(&server, "/feed")
        .header("Authorization", "Bearer nope")
        .unwrap();
    assert!(refused(&wrong_header).contains("401"));
    // A header (server-side clients) or the query (browsers).
    let by_header = feed_request(&server, "/feed")
        .header("Authorization", "Bearer s3cret")
        .unwrap();
    let mut alice =
        RawClient::connect_request(server.addr(), &by_header, Config::default()).unwrap();
    let mut bob = RawClient::connect_request(
        server.addr(),
        &feed_request(&server, "/feed?token=t0ken"),
        Config::default(),
    )
    .unwrap();
    assert_eq!(text(alice.recv_data()), "hello alice");
    assert_eq!(text(bob.recv_data()), "hello bob");
    assert_eq!(
        server.publish(&user_topic("alice"), &Message::text("for alice")),
        1
    );
    assert_eq!(server.publish(feed::ALL, &Message::text("for all")), 2);
    assert_eq!(text(alice.recv_data()), "for alice");
    assert_eq!(text(alice.recv_data()), "for all");
    assert_eq!(text(bob.recv_data()), "for all", "bob never saw alice's");
    // Read-only: a client that talks is closed with 1008.
    bob.send(&Message::text("hi"));
    match bob.recv() {
        Ok(Message::Close(Some(f))) => assert_eq!(f.code, CloseCode::POLICY_VIOLATION),
        other => panic!("{other:?}"),
    }
    server.wait_until("bob to leave his topics", |s| {
        s.topic_count(&user_topic("bob")) == 0
    });
    assert_eq!(server.topic_count(feed::ALL), 1);
}

macro_rules! suite {
    ($($module:ident => $rt:expr),* $(,)?) => {$(
        mod $module {
            use super::*;
            #[test] fn lifecycle_in_order_with_the_close_codes() { super::lifecycle_in_order_with_the_close_codes($rt) }
            #[test] fn refusal_with_status_headers_and_body() { super::refusal_with_status_headers_and_body($rt) }
            #[test] fn per_connection_state() { super::per_connection_state($rt) }
            #[test] fn topics_reach_subscribers_only_once_in_order_and_clean_up() { super::topics_reach_subscribers_only_once_in_order_and_clean_up($rt) }
            #[test] fn send_to_one_client_by_id_from_another_thread() { super::send_to_one_client_by_id_from_another_thread($rt) }
            #[test] fn a_slow_subscriber_is_dropped_and_the_others_lose_nothing() { super::a_slow_subscriber_is_dropped_and_the_others_lose_nothing($rt) }
            #[test] fn the_notification_feed_authenticates_at_the_upgrade() { super::the_notification_feed_authenticates_at_the_upgrade($rt) }
        }
    )*};
}

suite! {
    on_tokio => Runtime::Tokio,
    on_async_std => Runtime::AsyncStd,
    on_smol => Runtime::Smol,
    on_blocking => Runtime::Blocking,
}
