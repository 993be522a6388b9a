//! Plumbing shared by the example binaries: choose a runtime with
//! `--runtime`, and run the same program on it. Each runtime crate exposes
//! the same `Server`/`Client` surface, so the per-runtime code below differs
//! only in which crate it names.

pub mod feed;
pub mod obs;

use std::io;
use std::sync::Arc;

use clap::ValueEnum;
use ws_core::proxy::Proxy;
use ws_core::rt::console::{Console, Ending};
use ws_core::rt::reconnect::Reconnect;
use ws_core::rt::tls;
use ws_core::rt::tls::rustls::client::danger::{
    HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier,
};
use ws_core::rt::tls::rustls::crypto::{verify_tls12_signature, verify_tls13_signature};
use ws_core::rt::tls::rustls::pki_types::UnixTime;
use ws_core::rt::tls::rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};
use ws_core::rt::tls::{CertificateDer, ServerName};
use ws_core::server::hub::FlowControl;
use ws_core::server::site::ServerMode;
use ws_core::server::tls::rustls::ServerConfig;
use ws_core::server::{AllowOrigins, OriginPolicy};
use ws_core::{CloseCode, Config, DeflateConfig, Error, Message};

/// Which adapter crate (and runtime) to run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, ValueEnum)]
pub enum Runtime {
    /// `ws-tokio` on tokio.
    Tokio,
    /// `ws-async-std` on async-std.
    #[value(name = "async-std")]
    AsyncStd,
    /// `ws-async-std` on smol.
    Smol,
    /// `ws-blocking` on std::net and threads.
    Blocking,
}

impl Runtime {
    /// Every runtime, in the order the docs list them.
    pub const ALL: [Runtime; 4] = [
        Runtime::Tokio,
        Runtime::AsyncStd,
        Runtime::Smol,
        Runtime::Blocking,
    ];

    /// The name used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Runtime::Tokio => "tokio",
            Runtime::AsyncStd => "async-std",
            Runtime::Smol => "smol",
            Runtime::Blocking => "blocking",
        }
    }
}

/// The server's mode, as a command-line value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// Test page on `/`, every message on `/ws` broadcast to all clients.
    Chat,
    /// Every path upgrades; every message goes back to its sender.
    Echo,
}

impl From<Mode> for ServerMode {
    fn from(m: Mode) -> Self {
        match m {
            Mode::Chat => ServerMode::Chat,
            Mode::Echo => ServerMode::Echo,
        }
    }
}

/// The `Origin` check of `ws-server` (against cross-site WebSocket
/// hijacking: another site's page opening a socket with the visitor's
/// cookies). With no `--allow-origin`, the chat allows only pages served by
/// this same host (its own test page, whatever address it is bound to), and
/// the echo server, a conformance target, allows any origin. `allow` lists
/// exact origins (`scheme://host[:port]`); `*` allows any. A request
/// without `Origin` (a non-browser client) is allowed unless
/// `require_origin`.
pub fn origin_check(
    mode: ServerMode,
    allow: &[String],
    require_origin: bool,
) -> Result<AllowOrigins<ServerMode>, String> {
    let policy = if allow.iter().any(|o| o == "*") {
        OriginPolicy::Any
    } else if !allow.is_empty() {
        for origin in allow {
            let valid = origin.split_once("://").is_some_and(|(scheme, rest)| {
                !scheme.is_empty()
                    && scheme
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
                    && !rest.is_empty()
                    && !rest.trim_end_matches('/').contains(['/', '?', '#', ' '])
            });
            if !valid {
                return Err(format!(
                    "--allow-origin {origin:?}: expected scheme://host[:port] (e.g. https://chat.example) or *"
                ));
            }
        }
        OriginPolicy::List(allow.to_vec())
    } else if mode == ServerMode::Chat {
        OriginPolicy::SameHost
    } else {
        OriginPolicy::Any
    };
    Ok(AllowOrigins::new(mode, policy).allow_missing(!require_origin))
}

