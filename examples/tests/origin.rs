//! `ws-server`'s `Origin` check on every runtime (tokio, async-std, smol,
//! blocking), over loopback sockets: the chat's default allows only pages
//! of its own host, `--allow-origin` allows exactly its list, a missing
//! `Origin` is allowed unless `--require-origin`, a refused upgrade gets 403,
//! and the server keeps serving everyone else.

mod support;

use std::net::SocketAddr;

use examples::{Runtime, origin_check};
use support::{RawClient, TestServer, raw_http};
use ws_core::Message;
use ws_core::server::hub::FlowControl;
use ws_core::server::site::ServerMode;

/// The status code of an upgrade of `/ws` carrying `origin` (if any).
fn upgrade_status(addr: SocketAddr, origin: Option<&str>) -> String {
    let origin = origin.map_or(String::new(), |o| format!("Origin: {o}\r\n"));
    let r = raw_http(
        addr,
        &format!(
            "GET /ws HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{origin}\r\n"
        ),
    );
    assert!(r.starts_with("HTTP/1.1 "), "{r}");
    r[9..12].to_owned()
}

/// A chat client still gets its own message back: the server kept serving.
fn chat_still_works(server: &TestServer) {
    let mut c = RawClient::connect(server.addr(), "/ws");
    c.send(&Message::text("still here"));
    assert_eq!(c.recv_data(), Message::text("still here"));
}

fn the_chat_default_allows_its_own_pages_only(rt: Runtime) {
    let handler = origin_check(ServerMode::Chat, &[], false).unwrap();
    let server = TestServer::start_handler(rt, handler, FlowControl::default());
    let addr = server.addr();
    let own = format!("http://{addr}");
    assert_eq!(upgrade_status(addr, Some(&own)), "101", "its own page");
    assert_eq!(
        upgrade_status(addr, Some(&format!("https://{addr}"))),
        "101",
        "its own page over https"
    );
    assert_eq!(upgrade_status(addr, Some("http://evil.example")), "403");
    let other_port = format!("http://127.0.0.1:{}", addr.port().wrapping_add(1).max(1));
    assert_eq!(upgrade_status(addr, Some(&other_port)), "403");
    assert_eq!(upgrade_status(addr, Some("null")), "403", "opaque origin");
    assert_eq!(
        upgrade_status(addr, None),
        "101",
        "a non-browser client sends no Origin"
    );
    chat_still_works(&server);
}

fn an_allow_list_allows_exactly_its_origins(rt: Runtime) {
    let allow = [
        "https://chat.example".to_owned(),
        "http://localhost:3000".to_owned(),
    ];
    let handler = origin_check(ServerMode::Chat, &allow, true).unwrap();
    let server = TestServer::start_handler(rt, handler, FlowControl::default());
    let addr = server.addr();
    assert_eq!(upgrade_status(addr, Some("https://chat.example")), "101");
    assert_eq!(
        upgrade_status(addr, Some("HTTPS://Chat.Example:443")),
        "101"
    );
    assert_eq!(upgrade_status(addr, Some("http://localhost:3000")), "101");
    assert_eq!(upgrade_status(addr, Some("http://chat.example")), "403");
    assert_eq!(
        upgrade_status(addr, Some(&format!("http://{addr}"))),
        "403",
        "a list replaces the same-host default"
    );
    assert_eq!(upgrade_status(addr, None), "403", "--require-origin");
    // The refusal carries a body that says why.
    let r = raw_http(
        addr,
        &format!(
            "GET /ws HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
             Origin: http://evil.example\r\n\r\n"
        ),
    );
    assert!(r.starts_with("HTTP/1.1 403 Forbidden\r\n"), "{r}");
    // The page itself is not an upgrade: it is served whatever the origin.
    let page = raw_http(addr, &format!("GET / HTTP/1.1\r\nHost: {addr}\r\n\r\n"));
    assert!(page.starts_with("HTTP/1.1 200 "), "{page}");
}

fn echo_allows_any_origin_by_default(rt: Runtime) {
    let handler = origin_check(ServerMode::Echo, &[], false).unwrap();
    let server = TestServer::start_handler(rt, handler, FlowControl::default());
    assert_eq!(
        upgrade_status(server.addr(), Some("http://anything.example")),
        "101"
    );
    assert_eq!(upgrade_status(server.addr(), None), "101");
}

#[test]
fn a_star_allows_any_origin_and_malformed_origins_are_refused_at_startup() {
    let any = origin_check(ServerMode::Chat, &["*".into()], true).unwrap();
    assert_eq!(any.inner(), &ServerMode::Chat);
    for bad in [
        "chat.example",
        "https://",
        "https://chat.example/path",
        "://x",
    ] {
        let err = origin_check(ServerMode::Chat, &[bad.into()], false).unwrap_err();
        assert!(err.contains(bad), "{err}");
    }
    assert!(origin_check(ServerMode::Chat, &["https://chat.example/".into()], false).is_ok());
}

macro_rules! suite {
    ($($module:ident => $rt:expr),* $(,)?) => {$(
        mod $module {
            use super::*;
            #[test] fn the_chat_default_allows_its_own_pages_only() { super::the_chat_default_allows_its_own_pages_only($rt) }
            #[test] fn an_allow_list_allows_exactly_its_origins() { super::an_allow_list_allows_exactly_its_origins($rt) }
            #[test] fn echo_allows_any_origin_by_default() { super::echo_allows_any_origin_by_default($rt) }
        }
    )*};
}

suite! {
    on_tokio => Runtime::Tokio,
    on_async_std => Runtime::AsyncStd,
    on_smol => Runtime::Smol,
    on_blocking => Runtime::Blocking,
}
