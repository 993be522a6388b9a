//! Negotiating permessage-deflate in `Sec-WebSocket-Extensions`
//! (RFC 7692 sections 5 to 7), for both roles.
//!
//! The header grammar is RFC 6455 section 9.1: a comma-separated list of
//! extensions, each a token with `;`-separated parameters, each parameter a
//! token with an optional value that is a token or a quoted string (whose
//! unescaped content must again be a token).
//!
//! A server reads the offers in order and accepts the first one it can
//! (section 5.1); an offer with an unknown or repeated parameter, or a value
//! out of range, is declined and the next one tried (section 7). A client
//! fails the handshake on an answer it did not offer or whose parameters
//! break section 7.

use crate::handshake::HandshakeError;

/// The extension's registered name.
pub const EXTENSION_NAME: &str = "permessage-deflate";

/// Largest LZ77 window (32 KiB), the default when no limit is negotiated.
pub const MAX_WINDOW_BITS: u8 = 15;
/// Smallest window RFC 7692 allows on the wire.
pub const MIN_WIRE_WINDOW_BITS: u8 = 8;
/// Smallest window zlib's raw deflate encoder can use; an 8-bit stream is
/// decoded with 9 bits (a larger window reads it safely).
pub const MIN_WINDOW_BITS: u8 = 9;

/// The permessage-deflate policy: whether to offer (client) or accept
/// (server) compression, and with which limits.
///
/// Off by default: compression costs memory per connection (zlib state, see
/// the README's table) and CPU, so it is opted into. The parameters follow
/// RFC 7692's names, whose meaning does not depend on the role:
/// `server_*` is about what the server sends, `client_*` about what the
/// client sends.
///
/// As a **server**, the policy answers the first acceptable offer:
/// - `server_no_context_takeover`: reset our compressor after every message
///   (answered even when not asked for). Needed to share one compressed
///   broadcast among clients, and frees the compressor between messages.
/// - `client_no_context_takeover`: ask the client to reset its compressor,
///   which lets us free our inflater between messages.
/// - `server_max_window_bits`: the window we compress with (announced when
///   below 15); a smaller one the client asks for is honoured.
/// - `client_max_window_bits`: the largest window we let the client use,
///   asked for only when the client said it can limit itself; never 8, which
///   zlib-based clients silently turn into 9 (the value the client asked for
///   is then left unanswered and the client may use up to 15).
///
/// As a **client**, the policy is the one offer made: the `*_no_context_takeover`
/// flags and `server_max_window_bits` (when below 15) are requested,
/// `client_max_window_bits` is always offered (with our window as its value
/// when below 15) so the server may limit us.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeflateConfig {
    pub(crate) enabled: bool,
    pub(crate) level: u8,
    pub(crate) threshold: usize,
    pub(crate) server_max_window_bits: u8,
    pub(crate) client_max_window_bits: u8,
    pub(crate) server_no_context_takeover: bool,
    pub(crate) client_no_context_takeover: bool,
}

impl Default for DeflateConfig {
    /// Disabled; [`enabled`](Self::enabled) gives the defaults when on.
    fn default() -> Self {
        DeflateConfig {
            enabled: false,
            ..DeflateConfig::enabled()
        }
    }
}

impl DeflateConfig {
    /// Compression on: level 6 (zlib's default), messages under 32 bytes sent
    /// as they are, windows of 15 bits, context takeover both ways.
    pub fn enabled() -> Self {
        DeflateConfig {
            enabled: true,
            level: 6,
            threshold: 32,
            server_max_window_bits: MAX_WINDOW_BITS,
            client_max_window_bits: MAX_WINDOW_BITS,
            server_no_context_takeover: false,
            client_no_context_takeover: false,
        }
    }

    /// Compression off: nothing is offered and offers are declined.
    pub fn disabled() -> Self {
        DeflateConfig::default()
    }

    /// Turns compression on or off, keeping the other settings.
    pub fn enable(mut self, on: bool) -> Self {
        self.enabled = on;
        self
    }

    /// zlib compression level, 0 (store) to 9 (smallest); clamped.
    pub fn level(mut self, level: u8) -> Self {
        self.level = level.min(9);
        self
    }

    /// Messages shorter than this many bytes are sent uncompressed: deflate
    /// adds a few bytes and the CPU is not worth it for tiny messages.
    pub fn threshold(mut self, bytes: usize) -> Self {
        self.threshold = bytes;
        self
    }

    /// `server_max_window_bits`, 9 to 15 (clamped; see the type's docs).
    pub fn server_max_window_bits(mut self, bits: u8) -> Self {
        self.server_max_window_bits = bits.clamp(MIN_WINDOW_BITS, MAX_WINDOW_BITS);
        self
    }

