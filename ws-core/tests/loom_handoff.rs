//! The split halves' hand-off cell ([`Handoff`]) under the loom model
//! checker: every interleaving of the two halves' claims, releases and
//! wakeups (up to `LOOM_MAX_PREEMPTIONS` preemptions per execution), with
//! loom's atomics, `UnsafeCell` (which fails the model on any two accesses
//! to the value not ordered by a happens-before edge: two halves writing at
//! once) and `AtomicWaker` (a lost wakeup leaves a task parked forever:
//! loom reports the deadlock).
//!
//! What is modelled is the cell's protocol as the split halves use it: the
//! value is the write side (the sender's queue of unwritten bytes and the
//! transport), the writer claims it for each send, the reader for a control
//! reply; whoever holds it first writes what an earlier holder left queued,
//! then its own frame. The halves' protocol state machines (`Sender`,
//! `Receiver`) are not run under loom: they are single-threaded, and tested
//! (and fuzzed) on their own.
//!
//! Run with its own target directory, so that the `--cfg loom` build does
//! not invalidate the normal one:
//!
//! ```text
//! RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=3 CARGO_TARGET_DIR=target/loom \
//!     cargo test -p ws-core --release --test loom_handoff -- --nocapture
//! ```
#![cfg(loom)]

use loom::future::block_on;
use loom::sync::Arc;
use loom::thread;
use std::future::poll_fn;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll, Waker};
use ws_core::rt::handoff::{Handoff, HandoffGuard, Side};

/// The write side: what reached the transport, and the frame bytes a holder
/// queued but did not write (a short write, or a holder that went away).
#[derive(Default)]
struct WriteSide {
    wire: Vec<u8>,
    queued: Vec<u8>,
    close_queued: bool,
}

impl WriteSide {
    /// Queues `frame` behind whatever is queued and writes at most `budget`
    /// bytes, one at a time (each byte a separate access to the value).
    fn send(&mut self, frame: &[u8], budget: usize) {
        self.queued.extend_from_slice(frame);
        self.flush(budget);
    }

    fn flush(&mut self, budget: usize) {
        let n = budget.min(self.queued.len());
        for b in self.queued.drain(..n) {
            self.wire.push(b);
        }
    }
}

type Cell = Arc<Handoff<WriteSide>>;

fn claim(cell: &Cell, side: Side) -> HandoffGuard<'_, WriteSide> {
    block_on(poll_fn(|cx| cell.poll_claim(side, cx)))
}

/// Splits the wire into frames: each frame is a run of one letter, and a
/// frame's letter never reappears after it (no frame interleaved with
/// another, none split in two).
fn frames(wire: &[u8]) -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = Vec::new();
    for &b in wire {
        match out.last_mut() {
            Some(f) if f[0] == b => f.push(b),
            _ => {
                assert!(
                    out.iter().all(|f| f[0] != b),
                    "interleaved bytes: {:?}",
                    String::from_utf8_lossy(wire)
                );
                out.push(vec![b]);
            }
        }
    }
    out
}

/// Runs `f` under loom and reports how many executions it explored.
fn model(name: &str, f: impl Fn() + Sync + Send + 'static) {
    static RUNS: AtomicUsize = AtomicUsize::new(0);
    RUNS.store(0, Ordering::SeqCst);
    loom::model(move || {
        RUNS.fetch_add(1, Ordering::SeqCst);
        f();
    });
    println!(
        "loom {name}: {} interleavings explored",
        RUNS.load(Ordering::SeqCst)
    );
}

/// The reader writes a pong while the writer sends two messages: all three
/// frames arrive whole, the writer's in order, none lost, no deadlock.
#[test]
fn a_pong_while_the_writer_sends() {
    model("pong while sending", || {
        let cell: Cell = Arc::new(Handoff::new(WriteSide::default()));
        let writer = {
            let cell = cell.clone();
            thread::spawn(move || {
                claim(&cell, Side::Writer).send(b"aaa", usize::MAX);
                claim(&cell, Side::Writer).send(b"bb", usize::MAX);
            })
        };
        claim(&cell, Side::Reader).send(b"PP", usize::MAX);
        writer.join().unwrap();
        let cell = Arc::try_unwrap(cell).ok().expect("both halves gone");
        let side = cell.into_inner();
        assert!(side.queued.is_empty());
        let frames = frames(&side.wire);
        let order: Vec<u8> = frames.iter().map(|f| f[0]).collect();
        assert_eq!(frames.len(), 3, "a frame lost: {:?}", side.wire);
        assert!(
            matches!(&order[..], b"aPb" | b"abP" | b"Pab"),
            "order {:?}",
            String::from_utf8_lossy(&order)
        );
    });
}

