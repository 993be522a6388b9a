//! What `ws-server` shows of itself: its log (`tracing-subscriber`, filtered
//! by `--log` or `RUST_LOG`, to stderr) and `/metrics` in the Prometheus
//! text format ([`WithMetrics`], `--metrics`).
//!
//! The counters are the library's (ws-core's server engine keeps them for
//! every runtime: [`Registry::metrics`]); this module only renders them,
//! with the `prometheus-client` crate (the Prometheus project's own Rust
//! client, maintained with the OpenMetrics format), built fresh for each
//! scrape from one [`MetricsSnapshot`], so the counts of one scrape are
//! consistent with each other.

use std::net::SocketAddr;

use clap::ValueEnum;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use ws_core::handshake::Request;
use ws_core::server::metrics::MetricsSnapshot;
use ws_core::server::{
    ConnectionHandle, Handler, PlainResponse, Refusal, Registry, Socket, Upgrade,
};
use ws_core::{CloseCode, Message};

/// Starts the log: `filter` in `tracing-subscriber`'s `EnvFilter` syntax
/// (`info`, `debug`, `ws_core=debug,warn`), to stderr. A filter that does
/// not parse is an error (the caller exits with it).
pub fn init_logging(filter: &str) -> Result<(), String> {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .map_err(|e| format!("--log {filter:?}: {e}"))?;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .try_init()
        .map_err(|e| e.to_string())
}

/// Who may read `/metrics` (`ws-server --metrics[=WHO]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum MetricsAccess {
    /// Clients on this host only (127.0.0.0/8, ::1): a scraper on the same
    /// machine, or one behind an SSH tunnel; the default of `--metrics`.
    Loopback,
    /// Anyone who can reach the server.
    Any,
}

/// `inner`, plus `GET /metrics` (when `access` is set): the server's
/// counters in the Prometheus text format. A request from a peer `access`
/// does not allow gets 403; everything else is `inner`'s.
#[derive(Debug, Clone)]
pub struct WithMetrics<H> {
    inner: H,
    access: Option<MetricsAccess>,
}

impl<H> WithMetrics<H> {
    /// `inner`, serving `/metrics` to `access` (`None`: not at all).
    pub fn new(inner: H, access: Option<MetricsAccess>) -> Self {
        WithMetrics { inner, access }
    }

    /// The wrapped handler.
    pub fn inner(&self) -> &H {
        &self.inner
    }
}

/// The content type of the OpenMetrics text `prometheus-client` writes
/// (Prometheus scrapes it as it is).
pub const METRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

impl<H: Handler> Handler for WithMetrics<H> {
    type State = H::State;

    fn is_endpoint(&self, path: &str) -> bool {
        self.inner.is_endpoint(path)
    }

    fn page(&self) -> Option<&str> {
        self.inner.page()
    }

    fn on_request(
        &self,
        req: &Request,
        peer: SocketAddr,
        registry: &Registry,
    ) -> Option<PlainResponse> {
        let Some(access) = self.access.filter(|_| req.path() == "/metrics") else {
            return self.inner.on_request(req, peer, registry);
        };
        if access == MetricsAccess::Loopback && !peer.ip().is_loopback() {
            return Some(PlainResponse::text(
                403,
                "/metrics is served to this host only (ws-server --metrics=any opens it)\n",
            ));
        }
        Some(PlainResponse::new(
            200,
            METRICS_CONTENT_TYPE,
            render(&registry.metrics()),
        ))
    }

    fn on_upgrade(&self, req: &Request, peer: SocketAddr) -> Result<Upgrade<H::State>, Refusal> {
        self.inner.on_upgrade(req, peer)
    }

    fn on_open(&self, ws: &mut Socket<'_>, state: &mut H::State) {
        self.inner.on_open(ws, state)
    }

    fn on_message(&self, ws: &mut Socket<'_>, state: &mut H::State, msg: Message) {
        self.inner.on_message(ws, state, msg)
    }

    fn on_close(&self, ws: &ConnectionHandle, state: H::State, code: CloseCode, reason: &str) {
        self.inner.on_close(ws, state, code, reason)
    }
}

type Labeled = Family<Vec<(String, String)>, Counter>;

