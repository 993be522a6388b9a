//! The interactive console's behaviour, written once for every runtime:
//! what standard input becomes ([`InputFramer`]), how a received message is
//! printed ([`Console::render`]), and how a session ended ([`Ending`]).
//! The async [`Client::run_console`](crate::rt::client::Client::run_console)
//! and ws-blocking's `Client::run_console_with` only move bytes and wait;
//! every decision about what to send, print or report is made here, so the
//! command-line client behaves the same on every runtime by construction.
//!
//! ```
//! use ws_core::Message;
//! use ws_core::rt::console::{BinaryFormat, Console};
//!
//! let console = Console::new().binary_format(BinaryFormat::Base64).mark_received(true);
//! // stdin, in whatever chunks it is read, to messages:
//! let mut input = console.framer();
//! assert!(input.push(b"hel").unwrap().is_empty());
//! assert_eq!(input.push(b"lo\nwor").unwrap(), [Message::text("hello")]);
//! assert_eq!(input.finish().unwrap(), Some(Message::text("wor")));
//! // received messages to lines (never raw bytes):
//! let line = console.render(&Message::binary(&b"\x00\xff"[..]), false);
//! assert_eq!(line.as_deref(), Some("< AP8="));
//! ```

use std::fmt;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;

use crate::close::{CloseCode, CloseFrame};
use crate::error::Error;
use crate::handshake::Response;
use crate::message::Message;

/// How a binary payload (a binary message, a ping's or pong's payload) is
/// printed: never raw, so a terminal or a line-based script never sees
/// stray control bytes or invalid UTF-8.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum BinaryFormat {
    /// Lowercase hexadecimal, two digits a byte (the default).
    #[default]
    Hex,
    /// Standard base64 with padding (RFC 4648).
    Base64,
}

impl BinaryFormat {
    /// `data` in this format.
    pub fn encode(self, data: &[u8]) -> String {
        match self {
            BinaryFormat::Hex => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                let mut s = String::with_capacity(data.len() * 2);
                for &b in data {
                    s.push(HEX[usize::from(b >> 4)] as char);
                    s.push(HEX[usize::from(b & 15)] as char);
                }
                s
            }
            BinaryFormat::Base64 => BASE64.encode(data),
        }
    }
}

/// What an interactive session does: how stdin becomes messages, what is
/// printed, and its timers. [`Console::new`] is the plain interactive
/// client (each stdin line a text message, each received message a line,
/// close 1000 at the end of input); the setters add what `ws-client`'s
/// flags ask for.
#[derive(Debug, Clone, Default)]
pub struct Console {
    binary_input: bool,
    one_message: bool,
    show_control: bool,
    binary_format: BinaryFormat,
    mark_received: bool,
    ping_interval: Option<Duration>,
    reply_timeout: Option<Duration>,
}

/// The mark put before each received message when
/// [`mark_received`](Console::mark_received) is on, so it stands apart from
/// the lines being typed on a terminal.
pub const RECEIVED_MARK: &str = "< ";

impl Console {
    /// The plain interactive session: stdin lines as text messages (a
    /// trailing `\r` dropped), received text printed as is, binary
    /// messages in hex, pings and pongs not shown, no marks, no timers.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sends stdin's bytes as binary messages, verbatim: one message per
    /// line, its `\n` included (so the messages put together are the
    /// input, byte for byte); with [`one_message`](Self::one_message) all
    /// of stdin is one message. Input need not be UTF-8.
    pub fn binary_input(mut self, on: bool) -> Self {
        self.binary_input = on;
        self
    }

    /// Sends all of stdin as one message (for text, without its final line
    /// ending), prints the first data message that comes back, closes with
    /// 1000 and ends: a request and its reply, for scripts.
    pub fn one_message(mut self, on: bool) -> Self {
        self.one_message = on;
        self
    }

