//! The broadcast registry shared by every runtime adapter's `Server`, and
//! its flow control.
//!
//! A [`Hub`] holds one [`Outbox`] (a queue of encoded frames) per client.
//! A broadcast encodes the frame once ([`PreparedMessage`]) and appends the
//! same shared bytes to every queue. What happens when a queue grows is the
//! point of this module; the rules, in order:
//!
//! 1. **Backpressure, not loss.** A queue above its high-water mark
//!    ([`FlowControl::high_water`]) makes the hub *congested*. While it is,
//!    [`ServerSession`](crate::server::session::ServerSession)s stop decoding and
//!    reading what their clients send ([`Hub::pause`]), so TCP pushes back on
//!    the senders, and application broadcasts ([`Hub::offer`]) wait. When
//!    the last queue drains below its mark, every paused party is woken
//!    (through its [`Wake`]). Nothing is discarded: a client that keeps
//!    reading gets every message, once, in the order the hub accepted them
//!    (one lock orders all broadcasts, so every client sees the same order,
//!    and in particular each sender's messages in that sender's order).
//! 2. **A slow client is one that makes no progress.** A queue that stays
//!    above its mark, without once draining below it, for
//!    [`FlowControl::slow_client_timeout`] is dropped: the client is
//!    removed, its queue is emptied and closed with [`SLOW_CLIENT_CLOSE`],
//!    and the others resume. Whoever is waiting on the congestion notices the
//!    deadline ([`Hub::poll_timeout`], [`Hub::handle_timeout`]), so the rule
//!    holds while every sender is paused.
//! 3. **Bounded memory.** A queue whose bytes would pass
//!    [`FlowControl::max_queued_bytes`] is dropped at once (a single message
//!    always fits in an empty queue: its size is bounded by the connection's
//!    `max_message_size`). Server memory is therefore bounded by clients x
//!    that bound, whatever the senders do.
//!
//! A push goes to a [`Target`]: every client, the subscribers of a topic
//! (a room: [`Hub::subscribe`], [`Hub::unsubscribe`]), or one client. The
//! rules above are the same whatever the target.
//!
//! The hub reads no clock: time comes in as `now`. It is thread-safe and
//! runtime-neutral: the only thing an adapter supplies is a [`Wake`], the way
//! its connection task (or thread) is woken.

use crate::close::CloseCode;
use crate::connection::PreparedMessage;
use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use crate::server::backplane::{Backplane, Running};
use crate::server::metrics::{MetricsSnapshot, ServerMetrics};

/// Close code sent to a client dropped for not keeping up with broadcasts.
///
/// 1013 "Try Again Later" rather than 1008 "Policy Violation": the client did
/// nothing wrong in protocol terms, it was only too slow right now, and 1013
/// tells a well-behaved client that reconnecting later is reasonable.
pub const SLOW_CLIENT_CLOSE: CloseCode = CloseCode::TRY_AGAIN_LATER;

/// What one queued message costs beyond its frame bytes (the queue slot), so
/// that a byte bound also bounds a flood of empty messages.
const ENTRY_OVERHEAD: usize = std::mem::size_of::<PreparedMessage>();

/// The flow-control limits of every client's broadcast queue.
///
/// Defaults: high-water mark 1,024 messages or 1 MiB, hard bound 16 MiB,
/// slow-client timeout 5 s. The timeout is the longest a stalled client can
/// hold up the others, so it is a few seconds: long enough for a client on
/// a congested link to catch up, short enough that a chat does not freeze
/// noticeably behind a dead one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowControl {
    high_water_messages: usize,
    high_water_bytes: usize,
    max_queued_bytes: usize,
    slow_client_timeout: Duration,
}

impl Default for FlowControl {
    fn default() -> Self {
        FlowControl {
            high_water_messages: 1024,
            high_water_bytes: 1 << 20,
            max_queued_bytes: 16 << 20,
            slow_client_timeout: Duration::from_secs(5),
        }
    }
}

impl FlowControl {
    /// The high-water mark: a queue holding more than `messages` messages or
    /// `bytes` bytes (frame bytes plus a small per-message overhead) is
    /// *above the mark*, and senders pause until it drains. Each at least 1.
    pub fn high_water(mut self, messages: usize, bytes: usize) -> Self {
        self.high_water_messages = messages.max(1);
        self.high_water_bytes = bytes.max(1);
        self
    }

