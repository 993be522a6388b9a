//! [`Handoff`]: an exclusive cell that a split connection's two halves pass
//! between them with one atomic compare-and-swap, never blocking a thread.
//!
//! The runtime adapters keep the write side of a split WebSocket (the
//! [`Sender`](crate::connection::split::Sender) and the transport's write
//! half) in one. The writing task claims it for each send or flush; the
//! reading task claims it only to write a control reply (a pong, a close
//! reply) that the writing task, perhaps idle, is not around to write. A
//! claim that fails registers the caller's waker and returns `Pending`; the
//! holder's release wakes it. Nobody spins and no thread ever sleeps on it,
//! and an uncontended claim and release cost two atomic operations.
//!
//! It is a lock in the sense that only one side holds the write side at a
//! time, which is what keeps a pong from landing inside a half-written data
//! frame. It is not a mutex on the data path: the reading side never claims
//! it for data, and a writing side that finds it taken is only ever waiting
//! for the reader to finish one non-blocking write of a control frame.

use std::ops::{Deref, DerefMut};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use sync::{AtomicU8, AtomicWaker, Ordering, UnsafeCell};

/// The primitives the cell is built from: std's and `atomic-waker`'s, or,
/// under `--cfg loom`, the model checker's, which explore every interleaving
/// of their operations and flag any access to the value that overlaps
/// another (`tests/loom_handoff.rs`).
#[cfg(not(loom))]
mod sync {
    pub(super) use atomic_waker::AtomicWaker;
    pub(super) use std::cell::UnsafeCell;
    pub(super) use std::sync::atomic::{AtomicU8, Ordering};
}

#[cfg(loom)]
mod sync {
    pub(super) use loom::cell::UnsafeCell;
    pub(super) use loom::sync::atomic::{AtomicU8, Ordering};

    /// loom's `AtomicWaker` with `atomic-waker`'s signatures.
    #[derive(Debug, Default)]
    pub(super) struct AtomicWaker(loom::future::AtomicWaker);

    impl AtomicWaker {
        pub(super) fn register(&self, waker: &std::task::Waker) {
            self.0.register_by_ref(waker);
        }
        pub(super) fn wake(&self) {
            self.0.wake();
        }
    }
}

/// Which half is claiming.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The receiving half.
    Reader,
    /// The sending half.
    Writer,
}

impl Side {
    fn index(self) -> usize {
        match self {
            Side::Reader => 0,
            Side::Writer => 1,
        }
    }

    /// The bit that says this side waits for a release.
    fn want(self) -> u8 {
        WANT << self.index()
    }
}

/// The value is claimed.
const HELD: u8 = 1;
/// The reader waits for a release (the writer's bit is the next one).
const WANT: u8 = 2;

/// An exclusive cell shared by the two halves of a split connection (see
/// the [module docs](self)).
pub struct Handoff<T> {
    state: AtomicU8,
    value: UnsafeCell<T>,
    wakers: Arc<Wakers>,
    /// Wakes both sides (see [`Handoff::both`]); built once.
    both: Waker,
}

/// The task last registered for each side.
#[derive(Default)]
struct Wakers([AtomicWaker; 2]);

impl Wake for Wakers {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.0.iter().for_each(AtomicWaker::wake);
    }
}

// SAFETY: the value is only reached through a `HandoffGuard`, and at most
// one guard exists at a time (the `HELD` bit is taken by compare-and-swap
// and released when the guard drops), so sharing the cell shares no `&mut T`
// between threads; the value itself moves between threads, hence `T: Send`.
#[allow(unsafe_code)]
unsafe impl<T: Send> Sync for Handoff<T> {}

impl<T> std::fmt::Debug for Handoff<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handoff")
            .field("state", &self.state.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl<T> Handoff<T> {
    /// A free cell holding `value`.
    pub fn new(value: T) -> Self {
        let wakers = Arc::new(Wakers::default());
        Handoff {
            state: AtomicU8::new(0),
            value: UnsafeCell::new(value),
            both: Waker::from(wakers.clone()),
            wakers,
        }
    }

    /// Claims the cell if nobody holds it; never waits.
    pub fn try_claim(&self) -> Option<HandoffGuard<'_, T>> {
        let mut s = self.state.load(Ordering::Relaxed);
        loop {
            if s & HELD != 0 {
                return None;
            }
            match self.state.compare_exchange_weak(
                s,
                s | HELD,
                Ordering::Acquire,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    return Some(HandoffGuard {
                        cell: self,
                        #[cfg(loom)]
                        access: std::mem::ManuallyDrop::new(self.value.get_mut()),
                    });
                }
                Err(now) => s = now,
            }
        }
    }

    /// Claims the cell, or registers `cx`'s waker to be woken when the
    /// holder releases it and returns `Pending`.
    pub fn poll_claim(&self, side: Side, cx: &mut Context<'_>) -> Poll<HandoffGuard<'_, T>> {
        if let Some(guard) = self.try_claim() {
            return Poll::Ready(guard);
        }
        self.wakers.0[side.index()].register(cx.waker());
        self.state.fetch_or(side.want(), Ordering::AcqRel);
        // The holder may have released it between the failed claim and the
        // want bit, in which case nobody would wake us: try once more.
        match self.try_claim() {
            Some(guard) => Poll::Ready(guard),
            None => Poll::Pending,
        }
    }

    /// Registers `cx`'s waker for [`wake`](Self::wake) on `side`, without
    /// claiming anything (e.g. the reader, so that a close sent by the
    /// writer can start the reader's close timer).
    pub fn register(&self, side: Side, cx: &mut Context<'_>) {
        self.wakers.0[side.index()].register(cx.waker());
    }

    /// Wakes the task last registered for `side`.
    pub fn wake(&self, side: Side) {
        self.wakers.0[side.index()].wake();
    }

    /// A waker that wakes the tasks last registered for both sides. A
    /// transport remembers one waker per direction, so a side that polls the
    /// shared write half with its own waker may displace the other side's;
    /// polling with this one (after [`register`](Self::register)ing) loses
    /// nobody's wakeup.
    pub fn both(&self) -> &Waker {
        &self.both
    }

    /// The value, when nobody else can hold the cell.
    #[cfg(not(loom))]
    pub fn get_mut(&mut self) -> &mut T {
        self.value.get_mut()
    }

    /// The value, when nobody else can hold the cell.
    #[cfg(loom)]
    pub fn get_mut(&mut self) -> &mut T {
        // SAFETY: `&mut self` excludes every guard, and the reference lives
        // no longer than that borrow.
        #[allow(unsafe_code)]
        unsafe {
            &mut *(self.value.get_mut().deref() as *mut T)
        }
    }

    /// The value, giving up the cell.
    pub fn into_inner(self) -> T {
        self.value.into_inner()
    }
}