    /// `client_max_window_bits`, 9 to 15 (clamped; see the type's docs).
    pub fn client_max_window_bits(mut self, bits: u8) -> Self {
        self.client_max_window_bits = bits.clamp(MIN_WINDOW_BITS, MAX_WINDOW_BITS);
        self
    }

    /// `server_no_context_takeover` (see the type's docs).
    pub fn server_no_context_takeover(mut self, on: bool) -> Self {
        self.server_no_context_takeover = on;
        self
    }

    /// `client_no_context_takeover` (see the type's docs).
    pub fn client_no_context_takeover(mut self, on: bool) -> Self {
        self.client_no_context_takeover = on;
        self
    }

    /// Whether compression is offered (client) or accepted (server).
    pub fn is_enabled(&self) -> bool {
        self.enabled
    }

    /// The configured compression level.
    pub fn get_level(&self) -> u8 {
        self.level
    }

    /// The configured threshold.
    pub fn get_threshold(&self) -> usize {
        self.threshold
    }

    /// The client's offer: the `Sec-WebSocket-Extensions` value to send, or
    /// `None` when compression is off.
    pub fn offer(&self) -> Option<String> {
        if !self.enabled {
            return None;
        }
        let mut s = String::from(EXTENSION_NAME);
        if self.server_no_context_takeover {
            s.push_str("; server_no_context_takeover");
        }
        if self.client_no_context_takeover {
            s.push_str("; client_no_context_takeover");
        }
        if self.server_max_window_bits < MAX_WINDOW_BITS {
            s.push_str(&format!(
                "; server_max_window_bits={}",
                self.server_max_window_bits
            ));
        }
        if self.client_max_window_bits < MAX_WINDOW_BITS {
            s.push_str(&format!(
                "; client_max_window_bits={}",
                self.client_max_window_bits
            ));
        } else {
            s.push_str("; client_max_window_bits");
        }
        Some(s)
    }

    /// The server's choice among a request's `Sec-WebSocket-Extensions`
    /// values (one per header line, in order): the parameters agreed on and
    /// the value to answer with, or `None` to decline compression.
    ///
    /// Offers are tried in order; one that breaks section 7 (unknown or
    /// repeated parameter, value missing where required, present where
    /// forbidden, or out of range) is declined, and so is a header element
    /// that is not even well-formed.
    pub fn accept<'a>(
        &self,
        headers: impl IntoIterator<Item = &'a [u8]>,
    ) -> Option<(DeflateParams, String)> {
        if !self.enabled {
            return None;
        }
        headers
            .into_iter()
            .flat_map(elements)
            .filter_map(|e| parse_extension(e).ok())
            .filter(|(name, _)| name.eq_ignore_ascii_case(EXTENSION_NAME))
            .find_map(|(_, params)| Offer::parse(&params, Side::Offer).ok())
            .map(|offer| {
                let agreed = self.answer(&offer);
                let header = agreed.response_header();
                (agreed, header)
            })
    }

    /// The server's answer to one valid offer (see the type's docs).
    fn answer(&self, offer: &Offer) -> DeflateParams {
        let server_max_window_bits = match offer.server_max_window_bits {
            Some(asked) => Some(asked.min(self.server_max_window_bits)),
            None => (self.server_max_window_bits < MAX_WINDOW_BITS)
                .then_some(self.server_max_window_bits),
        };
        let client_max_window_bits = match offer.client_max_window_bits {
            // Not offered: the client cannot be limited.
            Bits::Unset => None,
            Bits::NoValue => (self.client_max_window_bits < MAX_WINDOW_BITS)
                .then_some(self.client_max_window_bits),
            Bits::Value(hint) => {
                let bits = hint.min(self.client_max_window_bits);
                // Never ask for 8: leave the hint unanswered instead.
                (MIN_WINDOW_BITS..MAX_WINDOW_BITS)
                    .contains(&bits)
                    .then_some(bits)
            }
        };
        DeflateParams {
            server_no_context_takeover: offer.server_no_context_takeover
                || self.server_no_context_takeover,
            client_no_context_takeover: offer.client_no_context_takeover
                || self.client_no_context_takeover,
            server_max_window_bits,
            client_max_window_bits,
        }
    }

    /// The client's check of the server's `Sec-WebSocket-Extensions` values
    /// against the offer this policy made: `None` when the server declined.
    ///
    /// # Errors
    ///
    /// [`HandshakeError::ExtensionNotOffered`] for an extension other than
    /// permessage-deflate, one answered twice, or one answered when not
    /// offered; [`HandshakeError::InvalidExtension`] for an answer that is
    /// malformed or breaks section 7 (a parameter unknown, repeated, out of
    /// range, or not allowed by the offer).
    pub fn check_answer<'a>(
        &self,
        headers: impl IntoIterator<Item = &'a [u8]>,
    ) -> Result<Option<DeflateParams>, HandshakeError> {
        let mut agreed = None;
        for element in headers.into_iter().flat_map(elements) {
            let (name, params) =
                parse_extension(element).map_err(|e| HandshakeError::InvalidExtension(e.into()))?;
            if !self.enabled || !name.eq_ignore_ascii_case(EXTENSION_NAME) || agreed.is_some() {
                return Err(HandshakeError::ExtensionNotOffered(
                    String::from_utf8_lossy(element).trim().into(),
                ));
            }
            let answer = Offer::parse(&params, Side::Answer)
                .map_err(|e| HandshakeError::InvalidExtension(e.into()))?;
            agreed = Some(self.agree(&answer)?);
        }
        Ok(agreed)
    }

    /// What a valid answer means for the offer this policy made.
    fn agree(&self, answer: &Offer) -> Result<DeflateParams, HandshakeError> {
        let bad = |why: &str| Err(HandshakeError::InvalidExtension(why.into()));
        if self.server_no_context_takeover && !answer.server_no_context_takeover {
            return bad("server_no_context_takeover was requested but not answered");
        }
        let asked_server = self.server_max_window_bits;
        if asked_server < MAX_WINDOW_BITS {
            match answer.server_max_window_bits {
                None => return bad("server_max_window_bits was requested but not answered"),
                Some(b) if b > asked_server => {
                    return bad("server_max_window_bits above the value requested");
                }
                Some(_) => {}
            }
        }
        let client_max_window_bits = match answer.client_max_window_bits {
            Bits::Value(b) if b > self.client_max_window_bits => {
                return bad("client_max_window_bits above the value offered");
            }
            Bits::Value(b) => Some(b),
            _ => None,
        };
        Ok(DeflateParams {
            server_no_context_takeover: answer.server_no_context_takeover,
            client_no_context_takeover: answer.client_no_context_takeover
                || self.client_no_context_takeover,
            server_max_window_bits: answer.server_max_window_bits,
            client_max_window_bits,
        })
    }
}

