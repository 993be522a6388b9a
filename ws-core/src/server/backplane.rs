//! Scale-out: the sans-IO half of a broadcast backplane that joins several
//! server processes (nodes) into one cluster, so that a broadcast or topic
//! publish on any node reaches every client on every node.
//!
//! The transport (a Redis stream, in the `ws-redis` crate) only moves
//! [`Entry`]s; everything that decides what is sent, what is delivered and
//! what was lost is here, written once and tested without any server:
//!
//! - **Outgoing.** A [`Hub`] with a [`Backplane`] attached
//!   ([`Hub::attach_backplane`]) delivers a local broadcast or publish to its
//!   own clients at once, exactly as without one (same flow control), and
//!   queues it here under the next per-node sequence number. The transport
//!   takes the oldest entries ([`Backplane::pending`]) and drops them only
//!   once written ([`Backplane::confirm`]), so entries published while the
//!   link is down wait here and go out on reconnect. The queue is bounded
//!   ([`Backplane::buffer`]): past the bound a publish still reaches the
//!   local clients but not the cluster, and is counted
//!   ([`BackplaneStats::overflowed`]); its sequence number is spent, so the
//!   other nodes see (and count) the gap too.
//! - **Incoming.** Each entry read from the transport goes through
//!   [`Backplane::receive`]: this node's own entries are skipped (its
//!   clients already have them), a sequence number at or below the last one
//!   seen from that origin is a duplicate (a write retried after a lost
//!   reply) and skipped, a jump is a gap (the node fell behind the
//!   transport's retention) that is counted and returned for logging, and a
//!   malformed entry is counted and skipped. Nothing is silent.
//! - **Delivery.** [`Backplane::offer`] delivers accepted entries to the
//!   local clients through [`Hub::deliver_local`] (never sent back out),
//!   under the hub's flow control: while the hub is congested it delivers
//!   nothing and says until when to wait, so the transport's reader stops
//!   reading (the stream keeps the entries) rather than dropping; a slow
//!   local client is dropped by its own node only.
//!
//! An origin is the node's name plus a random incarnation, so a node that
//! restarts under the same name starts a fresh sequence without its new
//! entries being taken for duplicates.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Instant;

use bytes::Bytes;

use crate::connection::PreparedMessage;
use crate::message::{Message, Utf8Bytes};
use crate::server::hub::{Hub, Target, Wake};

/// Outgoing entries kept while the link is down, by default.
pub const DEFAULT_BUFFER_ENTRIES: usize = 65_536;

/// Outgoing payload bytes kept while the link is down, by default.
pub const DEFAULT_BUFFER_BYTES: usize = 64 << 20;

/// Origins whose last sequence number is remembered; the least recently
/// heard from is forgotten past this, so nodes that restart in a loop
/// cannot grow the table.
pub const MAX_ORIGINS: usize = 1024;

/// What one outgoing entry costs against the byte bound beyond its
/// payload, so that a flood of empty messages is bounded too.
const ENTRY_OVERHEAD: usize = 64;

/// Whom an entry is for on every node.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Route {
    /// Every client.
    All,
    /// The subscribers of this topic.
    Topic(Arc<str>),
}

impl Route {
    /// The hub target this route delivers to.
    pub fn target(&self) -> Target<'_> {
        match self {
            Route::All => Target::All,
            Route::Topic(t) => Target::Topic(t),
        }
    }
}

/// One broadcast or publish as it travels between nodes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The node that published it (name and incarnation).
    pub origin: Arc<str>,
    /// Its position in the origin's sequence, from 1.
    pub seq: u64,
    /// Whom it is for.
    pub route: Route,
    /// Text (`true`) or binary.
    pub text: bool,
    /// The message's payload.
    pub payload: Bytes,
}

/// Why an entry read from the transport was skipped as malformed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Malformed(pub &'static str);

impl fmt::Display for Malformed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "malformed backplane entry: {}", self.0)
    }
}

impl std::error::Error for Malformed {}

/// The field names of an encoded entry (readable with `redis-cli XRANGE`).
pub mod field {
    /// The origin node (`NAME/INCARNATION`).
    pub const ORIGIN: &str = "origin";
    /// The origin's sequence number, in decimal.
    pub const SEQ: &str = "seq";
    /// `*` for every client, `#NAME` for topic NAME.
    pub const TO: &str = "to";
    /// `text` or `binary`.
    pub const KIND: &str = "kind";
    /// The payload.
    pub const DATA: &str = "data";
}

