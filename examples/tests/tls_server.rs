//! wss:// and https:// served by every runtime's `Server` with `.tls(...)`
//! (ws-core's sans-IO `TlsConnection`), against a neutral client: rustls
//! directly over a std `TcpStream` (`rustls::StreamOwned`) with ws-core's
//! `ClientHandshake` and `Connection`, trusting only a test CA made here
//! with rcgen (nothing committed, nothing that expires).
//!
//! Each test runs the same scenario on tokio, async-std, smol and blocking.

mod support;

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use examples::Runtime;
use support::TestServer;
use ws_core::handshake::{ClientHandshake, ClientRequest};
use ws_core::server::hub::FlowControl;
use ws_core::server::site::ServerMode;
use ws_core::server::tls::rustls::pki_types::{CertificateDer, ServerName, pem::PemObject};
use ws_core::server::tls::rustls::{
    self, ClientConfig, ClientConnection, RootCertStore, ServerConfig, StreamOwned,
};
use ws_core::server::tls::{provider, server_config_from_pem};
use ws_core::{CloseCode, Config, Connection, Error, Message, Role};

const RUNTIMES: [Runtime; 4] = [
    Runtime::Tokio,
    Runtime::AsyncStd,
    Runtime::Smol,
    Runtime::Blocking,
];

/// A test CA and a server certificate it signed for `localhost` and
/// 127.0.0.1: the server's configuration (loaded from PEM as
/// `ws-server --tls-cert --tls-key` does) and a client configuration that
/// trusts that CA only.
struct Pki {
    server: Arc<ServerConfig>,
    client: Arc<ClientConfig>,
}

fn pki() -> Pki {
    use rcgen::{
        BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair,
        KeyUsagePurpose,
    };
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca.distinguished_name
        .push(DnType::CommonName, "ws tls_server test CA");
    let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
        .unwrap()
        .signed_by(&key, &ca)
        .unwrap();
    let server =
        server_config_from_pem(leaf.pem().as_bytes(), key.serialize_pem().as_bytes()).unwrap();
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca.pem().as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let client = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    Pki {
        server,
        client: Arc::new(client),
    }
}

fn start(rt: Runtime, mode: ServerMode, pki: &Pki, config: Config) -> TestServer {
    TestServer::start_with(
        rt,
        mode,
        FlowControl::default(),
        config,
        Some(pki.server.clone()),
    )
}

type Tls = StreamOwned<ClientConnection, TcpStream>;

/// A TLS connection to `addr` for `localhost`, handshake done.
fn tls_connect(addr: SocketAddr, pki: &Pki) -> Tls {
    let tcp = TcpStream::connect(addr).unwrap();
    tcp.set_nodelay(true).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    let conn = ClientConnection::new(pki.client.clone(), name).unwrap();
    let mut tls = StreamOwned::new(conn, tcp);
    while tls.conn.is_handshaking() {
        tls.conn.complete_io(&mut tls.sock).unwrap();
    }
    tls
}

/// A WebSocket client over TLS: ws-core's handshake and connection on a
/// rustls stream.
struct WssClient {
    tls: Tls,
    conn: Connection,
}

impl WssClient {
    fn connect(addr: SocketAddr, path: &str, pki: &Pki) -> WssClient {
        let mut tls = tls_connect(addr, pki);
        let (mut hs, request) =
            ClientHandshake::new(&ClientRequest::new("localhost", addr.port(), path));
        tls.write_all(&request).unwrap();
        tls.flush().unwrap();
        let mut buf = [0u8; 4096];
        loop {
            let n = tls.read(&mut buf).unwrap();
            assert!(
                n > 0,
                "the server ended the TLS stream during the handshake"
            );
            if let Some(response) = hs.feed(&buf[..n]).unwrap() {
                assert_eq!(response.status(), 101);
                break;
            }
        }
        let conn = Connection::with_buffered(Role::Client, Config::default(), hs.take_remaining());
        WssClient { tls, conn }
    }

