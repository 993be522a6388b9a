//! The demo server's two behaviours, written on the public [`Handler`] API
//! like any user's server: [`Echo`] and [`Chat`] (with rooms).
//! [`ServerMode`] is a shortcut that picks one of them.

use std::net::SocketAddr;
use std::sync::Arc;

use crate::handshake::Request;
use crate::message::Message;
use crate::server::handler::{Handler, PlainResponse, Refusal, Socket, Upgrade};
use crate::server::registry::Registry;
use crate::server::site::{INDEX_HTML, ServerMode};

/// Where the demo answers how many clients are connected, for its test
/// page: `GET /clients` gives `{"clients":N}` (the whole cluster's count
/// when the server is part of one). Plain HTTP beside the WebSocket, so the
/// chat's messages stay exactly what clients sent (no presence messages
/// mixed into the chat stream).
pub const CLIENTS_PATH: &str = "/clients";

/// The answer to [`CLIENTS_PATH`], or `None` for any other request.
fn clients(req: &Request, registry: &Registry) -> Option<PlainResponse> {
    if req.path() != CLIENTS_PATH {
        return None;
    }
    let n = registry
        .cluster_client_count()
        .unwrap_or_else(|| registry.client_count());
    Some(PlainResponse::json(format!("{{\"clients\":{n}}}")).header("Cache-Control", "no-store"))
}

/// Sends every message back to its sender. Every path is an endpoint (as
/// the Autobahn suite expects); the test page is served at `/`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Echo;

impl Handler for Echo {
    type State = ();

    fn page(&self) -> Option<&str> {
        Some(INDEX_HTML)
    }

    fn on_request(
        &self,
        req: &Request,
        _: SocketAddr,
        registry: &Registry,
    ) -> Option<PlainResponse> {
        clients(req, registry)
    }

    fn on_upgrade(&self, _: &Request, _: SocketAddr) -> Result<Upgrade<()>, Refusal> {
        Ok(Upgrade::new(()))
    }

    fn on_message(&self, ws: &mut Socket<'_>, _: &mut (), msg: Message) {
        // Fails only once the connection is closing: nothing to echo to then.
        let _ = ws.send(&msg);
    }
}

/// The topic of a chat client that names no room.
pub const LOBBY: &str = "lobby";

/// The longest room name, in bytes.
pub const MAX_ROOM_LEN: usize = 64;

/// A chat with rooms: `/ws` joins the lobby, `/ws?room=NAME` joins room
/// `NAME` (a topic); every message reaches everyone in the sender's room,
/// the sender too, and no one else. The test page is served at `/`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Chat;

impl Handler for Chat {
    /// The room (topic) of the connection.
    type State = Arc<str>;

    fn is_endpoint(&self, path: &str) -> bool {
        path == "/ws"
    }

    fn page(&self) -> Option<&str> {
        Some(INDEX_HTML)
    }

    fn on_request(
        &self,
        req: &Request,
        _: SocketAddr,
        registry: &Registry,
    ) -> Option<PlainResponse> {
        clients(req, registry)
    }

    fn on_upgrade(&self, req: &Request, _: SocketAddr) -> Result<Upgrade<Arc<str>>, Refusal> {
        match room_of(req.query()) {
            Some(room) => Ok(Upgrade::new(room.into())),
            None => Err(Refusal::new(400).body(format!(
                "invalid room: 1 to {MAX_ROOM_LEN} bytes of UTF-8 without control characters\n"
            ))),
        }
    }

    fn on_open(&self, ws: &mut Socket<'_>, room: &mut Arc<str>) {
        ws.subscribe(room);
    }

    fn on_message(&self, ws: &mut Socket<'_>, room: &mut Arc<str>, msg: Message) {
        // Cannot fail: `msg` is text or binary.
        let _ = ws.publish(room, &msg);
    }
}

/// The room a chat query names: the percent-decoded value of its `room`
/// parameter, [`LOBBY`] without one, `None` if it is not a valid name.
pub fn room_of(query: Option<&str>) -> Option<String> {
    let Some(raw) = query
        .into_iter()
        .flat_map(|q| q.split('&'))
        .find_map(|pair| pair.strip_prefix("room="))
    else {
        return Some(LOBBY.to_owned());
    };
    let room = percent_decode(raw)?;
    let valid =
        !room.is_empty() && room.len() <= MAX_ROOM_LEN && !room.chars().any(char::is_control);
    valid.then_some(room)
}

