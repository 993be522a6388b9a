//! The per-client logic of the `Server` surface, sans-IO, so that the tokio,
//! async-std/smol and blocking servers share it instead of writing it three
//! times: echo or broadcast each message, take broadcasts from a bounded
//! outbox only while the client keeps up, stop reading from a client that
//! does not read its echoes, and close a client the hub dropped.

use crate::close::CloseCode;
use crate::connection::{Connection, PreparedMessage, State};
use crate::error::Error;
use crate::message::Message;
use crate::site::ServerMode;

/// One server-side client connection and what the server does with it.
#[derive(Debug)]
pub struct ServerSession {
    conn: Connection,
    mode: ServerMode,
    outbox_open: bool,
}

impl ServerSession {
    /// Wraps a server-role connection that completed its handshake.
    pub fn new(conn: Connection, mode: ServerMode) -> Self {
        ServerSession {
            conn,
            mode,
            outbox_open: true,
        }
    }

    /// The connection (for reading into, writing from, and timers).
    pub fn connection(&mut self) -> &mut Connection {
        &mut self.conn
    }

    /// Decodes every complete message received so far. In echo mode each
    /// text or binary message is queued back to this client; in chat mode it
    /// is handed to `broadcast`, encoded once for all clients.
    ///
    /// An error (a protocol violation, the peer vanishing) is returned for
    /// logging; the connection has already queued its close frame, and the
    /// caller keeps driving I/O until [`is_finished`](Self::is_finished).
    pub fn process(&mut self, mut broadcast: impl FnMut(&PreparedMessage)) -> Result<(), Error> {
        while let Some(msg) = self.conn.poll_message()? {
            if !msg.is_data() {
                continue; // pings are answered by the connection; close is handled there too
            }
            match self.mode {
                ServerMode::Echo => {
                    // Fails only once the connection is closing: nothing to echo to then.
                    let _ = self.conn.send(&msg);
                }
                ServerMode::Chat => broadcast(&PreparedMessage::new(&msg)?),
            }
        }
        Ok(())
    }

    /// Whether to read more from the client: not while the bytes queued for
    /// it exceed the write buffer limit (a client that sends but never reads
    /// its echoes is throttled by TCP instead of growing our memory).
    pub fn wants_read(&self) -> bool {
        self.conn.buffered_transmit() < self.conn.config().get_write_buffer_limit()
    }

    /// Whether to take the next broadcast from the outbox now. While this is
    /// false the outbox fills, and the hub drops the client once it is full.
    pub fn wants_outbox(&self) -> bool {
        self.outbox_open && self.conn.state() == State::Open && self.wants_read()
    }

    /// Queues a broadcast frame taken from the outbox.
    pub fn push_outbox(&mut self, msg: &PreparedMessage) {
        // Fails only once the connection is closing; the broadcast is moot then.
        let _ = self.conn.send_prepared(msg);
    }

    /// The outbox was closed: the hub dropped this client for being too slow
    /// ([`crate::hub::SLOW_CLIENT_CLOSE`]) or the server is shutting down
    /// ([`CloseCode::GOING_AWAY`]). Starts the closing handshake with `code`.
    pub fn outbox_closed(&mut self, code: CloseCode) {
        self.outbox_open = false;
        let _ = self.conn.close(code, "");
    }

    /// Whether the connection is over and the transport should be closed.
    pub fn is_finished(&self) -> bool {
        self.conn.should_close_transport()
    }

    /// Consumes the session, returning the connection.
    pub fn into_connection(self) -> Connection {
        self.conn
    }
}

/// Formats a received message as one line for an interactive client:
/// text as is, other kinds as a short bracketed description.
pub fn display_line(msg: &Message) -> Option<String> {
    match msg {
        Message::Text(t) => Some(t.to_string()),
        Message::Binary(b) => Some(format!("[binary message, {} bytes]", b.len())),
        Message::Close(Some(f)) => Some(format!("[closed by peer: {} {}]", f.code, f.reason)),
        Message::Close(None) => Some("[closed by peer]".to_string()),
        Message::Ping(_) | Message::Pong(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Config, Role};

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

    #[test]
    fn echo_mode_sends_each_data_message_back() {
        let mut s = ServerSession::new(
            Connection::new(Role::Server, Config::default()),
            ServerMode::Echo,
        );
        let msgs = [
            Message::text("a"),
            Message::Ping("p".into()),
            Message::binary(vec![1, 2]),
        ];
        s.connection().handle_bytes(&client_bytes(&msgs));
        s.process(|_| panic!("echo mode never broadcasts")).unwrap();
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
    fn chat_mode_hands_data_messages_to_broadcast() {
        let mut s = ServerSession::new(
            Connection::new(Role::Server, Config::default()),
            ServerMode::Chat,
        );
        s.connection().handle_bytes(&client_bytes(&[
            Message::text("hi"),
            Message::Pong("x".into()),
        ]));
        let mut out = Vec::new();
        s.process(|m| out.push(m.clone())).unwrap();
        assert_eq!(
            out,
            vec![PreparedMessage::new(&Message::text("hi")).unwrap()]
        );
        assert!(s.connection().pending_transmit().is_empty());
    }

    #[test]
    fn a_client_that_does_not_read_is_not_read_from_or_fed_broadcasts() {
        let cfg = Config::default().write_buffer_limit(100);
        let mut s = ServerSession::new(Connection::new(Role::Server, cfg), ServerMode::Echo);
        assert!(s.wants_read() && s.wants_outbox());
        s.connection()
            .handle_bytes(&client_bytes(&[Message::binary(vec![0; 200])]));
        s.process(|_| {}).unwrap();
        assert!(!s.wants_read());
        assert!(!s.wants_outbox());
        let n = s.connection().pending_transmit().len();
        s.connection().advance_transmit(n);
        assert!(s.wants_read() && s.wants_outbox());
    }

    #[test]
    fn closed_outbox_closes_the_client_with_the_given_code() {
        let mut s = ServerSession::new(
            Connection::new(Role::Server, Config::default()),
            ServerMode::Chat,
        );
        s.outbox_closed(crate::hub::SLOW_CLIENT_CLOSE);
        assert!(!s.wants_outbox());
        let back = decode_as_client(&s.connection().take_transmit());
        assert_eq!(
            back,
            vec![Message::Close(Some(crate::CloseFrame::new(
                CloseCode(1013),
                ""
            )))]
        );
    }

    #[test]
    fn protocol_error_is_reported_and_session_finishes_after_flush() {
        let mut s = ServerSession::new(
            Connection::new(Role::Server, Config::default()),
            ServerMode::Echo,
        );
        s.connection().handle_bytes(&[0x81, 0x00]); // unmasked
        assert!(s.process(|_| {}).unwrap_err().is_protocol());
        assert!(!s.is_finished(), "close frame not yet written");
        s.connection().take_transmit();
        assert!(s.is_finished());
    }
}
