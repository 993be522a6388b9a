//! A connection's permessage-deflate state: which window and context rule
//! apply to each direction (they depend on the role), the zlib streams, and
//! the buffers of the message being compressed or inflated.

use crate::config::Role;
use crate::deflate::codec::{Deflater, InflateError, Inflater};
use crate::deflate::negotiate::{MAX_WINDOW_BITS, MIN_WINDOW_BITS};
use crate::deflate::{DeflateConfig, DeflateParams};
use crate::error::ProtocolError;

/// Compression state of one connection (boxed: only connections that
/// negotiated deflate pay for it).
#[derive(Debug)]
pub(crate) struct Compression {
    pub(crate) deflater: Deflater,
    pub(crate) inflater: Inflater,
    /// Messages at least this long are compressed; `usize::MAX` when the
    /// peer limited our window to 8 bits, which zlib cannot produce, so we
    /// send everything uncompressed rather than break the limit.
    threshold: usize,
    /// One compressed message on its way out.
    pub(crate) scratch: Vec<u8>,
    /// The message being inflated, across its fragments.
    pub(crate) inflated: Vec<u8>,
}

impl Compression {
    /// The state for `role` after the handshake agreed on `params`, with
    /// the level, threshold and our own window limit from `policy`.
    pub(crate) fn new(role: Role, policy: &DeflateConfig, params: &DeflateParams) -> Self {
        let (our_limit, our_reset, our_policy, peer_limit, peer_reset) = match role {
            Role::Server => (
                params.server_max_window_bits,
                params.server_no_context_takeover,
                policy.server_max_window_bits,
                params.client_max_window_bits,
                params.client_no_context_takeover,
            ),
            Role::Client => (
                params.client_max_window_bits,
                params.client_no_context_takeover,
                policy.client_max_window_bits,
                params.server_max_window_bits,
                params.server_no_context_takeover,
            ),
        };
        let ours = our_limit.unwrap_or(MAX_WINDOW_BITS).min(our_policy);
        let threshold = if ours < MIN_WINDOW_BITS {
            usize::MAX
        } else {
            policy.threshold
        };
        Compression {
            deflater: Deflater::new(policy.level, ours, our_reset),
            inflater: Inflater::new(peer_limit.unwrap_or(MAX_WINDOW_BITS), peer_reset),
            threshold,
            scratch: Vec::new(),
            inflated: Vec::new(),
        }
    }

    /// Whether a message compressed once with a fresh dictionary and a
    /// window of `bits` may go out on this connection as it is: only when
    /// our compressor starts every message afresh too (no context
    /// takeover), and within our window limit.
    pub(crate) fn can_share(&self, bits: u8) -> bool {
        self.threshold != usize::MAX && self.deflater.resets() && bits <= self.deflater.bits()
    }

    /// Whether a message of `len` bytes goes out compressed.
    pub(crate) fn wants(&self, len: usize) -> bool {
        len >= self.threshold
    }

    /// Inflates one frame of a compressed message onto `inflated`; on the
    /// last frame, ends the message. Returns where the new bytes start, for
    /// UTF-8 checking.
    pub(crate) fn inflate_frame(
        &mut self,
        payload: &[u8],
        fin: bool,
        limit: usize,
    ) -> Result<usize, ProtocolError> {
        let start = self.inflated.len();
        let err = |e| match e {
            InflateError::TooLarge { size } => ProtocolError::MessageTooLarge { size, max: limit },
            InflateError::Corrupt => ProtocolError::InvalidCompressedData,
        };
        self.inflater
            .inflate(payload, &mut self.inflated, limit)
            .map_err(err)?;
        if fin {
            self.inflater
                .finish(&mut self.inflated, limit)
                .map_err(err)?;
        }
        Ok(start)
    }

