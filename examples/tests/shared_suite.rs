//! The shared behavioural suite: the same scenarios against the server and
//! client of every runtime (tokio, async-std, smol, blocking), over real
//! loopback sockets. A scenario is a function of the runtime; the macro at
//! the bottom instantiates each one per runtime.

mod support;
mod tls_echo;

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use examples::Runtime;
use support::spawned::ws_client;
use support::{RawClient, TestServer, raw_http};
use tls_echo::{TestCa, TlsEchoServer};
use ws_core::server::hub::SLOW_CLIENT_CLOSE;
use ws_core::server::site::ServerMode;
use ws_core::{CloseCode, Config, Error, Message};

fn payload(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 % 251) as u8).collect()
}

fn echo_of_every_size(rt: Runtime) {
    let server = TestServer::start(rt, ServerMode::Echo, 1024);
    let mut c = RawClient::connect(server.addr(), "/");
    for len in [0usize, 1, 125, 126, 127, 65535, 65536, 1 << 20, 16 << 20] {
        let bin = Message::binary(payload(len));
        c.send(&bin);
        assert_eq!(c.recv_data(), bin, "binary {len}");
        let text = Message::text("é".repeat(len / 2));
        c.send(&text);
        assert_eq!(c.recv_data(), text, "text {len}");
    }
}

fn fragmented_input_is_reassembled(rt: Runtime) {
    let server = TestServer::start(rt, ServerMode::Echo, 1024);
    let mut c = RawClient::connect_with(
        server.addr(),
        "/",
        Config::default().fragment_size(Some(1000)),
    );
    let text = Message::text("fragmented ☃ ".repeat(5000));
    c.send(&text);
    assert_eq!(c.recv_data(), text);
    let bin = Message::binary(payload(100_001));
    c.send(&bin);
    assert_eq!(c.recv_data(), bin);
}

fn broadcast_reaches_three_clients(rt: Runtime) {
    let server = TestServer::start(rt, ServerMode::Chat, 1024);
    let mut clients: Vec<_> = (0..3)
        .map(|_| RawClient::connect(server.addr(), "/ws"))
        .collect();
    server.wait_for_clients(3);
    for (i, c) in clients.iter_mut().enumerate() {
        c.send(&Message::text(format!("from {i}")));
    }
    for c in &mut clients {
        let mut got: Vec<String> = (0..3)
            .map(|_| match c.recv_data() {
                Message::Text(t) => t.to_string(),
                other => panic!("{other:?}"),
            })
            .collect();
        got.sort();
        assert_eq!(got, ["from 0", "from 1", "from 2"]);
    }
    // A broadcast from the handle reaches everyone too.
    assert_eq!(server.broadcast(&Message::text("from server")), 3);
    for c in &mut clients {
        assert_eq!(c.recv_data(), Message::text("from server"));
    }
}

fn client_dropping_tcp_is_removed(rt: Runtime) {
    let server = TestServer::start(rt, ServerMode::Chat, 1024);
    let a = RawClient::connect(server.addr(), "/ws");
    let mut b = RawClient::connect(server.addr(), "/ws");
    server.wait_for_clients(2);
    a.abort();
    server.wait_for_clients(1);
    // The remaining client still gets broadcasts.
    b.send(&Message::text("still here"));
    assert_eq!(b.recv_data(), Message::text("still here"));
}

fn shutdown_closes_every_client(rt: Runtime) {
    let server = TestServer::start(rt, ServerMode::Chat, 1024);
    let mut clients: Vec<_> = (0..3)
        .map(|_| RawClient::connect(server.addr(), "/ws"))
        .collect();
    server.wait_for_clients(3);
    server.shutdown();
    for c in &mut clients {
        match c.recv() {
            Ok(Message::Close(Some(f))) => assert_eq!(f.code, CloseCode::GOING_AWAY),
            other => panic!("expected close 1001, got {other:?}"),
        }
    }
    // No new connections are accepted after shutdown.
    let refused = TcpStream::connect(server.addr()).map(|s| {
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let mut s = s;
        let _ = s.write_all(b"GET /ws HTTP/1.1\r\nHost: x\r\n\r\n");
        let mut buf = [0u8; 16];
        std::io::Read::read(&mut s, &mut buf).unwrap_or(0)
    });
    assert!(
        matches!(refused, Err(_) | Ok(0)),
        "server still answers after shutdown"
    );
}

