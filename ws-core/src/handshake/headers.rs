//! Compact header storage and the small HTTP grammar helpers both roles use.

use std::ops::Range;

use bytes::Bytes;

use super::HandshakeError;

/// Headers of a parsed message head: one shared buffer plus byte ranges,
/// so a request costs one allocation for the ranges instead of one per header.
#[derive(Debug, Clone, Default)]
pub(crate) struct Headers {
    block: Bytes,
    entries: Vec<(Range<usize>, Range<usize>)>,
}

impl Headers {
    pub(crate) fn new(block: Bytes, entries: Vec<(Range<usize>, Range<usize>)>) -> Self {
        Self { block, entries }
    }

    /// The whole message head these headers point into.
    pub(crate) fn block(&self) -> &Bytes {
        &self.block
    }

    fn name_at(&self, r: &Range<usize>) -> &str {
        // Names were validated as tokens by httparse, so this never falls back.
        self.block
            .get(r.clone())
            .and_then(|b| std::str::from_utf8(b).ok())
            .unwrap_or("")
    }

    fn value_at(&self, r: &Range<usize>) -> &[u8] {
        self.block.get(r.clone()).unwrap_or(&[])
    }

    pub(crate) fn get_all<'a, 'n>(
        &'a self,
        name: &'n str,
    ) -> impl Iterator<Item = &'a [u8]> + use<'a, 'n> {
        self.entries
            .iter()
            .filter(move |(n, _)| self.name_at(n).eq_ignore_ascii_case(name))
            .map(move |(_, v)| self.value_at(v))
    }

    pub(crate) fn get_bytes(&self, name: &str) -> Option<&[u8]> {
        self.get_all(name).next()
    }

    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.get_bytes(name)
            .and_then(|v| std::str::from_utf8(v).ok())
    }

    /// Whether any `name` header's comma-separated list holds `token`
    /// (case-insensitive), as RFC 7230 section 7 list syntax requires.
    pub(crate) fn contains_token(&self, name: &str, token: &str) -> bool {
        self.get_all(name).any(|v| {
            v.split(|&b| b == b',')
                .any(|t| trim_ows(t).eq_ignore_ascii_case(token.as_bytes()))
        })
    }

    /// The single value of a header that must appear exactly once.
    pub(crate) fn exactly_one(&self, name: &str) -> Option<&[u8]> {
        let mut all = self.get_all(name);
        let first = all.next()?;
        all.next().is_none().then_some(first)
    }

    pub(crate) fn iter(&self) -> HeaderIter<'_> {
        HeaderIter {
            headers: self,
            inner: self.entries.iter(),
        }
    }
}

/// Iterator over `(name, raw value)` pairs in the order received.
///
/// Values are bytes because HTTP allows non-UTF-8 (obs-text) header values.
#[derive(Debug, Clone)]
pub struct HeaderIter<'a> {
    headers: &'a Headers,
    inner: std::slice::Iter<'a, (Range<usize>, Range<usize>)>,
}

impl<'a> Iterator for HeaderIter<'a> {
    type Item = (&'a str, &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        let (n, v) = self.inner.next()?;
        Some((self.headers.name_at(n), self.headers.value_at(v)))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.inner.size_hint()
    }
}

impl ExactSizeIterator for HeaderIter<'_> {}

/// Strip optional whitespace (SP / HTAB) from both ends.
pub(crate) fn trim_ows(mut b: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = b {
        b = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = b {
        b = rest;
    }
    b
}

/// Byte range of `part` inside `base`, trimmed of surrounding whitespace.
///
/// httparse hands out sub-slices of the buffer it parsed; turning them into
/// ranges lets the parsed head be stored without copying each header.
pub(crate) fn range_in(base: &[u8], part: &[u8]) -> Result<Range<usize>, HandshakeError> {
    let trimmed = trim_ows(part);
    if trimmed.is_empty() {
        return Ok(0..0);
    }
    let start = (trimmed.as_ptr() as usize)
        .checked_sub(base.as_ptr() as usize)
        .ok_or(HandshakeError::Malformed("internal: header outside buffer"))?;
    let end = start + trimmed.len();
    if end > base.len() {
        return Err(HandshakeError::Malformed("internal: header outside buffer"));
    }
    Ok(start..end)
}

/// A `token` per RFC 7230 section 3.2.6 (header names, subprotocols).
pub(crate) fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// A header value that cannot smuggle a line break or control byte into the
/// message (RFC 7230 field-value: VCHAR, SP, HTAB, obs-text).
pub(crate) fn is_field_value(s: &str) -> bool {
    s.bytes().all(|b| b == b'\t' || (b >= 0x20 && b != 0x7f))
}

/// Validate caller-supplied extra headers, refusing names the handshake
/// writes itself so a caller cannot contradict the negotiated state.
pub(crate) fn check_extra_headers(
    headers: &[(String, String)],
    reserved: &[&str],
) -> Result<(), HandshakeError> {
    for (name, value) in headers {
        if !is_token(name) {
            return Err(HandshakeError::InvalidInput(
                format!("header name {name:?}").into(),
            ));
        }
        if reserved.iter().any(|r| r.eq_ignore_ascii_case(name)) {
            return Err(HandshakeError::InvalidInput(
                format!("header {name:?} is set by the handshake itself").into(),
            ));
        }
        if !is_field_value(value) {
            return Err(HandshakeError::InvalidInput(
                format!("value of header {name:?}").into(),
            ));
        }
    }
    Ok(())
}

/// Map an httparse failure to a static description.
pub(crate) fn describe(e: httparse::Error) -> &'static str {
    match e {
        httparse::Error::HeaderName => "invalid header name",
        httparse::Error::HeaderValue => "invalid header value",
        httparse::Error::NewLine => "invalid line ending",
        httparse::Error::Status => "invalid response status",
        httparse::Error::Token => "invalid token",
        httparse::Error::TooManyHeaders => "too many headers",
        httparse::Error::Version => "invalid HTTP version",
    }
}

/// Enough httparse header slots for any head of this many bytes: every
/// header needs its own line, so the newline count is an upper bound.
pub(crate) fn header_slots(head: &[u8]) -> Vec<httparse::Header<'_>> {
    let lines = head.iter().filter(|&&b| b == b'\n').count();
    vec![httparse::EMPTY_HEADER; lines]
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_httparse_error_has_its_own_description() {
        use httparse::Error::*;
        let table = [
            (HeaderName, "invalid header name"),
            (HeaderValue, "invalid header value"),
            (NewLine, "invalid line ending"),
            (Status, "invalid response status"),
            (Token, "invalid token"),
            (TooManyHeaders, "too many headers"),
            (Version, "invalid HTTP version"),
        ];
        for (e, text) in table {
            assert_eq!(describe(e), text);
        }
    }

    use super::*;

    #[test]
    fn trim_ows_strips_spaces_and_tabs_only() {
        assert_eq!(trim_ows(b" \t a b\t "), b"a b");
        assert_eq!(trim_ows(b"   "), b"");
    }

    #[test]
    fn field_value_rejects_line_breaks_and_controls() {
        assert!(is_field_value("text/html; q=1\tx"));
        assert!(!is_field_value("a\r\nInjected: 1"));
        assert!(!is_field_value("a\nb"));
        assert!(!is_field_value("a\0b"));
        assert!(!is_field_value("a\x7fb"));
    }

    #[test]
    fn token_rejects_separators_and_empty() {
        assert!(is_token("X-Foo_1"));
        assert!(!is_token(""));
        assert!(!is_token("X Foo"));
        assert!(!is_token("X:Foo"));
    }
}
