//! The server's counters, kept by the engine that every runtime adapter
//! shares: connections open and total, data messages and their payload
//! bytes in each direction, handshake failures by HTTP status, closes by
//! code. The hub adds slow-client drops and the broadcast queues' depth
//! ([`Hub::metrics`](crate::server::hub::Hub::metrics)); a running server's
//! handle reads them all through
//! [`Registry::metrics`](crate::server::Registry::metrics).
//!
//! Cheap on the hot path: a session counts its messages in plain fields and
//! adds them to these atomics once per poll; failures and closes,
//! rare, take a small lock. No exporter here: `ws-server` renders a
//! [`MetricsSnapshot`] in the Prometheus text format.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// The engine's counters for one server (one per [`Hub`](crate::server::hub::Hub)).
#[derive(Debug, Default)]
pub struct ServerMetrics {
    connections_open: AtomicU64,
    connections_total: AtomicU64,
    messages_in: AtomicU64,
    bytes_in: AtomicU64,
    messages_out: AtomicU64,
    bytes_out: AtomicU64,
    handshake_failures: Mutex<BTreeMap<u16, u64>>,
    closes: Mutex<BTreeMap<u16, u64>>,
}

/// Everything counted, at one moment.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct MetricsSnapshot {
    /// WebSocket sessions open now.
    pub connections_open: u64,
    /// WebSocket sessions opened since the server started.
    pub connections_total: u64,
    /// Text and binary messages received.
    pub messages_in: u64,
    /// Their payload bytes (after decompression).
    pub bytes_in: u64,
    /// Text and binary messages queued for clients (a broadcast counts once
    /// per recipient).
    pub messages_out: u64,
    /// Their payload bytes (before compression).
    pub bytes_out: u64,
    /// Refused or malformed upgrade requests, by the HTTP status answered
    /// (400, 403, 404, 426, ...), in status order.
    pub handshake_failures: Vec<(u16, u64)>,
    /// Ended sessions by close code (the first close frame sent or
    /// received; 1006 when the transport ended without one), in code order.
    pub closes: Vec<(u16, u64)>,
    /// Clients dropped by flow control (closed with 1013).
    pub slow_client_drops: u64,
    /// Broadcast messages waiting in clients' queues now (a broadcast
    /// counts once per queue).
    pub queued_messages: u64,
    /// Their bytes.
    pub queued_bytes: u64,
}

fn add(map: &Mutex<BTreeMap<u16, u64>>, key: u16) {
    *map.lock()
        .unwrap_or_else(|p| p.into_inner())
        .entry(key)
        .or_default() += 1;
}

fn pairs(map: &Mutex<BTreeMap<u16, u64>>) -> Vec<(u16, u64)> {
    let map = map.lock().unwrap_or_else(|p| p.into_inner());
    map.iter().map(|(k, v)| (*k, *v)).collect()
}

impl ServerMetrics {
    /// A session opened.
    pub(crate) fn opened(&self) {
        self.connections_open.fetch_add(1, Ordering::Relaxed);
        self.connections_total.fetch_add(1, Ordering::Relaxed);
    }

    /// A session ended with close `code`: counted before the session
    /// leaves the open gauge, so a reader that sees the gauge drop also
    /// sees the close (Release here, Acquire in [`snapshot`](Self::snapshot)).
    pub(crate) fn closed(&self, code: u16) {
        add(&self.closes, code);
        self.connections_open.fetch_sub(1, Ordering::Release);
    }

    /// An upgrade request was answered with `status` instead of a 101.
    pub(crate) fn handshake_failed(&self, status: u16) {
        add(&self.handshake_failures, status);
    }

    /// Adds a session's counts and empties them.
    #[inline]
    pub(crate) fn flush(&self, tally: &mut Tally) {
        if *tally == Tally::default() {
            return;
        }
        let t = std::mem::take(tally);
        self.messages_in.fetch_add(t.messages_in, Ordering::Relaxed);
        self.bytes_in.fetch_add(t.bytes_in, Ordering::Relaxed);
        self.messages_out
            .fetch_add(t.messages_out, Ordering::Relaxed);
        self.bytes_out.fetch_add(t.bytes_out, Ordering::Relaxed);
    }

    /// The engine's counts now; the hub's fields are left at zero (see
    /// [`Hub::metrics`](crate::server::hub::Hub::metrics) for all of them).
    pub fn snapshot(&self) -> MetricsSnapshot {
        MetricsSnapshot {
            connections_open: self.connections_open.load(Ordering::Acquire),
            connections_total: self.connections_total.load(Ordering::Relaxed),
            messages_in: self.messages_in.load(Ordering::Relaxed),
            bytes_in: self.bytes_in.load(Ordering::Relaxed),
            messages_out: self.messages_out.load(Ordering::Relaxed),
            bytes_out: self.bytes_out.load(Ordering::Relaxed),
            handshake_failures: pairs(&self.handshake_failures),
            closes: pairs(&self.closes),
            ..MetricsSnapshot::default()
        }
    }
}

/// One session's counts since its last flush into [`ServerMetrics`]:
/// plain fields, so counting a message costs an add.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Tally {
    pub(crate) messages_in: u64,
    pub(crate) bytes_in: u64,
    pub(crate) messages_out: u64,
    pub(crate) bytes_out: u64,
}

impl Tally {
    /// A message of `len` payload bytes received.
    #[inline]
    pub(crate) fn received(&mut self, len: usize) {
        self.messages_in += 1;
        self.bytes_in += len as u64;
    }

    /// A message of `len` payload bytes queued for the client.
    #[inline]
    pub(crate) fn sent(&mut self, len: usize) {
        self.messages_out += 1;
        self.bytes_out += len as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flush_adds_a_tally_once_and_failures_and_closes_are_counted_by_key() {
        let m = ServerMetrics::default();
        m.opened();
        m.opened();
        m.closed(1000);
        m.handshake_failed(426);
        m.handshake_failed(400);
        m.handshake_failed(426);
        let mut t = Tally::default();
        t.received(5);
        t.sent(5);
        t.sent(7);
        m.flush(&mut t);
        assert_eq!(t, Tally::default(), "emptied");
        m.flush(&mut t);
        let s = m.snapshot();
        assert_eq!((s.connections_open, s.connections_total), (1, 2));
        assert_eq!((s.messages_in, s.bytes_in), (1, 5));
        assert_eq!((s.messages_out, s.bytes_out), (2, 12));
        assert_eq!(s.handshake_failures, [(400, 1), (426, 2)]);
        assert_eq!(s.closes, [(1000, 1)]);
    }
}
