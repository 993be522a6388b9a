//! A `ws-server` process under test (optionally with its descriptor limit
//! lowered by `ulimit -n`), what the tests measure of it from /proc (CPU,
//! open descriptors), and a client connect that reports instead of
//! panicking (upgraded, refused with a status, or no answer in time).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use examples::Runtime;
use ws_core::handshake::{ClientHandshake, ClientRequest};
use ws_core::{Config, Connection, Role};

use super::RawClient;

/// One `ws-server` process, killed when dropped.
pub struct ServerProcess {
    child: Child,
    addr: SocketAddr,
    /// Its stderr lines.
    log: Arc<Mutex<Vec<String>>>,
}

impl ServerProcess {
    /// Starts `ws-server --runtime RT --threads 2 --addr 127.0.0.1:0` with
    /// `args`, under `ulimit -n fd_limit` when given (the shell execs the
    /// server, so the process id is the server's).
    pub fn start(rt: Runtime, fd_limit: Option<u32>, args: &[&str]) -> ServerProcess {
        let bin = env!("CARGO_BIN_EXE_ws-server");
        let mut cmd = match fd_limit {
            Some(n) => {
                let mut c = Command::new("sh");
                c.args(["-c", &format!("ulimit -n {n} && exec \"$0\" \"$@\""), bin]);
                c
            }
            None => Command::new(bin),
        };
        let mut child = cmd
            .args(["--addr", "127.0.0.1:0", "--runtime", rt.name()])
            .args(["--threads", "2"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start ws-server");
        let addr = listen_addr(&mut child, rt.name());
        let log = Arc::new(Mutex::new(Vec::new()));
        let sink = log.clone();
        let stderr = child.stderr.take().unwrap();
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("  ws-server: {line}");
                sink.lock().unwrap().push(line);
            }
        });
        ServerProcess { child, addr, log }
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Its stderr lines containing `what`, so far.
    pub fn log_count(&self, what: &str) -> usize {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains(what))
            .count()
    }

    /// Whether the process is still running (it has not exited, e.g. on a
    /// panic).
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Descriptors it has open now.
    pub fn open_fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .map(|d| d.count())
            .unwrap_or(0)
    }

    /// The share of one core it used over the next `over` (user plus
    /// system time from /proc/PID/stat), e.g. 1.0 for a core spinning.
    pub fn cpu_share(&self, over: Duration) -> f64 {
        let start = (cpu_ticks(self.pid()), Instant::now());
        thread::sleep(over);
        let ticks = cpu_ticks(self.pid()) - start.0;
        ticks as f64 / clock_ticks_per_sec() / start.1.elapsed().as_secs_f64()
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// utime + stime of `pid`, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // The command name (field 2) may hold spaces: count from its `)`.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    // Fields 14 and 15 of the line are the 12th and 13th after the name.
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

/// `getconf CLK_TCK`, 100 if it cannot be asked.
fn clock_ticks_per_sec() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// How a connection attempt ended.
// Short-lived and matched at once: boxing the client would only add noise.
#[allow(clippy::large_enum_variant)]
pub enum Attempt {
    /// Upgraded: a client ready to talk.
    Upgraded(RawClient),
    /// Answered with this non-101 response head.
    Refused(String),
    /// Connected, but no answer within the timeout (e.g. waiting in the
    /// listen backlog of a server out of descriptors): the socket, still
    /// waiting, with its request sent.
    NoAnswer(TcpStream),
    /// The connection failed (refused, reset, closed without an answer).
    Failed(String),
}

impl Attempt {
    /// The client, or a panic saying what happened instead.
    pub fn upgraded(self, what: &str) -> RawClient {
        match self {
            Attempt::Upgraded(c) => c,
            Attempt::Refused(head) => panic!("{what}: refused: {head:?}"),
            Attempt::NoAnswer(_) => panic!("{what}: no answer"),
            Attempt::Failed(e) => panic!("{what}: {e}"),
        }
    }
}

/// Every variable a client's `--proxy-from-env` may read.
pub const PROXY_VARS: [&str; 12] = [
    "wss_proxy",
    "ws_proxy",
    "https_proxy",
    "http_proxy",
    "all_proxy",
    "no_proxy",
    "WSS_PROXY",
    "WS_PROXY",
    "HTTPS_PROXY",
    "HTTP_PROXY",
    "ALL_PROXY",
    "NO_PROXY",
];

/// Runs `ws-client` with `args` and `env` (no other proxy variable: those
/// of [`PROXY_VARS`] are removed from its environment so the machine's own
/// settings cannot interfere), feeds it `lines`, ends its input, and returns
/// its exit success, stdout lines and stderr. Fails the test if it has not
/// exited 20 s after its output ended.
pub fn ws_client(
    args: &[&str],
    env: &[(&str, &str)],
    lines: &[&str],
) -> (bool, Vec<String>, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_ws-client"));
    for var in PROXY_VARS {
        command.env_remove(var);
    }
    let mut child = command
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    for l in lines {
        // The client may have exited already (a refused tunnel or
        // certificate).
        let _ = writeln!(stdin, "{l}");
    }
    drop(stdin);
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let got: Vec<String> = stdout.lines().map(|l| l.unwrap()).collect();
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "ws-client did not exit");
        thread::sleep(Duration::from_millis(20));
    };
    (status.success(), got, stderr)
}