fn announce(mode: ServerMode, rt: Runtime, addr: std::net::SocketAddr, tls: bool) {
    let (ws, http) = if tls {
        ("wss", "https")
    } else {
        ("ws", "http")
    };
    let page = if mode == ServerMode::Chat {
        format!(", test page at {http}://{addr}/")
    } else {
        String::new()
    };
    println!(
        "ws-server ({mode:?}, {}) listening on {ws}://{addr}/{page}",
        rt.name()
    );
}

/// The server's TLS configuration from a PEM certificate chain file (leaf
/// first) and a PEM private key file (`ws-server --tls-cert --tls-key`):
/// rustls' ring provider, TLS 1.3 and 1.2, ALPN http/1.1 (see
/// [`ws_core::server::tls::server_config_from_pem`]).
pub fn server_tls(
    cert_path: &std::path::Path,
    key_path: &std::path::Path,
) -> io::Result<Arc<ServerConfig>> {
    let read = |path: &std::path::Path| {
        std::fs::read(path)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))
    };
    let (cert, key) = (read(cert_path)?, read(key_path)?);
    ws_core::server::tls::server_config_from_pem(&cert, &key)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))
}

/// Runs the server until the process is stopped. `threads` sets the worker
/// count of the async runtimes (1 = single-threaded, as in the benchmarks);
/// the blocking server always uses a thread per connection. `handler` is the
/// demo server's mode behind its `Origin` check ([`origin_check`]). `flow`
/// sets the broadcast queues' limits. With `tls` it serves wss:// and the page over
/// https:// ([`server_tls`] builds it from PEM files). `config` is every
/// connection's configuration, permessage-deflate policy included
/// ([`deflate_config`]).
/// With `max_connections` it serves at most that many connections at once
/// and answers the next with 503 (`ws-server --max-connections`).
/// With `backplane` it joins a cluster of servers through Redis
/// (`ws-server --backplane`).
// One argument per `ws-server` option group; a struct would only rename them.
#[allow(clippy::too_many_arguments)]
pub fn run_server(
    rt: Runtime,
    addr: &str,
    handler: obs::WithMetrics<AllowOrigins<ServerMode>>,
    threads: usize,
    flow: FlowControl,
    tls: Option<Arc<ServerConfig>>,
    config: Config,
    backplane: Option<ws_redis::RedisBackplane>,
    max_connections: Option<usize>,
) -> io::Result<()> {
    let threads = threads.max(1);
    let secure = tls.is_some();
    let mode = *handler.inner().inner();
    match rt {
        Runtime::Tokio => {
            let mut builder = if threads == 1 {
                tokio::runtime::Builder::new_current_thread()
            } else {
                let mut b = tokio::runtime::Builder::new_multi_thread();
                b.worker_threads(threads);
                b
            };
            builder.enable_all().build()?.block_on(async {
                let mut server = ws_tokio::Server::with_handler(addr, handler)
                    .flow_control(flow)
                    .config(config);
                if let Some(max) = max_connections {
                    server = server.max_connections(max);
                }
                if let Some(b) = backplane {
                    server = server.backplane(b);
                }
                if let Some(tls) = tls {
                    server = server.tls(tls);
                }
                let server = server.start().await?;
                announce(mode, rt, server.local_addr(), secure);
                std::future::pending::<io::Result<()>>().await
            })
        }
        Runtime::AsyncStd => {
            // async-std sizes its global executor from this variable on first use.
            set_env_once("ASYNC_STD_THREAD_COUNT", threads);
            async_std::task::block_on(async {
                let mut server = ws_async_std::Server::with_handler(addr, handler)
                    .flow_control(flow)
                    .config(config);
                if let Some(max) = max_connections {
                    server = server.max_connections(max);
                }
                if let Some(b) = backplane {
                    server = server.backplane(b);
                }
                if let Some(tls) = tls {
                    server = server.tls(tls);
                }
                let server = server.start().await?;
                announce(mode, rt, server.local_addr(), secure);
                std::future::pending::<io::Result<()>>().await
            })
        }
        Runtime::Smol => {
            set_env_once("SMOL_THREADS", threads);
            smol::block_on(async {
                let mut server = ws_async_std::smol::Server::with_handler(addr, handler)
                    .flow_control(flow)
                    .config(config);
                if let Some(max) = max_connections {
                    server = server.max_connections(max);
                }
                if let Some(b) = backplane {
                    server = server.backplane(b);
                }
                if let Some(tls) = tls {
                    server = server.tls(tls);
                }
                let server = server.start().await?;
                announce(mode, rt, server.local_addr(), secure);
                std::future::pending::<io::Result<()>>().await
            })
        }
        Runtime::Blocking => {
            let mut server = ws_blocking::Server::with_handler(addr, handler)
                .flow_control(flow)
                .config(config);
            if let Some(max) = max_connections {
                server = server.max_connections(max);
            }
            if let Some(b) = backplane {
                server = server.backplane(b);
            }
            if let Some(tls) = tls {
                server = server.tls(tls);
            }
            let server = server.start()?;
            announce(mode, rt, server.local_addr(), secure);
            loop {
                std::thread::park();
            }
        }
    }
}