/// `m` in the OpenMetrics text format (counters end in `_total`):
///
/// | metric | type | what |
/// | --- | --- | --- |
/// | `ws_connections_open` | gauge | WebSocket sessions open now |
/// | `ws_connections_total` | counter | sessions opened |
/// | `ws_messages_received_total`, `ws_messages_sent_total` | counter | text and binary messages (a broadcast counts once per recipient) |
/// | `ws_received_bytes_total`, `ws_sent_bytes_total` | counter | their payload bytes |
/// | `ws_handshake_failures_total{status}` | counter | upgrade requests answered with that HTTP status |
/// | `ws_closes_total{code}` | counter | ended sessions by close code (1006: no close frame) |
/// | `ws_slow_client_drops_total` | counter | clients closed with 1013 by flow control |
/// | `ws_broadcast_queue_messages`, `ws_broadcast_queue_bytes` | gauge | broadcasts waiting in clients' queues now |
pub fn render(m: &MetricsSnapshot) -> String {
    let mut reg = prometheus_client::registry::Registry::default();
    let gauge = |v: u64| {
        let g = Gauge::<i64>::default();
        g.set(i64::try_from(v).unwrap_or(i64::MAX));
        g
    };
    let counter = |v: u64| {
        let c = Counter::<u64>::default();
        c.inc_by(v);
        c
    };
    let labeled = |label: &str, pairs: &[(u16, u64)]| {
        let f = Labeled::default();
        for (k, v) in pairs {
            f.get_or_create(&vec![(label.to_owned(), k.to_string())])
                .inc_by(*v);
        }
        f
    };
    reg.register(
        "ws_connections_open",
        "WebSocket sessions open now",
        gauge(m.connections_open),
    );
    reg.register(
        "ws_connections",
        "WebSocket sessions opened since the server started",
        counter(m.connections_total),
    );
    reg.register(
        "ws_messages_received",
        "Text and binary messages received",
        counter(m.messages_in),
    );
    reg.register(
        "ws_received_bytes",
        "Payload bytes of the messages received",
        counter(m.bytes_in),
    );
    reg.register(
        "ws_messages_sent",
        "Text and binary messages queued for clients (a broadcast once per recipient)",
        counter(m.messages_out),
    );
    reg.register(
        "ws_sent_bytes",
        "Payload bytes of the messages sent",
        counter(m.bytes_out),
    );
    reg.register(
        "ws_handshake_failures",
        "Upgrade requests answered with an HTTP error, by status",
        labeled("status", &m.handshake_failures),
    );
    reg.register(
        "ws_closes",
        "Ended WebSocket sessions by close code (1006: the transport ended without one)",
        labeled("code", &m.closes),
    );
    reg.register(
        "ws_slow_client_drops",
        "Clients closed with 1013 by flow control (queue stalled or over its bound)",
        counter(m.slow_client_drops),
    );
    reg.register(
        "ws_broadcast_queue_messages",
        "Broadcast messages waiting in clients' queues now",
        gauge(m.queued_messages),
    );
    reg.register(
        "ws_broadcast_queue_bytes",
        "Bytes of the broadcast messages waiting in clients' queues now",
        gauge(m.queued_bytes),
    );
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut out, &reg);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use ws_core::server::hub::Hub;
    use ws_core::server::site::ServerMode;

    fn get(path: &str) -> Request {
        let raw = format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n");
        ws_core::handshake::ServerHandshake::new()
            .feed(raw.as_bytes())
            .unwrap()
            .unwrap()
    }

    #[test]
    fn metrics_are_served_only_when_asked_and_only_to_the_peers_allowed() {
        let registry = Registry::new(Arc::new(Hub::default()));
        let local: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let remote: SocketAddr = "192.0.2.7:5000".parse().unwrap();
        let status = |access, peer, path| {
            WithMetrics::new(ServerMode::Chat, access)
                .on_request(&get(path), peer, &registry)
                .map(|r| r.status())
        };
        assert_eq!(
            status(None, local, "/metrics"),
            None,
            "off: default routing"
        );
        let loopback = Some(MetricsAccess::Loopback);
        assert_eq!(status(loopback, local, "/metrics"), Some(200));
        assert_eq!(status(loopback, remote, "/metrics"), Some(403));
        assert_eq!(
            status(Some(MetricsAccess::Any), remote, "/metrics"),
            Some(200)
        );
        // Other paths are the inner handler's (the chat's client count).
        assert_eq!(status(loopback, remote, "/clients"), Some(200));
        assert_eq!(status(loopback, local, "/nothing"), None);
        let body = WithMetrics::new(ServerMode::Chat, loopback)
            .on_request(&get("/metrics"), local, &registry)
            .unwrap();
        let text = std::str::from_utf8(body.body()).unwrap();
        assert!(text.contains("ws_connections_open 0\n"), "{text}");
    }

    #[test]
    fn every_counter_is_rendered_with_its_value_and_labels() {
        let m = MetricsSnapshot {
            connections_open: 2,
            connections_total: 5,
            messages_in: 7,
            bytes_in: 70,
            messages_out: 9,
            bytes_out: 90,
            handshake_failures: vec![(426, 1), (403, 3)],
            closes: vec![(1000, 2), (4001, 1)],
            slow_client_drops: 4,
            queued_messages: 6,
            queued_bytes: 600,
        };
        let text = render(&m);
        for line in [
            "ws_connections_open 2",
            "ws_connections_total 5",
            "ws_messages_received_total 7",
            "ws_received_bytes_total 70",
            "ws_messages_sent_total 9",
            "ws_sent_bytes_total 90",
            "ws_handshake_failures_total{status=\"426\"} 1",
            "ws_handshake_failures_total{status=\"403\"} 3",
            "ws_closes_total{code=\"1000\"} 2",
            "ws_closes_total{code=\"4001\"} 1",
            "ws_slow_client_drops_total 4",
            "ws_broadcast_queue_messages 6",
            "ws_broadcast_queue_bytes 600",
        ] {
            assert!(text.lines().any(|l| l == line), "{line:?} in\n{text}");
        }
        assert!(text.ends_with("# EOF\n"), "{text}");
    }
}
