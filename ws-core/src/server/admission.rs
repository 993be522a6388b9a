//! What every runtime's accept loop decides, written once: whether an
//! accepted connection is served or refused (the server's
//! `max_connections`), and what to do when `accept` itself fails (out of
//! file descriptors, out of kernel memory). The adapters only ask.
//!
//! # The connection limit
//!
//! [`Admission`] counts the server's live TCP connections: every accepted
//! connection, from `accept` until its socket is closed, upgraded or not (a
//! client still sending its request head holds a descriptor as much as an
//! open session does; a request for the test page counts while it is
//! served). At the limit, the next connection is still accepted, answered
//! at once with `503 Service Unavailable` and `Retry-After: 1`, before any
//! upgrade, and closed: a client learns why instead of hanging in the
//! listen backlog, and the clients already connected keep working. The
//! refusal itself holds the descriptor only while the 503 is written and
//! the request is drained ([`LINGER`](crate::server::conn::LINGER)), and
//! does not count against the limit. [`Admission::refused`] counts
//! refusals.
//!
//! # Failed accepts
//!
//! [`AcceptPacer`] turns a failed `accept` into a pause. A failure of one
//! connection (reset or aborted before it was accepted, an interrupted
//! call) is retried at once. Anything else (EMFILE, ENFILE, ENOBUFS,
//! ENOMEM, ...) starts an *episode*: the loop sleeps 10 ms, then 20, 40,
//! 80, 100, 100 ... ms between attempts, so it neither spins on a listener
//! that stays readable (the pending connection waits in the backlog) nor
//! lags long behind a descriptor that frees; the connections already open
//! are served meanwhile (they run on their own tasks or threads). One event
//! is logged when an episode starts (`warn`, "accept failed") and one when
//! an accept succeeds again (`info`, "accepting again"), never one per
//! failed accept; they go through [`crate::trace`] like the rest of the
//! server engine's log (cargo feature `tracing`; nothing without it).

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::server::handler::Refusal;
use crate::trace;

/// The first pause after a failed `accept` (see [`AcceptPacer`]).
pub const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(10);
/// The longest pause between failed `accept`s: also how late, at most, the
/// server notices that descriptors freed.
pub const ACCEPT_BACKOFF_MAX: Duration = Duration::from_millis(100);
/// The `Retry-After` of a connection refused at the limit, in seconds.
pub const RETRY_AFTER_SECS: u32 = 1;

/// The server's count of live connections against its `max_connections`
/// (see the [module docs](self)). Shared by the accept loop, which asks
/// [`admit`](Self::admit), and the connections, which hold a [`Permit`].
#[derive(Debug, Default)]
pub struct Admission {
    max: Option<usize>,
    live: AtomicUsize,
    refused: AtomicU64,
}

/// What the accept loop does with a connection it accepted.
#[derive(Debug)]
pub enum Ticket {
    /// Serve it; the permit is its place under the limit, given back when
    /// dropped (the connection's machine holds it).
    Admitted(Permit),
    /// At the limit: answer [`Admission::refusal`] and close.
    Refused,
}

/// One connection's place under the limit; dropping it frees the place.
#[derive(Debug)]
pub struct Permit(Arc<Admission>);

impl Drop for Permit {
    fn drop(&mut self) {
        self.0.live.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Admission {
    /// Admission for a server that serves at most `max` connections at once
    /// (`None`: no limit but the process's descriptors).
    pub fn new(max: Option<usize>) -> Arc<Self> {
        Arc::new(Admission {
            max,
            ..Admission::default()
        })
    }

    /// Takes a place for a connection just accepted, or refuses it when
    /// `max_connections` are live.
    pub fn admit(self: &Arc<Self>) -> Ticket {
        let max = self.max.unwrap_or(usize::MAX);
        let taken = self
            .live
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            });
        match taken {
            Ok(_) => Ticket::Admitted(Permit(self.clone())),
            Err(_) => {
                self.refused.fetch_add(1, Ordering::Relaxed);
                Ticket::Refused
            }
        }
    }

    /// The limit, if any.
    pub fn max(&self) -> Option<usize> {
        self.max
    }

    /// Connections holding a place now.
    pub fn live(&self) -> usize {
        self.live.load(Ordering::Acquire)
    }

    /// Connections refused at the limit so far.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// The response a refused connection gets: `503 Service Unavailable`
    /// with `Retry-After`, and a body that says why.
    pub fn refusal() -> Bytes {
        Refusal::new(503)
            .header("Retry-After", RETRY_AFTER_SECS.to_string())
            .body("server at its connection limit, retry later\n")
            .response()
    }
}

/// The accept loop's pacing after failed `accept`s (see the
/// [module docs](self)): one per accept loop, owned by it.
#[derive(Debug, Default)]
pub struct AcceptPacer {
    /// The running episode: when it started, failed accepts, next pause.
    episode: Option<Episode>,
    /// Episodes so far.
    episodes: u64,
}

#[derive(Debug)]
struct Episode {
    /// When it started (its end's log line tells how long it lasted).
    #[cfg_attr(not(feature = "tracing"), allow(dead_code))]
    since: Instant,
    failures: u64,
    pause: Duration,
}

/// Whether `e` is the failure of one connection (gone before it was
/// accepted, or an interrupted call), after which the next accept is fine
/// at once.
fn one_connections_failure(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
    )
}

