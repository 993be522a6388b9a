//! The `Server` builder, written once: what every adapter's `Server` is
//! configured with ([`ServerOptions`]), the builder methods themselves
//! ([`server_builder!`](crate::server_builder), expanded inside each
//! adapter's `impl Server` so the methods are the adapter's own, with one
//! name, signature and documentation on every runtime), and what a started
//! server shares with its connections and handles whatever its runtime
//! ([`ServerCore`]: the hub, the registry, the configuration and the TLS
//! configuration).
//!
//! What stays in each adapter is what waits on its runtime: binding, the
//! accept loop, the connection tasks or threads, `broadcast`'s wait and
//! `shutdown`.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use crate::config::Config;
use crate::server::admission::{Admission, Ticket};
use crate::server::backplane::Engine;
use crate::server::conn::ServerConnection;
use crate::server::handler::Handler;
use crate::server::hub::{FlowControl, Hub, Wake};
use crate::server::registry::Registry;

/// Everything a `Server` builder holds before it is started: the address,
/// the handler and the settings its methods change. Each adapter's
/// `Server` wraps one.
#[derive(Debug)]
pub struct ServerOptions<H> {
    /// Where to listen, e.g. `"127.0.0.1:8080"`.
    pub addr: String,
    /// Runs on every connection.
    pub handler: Arc<H>,
    /// Limits and timeouts of every accepted connection.
    pub config: Config,
    /// The broadcast queues' limits.
    pub flow: FlowControl,
    /// The cluster the server joins, if any.
    pub backplane: Option<Arc<dyn Engine>>,
    /// At most this many connections at once.
    pub max_connections: Option<usize>,
    /// wss://: every connection is served under TLS with this.
    #[cfg(feature = "tls")]
    pub tls: Option<Arc<crate::server::tls::rustls::ServerConfig>>,
}

impl<H> Clone for ServerOptions<H> {
    fn clone(&self) -> Self {
        ServerOptions {
            addr: self.addr.clone(),
            handler: self.handler.clone(),
            config: self.config.clone(),
            flow: self.flow.clone(),
            backplane: self.backplane.clone(),
            max_connections: self.max_connections,
            #[cfg(feature = "tls")]
            tls: self.tls.clone(),
        }
    }
}

impl<H> ServerOptions<H> {
    /// The defaults: `Config::default()`, `FlowControl::default()`, no
    /// backplane, no connection limit, plain ws://.
    pub fn new(addr: String, handler: H) -> Self {
        ServerOptions {
            addr,
            handler: Arc::new(handler),
            config: Config::default(),
            flow: FlowControl::default(),
            backplane: None,
            max_connections: None,
            #[cfg(feature = "tls")]
            tls: None,
        }
    }

    /// Starts what a running server shares (the hub named after `runtime`,
    /// its backplane, the registry with the connection limit); returns it
    /// with the handler, for the accept loop.
    ///
    /// # Errors
    ///
    /// The backplane's, if it cannot start.
    pub fn start(self, runtime: &'static str) -> io::Result<(ServerCore, Arc<H>)> {
        let hub = Arc::new(Hub::new(self.flow).runtime(runtime));
        crate::server::backplane::start(self.backplane.as_ref(), &hub)?;
        let core = ServerCore {
            registry: Registry::with_admission(hub.clone(), Admission::new(self.max_connections)),
            hub,
            config: self.config,
            #[cfg(feature = "tls")]
            tls: self.tls,
        };
        Ok((core, self.handler))
    }
}

/// What a started server's accept loop, connections and handles share,
/// whatever the runtime: each adapter's shared state holds one (and
/// dereferences to it) next to its runtime's stop and completion signals.
#[derive(Debug)]
pub struct ServerCore {
    /// The clients, their queues and topics.
    pub hub: Arc<Hub>,
    /// What the handle answers without waiting (its `Deref` target).
    pub registry: Registry,
    /// Limits and timeouts of every accepted connection.
    pub config: Config,
    /// wss://: every connection is served under TLS with this.
    #[cfg(feature = "tls")]
    pub tls: Option<Arc<crate::server::tls::rustls::ServerConfig>>,
}

impl ServerCore {
    /// The machine of a connection accepted at `accepted` from `peer`, with
    /// the accept loop's decision on it (`ticket`); `wake` is how the hub
    /// wakes the task or thread that executes it.
    pub fn connection<H: Handler>(
        &self,
        handler: Arc<H>,
        wake: Arc<dyn Wake>,
        peer: SocketAddr,
        accepted: Instant,
        ticket: Ticket,
    ) -> ServerConnection<H> {
        ServerConnection::new(
            handler,
            self.hub.clone(),
            wake,
            peer,
            self.config.clone(),
            accepted,
        )
        .admitted(ticket)
    }
}

