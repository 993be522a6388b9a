//! The adapter's behaviour over real loopback sockets, run once on
//! async-std (the crate root) and once on smol (`ws_async_std::smol`): the
//! test bodies live in one macro instantiated for each runtime.

use async_net::{TcpListener, TcpStream};
use futures_util::io::{AsyncReadExt, AsyncWriteExt};
use std::future::Future;
use std::pin::pin;
use std::task::Poll;
use std::time::{Duration, Instant};
use ws_core::handshake::{ClientHandshake, ClientRequest};
use ws_core::{Connection, Role};

/// Runs `fut`, panicking if it takes longer than `secs` (every test is
/// bounded; nothing may hang).
async fn within<F: Future>(secs: u64, what: &str, fut: F) -> F::Output {
    let mut fut = pin!(fut);
    let mut timer = async_io::Timer::after(Duration::from_secs(secs));
    std::future::poll_fn(|cx| {
        if let Poll::Ready(v) = fut.as_mut().poll(cx) {
            return Poll::Ready(v);
        }
        if fut_ready(&mut timer, cx) {
            panic!("timed out after {secs} s: {what}");
        }
        Poll::Pending
    })
    .await
}

fn fut_ready<F: Future + Unpin>(f: &mut F, cx: &mut std::task::Context<'_>) -> bool {
    std::pin::Pin::new(f).poll(cx).is_ready()
}

/// Polls `fut` until it completes or `limit` passes (then drops it: the
/// cancellation under test).
async fn timeout<F: Future>(limit: Duration, fut: F) -> Option<F::Output> {
    let mut fut = pin!(fut);
    let mut timer = async_io::Timer::after(limit);
    std::future::poll_fn(|cx| {
        if let Poll::Ready(v) = fut.as_mut().poll(cx) {
            return Poll::Ready(Some(v));
        }
        if fut_ready(&mut timer, cx) {
            return Poll::Ready(None);
        }
        Poll::Pending
    })
    .await
}

/// Waits (bounded) until `cond` holds.
async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !cond() {
        assert!(Instant::now() < deadline, "never happened: {what}");
        async_io::Timer::after(Duration::from_millis(5)).await;
    }
}

/// Sends a raw HTTP request and returns the whole response (the server
/// closes the connection after a non-upgrade answer).
async fn http(addr: std::net::SocketAddr, request: &str) -> String {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    within(5, "HTTP response and close", tcp.read_to_end(&mut out))
        .await
        .unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

/// A raw TCP client that did a valid opening handshake, for tests that
/// need to misbehave below the library (never read, send odd frames).
async fn raw_ws(addr: std::net::SocketAddr, path: &str) -> (TcpStream, bytes::BytesMut) {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let (mut hs, request) =
        ClientHandshake::new(&ClientRequest::new("127.0.0.1", addr.port(), path));
    tcp.write_all(&request).await.unwrap();
    let mut buf = [0u8; 4096];
    loop {
        let n = within(5, "101 response", tcp.read(&mut buf)).await.unwrap();
        assert!(n > 0, "server closed during handshake");
        if hs.feed(&buf[..n]).unwrap().is_some() {
            return (tcp, hs.take_remaining());
        }
    }
}

/// Reads from a raw socket into a client Connection until it yields a
/// message (or the end: `None`).
async fn raw_recv(tcp: &mut TcpStream, conn: &mut Connection) -> Option<ws_core::Message> {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match conn.poll_message() {
            Ok(Some(m)) => return Some(m),
            Ok(None) => {}
            Err(_) => return None,
        }
        let n = within(5, "raw read", tcp.read(&mut buf)).await.unwrap_or(0);
        if n == 0 {
            conn.handle_eof();
            return conn.poll_message().ok().flatten();
        }
        conn.handle_bytes(&buf[..n]);
    }
}

/// Deterministic payload of `len` bytes (text-safe).
fn payload(len: usize, seed: u8) -> String {
    (0..len)
        .map(|i| (b'a' + ((i + seed as usize) % 26) as u8) as char)
        .collect()
}

/// A handler for the `Server::with_handler` test: rooms named by the path
/// (`/room/NAME`, anything else refused with 403), a greeting from
/// `on_open`, messages published to the sender's room, and every `on_close`
/// recorded as (id, code, reason).
struct Rooms {
    closed: std::sync::Arc<std::sync::Mutex<Vec<(u64, u16, String)>>>,
}

impl ws_async_std::Handler for Rooms {
    type State = String;

    fn on_upgrade(
        &self,
        req: &ws_async_std::handler::Request,
        _peer: std::net::SocketAddr,
    ) -> Result<ws_async_std::handler::Upgrade<String>, ws_async_std::handler::Refusal> {
        match req.path().strip_prefix("/room/") {
            Some(room) if !room.is_empty() => {
                Ok(ws_async_std::handler::Upgrade::new(room.to_owned()))
            }
            _ => Err(ws_async_std::handler::Refusal::new(403)),
        }
    }

    fn on_open(&self, ws: &mut ws_async_std::handler::Socket<'_>, room: &mut String) {
        ws.subscribe(room);
        let hello = format!("welcome {} to {room}", ws.id().0);
        ws.send(&ws_async_std::Message::text(hello)).unwrap();
    }

