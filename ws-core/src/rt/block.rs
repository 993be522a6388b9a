//! Running the poll-based loops ([`StreamDriver`](crate::rt::driver::StreamDriver),
//! [`halves`](crate::rt::halves)) on a plain thread, with no runtime: a
//! blocking adapter presents its transport as one whose reads and writes
//! complete before the poll returns, and runs each operation with
//! [`block_on`].
//!
//! - [`block_on`] / [`block_on_until`]: polls a future on the current
//!   thread with a waker that unparks it, and parks while it is pending
//!   (until woken, until the [`BlockTimer`]'s deadline, or until the
//!   caller's deadline).
//! - [`BlockTimer`]: the [`Timer`] for loops run this way. It reports a
//!   deadline as passed once `Instant::now()` reaches it; until then it
//!   records the deadline for the executor and for the transport's blocking
//!   read ([`io_deadline`]).
//! - [`io_deadline`]: how long a blocking call made inside the poll may
//!   block: until the timer's deadline (so timers fire while a read waits,
//!   as on a runtime) or the caller's, whichever comes first. A blocking
//!   read that reaches it returns `Pending` after waking the task, and the
//!   loop's next step fires the timer.
//! - [`give_up`]: a blocking call that failed with a timeout the executor
//!   did not ask for (a non-blocking transport, the transport's own write
//!   timeout) returns `Pending` after handing its error here, and
//!   [`block_on_until`] returns that error instead of parking; a cancel-safe
//!   operation loses nothing and can be called again.
//!
//! A thread blocked in a system call cannot be woken by a waker: a blocking
//! read must be bounded by [`io_deadline`] for timers to fire, and what a
//! wake asks of a thread blocked in a read waits until the read returns
//! (ws-blocking's split halves have the other thread do it instead).

use std::cell::Cell;
use std::future::Future;
use std::io;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Wake, Waker};
use std::thread::{self, Thread};
use std::time::Instant;

use crate::rt::driver::Timer;

/// Wakes the thread that runs [`block_on`]: a flag (a wake during the poll
/// makes it poll again instead of parking) and an unpark.
struct ThreadWake {
    thread: Thread,
    woken: AtomicBool,
}

impl Wake for ThreadWake {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Release);
        self.thread.unpark();
    }
}

thread_local! {
    /// This thread's waker, built once.
    static WAKE: (Arc<ThreadWake>, Waker) = {
        let wake = Arc::new(ThreadWake {
            thread: thread::current(),
            woken: AtomicBool::new(false),
        });
        (wake.clone(), Waker::from(wake))
    };
    /// The deadline a [`BlockTimer`] waits for, recorded during a poll.
    static TIMER: Cell<Option<Instant>> = const { Cell::new(None) };
    /// The deadline of the running [`block_on_until`].
    static LIMIT: Cell<Option<Instant>> = const { Cell::new(None) };
    /// The error a blocking call gave up with during this poll.
    static GAVE_UP: Cell<Option<io::Error>> = const { Cell::new(None) };
    /// Whether `GAVE_UP` holds one (a check without touching the error).
    static GIVING_UP: Cell<bool> = const { Cell::new(false) };
}

/// Why [`block_on_until`] returned without the future's output.
#[derive(Debug)]
pub enum Stop {
    /// The deadline passed while the future was pending.
    Deadline,
    /// A blocking call inside the poll gave up with this error
    /// ([`give_up`]).
    Io(io::Error),
}

fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Runs `fut` to completion on the current thread (see the [module
/// docs](self)); `Err` if a blocking call inside it [gave up](give_up).
pub fn block_on<F: Future>(fut: F) -> io::Result<F::Output> {
    block_on_until(fut, None).map_err(|stop| match stop {
        Stop::Io(e) => e,
        Stop::Deadline => unreachable!("no deadline"),
    })
}

/// Runs `fut` on the current thread until it completes, or until it is
/// pending and either `deadline` has passed or a blocking call inside it
/// [gave up](give_up). The future is dropped then, so use it for
/// cancel-safe operations. Not reentrant: do not call it from inside a
/// future it runs (the inner call would take over the outer one's deadline
/// and wakes).
pub fn block_on_until<F: Future>(fut: F, deadline: Option<Instant>) -> Result<F::Output, Stop> {
    let mut fut = pin!(fut);
    WAKE.with(|(wake, waker)| {
        let mut cx = Context::from_waker(waker);
        // Nothing recorded outside this call applies to it.
        let _reset = Reset;
        LIMIT.set(deadline);
        TIMER.set(None);
        take_gave_up();
        loop {
            // A wake from here on (during the poll) means poll again.
            wake.woken.store(false, Ordering::Release);
            let polled = fut.as_mut().poll(&mut cx);
            // Ready despite a call that gave up: nothing to report (what it
            // left undone stays queued for the next operation).
            let gave_up = take_gave_up();
            if let Poll::Ready(out) = polled {
                return Ok(out);
            }
            if let Some(e) = gave_up {
                return Err(Stop::Io(e));
            }
            let timer = TIMER.take();
            let now = Instant::now();
            if deadline.is_some_and(|d| d <= now) {
                return Err(Stop::Deadline);
            }
            if wake.woken.load(Ordering::Acquire) {
                continue;
            }
            // Spurious returns only cost a poll.
            match earliest(timer, deadline) {
                Some(at) => thread::park_timeout(at.saturating_duration_since(now)),
                None => thread::park(),
            }
        }
    })
}

/// Clears the deadline when [`block_on_until`] returns (or unwinds), so
/// that [`io_deadline`] outside it is `None`.
struct Reset;

impl Drop for Reset {
    fn drop(&mut self) {
        LIMIT.set(None);
        TIMER.set(None);
    }
}

fn take_gave_up() -> Option<io::Error> {
    if GIVING_UP.replace(false) {
        GAVE_UP.take()
    } else {
        None
    }
}

/// For a blocking call inside a poll run by [`block_on`]: it failed with
/// `e`, an error the caller should see and may retry after (a timeout the
/// executor did not set). The call returns `Pending`; so does every later
/// call in the same poll ([`gave_up`]), and [`block_on_until`] returns
/// `Err(Stop::Io(e))`. Outside `block_on` the error is dropped.
pub fn give_up(e: io::Error) {
    GAVE_UP.set(Some(e));
    GIVING_UP.set(true);
}

/// Whether a blocking call in the current poll [gave up](give_up): later
/// ones return `Pending` at once instead of blocking.
pub fn gave_up() -> bool {
    GIVING_UP.get()
}

/// How long a blocking call made inside a poll run by [`block_on`] may
/// block: until the [`BlockTimer`]'s deadline recorded in this step or the
/// [`block_on_until`] deadline, whichever is earlier; `None`: as long as it
/// takes. Takes the timer's deadline (the loop records it again on its next
/// step while it still applies).
pub fn io_deadline() -> Option<Instant> {
    earliest(TIMER.take(), LIMIT.get())
}

/// The [`Timer`] of a loop run by [`block_on`] (see the [module
/// docs](self)): it has no thread or runtime behind it; the deadline it
/// records bounds the step's blocking read ([`io_deadline`]) or the
/// executor's park.
#[derive(Debug, Default, Clone, Copy)]
pub struct BlockTimer;

impl Timer for BlockTimer {
    fn poll_at(&mut self, _: &mut Context<'_>, at: Instant) -> bool {
        if Instant::now() >= at {
            TIMER.set(None);
            true
        } else {
            TIMER.set(Some(at));
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::poll_fn;
    use std::time::Duration;

    #[test]
    fn a_wake_from_another_thread_ends_the_park() {
        let (tx, rx) = std::sync::mpsc::channel::<Waker>();
        let flag = Arc::new(AtomicBool::new(false));
        let set = flag.clone();
        let waker_thread = thread::spawn(move || {
            let waker = rx.recv().unwrap();
            thread::sleep(Duration::from_millis(20));
            set.store(true, Ordering::SeqCst);
            waker.wake();
        });
        let mut sent = Some(tx);
        let out = block_on(poll_fn(|cx| {
            if flag.load(Ordering::SeqCst) {
                return Poll::Ready(7);
            }
            if let Some(tx) = sent.take() {
                tx.send(cx.waker().clone()).unwrap();
            }
            Poll::Pending
        }));
        assert_eq!(out.unwrap(), 7);
        waker_thread.join().unwrap();
    }

    #[test]
    fn the_timer_bounds_the_park_and_reports_its_deadline_once_passed() {
        let at = Instant::now() + Duration::from_millis(30);
        let mut timer = BlockTimer;
        let mut polls = 0;
        block_on(poll_fn(|cx| {
            polls += 1;
            if timer.poll_at(cx, at) {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        }))
        .unwrap();
        assert!(Instant::now() >= at);
        assert!(polls <= 3, "parked until the deadline ({polls} polls)");
    }

    #[test]
    fn the_deadline_ends_a_pending_future_and_bounds_blocking_calls() {
        let t = Instant::now();
        let limit = t + Duration::from_millis(30);
        let mut seen = None;
        let r = block_on_until(
            poll_fn(|cx| {
                let mut timer = BlockTimer;
                assert!(!timer.poll_at(cx, t + Duration::from_secs(60)));
                seen = io_deadline();
                Poll::<()>::Pending
            }),
            Some(limit),
        );
        assert!(matches!(r, Err(Stop::Deadline)));
        assert!(t.elapsed() >= Duration::from_millis(30));
        assert_eq!(seen, Some(limit), "the earlier of the two");
        assert_eq!(io_deadline(), None, "nothing outside block_on");
    }

    #[test]
    fn a_call_that_gives_up_ends_a_pending_poll_with_its_error() {
        let r = block_on(poll_fn(|_| {
            give_up(io::ErrorKind::WouldBlock.into());
            assert!(gave_up());
            Poll::<()>::Pending
        }));
        assert_eq!(r.unwrap_err().kind(), io::ErrorKind::WouldBlock);
        assert!(!gave_up(), "reported once");
        let r = block_on(poll_fn(|_| {
            give_up(io::ErrorKind::WouldBlock.into());
            Poll::Ready(1)
        }));
        assert_eq!(r.unwrap(), 1, "a poll that completes reports nothing");
    }
}
