//! Heap per connection with permessage-deflate, counted by the allocator.
//!
//! Opens `N` server-side connections in memory (default 1000), each with a
//! client peer, under several deflate settings; every client sends one
//! 1 KiB JSON-like message and the server echoes it, so both zlib streams of
//! the server's connection are in use. Reports the server connections' live
//! heap per connection right after the echo ("busy") and after
//! the idle release (`release_idle_buffers` and the 1 s shrink timer)
//! ("idle"). The client peers are not counted.
//!
//! Then times a chat broadcast: one 1 KiB message queued to `N` server
//! connections as a `PreparedMessage`, compressed once and shared
//! (`server_no_context_takeover`) against compressed for each connection
//! (context takeover).
//!
//! ```text
//! cargo run --release -p ws-bench --bin deflate-memory [N]
//! ```

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::{Duration, Instant};

use ws_core::{Config, Connection, DeflateConfig, DeflateParams, Message, PreparedMessage, Role};

/// The system allocator, counting live bytes.
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every call is forwarded unchanged to the system allocator; the
// counter only observes sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        LIVE.fetch_add(l.size() as isize, Ordering::Relaxed);
        // SAFETY: forwarded with the caller's layout.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size() as isize, Ordering::Relaxed);
        // SAFETY: `p` came from `alloc` with this layout.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        LIVE.fetch_add(l.size() as isize, Ordering::Relaxed);
        // SAFETY: forwarded with the caller's layout.
        unsafe { System.alloc_zeroed(l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        LIVE.fetch_add(new as isize - l.size() as isize, Ordering::Relaxed);
        // SAFETY: `p` came from `alloc` with layout `l`.
        unsafe { System.realloc(p, l, new) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

fn live() -> isize {
    LIVE.load(Ordering::Relaxed)
}

/// Server-side heap per connection, (busy, idle), in bytes.
fn measure(n: usize, policy: Option<DeflateConfig>, agreed: Option<DeflateParams>) -> (f64, f64) {
    let msg = Message::text(
        r#"{"type":"chat","room":"lobby","user":"alice","text":"hello everyone, how is it going?"}"#
            .repeat(12),
    );
    let config = Config::default()
        .deflate(policy.unwrap_or_default())
        .negotiated_deflate(agreed);
    let mut clients: Vec<Connection> = (0..n)
        .map(|_| Connection::new(Role::Client, config.clone()))
        .collect();
    let before = live();
    let mut servers: Vec<Connection> = (0..n)
        .map(|_| Connection::new(Role::Server, config.clone()))
        .collect();
    // The connections themselves (in the Vec) count too.
    let base = live() - before;
    let mut received = 0isize;
    let mut echoed = 0isize;
    for (c, s) in clients.iter_mut().zip(servers.iter_mut()) {
        c.send(&msg).unwrap();
        let wire = c.take_transmit();
        let at = live();
        s.handle_bytes(&wire);
        drop(wire);
        let got = s.poll_message().unwrap().unwrap();
        received += live() - at;
        let at = live();
        s.send(&got).unwrap();
        drop(got);
        let reply = s.take_transmit();
        echoed += live() - at;
        // The client side is not counted.
        c.handle_bytes(&reply);
        drop(reply);
        c.poll_message().unwrap().unwrap();
    }
    let per = |b: isize| b as f64 / n as f64;
    let busy = per(base + received + echoed);
    eprintln!(
        "  base {:.1} KiB, receiving {:.1} KiB, echoing {:.1} KiB",
        per(base) / 1024.0,
        per(received) / 1024.0,
        per(echoed) / 1024.0
    );
    let mark = live();
    let now = Instant::now();
    for s in &mut servers {
        s.release_idle_buffers();
        s.poll_timeout(now);
        s.handle_timeout(now + Duration::from_secs(2));
    }
    let idle = busy + (live() - mark) as f64 / n as f64;
    drop(servers);
    (busy, idle)
}

/// Microseconds to queue one broadcast to `n` connections, and the bytes
/// queued per connection.
fn broadcast(n: usize, shared: bool) -> (f64, f64) {
    let msg = Message::text(
        r#"{"type":"chat","room":"lobby","user":"alice","text":"hello everyone, how is it going?"}"#
            .repeat(12),
    );
    let policy = DeflateConfig::enabled().server_no_context_takeover(shared);
    let agreed = DeflateParams {
        server_no_context_takeover: shared,
        ..DeflateParams::default()
    };
    let config = Config::default()
        .deflate(policy)
        .negotiated_deflate(Some(agreed));
    let mut servers: Vec<Connection> = (0..n)
        .map(|_| Connection::new(Role::Server, config.clone()))
        .collect();
    // Warm up: every connection's zlib state exists before timing.
    for s in &mut servers {
        s.send(&msg).unwrap();
        s.take_transmit();
    }
    let reps = 20;
    let mut bytes = 0;
    let t = Instant::now();
    for _ in 0..reps {
        let prepared = PreparedMessage::with_deflate(&msg, &policy).unwrap();
        for s in &mut servers {
            s.send_prepared(&prepared).unwrap();
            bytes += s.take_transmit().len();
        }
    }
    let us = t.elapsed().as_secs_f64() * 1e6 / reps as f64;
    (us, bytes as f64 / (reps * n) as f64)
}

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1000);
    let on = DeflateConfig::enabled();
    let p = |snct, cnct, smwb, cmwb| DeflateParams {
        server_no_context_takeover: snct,
        client_no_context_takeover: cnct,
        server_max_window_bits: smwb,
        client_max_window_bits: cmwb,
    };
    let cases: [(&str, Option<DeflateConfig>, Option<DeflateParams>); 5] = [
        ("no deflate", None, None),
        (
            "default (15 bits, takeover both ways)",
            Some(on),
            Some(p(false, false, None, None)),
        ),
        (
            "chat (server_no_context_takeover)",
            Some(on.server_no_context_takeover(true)),
            Some(p(true, false, None, None)),
        ),
        (
            "no takeover both ways",
            Some(on),
            Some(p(true, true, None, None)),
        ),
        (
            "10 bits, takeover both ways",
            Some(on.server_max_window_bits(10).client_max_window_bits(10)),
            Some(p(false, false, Some(10), Some(10))),
        ),
    ];
    println!("server-side heap per connection, {n} connections, after a 1 KiB echo");
    println!("{:<40} {:>10} {:>10}", "setting", "busy KiB", "idle KiB");
    for (name, policy, agreed) in cases {
        let (busy, idle) = measure(n, policy, agreed);
        println!("{name:<40} {:>10.1} {:>10.1}", busy / 1024.0, idle / 1024.0);
    }
    println!();
    println!("one 1 KiB chat message broadcast to {n} connections");
    for (name, shared) in [
        ("compressed once, shared", true),
        ("compressed per connection", false),
    ] {
        let (us, bytes) = broadcast(n, shared);
        println!("{name:<40} {us:>10.0} us {bytes:>8.0} B/conn");
    }
}
