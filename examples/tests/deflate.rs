//! permessage-deflate on every runtime (tokio, async-std, smol, blocking),
//! over real loopback sockets: the decompression bomb is refused with 1009
//! before its memory is spent, each adapter's client and server negotiate
//! and echo compressed messages, and the chat shares one compressed
//! broadcast among its recipients.

mod support;

use examples::Runtime;
use support::{RawClient, TestServer};
use ws_core::server::hub::FlowControl;
use ws_core::server::site::ServerMode;
use ws_core::{CloseCode, Config, DeflateConfig, Message};

fn deflate(policy: DeflateConfig) -> Config {
    Config::default().deflate(policy)
}

fn server(rt: Runtime, mode: ServerMode, config: Config) -> TestServer {
    TestServer::start_with(rt, mode, FlowControl::default(), config, None)
}

/// A tiny compressed message that inflates to 64 MiB, against a 1 MiB
/// limit: the server closes with 1009, and keeps serving others.
fn bomb_is_refused_with_1009(rt: Runtime) {
    let limit = 1 << 20;
    let policy = DeflateConfig::enabled();
    let s = server(
        rt,
        ServerMode::Echo,
        deflate(policy).max_message_size(limit),
    );
    // The attacker's own limits do not matter: it only sends.
    let mut c = RawClient::connect_with(
        s.addr(),
        "/",
        deflate(policy.level(9)).max_frame_size(usize::MAX),
    );
    assert!(c.conn.config().get_negotiated_deflate().is_some());
    c.send(&Message::binary(vec![0u8; 64 << 20]));
    loop {
        match c.recv() {
            Ok(Message::Close(Some(f))) => {
                assert_eq!(f.code, CloseCode::MESSAGE_TOO_BIG);
                break;
            }
            Ok(m) if m.is_data() => panic!("the bomb came back"),
            Ok(_) => {}
            Err(e) => panic!("no close frame: {e}"),
        }
    }
    // A well-behaved client still gets its compressed echo.
    let mut ok = RawClient::connect_with(s.addr(), "/", deflate(policy));
    let text = Message::text("still serving ".repeat(100));
    ok.send(&text);
    assert_eq!(ok.recv_data(), text);
}

/// Each adapter's own client offers deflate to its own server, which
/// accepts; messages of every size echo back.
fn adapter_client_and_server_negotiate_and_echo(rt: Runtime) {
    let policy = DeflateConfig::enabled().client_max_window_bits(10);
    let s = server(rt, ServerMode::Echo, deflate(policy));
    let url = s.url("/");
    let msgs: Vec<Message> = [0usize, 10, 100, 5000, 200_000]
        .iter()
        .flat_map(|&n| {
            [
                Message::text("chat ".repeat(n / 5)),
                Message::binary((0..n).map(|i| (i % 7) as u8).collect::<Vec<_>>()),
            ]
        })
        .collect();
    let config = deflate(DeflateConfig::enabled());
    macro_rules! exchange {
        ($ws:path, $block_on:expr) => {{
            use $ws as ws;
            $block_on(async {
                let (mut stream, response) = ws::connect_with(&url, config.clone()).await.unwrap();
                let agreed = response.deflate().copied().expect("deflate accepted");
                for m in &msgs {
                    stream.send(m.clone()).await.unwrap();
                    loop {
                        let got = stream.recv().await.unwrap().unwrap();
                        if got.is_data() {
                            assert_eq!(&got, m);
                            break;
                        }
                    }
                }
                agreed
            })
        }};
    }
    let agreed = match rt {
        Runtime::Tokio => {
            let r = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            exchange!(ws_tokio, |f| r.block_on(f))
        }
        Runtime::AsyncStd => exchange!(ws_async_std, async_std::task::block_on),
        Runtime::Smol => exchange!(ws_async_std::smol, smol::block_on),
        Runtime::Blocking => {
            let (mut stream, response) = ws_blocking::connect_with(&url, config.clone()).unwrap();
            for m in &msgs {
                stream.send(m.clone()).unwrap();
                loop {
                    let got = stream.read().unwrap();
                    if got.is_data() {
                        assert_eq!(&got, m);
                        break;
                    }
                }
            }
            response.deflate().copied().expect("deflate accepted")
        }
    };
    // The server's policy limited the client's window.
    assert_eq!(agreed.client_max_window_bits, Some(10));
}

/// The chat with server_no_context_takeover: compressing and plain clients
/// all get every broadcast.
fn chat_broadcast_reaches_compressing_and_plain_clients(rt: Runtime) {
    let policy = DeflateConfig::enabled().server_no_context_takeover(true);
    let s = server(rt, ServerMode::Chat, deflate(policy));
    let mut clients = vec![
        RawClient::connect_with(s.addr(), "/ws", deflate(DeflateConfig::enabled())),
        RawClient::connect_with(s.addr(), "/ws", deflate(DeflateConfig::enabled())),
        RawClient::connect(s.addr(), "/ws"),
    ];
    s.wait_for_clients(3);
    let agreed = clients[0].conn.config().get_negotiated_deflate().copied();
    assert!(agreed.unwrap().server_no_context_takeover);
    assert!(clients[2].conn.config().get_negotiated_deflate().is_none());
    let text = Message::text(r#"{"from":"alice","text":"hello, room"}"#.repeat(20));
    clients[2].send(&text);
    for c in &mut clients {
        assert_eq!(c.recv_data(), text);
    }
}

macro_rules! suite {
    ($($module:ident => $rt:expr),* $(,)?) => {$(
        mod $module {
            use super::*;
            #[test] fn bomb_is_refused_with_1009() { super::bomb_is_refused_with_1009($rt) }
            #[test] fn adapter_client_and_server_negotiate_and_echo() { super::adapter_client_and_server_negotiate_and_echo($rt) }
            #[test] fn chat_broadcast_reaches_compressing_and_plain_clients() { super::chat_broadcast_reaches_compressing_and_plain_clients($rt) }
        }
    )*};
}

suite! {
    on_tokio => Runtime::Tokio,
    on_async_std => Runtime::AsyncStd,
    on_smol => Runtime::Smol,
    on_blocking => Runtime::Blocking,
}
