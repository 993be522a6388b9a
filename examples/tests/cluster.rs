//! Scale-out over Redis (issue 14): `ws-server` processes joined through
//! one `redis-server` that the test starts itself on a free 127.0.0.1 port
//! (append-only, fsync always), with chat clients spread over them. Each
//! scenario runs its nodes on a mix of runtimes, so together they cover all
//! four. Skipped, with a message, only when `redis-server` is not installed
//! (`.ci/run` installs it).
//!
//! Every client sends numbered messages into the same room and records
//! what it receives; the checks are per sender: every number exactly once,
//! in order.

mod support;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use examples::Runtime;
use support::{RawClient, TestServer, free_addr};
use ws_core::Message;

/// The longest any scenario may take to deliver everything.
const DEADLINE: Duration = Duration::from_secs(90);

/// How long a receiver keeps listening after it has everything, to catch
/// a duplicate arriving late.
const QUIET: Duration = Duration::from_millis(700);

fn have_redis() -> bool {
    let found = Command::new("redis-server")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        eprintln!("SKIPPED: redis-server is not installed (apt-get install -y redis-server)");
    }
    found
}

/// A scratch directory removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let dir =
            std::env::temp_dir().join(format!("ws-cluster-{tag}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A `redis-server` of the test's own, persistent (AOF, fsync always) so
/// that a restart on the same port and directory keeps the stream.
struct Redis {
    port: u16,
    dir: TempDir,
    child: Child,
}

impl Redis {
    fn start(tag: &str) -> Redis {
        let dir = TempDir::new(tag);
        let port = free_addr().port();
        let child = Self::spawn(port, &dir.0);
        let redis = Redis { port, dir, child };
        redis.wait_ready();
        redis
    }

    fn spawn(port: u16, dir: &Path) -> Child {
        Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args([
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
            ])
            .arg("--dir")
            .arg(dir)
            .args(["--daemonize", "no"])
            .stdout(std::fs::File::create(dir.join("redis.log")).unwrap())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server")
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Waits (10 s at most) until it answers PING with PONG.
    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let pong = TcpStream::connect(("127.0.0.1", self.port)).and_then(|mut s| {
                s.set_read_timeout(Some(Duration::from_secs(1)))?;
                s.write_all(b"PING\r\n")?;
                let mut buf = [0u8; 64];
                let n = s.read(&mut buf)?;
                Ok(buf[..n].starts_with(b"+PONG"))
            });
            if pong.unwrap_or(false) {
                return;
            }
            assert!(Instant::now() < deadline, "redis-server did not come up");
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGKILL, then a new server on the same port and directory.
    fn restart(&mut self, down_for: Duration) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
        thread::sleep(down_for);
        self.child = Self::spawn(self.port, &self.dir.0);
        self.wait_ready();
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One `ws-server --backplane` process.
struct Node {
    name: String,
    addr: SocketAddr,
    child: Child,
    /// Its stderr lines (the backplane's log).
    log: Arc<Mutex<Vec<String>>>,
}

impl Node {
    fn start(rt: Runtime, redis: &Redis, name: &str) -> Node {
        let mut child = Command::new(env!("CARGO_BIN_EXE_ws-server"))
            .args([
                "--addr",
                "127.0.0.1:0",
                "--runtime",
                rt.name(),
                "--threads",
                "2",
            ])
            .args(["--backplane", &redis.url(), "--node-id", name])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start ws-server");
        let addr = support::spawned::listen_addr(&mut child, name);
        let log = Arc::new(Mutex::new(Vec::new()));
        let sink = log.clone();
        let stderr = child.stderr.take().unwrap();
        let tag = name.to_owned();
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("  {tag}: {line}");
                sink.lock().unwrap().push(line);
            }
        });
        let node = Node {
            name: name.to_owned(),
            addr,
            child,
            log,
        };
        node.wait_log("joined stream");
        node
    }

    /// Waits (20 s at most) for a log line containing `what`.
    fn wait_log(&self, what: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !self.log.lock().unwrap().iter().any(|l| l.contains(what)) {
            assert!(
                Instant::now() < deadline,
                "{}: never logged {what:?}",
                self.name
            );
            thread::sleep(Duration::from_millis(20));
        }
    }

    fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill {sig} {}", self.name);
    }

    fn kill(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What one client received: (sender, number) in arrival order.
type Log = Vec<(usize, usize)>;

fn parse(msg: &Message) -> Option<(usize, usize)> {
    let Message::Text(t) = msg else { return None };
    let (s, n) = t.as_str().split_once(':')?;
    Some((s.parse().ok()?, n.parse().ok()?))
}

/// How many messages a client received from each sender so far, kept as
/// they arrive.
type Counts = HashMap<usize, usize>;

/// A burst: `clients` clients spread round-robin over `nodes`, each sending
/// `per_client` messages (`SENDER:N`), `gap` apart. `during` runs on the
/// test's thread while the burst goes on; receivers stop once `done` says
/// so for their counts (and nothing more came for [`QUIET`]) or at
/// [`DEADLINE`]. Returns each client's node index and log.
///
/// Every client has a writer thread and a reader thread on one socket, so
/// it reads while it sends and TCP never fills in both directions. The
/// reader must also keep up: the hub drops a client whose queue stays
/// above the high-water mark for its slow-client timeout, and a reader
/// that falls behind first fills its socket's receive buffer. An earlier
/// version of this harness re-counted the whole log after every message
/// (quadratic: ~10^8 hash inserts per client for 30 x 500) and its 30
/// readers starved each other of CPU until the burst seemed to stop; so
/// the counts are kept incrementally and `done` is asked only when a
/// sender's count reaches `per_client` (the only event that can complete
/// a client).
struct Burst {
    clients: usize,
    per_client: usize,
    gap: Duration,
}

/// The paced burst of the fault tests: long enough (12 clients x 300
/// messages, one every 8 ms) for a fault to strike in the middle of it.
const PACED: Burst = Burst {
    clients: 12,
    per_client: 300,
    gap: Duration::from_millis(8),
};

/// Three nodes joined through `redis`, named a, b and c, on `runtimes`;
/// returned with their addresses.
fn three_nodes(redis: &Redis, runtimes: [Runtime; 3]) -> ([Node; 3], Vec<SocketAddr>) {
    let [a, b, c] = runtimes;
    let nodes = [
        Node::start(a, redis, "a"),
        Node::start(b, redis, "b"),
        Node::start(c, redis, "c"),
    ];
    let addrs = nodes.iter().map(|n| n.addr).collect();
    (nodes, addrs)
}

impl Burst {
    fn run(
        &self,
        nodes: &[SocketAddr],
        during: impl FnOnce(),
        done: impl Fn(usize, &Counts) -> bool + Send + Sync + 'static,
    ) -> Vec<(usize, Log)> {
        let done = Arc::new(done);
        let node_of = |c: usize| c % nodes.len();
        // Everyone connected before anyone sends.
        let conns: Vec<RawClient> = (0..self.clients)
            .map(|c| RawClient::connect(nodes[node_of(c)], "/ws"))
            .collect();
        let t0 = Instant::now() + Duration::from_millis(200);
        let mut writers = Vec::new();
        let mut readers = Vec::new();
        for (c, conn) in conns.into_iter().enumerate() {
            let (mut tx, mut rx) = conn.split(Duration::from_millis(200));
            let (per, gap) = (self.per_client, self.gap);
            writers.push(thread::spawn(move || {
                thread::sleep(t0.saturating_duration_since(Instant::now()));
                for n in 0..per {
                    if tx.queue(&Message::text(format!("{c}:{n}"))).is_err() {
                        return;
                    }
                    if (!gap.is_zero() || n % 16 == 15 || n + 1 == per) && !flush(&mut tx, t0) {
                        return;
                    }
                    thread::sleep(gap);
                }
                // Keep the connection (and its pongs) alive until the end.
                while Instant::now() < t0 + DEADLINE && tx.flush().is_ok() {
                    thread::sleep(Duration::from_millis(100));
                }
            }));
            let done = done.clone();
            readers.push(thread::spawn(move || {
                let mut log = Log::new();
                let mut counts = Counts::new();
                let deadline = t0 + DEADLINE;
                let mut complete_at: Option<Instant> = None;
                loop {
                    let now = Instant::now();
                    if now > deadline || complete_at.is_some_and(|at| now > at + QUIET) {
                        return log;
                    }
                    match rx.recv() {
                        Ok(m) => {
                            if let Some(entry) = parse(&m) {
                                log.push(entry);
                                let n = counts.entry(entry.0).or_default();
                                *n += 1;
                                if *n == per && complete_at.is_none() && done(c, &counts) {
                                    complete_at = Some(Instant::now());
                                }
                            }
                        }
                        Err(ws_core::Error::Io(e))
                            if matches!(
                                e.kind(),
                                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                            ) => {}
                        // The node went away (killed): this client is done.
                        Err(_) => return log,
                    }
                }
            }));
        }
        during();
        let logs: Vec<(usize, Log)> = readers
            .into_iter()
            .enumerate()
            .map(|(c, r)| (node_of(c), r.join().unwrap()))
            .collect();
        // Writers stop on their own at the deadline or when their node
        // closes; detach them rather than wait.
        drop(writers);
        logs
    }
}

/// Writes what `tx` holds, waiting while TCP pushes back (the server
/// pauses a sender while its hub is congested); `false` once the
/// connection is gone or the deadline passed.
fn flush(tx: &mut support::ClientWriter, t0: Instant) -> bool {
    loop {
        match tx.flush() {
            Ok(()) => return true,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) && Instant::now() < t0 + DEADLINE => {}
            Err(_) => return false,
        }
    }
}

/// Each sender's numbers in the order `log` got them.
fn by_sender(log: &Log) -> HashMap<usize, Vec<usize>> {
    let mut out: HashMap<usize, Vec<usize>> = HashMap::new();
    for &(s, n) in log {
        out.entry(s).or_default().push(n);
    }
    out
}

/// Whether `counts` has `per` messages (or more: [`check`] finds
/// duplicates) from every sender in `senders`.
fn has_all(counts: &Counts, mut senders: impl Iterator<Item = usize>, per: usize) -> bool {
    senders.all(|s| counts.get(&s).is_some_and(|n| *n >= per))
}

/// Asserts that client `c` got exactly `0..per` from each of `full`
/// senders, in order, and from every other sender a prefix `0..k` in
/// order without duplicates.
fn check(c: usize, log: &Log, full: &[usize], per: usize) {
    let want: Vec<usize> = (0..per).collect();
    let got = by_sender(log);
    for s in full {
        let ns = got.get(s).map(Vec::as_slice).unwrap_or_default();
        assert!(
            ns == want,
            "client {c}: sender {s} arrived as {} messages, first wrong at {:?}",
            ns.len(),
            ns.iter().zip(0..).find(|(n, i)| **n != *i)
        );
    }
    for (s, ns) in &got {
        let prefix: Vec<usize> = (0..ns.len()).collect();
        assert_eq!(
            ns, &prefix,
            "client {c}: sender {s} out of order or duplicated"
        );
    }
}

#[test]
fn a_burst_reaches_every_client_on_every_node_once_in_order() {
    if !have_redis() {
        return;
    }
    let redis = Redis::start("burst");
    let (_nodes, addrs) = three_nodes(&redis, [Runtime::Tokio, Runtime::Smol, Runtime::Blocking]);
    let burst = Burst {
        clients: 30,
        per_client: 500,
        // Unpaced: each writer sends as fast as its socket takes it. Its
        // reader reads at the same time, so the hub's flow control only
        // pauses the senders while queues are above the mark (TCP pushes
        // back); no client stalls long enough to be dropped.
        gap: Duration::ZERO,
    };
    let (clients, per) = (burst.clients, burst.per_client);
    let logs = burst.run(
        &addrs,
        || {},
        move |_, counts| has_all(counts, 0..clients, per),
    );
    let everyone: Vec<usize> = (0..clients).collect();
    for (c, (_, log)) in logs.iter().enumerate() {
        check(c, log, &everyone, per);
        assert_eq!(log.len(), clients * per, "client {c}");
    }
}

/// Who survives when node 0 is killed: the senders on the other nodes.
fn survivors(clients: usize, nodes: usize, dead: usize) -> Vec<usize> {
    (0..clients).filter(|c| c % nodes != dead).collect()
}

#[test]
fn a_node_killed_mid_burst_costs_the_others_nothing_from_surviving_senders() {
    if !have_redis() {
        return;
    }
    let redis = Redis::start("kill");
    let (mut nodes, addrs) = three_nodes(
        &redis,
        [Runtime::AsyncStd, Runtime::Tokio, Runtime::Blocking],
    );
    let burst = PACED;
    let (clients, per) = (burst.clients, burst.per_client);
    let alive = survivors(clients, 3, 0);
    let want = alive.clone();
    let victim = &mut nodes[0];
    let logs = burst.run(
        &addrs,
        || {
            thread::sleep(Duration::from_millis(1200));
            victim.kill();
        },
        move |_, counts| has_all(counts, want.iter().copied(), per),
    );
    for (c, (node, log)) in logs.iter().enumerate() {
        if *node == 0 {
            continue; // gone with its node
        }
        check(c, log, &alive, per);
    }
    // The dead node's senders were heard from before it died.
    let from_dead = logs[1].1.iter().filter(|(s, _)| s % 3 == 0).count();
    assert!(from_dead > 0, "the kill came before the burst");
}

#[test]
fn redis_restarted_mid_burst_loses_and_duplicates_nothing() {
    if !have_redis() {
        return;
    }
    let mut redis = Redis::start("restart");
    let (nodes, addrs) = three_nodes(
        &redis,
        [Runtime::Blocking, Runtime::AsyncStd, Runtime::Smol],
    );
    let burst = PACED;
    let (clients, per) = (burst.clients, burst.per_client);
    let r = &mut redis;
    let logs = burst.run(
        &addrs,
        || {
            thread::sleep(Duration::from_millis(1000));
            r.restart(Duration::from_millis(700));
        },
        move |_, counts| has_all(counts, 0..clients, per),
    );
    let everyone: Vec<usize> = (0..clients).collect();
    for (c, (_, log)) in logs.iter().enumerate() {
        check(c, log, &everyone, per);
    }
    for node in &nodes {
        node.wait_log("reconnected");
    }
}

#[test]
fn a_node_paused_with_sigstop_catches_up_after_sigcont() {
    if !have_redis() {
        return;
    }
    let redis = Redis::start("stop");
    let (nodes, addrs) = three_nodes(&redis, [Runtime::Smol, Runtime::Tokio, Runtime::AsyncStd]);
    let burst = PACED;
    let (clients, per) = (burst.clients, burst.per_client);
    let paused = &nodes[2];
    let logs = burst.run(
        &addrs,
        || {
            thread::sleep(Duration::from_millis(800));
            paused.signal("-STOP");
            thread::sleep(Duration::from_secs(3));
            paused.signal("-CONT");
        },
        move |_, counts| has_all(counts, 0..clients, per),
    );
    let everyone: Vec<usize> = (0..clients).collect();
    for (c, (_, log)) in logs.iter().enumerate() {
        check(c, log, &everyone, per);
    }
}

/// Reads `client`'s text messages until `want` arrived (or, with `want`
/// 0, until nothing came for 100 ms), or until `deadline`: what it got, in
/// order.
fn read_texts(client: &mut RawClient, want: usize, deadline: Instant) -> Vec<String> {
    client
        .stream
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let mut got = Vec::new();
    while (want == 0 || got.len() < want) && Instant::now() < deadline {
        match client.recv() {
            Ok(Message::Text(t)) => got.push(t.as_str().to_owned()),
            Ok(_) => {}
            Err(ws_core::Error::Io(e))
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                if want == 0 {
                    break;
                }
            }
            Err(e) => panic!("connection ended after {} messages: {e}", got.len()),
        }
    }
    got
}