    fn flush(&mut self) {
        let out = self.conn.take_transmit();
        self.tls.write_all(&out).unwrap();
        self.tls.flush().unwrap();
    }

    fn send(&mut self, msg: &Message) {
        self.conn.send(msg).unwrap();
        self.flush();
    }

    /// The next message (control frames included), or what ended the
    /// stream: `Err(Error::Closed)` after a clean TLS end (close_notify).
    fn recv(&mut self) -> Result<Message, Error> {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            if let Some(m) = self.conn.poll_message()? {
                self.flush();
                return Ok(m);
            }
            self.flush();
            match self.tls.read(&mut buf) {
                Ok(0) => return Err(Error::Closed),
                Ok(n) => self.conn.handle_bytes(&buf[..n]),
                Err(e) => return Err(Error::Io(e)),
            }
        }
    }

    fn recv_data(&mut self) -> Message {
        loop {
            match self.recv() {
                Ok(m) if m.is_data() => return m,
                Ok(Message::Close(c)) => panic!("unexpected close {c:?}"),
                Ok(_) => {}
                Err(e) => panic!("connection ended: {e}"),
            }
        }
    }

    /// Closes with 1000, reads the server's close reply, then expects the
    /// TLS stream to end cleanly: the server's close_notify, not a bare TCP
    /// end.
    fn close_expecting_close_notify(mut self, rt: Runtime) {
        self.conn.close(CloseCode::NORMAL, "bye").unwrap();
        self.flush();
        loop {
            match self.recv() {
                Ok(Message::Close(frame)) => {
                    assert_eq!(frame.map(|f| f.code), Some(CloseCode::NORMAL), "{rt:?}");
                    break;
                }
                Ok(_) => {}
                Err(e) => panic!("{rt:?}: no close reply: {e}"),
            }
        }
        let mut buf = [0u8; 64];
        match self.tls.read(&mut buf) {
            Ok(0) => {}
            Ok(n) => panic!("{rt:?}: {n} bytes after the close"),
            Err(e) => panic!("{rt:?}: no close_notify after the close: {e}"),
        }
    }
}

#[test]
fn wss_echo_on_every_runtime_then_close_notify_after_the_close() {
    let pki = pki();
    for rt in RUNTIMES {
        let server = start(rt, ServerMode::Echo, &pki, Config::default());
        let mut client = WssClient::connect(server.addr(), "/", &pki);
        server.wait_for_clients(1);
        let big: Vec<u8> = (0..300_000u32).map(|i| (i * 7) as u8).collect();
        for msg in [
            Message::text("hello over tls"),
            Message::binary(big),
            Message::text("é ü ✓"),
        ] {
            client.send(&msg);
            assert_eq!(client.recv_data(), msg, "{rt:?}");
        }
        // Many small messages in flight at once.
        for i in 0..200 {
            client.conn.send(&Message::text(format!("m{i}"))).unwrap();
        }
        client.flush();
        for i in 0..200 {
            assert_eq!(client.recv_data(), Message::text(format!("m{i}")), "{rt:?}");
        }
        client.close_expecting_close_notify(rt);
        server.wait_for_clients(0);
        server.shutdown();
    }
}

#[test]
fn wss_chat_rooms_on_every_runtime() {
    let pki = pki();
    for rt in RUNTIMES {
        let server = start(rt, ServerMode::Chat, &pki, Config::default());
        let mut a1 = WssClient::connect(server.addr(), "/ws?room=a", &pki);
        let mut a2 = WssClient::connect(server.addr(), "/ws?room=a", &pki);
        let mut b = WssClient::connect(server.addr(), "/ws?room=b", &pki);
        server.wait_for_clients(3);
        server.wait_until("both rooms", |s| {
            s.topic_count("a") == 2 && s.topic_count("b") == 1
        });
        a1.send(&Message::text("to room a"));
        assert_eq!(a1.recv_data(), Message::text("to room a"), "{rt:?}");
        assert_eq!(a2.recv_data(), Message::text("to room a"), "{rt:?}");
        b.send(&Message::text("to room b"));
        // b's first message is its own: room a's never reached it.
        assert_eq!(b.recv_data(), Message::text("to room b"), "{rt:?}");
        // The application publishes into a room over TLS too.
        assert_eq!(server.publish("a", &Message::text("from the app")), 2);
        assert_eq!(a1.recv_data(), Message::text("from the app"), "{rt:?}");
        assert_eq!(a2.recv_data(), Message::text("from the app"), "{rt:?}");
        b.close_expecting_close_notify(rt);
        a1.close_expecting_close_notify(rt);
        a2.close_expecting_close_notify(rt);
        server.wait_for_clients(0);
        server.shutdown();
    }
}

