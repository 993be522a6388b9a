//! [`MaybeTls`]: a client's transport, plain (`ws://`) or TLS (`wss://`,
//! tokio-rustls), one type so [`connect`](crate::connect) and
//! [`Client`](crate::Client) have one stream type for both schemes; and
//! the TLS connect itself.
//!
//! Runtime glue, kept on purpose next to its twin in
//! `ws-async-std/src/maybe_tls.rs`: what is TLS (the handshake's errors, the
//! client configuration, the session's rules) is ws-core's
//! (`ws_core::rt::tls`) and rustls'. What is left here is implementing
//! tokio's `AsyncRead`/`AsyncWrite` (`ReadBuf`, `poll_shutdown`,
//! `is_write_vectored`) for one enum, which only this crate can do (the
//! orphan rule forbids implementing a runtime's I/O traits on a type of
//! ws-core), and the split of a TLS session behind tokio's lock
//! (`tokio::io::split`).

use std::fmt;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use ws_core::rt::tls::rustls::{ClientConfig, ClientConnection};
use ws_core::rt::tls::{ServerName, TlsError};

use crate::split::SplitIo;

/// A client's transport: `S` itself for `ws://`, or a TLS session over `S`
/// for `wss://` (tokio-rustls). It reads and writes like `S` either way
/// (closing sends TLS close_notify before shutting `S` down), so the
/// [`WebSocketStream`](crate::WebSocketStream) above it is the same.
///
/// It splits ([`SplitIo`]) as `S` does when plain. A TLS session is one
/// state machine that both directions use, so its halves share it behind
/// tokio's lock ([`tokio::io::split`]): each read or write takes the lock
/// for the length of one poll, never across an `.await`. The cost is that
/// lock per read or write and, when the reader and the writer poll at the
/// same moment on two threads, one waits for the other's poll to end.
pub enum MaybeTls<S> {
    /// `ws://`: the transport itself.
    Plain(S),
    /// `wss://`: a TLS session over the transport (boxed: the session
    /// state is large).
    Tls(Box<TlsStream<S>>),
}

impl<S> MaybeTls<S> {
    /// True for a TLS session.
    pub fn is_tls(&self) -> bool {
        matches!(self, MaybeTls::Tls(_))
    }

    /// The transport under TLS (or the plain one).
    pub fn get_ref(&self) -> &S {
        match self {
            MaybeTls::Plain(s) => s,
            MaybeTls::Tls(tls) => tls.get_ref().0,
        }
    }

    /// The transport under TLS, mutably: reading or writing it directly
    /// corrupts a TLS session.
    pub fn get_mut(&mut self) -> &mut S {
        match self {
            MaybeTls::Plain(s) => s,
            MaybeTls::Tls(tls) => tls.get_mut().0,
        }
    }

    /// The TLS session (negotiated version, cipher suite, ALPN protocol,
    /// the server's certificates), if this is one.
    pub fn tls_connection(&self) -> Option<&ClientConnection> {
        match self {
            MaybeTls::Plain(_) => None,
            MaybeTls::Tls(tls) => Some(tls.get_ref().1),
        }
    }
}

impl<S> fmt::Debug for MaybeTls<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MaybeTls::Plain(_) => "MaybeTls::Plain",
            MaybeTls::Tls(_) => "MaybeTls::Tls",
        })
    }
}

/// Forwards one IO call to whichever variant `$self` is.
macro_rules! either {
    ($self:expr, $io:ident => $call:expr) => {
        match $self.get_mut() {
            MaybeTls::Plain($io) => $call,
            MaybeTls::Tls($io) => $call,
        }
    };
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for MaybeTls<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        either!(self, io => Pin::new(io).poll_read(cx, buf))
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for MaybeTls<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        either!(self, io => Pin::new(io).poll_write(cx, buf))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        either!(self, io => Pin::new(io).poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            MaybeTls::Plain(io) => io.is_write_vectored(),
            MaybeTls::Tls(io) => io.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        either!(self, io => Pin::new(io).poll_flush(cx))
    }

    /// Sends TLS close_notify (for a TLS session), then shuts the
    /// transport's write side down.
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        either!(self, io => Pin::new(io).poll_shutdown(cx))
    }
}

