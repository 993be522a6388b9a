//! The soak (issue 18), on every runtime, against a `ws-server` process in
//! chat mode: for `SOAK_SECONDS` (default 60; 150 on the blocking
//! server, whose RSS takes longer to settle) a rate-bounded mixed
//! workload runs while the server's resident memory (`VmRSS`), its open
//! descriptors (`/proc/PID/fd`) and its client registry (`GET /clients`)
//! are sampled every second.
//!
//! The workload:
//! - chat clients that stay: [`CHAT_CLIENTS`] in the lobby, each sending
//!   a numbered message every [`CHAT_PERIOD`] and checking that it gets
//!   every other one's (and its own) in order;
//! - echo clients that stay: [`ECHO_CLIENTS`], each alone in a room of its
//!   own (where the chat sends every message back to its sender), sending
//!   every [`ECHO_PERIOD`] and checking every message comes back, in order;
//! - [`CHURNERS`] threads, each running one connection cycle every
//!   [`CYCLE_PERIOD`], in turn: a clean visit (upgrade, one message, close
//!   handshake) in a room of its own or in the lobby; a reset (RST) after a
//!   message; a vanish in the middle of a frame; a half-close; a client
//!   that stalls (never reads or writes again: keepalive drops it); a
//!   request head that stops halfway (the handshake timeout drops it) or
//!   vanishes; a malformed or refused handshake (garbage, no upgrade
//!   headers, a wrong version, an empty room name: each must get its 4xx);
//!   and the test page.
//!
//! After a warm-up ([`warm_up`]), the test asserts that the RSS fitted
//! linearly over the rest of the run grows by less than
//! [`max_leak_per_cycle_kib`] per connection cycle (at the cycle rate
//! measured in the run: a leak of 1 KiB per connection fails it), that the
//! descriptors return to their baseline and the registry to 0 once the
//! clients left, that no message of a staying client was lost, that every
//! well-formed handshake was answered with its 101 and every bad one with
//! its 4xx, and that the server did not panic. The figures are printed
//! (and written to `$WS_ARTIFACTS_DIR/soak/<runtime>.csv`, one row per
//! second, when that is set).
//!
//! Ignored by default (a minute or more per runtime); `.ci/run` runs it:
//! `SOAK_SECONDS=60 cargo test --release -p examples --test soak -- --ignored --test-threads=4 --nocapture` (the four runtimes at once, as `.ci/run` does).

mod support;

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use examples::Runtime;
use support::RawClient;
use support::fault_proxy::abort;
use support::spawned::{Attempt, ServerProcess, raise_fd_limit, try_connect_to};
use ws_core::{CloseCode, Error, Message};

/// Chat clients that stay in the lobby for the whole run.
const CHAT_CLIENTS: usize = 6;
/// How often each of them sends.
const CHAT_PERIOD: Duration = Duration::from_millis(100);
/// Echo clients that stay, each in a room of its own.
const ECHO_CLIENTS: usize = 4;
/// How often each of them sends.
const ECHO_PERIOD: Duration = Duration::from_millis(50);
/// Threads running connection cycles.
const CHURNERS: usize = 4;
/// One cycle per churner this often (at most: a slow cycle delays the next).
const CYCLE_PERIOD: Duration = Duration::from_millis(200);
/// `--keepalive-ms` and `--keepalive-timeout-ms`: a stalled client is
/// dropped about 2 s after it went silent.
const KEEPALIVE_MS: u64 = 1000;
/// `--handshake-timeout-ms`: a request head that stops halfway is dropped
/// after this long.
const HANDSHAKE_TIMEOUT_MS: u64 = 1000;
/// How long a stalled, half-closed or half-sent client holds its socket
/// before it lets go: past the keepalive and handshake timeouts, so the
/// server is the one that ends most of them.
const HOLD: Duration = Duration::from_secs(3);
/// Samples before this are not fitted: the server's RSS grows while its
/// allocator's heap settles, then levels off. On the async runtimes that
/// takes about half a minute (500-700 KiB); the blocking server's (a
/// thread per connection) keeps growing for minutes, ever slower (fitted
/// over 30-80 s of a 240 s run: 1,018 KiB/min; 60-150 s: 447; 120-180 s:
/// 279; 180-240 s: 180), so it warms up for two.
fn warm_up(rt: Runtime) -> Duration {
    match rt {
        Runtime::Blocking => Duration::from_secs(120),
        _ => Duration::from_secs(30),
    }
}

