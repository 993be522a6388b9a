//! The client side of `wss://`, written once for every adapter: rustls
//! configurations built with an explicit crypto provider, the default
//! roots, extra roots from PEM, the server name from a URL, and TLS errors
//! a caller can tell apart ([`TlsError`], [`TlsErrorKind`]).
//!
//! The adapters run the TLS handshake and the record layer themselves
//! (tokio-rustls on tokio, futures-rustls on async-std and smol,
//! [`rustls::StreamOwned`] on blocking threads); ws-core keeps seeing plain
//! bytes above them, so the opening handshake and the framing are the same
//! over TLS.
//!
//! # The crypto provider
//!
//! Every configuration here is built with
//! `ClientConfig::builder_with_provider(`[`provider()`]`)`, rustls' *ring*
//! provider, named explicitly: nothing depends on a process-level default
//! `CryptoProvider`, so no program ever meets rustls' "no process-level
//! CryptoProvider available" panic, whatever other crates in it enable.
//! ring rather than aws-lc-rs because it builds with a C compiler alone
//! (aws-lc-rs wants cmake, and more build time on small machines), and its
//! TLS 1.2 and 1.3 suites cover every server a WebSocket client meets.
//! Bring your own `ClientConfig` to use another provider.
//!
//! # The default roots
//!
//! [`default_client_config`] trusts the roots chosen by cargo features:
//!
//! - `webpki-roots` (on by default in the adapters): Mozilla's root
//!   program, compiled in. The same roots on every machine, nothing read
//!   from the system at run time, so it works in minimal containers without
//!   a CA bundle; the cost is that the roots are as fresh as the crate
//!   version, and roots an administrator installed are not trusted.
//! - `platform-verifier`: the operating system's verifier
//!   (`rustls-platform-verifier`: the system's CA bundle on Linux, the
//!   platform's own verifier on macOS and Windows), for machines where an
//!   administrator installs roots (a corporate proxy's CA). It wins when
//!   both features are on.
//! - neither: no default; [`default_client_config`] fails with
//!   [`TlsErrorKind::Config`] and a `wss://` connection needs a
//!   configuration of your own.
//!
//! Your own [`ClientConfig`] (custom roots, client certificates, ALPN) goes
//! to the adapter's `connect_tls` or `Client::with_tls`; [`builder`] starts
//! one with the same provider.

use std::error::Error as StdError;
use std::fmt;
use std::io;
use std::sync::{Arc, OnceLock};

pub use rustls;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
pub use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{CertificateError, ClientConfig, ConfigBuilder, RootCertStore, WantsVerifier};

use crate::error::Error;
use crate::url::WsUrl;

/// Which default roots this build trusts: `"platform-verifier"`,
/// `"webpki-roots"`, or `"none"` (see the [module docs](self)).
pub const DEFAULT_ROOTS: &str = if cfg!(feature = "platform-verifier") {
    "platform-verifier"
} else if cfg!(feature = "webpki-roots") {
    "webpki-roots"
} else {
    "none"
};

/// rustls' ring crypto provider, the one every configuration here is built
/// with (one instance, shared).
pub fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    PROVIDER
        .get_or_init(|| Arc::new(rustls::crypto::ring::default_provider()))
        .clone()
}

/// A client configuration builder with the [`provider`] and rustls' safe
/// default protocol versions (TLS 1.3 and 1.2), ready for roots or a
/// verifier: the start of a configuration of your own (client
/// certificates, ALPN) that cannot panic for want of a process-level
/// provider.
///
/// ```
/// use ws_core::rt::tls;
///
/// let roots = tls::rustls::RootCertStore::empty(); // yours
/// let mut config = tls::builder().with_root_certificates(roots).with_no_client_auth();
/// config.alpn_protocols = vec![b"http/1.1".to_vec()];
/// ```
pub fn builder() -> ConfigBuilder<ClientConfig, WantsVerifier> {
    ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("the ring provider supports the default protocol versions")
}

