//! The framing connection: a deterministic state machine for one open
//! WebSocket, after the opening handshake.
//!
//! Input goes in through [`Connection::read_buf`] (read transport bytes
//! straight into the connection's own buffer) or [`Connection::handle_bytes`],
//! and [`Connection::handle_eof`]. Messages come out of
//! [`Connection::poll_message`]. Bytes to write come out of
//! [`Connection::pending_transmit`] / [`Connection::advance_transmit`]. Time
//! comes in through [`Connection::poll_timeout`] and
//! [`Connection::handle_timeout`]; the connection has no clock of its own.
//! [`Connection::split`] divides it into a receiving and a sending half for
//! two tasks (see [`split`]).

use crate::close::{CloseCode, CloseFrame};
use crate::config::{Config, Role};
use crate::deflate::DeflateConfig;
use crate::deflate::codec::Deflater;
use crate::error::{Error, ProtocolError, TimeoutKind};
use crate::frame::{FrameHeader, MAX_CONTROL_PAYLOAD, MAX_HEADER_LEN, OpCode};
use crate::mask::{apply_mask, extend_masked};
use crate::message::{Message, Utf8Bytes};
use crate::utf8::Utf8Validator;
use bytes::{Buf, Bytes, BytesMut};
use std::collections::VecDeque;
use std::io::IoSlice;
use std::sync::Arc;
use std::time::Instant;

mod compress;
pub mod split;
use compress::Compression;
use split::Link;

/// Smallest spare capacity offered to a transport read.
const MIN_READ: usize = 4 * 1024;
/// Payloads at least this large are queued by reference (a `Bytes` clone)
/// rather than copied into the output buffer, when no masking is needed: the
/// copy cost more than the extra iovec in a vectored write.
const ZERO_COPY_MIN: usize = 8 * 1024;
/// How long large buffers outlive the traffic that grew them (see
/// [`Connection::release_idle_buffers`]).
pub const IDLE_SHRINK_DELAY: std::time::Duration = std::time::Duration::from_secs(1);
/// RSV1, the bit permessage-deflate sets on a compressed message's first
/// frame (RFC 7692 section 6).
const RSV1: u8 = 0b100;
/// Payload of the pings [`Config::keepalive`] sends.
const KEEPALIVE_PAYLOAD: &[u8] = b"keepalive";
/// Largest spare capacity offered to a transport read when the peer keeps
/// filling the buffer.
const MAX_READ_HINT: usize = 64 * 1024;
/// Buffers larger than this are released once empty, so memory returns to
/// its idle size after a burst of large messages.
const SHRINK_ABOVE: usize = 64 * 1024;

/// Where the connection is in its lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Messages flow both ways.
    Open,
    /// A close frame was sent or received, and the handshake is not finished.
    Closing,
    /// The closing handshake finished, failed or timed out, or the transport
    /// ended. Nothing more will be received or sent.
    Closed,
}

/// A deadline armed lazily: operations that start a timer have no clock, so
/// they mark it `Pending` and the next [`Connection::poll_timeout`] fixes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Timer {
    Off,
    Pending,
    At(Instant),
}

impl Timer {
    fn arm(&mut self, now: Instant, after: std::time::Duration) {
        if *self == Timer::Pending {
            *self = Timer::At(now + after);
        }
    }
    fn expired(&self, now: Instant) -> bool {
        matches!(*self, Timer::At(t) if t <= now)
    }
    fn at(&self) -> Option<Instant> {
        match *self {
            Timer::At(t) => Some(t),
            _ => None,
        }
    }
}

/// A message already encoded as an unmasked frame, so a server can broadcast
/// it to many clients while encoding it once (see
/// [`Connection::send_prepared`]).
///
/// [`with_deflate`](Self::with_deflate) also compresses it once, for every
/// recipient whose permessage-deflate parameters allow sharing it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreparedMessage {
    /// The uncompressed frame.
    frame: Bytes,
    /// The same message compressed with a fresh dictionary, and the window
    /// bits it was compressed with (boxed: hub queues hold many messages).
    compressed: Option<Box<(Bytes, u8)>>,
}

impl PreparedMessage {
    /// Encodes a text or binary message as one unmasked frame.
    pub fn new(msg: &Message) -> Result<Self, Error> {
        let (opcode, payload) = match msg {
            Message::Text(t) => (OpCode::Text, t.as_bytes()),
            Message::Binary(b) => (OpCode::Binary, &b[..]),
            _ => {
                return Err(Error::InvalidMessage(
                    "only text and binary messages can be prepared",
                ));
            }
        };
        let mut out = BytesMut::new();
        encode_frame(&mut out, true, 0, opcode, payload, None);
        Ok(PreparedMessage {
            frame: out.freeze(),
            compressed: None,
        })
    }

    /// [`new`](Self::new), plus the message compressed once by `policy`
    /// (level, threshold, `server_max_window_bits`) when the policy is on
    /// with `server_no_context_takeover`: every recipient that negotiated
    /// no context takeover for the server and a window at least as large
    /// gets these bytes without compressing again. Others get the message
    /// compressed for them, or uncompressed.
    pub fn with_deflate(msg: &Message, policy: &DeflateConfig) -> Result<Self, Error> {
        let mut prepared = PreparedMessage::new(msg)?;
        let payload = prepared.payload();
        if policy.is_enabled()
            && policy.server_no_context_takeover
            && payload.len() >= policy.threshold
        {
            let bits = policy.server_max_window_bits;
            let mut wire = Vec::new();
            Deflater::new(policy.level, bits, true).compress(payload, &mut wire);
            let mut out = BytesMut::new();
            encode_frame(&mut out, true, RSV1, prepared.opcode(), &wire, None);
            prepared.compressed = Some(Box::new((out.freeze(), bits)));
        }
        Ok(prepared)
    }

