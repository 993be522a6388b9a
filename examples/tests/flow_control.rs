//! Broadcast flow control in the chat server, on every runtime (tokio,
//! async-std, smol, blocking), over loopback sockets with the neutral
//! ws-core client of `support`.
//!
//! The policy pinned here: while some recipient's queue is above its
//! high-water mark the server stops reading from the sending connections
//! (TCP pushes back on the senders) until the queues drain. A client that
//! keeps reading therefore never loses a message, never gets one twice, and
//! sees each sender's messages in that sender's order. A recipient is dropped
//! (close 1013) only once its queue stayed above the mark for
//! `slow_client_timeout`, so a client that stopped reading stalls the senders
//! for that long and no longer.
//!
//! Every client runs a writer thread and a reader thread on one socket.
//! Messages are binary: the sender's index and its sequence number (both
//! little-endian `u32`), padded to the scenario's size. Each test gives up
//! after [`TEST_DEADLINE`] with the progress of every client.

mod support;

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use examples::Runtime;
use support::{ClientReader, ClientWriter, RawClient, TestServer};
use ws_core::server::hub::{FlowControl, HubStats, SLOW_CLIENT_CLOSE};
use ws_core::{CloseFrame, Error, Message};

/// How long a recipient may stay above the high-water mark before it is
/// dropped, as configured on the server under test.
const SLOW_CLIENT_TIMEOUT: Duration = Duration::from_secs(3);
/// Slack on top of [`SLOW_CLIENT_TIMEOUT`] for the server to notice and for
/// the test to observe the drop (a debug build, a loaded CI machine).
const DROP_MARGIN: Duration = Duration::from_secs(3);
/// Bound on the whole of one test.
const TEST_DEADLINE: Duration = Duration::from_secs(90);
/// Read and write timeout of every client socket: no single blocking call
/// outlives the test.
const IO_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the non-reader, once dropped and reading, waits for more.
const CLOSE_WAIT: Duration = Duration::from_secs(10);
/// A sender writes once this many encoded bytes are queued.
const WRITE_BATCH: usize = 64 * 1024;

/// What one scenario runs.
struct Burst {
    /// Clients that send (and read).
    senders: usize,
    /// Messages each sender sends.
    per_sender: u32,
    /// Payload bytes per message (at least 8).
    len: usize,
    /// Clients that only read.
    listeners: usize,
    /// Also connect a client that never reads (until it has been dropped).
    non_reader: bool,
}

impl Burst {
    /// Messages every reading client must receive.
    fn expected(&self) -> usize {
        self.senders * self.per_sender as usize
    }
}

/// A binary message carrying `(sender, seq)`, padded to `len` bytes.
fn numbered(sender: u32, seq: u32, len: usize) -> Message {
    let mut p = Vec::with_capacity(len.max(8));
    p.extend_from_slice(&sender.to_le_bytes());
    p.extend_from_slice(&seq.to_le_bytes());
    p.resize(len.max(8), b'.');
    Message::binary(p)
}

/// The `(sender, seq)` of a message from [`numbered`].
fn parse(msg: &Message) -> Option<(u32, u32)> {
    match msg {
        Message::Binary(b) if b.len() >= 8 => Some((
            u32::from_le_bytes(b[..4].try_into().unwrap()),
            u32::from_le_bytes(b[4..8].try_into().unwrap()),
        )),
        _ => None,
    }
}

/// `12345` as `12,345`.
fn n(x: usize) -> String {
    let s = x.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A read that gave up waiting.
fn is_timeout(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    )
}

fn describe_close(frame: &Option<CloseFrame>) -> String {
    match frame {
        Some(f) if f.reason.is_empty() => format!("close {}", f.code.0),
        Some(f) => format!("close {} {:?}", f.code.0, f.reason.as_str()),
        None => "close without a code".to_string(),
    }
}

/// How a reader's run ended.
#[derive(Debug)]
enum ReadEnd {
    /// Every expected message arrived.
    Complete,
    /// The server closed the connection.
    Closed(Option<CloseFrame>),
    /// A message out of order, duplicated, or not ours.
    Violation(String),
    /// The connection failed or a read timed out.
    Failed(String),
}

/// What one client's reader saw.
struct ReadReport {
    received: usize,
    end: ReadEnd,
    /// When the last expected message arrived.
    completed_at: Option<Instant>,
}