/// The connection configuration of the example binaries: the defaults, with
/// permessage-deflate on when `deflate` is set (`--deflate`). `shared`
/// adds `server_no_context_takeover`, which lets the chat server compress a
/// broadcast once for all its recipients
/// ([`PreparedMessage::with_deflate`](ws_core::PreparedMessage::with_deflate)).
pub fn deflate_config(deflate: bool, shared: bool) -> Config {
    let policy = DeflateConfig::enabled()
        .enable(deflate)
        .server_no_context_takeover(shared);
    Config::default().deflate(policy)
}

/// Sets a runtime-sizing environment variable unless the user already did.
fn set_env_once(name: &str, value: usize) {
    if std::env::var_os(name).is_none() {
        // SAFETY: called from main before any other thread is started, so no
        // other thread can be reading the environment concurrently.
        unsafe { std::env::set_var(name, value.to_string()) };
    }
}

/// Everything `ws-client` sets up before it connects: where, how, and what
/// the session does ([`Console`]).
#[derive(Debug, Clone)]
pub struct ClientSetup {
    /// The `ws://` or `wss://` URL.
    pub url: String,
    /// Reconnect with this policy (`--reconnect`).
    pub reconnect: Option<Reconnect>,
    /// For `wss://`: this TLS configuration ([`client_tls`]), else the
    /// default roots.
    pub tls: Option<Arc<ClientConfig>>,
    /// Through this HTTP proxy ([`client_proxy`]).
    pub proxy: Option<Proxy>,
    /// Limits and timeouts (`--timeout` is the handshake timeout here).
    pub config: Config,
    /// Extra request headers (`-H 'Name: value'`), in order.
    pub headers: Vec<(String, String)>,
    /// Subprotocols to offer (`--protocol`), in preference order.
    pub protocols: Vec<String>,
    /// What the session does with stdin, stdout and its timers.
    pub console: Console,
}

impl ClientSetup {
    /// A plain interactive session with `url`: no extras.
    pub fn new(url: &str) -> Self {
        ClientSetup {
            url: url.to_owned(),
            reconnect: None,
            tls: None,
            proxy: None,
            config: Config::default(),
            headers: Vec::new(),
            protocols: Vec::new(),
            console: Console::new(),
        }
    }
}

/// Why `ws-client` ended without a session [`Ending`].
#[derive(Debug)]
pub enum ClientError {
    /// Nothing was tried: an unusable URL, header or subprotocol.
    Setup(Error),
    /// Connecting failed: TCP, TLS, the proxy, the upgrade refused, or the
    /// handshake timeout (`--timeout`).
    Connect(Error),
    /// Reading stdin (or text input that is not UTF-8) or writing stdout.
    Console(Error),
}

impl std::fmt::Display for ClientError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientError::Setup(e) => write!(f, "{e}"),
            ClientError::Connect(e) => write!(f, "could not connect: {e}"),
            ClientError::Console(e) => write!(f, "console: {e}"),
        }
    }
}