    /// The hard bound of one queue in bytes: a push past it drops the client
    /// at once (close 1013). Raised to the high-water bytes if below them.
    pub fn max_queued_bytes(mut self, bytes: usize) -> Self {
        self.max_queued_bytes = bytes;
        self
    }

    /// How long a queue may stay above the mark without draining below it
    /// before its client is dropped (close 1013).
    pub fn slow_client_timeout(mut self, timeout: Duration) -> Self {
        self.slow_client_timeout = timeout;
        self
    }

    /// The high-water mark in messages.
    pub fn get_high_water_messages(&self) -> usize {
        self.high_water_messages
    }

    /// The high-water mark in bytes.
    pub fn get_high_water_bytes(&self) -> usize {
        self.high_water_bytes
    }

    /// The hard bound of one queue in bytes.
    pub fn get_max_queued_bytes(&self) -> usize {
        self.max_queued_bytes.max(self.high_water_bytes)
    }

    /// The slow-client timeout.
    pub fn get_slow_client_timeout(&self) -> Duration {
        self.slow_client_timeout
    }
}

/// How the hub wakes a connection task or thread: a message arrived in an
/// empty queue, its queue was closed, or the congestion it paused on cleared.
/// Spurious wakes are allowed; the woken party re-checks everything.
pub trait Wake: Send + Sync {
    /// Wakes the party (never blocks; typically a `Notify`, a waker or a
    /// condition variable).
    fn wake(&self);
}

/// A registered client's id, unique for the hub's lifetime.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClientId(pub u64);

/// What one broadcast did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct BroadcastReport {
    /// Clients the message was queued for.
    pub delivered: usize,
    /// Clients dropped by this broadcast: the message would have taken their
    /// queue past [`FlowControl::max_queued_bytes`], or they had been stalled
    /// past [`FlowControl::slow_client_timeout`].
    pub dropped: Vec<ClientId>,
}

/// A snapshot of the hub's queues, for tests and monitoring.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct HubStats {
    /// Registered clients.
    pub clients: usize,
    /// Clients whose queue is above the high-water mark now.
    pub stalled: usize,
    /// Bytes queued over all clients now (frame bytes plus overhead; a frame
    /// shared by many queues counts once per queue).
    pub queued_bytes: usize,
    /// The most bytes any one queue has held since the hub started.
    pub peak_queue_bytes: usize,
    /// Clients dropped as slow (stalled or past the byte bound) so far.
    pub dropped_slow: u64,
    /// Topics with at least one subscriber.
    pub topics: usize,
}

/// Whom a push goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Target<'a> {
    /// Every registered client.
    All,
    /// The clients subscribed to this topic.
    Topic(&'a str),
    /// One client.
    Client(ClientId),
}

/// What [`Outbox::pop`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pop {
    /// The next message for this client.
    Message(PreparedMessage),
    /// Nothing queued now; the owner's [`Wake`] fires when something is.
    Empty,
    /// The hub let go of this client: close it with this code
    /// ([`SLOW_CLIENT_CLOSE`], or 1001 when the server shuts down).
    Closed(CloseCode),
}

/// One client's queue; the hub pushes, the client's [`Outbox`] pops.
struct Queue {
    id: ClientId,
    /// The client's address, for [`Hub::connection`].
    peer: Option<std::net::SocketAddr>,
    wake: Arc<dyn Wake>,
    state: Mutex<QueueState>,
    /// False only while the queue is empty and open, so that a session can
    /// look for broadcasts on every poll without taking the lock (an echo
    /// client's queue is nearly always empty). Written under the lock.
    pending: AtomicBool,
}

#[derive(Default)]
struct QueueState {
    items: VecDeque<PreparedMessage>,
    bytes: usize,
    /// Above the high-water mark (then in [`HubState::stalled`]).
    above: bool,
    /// Set when the hub let go of the client, with the close code.
    closed: Option<CloseCode>,
    /// The close reason to send with `closed` (empty unless the application
    /// closed the client through [`Hub::close_client`]).
    reason: String,
}

