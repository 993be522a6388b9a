//! Which web pages may open a WebSocket to this server: an `Origin` check
//! in front of any [`Handler`], against cross-site WebSocket hijacking (a
//! page on another site opening a socket with the visitor's cookies).
//!
//! Browsers always send `Origin` on a WebSocket upgrade; other clients
//! (command-line tools, servers, the Autobahn suite) usually send none, so
//! whether a missing `Origin` is allowed is a separate choice.

use std::net::SocketAddr;

use crate::handshake::Request;
use crate::message::Message;
use crate::server::handler::{ConnectionHandle, Handler, Refusal, Socket, Upgrade};

/// Which origins are allowed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OriginPolicy {
    /// Any origin (no check).
    Any,
    /// Only a page served by this same host: the `Origin`'s host and port
    /// equal the request's `Host` (default ports ignored). The right default
    /// for a server that serves its own page, whatever address it is bound
    /// to.
    SameHost,
    /// Exactly these origins (`scheme://host[:port]`, compared
    /// case-insensitively, default ports ignored).
    List(Vec<String>),
}

/// A [`Handler`] that refuses upgrades from origins its [`OriginPolicy`]
/// does not allow (403, before the inner handler sees them) and otherwise
/// hands everything to the inner handler.
#[derive(Debug, Clone)]
pub struct AllowOrigins<H> {
    inner: H,
    policy: OriginPolicy,
    allow_missing: bool,
}

impl<H> AllowOrigins<H> {
    /// Wraps `inner` with `policy`; a request without `Origin` is allowed
    /// (see [`allow_missing`](Self::allow_missing)).
    pub fn new(inner: H, policy: OriginPolicy) -> Self {
        AllowOrigins {
            inner,
            policy,
            allow_missing: true,
        }
    }

    /// Whether an upgrade without an `Origin` header (a non-browser client)
    /// is allowed. Yes by default.
    pub fn allow_missing(mut self, allow: bool) -> Self {
        self.allow_missing = allow;
        self
    }

    /// The wrapped handler.
    pub fn inner(&self) -> &H {
        &self.inner
    }

    /// Whether `req`'s origin may upgrade.
    pub fn allows(&self, req: &Request) -> bool {
        let Some(origin) = req.origin() else {
            return self.allow_missing;
        };
        match &self.policy {
            OriginPolicy::Any => true,
            OriginPolicy::SameHost => match (authority_of(origin), req.host()) {
                (Some((scheme, authority)), Some(host)) => {
                    normalize(scheme, authority) == normalize(scheme, host)
                }
                _ => false,
            },
            OriginPolicy::List(allowed) => {
                let Some((scheme, authority)) = authority_of(origin) else {
                    return false;
                };
                let origin = (scheme.to_ascii_lowercase(), normalize(scheme, authority));
                allowed.iter().any(|a| {
                    authority_of(a)
                        .is_some_and(|(s, au)| (s.to_ascii_lowercase(), normalize(s, au)) == origin)
                })
            }
        }
    }
}

/// `("http", "host:port")` from `http://host:port` (a serialized origin has
/// no path; a trailing slash is tolerated).
fn authority_of(origin: &str) -> Option<(&str, &str)> {
    let (scheme, rest) = origin.split_once("://")?;
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    (!authority.is_empty() && !authority.contains('/')).then_some((scheme, authority))
}

/// The authority, lowercased, without the scheme's default port.
fn normalize(scheme: &str, authority: &str) -> String {
    let authority = authority.to_ascii_lowercase();
    let default = match scheme.to_ascii_lowercase().as_str() {
        "http" | "ws" => ":80",
        "https" | "wss" => ":443",
        _ => "",
    };
    match authority.strip_suffix(default) {
        Some(bare) if !default.is_empty() => bare.to_owned(),
        _ => authority,
    }
}

impl<H: Handler> Handler for AllowOrigins<H> {
    type State = H::State;

    fn is_endpoint(&self, path: &str) -> bool {
        self.inner.is_endpoint(path)
    }

    fn page(&self) -> Option<&str> {
        self.inner.page()
    }

    fn on_request(
        &self,
        req: &Request,
        peer: SocketAddr,
        registry: &crate::server::Registry,
    ) -> Option<crate::server::PlainResponse> {
        self.inner.on_request(req, peer, registry)
    }

