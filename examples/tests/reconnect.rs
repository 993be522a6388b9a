//! The reconnecting client, the same scenarios on every runtime (tokio,
//! async-std, smol, blocking) over real loopback sockets: a server that is
//! stopped and restarted on the same port (the client carries on, the hook
//! runs once), one that refuses every upgrade with 401 (one attempt, no
//! retry), one that closes with a code the policy marks final (no
//! reconnect), one that never comes back (the client gives up, says so
//! once, then ends), a send after the server's close (it reconnects
//! first), and `ws-client --reconnect` across a restart.
//!
//! A scenario's client side is written once in the macro at the bottom
//! (with `.await` after each call on the async runtimes, without on the
//! blocking one); the server side and the assertions are plain functions.
//! Every wait is bounded: each client runs on its own thread and is waited
//! for at most [`LIMIT`].

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use examples::Runtime;
use support::{TestServer, free_addr};
use ws_core::handshake::Request;
use ws_core::rt::reconnect::Reconnect;
use ws_core::server::hub::FlowControl;
use ws_core::server::site::ServerMode;
use ws_core::server::{Handler, Refusal, Socket, Upgrade};
use ws_core::{CloseCode, Error, Message};

/// The longest any scenario may take.
const LIMIT: Duration = Duration::from_secs(30);

/// How long a stopped server stays away before it is started again.
const DOWNTIME: Duration = Duration::from_millis(300);

/// The tests' policy: quick retries, so the suite stays fast.
fn policy() -> Reconnect {
    Reconnect::new()
        .initial_delay(Duration::from_millis(50))
        .max_delay(Duration::from_millis(500))
}

/// Runs `f` on its own thread; [`finish`] waits for it, bounded.
fn spawn<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> mpsc::Receiver<thread::Result<T>> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(catch_unwind(AssertUnwindSafe(f)));
    });
    rx
}

/// The result of a [`spawn`]ed client, at most [`LIMIT`] later; its panic
/// is this test's panic.
fn finish<T>(what: &str, rx: mpsc::Receiver<thread::Result<T>>) -> T {
    match rx.recv_timeout(LIMIT) {
        Ok(Ok(v)) => v,
        Ok(Err(panic)) => resume_unwind(panic),
        Err(_) => panic!("{what}: no result within {LIMIT:?}"),
    }
}

/// Waits (bounded) for the client's signal; if it panicked first, its
/// panic is this test's panic.
fn signalled<T>(what: &str, signal: &mpsc::Receiver<()>, rx: &mpsc::Receiver<thread::Result<T>>) {
    let deadline = Instant::now() + LIMIT;
    while signal.recv_timeout(Duration::from_millis(20)).is_err() {
        if let Ok(Err(panic)) = rx.try_recv() {
            resume_unwind(panic);
        }
        assert!(
            Instant::now() < deadline,
            "{what}: no signal within {LIMIT:?}"
        );
    }
}

fn echo_at(rt: Runtime, addr: SocketAddr) -> TestServer {
    TestServer::start_handler_at(rt, addr, ServerMode::Echo, FlowControl::default())
}

fn is_close(msg: &Message, code: CloseCode) -> bool {
    matches!(msg, Message::Close(Some(f)) if f.code == code)
}

/// What the restart scenario's client reports: every message it received
/// (the data ones and the server's close), and its reconnect count.
type Restarted = (Vec<Message>, u32);

/// The hook's record of its calls (each reconnect count it was given).
type HookCalls = Arc<Mutex<Vec<u32>>>;