/// A client configuration that trusts exactly `roots` (no default roots),
/// without a client certificate.
pub fn client_config(roots: RootCertStore) -> Arc<ClientConfig> {
    Arc::new(
        builder()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

/// The configuration a `wss://` connection uses when it was given none:
/// the default roots of this build ([`DEFAULT_ROOTS`]), no client
/// certificate. Built once and shared (so TLS session resumption works
/// across connections).
///
/// # Errors
///
/// [`TlsErrorKind::Config`] when the build has no default roots (neither
/// the `webpki-roots` nor the `platform-verifier` feature), or the
/// platform verifier found no usable roots.
pub fn default_client_config() -> Result<Arc<ClientConfig>, TlsError> {
    static DEFAULT: OnceLock<Result<Arc<ClientConfig>, String>> = OnceLock::new();
    DEFAULT
        .get_or_init(|| {
            with_default_roots(Vec::new())
                .map(Arc::new)
                .map_err(|e| e.to_string())
        })
        .clone()
        .map_err(|message| TlsError::new(TlsErrorKind::Config, message))
}

/// The default roots ([`default_client_config`]) plus `extra` (say, the
/// certificates [`certs_from_pem`] read from a `--ca` file): for a private
/// CA next to the public ones. Without default roots in the build, `extra`
/// alone.
///
/// # Errors
///
/// [`TlsErrorKind::Config`] if a certificate in `extra` cannot be a trust
/// anchor, or the platform verifier cannot be set up.
pub fn client_config_with_extra_roots(
    extra: impl IntoIterator<Item = CertificateDer<'static>>,
) -> Result<Arc<ClientConfig>, TlsError> {
    let extra: Vec<_> = extra.into_iter().collect();
    let config = if DEFAULT_ROOTS == "none" {
        builder()
            .with_root_certificates(root_store(extra)?)
            .with_no_client_auth()
    } else {
        with_default_roots(extra)?
    };
    Ok(Arc::new(config))
}

/// Reads every certificate (`-----BEGIN CERTIFICATE-----` block) from PEM
/// text, with rustls-pki-types' PEM parser; other blocks (keys) are
/// skipped.
///
/// # Errors
///
/// [`TlsErrorKind::Config`] if the PEM is malformed or holds no
/// certificate.
pub fn certs_from_pem(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::with_source(TlsErrorKind::Config, "unreadable PEM", e))?;
    if certs.is_empty() {
        return Err(TlsError::new(
            TlsErrorKind::Config,
            "no certificate (-----BEGIN CERTIFICATE-----) in the PEM",
        ));
    }
    Ok(certs)
}

/// A root store holding `certs` (each must parse as a trust anchor).
///
/// # Errors
///
/// [`TlsErrorKind::Config`] naming the first certificate that cannot be a
/// root.
pub fn root_store(
    certs: impl IntoIterator<Item = CertificateDer<'static>>,
) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in certs {
        roots.add(cert).map_err(|e| {
            TlsError::with_source(TlsErrorKind::Config, "not a usable root certificate", e)
        })?;
    }
    Ok(roots)
}

/// The name TLS verifies the server's certificate against: the URL's host,
/// as a DNS name, or as an IP address for an IP literal (`wss://127.0.0.1/`,
/// `wss://[::1]/`).
///
/// # Errors
///
/// [`TlsErrorKind::InvalidServerName`] if the host is neither (a
/// percent-encoded name, say).
pub fn server_name(url: &WsUrl) -> Result<ServerName<'static>, TlsError> {
    ServerName::try_from(url.host().to_owned()).map_err(|e| {
        TlsError::with_source(
            TlsErrorKind::InvalidServerName,
            format!("{:?} cannot name a TLS server", url.host()),
            e,
        )
    })
}

/// What a client's connect to `url` needs of TLS, decided before any I/O
/// (every adapter's `connect_url` starts with it): `None` for `ws://`; for
/// `wss://` the server name ([`server_name`]) and `config`, or the default
/// configuration ([`default_client_config`]) when `config` is `None`.
///
/// # Errors
///
/// For `wss://` only: the default configuration's error, or
/// [`TlsErrorKind::InvalidServerName`].
pub fn client_setup(
    url: &WsUrl,
    config: Option<Arc<ClientConfig>>,
) -> Result<Option<(ServerName<'static>, Arc<ClientConfig>)>, TlsError> {
    if !url.is_tls() {
        return Ok(None);
    }
    let config = match config {
        Some(config) => config,
        None => default_client_config()?,
    };
    Ok(Some((server_name(url)?, config)))
}

/// The default roots plus `extra`, as a configuration: the platform
/// verifier.
#[cfg(feature = "platform-verifier")]
fn with_default_roots(extra: Vec<CertificateDer<'static>>) -> Result<ClientConfig, TlsError> {
    let verifier = platform_verifier(extra)?;
    Ok(builder()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth())
}

