//! A [`Connection`] split into a [`Receiver`] and a [`Sender`] that can be
//! driven from different tasks or threads, with no lock on the data path.
//!
//! The receive state (read buffer, fragment assembly, UTF-8 validation,
//! timers) belongs to the `Receiver` alone; the send state (output queue,
//! masking) to the `Sender` alone. Receiving a data frame touches nothing the
//! two share, and queueing one costs the sender a single atomic load.
//!
//! They meet only where the protocol couples the directions:
//!
//! - **Control replies.** A ping needs a pong, a close needs a close reply, a
//!   protocol violation needs a close frame with its code, and keepalive needs
//!   a ping: the receiver puts these in a small mailbox (the only lock here,
//!   taken only when such a frame occurs) and raises a flag. The sender drains
//!   the mailbox into its queue the next time it produces bytes. This is the
//!   rustls pattern: the receive half reports "the send half has bytes for
//!   you" ([`Receiver::control_pending`]) instead of writing them itself.
//! - **Lifecycle.** Each half publishes what the other must know (close sent,
//!   close received, end of stream, failure, timeout, close frame written)
//!   as bits of one atomic word, read with a plain load.
//!
//! Who writes the sender's bytes when the application's sending task is idle
//! (a pong must still go out) is the runtime adapter's business; ws-core's
//! [`Handoff`](crate::rt::handoff::Handoff) is the building block the adapters
//! use for that.

use super::{Connection, KEEPALIVE_PAYLOAD, State, Timer};
use crate::PreparedMessage;
use crate::close::{CloseCode, CloseFrame};
use crate::config::{Config, Role};
use crate::error::Error;
use crate::frame::{MAX_HEADER_LEN, OpCode};
use crate::message::Message;
use bytes::{Bytes, BytesMut};
use std::collections::VecDeque;
use std::io::IoSlice;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

/// The mailbox holds control replies for the sender.
const CONTROL: u32 = 1 << 0;
/// A close frame was queued (by the sender, or as the receiver's reply).
const CLOSE_SENT: u32 = 1 << 1;
/// The sender has written its close frame, or dropped its queue: nothing
/// more will leave.
const SEND_FINISHED: u32 = 1 << 2;
/// The peer's close frame arrived.
const CLOSE_RECEIVED: u32 = 1 << 3;
/// The transport reached end of stream.
const EOF: u32 = 1 << 4;
/// The peer broke the protocol; a close frame with its code is queued.
const FAILED: u32 = 1 << 5;
/// The close or keepalive timer expired.
const TIMED_OUT: u32 = 1 << 6;
/// What the receiver publishes and the sender mirrors.
const RECEIVER_BITS: u32 = CLOSE_RECEIVED | EOF | FAILED | TIMED_OUT;

/// What the two halves share.
#[derive(Debug, Default)]
pub(crate) struct Link {
    flags: AtomicU32,
    mailbox: Mutex<Mailbox>,
}

/// Control replies the receiver owes the peer, waiting for the sender.
#[derive(Debug, Default)]
struct Mailbox {
    /// Payloads of pings to answer, oldest first.
    pongs: VecDeque<Bytes>,
    /// Wire size of `pongs`, bounded by the write buffer limit.
    pong_bytes: usize,
    /// A keepalive ping is due.
    ping: bool,
    /// A close frame to send (the reply to the peer's, or a failure code).
    close: Option<Option<CloseFrame>>,
}

impl Link {
    fn flags(&self) -> u32 {
        self.flags.load(Ordering::Acquire)
    }

    fn set(&self, bits: u32) {
        self.flags.fetch_or(bits, Ordering::AcqRel);
    }