impl Entry {
    /// The entry as field/value pairs, the form a stream stores.
    pub fn fields(&self) -> [(&'static str, Bytes); 5] {
        let to = match &self.route {
            Route::All => Bytes::from_static(b"*"),
            Route::Topic(t) => Bytes::from(format!("#{t}")),
        };
        let kind: &'static [u8] = if self.text { b"text" } else { b"binary" };
        [
            (
                field::ORIGIN,
                Bytes::copy_from_slice(self.origin.as_bytes()),
            ),
            (field::SEQ, Bytes::from(self.seq.to_string())),
            (field::TO, to),
            (field::KIND, Bytes::from_static(kind)),
            (field::DATA, self.payload.clone()),
        ]
    }

    /// Parses the field/value pairs of [`fields`](Self::fields). Unknown
    /// fields are ignored (a later version may add some); a missing or
    /// invalid one is an error, never a panic.
    ///
    /// # Errors
    ///
    /// [`Malformed`] naming what is wrong.
    pub fn decode<'a>(
        fields: impl IntoIterator<Item = (&'a [u8], &'a [u8])>,
    ) -> Result<Entry, Malformed> {
        let (mut origin, mut seq, mut to, mut kind, mut data) = (None, None, None, None, None);
        for (name, value) in fields {
            let slot = match name {
                b"origin" => &mut origin,
                b"seq" => &mut seq,
                b"to" => &mut to,
                b"kind" => &mut kind,
                b"data" => &mut data,
                _ => continue,
            };
            *slot = Some(value);
        }
        let origin = std::str::from_utf8(origin.ok_or(Malformed("no origin"))?)
            .ok()
            .filter(|o| !o.is_empty())
            .ok_or(Malformed("origin is not UTF-8 text"))?;
        let seq = std::str::from_utf8(seq.ok_or(Malformed("no seq"))?)
            .ok()
            .and_then(|s| s.parse::<u64>().ok())
            .filter(|s| *s > 0)
            .ok_or(Malformed("seq is not a positive integer"))?;
        let route = match to.ok_or(Malformed("no to"))? {
            b"*" => Route::All,
            [b'#', topic @ ..] => Route::Topic(Arc::from(
                std::str::from_utf8(topic).map_err(|_| Malformed("topic is not UTF-8"))?,
            )),
            _ => return Err(Malformed("to is neither * nor #topic")),
        };
        let text = match kind.ok_or(Malformed("no kind"))? {
            b"text" => true,
            b"binary" => false,
            _ => return Err(Malformed("kind is neither text nor binary")),
        };
        let payload = Bytes::copy_from_slice(data.ok_or(Malformed("no data"))?);
        if text && simdutf8::basic::from_utf8(&payload).is_err() {
            return Err(Malformed("text data is not UTF-8"));
        }
        Ok(Entry {
            origin: Arc::from(origin),
            seq,
            route,
            text,
            payload,
        })
    }

    /// The message it carries, encoded once for every local recipient.
    ///
    /// # Errors
    ///
    /// [`Malformed`] for text that is not UTF-8 (an entry built by hand;
    /// [`decode`](Self::decode) already refuses it).
    pub fn prepared(&self) -> Result<PreparedMessage, Malformed> {
        let msg = if self.text {
            Message::Text(
                Utf8Bytes::try_from(self.payload.clone())
                    .map_err(|_| Malformed("text data is not UTF-8"))?,
            )
        } else {
            Message::Binary(self.payload.clone())
        };
        PreparedMessage::new(&msg).map_err(|_| Malformed("not a data message"))
    }
}

/// The opcode and payload of an unmasked, unfragmented data frame as
/// [`PreparedMessage`] encodes it; `None` for anything else.
fn frame_parts(frame: &[u8]) -> Option<(bool, &[u8])> {
    let (&b0, rest) = frame.split_first()?;
    let text = match b0 {
        0x81 => true,
        0x82 => false,
        _ => return None,
    };
    let (&b1, rest) = rest.split_first()?;
    if b1 & 0x80 != 0 {
        return None;
    }
    let (len, rest) = match b1 {
        126 => {
            let (n, rest) = rest.split_first_chunk::<2>()?;
            (u64::from(u16::from_be_bytes(*n)), rest)
        }
        127 => {
            let (n, rest) = rest.split_first_chunk::<8>()?;
            (u64::from_be_bytes(*n), rest)
        }
        n => (u64::from(n), rest),
    };
    (usize::try_from(len).ok()? == rest.len()).then_some((text, rest))
}