impl Queue {
    fn lock(&self) -> MutexGuard<'_, QueueState> {
        // Every critical section leaves the state consistent, so a panic
        // elsewhere cannot poison it in a way that matters.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

struct HubState {
    clients: HashMap<ClientId, Arc<Queue>>,
    /// Each topic's subscribers. A topic exists only while it has one, so
    /// the table cannot grow with topics nobody is in.
    topics: HashMap<Arc<str>, HashMap<ClientId, Arc<Queue>>>,
    /// Each client's topics, to clean up when it leaves.
    subscriptions: HashMap<ClientId, HashSet<Arc<str>>>,
    /// Queues above the mark, with the time each crossed it.
    stalled: HashMap<ClientId, Instant>,
    /// Parties waiting for the congestion to clear.
    paused: Vec<Arc<dyn Wake>>,
    /// Bumped each time `paused` is woken and emptied.
    epoch: u64,
    /// Once set, new clients are closed with 1001 at once.
    shutting_down: bool,
}

/// A thread-safe registry of connected clients and their broadcast queues.
/// See the [module docs](self) for the flow-control rules.
pub struct Hub {
    limits: FlowControl,
    state: Mutex<HubState>,
    /// Mirrors `!state.stalled.is_empty()` for a lock-free check per message.
    congested: AtomicBool,
    next_id: AtomicU64,
    queued_bytes: AtomicUsize,
    peak_queue_bytes: AtomicUsize,
    dropped_slow: AtomicU64,
    /// The cluster this hub's broadcasts and publishes also go to, if any.
    backplane: OnceLock<Arc<Backplane>>,
    /// The backplane's transport, stopped by [`shutdown`](Self::shutdown).
    transport: Mutex<Option<Box<dyn Running>>>,
    /// The counters the connections of this server keep.
    metrics: ServerMetrics,
    /// The runtime the server runs on, for logs.
    runtime: &'static str,
}

impl fmt::Debug for Hub {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hub")
            .field("limits", &self.limits)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl Default for Hub {
    fn default() -> Self {
        Hub::new(FlowControl::default())
    }
}

impl Hub {
    /// An empty hub with these limits.
    pub fn new(limits: FlowControl) -> Self {
        Hub {
            limits,
            state: Mutex::new(HubState {
                clients: HashMap::new(),
                topics: HashMap::new(),
                subscriptions: HashMap::new(),
                stalled: HashMap::new(),
                paused: Vec::new(),
                epoch: 0,
                shutting_down: false,
            }),
            congested: AtomicBool::new(false),
            next_id: AtomicU64::new(1),
            queued_bytes: AtomicUsize::new(0),
            peak_queue_bytes: AtomicUsize::new(0),
            dropped_slow: AtomicU64::new(0),
            backplane: OnceLock::new(),
            transport: Mutex::new(None),
            metrics: ServerMetrics::default(),
            runtime: "custom",
        }
    }

    /// Names the runtime this hub's server runs on (`tokio`, `smol`, ...),
    /// for the connections' log spans. Each adapter names its own.
    pub fn runtime(mut self, name: &'static str) -> Self {
        self.runtime = name;
        self
    }

    /// The runtime's name (see [`runtime`](Self::runtime)).
    pub fn runtime_name(&self) -> &'static str {
        self.runtime
    }

    /// The counters the sessions of this hub add to.
    pub(crate) fn counters(&self) -> &ServerMetrics {
        &self.metrics
    }

    /// Everything the server counts, now: the engine's counters plus the
    /// hub's slow-client drops and queue depth (messages and bytes waiting
    /// in clients' queues; counting the messages takes each queue's lock
    /// once, so this is for a scrape, not for every message).
    pub fn metrics(&self) -> MetricsSnapshot {
        let mut m = self.metrics.snapshot();
        let queued: usize = {
            let st = self.lock();
            st.clients.values().map(|q| q.lock().items.len()).sum()
        };
        m.slow_client_drops = self.dropped_slow.load(Ordering::Relaxed);
        m.queued_messages = queued as u64;
        m.queued_bytes = self.queued_bytes.load(Ordering::Relaxed) as u64;
        m
    }

    /// Joins a cluster: from now on every broadcast and topic publish (not a
    /// message to one client) is also queued on `backplane` for the other
    /// nodes, after its local delivery. Once per hub: `false` if one is
    /// already attached.
    pub fn attach_backplane(&self, backplane: Arc<Backplane>) -> bool {
        self.backplane.set(backplane).is_ok()
    }

    /// Stops `transport` when the hub shuts down (so every adapter's
    /// shutdown stops it, with nothing to add).
    pub(crate) fn stop_on_shutdown(&self, transport: Box<dyn Running>) {
        let mut slot = self.transport.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(old) = slot.replace(transport) {
            old.stop();
        }
    }