/// Reads until `expected` messages arrived, checking that each sender's
/// messages come once each and in order.
fn read_all(
    mut reader: ClientReader,
    senders: usize,
    expected: usize,
    progress: &AtomicUsize,
) -> ReadReport {
    let mut next = vec![0u32; senders];
    let mut received = 0;
    let end = loop {
        if received == expected {
            break ReadEnd::Complete;
        }
        match reader.recv() {
            Ok(Message::Close(frame)) => break ReadEnd::Closed(frame),
            Ok(m @ (Message::Binary(_) | Message::Text(_))) => {
                let Some((s, seq)) = parse(&m).filter(|&(s, _)| (s as usize) < senders) else {
                    break ReadEnd::Violation(format!("unexpected message {m:?}"));
                };
                let want = next[s as usize];
                if seq != want {
                    let what = if seq < want {
                        "a duplicate or reordering"
                    } else {
                        "messages lost"
                    };
                    break ReadEnd::Violation(format!(
                        "from sender {s} got seq {seq} where {want} was due ({what})"
                    ));
                }
                next[s as usize] += 1;
                received += 1;
                progress.store(received, Ordering::Relaxed);
            }
            Ok(_) => {} // ping or pong
            Err(Error::Io(e)) if is_timeout(&e) => {
                break ReadEnd::Failed(format!("nothing more arrived for {IO_TIMEOUT:?}"));
            }
            Err(Error::Io(e)) => break ReadEnd::Failed(format!("read failed: {e}")),
            Err(e) => break ReadEnd::Failed(format!("connection ended without close: {e}")),
        }
    };
    let completed_at = matches!(end, ReadEnd::Complete).then(Instant::now);
    ReadReport {
        received,
        end,
        completed_at,
    }
}

/// What one client's writer did.
struct WriteReport {
    /// Messages written to the socket.
    sent: u32,
    error: Option<String>,
}

/// Sends `count` numbered messages as fast as the socket takes them.
fn write_all(mut writer: ClientWriter, sender: u32, count: u32, len: usize) -> WriteReport {
    let mut queued = 0;
    let mut sent = 0;
    while sent < count {
        if queued < count && writer.buffered() < WRITE_BATCH {
            if let Err(e) = writer.queue(&numbered(sender, queued, len)) {
                return WriteReport {
                    sent,
                    error: Some(format!("send refused: {e}")),
                };
            }
            queued += 1;
            continue;
        }
        if let Err(e) = writer.flush() {
            return WriteReport {
                sent,
                error: Some(format!("write failed: {e}")),
            };
        }
        sent = queued;
    }
    WriteReport { sent, error: None }
}

/// What the non-reader found once it read after being dropped.
enum NonReaderEnd {
    Closed(Option<CloseFrame>),
    /// Never dropped within the test (it never started reading).
    NotDropped,
    Failed(String),
}

struct NonReaderReport {
    /// Data messages read before the end.
    data: usize,
    end: NonReaderEnd,
}

/// The non-reader: waits for the go (it was dropped), then reads to the end.
fn drain_non_reader(mut client: RawClient, go: mpsc::Receiver<()>) -> NonReaderReport {
    if go.recv_timeout(TEST_DEADLINE).is_err() {
        return NonReaderReport {
            data: 0,
            end: NonReaderEnd::NotDropped,
        };
    }
    client.stream.set_read_timeout(Some(CLOSE_WAIT)).unwrap();
    let mut data = 0;
    let end = loop {
        match client.recv() {
            Ok(Message::Close(frame)) => break NonReaderEnd::Closed(frame),
            Ok(m) if m.is_data() => data += 1,
            Ok(_) => {}
            Err(Error::Io(e)) if is_timeout(&e) => {
                break NonReaderEnd::Failed(format!("nothing more arrived for {CLOSE_WAIT:?}"));
            }
            Err(e) => break NonReaderEnd::Failed(e.to_string()),
        }
    };
    NonReaderReport { data, end }
}

/// One reading client's results.
struct ClientOutcome {
    name: String,
    read: ReadReport,
    write: Option<WriteReport>,
}

/// Everything a burst produced.
struct Outcome {
    expected: usize,
    per_sender: u32,
    clients: Vec<ClientOutcome>,
    non_reader: Option<NonReaderReport>,
    /// From the writers' start to the first time the server's client count
    /// fell (the first client it dropped).
    first_drop_after: Option<Duration>,
    started: Instant,
    /// Whole run, connecting included.
    elapsed: Duration,
    /// The server's queue statistics at the end (peak queue, slow drops).
    stats: HubStats,
}

enum Event {
    Read(usize, ReadReport),
    Write(usize, WriteReport),
    NonReader(NonReaderReport),
}