/// What [`Backplane::receive`] made of one entry read from the transport.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Received {
    /// Another node's next entry: deliver it to the local clients.
    Deliver(Entry),
    /// Another node's entry after `missed` entries of its that this node
    /// never saw (it fell behind the transport's retention, or the origin's
    /// buffer overflowed): deliver it, and log the loss.
    Gap {
        /// The entry, to deliver.
        entry: Entry,
        /// How many of the origin's entries are missing before it.
        missed: u64,
    },
    /// This node's own entry coming back: its clients already have it.
    Own,
    /// An entry seen before (a write retried after a lost reply): skipped.
    Duplicate,
    /// Not an entry: counted and skipped.
    Malformed(Malformed),
}

/// The backplane's counters, for monitoring and tests.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct BackplaneStats {
    /// Local broadcasts and publishes queued for the cluster.
    pub published: u64,
    /// Of those, written to the transport.
    pub sent: u64,
    /// Local publishes not queued: the buffer was full (the link was down
    /// too long). The local clients got them; the cluster did not.
    pub overflowed: u64,
    /// Entries waiting to be written now.
    pub pending: usize,
    /// Other nodes' entries delivered to the local clients.
    pub delivered: u64,
    /// This node's own entries read back and skipped.
    pub own: u64,
    /// Entries read twice and skipped.
    pub duplicates: u64,
    /// Gaps seen in other nodes' sequences.
    pub gaps: u64,
    /// Entries missing in those gaps.
    pub missed: u64,
    /// Malformed entries skipped.
    pub malformed: u64,
    /// Whether the transport is connected now (set by it).
    pub linked: bool,
    /// Clients on every node, as last counted by the transport (`None`
    /// until it has counted).
    pub cluster_clients: Option<usize>,
}

#[derive(Debug, Default)]
struct Outgoing {
    next_seq: u64,
    queue: VecDeque<Entry>,
    bytes: usize,
}

#[derive(Debug, Default)]
struct Seen {
    /// Each origin's last sequence number and when (in `clock` ticks) it
    /// was last heard from.
    origins: HashMap<Arc<str>, (u64, u64)>,
    clock: u64,
}

#[derive(Debug, Default)]
struct Counters {
    published: AtomicU64,
    sent: AtomicU64,
    overflowed: AtomicU64,
    delivered: AtomicU64,
    own: AtomicU64,
    duplicates: AtomicU64,
    gaps: AtomicU64,
    missed: AtomicU64,
    malformed: AtomicU64,
}

/// One node's end of the cluster: its outgoing queue, the last sequence
/// number seen from every other node, and the counters. Shared by the hub
/// (which queues local publishes) and the transport's threads or tasks.
/// See the [module docs](self).
pub struct Backplane {
    node: Arc<str>,
    origin: Arc<str>,
    max_entries: usize,
    max_bytes: usize,
    out: Mutex<Outgoing>,
    seen: Mutex<Seen>,
    counters: Counters,
    /// The transport's writer, woken when the queue stops being empty.
    wake: OnceLock<Arc<dyn Wake>>,
    linked: AtomicBool,
    /// `usize::MAX` until counted.
    cluster_clients: AtomicUsize,
}

