//! The per-client logic of the `Server` surface, sans-IO, so that the tokio,
//! async-std/smol and blocking servers share it instead of writing it three
//! times: echo or broadcast each message, take broadcasts from a bounded
//! outbox only while the client keeps up, stop reading from a client that
//! does not read its echoes, and close a client the hub dropped.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use crate::close::CloseCode;
use crate::connection::{Connection, State};
use crate::error::Error;
use crate::message::Message;
use crate::server::handler::{Batch, ConnectionHandle, Handler, Socket};
use crate::server::hub::{ClientId, Hub, Outbox, SLOW_CLIENT_CLOSE, Wake};
use crate::server::metrics::Tally;
use crate::trace;

/// Broadcasts taken from the outbox per lock: enough to fill a write, few
/// enough that a broadcaster waiting for the lock is not held up for long.
const POP_BATCH: usize = 64;

/// One server-side client connection and what the server does with it:
/// its [`Connection`], the application's [`Handler`] and the connection's
/// state, its broadcast [`Outbox`] in the [`Hub`], and the flow-control
/// rules between them (see the [`hub`](crate::server::hub) docs).
///
/// The adapter's loop is: call [`poll`](Self::poll) after anything happened
/// (bytes read, bytes written, the [`Wake`] fired, the timer fired), write
/// what the connection has queued, then wait for the socket to be readable
/// (only while [`wants_read`](Self::wants_read)), writable (while the
/// connection [`wants_write`](Connection::wants_write)), the wake, and the
/// timer at [`poll_timeout`](Self::poll_timeout); stop once
/// [`is_finished`](Self::is_finished). Dropping the session ends it: the
/// client leaves the hub and the handler's `on_close` runs.
pub struct ServerSession<H: Handler> {
    conn: Connection,
    handler: Arc<H>,
    /// `None` once `on_close` has taken it.
    state: Option<H::State>,
    handle: ConnectionHandle,
    /// `None` once the client left the hub (its connection is closing).
    outbox: Option<Outbox>,
    hub: Arc<Hub>,
    wake: Arc<dyn Wake>,
    /// The hub epoch this session registered its pause in.
    paused: Option<u64>,
    /// A message decoded while the hub was congested, handed to the handler
    /// once it clears. Only a connection that publishes pauses, and only
    /// with a message in hand, so clients that only read are never paused
    /// (nor woken when the pause ends). Boxed: rare, and an idle session
    /// should not carry a message's size.
    held: Option<Box<Message>>,
    /// Whether the handler has published or broadcast for this connection:
    /// from then on its messages wait while the hub is congested.
    publisher: bool,
    /// Publishes and broadcasts of this poll, one hub lock per batch.
    batch: Batch,
    /// The first close frame sent or received, for `on_close` (boxed: set
    /// once, at the end).
    close: Option<Box<(CloseCode, String)>>,
    /// Bytes taken for a write that has not finished
    /// ([`take_for_write`](Self::take_for_write)).
    in_flight: usize,
    /// Messages counted since the last flush into the hub's counters.
    tally: Tally,
}

impl<H: Handler> std::fmt::Debug for ServerSession<H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerSession")
            .field("conn", &self.conn)
            .field("handle", &self.handle)
            .field("outbox", &self.outbox)
            .field("paused", &self.paused)
            .finish_non_exhaustive()
    }
}

impl<H: Handler> ServerSession<H> {
    /// Wraps a server-role connection whose upgrade `handler` accepted with
    /// `state`, from `peer`, registers it in `hub` and runs the handler's
    /// `on_open` at `now`; `wake` wakes the task that runs the session.
    ///
    /// Adapters open the session before writing the 101, so that a client
    /// holding its 101 is already registered and in the topics `on_open`
    /// chose (what `on_open` sends goes out right after the 101).
    pub fn new(
        conn: Connection,
        handler: Arc<H>,
        state: H::State,
        peer: SocketAddr,
        hub: &Arc<Hub>,
        wake: Arc<dyn Wake>,
        now: Instant,
    ) -> Self {
        let outbox = hub.register_peer(wake.clone(), Some(peer));
        let mut session = ServerSession {
            conn,
            handler,
            state: Some(state),
            handle: ConnectionHandle::new(outbox.id(), peer, hub.clone()),
            outbox: Some(outbox),
            hub: hub.clone(),
            wake,
            paused: None,
            held: None,
            publisher: false,
            batch: Batch::default(),
            close: None,
            in_flight: 0,
            tally: Tally::default(),
        };
        session.hub.counters().opened();
        trace::debug!(client = session.handle.id().0, "upgraded");
        session.callback(now, |h, ws, state| h.on_open(ws, state));
        session.batch.flush(&session.hub, now);
        session.pump_outbox();
        session.hub.counters().flush(&mut session.tally);
        session
    }

    /// The client's id in the hub, while it is registered.
    pub fn id(&self) -> Option<ClientId> {
        self.outbox.as_ref().map(Outbox::id)
    }

    /// The handle the handler's callbacks see (its id stays valid after the
    /// client left the hub).
    pub fn handle(&self) -> &ConnectionHandle {
        &self.handle
    }