/// What one handshake agreed on: the parameters of the accepted offer as
/// answered by the server (RFC 7692 section 7.1). A window limit that was
/// not negotiated is `None`, meaning 15 bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DeflateParams {
    /// The server resets its compressor after every message.
    pub server_no_context_takeover: bool,
    /// The client resets its compressor after every message.
    pub client_no_context_takeover: bool,
    /// The largest window the server compresses with.
    pub server_max_window_bits: Option<u8>,
    /// The largest window the client compresses with.
    pub client_max_window_bits: Option<u8>,
}

impl DeflateParams {
    /// The `Sec-WebSocket-Extensions` value a server answers with.
    pub fn response_header(&self) -> String {
        let mut s = String::from(EXTENSION_NAME);
        if self.server_no_context_takeover {
            s.push_str("; server_no_context_takeover");
        }
        if self.client_no_context_takeover {
            s.push_str("; client_no_context_takeover");
        }
        if let Some(b) = self.server_max_window_bits {
            s.push_str(&format!("; server_max_window_bits={b}"));
        }
        if let Some(b) = self.client_max_window_bits {
            s.push_str(&format!("; client_max_window_bits={b}"));
        }
        s
    }
}

/// Where a parameter list comes from: the rules differ slightly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    /// A client's offer: `client_max_window_bits` may have no value.
    Offer,
    /// A server's answer: every window parameter needs a value.
    Answer,
}

/// `client_max_window_bits`, which an offer may carry without a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Bits {
    #[default]
    Unset,
    NoValue,
    Value(u8),
}

/// The parameters of one offer or answer, checked against section 7.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Offer {
    server_no_context_takeover: bool,
    client_no_context_takeover: bool,
    server_max_window_bits: Option<u8>,
    client_max_window_bits: Bits,
}

impl Offer {
    fn parse(params: &[(&str, Option<String>)], side: Side) -> Result<Offer, &'static str> {
        let mut o = Offer::default();
        let mut seen = [false; 4];
        for (name, value) in params {
            let (i, result) = match name.to_ascii_lowercase().as_str() {
                "server_no_context_takeover" => (0, flag(value, &mut o.server_no_context_takeover)),
                "client_no_context_takeover" => (1, flag(value, &mut o.client_no_context_takeover)),
                "server_max_window_bits" => (
                    2,
                    window_bits(value.as_deref()).map(|b| o.server_max_window_bits = Some(b)),
                ),
                "client_max_window_bits" => (
                    3,
                    match (value.as_deref(), side) {
                        (None, Side::Offer) => {
                            o.client_max_window_bits = Bits::NoValue;
                            Ok(())
                        }
                        (v, _) => window_bits(v).map(|b| o.client_max_window_bits = Bits::Value(b)),
                    },
                ),
                _ => return Err("unknown permessage-deflate parameter"),
            };
            if std::mem::replace(&mut seen[i], true) {
                return Err("repeated permessage-deflate parameter");
            }
            result?;
        }
        Ok(o)
    }
}