/// Decodes `%XX` escapes and `+` (a space, as forms and
/// `URLSearchParams` write it); `None` for a bad escape or invalid UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let mut out = Vec::with_capacity(s.len());
    let mut bytes = s.bytes();
    while let Some(b) = bytes.next() {
        out.push(match b {
            b'+' => b' ',
            b'%' => {
                let hi = (bytes.next()? as char).to_digit(16)?;
                let lo = (bytes.next()? as char).to_digit(16)?;
                (hi * 16 + lo) as u8
            }
            b => b,
        });
    }
    String::from_utf8(out).ok()
}

/// The demo modes as one handler: the state is the chat room (`None` in
/// echo mode).
impl Handler for ServerMode {
    type State = Option<Arc<str>>;

    fn is_endpoint(&self, path: &str) -> bool {
        match self {
            ServerMode::Echo => Echo.is_endpoint(path),
            ServerMode::Chat => Chat.is_endpoint(path),
        }
    }

    fn page(&self) -> Option<&str> {
        Some(INDEX_HTML)
    }

    fn on_request(
        &self,
        req: &Request,
        _: SocketAddr,
        registry: &Registry,
    ) -> Option<PlainResponse> {
        clients(req, registry)
    }

    fn on_upgrade(&self, req: &Request, peer: SocketAddr) -> Result<Upgrade<Self::State>, Refusal> {
        match self {
            ServerMode::Echo => Echo.on_upgrade(req, peer).map(|up| up.map_state(|()| None)),
            ServerMode::Chat => Chat.on_upgrade(req, peer).map(|up| up.map_state(Some)),
        }
    }

    fn on_open(&self, ws: &mut Socket<'_>, state: &mut Self::State) {
        if let Some(room) = state {
            Chat.on_open(ws, room);
        }
    }

    fn on_message(&self, ws: &mut Socket<'_>, state: &mut Self::State, msg: Message) {
        match state {
            Some(room) => Chat.on_message(ws, room, msg),
            None => Echo.on_message(ws, &mut (), msg),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_demo_handlers_serve_the_test_page_and_chat_only_upgrades_on_ws() {
        for page in [
            Echo.page(),
            Chat.page(),
            ServerMode::Echo.page(),
            ServerMode::Chat.page(),
        ] {
            assert_eq!(page, Some(INDEX_HTML));
        }
        assert!(Chat.is_endpoint("/ws") && !Chat.is_endpoint("/") && !Chat.is_endpoint("/ws/x"));
        assert!(Echo.is_endpoint("/") && Echo.is_endpoint("/anything"));
        assert!(ServerMode::Chat.is_endpoint("/ws") && !ServerMode::Chat.is_endpoint("/"));
        assert!(ServerMode::Echo.is_endpoint("/x"));
    }

    #[test]
    fn server_mode_upgrades_into_its_handlers_state() {
        let req = |target: &str| {
            let raw = format!(
                "GET {target} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                 Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
            );
            crate::handshake::ServerHandshake::new()
                .feed(raw.as_bytes())
                .unwrap()
                .unwrap()
        };
        let peer: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let room =
            |mode: ServerMode, target: &str| mode.on_upgrade(&req(target), peer).map(|up| up.state);
        assert_eq!(
            room(ServerMode::Chat, "/ws").unwrap().as_deref(),
            Some(LOBBY)
        );
        assert_eq!(
            room(ServerMode::Chat, "/ws?room=dev").unwrap().as_deref(),
            Some("dev")
        );
        assert_eq!(
            room(ServerMode::Chat, "/ws?room=").unwrap_err().status(),
            400
        );
        assert_eq!(
            room(ServerMode::Echo, "/ws?room=dev").unwrap(),
            None,
            "echo has no room"
        );
    }

    #[test]
    fn a_query_without_a_room_is_the_lobby() {
        assert_eq!(room_of(None).as_deref(), Some(LOBBY));
        assert_eq!(room_of(Some("x=1")).as_deref(), Some(LOBBY));
    }

    #[test]
    fn room_names_are_percent_decoded_and_checked() {
        assert_eq!(room_of(Some("a=1&room=dev")).as_deref(), Some("dev"));
        assert_eq!(
            room_of(Some("room=caf%C3%A9+bar")).as_deref(),
            Some("café bar")
        );
        assert_eq!(room_of(Some("room=")), None, "empty");
        assert_eq!(room_of(Some("room=%0A")), None, "control character");
        assert_eq!(room_of(Some("room=%FF")), None, "not UTF-8");
        assert_eq!(room_of(Some("room=%4")), None, "short escape");
        assert_eq!(room_of(Some("room=%zz")), None, "bad escape");
        let longest = "r".repeat(MAX_ROOM_LEN);
        assert_eq!(
            room_of(Some(&format!("room={longest}"))),
            Some(longest.clone())
        );
        assert_eq!(room_of(Some(&format!("room={longest}r"))), None, "too long");
    }
}
