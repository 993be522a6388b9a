//! Faults on the wire, on every runtime, against a `ws-server` process,
//! through the fault-injecting proxy of `support::fault_proxy`: a peer that
//! goes silent for good is found by keepalive and let go within the ping
//! interval plus the pong timeout; a chat client behind a throttled link is
//! dropped as slow by the flow control while the others lose nothing; a
//! reset in the middle of a frame and a half-close end only their own
//! connection (the descriptor is freed, the process does not panic, other
//! clients are served).

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use examples::Runtime;
use support::fault_proxy::FaultProxy;
use support::spawned::{ServerProcess, try_connect};
use ws_core::Message;

/// `--keepalive-ms`: a ping after this much silence.
const PING_INTERVAL: Duration = Duration::from_millis(500);
/// `--keepalive-timeout-ms`: how long the ping waits for its pong.
const PONG_TIMEOUT: Duration = Duration::from_millis(500);
/// Slack for a loaded two-core machine and the proxy's polling.
const MARGIN: Duration = Duration::from_millis(1500);
/// The server's close timeout (the default): the longest a connection
/// whose peer ended its side may linger.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// Waits (bounded) until `check` holds; how long it took.
fn wait_for(what: &str, limit: Duration, mut check: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !check() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(10));
    }
    start.elapsed()
}

/// A fresh client straight to the server still gets its echo, and the
/// server is alive and has not panicked.
fn still_serving(server: &mut ServerProcess, what: &str) {
    let mut c = try_connect(server.addr(), Duration::from_secs(5)).upgraded(what);
    let msg = Message::text(format!("still there after {what}"));
    c.send(&msg);
    assert_eq!(c.recv_data(), msg, "{what}");
    assert!(server.is_running(), "{what}: the server exited");
    assert_eq!(server.log_count("panicked"), 0, "{what}: a panic");
}

fn a_stalled_peer_is_dropped_within_ping_interval_plus_pong_timeout(rt: Runtime) {
    let interval = PING_INTERVAL.as_millis().to_string();
    let timeout = PONG_TIMEOUT.as_millis().to_string();
    let mut server = ServerProcess::start(
        rt,
        None,
        &[
            "--mode",
            "echo",
            "--keepalive-ms",
            &interval,
            "--keepalive-timeout-ms",
            &timeout,
        ],
    );
    let baseline = server.open_fds();
    let proxy = FaultProxy::start(server.addr());
    let mut client =
        try_connect(proxy.addr(), Duration::from_secs(5)).upgraded("through the proxy");
    let msg = Message::text("before the stall");
    client.send(&msg);
    assert_eq!(client.recv_data(), msg);
    // The last bytes from the client arrived just now: silence from here.
    let stalled = Instant::now();
    proxy.stall();
    let limit = PING_INTERVAL + PONG_TIMEOUT + MARGIN;
    wait_for("the server to let the stalled peer go", limit, || {
        !proxy.upstream_ended().is_empty()
    });
    let took = proxy.upstream_ended()[0] - stalled;
    eprintln!(
        "{}: stalled peer let go after {took:?} (ping {PING_INTERVAL:?} + pong {PONG_TIMEOUT:?})",
        rt.name()
    );
    assert!(
        took >= PING_INTERVAL + PONG_TIMEOUT - Duration::from_millis(50),
        "let go after {took:?}: before the pong timeout"
    );
    wait_for("its descriptor to be closed", MARGIN, || {
        server.open_fds() <= baseline
    });
    still_serving(&mut server, "a stalled peer");
}

fn a_reset_mid_frame_ends_only_that_connection(rt: Runtime) {
    let mut server = ServerProcess::start(rt, None, &["--mode", "echo"]);
    let baseline = server.open_fds();
    let proxy = FaultProxy::start(server.addr());
    let mut client =
        try_connect(proxy.addr(), Duration::from_secs(5)).upgraded("through the proxy");
    // Half of a 64 KiB frame reaches the server, then the link is reset.
    client
        .conn
        .send(&Message::binary(vec![7u8; 64 * 1024]))
        .unwrap();
    let wire = client.conn.pending_transmit().to_vec();
    std::io::Write::write_all(&mut client.stream, &wire[..wire.len() / 2]).unwrap();
    wait_for(
        "the server to hold the link",
        Duration::from_secs(5),
        || server.open_fds() > baseline,
    );
    thread::sleep(Duration::from_millis(100));
    proxy.reset();
    let took = wait_for("its descriptor to be closed", MARGIN, || {
        server.open_fds() <= baseline
    });
    eprintln!("{}: reset mid-frame freed after {took:?}", rt.name());
    still_serving(&mut server, "a reset mid-frame");
}

fn a_half_close_ends_only_that_connection(rt: Runtime) {
    let mut server = ServerProcess::start(rt, None, &["--mode", "echo"]);
    let baseline = server.open_fds();
    let proxy = FaultProxy::start(server.addr());
    let mut client =
        try_connect(proxy.addr(), Duration::from_secs(5)).upgraded("through the proxy");
    let msg = Message::text("before the half-close");
    client.send(&msg);
    assert_eq!(client.recv_data(), msg);
    proxy.half_close_upstream();
    let took = wait_for("the server to end its side", CLOSE_TIMEOUT + MARGIN, || {
        !proxy.upstream_ended().is_empty()
    });
    wait_for("its descriptor to be closed", MARGIN, || {
        server.open_fds() <= baseline
    });
    eprintln!("{}: half-closed peer let go after {took:?}", rt.name());
    still_serving(&mut server, "a half-close");
}