    /// The attached backplane, if the hub is part of a cluster.
    pub fn backplane(&self) -> Option<&Arc<Backplane>> {
        self.backplane.get()
    }

    /// The limits every queue follows.
    pub fn limits(&self) -> &FlowControl {
        &self.limits
    }

    fn lock(&self) -> MutexGuard<'_, HubState> {
        // Every critical section leaves the maps consistent.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds a client whose task is woken through `wake`; returns its end of
    /// the queue. Dropping the [`Outbox`] removes the client. After
    /// [`shutdown`](Self::shutdown) the outbox starts closed (1001).
    pub fn register(self: &Arc<Self>, wake: Arc<dyn Wake>) -> Outbox {
        self.register_peer(wake, None)
    }

    /// [`register`](Self::register) for a client at `peer` (what
    /// [`connection`](Self::connection) reports).
    pub fn register_peer(
        self: &Arc<Self>,
        wake: Arc<dyn Wake>,
        peer: Option<std::net::SocketAddr>,
    ) -> Outbox {
        let id = ClientId(self.next_id.fetch_add(1, Ordering::Relaxed));
        let queue = Arc::new(Queue {
            id,
            peer,
            wake,
            state: Mutex::new(QueueState::default()),
            pending: AtomicBool::new(false),
        });
        let mut st = self.lock();
        if st.shutting_down {
            queue.lock().closed = Some(CloseCode::GOING_AWAY);
            queue.pending.store(true, Ordering::Release);
        } else {
            st.clients.insert(id, queue.clone());
        }
        drop(st);
        Outbox {
            hub: self.clone(),
            queue,
        }
    }

    /// A handle to registered client `id` (`None` if it is not registered).
    /// A client registered without a peer address reports `0.0.0.0:0`.
    pub fn connection(
        self: &Arc<Self>,
        id: ClientId,
    ) -> Option<crate::server::handler::ConnectionHandle> {
        let peer = self.lock().clients.get(&id)?.peer;
        let peer = peer.unwrap_or_else(|| ([0, 0, 0, 0], 0).into());
        Some(crate::server::handler::ConnectionHandle::new(
            id,
            peer,
            self.clone(),
        ))
    }

    /// Whether `id` is registered.
    pub fn contains(&self, id: ClientId) -> bool {
        self.lock().clients.contains_key(&id)
    }

    /// Number of registered clients.
    pub fn len(&self) -> usize {
        self.lock().clients.len()
    }

    /// Whether no client is registered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Ids of the registered clients, in ascending order.
    pub fn ids(&self) -> Vec<ClientId> {
        let mut ids: Vec<_> = self.lock().clients.keys().copied().collect();
        ids.sort();
        ids
    }

    /// Whether some queue is above its high-water mark: senders should pause
    /// (see [`pause`](Self::pause)). One atomic load.
    pub fn is_congested(&self) -> bool {
        self.congested.load(Ordering::Acquire)
    }

    /// A snapshot of the queues.
    pub fn stats(&self) -> HubStats {
        let st = self.lock();
        HubStats {
            clients: st.clients.len(),
            stalled: st.stalled.len(),
            queued_bytes: self.queued_bytes.load(Ordering::Relaxed),
            peak_queue_bytes: self.peak_queue_bytes.load(Ordering::Relaxed),
            dropped_slow: self.dropped_slow.load(Ordering::Relaxed),
            topics: st.topics.len(),
        }
    }

    /// Queues `msg` for every client, encoded once and shared.
    ///
    /// This never waits and never refuses a message because a queue is above
    /// its mark (that is the pausing side's job, see
    /// [`is_congested`](Self::is_congested)); it drops only a client whose
    /// queue would pass the hard byte bound, and clients stalled past the
    /// slow-client timeout at `now`.
    pub fn broadcast(&self, msg: &PreparedMessage, now: Instant) -> BroadcastReport {
        self.broadcast_all(std::slice::from_ref(msg), now)
    }

    /// Queues `msgs`, in order, for every client, as
    /// [`broadcast`](Self::broadcast) does for one, under one lock of the
    /// hub and of each queue. A session broadcasts what one read brought in
    /// this way: the hub's lock is the one every sender shares, and taking it
    /// per message made it a convoy on the thread-per-connection server
    /// (seen as dozens of threads parked on it in a 50-sender burst).
    /// `delivered` counts the clients that got all of them.
    pub fn broadcast_all(&self, msgs: &[PreparedMessage], now: Instant) -> BroadcastReport {
        self.deliver(Target::All, msgs, now)
    }

