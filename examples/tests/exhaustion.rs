//! Resource exhaustion at the accept loop, on every runtime, against a
//! `ws-server` process: with its descriptor limit lowered (`ulimit -n`)
//! it keeps serving the clients it has when `accept` fails, does not spin
//! (its CPU is measured from /proc while at the limit), logs once, and
//! accepts again as soon as descriptors free; with `--max-connections N`
//! the next client gets `503` with `Retry-After` before any upgrade, and
//! gets in once one leaves.

mod support;

use std::thread;
use std::time::{Duration, Instant};

use examples::Runtime;
use support::RawClient;
use support::spawned::{Attempt, ServerProcess, late_answer, try_connect};
use ws_core::Message;

/// The server's descriptor limit in the exhaustion test.
const FD_LIMIT: u32 = 64;
/// How long a connection may wait for its 101 before the server counts as
/// out of descriptors (it waits in the listen backlog).
const NO_ANSWER: Duration = Duration::from_secs(2);
/// The share of one core the server may use while at the limit: a loop
/// retrying `accept` without pausing would use a whole one.
const MAX_CPU_AT_LIMIT: f64 = 0.2;
/// The logged start of an accept-failure episode.
const EPISODE_LOG: &str = "accept failed";
/// The logged end of one.
const RECOVERY_LOG: &str = "accepting again";

/// Every client echoes a message of its own.
fn all_echo(clients: &mut [RawClient], round: &str) {
    for (i, c) in clients.iter_mut().enumerate() {
        let msg = Message::text(format!("{round} {i}"));
        c.send(&msg);
        assert_eq!(c.recv_data(), msg, "{round}: client {i}");
    }
}

/// Waits (bounded) until `check` holds.
fn wait_for(what: &str, limit: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(20));
    }
}

fn out_of_descriptors_keeps_serving_without_spinning_and_accepts_again(rt: Runtime) {
    let server = ServerProcess::start(rt, Some(FD_LIMIT), &["--mode", "echo"]);
    let addr = server.addr();
    let mut clients = Vec::new();
    let mut waiting = None;
    for _ in 0..FD_LIMIT * 2 {
        match try_connect(addr, NO_ANSWER) {
            Attempt::Upgraded(c) => clients.push(c),
            Attempt::NoAnswer(s) => {
                waiting = Some(s);
                break;
            }
            Attempt::Refused(head) => panic!("refused: {head:?}"),
            Attempt::Failed(e) => panic!("after {} clients: {e}", clients.len()),
        }
    }
    let mut waiting = waiting.expect("the server never ran out of descriptors");
    let fds = server.open_fds();
    wait_for("the episode's log line", Duration::from_secs(5), || {
        server.log_count(EPISODE_LOG) > 0
    });
    let cpu = server.cpu_share(Duration::from_secs(1));
    eprintln!(
        "{}: {} clients, {fds} descriptors open at the limit of {FD_LIMIT}, \
         CPU {:.1}% of a core while at the limit",
        rt.name(),
        clients.len(),
        cpu * 100.0
    );
    assert!(
        fds + 2 >= FD_LIMIT as usize,
        "{fds} descriptors: not at the limit"
    );
    assert!(
        cpu < MAX_CPU_AT_LIMIT,
        "{:.1}% of a core while accepts fail: spinning",
        cpu * 100.0
    );
    assert!(clients.len() > 20, "only {} clients", clients.len());
    all_echo(&mut clients, "at the limit");
    assert_eq!(server.log_count(EPISODE_LOG), 1, "logged once per episode");
    assert_eq!(server.log_count(RECOVERY_LOG), 0);

    // Free a few descriptors: the connection waiting in the backlog is
    // accepted, and so is a new one.
    for c in clients.drain(..4) {
        c.abort();
    }
    let answer = late_answer(&mut waiting, Duration::from_secs(5));
    assert!(
        answer.starts_with("HTTP/1.1 101"),
        "the waiting connection got {answer:?}"
    );
    let fresh = try_connect(addr, Duration::from_secs(5)).upgraded("after freeing descriptors");
    clients.push(fresh);
    all_echo(&mut clients, "after the limit");
    assert_eq!(server.log_count(EPISODE_LOG), 1);
    assert_eq!(server.log_count(RECOVERY_LOG), 1);
}

fn max_connections_refuses_the_next_with_503_until_one_leaves(rt: Runtime) {
    let server = ServerProcess::start(rt, None, &["--mode", "echo", "--max-connections", "3"]);
    let addr = server.addr();
    let mut clients: Vec<RawClient> = (0..3)
        .map(|i| try_connect(addr, Duration::from_secs(5)).upgraded(&format!("client {i}")))
        .collect();
    match try_connect(addr, Duration::from_secs(5)) {
        Attempt::Refused(head) => {
            assert!(head.starts_with("HTTP/1.1 503 "), "{head:?}");
            assert!(head.contains("\r\nRetry-After: 1\r\n"), "{head:?}");
        }
        Attempt::Upgraded(_) => panic!("a fourth client was upgraded"),
        Attempt::NoAnswer(_) => panic!("the fourth client got no answer"),
        Attempt::Failed(e) => panic!("the fourth client: {e}"),
    }
    all_echo(&mut clients, "at the limit");

    clients.remove(0).abort();
    let deadline = Instant::now() + Duration::from_secs(5);
    let next = loop {
        match try_connect(addr, Duration::from_secs(5)) {
            Attempt::Upgraded(c) => break c,
            // The server has not seen the leaver go yet.
            Attempt::Refused(head) if head.starts_with("HTTP/1.1 503 ") => {
                assert!(Instant::now() < deadline, "still refused after one left");
                thread::sleep(Duration::from_millis(50));
            }
            Attempt::Refused(head) => panic!("{head:?}"),
            Attempt::NoAnswer(_) => panic!("no answer after one left"),
            Attempt::Failed(e) => panic!("after one left: {e}"),
        }
    };
    clients.push(next);
    all_echo(&mut clients, "after one left");
}

macro_rules! suite {
    ($($module:ident => $rt:expr),* $(,)?) => {$(
        mod $module {
            use super::*;
            #[test] fn out_of_descriptors_keeps_serving_without_spinning_and_accepts_again() { super::out_of_descriptors_keeps_serving_without_spinning_and_accepts_again($rt) }
            #[test] fn max_connections_refuses_the_next_with_503_until_one_leaves() { super::max_connections_refuses_the_next_with_503_until_one_leaves($rt) }
        }
    )*};
}

suite! {
    on_tokio => Runtime::Tokio,
    on_async_std => Runtime::AsyncStd,
    on_smol => Runtime::Smol,
    on_blocking => Runtime::Blocking,
}
