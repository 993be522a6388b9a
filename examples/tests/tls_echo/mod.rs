//! A wss:// echo server for the client tests, written here with rustls
//! directly over std (a thread per connection,
//! `rustls::StreamOwned<ServerConnection, TcpStream>`, ws-core's
//! `ServerHandshake` and `Connection`), so the clients are tested against
//! no adapter's server; and certificates made at run time with rcgen from
//! a test CA, so nothing committed expires.

#![allow(dead_code)]

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use ws_core::handshake::{Accept, ServerHandshake};
use ws_core::rt::tls::rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use ws_core::rt::tls::rustls::{ClientConfig, ServerConfig, ServerConnection, StreamOwned};
use ws_core::rt::tls::{self, CertificateDer};
use ws_core::{Config, Connection, Error, Message, Role};

/// A certificate authority made for one test run.
pub struct TestCa {
    cert: CertificateDer<'static>,
    pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl TestCa {
    /// A new CA named `name`.
    pub fn new(name: &str) -> TestCa {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let cert = params.self_signed(&key).unwrap();
        TestCa {
            cert: cert.der().clone(),
            pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// A server certificate for `names` (DNS names or IP addresses) and its
    /// key, issued by this CA.
    pub fn issue(&self, names: &[&str]) -> ServerCert {
        let key = KeyPair::generate().unwrap();
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(names).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, "ws test server");
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        ServerCert {
            chain: vec![cert.der().clone()],
            key: PrivatePkcs8KeyDer::from(key.serialize_der()),
        }
    }

    /// The CA certificate.
    pub fn cert(&self) -> CertificateDer<'static> {
        self.cert.clone()
    }

    /// The CA certificate as PEM.
    pub fn pem(&self) -> &str {
        &self.pem
    }

    /// A client configuration that trusts this CA and nothing else.
    pub fn client_config(&self) -> Arc<ClientConfig> {
        tls::client_config(tls::root_store([self.cert()]).unwrap())
    }

    /// Writes the CA certificate to a fresh PEM file (removed on drop).
    pub fn pem_file(&self) -> TempFile {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "ws-test-ca-{}-{}.pem",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::write(&path, &self.pem).unwrap();
        TempFile(path)
    }
}

/// A file removed on drop.
pub struct TempFile(pub PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// A server certificate chain and its key.
pub struct ServerCert {
    chain: Vec<CertificateDer<'static>>,
    key: PrivatePkcs8KeyDer<'static>,
}

impl ServerCert {
    fn server_config(&self) -> Arc<ServerConfig> {
        let config = ServerConfig::builder_with_provider(tls::provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                self.chain.clone(),
                PrivateKeyDer::Pkcs8(self.key.clone_key()),
            )
            .unwrap();
        Arc::new(config)
    }
}

/// The text that makes the server drop the connection at once, without
/// TLS close_notify.
pub const DROP_NOW: &str = "drop now";

/// How one connection to the server ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ending {
    /// The closing handshake, then the client's TLS close_notify.
    CloseNotify,
    /// The closing handshake, then TCP ended without close_notify.
    NoCloseNotify,
    /// Something failed (the TLS handshake, the WebSocket handshake, I/O).
    Failed(String),
}

#[derive(Default)]
struct Endings {
    list: Mutex<Vec<Ending>>,
    changed: Condvar,
}

/// The wss:// echo server: every text and binary message comes back.
pub struct TlsEchoServer {
    addr: SocketAddr,
    abrupt: Arc<AtomicBool>,
    endings: Arc<Endings>,
    stop: Arc<AtomicBool>,
}

impl TlsEchoServer {
    /// Starts on 127.0.0.1 with an OS-chosen port, presenting `cert`.
    pub fn start(cert: &ServerCert) -> TlsEchoServer {
        let config = cert.server_config();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let endings = Arc::new(Endings::default());
        let stop = Arc::new(AtomicBool::new(false));
        let abrupt = Arc::new(AtomicBool::new(false));
        let (e, s, a) = (endings.clone(), stop.clone(), abrupt.clone());
        thread::spawn(move || {
            for tcp in listener.incoming() {
                if s.load(Ordering::Relaxed) {
                    break;
                }
                let Ok(tcp) = tcp else { continue };
                let (config, endings) = (config.clone(), e.clone());
                let abrupt = a.load(Ordering::Relaxed);
                thread::spawn(move || {
                    let ending = serve(tcp, config, abrupt);
                    endings.list.lock().unwrap().push(ending);
                    endings.changed.notify_all();
                });
            }
        });
        TlsEchoServer {
            addr,
            abrupt,
            endings,
            stop,
        }
    }

