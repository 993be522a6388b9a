//! An authenticated notification feed, written on the public [`Handler`]
//! API: the `ws-notify` example binary runs it, and the shared suite tests
//! it on every runtime.
//!
//! A client connects to `/feed` with a token, either in an
//! `Authorization: Bearer TOKEN` header (what a server-side client sends)
//! or as `?token=TOKEN` (what a browser can send: its WebSocket API sets no
//! headers). An unknown or missing token is refused with 401 before the
//! upgrade, so an unauthenticated client never holds a WebSocket. A
//! connection is subscribed to its user's topic (`user:NAME`) and to
//! `all`; the application publishes to either with
//! `ServerHandle::publish`. The feed is read-only: a client that sends
//! anything is closed with 1008.

use std::collections::HashMap;
use std::net::SocketAddr;

use ws_core::handshake::Request;
use ws_core::server::{Handler, Refusal, Socket, Upgrade};
use ws_core::{CloseCode, Message};

/// The topic every feed connection is in.
pub const ALL: &str = "all";

/// The topic of one user's connections.
pub fn user_topic(user: &str) -> String {
    format!("user:{user}")
}

/// The feed handler: tokens and the users they stand for.
#[derive(Debug, Clone, Default)]
pub struct Feed {
    users: HashMap<String, String>,
}

impl Feed {
    /// A feed that knows no token yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Lets `token` in as `user`.
    pub fn token(mut self, token: impl Into<String>, user: impl Into<String>) -> Self {
        self.users.insert(token.into(), user.into());
        self
    }

    /// The user `req` authenticates as, if any.
    fn user_of(&self, req: &Request) -> Option<&String> {
        let header = req
            .header("Authorization")
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim);
        let query = req
            .query()
            .into_iter()
            .flat_map(|q| q.split('&'))
            .find_map(|p| p.strip_prefix("token="));
        header.or(query).and_then(|t| self.users.get(t))
    }
}

impl Handler for Feed {
    /// The authenticated user.
    type State = String;

    fn is_endpoint(&self, path: &str) -> bool {
        path == "/feed"
    }

    fn on_upgrade(&self, req: &Request, _peer: SocketAddr) -> Result<Upgrade<String>, Refusal> {
        match self.user_of(req) {
            Some(user) => Ok(Upgrade::new(user.clone())),
            None => Err(Refusal::unauthorized()),
        }
    }

    fn on_open(&self, ws: &mut Socket<'_>, user: &mut String) {
        ws.subscribe(&user_topic(user));
        ws.subscribe(ALL);
        let _ = ws.send(&Message::text(format!("hello {user}")));
    }

    fn on_message(&self, ws: &mut Socket<'_>, _: &mut String, _: Message) {
        let _ = ws.close(CloseCode::POLICY_VIOLATION, "the feed is read-only");
    }
}
