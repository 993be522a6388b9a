//! wss:// for the server, written once and sans-IO: [`TlsConnection`] is
//! [`ServerConnection`] under TLS, executed by every adapter's loop exactly
//! as the plain machine is (both implement [`Served`]).
//!
//! Behind the `tls` cargo feature (with `server`); the adapters turn it on
//! through their own `tls` feature, on by default.
//!
//! # Design
//!
//! rustls is itself sans-IO: a [`rustls::ServerConnection`] takes TLS bytes
//! (`read_tls`, `process_new_packets`), hands out plaintext (`reader()`),
//! takes plaintext (`writer()`) and hands out TLS records (`write_tls`),
//! with `wants_read`/`wants_write` saying what it needs. So the layer needs
//! no runtime and no socket, and the adapters need no TLS code of their own
//! (no tokio-rustls, futures-rustls or `StreamOwned` on the server side): the
//! wrapper presents the executor API of [`Served`] while carrying records.
//!
//! ```text
//!  socket ──read──► read_buf (TLS bytes) ──read_tls/process_new_packets──► rustls
//!                                                                   │ reader()
//!                         ServerConnection::read_buf ◄── plaintext ─┘
//!                         ServerConnection (head, routing, session)
//!                         ServerConnection's Transmit ── plaintext ─┐
//!                                                                   ▼ writer()
//!  socket ◄──write── Transmit / take_for_write (TLS records) ◄──write_tls── rustls
//! ```
//!
//! - **The TLS handshake** runs while the inner connection waits for its
//!   request head, which cannot arrive before the handshake completes: the
//!   inner connection's handshake deadline
//!   ([`Config::handshake_timeout`](crate::Config::handshake_timeout))
//!   bounds both, so a client that stalls mid-handshake is let go at the
//!   same deadline as one that stalls mid-head (silently: there is nothing
//!   to say to it).
//! - **A TLS error** (garbage instead of a ClientHello, a bad record, a
//!   failed decryption) ends that connection only: the alert rustls queued
//!   is written (bounded by the close timeout), an open session sees the
//!   end of its stream (its handler's `on_close` gets 1006), and
//!   [`poll`](TlsConnection::poll) returns the error once, as
//!   [`Error::Io`] of kind `InvalidData` carrying the `rustls::Error`. No
//!   panic, no effect on other connections.
//! - **close_notify** is sent when the inner connection finishes (the
//!   closing handshake is done) or shuts its write side (after a plain HTTP
//!   response, before the linger), behind everything it wrote; the
//!   connection is finished once it is on the wire (bounded by the close
//!   timeout).
//! - **The peer's end.** A close_notify from the peer is the end of the
//!   stream for the inner connection (after the plaintext before it). A TCP
//!   end without one is passed on too (the connection ends as it would in
//!   plaintext) and `poll` returns [`Error::Io`] of kind `UnexpectedEof`
//!   once, unless the inner connection already reported its own error (for
//!   a session without a closing handshake: [`Error::AbnormalClosure`]).
//! - **Back-pressure** is the inner connection's: its output is moved into
//!   rustls and then into one buffer of records only while fewer than
//!   `OUT_LIMIT` (64 KiB) of records wait for the socket; beyond that its
//!   own write buffer fills and the session stops taking broadcasts and
//!   reading, exactly as in plaintext. On the way in, TLS bytes are only fed
//!   to rustls while the inner connection takes the plaintext; otherwise
//!   they wait (and reading stops), so TCP pushes back on the client.
//!
//! Costs: one copy of the incoming bytes into rustls' buffer and one of the
//! plaintext into the connection's, one copy of the records out of rustls
//! (rustls' buffered API owns its record buffers; its unbuffered API could
//! save that copy, at the price of a second state machine here). The
//! records leave in one contiguous buffer, so the socket sees one write.
//!
//! # The crypto provider
//!
//! Every [`ServerConfig`] made here is built with
//! [`ServerConfig::builder_with_provider`] and [`provider`] (rustls' `ring`
//! provider), never with the process-level default, so no user meets
//! rustls' "no process-level CryptoProvider" panic whatever other crates
//! enable. Why ring rather than aws-lc-rs: ring builds with the plain C
//! compiler every Rust toolchain already needs (aws-lc-sys wants cmake, and
//! NASM on Windows, or a prebuilt binding), it is small, and its
//! performance for the TLS 1.2/1.3 suites used here is on par. An
//! application that prefers aws-lc-rs builds its own `ServerConfig` with
//! that provider and passes it to the server's `.tls(...)`: the layer works
//! with any provider.
//!
//! # Certificates
//!
//! [`server_config_from_pem`] loads a certificate chain and a private key
//! from PEM with rustls-pki-types' own PEM parser (not the unmaintained
//! rustls-pemfile). The configuration is the caller's otherwise: client
//! certificates, ALPN, session resumption, key logging are set on the
//! `ServerConfig` before it is handed to the server.

use std::io::{self, BufRead, IoSlice, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};
pub use rustls;
use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::connection::Transmit;
use crate::error::Error;
use crate::server::conn::{Served, ServerConnection};
use crate::server::handler::Handler;
use crate::server::session::ServerSession;