    /// The encoded (uncompressed) frame bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.frame
    }

    /// The compressed frame, if [`with_deflate`](Self::with_deflate) made one.
    pub fn compressed_bytes(&self) -> Option<&[u8]> {
        self.compressed.as_deref().map(|(f, _)| &f[..])
    }

    /// Bytes held: the frame, and its compressed copy if any (what a queue
    /// of prepared messages costs).
    pub fn encoded_len(&self) -> usize {
        self.frame.len() + self.compressed.as_deref().map_or(0, |(f, _)| f.len())
    }

    /// The message's payload length (uncompressed), from the frame's
    /// length field alone.
    #[inline]
    pub fn payload_len(&self) -> usize {
        // An unmasked frame: 2 header bytes, plus 2 or 8 of extended length.
        let header = match self.frame.get(1).map(|b| b & 0x7f) {
            Some(126) => 4,
            Some(127) => 10,
            _ => 2,
        };
        self.frame.len().saturating_sub(header)
    }

    /// The message's payload (the frame without its header).
    fn payload(&self) -> &[u8] {
        let header_len = match FrameHeader::parse(&self.frame) {
            Ok(Some((_, n))) => n,
            _ => 0,
        };
        &self.frame[header_len..]
    }

    fn opcode(&self) -> OpCode {
        if self.frame[0] & 0x0f == OpCode::Text as u8 {
            OpCode::Text
        } else {
            OpCode::Binary
        }
    }
}

/// Writes one frame (header and payload) into `out`, masking when `mask` is
/// given. Reserves once, so a small frame costs one copy and no allocation
/// once `out` has capacity.
#[inline(always)]
fn encode_frame(
    out: &mut BytesMut,
    fin: bool,
    rsv: u8,
    opcode: OpCode,
    payload: &[u8],
    mask: Option<[u8; 4]>,
) {
    let header = FrameHeader {
        fin,
        rsv,
        opcode,
        mask,
        payload_len: payload.len() as u64,
    };
    let mut hb = [0u8; MAX_HEADER_LEN];
    let n = header.emit(&mut hb);
    out.reserve(n + payload.len());
    out.extend_from_slice(&hb[..n]);
    match mask {
        Some(key) => extend_masked(out, payload, key),
        None => out.extend_from_slice(payload),
    }
}

/// One WebSocket connection after the opening handshake.
///
/// ```
/// use ws_core::{Config, Connection, Message, Role};
///
/// let mut client = Connection::new(Role::Client, Config::default());
/// let mut server = Connection::new(Role::Server, Config::default());
/// client.send_text("hello").unwrap();
/// let wire = client.pending_transmit().to_vec();
/// client.advance_transmit(wire.len());
/// server.handle_bytes(&wire);
/// assert_eq!(server.poll_message().unwrap(), Some(Message::text("hello")));
/// ```
#[derive(Debug)]
pub struct Connection {
    role: Role,
    config: Config,

    // Receiving.
    rbuf: BytesMut,
    /// Header of the frame whose payload is at the start of `rbuf`.
    frame: Option<FrameHeader>,
    /// Bytes of that payload already unmasked (and UTF-8 checked if text).
    unmasked: usize,
    /// Opcode of the fragmented message in progress.
    msg_opcode: Option<OpCode>,
    msg_buf: BytesMut,
    utf8: Utf8Validator,
    /// A compressed message is being received (its first frame had RSV1).
    inflating: bool,
    /// permessage-deflate, when the handshake negotiated it.
    deflate: Option<Box<Compression>>,

    // Sending. Bytes leave in order: the `sealed` chunks, then `out`.
    out: BytesMut,
    /// Chunks queued ahead of `out`: large payloads shared with the caller
    /// (no copy), and the bytes of `out` that preceded them.
    sealed: VecDeque<Bytes>,
    /// Total length of `sealed`.
    sealed_len: usize,
    /// Payload of the newest unanswered ping, kept aside while the output
    /// buffer is over its limit: only the most recent ping needs a pong
    /// (section 5.5.3), which bounds what a ping flood can queue.
    pong_due: Option<Bytes>,
    /// Largest `out.len()` seen since the output buffer was last empty.
    out_peak: usize,

    // Closing.
    sent_close: bool,
    received_close: bool,
    /// The receive side is finished (close received, failed, or timed out):
    /// further input is discarded.
    recv_done: bool,
    failed: bool,
    eof: bool,
    timed_out: bool,
    /// An error to report from the next `poll_message`.
    pending_error: Option<Error>,

    // Timers.
    close_timer: Timer,
    ping_timer: Timer,
    pong_timer: Timer,
    /// Frees large idle buffers a while after traffic stopped.
    shrink_timer: Timer,
    /// The receive buffer was grown past `SHRINK_ABOVE` and may hold (or
    /// reclaim) that much even when `capacity()` says otherwise.
    rbuf_large: bool,
    activity: bool,
    /// `rbuf.len()` after the last decode, to notice newly arrived bytes.
    seen_len: usize,
    /// Spare capacity the next read is offered (adapts to the traffic).
    read_hint: usize,
    /// Spare capacity the last `read_buf` offered, 0 once accounted for.
    offered: usize,
    /// The last read filled everything offered: more is queued in the
    /// transport.
    read_full: bool,
    /// The payload length of the last data frame received whole (0 after
    /// an idle shrink): the next frame is likely the same size.
    last_frame: u32,

    /// Set on the receiving half of a split connection: control replies
    /// (pongs, close replies, keepalive pings) go to the sending half
    /// through this link instead of into `out`.
    link: Option<Arc<Link>>,
}