fn slow_client_is_dropped_and_others_keep_receiving(rt: Runtime) {
    let server = TestServer::start(rt, ServerMode::Chat, 8);
    // The slow client completes its handshake, then never reads again.
    let slow = RawClient::connect(server.addr(), "/ws");
    slow.stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut fast = RawClient::connect(server.addr(), "/ws");
    server.wait_for_clients(2);
    let big = Message::binary(payload(256 * 1024));
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut sent = 0;
    while server.client_count() == 2 {
        assert!(
            Instant::now() < deadline,
            "slow client never dropped after {sent} broadcasts"
        );
        fast.send(&big);
        assert_eq!(
            fast.recv_data(),
            big,
            "the fast client receives every broadcast"
        );
        sent += 1;
        assert!(sent < 2000, "slow client never dropped");
    }
    fast.send(&Message::text("after"));
    assert_eq!(fast.recv_data(), Message::text("after"));
    // What the slow client finally sees, once it reads: broadcasts, then 1013.
    let mut slow = slow;
    let end = loop {
        match slow.recv() {
            Ok(Message::Close(c)) => break c.map(|f| f.code),
            Ok(_) => continue,
            Err(Error::Io(e)) if is_timeout(&e) => panic!("the slow client was never cut: {e}"),
            Err(Error::AbnormalClosure) | Err(Error::Io(_)) | Err(Error::Closed) => break None,
            Err(e) => panic!("{e}"),
        }
    };
    assert!(end.is_none() || end == Some(SLOW_CLIENT_CLOSE), "{end:?}");
}

/// A read that gave up waiting: the peer never ended the connection.
fn is_timeout(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    )
}