/// `ws-client`'s exit statuses, so scripts can tell the endings apart.
pub mod exit {
    /// A normal end: our close (end of input, or the one reply received)
    /// or the server's close with 1000 or 1001.
    pub const NORMAL: i32 = 0;
    /// A local problem: a bad URL, header, subprotocol or `--ca` file,
    /// stdin unreadable (or not UTF-8 without `--binary`), stdout closed.
    pub const LOCAL: i32 = 1;
    /// A command-line usage error (clap's status).
    pub const USAGE: i32 = 2;
    /// Could not connect: refused, unreachable, TLS, proxy, the upgrade
    /// refused, or `--timeout` passed during connect and handshake.
    pub const CONNECT: i32 = 3;
    /// The connection ended abnormally: the server closed with a code
    /// other than 1000/1001 (or none), or the connection broke.
    pub const ABNORMAL: i32 = 4;
    /// `-1`: no reply within `--timeout`.
    pub const NO_REPLY: i32 = 5;
}

/// The exit status for how `ws-client` ended ([`exit`]).
pub fn exit_code(result: &Result<Ending, ClientError>) -> i32 {
    match result {
        Ok(Ending::NoReply) => exit::NO_REPLY,
        Ok(ending) if ending.is_normal() => exit::NORMAL,
        Ok(_) => exit::ABNORMAL,
        Err(ClientError::Connect(_)) => exit::CONNECT,
        Err(ClientError::Setup(_) | ClientError::Console(_)) => exit::LOCAL,
    }
}

/// A client of type `$client` (every runtime's has the same builder)
/// configured as `setup` says, not yet connected.
macro_rules! configured_client {
    ($client:ty, $setup:expr) => {{
        let setup: &ClientSetup = $setup;
        let mut client = <$client>::new(&setup.url)
            .map_err(ClientError::Setup)?
            .with_config(setup.config.clone());
        for (name, value) in &setup.headers {
            client = client.header(name, value).map_err(ClientError::Setup)?;
        }
        for protocol in &setup.protocols {
            client = client.subprotocol(protocol).map_err(ClientError::Setup)?;
        }
        if let Some(policy) = setup.reconnect.clone() {
            client = client.reconnect(policy);
        }
        if let Some(tls) = setup.tls.clone() {
            client = client.with_tls(tls);
        }
        client = client.with_proxy(setup.proxy.clone());
        client
    }};
}

/// The async runtimes' session: the same text for each async client type.
macro_rules! async_session {
    ($client:ty, $setup:expr) => {{
        let setup: &ClientSetup = $setup;
        let mut client = configured_client!($client, setup);
        client.connect().await.map_err(ClientError::Connect)?;
        eprintln!("{}", Console::connected_line(&setup.url, client.response()));
        client
            .run_console(&setup.console)
            .await
            .map_err(ClientError::Console)
    }};
}

/// Connects as `setup` says and runs the interactive session on `rt`:
/// stdin out, received messages one per line on stdout (as
/// [`Console`] renders them), close 1000 at end of input; prints
/// `[connected to URL]` (with the subprotocol the server chose) on stderr
/// once connected. Returns how the session ended (the caller reports it
/// and maps it to an exit status with [`exit_code`]).
///
/// With a reconnect policy (`ws-client --reconnect`), the client connects
/// with that policy's retries and reconnects whenever the connection is
/// lost, printing `[reconnected]` on stderr after each reconnection and
/// `[gave up reconnecting: ...]` when reconnecting fails for good (a 4xx
/// at the upgrade, or the policy's attempts used up; the session then
/// ends with that error). A close with a code the policy marks final ends
/// the session as without a policy.
///
/// A `wss://` URL uses `setup.tls` if given ([`client_tls`] builds it from
/// the command line's `--ca` and `--insecure`), else the default roots.
/// With `setup.proxy` ([`client_proxy`] reads `--proxy` and
/// `--proxy-from-env`) the connection goes through that HTTP proxy's
/// `CONNECT` tunnel.
pub fn run_client(rt: Runtime, setup: &ClientSetup) -> Result<Ending, ClientError> {
    match rt {
        Runtime::Tokio => {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| ClientError::Setup(e.into()))?;
            let result = rt.block_on(async { async_session!(ws_tokio::Client, setup) });
            // tokio reads stdin on a blocking thread that cannot be cancelled;
            // don't wait for it when the server ended the session first.
            rt.shutdown_background();
            result
        }
        Runtime::AsyncStd => {
            async_std::task::block_on(async { async_session!(ws_async_std::Client, setup) })
        }
        Runtime::Smol => {
            smol::block_on(async { async_session!(ws_async_std::smol::Client, setup) })
        }
        Runtime::Blocking => {
            let mut client = configured_client!(ws_blocking::Client, setup);
            client.connect().map_err(ClientError::Connect)?;
            eprintln!("{}", Console::connected_line(&setup.url, client.response()));
            client
                .run_console(&setup.console)
                .map_err(ClientError::Console)
        }
    }
}

