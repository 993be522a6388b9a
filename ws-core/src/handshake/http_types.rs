//! The handshake in the `http` crate's types (cargo feature `http`), so the
//! handshake meets the rest of a Rust HTTP stack (hyper, axum, tower, a
//! request built for tungstenite) without hand-copying headers:
//!
//! - server: a [`Request`] read from a socket as an `http::Request<()>`
//!   ([`Request::to_http`]), an `http::Request` another server parsed as a
//!   [`Request`] ([`Request::from_http`]) to validate and answer by the same
//!   rules, the `101` as an `http::Response<()>`
//!   ([`Request::accept_http`]), a refusal as an `http::Response`
//!   ([`HandshakeError::to_http_response`]), and an application's own
//!   `http::Response` as the options of an accept ([`Accept::from_http`]) or
//!   as the bytes of a rejection ([`response_bytes`]);
//! - client: a [`ClientRequest`] built from an `http::Request<()>`
//!   ([`ClientRequest::from_http`], and [`IntoClientRequest`] for it and for
//!   `http::Uri`), the verified answer as an `http::Response<()>`
//!   ([`Response::to_http`], and [`UnexpectedResponse::to_http`] for a
//!   refusal).
//!
//! The conversions copy the head once; none is on a connection's hot path.

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue};

use super::client::{ClientRequest, IntoClientRequest, Response};
use super::error::{HandshakeError, UnexpectedResponse};
use super::headers::{HeaderIter, trim_ows};
use super::is_valid_key;
use super::response::{UPGRADE_REQUIRED, http_response};
use super::server::{Accept, Request};
use crate::config::Config;
use crate::error::Error;
use crate::url::WsUrl;

fn invalid(what: impl Into<Box<str>>) -> HandshakeError {
    HandshakeError::InvalidInput(what.into())
}

/// Copies parsed headers into `map`; `bad` is the error for a header the
/// `http` crate refuses (httparse and `http` agree, so it does not occur).
fn copy_headers(
    map: &mut http::HeaderMap,
    headers: HeaderIter<'_>,
    bad: HandshakeError,
) -> Result<(), HandshakeError> {
    map.reserve(headers.len());
    for (name, value) in headers {
        match (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_bytes(value),
        ) {
            (Ok(name), Ok(value)) => {
                map.append(name, value);
            }
            _ => return Err(bad),
        }
    }
    Ok(())
}

fn version_of(minor: u8) -> http::Version {
    if minor == 0 {
        http::Version::HTTP_10
    } else {
        http::Version::HTTP_11
    }
}

impl Request {
    /// This request head as an `http::Request<()>`: method, target (as the
    /// URI), version and every header in the order received, repeated ones
    /// included, for code written against the `http` crate (routing,
    /// authentication middleware).
    ///
    /// # Errors
    ///
    /// [`HandshakeError::Malformed`] if the target is not a URI the `http`
    /// crate accepts (httparse lets a few more characters through).
    pub fn to_http(&self) -> Result<http::Request<()>, HandshakeError> {
        let method = http::Method::from_bytes(self.method().as_bytes())
            .map_err(|_| HandshakeError::Malformed("method"))?;
        let uri = self
            .target()
            .parse::<http::Uri>()
            .map_err(|_| HandshakeError::Malformed("request target is not a URI"))?;
        let mut req = http::Request::new(());
        *req.method_mut() = method;
        *req.uri_mut() = uri;
        *req.version_mut() = version_of(self.version());
        copy_headers(
            req.headers_mut(),
            self.headers(),
            HandshakeError::Malformed("header"),
        )?;
        Ok(req)
    }