/// The address a `ws-server` started on port 0 listens on: read from the
/// first line it prints on stdout (`... ws://ADDR/...`).
pub fn listen_addr(child: &mut Child, who: &str) -> SocketAddr {
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    line.split("ws://")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("{who}: no address in {line:?}"))
}

/// Connects to `addr` and asks for an upgrade of `/ws`, waiting at most
/// `timeout` for the answer; never panics.
pub fn try_connect(addr: SocketAddr, timeout: Duration) -> Attempt {
    try_connect_to(addr, "/ws", timeout)
}

/// Connects to `addr` and asks for an upgrade of `path` (with its query),
/// waiting at most `timeout` for the answer; never panics.
pub fn try_connect_to(addr: SocketAddr, path: &str, timeout: Duration) -> Attempt {
    let mut stream = match TcpStream::connect_timeout(&addr, timeout) {
        Ok(s) => s,
        Err(e) => return Attempt::Failed(format!("connect: {e}")),
    };
    let _ = stream.set_nodelay(true);
    let req = ClientRequest::new(&addr.ip().to_string(), addr.port(), path);
    let (mut hs, bytes) = ClientHandshake::with_config(&req, &Config::default());
    if let Err(e) = stream.write_all(&bytes) {
        return Attempt::Failed(format!("write: {e}"));
    }
    let deadline = Instant::now() + timeout;
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Attempt::NoAnswer(stream);
        }
        let _ = stream.set_read_timeout(Some(left));
        let n = match stream.read(&mut buf) {
            Ok(0) if head.is_empty() => return Attempt::Failed("closed".into()),
            Ok(0) => return Attempt::Refused(String::from_utf8_lossy(&head).into_owned()),
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return Attempt::NoAnswer(stream);
            }
            Err(e) => return Attempt::Failed(format!("read: {e}")),
        };
        head.extend_from_slice(&buf[..n]);
        match hs.feed(&buf[..n]) {
            Ok(Some(_)) => {
                let _ = stream.set_read_timeout(Some(Duration::from_secs(20)));
                let conn =
                    Connection::with_buffered(Role::Client, Config::default(), hs.take_remaining());
                return Attempt::Upgraded(RawClient { stream, conn });
            }
            Ok(None) => {}
            Err(_) => {
                // A complete non-101 head (the body may follow).
                return Attempt::Refused(String::from_utf8_lossy(&head).into_owned());
            }
        }
    }
}

/// Reads the response head that `stream` (a [`Attempt::NoAnswer`]) gets
/// within `timeout`: what a connection waiting in the backlog is answered
/// once the server accepts it. Empty if nothing came.
pub fn late_answer(stream: &mut TcpStream, timeout: Duration) -> String {
    let deadline = Instant::now() + timeout;
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        let _ = stream.set_read_timeout(Some(left));
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&head).into_owned()
}

/// Raises this process's soft descriptor limit to its hard limit (a fresh
/// Debian machine starts at 1,024), so a test holding hundreds of sockets,
/// and the servers it starts, are not limited by it. Returns the soft
/// limit now in force.
pub fn raise_fd_limit() -> u64 {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: `lim` is a valid, writable rlimit.
        if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0 {
            if lim.rlim_cur < lim.rlim_max {
                let raised = libc::rlimit {
                    rlim_cur: lim.rlim_max,
                    rlim_max: lim.rlim_max,
                };
                // SAFETY: a valid rlimit; failing leaves the limit as it was.
                if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
                    return raised.rlim_cur;
                }
            }
            return lim.rlim_cur;
        }
    }
    0
}