    /// Prints received pings and pongs (`[ping]`, `[pong: <payload>]`) and
    /// the server's reply to our own close (`[close reply: 1000 ]`, as the server's own close prints), which
    /// are hidden otherwise.
    pub fn show_control(mut self, on: bool) -> Self {
        self.show_control = on;
        self
    }

    /// How binary payloads are printed (hex by default).
    pub fn binary_format(mut self, format: BinaryFormat) -> Self {
        self.binary_format = format;
        self
    }

    /// Prefixes each received line with [`RECEIVED_MARK`]; for a terminal,
    /// where typed lines and received ones would otherwise look the same.
    /// Leave it off for pipes, so scripts see exactly the messages.
    pub fn mark_received(mut self, on: bool) -> Self {
        self.mark_received = on;
        self
    }

    /// Sends a ping (empty payload) every `interval` while connected.
    pub fn ping_interval(mut self, interval: Option<Duration>) -> Self {
        self.ping_interval = interval;
        self
    }

    /// With [`one_message`](Self::one_message): how long to wait for the
    /// reply once the message is sent; when it passes the session closes
    /// (1000) and ends as [`Ending::NoReply`].
    pub fn reply_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.reply_timeout = timeout;
        self
    }

    /// Whether all of stdin is one message, answered by one reply.
    pub fn is_one_message(&self) -> bool {
        self.one_message
    }

    /// The ping interval, if any.
    pub fn get_ping_interval(&self) -> Option<Duration> {
        self.ping_interval
    }

    /// The reply timeout, if any (used with one-message only).
    pub fn get_reply_timeout(&self) -> Option<Duration> {
        self.reply_timeout.filter(|_| self.one_message)
    }

    /// A fresh framer that turns stdin's bytes into messages the way this
    /// console says.
    pub fn framer(&self) -> InputFramer {
        InputFramer {
            buf: Vec::new(),
            binary: self.binary_input,
            whole: self.one_message,
        }
    }

    /// The line (without its newline) to print for a received `msg`, if
    /// any. `closing`: our close was sent, so a `Close` is the server's
    /// reply (hidden unless [`show_control`](Self::show_control)); with
    /// [`one_message`](Self::one_message) the reply was printed (or did
    /// not come in time), so later data messages are not.
    pub fn render(&self, msg: &Message, closing: bool) -> Option<String> {
        let fmt = self.binary_format;
        let line = match msg {
            Message::Text(_) | Message::Binary(_) if closing && self.one_message => return None,
            Message::Text(t) => t.to_string(),
            Message::Binary(b) => fmt.encode(b),
            Message::Ping(p) | Message::Pong(p) if self.show_control => {
                let kind = if matches!(msg, Message::Ping(_)) {
                    "ping"
                } else {
                    "pong"
                };
                if p.is_empty() {
                    format!("[{kind}]")
                } else {
                    format!("[{kind}: {}]", fmt.encode(p))
                }
            }
            Message::Ping(_) | Message::Pong(_) => return None,
            Message::Close(frame) if closing => {
                if !self.show_control {
                    return None;
                }
                match frame {
                    Some(f) => format!("[close reply: {} {}]", f.code, f.reason),
                    None => "[close reply]".to_owned(),
                }
            }
            Message::Close(Some(f)) => format!("[closed by peer: {} {}]", f.code, f.reason),
            Message::Close(None) => "[closed by peer]".to_owned(),
        };
        Some(if self.mark_received {
            format!("{RECEIVED_MARK}{line}")
        } else {
            line
        })
    }

    /// The stderr line announcing a connection: the URL and, when the
    /// server chose one, the subprotocol.
    pub fn connected_line(url: &str, response: Option<&Response>) -> String {
        match response.and_then(Response::subprotocol) {
            Some(p) => format!("[connected to {url}, subprotocol {p}]"),
            None => format!("[connected to {url}]"),
        }
    }

    /// Whether `msg` is the reply a one-message session waits for.
    pub fn is_reply(msg: &Message) -> bool {
        matches!(msg, Message::Text(_) | Message::Binary(_))
    }
}