    /// The head of an `http::Request` another HTTP server parsed (hyper,
    /// axum), so that [`validate_upgrade`](Self::validate_upgrade),
    /// [`accept_http`](Self::accept_http) and the handlers judge it by
    /// exactly the rules they apply to a request read from a socket. The
    /// target is the URI's path and query (`/` if it has none); the body is
    /// not looked at.
    ///
    /// # Errors
    ///
    /// [`HandshakeError::UnsupportedHttpVersion`] for HTTP/2 and HTTP/3
    /// (their WebSocket bootstrap, RFC 8441, is not supported) and for
    /// HTTP/0.9.
    pub fn from_http<B>(req: &http::Request<B>) -> Result<Request, HandshakeError> {
        let version = match req.version() {
            http::Version::HTTP_10 => 0,
            http::Version::HTTP_11 => 1,
            _ => return Err(HandshakeError::UnsupportedHttpVersion),
        };
        let target = req.uri().path_and_query().map_or("/", |p| p.as_str());
        let headers = req
            .headers()
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_bytes()));
        Ok(Request::from_parts(
            req.method().as_str(),
            target,
            version,
            headers,
        ))
    }

    /// [`accept_with_config`](Self::accept_with_config) with the `101
    /// Switching Protocols` as an `http::Response<()>`, for a server that
    /// writes responses itself (hyper: return it from the service, then
    /// take the connection with `hyper::upgrade::on`).
    ///
    /// # Errors
    ///
    /// As for [`accept`](Self::accept); answer with the error's
    /// [`to_http_response`](HandshakeError::to_http_response).
    pub fn accept_http(
        &self,
        opts: &Accept,
        config: Config,
    ) -> Result<(http::Response<()>, Config), HandshakeError> {
        let mut resp = http::Response::new(());
        *resp.status_mut() = http::StatusCode::SWITCHING_PROTOCOLS;
        let headers = resp.headers_mut();
        let config = self.negotiate_into(opts, config, |name, value| {
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| invalid(format!("header name {name:?}")))?;
            let value = HeaderValue::from_str(value)
                .map_err(|_| invalid(format!("value of header {name:?}")))?;
            headers.append(name, value);
            Ok(())
        })?;
        Ok((resp, config))
    }
}

impl TryFrom<&Request> for http::Request<()> {
    type Error = HandshakeError;

    /// [`Request::to_http`].
    fn try_from(req: &Request) -> Result<Self, HandshakeError> {
        req.to_http()
    }
}

impl<B> TryFrom<&http::Request<B>> for Request {
    type Error = HandshakeError;

    /// [`Request::from_http`].
    fn try_from(req: &http::Request<B>) -> Result<Self, HandshakeError> {
        Request::from_http(req)
    }
}

impl HandshakeError {
    /// The answer to this failure as an `http::Response`: the status of
    /// [`http_status`](Self::http_status), `Allow: GET` for 405,
    /// `Sec-WebSocket-Version: 13` (with `Upgrade`) for 426, and the error
    /// text as a `text/plain` body. The framing headers
    /// (`Content-Length`, `Connection: close`) of
    /// [`response`](Self::response) are left to the HTTP server.
    pub fn to_http_response(&self) -> http::Response<String> {
        let status = self.http_status();
        let extra: &[(&str, &str)] = match status {
            405 => &[("Allow", "GET")],
            426 => UPGRADE_REQUIRED,
            _ => &[],
        };
        let mut resp = http::Response::new(format!("{self}\n"));
        *resp.status_mut() =
            http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::BAD_REQUEST);
        let headers = resp.headers_mut();
        headers.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        for (name, value) in extra {
            // Fixed, valid names and values: the `if let` never skips one.
            if let (Ok(name), Ok(value)) = (
                HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_str(value),
            ) {
                headers.append(name, value);
            }
        }
        resp
    }
}

/// An application's own complete answer (a refusal such as 401 or 403, a
/// page) given as an `http::Response`, as the HTTP/1.1 bytes the adapters'
/// `accept_with` decision returns: the status, `Content-Type` (from the
/// response, `text/plain; charset=utf-8` if it has none), the body's
/// `Content-Length`, `Connection: close`, then the response's other
/// headers.
///
/// # Errors
///
/// [`HandshakeError::InvalidInput`] for a header value that is not visible
/// ASCII (the bytes are written from `&str`s), so no answer is ever split.
pub fn response_bytes<B: AsRef<[u8]>>(resp: &http::Response<B>) -> Result<Bytes, HandshakeError> {
    let mut content_type = "text/plain; charset=utf-8";
    let mut headers = Vec::with_capacity(resp.headers().len());
    for (name, value) in resp.headers() {
        let value = value
            .to_str()
            .map_err(|_| invalid(format!("value of header {name}")))?;
        match *name {
            http::header::CONTENT_TYPE => content_type = value,
            http::header::CONTENT_LENGTH | http::header::TRANSFER_ENCODING => {}
            _ => headers.push((name.as_str(), value)),
        }
    }
    http_response(
        resp.status().as_u16(),
        content_type,
        &headers,
        resp.body().as_ref(),
    )
}