    /// From now on, end TCP after the closing handshake without TLS
    /// close_notify (as a careless server does).
    pub fn skip_close_notify(&self) {
        self.abrupt.store(true, Ordering::Relaxed);
    }

    /// `wss://127.0.0.1:PORT{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("wss://{}{path}", self.addr)
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Waits (bounded) until `n` connections have ended; returns how they
    /// all ended so far.
    pub fn wait_endings(&self, n: usize) -> Vec<Ending> {
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut list = self.endings.list.lock().unwrap();
        while list.len() < n {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "timed out waiting for {n} endings: {list:?}"
            );
            list = self.endings.changed.wait_timeout(list, left).unwrap().0;
        }
        list.clone()
    }
}

impl Drop for TlsEchoServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(self.addr);
    }
}

/// One connection: TLS, the opening handshake, echo until the closing
/// handshake is done, then how the client ended TLS.
fn serve(tcp: TcpStream, config: Arc<ServerConfig>, abrupt: bool) -> Ending {
    tcp.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let conn = match ServerConnection::new(config) {
        Ok(conn) => conn,
        Err(e) => return Ending::Failed(e.to_string()),
    };
    let mut io = StreamOwned::new(conn, tcp);
    if let Err(e) = echo(&mut io) {
        return Ending::Failed(e.to_string());
    }
    // The closing handshake is over: the server ends TCP first (RFC 6455
    // 7.1.1), after its close_notify, then sees how the client ends.
    if abrupt {
        let _ = io.sock.shutdown(std::net::Shutdown::Both);
        return Ending::Failed("ended without close_notify, as asked".into());
    }
    io.conn.send_close_notify();
    if io.flush().is_err() || io.sock.shutdown(std::net::Shutdown::Write).is_err() {
        return Ending::Failed("could not end the server's side".into());
    }
    let mut rest = [0u8; 64];
    loop {
        match io.read(&mut rest) {
            Ok(0) => break Ending::CloseNotify,
            Ok(_) => continue,
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => break Ending::NoCloseNotify,
            Err(e) => break Ending::Failed(e.to_string()),
        }
    }
}

fn echo(io: &mut StreamOwned<ServerConnection, TcpStream>) -> Result<(), Error> {
    let mut hs = ServerHandshake::new();
    let req = loop {
        if read_some(io, hs.read_buf())? == 0 {
            return Err(Error::AbnormalClosure);
        }
        if let Some(req) = hs.poll_request()? {
            break req;
        }
    };
    let response = req.accept(&Accept::new())?;
    io.write_all(&response)?;
    io.flush()?;
    let mut conn = Connection::with_buffered(Role::Server, Config::default(), hs.take_remaining());
    loop {
        while let Some(msg) = conn.poll_message()? {
            if msg == Message::text(DROP_NOW) {
                // A crash (or a truncation attack): TCP ends, no close_notify.
                let _ = io.sock.shutdown(std::net::Shutdown::Both);
                return Err(Error::AbnormalClosure);
            }
            if matches!(msg, Message::Text(_) | Message::Binary(_)) {
                conn.send(&msg)?;
            }
        }
        while conn.wants_write() {
            let n = io.write(conn.pending_transmit())?;
            conn.advance_transmit(n);
        }
        io.flush()?;
        if conn.should_close_transport() {
            return Ok(());
        }
        if read_some(io, conn.read_buf())? == 0 {
            conn.handle_eof();
        }
    }
}

/// One read appended to `buf`.
fn read_some(io: &mut impl Read, buf: &mut ws_core::BytesMut) -> io::Result<usize> {
    let start = buf.len();
    buf.resize(start + 16 * 1024, 0);
    let n = io.read(&mut buf[start..]);
    buf.truncate(start + *n.as_ref().unwrap_or(&0));
    n
}

/// A TCP server on 127.0.0.1 that answers every connection with `reply`
/// and closes (a plain-HTTP server where TLS was expected), or with
/// `reply` empty, accepts and says nothing.
pub fn not_tls_server(reply: &'static [u8]) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || {
        for tcp in listener.incoming() {
            let Ok(mut tcp) = tcp else { continue };
            thread::spawn(move || {
                let mut buf = [0u8; 1024];
                let _ = tcp.set_read_timeout(Some(Duration::from_secs(10)));
                let _ = tcp.read(&mut buf);
                if reply.is_empty() {
                    // Hold the connection, silent, until the client leaves.
                    while matches!(tcp.read(&mut buf), Ok(n) if n > 0) {}
                } else {
                    let _ = tcp.write_all(reply);
                }
            });
        }
    });
    addr
}