/// The builder methods of an adapter's `Server`, written once. Expanded
/// inside the adapter's `impl` blocks, on a type with a field
/// `options: ServerOptions<H>` and a constructor
/// `fn from_options(options: ServerOptions<H>) -> Self`:
///
/// - `server_builder!(demo)` in `impl Server` (the demo's handler,
///   `ServerMode`): `new` and `mode`;
/// - `server_builder!(handler)` in `impl<H: Handler> Server<H>`:
///   `with_handler`, `max_connections`, `config`, `flow_control`,
///   `backplane` and (cargo feature `tls` of the adapter) `tls`.
#[doc(hidden)]
#[macro_export]
macro_rules! server_builder {
    (demo) => {
        /// The demo chat server that will listen on `addr`, e.g.
        /// `"127.0.0.1:8080"` (port 0 picks a free port; see
        /// [`ServerHandle::local_addr`]), with the default config and flow
        /// control.
        pub fn new(addr: impl Into<String>) -> Self {
            Self::with_handler(addr, $crate::server::site::ServerMode::Chat)
        }

        /// Echo each message back (every path upgrades), or publish it to
        /// the sender's chat room (chat, the default: `/ws` upgrades, rooms
        /// with `/ws?room=NAME`).
        pub fn mode(mut self, mode: $crate::server::site::ServerMode) -> Self {
            self.options.handler = ::std::sync::Arc::new(mode);
            self
        }
    };
    (handler) => {
        /// A server that will listen on `addr` and run `handler` on every
        /// connection.
        pub fn with_handler(addr: impl Into<String>, handler: H) -> Self {
            Self::from_options($crate::server::options::ServerOptions::new(
                addr.into(),
                handler,
            ))
        }

        /// Serves at most `max` connections at once (upgraded or not); the
        /// next ones are answered `503 Service Unavailable` with
        /// `Retry-After` before any upgrade, and closed, while the clients
        /// already connected keep working (a refused connection lives only
        /// while the 503 is written and its request drained; see
        /// [`ws_core::server::admission`]). No limit by default but the
        /// process's file descriptors.
        pub fn max_connections(mut self, max: usize) -> Self {
            self.options.max_connections = Some(max);
            self
        }

        /// The configuration of every accepted connection (limits,
        /// timeouts).
        pub fn config(mut self, config: $crate::Config) -> Self {
            self.options.config = config;
            self
        }

        /// The broadcast queues' limits: high-water mark, hard byte bound
        /// and slow-client timeout (see
        /// [`FlowControl`](ws_core::server::hub::FlowControl) for the
        /// defaults, and [`ws_core::server::hub`]).
        pub fn flow_control(mut self, flow: $crate::server::hub::FlowControl) -> Self {
            self.options.flow = flow;
            self
        }

        /// Joins a cluster of servers through `engine` (a Redis stream with
        /// the `ws-redis` crate's `RedisBackplane`): every broadcast and
        /// topic publish, from a client or from [`ServerHandle`], also
        /// reaches the clients of every other node, and theirs reach this
        /// node's clients. Local delivery and flow control are unchanged
        /// (see [`ws_core::server::backplane`]). Started with the server,
        /// stopped by its shutdown.
        pub fn backplane(mut self, engine: impl $crate::server::backplane::Engine) -> Self {
            self.options.backplane = Some(::std::sync::Arc::new(engine));
            self
        }

        /// Serves wss:// (and the page over https://) with this rustls
        /// configuration: certificates, ALPN, client authentication are the
        /// configuration's. Build it with a crypto provider of your choice,
        /// or from PEM files with
        /// [`server_config_from_pem`](ws_core::server::tls::server_config_from_pem)
        /// (rustls' ring provider, chosen explicitly: no process-level
        /// default needed).
        #[cfg(feature = "tls")]
        pub fn tls(
            mut self,
            config: ::std::sync::Arc<$crate::server::tls::rustls::ServerConfig>,
        ) -> Self {
            self.options.tls = Some(config);
            self
        }
    };
}