impl Accept {
    /// Accept options from an `http::Response` the application built (as
    /// with tungstenite's accept callback): its `Sec-WebSocket-Protocol`
    /// values become the subprotocols the server supports (one is selected
    /// only if the client offered it), and its other headers are sent with
    /// the `101`. `Upgrade`, `Connection` and `Sec-WebSocket-Accept` are
    /// written by the handshake and skipped here; the body is ignored.
    ///
    /// # Errors
    ///
    /// [`HandshakeError::InvalidInput`] for a status of 300 or more (a
    /// refusal: send it with [`response_bytes`] or as it is), for
    /// `Sec-WebSocket-Extensions` (permessage-deflate is negotiated by
    /// [`Config::deflate`]) or a framing header (`Content-Length`,
    /// `Transfer-Encoding`), and for a value that is not visible ASCII.
    pub fn from_http<B>(resp: &http::Response<B>) -> Result<Accept, HandshakeError> {
        if resp.status().as_u16() >= 300 {
            return Err(invalid(format!(
                "status {} refuses the upgrade; answer with it instead of accepting",
                resp.status().as_u16()
            )));
        }
        let mut accept = Accept::new();
        for (name, value) in resp.headers() {
            let value = value
                .to_str()
                .map_err(|_| invalid(format!("value of header {name}")))?;
            match name.as_str() {
                "upgrade" | "connection" | "sec-websocket-accept" => {}
                "sec-websocket-protocol" => {
                    for p in value.split(',').map(|p| p.trim_matches([' ', '\t'])) {
                        if !p.is_empty() {
                            accept = accept.subprotocol(p);
                        }
                    }
                }
                "sec-websocket-extensions" | "content-length" | "transfer-encoding" => {
                    return Err(invalid(format!("header {name} is set by the handshake")));
                }
                _ => accept = accept.header(name.as_str(), value),
            }
        }
        Ok(accept)
    }
}

impl ClientRequest {
    /// The URL to connect to and the request to send, from an
    /// `http::Request<()>` (as tungstenite's `IntoClientRequest` takes):
    /// the URI must be an absolute `ws://` or `wss://` one; its headers
    /// (`Cookie`, `Authorization: Bearer ...`, `Origin`, any custom one)
    /// are sent, `Sec-WebSocket-Protocol` values are offered as
    /// subprotocols. The headers the handshake writes itself may be given
    /// if they say what it says (`Host` equal to the URI's,
    /// `Upgrade: websocket`, `Connection: Upgrade`,
    /// `Sec-WebSocket-Version: 13`); a valid `Sec-WebSocket-Key` is
    /// accepted and replaced by a fresh one, as RFC 6455 10.3 asks of
    /// every connection.
    ///
    /// # Errors
    ///
    /// [`Error::Url`] for a URI that is not an absolute `ws://`/`wss://`
    /// URL ([`UrlError`](crate::url::UrlError) names the problem: another
    /// scheme, userinfo, no host); [`Error::Handshake`] with
    /// [`HandshakeError::InvalidInput`] for what cannot be a WebSocket
    /// request: a method other than `GET`, a version other than HTTP/1.1,
    /// a handshake header that contradicts the handshake,
    /// `Sec-WebSocket-Extensions` (permessage-deflate is offered by
    /// [`Config::deflate`]), a body header, a subprotocol that is not a
    /// token, a value that is not visible ASCII.
    pub fn from_http(req: &http::Request<()>) -> Result<(WsUrl, ClientRequest), Error> {
        if req.method() != http::Method::GET {
            return Err(invalid(format!(
                "method {}: a WebSocket request is a GET",
                req.method()
            ))
            .into());
        }
        if req.version() != http::Version::HTTP_11 {
            return Err(invalid(format!(
                "version {:?}: a WebSocket request is HTTP/1.1",
                req.version()
            ))
            .into());
        }
        let uri = req.uri();
        if uri.scheme().is_none() {
            return Err(crate::url::UrlError::MissingScheme.into());
        }
        let url = WsUrl::parse(&uri.to_string())?;
        let mut out = ClientRequest::from_url(&url);
        for (name, value) in req.headers() {
            let text = value
                .to_str()
                .map_err(|_| invalid(format!("value of header {name} is not visible ASCII")))?;
            let must = |ok: bool, what: &str| match ok {
                true => Ok(()),
                false => Err(invalid(format!("header {name}: {text:?} {what}"))),
            };
            match name.as_str() {
                "host" => must(
                    text.eq_ignore_ascii_case(&url.host_header()),
                    "differs from the URI's host",
                )?,
                "upgrade" => must(has_token(text, "websocket"), "must name websocket")?,
                "connection" => must(has_token(text, "upgrade"), "must name Upgrade")?,
                "sec-websocket-version" => must(text.trim() == "13", "must be 13")?,
                "sec-websocket-key" => must(
                    is_valid_key(text.trim().as_bytes()),
                    "is not base64 of 16 bytes",
                )?,
                "sec-websocket-protocol" => {
                    for p in text.split(',').map(|p| p.trim_matches([' ', '\t'])) {
                        if !p.is_empty() {
                            out = out.subprotocol(p)?;
                        }
                    }
                }
                "sec-websocket-extensions" => {
                    return Err(invalid(
                        "Sec-WebSocket-Extensions: permessage-deflate is offered by Config::deflate",
                    )
                    .into());
                }
                "content-length" | "transfer-encoding" => {
                    return Err(
                        invalid(format!("header {name}: a WebSocket request has no body")).into(),
                    );
                }
                _ => out = out.header(name.as_str(), text)?,
            }
        }
        Ok((url, out))
    }
}

