//! The handshake timeout under a flood of slow handshakes, on every
//! runtime, against a `ws-server` process: hundreds of connections each
//! send one byte of their request head per second, never finishing it;
//! the server must close every one of them within the handshake timeout
//! (plus a margin for a loaded machine) counted from the connect, however
//! busy its workers are with the others.

mod support;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::thread;
use std::time::{Duration, Instant};

use examples::Runtime;
use support::spawned::{ServerProcess, raise_fd_limit};

/// Slow connections in the flood.
const FLOOD: usize = 500;
/// The server's handshake timeout (`--handshake-timeout-ms`).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(3);
/// What the server may take beyond the timeout to close a connection
/// (timer granularity, a loaded two-core machine, the test's own polling).
const MARGIN: Duration = Duration::from_millis(1500);
/// How much sooner than the timeout a close may be seen: the test notes
/// the connect when `connect` has returned, a little after the server may
/// have accepted.
const EARLY_SLACK: Duration = Duration::from_millis(50);
/// How often each connection sends its next byte.
const BYTE_EVERY: Duration = Duration::from_secs(1);
/// The request head the connections trickle, never to its end.
const HEAD: &[u8] = b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n\
Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\nX-Padding: aaaaaaaaaaaaaaaaaaaa\r\n";

/// One slow connection.
struct Slow {
    tcp: TcpStream,
    connected: Instant,
    sent: usize,
    next_byte: Instant,
    /// When the server's end was seen (EOF or reset).
    closed: Option<Instant>,
}

impl Slow {
    /// One turn at `now`: the next byte when due, then whether the server
    /// has closed.
    fn step(&mut self, now: Instant) {
        if now >= self.next_byte && self.sent < HEAD.len() {
            match self.tcp.write(&HEAD[self.sent..=self.sent]) {
                Ok(n) => self.sent += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(_) => {
                    self.closed = Some(now);
                    return;
                }
            }
            self.next_byte += BYTE_EVERY;
        }
        let mut buf = [0u8; 512];
        loop {
            match self.tcp.read(&mut buf) {
                // A response (there should be none) is read past.
                Ok(n) if n > 0 => continue,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Ok(_) | Err(_) => {
                    self.closed = Some(now);
                    return;
                }
            }
        }
    }
}

fn a_flood_of_slow_handshakes_is_closed_within_the_timeout(rt: Runtime) {
    // Four of these run at once: 2,000 sockets here, 500 in each server.
    raise_fd_limit();
    let timeout_ms = HANDSHAKE_TIMEOUT.as_millis().to_string();
    let server = ServerProcess::start(
        rt,
        None,
        &["--mode", "echo", "--handshake-timeout-ms", &timeout_ms],
    );
    let mut conns = Vec::with_capacity(FLOOD);
    for i in 0..FLOOD {
        let tcp = TcpStream::connect(server.addr()).unwrap_or_else(|e| panic!("connect {i}: {e}"));
        tcp.set_nonblocking(true).unwrap();
        let now = Instant::now();
        conns.push(Slow {
            tcp,
            connected: now,
            sent: 0,
            next_byte: now,
            closed: None,
        });
    }
    let last = conns.last().map_or_else(Instant::now, |c| c.connected);
    let give_up = last + HANDSHAKE_TIMEOUT + MARGIN + Duration::from_secs(2);
    loop {
        let now = Instant::now();
        for c in conns.iter_mut().filter(|c| c.closed.is_none()) {
            c.step(now);
        }
        if now >= give_up || conns.iter().all(|c| c.closed.is_some()) {
            break;
        }
        thread::sleep(Duration::from_millis(20));
    }
    let lifetimes: Vec<Option<Duration>> = conns
        .iter()
        .map(|c| c.closed.map(|t| t - c.connected))
        .collect();
    let late = lifetimes
        .iter()
        .filter(|l| l.is_none_or(|l| l > HANDSHAKE_TIMEOUT + MARGIN))
        .count();
    let early = lifetimes
        .iter()
        .filter(|l| l.is_some_and(|l| l + EARLY_SLACK < HANDSHAKE_TIMEOUT))
        .count();
    let longest = lifetimes
        .iter()
        .flatten()
        .max()
        .copied()
        .unwrap_or_default();
    let open = lifetimes.iter().filter(|l| l.is_none()).count();
    eprintln!(
        "{}: {FLOOD} slow handshakes, timeout {HANDSHAKE_TIMEOUT:?}: {late} closed late \
         ({open} never), longest {longest:?}",
        rt.name()
    );
    let shortest = lifetimes
        .iter()
        .flatten()
        .min()
        .copied()
        .unwrap_or_default();
    assert_eq!(
        early, 0,
        "{early} closed before the handshake timeout (shortest {shortest:?})"
    );
    assert_eq!(
        late, 0,
        "{late} of {FLOOD} connections outlived the handshake timeout by more than {MARGIN:?} \
         ({open} never closed; longest {longest:?})"
    );
}

macro_rules! suite {
    ($($module:ident => $rt:expr),* $(,)?) => {$(
        mod $module {
            use super::*;
            #[test] fn a_flood_of_slow_handshakes_is_closed_within_the_timeout() { super::a_flood_of_slow_handshakes_is_closed_within_the_timeout($rt) }
        }
    )*};
}

suite! {
    on_tokio => Runtime::Tokio,
    on_async_std => Runtime::AsyncStd,
    on_smol => Runtime::Smol,
    on_blocking => Runtime::Blocking,
}