    /// Queues `msg` for the subscribers of `topic`, encoded once and shared,
    /// under the rules of [`broadcast`](Self::broadcast).
    pub fn publish(&self, topic: &str, msg: &PreparedMessage, now: Instant) -> BroadcastReport {
        self.deliver(Target::Topic(topic), std::slice::from_ref(msg), now)
    }

    /// Queues `msgs`, in order, for `target`, under one lock (see
    /// [`broadcast_all`](Self::broadcast_all)); the rules of
    /// [`broadcast`](Self::broadcast) hold whatever the target. A target
    /// with no client (an unknown id, a topic nobody is in) delivers to none.
    ///
    /// With a [`Backplane`] attached, a push to every client or to a topic
    /// is also queued for the other nodes, under the same lock (so they see
    /// this node's messages in the order its clients do).
    pub fn deliver(
        &self,
        target: Target<'_>,
        msgs: &[PreparedMessage],
        now: Instant,
    ) -> BroadcastReport {
        self.deliver_to(target, msgs, now, true)
    }

    /// [`deliver`](Self::deliver) to this node's clients only: how entries
    /// that came from the other nodes are delivered (never sent back out).
    pub fn deliver_local(
        &self,
        target: Target<'_>,
        msgs: &[PreparedMessage],
        now: Instant,
    ) -> BroadcastReport {
        self.deliver_to(target, msgs, now, false)
    }

    fn deliver_to(
        &self,
        target: Target<'_>,
        msgs: &[PreparedMessage],
        now: Instant,
        forward: bool,
    ) -> BroadcastReport {
        let mut st = self.lock();
        let HubState {
            clients,
            topics,
            stalled,
            ..
        } = &mut *st;
        // One concrete iterator per target: this loop runs once per
        // delivery, so no dynamic dispatch in it.
        let (mut report, over) = match target {
            Target::All => self.push(clients.values(), stalled, msgs, now),
            Target::Topic(topic) => match topics.get(topic) {
                Some(subs) => self.push(subs.values(), stalled, msgs, now),
                None => (BroadcastReport::default(), Vec::new()),
            },
            Target::Client(id) => self.push(clients.get(&id).into_iter(), stalled, msgs, now),
        };
        if let Some(backplane) = self.backplane.get().filter(|_| forward) {
            backplane.publish(target, msgs);
        }
        for id in &over {
            self.drop_client(&mut st, *id, SLOW_CLIENT_CLOSE);
        }
        report.dropped = over;
        report.dropped.extend(self.expire(&mut st, now));
        self.after_change(st);
        report.dropped.sort();
        report
    }

    /// Appends `msgs` to each of `queues`; returns the report (without the
    /// drops) and the clients whose queue would pass the hard bound.
    fn push<'q>(
        &self,
        queues: impl Iterator<Item = &'q Arc<Queue>>,
        stalled: &mut HashMap<ClientId, Instant>,
        msgs: &[PreparedMessage],
        now: Instant,
    ) -> (BroadcastReport, Vec<ClientId>) {
        let max = self.limits.get_max_queued_bytes();
        let mut report = BroadcastReport::default();
        let mut over = Vec::new();
        let mut added = 0;
        for queue in queues {
            let mut q = queue.lock();
            let was_empty = q.items.is_empty();
            let mut bytes = q.bytes;
            let mut overflow = false;
            for msg in msgs {
                let cost = msg.encoded_len() + ENTRY_OVERHEAD;
                if bytes + cost > max && !q.items.is_empty() {
                    overflow = true;
                    break;
                }
                q.items.push_back(msg.clone());
                bytes += cost;
            }
            added += bytes - q.bytes;
            q.bytes = bytes;
            if overflow {
                over.push(queue.id);
                continue;
            }
            if msgs.is_empty() {
                continue;
            }
            queue.pending.store(true, Ordering::Release);
            // A read first: the read-modify-write only when it grows.
            if q.bytes > self.peak_queue_bytes.load(Ordering::Relaxed) {
                self.peak_queue_bytes.fetch_max(q.bytes, Ordering::Relaxed);
            }
            if !q.above && self.is_above(&q) {
                q.above = true;
                stalled.insert(queue.id, now);
            }
            drop(q);
            report.delivered += 1;
            if was_empty {
                queue.wake.wake();
            }
        }
        self.queued_bytes.fetch_add(added, Ordering::Relaxed);
        (report, over)
    }