/// Whether the comma-separated list `value` holds `token`
/// (case-insensitive).
fn has_token(value: &str, token: &str) -> bool {
    value
        .split(',')
        .any(|t| trim_ows(t.as_bytes()).eq_ignore_ascii_case(token.as_bytes()))
}

impl IntoClientRequest for http::Request<()> {
    fn into_client_request(self) -> Result<(WsUrl, ClientRequest), Error> {
        ClientRequest::from_http(&self)
    }
}

impl IntoClientRequest for &http::Request<()> {
    fn into_client_request(self) -> Result<(WsUrl, ClientRequest), Error> {
        ClientRequest::from_http(self)
    }
}

impl IntoClientRequest for http::Uri {
    fn into_client_request(self) -> Result<(WsUrl, ClientRequest), Error> {
        (&self).into_client_request()
    }
}

impl IntoClientRequest for &http::Uri {
    fn into_client_request(self) -> Result<(WsUrl, ClientRequest), Error> {
        if self.scheme().is_none() {
            return Err(crate::url::UrlError::MissingScheme.into());
        }
        self.to_string().into_client_request()
    }
}

/// A verified or refused answer's head as an `http::Response<()>`.
fn response_head(
    status: u16,
    headers: HeaderIter<'_>,
) -> Result<http::Response<()>, HandshakeError> {
    let mut resp = http::Response::new(());
    *resp.status_mut() =
        http::StatusCode::from_u16(status).map_err(|_| HandshakeError::Malformed("status"))?;
    copy_headers(
        resp.headers_mut(),
        headers,
        HandshakeError::Malformed("header"),
    )?;
    Ok(resp)
}

impl Response {
    /// The server's `101` as an `http::Response<()>`: the status and every
    /// header in the order received (`Sec-WebSocket-Protocol`, cookies the
    /// server set, ...), for code written against the `http` crate.
    ///
    /// # Errors
    ///
    /// [`HandshakeError::Malformed`] if a header is one the `http` crate
    /// refuses; httparse and `http` accept the same, so this does not
    /// happen for a response that was verified.
    pub fn to_http(&self) -> Result<http::Response<()>, HandshakeError> {
        response_head(self.status(), self.headers())
    }
}

impl TryFrom<&Response> for http::Response<()> {
    type Error = HandshakeError;

    /// [`Response::to_http`].
    fn try_from(resp: &Response) -> Result<Self, HandshakeError> {
        resp.to_http()
    }
}