    /// Frees what an idle connection does not need: the buffers at once,
    /// and, when `streams` is set, the zlib streams that keep no context
    /// between messages (re-creating one costs more than a buffer, so the
    /// caller does that only after a delay). `mid_message`: a message is
    /// being inflated. Returns the buffer bytes freed and whether a stream
    /// is left to free later.
    pub(crate) fn release_idle(&mut self, mid_message: bool, streams: bool) -> (usize, bool) {
        let mut freed = self.scratch.capacity();
        self.scratch = Vec::new();
        if !mid_message {
            freed += self.inflated.capacity();
            self.inflated = Vec::new();
        }
        let mut left = false;
        if streams {
            self.deflater.release_if_idle();
            if !mid_message {
                self.inflater.release_if_idle();
            }
        } else {
            left = self.deflater.releasable() || (!mid_message && self.inflater.releasable());
        }
        (freed, left)
    }
}

#[cfg(test)]
mod tests {
    use crate::config::{Config, Role};
    use crate::connection::Connection;
    use crate::deflate::{DeflateConfig, DeflateParams};
    use std::time::{Duration, Instant};

    fn conn(role: Role, no_takeover: bool) -> Connection {
        let p = DeflateParams {
            server_no_context_takeover: no_takeover,
            client_no_context_takeover: no_takeover,
            ..DeflateParams::default()
        };
        let cfg = Config::default()
            .deflate(DeflateConfig::enabled().threshold(16))
            .negotiated_deflate(Some(p));
        Connection::new(role, cfg)
    }

    /// (deflater, inflater) allocated.
    fn allocated(c: &Connection) -> (bool, bool) {
        let d = c.deflate.as_deref().expect("negotiated");
        (d.deflater.is_allocated(), d.inflater.is_allocated())
    }

    /// Idle long enough for the delayed release.
    fn idle(c: &mut Connection) {
        c.release_idle_buffers();
        let now = Instant::now();
        c.poll_timeout(now);
        c.handle_timeout(now + Duration::from_secs(2));
    }

    #[test]
    fn zlib_state_is_allocated_on_first_use_and_released_when_idle_without_takeover() {
        for no_takeover in [false, true] {
            let mut client = conn(Role::Client, no_takeover);
            let mut server = conn(Role::Server, no_takeover);
            assert_eq!(allocated(&client), (false, false));
            // Under the threshold: sent as is, nothing allocated.
            client.send_text("short").unwrap();
            assert_eq!(allocated(&client), (false, false));
            client.send_text("long enough to be compressed").unwrap();
            assert_eq!(allocated(&client), (true, false));
            server.handle_bytes(&client.take_transmit());
            assert!(server.poll_message().unwrap().is_some());
            assert_eq!(allocated(&server), (false, false));
            assert!(server.poll_message().unwrap().is_some());
            assert_eq!(allocated(&server), (false, true));
            // Released only after the idle delay, and only when no context
            // is kept.
            client.release_idle_buffers();
            server.release_idle_buffers();
            assert_eq!(allocated(&client), (true, false));
            assert_eq!(allocated(&server), (false, true));
            idle(&mut client);
            idle(&mut server);
            assert_eq!(allocated(&client), (!no_takeover, false));
            assert_eq!(allocated(&server), (false, !no_takeover));
        }
    }

    #[test]
    fn a_fragmented_message_keeps_its_inflater_while_idle() {
        let mut client = conn(Role::Client, true);
        let mut server = conn(Role::Server, true);
        client.config.fragment_size = Some(8);
        client.send_text(&"abcdefgh".repeat(8)).unwrap();
        let wire = client.take_transmit();
        // Everything but the last frame.
        server.handle_bytes(&wire[..wire.len() - 4]);
        assert!(server.poll_message().unwrap().is_none());
        assert!(server.inflating);
        idle(&mut server);
        assert_eq!(allocated(&server), (false, true));
        server.handle_bytes(&wire[wire.len() - 4..]);
        assert_eq!(
            server.poll_message().unwrap(),
            Some(crate::Message::text("abcdefgh".repeat(8)))
        );
    }
}