    fn mailbox(&self) -> MutexGuard<'_, Mailbox> {
        // Nothing panics while the mailbox is held; its contents stay valid.
        self.mailbox.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues a pong. Past `limit` bytes of unanswered pings (the sender is
    /// not draining: the peer does not read) only the newest is kept, which
    /// section 5.5.3 allows and which bounds what a ping flood can queue.
    pub(crate) fn push_pong(&self, payload: Bytes, limit: usize) {
        let size = payload.len() + MAX_HEADER_LEN;
        let mut m = self.mailbox();
        if m.pong_bytes + size > limit {
            m.pongs.clear();
            m.pong_bytes = 0;
        }
        m.pong_bytes += size;
        m.pongs.push_back(payload);
        // Raised under the mailbox lock, so a drain never clears a flag for
        // replies it did not take.
        self.set(CONTROL);
    }

    /// Queues a keepalive ping.
    pub(crate) fn push_ping(&self) {
        let mut m = self.mailbox();
        m.ping = true;
        self.set(CONTROL);
    }

    /// Queues a close frame (`None`: one without a code).
    pub(crate) fn push_close(&self, frame: Option<CloseFrame>) {
        let mut m = self.mailbox();
        m.close.get_or_insert(frame);
        self.set(CONTROL | CLOSE_SENT);
    }

    fn take(&self) -> Mailbox {
        let mut m = self.mailbox();
        self.flags.fetch_and(!CONTROL, Ordering::AcqRel);
        std::mem::take(&mut *m)
    }
}

impl Connection {
    /// Splits the connection into a [`Receiver`] and a [`Sender`] that can be
    /// used from different tasks or threads (see the [module docs](self)).
    /// Bytes already queued for writing move to the sender; bytes already
    /// received stay with the receiver.
    pub fn split(mut self) -> (Receiver, Sender) {
        let link = Arc::new(Link::default());
        let mut tx = Connection::new(self.role, self.config.clone());
        // The receiver drives every timer.
        tx.ping_timer = Timer::Off;
        tx.out = std::mem::take(&mut self.out);
        tx.sealed = std::mem::take(&mut self.sealed);
        tx.sealed_len = std::mem::take(&mut self.sealed_len);
        tx.pong_due = self.pong_due.take();
        tx.out_peak = self.out_peak;
        tx.sent_close = self.sent_close;
        tx.received_close = self.received_close;
        tx.eof = self.eof;
        tx.failed = self.failed;
        tx.timed_out = self.timed_out;
        // The compressor's context goes with the sending half.
        if let (Some(rx_d), Some(tx_d)) = (self.deflate.as_deref_mut(), tx.deflate.as_deref_mut()) {
            std::mem::swap(&mut rx_d.deflater, &mut tx_d.deflater);
        }
        self.link = Some(link.clone());
        let mut rx = Receiver {
            conn: self,
            published: 0,
        };
        let mut tx = Sender {
            conn: tx,
            link,
            seen: 0,
            published: 0,
            discarded: false,
        };
        rx.publish();
        tx.seen = rx.published;
        tx.publish();
        (rx, tx)
    }
}

/// The receiving half of a split [`Connection`]: decodes input, answers
/// control frames through the [`Sender`], and drives all timers.
#[derive(Debug)]
pub struct Receiver {
    /// A connection whose `link` is set: control replies go to the sender.
    conn: Connection,
    /// Bits of `RECEIVER_BITS` already published.
    published: u32,
}

impl Receiver {
    fn link(&self) -> &Link {
        self.conn
            .link
            .as_deref()
            .expect("a receiver always has a link")
    }

    /// Mirrors a close the sender queued: no more pongs, and the close timer
    /// runs.
    fn sync(&mut self) {
        if !self.conn.sent_close && self.link().flags() & CLOSE_SENT != 0 {
            self.conn.sent_close = true;
            self.conn.pong_due = None;
            if self.conn.close_timer == Timer::Off {
                self.conn.close_timer = Timer::Pending;
            }
        }
    }

    /// Publishes lifecycle changes; no atomic operation unless one happened.
    fn publish(&mut self) {
        let c = &self.conn;
        let bits = [
            (c.received_close, CLOSE_RECEIVED),
            (c.eof, EOF),
            (c.failed, FAILED),
            (c.timed_out, TIMED_OUT),
        ]
        .into_iter()
        .filter(|(on, _)| *on)
        .fold(0, |acc, (_, bit)| acc | bit);
        let new = bits & !self.published;
        if new != 0 {
            self.link().set(new);
            self.published |= new;
        }
    }

    /// This connection's role.
    pub fn role(&self) -> Role {
        self.conn.role
    }

    /// This connection's configuration.
    pub fn config(&self) -> &Config {
        &self.conn.config
    }

    /// As [`Connection::read_buf`].
    pub fn read_buf(&mut self) -> &mut BytesMut {
        self.conn.read_buf()
    }

