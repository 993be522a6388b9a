//! Parsing `ws://` and `wss://` URLs into what a client needs to connect
//! (and, for `wss://`, to name the server to TLS) and to handshake.
//!
//! Deliberately small: RFC 6455 section 3 URLs only, no general URL crate.
//! Userinfo (`user:pass@`) is rejected rather than ignored, because silently
//! dropping credentials would surprise the caller; send an `Authorization`
//! header instead.
//!
//! ## Why not `url` or `http::Uri` (decided for issue 15)
//!
//! Kept, also when the cargo feature `http` is on, for three reasons:
//!
//! - **Dependencies.** ws-core's protocol layer needs no URL crate. `url`
//!   brings 33 crates (`cargo tree -p url -e normal`: IDNA with ICU
//!   normalisation tables, proc-macros) for features a `ws://` URL has no
//!   use for. `http::Uri` is light (`http`, `bytes`, `itoa`) but accepts
//!   any scheme, userinfo and port 0, so the checks below would still be
//!   needed on top of it.
//! - **One answer.** A parser that changed with a cargo feature would give
//!   two answers to the same input; `url`'s repairs (percent-encoding a
//!   space, dropping a fragment, IDNA, dot segments) would send a request
//!   for something other than what was written. Here a URL is taken as
//!   written or refused with a reason ([`UrlError`]); the test
//!   `corner_cases_match_the_url_crate_or_differ_as_documented` checks
//!   each corner case (IPv6 literals, userinfo, percent-encoding, default
//!   ports, scheme and host case, fragments) against `url` and names every
//!   difference.
//! - **Speed** is not the reason, but it does not argue against: parsing
//!   is done once per connection, and this parser is not slower than
//!   either (`cargo bench -p ws-bench --bench url`, a 2-core machine at
//!   load 9, so noisy; medians of the last of three runs): 0.25/0.33/0.38
//!   µs for a short, a typical and an IPv6 URL, against 0.59/0.93/1.20 µs
//!   for `url` and 0.43/0.62/0.37 µs for `http::Uri`. The second run gave
//!   the same order; the first was too noisy to order anything.

use std::fmt;
use std::net::Ipv6Addr;
use std::str::FromStr;

/// Why a string is not a usable WebSocket URL.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UrlError {
    /// The URL has no `scheme://` prefix.
    #[error("missing scheme: expected a URL starting with ws:// or wss://")]
    MissingScheme,
    /// A scheme other than `ws`/`wss` (`http://`, `https://`, ...).
    #[error("unsupported scheme {0:?}: expected ws:// or wss://")]
    UnsupportedScheme(Box<str>),
    /// Nothing between `ws://` and the port/path.
    #[error("URL has an empty host")]
    EmptyHost,
    /// The host has characters not allowed in a host name or is a bad IPv6
    /// literal (internationalised names must be given in punycode).
    #[error("invalid host {0:?}")]
    InvalidHost(Box<str>),
    /// The port is empty, not a number, 0, or above 65535.
    #[error("invalid port {0:?}")]
    InvalidPort(Box<str>),
    /// `user:pass@host` is not supported (credentials would be dropped).
    #[error("userinfo (user@host) in WebSocket URLs is not supported")]
    UserinfoNotSupported,
    /// RFC 6455 section 3 forbids fragments; escape `#` as `%23`.
    #[error("fragment (#...) is not allowed in WebSocket URLs")]
    FragmentNotAllowed,
    /// The path or query contains spaces, control or non-ASCII bytes;
    /// percent-encode them first.
    #[error("path or query contains characters that must be percent-encoded")]
    InvalidResource,
}

/// A parsed `ws://host[:port][/path][?query]` or `wss://...` URL.
///
/// For `wss://` the client connects with TLS and names the server by
/// [`host`](Self::host): a DNS name, or an IP literal (which TLS checks
/// against the certificate's IP addresses).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct WsUrl {
    /// `wss://`: WebSocket over TLS.
    tls: bool,
    /// Host without IPv6 brackets.
    host: String,
    port: u16,
    /// Path (at least `/`) plus `?query` if present.
    resource: String,
}