/// Connects the clients, runs the burst and collects every report. Panics
/// with each client's progress if the run outlives [`TEST_DEADLINE`].
fn run(rt: Runtime, burst: &Burst) -> Outcome {
    let t0 = Instant::now();
    let deadline = t0 + TEST_DEADLINE;
    let server = TestServer::start_chat_flow(rt, SLOW_CLIENT_TIMEOUT);
    let readers = burst.senders + burst.listeners;
    let total = readers + usize::from(burst.non_reader);
    // The non-reader first, so that it is registered before any traffic.
    let non_reader = burst
        .non_reader
        .then(|| RawClient::connect(server.addr(), "/ws"));
    let clients: Vec<RawClient> = (0..readers)
        .map(|_| RawClient::connect(server.addr(), "/ws"))
        .collect();
    server.wait_for_clients(total);

    let names: Vec<String> = (0..readers)
        .map(|i| {
            if i < burst.senders {
                format!("sender {i}")
            } else {
                format!("listener {}", i - burst.senders)
            }
        })
        .collect();
    let progress: Vec<Arc<AtomicUsize>> = (0..readers).map(|_| Arc::default()).collect();
    let (events, inbox) = mpsc::channel();
    let expected = burst.expected();

    let (go, go_rx) = mpsc::channel();
    if let Some(client) = non_reader {
        let events = events.clone();
        thread::spawn(move || {
            let _ = events.send(Event::NonReader(drain_non_reader(client, go_rx)));
        });
    }
    let mut writers = Vec::new();
    // One more handle on each socket, so that a client whose threads are
    // done stays connected (and counted) until the run is over.
    let mut keep_open = Vec::new();
    for (i, client) in clients.into_iter().enumerate() {
        keep_open.push(client.stream.try_clone().unwrap());
        let (writer, reader) = client.split(IO_TIMEOUT);
        let (events, progress) = (events.clone(), progress[i].clone());
        let senders = burst.senders;
        thread::spawn(move || {
            let report = read_all(reader, senders, expected, &progress);
            let _ = events.send(Event::Read(i, report));
        });
        if i < burst.senders {
            writers.push((i, writer));
        } else {
            // Listeners never send (the chat server sends no pings to answer).
            drop(writer);
        }
    }
    let started = Instant::now();
    for (i, writer) in writers {
        let events = events.clone();
        let (count, len) = (burst.per_sender, burst.len);
        thread::spawn(move || {
            let report = write_all(writer, i as u32, count, len);
            let _ = events.send(Event::Write(i, report));
        });
    }
    drop(events);

    let mut reads: Vec<Option<ReadReport>> = (0..readers).map(|_| None).collect();
    let mut write_reports: Vec<Option<WriteReport>> = (0..readers).map(|_| None).collect();
    let mut non_reader_report = None;
    let mut first_drop_after = None;
    let mut go = Some(go);
    let pending = |reads: &[Option<ReadReport>], w: &[Option<WriteReport>], nr: bool| {
        reads.iter().any(Option::is_none)
            || w.iter().take(burst.senders).any(Option::is_none)
            || (burst.non_reader && !nr)
    };
    while pending(&reads, &write_reports, non_reader_report.is_some()) {
        if first_drop_after.is_none() && server.client_count() < total {
            first_drop_after = Some(started.elapsed());
            // Dropped: the non-reader may read now (and must find 1013).
            if let Some(go) = go.take() {
                let _ = go.send(());
            }
        }
        if Instant::now() >= deadline {
            let dropped = match first_drop_after {
                Some(t) => format!("first drop {t:.2?} after the burst started"),
                None => "no client dropped".to_string(),
            };
            let mut msg = format!(
                "test still running after {TEST_DEADLINE:?}; server has {} of {total} clients; \
                 {dropped}\n",
                server.client_count()
            );
            for (i, name) in names.iter().enumerate() {
                if reads[i].is_none() {
                    let _ = writeln!(
                        msg,
                        "  {name}: still reading, received {} of {}",
                        n(progress[i].load(Ordering::Relaxed)),
                        n(expected)
                    );
                }
                if i < burst.senders && write_reports[i].is_none() {
                    let _ = writeln!(msg, "  {name}: still writing (blocked by the server?)");
                }
            }
            if burst.non_reader && non_reader_report.is_none() {
                let _ = writeln!(
                    msg,
                    "  non-reader: never dropped, or still reading to its close"
                );
            }
            panic!("{msg}");
        }
        match inbox.recv_timeout(Duration::from_millis(5)) {
            Ok(Event::Read(i, r)) => reads[i] = Some(r),
            Ok(Event::Write(i, w)) => write_reports[i] = Some(w),
            Ok(Event::NonReader(r)) => non_reader_report = Some(r),
            Err(_) => {}
        }
    }
    drop(keep_open);
    let stats = server.stats();
    let clients = names
        .into_iter()
        .zip(reads)
        .zip(write_reports)
        .map(|((name, read), write)| ClientOutcome {
            name,
            read: read.unwrap(),
            write,
        })
        .collect();
    Outcome {
        expected,
        per_sender: burst.per_sender,
        clients,
        non_reader: non_reader_report,
        first_drop_after,
        started,
        elapsed: t0.elapsed(),
        stats,
    }
}