/// The shortest fitted stretch after the warm-up.
const MIN_FITTED: Duration = Duration::from_secs(30);
/// The bound on the fitted RSS slope, in KiB per connection cycle: half
/// of the 1 KiB per connection the soak must catch; on the blocking
/// server, whose RSS still grows after its warm-up (+516 KiB/min over
/// 120-150 s in one run, about 0.43 KiB per cycle), the whole KiB (a 1 KiB
/// leak adds about 1.1 KiB per cycle, connections of the sampler included,
/// on top of that growth).
fn max_leak_per_cycle_kib(rt: Runtime) -> f64 {
    match rt {
        Runtime::Blocking => 1.0,
        _ => 0.5,
    }
}
/// How long the end of the run may take to settle (clients' closes, the
/// held sockets, the server's close timeout of 5 s).
const SETTLE: Duration = Duration::from_secs(15);
/// Answers and reads give up after this (a loaded two-core machine).
const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// The run's length: `SOAK_SECONDS`, 60 by default, and at least the
/// warm-up plus [`MIN_FITTED`] (on the blocking server: 150 s).
fn soak_duration(rt: Runtime) -> Duration {
    let secs = std::env::var("SOAK_SECONDS")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or(60);
    Duration::from_secs(secs).max(warm_up(rt) + MIN_FITTED)
}

/// One second's look at the server.
#[derive(Debug, Clone, Copy)]
struct Sample {
    /// Seconds since the workload started.
    t: f64,
    rss_kib: u64,
    fds: usize,
    /// `GET /clients` (`None`: no answer).
    clients: Option<usize>,
    /// Connection cycles done so far.
    cycles: u64,
}

/// What the clients counted; failures are collected, not panicked on, so
/// the run ends and reports them all.
#[derive(Default)]
struct Tally {
    stop: AtomicBool,
    /// Well-formed upgrade requests sent, and the 101s they got.
    upgrades_asked: AtomicU64,
    upgrades_answered: AtomicU64,
    /// Bad requests sent, and the 4xx they got.
    bad_asked: AtomicU64,
    bad_answered: AtomicU64,
    /// Cycles done, by kind (indexed like [`CYCLES`]).
    cycles: [AtomicU64; CYCLES.len()],
    /// Messages the staying clients sent, and those they got back in order.
    chat_sent: AtomicU64,
    chat_delivered: AtomicU64,
    echo_sent: AtomicU64,
    echo_received: AtomicU64,
    failures: Mutex<Vec<String>>,
}

impl Tally {
    fn fail(&self, what: String) {
        eprintln!("  soak failure: {what}");
        self.failures.lock().unwrap().push(what);
    }

