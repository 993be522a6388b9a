//! Scale-out over Redis: joins a server to a cluster of servers through a
//! Redis stream, so that a broadcast or topic publish made on any node
//! reaches every client on every node.
//!
//! ```no_run
//! # async fn run() -> std::io::Result<()> {
//! let cluster = ws_redis::RedisBackplane::new("redis://127.0.0.1:6379/")?.node_id("a");
//! ws_tokio::Server::new("127.0.0.1:8080").backplane(cluster).run().await
//! # }
//! ```
//!
//! What is decided (sequence numbers, de-duplication, gaps, the bounded
//! buffer, delivery under flow control) is ws-core's sans-IO
//! [`Backplane`]; this crate only moves its entries:
//!
//! - a **writer** thread appends the node's entries to the stream with
//!   `XADD key MAXLEN ~ N`, pipelined, and forgets them only once Redis
//!   answered; while Redis is unreachable they wait in the backplane's
//!   bounded buffer and go out on reconnect (a retried write that had in
//!   fact landed is skipped by the readers as a duplicate);
//! - a **reader** thread reads with `XREAD BLOCK` from the last id it saw,
//!   so after a reconnect (or a `SIGSTOP`) it resumes where it stopped, and
//!   it stops reading while the local hub is congested (Redis keeps the
//!   entries) rather than dropping;
//! - every second the writer refreshes a heartbeat key with the node's
//!   client count and a TTL, and sums the live ones into the cluster-wide
//!   count ([`Registry::cluster_client_count`](ws_core::server::Registry::cluster_client_count)).
//!
//! Why threads and the synchronous client: the same two threads serve
//! every runtime (tokio, async-std, smol, ws-blocking) with one code path
//! and no async Redis stack per runtime; a server has one backplane, so two
//! threads cost nothing that matters, and a blocking `XREAD BLOCK` is the
//! natural shape of the reader.

mod reader;
mod signal;
mod stream;
mod writer;

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use ws_core::server::backplane::{Backplane, Engine, Running};
use ws_core::server::hub::Hub;

use crate::signal::Signal;

/// The stream's key, by default (the heartbeat keys are `KEY:node:ORIGIN`).
pub const DEFAULT_STREAM: &str = "ws:cluster";

/// Entries the stream keeps (approximately, `MAXLEN ~`), by default: how
/// far behind a node may fall (paused, disconnected) and still lose
/// nothing.
pub const DEFAULT_MAX_LEN: usize = 100_000;

/// The longest pause between two attempts to reach Redis.
pub const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// A Redis Streams backplane: what `Server::backplane` takes on every
/// runtime. Cheap to clone; nothing connects before the server starts.
#[derive(Debug, Clone)]
pub struct RedisBackplane {
    client: redis::Client,
    node: String,
    stream: String,
    max_len: usize,
    buffer: (usize, usize),
}

impl RedisBackplane {
    /// A backplane through the Redis server at `url`
    /// (`redis://HOST:PORT/`), as node `node-PID` on stream
    /// [`DEFAULT_STREAM`].
    ///
    /// # Errors
    ///
    /// [`io::ErrorKind::InvalidInput`] for a URL the client cannot use (an
    /// unreachable server is not an error: it is retried).
    pub fn new(url: &str) -> io::Result<Self> {
        let client = redis::Client::open(url)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("{url}: {e}")))?;
        Ok(RedisBackplane {
            client,
            node: format!("node-{}", std::process::id()),
            stream: DEFAULT_STREAM.to_owned(),
            max_len: DEFAULT_MAX_LEN,
            buffer: (
                ws_core::server::backplane::DEFAULT_BUFFER_ENTRIES,
                ws_core::server::backplane::DEFAULT_BUFFER_BYTES,
            ),
        })
    }

    /// This node's name in logs and entries.
    pub fn node_id(mut self, node: impl Into<String>) -> Self {
        self.node = node.into();
        self
    }

    /// The stream's key: servers on the same key form one cluster.
    pub fn stream(mut self, key: impl Into<String>) -> Self {
        self.stream = key.into();
        self
    }

    /// How many entries the stream keeps (approximately; at least 1000).
    pub fn max_len(mut self, entries: usize) -> Self {
        self.max_len = entries.max(1000);
        self
    }

    /// Bounds what is kept while Redis is unreachable (see
    /// [`Backplane::buffer`]).
    pub fn buffer(mut self, entries: usize, bytes: usize) -> Self {
        self.buffer = (entries, bytes);
        self
    }
}