/// The port `ws://` implies (RFC 6455 section 3).
pub const DEFAULT_PORT: u16 = 80;

/// The port `wss://` implies (RFC 6455 section 3).
pub const DEFAULT_TLS_PORT: u16 = 443;

impl WsUrl {
    /// Parse a `ws://` or `wss://` URL; the scheme is case-insensitive.
    ///
    /// # Errors
    ///
    /// A [`UrlError`] naming the first problem, with
    /// [`UrlError::UnsupportedScheme`] for any scheme but `ws` and `wss`.
    pub fn parse(s: &str) -> Result<Self, UrlError> {
        let (scheme, rest) = s.split_once("://").ok_or(UrlError::MissingScheme)?;
        let tls = if scheme.eq_ignore_ascii_case("wss") {
            true
        } else if scheme.eq_ignore_ascii_case("ws") {
            false
        } else {
            return Err(UrlError::UnsupportedScheme(scheme.into()));
        };
        if rest.contains('#') {
            return Err(UrlError::FragmentNotAllowed);
        }
        let split = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, resource) = rest.split_at(split);
        if authority.contains('@') {
            return Err(UrlError::UserinfoNotSupported);
        }
        let (host, port) = split_host_port(authority)?;
        let port = match port {
            None => default_port(tls),
            Some(p) => parse_port(p)?,
        };
        if !resource.bytes().all(|b| (0x21..=0x7e).contains(&b)) {
            return Err(UrlError::InvalidResource);
        }
        let resource = if resource.starts_with('/') {
            resource.to_owned()
        } else {
            format!("/{resource}")
        };
        Ok(Self {
            tls,
            host: host.to_owned(),
            port,
            resource,
        })
    }

    /// True for `wss://`: the connection runs over TLS.
    pub fn is_tls(&self) -> bool {
        self.tls
    }

    /// The scheme, `"ws"` or `"wss"` (lowercase whatever the input's case).
    pub fn scheme(&self) -> &'static str {
        if self.tls { "wss" } else { "ws" }
    }

    /// The host, without brackets for IPv6 literals (as `connect((host, port))`
    /// style APIs expect). For `wss://` it is also the name TLS verifies
    /// the server's certificate against (an IP literal as an IP address).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The port; if the URL did not name one, 80 for `ws://` and 443 for
    /// `wss://`.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The port the scheme implies: 80 for `ws://`, 443 for `wss://`.
    pub fn default_port(&self) -> u16 {
        default_port(self.tls)
    }

    /// Path plus `?query`, as it goes on the request line; at least `/`.
    pub fn resource(&self) -> &str {
        &self.resource
    }

    /// The path part of the resource (without the query).
    pub fn path(&self) -> &str {
        self.resource
            .split_once('?')
            .map_or(self.resource.as_str(), |(p, _)| p)
    }

    /// The query after `?`, if any.
    pub fn query(&self) -> Option<&str> {
        self.resource.split_once('?').map(|(_, q)| q)
    }

    /// The `Host` header value: host plus `:port` only when not the
    /// scheme's default (80, or 443 for `wss://`), as RFC 6455 4.1 and
    /// RFC 7230 5.4 ask.
    pub fn host_header(&self) -> String {
        host_header(&self.host, self.port, self.default_port())
    }

    /// `host:port` (IPv6 in brackets), ready for `TcpStream::connect`.
    pub fn socket_addr_string(&self) -> String {
        format!("{}:{}", bracketed(&self.host), self.port)
    }
}

/// The port a scheme implies.
fn default_port(tls: bool) -> u16 {
    if tls { DEFAULT_TLS_PORT } else { DEFAULT_PORT }
}