/// (a) The server is stopped and started again on the same port while the
/// client receives: the client sees the server's 1001, reconnects once,
/// the hook runs once with count 1 and its message is sent on the new
/// connection (the new echo server sends it back), and the next exchange
/// works.
fn survives_a_server_restart(
    rt: Runtime,
    client: fn(String, HookCalls, mpsc::Sender<()>) -> Restarted,
) {
    let addr = free_addr();
    let server = echo_at(rt, addr);
    let hook_calls = Arc::new(Mutex::new(Vec::new()));
    let (exchanged_tx, exchanged) = mpsc::channel();
    let (url, calls) = (format!("ws://{addr}/"), hook_calls.clone());
    let done = spawn(move || client(url, calls, exchanged_tx));
    signalled("the first exchange", &exchanged, &done);
    server.shutdown();
    drop(server);
    // Away for a while: the client's first attempts are refused and back off.
    thread::sleep(DOWNTIME);
    let server = echo_at(rt, addr);
    let (seen, reconnects) = finish("the client across the restart", done);
    assert_eq!(seen.len(), 4, "{seen:?}");
    assert_eq!(seen[0], Message::text("before"));
    assert!(is_close(&seen[1], CloseCode::GOING_AWAY), "{seen:?}");
    assert_eq!(
        seen[2],
        Message::text("resubscribe 1"),
        "the hook's message, sent on the new connection"
    );
    assert_eq!(seen[3], Message::text("after"));
    assert_eq!(*hook_calls.lock().unwrap(), [1], "the hook ran once");
    assert_eq!(reconnects, 1);
    server.shutdown();
}

/// (f) A send after the server's close (the client has not received
/// since): the client reconnects first, the hook's message goes out ahead
/// of the one sent.
fn a_send_after_the_close_reconnects_first(
    rt: Runtime,
    client: fn(String, HookCalls, mpsc::Sender<()>, mpsc::Receiver<()>) -> Restarted,
) {
    let addr = free_addr();
    let server = echo_at(rt, addr);
    let hook_calls = Arc::new(Mutex::new(Vec::new()));
    let (exchanged_tx, exchanged) = mpsc::channel();
    let (restarted, restarted_rx) = mpsc::channel();
    let (url, calls) = (format!("ws://{addr}/"), hook_calls.clone());
    let done = spawn(move || client(url, calls, exchanged_tx, restarted_rx));
    signalled("the first exchange", &exchanged, &done);
    server.shutdown();
    drop(server);
    let server = echo_at(rt, addr);
    restarted.send(()).unwrap();
    let (seen, reconnects) = finish("the client sending after the close", done);
    assert_eq!(seen.len(), 4, "{seen:?}");
    assert_eq!(seen[0], Message::text("before"));
    assert!(is_close(&seen[1], CloseCode::GOING_AWAY), "{seen:?}");
    assert_eq!(seen[2], Message::text("resubscribe 1"), "the hook's first");
    assert_eq!(seen[3], Message::text("after"));
    assert_eq!(*hook_calls.lock().unwrap(), [1]);
    assert_eq!(reconnects, 1);
    server.shutdown();
}

/// Refuses every upgrade with 401, counting the attempts.
#[derive(Clone)]
struct Unauthorized(Arc<AtomicUsize>);

impl Handler for Unauthorized {
    type State = ();

    fn on_upgrade(&self, _req: &Request, _peer: SocketAddr) -> Result<Upgrade<()>, Refusal> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Err(Refusal::unauthorized())
    }

    fn on_message(&self, _ws: &mut Socket<'_>, _state: &mut (), _msg: Message) {}
}

/// What the refusal scenario's client reports: `connect`'s error, whether
/// `recv` then ended, and its reconnect count.
type Refused = (Error, bool, u32);

/// (b) A server that answers 401: the reconnecting client's `connect` fails
/// with the handshake error after exactly one attempt.
fn refused_for_good(rt: Runtime, client: fn(String) -> Refused) {
    let attempts = Arc::new(AtomicUsize::new(0));
    let server =
        TestServer::start_handler(rt, Unauthorized(attempts.clone()), FlowControl::default());
    let url = server.url("/");
    let (err, ended, reconnects) = finish("the refused client", spawn(move || client(url)));
    assert!(err.is_handshake(), "{err}");
    assert!(err.to_string().contains("401"), "{err}");
    assert_eq!(attempts.load(Ordering::SeqCst), 1, "no retry after a 401");
    assert!(ended, "recv ends: never connected");
    assert_eq!(reconnects, 0);
    server.shutdown();
}