    /// As [`Connection::handle_bytes`].
    pub fn handle_bytes(&mut self, data: &[u8]) {
        self.conn.handle_bytes(data);
    }

    /// As [`Connection::handle_eof`]; the sender then refuses new messages.
    pub fn handle_eof(&mut self) {
        self.conn.handle_eof();
        self.publish();
    }

    /// As [`Connection::poll_message`]. A ping's pong, a close reply or a
    /// failure's close frame is handed to the sender
    /// ([`control_pending`](Self::control_pending) turns true).
    pub fn poll_message(&mut self) -> Result<Option<Message>, Error> {
        self.sync();
        let result = self.conn.poll_message();
        self.publish();
        result
    }

    /// As [`Connection::poll_timeout`].
    pub fn poll_timeout(&mut self, now: Instant) -> Option<Instant> {
        self.sync();
        self.conn.poll_timeout(now)
    }

    /// As [`Connection::handle_timeout`]; a keepalive ping is handed to the
    /// sender.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.sync();
        self.conn.handle_timeout(now);
        self.publish();
    }

    /// As [`Connection::release_idle_buffers`], for the receive buffers.
    pub fn release_idle_buffers(&mut self) -> usize {
        self.conn.release_idle_buffers()
    }

    /// As `Connection::buffered_receive` (fuzz targets' memory bounds).
    #[cfg(feature = "fuzzing")]
    pub(crate) fn buffered_receive(&self) -> (usize, usize) {
        self.conn.buffered_receive()
    }

    /// Whether the sender holds control replies it has not taken yet: the
    /// signal for whoever drives the sender to write.
    pub fn control_pending(&self) -> bool {
        self.link().flags() & CONTROL != 0
    }

    /// Whether a close frame has been received from the peer.
    pub fn close_received(&self) -> bool {
        self.conn.received_close
    }

    /// Whether a close frame has been queued to the peer, by either half.
    pub fn close_sent(&self) -> bool {
        self.conn.sent_close || self.link().flags() & CLOSE_SENT != 0
    }

    /// The lifecycle state, as both halves see it together.
    pub fn state(&self) -> State {
        lifecycle(&self.conn, self.link().flags())
    }

    /// Whether the receiving side is over and its caller should stop: the
    /// same rule as [`Connection::should_close_transport`], where "everything
    /// written" means the sender wrote its close frame (or gave up).
    pub fn should_close_transport(&self) -> bool {
        let flags = self.link().flags();
        let c = &self.conn;
        if c.timed_out {
            return true;
        }
        let sent_close = c.sent_close || flags & CLOSE_SENT != 0;
        if sent_close && flags & SEND_FINISHED == 0 {
            return false;
        }
        c.eof || c.failed || (sent_close && c.received_close && c.role == Role::Server)
    }

    /// Joins the halves back into one connection; gives them back if they
    /// come from different connections.
    // Giving the halves back unboxed, as tokio's `reunite` does: this is a
    // rare call, and an extra allocation buys nothing.
    #[allow(clippy::result_large_err)]
    pub fn reunite(self, mut tx: Sender) -> Result<Connection, (Receiver, Sender)> {
        if !Arc::ptr_eq(self.conn.link.as_ref().expect("receiver link"), &tx.link) {
            return Err((self, tx));
        }
        // Control replies still in the mailbox go into the output queue.
        tx.sync();
        let mut c = self.conn;
        c.link = None;
        let mut t = tx.conn;
        if let (Some(c_d), Some(t_d)) = (c.deflate.as_deref_mut(), t.deflate.as_deref_mut()) {
            std::mem::swap(&mut c_d.deflater, &mut t_d.deflater);
        }
        c.out = t.out;
        c.sealed = t.sealed;
        c.sealed_len = t.sealed_len;
        c.pong_due = t.pong_due;
        c.out_peak = t.out_peak;
        if t.sent_close && !c.sent_close {
            c.sent_close = true;
            if c.close_timer == Timer::Off {
                c.close_timer = Timer::Pending;
            }
        }
        Ok(c)
    }
}