    /// Subscribes client `id` to `topic`; `false` if `id` is not registered
    /// (it left, or was dropped). Subscribing twice is one subscription.
    pub fn subscribe(&self, id: ClientId, topic: &str) -> bool {
        let mut st = self.lock();
        let Some(queue) = st.clients.get(&id).cloned() else {
            return false;
        };
        let subs = st.subscriptions.entry(id).or_default();
        if subs.contains(topic) {
            return true;
        }
        let topic: Arc<str> = match st.topics.get_key_value(topic) {
            Some((name, _)) => name.clone(),
            None => Arc::from(topic),
        };
        st.subscriptions
            .entry(id)
            .or_default()
            .insert(topic.clone());
        st.topics.entry(topic).or_default().insert(id, queue);
        true
    }

    /// Unsubscribes client `id` from `topic`; `false` if it was not
    /// subscribed. The last subscriber leaving removes the topic.
    pub fn unsubscribe(&self, id: ClientId, topic: &str) -> bool {
        let mut st = self.lock();
        let HubState {
            topics,
            subscriptions,
            ..
        } = &mut *st;
        let Some(subs) = subscriptions.get_mut(&id) else {
            return false;
        };
        if !subs.remove(topic) {
            return false;
        }
        if subs.is_empty() {
            subscriptions.remove(&id);
        }
        Self::leave_topic(topics, id, topic);
        true
    }

    fn leave_topic(
        topics: &mut HashMap<Arc<str>, HashMap<ClientId, Arc<Queue>>>,
        id: ClientId,
        topic: &str,
    ) {
        if let Some(members) = topics.get_mut(topic) {
            members.remove(&id);
            if members.is_empty() {
                topics.remove(topic);
            }
        }
    }

    /// Removes client `id` from every topic.
    fn leave_all_topics(st: &mut HubState, id: ClientId) {
        for topic in st.subscriptions.remove(&id).unwrap_or_default() {
            Self::leave_topic(&mut st.topics, id, &topic);
        }
    }

    /// Number of clients subscribed to `topic`.
    pub fn topic_len(&self, topic: &str) -> usize {
        self.lock().topics.get(topic).map_or(0, HashMap::len)
    }

    /// The topics with at least one subscriber and their subscriber counts,
    /// sorted by name.
    pub fn topics(&self) -> Vec<(String, usize)> {
        let mut all: Vec<_> = self
            .lock()
            .topics
            .iter()
            .map(|(name, members)| (name.to_string(), members.len()))
            .collect();
        all.sort();
        all
    }

    /// The topics client `id` is subscribed to, sorted.
    pub fn subscriptions(&self, id: ClientId) -> Vec<String> {
        let mut all: Vec<String> = self
            .lock()
            .subscriptions
            .get(&id)
            .map(|subs| subs.iter().map(|t| t.to_string()).collect())
            .unwrap_or_default();
        all.sort();
        all
    }

    /// Lets go of client `id` on the application's request: it leaves every
    /// topic, what is already queued for it is still delivered, and then it
    /// is closed with `code` and `reason`. `false` if `id` is not registered.
    pub fn close_client(&self, id: ClientId, code: CloseCode, reason: &str) -> bool {
        let mut st = self.lock();
        let Some(queue) = st.clients.get(&id).cloned() else {
            return false;
        };
        queue.lock().reason = reason.to_owned();
        self.drop_client(&mut st, id, code);
        self.after_change(st);
        true
    }

    /// A push to `target` from the application (not from a client), under the same
    /// rules as a client's message: while the hub is congested it is not
    /// queued; instead `wake` is registered (as in [`pause`](Self::pause))
    /// and `Err(deadline)` says until when to wait at most (the earliest
    /// slow-client deadline) before offering again. Stalled clients whose
    /// deadline passed at `now` are dropped first. `Ok` once queued.
    pub fn offer(
        &self,
        target: Target<'_>,
        msg: &PreparedMessage,
        wake: &Arc<dyn Wake>,
        registered: &mut Option<u64>,
        now: Instant,
    ) -> Result<BroadcastReport, Option<Instant>> {
        let expired = self.handle_timeout(now);
        if self.pause(wake, registered) {
            return Err(self.poll_timeout());
        }
        let mut report = self.deliver(target, std::slice::from_ref(msg), now);
        report.dropped.extend(expired);
        report.dropped.sort();
        Ok(report)
    }