/// The HTTP proxy `ws-client` connects to `url` through: `proxy_url`
/// (`--proxy URL`), else with `from_env` (`--proxy-from-env`) the one the
/// environment names for `url` ([`Proxy::from_env`]: `wss_proxy`,
/// `https_proxy`, `no_proxy`, ...), else none. The environment is read
/// only when asked to.
///
/// # Errors
///
/// An unusable URL or proxy URL (a SOCKS proxy, say), naming the
/// environment variable it came from.
pub fn client_proxy(
    url: &str,
    proxy_url: Option<&str>,
    from_env: bool,
) -> Result<Option<Proxy>, Error> {
    match proxy_url {
        Some(proxy) => Ok(Some(Proxy::parse(proxy)?)),
        None if from_env => Ok(Proxy::from_env(&ws_core::url::WsUrl::parse(url)?)?),
        None => Ok(None),
    }
}

/// The TLS configuration `ws-client` uses for `wss://`: `None` (the
/// default roots) unless `ca_files` adds roots (PEM, each file one or more
/// certificates) or `insecure` turns verification off. Insecure prints a
/// warning on stderr; it and `ca_files` are exclusive (the binary's flags
/// conflict).
///
/// # Errors
///
/// A file that cannot be read, or holds no usable certificate.
pub fn client_tls(
    ca_files: &[std::path::PathBuf],
    insecure: bool,
) -> Result<Option<Arc<ClientConfig>>, Error> {
    if insecure {
        eprintln!(
            "ws-client: WARNING: --insecure: the server's certificate is NOT verified; \
             anyone on the path can read and change this connection"
        );
        return Ok(Some(insecure_tls_config()));
    }
    if ca_files.is_empty() {
        return Ok(None);
    }
    let mut extra = Vec::new();
    for file in ca_files {
        let pem = std::fs::read(file).map_err(|e| {
            Error::Io(io::Error::new(
                e.kind(),
                format!("--ca {}: {e}", file.display()),
            ))
        })?;
        let certs = tls::certs_from_pem(&pem).map_err(|e| {
            Error::Io(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("--ca {}: {e}", file.display()),
            ))
        })?;
        extra.extend(certs);
    }
    Ok(Some(tls::client_config_with_extra_roots(extra)?))
}

/// A client configuration that accepts any server certificate (the
/// handshake's signatures are still checked, so the session key is the
/// certificate's, whoever it belongs to): `ws-client --insecure`, for a
/// test server with a throwaway certificate. Never the default, and not
/// in the library crates.
pub fn insecure_tls_config() -> Arc<ClientConfig> {
    let verifier = AcceptAnyCertificate(tls::provider());
    Arc::new(
        tls::builder()
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier))
            .with_no_client_auth(),
    )
}

