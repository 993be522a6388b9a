//! A wake a thread can sleep on: the hub and the backplane wake the
//! Redis threads through it (ws-core's [`Wake`]), and stop does too.

use std::sync::{Condvar, Mutex};
use std::time::Duration;

use ws_core::server::hub::Wake;

/// A generation counter and a condition variable: a wake between reading
/// the generation and waiting is never lost.
#[derive(Debug, Default)]
pub(crate) struct Signal {
    generation: Mutex<u64>,
    cv: Condvar,
}

impl Signal {
    /// The current generation, to wait on.
    pub(crate) fn generation(&self) -> u64 {
        *self.generation.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits until woken after `seen` was read, or `timeout`; updates
    /// `seen`.
    pub(crate) fn wait(&self, seen: &mut u64, timeout: Duration) {
        let g = self.generation.lock().unwrap_or_else(|p| p.into_inner());
        let (g, _) = self
            .cv
            .wait_timeout_while(g, timeout, |g| *g == *seen)
            .unwrap_or_else(|p| p.into_inner());
        *seen = *g;
    }

    /// Wakes every waiter.
    pub(crate) fn wake_now(&self) {
        *self.generation.lock().unwrap_or_else(|p| p.into_inner()) += 1;
        self.cv.notify_all();
    }
}

impl Wake for Signal {
    fn wake(&self) {
        self.wake_now();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Instant;

    #[test]
    fn a_wake_before_the_wait_is_not_lost_and_a_wait_times_out() {
        let s = Arc::new(Signal::default());
        let mut seen = s.generation();
        s.wake_now();
        let t0 = Instant::now();
        s.wait(&mut seen, Duration::from_secs(10));
        assert!(t0.elapsed() < Duration::from_secs(5));
        let t0 = Instant::now();
        s.wait(&mut seen, Duration::from_millis(50));
        assert!(t0.elapsed() >= Duration::from_millis(50));
    }
}