    fn is_above(&self, q: &QueueState) -> bool {
        q.items.len() > self.limits.high_water_messages || q.bytes > self.limits.high_water_bytes
    }

    /// Registers `wake` to be woken when the congestion clears. Returns
    /// `false` (registering nothing) if the hub is not congested: go on.
    ///
    /// `registered` remembers the registration between calls, so calling
    /// this on every poll registers once per congestion episode.
    pub fn pause(&self, wake: &Arc<dyn Wake>, registered: &mut Option<u64>) -> bool {
        let mut st = self.lock();
        if st.stalled.is_empty() {
            *registered = None;
            return false;
        }
        if *registered != Some(st.epoch) {
            st.paused.push(wake.clone());
            *registered = Some(st.epoch);
        }
        true
    }

    /// When the earliest stalled queue's slow-client timeout expires, if any
    /// queue is above its mark: whoever waits on the congestion arms a timer
    /// for it and calls [`handle_timeout`](Self::handle_timeout).
    pub fn poll_timeout(&self) -> Option<Instant> {
        let timeout = self.limits.slow_client_timeout;
        self.lock()
            .stalled
            .values()
            .min()
            .map(|since| *since + timeout)
    }

    /// Drops the clients stalled past the slow-client timeout at `now`
    /// (closed with [`SLOW_CLIENT_CLOSE`]); returns their ids.
    pub fn handle_timeout(&self, now: Instant) -> Vec<ClientId> {
        let mut st = self.lock();
        let mut expired = self.expire(&mut st, now);
        self.after_change(st);
        expired.sort();
        expired
    }

    fn expire(&self, st: &mut HubState, now: Instant) -> Vec<ClientId> {
        let timeout = self.limits.slow_client_timeout;
        let expired: Vec<ClientId> = st
            .stalled
            .iter()
            .filter(|(_, since)| **since + timeout <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in &expired {
            self.drop_client(st, *id, SLOW_CLIENT_CLOSE);
        }
        expired
    }

    /// Removes a client, empties its queue (unless it is going away with the
    /// server, whose queued messages are still delivered) and closes it.
    fn drop_client(&self, st: &mut HubState, id: ClientId, code: CloseCode) {
        st.stalled.remove(&id);
        let Some(queue) = st.clients.remove(&id) else {
            return;
        };
        Self::leave_all_topics(st, id);
        let mut q = queue.lock();
        if code == SLOW_CLIENT_CLOSE {
            self.dropped_slow.fetch_add(1, Ordering::Relaxed);
            self.queued_bytes.fetch_sub(q.bytes, Ordering::Relaxed);
            q.items.clear();
            q.bytes = 0;
        }
        q.above = false;
        q.closed = Some(code);
        queue.pending.store(true, Ordering::Release);
        drop(q);
        queue.wake.wake();
    }

    /// Updates the congestion flag after `stalled` changed and, if it
    /// cleared, wakes every paused party (outside the lock).
    fn after_change(&self, mut st: MutexGuard<'_, HubState>) {
        let congested = !st.stalled.is_empty();
        self.congested.store(congested, Ordering::Release);
        if congested || st.paused.is_empty() {
            return;
        }
        st.epoch += 1;
        let paused = std::mem::take(&mut st.paused);
        drop(st);
        for w in paused {
            w.wake();
        }
    }

    /// Closes every client with 1001 (their queued messages are still
    /// delivered first) and closes clients registered from now on; returns
    /// the ids removed. Idempotent.
    pub fn shutdown(&self) -> Vec<ClientId> {
        let mut st = self.lock();
        st.shutting_down = true;
        let mut ids: Vec<ClientId> = st.clients.keys().copied().collect();
        for id in &ids {
            self.drop_client(&mut st, *id, CloseCode::GOING_AWAY);
        }
        // Nobody is left to drain below a mark: wake whoever paused.
        st.stalled.clear();
        self.after_change(st);
        let transport = self
            .transport
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(t) = transport {
            t.stop();
        }
        ids.sort();
        ids
    }

    /// Called by an outbox whose queue dropped below its mark, outside the
    /// queue's lock: re-checks under the hub's lock (a broadcast may have
    /// pushed it above again meanwhile) and clears the congestion if it was
    /// the last.
    fn drained(&self, queue: &Queue) {
        let mut st = self.lock();
        if !queue.lock().above && st.stalled.remove(&queue.id).is_some() {
            self.after_change(st);
        }
    }

    fn unregister(&self, queue: &Queue) {
        let mut st = self.lock();
        st.clients.remove(&queue.id);
        st.stalled.remove(&queue.id);
        Self::leave_all_topics(&mut st, queue.id);
        let mut q = queue.lock();
        self.queued_bytes.fetch_sub(q.bytes, Ordering::Relaxed);
        q.items.clear();
        q.bytes = 0;
        q.above = false;
        q.closed.get_or_insert(CloseCode::GOING_AWAY);
        drop(q);
        self.after_change(st);
    }
}

/// A client's end of its broadcast queue. Dropping it removes the client
/// from the hub.
pub struct Outbox {
    hub: Arc<Hub>,
    queue: Arc<Queue>,
}

impl fmt::Debug for Outbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Outbox")
            .field("id", &self.queue.id)
            .finish_non_exhaustive()
    }
}