/// `host`, in brackets if it is an IPv6 literal.
pub(crate) fn bracketed(host: &str) -> std::borrow::Cow<'_, str> {
    if host.contains(':') {
        format!("[{host}]").into()
    } else {
        host.into()
    }
}

/// A `Host` header value: the host (IPv6 in brackets) plus `:port` unless
/// it is the scheme's `default` port.
pub(crate) fn host_header(host: &str, port: u16, default: u16) -> String {
    if port == default {
        bracketed(host).into_owned()
    } else {
        format!("{}:{port}", bracketed(host))
    }
}

pub(crate) fn split_host_port(authority: &str) -> Result<(&str, Option<&str>), UrlError> {
    if let Some(after) = authority.strip_prefix('[') {
        let (literal, rest) = after
            .split_once(']')
            .ok_or_else(|| UrlError::InvalidHost(authority.into()))?;
        if literal.parse::<Ipv6Addr>().is_err() {
            return Err(UrlError::InvalidHost(authority.into()));
        }
        return match rest {
            "" => Ok((literal, None)),
            _ => match rest.strip_prefix(':') {
                Some(port) => Ok((literal, Some(port))),
                None => Err(UrlError::InvalidHost(authority.into())),
            },
        };
    }
    let (host, port) = match authority.split_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (authority, None),
    };
    if host.is_empty() {
        return Err(UrlError::EmptyHost);
    }
    let ok = host
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-._~%".contains(&b));
    if !ok {
        return Err(UrlError::InvalidHost(host.into()));
    }
    Ok((host, port))
}

pub(crate) fn parse_port(p: &str) -> Result<u16, UrlError> {
    // `u16::from_str` accepts a leading `+`; a URL port is digits only.
    if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
        return Err(UrlError::InvalidPort(p.into()));
    }
    match p.parse::<u16>() {
        Ok(0) | Err(_) => Err(UrlError::InvalidPort(p.into())),
        Ok(n) => Ok(n),
    }
}

