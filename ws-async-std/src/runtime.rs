//! The only runtime-specific code: which executor runs the server's tasks
//! and which `TcpStream` a client connects with. Everything else (I/O via
//! futures-io, timers via async-io) is shared by both runtimes.

use futures_io::{AsyncRead, AsyncWrite};
use std::future::Future;
use std::io;

mod sealed {
    pub trait Sealed {}
}

/// An executor this crate can run on. Sealed: implemented for async-std and
/// smol only, so the surface can grow without breaking anyone.
pub trait Runtime: sealed::Sealed + Send + Sync + 'static {
    /// The runtime's name, for the server's log spans.
    const NAME: &'static str;

    /// The runtime's own TCP stream, returned by `connect`.
    type TcpStream: AsyncRead + AsyncWrite + Unpin + Send + 'static;

    /// Runs `fut` in the background, detached (the server's accept loop and
    /// connection tasks).
    fn spawn<F: Future<Output = ()> + Send + 'static>(fut: F);

    /// Opens a TCP connection to `host:port` (resolving the name) with
    /// Nagle's algorithm off: this crate batches writes itself.
    fn connect_tcp(
        host: &str,
        port: u16,
    ) -> impl Future<Output = io::Result<Self::TcpStream>> + Send;
}

/// Marker for async-std.
#[cfg(feature = "async-std")]
#[derive(Debug, Clone, Copy)]
pub struct AsyncStd;

#[cfg(feature = "async-std")]
impl sealed::Sealed for AsyncStd {}

#[cfg(feature = "async-std")]
impl Runtime for AsyncStd {
    const NAME: &'static str = "async-std";
    type TcpStream = async_std::net::TcpStream;

    fn spawn<F: Future<Output = ()> + Send + 'static>(fut: F) {
        // Dropping an async-std JoinHandle detaches the task.
        drop(async_std::task::spawn(fut));
    }

    async fn connect_tcp(host: &str, port: u16) -> io::Result<Self::TcpStream> {
        let tcp = async_std::net::TcpStream::connect((host, port)).await?;
        tcp.set_nodelay(true)?;
        Ok(tcp)
    }
}

/// Marker for smol.
#[cfg(feature = "smol")]
#[derive(Debug, Clone, Copy)]
pub struct Smol;

#[cfg(feature = "smol")]
impl sealed::Sealed for Smol {}

#[cfg(feature = "smol")]
impl Runtime for Smol {
    const NAME: &'static str = "smol";
    type TcpStream = smol::net::TcpStream;

    fn spawn<F: Future<Output = ()> + Send + 'static>(fut: F) {
        // A smol Task cancels on drop; detach it to let it run to the end.
        smol::spawn(fut).detach();
    }

    async fn connect_tcp(host: &str, port: u16) -> io::Result<Self::TcpStream> {
        let tcp = smol::net::TcpStream::connect((host, port)).await?;
        tcp.set_nodelay(true)?;
        Ok(tcp)
    }
}