impl Connection {
    /// A connection for `role` with `config`.
    pub fn new(role: Role, config: Config) -> Self {
        let ping_timer = if config.keepalive.is_some() {
            Timer::Pending
        } else {
            Timer::Off
        };
        let deflate = config
            .negotiated
            .as_ref()
            .map(|p| Box::new(Compression::new(role, &config.deflate, p)));
        Connection {
            role,
            config,
            inflating: false,
            deflate,
            rbuf: BytesMut::new(),
            frame: None,
            unmasked: 0,
            msg_opcode: None,
            msg_buf: BytesMut::new(),
            utf8: Utf8Validator::new(),
            out: BytesMut::new(),
            sealed: VecDeque::new(),
            sealed_len: 0,
            pong_due: None,
            out_peak: 0,
            sent_close: false,
            received_close: false,
            recv_done: false,
            failed: false,
            eof: false,
            timed_out: false,
            pending_error: None,
            close_timer: Timer::Off,
            ping_timer,
            pong_timer: Timer::Off,
            shrink_timer: Timer::Off,
            rbuf_large: false,
            activity: false,
            seen_len: 0,
            read_hint: MIN_READ,
            offered: 0,
            read_full: false,
            last_frame: 0,
            link: None,
        }
    }

    /// A connection that starts with bytes already received, such as frames
    /// a peer pipelined right behind its handshake.
    pub fn with_buffered(role: Role, config: Config, buffered: BytesMut) -> Self {
        let mut c = Connection::new(role, config);
        c.rbuf = buffered;
        c.activity = !c.rbuf.is_empty();
        c
    }

    /// This connection's role.
    pub fn role(&self) -> Role {
        self.role
    }

    /// This connection's configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    // ---------------------------------------------------------------- input

    /// The receive buffer, with spare capacity reserved for one transport
    /// read: read into it directly (e.g. `tokio::io::AsyncReadExt::read_buf`)
    /// to avoid a copy, then call [`poll_message`](Self::poll_message).
    ///
    /// The spare capacity grows with what actually arrives, never with what
    /// a header merely announces: between frames it is the adaptive hint or,
    /// if larger, the size of the last whole data frame (so a stream of
    /// 16 KiB messages is read one message per read); inside a frame, after a
    /// read that filled everything offered (the rest is queued in the
    /// transport), it is enough for the rest of the frame at once (up to
    /// 64 KiB, or what has arrived, for larger frames), else the rest of the
    /// frame up to the hint.
    pub fn read_buf(&mut self) -> &mut BytesMut {
        if self.recv_done {
            self.rbuf.clear();
        }
        let spare = self.rbuf.capacity() - self.rbuf.len();
        let reserve = match self.frame {
            Some(h) => {
                let remaining = (h.payload_len as usize).saturating_sub(self.rbuf.len());
                let want = remaining.clamp(MIN_READ, self.read_hint.max(self.rbuf.len()));
                if self.read_full && remaining > MIN_READ {
                    // The last read filled everything: the rest of this
                    // frame is queued. Room for all of it (up to 64 KiB, or
                    // what has arrived) in one read.
                    let want = remaining.min(MAX_READ_HINT.max(self.rbuf.len())).max(want);
                    (spare < want).then_some(want)
                } else {
                    (spare < want / 2).then_some(want)
                }
            }
            None => {
                // Room for a frame like the last one, its header and a bit
                // more, so that such a read comes back short (the socket is
                // drained) rather than full.
                let like_last = (self.last_frame as usize + MIN_READ / 2)
                    .next_multiple_of(MIN_READ)
                    .min(MAX_READ_HINT);
                let want = self.read_hint.max(like_last);
                (spare < want / 2).then_some(want)
            }
        };
        if let Some(want) = reserve {
            self.rbuf.reserve(want);
        }
        if self.rbuf.capacity() > SHRINK_ABOVE {
            self.rbuf_large = true;
        }
        self.offered = self.rbuf.capacity() - self.rbuf.len();
        &mut self.rbuf
    }

    /// Adapts the read size to the traffic: a read that filled everything
    /// offered means the peer has more queued (pipelining, bulk data), so
    /// offer twice as much next time, up to [`MAX_READ_HINT`]; reads that use
    /// little of it bring it back down. Fewer, larger reads under load; a
    /// small buffer when the traffic is light.
    fn adapt_read_hint(&mut self, arrived: usize) {
        if self.offered == 0 {
            return;
        }
        self.read_full = arrived >= self.offered;
        if arrived >= self.offered {
            self.read_hint = (self.read_hint * 2).min(MAX_READ_HINT);
        } else if arrived < self.offered / 8 {
            self.read_hint = (self.read_hint / 2).max(MIN_READ);
        }
        self.offered = 0;
    }

    /// Feeds received bytes by copying them (see [`read_buf`](Self::read_buf)
    /// for the zero-copy path).
    pub fn handle_bytes(&mut self, data: &[u8]) {
        if self.recv_done || data.is_empty() {
            return;
        }
        self.rbuf.extend_from_slice(data);
        if self.rbuf.capacity() > SHRINK_ABOVE {
            self.rbuf_large = true;
        }
    }

    /// Reports that the transport reached end of stream.
    pub fn handle_eof(&mut self) {
        self.eof = true;
        if self.close_timer == Timer::Off {
            // Bytes may still be queued for a peer that stopped reading:
            // bound how long the caller keeps trying to deliver them.
            self.close_timer = Timer::Pending;
        }
    }

