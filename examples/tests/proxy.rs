//! Clients through an HTTP proxy on every runtime (tokio, async-std, smol,
//! blocking), against a `CONNECT` proxy written here (threads over
//! std::net on 127.0.0.1) that records each request line, `Host` and
//! `Proxy-Authorization`, then tunnels, refuses, stays silent, or sends
//! bytes right after its 200:
//!
//! - `ws://` and `wss://` through it, by `connect_proxy` and
//!   `Client::with_proxy` (TLS to the target inside the tunnel, named by
//!   the target URL), with the credentials of the proxy URL;
//! - a 407 (and a 403, a 502) is `Error::Proxy` carrying the status, and a
//!   reconnecting client gives up at once on 407 and 403 but retries 502;
//! - a silent proxy is bounded by the handshake timeout;
//! - bytes the proxy sends right after its 200 reach the WebSocket
//!   handshake (and are refused before TLS);
//! - `no_proxy` (through an injected environment) bypasses it;
//! - `ws-client --proxy` and `--proxy-from-env` through pipes.
//!
//! The body of each test is written once in the macro below: the async
//! runtimes run it with `.await` after each call, the blocking one without.

#[macro_use]
mod support;
mod tls_echo;

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use examples::Runtime;
use support::TestServer;
use support::spawned::ws_client;
use tls_echo::{TestCa, TlsEchoServer};
use ws_core::proxy::{Proxy, ProxyError};
use ws_core::rt::reconnect::Reconnect;
use ws_core::server::site::ServerMode;
use ws_core::url::WsUrl;

/// The first line of every 101 answer from our servers: the eager proxy
/// sends it itself, right after its 200, and strips it from the server's.
const STATUS_LINE: &[u8] = b"HTTP/1.1 101 Switching Protocols\r\n";

/// How long any socket in the test proxy waits for a read.
const IO_TIMEOUT: Duration = Duration::from_secs(20);

/// What the test proxy does after reading a `CONNECT` head.
#[derive(Debug, Clone, Copy)]
enum Mode {
    /// 200, then pipes both ways.
    Tunnel,
    /// Answers with this whole response and closes.
    Refuse(&'static str),
    /// Never answers (holds the connection until the client leaves).
    Silent,
    /// 200 and [`STATUS_LINE`] in one write, then pipes, dropping the
    /// server's own first line: the client handshakes only if it kept the
    /// bytes that came with the 200.
    Eager,
}

/// One `CONNECT` the proxy received.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    line: String,
    host: Option<String>,
    authorization: Option<String>,
}

impl Seen {
    /// The `user:password` of a Basic `Proxy-Authorization`.
    fn credentials(&self) -> Option<String> {
        let value = self.authorization.as_deref()?;
        let encoded = value.strip_prefix("Basic ")?;
        String::from_utf8(BASE64.decode(encoded).ok()?).ok()
    }
}

#[derive(Default)]
struct Log {
    seen: Mutex<Vec<Seen>>,
    /// Failures inside the proxy's threads, for the test to report.
    faults: Mutex<Vec<String>>,
    changed: Condvar,
}

/// The CONNECT proxy: a thread accepting on 127.0.0.1, a thread (or two)
/// per connection.
struct TestProxy {
    addr: SocketAddr,
    log: Arc<Log>,
    stop: Arc<AtomicBool>,
}

impl TestProxy {
    fn start(mode: Mode) -> TestProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let log = Arc::new(Log::default());
        let stop = Arc::new(AtomicBool::new(false));
        let (l, s) = (log.clone(), stop.clone());
        thread::spawn(move || {
            for tcp in listener.incoming() {
                if s.load(Ordering::Relaxed) {
                    break;
                }
                let Ok(tcp) = tcp else { continue };
                let log = l.clone();
                thread::spawn(move || {
                    if let Err(e) = serve(tcp, mode, &log) {
                        log.faults.lock().unwrap().push(e);
                    }
                });
            }
        });
        TestProxy { addr, log, stop }
    }

    /// `http://127.0.0.1:PORT`.
    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `http://USERINFO@127.0.0.1:PORT`.
    fn url_with(&self, userinfo: &str) -> String {
        format!("http://{userinfo}@{}", self.addr)
    }

    fn proxy(&self) -> Proxy {
        Proxy::parse(&self.url()).unwrap()
    }

    /// Every `CONNECT` so far.
    fn seen(&self) -> Vec<Seen> {
        self.log.seen.lock().unwrap().clone()
    }

    /// Waits (bounded) until `n` CONNECTs arrived; returns them.
    fn wait_seen(&self, n: usize) -> Vec<Seen> {
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut seen = self.log.seen.lock().unwrap();
        while seen.len() < n {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "timed out waiting for {n} CONNECTs: {seen:?}"
            );
            seen = self.log.changed.wait_timeout(seen, left).unwrap().0;
        }
        seen.clone()
    }

    /// Fails the test if a proxy thread went wrong.
    fn assert_no_faults(&self) {
        let faults = self.log.faults.lock().unwrap();
        assert!(faults.is_empty(), "proxy faults: {faults:?}");
    }
}