/// Both halves close at once (the writer's close, the reader's reply to the
/// peer's): exactly one close frame, and nothing after it.
#[test]
fn both_closing() {
    model("both closing", || {
        let cell: Cell = Arc::new(Handoff::new(WriteSide::default()));
        let close = |side: &mut WriteSide| {
            if !side.close_queued {
                side.close_queued = true;
                side.send(b"CC", usize::MAX);
            }
        };
        let writer = {
            let cell = cell.clone();
            thread::spawn(move || {
                let mut side = claim(&cell, Side::Writer);
                if !side.close_queued {
                    side.send(b"ddd", usize::MAX);
                }
                drop(side);
                close(&mut claim(&cell, Side::Writer));
            })
        };
        close(&mut claim(&cell, Side::Reader));
        writer.join().unwrap();
        let side = Arc::try_unwrap(cell).ok().expect("gone").into_inner();
        let frames = frames(&side.wire);
        let closes = frames.iter().filter(|f| f[0] == b'C').count();
        assert_eq!(closes, 1, "{:?}", String::from_utf8_lossy(&side.wire));
        assert_eq!(frames.last().unwrap()[0], b'C', "a frame after the close");
    });
}

/// The writer's task is dropped in the middle of a write (a short write,
/// then the guard and the writer's handle go): the cell is free again, the
/// reader's pong does not land inside the writer's frame, and the rest of
/// that frame is written first by whoever holds the cell next.
#[test]
fn the_writer_dropped_mid_write() {
    model("writer dropped mid-write", || {
        let cell: Cell = Arc::new(Handoff::new(WriteSide::default()));
        let writer = {
            let cell = cell.clone();
            thread::spawn(move || {
                let mut side = claim(&cell, Side::Writer);
                side.send(b"wwww", 2);
                // The task is dropped here: guard first, then its handle.
                drop(side);
                drop(cell);
            })
        };
        claim(&cell, Side::Reader).send(b"PP", usize::MAX);
        writer.join().unwrap();
        // The reader's next claim flushes whatever is still queued.
        claim(&cell, Side::Reader).flush(usize::MAX);
        let side = Arc::try_unwrap(cell).ok().expect("gone").into_inner();
        let order: Vec<u8> = frames(&side.wire).iter().map(|f| f[0]).collect();
        assert!(
            matches!(&order[..], b"wP" | b"Pw"),
            "{:?}",
            String::from_utf8_lossy(&side.wire)
        );
        assert_eq!(side.wire.len(), 6, "a byte lost");
    });
}

/// A claim that found the cell taken, registered its waker and was then
/// cancelled (its future dropped) leaves the cell free for the other half
/// and for itself later: no stuck `HELD`, no wakeup owed to a dead task
/// that anyone waits on.
#[test]
fn a_cancelled_claim_leaves_the_cell_free() {
    model("cancelled claim", || {
        let cell: Cell = Arc::new(Handoff::new(WriteSide::default()));
        let writer = {
            let cell = cell.clone();
            thread::spawn(move || {
                let mut cx = Context::from_waker(Waker::noop());
                // One poll, then the future is dropped.
                if let Poll::Ready(mut side) = cell.poll_claim(Side::Writer, &mut cx) {
                    side.send(b"ww", usize::MAX);
                }
            })
        };
        claim(&cell, Side::Reader).send(b"PP", usize::MAX);
        writer.join().unwrap();
        assert!(cell.try_claim().is_some(), "the cell stayed claimed");
        claim(&cell, Side::Writer).send(b"x", usize::MAX);
        let side = Arc::try_unwrap(cell).ok().expect("gone").into_inner();
        let order: Vec<u8> = frames(&side.wire).iter().map(|f| f[0]).collect();
        assert!(matches!(&order[..], b"Px" | b"wPx" | b"Pwx"), "{order:?}");
    });
}

/// Each half waits for the other in turn, many times over (the reader
/// claiming for a reply while the writer holds the cell, and back): every
/// release wakes the half that waits, so nobody parks forever.
#[test]
fn turns_never_lose_a_wakeup() {
    model("alternating claims", || {
        let cell: Cell = Arc::new(Handoff::new(WriteSide::default()));
        let writer = {
            let cell = cell.clone();
            thread::spawn(move || {
                for _ in 0..2 {
                    claim(&cell, Side::Writer).send(b"w", usize::MAX);
                }
            })
        };
        for _ in 0..2 {
            claim(&cell, Side::Reader).send(b"r", usize::MAX);
        }
        writer.join().unwrap();
        let side = Arc::try_unwrap(cell).ok().expect("gone").into_inner();
        let mut bytes = side.wire.clone();
        bytes.sort();
        assert_eq!(bytes, b"rrww");
    });
}