fn handshake_rejections_keep_the_server_serving(rt: Runtime) {
    let server = TestServer::start(rt, ServerMode::Chat, 1024);
    let addr = server.addr();
    let v8 = raw_http(
        addr,
        "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n\r\n",
    );
    assert!(v8.starts_with("HTTP/1.1 426"), "{v8}");
    assert!(
        v8.to_ascii_lowercase()
            .contains("sec-websocket-version: 13"),
        "{v8}"
    );
    let plain = raw_http(addr, "GET /ws HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(plain.starts_with("HTTP/1.1 426"), "{plain}");
    let missing = raw_http(addr, "GET /nope HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(missing.starts_with("HTTP/1.1 404"), "{missing}");
    let page = raw_http(addr, "GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(
        page.starts_with("HTTP/1.1 200") && page.contains("text/html"),
        "{page}"
    );
    let garbage = raw_http(addr, "\x16\x03\x01 not http at all\r\n\r\n");
    assert!(garbage.starts_with("HTTP/1.1 400"), "{garbage}");
    let mut c = RawClient::connect(addr, "/ws");
    c.send(&Message::text("ok"));
    assert_eq!(c.recv_data(), Message::text("ok"));
}

fn interactive_client_through_a_pipe(rt: Runtime) {
    let server = TestServer::start(rt, ServerMode::Echo, 1024);
    let lines = ["hello", "κόσμε ☃", "third line"];
    // End of input: the client closes with 1000 and exits. Exactly the
    // echoes: the reply to our own close is not printed, and nothing else
    // is.
    let (ok, got, stderr) = ws_client(&[&server.url("/"), "--runtime", rt.name()], &[], &lines);
    assert!(ok, "{stderr}");
    assert_eq!(got, lines);
    server.wait_for_clients(0);
}

/// The async `Client` scenario, the same text for each async adapter crate.
macro_rules! async_client_exchange {
    ($ws:path, $url:expr) => {{
        use $ws as ws;
        let mut c = ws::Client::new($url).unwrap();
        c.connect().await.unwrap();
        c.send_message("text").await.unwrap();
        c.send_binary(&[1, 2, 3]).await.unwrap();
        let a = c.recv().await.unwrap().unwrap();
        let b = c.recv().await.unwrap().unwrap();
        c.close().await.unwrap();
        vec![a, b]
    }};
}

fn client_surface_sends_and_receives(rt: Runtime) {
    let server = TestServer::start(rt, ServerMode::Echo, 1024);
    let url = server.url("/");
    let got: Vec<Message> = match rt {
        Runtime::Tokio => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(async { async_client_exchange!(ws_tokio, &url) }),
        Runtime::AsyncStd => {
            async_std::task::block_on(async { async_client_exchange!(ws_async_std, &url) })
        }
        Runtime::Smol => smol::block_on(async { async_client_exchange!(ws_async_std::smol, &url) }),
        Runtime::Blocking => {
            let mut c = ws_blocking::Client::new(&url).unwrap();
            c.connect().unwrap();
            c.send_message("text").unwrap();
            c.send_binary(&[1, 2, 3]).unwrap();
            let a = c.recv().unwrap().unwrap();
            let b = c.recv().unwrap().unwrap();
            c.close().unwrap();
            vec![a, b]
        }
    };
    assert_eq!(
        got,
        vec![Message::text("text"), Message::binary(vec![1u8, 2, 3])]
    );
    server.wait_for_clients(0);
}

/// wss:// connects on every runtime's client (a TLS echo server from the
/// test's own CA, trusted through `with_tls`); a scheme other than ws and
/// wss is still refused with a clear URL error.
fn wss_connects_and_other_schemes_are_refused_clearly(rt: Runtime) {
    let ca = TestCa::new("ws test CA");
    let server = TlsEchoServer::start(&ca.issue(&["localhost", "127.0.0.1"]));
    let (url, tls) = (server.url("/"), ca.client_config());
    let text = Message::text("over TLS");
    let echo = match rt {
        Runtime::Tokio => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(async {
                let mut c = ws_tokio::Client::new(&url)?.with_tls(tls);
                c.connect().await?;
                c.send_message("over TLS").await?;
                let echo = c.recv().await;
                c.close().await?;
                Ok::<_, Error>(echo)
            }),
        Runtime::AsyncStd => async_std::task::block_on(async {
            let mut c = ws_async_std::Client::new(&url)?.with_tls(tls);
            c.connect().await?;
            c.send_message("over TLS").await?;
            let echo = c.recv().await;
            c.close().await?;
            Ok::<_, Error>(echo)
        }),
        Runtime::Smol => smol::block_on(async {
            let mut c = ws_async_std::smol::Client::new(&url)?.with_tls(tls);
            c.connect().await?;
            c.send_message("over TLS").await?;
            let echo = c.recv().await;
            c.close().await?;
            Ok::<_, Error>(echo)
        }),
        Runtime::Blocking => (|| {
            let mut c = ws_blocking::Client::new(&url)?.with_tls(tls);
            c.connect()?;
            c.send_message("over TLS")?;
            let echo = c.recv();
            c.close()?;
            Ok::<_, Error>(echo)
        })(),
    };
    assert_eq!(echo.unwrap().unwrap().unwrap(), text);
    assert_eq!(server.wait_endings(1), [tls_echo::Ending::CloseNotify]);

    let https = "https://127.0.0.1:1/";
    let err = match rt {
        Runtime::Tokio => ws_tokio::Client::new(https).err(),
        Runtime::AsyncStd => ws_async_std::Client::new(https).err(),
        Runtime::Smol => ws_async_std::smol::Client::new(https).err(),
        Runtime::Blocking => ws_blocking::Client::new(https).err(),
    };
    let err = err.expect("https:// must be refused");
    assert!(
        matches!(&err, Error::Url(ws_core::url::UrlError::UnsupportedScheme(s)) if &**s == "https"),
        "{err}"
    );
    assert!(
        err.to_string().contains("expected ws:// or wss://"),
        "{err}"
    );
}

macro_rules! suite {
    ($($module:ident => $rt:expr),* $(,)?) => {$(
        mod $module {
            use super::*;
            #[test] fn echo_of_every_size() { super::echo_of_every_size($rt) }
            #[test] fn fragmented_input_is_reassembled() { super::fragmented_input_is_reassembled($rt) }
            #[test] fn broadcast_reaches_three_clients() { super::broadcast_reaches_three_clients($rt) }
            #[test] fn client_dropping_tcp_is_removed() { super::client_dropping_tcp_is_removed($rt) }
            #[test] fn shutdown_closes_every_client() { super::shutdown_closes_every_client($rt) }
            #[test] fn slow_client_is_dropped_and_others_keep_receiving() { super::slow_client_is_dropped_and_others_keep_receiving($rt) }
            #[test] fn handshake_rejections_keep_the_server_serving() { super::handshake_rejections_keep_the_server_serving($rt) }
            #[test] fn interactive_client_through_a_pipe() { super::interactive_client_through_a_pipe($rt) }
            #[test] fn client_surface_sends_and_receives() { super::client_surface_sends_and_receives($rt) }
            #[test] fn wss_connects_and_other_schemes_are_refused_clearly() { super::wss_connects_and_other_schemes_are_refused_clearly($rt) }
        }
    )*};
}

suite! {
    on_tokio => Runtime::Tokio,
    on_async_std => Runtime::AsyncStd,
    on_smol => Runtime::Smol,
    on_blocking => Runtime::Blocking,
}