/// The code [`Banned`] closes with.
const BANNED: CloseCode = CloseCode(4001);

/// Accepts every upgrade (counting them) and closes each connection with
/// 4001 at its first message.
#[derive(Clone)]
struct Banned(Arc<AtomicUsize>);

impl Handler for Banned {
    type State = ();

    fn on_upgrade(&self, _req: &Request, _peer: SocketAddr) -> Result<Upgrade<()>, Refusal> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Ok(Upgrade::new(()))
    }

    fn on_message(&self, ws: &mut Socket<'_>, _state: &mut (), _msg: Message) {
        let _ = ws.close(BANNED, "banned");
    }
}

/// What the final-close scenario's client reports: the message `recv`
/// gave, whether the next `recv` ended, the error of a send after that,
/// and the reconnect count.
type Banished = (Message, bool, Option<Error>, u32);

/// (c) A close with a code the policy marks final: the client sees the
/// close, `recv` then ends, a send fails without reconnecting, and the
/// server saw one upgrade only.
fn final_close_code_ends_it(rt: Runtime, client: fn(String) -> Banished) {
    let upgrades = Arc::new(AtomicUsize::new(0));
    let server = TestServer::start_handler(rt, Banned(upgrades.clone()), FlowControl::default());
    let url = server.url("/");
    let (close, ended, send_err, reconnects) =
        finish("the banned client", spawn(move || client(url)));
    assert!(is_close(&close, BANNED), "{close:?}");
    assert!(ended, "recv ends after a final close");
    assert!(
        send_err.as_ref().is_some_and(Error::is_closed),
        "{send_err:?}"
    );
    assert_eq!(reconnects, 0);
    assert_eq!(upgrades.load(Ordering::SeqCst), 1, "no reconnect");
    server.shutdown();
}

/// What the give-up scenario's client reports: what `recv` gave after the
/// first exchange, until it ended, and the reconnect count.
type GaveUp = (Vec<Result<Message, Error>>, u32);

/// (d) The server goes away for good and the policy allows few attempts:
/// `recv` gives the server's close, then the last attempt's error once,
/// then `None`.
fn gives_up_when_the_attempts_run_out(rt: Runtime, client: fn(String, mpsc::Sender<()>) -> GaveUp) {
    let server = TestServer::start(rt, ServerMode::Echo, 1024);
    let url = server.url("/");
    let (exchanged_tx, exchanged) = mpsc::channel();
    let done = spawn(move || client(url, exchanged_tx));
    signalled("the first exchange", &exchanged, &done);
    server.shutdown();
    let (got, reconnects) = finish("the client giving up", done);
    assert_eq!(got.len(), 2, "{got:?}");
    assert!(
        got[0]
            .as_ref()
            .is_ok_and(|m| is_close(m, CloseCode::GOING_AWAY)),
        "{got:?}"
    );
    assert!(
        got[1].as_ref().is_err_and(|e| !e.is_handshake()),
        "the refused connection's error: {got:?}"
    );
    assert_eq!(reconnects, 0);
}

/// Forwards each line of `pipe` to the returned channel.
fn lines_of(pipe: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Waits (bounded) for a line equal to `want`, skipping others.
fn wait_for_line(lines: &mpsc::Receiver<String>, want: &str, what: &str) {
    let deadline = Instant::now() + LIMIT;
    let mut skipped = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) if line == want => return,
            Ok(line) => skipped.push(line),
            Err(_) => panic!("{what}: no {want:?} line (got {skipped:?})"),
        }
    }
}