/// Reads until the TLS stream ends; returns what arrived and how it ended.
fn read_to_end(tls: &mut Tls) -> (Vec<u8>, io::Result<()>) {
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match tls.read(&mut buf) {
            Ok(0) => return (out, Ok(())),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) => return (out, Err(e)),
        }
    }
}

#[test]
fn the_page_over_https_on_every_runtime() {
    let pki = pki();
    for rt in RUNTIMES {
        let server = start(rt, ServerMode::Chat, &pki, Config::default());
        let mut tls = tls_connect(server.addr(), &pki);
        assert_eq!(
            tls.conn.alpn_protocol(),
            None,
            "{rt:?}: no ALPN offered, none chosen"
        );
        tls.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .unwrap();
        tls.flush().unwrap();
        let (page, end) = read_to_end(&mut tls);
        let page = String::from_utf8(page).unwrap();
        assert!(page.starts_with("HTTP/1.1 200 OK\r\n"), "{rt:?}: {page}");
        assert!(
            page.contains("location.protocol === \"https:\" ? \"wss://\""),
            "{rt:?}: the page connects with wss:// when loaded over https"
        );
        end.unwrap_or_else(|e| panic!("{rt:?}: the response ends with close_notify: {e}"));
        server.shutdown();
    }
}

#[test]
fn a_browser_offering_h2_gets_http_1_1_by_alpn() {
    let pki = pki();
    let mut client = (*pki.client).clone();
    client.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let pki = Pki {
        server: pki.server.clone(),
        client: Arc::new(client),
    };
    let server = start(Runtime::Tokio, ServerMode::Echo, &pki, Config::default());
    let tls = tls_connect(server.addr(), &pki);
    assert_eq!(tls.conn.alpn_protocol(), Some(&b"http/1.1"[..]));
    drop(tls);
    let mut ws = WssClient::connect(server.addr(), "/", &pki);
    ws.send(&Message::text("x"));
    assert_eq!(ws.recv_data(), Message::text("x"));
    server.shutdown();
}

