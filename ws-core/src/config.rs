//! Connection settings.

use std::time::Duration;

use crate::deflate::{DeflateConfig, DeflateParams};

/// Which end of the connection this is; it decides masking (clients mask,
/// servers must not) and who closes the TCP connection first (the server).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// The end that opened the connection.
    Client,
    /// The end that accepted it.
    Server,
}

/// Limits and behaviour of a [`Connection`](crate::Connection).
///
/// Built with `Config::default()` and the setter methods.
#[derive(Debug, Clone)]
pub struct Config {
    pub(crate) max_frame_size: usize,
    pub(crate) max_message_size: usize,
    pub(crate) auto_pong: bool,
    pub(crate) close_timeout: Duration,
    pub(crate) keepalive: Option<Duration>,
    pub(crate) keepalive_timeout: Duration,
    pub(crate) fragment_size: Option<usize>,
    pub(crate) handshake_timeout: Duration,
    pub(crate) write_buffer_limit: usize,
    pub(crate) deflate: DeflateConfig,
    pub(crate) negotiated: Option<DeflateParams>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_frame_size: 16 << 20,
            max_message_size: 64 << 20,
            auto_pong: true,
            close_timeout: Duration::from_secs(5),
            keepalive: None,
            keepalive_timeout: Duration::from_secs(20),
            fragment_size: None,
            handshake_timeout: Duration::from_secs(10),
            write_buffer_limit: 1 << 20,
            deflate: DeflateConfig::disabled(),
            negotiated: None,
        }
    }
}

impl Config {
    /// Largest accepted frame payload (default 16 MiB). A header announcing
    /// more fails the connection with 1009 before anything is buffered.
    pub fn max_frame_size(mut self, bytes: usize) -> Self {
        self.max_frame_size = bytes;
        self
    }

    /// Largest accepted message, summed over its fragments (default 64 MiB).
    pub fn max_message_size(mut self, bytes: usize) -> Self {
        self.max_message_size = bytes;
        self
    }

    /// Answer pings with pongs automatically (default on).
    pub fn auto_pong(mut self, on: bool) -> Self {
        self.auto_pong = on;
        self
    }

    /// How long to wait for the peer to finish the closing handshake, and for
    /// a server to close TCP after it (default 5 s).
    pub fn close_timeout(mut self, d: Duration) -> Self {
        self.close_timeout = d;
        self
    }

    /// Send a ping after this much silence from the peer (default off).
    pub fn keepalive(mut self, interval: Option<Duration>) -> Self {
        self.keepalive = interval;
        self
    }

    /// How long a keepalive ping may go unanswered (no bytes at all from the
    /// peer) before the connection is considered dead (default 20 s).
    pub fn keepalive_timeout(mut self, d: Duration) -> Self {
        self.keepalive_timeout = d;
        self
    }

    /// Split outgoing messages into frames of at most this many payload bytes
    /// (default: never split).
    pub fn fragment_size(mut self, bytes: Option<usize>) -> Self {
        self.fragment_size = bytes.map(|b| b.max(1));
        self
    }

    /// How long the opening handshake may take before the runtime adapters
    /// give up (default 10 s). ws-core has no clock; adapters enforce it.
    pub fn handshake_timeout(mut self, d: Duration) -> Self {
        self.handshake_timeout = d;
        self
    }

    /// Back-pressure threshold for queued outgoing bytes (default 1 MiB):
    /// adapters flush before accepting more, and a server stops reading from
    /// (and taking broadcasts for) a client whose queue is above it.
    pub fn write_buffer_limit(mut self, bytes: usize) -> Self {
        self.write_buffer_limit = bytes.max(1);
        self
    }

    /// The permessage-deflate policy (default off): what a client offers and
    /// what a server accepts. Every adapter's handshake reads it here.
    pub fn deflate(mut self, deflate: DeflateConfig) -> Self {
        self.deflate = deflate;
        self
    }

    /// What the opening handshake agreed on for this connection (`None`: no
    /// compression, and RSV1 stays a protocol error). The handshake sets it
    /// ([`Request::accept_with_config`](crate::handshake::Request::accept_with_config),
    /// [`Response::configure`](crate::handshake::Response::configure)); set it
    /// by hand only for a connection negotiated elsewhere.
    pub fn negotiated_deflate(mut self, params: Option<DeflateParams>) -> Self {
        self.negotiated = params;
        self
    }

    /// The permessage-deflate policy.
    pub fn get_deflate(&self) -> &DeflateConfig {
        &self.deflate
    }

    /// What the handshake agreed on, if compression is in use.
    pub fn get_negotiated_deflate(&self) -> Option<&DeflateParams> {
        self.negotiated.as_ref()
    }

    /// The configured handshake timeout.
    pub fn get_handshake_timeout(&self) -> Duration {
        self.handshake_timeout
    }

    /// The configured write buffer limit.
    pub fn get_write_buffer_limit(&self) -> usize {
        self.write_buffer_limit
    }

    /// The configured maximum message size.
    pub fn get_max_message_size(&self) -> usize {
        self.max_message_size
    }

    /// The configured close timeout.
    pub fn get_close_timeout(&self) -> Duration {
        self.close_timeout
    }
}