/// A parameter that must have no value.
fn flag(value: &Option<String>, slot: &mut bool) -> Result<(), &'static str> {
    match value {
        None => {
            *slot = true;
            Ok(())
        }
        Some(_) => Err("a no_context_takeover parameter has no value"),
    }
}

/// A window size: exactly one of `8` to `15` (no sign, no leading zero).
fn window_bits(value: Option<&str>) -> Result<u8, &'static str> {
    const BAD: &str = "max_window_bits must be 8 to 15";
    let v = value.ok_or(BAD)?;
    if v.is_empty() || v.len() > 2 || v.starts_with('0') || !v.bytes().all(|b| b.is_ascii_digit()) {
        return Err(BAD);
    }
    match v.parse::<u8>() {
        Ok(b) if (MIN_WIRE_WINDOW_BITS..=MAX_WINDOW_BITS).contains(&b) => Ok(b),
        _ => Err(BAD),
    }
}

/// The comma-separated elements of one header value, commas inside quoted
/// strings included in their element; empty elements are skipped (RFC 7230
/// section 7 list syntax).
fn elements(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = Some(value);
    std::iter::from_fn(move || {
        loop {
            let v = rest?;
            let mut quoted = false;
            let mut escaped = false;
            let mut end = v.len();
            for (i, &b) in v.iter().enumerate() {
                match b {
                    _ if escaped => escaped = false,
                    b'\\' if quoted => escaped = true,
                    b'"' => quoted = !quoted,
                    b',' if !quoted => {
                        end = i;
                        break;
                    }
                    _ => {}
                }
            }
            let element = &v[..end];
            rest = v.get(end + 1..);
            if !trim(element).is_empty() {
                return Some(element);
            }
        }
    })
}

/// One extension element: its name and parameters (values unquoted).
#[allow(clippy::type_complexity)]
fn parse_extension(element: &[u8]) -> Result<(&str, Vec<(&str, Option<String>)>), &'static str> {
    let text = std::str::from_utf8(element).map_err(|_| "extension header is not ASCII")?;
    let mut parts = split_params(text);
    let name = parts.next().map(str::trim).unwrap_or("");
    if !is_token(name) {
        return Err("extension name is not a token");
    }
    let mut params = Vec::new();
    for part in parts {
        let (pname, value) = match part.split_once('=') {
            Some((n, v)) => (n.trim(), Some(unquote(v.trim())?)),
            None => (part.trim(), None),
        };
        if !is_token(pname) {
            return Err("extension parameter name is not a token");
        }
        params.push((pname, value));
    }
    Ok((name, params))
}

/// Splits on `;` outside quoted strings.
fn split_params(text: &str) -> impl Iterator<Item = &str> {
    let mut rest = Some(text);
    std::iter::from_fn(move || {
        let v = rest?;
        let (mut quoted, mut escaped) = (false, false);
        for (i, b) in v.bytes().enumerate() {
            match b {
                _ if escaped => escaped = false,
                b'\\' if quoted => escaped = true,
                b'"' => quoted = !quoted,
                b';' if !quoted => {
                    rest = Some(&v[i + 1..]);
                    return Some(&v[..i]);
                }
                _ => {}
            }
        }
        rest = None;
        Some(v)
    })
}

/// A parameter value: a token, or a quoted string whose unescaped content is
/// a token (RFC 6455 section 9.1).
fn unquote(v: &str) -> Result<String, &'static str> {
    const BAD: &str = "extension parameter value is not a token";
    let out = match v.strip_prefix('"') {
        Some(inner) => {
            let inner = inner.strip_suffix('"').ok_or(BAD)?;
            let mut out = String::with_capacity(inner.len());
            let mut chars = inner.chars();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => out.push(chars.next().ok_or(BAD)?),
                    '"' => return Err(BAD),
                    c => out.push(c),
                }
            }
            out
        }
        None => v.to_owned(),
    };
    if is_token(&out) { Ok(out) } else { Err(BAD) }
}

fn trim(b: &[u8]) -> &[u8] {
    crate::handshake::trim_ows(b)
}

fn is_token(s: &str) -> bool {
    crate::handshake::is_token(s)
}

#[cfg(test)]
mod tests;