impl Outbox {
    /// This client's id.
    pub fn id(&self) -> ClientId {
        self.queue.id
    }

    /// Takes the next message. A queue that drops below its high-water mark
    /// here may clear the hub's congestion (and wake the paused senders).
    pub fn pop(&self) -> Pop {
        let mut popped = None;
        let closed = self.pop_while(1, |msg| {
            popped = Some(msg);
            false
        });
        // The last message first; the close is reported by the next call.
        match (popped, closed) {
            (Some(msg), _) => Pop::Message(msg),
            (None, Some(code)) => Pop::Closed(code),
            (None, None) => Pop::Empty,
        }
    }

    /// Takes up to `max` messages in order under one lock, handing each to
    /// `take` until it returns `false` (no room for more). `take` runs under
    /// the queue's lock, so it must be quick and must not block (queueing a
    /// frame in a connection is). Returns the close code once the hub let go
    /// of this client and nothing is left to deliver.
    ///
    /// Taking a batch per lock rather than one message halves the cost of a
    /// small broadcast per recipient (measured with `bench/fanout.sh`: the
    /// lock and the accounting were a third of the server's time at 20 B).
    pub fn pop_while(
        &self,
        max: usize,
        mut take: impl FnMut(PreparedMessage) -> bool,
    ) -> Option<CloseCode> {
        // A push racing with this check also wakes the owner, who pops again.
        if !self.queue.pending.load(Ordering::Acquire) {
            return None;
        }
        let mut q = self.queue.lock();
        let mut cost = 0;
        for _ in 0..max {
            let Some(msg) = q.items.pop_front() else {
                break;
            };
            cost += msg.encoded_len() + ENTRY_OVERHEAD;
            if !take(msg) {
                break;
            }
        }
        q.bytes -= cost;
        let closed = if q.items.is_empty() {
            if q.closed.is_none() {
                self.queue.pending.store(false, Ordering::Release);
            }
            q.closed
        } else {
            None
        };
        let drained = q.above && !self.hub.is_above(&q);
        if drained {
            q.above = false;
        }
        drop(q);
        self.hub.queued_bytes.fetch_sub(cost, Ordering::Relaxed);
        if drained {
            self.hub.drained(&self.queue);
        }
        closed
    }

    /// The close code once the hub let go of this client and nothing is
    /// left to deliver (a dropped slow client's queue is emptied at once; a
    /// client of a server shutting down gets what was queued first). Lets a
    /// client whose write buffer is full be closed without popping.
    pub fn closed(&self) -> Option<CloseCode> {
        if !self.queue.pending.load(Ordering::Acquire) {
            return None;
        }
        let q = self.queue.lock();
        q.closed.filter(|_| q.items.is_empty())
    }

    /// The reason to close with, once [`closed`](Self::closed) (empty
    /// unless the application gave one to [`Hub::close_client`]).
    pub fn close_reason(&self) -> String {
        self.queue.lock().reason.clone()
    }

    /// Messages queued now.
    pub fn len(&self) -> usize {
        self.queue.lock().items.len()
    }

    /// Whether nothing is queued now.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Drop for Outbox {
    fn drop(&mut self) {
        self.hub.unregister(&self.queue);
    }
}

#[cfg(test)]
mod tests;