    /// The connection (for reading into, writing from, and timers).
    pub fn connection(&mut self) -> &mut Connection {
        &mut self.conn
    }

    /// The connection's configuration.
    pub(crate) fn config(&self) -> &crate::Config {
        self.conn.config()
    }

    /// Whether the connection's write buffer has room (below the
    /// configured write buffer limit).
    fn has_room(&self) -> bool {
        self.conn.buffered_transmit() + self.in_flight < self.conn.config().get_write_buffer_limit()
    }

    /// Takes everything queued, for an adapter that writes outside its own
    /// lock (the blocking server): the bytes count against the write buffer
    /// limit until [`written`](Self::written) says they are on the wire, so
    /// a client that does not read cannot make the session take more.
    pub fn take_for_write(&mut self) -> bytes::Bytes {
        let bytes = self.conn.take_transmit();
        self.in_flight += bytes.len();
        bytes
    }

    /// `n` bytes taken by [`take_for_write`](Self::take_for_write) were
    /// written; takes more broadcasts if that made room (so a client that
    /// reads slowly drains its queue while a long write is still going).
    pub fn written(&mut self, n: usize) {
        self.in_flight = self.in_flight.saturating_sub(n);
        self.pump_outbox();
        self.hub.counters().flush(&mut self.tally);
    }

    /// Does everything that needs no I/O, at `now`:
    ///
    /// 1. fires the timers that are due (the connection's, and, while paused,
    ///    the hub's slow-client deadline);
    /// 2. moves broadcasts from the outbox into the connection while its
    ///    write buffer has room; closes the connection with the hub's code if
    ///    the hub let go of the client (1013 too slow, 1001 shutting down, or
    ///    the application's code);
    /// 3. decodes the messages received so far and hands each text or binary
    ///    one to the handler's `on_message`; its publishes and broadcasts go
    ///    to the hub in batches, encoded once. Decoding stops while the
    ///    write buffer is full; for a connection that publishes, a message
    ///    decoded while the hub is congested is held and the session pauses
    ///    until the congestion clears. Either way undecoded bytes wait in the
    ///    connection and [`wants_read`](Self::wants_read) turns false, so TCP
    ///    pushes back on the client.
    ///
    /// An error (a protocol violation, the peer vanishing) is returned for
    /// logging; the connection has already queued its close frame, and the
    /// caller keeps driving I/O until [`is_finished`](Self::is_finished).
    pub fn poll(&mut self, now: Instant) -> Result<(), Error> {
        self.conn.handle_timeout(now);
        if self.held.is_some() && self.hub.poll_timeout().is_some_and(|d| d <= now) {
            self.hub.handle_timeout(now);
        }
        self.pump_outbox();
        let mut result = Ok(());
        while self.has_room() {
            let msg = match self.held.take() {
                Some(msg) => *msg,
                None => match self.conn.poll_message() {
                    Ok(Some(msg)) => msg,
                    Ok(None) => break,
                    Err(e) => {
                        if let Some(code) = e.close_code() {
                            if e.is_timeout() {
                                trace::info!(error = %e, code = code.0, "timeout");
                            } else if code != CloseCode::ABNORMAL {
                                trace::debug!(error = %e, code = code.0, "close sent");
                            } else {
                                trace::debug!(error = %e, "connection lost");
                            }
                            self.close
                                .get_or_insert_with(|| Box::new((code, String::new())));
                        }
                        result = Err(e);
                        break;
                    }
                },
            };
            match &msg {
                // After our close only the peer's close matters (RFC 6455
                // 5.5.1): a handler that closed hears nothing more.
                Message::Text(_) | Message::Binary(_) if self.conn.close_sent() => continue,
                Message::Text(t) => self.tally.received(t.len()),
                Message::Binary(b) => self.tally.received(b.len()),
                Message::Close(frame) => {
                    let (code, reason) = frame
                        .as_ref()
                        .map_or((CloseCode::NO_STATUS, ""), |f| (f.code, &*f.reason));
                    trace::debug!(code = code.0, reason, "close received");
                    if self.close.is_none() {
                        // The connection answered with the same code.
                        trace::debug!(code = code.0, "close sent");
                    }
                    self.close
                        .get_or_insert_with(|| Box::new((code, reason.to_owned())));
                    continue;
                }
                // Pings are answered by the connection.
                Message::Ping(_) | Message::Pong(_) => continue,
            }
            if self.publisher
                && self.hub.is_congested()
                && self.hub.pause(&self.wake, &mut self.paused)
            {
                // What this poll published goes out before we wait.
                self.batch.flush(&self.hub, now);
                self.held = Some(Box::new(msg));
                break;
            }
            self.callback(now, |h, ws, state| h.on_message(ws, state, msg));
        }
        self.batch.flush(&self.hub, now);
        // Our own close may have started above: leave the hub then.
        self.pump_outbox();
        self.hub.counters().flush(&mut self.tally);
        result
    }