    /// Decodes the next message from the bytes received so far.
    ///
    /// Returns `Ok(None)` when more input is needed (or nothing more will
    /// come). A protocol violation is returned once as an error, after a
    /// close frame with the matching code has been queued; afterwards the
    /// connection is [`State::Closed`] and only waits to flush.
    pub fn poll_message(&mut self) -> Result<Option<Message>, Error> {
        if let Some(e) = self.pending_error.take() {
            return Err(e);
        }
        if self.recv_done {
            return Ok(None);
        }
        if self.rbuf.len() != self.seen_len {
            self.activity = true;
            self.adapt_read_hint(self.rbuf.len().saturating_sub(self.seen_len));
        }
        let result = self.decode();
        self.seen_len = self.rbuf.len();
        match result {
            Ok(Some(m)) => Ok(Some(m)),
            Ok(None) if self.eof => {
                // The transport ended inside a frame or without a close frame.
                self.stop_receiving();
                if self.received_close {
                    Ok(None)
                } else {
                    Err(Error::AbnormalClosure)
                }
            }
            Ok(None) => Ok(None),
            Err(p) => {
                self.fail(p.close_code());
                Err(Error::Protocol(p))
            }
        }
    }

    /// Fails the connection: queue a close frame with `code` (unless one was
    /// sent) and stop receiving.
    fn fail(&mut self, code: CloseCode) {
        self.failed = true;
        self.stop_receiving();
        if !self.sent_close {
            self.queue_close(Some(&CloseFrame::new(code, Utf8Bytes::new())));
        }
    }

    /// Discards all receive state: nothing more will be decoded.
    fn stop_receiving(&mut self) {
        self.recv_done = true;
        self.rbuf = BytesMut::new();
        self.msg_buf = BytesMut::new();
        self.frame = None;
        self.seen_len = 0;
        self.inflating = false;
        if let Some(d) = &mut self.deflate {
            d.inflated = Vec::new();
        }
    }

    fn decode(&mut self) -> Result<Option<Message>, ProtocolError> {
        loop {
            let header = match self.frame {
                Some(h) => h,
                None => {
                    let Some((h, n)) = FrameHeader::parse(&self.rbuf)? else {
                        return Ok(None);
                    };
                    self.check_header(&h)?;
                    self.rbuf.advance(n);
                    self.frame = Some(h);
                    self.unmasked = 0;
                    h
                }
            };
            // Bounded by max_frame_size in check_header, so it fits in usize.
            let len = header.payload_len as usize;
            let avail = self.rbuf.len().min(len);
            if avail > self.unmasked {
                let chunk = &mut self.rbuf[self.unmasked..avail];
                if let Some(key) = header.mask {
                    apply_mask(chunk, key, self.unmasked);
                }
                // A compressed message is checked once inflated.
                let is_text = (header.opcode == OpCode::Text && header.rsv == 0)
                    || (header.opcode == OpCode::Continuation
                        && self.msg_opcode == Some(OpCode::Text)
                        && !self.inflating);
                if is_text {
                    self.utf8
                        .feed(chunk)
                        .map_err(|_| ProtocolError::InvalidUtf8)?;
                }
                self.unmasked = avail;
            }
            if avail < len {
                return Ok(None);
            }
            let payload = self.rbuf.split_to(len).freeze();
            if !header.opcode.is_control() {
                self.last_frame = u32::try_from(len).unwrap_or(u32::MAX);
            }
            self.frame = None;
            self.unmasked = 0;
            // Give a large buffer back once it is far larger than the traffic
            // (a burst is over), but keep it while same-sized frames keep
            // coming: re-growing it for every 1 MiB message cost a full extra
            // copy per message.
            if self.rbuf.is_empty() && self.rbuf.capacity() > SHRINK_ABOVE.max(4 * len) {
                self.rbuf = BytesMut::new();
                self.rbuf_large = false;
            }
            if let Some(m) = self.complete_frame(header, payload)? {
                return Ok(Some(m));
            }
        }
    }

    /// Checks the rules that depend on this connection's role, extensions,
    /// limits and fragmentation state.
    fn check_header(&self, h: &FrameHeader) -> Result<(), ProtocolError> {
        if h.rsv != 0 {
            self.check_rsv(h)?;
        }
        match (self.role, h.mask.is_some()) {
            (Role::Server, false) => return Err(ProtocolError::UnmaskedFrame),
            (Role::Client, true) => return Err(ProtocolError::MaskedFrame),
            _ => {}
        }
        if h.payload_len > self.config.max_frame_size as u64 {
            return Err(ProtocolError::FrameTooLarge {
                size: h.payload_len,
                max: self.config.max_frame_size,
            });
        }
        match h.opcode {
            OpCode::Continuation if self.msg_opcode.is_none() => {
                Err(ProtocolError::UnexpectedContinuation)
            }
            OpCode::Text | OpCode::Binary if self.msg_opcode.is_some() => {
                Err(ProtocolError::ExpectedContinuation)
            }
            op if !op.is_control() => {
                let size = self.msg_buf.len() as u64 + h.payload_len;
                if size > self.config.max_message_size as u64 {
                    Err(ProtocolError::MessageTooLarge {
                        size,
                        max: self.config.max_message_size,
                    })
                } else {
                    Ok(())
                }
            }
            _ => Ok(()),
        }
    }

    /// RSV1 is allowed only on the first frame of a data message, and only
    /// with permessage-deflate negotiated; RSV2 and RSV3 never.
    fn check_rsv(&self, h: &FrameHeader) -> Result<(), ProtocolError> {
        let first_data = matches!(h.opcode, OpCode::Text | OpCode::Binary);
        if h.rsv == RSV1 && first_data && self.deflate.is_some() {
            Ok(())
        } else {
            Err(ProtocolError::ReservedBits)
        }
    }