/// The sending half of a split [`Connection`]: queues messages and control
/// replies and hands out the bytes to write.
#[derive(Debug)]
pub struct Sender {
    /// A connection used only for its output side; the receiver's lifecycle
    /// changes are mirrored into it.
    conn: Connection,
    link: Arc<Link>,
    /// Receiver bits already mirrored into `conn`.
    seen: u32,
    /// Own bits already published.
    published: u32,
    /// The queue was dropped: nothing more will be written.
    discarded: bool,
}

impl Sender {
    /// Mirrors the receiver's lifecycle news: one atomic load when there is
    /// none. Returns the flags it read.
    fn mirror(&mut self) -> u32 {
        let flags = self.link.flags();
        let news = flags & RECEIVER_BITS & !self.seen;
        if news != 0 {
            let c = &mut self.conn;
            c.received_close |= news & CLOSE_RECEIVED != 0;
            c.eof |= news & EOF != 0;
            c.failed |= news & FAILED != 0;
            c.timed_out |= news & TIMED_OUT != 0;
            self.seen |= news;
        }
        if flags & (CONTROL | CLOSE_SENT) == CONTROL | CLOSE_SENT && !self.conn.sent_close {
            // The receiver queued a close reply: take it now, so that the
            // sender refuses new messages exactly as an unsplit connection
            // does once its reply is queued.
            self.drain();
        }
        flags
    }

    /// [`mirror`](Self::mirror), then takes the control replies waiting in
    /// the mailbox into the output queue. Only the paths that hand out bytes
    /// to write do this, so a reply is taken only by whoever is about to
    /// write it (queueing a message never swallows a pong that then waits
    /// for the next flush).
    fn sync(&mut self) {
        if self.mirror() & CONTROL != 0 {
            self.drain();
        }
    }

    /// Moves the mailbox's control replies into the output queue.
    fn drain(&mut self) {
        let c = &mut self.conn;
        let m = self.link.take();
        let limit = c.config.write_buffer_limit;
        for payload in m.pongs {
            if c.sent_close {
                break;
            }
            // Same bound as an unsplit connection: past the limit only
            // the newest ping is answered.
            if c.out.len() < limit {
                c.pong_due = None;
                c.write_frame(true, OpCode::Pong, &payload);
            } else {
                c.pong_due = Some(payload);
            }
        }
        if m.ping && !c.sent_close && !c.timed_out {
            c.write_frame(true, OpCode::Ping, KEEPALIVE_PAYLOAD);
        }
        if let Some(frame) = m.close {
            if !c.sent_close {
                c.queue_close(frame.as_ref());
            }
        }
        self.publish();
    }

    /// Publishes a close queued or finished; no atomic operation unless one
    /// happened.
    fn publish(&mut self) {
        let c = &self.conn;
        let mut bits = 0;
        if c.sent_close {
            bits |= CLOSE_SENT;
            if !c.wants_write() {
                bits |= SEND_FINISHED;
            }
        }
        if self.discarded {
            bits |= SEND_FINISHED;
        }
        let new = bits & !self.published;
        if new != 0 {
            self.link.set(new);
            self.published |= new;
        }
    }

    fn after<T>(&mut self, result: T) -> T {
        self.publish();
        result
    }

    /// This connection's role.
    pub fn role(&self) -> Role {
        self.conn.role
    }

    /// This connection's configuration.
    pub fn config(&self) -> &Config {
        &self.conn.config
    }

    /// As [`Connection::send`]; a `Close` message starts the closing
    /// handshake, whose reply arrives on the [`Receiver`].
    pub fn send(&mut self, msg: &Message) -> Result<(), Error> {
        self.mirror();
        let r = self.conn.send(msg);
        self.after(r)
    }

    /// As [`Connection::send_text`].
    pub fn send_text(&mut self, text: &str) -> Result<(), Error> {
        self.mirror();
        self.conn.send_text(text)
    }

    /// As [`Connection::send_binary`].
    pub fn send_binary(&mut self, data: &[u8]) -> Result<(), Error> {
        self.mirror();
        self.conn.send_binary(data)
    }

    /// As [`Connection::send_ping`].
    pub fn send_ping(&mut self, payload: &[u8]) -> Result<(), Error> {
        self.mirror();
        self.conn.send_ping(payload)
    }