    fn stopping(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    fn total_cycles(&self) -> u64 {
        self.cycles.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }
}

/// The connection cycles, in the order each churner runs them.
const CYCLES: [&str; 12] = [
    "clean (own room)",
    "reset after a message",
    "bad: garbage",
    "vanish mid-frame",
    "clean (lobby)",
    "stall (keepalive drops it)",
    "bad: no upgrade headers",
    "half-close",
    "head stops halfway (handshake timeout)",
    "bad: version 12",
    "head vanishes halfway",
    "bad: empty room / test page",
];

/// A staying client's message: who sent it and its number, then filler up
/// to a size that varies with the number.
fn numbered(sender: u32, seq: u32) -> Message {
    let mut b = vec![0x5a_u8; 8 + (seq as usize * 37) % 480];
    b[..4].copy_from_slice(&sender.to_le_bytes());
    b[4..8].copy_from_slice(&seq.to_le_bytes());
    Message::binary(b)
}

/// The sender and number of a [`numbered`] message.
fn number_of(msg: &Message) -> Option<(u32, u32)> {
    match msg {
        Message::Binary(b) if b.len() >= 8 => Some((
            u32::from_le_bytes(b[..4].try_into().ok()?),
            u32::from_le_bytes(b[4..8].try_into().ok()?),
        )),
        _ => None,
    }
}

/// The next message within the socket's read timeout (`None`: none came).
fn poll(c: &mut RawClient) -> Result<Option<Message>, Error> {
    match c.recv() {
        Ok(m) => Ok(Some(m)),
        Err(Error::Io(e))
            if matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) =>
        {
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// Upgrades `path`, counting the request and its 101.
fn upgrade(addr: SocketAddr, path: &str, tally: &Tally) -> Option<RawClient> {
    tally.upgrades_asked.fetch_add(1, Ordering::Relaxed);
    match try_connect_to(addr, path, IO_TIMEOUT) {
        Attempt::Upgraded(c) => {
            tally.upgrades_answered.fetch_add(1, Ordering::Relaxed);
            Some(c)
        }
        Attempt::Refused(head) => {
            tally.fail(format!("{path}: refused: {head:?}"));
            None
        }
        Attempt::NoAnswer(_) => {
            tally.fail(format!("{path}: no answer in {IO_TIMEOUT:?}"));
            None
        }
        Attempt::Failed(e) => {
            tally.fail(format!("{path}: {e}"));
            None
        }
    }
}

/// Ends `c` with a close handshake: sends 1000, reads until the server's
/// close (bounded by the read timeout), then closes the socket.
fn close_cleanly(mut c: RawClient) -> Result<(), String> {
    c.stream
        .set_read_timeout(Some(IO_TIMEOUT))
        .map_err(|e| e.to_string())?;
    c.conn
        .close(CloseCode::NORMAL, "bye")
        .map_err(|e| format!("close: {e}"))?;
    c.try_flush().map_err(|e| format!("close: {e}"))?;
    loop {
        match c.recv() {
            Ok(Message::Close(_)) | Err(Error::Closed) => return Ok(()),
            Ok(_) => {}
            Err(e) => return Err(format!("waiting for the close reply: {e}")),
        }
    }
}

/// One staying client's part.
struct Staying {
    /// Its request path (its room).
    path: String,
    /// Its number as a sender.
    me: u32,
    /// The staying senders whose messages it must get, each in order.
    senders: Vec<u32>,
    /// How often it sends.
    period: Duration,
    /// A chat client (else an echo client), for the tally.
    chat: bool,
}

/// What the staying clients share: the count each sent (indexed by
/// sender), and how many of them stopped sending.
#[derive(Default)]
struct Sent {
    by: Vec<AtomicU64>,
    stopped: AtomicU64,
}

/// Counts its client in [`Sent::stopped`] once: when it stops sending, or
/// when it ends early.
struct StopsSending<'a> {
    sent: &'a Sent,
    counted: bool,
}

impl StopsSending<'_> {
    fn now(&mut self) {
        if !self.counted {
            self.counted = true;
            self.sent.stopped.fetch_add(1, Ordering::SeqCst);
        }
    }
}

impl Drop for StopsSending<'_> {
    fn drop(&mut self) {
        self.now();
    }
}

