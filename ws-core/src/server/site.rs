//! What the runtime adapters share to serve the demo: the test page and the
//! HTTP routing decision, so each adapter only moves bytes.

use bytes::Bytes;

use std::net::SocketAddr;

use crate::config::Config;
use crate::deflate::DeflateParams;
use crate::handshake::Request;
use crate::handshake::response::{ResponseHead, build_response};
use crate::server::handler::{Handler, internal_error};

/// The browser test page: a WebSocket client for `/ws` on the same host,
/// with `#status`, `#input`, `#send` and `#messages` elements.
pub const INDEX_HTML: &str = include_str!("site/index.html");

/// Which demo server is running: a shortcut for the two handlers the demo
/// is built from, [`Echo`](crate::server::demo::Echo) and
/// [`Chat`](crate::server::demo::Chat) (`ServerMode` is itself a
/// [`Handler`] that delegates to them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ServerMode {
    /// Echo server: an upgrade on any path is accepted (autobahn-style).
    Echo,
    /// Chat server: the page at `/`, the WebSocket endpoint at `/ws`, rooms
    /// with `/ws?room=NAME`.
    Chat,
}

/// What an adapter must do with a parsed request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route<S> {
    /// Write `response` (the 101), then speak WebSocket on the connection,
    /// with the handler's per-connection `state`.
    Upgrade {
        /// The `101 Switching Protocols` response bytes.
        response: Bytes,
        /// What the handler's `on_upgrade` made for this connection.
        state: S,
        /// The permessage-deflate parameters the 101 agreed on (see
        /// [`route_with_config`]), for [`Config::negotiated_deflate`].
        deflate: Option<DeflateParams>,
    },
    /// Write `response`, then close the TCP connection.
    Respond {
        /// A complete HTTP/1.1 response with `Connection: close`.
        response: Bytes,
    },
}

impl<S> Route<S> {
    /// The bytes to write, whichever the route.
    pub fn response(&self) -> &Bytes {
        match self {
            Self::Upgrade { response, .. } | Self::Respond { response } => response,
        }
    }

    /// Whether the connection continues as a WebSocket.
    pub fn is_upgrade(&self) -> bool {
        matches!(self, Self::Upgrade { .. })
    }
}

/// Decide how to answer `req` from `peer` so every adapter follows the same
/// HTTP rules.
///
/// - Any method but `GET`/`HEAD` → 405 (`Allow: GET, HEAD`).
/// - `GET /` or `/index.html` without upgrade headers → 200 with the
///   handler's [`page`](Handler::page) if it has one (`HEAD` gets the
///   headers only).
/// - An upgrade request on one of the handler's
///   [endpoints](Handler::is_endpoint) is validated (an invalid one gets its
///   own error response, e.g. 400, or 426 with `Sec-WebSocket-Version: 13`,
///   see [`HandshakeError::response`]) and then put to the handler's
///   [`on_upgrade`](Handler::on_upgrade): accepted with its state and
///   options, or refused with its status and body.
/// - A plain request on an endpoint → 426; anything else → 404.
///
/// [`HandshakeError::response`]: crate::handshake::HandshakeError::response
pub fn route<H: Handler>(req: &Request, handler: &H, peer: SocketAddr) -> Route<H::State> {
    route_with_config(req, handler, peer, &Config::default())
}

/// [`route`], negotiating permessage-deflate by `config`'s
/// [policy](Config::deflate); an upgrade carries what was agreed on.
pub fn route_with_config<H: Handler>(
    req: &Request,
    handler: &H,
    peer: SocketAddr,
    config: &Config,
) -> Route<H::State> {
    let head_only = req.method() == "HEAD";
    if req.method() != "GET" && !head_only {
        return respond(405, &[("Allow", "GET, HEAD")], "method not allowed\n", true);
    }
    let path = req.path();
    let is_page = path == "/" || path == "/index.html";
    let endpoint = handler.is_endpoint(path);
    let body = !head_only;
    if req.is_upgrade() {
        if !endpoint {
            return respond(404, &[], "not found\n", body);
        }
        if let Err(e) = req.validate_upgrade() {
            return Route::Respond {
                response: e.response(),
            };
        }
        return match handler.on_upgrade(req, peer) {
            Ok(up) => match req.accept_with_config(&up.accept, config.clone()) {
                Ok((response, config)) => Route::Upgrade {
                    response,
                    state: up.state,
                    deflate: config.get_negotiated_deflate().copied(),
                },
                // The request was valid: the handler's options were not.
                Err(_) => Route::Respond {
                    response: internal_error(),
                },
            },
            Err(refusal) => Route::Respond {
                response: refusal.response(),
            },
        };
    }
    if let (true, Some(page)) = (is_page, handler.page()) {
        return Route::Respond {
            response: build_response(ResponseHead {
                status: 200,
                content_type: "text/html; charset=utf-8",
                headers: &[],
                body: page.as_bytes(),
                include_body: body,
            }),
        };
    }
    if endpoint {
        return respond(
            426,
            crate::handshake::response::UPGRADE_REQUIRED,
            "this endpoint only speaks WebSocket\n",
            body,
        );
    }
    respond(404, &[], "not found\n", body)
}

