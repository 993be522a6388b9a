//! The broadcast registry shared by every runtime adapter's `Server`.
//!
//! A [`Hub`] maps client ids to their outgoing queues. It is runtime-neutral:
//! each adapter wraps its own bounded channel sender in an [`Outbox`]. A
//! broadcast encodes the frame once ([`PreparedMessage`]) and offers the same
//! shared bytes to every queue without blocking. A client whose queue is full
//! (it stopped reading and fell behind) is removed from the registry at once;
//! dropping its sender tells its connection task to close it with
//! [`SLOW_CLIENT_CLOSE`]. One slow reader therefore never stalls the others
//! and never makes the server's memory grow past the queue bound.

use crate::close::CloseCode;
use crate::connection::PreparedMessage;
use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// Close code sent to a client dropped for not keeping up with broadcasts.
///
/// 1013 "Try Again Later" rather than 1008 "Policy Violation": the client did
/// nothing wrong in protocol terms, it was only too slow right now, and 1013
/// tells a well-behaved client that reconnecting later is reasonable.
pub const SLOW_CLIENT_CLOSE: CloseCode = CloseCode::TRY_AGAIN_LATER;

/// A registered client's id, unique for the hub's lifetime.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClientId(pub u64);

/// Why a message could not be queued for a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushError {
    /// The client's bounded queue is full.
    Full,
    /// The client's connection task is gone.
    Closed,
}

/// A client's outgoing queue, as seen by the hub: a non-blocking push.
pub trait Outbox {
    /// Queues `msg` without waiting.
    fn try_push(&self, msg: &PreparedMessage) -> Result<(), PushError>;
}

/// What one broadcast did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct BroadcastReport {
    /// Clients the message was queued for.
    pub delivered: usize,
    /// Clients removed because their queue was full or closed.
    pub dropped: Vec<ClientId>,
}

/// A thread-safe registry of connected clients.
#[derive(Debug)]
pub struct Hub<O> {
    clients: Mutex<HashMap<ClientId, O>>,
    next_id: AtomicU64,
}

impl<O> Default for Hub<O> {
    fn default() -> Self {
        Hub {
            clients: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
        }
    }
}

impl<O: Outbox> Hub<O> {
    /// An empty hub.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ClientId, O>> {
        // A panic while holding the lock cannot leave the map inconsistent
        // (every operation is a single insert/remove), so poisoning is ignored.
        self.clients.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds a client and returns its id.
    pub fn register(&self, outbox: O) -> ClientId {
        let id = ClientId(self.next_id.fetch_add(1, Ordering::Relaxed));
        self.lock().insert(id, outbox);
        id
    }

    /// Removes a client; returns whether it was registered.
    pub fn unregister(&self, id: ClientId) -> bool {
        self.lock().remove(&id).is_some()
    }

    /// Whether `id` is registered.
    pub fn contains(&self, id: ClientId) -> bool {
        self.lock().contains_key(&id)
    }

    /// Number of registered clients.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no client is registered.
    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    /// Ids of the registered clients, in ascending order.
    pub fn ids(&self) -> Vec<ClientId> {
        let mut ids: Vec<_> = self.lock().keys().copied().collect();
        ids.sort();
        ids
    }

    /// Queues `msg` for every client; clients that cannot take it are removed
    /// (their outbox is dropped outside the lock).
    pub fn broadcast(&self, msg: &PreparedMessage) -> BroadcastReport {
        let mut report = BroadcastReport::default();
        let removed: Vec<O> = {
            let mut clients = self.lock();
            for (id, outbox) in clients.iter() {
                match outbox.try_push(msg) {
                    Ok(()) => report.delivered += 1,
                    Err(_) => report.dropped.push(*id),
                }
            }
            report
                .dropped
                .iter()
                .filter_map(|id| clients.remove(id))
                .collect()
        };
        // Dropping a sender may wake its task; do it without holding the lock.
        drop(removed);
        report.dropped.sort();
        report
    }

    /// Removes every client (dropping their outboxes), e.g. on shutdown.
    pub fn clear(&self) -> Vec<ClientId> {
        let drained: Vec<(ClientId, O)> = self.lock().drain().collect();
        let mut ids: Vec<_> = drained.iter().map(|(id, _)| *id).collect();
        ids.sort();
        ids
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::Message;
    use std::cell::RefCell;
    use std::rc::Rc;

    /// A queue of fixed capacity, shared with the test.
    #[derive(Clone)]
    struct TestQueue(Rc<RefCell<Vec<PreparedMessage>>>, usize);

    impl Outbox for TestQueue {
        fn try_push(&self, msg: &PreparedMessage) -> Result<(), PushError> {
            let mut q = self.0.borrow_mut();
            if q.len() >= self.1 {
                return Err(PushError::Full);
            }
            q.push(msg.clone());
            Ok(())
        }
    }

    fn queue(cap: usize) -> TestQueue {
        TestQueue(Rc::new(RefCell::new(Vec::new())), cap)
    }

    #[test]
    fn broadcast_reaches_every_client_with_the_same_bytes() {
        let hub = Hub::new();
        let qs: Vec<_> = (0..3).map(|_| queue(8)).collect();
        for q in &qs {
            hub.register(q.clone());
        }
        let msg = PreparedMessage::new(&Message::text("hi")).unwrap();
        let report = hub.broadcast(&msg);
        assert_eq!(
            report,
            BroadcastReport {
                delivered: 3,
                dropped: vec![]
            }
        );
        for q in &qs {
            assert_eq!(q.0.borrow().as_slice(), std::slice::from_ref(&msg));
            assert_eq!(q.0.borrow()[0].as_bytes(), &[0x81, 2, b'h', b'i']);
        }
    }

    #[test]
    fn a_full_client_is_dropped_and_the_others_still_receive() {
        let hub = Hub::new();
        let fast = queue(10);
        let slow = queue(1);
        let fast_id = hub.register(fast.clone());
        let slow_id = hub.register(slow.clone());
        let msg = PreparedMessage::new(&Message::text("x")).unwrap();
        assert_eq!(hub.broadcast(&msg).dropped, vec![]);
        let report = hub.broadcast(&msg);
        assert_eq!(report.dropped, vec![slow_id]);
        assert!(!hub.contains(slow_id) && hub.contains(fast_id));
        hub.broadcast(&msg);
        assert_eq!(fast.0.borrow().len(), 3);
        assert_eq!(slow.0.borrow().len(), 1);
    }

    #[test]
    fn unregister_and_clear_remove_clients() {
        let hub = Hub::new();
        let a = hub.register(queue(1));
        let b = hub.register(queue(1));
        assert_eq!(hub.ids(), vec![a, b]);
        assert!(hub.unregister(a));
        assert!(!hub.unregister(a));
        assert_eq!(hub.len(), 1);
        assert_eq!(hub.clear(), vec![b]);
        assert!(hub.is_empty());
    }
}