impl FromStr for WsUrl {
    type Err = UrlError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl fmt::Display for WsUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}://{}{}",
            self.scheme(),
            self.host_header(),
            self.resource
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> WsUrl {
        WsUrl::parse(s).unwrap()
    }

    #[test]
    fn defaults_port_80_and_resource_slash() {
        let u = url("ws://example.com");
        assert_eq!(u.host(), "example.com");
        assert_eq!(u.port(), 80);
        assert_eq!(u.resource(), "/");
        assert_eq!(u.host_header(), "example.com");
        assert_eq!(u.socket_addr_string(), "example.com:80");
    }

    #[test]
    fn explicit_port_path_and_query() {
        let u = url("ws://localhost:9001/chat/room?x=1&y=2");
        assert_eq!(u.port(), 9001);
        assert_eq!(u.resource(), "/chat/room?x=1&y=2");
        assert_eq!(u.path(), "/chat/room");
        assert_eq!(u.query(), Some("x=1&y=2"));
        assert_eq!(u.host_header(), "localhost:9001");
        assert_eq!(u.to_string(), "ws://localhost:9001/chat/room?x=1&y=2");
    }

    #[test]
    fn query_without_path_gets_slash() {
        assert_eq!(url("ws://h?q=1").resource(), "/?q=1");
    }

    #[test]
    fn explicit_port_80_is_omitted_from_host_header() {
        assert_eq!(url("ws://h:80/").host_header(), "h");
    }

    #[test]
    fn scheme_is_case_insensitive() {
        assert_eq!(url("WS://h/").port(), 80);
    }

    #[test]
    fn ipv6_literal_keeps_brackets_where_needed() {
        let u = url("ws://[::1]:9001/x");
        assert_eq!(u.host(), "::1");
        assert_eq!(u.port(), 9001);
        assert_eq!(u.host_header(), "[::1]:9001");
        assert_eq!(u.socket_addr_string(), "[::1]:9001");
        assert_eq!(url("ws://[::1]").host_header(), "[::1]");
        assert!(
            url("ws://[::1]")
                .socket_addr_string()
                .parse::<std::net::SocketAddr>()
                .is_ok()
        );
    }

    #[test]
    fn bad_ipv6_literals_are_rejected() {
        assert!(matches!(
            WsUrl::parse("ws://[::1/"),
            Err(UrlError::InvalidHost(_))
        ));
        assert!(matches!(
            WsUrl::parse("ws://[zz]/"),
            Err(UrlError::InvalidHost(_))
        ));
        assert!(matches!(
            WsUrl::parse("ws://[::1]x/"),
            Err(UrlError::InvalidHost(_))
        ));
    }

    #[test]
    fn wss_defaults_to_port_443_and_omits_it_from_host() {
        let u = url("wss://example.com/chat?x");
        assert!(u.is_tls());
        assert_eq!(u.scheme(), "wss");
        assert_eq!((u.host(), u.port()), ("example.com", 443));
        assert_eq!(u.default_port(), 443);
        assert_eq!(u.resource(), "/chat?x");
        assert_eq!(u.host_header(), "example.com");
        assert_eq!(u.socket_addr_string(), "example.com:443");
        assert_eq!(u.to_string(), "wss://example.com/chat?x");
        // Another port is named; 80 is not wss's default.
        assert_eq!(url("wss://h:80/").host_header(), "h:80");
        assert_eq!(url("WSS://h:9443").to_string(), "wss://h:9443/");
        assert_eq!(url("wss://[::1]:9443/").host_header(), "[::1]:9443");
        assert!(!url("ws://h/").is_tls());
        assert_eq!(url("ws://h:443/").host_header(), "h:443");
    }

    #[test]
    fn other_schemes_and_missing_scheme_are_rejected() {
        assert!(
            matches!(WsUrl::parse("http://h/"), Err(UrlError::UnsupportedScheme(s)) if &*s == "http")
        );
        let https = WsUrl::parse("https://h/").unwrap_err();
        assert!(
            https.to_string().contains("expected ws:// or wss://"),
            "{https}"
        );
        assert_eq!(WsUrl::parse("example.com"), Err(UrlError::MissingScheme));
    }

    #[test]
    fn empty_host_is_rejected() {
        assert_eq!(WsUrl::parse("ws://"), Err(UrlError::EmptyHost));
        assert_eq!(WsUrl::parse("ws://:9001/"), Err(UrlError::EmptyHost));
        assert_eq!(WsUrl::parse("ws:///path"), Err(UrlError::EmptyHost));
    }

    #[test]
    fn bad_ports_are_rejected() {
        for bad in [
            "ws://h:/",
            "ws://h:abc",
            "ws://h:0",
            "ws://h:65536",
            "ws://h:+80",
            "ws://h:1:2",
        ] {
            assert!(
                matches!(WsUrl::parse(bad), Err(UrlError::InvalidPort(_))),
                "{bad}"
            );
        }
        assert_eq!(url("ws://h:65535").port(), 65535);
    }

    #[test]
    fn fragment_is_rejected() {
        assert_eq!(
            WsUrl::parse("ws://h/p#frag"),
            Err(UrlError::FragmentNotAllowed)
        );
    }

    #[test]
    fn userinfo_is_rejected() {
        assert_eq!(
            WsUrl::parse("ws://u:p@h/"),
            Err(UrlError::UserinfoNotSupported)
        );
    }

    #[test]
    fn unencoded_resource_and_host_characters_are_rejected() {
        assert_eq!(WsUrl::parse("ws://h/a b"), Err(UrlError::InvalidResource));
        assert_eq!(
            WsUrl::parse("ws://h/\u{e9}"),
            Err(UrlError::InvalidResource)
        );
        assert!(matches!(
            WsUrl::parse("ws://h\r\nx/"),
            Err(UrlError::InvalidHost(_))
        ));
        assert!(matches!(
            WsUrl::parse("ws://b\u{fc}cher.de/"),
            Err(UrlError::InvalidHost(_))
        ));
    }

    #[test]
    fn from_str_matches_parse() {
        assert_eq!("ws://h:1/x".parse::<WsUrl>(), WsUrl::parse("ws://h:1/x"));
    }

    /// How ws-core's parser relates to the `url` crate (WHATWG) on one input.
    #[derive(Debug)]
    enum Vs {
        /// Both parse, to the same scheme, host, port and resource.
        Same,
        /// Both parse and agree but on the host, which `url` normalises
        /// (case, IPv6 and IPv4 forms, percent-decoding) and we keep as
        /// written: (ours, url's). DNS and TLS compare names without case.
        HostAsWritten(&'static str, &'static str),
        /// Both parse and agree but on the resource, whose dot segments
        /// `url` removes and we send as written: (ours, url's).
        ResourceAsWritten(&'static str, &'static str),
        /// `url` accepts (and repairs or drops part of) what we refuse.
        Stricter(UrlError),
        /// Neither parses it.
        BothReject,
    }

    /// The `url` crate's host as ours is kept: IPv6 without brackets.
    fn host_of(u: &::url::Url) -> String {
        match u.host() {
            Some(::url::Host::Ipv6(a)) => a.to_string(),
            Some(h) => h.to_string(),
            None => String::new(),
        }
    }

    fn resource_of(u: &::url::Url) -> String {
        match u.query() {
            Some(q) => format!("{}?{q}", u.path()),
            None => u.path().to_owned(),
        }
    }

    #[test]
    fn corner_cases_match_the_url_crate_or_differ_as_documented() {
        use Vs::*;
        let table: &[(&str, Vs)] = &[
            ("ws://example.com", Same),
            ("ws://example.com:9001/chat/room?x=1&y=2", Same),
            ("ws://h?q=1", Same),
            // Scheme case.
            ("WS://example.com/", Same),
            ("wSs://example.com/", Same),
            // Default ports, given or not.
            ("wss://example.com", Same),
            ("ws://example.com:80/", Same),
            ("wss://example.com:443/", Same),
            ("wss://h:80/", Same),
            ("ws://h:443/", Same),
            ("ws://h:65535/", Same),
            // IPv6 literals.
            ("ws://[::1]:9001/x", Same),
            ("ws://[::1]", Same),
            ("wss://[2001:db8::1]/", Same),
            ("ws://[::ffff:192.0.2.1]/", Same),
            (
                "ws://[2001:DB8::1]/",
                HostAsWritten("2001:DB8::1", "2001:db8::1"),
            ),
            (
                "ws://[0:0:0:0:0:0:0:1]/",
                HostAsWritten("0:0:0:0:0:0:0:1", "::1"),
            ),
            // Host case, percent-encoding in the host, IPv4 shorthand.
            (
                "ws://Example.COM/",
                HostAsWritten("Example.COM", "example.com"),
            ),
            ("ws://a%2Db/", HostAsWritten("a%2Db", "a-b")),
            ("ws://127.1/", HostAsWritten("127.1", "127.0.0.1")),
            // Percent-encoding in path and query is kept by both.
            ("ws://h/a%20b?q=%2F%26", Same),
            ("ws://h/%7Euser", Same),
            ("ws://h/a/../b", ResourceAsWritten("/a/../b", "/b")),
            // Userinfo: `url` keeps it, we refuse to drop credentials.
            ("ws://u:p@h/", Stricter(UrlError::UserinfoNotSupported)),
            ("ws://u@h/", Stricter(UrlError::UserinfoNotSupported)),
            // Fragments: RFC 6455 section 3 forbids them.
            ("ws://h/p#frag", Stricter(UrlError::FragmentNotAllowed)),
            ("ws://h/#", Stricter(UrlError::FragmentNotAllowed)),
            // What `url` would percent-encode for us.
            ("ws://h/a b", Stricter(UrlError::InvalidResource)),
            ("ws://h/\u{e9}", Stricter(UrlError::InvalidResource)),
            // Ports `url` lets through.
            ("ws://h:/", Stricter(UrlError::InvalidPort("".into()))),
            ("ws://h:0/", Stricter(UrlError::InvalidPort("0".into()))),
            ("ws://h:0080/", Same),
            // Internationalised names: `url` runs IDNA, we take punycode.
            (
                "ws://b\u{fc}cher.de/",
                Stricter(UrlError::InvalidHost("b\u{fc}cher.de".into())),
            ),
            ("ws://xn--bcher-kva.de/", Same),
            // Schemes and shapes `url` accepts and we do not.
            (
                "http://h/",
                Stricter(UrlError::UnsupportedScheme("http".into())),
            ),
            ("ws:/h/", Stricter(UrlError::MissingScheme)),
            ("ws://h\\p", Stricter(UrlError::InvalidHost("h\\p".into()))),
            // Refused by both.
            ("ws://h:65536/", BothReject),
            ("ws://h:abc/", BothReject),
            ("ws://", BothReject),
            ("ws://:9001/", BothReject),
            ("ws://[::1/", BothReject),
            ("ws://[zz]/", BothReject),
            ("example.com", BothReject),
        ];
        for (input, vs) in table {
            let ours = WsUrl::parse(input);
            let theirs = ::url::Url::parse(input);
            let both = ours.as_ref().ok().zip(theirs.as_ref().ok());
            match vs {
                Same => {
                    let (o, t) = both.unwrap_or_else(|| panic!("{input}: {ours:?} / {theirs:?}"));
                    assert_eq!(o.scheme(), t.scheme(), "{input}");
                    assert_eq!(o.host(), host_of(t), "{input}");
                    assert_eq!(Some(o.port()), t.port_or_known_default(), "{input}");
                    assert_eq!(o.resource(), resource_of(t), "{input}");
                }
                HostAsWritten(o_host, t_host) => {
                    let (o, t) = both.unwrap_or_else(|| panic!("{input}: {ours:?} / {theirs:?}"));
                    assert_eq!(
                        (o.host(), host_of(t).as_str()),
                        (*o_host, *t_host),
                        "{input}"
                    );
                    assert_eq!(Some(o.port()), t.port_or_known_default(), "{input}");
                    assert_eq!(o.resource(), resource_of(t), "{input}");
                }
                ResourceAsWritten(o_res, t_res) => {
                    let (o, t) = both.unwrap_or_else(|| panic!("{input}: {ours:?} / {theirs:?}"));
                    assert_eq!(o.host(), host_of(t), "{input}");
                    assert_eq!(
                        (o.resource(), resource_of(t).as_str()),
                        (*o_res, *t_res),
                        "{input}"
                    );
                }
                Stricter(e) => {
                    assert!(theirs.is_ok(), "{input}: url refuses it too: {theirs:?}");
                    assert_eq!(ours.as_ref(), Err(e), "{input}");
                }
                BothReject => {
                    assert!(ours.is_err(), "{input}: we accept it: {ours:?}");
                    assert!(theirs.is_err(), "{input}: url accepts it: {theirs:?}");
                }
            }
        }
    }

    /// What the module doc says of `http::Uri`: it takes what a WebSocket
    /// URL must not be, so it could not replace the checks here.
    #[cfg(feature = "http")]
    #[test]
    fn http_uri_accepts_what_we_refuse() {
        for input in ["http://h/", "ws://u:p@h/", "ws://h:0/"] {
            assert!(input.parse::<http::Uri>().is_ok(), "{input}");
            assert!(WsUrl::parse(input).is_err(), "{input}");
        }
    }
}
