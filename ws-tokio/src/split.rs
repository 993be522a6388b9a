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

use tokio::io::{AsyncRead, AsyncWrite};
use ws_core::rt::halves::{ReadTransport, Timer, WriteTransport};
use ws_core::rt::stream::SplitTransport;
use ws_core::{BytesMut, Transmit};

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

/// The receiving half of a split [`WebSocketStream`](crate::WebSocketStream):
/// ws-core's [`WsReader`](ws_core::rt::stream::WsReader) (`recv`, `Stream`,
/// `reunite`) over `S`'s read half. It answers pings and closes itself and
/// drives the close and keepalive timers, so keep polling it even if you
/// only send.
pub type WsReader<S> = ws_core::rt::stream::WsReader<Io<S>, Deadline>;

/// The sending half of a split [`WebSocketStream`](crate::WebSocketStream):
/// `send`, `send_text`, `send_binary`, `feed`, `flush`, `close` and
/// [`Sink`](futures_sink::Sink), written once in ws-core for every async
/// adapter (see [`SplitWriter`](ws_core::rt::halves::SplitWriter)).
pub type WsWriter<S> = ws_core::rt::stream::WsWriter<Io<S>>;

impl<S: SplitIo> SplitTransport for Io<S> {
    type ReadHalf = Io<S::ReadHalf>;
    type WriteHalf = Io<S::WriteHalf>;

    fn split_halves(self) -> (Self::ReadHalf, Self::WriteHalf) {
        let (read, write) = self.0.split_io();
        (Io(read), Io(write))
    }

    fn unsplit(read: Self::ReadHalf, write: Self::WriteHalf) -> Self {
        Io(S::unsplit_io(read.0, write.0))
    }
}