/// (e) `ws-client --reconnect` through pipes, across a server restart: it
/// says `[reconnected]` on stderr, the next line is echoed, and the end of
/// input still ends it cleanly.
fn interactive_client_reconnects(rt: Runtime) {
    let addr = free_addr();
    let server = echo_at(rt, addr);
    let mut child = Command::new(env!("CARGO_BIN_EXE_ws-client"))
        .args([
            &format!("ws://{addr}/"),
            "--runtime",
            rt.name(),
            "--reconnect",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let stdout = lines_of(child.stdout.take().unwrap());
    let stderr = lines_of(child.stderr.take().unwrap());
    let run = catch_unwind(AssertUnwindSafe(|| {
        writeln!(stdin, "one").unwrap();
        stdin.flush().unwrap();
        wait_for_line(&stdout, "one", "the first echo");
        server.shutdown();
        thread::sleep(DOWNTIME);
        let server = echo_at(rt, addr);
        wait_for_line(&stderr, "[reconnected]", "the reconnection");
        writeln!(stdin, "two").unwrap();
        stdin.flush().unwrap();
        wait_for_line(&stdout, "two", "the echo after reconnecting");
        drop(stdin); // end of input: the client closes with 1000 and exits
        let deadline = Instant::now() + LIMIT;
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            assert!(Instant::now() < deadline, "ws-client did not exit");
            thread::sleep(Duration::from_millis(20));
        };
        assert!(status.success(), "{status}");
        server.shutdown();
    }));
    if let Err(panic) = run {
        let _ = child.kill();
        let _ = child.wait();
        resume_unwind(panic);
    }
}

/// Each scenario's client side, for one runtime's `Client`.
macro_rules! reconnect_suite {
    (
        $module:ident,
        rt = $rt:expr,
        client = $($client:ident)::+,
        block_on = $block_on:expr,
        [$($aw:tt)*]
    ) => {
        mod $module {
            use super::*;
            use $($client)::+ as Client;

            /// The next message other than a ping or a pong.
            macro_rules! next_message {
                ($c:expr) => {
                    loop {
                        let msg = $c.recv() $($aw)* .expect("recv ended").expect("recv failed");
                        if !matches!(msg, Message::Ping(_) | Message::Pong(_)) {
                            break msg;
                        }
                    }
                };
            }

            fn restart_client(
                url: String,
                hook_calls: HookCalls,
                exchanged: mpsc::Sender<()>,
            ) -> Restarted {
                #[allow(clippy::redundant_closure_call)]
                $block_on(async move {
                    let mut c = Client::new(&url)
                        .unwrap()
                        .reconnect(policy())
                        .on_reconnect(move |n| {
                            hook_calls.lock().unwrap().push(n);
                            vec![Message::text(format!("resubscribe {n}"))]
                        });
                    c.connect() $($aw)* .unwrap();
                    c.send_message("before") $($aw)* .unwrap();
                    let mut seen = vec![next_message!(c)];
                    exchanged.send(()).unwrap();
                    // The server goes away (its 1001 arrives) and comes back:
                    // receiving carries on, and the hook's echo is next.
                    seen.push(next_message!(c));
                    seen.push(next_message!(c));
                    c.send_message("after") $($aw)* .unwrap();
                    seen.push(next_message!(c));
                    c.close() $($aw)* .unwrap();
                    (seen, c.reconnects())
                })
            }

            fn send_first_client(
                url: String,
                hook_calls: HookCalls,
                exchanged: mpsc::Sender<()>,
                restarted: mpsc::Receiver<()>,
            ) -> Restarted {
                #[allow(clippy::redundant_closure_call)]
                $block_on(async move {
                    let mut c = Client::new(&url)
                        .unwrap()
                        .reconnect(policy())
                        .on_reconnect(move |n| {
                            hook_calls.lock().unwrap().push(n);
                            vec![Message::text(format!("resubscribe {n}"))]
                        });
                    c.connect() $($aw)* .unwrap();
                    c.send_message("before") $($aw)* .unwrap();
                    let mut seen = vec![next_message!(c)];
                    exchanged.send(()).unwrap();
                    // The server's 1001; then no receiving until it is back.
                    seen.push(next_message!(c));
                    restarted.recv_timeout(LIMIT).expect("the server never came back");
                    c.send_message("after") $($aw)* .unwrap();
                    seen.push(next_message!(c));
                    seen.push(next_message!(c));
                    c.close() $($aw)* .unwrap();
                    (seen, c.reconnects())
                })
            }

            fn refused_client(url: String) -> Refused {
                #[allow(clippy::redundant_closure_call)]
                $block_on(async move {
                    let mut c = Client::new(&url)
                        .unwrap()
                        .reconnect(policy())
                        .on_reconnect(|_| Vec::new());
                    let err = c.connect() $($aw)* .unwrap_err();
                    let ended = c.recv() $($aw)* .is_none();
                    (err, ended, c.reconnects())
                })
            }

            fn banned_client(url: String) -> Banished {
                #[allow(clippy::redundant_closure_call)]
                $block_on(async move {
                    let mut c = Client::new(&url)
                        .unwrap()
                        .reconnect(policy().final_close_code(BANNED));
                    c.connect() $($aw)* .unwrap();
                    c.send_message("hello") $($aw)* .unwrap();
                    let close = next_message!(c);
                    let ended = c.recv() $($aw)* .is_none();
                    let send_err = c.send_message("again") $($aw)* .err();
                    (close, ended, send_err, c.reconnects())
                })
            }

            fn give_up_client(url: String, exchanged: mpsc::Sender<()>) -> GaveUp {
                #[allow(clippy::redundant_closure_call)]
                $block_on(async move {
                    let mut c = Client::new(&url)
                        .unwrap()
                        .reconnect(policy().max_attempts(2));
                    c.connect() $($aw)* .unwrap();
                    c.send_message("x") $($aw)* .unwrap();
                    assert_eq!(next_message!(c), Message::text("x"));
                    exchanged.send(()).unwrap();
                    let mut got = Vec::new();
                    while let Some(msg) = c.recv() $($aw)* {
                        got.push(msg);
                        assert!(got.len() <= 10, "recv never ends: {got:?}");
                    }
                    (got, c.reconnects())
                })
            }

            #[test]
            fn survives_a_server_restart() {
                super::survives_a_server_restart($rt, restart_client)
            }

            #[test]
            fn a_send_after_the_close_reconnects_first() {
                super::a_send_after_the_close_reconnects_first($rt, send_first_client)
            }

            #[test]
            fn a_401_at_the_upgrade_is_final() {
                super::refused_for_good($rt, refused_client)
            }

            #[test]
            fn a_close_code_marked_final_ends_it() {
                super::final_close_code_ends_it($rt, banned_client)
            }

            #[test]
            fn gives_up_when_the_attempts_run_out() {
                super::gives_up_when_the_attempts_run_out($rt, give_up_client)
            }

            #[test]
            fn interactive_client_reconnects() {
                super::interactive_client_reconnects($rt)
            }
        }
    };
}

reconnect_suite!(
    on_tokio,
    rt = Runtime::Tokio,
    client = ws_tokio::Client,
    block_on = |f| tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f),
    [.await]
);
reconnect_suite!(
    on_async_std,
    rt = Runtime::AsyncStd,
    client = ws_async_std::Client,
    block_on = async_std::task::block_on,
    [.await]
);
reconnect_suite!(
    on_smol,
    rt = Runtime::Smol,
    client = ws_async_std::smol::Client,
    block_on = smol::block_on,
    [.await]
);
reconnect_suite!(
    on_blocking,
    rt = Runtime::Blocking,
    client = ws_blocking::Client,
    // Any executor: the blocking calls inside complete before it polls again.
    block_on = smol::block_on,
    []
);