/// Chat messages the sender sends in the throttled scenario, and their size:
/// 16 MiB in all, more than the loopback socket buffers between the server
/// and the throttled proxy hold.
const CHAT_MESSAGES: u32 = 2048;
const CHAT_SIZE: usize = 8 * 1024;
/// `--slow-client-timeout-ms` in the throttled scenario.
const SLOW_CLIENT_TIMEOUT: Duration = Duration::from_secs(1);
/// Bytes per second the throttled client's link carries from the server.
const THROTTLE: u64 = 16 * 1024;

/// Reads `n` chat messages and checks they are the sender's, in order.
fn read_all(reader: &mut support::ClientReader, n: u32, who: &str) {
    let mut next = 0u32;
    while next < n {
        match reader.recv() {
            Ok(Message::Binary(b)) => {
                let seq = u32::from_le_bytes(b[..4].try_into().unwrap());
                assert_eq!(seq, next, "{who}: out of order or lost");
                assert_eq!(b.len(), CHAT_SIZE, "{who}");
                next += 1;
            }
            Ok(m) if !m.is_data() && !matches!(m, Message::Close(_)) => {}
            Ok(m) => panic!("{who}: after {next} messages: {m:?}"),
            Err(e) => panic!("{who}: after {next} messages: {e}"),
        }
    }
}

fn a_throttled_chat_client_is_dropped_as_slow_while_the_others_lose_nothing(rt: Runtime) {
    let slow_ms = SLOW_CLIENT_TIMEOUT.as_millis().to_string();
    let mut server = ServerProcess::start(
        rt,
        None,
        &[
            "--mode",
            "chat",
            "--high-water-messages",
            "64",
            "--slow-client-timeout-ms",
            &slow_ms,
        ],
    );
    let baseline = server.open_fds();
    let proxy = FaultProxy::start(server.addr());
    // The throttled client reads all it gets; only its link is slow.
    let (_, mut throttled) = try_connect(proxy.addr(), Duration::from_secs(5))
        .upgraded("the throttled client")
        .split(Duration::from_millis(100));
    proxy.throttle(THROTTLE);
    let stop = Arc::new(AtomicBool::new(false));
    let stop_reading = stop.clone();
    let throttled_reading = thread::spawn(move || {
        let mut got = 0u32;
        while !stop_reading.load(Ordering::SeqCst) {
            match throttled.recv() {
                Ok(Message::Binary(_)) => got += 1,
                Ok(_) => {}
                Err(ws_core::Error::Io(e))
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(_) => break,
            }
        }
        got
    });
    let io_timeout = Duration::from_secs(30);
    let (_, mut listener) = try_connect(server.addr(), Duration::from_secs(5))
        .upgraded("the listener")
        .split(io_timeout);
    let (mut writer, mut sender_reader) = try_connect(server.addr(), Duration::from_secs(5))
        .upgraded("the sender")
        .split(io_timeout);
    let started = Instant::now();
    // The readers come back from their threads: both clients stay
    // connected while the throttled one's descriptor is watched.
    let listening = thread::spawn(move || {
        read_all(&mut listener, CHAT_MESSAGES, "listener");
        listener
    });
    let echoing = thread::spawn(move || {
        read_all(&mut sender_reader, CHAT_MESSAGES, "sender");
        sender_reader
    });
    for seq in 0..CHAT_MESSAGES {
        let mut payload = vec![0u8; CHAT_SIZE];
        payload[..4].copy_from_slice(&seq.to_le_bytes());
        writer.queue(&Message::binary(payload)).unwrap();
        if writer.buffered() >= 64 * 1024 {
            writer.flush().expect("the sender's writes stalled");
        }
    }
    writer.flush().expect("the sender's writes stalled");
    let _listener = listening.join().expect("the listener lost messages");
    let _sender = echoing.join().expect("the sender lost messages");
    let delivered = started.elapsed();
    // The throttled client's descriptor goes once it is dropped: its close
    // frame cannot pass the throttle, so the close timeout ends it (on the
    // blocking server, a write blocked for up to the slow-client plus the
    // close timeout comes first).
    let limit = SLOW_CLIENT_TIMEOUT + CLOSE_TIMEOUT * 2 + MARGIN * 2;
    let dropped = wait_for("the throttled client to be dropped", limit, || {
        server.open_fds() <= baseline + 2
    });
    eprintln!(
        "{}: {CHAT_MESSAGES} x {CHAT_SIZE} B delivered to the others in {delivered:?}; \
         throttled client ({THROTTLE} B/s) gone {dropped:?} later",
        rt.name()
    );
    stop.store(true, Ordering::SeqCst);
    let got = throttled_reading.join().unwrap();
    assert!(
        got < CHAT_MESSAGES,
        "the throttled client got all {got} messages: it was not slow"
    );
    still_serving(&mut server, "a throttled client");
}

macro_rules! suite {
    ($($module:ident => $rt:expr),* $(,)?) => {$(
        mod $module {
            use super::*;
            #[test] fn a_stalled_peer_is_dropped_within_ping_interval_plus_pong_timeout() { super::a_stalled_peer_is_dropped_within_ping_interval_plus_pong_timeout($rt) }
            #[test] fn a_throttled_chat_client_is_dropped_as_slow_while_the_others_lose_nothing() { super::a_throttled_chat_client_is_dropped_as_slow_while_the_others_lose_nothing($rt) }
            #[test] fn a_reset_mid_frame_ends_only_that_connection() { super::a_reset_mid_frame_ends_only_that_connection($rt) }
            #[test] fn a_half_close_ends_only_that_connection() { super::a_half_close_ends_only_that_connection($rt) }
        }
    )*};
}

suite! {
    on_tokio => Runtime::Tokio,
    on_async_std => Runtime::AsyncStd,
    on_smol => Runtime::Smol,
    on_blocking => Runtime::Blocking,
}
