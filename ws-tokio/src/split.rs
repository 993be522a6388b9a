//! The halves of a split [`WebSocketStream`](crate::WebSocketStream):
//! [`WsReader`] and [`WsWriter`], with no lock on the data path.
//!
//! The halves themselves live in [`ws_core::rt::halves`] (the receive loop,
//! the writer's operations, who writes a control reply and when each half
//! wakes the other). This file is only the tokio calls they (and the whole
//! stream's [`ws_core::rt::driver::StreamDriver`]) run on: one read, one
//! vectored write and a shutdown ([`Io`]), and a `Sleep` for the timer.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use futures_core::{FusedStream, Stream};
use tokio::io::{AsyncRead, AsyncWrite};
use ws_core::rt::halves::{
    ReadTransport, SplitReader, SplitWriter, Timer, WriteTransport, split_halves,
};
use ws_core::{BytesMut, Message, Transmit};

use crate::Result;
use crate::stream::{Deadline, poll_write_all};

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

/// A tokio transport (or one of its halves), as ws-core's stream driver
/// and split halves read from and write to it.
#[derive(Debug)]
pub struct Io<T>(pub(crate) T);

impl<R: AsyncRead + Unpin> ReadTransport for Io<R> {
    fn poll_read_into(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut BytesMut,
    ) -> Poll<io::Result<usize>> {
        tokio_util::io::poll_read_buf(Pin::new(&mut self.0), cx, buf)
    }
}

impl<W: AsyncWrite + Unpin> WriteTransport for Io<W> {
    fn poll_write_queued(
        &mut self,
        queue: &mut impl Transmit,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<()>> {
        poll_write_all(&mut self.0, queue, cx)
    }

    fn poll_shutdown(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

impl Timer for Deadline {
    fn poll_at(&mut self, cx: &mut Context<'_>, at: Instant) -> bool {
        self.poll(cx, at)
    }
}

/// The write half of `S`, as the writer holds it.
pub type WriteHalf<S> = Io<<S as SplitIo>::WriteHalf>;

type Reader<S> = SplitReader<Io<<S as SplitIo>::ReadHalf>, Deadline, WriteHalf<S>>;

/// Splits a stream's parts into the two halves.
pub(crate) fn split<S: SplitIo>(
    conn: ws_core::Connection,
    io: S,
    deadline: Deadline,
) -> (WsReader<S>, WsWriter<S>) {
    let (read, write) = io.split_io();
    let (inner, writer) = split_halves(conn, Io(read), Io(write), deadline);
    (WsReader { inner }, writer)
}

/// The receiving half of a split [`WebSocketStream`](crate::WebSocketStream):
/// ws-core's [`SplitReader`] over the transport's read half.
///
/// It answers pings and closes itself (through the writer's queue, writing
/// them when the writer is not), and drives the close and keepalive timers,
/// so keep polling it even if you only send.
#[derive(Debug)]
pub struct WsReader<S: SplitIo> {
    inner: Reader<S>,
}

impl<S: SplitIo> WsReader<S> {
    /// Receives the next message, as
    /// [`WebSocketStream::recv`](crate::WebSocketStream::recv). Cancel-safe:
    /// every byte read is in the receiver's buffer before a future can be
    /// dropped.
    pub async fn recv(&mut self) -> Option<Result<Message>> {
        self.inner.recv().await
    }

    /// Rejoins the halves into one stream; gives them back if they do not
    /// belong together. Messages a
    /// [`Sink::start_send`](futures_sink::Sink::start_send) could not queue
    /// yet are queued first.
    #[allow(clippy::result_large_err)]
    pub fn reunite(
        self,
        writer: WsWriter<S>,
    ) -> std::result::Result<crate::WebSocketStream<S>, (WsReader<S>, WsWriter<S>)> {
        match self.inner.reunite(writer) {
            Ok((conn, read, write, deadline)) => {
                let io = S::unsplit_io(read.0, write.0);
                Ok(crate::WebSocketStream::from_parts(conn, Io(io), deadline))
            }
            Err((inner, writer)) => Err((WsReader { inner }, writer)),
        }
    }
}

impl<S: SplitIo> Stream for WsReader<S> {
    type Item = Result<Message>;

    /// Cancel-safe, as [`WsReader::recv`].
    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().inner.poll_recv(cx)
    }
}

impl<S: SplitIo> FusedStream for WsReader<S> {
    fn is_terminated(&self) -> bool {
        self.inner.is_terminated()
    }
}

/// The sending half of a split [`WebSocketStream`](crate::WebSocketStream):
/// `send`, `feed`, `flush`, `close` and [`Sink`](futures_sink::Sink), written
/// once in ws-core for every async adapter (see [`SplitWriter`]).
pub type WsWriter<S> = SplitWriter<WriteHalf<S>>;