/// The verifier behind [`insecure_tls_config`].
#[derive(Debug)]
struct AcceptAnyCertificate(Arc<tls::rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, tls::rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, tls::rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, tls::rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Parses the case count Autobahn sends on `/getCaseCount`.
fn case_count(msg: Option<Result<Message, Error>>) -> Result<u32, Error> {
    match msg {
        Some(Ok(Message::Text(t))) => t
            .trim()
            .parse()
            .map_err(|_| Error::InvalidMessage("getCaseCount did not return a number")),
        Some(Err(e)) => Err(e),
        _ => Err(Error::InvalidMessage(
            "getCaseCount returned no text message",
        )),
    }
}

/// Says how many cases ran, naming any whose connection failed (the suite
/// reports those as missing; this says why).
fn report_cases(count: u32, unreached: &[u32]) {
    if unreached.is_empty() {
        eprintln!("autobahn-client: ran {count} cases");
    } else {
        eprintln!(
            "autobahn-client: ran {} of {count} cases; could not connect for cases {unreached:?}",
            count as usize - unreached.len()
        );
    }
}

/// The Autobahn client driver for the async adapters: `$ws` is the crate (or
/// module) providing `connect`, with the same surface in each.
macro_rules! autobahn_driver {
    ($name:ident, $ws:path) => {
        async fn $name(base: &str, agent: &str, config: Config) -> Result<(), Error> {
            use $ws as ws;
            let (mut control, _) = ws::connect(&format!("{base}/getCaseCount")).await?;
            let count = case_count(control.recv().await)?;
            let _ = control.close(CloseCode::NORMAL, "").await;
            let mut unreached = Vec::new();
            for case in 1..=count {
                let url = format!("{base}/runCase?case={case}&agent={agent}");
                let Ok((mut stream, _)) = ws::connect_with(&url, config.clone()).await else {
                    unreached.push(case);
                    continue;
                };
                while let Some(Ok(msg)) = stream.recv().await {
                    if msg.is_data() && stream.send(msg).await.is_err() {
                        break;
                    }
                }
            }
            let (mut report, _) =
                ws::connect(&format!("{base}/updateReports?agent={agent}")).await?;
            let _ = report.close(CloseCode::NORMAL, "").await;
            report_cases(count, &unreached);
            Ok(())
        }
    };
}

autobahn_driver!(autobahn_tokio, ws_tokio);
autobahn_driver!(autobahn_async_std, ws_async_std);
autobahn_driver!(autobahn_smol, ws_async_std::smol);

fn autobahn_blocking(base: &str, agent: &str, config: Config) -> Result<(), Error> {
    let (mut control, _) = ws_blocking::connect(format!("{base}/getCaseCount"))?;
    let count = case_count(Some(control.read()))?;
    let _ = control.close(CloseCode::NORMAL, "");
    let mut unreached = Vec::new();
    for case in 1..=count {
        let url = format!("{base}/runCase?case={case}&agent={agent}");
        let Ok((mut stream, _)) = ws_blocking::connect_with(&url, config.clone()) else {
            unreached.push(case);
            continue;
        };
        while let Ok(msg) = stream.read() {
            if msg.is_data() && stream.send(msg).is_err() {
                break;
            }
        }
    }
    let (mut report, _) = ws_blocking::connect(format!("{base}/updateReports?agent={agent}"))?;
    let _ = report.close(CloseCode::NORMAL, "");
    report_cases(count, &unreached);
    Ok(())
}

/// Runs the standard Autobahn client protocol against `base`
/// (e.g. `ws://127.0.0.1:9001`): getCaseCount, every runCase echoing each
/// message, then updateReports. Each case connects with `config` (its
/// permessage-deflate policy decides what is offered).
pub fn run_autobahn(rt: Runtime, base: &str, agent: &str, config: Config) -> Result<(), Error> {
    let base = base.trim_end_matches('/');
    match rt {
        Runtime::Tokio => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(autobahn_tokio(base, agent, config)),
        Runtime::AsyncStd => async_std::task::block_on(autobahn_async_std(base, agent, config)),
        Runtime::Smol => smol::block_on(autobahn_smol(base, agent, config)),
        Runtime::Blocking => autobahn_blocking(base, agent, config),
    }
}