/// What the writer and reader threads share.
#[derive(Debug)]
struct Shared {
    config: RedisBackplane,
    hub: Arc<Hub>,
    backplane: Arc<Backplane>,
    stop: AtomicBool,
    /// Wakes the writer: an entry was queued, or stop.
    writer: Arc<Signal>,
    /// Wakes the reader: the hub's congestion cleared, or stop.
    reader: Arc<Signal>,
}

impl Shared {
    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }

    /// Logs one line about this node's link (stderr: the server's log).
    fn log(&self, what: std::fmt::Arguments<'_>) {
        eprintln!("[backplane {}] {what}", self.backplane.node());
    }

    /// A connection with timeouts, or why not.
    fn connect(&self, read_timeout: Duration) -> redis::RedisResult<redis::Connection> {
        let con = self
            .config
            .client
            .get_connection_with_timeout(Duration::from_secs(1))?;
        con.set_read_timeout(Some(read_timeout))?;
        con.set_write_timeout(Some(Duration::from_secs(5)))?;
        Ok(con)
    }

    /// Sleeps `d` unless stopped meanwhile (woken through `signal`).
    fn pause(&self, signal: &Signal, d: Duration) {
        let mut seen = signal.generation();
        if !self.stopped() {
            signal.wait(&mut seen, d);
        }
    }
}

impl Engine for RedisBackplane {
    fn start(&self, hub: &Arc<Hub>) -> io::Result<Box<dyn Running>> {
        let backplane = Arc::new(Backplane::new(&self.node).buffer(self.buffer.0, self.buffer.1));
        if !hub.attach_backplane(backplane.clone()) {
            return Err(io::Error::other("this server already has a backplane"));
        }
        let writer = Arc::new(Signal::default());
        backplane.set_wake(writer.clone());
        let shared = Arc::new(Shared {
            config: self.clone(),
            hub: hub.clone(),
            backplane,
            stop: AtomicBool::new(false),
            writer,
            reader: Arc::new(Signal::default()),
        });
        let name = |role: &str| format!("ws-redis-{role}");
        let s = shared.clone();
        std::thread::Builder::new()
            .name(name("writer"))
            .spawn(move || writer::run(&s))?;
        let s = shared.clone();
        std::thread::Builder::new()
            .name(name("reader"))
            .spawn(move || reader::run(&s))?;
        Ok(Box::new(Handle(shared)))
    }
}

/// The running backplane: stopped with the server.
#[derive(Debug)]
struct Handle(Arc<Shared>);

impl Running for Handle {
    fn stop(&self) {
        self.0.stop.store(true, Ordering::Release);
        self.0.writer.wake_now();
        self.0.reader.wake_now();
    }
}

/// Exponential backoff between attempts to reach Redis: 50 ms doubling up
/// to [`MAX_BACKOFF`], back to 50 ms after a success.
#[derive(Debug)]
struct Backoff(Duration);

impl Backoff {
    const FIRST: Duration = Duration::from_millis(50);

    fn new() -> Self {
        Backoff(Self::FIRST)
    }

    fn next(&mut self) -> Duration {
        let d = self.0;
        self.0 = (self.0 * 2).min(MAX_BACKOFF);
        d
    }

    fn reset(&mut self) {
        self.0 = Self::FIRST;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_its_cap_and_resets() {
        let mut b = Backoff::new();
        let seq: Vec<u128> = (0..8).map(|_| b.next().as_millis()).collect();
        assert_eq!(seq, [50, 100, 200, 400, 800, 1600, 2000, 2000]);
        b.reset();
        assert_eq!(b.next(), Backoff::FIRST);
    }

    #[test]
    fn a_bad_url_is_refused_at_once_and_an_unreachable_server_is_not() {
        let e = RedisBackplane::new("http://nope").unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
        let b = RedisBackplane::new("redis://127.0.0.1:1/").unwrap();
        let hub = Arc::new(Hub::default());
        let running = b.node_id("t").start(&hub).unwrap();
        assert!(hub.backplane().is_some());
        assert!(b_attach_twice_fails(&hub));
        running.stop();
    }

    fn b_attach_twice_fails(hub: &Arc<Hub>) -> bool {
        RedisBackplane::new("redis://127.0.0.1:1/")
            .unwrap()
            .start(hub)
            .is_err()
    }
}