    fn on_message(
        &self,
        ws: &mut ws_async_std::handler::Socket<'_>,
        room: &mut String,
        msg: ws_async_std::Message,
    ) {
        ws.publish(room, &msg).unwrap();
    }

    fn on_close(
        &self,
        ws: &ws_async_std::ConnectionHandle,
        _room: String,
        code: ws_async_std::CloseCode,
        reason: &str,
    ) {
        let entry = (ws.id().0, code.0, reason.to_owned());
        self.closed.lock().unwrap().push(entry);
    }
}

/// The async-std surface.
mod on_async_std {
    pub use ws_async_std::{Client, Server, ServerHandle, connect, connect_with};
    pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
        async_std::task::block_on(f)
    }
    pub fn spawn<T: Send + 'static>(
        f: impl std::future::Future<Output = T> + Send + 'static,
    ) -> impl std::future::Future<Output = T> {
        async_std::task::spawn(f)
    }
}

/// The smol surface.
mod on_smol {
    pub use ws_async_std::smol::{Client, Server, ServerHandle, connect, connect_with};
    pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
        smol::block_on(f)
    }
    pub fn spawn<T: Send + 'static>(
        f: impl std::future::Future<Output = T> + Send + 'static,
    ) -> impl std::future::Future<Output = T> {
        smol::spawn(f)
    }
}