/// A staying client: sends a numbered message every `period` until told to
/// stop, reads all the while, and checks what comes back: every message of
/// its `senders`, in order; messages of anyone else (the churners in the
/// lobby) are skipped. Once every staying client stopped sending, returns
/// when it got all they sent, or fails.
fn staying_client(
    addr: SocketAddr,
    part: Staying,
    sent: Arc<Sent>,
    tally: Arc<Tally>,
    start: Arc<Barrier>,
) {
    let Staying {
        path,
        me,
        senders,
        period,
        chat,
    } = part;
    let mut stops = StopsSending {
        sent: &sent,
        counted: false,
    };
    // Every staying client is in before the first sends (twice: once
    // upgraded, once the registry holds them all).
    let c = upgrade(addr, &path, &tally);
    start.wait();
    start.wait();
    let Some(mut c) = c else {
        return;
    };
    let _ = c.stream.set_read_timeout(Some(Duration::from_millis(20)));
    let _ = c.stream.set_write_timeout(Some(IO_TIMEOUT));
    let mut next = vec![0u32; senders.len()];
    let mut seq = 0u32;
    let mut next_send = Instant::now();
    let mut finish_by = None;
    loop {
        if !tally.stopping() && Instant::now() >= next_send {
            if let Err(e) = c.try_send(&numbered(me, seq)) {
                tally.fail(format!("{path} (client {me}): send {seq}: {e}"));
                return;
            }
            seq += 1;
            sent.by[me as usize].store(seq as u64, Ordering::SeqCst);
            let counter = if chat {
                &tally.chat_sent
            } else {
                &tally.echo_sent
            };
            counter.fetch_add(1, Ordering::Relaxed);
            next_send += period;
        }
        if tally.stopping() {
            stops.now();
            let deadline = *finish_by.get_or_insert_with(|| Instant::now() + SETTLE);
            let everyone_stopped = sent.stopped.load(Ordering::SeqCst) == sent.by.len() as u64;
            let all_in = senders
                .iter()
                .zip(&next)
                .all(|(&s, &n)| n as u64 >= sent.by[s as usize].load(Ordering::SeqCst));
            if everyone_stopped && all_in {
                break;
            }
            if Instant::now() > deadline {
                tally.fail(format!(
                    "{path} (client {me}): got {next:?} of {:?} messages by the end",
                    senders
                        .iter()
                        .map(|&s| sent.by[s as usize].load(Ordering::SeqCst))
                        .collect::<Vec<_>>()
                ));
                return;
            }
        }
        match poll(&mut c) {
            Ok(Some(m)) => {
                let Some((from, n)) = number_of(&m) else {
                    continue;
                };
                let Some(i) = senders.iter().position(|&s| s == from) else {
                    continue;
                };
                if n != next[i] {
                    tally.fail(format!(
                        "{path} (client {me}): from {from}: got {n}, expected {}",
                        next[i]
                    ));
                    return;
                }
                next[i] += 1;
                let counter = if chat {
                    &tally.chat_delivered
                } else {
                    &tally.echo_received
                };
                counter.fetch_add(1, Ordering::Relaxed);
            }
            Ok(None) => {}
            Err(e) => {
                tally.fail(format!("{path} (client {me}): connection ended: {e}"));
                return;
            }
        }
    }
    if let Err(e) = close_cleanly(c) {
        tally.fail(format!("{path} (client {me}): {e}"));
    }
}

/// Sends `request` on a fresh connection and reads the answer's status
/// (`Err`: no complete status line before the connection ended).
fn http_status(addr: SocketAddr, request: &[u8]) -> Result<u16, String> {
    let mut s = TcpStream::connect_timeout(&addr, IO_TIMEOUT).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(IO_TIMEOUT))
        .map_err(|e| e.to_string())?;
    s.write_all(request).map_err(|e| e.to_string())?;
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(2).any(|w| w == b"\r\n") {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => head.extend_from_slice(&buf[..n]),
            Err(e) => return Err(e.to_string()),
        }
    }
    let text = String::from_utf8_lossy(&head);
    text.strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| format!("no status line in {text:?}"))
}

/// The registry's size from `GET /clients` (`{"clients":N}`).
fn registry_size(addr: SocketAddr) -> Option<usize> {
    let mut s = TcpStream::connect_timeout(&addr, IO_TIMEOUT).ok()?;
    s.set_read_timeout(Some(IO_TIMEOUT)).ok()?;
    s.write_all(b"GET /clients HTTP/1.1\r\nHost: soak\r\nConnection: close\r\n\r\n")
        .ok()?;
    let mut body = String::new();
    s.read_to_string(&mut body).ok()?;
    let n = body.split("\"clients\":").nth(1)?;
    n.trim_end_matches(|c: char| !c.is_ascii_digit())
        .parse()
        .ok()
}