    /// Handles a fully received (and unmasked, checked) frame; returns a
    /// message when one is complete.
    fn complete_frame(
        &mut self,
        h: FrameHeader,
        payload: Bytes,
    ) -> Result<Option<Message>, ProtocolError> {
        match h.opcode {
            OpCode::Text | OpCode::Binary if h.rsv != 0 => {
                self.msg_opcode = Some(h.opcode);
                self.inflating = true;
                self.inflate(h.fin, &payload)
            }
            OpCode::Continuation if self.inflating => self.inflate(h.fin, &payload),
            OpCode::Text | OpCode::Binary if h.fin => {
                // Single-frame message: hand out a slice of the read buffer.
                Ok(Some(self.data_message(h.opcode, payload)?))
            }
            OpCode::Text | OpCode::Binary => {
                self.msg_opcode = Some(h.opcode);
                self.msg_buf.extend_from_slice(&payload);
                Ok(None)
            }
            OpCode::Continuation => {
                self.msg_buf.extend_from_slice(&payload);
                if !h.fin {
                    return Ok(None);
                }
                let opcode = self.msg_opcode.take().unwrap_or(OpCode::Binary);
                let whole = std::mem::take(&mut self.msg_buf).freeze();
                Ok(Some(self.data_message(opcode, whole)?))
            }
            OpCode::Ping => {
                if self.config.auto_pong && !self.sent_close {
                    if let Some(link) = &self.link {
                        link.push_pong(payload.clone(), self.config.write_buffer_limit);
                    } else if self.out.len() < self.config.write_buffer_limit {
                        // Answer every ping while the peer keeps reading.
                        self.pong_due = None;
                        self.write_frame(true, OpCode::Pong, &payload);
                    } else {
                        // The peer is not reading: only the newest ping needs
                        // an answer (section 5.5.3), so a ping flood cannot
                        // grow the output buffer.
                        self.pong_due = Some(payload.clone());
                    }
                }
                Ok(Some(Message::Ping(payload)))
            }
            OpCode::Pong => Ok(Some(Message::Pong(payload))),
            OpCode::Close => {
                let frame = CloseFrame::parse(payload)?;
                self.received_close = true;
                self.stop_receiving();
                if !self.sent_close {
                    // Echo the peer's code (section 5.5.1); no code echoes as none.
                    let reply = frame
                        .as_ref()
                        .map(|f| CloseFrame::new(f.code, Utf8Bytes::new()));
                    self.queue_close(reply.as_ref());
                }
                Ok(Some(Message::Close(frame)))
            }
        }
    }

    /// Inflates one frame of a compressed message, counting the inflated
    /// size against the message limit as it goes; returns the message after
    /// its last frame.
    fn inflate(&mut self, fin: bool, payload: &[u8]) -> Result<Option<Message>, ProtocolError> {
        let limit = self.config.max_message_size;
        let Some(d) = self.deflate.as_deref_mut() else {
            return Err(ProtocolError::ReservedBits);
        };
        let start = d.inflate_frame(payload, fin, limit)?;
        if self.msg_opcode == Some(OpCode::Text) {
            self.utf8
                .feed(&d.inflated[start..])
                .map_err(|_| ProtocolError::InvalidUtf8)?;
        }
        if !fin {
            return Ok(None);
        }
        self.inflating = false;
        let whole = Bytes::from(std::mem::take(&mut d.inflated));
        let opcode = self.msg_opcode.take().unwrap_or(OpCode::Binary);
        Ok(Some(self.data_message(opcode, whole)?))
    }

    fn data_message(&mut self, opcode: OpCode, payload: Bytes) -> Result<Message, ProtocolError> {
        if opcode == OpCode::Text {
            self.utf8.finish().map_err(|_| ProtocolError::InvalidUtf8)?;
            Ok(Message::Text(Utf8Bytes::from_bytes_unchecked(payload)))
        } else {
            Ok(Message::Binary(payload))
        }
    }

    // --------------------------------------------------------------- output

    fn mask_key(&self) -> Option<[u8; 4]> {
        match self.role {
            // RFC 6455 section 10.3: keys must be unpredictable, so they come
            // from the thread-local CSPRNG (ChaCha, seeded by the OS).
            Role::Client => Some(rand::random()),
            Role::Server => None,
        }
    }

    fn write_frame(&mut self, fin: bool, opcode: OpCode, payload: &[u8]) {
        let mask = self.mask_key();
        encode_frame(&mut self.out, fin, 0, opcode, payload, mask);
    }

    fn check_can_send(&self) -> Result<(), Error> {
        if self.sent_close || self.failed || self.timed_out || self.eof {
            Err(Error::Closed)
        } else {
            Ok(())
        }
    }

    fn send_data(&mut self, opcode: OpCode, payload: &[u8]) -> Result<(), Error> {
        self.check_can_send()?;
        self.flush_pong();
        if self
            .deflate
            .as_deref()
            .is_some_and(|d| d.wants(payload.len()))
        {
            self.send_compressed(opcode, payload);
            return Ok(());
        }
        self.write_message(opcode, 0, payload);
        Ok(())
    }

    /// Compresses a message and writes it with RSV1 (kept out of line: the
    /// uncompressed path stays as short as without deflate).
    #[inline(never)]
    fn send_compressed(&mut self, opcode: OpCode, payload: &[u8]) {
        let Some(d) = self.deflate.as_deref_mut() else {
            return;
        };
        let mut wire = std::mem::take(&mut d.scratch);
        d.deflater.compress(payload, &mut wire);
        self.write_message(opcode, RSV1, &wire);
        if let Some(d) = self.deflate.as_deref_mut() {
            d.scratch = wire;
        }
    }

    /// Writes one data message as frames of at most the fragment size;
    /// `rsv` goes on the first frame only.
    #[inline(always)]
    fn write_message(&mut self, opcode: OpCode, rsv: u8, payload: &[u8]) {
        match self.config.fragment_size {
            Some(max) if payload.len() > max => {
                let mut chunks = payload.chunks(max).peekable();
                let (mut op, mut rsv) = (opcode, rsv);
                while let Some(chunk) = chunks.next() {
                    let mask = self.mask_key();
                    let fin = chunks.peek().is_none();
                    encode_frame(&mut self.out, fin, rsv, op, chunk, mask);
                    (op, rsv) = (OpCode::Continuation, 0);
                }
            }
            _ => {
                let mask = self.mask_key();
                encode_frame(&mut self.out, true, rsv, opcode, payload, mask);
            }
        }
    }