macro_rules! suite {
    ($name:ident, $rt:ident) => {
        mod $name {
            use super::$rt as rt;
            use super::*;
            use futures_util::{SinkExt, StreamExt};
            use rt::{Client, Server, ServerHandle, connect, connect_with};
            use ws_async_std::{
                CloseCode, CloseFrame, Config, Error, Message, ServerMode, accept, accept_with,
                client_handshake,
            };
            use ws_core::url::UrlError;

            async fn echo_server() -> ServerHandle {
                Server::new("127.0.0.1:0")
                    .mode(ServerMode::Echo)
                    .start()
                    .await
                    .unwrap()
            }

            async fn chat_server(config: Config, queue: usize) -> ServerHandle {
                Server::new("127.0.0.1:0")
                    .mode(ServerMode::Chat)
                    .config(config)
                    .flow_control(
                        ws_async_std::FlowControl::default()
                            .high_water(queue, 1 << 30)
                            .slow_client_timeout(Duration::from_millis(500)),
                    )
                    .start()
                    .await
                    .unwrap()
            }

            fn url(h: &ServerHandle, path: &str) -> String {
                format!("ws://{}{}", h.local_addr(), path)
            }

            #[test]
            fn echo_text_and_binary_of_every_length_class() {
                rt::block_on(within(30, "echo sizes", async {
                    let server = echo_server().await;
                    let (mut ws, resp) = connect(&url(&server, "/")).await.unwrap();
                    assert_eq!(resp.status(), 101);
                    for (i, len) in [0, 125, 126, 64 << 10, 1 << 20, 16 << 20].into_iter().enumerate() {
                        let text = Message::text(payload(len, i as u8));
                        ws.send(text.clone()).await.unwrap();
                        assert_eq!(ws.recv().await.unwrap().unwrap(), text, "text of {len} bytes");
                        let bin = Message::binary(payload(len, i as u8 + 1).into_bytes());
                        ws.send(bin.clone()).await.unwrap();
                        assert_eq!(ws.recv().await.unwrap().unwrap(), bin, "binary of {len} bytes");
                    }
                    ws.close(CloseCode::NORMAL, "").await.unwrap();
                    server.shutdown().await;
                }));
            }

            #[test]
            fn sink_and_stream_batch_many_messages() {
                rt::block_on(within(10, "sink/stream", async {
                    let server = echo_server().await;
                    let (mut ws, _) = connect_with(&url(&server, "/x"), Config::default())
                        .await
                        .unwrap();
                    // feed queues without writing; one flush sends them all.
                    for i in 0..200 {
                        ws.feed(Message::text(format!("m{i}"))).await.unwrap();
                    }
                    assert!(ws.connection().buffered_transmit() > 0, "feed must not write");
                    ws.flush().await.unwrap();
                    assert_eq!(ws.connection().buffered_transmit(), 0);
                    for i in 0..200 {
                        assert_eq!(ws.next().await.unwrap().unwrap(), Message::text(format!("m{i}")));
                    }
                    let mut items =
                        futures_util::stream::iter((0..50).map(|i| Ok(Message::binary(vec![i as u8; i]))));
                    ws.send_all(&mut items).await.unwrap();
                    for i in 0..50 {
                        assert_eq!(ws.next().await.unwrap().unwrap(), Message::binary(vec![i as u8; i]));
                    }
                    drop(ws); // idle clients would hold shutdown for the close timeout
                    server.shutdown().await;
                }));
            }

            #[test]
            fn client_echo_ping_and_close() {
                rt::block_on(within(10, "client", async {
                    let server = echo_server().await;
                    let mut client = Client::new(&url(&server, "/")).unwrap();
                    assert!(client.send_message("early").await.unwrap_err().is_closed());
                    client.connect().await.unwrap();
                    client.send_message("hello").await.unwrap();
                    assert_eq!(client.recv().await.unwrap().unwrap(), Message::text("hello"));
                    client.send_binary(&[1, 2, 3]).await.unwrap();
                    assert_eq!(client.next().await.unwrap().unwrap(), Message::binary(vec![1, 2, 3]));
                    client.ping(b"p1").await.unwrap();
                    assert_eq!(client.recv().await.unwrap().unwrap(), Message::Pong("p1".into()));
                    client.send_message("last").await.unwrap();
                    client.close().await.unwrap();
                    assert!(client.recv().await.is_none());
                    eventually("server forgot the client", || server.client_count() == 0).await;
                    server.shutdown().await;
                }));
            }

            #[test]
            fn receive_messages_runs_until_the_close() {
                rt::block_on(within(10, "receive_messages", async {
                    let server = chat_server(Config::default(), 16).await;
                    let mut client = Client::new(&url(&server, "/ws")).unwrap();
                    client.connect().await.unwrap();
                    eventually("registered", || server.client_count() == 1).await;
                    server.broadcast(&Message::text("one")).await.unwrap();
                    server.broadcast(&Message::text("two")).await.unwrap();
                    let s = server.clone();
                    let stopper = rt::spawn(async move {
                        async_io::Timer::after(Duration::from_millis(100)).await;
                        s.shutdown().await;
                    });
                    let mut seen = Vec::new();
                    client.receive_messages(|m| seen.push(m.clone())).await.unwrap();
                    stopper.await;
                    assert_eq!(seen[..2], [Message::text("one"), Message::text("two")]);
                    assert!(matches!(&seen[2], Message::Close(Some(f)) if f.code == CloseCode::GOING_AWAY));
                }));
            }

            #[test]
            fn fragmented_input_is_reassembled() {
                rt::block_on(within(10, "fragments", async {
                    let server = echo_server().await;
                    let (mut tcp, rest) = raw_ws(server.local_addr(), "/").await;
                    let mut conn = Connection::with_buffered(
                        Role::Client,
                        Config::default().fragment_size(Some(7)),
                        rest,
                    );
                    let text = payload(1000, 3);
                    conn.send_text(&text).unwrap();
                    conn.send_binary(&[9; 300]).unwrap();
                    let wire = conn.take_transmit();
                    // Trickle the frames in small, separate writes.
                    for chunk in wire.chunks(11) {
                        tcp.write_all(chunk).await.unwrap();
                        tcp.flush().await.unwrap();
                    }
                    assert_eq!(raw_recv(&mut tcp, &mut conn).await, Some(Message::text(text)));
                    assert_eq!(raw_recv(&mut tcp, &mut conn).await, Some(Message::binary(vec![9; 300])));
                    drop(tcp); // idle clients would hold shutdown for the close timeout
                    server.shutdown().await;
                }));
            }

            #[test]
            fn client_vanishing_without_close_is_unregistered() {
                rt::block_on(within(10, "vanish", async {
                    let server = chat_server(Config::default(), 16).await;
                    let (a, _) = connect(&url(&server, "/ws")).await.unwrap();
                    let (tcp, _) = raw_ws(server.local_addr(), "/ws").await;
                    eventually("two registered", || server.client_count() == 2).await;
                    drop(tcp); // no close frame
                    eventually("raw client removed", || server.client_count() == 1).await;
                    drop(a); // dropping a stream closes TCP without a close frame
                    eventually("stream client removed", || server.client_count() == 0).await;
                    server.shutdown().await;
                }));
            }

            #[test]
            fn shutdown_closes_every_client_with_1001() {
                rt::block_on(within(10, "shutdown", async {
                    let server = chat_server(Config::default(), 16).await;
                    let mut clients = Vec::new();
                    for _ in 0..3 {
                        clients.push(connect(&url(&server, "/ws")).await.unwrap().0);
                    }
                    eventually("registered", || server.client_count() == 3).await;
                    let started = Instant::now();
                    let s = server.clone();
                    let stopping = rt::spawn(async move { s.shutdown().await });
                    for c in &mut clients {
                        match c.recv().await {
                            Some(Ok(Message::Close(Some(f)))) => assert_eq!(f.code, CloseCode::GOING_AWAY),
                            other => panic!("expected close 1001, got {other:?}"),
                        }
                        assert!(c.recv().await.is_none());
                    }
                    stopping.await;
                    assert!(started.elapsed() < Duration::from_secs(3), "shutdown waited too long");
                    assert_eq!(server.client_count(), 0);
                    assert!(connect(&url(&server, "/ws")).await.is_err(), "still accepting");
                }));
            }

            #[test]
            fn slow_client_is_dropped_while_others_keep_receiving() {
                rt::block_on(within(20, "slow client", async {
                    let config = Config::default()
                        .write_buffer_limit(64 << 10)
                        .close_timeout(Duration::from_millis(300));
                    let server = chat_server(config, 4).await;
                    let (mut slow, _) = raw_ws(server.local_addr(), "/ws").await;
                    let mut fast = Vec::new();
                    for _ in 0..2 {
                        fast.push(connect(&url(&server, "/ws")).await.unwrap().0);
                    }
                    eventually("three registered", || server.client_count() == 3).await;
                    let big = Message::binary(vec![7u8; 256 << 10]);
                    let mut sent = 0;
                    // The slow client never reads: once kernel buffers, the
                    // write limit and its queue of 4 are full, it is dropped.
                    while server.client_count() == 3 {
                        assert!(sent < 1000, "slow client never dropped");
                        let report = server.broadcast(&big).await.unwrap();
                        sent += 1;
                        for c in &mut fast {
                            assert_eq!(c.recv().await.unwrap().unwrap(), big);
                        }
                        // Dropped after its slow-client timeout, noticed by
                        // this broadcast or by a paused session.
                        if !report.dropped.is_empty() || server.stats().dropped_slow > 0 {
                            assert_eq!(server.stats().dropped_slow, 1, "only the slow client");
                            break;
                        }
                    }
                    // The fast clients were never dropped and keep receiving.
                    for i in 0..5 {
                        let m = Message::text(format!("after {i}"));
                        assert_eq!(server.broadcast(&m).await.unwrap().delivered, 2);
                        for c in &mut fast {
                            assert_eq!(c.recv().await.unwrap().unwrap(), m);
                        }
                    }
                    // The slow connection ends (1013 or, as it never reads,
                    // the close timer): reading it to the end terminates.
                    let mut sink = vec![0u8; 1 << 20];
                    let mut total = 0usize;
                    loop {
                        match within(10, "slow connection end", slow.read(&mut sink)).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => total += n,
                        }
                    }
                    assert!(total > 0);
                    assert_eq!(server.client_count(), 2);
                    drop(fast); // idle clients would hold shutdown for the close timeout
                    server.shutdown().await;
                }));
            }

            #[test]
            fn handshake_rejections_and_page_while_still_serving() {
                rt::block_on(within(10, "rejections", async {
                    let server = chat_server(Config::default(), 16).await;
                    let addr = server.local_addr();
                    let v8 = http(
                        addr,
                        "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n\r\n",
                    )
                    .await;
                    assert!(v8.starts_with("HTTP/1.1 426"), "{v8}");
                    assert!(v8.to_ascii_lowercase().contains("sec-websocket-version: 13"), "{v8}");
                    let plain = http(addr, "GET /ws HTTP/1.1\r\nHost: x\r\n\r\n").await;
                    assert!(plain.starts_with("HTTP/1.1 426"), "{plain}");
                    let nope = http(addr, "GET /nope HTTP/1.1\r\nHost: x\r\n\r\n").await;
                    assert!(nope.starts_with("HTTP/1.1 404"), "{nope}");
                    let page = http(addr, "GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
                    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
                    assert!(page.contains("text/html") && page.contains("<html"), "{page}");
                    let garbage = http(addr, "NOT HTTP AT ALL\r\n\r\n").await;
                    assert!(garbage.starts_with("HTTP/1.1 4"), "{garbage}");
                    // Still serving WebSockets.
                    let (mut ws, _) = connect(&url(&server, "/ws")).await.unwrap();
                    eventually("registered", || server.client_count() == 1).await;
                    ws.send(Message::text("still here")).await.unwrap();
                    assert_eq!(ws.recv().await.unwrap().unwrap(), Message::text("still here"));
                    drop(ws); // idle clients would hold shutdown for the close timeout
                    server.shutdown().await;
                }));
            }

            /// A custom handler: refusal from `on_upgrade`, a greeting from
            /// `on_open` right after the 101, topics, and the handle's
            /// publish, send_to, connection, close, topic_count and topics,
            /// with `on_close` once per connection.
            #[test]
            fn handler_rooms_topics_and_targeted_sends() {
                rt::block_on(within(20, "handler", async {
                    use ws_async_std::ClientId;
                    let closed = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
                    let rooms = super::Rooms { closed: closed.clone() };
                    let server = Server::with_handler("127.0.0.1:0", rooms).start().await.unwrap();

                    let err = connect(&url(&server, "/elsewhere")).await.unwrap_err();
                    match err {
                        Error::Handshake(ws_core::handshake::HandshakeError::UnexpectedStatus(r)) => {
                            assert_eq!(r.status(), 403)
                        }
                        other => panic!("expected a 403, got {other:?}"),
                    }

                    /// Connects to `room`; the id comes from the greeting.
                    async fn join(
                        server: &ServerHandle,
                        room: &str,
                    ) -> (
                        ws_async_std::WebSocketStream<
                            impl futures_io::AsyncRead + futures_io::AsyncWrite + Unpin,
                        >,
                        ClientId,
                    ) {
                        let path = format!("/room/{room}");
                        let (mut ws, _) = connect(&url(server, &path)).await.unwrap();
                        let hello = ws.recv().await.unwrap().unwrap();
                        let Message::Text(hello) = hello else { panic!("{hello:?}") };
                        let rest = hello.as_str().strip_prefix("welcome ").unwrap();
                        let (id, to) = rest.split_once(' ').unwrap();
                        assert_eq!(to, format!("to {room}"));
                        (ws, ClientId(id.parse().unwrap()))
                    }
                    let (mut a1, _) = join(&server, "a").await;
                    let (mut a2, a2_id) = join(&server, "a").await;
                    let (mut b1, b1_id) = join(&server, "b").await;
                    assert_eq!(server.topic_count("a"), 2);
                    assert_eq!(server.topic_count("nobody"), 0);
                    assert_eq!(server.topics(), vec![("a".to_owned(), 2), ("b".to_owned(), 1)]);

                    // A client's message goes to its room, itself included.
                    a1.send(Message::text("hi a")).await.unwrap();
                    assert_eq!(a1.recv().await.unwrap().unwrap(), Message::text("hi a"));
                    assert_eq!(a2.recv().await.unwrap().unwrap(), Message::text("hi a"));

                    // The handle publishes to a topic and sends to one client.
                    let report = server.publish("b", &Message::text("to b")).await.unwrap();
                    assert_eq!(report.delivered, 1);
                    assert_eq!(b1.recv().await.unwrap().unwrap(), Message::text("to b"));
                    server.send_to(a2_id, &Message::text("just a2")).unwrap();
                    assert_eq!(a2.recv().await.unwrap().unwrap(), Message::text("just a2"));
                    assert!(server.send_to(ClientId(u64::MAX), &Message::text("x")).unwrap_err().is_closed());
                    assert!(server.publish("b", &Message::Ping(Default::default())).await.is_err());
                    let handle = server.connection(b1_id).unwrap();
                    assert_eq!(handle.id(), b1_id);
                    assert!(handle.is_open());
                    assert!(server.connection(ClientId(u64::MAX)).is_none());

                    // Closed from the handle: the client sees the code, the
                    // handler's on_close runs once with it.
                    server.close(b1_id, CloseCode(4002), "bye b").unwrap();
                    match b1.recv().await {
                        Some(Ok(Message::Close(Some(f)))) => {
                            assert_eq!(f.code, CloseCode(4002));
                            assert_eq!(&*f.reason, "bye b");
                        }
                        other => panic!("expected the server's close, got {other:?}"),
                    }
                    assert!(b1.recv().await.is_none());
                    eventually("on_close for b1", || closed.lock().unwrap().len() == 1).await;
                    assert_eq!(closed.lock().unwrap()[0], (b1_id.0, 4002, "bye b".to_owned()));
                    assert!(server.close(b1_id, CloseCode::NORMAL, "").unwrap_err().is_closed());
                    assert_eq!(server.topics(), vec![("a".to_owned(), 2)]);

                    drop((a1, a2)); // idle clients would hold shutdown for the close timeout
                    server.shutdown().await;
                    eventually("on_close for all", || closed.lock().unwrap().len() == 3).await;
                    assert_eq!(server.client_count(), 0);
                    assert!(server.topics().is_empty());
                }));
            }

            #[test]
            fn handshake_timeout_bounds_connect() {
                rt::block_on(within(10, "handshake timeout", async {
                    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
                    let addr = listener.local_addr().unwrap();
                    let silent = rt::spawn(async move {
                        let (tcp, _) = listener.accept().await.unwrap();
                        async_io::Timer::after(Duration::from_secs(2)).await;
                        drop(tcp);
                    });
                    let config = Config::default().handshake_timeout(Duration::from_millis(200));
                    let started = Instant::now();
                    let err = connect_with(&format!("ws://{addr}/"), config).await.unwrap_err();
                    assert!(matches!(err, Error::Timeout(ws_core::TimeoutKind::Handshake)), "{err:?}");
                    assert!(started.elapsed() < Duration::from_secs(1));
                    drop(silent);
                }));
            }

            #[test]
            fn pong_goes_out_through_the_read_half_while_the_writer_idles() {
                rt::block_on(within(10, "split pong", async {
                    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
                    let addr = listener.local_addr().unwrap();
                    let server = rt::spawn(async move {
                        let (tcp, _) = listener.accept().await.unwrap();
                        let ws = accept(tcp).await.unwrap();
                        let (mut reader, writer) = ws.split();
                        // The writer exists but never sends.
                        let mut seen = Vec::new();
                        while let Some(Ok(m)) = reader.recv().await {
                            seen.push(m);
                        }
                        drop(writer);
                        seen
                    });
                    let (mut ws, _) = connect(&format!("ws://{addr}/")).await.unwrap();
                    for i in 0..3u8 {
                        ws.send(Message::Ping(vec![i; 3].into())).await.unwrap();
                        match within(5, "pong", ws.recv()).await {
                            Some(Ok(Message::Pong(p))) => assert_eq!(&p[..], &[i; 3]),
                            other => panic!("expected pong, got {other:?}"),
                        }
                    }
                    ws.close(CloseCode::NORMAL, "").await.unwrap();
                    let seen = server.await;
                    assert_eq!(seen.len(), 4, "{seen:?}"); // 3 pings and the close
                }));
            }

            #[test]
            fn split_halves_work_from_different_tasks() {
                rt::block_on(within(10, "split tasks", async {
                    let server = echo_server().await;
                    let (ws, _) = connect(&url(&server, "/")).await.unwrap();
                    let (mut reader, mut writer) = ws.split();
                    let sender = rt::spawn(async move {
                        for i in 0..500u32 {
                            writer.feed(Message::binary(i.to_be_bytes().repeat(100))).await.unwrap();
                            if i % 50 == 0 {
                                writer.flush().await.unwrap();
                            }
                        }
                        writer.flush().await.unwrap();
                        writer
                    });
                    for i in 0..500u32 {
                        assert_eq!(reader.recv().await.unwrap().unwrap(), Message::binary(i.to_be_bytes().repeat(100)));
                    }
                    let mut writer = sender.await;
                    writer.close(CloseCode::NORMAL, "done").await.unwrap();
                    assert!(matches!(reader.recv().await, Some(Ok(Message::Close(Some(f)))) if f.code == CloseCode::NORMAL));
                    assert!(reader.recv().await.is_none());
                    let ws = reader.reunite(writer).unwrap();
                    assert_eq!(ws.connection().state(), ws_core::State::Closed);
                    server.shutdown().await;
                }));
            }

            #[test]
            fn split_writer_close_starts_the_readers_close_timeout() {
                // The peer takes our close frame but never answers it: the
                // reader, parked in a read, must be woken to start its close
                // timer, and end.
                rt::block_on(within(10, "split close timeout", async {
                    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
                    let addr = listener.local_addr().unwrap();
                    let peer = rt::spawn(async move {
                        let (mut tcp, _) = listener.accept().await.unwrap();
                        let mut hs = ws_core::handshake::ServerHandshake::new();
                        let mut buf = [0u8; 4096];
                        let req = loop {
                            let n = tcp.read(&mut buf).await.unwrap();
                            assert!(n > 0);
                            if let Some(r) = hs.feed(&buf[..n]).unwrap() {
                                break r;
                            }
                        };
                        let accept = ws_core::handshake::Accept::new();
                        tcp.write_all(&req.accept(&accept).unwrap()).await.unwrap();
                        let mut conn = Connection::new(Role::Server, Config::default());
                        let got = raw_recv(&mut tcp, &mut conn).await;
                        assert!(matches!(got, Some(Message::Close(_))), "{got:?}");
                        // Hold the socket open without replying.
                        async_io::Timer::after(Duration::from_secs(3)).await;
                        drop(tcp);
                    });
                    let config = Config::default().close_timeout(Duration::from_millis(300));
                    let (ws, _) = connect_with(&format!("ws://{addr}/"), config).await.unwrap();
                    let (mut reader, mut writer) = ws.split();
                    let reading = rt::spawn(async move {
                        let mut seen = Vec::new();
                        while let Some(r) = reader.recv().await {
                            seen.push(r);
                        }
                        seen
                    });
                    // Let the reader park in its read first.
                    async_io::Timer::after(Duration::from_millis(50)).await;
                    let started = Instant::now();
                    writer.close(CloseCode::NORMAL, "bye").await.unwrap();
                    let seen = within(2, "reader ends", reading).await;
                    assert!(
                        matches!(&seen[..], [Err(Error::Timeout(_))]),
                        "the unanswered close times out: {seen:?}"
                    );
                    assert!(started.elapsed() >= Duration::from_millis(250));
                    peer.await;
                }));
            }

            #[test]
            fn split_reader_answers_every_ping_while_the_writer_streams_from_another_task() {
                const DATA: usize = 2_000;
                const EVERY: usize = 10;
                rt::block_on(within(20, "pings during a stream", async {
                    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
                    let addr = listener.local_addr().unwrap();
                    let server = rt::spawn(async move {
                        let (tcp, _) = listener.accept().await.unwrap();
                        let ws = accept(tcp).await.unwrap();
                        let (mut reader, mut writer) = ws.split();
                        let writing = rt::spawn(async move {
                            for i in 0..DATA {
                                let msg = Message::binary(vec![(i % 251) as u8; 1024]);
                                writer.send(msg).await.unwrap();
                            }
                            writer
                        });
                        let mut pings = 0;
                        while let Some(m) = reader.recv().await {
                            if let Message::Ping(_) = m.unwrap() {
                                pings += 1;
                            }
                        }
                        drop(writing.await);
                        pings
                    });
                    let (mut tcp, rest) = raw_ws(addr, "/").await;
                    let mut conn = Connection::with_buffered(Role::Client, Config::default(), rest);
                    let (mut data, mut pings, mut pongs) = (0usize, 0usize, 0usize);
                    while data < DATA || pongs < pings {
                        match raw_recv(&mut tcp, &mut conn).await.expect("open") {
                            Message::Binary(b) => {
                                assert_eq!(b.len(), 1024);
                                assert!(b.iter().all(|&x| x == (data % 251) as u8), "frame intact");
                                data += 1;
                                if data % EVERY == 0 {
                                    conn.send_ping(&pings.to_be_bytes()).unwrap();
                                    tcp.write_all(&conn.take_transmit()).await.unwrap();
                                    pings += 1;
                                }
                            }
                            Message::Pong(p) => {
                                assert_eq!(&p[..], &pongs.to_be_bytes(), "pongs in order");
                                pongs += 1;
                            }
                            other => panic!("unexpected {other:?}"),
                        }
                    }
                    assert_eq!((data, pongs), (DATA, pings));
                    conn.close(CloseCode::NORMAL, "").unwrap();
                    tcp.write_all(&conn.take_transmit()).await.unwrap();
                    assert_eq!(server.await, pings);
                }));
            }

            #[test]
            fn split_halves_recover_when_a_pinging_peer_stops_reading_then_resumes() {
                // The writer fills the socket and waits for writability while
                // the reader must write pongs through the same full socket:
                // when the peer reads again, the writer's flush and every
                // pong must complete (neither half's wakeup may be lost).
                const DATA: usize = 200;
                const PINGS: usize = 5;
                rt::block_on(within(20, "full socket with pings", async {
                    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
                    let addr = listener.local_addr().unwrap();
                    let server = rt::spawn(async move {
                        let (tcp, _) = listener.accept().await.unwrap();
                        let (mut reader, mut writer) = accept(tcp).await.unwrap().split();
                        let writing = rt::spawn(async move {
                            for _ in 0..DATA {
                                writer.send(Message::binary(vec![1u8; 64 * 1024])).await.unwrap();
                            }
                            writer
                        });
                        let mut pings = 0;
                        while pings < PINGS {
                            if let Message::Ping(_) = reader.recv().await.unwrap().unwrap() {
                                pings += 1;
                            }
                        }
                        drop(writing.await);
                        reader
                    });
                    let (mut tcp, rest) = raw_ws(addr, "/").await;
                    let mut conn = Connection::with_buffered(Role::Client, Config::default(), rest);
                    for i in 0..PINGS {
                        conn.send_ping(&[i as u8]).unwrap();
                        tcp.write_all(&conn.take_transmit()).await.unwrap();
                        async_io::Timer::after(Duration::from_millis(60)).await;
                    }
                    let (mut data, mut pongs) = (0, 0);
                    while data < DATA || pongs < PINGS {
                        match raw_recv(&mut tcp, &mut conn).await.expect("open") {
                            Message::Binary(b) => {
                                assert_eq!(b.len(), 64 * 1024);
                                data += 1;
                            }
                            Message::Pong(p) => {
                                assert_eq!(&p[..], &[pongs as u8]);
                                pongs += 1;
                            }
                            other => panic!("unexpected {other:?}"),
                        }
                    }
                    drop(within(5, "server halves", server).await);
                }));
            }

            #[test]
            fn split_writer_works_as_a_sink_and_refuses_after_the_peer_closed() {
                rt::block_on(within(10, "split sink", async {
                    let server = echo_server().await;
                    let (ws, _) = connect(&url(&server, "/")).await.unwrap();
                    let (mut reader, mut writer) = ws.split();
                    let msgs: Vec<_> =
                        (0..100).map(|i| Ok(Message::text(format!("m{i}")))).collect();
                    writer.send_all(&mut futures_util::stream::iter(msgs)).await.unwrap();
                    for i in 0..100 {
                        assert_eq!(reader.next().await.unwrap().unwrap(), Message::text(format!("m{i}")));
                    }
                    SinkExt::close(&mut writer).await.unwrap();
                    assert!(matches!(reader.next().await, Some(Ok(Message::Close(_)))));
                    assert!(reader.next().await.is_none());
                    assert!(futures_core::FusedStream::is_terminated(&reader));
                    assert!(matches!(writer.send(Message::text("late")).await, Err(Error::Closed)));
                    server.shutdown().await;
                }));
            }

            #[test]
            fn recv_is_cancel_safe() {
                rt::block_on(within(20, "cancel safety", async {
                    let server = chat_server(Config::default(), 4096).await;
                    let (mut ws, _) = connect(&url(&server, "/ws")).await.unwrap();
                    eventually("registered", || server.client_count() == 1).await;
                    const N: u32 = 1500;
                    let msg = |i: u32| {
                        let mut v = i.to_be_bytes().to_vec();
                        v.resize(4 + (i as usize % 11) * 1500, (i % 251) as u8);
                        Message::binary(v)
                    };
                    let s = server.clone();
                    let producer = rt::spawn(async move {
                        for i in 0..N {
                            assert_eq!(s.broadcast(&msg(i)).await.unwrap().delivered, 1);
                            // Paced, so the reader often finds nothing
                            // (or half a frame) and its recv is dropped.
                            if i % 10 == 0 {
                                async_io::Timer::after(Duration::from_millis(1)).await;
                            }
                        }
                    });
                    let mut next = 0;
                    let mut cancelled = 0;
                    let mut tick = 0u32;
                    while next < N {
                        tick += 1;
                        // Mostly polled once and dropped; every fourth
                        // attempt waits, so the loop does not just spin.
                        let limit = if tick % 4 == 0 { Duration::from_secs(5) } else { Duration::ZERO };
                        match timeout(limit, ws.recv()).await {
                            None => cancelled += 1,
                            Some(m) => {
                                assert_eq!(m.unwrap().unwrap(), msg(next), "message {next}");
                                next += 1;
                            }
                        }
                    }
                    producer.await;
                    assert!(cancelled > 50, "only {cancelled} cancellations exercised");
                    drop(ws); // idle clients would hold shutdown for the close timeout
                    server.shutdown().await;
                }));
            }

            #[test]
            fn close_handshake_from_client_echoes_the_code() {
                rt::block_on(within(10, "close", async {
                    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
                    let addr = listener.local_addr().unwrap();
                    let server = rt::spawn(async move {
                        let (tcp, _) = listener.accept().await.unwrap();
                        let mut ws = accept(tcp).await.unwrap();
                        let mut last = None;
                        while let Some(Ok(m)) = ws.recv().await {
                            last = Some(m);
                        }
                        last
                    });
                    let (mut ws, _) = connect(&format!("ws://{addr}/")).await.unwrap();
                    ws.send(Message::Close(Some(CloseFrame::new(CloseCode(4000), "bye"))))
                        .await
                        .unwrap();
                    match ws.recv().await {
                        Some(Ok(Message::Close(Some(f)))) => assert_eq!(f.code, CloseCode(4000)),
                        other => panic!("expected the echoed close, got {other:?}"),
                    }
                    assert!(ws.recv().await.is_none(), "stream ends after the close");
                    assert!(ws.send(Message::text("late")).await.unwrap_err().is_closed());
                    let seen = server.await;
                    match seen {
                        Some(Message::Close(Some(f))) => {
                            assert_eq!(f.code, CloseCode(4000));
                            assert_eq!(&*f.reason, "bye");
                        }
                        other => panic!("server saw {other:?}"),
                    }

                    // And through `close`, against the real server.
                    let echo = echo_server().await;
                    let (mut ws, _) = connect(&url(&echo, "/")).await.unwrap();
                    ws.close(CloseCode(4001), "done").await.unwrap();
                    assert_eq!(ws.connection().state(), ws_core::State::Closed);
                    assert!(ws.recv().await.is_none());
                    echo.shutdown().await;
                }));
            }

            #[test]
            fn accept_with_rejects_or_selects_a_subprotocol() {
                rt::block_on(within(10, "accept_with", async {
                    use ws_core::handshake::{Accept, HandshakeError};
                    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
                    let addr = listener.local_addr().unwrap();
                    let server = rt::spawn(async move {
                        let mut results = Vec::new();
                        for _ in 0..2 {
                            let (tcp, _) = listener.accept().await.unwrap();
                            let r = accept_with(tcp, Config::default(), |req| {
                                if req.path() == "/private" {
                                    Err(bytes::Bytes::from_static(
                                        b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                                    ))
                                } else {
                                    Ok(Accept::new().subprotocol("chat.v2"))
                                }
                            })
                            .await;
                            results.push(match r {
                                Ok(mut ws) => {
                                    let m = ws.recv().await;
                                    format!("ok {m:?}")
                                }
                                Err(Error::Handshake(HandshakeError::Rejected { status })) => {
                                    format!("rejected {status}")
                                }
                                Err(e) => format!("error {e}"),
                            });
                        }
                        results
                    });
                    let err = connect(&format!("ws://{addr}/private")).await.unwrap_err();
                    match err {
                        Error::Handshake(HandshakeError::UnexpectedStatus(r)) => assert_eq!(r.status(), 403),
                        other => panic!("expected a 403, got {other:?}"),
                    }
                    let tcp = TcpStream::connect(addr).await.unwrap();
                    let req = ClientRequest::new("127.0.0.1", addr.port(), "/chat")
                        .subprotocol("chat.v1")
                        .unwrap()
                        .subprotocol("chat.v2")
                        .unwrap();
                    let (mut ws, resp) = client_handshake(tcp, &req, Config::default()).await.unwrap();
                    assert_eq!(resp.subprotocol(), Some("chat.v2"));
                    ws.send(Message::text("hi")).await.unwrap();
                    let results = server.await;
                    assert_eq!(results[0], "rejected 403");
                    assert!(results[1].contains("hi"), "{}", results[1]);
                }));
            }

            /// Runs this very test binary as the interactive client (child
            /// mode, selected by an environment variable) with piped stdin.
            #[test]
            fn run_interactive_sends_stdin_lines_and_prints_replies() {
                const URL_VAR: &str = "WS_ASYNC_STD_TEST_INTERACTIVE_URL";
                if let Ok(url) = std::env::var(URL_VAR) {
                    rt::block_on(async {
                        let mut client = Client::new(&url).unwrap();
                        client.connect().await.unwrap();
                        client.run_interactive().await.unwrap();
                    });
                    println!("interactive-done");
                    return;
                }
                use std::io::{Read, Write};
                use std::process::{Command, Stdio};
                let server = rt::block_on(echo_server());
                let name = concat!(
                    stringify!($name),
                    "::run_interactive_sends_stdin_lines_and_prints_replies"
                );
                let mut child = Command::new(std::env::current_exe().unwrap())
                    .args(["--exact", name, "--nocapture", "--test-threads", "1"])
                    .env(URL_VAR, url(&server, "/"))
                    .stdin(Stdio::piped())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::null())
                    .spawn()
                    .unwrap();
                let mut stdin = child.stdin.take().unwrap();
                stdin.write_all(b"hello\nsecond line\n").unwrap();
                drop(stdin); // EOF: the client closes with 1000
                let deadline = Instant::now() + Duration::from_secs(10);
                let status = loop {
                    if let Some(status) = child.try_wait().unwrap() {
                        break status;
                    }
                    if Instant::now() > deadline {
                        let _ = child.kill();
                        panic!("interactive client did not finish");
                    }
                    std::thread::sleep(Duration::from_millis(10));
                };
                let mut out = String::new();
                child.stdout.take().unwrap().read_to_string(&mut out).unwrap();
                assert!(status.success(), "{out}");
                // libtest prints "test <name> ... " just before the output.
                assert!(
                    out.contains("hello\nsecond line\ninteractive-done\n"),
                    "{out}"
                );
                rt::block_on(server.shutdown());
            }

            #[test]
            fn wss_urls_are_accepted_and_other_schemes_refused() {
                rt::block_on(async {
                    // wss:// gets as far as the TCP connect (nothing listens on port 1).
                    let err = connect("wss://127.0.0.1:1/").await.unwrap_err();
                    assert!(matches!(err, Error::Io(_)), "{err:?}");
                    assert!(Client::new("wss://example.com/").is_ok());
                    let err = Client::new("https://example.com/").unwrap_err();
                    assert!(matches!(err, Error::Url(UrlError::UnsupportedScheme(_))), "{err:?}");
                });
            }
        }
    };
}

suite!(async_std_runtime, on_async_std);
suite!(smol_runtime, on_smol);