#[test]
fn garbage_and_a_stalled_handshake_do_not_stop_the_server_and_the_stall_is_dropped_in_time() {
    let pki = pki();
    let timeout = Duration::from_millis(1500);
    for rt in RUNTIMES {
        let server = start(
            rt,
            ServerMode::Echo,
            &pki,
            Config::default().handshake_timeout(timeout),
        );

        // Plain HTTP (garbage to TLS) instead of a ClientHello: an alert,
        // then the end, at once.
        let mut garbage = TcpStream::connect(server.addr()).unwrap();
        garbage
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        garbage
            .write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .unwrap();
        let mut answer = Vec::new();
        let started = Instant::now();
        let _ = garbage.read_to_end(&mut answer);
        assert!(started.elapsed() < timeout, "{rt:?}: ended at once");
        assert_eq!(
            answer.first(),
            Some(&0x15),
            "{rt:?}: a TLS alert record: {answer:?}"
        );

        // A client that sends its ClientHello, then nothing.
        let mut stalled = TcpStream::connect(server.addr()).unwrap();
        stalled
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let stalled_at = Instant::now();
        let mut hello = ClientConnection::new(
            pki.client.clone(),
            ServerName::try_from("localhost").unwrap(),
        )
        .unwrap();
        hello.write_tls(&mut stalled).unwrap();

        // Meanwhile another client is served in full.
        let mut ok = WssClient::connect(server.addr(), "/", &pki);
        ok.send(&Message::text("still serving"));
        assert_eq!(ok.recv_data(), Message::text("still serving"), "{rt:?}");

        // The stalled one got the server's first flight, then is let go at
        // the handshake deadline (with nothing more: no alert, no reset
        // needed).
        let mut flight = Vec::new();
        let end = stalled.read_to_end(&mut flight);
        let held = stalled_at.elapsed();
        assert!(!flight.is_empty(), "{rt:?}: the server's handshake flight");
        assert!(end.is_ok(), "{rt:?}: a clean TCP end: {end:?}");
        assert!(
            held >= timeout - Duration::from_millis(100) && held < timeout + Duration::from_secs(3),
            "{rt:?}: dropped after {held:?}, handshake timeout {timeout:?}"
        );

        // And the server still serves after both.
        ok.send(&Message::text("after"));
        assert_eq!(ok.recv_data(), Message::text("after"), "{rt:?}");
        let mut late = WssClient::connect(server.addr(), "/", &pki);
        late.send(&Message::text("late"));
        assert_eq!(late.recv_data(), Message::text("late"), "{rt:?}");
        ok.close_expecting_close_notify(rt);
        late.close_expecting_close_notify(rt);
        server.shutdown();
    }
}

#[test]
fn a_client_from_another_ca_fails_its_handshake_and_the_server_keeps_serving() {
    let pki = pki();
    let stranger = self::pki();
    for rt in RUNTIMES {
        let server = start(rt, ServerMode::Echo, &pki, Config::default());
        // This client trusts another CA: it refuses our certificate (and
        // tells the server with an alert).
        let tcp = TcpStream::connect(server.addr()).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let conn = ClientConnection::new(
            stranger.client.clone(),
            ServerName::try_from("localhost").unwrap(),
        )
        .unwrap();
        let mut tls = StreamOwned::new(conn, tcp);
        let err = loop {
            match tls.conn.complete_io(&mut tls.sock) {
                Ok(_) if tls.conn.is_handshaking() => {}
                Ok(_) => panic!("{rt:?}: a stranger's handshake succeeded"),
                Err(e) => break e,
            }
        };
        let inner = err
            .get_ref()
            .and_then(|e| e.downcast_ref::<rustls::Error>());
        assert!(
            matches!(inner, Some(rustls::Error::InvalidCertificate(_))),
            "{rt:?}: {err}"
        );
        drop(tls);
        let mut ws = WssClient::connect(server.addr(), "/", &pki);
        ws.send(&Message::text("fine"));
        assert_eq!(ws.recv_data(), Message::text("fine"), "{rt:?}");
        ws.close_expecting_close_notify(rt);
        server.shutdown();
    }
}

#[test]
fn shutdown_closes_wss_clients_with_1001_then_close_notify() {
    let pki = pki();
    for rt in RUNTIMES {
        let server = start(rt, ServerMode::Chat, &pki, Config::default());
        let mut client = WssClient::connect(server.addr(), "/ws", &pki);
        server.wait_for_clients(1);
        let waiter = std::thread::spawn(move || {
            server.shutdown();
            server
        });
        let close = loop {
            match client.recv() {
                Ok(Message::Close(frame)) => break frame,
                Ok(_) => {}
                Err(e) => panic!("{rt:?}: {e}"),
            }
        };
        assert_eq!(close.map(|f| f.code), Some(CloseCode::GOING_AWAY), "{rt:?}");
        // Our reply went out with the next flush (in recv); the server
        // then ends the TLS stream cleanly.
        let mut buf = [0u8; 64];
        match client.tls.read(&mut buf) {
            Ok(0) => {}
            other => panic!("{rt:?}: no close_notify after 1001: {other:?}"),
        }
        waiter.join().unwrap();
    }
}