impl AcceptPacer {
    /// `accept` failed with `e` at `now`: how long to pause before the next
    /// attempt (`None`: retry at once). Logs the start of an episode, once.
    pub fn failed(&mut self, e: &io::Error, now: Instant) -> Option<Duration> {
        if one_connections_failure(e) {
            return None;
        }
        let episode = match &mut self.episode {
            Some(ep) => {
                ep.pause = (ep.pause * 2).min(ACCEPT_BACKOFF_MAX);
                ep
            }
            None => {
                self.episodes += 1;
                trace::warning!(
                    error = %e,
                    retry_max_ms = ACCEPT_BACKOFF_MAX.as_millis() as u64,
                    "accept failed; serving the open connections, retrying with a backoff"
                );
                self.episode.insert(Episode {
                    since: now,
                    failures: 0,
                    pause: ACCEPT_BACKOFF_MIN,
                })
            }
        };
        episode.failures += 1;
        Some(episode.pause)
    }

    /// `accept` succeeded at `now`: ends an episode (logged, with its
    /// length).
    // Without the `tracing` feature the event expands to nothing.
    #[cfg_attr(not(feature = "tracing"), allow(unused_variables))]
    pub fn accepted(&mut self, now: Instant) {
        if let Some(ep) = self.episode.take() {
            trace::info!(
                failed_accepts = ep.failures,
                ms = now.saturating_duration_since(ep.since).as_millis() as u64,
                "accepting again"
            );
        }
    }

    /// Whether an episode is running (the last accept failed).
    pub fn is_failing(&self) -> bool {
        self.episode.is_some()
    }

    /// Episodes so far (each logged once).
    pub fn episodes(&self) -> u64 {
        self.episodes
    }

    /// Failed accepts in the running episode (0 when none is running):
    /// what the episode's closing log line reports.
    pub fn episode_failures(&self) -> u64 {
        self.episode.as_ref().map_or(0, |ep| ep.failures)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn emfile() -> io::Error {
        io::Error::from_raw_os_error(24)
    }

    #[test]
    fn one_connections_accept_failure_is_retried_at_once() {
        let mut pacer = AcceptPacer::default();
        let now = Instant::now();
        for kind in [
            io::ErrorKind::ConnectionAborted,
            io::ErrorKind::ConnectionReset,
            io::ErrorKind::Interrupted,
        ] {
            assert_eq!(pacer.failed(&kind.into(), now), None, "{kind:?}");
        }
        assert!(!pacer.is_failing());
        assert_eq!(pacer.episodes(), 0);
    }

    #[test]
    fn exhausted_descriptors_back_off_doubling_to_the_cap() {
        let mut pacer = AcceptPacer::default();
        let now = Instant::now();
        let pauses: Vec<u64> = (0..7)
            .map(|_| pacer.failed(&emfile(), now).unwrap().as_millis() as u64)
            .collect();
        assert_eq!(pauses, [10, 20, 40, 80, 100, 100, 100]);
        // ENFILE, ENOBUFS, ENOMEM and the rest pace the same way.
        for raw in [23, 105, 12] {
            let mut pacer = AcceptPacer::default();
            let e = io::Error::from_raw_os_error(raw);
            assert_eq!(pacer.failed(&e, now), Some(ACCEPT_BACKOFF_MIN), "{e}");
        }
    }

    #[test]
    fn an_episode_is_counted_once_and_ends_at_the_next_accept() {
        let mut pacer = AcceptPacer::default();
        let now = Instant::now();
        for _ in 0..50 {
            pacer.failed(&emfile(), now);
        }
        assert!(pacer.is_failing());
        assert_eq!(pacer.episodes(), 1);
        assert_eq!(pacer.episode_failures(), 50);
        pacer.accepted(now);
        assert!(!pacer.is_failing());
        assert_eq!(pacer.episode_failures(), 0);
        // A new episode starts from the shortest pause again.
        assert_eq!(pacer.failed(&emfile(), now), Some(ACCEPT_BACKOFF_MIN));
        assert_eq!(pacer.episodes(), 2);
    }

    #[test]
    fn the_limit_refuses_the_next_connection_until_one_leaves() {
        let admission = Admission::new(Some(2));
        assert_eq!(admission.max(), Some(2));
        let a = admission.admit();
        let b = admission.admit();
        assert!(matches!(a, Ticket::Admitted(_)));
        assert!(matches!(b, Ticket::Admitted(_)));
        assert!(matches!(admission.admit(), Ticket::Refused));
        assert_eq!((admission.live(), admission.refused()), (2, 1));
        drop(a);
        assert_eq!(admission.live(), 1);
        assert!(matches!(admission.admit(), Ticket::Admitted(_)));
        // That permit was dropped at once: one place is free again.
        assert_eq!(admission.live(), 1);
    }

    #[test]
    fn without_a_limit_every_connection_is_admitted_and_counted() {
        let admission = Admission::new(None);
        assert_eq!(admission.max(), None);
        let permits: Vec<_> = (0..100).map(|_| admission.admit()).collect();
        assert!(permits.iter().all(|t| matches!(t, Ticket::Admitted(_))));
        assert_eq!(admission.live(), 100);
        drop(permits);
        assert_eq!((admission.live(), admission.refused()), (0, 0));
    }

    #[test]
    fn the_refusal_is_a_503_with_retry_after_that_closes() {
        let text = String::from_utf8(Admission::refusal().to_vec()).unwrap();
        assert!(
            text.starts_with("HTTP/1.1 503 Service Unavailable\r\n"),
            "{text}"
        );
        assert!(text.contains("\r\nRetry-After: 1\r\n"), "{text}");
        assert!(text.contains("\r\nConnection: close\r\n"), "{text}");
    }
}