/// `VmRSS` of `pid` in KiB (0 if it cannot be read).
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// A bad request and the status range it must get.
fn bad_request(kind: usize, n: u64) -> (Vec<u8>, std::ops::RangeInclusive<u16>) {
    let upgrade_headers = "Upgrade: websocket\r\nConnection: Upgrade\r\n\
                           Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";
    match kind {
        // Not HTTP at all: a TLS ClientHello's first bytes and a newline.
        2 => (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n".to_vec(), 400..=499),
        // A GET of the endpoint without the upgrade headers.
        6 => (b"GET /ws HTTP/1.1\r\nHost: soak\r\n\r\n".to_vec(), 400..=499),
        // A version the server does not speak (426 with the one it does).
        9 => (
            format!("GET /ws HTTP/1.1\r\nHost: soak\r\n{upgrade_headers}Sec-WebSocket-Version: 12\r\n\r\n")
                .into_bytes(),
            400..=499,
        ),
        // An empty room name (400), or every other time the test page (200).
        _ if n % 2 == 0 => (
            format!("GET /ws?room= HTTP/1.1\r\nHost: soak\r\n{upgrade_headers}Sec-WebSocket-Version: 13\r\n\r\n")
                .into_bytes(),
            400..=499,
        ),
        _ => (b"GET / HTTP/1.1\r\nHost: soak\r\n\r\n".to_vec(), 200..=200),
    }
}

/// A socket a churner keeps open without using it until `until`.
struct Held {
    /// Kept open, unused, until dropped.
    _stream: TcpStream,
    until: Instant,
}

/// Sends half of a well-formed request head.
fn half_head(addr: SocketAddr) -> std::io::Result<TcpStream> {
    let mut s = TcpStream::connect_timeout(&addr, IO_TIMEOUT)?;
    s.write_all(b"GET /ws HTTP/1.1\r\nHost: soak\r\nUpgrade: websocket\r\n")?;
    Ok(s)
}

/// One connection cycle of kind `kind` (an index into [`CYCLES`]).
fn cycle(
    addr: SocketAddr,
    kind: usize,
    me: usize,
    n: u64,
    tally: &Tally,
    held: &mut VecDeque<Held>,
) {
    let hold = |stream: TcpStream, held: &mut VecDeque<Held>| {
        held.push_back(Held {
            _stream: stream,
            until: Instant::now() + HOLD,
        })
    };
    match kind {
        0 | 4 => {
            let path = if kind == 0 {
                format!("/ws?room=churn-{me}-{n}")
            } else {
                "/ws".to_string()
            };
            let Some(mut c) = upgrade(addr, &path, tally) else {
                return;
            };
            let msg = Message::text(format!("churner {me} visit {n}"));
            if let Err(e) = c.try_send(&msg) {
                tally.fail(format!("{path}: send: {e}"));
                return;
            }
            if kind == 0 {
                // Alone in its room: its message comes back.
                match c.recv() {
                    Ok(m) if m == msg => {}
                    other => {
                        tally.fail(format!("{path}: expected its message back, got {other:?}"));
                        return;
                    }
                }
            }
            if let Err(e) = close_cleanly(c) {
                tally.fail(format!("{path}: {e}"));
            }
        }
        1 => {
            if let Some(mut c) = upgrade(addr, "/ws", tally) {
                let _ = c.try_send(&Message::text("and gone"));
                abort(&c.stream);
            }
        }
        3 => {
            if let Some(mut c) = upgrade(addr, "/ws", tally) {
                // Half of a 16 KiB frame, then the socket closes.
                if c.conn.send(&Message::binary(vec![1u8; 16 * 1024])).is_ok() {
                    let wire = c.conn.pending_transmit();
                    let _ = c.stream.write_all(&wire[..wire.len() / 2]);
                }
            }
        }
        5 => {
            if let Some(c) = upgrade(addr, "/ws", tally) {
                hold(c.stream, held);
            }
        }
        7 => {
            if let Some(c) = upgrade(addr, "/ws", tally) {
                let _ = c.stream.shutdown(Shutdown::Write);
                hold(c.stream, held);
            }
        }
        8 | 10 => match half_head(addr) {
            Ok(s) if kind == 8 => hold(s, held),
            Ok(_) => {}
            Err(e) => tally.fail(format!("half a head: {e}")),
        },
        _ => {
            let (request, expect) = bad_request(kind, n);
            tally.bad_asked.fetch_add(1, Ordering::Relaxed);
            match http_status(addr, &request) {
                Ok(status) if expect.contains(&status) => {
                    tally.bad_answered.fetch_add(1, Ordering::Relaxed);
                }
                Ok(status) => tally.fail(format!("{}: got {status}", CYCLES[kind])),
                Err(e) => tally.fail(format!("{}: {e}", CYCLES[kind])),
            }
        }
    }
}

/// A churner: one cycle every [`CYCLE_PERIOD`], the kinds in turn (each
/// churner starting at another), until told to stop; then lets its held
/// sockets go.
fn churner(addr: SocketAddr, me: usize, tally: Arc<Tally>) {
    let mut held = VecDeque::new();
    let mut next = Instant::now();
    let mut n = 0u64;
    while !tally.stopping() {
        let kind = (me * 3 + n as usize) % CYCLES.len();
        cycle(addr, kind, me, n, &tally, &mut held);
        tally.cycles[kind].fetch_add(1, Ordering::Relaxed);
        n += 1;
        while held.front().is_some_and(|h| h.until <= Instant::now()) {
            held.pop_front();
        }
        next += CYCLE_PERIOD;
        let now = Instant::now();
        if next > now {
            thread::sleep(next - now);
        } else {
            next = now;
        }
    }
    drop(held);
}

/// The least-squares slope of `y` over `x`.
fn slope(points: &[(f64, f64)]) -> f64 {
    let n = points.len() as f64;
    let mx = points.iter().map(|p| p.0).sum::<f64>() / n;
    let my = points.iter().map(|p| p.1).sum::<f64>() / n;
    let sxy: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    let sxx: f64 = points.iter().map(|p| (p.0 - mx) * (p.0 - mx)).sum();
    if sxx == 0.0 { 0.0 } else { sxy / sxx }
}

/// Waits (bounded by [`SETTLE`]) until `check` holds; whether it did.
fn settles(mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + SETTLE;
    loop {
        if check() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(100));
    }
}