/// `broadcast` and `publish` of an async adapter's `ServerHandle`, written
/// once: expanded inside the handle's `impl` block (the handle dereferences
/// to a [`Registry`]), with `$sleep_until`, a closure from an `Instant` to
/// the runtime's timer future, for the wait while the hub is congested
/// (see [`rt::wake::broadcast`](crate::rt::wake::broadcast)). The methods
/// return the adapter's own `crate::Result` (the same type as
/// `Result<_, ws_core::Error>`, shown under the adapter's name).
#[doc(hidden)]
#[cfg(feature = "rt")]
#[macro_export]
#[allow(clippy::crate_in_macro_def)]
macro_rules! server_handle_broadcast {
    ($sleep_until:expr) => {
        /// Queues `msg` (text or binary) for every registered client (in
        /// either mode), encoding it once, under the same rules as a
        /// client's message: while the hub is congested it waits (at most
        /// until the slow client holding it up is dropped), so an
        /// application that broadcasts faster than clients read is slowed
        /// down rather than losing messages. The report lists the clients
        /// dropped meanwhile (closed with 1013).
        ///
        /// # Errors
        ///
        /// [`Error::InvalidMessage`](crate::Error::InvalidMessage) for
        /// anything but text or binary.
        pub async fn broadcast(
            &self,
            msg: &$crate::Message,
        ) -> crate::Result<$crate::server::hub::BroadcastReport> {
            self.push($crate::server::hub::Target::All, msg).await
        }

        /// Queues `msg` (text or binary) for every subscriber of `topic`,
        /// encoded once, under the rules of [`broadcast`](Self::broadcast).
        ///
        /// # Errors
        ///
        /// [`Error::InvalidMessage`](crate::Error::InvalidMessage) for
        /// anything but text or binary.
        pub async fn publish(
            &self,
            topic: &str,
            msg: &$crate::Message,
        ) -> crate::Result<$crate::server::hub::BroadcastReport> {
            self.push($crate::server::hub::Target::Topic(topic), msg)
                .await
        }

        async fn push(
            &self,
            target: $crate::server::hub::Target<'_>,
            msg: &$crate::Message,
        ) -> crate::Result<$crate::server::hub::BroadcastReport> {
            let msg = $crate::PreparedMessage::new(msg)?;
            Ok($crate::rt::wake::broadcast(self.hub(), target, &msg, $sleep_until).await)
        }
    };
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::time::Duration;

    use super::*;
    use crate::server::backplane::Running;
    use crate::server::site::ServerMode;

    /// An engine that records its start and can refuse it.
    #[derive(Debug, Default)]
    struct Recorder {
        runtime: Mutex<Option<&'static str>>,
        refuse: bool,
    }

    #[derive(Debug)]
    struct Stopped;

    struct NoWake;

    impl Wake for NoWake {
        fn wake(&self) {}
    }

    impl Running for Stopped {
        fn stop(&self) {}
    }

    impl Engine for Arc<Recorder> {
        fn start(&self, hub: &Arc<Hub>) -> io::Result<Box<dyn Running>> {
            if self.refuse {
                return Err(io::Error::other("refused"));
            }
            *self.runtime.lock().unwrap() = Some(hub.runtime_name());
            Ok(Box::new(Stopped))
        }
    }

    #[test]
    fn start_carries_every_option_into_the_core() {
        let mut options = ServerOptions::new("127.0.0.1:0".to_owned(), ServerMode::Echo);
        options.max_connections = Some(3);
        options.config = Config::default().handshake_timeout(Duration::from_millis(1234));
        options.flow = FlowControl::default().slow_client_timeout(Duration::from_millis(4321));
        let engine = Arc::new(Recorder::default());
        options.backplane = Some(Arc::new(engine.clone()));
        let (core, handler) = options.start("some-runtime").unwrap();
        assert_eq!(*handler, ServerMode::Echo);
        assert_eq!(core.registry.admission().max(), Some(3));
        assert_eq!(
            core.config.get_handshake_timeout(),
            Duration::from_millis(1234)
        );
        assert_eq!(
            core.hub.limits().get_slow_client_timeout(),
            Duration::from_millis(4321)
        );
        assert_eq!(core.hub.runtime_name(), "some-runtime");
        // The registry is over the core's hub, and the backplane was
        // started on it.
        assert!(Arc::ptr_eq(core.registry.hub(), &core.hub));
        assert_eq!(*engine.runtime.lock().unwrap(), Some("some-runtime"));
    }

    #[test]
    fn the_defaults_are_the_configs_and_no_limit() {
        let options = ServerOptions::new("a".to_owned(), ServerMode::Chat);
        assert!(options.backplane.is_none());
        let (core, _) = options.start("rt").unwrap();
        assert_eq!(core.registry.admission().max(), None);
        assert_eq!(core.hub.limits(), &FlowControl::default());
        assert_eq!(
            core.config.get_handshake_timeout(),
            Config::default().get_handshake_timeout()
        );
    }

    #[test]
    fn a_backplane_that_cannot_start_fails_the_start() {
        let mut options = ServerOptions::new("a".to_owned(), ServerMode::Chat);
        let engine = Arc::new(Recorder {
            refuse: true,
            ..Recorder::default()
        });
        options.backplane = Some(Arc::new(engine));
        let err = options.start("rt").unwrap_err();
        assert_eq!(err.to_string(), "refused");
    }

    #[test]
    fn a_connection_is_admitted_or_refused_as_its_ticket_says() {
        let mut options = ServerOptions::new("a".to_owned(), ServerMode::Echo);
        options.max_connections = Some(1);
        let (core, handler) = options.start("rt").unwrap();
        let wake: Arc<dyn Wake> = Arc::new(NoWake);
        let peer = SocketAddr::from(([127, 0, 0, 1], 1));
        let now = Instant::now();
        let first = core.registry.admission().admit();
        let _admitted = core.connection(handler.clone(), wake.clone(), peer, now, first);
        assert_eq!(core.registry.connection_count(), 1);
        let second = core.registry.admission().admit();
        let mut refused = core.connection(handler, wake, peer, now, second);
        // The refusal is queued at once, before any request byte.
        let _ = refused.poll(now);
        assert!(refused.buffered_transmit() > 0);
        assert_eq!(core.registry.refused_count(), 1);
    }
}