impl Outcome {
    /// One line per reading client that did not get everything cleanly, and
    /// per sender that could not send everything.
    fn reader_problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        for c in &self.clients {
            let got = format!("received {} of {}", n(c.read.received), n(self.expected));
            match &c.read.end {
                ReadEnd::Complete => {}
                ReadEnd::Closed(f) => {
                    problems.push(format!("{}: {got}, then {}", c.name, describe_close(f)))
                }
                ReadEnd::Violation(v) => problems.push(format!("{}: {got}, then {v}", c.name)),
                ReadEnd::Failed(e) => problems.push(format!("{}: {got}, then {e}", c.name)),
            }
            if let Some(w) = &c.write {
                if let Some(e) = &w.error {
                    problems.push(format!(
                        "{}: sent {} of {}, then {e}",
                        c.name,
                        n(w.sent as usize),
                        n(self.per_sender as usize)
                    ));
                }
            }
        }
        problems
    }

    /// No client's queue passed the configured byte bound (server memory
    /// stays within clients x bound), and exactly `slow` clients were dropped
    /// as slow.
    fn queue_problems(&self, slow: u64) -> Vec<String> {
        let mut problems = Vec::new();
        let bound = FlowControl::default().get_max_queued_bytes();
        if self.stats.peak_queue_bytes > bound {
            problems.push(format!(
                "a client's queue reached {} bytes, past the {} byte bound",
                n(self.stats.peak_queue_bytes),
                n(bound)
            ));
        }
        if self.stats.dropped_slow != slow {
            problems.push(format!(
                "the server dropped {} client(s) as slow, expected {slow}",
                self.stats.dropped_slow
            ));
        }
        problems
    }

    /// The non-reader was dropped, no sooner than the timeout and not much
    /// later, and found a 1013 close once it read.
    fn non_reader_problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        match self.first_drop_after {
            None => problems.push("the non-reader was never dropped".to_string()),
            Some(t) if t < SLOW_CLIENT_TIMEOUT => problems.push(format!(
                "a client was dropped {t:.2?} after the burst started, before the \
                 {SLOW_CLIENT_TIMEOUT:?} slow_client_timeout could run out (the server must \
                 pause the senders, not drop at once)"
            )),
            Some(t) if t > SLOW_CLIENT_TIMEOUT + DROP_MARGIN => problems.push(format!(
                "the non-reader was dropped only {t:.2?} after the burst started \
                 (slow_client_timeout {SLOW_CLIENT_TIMEOUT:?} + margin {DROP_MARGIN:?})"
            )),
            Some(_) => {}
        }
        match &self.non_reader {
            Some(NonReaderReport {
                end: NonReaderEnd::Closed(Some(f)),
                ..
            }) if f.code == SLOW_CLIENT_CLOSE => {}
            Some(NonReaderReport {
                data,
                end: NonReaderEnd::Closed(f),
            }) => problems.push(format!(
                "the non-reader read {} messages, then {} (wanted close {})",
                n(*data),
                describe_close(f),
                SLOW_CLIENT_CLOSE.0
            )),
            Some(NonReaderReport {
                data,
                end: NonReaderEnd::Failed(e),
            }) => problems.push(format!(
                "the non-reader, reading once a client was dropped, read {} messages, \
                 then no close {} but: {e}",
                n(*data),
                SLOW_CLIENT_CLOSE.0
            )),
            Some(NonReaderReport {
                end: NonReaderEnd::NotDropped,
                ..
            }) => {} // reported above
            None => problems.push("no report from the non-reader".to_string()),
        }
        problems
    }
}