impl Drop for TestProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(self.addr);
    }
}

/// One client of the proxy.
fn serve(mut client: TcpStream, mode: Mode, log: &Log) -> Result<(), String> {
    client.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    let Some((head, rest)) = read_head(&mut client) else {
        // The drop's wake-up connection, or a client that left.
        return Ok(());
    };
    let head = String::from_utf8(head).map_err(|e| e.to_string())?;
    let mut lines = head.split("\r\n");
    let line = lines.next().unwrap_or("").to_owned();
    let header = |name: &str| {
        head.split("\r\n").skip(1).find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_owned())
        })
    };
    let seen = Seen {
        line: line.clone(),
        host: header("Host"),
        authorization: header("Proxy-Authorization"),
    };
    log.seen.lock().unwrap().push(seen);
    log.changed.notify_all();

    let words: Vec<&str> = line.split(' ').collect();
    let target = match (mode, &words[..]) {
        (Mode::Refuse(answer), _) => {
            let _ = client.write_all(answer.as_bytes());
            return Ok(());
        }
        (Mode::Silent, _) => {
            let mut buf = [0u8; 256];
            while matches!(client.read(&mut buf), Ok(n) if n > 0) {}
            return Ok(());
        }
        (_, ["CONNECT", target, "HTTP/1.1"]) => (*target).to_owned(),
        _ => return Err(format!("not a CONNECT: {line:?}")),
    };
    let mut server = TcpStream::connect(&target).map_err(|e| format!("{target}: {e}"))?;
    server.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    let mut answer = b"HTTP/1.1 200 Connection established\r\n\r\n".to_vec();
    if matches!(mode, Mode::Eager) {
        answer.extend_from_slice(STATUS_LINE);
    }
    // One write: the bytes after the 200 arrive with it.
    client.write_all(&answer).map_err(|e| e.to_string())?;
    server.write_all(&rest).map_err(|e| e.to_string())?;

    // Client to server on another thread; server to client here.
    let (mut c, mut s) = (client.try_clone().unwrap(), server.try_clone().unwrap());
    let upstream = thread::spawn(move || {
        let _ = std::io::copy(&mut c, &mut s);
        let _ = s.shutdown(Shutdown::Write);
    });
    if matches!(mode, Mode::Eager) {
        // Drop the server's status line: the client already has it.
        let mut first = Vec::new();
        let mut byte = [0u8; 1];
        while !first.ends_with(b"\r\n") && first.len() < 256 {
            match server.read(&mut byte) {
                Ok(1) => first.push(byte[0]),
                _ => break,
            }
        }
        if first != STATUS_LINE {
            // A wss:// client refused the early bytes and left: nothing to
            // check. Otherwise the server's answer is not what we expected.
            if !first.is_empty() {
                return Err(format!(
                    "server's first line: {:?}",
                    String::from_utf8_lossy(&first)
                ));
            }
        }
    }
    let _ = std::io::copy(&mut server, &mut client);
    let _ = client.shutdown(Shutdown::Write);
    let _ = upstream.join();
    Ok(())
}

/// Reads a request head (bounded): the head, and any bytes after it.
fn read_head(tcp: &mut TcpStream) -> Option<(Vec<u8>, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    while buf.len() < 16 * 1024 {
        let n = tcp.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let rest = buf.split_off(end + 4);
            buf.truncate(end);
            return Some((buf, rest));
        }
    }
    None
}

/// A certificate for the names the tests connect by.
const LOCAL_NAMES: [&str; 2] = ["localhost", "127.0.0.1"];

/// The proxy URL's credentials, percent-encoded, and what they decode to.
const USERINFO: &str = "proxy%20user:p%40ss:w%2Frd";
const CREDENTIALS: &str = "proxy user:p@ss:w/rd";

