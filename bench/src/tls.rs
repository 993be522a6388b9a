//! TLS for the wss:// benchmarks: the server configuration every TLS echo
//! server uses (ours and the peers', from the same PEM files, so they
//! negotiate the same suite), the load generator's client configuration
//! (trusting one CA), and a stream that is either plain TCP or TLS.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::rustls::{ClientConfig, ServerConfig};
use ws_core::rt::tls::CertificateDer;

fn read(path: &str) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The server configuration from a PEM chain and key: rustls with the ring
/// provider, TLS 1.3 and 1.2, ALPN http/1.1 (what `ws-server --tls-cert`
/// serves).
pub fn server_config(cert: &str, key: &str) -> Arc<ServerConfig> {
    ws_core::server::tls::server_config_from_pem(&read(cert), &read(key))
        .unwrap_or_else(|e| panic!("TLS configuration from {cert} and {key}: {e}"))
}

/// A client configuration that trusts exactly the CA certificates in the
/// PEM file `ca`.
pub fn client_config(ca: &str) -> Arc<ClientConfig> {
    use ws_core::rt::tls::rustls::pki_types::pem::PemObject;
    let mut roots = tokio_rustls::rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&read(ca)) {
        roots
            .add(cert.unwrap_or_else(|e| panic!("{ca}: {e}")))
            .unwrap_or_else(|e| panic!("{ca}: {e}"));
    }
    ws_core::rt::tls::client_config(roots)
}

/// A client connection: plain TCP or TLS over it.
pub enum Stream {
    /// ws://
    Plain(TcpStream),
    /// wss://
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl Stream {
    /// The TCP socket underneath.
    pub fn tcp(&self) -> &TcpStream {
        match self {
            Stream::Plain(s) => s,
            Stream::Tls(s) => s.get_ref().0,
        }
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}