/// Turns stdin's bytes, in whatever chunks they arrive, into the messages
/// a [`Console`] sends: complete lines as they come
/// ([`push`](Self::push)), and what is left at the end of input
/// ([`finish`](Self::finish)).
#[derive(Debug)]
pub struct InputFramer {
    buf: Vec<u8>,
    binary: bool,
    /// All of the input is one message.
    whole: bool,
}

impl InputFramer {
    /// Adds `chunk`; returns the messages it completed.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidMessage`] for a text line that is not UTF-8.
    pub fn push(&mut self, chunk: &[u8]) -> Result<Vec<Message>, Error> {
        self.buf.extend_from_slice(chunk);
        if self.whole {
            return Ok(Vec::new());
        }
        let mut out = Vec::new();
        let mut start = 0;
        while let Some(nl) = memchr::memchr(b'\n', &self.buf[start..]) {
            let end = start + nl + 1;
            out.push(self.message(&self.buf[start..end])?);
            start = end;
        }
        self.buf.drain(..start);
        Ok(out)
    }

    /// The end of input: the message left over (a last line without a
    /// newline, or the whole input for one-message), if any.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidMessage`] for text that is not UTF-8.
    pub fn finish(&mut self) -> Result<Option<Message>, Error> {
        let rest = std::mem::take(&mut self.buf);
        if rest.is_empty() {
            return Ok(None);
        }
        self.message(&rest).map(Some)
    }

    fn message(&self, raw: &[u8]) -> Result<Message, Error> {
        if self.binary {
            return Ok(Message::Binary(Bytes::copy_from_slice(raw)));
        }
        let raw = raw.strip_suffix(b"\n").unwrap_or(raw);
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        match std::str::from_utf8(raw) {
            Ok(text) => Ok(Message::text(text.to_owned())),
            Err(_) => Err(Error::InvalidMessage(
                "input is not UTF-8 (send it with --binary)",
            )),
        }
    }
}

/// How an interactive session ended.
#[derive(Debug)]
pub enum Ending {
    /// We closed (the end of input, or the one reply received) and the
    /// server answered with this close (or the connection ended after our
    /// close).
    ClosedByUs(Option<CloseFrame>),
    /// The server closed first, with this close frame (`None`: no code).
    ClosedByPeer(Option<CloseFrame>),
    /// The connection broke: an I/O or protocol error, no closing
    /// handshake, or reconnecting gave up.
    Broken(Error),
    /// One-message: no reply within the reply timeout (we closed).
    NoReply,
}

impl Ending {
    /// How a session ended, from what its loop saw (the same decision for
    /// the async and the blocking loop): `timed_out`, a one-message reply
    /// that never came; `peer_close`, the server's close when it closed
    /// first; `closing`, whether we had started closing; `reply`, the
    /// server's answer to our close; `first_err`, the first error read.
    pub fn decide(
        timed_out: bool,
        peer_close: Option<Option<CloseFrame>>,
        closing: bool,
        reply: Option<CloseFrame>,
        first_err: Option<Error>,
    ) -> Ending {
        if timed_out {
            Ending::NoReply
        } else if let Some(frame) = peer_close {
            Ending::ClosedByPeer(frame)
        } else if closing && (reply.is_some() || first_err.is_none()) {
            Ending::ClosedByUs(reply)
        } else {
            Ending::Broken(first_err.unwrap_or(Error::AbnormalClosure))
        }
    }

    /// A normal end: ours, or the server's close with 1000 (normal) or
    /// 1001 (going away).
    pub fn is_normal(&self) -> bool {
        match self {
            Ending::ClosedByUs(_) => true,
            Ending::ClosedByPeer(Some(f)) => {
                f.code == CloseCode::NORMAL || f.code == CloseCode::GOING_AWAY
            }
            _ => false,
        }
    }
}

