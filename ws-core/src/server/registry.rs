//! What a running server's handle can ask and do without waiting, written
//! once: every adapter's `ServerHandle` dereferences to a [`Registry`], and
//! adds only what waits on its runtime (`broadcast`, `publish`, `shutdown`).

use std::sync::Arc;

use crate::close::CloseCode;
use crate::error::Error;
use crate::message::Message;
use crate::server::admission::Admission;
use crate::server::backplane::BackplaneStats;
use crate::server::handler::ConnectionHandle;
use crate::server::hub::{ClientId, Hub, HubStats};
use crate::server::metrics::MetricsSnapshot;

/// The server's registry of connected clients and their topics, as the
/// application sees it: counts, statistics, one client by id. Cheap to
/// clone; usable from any thread.
#[derive(Debug, Clone)]
pub struct Registry {
    hub: Arc<Hub>,
    admission: Arc<Admission>,
}

impl Registry {
    /// The registry over `hub`, for a server without a connection limit.
    pub fn new(hub: Arc<Hub>) -> Self {
        Registry::with_admission(hub, Admission::new(None))
    }

    /// The registry over `hub`, for a server whose accept loop admits
    /// connections through `admission` (its `max_connections`).
    pub fn with_admission(hub: Arc<Hub>, admission: Arc<Admission>) -> Self {
        Registry { hub, admission }
    }

    /// The accept loop's count of live connections against the server's
    /// `max_connections` (see [`Admission`]).
    pub fn admission(&self) -> &Arc<Admission> {
        &self.admission
    }

    /// TCP connections open now: upgraded or not, from `accept` until the
    /// socket closes (a connection refused at the limit is not counted).
    pub fn connection_count(&self) -> usize {
        self.admission.live()
    }

    /// Connections refused with 503 at the server's `max_connections` so
    /// far.
    pub fn refused_count(&self) -> u64 {
        self.admission.refused()
    }

    /// The hub itself (queues, flow control), for what the registry does
    /// not cover.
    pub fn hub(&self) -> &Arc<Hub> {
        &self.hub
    }

    /// Number of clients currently registered: a client is registered once
    /// its upgrade succeeded and removed when its connection starts closing,
    /// or when the hub drops it (too slow: closed with 1013) or the server
    /// shuts down (1001).
    pub fn client_count(&self) -> usize {
        self.hub.len()
    }

    /// The queues now: clients, stalled clients, queued bytes, the largest
    /// queue seen, slow clients dropped, topics.
    pub fn stats(&self) -> HubStats {
        self.hub.stats()
    }

    /// Everything the server counts (connections, messages and bytes both
    /// ways, handshake failures by status, closes by code, slow-client
    /// drops, the broadcast queues' depth), kept by ws-core's engine on
    /// every runtime: what `ws-server` serves on `/metrics`.
    pub fn metrics(&self) -> MetricsSnapshot {
        self.hub.metrics()
    }

    /// The cluster backplane's counters (sent, delivered, gaps, overflow,
    /// link state), or `None` for a server that is not part of a cluster.
    pub fn backplane_stats(&self) -> Option<BackplaneStats> {
        self.hub.backplane().map(|b| b.stats())
    }

    /// Clients on every node of the cluster, as last counted by the
    /// backplane; `None` outside a cluster or before the first count.
    /// [`client_count`](Self::client_count) stays this node's.
    pub fn cluster_client_count(&self) -> Option<usize> {
        self.hub.backplane()?.stats().cluster_clients
    }

    /// A handle to client `id`, if it is connected.
    pub fn connection(&self, id: ClientId) -> Option<ConnectionHandle> {
        self.hub.connection(id)
    }

    /// Queues `msg` (text or binary) for client `id` without waiting (see
    /// [`ConnectionHandle::send`]).
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] if no such client is connected;
    /// [`Error::InvalidMessage`] for a control message.
    pub fn send_to(&self, id: ClientId, msg: &Message) -> Result<(), Error> {
        self.connection(id).ok_or(Error::Closed)?.send(msg)
    }

    /// Closes client `id` with `code` and `reason` after what is queued for
    /// it.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] if it is not connected; as
    /// [`ConnectionHandle::close`] otherwise.
    pub fn close(&self, id: ClientId, code: CloseCode, reason: &str) -> Result<(), Error> {
        self.connection(id)
            .ok_or(Error::Closed)?
            .close(code, reason)
    }

    /// Number of clients subscribed to `topic`.
    pub fn topic_count(&self, topic: &str) -> usize {
        self.hub.topic_len(topic)
    }

    /// Every topic with at least one subscriber, with its subscriber count,
    /// sorted by name.
    pub fn topics(&self) -> Vec<(String, usize)> {
        self.hub.topics()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::hub::Wake;

    struct Nop;
    impl Wake for Nop {
        fn wake(&self) {}
    }

    #[test]
    fn the_registry_answers_for_the_hub_and_reaches_one_client() {
        let hub = Arc::new(Hub::default());
        let r = Registry::new(hub.clone());
        let a = hub.register(Arc::new(Nop));
        hub.subscribe(a.id(), "t");
        assert_eq!((r.client_count(), r.topic_count("t")), (1, 1));
        assert_eq!(r.topics(), vec![("t".to_string(), 1)]);
        assert_eq!(r.stats().clients, 1);
        r.send_to(a.id(), &Message::text("x")).unwrap();
        assert_eq!(a.len(), 1);
        r.close(a.id(), CloseCode::NORMAL, "bye").unwrap();
        assert_eq!(r.client_count(), 0);
        assert!(matches!(
            r.send_to(a.id(), &Message::text("y")),
            Err(Error::Closed)
        ));
        assert!(matches!(
            r.close(a.id(), CloseCode::NORMAL, ""),
            Err(Error::Closed)
        ));
        assert!(r.connection(a.id()).is_none());
    }
}