    /// Queues a text message.
    pub fn send_text(&mut self, text: &str) -> Result<(), Error> {
        self.send_data(OpCode::Text, text.as_bytes())
    }

    /// Queues a binary message.
    pub fn send_binary(&mut self, data: &[u8]) -> Result<(), Error> {
        self.send_data(OpCode::Binary, data)
    }

    /// Queues a ping (payload at most 125 bytes).
    pub fn send_ping(&mut self, payload: &[u8]) -> Result<(), Error> {
        self.send_control(OpCode::Ping, payload)
    }

    /// Queues an unsolicited pong (payload at most 125 bytes).
    pub fn send_pong(&mut self, payload: &[u8]) -> Result<(), Error> {
        self.send_control(OpCode::Pong, payload)
    }

    fn send_control(&mut self, opcode: OpCode, payload: &[u8]) -> Result<(), Error> {
        self.check_can_send()?;
        if payload.len() > MAX_CONTROL_PAYLOAD {
            return Err(Error::InvalidMessage(
                "control frame payload over 125 bytes",
            ));
        }
        self.flush_pong();
        self.write_frame(true, opcode, payload);
        Ok(())
    }

    /// Queues a data message whose payload is already shared (`Bytes`): a
    /// server queues a large one by reference instead of copying it.
    fn send_shared(&mut self, opcode: OpCode, payload: &Bytes) -> Result<(), Error> {
        let whole = self
            .config
            .fragment_size
            .is_none_or(|max| payload.len() <= max);
        if self.role == Role::Client
            || !whole
            || payload.len() < ZERO_COPY_MIN
            || self.deflate.is_some()
        {
            return self.send_data(opcode, payload);
        }
        self.check_can_send()?;
        self.flush_pong();
        let header = FrameHeader {
            fin: true,
            rsv: 0,
            opcode,
            mask: None,
            payload_len: payload.len() as u64,
        };
        let mut hb = [0u8; MAX_HEADER_LEN];
        let n = header.emit(&mut hb);
        self.out.extend_from_slice(&hb[..n]);
        let head = self.out.split().freeze();
        self.seal(head);
        self.seal(payload.clone());
        Ok(())
    }

    fn seal(&mut self, chunk: Bytes) {
        if !chunk.is_empty() {
            self.sealed_len += chunk.len();
            self.sealed.push_back(chunk);
        }
    }

    /// Queues bytes that are not a frame (the server's `101` response, so
    /// that it leaves before anything the session queues after it).
    #[cfg(feature = "server")]
    pub(crate) fn queue_raw(&mut self, bytes: Bytes) {
        let head = self.out.split().freeze();
        self.seal(head);
        self.seal(bytes);
    }

    /// Queues any message; `Message::Close` starts the closing handshake.
    /// A server sends large text and binary payloads without copying them.
    pub fn send(&mut self, msg: &Message) -> Result<(), Error> {
        match msg {
            Message::Text(t) => self.send_shared(OpCode::Text, t.shared()),
            Message::Binary(b) => self.send_shared(OpCode::Binary, b),
            Message::Ping(p) => self.send_ping(p),
            Message::Pong(p) => self.send_pong(p),
            Message::Close(Some(f)) => self.close(f.code, &f.reason),
            Message::Close(None) => {
                self.start_close(None);
                Ok(())
            }
        }
    }

    /// Queues a frame encoded once for many connections. Only a server may
    /// send one: client frames need a fresh mask each.
    pub fn send_prepared(&mut self, msg: &PreparedMessage) -> Result<(), Error> {
        if self.role == Role::Client {
            return Err(Error::InvalidMessage(
                "a client cannot send a prepared (unmasked) frame",
            ));
        }
        self.check_can_send()?;
        let frame = match self.deflate.as_deref() {
            None => &msg.frame,
            Some(d) => match msg.compressed.as_deref() {
                Some((frame, bits)) if d.can_share(*bits) => frame,
                _ if d.wants(msg.payload().len()) => {
                    // This connection's parameters need its own compression.
                    return self.send_data(msg.opcode(), msg.payload());
                }
                _ => &msg.frame,
            },
        };
        let frame = frame.clone();
        self.flush_pong();
        if frame.len() < ZERO_COPY_MIN {
            self.out.extend_from_slice(&frame);
        } else {
            // Every client of a broadcast shares the one encoded frame.
            let head = self.out.split().freeze();
            self.seal(head);
            self.seal(frame);
        }
        Ok(())
    }

    /// Starts the closing handshake with `code` and `reason` (at most 123
    /// bytes). Closing an already closing connection does nothing.
    pub fn close(&mut self, code: CloseCode, reason: &str) -> Result<(), Error> {
        if !code.is_sendable() {
            return Err(Error::InvalidMessage(
                "close code may not be sent on the wire",
            ));
        }
        if reason.len() > CloseFrame::MAX_REASON_LEN {
            return Err(Error::InvalidMessage("close reason longer than 123 bytes"));
        }
        self.start_close(Some(&CloseFrame::new(code, reason)));
        Ok(())
    }

    /// Queues our close frame unless the connection is already closing or
    /// over (closing twice does nothing, whatever the frame).
    fn start_close(&mut self, frame: Option<&CloseFrame>) {
        if self.check_can_send().is_ok() {
            self.queue_close(frame);
        }
    }

    fn queue_close(&mut self, frame: Option<&CloseFrame>) {
        if let Some(link) = &self.link {
            // Split: the sending half encodes and writes it.
            link.push_close(frame.cloned());
            self.mark_close_sent();
            return;
        }
        self.flush_pong();
        let mut payload = BytesMut::with_capacity(frame.map_or(0, |f| f.payload_len()));
        if let Some(f) = frame {
            f.write_payload(&mut payload);
        }
        self.write_frame(true, OpCode::Close, &payload);
        self.mark_close_sent();
    }