impl fmt::Display for Ending {
    /// The stderr line that reports the end.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        /// `1000`, or `1000 reason` when there is one.
        fn code(c: &CloseFrame) -> String {
            if c.reason.is_empty() {
                c.code.to_string()
            } else {
                format!("{} {}", c.code, c.reason)
            }
        }
        match self {
            Ending::ClosedByUs(Some(c)) => write!(f, "[closed: {}]", code(c)),
            Ending::ClosedByUs(None) => write!(f, "[closed]"),
            Ending::ClosedByPeer(Some(c)) => write!(f, "[closed by server: {}]", code(c)),
            Ending::ClosedByPeer(None) => write!(f, "[closed by server: no status code]"),
            Ending::Broken(e) => write!(f, "[connection failed: {e}]"),
            Ending::NoReply => write!(f, "[no reply in time]"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(msgs: &[Message]) -> Vec<&str> {
        msgs.iter()
            .map(|m| match m {
                Message::Text(t) => &**t,
                other => panic!("not text: {other:?}"),
            })
            .collect()
    }

    #[test]
    fn text_lines_lose_their_line_endings_across_chunks() {
        let mut f = Console::new().framer();
        assert!(f.push(b"hel").unwrap().is_empty());
        let got = f.push(b"lo\r\nwor").unwrap();
        assert_eq!(texts(&got), ["hello"]);
        assert_eq!(texts(&f.push(b"ld\n\n").unwrap()), ["world", ""]);
        assert!(f.finish().unwrap().is_none());
        f.push(b"tail").unwrap();
        assert_eq!(f.finish().unwrap(), Some(Message::text("tail")));
    }

    #[test]
    fn text_input_that_is_not_utf8_is_an_error_not_mangled() {
        let mut f = Console::new().framer();
        assert!(matches!(f.push(b"\xff\n"), Err(Error::InvalidMessage(_))));
    }

    #[test]
    fn binary_lines_keep_every_byte_so_they_add_up_to_the_input() {
        let input = b"a\xff\r\n\n\x00z";
        let mut f = Console::new().binary_input(true).framer();
        let mut msgs = f.push(&input[..3]).unwrap();
        msgs.extend(f.push(&input[3..]).unwrap());
        msgs.extend(f.finish().unwrap());
        let joined: Vec<u8> = msgs
            .iter()
            .flat_map(|m| match m {
                Message::Binary(b) => b.to_vec(),
                other => panic!("not binary: {other:?}"),
            })
            .collect();
        assert_eq!(msgs.len(), 3);
        assert_eq!(joined, input);
    }

    #[test]
    fn one_message_is_all_of_the_input() {
        let mut f = Console::new().one_message(true).framer();
        assert!(f.push(b"{\n  \"a\": 1\n").unwrap().is_empty());
        assert!(f.push(b"}\n").unwrap().is_empty());
        assert_eq!(f.finish().unwrap(), Some(Message::text("{\n  \"a\": 1\n}")));
        let mut b = Console::new().one_message(true).binary_input(true).framer();
        b.push(b"x\n\xfe\n").unwrap();
        assert_eq!(
            b.finish().unwrap(),
            Some(Message::binary(&b"x\n\xfe\n"[..]))
        );
    }

    #[test]
    fn binary_messages_print_as_hex_or_base64_never_raw() {
        let msg = Message::binary(&b"\x00\xffA"[..]);
        assert_eq!(Console::new().render(&msg, false).unwrap(), "00ff41");
        let b64 = Console::new().binary_format(BinaryFormat::Base64);
        assert_eq!(b64.render(&msg, false).unwrap(), "AP9B");
    }

    #[test]
    fn control_frames_show_only_when_asked() {
        let ping = Message::Ping(Bytes::from_static(b"hi"));
        let pong = Message::Pong(Bytes::new());
        let reply = Message::Close(Some(CloseFrame::new(CloseCode::NORMAL, "bye")));
        let plain = Console::new();
        assert_eq!(plain.render(&ping, false), None);
        assert_eq!(plain.render(&pong, false), None);
        assert_eq!(plain.render(&reply, true), None);
        let shown = Console::new().show_control(true);
        assert_eq!(shown.render(&ping, false).unwrap(), "[ping: 6869]");
        assert_eq!(shown.render(&pong, false).unwrap(), "[pong]");
        assert_eq!(
            shown.render(&reply, true).unwrap(),
            "[close reply: 1000 bye]"
        );
        // The server's own close is news either way.
        assert_eq!(
            plain.render(&reply, false).unwrap(),
            "[closed by peer: 1000 bye]"
        );
    }

    #[test]
    fn one_message_prints_nothing_after_the_reply() {
        let one = Console::new().one_message(true);
        let msg = Message::text("late");
        assert_eq!(one.render(&msg, false).unwrap(), "late");
        assert_eq!(one.render(&msg, true), None);
        // Interactive: echoes in flight after our close still print.
        assert_eq!(Console::new().render(&msg, true).unwrap(), "late");
    }

    #[test]
    fn received_lines_are_marked_only_when_asked() {
        let msg = Message::text("hi");
        assert_eq!(Console::new().render(&msg, false).unwrap(), "hi");
        let marked = Console::new().mark_received(true);
        assert_eq!(marked.render(&msg, false).unwrap(), "< hi");
    }

    #[test]
    fn only_our_close_or_1000_and_1001_are_normal_endings() {
        let peer = |code: u16| Ending::ClosedByPeer(Some(CloseFrame::new(CloseCode(code), "")));
        assert!(Ending::ClosedByUs(None).is_normal());
        assert!(peer(1000).is_normal());
        assert!(peer(1001).is_normal());
        assert!(!peer(1011).is_normal());
        assert!(!peer(4000).is_normal());
        assert!(!Ending::ClosedByPeer(None).is_normal());
        assert!(!Ending::Broken(Error::AbnormalClosure).is_normal());
        assert!(!Ending::NoReply.is_normal());
        assert_eq!(peer(1011).to_string(), "[closed by server: 1011]");
        let bye = Ending::ClosedByPeer(Some(CloseFrame::new(CloseCode::GOING_AWAY, "bye")));
        assert_eq!(bye.to_string(), "[closed by server: 1001 bye]");
    }

    #[test]
    fn the_ending_is_decided_by_what_the_loop_saw_in_order_of_precedence() {
        let f = |c| Some(CloseFrame::new(CloseCode(c), ""));
        let code = |e: &Ending| match e {
            Ending::ClosedByUs(r) | Ending::ClosedByPeer(r) => r.as_ref().map(|f| f.code.0),
            _ => None,
        };
        // A missed one-message reply wins over everything else.
        let e = Ending::decide(true, Some(f(1000)), true, f(1000), None);
        assert!(matches!(e, Ending::NoReply));
        // The server closing first is the server's close, even while we close.
        let e = Ending::decide(false, Some(f(4000)), true, f(1000), None);
        assert!(matches!(e, Ending::ClosedByPeer(_)) && code(&e) == Some(4000));
        // Our close answered, or ended without error: ours.
        let e = Ending::decide(false, None, true, f(1000), Some(Error::AbnormalClosure));
        assert!(matches!(e, Ending::ClosedByUs(_)) && code(&e) == Some(1000));
        let e = Ending::decide(false, None, true, None, None);
        assert!(matches!(e, Ending::ClosedByUs(None)));
        // Our close unanswered with an error, or no close at all: broken.
        let e = Ending::decide(false, None, true, None, Some(Error::AbnormalClosure));
        assert!(matches!(e, Ending::Broken(Error::AbnormalClosure)));
        let e = Ending::decide(false, None, false, None, None);
        assert!(matches!(e, Ending::Broken(Error::AbnormalClosure)));
    }
}