/// Writes the samples as CSV to `$WS_ARTIFACTS_DIR/soak/<runtime>.csv`.
fn save_samples(rt: Runtime, samples: &[Sample]) {
    let Ok(dir) = std::env::var("WS_ARTIFACTS_DIR") else {
        return;
    };
    let dir = std::path::Path::new(&dir).join("soak");
    let mut csv = String::from("t_s,rss_kib,fds,clients,cycles\n");
    for s in samples {
        let clients = s.clients.map_or(String::new(), |c| c.to_string());
        csv.push_str(&format!(
            "{:.1},{},{},{clients},{}\n",
            s.t, s.rss_kib, s.fds, s.cycles
        ));
    }
    if std::fs::create_dir_all(&dir).is_ok() {
        let _ = std::fs::write(dir.join(format!("{}.csv", rt.name())), csv);
    }
}

fn soak_leaves_rss_descriptors_and_registry_flat_and_loses_nothing(rt: Runtime) {
    raise_fd_limit();
    let duration = soak_duration(rt);
    let warm_up = warm_up(rt);
    let keepalive = KEEPALIVE_MS.to_string();
    let handshake_timeout = HANDSHAKE_TIMEOUT_MS.to_string();
    let mut server = ServerProcess::start(
        rt,
        None,
        &[
            "--mode",
            "chat",
            "--keepalive-ms",
            &keepalive,
            "--keepalive-timeout-ms",
            &keepalive,
            "--handshake-timeout-ms",
            &handshake_timeout,
            "--log",
            "warn",
        ],
    );
    let addr = server.addr();
    let pid = server.pid();
    let fd_baseline = server.open_fds();
    let tally = Arc::new(Tally::default());

    // The staying clients: chat senders 0..CHAT_CLIENTS, echo senders after.
    let sent = Arc::new(Sent {
        by: (0..CHAT_CLIENTS + ECHO_CLIENTS)
            .map(|_| AtomicU64::new(0))
            .collect(),
        stopped: AtomicU64::new(0),
    });
    let chat_senders: Vec<u32> = (0..CHAT_CLIENTS as u32).collect();
    let start = Arc::new(Barrier::new(CHAT_CLIENTS + ECHO_CLIENTS + 1));
    let mut clients = Vec::new();
    for i in 0..CHAT_CLIENTS + ECHO_CLIENTS {
        let chat = i < CHAT_CLIENTS;
        let part = Staying {
            path: if chat {
                "/ws".to_string()
            } else {
                format!("/ws?room=echo-{i}")
            },
            me: i as u32,
            senders: if chat {
                chat_senders.clone()
            } else {
                vec![i as u32]
            },
            period: if chat { CHAT_PERIOD } else { ECHO_PERIOD },
            chat,
        };
        let (sent, tally, start) = (sent.clone(), tally.clone(), start.clone());
        clients.push(thread::spawn(move || {
            staying_client(addr, part, sent, tally, start)
        }));
    }
    start.wait();
    // Registered (and so subscribed to their rooms) before anyone sends.
    let staying = CHAT_CLIENTS + ECHO_CLIENTS;
    if !settles(|| registry_size(addr) == Some(staying)) {
        tally.fail(format!(
            "the {staying} staying clients never all registered"
        ));
    }
    start.wait();
    let churners: Vec<_> = (0..CHURNERS)
        .map(|me| {
            let tally = tally.clone();
            thread::spawn(move || churner(addr, me, tally))
        })
        .collect();

    // Sample every second until the end of the run.
    let start = Instant::now();
    let mut samples = Vec::new();
    let mut tick = start;
    while start.elapsed() < duration {
        tick += Duration::from_secs(1);
        if let Some(wait) = tick.checked_duration_since(Instant::now()) {
            thread::sleep(wait);
        }
        let s = Sample {
            t: start.elapsed().as_secs_f64(),
            rss_kib: rss_kib(pid),
            fds: server.open_fds(),
            clients: registry_size(addr),
            cycles: tally.total_cycles(),
        };
        if samples.len() % 10 == 9 {
            eprintln!(
                "  {} t={:.0}s rss={} KiB fds={} clients={:?} cycles={}",
                rt.name(),
                s.t,
                s.rss_kib,
                s.fds,
                s.clients,
                s.cycles
            );
        }
        samples.push(s);
    }
    let ran = start.elapsed();
    tally.stop.store(true, Ordering::SeqCst);
    for c in churners {
        c.join().expect("a churner panicked");
    }
    for c in clients {
        c.join().expect("a staying client panicked");
    }
    let mut registry_end = None;
    let registry_empty = settles(|| {
        registry_end = registry_size(addr);
        registry_end == Some(0)
    });
    // After the registry's probes: each is a connection of its own.
    let mut fds_end = 0;
    let fds_back = settles(|| {
        fds_end = server.open_fds();
        fds_end <= fd_baseline
    });
    save_samples(rt, &samples);

    // The fit: RSS (KiB) over minutes, after the warm-up.
    let fitted: Vec<(f64, f64)> = samples
        .iter()
        .filter(|s| s.t >= warm_up.as_secs_f64())
        .map(|s| (s.t / 60.0, s.rss_kib as f64))
        .collect();
    let rss_slope = slope(&fitted);
    let cycles = tally.total_cycles();
    let cycles_per_min = cycles as f64 / ran.as_secs_f64() * 60.0;
    let max_per_cycle = max_leak_per_cycle_kib(rt);
    let max_slope = max_per_cycle * cycles_per_min;
    let after_warm_up = samples
        .iter()
        .find(|s| s.t >= warm_up.as_secs_f64())
        .copied()
        .expect("no sample after the warm-up");
    let last = *samples.last().unwrap();
    let rss_peak = samples.iter().map(|s| s.rss_kib).max().unwrap_or(0);
    let fds_peak = samples.iter().map(|s| s.fds).max().unwrap_or(0);
    let clients_peak = samples.iter().filter_map(|s| s.clients).max().unwrap_or(0);
    let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
    eprintln!(
        "soak {}: {:.0} s, {cycles} connection cycles ({:.1}/s; {}), \
         upgrades {}/{} answered 101, bad requests {}/{} answered as expected",
        rt.name(),
        ran.as_secs_f64(),
        cycles_per_min / 60.0,
        CYCLES
            .iter()
            .zip(&tally.cycles)
            .map(|(name, n)| format!("{name} {}", load(n)))
            .collect::<Vec<_>>()
            .join(", "),
        load(&tally.upgrades_answered),
        load(&tally.upgrades_asked),
        load(&tally.bad_answered),
        load(&tally.bad_asked),
    );
    eprintln!(
        "soak {}: chat {} sent, {} delivered in order; echo {} sent, {} back in order",
        rt.name(),
        load(&tally.chat_sent),
        load(&tally.chat_delivered),
        load(&tally.echo_sent),
        load(&tally.echo_received),
    );
    eprintln!(
        "soak {}: RSS {} KiB at t={:.0}s (after the warm-up), {} KiB at the end, peak {} KiB; \
         fitted slope {rss_slope:+.1} KiB/min over {} samples (bound {max_slope:.0} KiB/min = \
         {max_per_cycle} KiB x {cycles_per_min:.0} cycles/min); \
         fds {fd_baseline} before, peak {fds_peak}, {fds_end} after; \
         registry peak {clients_peak}, {registry_end:?} after",
        rt.name(),
        after_warm_up.rss_kib,
        after_warm_up.t,
        last.rss_kib,
        rss_peak,
        fitted.len(),
    );

    let failures = tally.failures.lock().unwrap().clone();
    assert!(
        failures.is_empty(),
        "{} failures: {failures:#?}",
        failures.len()
    );
    assert!(server.is_running(), "the server exited");
    assert_eq!(server.log_count("panicked"), 0, "the server panicked");
    assert!(
        cycles >= (duration.as_secs_f64() / CYCLE_PERIOD.as_secs_f64()) as u64,
        "only {cycles} cycles in {ran:?}: the workload did not run"
    );
    assert_eq!(
        load(&tally.upgrades_answered),
        load(&tally.upgrades_asked),
        "well-formed handshakes left unanswered"
    );
    assert_eq!(load(&tally.bad_answered), load(&tally.bad_asked));
    assert_eq!(
        load(&tally.chat_delivered),
        load(&tally.chat_sent) * CHAT_CLIENTS as u64,
        "chat messages lost"
    );
    assert_eq!(
        load(&tally.echo_received),
        load(&tally.echo_sent),
        "echoes lost"
    );
    assert!(
        fds_back,
        "descriptors: {fd_baseline} before the run, {fds_end} after it"
    );
    assert!(
        registry_empty,
        "registry: {registry_end:?} clients after the run"
    );
    assert!(
        rss_slope < max_slope,
        "RSS grew {rss_slope:.1} KiB/min over the run (bound {max_slope:.0}): a leak"
    );
}

macro_rules! suite {
    ($($module:ident => $rt:expr),* $(,)?) => {$(
        mod $module {
            use super::*;
            #[test]
            #[ignore = "a minute or more per runtime: .ci/run runs it (SOAK_SECONDS)"]
            fn soak_leaves_rss_descriptors_and_registry_flat_and_loses_nothing() {
                super::soak_leaves_rss_descriptors_and_registry_flat_and_loses_nothing($rt)
            }
        }
    )*};
}

suite! {
    on_tokio => Runtime::Tokio,
    on_async_std => Runtime::AsyncStd,
    on_smol => Runtime::Smol,
    on_blocking => Runtime::Blocking,
}
