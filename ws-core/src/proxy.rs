//! HTTP proxies for clients, sans-IO: which proxy to use ([`Proxy`], from a
//! URL or, opt-in, from the environment) and the `CONNECT` exchange that
//! opens a tunnel through it ([`ProxyConnect`]).
//!
//! A client behind a proxy opens TCP to the proxy, sends
//! `CONNECT host:port HTTP/1.1`, and once the proxy answers `2xx` the
//! connection is a byte pipe to the target: for `ws://` the WebSocket
//! handshake runs in it as is, for `wss://` TLS to the target runs in it
//! first (the server name still comes from the target URL, so the proxy
//! sees neither the handshake nor the messages). This module parses and
//! decides; the adapters only read and write (`connect_proxy` and
//! `Client::with_proxy` on every runtime), so every runtime behaves the same
//! and the whole exchange is unit-tested here without a network.
//!
//! ```
//! use ws_core::proxy::{Proxy, ProxyConnect};
//! use ws_core::url::WsUrl;
//!
//! let proxy = Proxy::parse("http://alice:s%40cret@proxy.example:3128").unwrap();
//! let target = WsUrl::parse("wss://chat.example/ws").unwrap();
//! let (mut connect, request) = ProxyConnect::new(&proxy, &target);
//! assert!(request.starts_with(b"CONNECT chat.example:443 HTTP/1.1\r\n"));
//! // ... write `request` to the proxy, then feed what it answers:
//! let tunnel = connect.feed(b"HTTP/1.1 200 Connection established\r\n\r\n").unwrap();
//! assert_eq!(tunnel.unwrap().status(), 200);
//! ```
//!
//! Only `http://` proxies (HTTP CONNECT, the proxy reached over plain TCP)
//! are supported; `https://` (TLS to the proxy) and SOCKS proxies are
//! refused with [`ProxyError::UnsupportedScheme`] rather than ignored.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::{BufMut, Bytes, BytesMut};

use crate::handshake::DEFAULT_MAX_HEADER_SIZE;
use crate::handshake::reader::HeadReader;
use crate::url::{WsUrl, bracketed, parse_port, split_host_port};

/// The port an `http://` proxy URL without one implies (as in
/// python-websockets and urllib).
pub const DEFAULT_PROXY_PORT: u16 = 80;

/// The longest reason phrase kept from a refusal: enough to read, bounded
/// so a hostile proxy cannot make the error large.
const MAX_REASON: usize = 128;

/// At most this many headers in the proxy's answer (httparse's slots).
const MAX_HEADERS: usize = 64;