/// The default roots plus `extra`, as a configuration: Mozilla's roots.
#[cfg(all(feature = "webpki-roots", not(feature = "platform-verifier")))]
fn with_default_roots(extra: Vec<CertificateDer<'static>>) -> Result<ClientConfig, TlsError> {
    let mut roots = RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    roots.roots.extend(root_store(extra)?.roots);
    Ok(builder()
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// No default roots in this build.
#[cfg(not(any(feature = "webpki-roots", feature = "platform-verifier")))]
fn with_default_roots(_extra: Vec<CertificateDer<'static>>) -> Result<ClientConfig, TlsError> {
    Err(TlsError::new(
        TlsErrorKind::Config,
        "this build has no default roots (cargo features webpki-roots and \
         platform-verifier are off): pass a rustls::ClientConfig of your own",
    ))
}

#[cfg(feature = "platform-verifier")]
fn platform_verifier(
    extra: Vec<CertificateDer<'static>>,
) -> Result<rustls_platform_verifier::Verifier, TlsError> {
    let unusable = |e| TlsError::with_source(TlsErrorKind::Config, "the platform verifier", e);
    #[cfg(not(target_os = "android"))]
    {
        rustls_platform_verifier::Verifier::new_with_extra_roots(extra, provider())
            .map_err(unusable)
    }
    #[cfg(target_os = "android")]
    {
        if !extra.is_empty() {
            return Err(TlsError::new(
                TlsErrorKind::Config,
                "the platform verifier takes no extra roots on Android",
            ));
        }
        rustls_platform_verifier::Verifier::new(provider()).map_err(unusable)
    }
}

/// What went wrong in TLS, coarsely enough to act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TlsErrorKind {
    /// The server's certificate does not chain to a root we trust (an
    /// unknown issuer, a self-signed certificate, a bad signature).
    UntrustedCertificate,
    /// The certificate is trusted but names another host than the URL's
    /// (or another IP address).
    NameMismatch,
    /// The certificate has expired or is not valid yet.
    ExpiredCertificate,
    /// Any other reason the server's certificate was refused (revoked,
    /// malformed, not for server authentication).
    InvalidCertificate,
    /// The server refused the handshake with an alert (it wanted a client
    /// certificate, or shares no protocol version or cipher suite with us).
    Refused,
    /// The peer broke the TLS protocol: not TLS at all (a plain-HTTP
    /// server on the port), a malformed or unexpected message.
    Protocol,
    /// The URL's host cannot name a TLS server.
    InvalidServerName,
    /// Our side's configuration: no roots, unreadable PEM, a certificate
    /// that cannot be a root.
    Config,
}

impl TlsErrorKind {
    /// Whether retrying the same connection cannot help: the server's
    /// certificate was refused (untrusted, another name, expired, invalid),
    /// the URL cannot name a TLS server, or our configuration is unusable. A
    /// refusal by alert or a protocol error may come from a server that is
    /// restarting or a middlebox, and is retried.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            TlsErrorKind::UntrustedCertificate
                | TlsErrorKind::NameMismatch
                | TlsErrorKind::ExpiredCertificate
                | TlsErrorKind::InvalidCertificate
                | TlsErrorKind::InvalidServerName
                | TlsErrorKind::Config
        )
    }
}

impl fmt::Display for TlsErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TlsErrorKind::UntrustedCertificate => "the server's certificate is not trusted",
            TlsErrorKind::NameMismatch => "the server's certificate is for another name",
            TlsErrorKind::ExpiredCertificate => {
                "the server's certificate has expired or is not valid yet"
            }
            TlsErrorKind::InvalidCertificate => "the server's certificate is invalid",
            TlsErrorKind::Refused => "the server refused the TLS handshake",
            TlsErrorKind::Protocol => "TLS protocol error",
            TlsErrorKind::InvalidServerName => "invalid TLS server name",
            TlsErrorKind::Config => "TLS configuration",
        })
    }
}

impl TlsErrorKind {
    /// The kind of a rustls error.
    pub fn of(e: &rustls::Error) -> TlsErrorKind {
        use CertificateError as C;
        match e {
            rustls::Error::InvalidCertificate(c) => match c {
                C::UnknownIssuer | C::BadSignature => TlsErrorKind::UntrustedCertificate,
                C::NotValidForName | C::NotValidForNameContext { .. } => TlsErrorKind::NameMismatch,
                C::Expired
                | C::ExpiredContext { .. }
                | C::NotValidYet
                | C::NotValidYetContext { .. } => TlsErrorKind::ExpiredCertificate,
                _ => TlsErrorKind::InvalidCertificate,
            },
            rustls::Error::AlertReceived(_) | rustls::Error::NoApplicationProtocol => {
                TlsErrorKind::Refused
            }
            _ => TlsErrorKind::Protocol,
        }
    }
}

