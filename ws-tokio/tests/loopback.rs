//! ws-tokio over real loopback sockets: the server, the client, the
//! stream and its split halves. Every wait is bounded.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use ws_core::handshake::{Accept, ClientHandshake, ClientRequest, ServerHandshake};
use ws_core::url::UrlError;
use ws_core::{Connection, State};
use ws_tokio::{
    Client, CloseCode, CloseFrame, Config, Error, Message, Role, Server, ServerHandle, ServerMode,
    WebSocketStream,
};

/// Fails the test instead of hanging it.
async fn bounded<T>(secs: u64, fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(secs), fut)
        .await
        .expect("test step timed out")
}

/// Polls `cond` until it holds, for at most `secs`.
async fn wait_until(secs: u64, mut cond: impl FnMut() -> bool) {
    bounded(secs, async {
        while !cond() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
}

async fn echo_server() -> ServerHandle {
    Server::new("127.0.0.1:0")
        .mode(ServerMode::Echo)
        .start()
        .await
        .unwrap()
}

async fn chat_server() -> ServerHandle {
    Server::new("127.0.0.1:0")
        .mode(ServerMode::Chat)
        .start()
        .await
        .unwrap()
}

fn ws_url(addr: SocketAddr, path: &str) -> String {
    format!("ws://{addr}{path}")
}

/// A peer driven by a bare ws-core connection over a plain socket, to test
/// the adapter against bytes it did not produce itself.
struct RawPeer {
    tcp: TcpStream,
    conn: Connection,
}

impl RawPeer {
    /// Connects and does the client handshake by hand.
    async fn client(addr: SocketAddr, path: &str, config: Config) -> RawPeer {
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        let (mut hs, request) =
            ClientHandshake::new(&ClientRequest::new("127.0.0.1", addr.port(), path));
        tcp.write_all(&request).await.unwrap();
        let response = loop {
            let n = tcp.read_buf(hs.read_buf()).await.unwrap();
            assert!(n > 0, "server closed during handshake");
            if let Some(r) = hs.poll_response().unwrap() {
                break r;
            }
        };
        assert_eq!(response.status(), 101);
        RawPeer {
            tcp,
            conn: Connection::with_buffered(Role::Client, config, hs.take_remaining()),
        }
    }

    /// Accepts one connection and does the server handshake by hand.
    async fn server(listener: &TcpListener) -> RawPeer {
        let (mut tcp, _) = listener.accept().await.unwrap();
        let mut hs = ServerHandshake::new();
        let req = loop {
            let n = tcp.read_buf(hs.read_buf()).await.unwrap();
            assert!(n > 0);
            if let Some(r) = hs.poll_request().unwrap() {
                break r;
            }
        };
        tcp.write_all(&req.accept(&Accept::new()).unwrap())
            .await
            .unwrap();
        RawPeer {
            tcp,
            conn: Connection::with_buffered(Role::Server, Config::default(), hs.take_remaining()),
        }
    }

    async fn flush(&mut self) {
        loop {
            let out = self.conn.take_transmit();
            if out.is_empty() {
                break;
            }
            self.tcp.write_all(&out).await.unwrap();
        }
    }

    /// The next message, or `None` at the end of the connection.
    async fn next(&mut self) -> Option<Message> {
        loop {
            match self.conn.poll_message() {
                Ok(Some(m)) => {
                    self.flush().await;
                    return Some(m);
                }
                Ok(None) => {}
                Err(e) => panic!("raw peer: {e}"),
            }
            self.flush().await;
            if self.conn.state() == State::Closed {
                return None;
            }
            if self.tcp.read_buf(self.conn.read_buf()).await.unwrap_or(0) == 0 {
                self.conn.handle_eof();
                if self.conn.close_received() {
                    return None;
                }
            }
        }
    }
}

/// Sends a raw HTTP request and returns the whole response (the server
/// closes after answering).
async fn http(addr: SocketAddr, request: &str) -> String {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    bounded(5, tcp.read_to_end(&mut out)).await.unwrap();
    String::from_utf8(out).unwrap()
}

fn payload(len: usize, seed: usize) -> String {
    (0..len)
        .map(|i| char::from(b'a' + ((i * 7 + seed) % 26) as u8))
        .collect()
}

// --------------------------------------------------------------- echo

async fn echo_sizes(ws: &mut WebSocketStream<ws_tokio::MaybeTls<TcpStream>>) {
    for len in [0, 125, 126, 64 << 10, 1 << 20, 16 << 20] {
        let text = payload(len, len);
        ws.send(Message::text(text.clone())).await.unwrap();
        let back = ws.recv().await.unwrap().unwrap();
        assert!(
            back == Message::text(text),
            "text echo of {len} bytes differs"
        );

        let bin: Bytes = (0..len)
            .map(|i| (i * 31 % 251) as u8)
            .collect::<Vec<u8>>()
            .into();
        ws.send(Message::Binary(bin.clone())).await.unwrap();
        let back = ws.recv().await.unwrap().unwrap();
        assert!(
            back == Message::Binary(bin),
            "binary echo of {len} bytes differs"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_text_and_binary_of_every_size_multi_thread() {
    let server = echo_server().await;
    bounded(15, async {
        let (mut ws, response) = ws_tokio::connect(&ws_url(server.local_addr(), "/"))
            .await
            .unwrap();
        assert_eq!(response.status(), 101);
        echo_sizes(&mut ws).await;
        ws.close(CloseCode::NORMAL, "").await.unwrap();
    })
    .await;
    server.shutdown().await;
}

#[tokio::test(flavor = "current_thread")]
async fn echo_through_client_on_current_thread_runtime() {
    let server = echo_server().await;
    bounded(10, async {
        let mut client = Client::new(ws_url(server.local_addr(), "/echo")).unwrap();
        client.connect().await.unwrap();
        client.send_message("hello").await.unwrap();
        assert_eq!(
            client.recv().await.unwrap().unwrap(),
            Message::text("hello")
        );
        client.send_binary(&[]).await.unwrap();
        assert_eq!(
            client.recv().await.unwrap().unwrap(),
            Message::binary(Bytes::new())
        );
        let big = vec![7u8; 1 << 20];
        client.send_binary(&big).await.unwrap();
        assert_eq!(client.recv().await.unwrap().unwrap(), Message::binary(big));
        client.ping(b"p").await.unwrap();
        assert_eq!(
            client.recv().await.unwrap().unwrap(),
            Message::Pong(Bytes::from_static(b"p"))
        );
        client.close().await.unwrap();
        assert!(client.recv().await.is_none());
    })
    .await;
    server.shutdown().await;
}

#[tokio::test]
async fn many_fed_messages_are_echoed_in_order() {
    let server = echo_server().await;
    bounded(10, async {
        let (mut ws, _) = ws_tokio::connect(&ws_url(server.local_addr(), "/"))
            .await
            .unwrap();
        for i in 0..1000 {
            ws.feed(Message::text(format!("m{i}"))).await.unwrap();
        }
        ws.flush().await.unwrap();
        for i in 0..1000 {
            assert_eq!(
                ws.next().await.unwrap().unwrap(),
                Message::text(format!("m{i}"))
            );
        }
        // The Sink side batches the same way.
        let mut items =
            futures_util::stream::iter((0..100).map(|i| Ok(Message::binary(vec![i as u8; i]))));
        ws.send_all(&mut items).await.unwrap();
        for i in 0..100 {
            assert_eq!(
                ws.recv().await.unwrap().unwrap(),
                Message::binary(vec![i as u8; i])
            );
        }
    })
    .await;
    server.shutdown().await;
}

#[tokio::test]
async fn fragmented_input_is_reassembled() {
    let server = echo_server().await;
    bounded(10, async {
        let config = Config::default().fragment_size(Some(3));
        let mut peer = RawPeer::client(server.local_addr(), "/", config).await;
        let text = "fragmented text, split every three bytes: ü€𝄞";
        peer.conn.send_text(text).unwrap();
        peer.conn
            .send_binary(&[1, 2, 3, 4, 5, 6, 7, 8, 9, 10])
            .unwrap();
        // Trickle the frames byte-chunk by byte-chunk so the server also
        // sees frames split across reads.
        let wire = peer.conn.take_transmit();
        assert!(wire.len() > text.len() + 10 * 4, "was really fragmented");
        for chunk in wire.chunks(5) {
            peer.tcp.write_all(chunk).await.unwrap();
            peer.tcp.flush().await.unwrap();
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        // The echo of a reassembled message is one unfragmented frame.
        let mut head = [0u8; 1];
        peer.tcp.peek(&mut head).await.unwrap();
        assert_eq!(head[0], 0x81, "echo is a single final text frame");
        assert_eq!(peer.next().await.unwrap(), Message::text(text));
        assert_eq!(
            peer.next().await.unwrap(),
            Message::binary(vec![1, 2, 3, 4, 5, 6, 7, 8, 9, 10])
        );
    })
    .await;
    server.shutdown().await;
}

// --------------------------------------------------------------- chat

#[tokio::test]
async fn client_dropping_tcp_without_close_is_unregistered() {
    let server = chat_server().await;
    let url = ws_url(server.local_addr(), "/ws");
    let (ws, _) = bounded(5, ws_tokio::connect(&url)).await.unwrap();
    let (ws2, _) = bounded(5, ws_tokio::connect(&url)).await.unwrap();
    wait_until(5, || server.client_count() == 2).await;
    drop(ws); // no close frame, just FIN
    wait_until(5, || server.client_count() == 1).await;
    drop(ws2);
    wait_until(5, || server.client_count() == 0).await;
    server.shutdown().await;
}

#[tokio::test]
async fn shutdown_closes_every_client_with_1001() {
    let server = chat_server().await;
    let addr = server.local_addr();
    let url = ws_url(addr, "/ws");
    let mut streams = Vec::new();
    for _ in 0..3 {
        streams.push(bounded(5, ws_tokio::connect(&url)).await.unwrap().0);
    }
    wait_until(5, || server.client_count() == 3).await;
    let closer = tokio::spawn({
        let server = server.clone();
        async move { server.shutdown().await }
    });
    for ws in &mut streams {
        let msg = bounded(5, ws.recv()).await.unwrap().unwrap();
        assert_eq!(
            msg,
            Message::Close(Some(CloseFrame::new(CloseCode::GOING_AWAY, "")))
        );
        assert!(
            bounded(5, ws.recv()).await.is_none(),
            "stream ends after the close handshake"
        );
    }
    // The shutdown finishes promptly once every client answered.
    bounded(3, closer).await.unwrap();
    assert_eq!(server.client_count(), 0);
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "no longer accepting"
    );
}

#[tokio::test]
async fn slow_client_is_dropped_while_others_keep_receiving() {
    let close_timeout = Duration::from_millis(800);
    let config = Config::default()
        .write_buffer_limit(64 << 10)
        .close_timeout(close_timeout);
    let server = Server::new("127.0.0.1:0")
        .mode(ServerMode::Chat)
        .config(config)
        .flow_control(
            ws_tokio::FlowControl::default()
                .high_water(4, 1 << 30)
                .slow_client_timeout(Duration::from_millis(500)),
        )
        .start()
        .await
        .unwrap();
    let addr = server.local_addr();
    bounded(20, async {
        // The slow client: a valid handshake, then it never reads again.
        let mut slow = TcpStream::connect(addr).await.unwrap();
        let (_hs, request) =
            ClientHandshake::new(&ClientRequest::new("127.0.0.1", addr.port(), "/ws"));
        slow.write_all(&request).await.unwrap();
        wait_until(5, || server.client_count() == 1).await;

        // Two fast clients, each reading in its own task and reporting what
        // it received.
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        for id in 0..2 {
            let (mut ws, _) = ws_tokio::connect(&ws_url(addr, "/ws")).await.unwrap();
            let tx = tx.clone();
            tokio::spawn(async move {
                while let Some(Ok(Message::Binary(b))) = ws.recv().await {
                    let _ = tx.send((id, b));
                }
            });
        }
        wait_until(5, || server.client_count() == 3).await;

        let mut slow_dropped_at = None;
        let mut sent = 0usize;
        for i in 0..600usize {
            let msg = Bytes::from(vec![(i % 251) as u8; 64 << 10]);
            let report = server
                .broadcast(&Message::Binary(msg.clone()))
                .await
                .unwrap();
            sent += 1;
            // The hub drops it after its slow-client timeout, noticed by
            // whoever waits on it first: this broadcast or a paused session.
            if server.stats().dropped_slow > 0 {
                assert!(report.dropped.len() <= 1, "only the slow client is dropped");
                assert_eq!(
                    server.stats().dropped_slow,
                    1,
                    "only the slow client is dropped"
                );
                slow_dropped_at.get_or_insert((i, tokio::time::Instant::now()));
            }
            // Both fast clients get every message, in order: one copy each.
            let mut ids = Vec::new();
            for _ in 0..2 {
                let (id, got) = bounded(5, rx.recv()).await.unwrap();
                assert_eq!(got, msg);
                ids.push(id);
            }
            ids.sort_unstable();
            assert_eq!(ids, [0, 1], "each fast client received broadcast {i}");
            if slow_dropped_at.is_some_and(|(at, _)| i >= at + 20) {
                break;
            }
        }
        assert!(
            slow_dropped_at.is_some(),
            "slow client never dropped after {sent} broadcasts"
        );
        assert_eq!(server.client_count(), 2);

        // The server gives up on the slow client within its close timeout
        // even though the client still is not reading: once that has passed,
        // draining what is buffered reaches the end of the stream at once.
        // (Were the server waiting for the client to read, draining would
        // only now let it queue its close and start the close timer.)
        let (_, dropped_at) = slow_dropped_at.unwrap();
        tokio::time::sleep_until(dropped_at + close_timeout + Duration::from_millis(300)).await;
        let mut sink = vec![0u8; 1 << 20];
        tokio::time::timeout(close_timeout / 2, async {
            loop {
                match slow.read(&mut sink).await {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
            }
        })
        .await
        .expect("the server closed the slow connection while it was not reading");
    })
    .await;
    server.shutdown().await;
}

// ------------------------------------------------------------ handshake

#[tokio::test]
async fn handshake_rejections_and_page_while_still_serving() {
    let server = chat_server().await;
    let addr = server.local_addr();
    bounded(10, async {
        let upgrade = |version: &str| {
            format!(
                "GET /ws HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                 Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: {version}\r\n\r\n"
            )
        };
        let r = http(addr, &upgrade("8")).await;
        assert!(r.starts_with("HTTP/1.1 426 "), "{r}");
        assert!(r.contains("Sec-WebSocket-Version: 13\r\n"), "{r}");

        let r = http(addr, &format!("GET /ws HTTP/1.1\r\nHost: {addr}\r\n\r\n")).await;
        assert!(r.starts_with("HTTP/1.1 426 "), "{r}");

        let r = http(addr, &format!("GET /nope HTTP/1.1\r\nHost: {addr}\r\n\r\n")).await;
        assert!(r.starts_with("HTTP/1.1 404 "), "{r}");

        let r = http(addr, &format!("GET / HTTP/1.1\r\nHost: {addr}\r\n\r\n")).await;
        assert!(r.starts_with("HTTP/1.1 200 "), "{r}");
        assert!(r.contains("text/html"));
        assert!(r.ends_with(ws_core::server::site::INDEX_HTML));

        let r = http(addr, "this is not http\r\n\r\n").await;
        assert!(r.starts_with("HTTP/1.1 400 "), "{r}");

        // Still serving WebSockets.
        let mut c = Client::new(ws_url(addr, "/ws")).unwrap();
        c.connect().await.unwrap();
        c.send_message("still here").await.unwrap();
        assert_eq!(c.recv().await.unwrap().unwrap(), Message::text("still here"));

        // The client side reports a refused upgrade as a handshake error.
        let err = ws_tokio::connect(&ws_url(addr, "/nope")).await.unwrap_err();
        assert!(err.is_handshake(), "{err:?}");
    })
    .await;
    server.shutdown().await;
}

#[tokio::test]
async fn handshake_timeout_is_enforced() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let silent = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        tokio::time::sleep(Duration::from_secs(5)).await;
        drop(tcp);
    });
    let config = Config::default().handshake_timeout(Duration::from_millis(200));
    let err = bounded(3, ws_tokio::connect_with(&ws_url(addr, "/"), config))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Timeout(ws_core::TimeoutKind::Handshake)),
        "{err:?}"
    );
    silent.abort();
}

#[tokio::test]
async fn wss_urls_are_accepted_and_other_schemes_refused() {
    // wss:// gets as far as the TCP connect (nothing listens on port 1).
    let err = ws_tokio::connect("wss://127.0.0.1:1/").await.unwrap_err();
    assert!(matches!(err, Error::Io(_)), "{err:?}");
    assert!(Client::new("wss://127.0.0.1:1/").is_ok());
    let err = Client::new("https://127.0.0.1:1/").unwrap_err();
    assert!(
        matches!(err, Error::Url(UrlError::UnsupportedScheme(_))),
        "{err:?}"
    );
}

// ------------------------------------------------------ stream behaviour

#[tokio::test]
async fn ping_is_answered_through_split_halves_while_writer_is_idle() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    bounded(10, async {
        let server = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let ws = ws_tokio::accept(tcp).await.unwrap();
            let (mut reader, writer) = ws.split();
            // The writer exists but does nothing; only the reader is polled.
            let mut seen = Vec::new();
            while let Some(msg) = reader.recv().await {
                seen.push(msg.unwrap());
            }
            drop(writer);
            seen
        });
        let mut peer = RawPeer::client(addr, "/", Config::default()).await;
        peer.conn.send_ping(b"are you there").unwrap();
        peer.flush().await;
        assert_eq!(
            peer.next().await.unwrap(),
            Message::Pong(Bytes::from_static(b"are you there"))
        );
        peer.conn.close(CloseCode::NORMAL, "done").unwrap();
        peer.flush().await;
        assert_eq!(
            peer.next().await.unwrap(),
            Message::Close(Some(CloseFrame::new(CloseCode::NORMAL, "")))
        );
        assert!(peer.next().await.is_none());
        let seen = server.await.unwrap();
        assert_eq!(
            seen,
            [
                Message::Ping(Bytes::from_static(b"are you there")),
                Message::Close(Some(CloseFrame::new(CloseCode::NORMAL, "done"))),
            ]
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_halves_work_from_different_tasks() {
    let server = echo_server().await;
    bounded(10, async {
        let (ws, _) = ws_tokio::connect(&ws_url(server.local_addr(), "/"))
            .await
            .unwrap();
        let (mut reader, mut writer) = ws.split();
        let writing = tokio::spawn(async move {
            for i in 0..500 {
                writer.feed(Message::text(format!("{i}"))).await.unwrap();
                if i % 50 == 0 {
                    writer.flush().await.unwrap();
                }
            }
            writer.flush().await.unwrap();
            writer
        });
        for i in 0..500 {
            assert_eq!(
                reader.next().await.unwrap().unwrap(),
                Message::text(format!("{i}"))
            );
        }
        let mut writer = writing.await.unwrap();
        writer.close(CloseCode::NORMAL, "").await.unwrap();
        assert!(matches!(reader.recv().await, Some(Ok(Message::Close(_)))));
        assert!(reader.recv().await.is_none());
        let ws = reader
            .reunite(writer)
            .map_err(|_| "halves belong together")
            .unwrap();
        assert_eq!(ws.connection().state(), State::Closed);
    })
    .await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_writer_close_starts_the_readers_close_timeout() {
    // The peer takes our close frame but never answers it: the reader, parked
    // in a read, must be woken to start its close timer, and end.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let peer = tokio::spawn(async move {
        let mut peer = RawPeer::server(&listener).await;
        let mut n = 0;
        while n == 0 || peer.conn.poll_message().unwrap().is_none() {
            n += peer.tcp.read_buf(peer.conn.read_buf()).await.unwrap();
        }
        // Holds the socket open without replying until the test ends.
        tokio::time::sleep(Duration::from_secs(10)).await;
        drop(peer);
    });
    let config = Config::default().close_timeout(Duration::from_millis(300));
    let (ws, _) = ws_tokio::connect_with(&ws_url(addr, "/"), config)
        .await
        .unwrap();
    let (mut reader, mut writer) = ws.split();
    let reading = tokio::spawn(async move {
        let mut seen = Vec::new();
        while let Some(r) = reader.recv().await {
            seen.push(r);
        }
        seen
    });
    // Let the reader park in its read first.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let started = std::time::Instant::now();
    writer.close(CloseCode::NORMAL, "bye").await.unwrap();
    let seen = bounded(5, reading).await.unwrap();
    assert!(
        matches!(&seen[..], [Err(Error::Timeout(_))]),
        "the unanswered close times out: {seen:?}"
    );
    assert!(started.elapsed() >= Duration::from_millis(250));
    peer.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_reader_answers_every_ping_while_the_writer_streams_from_another_task() {
    const DATA: usize = 2_000;
    const EVERY: usize = 10;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let peer = tokio::spawn(async move {
        let mut peer = RawPeer::server(&listener).await;
        let (mut data, mut pongs, mut pings) = (0usize, 0usize, 0usize);
        while data < DATA || pongs < pings {
            match peer.next().await.expect("connection open") {
                Message::Binary(b) => {
                    assert_eq!(b.len(), 1024);
                    assert!(b.iter().all(|&x| x == (data % 251) as u8), "frame intact");
                    data += 1;
                    if data % EVERY == 0 {
                        peer.conn.send_ping(&pings.to_be_bytes()).unwrap();
                        peer.flush().await;
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
        peer.conn.close(CloseCode::NORMAL, "").unwrap();
        peer.flush().await;
        while peer.next().await.is_some() {}
        (data, pings, pongs)
    });
    let (ws, _) = ws_tokio::connect(&ws_url(addr, "/")).await.unwrap();
    let (mut reader, mut writer) = ws.split();
    let writing = tokio::spawn(async move {
        for i in 0..DATA {
            writer
                .send(Message::binary(vec![(i % 251) as u8; 1024]))
                .await
                .unwrap();
        }
        writer
    });
    let reading = tokio::spawn(async move {
        let mut pings = 0;
        while let Some(m) = reader.recv().await {
            if let Message::Ping(_) = m.unwrap() {
                pings += 1;
            }
        }
        pings
    });
    let (data, pings, pongs) = bounded(20, peer).await.unwrap();
    assert_eq!((data, pongs), (DATA, pings));
    assert_eq!(bounded(5, reading).await.unwrap(), pings);
    drop(bounded(5, writing).await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_writer_works_as_a_sink_and_refuses_after_the_peer_closed() {
    let server = echo_server().await;
    bounded(10, async {
        let (ws, _) = ws_tokio::connect(&ws_url(server.local_addr(), "/"))
            .await
            .unwrap();
        let (mut reader, mut writer) = ws.split();
        let msgs: Vec<_> = (0..100)
            .map(|i| Ok(Message::text(format!("m{i}"))))
            .collect();
        writer
            .send_all(&mut futures_util::stream::iter(msgs))
            .await
            .unwrap();
        for i in 0..100 {
            assert_eq!(
                reader.next().await.unwrap().unwrap(),
                Message::text(format!("m{i}"))
            );
        }
        SinkExt::close(&mut writer).await.unwrap();
        assert!(matches!(reader.next().await, Some(Ok(Message::Close(_)))));
        assert!(reader.next().await.is_none());
        assert!(futures_core::FusedStream::is_terminated(&reader));
        assert!(matches!(
            writer.send(Message::text("late")).await,
            Err(Error::Closed)
        ));
    })
    .await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_halves_recover_when_a_pinging_peer_stops_reading_then_resumes() {
    // The writer fills the socket and waits for writability while the
    // reader must write pongs through the same full socket: when the peer
    // reads again, both the writer's flush and every pong must complete
    // (neither half's wakeup may be lost).
    const DATA: usize = 200;
    const PINGS: usize = 5;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let peer = tokio::spawn(async move {
        let mut peer = RawPeer::server(&listener).await;
        for i in 0..PINGS {
            peer.conn.send_ping(&[i as u8]).unwrap();
            peer.flush().await;
            tokio::time::sleep(Duration::from_millis(60)).await;
        }
        let (mut data, mut pongs) = (0, 0);
        while data < DATA || pongs < PINGS {
            match peer.next().await.expect("open") {
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
        (data, pongs)
    });
    let (ws, _) = ws_tokio::connect(&ws_url(addr, "/")).await.unwrap();
    let (mut reader, mut writer) = ws.split();
    let writing = tokio::spawn(async move {
        for _ in 0..DATA {
            writer
                .send(Message::binary(vec![1u8; 64 * 1024]))
                .await
                .unwrap();
        }
        writer
    });
    let reading = tokio::spawn(async move {
        let mut pings = 0;
        while pings < PINGS {
            if let Message::Ping(_) = reader.recv().await.unwrap().unwrap() {
                pings += 1;
            }
        }
        reader
    });
    assert_eq!(bounded(20, peer).await.unwrap(), (DATA, PINGS));
    let _writer = bounded(5, writing).await.unwrap();
    let _reader = bounded(5, reading).await.unwrap();
}

#[tokio::test]
async fn recv_is_cancel_safe() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    const COUNT: usize = 300;
    let peer = tokio::spawn(async move {
        let mut peer = RawPeer::server(&listener).await;
        for i in 0..COUNT {
            peer.conn.send_text(&payload(i * 37 % 5000, i)).unwrap();
        }
        // Trickle the bytes so many recv calls are cancelled mid-message.
        let wire = peer.conn.take_transmit();
        for chunk in wire.chunks(777) {
            peer.tcp.write_all(chunk).await.unwrap();
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
        peer
    });
    bounded(15, async {
        let (mut ws, _) = ws_tokio::connect(&ws_url(addr, "/")).await.unwrap();
        let mut cancelled = 0;
        let mut i = 0;
        while i < COUNT {
            match tokio::time::timeout(Duration::from_micros(100), ws.recv()).await {
                Err(_) => cancelled += 1,
                Ok(msg) => {
                    assert_eq!(
                        msg.unwrap().unwrap(),
                        Message::text(payload(i * 37 % 5000, i)),
                        "message {i}"
                    );
                    i += 1;
                }
            }
        }
        assert!(cancelled > 20, "recv was cancelled only {cancelled} times");
        let _peer = peer.await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn close_from_client_is_echoed_and_ends_both_sides() {
    let server = echo_server().await;
    bounded(10, async {
        let (mut ws, _) = ws_tokio::connect(&ws_url(server.local_addr(), "/"))
            .await
            .unwrap();
        wait_until(5, || server.client_count() == 1).await;
        ws.send(Message::Close(Some(CloseFrame::new(
            CloseCode(4000),
            "bye",
        ))))
        .await
        .unwrap();
        // ws-core echoes the code (its reply carries no reason).
        assert_eq!(
            ws.recv().await.unwrap().unwrap(),
            Message::Close(Some(CloseFrame::new(CloseCode(4000), "")))
        );
        assert!(ws.recv().await.is_none());
        assert_eq!(ws.connection().state(), State::Closed);
        assert!(
            ws.send(Message::text("late"))
                .await
                .unwrap_err()
                .is_closed()
        );
        wait_until(5, || server.client_count() == 0).await;
    })
    .await;

    // The code and reason reach the peer intact, and `close` waits for the
    // reply and the end of the connection.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    bounded(10, async {
        let peer = tokio::spawn(async move {
            let mut peer = RawPeer::server(&listener).await;
            let got = peer.next().await.unwrap();
            // Answered by `next` (ws-core queues the reply); then the server
            // closes TCP, as RFC 6455 asks.
            peer.tcp.shutdown().await.unwrap();
            got
        });
        let (mut ws, _) = ws_tokio::connect(&ws_url(addr, "/")).await.unwrap();
        ws.close(CloseCode(4001), "reason text").await.unwrap();
        assert_eq!(ws.connection().state(), State::Closed);
        assert_eq!(
            peer.await.unwrap(),
            Message::Close(Some(CloseFrame::new(CloseCode(4001), "reason text")))
        );
    })
    .await;
}

#[tokio::test]
async fn close_times_out_when_peer_never_answers() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mute = tokio::spawn(async move {
        let peer = RawPeer::server(&listener).await;
        tokio::time::sleep(Duration::from_secs(5)).await;
        drop(peer);
    });
    let config = Config::default().close_timeout(Duration::from_millis(200));
    bounded(5, async {
        let (mut ws, _) = ws_tokio::connect_with(&ws_url(addr, "/"), config)
            .await
            .unwrap();
        let err = ws.close(CloseCode::NORMAL, "").await.unwrap_err();
        assert!(
            matches!(err, Error::Timeout(ws_core::TimeoutKind::Close)),
            "{err:?}"
        );
        assert!(ws.recv().await.is_none());
    })
    .await;
    mute.abort();
}

#[tokio::test]
async fn pipelined_frames_after_handshake_are_not_lost() {
    let server = echo_server().await;
    let addr = server.local_addr();
    bounded(10, async {
        // Handshake and first frame in one write.
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        let (mut hs, request) =
            ClientHandshake::new(&ClientRequest::new("127.0.0.1", addr.port(), "/"));
        let mut conn = Connection::new(Role::Client, Config::default());
        conn.send_text("early").unwrap();
        let mut both = BytesMut::from(&request[..]);
        both.extend_from_slice(&conn.take_transmit());
        tcp.write_all(&both).await.unwrap();
        let _ = loop {
            tcp.read_buf(hs.read_buf()).await.unwrap();
            if let Some(r) = hs.poll_response().unwrap() {
                break r;
            }
        };
        let mut peer = RawPeer {
            tcp,
            conn: Connection::with_buffered(Role::Client, Config::default(), hs.take_remaining()),
        };
        assert_eq!(peer.next().await.unwrap(), Message::text("early"));
    })
    .await;
    server.shutdown().await;
}

#[tokio::test]
async fn protocol_error_from_peer_is_reported_then_stream_ends() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let peer = tokio::spawn(async move {
        let mut peer = RawPeer::server(&listener).await;
        // A masked frame from a server is a protocol violation.
        peer.tcp
            .write_all(&[0x81, 0x81, 1, 2, 3, 4, b'x' ^ 1])
            .await
            .unwrap();
        let mut rest = Vec::new();
        let _ = peer.tcp.read_to_end(&mut rest).await;
        rest
    });
    bounded(10, async {
        let (mut ws, _) = ws_tokio::connect(&ws_url(addr, "/")).await.unwrap();
        let err = ws.recv().await.unwrap().unwrap_err();
        assert!(err.is_protocol(), "{err:?}");
        assert!(ws.recv().await.is_none());
        // The client sent a 1002 close frame (masked: 0x88 0x82 + key + 2 bytes).
        let rest = peer.await.unwrap();
        assert_eq!(&rest[..2], &[0x88, 0x82]);
        let code = u16::from_be_bytes([rest[6] ^ rest[2], rest[7] ^ rest[3]]);
        assert_eq!(code, 1002);
    })
    .await;
}

#[tokio::test]
async fn accept_with_rejection_is_a_rejected_handshake_error() {
    use ws_core::handshake::HandshakeError;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        ws_tokio::accept_with(tcp, Config::default(), |req| {
            assert_eq!(req.path(), "/private");
            Err(Bytes::from_static(
                b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            ))
        })
        .await
        .map(|_| ())
    });
    let err = bounded(5, ws_tokio::connect(&ws_url(addr, "/private")))
        .await
        .unwrap_err();
    match err {
        Error::Handshake(HandshakeError::UnexpectedStatus(r)) => assert_eq!(r.status(), 403),
        other => panic!("expected a 403, got {other:?}"),
    }
    match bounded(5, server).await.unwrap() {
        Err(Error::Handshake(HandshakeError::Rejected { status: 403 })) => {}
        other => panic!("expected Rejected {{ status: 403 }}, got {other:?}"),
    }
}

#[tokio::test]
async fn echo_clients_are_registered_and_reached_by_broadcast() {
    let server = echo_server().await;
    bounded(10, async {
        let (mut a, _) = ws_tokio::connect(&ws_url(server.local_addr(), "/"))
            .await
            .unwrap();
        let (mut b, _) = ws_tokio::connect(&ws_url(server.local_addr(), "/any"))
            .await
            .unwrap();
        wait_until(5, || server.client_count() == 2).await;
        let report = server.broadcast(&Message::text("to all")).await.unwrap();
        assert_eq!(report.delivered, 2);
        for ws in [&mut a, &mut b] {
            assert_eq!(ws.recv().await.unwrap().unwrap(), Message::text("to all"));
            ws.send(Message::text("mine")).await.unwrap();
            assert_eq!(ws.recv().await.unwrap().unwrap(), Message::text("mine"));
        }
        a.close(CloseCode::NORMAL, "").await.unwrap();
        wait_until(5, || server.client_count() == 1).await;
        b.close(CloseCode::NORMAL, "").await.unwrap();
        wait_until(5, || server.client_count() == 0).await;
    })
    .await;
    server.shutdown().await;
}

/// Runs this very test binary as the interactive client (child mode,
/// selected by an environment variable) with piped stdin: at EOF every
/// echo still in flight is printed before the client closes and exits.
#[test]
fn run_interactive_prints_every_echo_then_closes_on_eof() {
    const URL_VAR: &str = "WS_TOKIO_TEST_INTERACTIVE_URL";
    if let Ok(url) = std::env::var(URL_VAR) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let mut client = Client::new(&url).unwrap();
            client.connect().await.unwrap();
            client.run_interactive().await.unwrap();
        });
        println!("interactive-done");
        return;
    }
    use std::io::{Read, Write};
    use std::process::{Command, Stdio};
    use std::time::Instant;
    // The server keeps running on its own worker while this thread waits.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let server = rt.block_on(echo_server());
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "run_interactive_prints_every_echo_then_closes_on_eof",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env(URL_VAR, ws_url(server.local_addr(), "/"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"hello\nsecond line\nthird\n").unwrap();
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
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    assert!(status.success(), "{out}");
    // libtest prints "test <name> ... " just before the output; the
    // server's reply to our close is not printed.
    assert!(
        out.contains("hello\nsecond line\nthird\ninteractive-done\n"),
        "{out}"
    );
    rt.block_on(async {
        wait_until(5, || server.client_count() == 0).await;
        server.shutdown().await;
    });
}
