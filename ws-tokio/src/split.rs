//! The halves of a split [`WebSocketStream`](crate::WebSocketStream):
//! [`WsReader`] and [`WsWriter`], with no lock on the data path.
//!
//! The reader owns the transport's read half and a [`ws_core::Receiver`];
//! the writer's side (a [`ws_core::Sender`] and the write half) is shared
//! through [`ws_core::halves`], which decides who writes what and when each
//! half wakes the other. This file is only the tokio calls: the read loop,
//! the timer, and the write half's `poll_write`/`poll_shutdown`.

use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Instant;

use futures_core::{FusedStream, Stream};
use tokio::io::{AsyncRead, AsyncWrite};
use ws_core::halves::{ReplyWriter, SplitWriter, WriteTransport, write_halves};
use ws_core::{Message, Receiver, Sender};

use crate::stream::{Deadline, poll_write_all};
use crate::{Error, Result};

/// A transport that splits into a read half and a write half usable from
/// different tasks, as [`WebSocketStream::split`](crate::WebSocketStream::split)
/// needs.
///
/// Implemented without any lock for [`tokio::net::TcpStream`] and
/// [`tokio::net::UnixStream`] (their owned halves). For another transport
/// (a TLS stream, say), implement it with [`tokio::io::split`], which puts
/// the transport behind tokio's own lock, as the impl for
/// [`tokio::io::DuplexStream`] here does.
pub trait SplitIo: AsyncRead + AsyncWrite + Unpin + Sized {
    /// The read half.
    type ReadHalf: AsyncRead + Unpin;
    /// The write half.
    type WriteHalf: AsyncWrite + Unpin;
    /// Splits the transport.
    fn split_io(self) -> (Self::ReadHalf, Self::WriteHalf);
    /// Joins halves that [`split_io`](Self::split_io) made from one
    /// transport.
    fn unsplit_io(read: Self::ReadHalf, write: Self::WriteHalf) -> Self;
}

impl SplitIo for tokio::net::TcpStream {
    type ReadHalf = tokio::net::tcp::OwnedReadHalf;
    type WriteHalf = tokio::net::tcp::OwnedWriteHalf;
    fn split_io(self) -> (Self::ReadHalf, Self::WriteHalf) {
        self.into_split()
    }
    fn unsplit_io(read: Self::ReadHalf, write: Self::WriteHalf) -> Self {
        read.reunite(write)
            .expect("halves of one stream (checked by WsReader::reunite)")
    }
}

#[cfg(unix)]
impl SplitIo for tokio::net::UnixStream {
    type ReadHalf = tokio::net::unix::OwnedReadHalf;
    type WriteHalf = tokio::net::unix::OwnedWriteHalf;
    fn split_io(self) -> (Self::ReadHalf, Self::WriteHalf) {
        self.into_split()
    }
    fn unsplit_io(read: Self::ReadHalf, write: Self::WriteHalf) -> Self {
        read.reunite(write)
            .expect("halves of one stream (checked by WsReader::reunite)")
    }
}

impl SplitIo for tokio::io::DuplexStream {
    type ReadHalf = tokio::io::ReadHalf<Self>;
    type WriteHalf = tokio::io::WriteHalf<Self>;
    fn split_io(self) -> (Self::ReadHalf, Self::WriteHalf) {
        tokio::io::split(self)
    }
    fn unsplit_io(read: Self::ReadHalf, write: Self::WriteHalf) -> Self {
        read.unsplit(write)
    }
}

/// The transport's write half, as ws-core's halves write through it.
#[derive(Debug)]
pub struct WriteIo<W>(W);

impl<W: AsyncWrite + Unpin> WriteTransport for WriteIo<W> {
    fn poll_write_queued(&mut self, tx: &mut Sender, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        poll_write_all(&mut self.0, tx, cx)
    }