/// The read half of a split [`MaybeTls`].
pub enum ReadHalf<S: SplitIo> {
    /// The plain transport's own read half.
    Plain(S::ReadHalf),
    /// The TLS session, shared with the write half behind a lock.
    Tls(tokio::io::ReadHalf<Box<TlsStream<S>>>),
}

/// The write half of a split [`MaybeTls`].
pub enum WriteHalf<S: SplitIo> {
    /// The plain transport's own write half.
    Plain(S::WriteHalf),
    /// The TLS session, shared with the read half behind a lock.
    Tls(tokio::io::WriteHalf<Box<TlsStream<S>>>),
}

impl<S: SplitIo> fmt::Debug for ReadHalf<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ReadHalf::Plain(_) => "ReadHalf::Plain",
            ReadHalf::Tls(_) => "ReadHalf::Tls",
        })
    }
}

impl<S: SplitIo> fmt::Debug for WriteHalf<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            WriteHalf::Plain(_) => "WriteHalf::Plain",
            WriteHalf::Tls(_) => "WriteHalf::Tls",
        })
    }
}

impl<S: SplitIo> AsyncRead for ReadHalf<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ReadHalf::Plain(io) => Pin::new(io).poll_read(cx, buf),
            ReadHalf::Tls(io) => Pin::new(io).poll_read(cx, buf),
        }
    }
}

impl<S: SplitIo> AsyncWrite for WriteHalf<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            WriteHalf::Plain(io) => Pin::new(io).poll_write(cx, buf),
            WriteHalf::Tls(io) => Pin::new(io).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            WriteHalf::Plain(io) => Pin::new(io).poll_write_vectored(cx, bufs),
            WriteHalf::Tls(io) => Pin::new(io).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            WriteHalf::Plain(io) => io.is_write_vectored(),
            WriteHalf::Tls(io) => io.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            WriteHalf::Plain(io) => Pin::new(io).poll_flush(cx),
            WriteHalf::Tls(io) => Pin::new(io).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            WriteHalf::Plain(io) => Pin::new(io).poll_shutdown(cx),
            WriteHalf::Tls(io) => Pin::new(io).poll_shutdown(cx),
        }
    }
}

impl<S: SplitIo> SplitIo for MaybeTls<S> {
    type ReadHalf = ReadHalf<S>;
    type WriteHalf = WriteHalf<S>;

    fn split_io(self) -> (ReadHalf<S>, WriteHalf<S>) {
        match self {
            MaybeTls::Plain(io) => {
                let (read, write) = io.split_io();
                (ReadHalf::Plain(read), WriteHalf::Plain(write))
            }
            MaybeTls::Tls(tls) => {
                let (read, write) = tokio::io::split(tls);
                (ReadHalf::Tls(read), WriteHalf::Tls(write))
            }
        }
    }

    fn unsplit_io(read: ReadHalf<S>, write: WriteHalf<S>) -> Self {
        match (read, write) {
            (ReadHalf::Plain(read), WriteHalf::Plain(write)) => {
                MaybeTls::Plain(S::unsplit_io(read, write))
            }
            (ReadHalf::Tls(read), WriteHalf::Tls(write)) => MaybeTls::Tls(read.unsplit(write)),
            _ => panic!("halves of one stream (checked by WsReader::reunite)"),
        }
    }
}

/// The TLS handshake over `io` for `name` (not bounded here: the caller
/// bounds the whole connect). A rustls failure is a
/// [`TlsError`](ws_core::rt::tls::TlsError) inside `Error::Io`.
pub(crate) async fn tls_handshake<S: AsyncRead + AsyncWrite + Unpin>(
    io: S,
    name: ServerName<'static>,
    config: Arc<ClientConfig>,
) -> crate::Result<MaybeTls<S>> {
    let tls = TlsConnector::from(config)
        .connect(name, io)
        .await
        .map_err(TlsError::from_handshake)?;
    Ok(MaybeTls::Tls(Box::new(tls)))
}
