//! One surface, checked: the same program, written once in the macro below,
//! against every runtime's crate (tokio, async-std, smol, blocking). Every
//! public item of the shared surface is named here, so a missing item or a
//! different signature fails to compile on that runtime, and the program
//! asserts the shared semantics (not connected, end of stream, broadcast,
//! split, close, shutdown) so a different behaviour fails the test.
//!
//! The async runtimes run the body with `.await` after each call; the
//! blocking one runs the same tokens without it.

use std::time::{Duration, Instant};

/// Waits (bounded) until `f` holds.
fn wait_until(what: &str, f: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

macro_rules! surface {
    (
        $name:ident,
        rt = $($rt:ident)::+,
        krate = $krate:ident,
        tcp = $tcp:ty,
        client_io = $client_io:ty,
        block_on = $block_on:expr,
        [$($aw:tt)*]
    ) => {
        mod $name {
            use super::wait_until;
            use std::time::Duration;
            use $($rt)::+::{Client, Server, ServerHandle, connect, connect_tls, connect_with};
            use $krate::{
                BroadcastReport, ClientId, CloseCode, Config, ConnectionHandle, Error,
                FlowControl, Handler, HubStats, Message, MaybeTls, ServerMode, WebSocketStream,
                WsReader, WsWriter,
            };
            use $krate::tls::{TlsError, TlsErrorKind};
            use $krate::handler::{Chat, Echo, Refusal, Request, Socket, Upgrade};

            #[test]
            fn every_item_of_the_surface_is_here_and_behaves_alike() {
                // The handshake entry points exist with the same shape
                // (their behaviour is pinned by the shared suite).
                let _ = $krate::accept::<$tcp>;
                let _ = $krate::client_handshake::<$tcp>;
                let _ = Server::<ServerMode>::run;
                let _ = || Server::with_handler("127.0.0.1:0", Echo);
                let _ = || Server::with_handler("127.0.0.1:0", Chat);
                fn handler_items<H: Handler>(_: &Request, _: &mut Socket<'_>, _: Upgrade<H::State>, _: Refusal, _: ConnectionHandle) {}
                let _ = handler_items::<Echo>;
                let _ = Client::run_interactive;
                // wss:// (exercised by tests/tls_client.rs).
                let _ = |c: Config, t| connect_tls("wss://h/", c, t);
                // A request of the `http` crate, on every runtime.
                let _ = |r: $krate::http::Request<()>| connect(r);
                let _ = |r: $krate::http::Request<()>, c: Config| connect_with(r, c);
                let _ = |c: Client| c.with_tls($krate::tls::client_config($krate::tls::rustls::RootCertStore::empty()));
                let _ = |s: &MaybeTls<$tcp>| s.is_tls();
                let _ = |e: &Error| TlsError::find(e).map(TlsError::kind) == Some(TlsErrorKind::NameMismatch);
                let _ = WebSocketStream::<$tcp>::from_raw;

                #[allow(clippy::redundant_closure_call)]
                $block_on(async {
                    let flow = FlowControl::default().slow_client_timeout(Duration::from_secs(2));
                    let server: ServerHandle = Server::new("127.0.0.1:0")
                        .mode(ServerMode::Chat)
                        .config(Config::default())
                        .flow_control(flow)
                        .start()
                        $($aw)*
                        .unwrap();
                    let url = format!("ws://{}/ws", server.local_addr());

                    // Not connected: sending fails with Closed, receiving ends.
                    let mut client = Client::new(&url).unwrap().with_config(Config::default());
                    assert!(matches!(client.send_message("x") $($aw)*, Err(Error::Closed)));
                    assert!(client.recv() $($aw)*.is_none());
                    client.connect() $($aw)*.unwrap();
                    wait_until("one client", || server.client_count() == 1);

                    client.send_message("hello") $($aw)*.unwrap();
                    assert_eq!(client.recv() $($aw)*.unwrap().unwrap(), Message::text("hello"));
                    client.send_binary(&[1, 2]) $($aw)*.unwrap();
                    assert_eq!(client.recv() $($aw)*.unwrap().unwrap(), Message::binary(vec![1, 2]));
                    client.ping(b"p") $($aw)*.unwrap();
                    assert_eq!(client.recv() $($aw)*.unwrap().unwrap(), Message::Pong("p".into()));

                    // The stream.
                    let (mut ws, _response) = connect_with(&url, Config::default()) $($aw)*.unwrap();
                    wait_until("two clients", || server.client_count() == 2);
                    ws.send_text("a") $($aw)*.unwrap();
                    ws.send_binary(b"b") $($aw)*.unwrap();
                    ws.feed(Message::text("c")) $($aw)*.unwrap();
                    ws.flush() $($aw)*.unwrap();
                    ws.send(Message::text("d")) $($aw)*.unwrap();
                    let sent = [
                        Message::text("a"),
                        Message::binary(&b"b"[..]),
                        Message::text("c"),
                        Message::text("d"),
                    ];
                    for m in &sent {
                        assert_eq!(&ws.recv() $($aw)*.unwrap().unwrap(), m);
                        assert_eq!(&client.recv() $($aw)*.unwrap().unwrap(), m);
                    }
                    assert!(ws.connection().close_sent() == false);
                    let _ = ws.get_ref();
                    let _ = ws.get_mut();

                    // Broadcasts from the application, and the hub's view.
                    let report: BroadcastReport =
                        server.broadcast(&Message::text("all")) $($aw)*.unwrap();
                    assert_eq!((report.delivered, report.dropped.len()), (2, 0));
                    assert_eq!(ws.recv() $($aw)*.unwrap().unwrap(), Message::text("all"));
                    assert_eq!(client.recv() $($aw)*.unwrap().unwrap(), Message::text("all"));
                    // Topics (the chat's lobby), one client by id, handles.
                    assert_eq!(server.topic_count("lobby"), 2);
                    assert_eq!(server.topics(), vec![("lobby".to_string(), 2)]);
                    let report = server.publish("lobby", &Message::text("room")) $($aw)*.unwrap();
                    assert_eq!(report.delivered, 2);
                    assert_eq!(ws.recv() $($aw)*.unwrap().unwrap(), Message::text("room"));
                    assert_eq!(client.recv() $($aw)*.unwrap().unwrap(), Message::text("room"));
                    let first = ClientId(1);
                    let handle: ConnectionHandle = server.connection(first).unwrap();
                    assert_eq!(handle.id(), first);
                    assert_eq!(handle.topics(), vec!["lobby".to_string()]);
                    server.send_to(first, &Message::text("dm")).unwrap();
                    assert_eq!(client.recv() $($aw)*.unwrap().unwrap(), Message::text("dm"));
                    assert!(matches!(server.send_to(ClientId(99), &Message::text("x")), Err(Error::Closed)));
                    assert!(matches!(server.close(ClientId(99), CloseCode::NORMAL, ""), Err(Error::Closed)));
                    let stats: HubStats = server.stats();
                    assert_eq!((stats.clients, stats.stalled, stats.dropped_slow), (2, 0, 0));
                    assert!(matches!(
                        server.broadcast(&Message::Ping("x".into())) $($aw)*,
                        Err(Error::InvalidMessage(_))
                    ));

                    // Split: the writer sends, the reader reads; the close
                    // comes back to the reader, then the end.
                    let (mut reader, mut writer): (WsReader<$client_io>, WsWriter<$client_io>) = ws.split();
                    writer.send_text("split") $($aw)*.unwrap();
                    writer.send(Message::text("split 2")) $($aw)*.unwrap();
                    assert_eq!(reader.recv() $($aw)*.unwrap().unwrap(), Message::text("split"));
                    assert_eq!(reader.recv() $($aw)*.unwrap().unwrap(), Message::text("split 2"));
                    assert_eq!(client.recv() $($aw)*.unwrap().unwrap(), Message::text("split"));
                    assert_eq!(client.recv() $($aw)*.unwrap().unwrap(), Message::text("split 2"));
                    writer.close(CloseCode::NORMAL, "bye") $($aw)*.unwrap();
                    assert!(matches!(reader.recv() $($aw)*, Some(Ok(Message::Close(_)))));
                    assert!(reader.recv() $($aw)*.is_none(), "the end of the stream is None");
                    assert!(matches!(writer.send_text("late") $($aw)*, Err(Error::Closed)));
                    wait_until("the split client gone", || server.client_count() == 1);

                    // The client's close, then the end.
                    client.close() $($aw)*.unwrap();
                    assert!(client.recv() $($aw)*.is_none());
                    assert!(matches!(client.send_message("late") $($aw)*, Err(Error::Closed)));

                    // URL errors are the same error.
                    assert!(matches!(connect("http://127.0.0.1:1/") $($aw)*, Err(Error::Url(_))));

                    server.shutdown() $($aw)*;
                    assert_eq!(server.client_count(), 0);
                });
            }
        }
    };
}

surface!(
    on_tokio,
    rt = ws_tokio,
    krate = ws_tokio,
    tcp = tokio::net::TcpStream,
    client_io = ws_tokio::MaybeTls<tokio::net::TcpStream>,
    block_on = |f| tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(f),
    [.await]
);
surface!(
    on_async_std,
    rt = ws_async_std,
    krate = ws_async_std,
    tcp = async_std::net::TcpStream,
    client_io = ws_async_std::MaybeTls<async_std::net::TcpStream>,
    block_on = async_std::task::block_on,
    [.await]
);
surface!(
    on_smol,
    rt = ws_async_std::smol,
    krate = ws_async_std,
    tcp = smol::net::TcpStream,
    client_io = ws_async_std::MaybeTls<smol::net::TcpStream>,
    block_on = smol::block_on,
    [.await]
);
surface!(
    on_blocking,
    rt = ws_blocking,
    krate = ws_blocking,
    tcp = std::net::TcpStream,
    client_io = ws_blocking::MaybeTls<std::net::TcpStream>,
    // Any executor: the blocking calls inside complete before it polls again.
    block_on = smol::block_on,
    []
);