impl UnexpectedResponse {
    /// The server's refusal (401, 403, a redirect) as an
    /// `http::Response<()>`, to read as one reads any other response.
    ///
    /// # Errors
    ///
    /// As for [`Response::to_http`].
    pub fn to_http(&self) -> Result<http::Response<()>, HandshakeError> {
        response_head(self.status(), self.headers())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handshake::{ClientHandshake, ServerHandshake};

    const GOOD: &str = "GET /chat?room=1 HTTP/1.1\r\nHost: server.example.com\r\n\
        Upgrade: websocket\r\nConnection: Upgrade\r\n\
        Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
        Sec-WebSocket-Protocol: chat, superchat\r\nCookie: a=1\r\nCookie: b=2\r\n\r\n";

    fn parse(raw: &str) -> Request {
        ServerHandshake::new()
            .feed(raw.as_bytes())
            .unwrap()
            .unwrap()
    }

    fn names_and_values(req: &Request) -> Vec<(String, Vec<u8>)> {
        req.headers()
            .map(|(n, v)| (n.to_ascii_lowercase(), v.to_vec()))
            .collect()
    }

    #[test]
    fn a_parsed_request_becomes_an_http_request_with_every_header_in_order() {
        let req = parse(GOOD);
        let h = req.to_http().unwrap();
        assert_eq!(h.method(), http::Method::GET);
        assert_eq!(h.uri().path(), "/chat");
        assert_eq!(h.uri().query(), Some("room=1"));
        assert_eq!(h.version(), http::Version::HTTP_11);
        assert_eq!(h.headers()["host"], "server.example.com");
        let cookies: Vec<_> = h.headers().get_all("cookie").iter().collect();
        assert_eq!(cookies, ["a=1", "b=2"]);
        assert_eq!(h.headers().len(), req.headers().len());
        let via_try: http::Request<()> = (&req).try_into().unwrap();
        assert_eq!(via_try.uri(), h.uri());
    }

    #[test]
    fn an_http_1_0_request_keeps_its_version() {
        let h = parse(&GOOD.replacen("HTTP/1.1", "HTTP/1.0", 1))
            .to_http()
            .unwrap();
        assert_eq!(h.version(), http::Version::HTTP_10);
    }

    #[test]
    fn a_request_round_trips_through_http_and_still_validates() {
        let req = parse(GOOD);
        let back = Request::from_http(&req.to_http().unwrap()).unwrap();
        assert_eq!(back.method(), "GET");
        assert_eq!(back.target(), "/chat?room=1");
        assert_eq!(back.version(), 1);
        assert_eq!(names_and_values(&back), names_and_values(&req));
        assert_eq!(
            back.validate_upgrade().unwrap().key(),
            req.validate_upgrade().unwrap().key()
        );
        assert_eq!(
            back.subprotocols().collect::<Vec<_>>(),
            ["chat", "superchat"]
        );
    }

    fn http_upgrade() -> http::request::Builder {
        http::Request::builder()
            .uri("/ws")
            .header("Host", "127.0.0.1:9001")
            .header("Upgrade", "websocket")
            .header("Connection", "keep-alive, Upgrade")
            .header("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
            .header("Sec-WebSocket-Version", "13")
    }

    #[test]
    fn accept_http_gives_the_same_101_as_the_bytes() {
        let h = http_upgrade()
            .header("Sec-WebSocket-Protocol", "chat")
            .body(())
            .unwrap();
        let req = Request::from_http(&h).unwrap();
        let opts = Accept::new()
            .subprotocol("chat")
            .header("X-Served-By", "test");
        let (resp, _) = req.accept_http(&opts, Config::default()).unwrap();
        assert_eq!(resp.status(), http::StatusCode::SWITCHING_PROTOCOLS);
        assert_eq!(
            resp.headers()["sec-websocket-accept"],
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
        assert_eq!(resp.headers()["sec-websocket-protocol"], "chat");
        assert_eq!(resp.headers()["x-served-by"], "test");
        // Header for header what `accept` writes.
        let bytes = req.accept(&opts).unwrap();
        let text = std::str::from_utf8(&bytes).unwrap();
        let lines: Vec<_> = text.trim_end().lines().skip(1).collect();
        assert_eq!(lines.len(), resp.headers().len());
        for (line, (name, value)) in lines.iter().zip(resp.headers()) {
            let (n, v) = line.split_once(": ").unwrap();
            assert!(n.eq_ignore_ascii_case(name.as_str()), "{line}");
            assert_eq!(v, value);
        }
    }

    #[test]
    fn accept_http_negotiates_deflate_like_accept_with_config() {
        let h = http_upgrade()
            .header("Sec-WebSocket-Extensions", "permessage-deflate")
            .body(())
            .unwrap();
        let req = Request::from_http(&h).unwrap();
        let on = Config::default().deflate(crate::deflate::DeflateConfig::enabled());
        let (resp, cfg) = req.accept_http(&Accept::new(), on).unwrap();
        assert!(
            resp.headers()["sec-websocket-extensions"]
                .to_str()
                .unwrap()
                .starts_with("permessage-deflate")
        );
        assert!(cfg.get_negotiated_deflate().is_some());
    }

    #[test]
    fn a_bad_http_upgrade_is_refused_with_the_status_a_socket_would_get() {
        let missing_key = http::Request::builder()
            .uri("/ws")
            .header("Host", "h")
            .header("Upgrade", "websocket")
            .header("Connection", "Upgrade")
            .header("Sec-WebSocket-Version", "13")
            .body(())
            .unwrap();
        let e = Request::from_http(&missing_key)
            .unwrap()
            .accept_http(&Accept::new(), Config::default())
            .unwrap_err();
        assert!(matches!(e, HandshakeError::InvalidKey));
        let resp = e.to_http_response();
        assert_eq!(resp.status(), http::StatusCode::BAD_REQUEST);
        assert!(resp.body().contains("Sec-WebSocket-Key"));

        let wrong_version = http_upgrade()
            .header("Sec-WebSocket-Version", "8")
            .body(())
            .unwrap();
        let e = Request::from_http(&wrong_version)
            .unwrap()
            .validate_upgrade()
            .unwrap_err();
        let resp = e.to_http_response();
        assert_eq!(resp.status(), http::StatusCode::UPGRADE_REQUIRED);
        assert_eq!(resp.headers()["sec-websocket-version"], "13");

        let post = http_upgrade().method("POST").body(()).unwrap();
        let resp = Request::from_http(&post)
            .unwrap()
            .validate_upgrade()
            .unwrap_err()
            .to_http_response();
        assert_eq!(resp.status(), http::StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(resp.headers()["allow"], "GET");
    }

    #[test]
    fn http_2_requests_are_refused_as_an_unsupported_version() {
        let h2 = http_upgrade()
            .version(http::Version::HTTP_2)
            .body(())
            .unwrap();
        assert!(matches!(
            Request::from_http(&h2),
            Err(HandshakeError::UnsupportedHttpVersion)
        ));
    }

    #[test]
    fn an_absolute_form_target_is_routed_by_its_path() {
        let h = http_upgrade().uri("http://h/ws?x=1").body(()).unwrap();
        let req = Request::try_from(&h).unwrap();
        assert_eq!(req.target(), "/ws?x=1");
        assert_eq!(req.path(), "/ws");
    }

    #[test]
    fn every_refusal_converts_with_its_status() {
        for e in [
            HandshakeError::Malformed("x"),
            HandshakeError::MethodNotAllowed,
            HandshakeError::InvalidHost,
            HandshakeError::UnsupportedVersion(None),
            HandshakeError::HeadersTooLarge { limit: 1 },
            HandshakeError::Rejected { status: 403 },
        ] {
            let resp = e.to_http_response();
            assert_eq!(resp.status().as_u16(), e.http_status(), "{e}");
            assert_eq!(resp.body(), &format!("{e}\n"));
        }
    }

    #[test]
    fn an_applications_http_rejection_becomes_response_bytes() {
        let resp = http::Response::builder()
            .status(401)
            .header("WWW-Authenticate", "Bearer")
            .header("Content-Length", "999")
            .body("no token")
            .unwrap();
        let bytes = response_bytes(&resp).unwrap();
        let text = std::str::from_utf8(&bytes).unwrap();
        assert!(text.starts_with("HTTP/1.1 401 Unauthorized\r\n"), "{text}");
        assert!(text.contains("\r\nwww-authenticate: Bearer\r\n"), "{text}");
        assert!(text.contains("\r\nContent-Length: 8\r\n"), "{text}");
        assert!(!text.contains("999"), "{text}");
        assert!(text.ends_with("\r\n\r\nno token"));
        assert!(matches!(
            HandshakeError::rejected_by(&bytes),
            HandshakeError::Rejected { status: 401 }
        ));
        let binary = http::Response::builder()
            .header("X-Bin", HeaderValue::from_bytes(b"a\xffb").unwrap())
            .body(Vec::<u8>::new())
            .unwrap();
        assert!(matches!(
            response_bytes(&binary),
            Err(HandshakeError::InvalidInput(_))
        ));
    }

    #[test]
    fn accept_options_come_from_an_http_response() {
        let template = http::Response::builder()
            .header("Sec-WebSocket-Protocol", "superchat")
            .header("Set-Cookie", "session=1")
            .header("Upgrade", "websocket")
            .body(())
            .unwrap();
        let opts = Accept::from_http(&template).unwrap();
        let resp = parse(GOOD).accept(&opts).unwrap();
        let text = std::str::from_utf8(&resp).unwrap();
        assert!(
            text.contains("\r\nSec-WebSocket-Protocol: superchat\r\n"),
            "{text}"
        );
        assert!(text.contains("\r\nset-cookie: session=1\r\n"), "{text}");
        assert_eq!(text.matches("websocket").count(), 1, "{text}");

        let refusal = http::Response::builder().status(403).body(()).unwrap();
        assert!(Accept::from_http(&refusal).is_err());
        let ext = http::Response::builder()
            .header("Sec-WebSocket-Extensions", "permessage-deflate")
            .body(())
            .unwrap();
        assert!(Accept::from_http(&ext).is_err());
    }

    fn client(req: http::Request<()>) -> Result<(WsUrl, ClientRequest), Error> {
        ClientRequest::from_http(&req)
    }

    fn request_text(req: &ClientRequest) -> String {
        let (_, bytes) = ClientHandshake::with_key(req, *b"the sample nonce");
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    #[test]
    fn a_client_request_carries_headers_subprotocols_cookies_and_a_bearer_token() {
        let (url, req) = client(
            http::Request::builder()
                .uri("wss://chat.example:9443/ws?room=1")
                .header("Authorization", "Bearer abc.def")
                .header("Cookie", "session=42")
                .header("Sec-WebSocket-Protocol", "chat, superchat")
                .header("X-Custom", "yes")
                .body(())
                .unwrap(),
        )
        .unwrap();
        assert!(url.is_tls());
        assert_eq!((url.host(), url.port()), ("chat.example", 9443));
        let text = request_text(&req);
        assert!(
            text.starts_with("GET /ws?room=1 HTTP/1.1\r\nHost: chat.example:9443\r\n"),
            "{text}"
        );
        for line in [
            "authorization: Bearer abc.def",
            "cookie: session=42",
            "x-custom: yes",
            "Sec-WebSocket-Protocol: chat, superchat",
        ] {
            assert!(text.contains(&format!("\r\n{line}\r\n")), "{line}: {text}");
        }
    }

    #[test]
    fn a_tungstenite_style_request_with_handshake_headers_is_accepted_with_a_fresh_key() {
        let (_, req) = client(
            http::Request::builder()
                .uri("ws://127.0.0.1:9001/")
                .header("Host", "127.0.0.1:9001")
                .header("Upgrade", "websocket")
                .header("Connection", "Upgrade")
                .header("Sec-WebSocket-Version", "13")
                .header("Sec-WebSocket-Key", "AAAAAAAAAAAAAAAAAAAAAA==")
                .body(())
                .unwrap(),
        )
        .unwrap();
        let text = request_text(&req);
        assert_eq!(
            text.matches("Host:").count() + text.matches("host:").count(),
            1
        );
        assert_eq!(
            text.to_ascii_lowercase()
                .matches("sec-websocket-key")
                .count(),
            1
        );
        assert!(!text.contains("AAAAAAAA"), "{text}");
    }

    #[test]
    fn what_cannot_be_a_websocket_request_is_refused_with_a_clear_error() {
        let bad_input = |b: http::request::Builder, says: &str| {
            let e = client(b.body(()).unwrap()).unwrap_err();
            assert!(
                matches!(&e, Error::Handshake(HandshakeError::InvalidInput(m)) if m.contains(says)),
                "{says}: {e}"
            );
        };
        let base = || http::Request::builder().uri("ws://h/");
        bad_input(base().method("POST"), "GET");
        bad_input(base().version(http::Version::HTTP_10), "HTTP/1.1");
        bad_input(base().header("Host", "other"), "differs");
        bad_input(base().header("Upgrade", "h2c"), "websocket");
        bad_input(base().header("Connection", "close"), "Upgrade");
        bad_input(base().header("Sec-WebSocket-Version", "8"), "13");
        bad_input(base().header("Sec-WebSocket-Key", "short"), "16 bytes");
        bad_input(
            base().header("Sec-WebSocket-Extensions", "x"),
            "Config::deflate",
        );
        bad_input(base().header("Content-Length", "3"), "no body");
        bad_input(
            base().header("Sec-WebSocket-Protocol", "a b"),
            "subprotocol",
        );
        bad_input(
            base().header("X-Bin", HeaderValue::from_bytes(b"\xff").unwrap()),
            "visible ASCII",
        );
        let bad_url = |uri: &str| {
            let e = client(http::Request::builder().uri(uri).body(()).unwrap()).unwrap_err();
            assert!(matches!(e, Error::Url(_)), "{uri}: {e}");
        };
        bad_url("/relative");
        bad_url("http://h/");
        bad_url("ws://user:pw@h/");
    }

    #[test]
    fn uris_and_requests_are_what_connect_takes() {
        let uri: http::Uri = "ws://h:1/x".parse().unwrap();
        let (url, req) = uri.into_client_request().unwrap();
        assert_eq!(url, WsUrl::parse("ws://h:1/x").unwrap());
        assert_eq!(req.resource(), "/x");
        let r = http::Request::builder().uri("ws://h/y").body(()).unwrap();
        assert_eq!((&r).into_client_request().unwrap().1.resource(), "/y");
        assert_eq!(r.into_client_request().unwrap().0.host(), "h");
        let rel: http::Uri = "/x".parse().unwrap();
        assert!(rel.into_client_request().is_err());
    }

    const ANSWER: &str = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
        Connection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\
        Sec-WebSocket-Protocol: chat\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\n\r\n";

    #[test]
    fn the_clients_verified_response_is_an_http_response() {
        let req = ClientRequest::new("h", 80, "/")
            .subprotocol("chat")
            .unwrap();
        let (mut hs, _) = ClientHandshake::with_key(&req, *b"the sample nonce");
        let resp = hs.feed(ANSWER.as_bytes()).unwrap().unwrap();
        let h = resp.to_http().unwrap();
        assert_eq!(h.status(), http::StatusCode::SWITCHING_PROTOCOLS);
        assert_eq!(h.headers()["sec-websocket-protocol"], "chat");
        let cookies: Vec<_> = h.headers().get_all("set-cookie").iter().collect();
        assert_eq!(cookies, ["a=1", "b=2"]);
        assert_eq!(h.headers().len(), resp.headers().len());
        let via_try: http::Response<()> = (&resp).try_into().unwrap();
        assert_eq!(via_try.headers(), h.headers());
    }

    #[test]
    fn a_refusal_the_client_got_is_an_http_response() {
        let req = ClientRequest::new("h", 80, "/");
        let (mut hs, _) = ClientHandshake::with_key(&req, *b"the sample nonce");
        let e = hs
            .feed(b"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Bearer\r\n\r\n")
            .unwrap_err();
        let HandshakeError::UnexpectedStatus(refusal) = e else {
            panic!("{e}")
        };
        let h = refusal.to_http().unwrap();
        assert_eq!(h.status(), http::StatusCode::UNAUTHORIZED);
        assert_eq!(h.headers()["www-authenticate"], "Bearer");
    }

    #[test]
    fn a_server_accepting_an_http_request_answers_a_client_built_from_one() {
        // Both roles through `http` types, end to end in memory.
        let (_, creq) = client(
            http::Request::builder()
                .uri("ws://h:1/ws")
                .header("Sec-WebSocket-Protocol", "chat")
                .body(())
                .unwrap(),
        )
        .unwrap();
        let (mut chs, bytes) = ClientHandshake::new(&creq);
        let sreq = parse(std::str::from_utf8(&bytes).unwrap());
        let hreq = sreq.to_http().unwrap();
        let (hresp, _) = Request::from_http(&hreq)
            .unwrap()
            .accept_http(&Accept::new().subprotocol("chat"), Config::default())
            .unwrap();
        let mut raw = String::from("HTTP/1.1 101 Switching Protocols\r\n");
        for (n, v) in hresp.headers() {
            raw.push_str(&format!("{n}: {}\r\n", v.to_str().unwrap()));
        }
        raw.push_str("\r\n");
        let resp = chs.feed(raw.as_bytes()).unwrap().unwrap();
        assert_eq!(resp.subprotocol(), Some("chat"));
    }
}