fn fail_if_any(what: &str, outcome: &Outcome, problems: &[String]) {
    if problems.is_empty() {
        return;
    }
    let mut msg = format!(
        "{what}: {} problem(s) (run took {:.1?}):\n",
        problems.len(),
        outcome.elapsed
    );
    const SHOWN: usize = 12;
    for p in problems.iter().take(SHOWN) {
        let _ = writeln!(msg, "  {p}");
    }
    if problems.len() > SHOWN {
        let _ = writeln!(msg, "  ... and {} more", problems.len() - SHOWN);
    }
    panic!("{msg}");
}

/// 50 clients each send 1,000 small messages as fast as they can while
/// reading; 5 more only read. Every one of the 55 gets all 50,000, each
/// sender's in order, none twice, and none is closed: a client that keeps
/// reading (including one that never sends) is never dropped.
fn burst_every_reading_client_gets_every_message(rt: Runtime) {
    let burst = Burst {
        senders: 50,
        per_sender: 1_000,
        len: 16,
        listeners: 5,
        non_reader: false,
    };
    let outcome = run(rt, &burst);
    let mut problems = Vec::new();
    if let Some(t) = outcome.first_drop_after {
        problems.push(format!(
            "the server dropped a reading client {t:.2?} after the burst started"
        ));
    }
    problems.extend(outcome.reader_problems());
    problems.extend(outcome.queue_problems(0));
    fail_if_any("burst", &outcome, &problems);
    eprintln!(
        "{rt:?}: burst took {:.1?} ({:.1?} from the first send)",
        outcome.elapsed,
        outcome.started.elapsed()
    );
}

/// 20 clients each send 5,000 messages of 1 KiB while reading, and one more
/// client never reads. The 20 get all 100,000 in per-sender order; the
/// non-reader, and only it, is dropped after `slow_client_timeout` (not at
/// once) and finds close 1013 when it finally reads.
fn slow_consumer_only_the_non_reader_is_dropped(rt: Runtime) {
    let burst = Burst {
        senders: 20,
        per_sender: 5_000,
        len: 1024,
        listeners: 0,
        non_reader: true,
    };
    let outcome = run(rt, &burst);
    let mut problems = outcome.non_reader_problems();
    problems.extend(outcome.reader_problems());
    problems.extend(outcome.queue_problems(1));
    fail_if_any("slow consumer", &outcome, &problems);
    eprintln!("{rt:?}: slow consumer took {:.1?}", outcome.elapsed);
}

/// With a non-reading client stalling the hub, one client sends 20,000
/// messages of 1 KiB (several times what the non-reader's socket buffers and
/// the server's queue for it hold, so the server must stop reading from the
/// sender). A listener and
/// the sender itself receive all of them in order once the non-reader has
/// been dropped, and the sender is never closed.
fn paused_sender_is_delivered_after_the_pause(rt: Runtime) {
    let burst = Burst {
        senders: 1,
        per_sender: 20_000,
        len: 1024,
        listeners: 1,
        non_reader: true,
    };
    let outcome = run(rt, &burst);
    let mut problems = outcome.non_reader_problems();
    problems.extend(outcome.reader_problems());
    problems.extend(outcome.queue_problems(1));
    // The scenario only tests a pause if there was one: the last message
    // reached the listener after the non-reader was dropped.
    if let (Some(drop), Some(done)) = (
        outcome.first_drop_after,
        outcome.clients[1].read.completed_at,
    ) {
        let done = done - outcome.started;
        if done < drop {
            problems.push(format!(
                "the listener had every message {done:.2?} after the start, before the \
                 non-reader was dropped ({drop:.2?}): the sender was never paused, send more"
            ));
        }
    }
    fail_if_any("paused sender", &outcome, &problems);
    eprintln!("{rt:?}: paused sender took {:.1?}", outcome.elapsed);
}

macro_rules! suite {
    ($($module:ident => $rt:expr),* $(,)?) => {$(
        mod $module {
            use super::*;
            #[test] fn burst_every_reading_client_gets_every_message() { super::burst_every_reading_client_gets_every_message($rt) }
            #[test] fn slow_consumer_only_the_non_reader_is_dropped() { super::slow_consumer_only_the_non_reader_is_dropped($rt) }
            #[test] fn paused_sender_is_delivered_after_the_pause() { super::paused_sender_is_delivered_after_the_pause($rt) }
        }
    )*};
}

suite! {
    on_tokio => Runtime::Tokio,
    on_async_std => Runtime::AsyncStd,
    on_smol => Runtime::Smol,
    on_blocking => Runtime::Blocking,
}