/// Exclusive access to a [`Handoff`]'s value; dropping it releases the cell
/// and wakes whoever waited for it.
pub struct HandoffGuard<'a, T> {
    cell: &'a Handoff<T>,
    /// Under loom, the tracked access to the value: loom fails the model if
    /// another access overlaps it. Ended before the release.
    #[cfg(loom)]
    access: std::mem::ManuallyDrop<loom::cell::MutPtr<T>>,
}

impl<T> Deref for HandoffGuard<'_, T> {
    type Target = T;

    fn deref(&self) -> &T {
        // SAFETY: this guard exists only while its holder owns the `HELD`
        // bit (see `Sync for Handoff`), so no other reference to the value
        // is live.
        #[cfg(not(loom))]
        #[allow(unsafe_code)]
        unsafe {
            &*self.cell.value.get()
        }
        #[cfg(loom)]
        #[allow(unsafe_code)]
        unsafe {
            &*loom::cell::MutPtr::deref(&self.access)
        }
    }
}

impl<T> DerefMut for HandoffGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as in `deref`; `&mut self` makes this the only borrow
        // through the guard.
        #[cfg(not(loom))]
        #[allow(unsafe_code)]
        unsafe {
            &mut *self.cell.value.get()
        }
        #[cfg(loom)]
        #[allow(unsafe_code)]
        unsafe {
            loom::cell::MutPtr::deref(&self.access)
        }
    }
}

impl<T> Drop for HandoffGuard<'_, T> {
    fn drop(&mut self) {
        // SAFETY (loom only): the access is never used again; it must end
        // before the release, or loom would see the next holder's overlap it.
        #[cfg(loom)]
        #[allow(unsafe_code)]
        unsafe {
            std::mem::ManuallyDrop::drop(&mut self.access);
        }
        let prev = self.cell.state.swap(0, Ordering::AcqRel);
        for side in [Side::Reader, Side::Writer] {
            if prev & side.want() != 0 {
                self.cell.wake(side);
            }
        }
    }
}

impl<T> std::fmt::Debug for HandoffGuard<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HandoffGuard").finish_non_exhaustive()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::AtomicUsize;
    use std::task::{Wake, Waker};

    #[derive(Default)]
    struct CountWakes(AtomicUsize);

    impl Wake for CountWakes {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn only_one_guard_exists_at_a_time() {
        let cell = Handoff::new(0u32);
        let guard = cell.try_claim().expect("free cell");
        assert!(cell.try_claim().is_none());
        drop(guard);
        assert!(cell.try_claim().is_some());
    }

    #[test]
    fn a_waiting_side_is_woken_by_the_release() {
        let cell = Handoff::new(0u32);
        let wakes = Arc::new(CountWakes::default());
        let waker = Waker::from(wakes.clone());
        let mut cx = Context::from_waker(&waker);
        let mut guard = cell.try_claim().unwrap();
        assert!(cell.poll_claim(Side::Writer, &mut cx).is_pending());
        *guard += 1;
        assert_eq!(wakes.0.load(Ordering::SeqCst), 0);
        drop(guard);
        assert_eq!(
            wakes.0.load(Ordering::SeqCst),
            1,
            "release wakes the waiter"
        );
        let Poll::Ready(guard) = cell.poll_claim(Side::Writer, &mut cx) else {
            panic!("free after release");
        };
        assert_eq!(*guard, 1);
    }

    #[test]
    fn threads_never_hold_it_together() {
        // Two threads increment through try_claim; a lost update would show
        // that two guards overlapped.
        let cell = Arc::new(Handoff::new(0u64));
        let per_thread = 100_000u64;
        let workers: Vec<_> = (0..2)
            .map(|_| {
                let cell = cell.clone();
                std::thread::spawn(move || {
                    let mut done = 0;
                    while done < per_thread {
                        if let Some(mut g) = cell.try_claim() {
                            let v = *g;
                            std::hint::black_box(());
                            *g = v + 1;
                            done += 1;
                        }
                    }
                })
            })
            .collect();
        for w in workers {
            w.join().unwrap();
        }
        let cell = Arc::try_unwrap(cell).unwrap();
        assert_eq!(cell.into_inner(), 2 * per_thread);
    }
}