    fn on_upgrade(&self, req: &Request, peer: SocketAddr) -> Result<Upgrade<H::State>, Refusal> {
        if !self.allows(req) {
            return Err(Refusal::new(403).body("origin not allowed\n"));
        }
        self.inner.on_upgrade(req, peer)
    }

    fn on_open(&self, ws: &mut Socket<'_>, state: &mut H::State) {
        self.inner.on_open(ws, state);
    }

    fn on_message(&self, ws: &mut Socket<'_>, state: &mut H::State, msg: Message) {
        self.inner.on_message(ws, state, msg);
    }

    fn on_close(
        &self,
        ws: &ConnectionHandle,
        state: H::State,
        code: crate::CloseCode,
        reason: &str,
    ) {
        self.inner.on_close(ws, state, code, reason);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handshake::ServerHandshake;
    use crate::server::demo::Echo;
    use crate::server::site::{Route, route};

    const PEER: SocketAddr = SocketAddr::V4(std::net::SocketAddrV4::new(
        std::net::Ipv4Addr::LOCALHOST,
        40000,
    ));

    fn upgrade(host: &str, origin: Option<&str>) -> Request {
        let origin = origin.map_or(String::new(), |o| format!("Origin: {o}\r\n"));
        let raw = format!(
            "GET /ws HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{origin}\r\n"
        );
        ServerHandshake::new()
            .feed(raw.as_bytes())
            .unwrap()
            .unwrap()
    }

    fn status(h: &AllowOrigins<Echo>, req: &Request) -> String {
        let r = route(req, h, PEER);
        if let Route::Upgrade { .. } = r {
            return "101".into();
        }
        String::from_utf8_lossy(&r.response()[9..12]).into_owned()
    }

    #[test]
    fn same_host_allows_the_page_of_this_host_and_refuses_others_with_403() {
        let h = AllowOrigins::new(Echo, OriginPolicy::SameHost);
        let host = "127.0.0.1:8080";
        assert_eq!(
            status(&h, &upgrade(host, Some("http://127.0.0.1:8080"))),
            "101"
        );
        assert_eq!(
            status(&h, &upgrade(host, Some("https://127.0.0.1:8080/"))),
            "101"
        );
        assert_eq!(
            status(&h, &upgrade("Example.com", Some("http://example.com:80"))),
            "101"
        );
        assert_eq!(
            status(&h, &upgrade("example.com:443", Some("https://EXAMPLE.com"))),
            "101"
        );
        assert_eq!(
            status(&h, &upgrade(host, Some("http://evil.example"))),
            "403"
        );
        assert_eq!(
            status(&h, &upgrade(host, Some("http://127.0.0.1:8081"))),
            "403"
        );
        assert_eq!(
            status(&h, &upgrade(host, Some("null"))),
            "403",
            "opaque origin"
        );
        assert_eq!(
            status(&h, &upgrade(host, None)),
            "101",
            "no Origin: allowed by default"
        );
        let strict = h.allow_missing(false);
        assert_eq!(status(&strict, &upgrade(host, None)), "403");
    }

    #[test]
    fn a_list_allows_exactly_its_origins() {
        let h = AllowOrigins::new(
            Echo,
            OriginPolicy::List(vec![
                "https://chat.example".into(),
                "http://localhost:3000".into(),
            ]),
        );
        let host = "ws.example";
        assert_eq!(
            status(&h, &upgrade(host, Some("https://chat.example"))),
            "101"
        );
        assert_eq!(
            status(&h, &upgrade(host, Some("https://chat.example:443"))),
            "101"
        );
        assert_eq!(
            status(&h, &upgrade(host, Some("http://chat.example"))),
            "403",
            "scheme counts"
        );
        assert_eq!(
            status(&h, &upgrade(host, Some("http://localhost:3000"))),
            "101"
        );
        assert_eq!(
            status(&h, &upgrade(host, Some("http://localhost:3001"))),
            "403"
        );
        assert_eq!(
            status(&h, &upgrade(host, Some("https://sub.chat.example"))),
            "403"
        );
        let any = AllowOrigins::new(Echo, OriginPolicy::Any).allow_missing(false);
        assert_eq!(status(&any, &upgrade(host, Some("http://anything"))), "101");
        assert_eq!(status(&any, &upgrade(host, None)), "403");
    }
}