    /// As [`Connection::send_pong`].
    pub fn send_pong(&mut self, payload: &[u8]) -> Result<(), Error> {
        self.mirror();
        self.conn.send_pong(payload)
    }

    /// As [`Connection::send_prepared`].
    pub fn send_prepared(&mut self, msg: &PreparedMessage) -> Result<(), Error> {
        self.mirror();
        self.conn.send_prepared(msg)
    }

    /// As [`Connection::close`]. The receiver's close timer starts the next
    /// time the receiver is polled: wake whoever drives it.
    pub fn close(&mut self, code: CloseCode, reason: &str) -> Result<(), Error> {
        self.mirror();
        let r = self.conn.close(code, reason);
        self.after(r)
    }

    /// As [`Connection::pending_transmit`], control replies included.
    pub fn pending_transmit(&mut self) -> &[u8] {
        self.sync();
        self.conn.pending_transmit()
    }

    /// As [`Connection::transmit_slices`], control replies included.
    pub fn transmit_slices<'a>(&'a mut self, dst: &mut [IoSlice<'a>]) -> usize {
        self.sync();
        self.conn.transmit_slices(dst)
    }

    /// As [`Connection::take_transmit`], control replies included. Taken
    /// bytes count as written: a close frame taken here lets the
    /// [`Receiver`] finish, so a caller that must not end the receiving side
    /// before the frame is on the wire uses
    /// [`transmit_slices`](Self::transmit_slices) and
    /// [`advance_transmit`](Self::advance_transmit) instead.
    pub fn take_transmit(&mut self) -> Bytes {
        self.sync();
        let b = self.conn.take_transmit();
        self.after(b)
    }

    /// As [`Connection::advance_transmit`].
    pub fn advance_transmit(&mut self, n: usize) {
        self.conn.advance_transmit(n);
        self.publish();
    }

    /// As [`Connection::discard_transmit`]: the transport is gone, so the
    /// receiver stops waiting for a close frame to be written, and control
    /// replies it hands over are dropped too
    /// ([`Receiver::control_pending`] turns false).
    pub fn discard_transmit(&mut self) {
        if self.link.flags() & CONTROL != 0 {
            drop(self.link.take());
        }
        self.conn.discard_transmit();
        self.discarded = true;
        self.publish();
    }

    /// Whether bytes are waiting to be written, control replies included.
    pub fn wants_write(&self) -> bool {
        self.conn.wants_write() || self.link.flags() & CONTROL != 0
    }

    /// Bytes queued for writing (control replies not yet taken excluded).
    pub fn buffered_transmit(&self) -> usize {
        self.conn.buffered_transmit()
    }

    /// Frees the output buffer if it is empty, whatever its size: the sender
    /// has no timer to delay it (compare [`Connection::release_idle_buffers`]).
    pub fn release_idle_buffers(&mut self) -> usize {
        self.conn.free_empty_buffers(usize::MAX).0
    }

    /// Whether a close frame has been queued to the peer, by either half.
    pub fn close_sent(&self) -> bool {
        self.conn.sent_close || self.link.flags() & CLOSE_SENT != 0
    }

    /// Whether the peer's close frame has arrived (on the receiver).
    pub fn close_received(&self) -> bool {
        self.link.flags() & CLOSE_RECEIVED != 0
    }

    /// The lifecycle state, as both halves see it together.
    pub fn state(&self) -> State {
        lifecycle(&self.conn, self.link.flags())
    }

    /// As [`Connection::should_close_transport`], for the writing side: shut
    /// the transport's write direction down once this is true.
    pub fn should_close_transport(&mut self) -> bool {
        if self.mirror() & CONTROL != 0 && !self.conn.timed_out {
            return false;
        }
        self.conn.should_close_transport()
    }
}

/// [`Connection::state`] for one half, with the other half's news in
/// `flags`.
fn lifecycle(c: &Connection, flags: u32) -> State {
    let sent = c.sent_close || flags & CLOSE_SENT != 0;
    let received = c.received_close || flags & CLOSE_RECEIVED != 0;
    let over = c.failed || c.eof || c.timed_out || flags & (EOF | FAILED | TIMED_OUT) != 0;
    if over || (sent && received) {
        State::Closed
    } else if sent || received {
        State::Closing
    } else {
        State::Open
    }
}

#[cfg(test)]
mod tests;