/// A TLS failure: its [`kind`](Self::kind), and what rustls (or the PEM
/// parser) said.
///
/// The adapters return it inside [`Error::Io`] (as the `io::Error`'s
/// inner error, kind `InvalidData`), the way the TLS libraries report it;
/// [`TlsError::find`] gets it back out of an [`Error`]:
///
/// ```
/// use ws_core::rt::tls::{TlsError, TlsErrorKind};
///
/// fn explain(err: &ws_core::Error) -> &'static str {
///     match TlsError::find(err).map(TlsError::kind) {
///         Some(TlsErrorKind::UntrustedCertificate) => "add the server's CA (--ca FILE)",
///         Some(TlsErrorKind::NameMismatch) => "connect by the name on the certificate",
///         Some(_) => "a TLS failure",
///         None => "not TLS",
///     }
/// }
/// # assert_eq!(explain(&ws_core::Error::Closed), "not TLS");
/// ```
#[derive(Debug)]
pub struct TlsError {
    kind: TlsErrorKind,
    context: Option<Box<str>>,
    source: Option<Box<dyn StdError + Send + Sync>>,
}

impl TlsError {
    fn new(kind: TlsErrorKind, context: impl Into<Box<str>>) -> Self {
        TlsError {
            kind,
            context: Some(context.into()),
            source: None,
        }
    }

    fn with_source(
        kind: TlsErrorKind,
        context: impl Into<Box<str>>,
        source: impl StdError + Send + Sync + 'static,
    ) -> Self {
        TlsError {
            kind,
            context: Some(context.into()),
            source: Some(Box::new(source)),
        }
    }

    /// What went wrong.
    pub fn kind(&self) -> TlsErrorKind {
        self.kind
    }

    /// rustls' own error, when rustls reported it (the certificate
    /// verifier's details are there).
    pub fn rustls_error(&self) -> Option<&rustls::Error> {
        self.source.as_deref()?.downcast_ref()
    }

    /// The TLS error inside `err`, if it is one: an [`Error::Io`] whose
    /// inner error is a [`TlsError`].
    pub fn find(err: &Error) -> Option<&TlsError> {
        match err {
            Error::Io(e) => e.get_ref()?.downcast_ref(),
            _ => None,
        }
    }

    /// Wraps an I/O error from a TLS handshake: a rustls error inside it
    /// becomes a [`TlsError`] (classified by [`TlsErrorKind::of`]) in an
    /// [`Error::Io`]; any other I/O error (connection reset, a timeout)
    /// stays as it is. For adapters.
    pub fn from_handshake(e: io::Error) -> Error {
        if !e.get_ref().is_some_and(|inner| inner.is::<rustls::Error>()) {
            return Error::Io(e);
        }
        let inner = e.into_inner().expect("checked: an inner error");
        let rustls_error = inner
            .downcast::<rustls::Error>()
            .expect("checked: a rustls error");
        let kind = TlsErrorKind::of(&rustls_error);
        TlsError {
            kind,
            context: None,
            source: Some(rustls_error),
        }
        .into()
    }
}

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TLS: {}", self.kind)?;
        if let Some(context) = &self.context {
            write!(f, ": {context}")?;
        }
        if let Some(source) = &self.source {
            write!(f, ": {source}")?;
        }
        Ok(())
    }
}

impl StdError for TlsError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn StdError + 'static))
    }
}

impl From<TlsError> for io::Error {
    fn from(e: TlsError) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidData, e)
    }
}