fn respond<S>(status: u16, headers: &[(&str, &str)], text: &str, include_body: bool) -> Route<S> {
    Route::Respond {
        response: build_response(ResponseHead {
            status,
            content_type: "text/plain; charset=utf-8",
            headers,
            body: text.as_bytes(),
            include_body,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handshake::ServerHandshake;
    use crate::server::handler::{Refusal, Upgrade};

    const PEER: SocketAddr = SocketAddr::V4(std::net::SocketAddrV4::new(
        std::net::Ipv4Addr::LOCALHOST,
        40000,
    ));

    const UPGRADE_HEADERS: &str = "Host: localhost:9001\r\nUpgrade: websocket\r\n\
        Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
        Sec-WebSocket-Version: 13\r\n";

    fn req(method: &str, target: &str, headers: &str) -> Request {
        let raw = format!("{method} {target} HTTP/1.1\r\n{headers}\r\n");
        ServerHandshake::new()
            .feed(raw.as_bytes())
            .unwrap()
            .unwrap()
    }

    fn plain(method: &str, target: &str) -> Request {
        req(method, target, "Host: localhost:9001\r\n")
    }

    fn upgrade(target: &str) -> Request {
        req("GET", target, UPGRADE_HEADERS)
    }

    fn go(r: &Request, mode: ServerMode) -> Route<Option<std::sync::Arc<str>>> {
        route(r, &mode, PEER)
    }

    fn text<S>(route: &Route<S>) -> &str {
        std::str::from_utf8(route.response()).unwrap()
    }

    fn status_of<S>(route: &Route<S>) -> &str {
        &text(route)[9..12]
    }

    #[test]
    fn index_html_has_the_ids_the_browser_test_uses() {
        for id in [
            r#"id="status""#,
            r#"id="input""#,
            r#"id="send""#,
            r#"id="messages""#,
        ] {
            assert!(INDEX_HTML.contains(id), "missing {id}");
        }
        assert!(INDEX_HTML.contains("'/ws'") || INDEX_HTML.contains("\"/ws\""));
        assert!(!INDEX_HTML.contains("innerHTML ="));
        assert!(!INDEX_HTML.contains("http://") && !INDEX_HTML.contains("https://"));
    }

    #[test]
    fn chat_root_serves_page() {
        for target in ["/", "/index.html", "/?x=1"] {
            let r = go(&plain("GET", target), ServerMode::Chat);
            assert!(!r.is_upgrade());
            let t = text(&r);
            assert!(t.starts_with("HTTP/1.1 200 OK\r\n"), "{target}");
            assert!(t.contains("\r\nContent-Type: text/html; charset=utf-8\r\n"));
            assert!(t.contains(&format!("\r\nContent-Length: {}\r\n", INDEX_HTML.len())));
            assert!(t.contains("\r\nConnection: close\r\n"));
            assert!(t.ends_with(INDEX_HTML));
        }
    }

    #[test]
    fn head_gets_page_headers_without_body() {
        let r = go(&plain("HEAD", "/"), ServerMode::Chat);
        let t = text(&r);
        assert!(t.starts_with("HTTP/1.1 200 OK\r\n"));
        assert!(t.contains(&format!("\r\nContent-Length: {}\r\n", INDEX_HTML.len())));
        assert!(t.ends_with("\r\n\r\n"));
    }

    #[test]
    fn chat_ws_upgrade_is_accepted() {
        let r = go(&upgrade("/ws"), ServerMode::Chat);
        assert!(r.is_upgrade());
        assert!(text(&r).starts_with("HTTP/1.1 101 Switching Protocols\r\n"));
        assert!(text(&r).contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"));
    }

    #[test]
    fn chat_plain_get_ws_is_426_with_upgrade_header() {
        let r = go(&plain("GET", "/ws"), ServerMode::Chat);
        assert!(!r.is_upgrade());
        assert_eq!(status_of(&r), "426");
        assert!(text(&r).contains("\r\nUpgrade: websocket\r\n"));
        assert!(text(&r).contains("\r\nSec-WebSocket-Version: 13\r\n"));
    }

    #[test]
    fn chat_bad_version_upgrade_is_426() {
        let r = go(
            &req(
                "GET",
                "/ws",
                &UPGRADE_HEADERS.replace("Version: 13", "Version: 8"),
            ),
            ServerMode::Chat,
        );
        assert_eq!(status_of(&r), "426");
        assert!(text(&r).contains("\r\nSec-WebSocket-Version: 13\r\n"));
    }

    #[test]
    fn chat_upgrade_without_key_is_400() {
        let headers =
            UPGRADE_HEADERS.replace("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n", "");
        let r = go(&req("GET", "/ws", &headers), ServerMode::Chat);
        assert_eq!(status_of(&r), "400");
    }

    #[test]
    fn chat_other_paths_are_404() {
        assert_eq!(
            status_of(&go(&plain("GET", "/nope"), ServerMode::Chat)),
            "404"
        );
        assert_eq!(status_of(&go(&upgrade("/other"), ServerMode::Chat)), "404");
        assert_eq!(status_of(&go(&upgrade("/"), ServerMode::Chat)), "404");
    }

    #[test]
    fn non_get_is_405_in_both_modes() {
        for mode in [ServerMode::Chat, ServerMode::Echo] {
            let r = go(&plain("POST", "/"), mode);
            assert_eq!(status_of(&r), "405");
            assert!(text(&r).contains("\r\nAllow: GET, HEAD\r\n"));
        }
    }

    #[test]
    fn echo_upgrades_on_any_path() {
        for target in ["/", "/ws", "/anything?x=1"] {
            assert!(
                go(&upgrade(target), ServerMode::Echo).is_upgrade(),
                "{target}"
            );
        }
    }

    #[test]
    fn echo_plain_root_serves_page() {
        let r = go(&plain("GET", "/"), ServerMode::Echo);
        assert!(text(&r).starts_with("HTTP/1.1 200 OK\r\n"));
        assert!(text(&r).ends_with(INDEX_HTML));
    }

    #[test]
    fn echo_plain_other_path_is_426() {
        let r = go(&plain("GET", "/ws"), ServerMode::Echo);
        assert_eq!(status_of(&r), "426");
        assert!(text(&r).contains("\r\nSec-WebSocket-Version: 13\r\n"));
    }

    #[test]
    fn echo_invalid_upgrade_gets_its_error_status() {
        let headers = UPGRADE_HEADERS.replace("Connection: Upgrade\r\n", "");
        let r = go(&req("GET", "/", &headers), ServerMode::Echo);
        assert_eq!(status_of(&r), "400");
    }

    /// Accepts with a subprotocol and a header when the query has
    /// `token=good`; refuses 401 otherwise; any path is an endpoint.
    struct Gate;

    impl Handler for Gate {
        type State = SocketAddr;

        fn on_upgrade(
            &self,
            req: &Request,
            peer: SocketAddr,
        ) -> Result<Upgrade<SocketAddr>, Refusal> {
            match req.query() {
                Some("token=good") => {
                    Ok(Upgrade::new(peer).subprotocol("chat").header("X-Ok", "1"))
                }
                Some("token=bad-header") => {
                    Ok(Upgrade::new(peer).header("Sec-WebSocket-Accept", "x"))
                }
                _ => Err(Refusal::unauthorized()),
            }
        }

        fn on_message(
            &self,
            _: &mut crate::server::handler::Socket<'_>,
            _: &mut SocketAddr,
            _: crate::Message,
        ) {
        }
    }

    #[test]
    fn the_handlers_upgrade_options_and_state_are_applied() {
        let r = req(
            "GET",
            "/feed?token=good",
            &format!("{UPGRADE_HEADERS}Sec-WebSocket-Protocol: chat\r\n"),
        );
        let routed = route(&r, &Gate, PEER);
        assert!(text(&routed).contains("\r\nSec-WebSocket-Protocol: chat\r\n"));
        assert!(text(&routed).contains("\r\nX-Ok: 1\r\n"));
        match routed {
            Route::Upgrade { state, .. } => assert_eq!(state, PEER),
            Route::Respond { .. } => panic!("refused"),
        }
    }

    #[test]
    fn a_refusal_is_answered_with_its_status_headers_and_body() {
        let routed = route(&upgrade("/feed?token=no"), &Gate, PEER);
        assert_eq!(status_of(&routed), "401");
        assert!(text(&routed).contains("\r\nWWW-Authenticate: Bearer\r\n"));
        assert!(text(&routed).ends_with("\r\n\r\nunauthorized\n"));
    }

    #[test]
    fn an_invalid_upgrade_never_reaches_the_handler_and_a_bad_accept_is_500() {
        let headers = UPGRADE_HEADERS.replace("Connection: Upgrade\r\n", "");
        let r = route(&req("GET", "/feed?token=good", &headers), &Gate, PEER);
        assert_eq!(status_of(&r), "400");
        let r = route(&upgrade("/feed?token=bad-header"), &Gate, PEER);
        assert_eq!(status_of(&r), "500");
    }

    #[test]
    fn a_handler_without_a_page_answers_426_at_root() {
        assert_eq!(status_of(&route(&plain("GET", "/"), &Gate, PEER)), "426");
    }
}