/// An environment of `vars` only.
fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
    move |name| {
        vars.iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| (*v).to_owned())
    }
}

fn refused_status(err: &ws_core::Error) -> u16 {
    match err {
        ws_core::Error::Proxy(ProxyError::Refused { status, .. }) => *status,
        other => panic!("not a proxy refusal: {other:?}"),
    }
}

const REFUSE_407: &str = "HTTP/1.1 407 Proxy Authentication Required\r\n\
    Proxy-Authenticate: Basic realm=\"test\"\r\nContent-Length: 0\r\n\r\n";
const REFUSE_403: &str = "HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n";
const REFUSE_502: &str = "HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n";

macro_rules! through_proxy {
    (
        $name:ident,
        rt = $($rt:ident)::+,
        krate = $krate:ident,
        runtime = $runtime:expr,
        block_on = $block_on:expr,
        [$($aw:tt)*]
    ) => {
        mod $name {
            use super::*;
            use $($rt)::+::{Client, connect_proxy};
            use $krate::{CloseCode, Config, Error, Message};

            #[test]
            fn ws_and_wss_through_the_proxy_with_credentials() {
                let proxy = TestProxy::start(Mode::Tunnel);
                let with_credentials = Proxy::parse(&proxy.url_with(USERINFO)).unwrap();
                let server = TestServer::start($runtime, ServerMode::Echo, 1024);
                let ca = TestCa::new("ws test CA");
                // For 127.0.0.1 only, so the TLS server name must be the
                // target's address (the proxy's would fit it too; the
                // Client below tells them apart).
                let tls_ip = TlsEchoServer::start(&ca.issue(&["127.0.0.1"]));
                let tls_name = TlsEchoServer::start(&ca.issue(&["localhost"]));
                #[allow(clippy::redundant_closure_call)]
                $block_on(async {
                    // ws:// by connect_proxy.
                    let (mut ws, response) =
                        connect_proxy(&server.url("/"), Config::default(), &with_credentials, None)
                            $($aw)*
                            .unwrap();
                    assert_eq!(response.status(), 101);
                    ws.send(Message::text("plain")) $($aw)*.unwrap();
                    assert_eq!(ws.recv() $($aw)*.unwrap().unwrap(), Message::text("plain"));
                    ws.close(CloseCode::NORMAL, "") $($aw)*.unwrap();

                    // wss:// by connect_proxy: TLS inside the tunnel.
                    let (mut ws, _) = connect_proxy(
                        &tls_ip.url("/"),
                        Config::default(),
                        &with_credentials,
                        Some(ca.client_config()),
                    )
                    $($aw)*
                    .unwrap();
                    assert!(ws.get_ref().is_tls());
                    ws.send(Message::text("secret")) $($aw)*.unwrap();
                    assert_eq!(ws.recv() $($aw)*.unwrap().unwrap(), Message::text("secret"));
                    ws.close(CloseCode::NORMAL, "") $($aw)*.unwrap();

                    // wss:// by the Client, named "localhost": the proxy is
                    // at 127.0.0.1, the certificate only for localhost.
                    let url = format!("wss://localhost:{}/", tls_name.addr().port());
                    let mut client = Client::new(&url)
                        .unwrap()
                        .with_tls(ca.client_config())
                        .with_proxy(proxy.proxy());
                    client.connect() $($aw)*.unwrap();
                    client.send_message("by name") $($aw)*.unwrap();
                    assert_eq!(client.recv() $($aw)*.unwrap().unwrap(), Message::text("by name"));
                    client.close() $($aw)*.unwrap();
                });
                let seen = proxy.wait_seen(3);
                let expect = |addr: SocketAddr| format!("CONNECT 127.0.0.1:{} HTTP/1.1", addr.port());
                assert_eq!(seen[0].line, expect(server.addr()));
                assert_eq!(seen[0].host, Some(format!("127.0.0.1:{}", server.addr().port())));
                assert_eq!(seen[0].credentials().as_deref(), Some(CREDENTIALS));
                assert_eq!(seen[1].line, expect(tls_ip.addr()));
                assert_eq!(seen[1].credentials().as_deref(), Some(CREDENTIALS));
                assert_eq!(
                    seen[2].line,
                    format!("CONNECT localhost:{} HTTP/1.1", tls_name.addr().port())
                );
                assert_eq!(seen[2].authorization, None);
                proxy.assert_no_faults();
            }

            #[test]
            fn a_refusal_carries_its_status_and_407_403_are_final() {
                let server = TestServer::start($runtime, ServerMode::Echo, 1024);
                let url = server.url("/");
                let retrying = || {
                    Reconnect::new()
                        .initial_delay(Duration::from_millis(10))
                        .max_delay(Duration::from_millis(20))
                        .max_attempts(3)
                };
                for (answer, status, attempts) in
                    [(REFUSE_407, 407, 1), (REFUSE_403, 403, 1), (REFUSE_502, 502, 3)]
                {
                    let proxy = TestProxy::start(Mode::Refuse(answer));
                    #[allow(clippy::redundant_closure_call)]
                    $block_on(async {
                        let err = connect_proxy(&url, Config::default(), &proxy.proxy(), None)
                            $($aw)*
                            .unwrap_err();
                        assert!(err.is_proxy(), "{err:?}");
                        assert_eq!(refused_status(&err), status);
                        assert!(err.to_string().contains(&status.to_string()), "{err}");

                        let mut client = Client::new(&url)
                            .unwrap()
                            .with_proxy(proxy.proxy())
                            .reconnect(retrying());
                        let err: Error = client.connect() $($aw)*.unwrap_err();
                        assert_eq!(refused_status(&err), status);
                    });
                    // One CONNECT for connect_proxy, then the client's.
                    let seen = proxy.wait_seen(1 + attempts);
                    thread::sleep(Duration::from_millis(100));
                    assert_eq!(proxy.seen().len(), 1 + attempts, "{status}: {seen:?}");
                    proxy.assert_no_faults();
                }
            }

            #[test]
            fn a_silent_proxy_is_bounded_by_the_handshake_timeout() {
                let proxy = TestProxy::start(Mode::Silent);
                let server = TestServer::start($runtime, ServerMode::Echo, 1024);
                let quick = Config::default().handshake_timeout(Duration::from_millis(300));
                let started = Instant::now();
                #[allow(clippy::redundant_closure_call)]
                $block_on(async {
                    let err = connect_proxy(&server.url("/"), quick, &proxy.proxy(), None)
                        $($aw)*
                        .unwrap_err();
                    assert!(
                        matches!(err, Error::Timeout(ws_core::TimeoutKind::Handshake)),
                        "{err:?}"
                    );
                });
                assert!(started.elapsed() < Duration::from_secs(5));
                assert_eq!(proxy.wait_seen(1).len(), 1);
            }

            #[test]
            fn bytes_right_after_the_200_reach_the_handshake() {
                let proxy = TestProxy::start(Mode::Eager);
                let server = TestServer::start($runtime, ServerMode::Echo, 1024);
                let ca = TestCa::new("ws test CA");
                let tls = TlsEchoServer::start(&ca.issue(&LOCAL_NAMES));
                #[allow(clippy::redundant_closure_call)]
                $block_on(async {
                    // The 101's status line came with the proxy's 200; the
                    // rest of it from the server.
                    let (mut ws, response) =
                        connect_proxy(&server.url("/"), Config::default(), &proxy.proxy(), None)
                            $($aw)*
                            .unwrap();
                    assert_eq!(response.status(), 101);
                    ws.send(Message::text("intact")) $($aw)*.unwrap();
                    assert_eq!(ws.recv() $($aw)*.unwrap().unwrap(), Message::text("intact"));
                    ws.close(CloseCode::NORMAL, "") $($aw)*.unwrap();

                    // Before TLS nothing may come: a clear error, not lost bytes.
                    let err = connect_proxy(
                        &tls.url("/"),
                        Config::default(),
                        &proxy.proxy(),
                        Some(ca.client_config()),
                    )
                    $($aw)*
                    .unwrap_err();
                    assert!(
                        matches!(
                            err,
                            Error::Proxy(ProxyError::DataBeforeTls { len }) if len == STATUS_LINE.len()
                        ),
                        "{err:?}"
                    );
                });
                proxy.wait_seen(2);
                proxy.assert_no_faults();
            }

            #[test]
            fn no_proxy_bypasses_the_proxy() {
                let proxy = TestProxy::start(Mode::Tunnel);
                let server = TestServer::start($runtime, ServerMode::Echo, 1024);
                let url = server.url("/");
                let target = WsUrl::parse(&url).unwrap();
                let proxy_url = proxy.url();
                let bypassed = [("ws_proxy", proxy_url.as_str()), ("no_proxy", "localhost,127.0.0.1")];
                let proxied = [("ws_proxy", proxy_url.as_str()), ("no_proxy", "localhost")];
                #[allow(clippy::redundant_closure_call)]
                $block_on(async {
                    // no_proxy names the target: directly, the proxy sees nothing.
                    let chosen = Proxy::from_env_with(&target, env(&bypassed)).unwrap();
                    assert_eq!(chosen, None);
                    let mut client = Client::new(&url).unwrap().with_proxy(chosen);
                    client.connect() $($aw)*.unwrap();
                    client.send_message("direct") $($aw)*.unwrap();
                    assert_eq!(client.recv() $($aw)*.unwrap().unwrap(), Message::text("direct"));
                    client.close() $($aw)*.unwrap();
                    assert!(proxy.seen().is_empty(), "{:?}", proxy.seen());

                    // It does not: through the proxy.
                    let chosen = Proxy::from_env_with(&target, env(&proxied)).unwrap();
                    assert_eq!(chosen.as_ref(), Some(&proxy.proxy()));
                    let mut client = Client::new(&url).unwrap().with_proxy(chosen);
                    client.connect() $($aw)*.unwrap();
                    client.send_message("proxied") $($aw)*.unwrap();
                    assert_eq!(client.recv() $($aw)*.unwrap().unwrap(), Message::text("proxied"));
                    client.close() $($aw)*.unwrap();
                });
                assert_eq!(proxy.wait_seen(1).len(), 1);
                proxy.assert_no_faults();
            }

            #[test]
            fn ws_client_through_the_proxy() {
                super::ws_client_through_the_proxy($runtime);
            }
        }
    };
}