/// Why a proxy could not be used or would not open the tunnel.
///
/// Reachable from the crate's [`Error`](crate::Error) as
/// [`Error::Proxy`](crate::Error::Proxy) (see
/// [`Error::is_proxy`](crate::Error::is_proxy)); a refusal carries the
/// proxy's status ([`status`](Self::status)).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProxyError {
    /// The proxy URL's scheme is not `http` (`https://`, `socks5://`, ...).
    #[error("unsupported proxy scheme {0:?}: only http:// proxies (HTTP CONNECT) are supported")]
    UnsupportedScheme(Box<str>),
    /// The proxy URL is unusable (no host, a bad port, a path, bad
    /// percent-encoding in the credentials).
    #[error("invalid proxy URL: {0}")]
    InvalidUrl(Box<str>),
    /// An environment variable names an unusable proxy
    /// ([`Proxy::from_env`]): the variable, and what is wrong with it.
    #[error("in the environment variable {}: {}", .0.0, .0.1)]
    Env(Box<(&'static str, ProxyError)>),
    /// The proxy answered `CONNECT` with a status other than 2xx: 407
    /// (credentials missing or wrong), 403 (the target is not allowed), 502
    /// (it could not reach the target), ...
    #[error("the proxy refused the tunnel: {status} {reason}")]
    Refused {
        /// The proxy's HTTP status.
        status: u16,
        /// Its reason phrase (at most 128 characters).
        reason: Box<str>,
    },
    /// The proxy's answer is not an HTTP response.
    #[error("the proxy's answer to CONNECT is not HTTP: {0}")]
    Malformed(&'static str),
    /// The proxy's response head grew past the limit without ending.
    #[error("the proxy's response head exceeds {limit} bytes")]
    ResponseTooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// The proxy closed the connection before its answer was complete.
    #[error("the proxy closed the connection before answering CONNECT")]
    Closed,
    /// For `wss://`: the proxy sent bytes after its 2xx, before our TLS
    /// ClientHello. A TLS server never speaks first, so they cannot be the
    /// target's; refused rather than silently dropped.
    #[error("the proxy sent {len} bytes after its 2xx, before the TLS handshake")]
    DataBeforeTls {
        /// How many bytes.
        len: usize,
    },
    /// [`ProxyConnect`] was fed after it completed or failed.
    #[error("the CONNECT exchange already finished")]
    Finished,
}

impl ProxyError {
    /// The proxy's HTTP status, for a [`Refused`](Self::Refused) tunnel.
    pub fn status(&self) -> Option<u16> {
        match self {
            ProxyError::Refused { status, .. } => Some(*status),
            _ => None,
        }
    }

    fn in_variable(self, variable: &'static str) -> ProxyError {
        ProxyError::Env(Box::new((variable, self)))
    }
}

fn invalid(why: impl Into<Box<str>>) -> ProxyError {
    ProxyError::InvalidUrl(why.into())
}

/// An HTTP proxy: where to open TCP, and the Basic credentials (if any) to
/// send with `CONNECT`.
///
/// `Display` and `Debug` never show the password.
#[derive(Clone, PartialEq, Eq)]
pub struct Proxy {
    /// Without IPv6 brackets.
    host: String,
    port: u16,
    credentials: Option<Credentials>,
}

#[derive(Clone, PartialEq, Eq)]
struct Credentials {
    user: String,
    password: String,
}

impl Proxy {
    /// Parses `http://[user:password@]host[:port][/]`: the scheme is
    /// case-insensitive, the port defaults to 80, and the user and password
    /// are percent-decoded (write `@` as `%40`, `:` in the user as `%3A` is
    /// refused, as Basic authentication cannot carry it). A bare
    /// `host:port` (no scheme, as many `http_proxy` values are written)
    /// means `http://host:port`.
    ///
    /// # Errors
    ///
    /// [`ProxyError::UnsupportedScheme`] for any scheme but `http`
    /// (`https://`, `socks5://`, `ws://`), [`ProxyError::InvalidUrl`] for a
    /// missing host, a bad port, a path, query or fragment, or bad
    /// credentials.
    pub fn parse(url: &str) -> Result<Proxy, ProxyError> {
        let url = url.trim();
        let rest = match url.split_once("://") {
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case("http") => rest,
            Some((scheme, _)) => return Err(ProxyError::UnsupportedScheme(scheme.into())),
            None => url,
        };
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(end);
        if !tail.is_empty() && tail != "/" {
            return Err(invalid("a proxy URL has no path, query or fragment"));
        }
        let (userinfo, host_port) = match authority.rsplit_once('@') {
            Some((userinfo, host_port)) => (Some(userinfo), host_port),
            None => (None, authority),
        };
        let (host, port) = split_host_port(host_port).map_err(|e| invalid(e.to_string()))?;
        let port = match port {
            None => DEFAULT_PROXY_PORT,
            Some(p) => parse_port(p).map_err(|e| invalid(e.to_string()))?,
        };
        let credentials = userinfo.map(parse_userinfo).transpose()?;
        Ok(Proxy {
            host: host.to_owned(),
            port,
            credentials,
        })
    }

    /// The proxy for a connection to `target`, from the environment, the way
    /// python-websockets (and urllib under it) reads it; opt-in: nothing in
    /// this library calls it unless you do (`ws-client --proxy-from-env`).
    ///
    /// - `no_proxy` first: if it matches the target, no proxy
    ///   ([`bypasses`](Self::bypasses) has the rules: `*`, domains and their
    ///   subdomains, leading dots, `host:port`, IP literals, CIDR ranges).
    /// - Then, for `wss://`: `wss_proxy`, then `https_proxy`; for `ws://`:
    ///   `ws_proxy`, then `https_proxy`, then `http_proxy` (python-websockets'
    ///   order: a proxy for HTTPS traffic is preferred, RFC 6455 4.1); then,
    ///   for both, `all_proxy` (as curl).
    /// - Each name is looked up in lower case first, then in upper case; a
    ///   lower-case variable that is set but empty hides the upper-case one
    ///   (urllib's rule). `HTTP_PROXY` in upper case is ignored when
    ///   `REQUEST_METHOD` is set (a CGI script, where a client's `Proxy:`
    ///   header would arrive as `HTTP_PROXY`: "httpoxy").
    ///
    /// `Ok(None)` means connect directly.
    ///
    /// # Errors
    ///
    /// [`ProxyError::Env`] naming the variable whose value is unusable (a
    /// SOCKS proxy, say): a configured proxy that cannot be used is an
    /// error, not a silent direct connection.
    pub fn from_env(target: &WsUrl) -> Result<Option<Proxy>, ProxyError> {
        Self::from_env_with(target, |name| std::env::var(name).ok())
    }

    /// [`from_env`](Self::from_env) with the variables read through
    /// `lookup` (name to value) instead of the process environment: for
    /// tests, or a configuration of your own.
    ///
    /// ```
    /// use ws_core::proxy::Proxy;
    /// use ws_core::url::WsUrl;
    ///
    /// let env = |name: &str| match name {
    ///     "https_proxy" => Some("http://proxy.internal:3128".to_owned()),
    ///     "no_proxy" => Some("localhost,.internal".to_owned()),
    ///     _ => None,
    /// };
    /// let public = WsUrl::parse("wss://chat.example/").unwrap();
    /// let proxy = Proxy::from_env_with(&public, env).unwrap().unwrap();
    /// assert_eq!((proxy.host(), proxy.port()), ("proxy.internal", 3128));
    /// let internal = WsUrl::parse("ws://db.internal/").unwrap();
    /// assert_eq!(Proxy::from_env_with(&internal, env).unwrap(), None);
    /// ```
    ///
    /// # Errors
    ///
    /// As [`from_env`](Self::from_env).
    pub fn from_env_with(
        target: &WsUrl,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<Proxy>, ProxyError> {
        if let Some((_, no_proxy)) = env_value(&lookup, ("no_proxy", "NO_PROXY")) {
            if Self::bypasses(&no_proxy, target) {
                return Ok(None);
            }
        }
        const WSS: &[(&str, &str)] = &[
            ("wss_proxy", "WSS_PROXY"),
            ("https_proxy", "HTTPS_PROXY"),
            ("all_proxy", "ALL_PROXY"),
        ];
        const WS: &[(&str, &str)] = &[
            ("ws_proxy", "WS_PROXY"),
            ("https_proxy", "HTTPS_PROXY"),
            ("http_proxy", "HTTP_PROXY"),
            ("all_proxy", "ALL_PROXY"),
        ];
        let names = if target.is_tls() { WSS } else { WS };
        for &names in names {
            if let Some((variable, value)) = env_value(&lookup, names) {
                return Proxy::parse(&value)
                    .map(Some)
                    .map_err(|e| e.in_variable(variable));
            }
        }
        Ok(None)
    }

    /// Whether a `no_proxy` value exempts `target` from the proxy. The value
    /// is a comma-separated list; an entry matches when it is
    ///
    /// - `*`: every host;
    /// - a domain: that host and its subdomains (`example.com` and
    ///   `.example.com` both match `example.com` and `a.example.com`, not
    ///   `badexample.com`; `*.example.com` is read as `.example.com`),
    ///   case-insensitively;
    /// - an IP literal (`127.0.0.1`, `::1` or `[::1]`): that address, not
    ///   as a suffix;
    /// - a CIDR range (`10.0.0.0/8`, `fd00::/8`): IP hosts inside it;
    ///
    /// each optionally with `:port`, which then must be the target's port
    /// too (`[::1]:8080` for IPv6). Host names are not resolved: `localhost`
    /// does not match `127.0.0.1`.
    pub fn bypasses(no_proxy: &str, target: &WsUrl) -> bool {
        let host = target.host().trim_end_matches('.').to_ascii_lowercase();
        let ip = host.parse::<IpAddr>().ok();
        no_proxy
            .split(',')
            .map(str::trim)
            .filter(|entry| !entry.is_empty())
            .any(|entry| entry_matches(entry, &host, ip, target.port()))
    }

    /// The proxy's host (an IPv6 literal without brackets).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The proxy's port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The user name sent in `Proxy-Authorization`, if the URL had
    /// credentials (percent-decoded).
    pub fn username(&self) -> Option<&str> {
        self.credentials.as_ref().map(|c| c.user.as_str())
    }

    /// `host:port` (IPv6 in brackets): where the client opens TCP.
    pub fn socket_addr_string(&self) -> String {
        format!("{}:{}", bracketed(&self.host), self.port)
    }

    /// The `Proxy-Authorization` value: `Basic base64(user:password)`
    /// (RFC 7617), or `None` without credentials.
    fn authorization(&self) -> Option<String> {
        let c = self.credentials.as_ref()?;
        let pair = format!("{}:{}", c.user, c.password);
        Some(format!("Basic {}", BASE64.encode(pair)))
    }
}

impl FromStr for Proxy {
    type Err = ProxyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl fmt::Display for Proxy {
    /// `http://host:port`, with `user@` when there are credentials (never
    /// the password).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("http://")?;
        if let Some(user) = self.username() {
            write!(f, "{user}@")?;
        }
        write!(f, "{}", self.socket_addr_string())
    }
}

impl fmt::Debug for Proxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Proxy")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.username())
            .field("password", &self.credentials.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// `user[:password]`, percent-decoded.
fn parse_userinfo(userinfo: &str) -> Result<Credentials, ProxyError> {
    let (user, password) = userinfo.split_once(':').unwrap_or((userinfo, ""));
    let user = percent_decode(user)?;
    if user.is_empty() {
        return Err(invalid("the credentials have an empty user name"));
    }
    if user.contains(':') {
        return Err(invalid(
            "a user name with ':' cannot be sent with Basic authentication",
        ));
    }
    Ok(Credentials {
        user,
        password: percent_decode(password)?,
    })
}

/// Decodes `%XX` escapes; the result must be UTF-8.
fn percent_decode(s: &str) -> Result<String, ProxyError> {
    let bad = || invalid("bad percent-encoding in the credentials");
    let mut out = Vec::with_capacity(s.len());
    let mut bytes = s.bytes();
    while let Some(b) = bytes.next() {
        if b != b'%' {
            out.push(b);
            continue;
        }
        let hex = |d: Option<u8>| d.and_then(|d| char::from(d).to_digit(16));
        let (hi, lo) = (hex(bytes.next()), hex(bytes.next()));
        match (hi, lo) {
            // Two hex digits are at most 0xff.
            (Some(hi), Some(lo)) => out.push(u8::try_from(hi * 16 + lo).map_err(|_| bad())?),
            _ => return Err(bad()),
        }
    }
    String::from_utf8(out).map_err(|_| invalid("the credentials are not UTF-8"))
}

/// A variable's value by urllib's rules: the lower-case name wins (set but
/// empty: unset, hiding the upper-case one), then the upper-case one;
/// empty values count as unset. Returns the name used and the value.
fn env_value(
    lookup: &impl Fn(&str) -> Option<String>,
    (lower, upper): (&'static str, &'static str),
) -> Option<(&'static str, String)> {
    if let Some(value) = lookup(lower) {
        return (!value.trim().is_empty()).then_some((lower, value));
    }
    // httpoxy: in a CGI script HTTP_PROXY may come from a request header.
    if upper == "HTTP_PROXY" && lookup("REQUEST_METHOD").is_some() {
        return None;
    }
    let value = lookup(upper)?;
    (!value.trim().is_empty()).then_some((upper, value))
}

/// One `no_proxy` entry against the target's lower-case host (and its IP,
/// if it is a literal) and port.
fn entry_matches(entry: &str, host: &str, ip: Option<IpAddr>, port: u16) -> bool {
    if entry == "*" {
        return true;
    }
    let Some((name, entry_port)) = split_entry(entry) else {
        return false;
    };
    if entry_port.is_some_and(|p| p != port) {
        return false;
    }
    if let Some((net, bits)) = name.split_once('/') {
        return match (ip, net.parse::<IpAddr>(), bits.parse::<u8>()) {
            (Some(ip), Ok(net), Ok(bits)) => in_cidr(ip, net, bits),
            _ => false,
        };
    }
    if let Ok(entry_ip) = name.parse::<IpAddr>() {
        return ip == Some(entry_ip);
    }
    let domain = name
        .trim_start_matches('*')
        .trim_start_matches('.')
        .trim_end_matches('.')
        .to_ascii_lowercase();
    if domain.is_empty() || ip.is_some() {
        return false;
    }
    host == domain
        || host
            .strip_suffix(domain.as_str())
            .is_some_and(|rest| rest.ends_with('.'))
}

/// An entry's name and port: `[v6]:port`, `[v6]`, `host:port`, `host`, or
/// a bare IPv6 literal or range (several colons, no port). `None` for an
/// unparsable port (an entry that then matches nothing).
fn split_entry(entry: &str) -> Option<(&str, Option<u16>)> {
    if let Some(rest) = entry.strip_prefix('[') {
        let (name, after) = rest.split_once(']')?;
        return match after.strip_prefix(':') {
            Some(port) => Some((name, Some(port.parse().ok()?))),
            None if after.is_empty() => Some((name, None)),
            None => None,
        };
    }
    match entry.split_once(':') {
        Some((name, port)) if !port.contains(':') => Some((name, Some(port.parse().ok()?))),
        _ => Some((entry, None)),
    }
}

/// Whether `ip` is in `net/bits` (same address family only).
fn in_cidr(ip: IpAddr, net: IpAddr, bits: u8) -> bool {
    match (ip, net) {
        (IpAddr::V4(ip), IpAddr::V4(net)) if bits <= 32 => {
            let mask = u32::MAX.checked_shl(32 - u32::from(bits)).unwrap_or(0);
            u32::from(ip) & mask == u32::from(net) & mask
        }
        (IpAddr::V6(ip), IpAddr::V6(net)) if bits <= 128 => {
            let mask = u128::MAX.checked_shl(128 - u32::from(bits)).unwrap_or(0);
            u128::from(ip) & mask == u128::from(net) & mask
        }
        _ => false,
    }
}

/// Where a client opens TCP for `target`: the proxy's host and port when
/// it has one, else the target's (an IPv6 host without brackets, as
/// `(host, port)` socket address lookups take it). For the adapters.
pub fn first_hop<'a>(target: &'a WsUrl, proxy: Option<&'a Proxy>) -> (&'a str, u16) {
    match proxy {
        Some(proxy) => (proxy.host(), proxy.port()),
        None => (target.host(), target.port()),
    }
}

/// The client side of an HTTP `CONNECT` exchange, sans-IO: the request to
/// write, then the proxy's answer, fed in any chunks, until it is a
/// [`Tunnel`] or a [`ProxyError`].
///
/// The answer's head is bounded (16 KiB by default,
/// [`max_response_size`](Self::max_response_size)); bytes after it are
/// kept as the start of the tunnel ([`Tunnel::into_buffered`]): for `ws://`
/// they are the first bytes of the WebSocket handshake's answer. For
/// `wss://` there must be none (a TLS server never speaks first), and
/// [`ProxyError::DataBeforeTls`] says so.
#[derive(Debug)]
pub struct ProxyConnect {
    reader: HeadReader,
    /// TLS follows in the tunnel (`wss://`).
    tls: bool,
}

impl ProxyConnect {
    /// Starts a `CONNECT` to `target`'s host and port through `proxy`;
    /// returns the request bytes to send:
    ///
    /// ```text
    /// CONNECT host:port HTTP/1.1
    /// Host: host:port
    /// Proxy-Authorization: Basic ...     (with credentials only)
    /// ```
    ///
    /// The port is always written (RFC 9110 9.3.6), an IPv6 host in
    /// brackets.
    pub fn new(proxy: &Proxy, target: &WsUrl) -> (ProxyConnect, Bytes) {
        let authority = format!("{}:{}", bracketed(target.host()), target.port());
        let mut out = BytesMut::with_capacity(128);
        out.put_slice(b"CONNECT ");
        out.put_slice(authority.as_bytes());
        out.put_slice(b" HTTP/1.1\r\nHost: ");
        out.put_slice(authority.as_bytes());
        out.put_slice(b"\r\n");
        if let Some(authorization) = proxy.authorization() {
            out.put_slice(b"Proxy-Authorization: ");
            out.put_slice(authorization.as_bytes());
            out.put_slice(b"\r\n");
        }
        out.put_slice(b"\r\n");
        let connect = ProxyConnect {
            reader: HeadReader::new(DEFAULT_MAX_HEADER_SIZE),
            tls: target.is_tls(),
        };
        (connect, out.freeze())
    }

    /// Caps the proxy's response head at `max` bytes (default 16 KiB);
    /// call before feeding anything.
    pub fn max_response_size(mut self, max: usize) -> Self {
        self.reader = HeadReader::new(max);
        self
    }

    /// Buffers `data` and tries to complete; `Ok(None)` means "need more
    /// bytes".
    ///
    /// # Errors
    ///
    /// [`ProxyError::Refused`] for a status other than 2xx,
    /// [`ProxyError::Malformed`] or [`ProxyError::ResponseTooLarge`] for
    /// an answer that is not a bounded HTTP response head,
    /// [`ProxyError::DataBeforeTls`] (see the [type docs](Self)),
    /// [`ProxyError::Finished`] after completion.
    pub fn feed(&mut self, data: &[u8]) -> Result<Option<Tunnel>, ProxyError> {
        self.reader.feed(data).map_err(|_| ProxyError::Finished)?;
        self.poll_response()
    }

    /// The internal buffer, for reading from the socket straight into it;
    /// call [`poll_response`](Self::poll_response) after.
    pub fn read_buf(&mut self) -> &mut BytesMut {
        self.reader.buf_mut()
    }

    /// Tries to complete with what has been buffered.
    ///
    /// # Errors
    ///
    /// As [`feed`](Self::feed).
    pub fn poll_response(&mut self) -> Result<Option<Tunnel>, ProxyError> {
        let limit = self.reader.max();
        let tls = self.tls;
        self.reader.poll_or(
            ProxyError::Finished,
            ProxyError::ResponseTooLarge { limit },
            |buf, head_len| parse_answer(buf, head_len, tls),
        )
    }
}

/// An open tunnel: the proxy's 2xx status, and the bytes that came after
/// its answer (the start of the tunnel's data).
#[derive(Debug, PartialEq, Eq)]
pub struct Tunnel {
    status: u16,
    buffered: BytesMut,
}

impl Tunnel {
    /// The proxy's status (200, or another 2xx).
    pub fn status(&self) -> u16 {
        self.status
    }

    /// The bytes received after the proxy's answer.
    pub fn buffered(&self) -> &[u8] {
        &self.buffered
    }

    /// The bytes received after the proxy's answer, to hand to whatever
    /// reads the tunnel next (the WebSocket handshake).
    pub fn into_buffered(self) -> BytesMut {
        self.buffered
    }
}

/// Parses the proxy's complete answer head (`head_len` bytes of `buf`).
fn parse_answer(buf: &mut BytesMut, head_len: usize, tls: bool) -> Result<Tunnel, ProxyError> {
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut slots);
    let head = buf.get(..head_len).unwrap_or(&[]);
    let len = match response.parse(head) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => {
            return Err(ProxyError::Malformed("incomplete response head"));
        }
        Err(httparse::Error::TooManyHeaders) => {
            return Err(ProxyError::Malformed("too many headers"));
        }
        Err(httparse::Error::Version) => return Err(ProxyError::Malformed("not HTTP/1.x")),
        Err(httparse::Error::Status) => return Err(ProxyError::Malformed("invalid status")),
        Err(_) => return Err(ProxyError::Malformed("invalid response head")),
    };
    let status = response.code.ok_or(ProxyError::Malformed("no status"))?;
    if !(200..300).contains(&status) {
        // A 2xx answer's Content-Length is to be ignored (RFC 9110 9.3.6);
        // other answers end the connection, so their bodies do not matter.
        let reason: String = response
            .reason
            .unwrap_or("")
            .chars()
            .filter(|c| !c.is_control())
            .take(MAX_REASON)
            .collect();
        return Err(ProxyError::Refused {
            status,
            reason: reason.into(),
        });
    }
    let _head = buf.split_to(len);
    let buffered = std::mem::take(buf);
    if tls && !buffered.is_empty() {
        return Err(ProxyError::DataBeforeTls {
            len: buffered.len(),
        });
    }
    Ok(Tunnel { status, buffered })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proxy(s: &str) -> Proxy {
        Proxy::parse(s).unwrap()
    }

    fn url(s: &str) -> WsUrl {
        WsUrl::parse(s).unwrap()
    }

    /// An environment made of `vars`.
    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            vars.iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    fn chosen(target: &str, vars: &[(&str, &str)]) -> Option<String> {
        Proxy::from_env_with(&url(target), env(vars))
            .unwrap()
            .map(|p| p.socket_addr_string())
    }

    #[test]
    fn proxy_urls_parse_with_default_port_and_decoded_credentials() {
        let p = proxy("http://proxy.example:3128");
        assert_eq!(
            (p.host(), p.port(), p.username()),
            ("proxy.example", 3128, None)
        );
        assert_eq!(proxy("HTTP://proxy.example/").port(), 80);
        assert_eq!(
            proxy("  proxy.example:8080 ").socket_addr_string(),
            "proxy.example:8080"
        );
        let p = proxy("http://al%69ce:p%40ss:w%3Ard@[::1]:3128");
        assert_eq!((p.host(), p.port()), ("::1", 3128));
        assert_eq!(p.username(), Some("alice"));
        assert_eq!(p.socket_addr_string(), "[::1]:3128");
        // "alice:p@ss:w:rd", RFC 7617's user-pass.
        assert_eq!(
            p.authorization().unwrap(),
            format!("Basic {}", BASE64.encode("alice:p@ss:w:rd"))
        );
        // A raw '@' in the password: the last '@' ends the userinfo.
        assert_eq!(
            proxy("http://u:a@b@h:1").authorization(),
            proxy("http://u:a%40b@h:1").authorization()
        );
        // A user without a password has an empty one.
        assert_eq!(
            proxy("http://token@h:1").authorization().unwrap(),
            format!("Basic {}", BASE64.encode("token:"))
        );
        assert_eq!("http://h:9".parse::<Proxy>().unwrap(), proxy("http://h:9"));
    }

    #[test]
    fn rfc_7617_example_credentials() {
        let p = proxy("http://Aladdin:open%20sesame@h:1");
        assert_eq!(
            p.authorization().as_deref(),
            Some("Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==")
        );
    }

    #[test]
    fn unsupported_schemes_and_bad_urls_are_refused_clearly() {
        for (input, scheme) in [
            ("https://h:1", "https"),
            ("socks5://h:1080", "socks5"),
            ("socks5h://h:1080", "socks5h"),
            ("ws://h:1", "ws"),
        ] {
            let e = Proxy::parse(input).unwrap_err();
            assert_eq!(e, ProxyError::UnsupportedScheme(scheme.into()), "{input}");
            assert!(e.to_string().contains("only http:// proxies"), "{e}");
        }
        for bad in [
            "http://",
            "http://:8080",
            "http://h:0",
            "http://h:99999",
            "http://h:x",
            "http://h:1/path",
            "http://h:1?q",
            "http://h:1#f",
            "http://u%zz:p@h:1",
            "http://u:p%4@h:1",
            "http://u%3Ax:p@h:1",
            "http://:p@h:1",
            "http://u:%ff@h:1",
            "http://h\r\nX: y:1",
            "http://[::1:1",
        ] {
            assert!(
                matches!(Proxy::parse(bad), Err(ProxyError::InvalidUrl(_))),
                "{bad}: {:?}",
                Proxy::parse(bad)
            );
        }
    }

    #[test]
    fn the_password_is_never_displayed() {
        let p = proxy("http://alice:hunter2@h:3128");
        assert_eq!(p.to_string(), "http://alice@h:3128");
        let debug = format!("{p:?}");
        assert!(!debug.contains("hunter2"), "{debug}");
        assert!(debug.contains("<redacted>"), "{debug}");
        assert_eq!(proxy("http://h:1").to_string(), "http://h:1");
    }

    #[test]
    fn connect_request_names_the_target_with_its_port_and_the_credentials() {
        let p = proxy("http://user:pa%20ss@proxy:3128");
        let (_, req) = ProxyConnect::new(&p, &url("wss://chat.example/ws?x=1"));
        let expected = format!(
            "CONNECT chat.example:443 HTTP/1.1\r\nHost: chat.example:443\r\n\
             Proxy-Authorization: Basic {}\r\n\r\n",
            BASE64.encode("user:pa ss")
        );
        assert_eq!(req, expected.as_bytes());
        let (_, req) = ProxyConnect::new(&proxy("proxy:1"), &url("ws://[::1]:9001/"));
        assert_eq!(
            req,
            &b"CONNECT [::1]:9001 HTTP/1.1\r\nHost: [::1]:9001\r\n\r\n"[..]
        );
        let (_, req) = ProxyConnect::new(&proxy("proxy:1"), &url("ws://h/"));
        assert!(req.starts_with(b"CONNECT h:80 HTTP/1.1\r\n"));
    }

    #[test]
    fn a_2xx_answer_opens_the_tunnel_and_keeps_the_bytes_after_it() {
        let p = proxy("proxy:1");
        let (mut c, _) = ProxyConnect::new(&p, &url("ws://h/"));
        let answer =
            b"HTTP/1.1 200 Connection established\r\nContent-Length: 5\r\n\r\nHTTP/1.1 101";
        // Trickled byte by byte: nothing until the head ends.
        let (head, last) = answer.split_at(answer.len() - 12);
        for b in &head[..head.len() - 1] {
            assert!(c.feed(&[*b]).unwrap().is_none());
        }
        let mut rest = vec![head[head.len() - 1]];
        rest.extend_from_slice(last);
        let tunnel = c.feed(&rest).unwrap().unwrap();
        assert_eq!(tunnel.status(), 200);
        // Content-Length on a 2xx CONNECT answer is ignored: all of it is
        // the tunnel's.
        assert_eq!(tunnel.buffered(), b"HTTP/1.1 101");
        assert_eq!(&tunnel.into_buffered()[..], b"HTTP/1.1 101");
        assert_eq!(c.feed(b"more"), Err(ProxyError::Finished));
        assert!(matches!(c.poll_response(), Err(ProxyError::Finished)));

        // HTTP/1.0 and another 2xx are fine; read_buf + poll_response too.
        let (mut c, _) = ProxyConnect::new(&p, &url("wss://h/"));
        c.read_buf().extend_from_slice(b"HTTP/1.0 204 OK\r\n\r\n");
        let tunnel = c.poll_response().unwrap().unwrap();
        assert_eq!((tunnel.status(), tunnel.buffered()), (204, &b""[..]));
    }

    #[test]
    fn bytes_after_the_answer_are_refused_before_tls() {
        let (mut c, _) = ProxyConnect::new(&proxy("proxy:1"), &url("wss://h/"));
        let e = c.feed(b"HTTP/1.1 200 OK\r\n\r\n\x16\x03\x01").unwrap_err();
        assert_eq!(e, ProxyError::DataBeforeTls { len: 3 });
    }

    #[test]
    fn refusals_carry_the_status_and_reason() {
        for (answer, status, reason) in [
            (
                &b"HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm=\"x\"\r\nContent-Length: 0\r\n\r\n"[..],
                407,
                "Proxy Authentication Required",
            ),
            (b"HTTP/1.1 403 Forbidden\r\n\r\nbody", 403, "Forbidden"),
            (b"HTTP/1.0 502 Bad Gateway\r\n\r\n", 502, "Bad Gateway"),
            (b"HTTP/1.1 101 Switching Protocols\r\n\r\n", 101, "Switching Protocols"),
            (b"HTTP/1.1 301 \r\n\r\n", 301, ""),
        ] {
            let (mut c, _) = ProxyConnect::new(&proxy("proxy:1"), &url("ws://h/"));
            let e = c.feed(answer).unwrap_err();
            assert_eq!(
                e,
                ProxyError::Refused {
                    status,
                    reason: reason.into()
                }
            );
            assert_eq!(e.status(), Some(status));
            assert!(e.to_string().contains(&status.to_string()), "{e}");
            // Failed for good.
            assert_eq!(c.feed(b"x"), Err(ProxyError::Finished));
        }
        // A long reason is cut short.
        let long = format!("HTTP/1.1 500 {}\r\n\r\n", "x".repeat(10_000));
        let (mut c, _) = ProxyConnect::new(&proxy("proxy:1"), &url("ws://h/"));
        match c.feed(long.as_bytes()) {
            Err(ProxyError::Refused {
                status: 500,
                reason,
            }) => assert_eq!(reason.len(), MAX_REASON),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn malformed_and_oversized_answers_are_errors_not_panics() {
        for garbage in [
            &b"SSH-2.0-OpenSSH\r\n\r\n"[..],
            b"HTTP/1.1 abc OK\r\n\r\n",
            b"HTTP/2 200\r\n\r\n",
            b"\x00\x01\x02\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nbad header\r\n\r\n",
        ] {
            let (mut c, _) = ProxyConnect::new(&proxy("proxy:1"), &url("ws://h/"));
            let e = c.feed(garbage).unwrap_err();
            assert!(matches!(e, ProxyError::Malformed(_)), "{garbage:?}: {e:?}");
            assert_eq!(e.status(), None);
        }
        let mut many = String::from("HTTP/1.1 200 OK\r\n");
        for i in 0..=MAX_HEADERS {
            many.push_str(&format!("X-{i}: y\r\n"));
        }
        many.push_str("\r\n");
        let (mut c, _) = ProxyConnect::new(&proxy("proxy:1"), &url("ws://h/"));
        assert_eq!(
            c.feed(many.as_bytes()).unwrap_err(),
            ProxyError::Malformed("too many headers")
        );
        // A head that never ends is cut off at the limit.
        let (c, _) = ProxyConnect::new(&proxy("proxy:1"), &url("ws://h/"));
        let mut c = c.max_response_size(100);
        assert_eq!(c.feed(&[b'a'; 100]).unwrap(), None);
        assert_eq!(
            c.feed(b"a").unwrap_err(),
            ProxyError::ResponseTooLarge { limit: 100 }
        );
    }

    #[test]
    fn the_env_order_follows_python_websockets_then_all_proxy() {
        let all = [
            ("wss_proxy", "wss:1"),
            ("ws_proxy", "ws:1"),
            ("https_proxy", "https:1"),
            ("http_proxy", "http:1"),
            ("all_proxy", "all:1"),
        ];
        assert_eq!(chosen("wss://t/", &all).as_deref(), Some("wss:1"));
        assert_eq!(chosen("ws://t/", &all).as_deref(), Some("ws:1"));
        // Without the WebSocket-specific ones: https_proxy for both.
        let rest = &all[2..];
        assert_eq!(chosen("wss://t/", rest).as_deref(), Some("https:1"));
        assert_eq!(chosen("ws://t/", rest).as_deref(), Some("https:1"));
        // http_proxy is for ws:// only.
        let rest = &all[3..];
        assert_eq!(chosen("wss://t/", rest).as_deref(), Some("all:1"));
        assert_eq!(chosen("ws://t/", rest).as_deref(), Some("http:1"));
        assert_eq!(chosen("wss://t/", &all[4..]).as_deref(), Some("all:1"));
        assert_eq!(chosen("ws://t/", &all[4..]).as_deref(), Some("all:1"));
        assert_eq!(chosen("ws://t/", &[]), None);
        // Other scheme's variables are not used.
        assert_eq!(chosen("wss://t/", &[("ws_proxy", "ws:1")]), None);
    }

    #[test]
    fn lower_case_wins_and_an_empty_lower_case_variable_hides_the_upper_case_one() {
        let both = [("HTTPS_PROXY", "upper:1"), ("https_proxy", "lower:1")];
        assert_eq!(chosen("wss://t/", &both).as_deref(), Some("lower:1"));
        assert_eq!(chosen("wss://t/", &both[..1]).as_deref(), Some("upper:1"));
        let hidden = [("HTTPS_PROXY", "upper:1"), ("https_proxy", "")];
        assert_eq!(chosen("wss://t/", &hidden), None);
        // ... and the next name in the order is tried.
        let next = [("https_proxy", " "), ("ALL_PROXY", "all:1")];
        assert_eq!(chosen("wss://t/", &next).as_deref(), Some("all:1"));
        assert_eq!(
            chosen("ws://t/", &[("WS_PROXY", "ws:1")]).as_deref(),
            Some("ws:1")
        );
        let upper_no = [("NO_PROXY", "t"), ("ALL_PROXY", "all:1")];
        assert_eq!(chosen("ws://t/", &upper_no), None);
    }

    #[test]
    fn upper_case_http_proxy_is_ignored_in_a_cgi_script() {
        let cgi = [("REQUEST_METHOD", "GET"), ("HTTP_PROXY", "evil:1")];
        assert_eq!(chosen("ws://t/", &cgi), None);
        let lower = [("REQUEST_METHOD", "GET"), ("http_proxy", "ok:1")];
        assert_eq!(chosen("ws://t/", &lower).as_deref(), Some("ok:1"));
        assert_eq!(chosen("ws://t/", &cgi[1..]).as_deref(), Some("evil:1"));
    }

    #[test]
    fn an_unusable_variable_is_an_error_naming_it() {
        let e = Proxy::from_env_with(&url("wss://t/"), env(&[("HTTPS_PROXY", "socks5://s:1")]))
            .unwrap_err();
        assert_eq!(
            e,
            ProxyError::Env(Box::new((
                "HTTPS_PROXY",
                ProxyError::UnsupportedScheme("socks5".into())
            )))
        );
        assert!(e.to_string().contains("HTTPS_PROXY"), "{e}");
        assert!(e.to_string().contains("socks5"), "{e}");
        // Bypassed targets never look at it.
        let vars = [("https_proxy", "socks5://s:1"), ("no_proxy", "t")];
        assert_eq!(chosen("wss://t/", &vars), None);
    }

    #[test]
    fn credentials_come_through_from_the_environment() {
        let vars = [("https_proxy", "http://u:p%2Fw@proxy:3128/")];
        let p = Proxy::from_env_with(&url("wss://t/"), env(&vars))
            .unwrap()
            .unwrap();
        assert_eq!(p.username(), Some("u"));
        assert_eq!(
            p.authorization(),
            proxy("http://u:p%2fw@x:1").authorization()
        );
    }

    #[test]
    fn no_proxy_matches_domains_subdomains_and_leading_dots() {
        let bypass = |no_proxy: &str, target: &str| Proxy::bypasses(no_proxy, &url(target));
        assert!(bypass("example.com", "ws://example.com/"));
        assert!(bypass("example.com", "ws://a.b.example.com/"));
        assert!(bypass(".example.com", "ws://example.com/"));
        assert!(bypass(".example.com", "ws://a.example.com/"));
        assert!(bypass("*.example.com", "ws://a.example.com/"));
        assert!(bypass("EXAMPLE.com", "ws://Example.COM/"));
        assert!(bypass("example.com.", "ws://example.com./"));
        assert!(!bypass("example.com", "ws://badexample.com/"));
        assert!(!bypass("example.com", "ws://example.com.evil/"));
        assert!(!bypass("a.example.com", "ws://example.com/"));
        assert!(bypass(" other , example.com ", "ws://example.com/"));
        assert!(!bypass("", "ws://example.com/"));
        assert!(!bypass(",,.", "ws://example.com/"));
        assert!(bypass("*", "ws://anything/"));
        assert!(bypass("other, *", "ws://anything/"));
        assert!(!bypass("*x", "ws://anything/"));
        // localhost is not special, and names are not resolved.
        assert!(bypass("localhost", "ws://localhost:9/"));
        assert!(!bypass("localhost", "ws://127.0.0.1:9/"));
    }

    #[test]
    fn no_proxy_ports_must_match_when_given() {
        let bypass = |no_proxy: &str, target: &str| Proxy::bypasses(no_proxy, &url(target));
        assert!(bypass("example.com:8080", "ws://example.com:8080/"));
        assert!(!bypass("example.com:8080", "ws://example.com/"));
        assert!(bypass("example.com:443", "wss://example.com/"));
        assert!(bypass(".example.com:80", "ws://a.example.com/"));
        assert!(!bypass("example.com:x", "ws://example.com/"));
        assert!(bypass("[::1]:9001", "ws://[::1]:9001/"));
        assert!(!bypass("[::1]:9001", "ws://[::1]:9002/"));
        assert!(bypass("127.0.0.1:9001", "ws://127.0.0.1:9001/"));
        assert!(!bypass("127.0.0.1:9001", "ws://127.0.0.1:9002/"));
    }

    #[test]
    fn no_proxy_ip_literals_match_exactly_and_cidr_ranges_contain() {
        let bypass = |no_proxy: &str, target: &str| Proxy::bypasses(no_proxy, &url(target));
        assert!(bypass("127.0.0.1", "ws://127.0.0.1:9/"));
        assert!(!bypass("0.0.1", "ws://127.0.0.1/"));
        assert!(!bypass("27.0.0.1", "ws://127.0.0.1/"));
        assert!(!bypass("127.0.0.1", "ws://127.0.0.2/"));
        assert!(bypass("::1", "ws://[::1]/"));
        assert!(bypass("[::1]", "ws://[::1]/"));
        assert!(bypass("0:0::1", "ws://[::1]/"));
        assert!(!bypass("::2", "ws://[::1]/"));
        assert!(bypass("10.0.0.0/8", "ws://10.200.3.4/"));
        assert!(!bypass("10.0.0.0/8", "ws://11.0.0.1/"));
        assert!(bypass("192.168.1.0/24:8080", "ws://192.168.1.7:8080/"));
        assert!(bypass("0.0.0.0/0", "ws://8.8.8.8/"));
        assert!(bypass("127.0.0.1/32", "ws://127.0.0.1/"));
        assert!(!bypass("127.0.0.1/33", "ws://127.0.0.1/"));
        assert!(bypass("fd00::/8", "ws://[fd12::1]/"));
        assert!(!bypass("fd00::/8", "ws://[fe80::1]/"));
        assert!(!bypass("fd00::/8", "ws://10.0.0.1/"));
        assert!(!bypass("10.0.0.0/8", "ws://ten.example/"));
        // An IP entry is not a domain suffix, and a domain never matches an IP.
        assert!(!bypass("1", "ws://127.0.0.1/"));
    }

    #[test]
    fn no_proxy_bypass_through_the_environment() {
        let vars = [("no_proxy", "127.0.0.1,.internal"), ("all_proxy", "p:1")];
        assert_eq!(chosen("ws://127.0.0.1:9/", &vars), None);
        assert_eq!(chosen("wss://db.internal/", &vars), None);
        assert_eq!(chosen("ws://example.com/", &vars).as_deref(), Some("p:1"));
        // An empty lower-case no_proxy hides the upper-case one.
        let hidden = [("no_proxy", ""), ("NO_PROXY", "*"), ("all_proxy", "p:1")];
        assert_eq!(chosen("ws://example.com/", &hidden).as_deref(), Some("p:1"));
    }

    #[test]
    fn the_first_hop_is_the_proxy_when_there_is_one() {
        let target = url("wss://[::1]:9443/");
        assert_eq!(first_hop(&target, None), ("::1", 9443));
        let p = proxy("http://u:p@proxy.example:3128");
        assert_eq!(first_hop(&target, Some(&p)), ("proxy.example", 3128));
    }

    #[test]
    fn proxy_errors_are_small_and_reachable_from_error() {
        assert!(std::mem::size_of::<ProxyError>() <= 24);
        let e = crate::Error::from(ProxyError::Refused {
            status: 407,
            reason: "Proxy Authentication Required".into(),
        });
        assert!(e.is_proxy());
        assert!(!crate::Error::Closed.is_proxy());
        assert!(matches!(&e, crate::Error::Proxy(p) if p.status() == Some(407)));
        assert!(e.to_string().contains("407"), "{e}");
        assert_eq!(e.close_code(), None);
    }
}