    /// Records that a close frame is on its way: no more pongs, and the
    /// peer's reply is awaited for at most the close timeout.
    fn mark_close_sent(&mut self) {
        self.sent_close = true;
        self.pong_due = None;
        self.close_timer = Timer::Pending;
    }

    fn flush_pong(&mut self) {
        if let Some(p) = self.pong_due.take() {
            self.write_frame(true, OpCode::Pong, &p);
        }
    }

    /// Bytes waiting to be written to the transport (empty when none): the
    /// next contiguous chunk. Write it, call
    /// [`advance_transmit`](Self::advance_transmit), and repeat while
    /// [`wants_write`](Self::wants_write); or use
    /// [`transmit_slices`](Self::transmit_slices) for one vectored write.
    pub fn pending_transmit(&mut self) -> &[u8] {
        if !self.sent_close {
            self.flush_pong();
        }
        match self.sealed.front() {
            Some(chunk) => chunk,
            None => &self.out,
        }
    }

    /// Fills `dst` with the queued chunks in order, for one vectored write
    /// (`write_vectored`); returns how many slices it filled.
    pub fn transmit_slices<'a>(&'a mut self, dst: &mut [IoSlice<'a>]) -> usize {
        if !self.sent_close {
            self.flush_pong();
        }
        let this: &'a Self = self;
        let chunks = this
            .sealed
            .iter()
            .map(|c| &c[..])
            .chain(std::iter::once(&this.out[..]));
        let mut n = 0;
        for chunk in chunks.filter(|c| !c.is_empty()) {
            if n == dst.len() {
                break;
            }
            dst[n] = IoSlice::new(chunk);
            n += 1;
        }
        n
    }

    /// Takes the next chunk of bytes waiting to be written as an owned
    /// buffer, for transports that need owned data (no copy). Call it until
    /// it returns an empty buffer.
    pub fn take_transmit(&mut self) -> Bytes {
        if !self.sent_close {
            self.flush_pong();
        }
        if let Some(chunk) = self.sealed.pop_front() {
            self.sealed_len -= chunk.len();
            return chunk;
        }
        self.out.split().freeze()
    }

    /// Marks `n` bytes as written: of [`pending_transmit`](Self::pending_transmit),
    /// or across the slices of [`transmit_slices`](Self::transmit_slices).
    pub fn advance_transmit(&mut self, mut n: usize) {
        while n > 0 {
            let Some(front) = self.sealed.front_mut() else {
                break;
            };
            let step = n.min(front.len());
            front.advance(step);
            self.sealed_len -= step;
            n -= step;
            if front.is_empty() {
                self.sealed.pop_front();
            }
        }
        if n == 0 && !self.out.is_empty() {
            return;
        }
        self.out_peak = self.out_peak.max(self.out.len());
        if n >= self.out.len() {
            // `clear` rather than `advance`: the buffer restarts at the front of
            // its allocation, and `capacity()` keeps showing what it holds.
            self.out.clear();
        } else {
            self.out.advance(n);
        }
        if self.out.is_empty() {
            // Same hysteresis as the receive buffer: release only when the
            // capacity dwarfs what was recently queued.
            if self.out.capacity() > SHRINK_ABOVE.max(4 * self.out_peak) {
                self.out = BytesMut::new();
            }
            self.out_peak = 0;
        }
    }

    /// Drops everything queued for writing (the transport is gone).
    pub fn discard_transmit(&mut self) {
        self.sealed.clear();
        self.sealed_len = 0;
        self.out.clear();
        self.pong_due = None;
    }

    /// Whether bytes are waiting to be written.
    pub fn wants_write(&self) -> bool {
        !self.out.is_empty()
            || !self.sealed.is_empty()
            || (self.pong_due.is_some() && !self.sent_close)
    }

    /// Number of bytes queued for writing (for back-pressure decisions).
    pub fn buffered_transmit(&self) -> usize {
        self.out.len() + self.sealed_len
    }

    /// Bytes held by the receive side: `(read buffer, message in progress:
    /// fragments, or what a compressed one inflated to so far)`, for the
    /// fuzz targets' memory bounds.
    #[cfg(feature = "fuzzing")]
    pub(crate) fn buffered_receive(&self) -> (usize, usize) {
        let inflated = self.deflate.as_ref().map_or(0, |d| d.inflated.len());
        (self.rbuf.len(), self.msg_buf.len().max(inflated))
    }

    /// Frees the receive and send buffers if they are empty, so an idle
    /// connection holds no buffer memory at all. Call it before waiting for
    /// the transport to become readable (the next [`read_buf`](Self::read_buf)
    /// allocates again); returns the number of bytes of capacity released.
    ///
    /// Small buffers go at once (re-allocating them is cheap). Large ones,
    /// grown by bulk traffic, are kept for [`IDLE_SHRINK_DELAY`] and freed
    /// by [`handle_timeout`](Self::handle_timeout) if they are still empty
    /// then: freeing and re-growing a 1 MiB buffer between every two messages
    /// of a stream cost page faults and a copy per message.
    pub fn release_idle_buffers(&mut self) -> usize {
        let (freed, kept_large) = self.free_empty_buffers(SHRINK_ABOVE);
        if kept_large && self.shrink_timer == Timer::Off {
            self.shrink_timer = Timer::Pending;
        }
        freed
    }