on_every_runtime!(through_proxy);

/// `ws-client --proxy URL` and `--proxy-from-env` echo through the proxy;
/// `no_proxy` in the child's environment bypasses it; a refusing proxy
/// ends the client with its status.
fn ws_client_through_the_proxy(rt: Runtime) {
    let proxy = TestProxy::start(Mode::Tunnel);
    let server = TestServer::start(rt, ServerMode::Echo, 1024);
    let url = server.url("/");
    let lines = ["through the proxy", "κόσμε ☃"];
    let proxy_with_credentials = proxy.url_with(USERINFO);
    let run = |args: &[&str], env: &[(&str, &str)]| {
        let mut all = vec![url.as_str(), "--runtime", rt.name()];
        all.extend_from_slice(args);
        ws_client(&all, env, &lines)
    };

    let (ok, got, stderr) = run(&["--proxy", &proxy_with_credentials], &[]);
    assert!(ok, "{stderr}");
    assert_eq!(got, lines, "{stderr}");
    let seen = proxy.wait_seen(1);
    assert_eq!(
        seen[0].line,
        format!("CONNECT 127.0.0.1:{} HTTP/1.1", server.addr().port())
    );
    assert_eq!(seen[0].credentials().as_deref(), Some(CREDENTIALS));

    let env_proxy = [("ws_proxy", proxy.url())];
    let env_proxy: Vec<(&str, &str)> = env_proxy.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (ok, got, stderr) = run(&["--proxy-from-env"], &env_proxy);
    assert!(ok, "{stderr}");
    assert_eq!(got, lines, "{stderr}");
    assert_eq!(proxy.wait_seen(2).len(), 2);

    // Set but not asked for: not used.
    let (ok, got, stderr) = run(&[], &env_proxy);
    assert!(ok, "{stderr}");
    assert_eq!(got, lines, "{stderr}");
    let mut bypass = env_proxy.clone();
    bypass.push(("NO_PROXY", "127.0.0.1"));
    let (ok, got, stderr) = run(&["--proxy-from-env"], &bypass);
    assert!(ok, "{stderr}");
    assert_eq!(got, lines, "{stderr}");
    thread::sleep(Duration::from_millis(100));
    assert_eq!(proxy.seen().len(), 2, "{:?}", proxy.seen());

    let refusing = TestProxy::start(Mode::Refuse(REFUSE_407));
    let (ok, got, stderr) = run(&["--proxy", &refusing.url()], &[]);
    assert!(!ok);
    assert!(got.is_empty(), "{got:?}");
    assert!(stderr.contains("407"), "{stderr}");

    let socks = [("ws_proxy", "socks5://127.0.0.1:1")];
    let (ok, _, stderr) = run(&["--proxy-from-env"], &socks);
    assert!(!ok);
    assert!(
        stderr.contains("ws_proxy") && stderr.contains("socks5"),
        "{stderr}"
    );
    proxy.assert_no_faults();
}