    fn poll_shutdown(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

/// The write half of `S`, as the writer holds it.
pub type Write<S> = WriteIo<<S as SplitIo>::WriteHalf>;

/// Splits a stream's parts into the two halves.
pub(crate) fn split<S: SplitIo>(
    conn: ws_core::Connection,
    io: S,
    deadline: Deadline,
) -> (WsReader<S>, WsWriter<S>) {
    let (rx, tx) = conn.split();
    let (read_io, write_io) = io.split_io();
    let (replies, writer) = write_halves(tx, WriteIo(write_io));
    (
        WsReader {
            rx,
            io: read_io,
            deadline,
            read_eof: false,
            ended: false,
            replies,
        },
        writer,
    )
}

/// The receiving half of a split [`WebSocketStream`](crate::WebSocketStream).
///
/// It answers pings and closes itself (through the writer's queue, writing
/// them when the writer is not), and drives the close and keepalive timers,
/// so keep polling it even if you only send.
#[derive(Debug)]
pub struct WsReader<S: SplitIo> {
    rx: Receiver,
    io: S::ReadHalf,
    deadline: Deadline,
    read_eof: bool,
    ended: bool,
    replies: ReplyWriter<Write<S>>,
}

impl<S: SplitIo> WsReader<S> {
    /// Receives the next message, as
    /// [`WebSocketStream::recv`](crate::WebSocketStream::recv). Cancel-safe:
    /// every byte read is in the receiver's buffer before a future can be
    /// dropped.
    pub async fn recv(&mut self) -> Option<Result<Message>> {
        poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// Rejoins the halves into one stream; gives them back if they do not
    /// belong together. Messages a [`Sink::start_send`](futures_sink::Sink::start_send) could not queue yet
    /// are queued first.
    #[allow(clippy::result_large_err)]
    pub fn reunite(
        self,
        writer: WsWriter<S>,
    ) -> std::result::Result<crate::WebSocketStream<S>, (WsReader<S>, WsWriter<S>)> {
        if !self.replies.belongs_with(&writer) {
            return Err((self, writer));
        }
        let WsReader {
            rx,
            io,
            deadline,
            replies,
            ..
        } = self;
        let (tx, write_io) = replies
            .reunite(writer)
            .unwrap_or_else(|_| unreachable!("checked above"));
        let conn = rx
            .reunite(tx)
            .unwrap_or_else(|_| unreachable!("the halves share their link"));
        let io = S::unsplit_io(io, write_io.0);
        Ok(crate::WebSocketStream::from_parts(conn, io, deadline))
    }

    /// One receive step: decode, fire timers, write owed control replies,
    /// read.
    fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Message>>> {
        loop {
            if self.ended {
                return Poll::Ready(None);
            }
            match self.rx.poll_message() {
                Ok(Some(msg)) => {
                    self.replies.write_replies(&self.rx, cx);
                    return Poll::Ready(Some(Ok(msg)));
                }
                Ok(None) => {}
                Err(e) => {
                    self.replies.write_replies(&self.rx, cx);
                    self.replies.wake_writer();
                    return Poll::Ready(Some(Err(e)));
                }
            }
            self.replies.register(cx);
            if self.poll_timer(cx) {
                continue;
            }
            self.replies.write_replies(&self.rx, cx);
            if self.rx.should_close_transport() {
                self.ended = true;
                self.replies.wake_writer();
                return Poll::Ready(None);
            }
            if self.read_eof {
                // Waiting for the close frame to be written, or a timer.
                return Poll::Pending;
            }
            match ready!(tokio_util::io::poll_read_buf(
                Pin::new(&mut self.io),
                cx,
                self.rx.read_buf()
            )) {
                Ok(0) => {
                    self.read_eof = true;
                    self.rx.handle_eof();
                    self.replies.wake_writer();
                }
                Ok(_) => {}
                Err(e) => {
                    self.rx.handle_eof();
                    self.ended = true;
                    self.replies.wake_writer();
                    return Poll::Ready(Some(Err(Error::Io(e))));
                }
            }
        }
    }

    /// Fires the receiver's timers; true if one fired.
    fn poll_timer(&mut self, cx: &mut Context<'_>) -> bool {
        let now = Instant::now();
        let Some(at) = self.rx.poll_timeout(now) else {
            return false;
        };
        if at > now && !self.deadline.poll(cx, at) {
            return false;
        }
        // Never report a time before the deadline (the sleep rounds).
        self.rx.handle_timeout(Instant::now().max(at));
        true
    }
}

impl<S: SplitIo> Stream for WsReader<S> {
    type Item = Result<Message>;

    /// Cancel-safe, as [`WsReader::recv`].
    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().poll_recv(cx)
    }
}

impl<S: SplitIo> FusedStream for WsReader<S> {
    fn is_terminated(&self) -> bool {
        self.ended
    }
}

/// The sending half of a split [`WebSocketStream`](crate::WebSocketStream):
/// `send`, `feed`, `flush`, `close` and [`Sink`](futures_sink::Sink), written once in ws-core
/// for every async adapter (see [`SplitWriter`]).
pub type WsWriter<S> = SplitWriter<Write<S>>;