    /// Frees the empty buffers whose capacity is at most `limit`; returns
    /// the bytes freed and whether a larger empty buffer was kept.
    fn free_empty_buffers(&mut self, limit: usize) -> (usize, bool) {
        let mut freed = 0;
        let mut kept = false;
        let receiving = self.frame.is_some();
        // After `split_to` hands a payload out, the receive buffer's
        // `capacity()` no longer shows the allocation it will reclaim once the
        // payload is dropped; `rbuf_large` remembers that it was grown.
        let rbuf_large = self.rbuf_large;
        for (buf, idle, large) in [
            (&mut self.rbuf, !receiving, rbuf_large),
            (&mut self.out, true, false),
            (&mut self.msg_buf, true, false),
        ] {
            if !buf.is_empty() || !idle {
                continue;
            }
            if buf.capacity() <= limit && !(large && limit != usize::MAX) {
                freed += buf.capacity();
                *buf = BytesMut::new();
            } else {
                kept = true;
            }
        }
        if self.rbuf.capacity() == 0 {
            self.rbuf_large = false;
        }
        if let Some(d) = self.deflate.as_deref_mut() {
            let (bytes, left) = d.release_idle(self.inflating, limit == usize::MAX);
            freed += bytes;
            kept |= left;
        }
        (freed, kept)
    }

    // ---------------------------------------------------------------- state

    /// The lifecycle state.
    pub fn state(&self) -> State {
        if self.failed || self.eof || self.timed_out || (self.sent_close && self.received_close) {
            State::Closed
        } else if self.sent_close || self.received_close {
            State::Closing
        } else {
            State::Open
        }
    }

    /// Whether a close frame has been received from the peer.
    pub fn close_received(&self) -> bool {
        self.received_close
    }

    /// Whether a close frame has been queued to the peer.
    pub fn close_sent(&self) -> bool {
        self.sent_close
    }

    /// Whether the caller should now flush and close the transport: the
    /// connection is finished and everything queued has been written. A
    /// server closes TCP right after the closing handshake; a client waits for
    /// the server to close it (end of stream) or for the close timeout.
    pub fn should_close_transport(&self) -> bool {
        if self.timed_out {
            return true;
        }
        if self.wants_write() {
            return false;
        }
        self.eof
            || self.failed
            || (self.sent_close && self.received_close && self.role == Role::Server)
    }

    // ---------------------------------------------------------------- time

    /// When the connection next needs [`handle_timeout`](Self::handle_timeout),
    /// given the current time. Timers started since the last call (a close
    /// sent, bytes received) are armed relative to `now`.
    pub fn poll_timeout(&mut self, now: Instant) -> Option<Instant> {
        self.close_timer.arm(now, self.config.close_timeout);
        if let Some(interval) = self.config.keepalive {
            if self.activity {
                self.activity = false;
                self.pong_timer = Timer::Off;
                self.ping_timer = Timer::At(now + interval);
            }
            self.ping_timer.arm(now, interval);
            self.pong_timer.arm(now, self.config.keepalive_timeout);
        }
        self.shrink_timer.arm(now, IDLE_SHRINK_DELAY);
        if self.state() == State::Closed && self.close_timer == Timer::Off {
            return None;
        }
        [
            self.close_timer.at(),
            self.ping_timer.at(),
            self.pong_timer.at(),
            self.shrink_timer.at(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Fires the timers that expired at `now` (a deadline fires when
    /// `deadline <= now`; callers whose timers round, e.g. to milliseconds,
    /// should pass `max(now, deadline)`): a close the peer never
    /// finished ends the connection, a keepalive ping is sent, a keepalive
    /// ping never answered ends the connection.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.shrink_timer.expired(now) {
            self.shrink_timer = Timer::Off;
            self.free_empty_buffers(usize::MAX);
            // Idle since: the next read is sized for light traffic again.
            self.last_frame = 0;
        }
        if self.close_timer.expired(now) {
            self.close_timer = Timer::Off;
            if !self.timed_out {
                self.timed_out = true;
                self.stop_receiving();
                if !(self.received_close || self.failed || self.eof) {
                    self.pending_error = Some(Error::Timeout(TimeoutKind::Close));
                }
            }
        }
        if self.pong_timer.expired(now) {
            self.pong_timer = Timer::Off;
            self.ping_timer = Timer::Off;
            if self.state() != State::Closed {
                self.timed_out = true;
                self.stop_receiving();
                self.pending_error = Some(Error::Timeout(TimeoutKind::Keepalive));
            }
        }
        if self.ping_timer.expired(now) {
            self.ping_timer = Timer::Off;
            if self.state() == State::Open && self.config.keepalive.is_some() {
                match &self.link {
                    Some(link) => link.push_ping(),
                    None => self.write_frame(true, OpCode::Ping, KEEPALIVE_PAYLOAD),
                }
                self.pong_timer = Timer::At(now + self.config.keepalive_timeout);
            }
        }
    }
}

/// What hands out queued bytes for a transport write: a whole [`Connection`]
/// or a split [`Sender`](split::Sender), so an adapter writes either with
/// one loop.
pub trait Transmit {
    /// The queued chunks, in order, for one vectored write (see
    /// [`Connection::transmit_slices`]).
    fn transmit_slices<'a>(&'a mut self, dst: &mut [IoSlice<'a>]) -> usize;
    /// Marks `n` bytes as written (see [`Connection::advance_transmit`]).
    fn advance_transmit(&mut self, n: usize);
}

impl Transmit for Connection {
    fn transmit_slices<'a>(&'a mut self, dst: &mut [IoSlice<'a>]) -> usize {
        Connection::transmit_slices(self, dst)
    }
    fn advance_transmit(&mut self, n: usize) {
        Connection::advance_transmit(self, n)
    }
}

impl Transmit for split::Sender {
    fn transmit_slices<'a>(&'a mut self, dst: &mut [IoSlice<'a>]) -> usize {
        split::Sender::transmit_slices(self, dst)
    }
    fn advance_transmit(&mut self, n: usize) {
        split::Sender::advance_transmit(self, n)
    }
}