impl fmt::Debug for Backplane {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Backplane")
            .field("origin", &self.origin)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section leaves its state consistent.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Backplane {
    /// Node `node` of a cluster, with a fresh random incarnation and the
    /// default buffer bounds. `node` names it in logs; nodes should have
    /// distinct names, but two with the same one still work (their
    /// incarnations differ).
    pub fn new(node: &str) -> Self {
        let incarnation: u64 = rand::random();
        Backplane {
            node: Arc::from(node),
            origin: Arc::from(format!("{node}/{incarnation:016x}")),
            max_entries: DEFAULT_BUFFER_ENTRIES,
            max_bytes: DEFAULT_BUFFER_BYTES,
            out: Mutex::new(Outgoing {
                next_seq: 1,
                ..Outgoing::default()
            }),
            seen: Mutex::new(Seen::default()),
            counters: Counters::default(),
            wake: OnceLock::new(),
            linked: AtomicBool::new(false),
            cluster_clients: AtomicUsize::new(usize::MAX),
        }
    }

    /// Bounds the outgoing queue to `entries` entries and `bytes` payload
    /// bytes (each at least 1): what a link that is down can cost.
    pub fn buffer(mut self, entries: usize, bytes: usize) -> Self {
        self.max_entries = entries.max(1);
        self.max_bytes = bytes.max(1);
        self
    }

    /// The node's name.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// The node's origin in entries: its name and incarnation.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// Sets how the transport's writer is woken when an entry is queued in
    /// an empty queue (once; later calls are ignored).
    pub fn set_wake(&self, wake: Arc<dyn Wake>) {
        let _ = self.wake.set(wake);
    }

    /// Queues local messages for `target` (every client or a topic; a
    /// single client is local and ignored), each under the next sequence
    /// number. The hub calls it under its lock, after delivering them
    /// locally, so the cluster sees this node's messages in the order its
    /// own clients do.
    pub fn publish(&self, target: Target<'_>, msgs: &[PreparedMessage]) {
        let route = match target {
            Target::All => Route::All,
            Target::Topic(t) => Route::Topic(Arc::from(t)),
            Target::Client(_) => return,
        };
        let mut out = lock(&self.out);
        let was_empty = out.queue.is_empty();
        for msg in msgs {
            let seq = out.next_seq;
            out.next_seq += 1;
            let Some((text, payload)) = frame_parts(msg.as_bytes()) else {
                // Not a frame this module encodes; cannot happen with
                // PreparedMessage::new, and counted if it ever does.
                self.counters.overflowed.fetch_add(1, Ordering::Relaxed);
                continue;
            };
            let cost = payload.len() + ENTRY_OVERHEAD;
            if out.queue.len() >= self.max_entries || out.bytes + cost > self.max_bytes {
                self.counters.overflowed.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            out.bytes += cost;
            out.queue.push_back(Entry {
                origin: self.origin.clone(),
                seq,
                route: route.clone(),
                text,
                payload: Bytes::copy_from_slice(payload),
            });
            self.counters.published.fetch_add(1, Ordering::Relaxed);
        }
        let wake = was_empty && !out.queue.is_empty();
        drop(out);
        if let Some(w) = self.wake.get().filter(|_| wake) {
            w.wake();
        }
    }

    /// The oldest `max` entries not yet written, oldest first (copies: they
    /// stay queued until [`confirm`](Self::confirm)ed, so a write that fails
    /// is retried with the same entries).
    pub fn pending(&self, max: usize) -> Vec<Entry> {
        lock(&self.out).queue.iter().take(max).cloned().collect()
    }

    /// Entries waiting to be written.
    pub fn pending_len(&self) -> usize {
        lock(&self.out).queue.len()
    }

    /// The oldest `n` entries are written: forget them.
    pub fn confirm(&self, n: usize) {
        let mut out = lock(&self.out);
        let n = n.min(out.queue.len());
        let freed: usize = out
            .queue
            .drain(..n)
            .map(|e| e.payload.len() + ENTRY_OVERHEAD)
            .sum();
        out.bytes -= freed;
        drop(out);
        self.counters.sent.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// Checks one entry read from the transport, given as its field/value
    /// pairs, against this node's origin and the last sequence number seen
    /// from its origin (see [`Received`]).
    pub fn receive<'a>(&self, fields: impl IntoIterator<Item = (&'a [u8], &'a [u8])>) -> Received {
        match Entry::decode(fields) {
            Ok(entry) => self.accept(entry),
            Err(m) => {
                self.counters.malformed.fetch_add(1, Ordering::Relaxed);
                Received::Malformed(m)
            }
        }
    }

    /// [`receive`](Self::receive) for an entry already decoded.
    pub fn accept(&self, entry: Entry) -> Received {
        if entry.origin == self.origin {
            self.counters.own.fetch_add(1, Ordering::Relaxed);
            return Received::Own;
        }
        let mut seen = lock(&self.seen);
        seen.clock += 1;
        let now = seen.clock;
        let last = match seen.origins.get_mut(&entry.origin) {
            Some((last, touched)) => {
                *touched = now;
                let prev = *last;
                *last = (*last).max(entry.seq);
                Some(prev)
            }
            None => {
                if seen.origins.len() >= MAX_ORIGINS {
                    let oldest = seen
                        .origins
                        .iter()
                        .min_by_key(|(_, (_, touched))| *touched)
                        .map(|(o, _)| o.clone());
                    if let Some(oldest) = oldest {
                        seen.origins.remove(&oldest);
                    }
                }
                seen.origins.insert(entry.origin.clone(), (entry.seq, now));
                None
            }
        };
        drop(seen);
        match last {
            Some(last) if entry.seq <= last => {
                self.counters.duplicates.fetch_add(1, Ordering::Relaxed);
                Received::Duplicate
            }
            Some(last) if entry.seq > last + 1 => {
                let missed = entry.seq - last - 1;
                self.counters.gaps.fetch_add(1, Ordering::Relaxed);
                self.counters.missed.fetch_add(missed, Ordering::Relaxed);
                Received::Gap { entry, missed }
            }
            // The next one, or the first heard from this origin (this node
            // joined after it started: nothing before is owed).
            _ => Received::Deliver(entry),
        }
    }

    /// Delivers `entries` (accepted by [`receive`](Self::receive)) to the
    /// local clients, under the hub's flow control: stalled clients whose
    /// deadline passed at `now` are dropped first; then, while the hub is
    /// congested, nothing is delivered, `wake` is registered (as in
    /// [`Hub::pause`]) and `Err(deadline)` says until when to wait at most
    /// before offering again: the caller stops reading meanwhile, and the
    /// transport keeps the entries. `Ok` once all are delivered.
    ///
    /// Consecutive entries for the same route go out under one hub lock. An
    /// entry whose message cannot be built is counted as malformed.
    pub fn offer(
        &self,
        hub: &Hub,
        entries: &[Entry],
        wake: &Arc<dyn Wake>,
        registered: &mut Option<u64>,
        now: Instant,
    ) -> Result<(), Option<Instant>> {
        hub.handle_timeout(now);
        if hub.pause(wake, registered) {
            return Err(hub.poll_timeout());
        }
        let mut run: Vec<PreparedMessage> = Vec::new();
        let mut route: Option<&Route> = None;
        for entry in entries {
            if route.is_some_and(|r| *r != entry.route) {
                self.deliver_run(hub, route, &mut run, now);
            }
            route = Some(&entry.route);
            match entry.prepared() {
                Ok(msg) => run.push(msg),
                Err(_) => {
                    self.counters.malformed.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        self.deliver_run(hub, route, &mut run, now);
        Ok(())
    }

    fn deliver_run(
        &self,
        hub: &Hub,
        route: Option<&Route>,
        run: &mut Vec<PreparedMessage>,
        now: Instant,
    ) {
        if let Some(route) = route.filter(|_| !run.is_empty()) {
            hub.deliver_local(route.target(), run, now);
            self.counters
                .delivered
                .fetch_add(run.len() as u64, Ordering::Relaxed);
        }
        run.clear();
    }

    /// Records whether the transport is connected now.
    pub fn set_linked(&self, linked: bool) {
        self.linked.store(linked, Ordering::Relaxed);
    }

    /// Records the cluster-wide client count the transport last summed.
    pub fn set_cluster_clients(&self, n: usize) {
        self.cluster_clients
            .store(n.min(usize::MAX - 1), Ordering::Relaxed);
    }

    /// The counters now.
    pub fn stats(&self) -> BackplaneStats {
        let c = &self.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let clients = self.cluster_clients.load(Ordering::Relaxed);
        BackplaneStats {
            published: get(&c.published),
            sent: get(&c.sent),
            overflowed: get(&c.overflowed),
            pending: self.pending_len(),
            delivered: get(&c.delivered),
            own: get(&c.own),
            duplicates: get(&c.duplicates),
            gaps: get(&c.gaps),
            missed: get(&c.missed),
            malformed: get(&c.malformed),
            linked: self.linked.load(Ordering::Relaxed),
            cluster_clients: (clients != usize::MAX).then_some(clients),
        }
    }
}

/// A transport that joins a server to a cluster (a Redis stream, for
/// instance): what every runtime adapter's `Server::backplane` takes. The
/// adapter hands it its hub when the server starts ([`start`]); the hub
/// stops it when the server shuts down. So the transport's logic is
/// written once whatever the runtime.
pub trait Engine: Send + Sync + fmt::Debug + 'static {
    /// Attaches a [`Backplane`] to `hub` ([`Hub::attach_backplane`]) and
    /// starts moving its entries (its own threads or tasks); returns at
    /// once, without waiting for the link (entries wait in the buffer).
    ///
    /// # Errors
    ///
    /// What prevented starting at all (not an unreachable server: that is
    /// retried).
    fn start(&self, hub: &Arc<Hub>) -> io::Result<Box<dyn Running>>;
}

/// A started [`Engine`]: stopped when the server shuts down.
pub trait Running: Send + Sync + fmt::Debug {
    /// Stops moving entries (without waiting for the threads or tasks to
    /// end). Idempotent.
    fn stop(&self);
}

/// Starts `engine` on `hub` if there is one, to be stopped by
/// [`Hub::shutdown`]: what every adapter's `Server` does when it starts.
///
/// # Errors
///
/// As [`Engine::start`].
pub fn start(engine: Option<&Arc<dyn Engine>>, hub: &Arc<Hub>) -> io::Result<()> {
    if let Some(engine) = engine {
        hub.stop_on_shutdown(engine.start(hub)?);
    }
    Ok(())
}

#[cfg(test)]
mod tests;