    /// Runs one handler callback with a [`Socket`] on this connection.
    fn callback(&mut self, now: Instant, f: impl FnOnce(&H, &mut Socket<'_>, &mut H::State)) {
        let Some(state) = self.state.as_mut() else {
            return;
        };
        let mut ws = Socket {
            conn: &mut self.conn,
            handle: &self.handle,
            batch: &mut self.batch,
            now,
            published: false,
            closed: None,
            tally: &mut self.tally,
        };
        f(&self.handler, &mut ws, state);
        self.publisher |= ws.published;
        if let Some(closed) = ws.closed {
            trace::debug!(code = closed.0.0, reason = %closed.1, "close sent");
            self.close.get_or_insert_with(|| Box::new(closed));
        }
    }

    /// Moves queued broadcasts into the connection while it has room.
    fn pump_outbox(&mut self) {
        let Some(outbox) = &self.outbox else { return };
        if self.conn.state() != State::Open {
            // Closing: broadcasts can no longer be sent; leaving the hub
            // keeps an unread queue from stalling everyone else.
            self.outbox = None;
            return;
        }
        if !self.has_room() {
            if let Some(code) = outbox.closed() {
                self.close_for_hub(code);
            }
            return;
        }
        let conn = &mut self.conn;
        let tally = &mut self.tally;
        let limit = conn.config().get_write_buffer_limit();
        loop {
            let mut taken = 0;
            let closed = outbox.pop_while(POP_BATCH, |msg| {
                taken += 1;
                // Fails only once the connection is closing.
                if conn.send_prepared(&msg).is_ok() {
                    tally.sent(msg.payload_len());
                }
                conn.buffered_transmit() < limit
            });
            if let Some(code) = closed {
                self.close_for_hub(code);
                return;
            }
            // A short batch: the queue is empty, or the buffer is full.
            if taken < POP_BATCH || conn.buffered_transmit() >= limit {
                return;
            }
        }
    }

    /// The hub let go of the client: close with its code (and reason).
    fn close_for_hub(&mut self, code: CloseCode) {
        let reason = self
            .outbox
            .take()
            .map(|o| o.close_reason())
            .unwrap_or_default();
        if self.conn.close(code, &reason).is_ok() {
            if code == SLOW_CLIENT_CLOSE {
                trace::info!(code = code.0, "slow client dropped (flow control)");
            } else {
                trace::debug!(code = code.0, reason = %reason, "close sent");
            }
            self.close.get_or_insert_with(|| Box::new((code, reason)));
        }
    }

    /// Whether to read more from the client now: not while the bytes
    /// queued for it exceed the write buffer limit (a client that sends but
    /// never reads is throttled by TCP instead of growing our memory), and
    /// not while paused by the hub's congestion.
    pub fn wants_read(&self) -> bool {
        self.has_room() && self.held.is_none()
    }

    /// Bytes queued for the client now.
    pub fn buffered_transmit(&self) -> usize {
        self.conn.buffered_transmit()
    }

    /// Whether bytes are queued for the client.
    pub fn wants_write(&self) -> bool {
        self.conn.wants_write()
    }

    /// Whether this session is paused by the hub's congestion (it is woken
    /// through its [`Wake`] when that clears).
    pub fn is_paused(&self) -> bool {
        self.held.is_some()
    }

    /// When [`poll`](Self::poll) next needs calling for a timer: the
    /// connection's timers and, while paused, the hub's slow-client deadline.
    pub fn poll_timeout(&mut self, now: Instant) -> Option<Instant> {
        let conn = self.conn.poll_timeout(now);
        let hub = self.held.as_ref().and_then(|_| self.hub.poll_timeout());
        conn.into_iter().chain(hub).min()
    }

    /// Whether the connection is over and the transport should be closed.
    pub fn is_finished(&self) -> bool {
        self.conn.should_close_transport()
    }
}

impl<H: Handler> Drop for ServerSession<H> {
    /// The client leaves the hub (and its topics), then the handler's
    /// `on_close` runs.
    fn drop(&mut self) {
        self.outbox = None;
        let Some(state) = self.state.take() else {
            return;
        };
        let (code, reason) = self
            .close
            .take()
            .map_or((CloseCode::ABNORMAL, String::new()), |c| *c);
        let counters = self.hub.counters();
        counters.flush(&mut self.tally);
        counters.closed(code.0);
        trace::debug!(code = code.0, "session ended");
        self.handler.on_close(&self.handle, state, code, &reason);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connection::PreparedMessage;
    use crate::server::hub::FlowControl;
    use crate::server::site::ServerMode;
    use crate::{Config, Role};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    #[derive(Default)]
    struct Counter(AtomicUsize);

    impl Wake for Counter {
        fn wake(&self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn client_bytes(msgs: &[Message]) -> bytes::Bytes {
        let mut c = Connection::new(Role::Client, Config::default());
        for m in msgs {
            c.send(m).unwrap();
        }
        c.take_transmit()
    }

    fn decode_as_client(bytes: &[u8]) -> Vec<Message> {
        let mut c = Connection::new(Role::Client, Config::default());
        c.handle_bytes(bytes);
        std::iter::from_fn(|| c.poll_message().unwrap()).collect()
    }

    const PEER: SocketAddr = SocketAddr::V4(std::net::SocketAddrV4::new(
        std::net::Ipv4Addr::LOCALHOST,
        40000,
    ));

    type Demo = ServerSession<ServerMode>;

    fn session_in(hub: &Arc<Hub>, mode: ServerMode, cfg: Config) -> (Demo, Arc<Counter>) {
        let wake = Arc::new(Counter::default());
        let room = (mode == ServerMode::Chat).then(|| Arc::from(crate::server::demo::LOBBY));
        let s = ServerSession::new(
            Connection::new(Role::Server, cfg),
            Arc::new(mode),
            room,
            PEER,
            hub,
            wake.clone(),
            Instant::now(),
        );
        (s, wake)
    }

    fn session(mode: ServerMode) -> (Demo, Arc<Hub>) {
        let hub = Arc::new(Hub::default());
        let (s, _) = session_in(&hub, mode, Config::default());
        (s, hub)
    }

    #[test]
    fn the_hubs_counters_see_messages_both_ways_and_each_sessions_close_code() {
        let hub = Arc::new(Hub::default());
        let (mut echo, _) = session_in(&hub, ServerMode::Echo, Config::default());
        let (mut a, _) = session_in(&hub, ServerMode::Chat, Config::default());
        let (mut b, _) = session_in(&hub, ServerMode::Chat, Config::default());
        let m = hub.metrics();
        assert_eq!((m.connections_open, m.connections_total), (3, 3));
        // Echo: a ping is not a message; two data messages in, two out.
        echo.connection().handle_bytes(&client_bytes(&[
            Message::text("abc"),
            Message::Ping("p".into()),
            Message::binary(vec![0; 10]),
        ]));
        echo.poll(Instant::now()).unwrap();
        // Chat: one message in, out once per recipient (a and b).
        a.connection()
            .handle_bytes(&client_bytes(&[Message::text("hello")]));
        a.poll(Instant::now()).unwrap();
        assert_eq!(
            hub.metrics().queued_messages,
            1,
            "b's (a took its own at once)"
        );
        a.poll(Instant::now()).unwrap();
        b.poll(Instant::now()).unwrap();
        let m = hub.metrics();
        assert_eq!((m.messages_in, m.bytes_in), (3, 18));
        assert_eq!((m.messages_out, m.bytes_out), (4, 23));
        assert_eq!((m.queued_messages, m.queued_bytes), (0, 0));
        // Closes by code: the peer's 4000, the handler-less vanishing 1006.
        a.connection()
            .handle_bytes(&client_bytes(&[Message::Close(Some(
                crate::CloseFrame::new(CloseCode(4000), "bye"),
            ))]));
        a.poll(Instant::now()).unwrap();
        drop((a, b));
        let m = hub.metrics();
        assert_eq!(m.closes, [(1006, 1), (4000, 1)]);
        assert_eq!((m.connections_open, m.connections_total), (1, 3));
        drop(echo);
        assert_eq!(hub.metrics().connections_open, 0);
    }

    #[test]
    fn a_slow_client_dropped_by_the_hub_is_counted_and_closed_with_1013() {
        let limits = FlowControl::default()
            .high_water(1, 1 << 20)
            .max_queued_bytes(1 << 20);
        let hub = Arc::new(Hub::new(limits));
        let (mut slow, _) = session_in(&hub, ServerMode::Chat, Config::default());
        let big = PreparedMessage::new(&Message::binary(vec![0; 600 << 10])).unwrap();
        hub.broadcast(&big, Instant::now());
        hub.broadcast(&big, Instant::now());
        slow.poll(Instant::now()).unwrap();
        drop(slow);
        let m = hub.metrics();
        assert_eq!(m.slow_client_drops, 1);
        assert_eq!(m.closes, [(1013, 1)]);
    }

    #[test]
    fn echo_mode_sends_each_data_message_back() {
        let (mut s, hub) = session(ServerMode::Echo);
        let msgs = [
            Message::text("a"),
            Message::Ping("p".into()),
            Message::binary(vec![1, 2]),
        ];
        s.connection().handle_bytes(&client_bytes(&msgs));
        s.poll(Instant::now()).unwrap();
        assert_eq!(hub.stats().queued_bytes, 0, "echo mode never broadcasts");
        let back = decode_as_client(&s.connection().take_transmit());
        assert_eq!(
            back,
            vec![
                Message::text("a"),
                Message::Pong("p".into()),
                Message::binary(vec![1, 2])
            ]
        );
    }

    #[test]
    fn chat_mode_broadcasts_data_messages_to_every_client_including_the_sender() {
        let hub = Arc::new(Hub::default());
        let (mut a, _) = session_in(&hub, ServerMode::Chat, Config::default());
        let (mut b, _) = session_in(&hub, ServerMode::Chat, Config::default());
        a.connection().handle_bytes(&client_bytes(&[
            Message::text("hi"),
            Message::Pong("x".into()),
        ]));
        a.poll(Instant::now()).unwrap();
        b.poll(Instant::now()).unwrap();
        for s in [&mut a, &mut b] {
            let got = decode_as_client(&s.connection().take_transmit());
            assert_eq!(got, vec![Message::text("hi")]);
        }
    }

    #[test]
    fn a_client_that_does_not_read_is_not_read_from_or_fed_broadcasts() {
        let cfg = Config::default().write_buffer_limit(100);
        let hub = Arc::new(Hub::default());
        let (mut s, _) = session_in(&hub, ServerMode::Echo, cfg);
        assert!(s.wants_read());
        s.connection()
            .handle_bytes(&client_bytes(&[Message::binary(vec![0; 200])]));
        s.poll(Instant::now()).unwrap();
        assert!(!s.wants_read());
        hub.broadcast(
            &PreparedMessage::new(&Message::text("queued")).unwrap(),
            Instant::now(),
        );
        s.poll(Instant::now()).unwrap();
        assert!(hub.stats().queued_bytes > 0, "kept in the outbox");
        let n = s.connection().pending_transmit().len();
        s.connection().advance_transmit(n);
        assert!(s.wants_read());
        s.poll(Instant::now()).unwrap();
        assert_eq!(hub.stats().queued_bytes, 0, "taken once there was room");
    }

    #[test]
    fn echoes_stop_being_decoded_while_the_write_buffer_is_full() {
        let cfg = Config::default().write_buffer_limit(100);
        let hub = Arc::new(Hub::default());
        let (mut s, _) = session_in(&hub, ServerMode::Echo, cfg);
        let msgs: Vec<_> = (0..3).map(|_| Message::binary(vec![1; 150])).collect();
        s.connection().handle_bytes(&client_bytes(&msgs));
        s.poll(Instant::now()).unwrap();
        assert_eq!(decode_as_client(&s.connection().take_transmit()).len(), 1);
        s.poll(Instant::now()).unwrap();
        assert_eq!(decode_as_client(&s.connection().take_transmit()).len(), 1);
        s.poll(Instant::now()).unwrap();
        assert_eq!(decode_as_client(&s.connection().take_transmit()).len(), 1);
    }

    #[test]
    fn a_dropped_outbox_closes_the_client_with_the_hubs_code() {
        let limits = FlowControl::default()
            .high_water(1, 1 << 20)
            .slow_client_timeout(Duration::from_secs(1));
        let hub = Arc::new(Hub::new(limits));
        let cfg = Config::default().write_buffer_limit(1);
        let (mut slow, wake) = session_in(&hub, ServerMode::Chat, cfg);
        let t0 = Instant::now();
        for i in 0..3 {
            let m = PreparedMessage::new(&Message::text(i.to_string())).unwrap();
            hub.broadcast(&m, t0);
            slow.poll(t0).unwrap();
        }
        assert!(hub.is_congested());
        hub.handle_timeout(t0 + Duration::from_secs(1));
        assert!(wake.0.load(Ordering::SeqCst) > 0);
        slow.poll(t0 + Duration::from_secs(1)).unwrap();
        let back = decode_as_client(&slow.connection().take_transmit());
        assert_eq!(
            back.last(),
            Some(&Message::Close(Some(crate::CloseFrame::new(
                CloseCode(1013),
                ""
            ))))
        );
        assert_eq!(slow.id(), None, "left the hub");
    }

    #[test]
    fn a_chat_sender_pauses_while_the_hub_is_congested_and_resumes_after() {
        let limits = FlowControl::default().high_water(1, 1 << 20);
        let hub = Arc::new(Hub::new(limits));
        let (mut sender, sender_wake) = session_in(&hub, ServerMode::Chat, Config::default());
        let (mut reader, _) = session_in(&hub, ServerMode::Chat, Config::default());
        let msgs: Vec<_> = (0..5).map(|i| Message::text(format!("m{i}"))).collect();
        // The first read: both messages go out in one batch; the reader's
        // queue passes the mark.
        sender.connection().handle_bytes(&client_bytes(&msgs[..2]));
        let now = Instant::now();
        sender.poll(now).unwrap();
        assert!(hub.is_congested());
        assert!(!sender.is_paused(), "nothing more to send yet");
        // The next read finds the hub congested: held, paused.
        sender.connection().handle_bytes(&client_bytes(&msgs[2..]));
        sender.poll(now).unwrap();
        assert!(sender.is_paused() && !sender.wants_read());
        let mut got = Vec::new();
        let mut rounds = 0;
        while got.len() < 5 {
            rounds += 1;
            assert!(rounds < 20, "stuck at {got:?}");
            reader.poll(now).unwrap();
            got.extend(decode_as_client(&reader.connection().take_transmit()));
            sender.poll(now).unwrap();
            sender.connection().take_transmit();
        }
        assert_eq!(got, msgs, "every message, once, in order");
        assert!(sender_wake.0.load(Ordering::SeqCst) > 0, "woken on resume");
        assert!(!sender.is_paused() && sender.wants_read());
    }

    #[test]
    fn one_read_overshoots_the_mark_by_at_most_one_broadcast_batch() {
        let limits = FlowControl::default().high_water(1, 1 << 20);
        let hub = Arc::new(Hub::new(limits));
        let (reader, _) = session_in(&hub, ServerMode::Chat, Config::default());
        let (mut sender, _) = session_in(&hub, ServerMode::Chat, Config::default());
        let msgs: Vec<_> = (0..200).map(|i| Message::text(i.to_string())).collect();
        sender.connection().handle_bytes(&client_bytes(&msgs));
        sender.poll(Instant::now()).unwrap();
        assert!(sender.is_paused());
        let queued = reader.outbox.as_ref().unwrap().len();
        assert_eq!(queued, 64, "one batch, then the pause");
    }

    #[test]
    fn an_echo_session_ignores_the_hubs_congestion() {
        let limits = FlowControl::default().high_water(1, 1 << 20);
        let hub = Arc::new(Hub::new(limits));
        let (_stalled, _) = session_in(&hub, ServerMode::Chat, Config::default());
        for _ in 0..3 {
            hub.broadcast(
                &PreparedMessage::new(&Message::text("x")).unwrap(),
                Instant::now(),
            );
        }
        assert!(hub.is_congested());
        let (mut echo, _) = session_in(&hub, ServerMode::Echo, Config::default());
        echo.connection()
            .handle_bytes(&client_bytes(&[Message::text("e")]));
        echo.poll(Instant::now()).unwrap();
        assert!(echo.wants_read());
        // The echo came back; the three broadcasts queued before it
        // registered are not its.
        assert_eq!(
            decode_as_client(&echo.connection().take_transmit()),
            vec![Message::text("e")]
        );
    }

    #[test]
    fn a_paused_sender_drops_a_client_stalled_past_the_timeout() {
        let limits = FlowControl::default()
            .high_water(1, 1 << 20)
            .slow_client_timeout(Duration::from_secs(1));
        let hub = Arc::new(Hub::new(limits));
        let (_slow, _) = session_in(&hub, ServerMode::Chat, Config::default());
        let (mut sender, _) = session_in(&hub, ServerMode::Chat, Config::default());
        let t0 = Instant::now();
        sender
            .connection()
            .handle_bytes(&client_bytes(&[Message::text("a"), Message::text("b")]));
        sender.poll(t0).unwrap();
        sender
            .connection()
            .handle_bytes(&client_bytes(&[Message::text("c")]));
        sender.poll(t0).unwrap();
        assert!(sender.is_paused());
        let deadline = sender.poll_timeout(t0).unwrap();
        assert_eq!(deadline, t0 + Duration::from_secs(1));
        sender.poll(deadline).unwrap();
        assert_eq!(hub.len(), 1, "the slow client was dropped");
        assert!(!sender.is_paused());
        // Its remaining message went out once the pause ended.
        assert_eq!(
            decode_as_client(&sender.connection().take_transmit()),
            vec![Message::text("a"), Message::text("b"), Message::text("c")]
        );
    }

    #[test]
    fn a_client_that_only_reads_is_never_paused_or_woken_by_congestion() {
        let limits = FlowControl::default().high_water(1, 1 << 20);
        let hub = Arc::new(Hub::new(limits));
        let (_stalled, _) = session_in(&hub, ServerMode::Chat, Config::default());
        let (mut listener, listener_wake) = session_in(&hub, ServerMode::Chat, Config::default());
        for _ in 0..3 {
            hub.broadcast(
                &PreparedMessage::new(&Message::text("x")).unwrap(),
                Instant::now(),
            );
        }
        assert!(hub.is_congested());
        listener.poll(Instant::now()).unwrap();
        listener.connection().take_transmit();
        let woken = listener_wake.0.load(Ordering::SeqCst);
        assert!(!listener.is_paused() && listener.wants_read());
        drop(_stalled);
        assert!(!hub.is_congested());
        assert_eq!(
            listener_wake.0.load(Ordering::SeqCst),
            woken,
            "not registered for the resume"
        );
    }

    #[test]
    fn bytes_taken_for_a_write_count_against_the_limit_until_written() {
        let cfg = Config::default().write_buffer_limit(100);
        let hub = Arc::new(Hub::default());
        let (mut s, _) = session_in(&hub, ServerMode::Chat, cfg);
        let big = PreparedMessage::new(&Message::binary(vec![0; 150])).unwrap();
        hub.broadcast(&big, Instant::now());
        hub.broadcast(&big, Instant::now());
        s.poll(Instant::now()).unwrap();
        let taken = s.take_for_write();
        assert_eq!(taken.len(), big.as_bytes().len());
        s.poll(Instant::now()).unwrap();
        assert!(
            !s.wants_read(),
            "the write in flight still fills the buffer"
        );
        assert!(
            s.connection().pending_transmit().is_empty(),
            "nothing more taken"
        );
        s.written(taken.len());
        s.poll(Instant::now()).unwrap();
        assert_eq!(
            s.take_for_write().len(),
            big.as_bytes().len(),
            "taken once written"
        );
    }

    #[test]
    fn a_session_is_registered_under_its_handles_id_until_it_leaves() {
        let (mut s, hub) = session(ServerMode::Echo);
        assert_eq!(s.id(), Some(s.handle().id()));
        assert_eq!(hub.len(), 1);
        s.connection().close(CloseCode::NORMAL, "").unwrap();
        s.poll(Instant::now()).unwrap();
        assert_eq!(s.id(), None, "a closing session leaves the hub");
        assert!(format!("{s:?}").starts_with("ServerSession"));
    }

    #[test]
    fn a_write_in_flight_of_exactly_the_limit_leaves_no_room() {
        let msg = PreparedMessage::new(&Message::binary(vec![0; 10])).unwrap();
        let frame = msg.as_bytes().len();
        let cfg = Config::default().write_buffer_limit(frame);
        let hub = Arc::new(Hub::default());
        let (mut s, _) = session_in(&hub, ServerMode::Echo, cfg);
        s.connection()
            .handle_bytes(&client_bytes(&[Message::binary(vec![0; 10])]));
        s.poll(Instant::now()).unwrap();
        let taken = s.take_for_write();
        assert_eq!(taken.len(), frame, "the echo, exactly the limit");
        s.connection()
            .handle_bytes(&client_bytes(&[Message::binary(vec![1; 10])]));
        s.poll(Instant::now()).unwrap();
        assert!(
            s.connection().pending_transmit().is_empty(),
            "at the limit nothing more is decoded and echoed"
        );
        s.written(frame - 1);
        s.poll(Instant::now()).unwrap();
        assert_eq!(
            s.take_for_write().len(),
            frame,
            "one byte under: room again"
        );
    }

    #[test]
    fn one_poll_moves_more_than_one_batch_of_broadcasts() {
        let hub = Arc::new(Hub::default());
        let (mut s, _) = session_in(&hub, ServerMode::Chat, Config::default());
        let n = POP_BATCH * 3 + 1;
        for i in 0..n {
            let m = PreparedMessage::new(&Message::text(format!("{i}"))).unwrap();
            hub.broadcast(&m, Instant::now());
        }
        s.poll(Instant::now()).unwrap();
        let got = decode_as_client(&s.take_for_write());
        assert_eq!(got.len(), n, "every queued broadcast in one poll");
    }

    #[test]
    fn protocol_error_is_reported_and_session_finishes_after_flush() {
        let (mut s, _hub) = session(ServerMode::Echo);
        s.connection().handle_bytes(&[0x81, 0x00]); // unmasked
        assert!(s.poll(Instant::now()).unwrap_err().is_protocol());
        assert!(!s.is_finished(), "close frame not yet written");
        assert_eq!(s.id(), None, "a closing client leaves the hub");
        s.connection().take_transmit();
        assert!(s.is_finished());
    }

    /// Logs every callback; counts messages in its state; `close` closes
    /// with 4001, `sub:T` subscribes to T, `pub:T:X` publishes X to T.
    #[derive(Default)]
    struct Recorder(std::sync::Mutex<Vec<String>>);

    impl Recorder {
        fn log(&self) -> Vec<String> {
            self.0.lock().unwrap().clone()
        }
    }

    impl Handler for Arc<Recorder> {
        type State = usize;

        fn on_upgrade(
            &self,
            _: &crate::handshake::Request,
            _: SocketAddr,
        ) -> Result<crate::server::Upgrade<usize>, crate::server::Refusal> {
            unreachable!("sessions are made by hand here")
        }

        fn on_open(&self, ws: &mut Socket<'_>, n: &mut usize) {
            self.0
                .lock()
                .unwrap()
                .push(format!("open {} {n}", ws.peer_addr()));
        }

        fn on_message(&self, ws: &mut Socket<'_>, n: &mut usize, msg: Message) {
            *n += 1;
            let text = match &msg {
                Message::Text(t) => t.to_string(),
                _ => String::new(),
            };
            self.0.lock().unwrap().push(format!("message {n} {text}"));
            if text == "close" {
                ws.close(CloseCode(4001), "asked").unwrap();
            } else if let Some(topic) = text.strip_prefix("sub:") {
                ws.subscribe(topic);
            } else if let Some(rest) = text.strip_prefix("pub:") {
                let (topic, body) = rest.split_once(':').unwrap();
                ws.publish(topic, &Message::text(body)).unwrap();
            }
        }

        fn on_close(&self, ws: &ConnectionHandle, n: usize, code: CloseCode, reason: &str) {
            let registered = ws.is_open();
            self.0.lock().unwrap().push(format!(
                "close {} {n} {reason:?} registered={registered}",
                code.0
            ));
        }
    }

    fn recorded(hub: &Arc<Hub>) -> (ServerSession<Arc<Recorder>>, Arc<Recorder>) {
        let rec = Arc::new(Recorder::default());
        let s = ServerSession::new(
            Connection::new(Role::Server, Config::default()),
            Arc::new(rec.clone()),
            0,
            PEER,
            hub,
            Arc::new(Counter::default()),
            Instant::now(),
        );
        (s, rec)
    }

    #[test]
    fn the_handler_sees_open_then_each_message_then_the_peers_close_once() {
        let hub = Arc::new(Hub::default());
        let (mut s, rec) = recorded(&hub);
        let close = Message::Close(Some(crate::CloseFrame::new(CloseCode(4000), "done")));
        s.connection().handle_bytes(&client_bytes(&[
            Message::text("a"),
            Message::Ping("p".into()),
            Message::binary(vec![1]),
            close,
        ]));
        s.poll(Instant::now()).unwrap();
        assert_eq!(hub.len(), 0, "a closing client leaves the hub");
        drop(s);
        assert_eq!(
            rec.log(),
            [
                "open 127.0.0.1:40000 0",
                "message 1 a",
                "message 2 ",
                "close 4000 2 \"done\" registered=false",
            ]
        );
    }

    #[test]
    fn a_connection_that_just_vanishes_is_closed_with_1006() {
        let hub = Arc::new(Hub::default());
        let (mut s, rec) = recorded(&hub);
        s.connection()
            .handle_bytes(&client_bytes(&[Message::text("x")]));
        s.poll(Instant::now()).unwrap();
        drop(s);
        assert_eq!(
            rec.log().last().unwrap(),
            "close 1006 1 \"\" registered=false"
        );
    }

    #[test]
    fn a_close_from_the_handler_is_sent_and_reported() {
        let hub = Arc::new(Hub::default());
        let (mut s, rec) = recorded(&hub);
        s.connection().handle_bytes(&client_bytes(&[
            Message::text("close"),
            Message::text("late"),
        ]));
        s.poll(Instant::now()).unwrap();
        let back = decode_as_client(&s.connection().take_transmit());
        assert_eq!(
            back,
            [Message::Close(Some(crate::CloseFrame::new(
                CloseCode(4001),
                "asked"
            )))]
        );
        drop(s);
        let log = rec.log();
        assert!(!log.iter().any(|l| l.contains("late")), "{log:?}");
        assert_eq!(
            log.last().unwrap(),
            "close 4001 1 \"asked\" registered=false"
        );
    }

    #[test]
    fn a_protocol_error_is_reported_to_on_close_with_its_code() {
        let hub = Arc::new(Hub::default());
        let (mut s, rec) = recorded(&hub);
        s.connection().handle_bytes(&[0x81, 0x00]); // unmasked
        assert!(s.poll(Instant::now()).is_err());
        drop(s);
        assert_eq!(
            rec.log().last().unwrap(),
            "close 1002 0 \"\" registered=false"
        );
    }

    #[test]
    fn each_connection_has_its_own_state_and_topics_reach_subscribers_only() {
        let hub = Arc::new(Hub::default());
        let (mut a, rec_a) = recorded(&hub);
        let (mut b, _) = recorded(&hub);
        let (mut c, _) = recorded(&hub);
        a.connection()
            .handle_bytes(&client_bytes(&[Message::text("sub:t")]));
        b.connection()
            .handle_bytes(&client_bytes(&[Message::text("sub:t")]));
        a.poll(Instant::now()).unwrap();
        b.poll(Instant::now()).unwrap();
        c.connection().handle_bytes(&client_bytes(&[
            Message::text("x"),
            Message::text("pub:t:hello"),
        ]));
        c.poll(Instant::now()).unwrap();
        for s in [&mut a, &mut b, &mut c] {
            s.poll(Instant::now()).unwrap();
        }
        let got = |s: &mut ServerSession<Arc<Recorder>>| {
            decode_as_client(&s.connection().take_transmit())
        };
        assert_eq!(got(&mut a), [Message::text("hello")]);
        assert_eq!(got(&mut b), [Message::text("hello")]);
        assert!(got(&mut c).is_empty(), "the publisher is not subscribed");
        assert_eq!(
            rec_a.log().last().unwrap(),
            "message 1 sub:t",
            "a's own count"
        );
        assert_eq!(hub.topic_len("t"), 2);
        drop((a, b));
        assert_eq!(hub.stats().topics, 0);
    }

    #[test]
    fn a_handler_that_publishes_is_paused_by_congestion_and_loses_nothing() {
        let limits = FlowControl::default().high_water(1, 1 << 20);
        let hub = Arc::new(Hub::new(limits));
        let (mut reader, _) = recorded(&hub);
        let (mut sender, _) = recorded(&hub);
        reader
            .connection()
            .handle_bytes(&client_bytes(&[Message::text("sub:t")]));
        reader.poll(Instant::now()).unwrap();
        let msgs: Vec<_> = (0..5)
            .map(|i| Message::text(format!("pub:t:{i}")))
            .collect();
        sender.connection().handle_bytes(&client_bytes(&msgs[..2]));
        sender.poll(Instant::now()).unwrap();
        assert!(hub.is_congested());
        sender.connection().handle_bytes(&client_bytes(&msgs[2..]));
        sender.poll(Instant::now()).unwrap();
        assert!(
            sender.is_paused() && !sender.wants_read(),
            "a publisher waits"
        );
        let mut got = Vec::new();
        for _ in 0..20 {
            reader.poll(Instant::now()).unwrap();
            got.extend(decode_as_client(&reader.connection().take_transmit()));
            sender.poll(Instant::now()).unwrap();
        }
        let want: Vec<_> = (0..5).map(|i| Message::text(i.to_string())).collect();
        assert_eq!(got, want, "every message, once, in order");
    }
}