/// Records waiting for the socket beyond which the inner connection's
/// output is left in its own buffer (where it pushes back on the session).
const OUT_LIMIT: usize = 64 * 1024;
/// Spare room offered to a socket read: a full TLS record (16 KiB of
/// plaintext plus header and expansion) fits twice.
const READ_SIZE: usize = 34 * 1024;
/// Below this much spare room the read buffer grows before a read.
const MIN_SPARE: usize = 4 * 1024;
/// The most `TlsConnection::reserve_plaintext` reserves in the inner
/// connection's read buffer at once for the plaintext to come.
const MAX_PLAINTEXT_RESERVE: usize = 64 * 1024;
/// Slices of the inner connection's output handed to rustls at once.
const SLICES: usize = 16;
/// How long a TLS connection stays quiet before its empty buffers go.
/// Unlike plaintext, where the kernel writes straight into the receive
/// buffer, every message over TLS is copied into it: releasing it at each
/// pause of a busy connection (after every drained read) meant writing each
/// message into freshly allocated, cold memory, 20% of the server's CPU in
/// the wss echo benchmark (bench/tls.sh). A quiet second costs an idle
/// connection nothing, and one timer wake.
const IDLE_RELEASE: Duration = Duration::from_secs(1);

/// rustls' `ring` crypto provider (see the [module docs](self) for why),
/// for building configurations with
/// [`ServerConfig::builder_with_provider`] (or the client's equivalent), so
/// that nothing depends on a process-level default provider.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Why [`server_config_from_pem`] failed.
#[derive(Debug, thiserror::Error)]
pub enum TlsConfigError {
    /// The certificate chain's PEM has no certificate.
    #[error("no certificate found in the certificate PEM")]
    NoCertificate,
    /// The certificate chain's PEM could not be parsed.
    #[error("bad certificate PEM: {0}")]
    Certificate(rustls::pki_types::pem::Error),
    /// The key's PEM holds no usable private key (PKCS#8, PKCS#1 or SEC1),
    /// or could not be parsed.
    #[error("bad private key PEM: {0}")]
    Key(rustls::pki_types::pem::Error),
    /// rustls refused the pair (e.g. the key does not match the
    /// certificate, or is of an unsupported type).
    #[error("TLS configuration refused: {0}")]
    Rustls(#[from] rustls::Error),
}

/// A server configuration for a certificate chain (leaf first, then the
/// intermediates) and its private key, both PEM: rustls' safe default
/// protocol versions (TLS 1.3 and 1.2) with the [`provider`], no client
/// authentication, ALPN `http/1.1` (what a WebSocket upgrade is).
///
/// # Errors
///
/// [`TlsConfigError`]: no certificate, unparsable PEM, no private key, or a
/// key rustls refuses for that certificate.
pub fn server_config_from_pem(
    cert_chain_pem: &[u8],
    key_pem: &[u8],
) -> Result<Arc<ServerConfig>, TlsConfigError> {
    let chain = CertificateDer::pem_slice_iter(cert_chain_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(TlsConfigError::Certificate)?;
    if chain.is_empty() {
        return Err(TlsConfigError::NoCertificate);
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(TlsConfigError::Key)?;
    Ok(server_config(chain, key)?)
}

/// A server configuration for a certificate chain and its private key
/// (DER), as [`server_config_from_pem`] makes it.
///
/// # Errors
///
/// rustls' error if it refuses the key for that certificate.
pub fn server_config(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<Arc<ServerConfig>, rustls::Error> {
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// One server connection under TLS: [`ServerConnection`] with a
/// [`rustls::ServerConnection`] between it and the socket (see the
/// [module docs](self)). Executed like the plain machine, through
/// [`Served`]: socket bytes into [`read_buf`](Served::read_buf), TLS
/// records out of [`Transmit`] or [`take_for_write`](Served::take_for_write).
pub struct TlsConnection<H: Handler> {
    inner: ServerConnection<H>,
    tls: rustls::ServerConnection,
    /// Socket bytes not yet taken by rustls (it takes them only while its
    /// plaintext is taken by the inner connection).
    raw: BytesMut,
    /// TLS records out of rustls, not yet handed to the socket.
    out: BytesMut,
    /// Records handed out by `take_for_write` and not yet written.
    in_flight: usize,
    /// The socket's read side ended (`handle_eof`).
    raw_eof: bool,
    /// The peer's close_notify arrived.
    peer_closed: bool,
    /// Plaintext waits in rustls for the inner connection to take it.
    plaintext_left: bool,
    /// How much plaintext rustls holds (as of the last
    /// `process_new_packets`, less what was delivered since).
    plaintext_pending: usize,
    /// The end of the TLS stream was passed to the inner connection.
    eof_forwarded: bool,
    /// The TLS error that ended the connection.
    failed: Option<rustls::Error>,
    /// An error for the next `poll` to return.
    report: Option<Error>,
    close_notify_sent: bool,
    /// When the last records (an alert, close_notify) must be out.
    finish_by: Option<Instant>,
    close_timeout: Duration,
    now: Option<Instant>,
    /// When the empty buffers are released if no bytes move before then
    /// (see [`IDLE_RELEASE`]).
    release_at: Option<Instant>,
}

impl<H: Handler> std::fmt::Debug for TlsConnection<H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsConnection")
            .field("inner", &self.inner)
            .field("handshaking", &self.tls.is_handshaking())
            .field("failed", &self.failed)
            .field("peer_closed", &self.peer_closed)
            .field("close_notify_sent", &self.close_notify_sent)
            .finish_non_exhaustive()
    }
}

/// A `Write` that appends everything (all slices of a vectored write) to a
/// buffer, so one `write_tls` moves every record rustls holds.
struct Append<'a>(&'a mut BytesMut);

impl Write for Append<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        let n = bufs.iter().map(|b| b.len()).sum();
        self.0.reserve(n);
        for b in bufs {
            self.0.extend_from_slice(b);
        }
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<H: Handler> TlsConnection<H> {
    /// `inner` (just accepted, nothing read yet) under TLS with `config`.
    /// Its handshake deadline bounds the TLS handshake too; its close
    /// timeout bounds the writing of the last records.
    ///
    /// # Errors
    ///
    /// rustls' error if it cannot start a connection with `config` (e.g. no
    /// protocol version its provider supports).
    pub fn new(
        config: Arc<ServerConfig>,
        inner: ServerConnection<H>,
    ) -> Result<Self, rustls::Error> {
        let close_timeout = inner.config().get_close_timeout();
        Ok(TlsConnection {
            inner,
            tls: rustls::ServerConnection::new(config)?,
            raw: BytesMut::new(),
            out: BytesMut::new(),
            in_flight: 0,
            raw_eof: false,
            peer_closed: false,
            plaintext_left: false,
            plaintext_pending: 0,
            eof_forwarded: false,
            failed: None,
            report: None,
            close_notify_sent: false,
            finish_by: None,
            close_timeout,
            now: None,
            release_at: None,
        })
    }

    /// The connection under TLS.
    pub fn inner(&self) -> &ServerConnection<H> {
        &self.inner
    }

    /// The connection under TLS, mutably.
    pub fn inner_mut(&mut self) -> &mut ServerConnection<H> {
        &mut self.inner
    }

    /// rustls' connection: the negotiated version, cipher suite, ALPN
    /// protocol, SNI name, the client's certificates.
    pub fn tls(&self) -> &rustls::ServerConnection {
        &self.tls
    }

    /// The TLS error that ended the connection, if one did.
    pub fn tls_error(&self) -> Option<&rustls::Error> {
        self.failed.as_ref()
    }

    /// Whether the peer closed its side with a close_notify.
    pub fn peer_sent_close_notify(&self) -> bool {
        self.peer_closed
    }

    /// Whether we sent our close_notify.
    pub fn close_notify_sent(&self) -> bool {
        self.close_notify_sent
    }

    /// Whether the TLS layer or the inner connection is over (what is left
    /// is writing the last records).
    fn ending(&self) -> bool {
        self.failed.is_some() || self.inner.is_finished()
    }

    /// Nothing is waiting for the socket, here or in rustls.
    fn flushed(&self) -> bool {
        self.out.is_empty() && self.in_flight == 0 && !self.tls.wants_write()
    }

    fn fail(&mut self, e: rustls::Error) {
        crate::trace::info!(error = %e, "TLS error");
        self.report.get_or_insert_with(|| {
            Error::Io(io::Error::new(io::ErrorKind::InvalidData, e.clone()))
        });
        self.failed = Some(e);
        self.raw.clear();
        self.plaintext_left = false;
    }

    /// Hands the plaintext rustls holds to the inner connection while it
    /// takes it; returns whether any was handed over.
    fn deliver(&mut self) -> bool {
        let mut any = false;
        loop {
            let mut reader = self.tls.reader();
            let chunk = match reader.fill_buf() {
                Ok(chunk) if !chunk.is_empty() => chunk,
                // Nothing (yet), or the clean end after the close_notify.
                _ => {
                    self.plaintext_left = false;
                    return any;
                }
            };
            if !self.inner.wants_read() {
                self.plaintext_left = true;
                return any;
            }
            let n = chunk.len();
            self.inner.read_buf().extend_from_slice(chunk);
            reader.consume(n);
            self.plaintext_pending = self.plaintext_pending.saturating_sub(n);
            any = true;
        }
    }

    /// Makes room in the inner connection's read buffer, once per batch,
    /// for the plaintext that can come out of the bytes read (no more than
    /// the TLS bytes, plus what rustls holds already). Records are handed
    /// over one by one and the buffer fills with the whole batch before the
    /// inner connection decodes it; growing it record by record moved what
    /// it already held at each step. Reserving before the batch, while the
    /// buffer is (nearly) empty, moves almost nothing. (Measured with
    /// callgrind on the wss echo benchmark: 2.4% fewer instructions per
    /// message; the inner connection's read-size policy still grows the
    /// buffer near the end of some batches.)
    fn reserve_plaintext(&mut self) {
        let coming = self.raw.len() + self.plaintext_pending;
        if coming == 0 || self.failed.is_some() || !self.inner.wants_read() {
            return;
        }
        let want = coming.min(MAX_PLAINTEXT_RESERVE);
        let buf = self.inner.read_buf();
        if buf.capacity() - buf.len() < want {
            buf.reserve(want);
        }
    }

    /// Feeds the socket bytes to rustls and its plaintext to the inner
    /// connection, as far as the inner connection takes it; returns whether
    /// plaintext was handed over.
    fn pump_in(&mut self) -> bool {
        let mut delivered = false;
        self.reserve_plaintext();
        loop {
            delivered |= self.deliver();
            if self.failed.is_some() || self.peer_closed || self.raw.is_empty() {
                break;
            }
            let mut rd: &[u8] = &self.raw;
            let offered = rd.len();
            if let Err(e) = self.tls.read_tls(&mut rd) {
                // rustls' plaintext buffer is full (the inner connection
                // does not take it now): the bytes wait. Anything else
                // would leave them stuck: end the connection instead.
                if !self.plaintext_left {
                    self.fail(rustls::Error::General(e.to_string()));
                }
                break;
            }
            let used = offered - rd.len();
            self.raw.advance(used);
            match self.tls.process_new_packets() {
                Ok(state) => {
                    self.peer_closed = state.peer_has_closed();
                    self.plaintext_pending = state.plaintext_bytes_to_read();
                }
                Err(e) => self.fail(e),
            }
            if used == 0 && self.failed.is_none() && !self.peer_closed {
                break;
            }
        }
        if self.peer_closed {
            // Nothing after the close_notify counts.
            self.raw.clear();
        }
        delivered
    }

    /// Frees the empty buffers, this layer's and the inner connection's.
    fn release_now(&mut self) {
        self.release_at = None;
        self.inner.release_idle_buffers();
        if self.raw.is_empty() {
            self.raw = BytesMut::new();
        }
        if self.out.is_empty() {
            self.out = BytesMut::new();
        }
    }

    /// Moves every record rustls holds into `out`.
    fn drain_tls(&mut self) {
        while self.tls.wants_write() {
            match self.tls.write_tls(&mut Append(&mut self.out)) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    }

    /// Moves the inner connection's output through rustls into `out` while
    /// fewer than [`OUT_LIMIT`] bytes of records wait, then queues the
    /// close_notify if the inner connection is done writing.
    fn pump_out(&mut self) {
        if self.failed.is_some() {
            // Nothing more is encrypted: what the inner connection still
            // queues (a close frame) has nowhere to go.
            self.drain_tls();
            loop {
                let mut slices = [IoSlice::new(&[]); SLICES];
                let count = self.inner.transmit_slices(&mut slices);
                let n: usize = slices[..count].iter().map(|s| s.len()).sum();
                if n == 0 {
                    break;
                }
                self.inner.advance_transmit(n);
            }
            return;
        }
        loop {
            self.drain_tls();
            if self.out.len() >= OUT_LIMIT {
                break;
            }
            let mut slices = [IoSlice::new(&[]); SLICES];
            let count = self.inner.transmit_slices(&mut slices);
            if count == 0 {
                break;
            }
            let n = self
                .tls
                .writer()
                .write_vectored(&slices[..count])
                .unwrap_or(0);
            if n == 0 {
                break;
            }
            self.inner.advance_transmit(n);
        }
        if !self.close_notify_sent
            && !self.tls.is_handshaking()
            && !self.inner.wants_write()
            && (self.inner.is_finished() || self.inner.wants_write_shutdown())
        {
            self.tls.send_close_notify();
            self.close_notify_sent = true;
            self.drain_tls();
        }
    }

    /// Passes the end of the TLS stream (close_notify, the socket's end, a
    /// TLS failure) to the inner connection once it has all the plaintext
    /// before it; returns whether it did now.
    fn forward_eof(&mut self) -> bool {
        if self.eof_forwarded || self.plaintext_left {
            return false;
        }
        let tcp_end = self.raw_eof && (self.raw.is_empty() || self.failed.is_some());
        if !(self.peer_closed || tcp_end || self.failed.is_some()) {
            return false;
        }
        if tcp_end && !self.peer_closed && self.failed.is_none() {
            self.report.get_or_insert_with(|| {
                Error::Io(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the peer closed the connection without a TLS close_notify",
                ))
            });
        }
        self.eof_forwarded = true;
        self.inner.handle_eof();
        true
    }
}

/// Keeps the first error of several.
fn keep(result: &mut Result<(), Error>, r: Result<(), Error>) {
    if result.is_ok() {
        *result = r;
    }
}

impl<H: Handler> Served for TlsConnection<H> {
    type Handler = H;

    fn read_buf(&mut self) -> &mut BytesMut {
        if self.raw.capacity() - self.raw.len() < MIN_SPARE {
            self.raw.reserve(READ_SIZE);
        }
        &mut self.raw
    }

    fn handle_eof(&mut self) {
        // Passed on by the next `poll`, after the bytes read before it.
        self.raw_eof = true;
    }

    fn poll(&mut self, now: Instant) -> Result<(), Error> {
        // The inner connection's span, so TLS errors carry the peer.
        let span = self.inner.span().clone();
        let _entered = span.enter();
        self.now = Some(now);
        if !self.raw.is_empty() || !self.out.is_empty() || self.inner.wants_write() {
            // Bytes are moving: not idle.
            self.release_at = None;
        }
        let mut result = Ok(());
        let mut first = true;
        loop {
            let delivered = self.pump_in();
            keep(&mut result, self.inner.poll(now));
            if self.forward_eof() {
                keep(&mut result, self.inner.poll(now));
            }
            // Go round again while plaintext waits and the inner connection
            // takes it now (its head was routed and the session opened, its
            // pause ended, its write made room): no socket event would come
            // for bytes already read. A round that delivers nothing ends it.
            let waiting = self.plaintext_left || !self.raw.is_empty();
            if !waiting || !self.inner.wants_read() || (!delivered && !first) {
                break;
            }
            first = false;
        }
        self.pump_out();
        if self.release_at.is_some_and(|at| now >= at) {
            self.release_now();
        }
        if self.ending() && self.finish_by.is_none() {
            self.finish_by = Some(now + self.close_timeout);
        }
        // A TLS failure is the cause of whatever the inner connection says
        // next (an abnormal closure); otherwise the inner connection's own
        // error (a protocol violation, an abnormal closure) is more precise
        // than a missing close_notify.
        let report = self.report.take();
        match (report, result) {
            (Some(tls), _) if self.failed.is_some() => Err(tls),
            (_, Err(e)) => Err(e),
            (Some(eof), Ok(())) => Err(eof),
            (None, Ok(())) => Ok(()),
        }
    }

    fn wants_read(&self) -> bool {
        self.failed.is_none()
            && !self.raw_eof
            && !self.peer_closed
            && self.raw.is_empty()
            && self.tls.wants_read()
            && (self.tls.is_handshaking() || self.inner.wants_read())
    }

    fn buffered_transmit(&self) -> usize {
        self.out.len()
            + self.in_flight
            + usize::from(self.tls.wants_write())
            + if self.failed.is_some() {
                0
            } else {
                self.inner.buffered_transmit()
            }
    }

    fn wants_write(&self) -> bool {
        !self.out.is_empty()
            || self.tls.wants_write()
            || (self.failed.is_none() && self.inner.wants_write())
    }

    fn wants_write_shutdown(&self) -> bool {
        self.failed.is_none()
            && self.close_notify_sent
            && self.inner.wants_write_shutdown()
            && self.flushed()
    }

    fn write_shut(&mut self) {
        self.inner.write_shut();
    }

    fn poll_timeout(&mut self, now: Instant) -> Option<Instant> {
        if self.ending() {
            return if self.is_finished() {
                None
            } else {
                self.finish_by
            };
        }
        match (self.inner.poll_timeout(now), self.release_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn is_finished(&self) -> bool {
        if !self.ending() {
            return false;
        }
        if self.failed.is_none() && self.tls.is_handshaking() {
            // Let go mid-handshake (its deadline): nothing to say.
            return true;
        }
        if self
            .finish_by
            .is_some_and(|d| self.now.is_some_and(|now| now >= d))
        {
            return true;
        }
        (self.close_notify_sent || self.failed.is_some()) && self.flushed()
    }

    fn is_open(&self) -> bool {
        self.inner.is_open()
    }

    fn is_paused(&self) -> bool {
        self.inner.is_paused()
    }

    fn session(&mut self) -> Option<&mut ServerSession<H>> {
        self.inner.session()
    }

    /// Arms the release of the empty buffers a quiet second (`IDLE_RELEASE`) from the
    /// last poll: done then by `poll` (its timer is in `poll_timeout`)
    /// unless bytes moved in between.
    fn release_idle_buffers(&mut self) {
        if self.release_at.is_none() {
            self.release_at = self.now.map(|now| now + IDLE_RELEASE);
        }
    }

    fn take_for_write(&mut self) -> Bytes {
        self.pump_out();
        let bytes = self.out.split().freeze();
        self.in_flight += bytes.len();
        bytes
    }

    fn written(&mut self, n: usize) {
        self.in_flight = self.in_flight.saturating_sub(n);
    }

    fn transport_error(&mut self, error: &dyn std::fmt::Display) {
        self.inner.transport_error(error);
    }
}

impl<H: Handler> Transmit for TlsConnection<H> {
    fn transmit_slices<'a>(&'a mut self, dst: &mut [IoSlice<'a>]) -> usize {
        if self.out.is_empty() {
            self.pump_out();
        }
        if self.out.is_empty() || dst.is_empty() {
            return 0;
        }
        dst[0] = IoSlice::new(&self.out);
        1
    }

    fn advance_transmit(&mut self, n: usize) {
        self.out.advance(n.min(self.out.len()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, Role};
    use crate::connection::Connection;
    use crate::handshake::{ClientHandshake, ClientRequest};
    use crate::message::Message;
    use crate::server::demo::Echo;
    use crate::server::hub::{Hub, Wake};
    use rustls::pki_types::ServerName;
    use std::net::SocketAddr;

    const PEER: SocketAddr = SocketAddr::V4(std::net::SocketAddrV4::new(
        std::net::Ipv4Addr::LOCALHOST,
        40000,
    ));

    struct Nop;
    impl Wake for Nop {
        fn wake(&self) {}
    }

    /// A test CA and a leaf for `localhost` signed by it: (CA PEM, leaf
    /// chain PEM, leaf key PEM).
    fn test_pki() -> (String, String, String) {
        use rcgen::{
            BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair,
            KeyUsagePurpose,
        };
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        ca.distinguished_name
            .push(DnType::CommonName, "ws-core test CA");
        let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().unwrap()).unwrap();
        let key = KeyPair::generate().unwrap();
        let leaf = CertificateParams::new(vec!["localhost".to_owned()])
            .unwrap()
            .signed_by(&key, &ca)
            .unwrap();
        (ca.pem(), leaf.pem(), key.serialize_pem())
    }

    struct Pair {
        server: TlsConnection<Echo>,
        client: rustls::ClientConnection,
        hub: Arc<Hub>,
        /// Plaintext the client received.
        received: Vec<u8>,
    }

    fn pair(now: Instant) -> Pair {
        let (ca, chain, key) = test_pki();
        let config = server_config_from_pem(chain.as_bytes(), key.as_bytes()).unwrap();
        let hub = Arc::new(Hub::default());
        let inner = ServerConnection::new(
            Arc::new(Echo),
            hub.clone(),
            Arc::new(Nop),
            PEER,
            Config::default()
                .handshake_timeout(Duration::from_secs(2))
                .close_timeout(Duration::from_secs(1)),
            now,
        );
        let server = TlsConnection::new(config, inner).unwrap();
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(ca.as_bytes()) {
            roots.add(cert.unwrap()).unwrap();
        }
        let client_config = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let client = rustls::ClientConnection::new(
            Arc::new(client_config),
            ServerName::try_from("localhost").unwrap(),
        )
        .unwrap();
        Pair {
            server,
            client,
            hub,
            received: Vec::new(),
        }
    }

    /// Everything the server has queued, as a write loop would drain it.
    fn drain(server: &mut TlsConnection<Echo>) -> Vec<u8> {
        let mut out = Vec::new();
        loop {
            let mut slices = [IoSlice::new(&[]); 4];
            let n = server.transmit_slices(&mut slices);
            let len: usize = slices[..n].iter().map(|s| s.len()).sum();
            if len == 0 {
                return out;
            }
            for s in &slices[..n] {
                out.extend_from_slice(s);
            }
            server.advance_transmit(len);
        }
    }

    fn feed(server: &mut TlsConnection<Echo>, bytes: &[u8], now: Instant) -> Result<(), Error> {
        server.read_buf().extend_from_slice(bytes);
        server.poll(now)
    }

    /// Moves bytes both ways until neither side has any to move; returns
    /// the server's errors.
    fn shuttle(p: &mut Pair, now: Instant) -> Vec<Error> {
        let mut errors = Vec::new();
        loop {
            let mut moved = false;
            let mut to_server = Vec::new();
            while p.client.wants_write() {
                p.client.write_tls(&mut to_server).unwrap();
            }
            if !to_server.is_empty() {
                moved = true;
                assert!(
                    p.server.wants_read(),
                    "the server reads while a client writes"
                );
                if let Err(e) = feed(&mut p.server, &to_server, now) {
                    errors.push(e);
                }
            }
            let to_client = drain(&mut p.server);
            if !to_client.is_empty() {
                moved = true;
                let mut rd = &to_client[..];
                while !rd.is_empty() {
                    p.client.read_tls(&mut rd).unwrap();
                    p.client.process_new_packets().unwrap();
                    let got = client_read(&mut p.client).unwrap();
                    p.received.extend_from_slice(&got);
                }
            }
            if !moved {
                return errors;
            }
        }
    }

    /// Writes `bytes` as plaintext from the client, however much rustls
    /// buffers at a time.
    fn client_write(p: &mut Pair, mut bytes: &[u8], now: Instant) {
        while !bytes.is_empty() {
            let n = p.client.writer().write(bytes).unwrap();
            bytes = &bytes[n..];
            assert!(shuttle(p, now).is_empty());
        }
    }

    fn client_read(client: &mut rustls::ClientConnection) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            match client.reader().read(&mut buf) {
                Ok(0) => return Ok(out),
                Ok(n) => out.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(out),
                Err(e) => return Err(e),
            }
        }
    }

    use std::io::Read;

    /// Upgrades `p` over TLS; returns the client's WebSocket connection.
    fn upgrade(p: &mut Pair, now: Instant) -> Connection {
        let (mut hs, request) = ClientHandshake::new(&ClientRequest::new("localhost", 443, "/ws"));
        p.client.writer().write_all(&request).unwrap();
        assert!(shuttle(p, now).is_empty());
        assert!(!p.server.tls().is_handshaking());
        let response = std::mem::take(&mut p.received);
        let head = hs.feed(&response).unwrap().expect("a complete 101");
        assert_eq!(head.status(), 101);
        assert!(p.server.is_open());
        Connection::with_buffered(Role::Client, Config::default(), hs.take_remaining())
    }

    #[test]
    fn a_busy_connection_keeps_its_buffers_and_a_quiet_one_frees_them_a_second_later() {
        let now = Instant::now();
        let mut p = pair(now);
        let mut ws = upgrade(&mut p, now);
        let echo = |p: &mut Pair, ws: &mut Connection, at: Instant| {
            ws.send(&Message::binary(vec![5; 3000])).unwrap();
            client_write(p, &ws.take_transmit(), at);
            let mut got = None;
            while got.is_none() {
                ws.handle_bytes(&std::mem::take(&mut p.received));
                got = ws.poll_message().unwrap();
            }
        };
        echo(&mut p, &mut ws, now);
        // The executor drained the socket and is about to wait.
        p.server.release_idle_buffers();
        assert!(p.server.raw.capacity() > 0, "not freed at once");
        let due = p.server.poll_timeout(now).expect("a release timer");
        assert!(due <= now + IDLE_RELEASE);
        // Traffic before it is due: the release is called off.
        let t1 = now + IDLE_RELEASE / 2;
        echo(&mut p, &mut ws, t1);
        p.server.poll(due).unwrap();
        assert!(p.server.raw.capacity() > 0, "busy: kept");
        // Quiet for a whole IDLE_RELEASE from the last poll: freed by the
        // timer's poll.
        p.server.release_idle_buffers();
        let last = due;
        let due = p.server.poll_timeout(last).expect("armed again");
        assert_eq!(due, last + IDLE_RELEASE);
        p.server.poll(due - Duration::from_millis(1)).unwrap();
        assert!(p.server.raw.capacity() > 0, "not yet");
        p.server.poll(due).unwrap();
        assert_eq!(p.server.raw.capacity(), 0, "quiet: freed");
        assert_eq!(p.server.out.capacity(), 0);
        assert_ne!(p.server.poll_timeout(due), Some(due), "disarmed");
        // And it still works afterwards.
        echo(&mut p, &mut ws, due);
    }

    #[test]
    fn wss_echo_then_a_close_ends_with_close_notify() {
        let now = Instant::now();
        let mut p = pair(now);
        let mut ws = upgrade(&mut p, now);
        assert_eq!(p.hub.len(), 1);
        assert_eq!(
            p.server.tls().alpn_protocol(),
            None,
            "the client offered none"
        );
        for msg in [Message::text("over tls"), Message::binary(vec![7; 100_000])] {
            ws.send(&msg).unwrap();
            client_write(&mut p, &ws.take_transmit(), now);
            let mut got = None;
            while got.is_none() {
                assert!(!p.received.is_empty(), "the echo arrives");
                ws.handle_bytes(&std::mem::take(&mut p.received));
                got = ws.poll_message().unwrap();
            }
            assert_eq!(got, Some(msg));
        }
        ws.close(crate::CloseCode::NORMAL, "bye").unwrap();
        p.client.writer().write_all(&ws.take_transmit()).unwrap();
        assert!(shuttle(&mut p, now).is_empty());
        ws.handle_bytes(&std::mem::take(&mut p.received));
        assert!(matches!(
            ws.poll_message().unwrap(),
            Some(Message::Close(_))
        ));
        assert!(p.server.close_notify_sent());
        assert!(p.server.is_finished(), "finished once close_notify is out");
        let mut buf = [0u8; 1];
        assert_eq!(
            p.client.reader().read(&mut buf).unwrap(),
            0,
            "the client sees a clean TLS end"
        );
        assert_eq!(p.hub.len(), 0);
    }

    #[test]
    fn a_page_over_https_is_followed_by_close_notify_then_the_write_shutdown() {
        let now = Instant::now();
        let mut p = pair(now);
        p.client
            .writer()
            .write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .unwrap();
        assert!(shuttle(&mut p, now).is_empty());
        let page = String::from_utf8(std::mem::take(&mut p.received)).unwrap();
        assert!(page.starts_with("HTTP/1.1 200 OK\r\n"), "{page}");
        assert!(p.server.close_notify_sent());
        assert!(p.server.wants_write_shutdown());
        p.server.write_shut();
        assert!(
            !p.server.wants_write_shutdown() && !p.server.is_finished(),
            "lingers"
        );
        // The client's own close_notify ends the linger.
        p.client.send_close_notify();
        assert!(shuttle(&mut p, now).is_empty());
        assert!(p.server.peer_sent_close_notify());
        assert!(p.server.is_finished());
    }

    #[test]
    fn garbage_instead_of_a_client_hello_gets_an_alert_and_ends_cleanly() {
        let now = Instant::now();
        let mut p = pair(now);
        let err = feed(&mut p.server, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", now).unwrap_err();
        match &err {
            Error::Io(e) => assert_eq!(e.kind(), io::ErrorKind::InvalidData, "{e}"),
            e => panic!("{e:?}"),
        }
        assert!(p.server.tls_error().is_some());
        assert!(!p.server.wants_read());
        let alert = drain(&mut p.server);
        assert_eq!(alert.first(), Some(&0x15), "a TLS alert record: {alert:?}");
        assert!(p.server.is_finished());
        assert!(p.server.poll(now).is_ok(), "reported once");
    }

    #[test]
    fn a_bad_record_mid_session_ends_the_session_without_a_panic() {
        let now = Instant::now();
        let mut p = pair(now);
        let _ws = upgrade(&mut p, now);
        assert_eq!(p.hub.len(), 1);
        p.client.writer().write_all(b"anything").unwrap();
        let mut record = Vec::new();
        p.client.write_tls(&mut record).unwrap();
        let last = record.len() - 1;
        record[last] ^= 0xff;
        let err = feed(&mut p.server, &record, now).unwrap_err();
        assert!(matches!(&err, Error::Io(e) if e.kind() == io::ErrorKind::InvalidData));
        assert_eq!(p.hub.len(), 0, "the session is over");
        let alert = drain(&mut p.server);
        assert!(!alert.is_empty(), "the alert");
        assert!(p.server.is_finished());
    }

    #[test]
    fn a_client_that_stalls_mid_handshake_is_let_go_at_the_handshake_deadline() {
        let now = Instant::now();
        let mut p = pair(now);
        let mut hello = Vec::new();
        p.client.write_tls(&mut hello).unwrap();
        feed(&mut p.server, &hello, now).unwrap();
        assert!(!drain(&mut p.server).is_empty(), "the server's flight");
        assert!(p.server.tls().is_handshaking());
        // The client never answers.
        let deadline = p.server.poll_timeout(now).unwrap();
        assert_eq!(deadline, now + Duration::from_secs(2));
        p.server.poll(deadline - Duration::from_millis(1)).unwrap();
        assert!(!p.server.is_finished());
        p.server.poll(deadline).unwrap();
        assert!(p.server.is_finished() && !p.server.wants_write());
    }

    #[test]
    fn the_peers_end_without_close_notify_is_reported_as_such() {
        let now = Instant::now();
        let mut p = pair(now);
        let mut ws = upgrade(&mut p, now);
        // A complete closing handshake, then TCP ends without close_notify.
        ws.close(crate::CloseCode::NORMAL, "").unwrap();
        p.client.writer().write_all(&ws.take_transmit()).unwrap();
        assert!(shuttle(&mut p, now).is_empty());
        p.server.handle_eof();
        let err = p.server.poll(now).unwrap_err();
        assert!(
            matches!(&err, Error::Io(e) if e.kind() == io::ErrorKind::UnexpectedEof),
            "{err:?}"
        );
        drain(&mut p.server);
        assert!(p.server.is_finished());

        // Mid-session: the session's own report (no closing handshake).
        let mut p = pair(now);
        let _ws = upgrade(&mut p, now);
        p.server.handle_eof();
        assert!(matches!(p.server.poll(now), Err(Error::AbnormalClosure)));
        drain(&mut p.server);
        assert!(p.server.is_finished());
        assert_eq!(p.hub.len(), 0);
    }

    #[test]
    fn a_client_that_does_not_read_is_pushed_back_on_with_bounded_buffers() {
        let now = Instant::now();
        let mut p = pair(now);
        let mut ws = upgrade(&mut p, now);
        let limit = Config::default().get_write_buffer_limit();
        let msg = Message::binary(vec![1; 8 * 1024]);
        let mut sent = 0;
        // The client sends echo requests and never reads the echoes.
        while p.server.wants_read() {
            assert!(sent < 10_000, "the server never stopped reading");
            ws.send(&msg).unwrap();
            p.client.writer().write_all(&ws.take_transmit()).unwrap();
            let mut records = Vec::new();
            while p.client.wants_write() {
                p.client.write_tls(&mut records).unwrap();
            }
            feed(&mut p.server, &records, now).unwrap();
            sent += 1;
        }
        assert!(sent > 10, "{sent}");
        let queued = p.server.buffered_transmit();
        // Records waiting, plus what rustls holds, plus the session's own
        // write buffer: bounded whatever the client sends.
        assert!(
            queued <= OUT_LIMIT + 2 * 64 * 1024 + limit + 64 * 1024,
            "{queued} bytes queued"
        );
        // Once the client reads, everything flows again.
        let echoed = shuttle(&mut p, now);
        assert!(echoed.is_empty());
        ws.handle_bytes(&std::mem::take(&mut p.received));
        let mut got = 0;
        while let Some(m) = ws.poll_message().unwrap() {
            assert_eq!(m, msg);
            got += 1;
        }
        assert_eq!(got, sent);
        assert!(p.server.wants_read());
    }

    #[test]
    fn the_last_records_wait_at_most_the_close_timeout() {
        let now = Instant::now();
        let mut p = pair(now);
        // An alert is queued, and the peer never takes it.
        assert!(feed(&mut p.server, b"garbage, not a ClientHello", now).is_err());
        assert!(p.server.wants_write() && !p.server.is_finished());
        let until = p.server.poll_timeout(now).unwrap();
        assert_eq!(until, now + Duration::from_secs(1), "the close timeout");
        p.server.poll(until).unwrap();
        assert!(p.server.is_finished(), "let go with the alert unwritten");
    }

    #[test]
    fn pem_errors_are_values() {
        let (_, chain, key) = test_pki();
        assert!(matches!(
            server_config_from_pem(b"", key.as_bytes()),
            Err(TlsConfigError::NoCertificate)
        ));
        assert!(matches!(
            server_config_from_pem(chain.as_bytes(), b"no key here"),
            Err(TlsConfigError::Key(_))
        ));
        let (_, _, other_key) = test_pki();
        assert!(matches!(
            server_config_from_pem(chain.as_bytes(), other_key.as_bytes()),
            Err(TlsConfigError::Rustls(_))
        ));
    }
}
