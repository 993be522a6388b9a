//! [`WebSocketStream`]: ws-core's async stream
//! ([`ws_core::rt::stream::WebSocketStream`], the same on every runtime)
//! over a futures-io transport and an async-io timer. This file holds only
//! the glue it runs on.

use futures_io::{AsyncRead, AsyncWrite};
use ws_core::rt::stream::Transport;

use crate::split::{Alarm, Io};

/// One WebSocket connection over a futures-io transport `S` (an async-std or
/// smol `TcpStream`, or anything `AsyncRead + AsyncWrite + Unpin`): a
/// [`Stream`] of received messages and a [`Sink`] of messages to send, with
/// `recv`, `send`, `feed`, `flush`, `close`, `split` and the rest. All of it
/// is ws-core's [`WebSocketStream`](ws_core::rt::stream::WebSocketStream),
/// documented there (how it drives the connection, cancel safety); this
/// crate supplies the reads, the writes and one [`Alarm`].
///
/// [`Stream`]: futures_core::Stream
/// [`Sink`]: futures_sink::Sink
pub type WebSocketStream<S> = ws_core::rt::stream::WebSocketStream<Io<S>, Alarm>;

impl<S: AsyncRead + AsyncWrite + Unpin> Transport for Io<S> {
    type Io = S;

    fn wrap(io: S) -> Self {
        Io(io)
    }

    fn get_ref(&self) -> &S {
        &self.0
    }

    fn get_mut(&mut self) -> &mut S {
        &mut self.0
    }
}