impl From<TlsError> for Error {
    fn from(e: TlsError) -> Error {
        Error::Io(e.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_names_come_from_the_url_host() {
        let name = |u: &str| server_name(&WsUrl::parse(u).unwrap());
        assert!(
            matches!(name("wss://example.com/").unwrap(), ServerName::DnsName(d) if d.as_ref() == "example.com")
        );
        assert!(matches!(
            name("wss://127.0.0.1:9443/").unwrap(),
            ServerName::IpAddress(_)
        ));
        assert!(matches!(
            name("wss://[::1]/").unwrap(),
            ServerName::IpAddress(_)
        ));
        let bad = name("wss://a%2Db/").unwrap_err();
        assert_eq!(bad.kind(), TlsErrorKind::InvalidServerName);
    }

    #[test]
    fn client_setup_is_none_for_ws_and_names_the_host_with_the_given_config_for_wss() {
        let given = client_config(RootCertStore::empty());
        let setup =
            |u: &str, c: Option<Arc<ClientConfig>>| client_setup(&WsUrl::parse(u).unwrap(), c);
        // ws:// needs nothing, not even a default configuration.
        assert!(setup("ws://a%2Db/", Some(given.clone())).unwrap().is_none());
        let (name, config) = setup("wss://example.com/", Some(given.clone()))
            .unwrap()
            .unwrap();
        assert!(matches!(name, ServerName::DnsName(d) if d.as_ref() == "example.com"));
        assert!(Arc::ptr_eq(&config, &given));
        let bad = setup("wss://a%2Db/", Some(given)).unwrap_err();
        assert_eq!(bad.kind(), TlsErrorKind::InvalidServerName);
    }

    #[cfg(any(feature = "webpki-roots", feature = "platform-verifier"))]
    #[test]
    fn client_setup_without_a_config_uses_the_shared_default() {
        let url = WsUrl::parse("wss://example.com/").unwrap();
        let (_, config) = client_setup(&url, None).unwrap().unwrap();
        assert!(Arc::ptr_eq(&config, &default_client_config().unwrap()));
    }

    #[test]
    fn rustls_errors_are_classified() {
        use rustls::Error as E;
        let kind = |e: E| TlsErrorKind::of(&e);
        assert_eq!(
            kind(E::InvalidCertificate(CertificateError::UnknownIssuer)),
            TlsErrorKind::UntrustedCertificate
        );
        assert_eq!(
            kind(E::InvalidCertificate(CertificateError::NotValidForName)),
            TlsErrorKind::NameMismatch
        );
        assert_eq!(
            kind(E::InvalidCertificate(CertificateError::Expired)),
            TlsErrorKind::ExpiredCertificate
        );
        assert_eq!(
            kind(E::InvalidCertificate(CertificateError::Revoked)),
            TlsErrorKind::InvalidCertificate
        );
        assert_eq!(
            kind(E::AlertReceived(rustls::AlertDescription::HandshakeFailure)),
            TlsErrorKind::Refused
        );
        assert_eq!(
            kind(E::InvalidMessage(
                rustls::InvalidMessage::InvalidContentType
            )),
            TlsErrorKind::Protocol
        );
    }

    #[test]
    fn handshake_io_errors_keep_their_kind_and_find_works() {
        let io = io::Error::new(
            io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer),
        );
        let err = TlsError::from_handshake(io);
        let tls = TlsError::find(&err).expect("a TLS error");
        assert_eq!(tls.kind(), TlsErrorKind::UntrustedCertificate);
        assert!(tls.rustls_error().is_some());
        assert!(err.to_string().contains("not trusted"), "{err}");
        // Not rustls: left alone.
        let reset = TlsError::from_handshake(io::ErrorKind::ConnectionReset.into());
        assert!(TlsError::find(&reset).is_none());
        assert!(matches!(reset, Error::Io(e) if e.kind() == io::ErrorKind::ConnectionReset));
    }

    #[test]
    fn pem_without_certificates_is_a_config_error() {
        let e = certs_from_pem(b"nothing here").unwrap_err();
        assert_eq!(e.kind(), TlsErrorKind::Config);
        let e = certs_from_pem(b"-----BEGIN CERTIFICATE-----\n!!\n-----END CERTIFICATE-----\n")
            .unwrap_err();
        assert_eq!(e.kind(), TlsErrorKind::Config);
    }

    #[test]
    fn configurations_never_need_a_process_level_provider() {
        // No `CryptoProvider::install_default` anywhere in this test binary.
        let config = client_config(RootCertStore::empty());
        assert!(config.crypto_provider().cipher_suites.len() > 1);
        match default_client_config() {
            Ok(config) => assert_ne!(DEFAULT_ROOTS, "none", "{config:?}"),
            Err(e) => {
                assert_eq!(DEFAULT_ROOTS, "none");
                assert_eq!(e.kind(), TlsErrorKind::Config);
            }
        }
    }
}