/// `ServerHandle::broadcast` and `publish` go cluster-wide: four in-process
/// servers, one per runtime, on one Redis through `ws_redis`; each
/// broadcasts from its handle, and one publishes to the lobby. Every client
/// on every node gets every broadcast exactly once (each node's in its
/// order, its own node's included, delivered locally); the lobby publish
/// reaches the lobby's clients on every node and no one in another room.
#[test]
fn a_server_broadcast_reaches_every_client_on_every_node_once() {
    if !have_redis() {
        return;
    }
    let redis = Redis::start("broadcast");
    let runtimes = [
        Runtime::Tokio,
        Runtime::AsyncStd,
        Runtime::Smol,
        Runtime::Blocking,
    ];
    let nodes: Vec<TestServer> = runtimes
        .iter()
        .map(|rt| {
            let bp = ws_redis::RedisBackplane::new(&redis.url())
                .unwrap()
                .node_id(rt.name());
            TestServer::start_node(*rt, bp)
        })
        .collect();
    // A node's reader joins the stream at its newest entry: wait until
    // every reader is linked, so that no broadcast precedes a join.
    for node in &nodes {
        node.wait_until("the backplane to link", |n| {
            n.backplane_stats().is_some_and(|s| s.linked)
        });
    }
    // On every node, a client in the lobby and one in another room.
    let mut clients: Vec<(usize, bool, RawClient)> = Vec::new();
    for (i, node) in nodes.iter().enumerate() {
        clients.push((i, true, RawClient::connect(node.addr(), "/ws")));
        clients.push((i, false, RawClient::connect(node.addr(), "/ws?room=other")));
        node.wait_for_clients(2);
    }
    const PER_NODE: usize = 10;
    const PUBLISHED: usize = 5;
    for n in 0..PER_NODE {
        for (i, node) in nodes.iter().enumerate() {
            let local = node.broadcast(&Message::text(format!("b{i}:{n}")));
            assert_eq!(local, 2, "node {i}: a broadcast reaches its local clients");
        }
    }
    for n in 0..PUBLISHED {
        let local = nodes[1].publish(
            ws_core::server::demo::LOBBY,
            &Message::text(format!("p:{n}")),
        );
        assert_eq!(local, 1, "the lobby publish reaches node 1's lobby client");
    }
    // One deadline for all: a failing run ends in seconds.
    let deadline = Instant::now() + Duration::from_secs(20);
    let want = |in_lobby: bool| nodes.len() * PER_NODE + if in_lobby { PUBLISHED } else { 0 };
    let mut logs: Vec<Vec<String>> = clients
        .iter_mut()
        .map(|(_, in_lobby, client)| read_texts(client, want(*in_lobby), deadline))
        .collect();
    // Then whatever came later: a duplicate.
    thread::sleep(QUIET);
    for ((_, _, client), log) in clients.iter_mut().zip(&mut logs) {
        log.extend(read_texts(client, 0, Instant::now() + QUIET));
    }
    // Leaving before the shutdown spares it waiting for their close replies.
    let placed: Vec<(usize, bool)> = clients.iter().map(|(n, l, _)| (*n, *l)).collect();
    drop(clients);
    for node in &nodes {
        node.shutdown();
    }
    for ((node, in_lobby), got) in placed.iter().zip(&logs) {
        let (node, in_lobby) = (*node, *in_lobby);
        let want = want(in_lobby);
        for origin in 0..nodes.len() {
            let from: Vec<&String> = got
                .iter()
                .filter(|t| t.starts_with(&format!("b{origin}:")))
                .collect();
            let expected: Vec<String> = (0..PER_NODE).map(|n| format!("b{origin}:{n}")).collect();
            assert_eq!(
                from,
                expected.iter().collect::<Vec<_>>(),
                "client on node {node} (lobby: {in_lobby}): broadcasts of node {origin}"
            );
        }
        let published: Vec<&String> = got.iter().filter(|t| t.starts_with("p:")).collect();
        let expected: Vec<String> = if in_lobby {
            (0..PUBLISHED).map(|n| format!("p:{n}")).collect()
        } else {
            Vec::new()
        };
        assert_eq!(
            published,
            expected.iter().collect::<Vec<_>>(),
            "client on node {node} (lobby: {in_lobby}): lobby publishes"
        );
        assert_eq!(got.len(), want, "client on node {node}: nothing else");
    }
}
