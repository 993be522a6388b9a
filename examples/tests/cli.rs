//! `ws-client` as a websocat-style tool: each flag (`-H`, `--protocol`,
//! `--binary`, `-1`, `--ping-interval`, `--show-control`, `--timeout`,
//! `--binary-format`), the exit statuses, and the interactive mode's
//! stderr reports, on every client runtime, against the real `ws-server`
//! binary or, where it cannot produce the case (a binary reply, a ping,
//! a chosen subprotocol, a 4000 close, silence), a scripted server.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use examples::Runtime;
use support::{TestServer, free_addr};
use ws_core::handshake::Request;
use ws_core::server::hub::FlowControl;
use ws_core::server::{Handler, Refusal, Socket, Upgrade};
use ws_core::{Bytes, CloseCode, Message};

/// What a `ws-client` run left behind.
struct Run {
    status: ExitStatus,
    stdout: Vec<u8>,
    stderr: String,
}

impl Run {
    fn stdout(&self) -> String {
        String::from_utf8(self.stdout.clone()).unwrap()
    }

    fn stdout_lines(&self) -> Vec<String> {
        self.stdout().lines().map(str::to_owned).collect()
    }

    fn stderr_lines(&self) -> Vec<&str> {
        self.stderr.lines().collect()
    }
}

impl std::fmt::Debug for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}\nstdout: {:?}\nstderr: {}",
            self.status,
            String::from_utf8_lossy(&self.stdout),
            self.stderr
        )
    }
}

fn reader(mut from: impl Read + Send + 'static) -> thread::JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut out = Vec::new();
        let _ = from.read_to_end(&mut out);
        out
    })
}

/// Runs `ws-client` on `rt` with `args`, writes `input`, keeps stdin open
/// for `hold` (or until the client exits), then closes it; waits up to
/// 20 s for the exit (killing the client after that, which fails the
/// test).
fn ws_client(rt: Runtime, args: &[&str], input: &[u8], hold: Duration) -> Run {
    let mut child: Child = Command::new(env!("CARGO_BIN_EXE_ws-client"))
        .args(args)
        .args(["--runtime", rt.name()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = reader(child.stdout.take().unwrap());
    let err = reader(child.stderr.take().unwrap());
    let mut stdin = child.stdin.take().unwrap();
    let _ = stdin.write_all(input);
    let _ = stdin.flush();
    let hold_until = Instant::now() + hold;
    while Instant::now() < hold_until && child.try_wait().unwrap().is_none() {
        thread::sleep(Duration::from_millis(10));
    }
    drop(stdin);
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("ws-client {args:?} on {} did not exit", rt.name());
        }
        thread::sleep(Duration::from_millis(10));
    };
    Run {
        status,
        stdout: out.join().unwrap(),
        stderr: String::from_utf8_lossy(&err.join().unwrap()).into_owned(),
    }
}

/// The real `ws-server` binary in echo mode on a free port; killed on drop.
struct WsServer {
    child: Child,
    addr: SocketAddr,
}

impl WsServer {
    fn start() -> WsServer {
        let addr = free_addr();
        let child = Command::new(env!("CARGO_BIN_EXE_ws-server"))
            .args(["--mode", "echo", "--addr", &addr.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(addr).is_err() {
            assert!(Instant::now() < deadline, "ws-server did not listen");
            thread::sleep(Duration::from_millis(20));
        }
        WsServer { child, addr }
    }

    fn url(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }
}

impl Drop for WsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A server that does what each text message says: `binary` (reply
/// 00 ff 41 as binary), `ping` (send a ping `hb`), `twice` (reply `one`
/// then `two`), `silence` (no reply), `close N` (close with code N,
/// reason `bye`); anything else is echoed. It records the `X-Token`
/// header of each upgrade and picks the subprotocol `chat.v2` when
/// offered.
#[derive(Clone, Default)]
struct Scripted {
    tokens: Arc<Mutex<Vec<Option<String>>>>,
}

impl Handler for Scripted {
    type State = ();

    fn on_upgrade(&self, req: &Request, _: SocketAddr) -> Result<Upgrade<()>, Refusal> {
        let token = req.header("x-token").map(str::to_owned);
        self.tokens.lock().unwrap().push(token);
        let upgrade = Upgrade::new(());
        Ok(if req.subprotocols().any(|p| p == "chat.v2") {
            upgrade.subprotocol("chat.v2")
        } else {
            upgrade
        })
    }

    fn on_message(&self, ws: &mut Socket<'_>, _: &mut (), msg: Message) {
        let text = match &msg {
            Message::Text(t) => t.to_string(),
            _ => String::new(),
        };
        let _ = match text.as_str() {
            "binary" => ws.send(&Message::binary(&b"\x00\xffA"[..])),
            "ping" => ws.send(&Message::Ping(Bytes::from_static(b"hb"))),
            "twice" => ws
                .send(&Message::text("one"))
                .and_then(|()| ws.send(&Message::text("two"))),
            "silence" => Ok(()),
            t if t.starts_with("close ") => {
                let code: u16 = t["close ".len()..].parse().unwrap();
                ws.close(CloseCode(code), "bye")
            }
            _ => ws.send(&msg),
        };
    }
}

fn scripted() -> (TestServer, Scripted) {
    let handler = Scripted::default();
    let server = TestServer::start_handler(Runtime::Tokio, handler.clone(), FlowControl::default());
    (server, handler)
}

const NO_HOLD: Duration = Duration::ZERO;

#[test]
fn interactive_mode_reports_connect_and_end_on_stderr_and_prints_only_messages() {
    let server = WsServer::start();
    let url = server.url();
    for rt in Runtime::ALL {
        let run = ws_client(rt, &[&url], b"hello\nsecond line\n", NO_HOLD);
        assert!(run.status.success(), "{}: {run:?}", rt.name());
        // Through a pipe: exactly the echoes, no `< ` marks, nothing else.
        assert_eq!(run.stdout_lines(), ["hello", "second line"], "{run:?}");
        assert_eq!(
            run.stderr_lines(),
            [format!("[connected to {url}]").as_str(), "[closed: 1000]"],
            "{}",
            rt.name()
        );
    }
}

/// On a terminal (a pty from util-linux's `script`, stdin still a file)
/// received lines are marked `< `, apart from what is typed.
#[test]
fn on_a_terminal_received_lines_are_marked() {
    let server = WsServer::start();
    let url = server.url();
    let input = std::env::temp_dir().join(format!("ws-client-tty-{}.txt", std::process::id()));
    std::fs::write(&input, "hello\n").unwrap();
    for rt in Runtime::ALL {
        let command = format!(
            "'{}' '{url}' --runtime {} < '{}'",
            env!("CARGO_BIN_EXE_ws-client"),
            rt.name(),
            input.display()
        );
        let out = Command::new("script")
            .args(["-qec", &command, "/dev/null"])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{}: {out:?}", rt.name());
        let lines: Vec<&str> = text.lines().map(|l| l.trim_end_matches('\r')).collect();
        assert!(lines.contains(&"< hello"), "{}: {text:?}", rt.name());
        assert!(!lines.contains(&"hello"), "{}: {text:?}", rt.name());
    }
    let _ = std::fs::remove_file(&input);
}

#[test]
fn headers_reach_the_server_and_the_chosen_subprotocol_is_printed() {
    let (server, handler) = scripted();
    let url = server.url("/ws");
    for rt in Runtime::ALL {
        let args = [
            url.as_str(),
            "-H",
            "X-Token: t0k3n",
            "--header",
            "X-Other:2",
            "--protocol",
            "other",
            "--protocol",
            "chat.v2",
        ];
        let run = ws_client(rt, &args, b"hi\n", NO_HOLD);
        assert!(run.status.success(), "{}: {run:?}", rt.name());
        assert_eq!(
            run.stderr_lines()[0],
            format!("[connected to {url}, subprotocol chat.v2]"),
            "{}",
            rt.name()
        );
        let token = handler.tokens.lock().unwrap().pop().unwrap();
        assert_eq!(token.as_deref(), Some("t0k3n"), "{}", rt.name());
    }
    // A header the handshake sets itself is refused before connecting.
    let run = ws_client(Runtime::Tokio, &[&url, "-H", "Upgrade: no"], b"", NO_HOLD);
    assert_eq!(run.status.code(), Some(examples::exit::LOCAL), "{run:?}");
}

#[test]
fn binary_sends_stdin_bytes_verbatim_and_binary_replies_print_in_the_chosen_format() {
    let server = WsServer::start();
    let url = server.url();
    for rt in Runtime::ALL {
        // Echoed back as binary: two messages, the newline kept.
        let run = ws_client(rt, &[&url, "--binary"], b"ab\xff\n\x00", NO_HOLD);
        assert!(run.status.success(), "{}: {run:?}", rt.name());
        assert_eq!(run.stdout_lines(), ["6162ff0a", "00"], "{}", rt.name());
        let args = [url.as_str(), "--binary", "--binary-format", "base64"];
        let run = ws_client(rt, &args, b"ab\xff\n\x00", NO_HOLD);
        assert_eq!(run.stdout_lines(), ["YWL/Cg==", "AA=="], "{}", rt.name());
        // Text input that is not UTF-8 is refused, not mangled.
        let run = ws_client(rt, &[&url], b"ab\xff\n", NO_HOLD);
        assert_eq!(
            run.status.code(),
            Some(examples::exit::LOCAL),
            "{}: {run:?}",
            rt.name()
        );
    }
    // A binary reply the server chose (not an echo of ours).
    let (scripted, _) = scripted();
    let run = ws_client(Runtime::Tokio, &[&scripted.url("/")], b"binary\n", NO_HOLD);
    assert_eq!(run.stdout_lines(), ["00ff41"], "{run:?}");
}

#[test]
fn one_message_sends_all_of_stdin_prints_the_first_reply_and_closes() {
    let server = WsServer::start();
    let url = server.url();
    let (scripted, _) = scripted();
    let twice = scripted.url("/");
    for rt in Runtime::ALL {
        // All of stdin is one message (the final newline dropped).
        let run = ws_client(rt, &[&url, "-1"], b"{\n  \"a\": 1\n}\n", NO_HOLD);
        assert!(run.status.success(), "{}: {run:?}", rt.name());
        assert_eq!(run.stdout(), "{\n  \"a\": 1\n}\n", "{}", rt.name());
        assert_eq!(run.stderr_lines().last(), Some(&"[closed: 1000]"));
        // Only the first reply: `two` is not printed.
        let run = ws_client(rt, &[&twice, "--one-message"], b"twice", NO_HOLD);
        assert!(run.status.success(), "{}: {run:?}", rt.name());
        assert_eq!(run.stdout_lines(), ["one"], "{}", rt.name());
        // A binary file as one message, verbatim.
        let run = ws_client(rt, &[&url, "-1", "--binary"], b"\x01\n\x02\n", NO_HOLD);
        assert_eq!(run.stdout_lines(), ["010a020a"], "{}", rt.name());
    }
}

#[test]
fn ping_interval_pings_and_show_control_prints_pings_pongs_and_the_close() {
    let (server, _) = scripted();
    let url = server.url("/");
    for rt in Runtime::ALL {
        let args = [url.as_str(), "--ping-interval", "0.2", "--show-control"];
        // Five intervals, so a slow start still leaves two pongs.
        let run = ws_client(rt, &args, b"ping\n", Duration::from_millis(1500));
        assert!(run.status.success(), "{}: {run:?}", rt.name());
        let lines = run.stdout_lines();
        assert!(lines.contains(&"[ping: 6862]".to_owned()), "{run:?}");
        // Pongs answer only our pings: the interval's.
        let pongs = lines.iter().filter(|l| *l == "[pong]").count();
        assert!(pongs >= 2, "{} pongs: {run:?}", rt.name());
        assert_eq!(lines.last().unwrap(), "[close reply: 1000 ]", "{run:?}");
        // Without --show-control the same session prints none of them.
        let run = ws_client(
            rt,
            &[&url, "--ping-interval", "0.2"],
            b"ping\n",
            Duration::from_millis(500),
        );
        assert!(run.status.success(), "{}: {run:?}", rt.name());
        assert!(run.stdout.is_empty(), "{}: {run:?}", rt.name());
    }
}

#[test]
fn timeout_bounds_the_connect_and_the_one_message_reply() {
    // Accepts TCP, never answers the upgrade.
    let mute = TcpListener::bind("127.0.0.1:0").unwrap();
    let mute_url = format!("ws://{}/", mute.local_addr().unwrap());
    let (server, _) = scripted();
    let url = server.url("/");
    for rt in Runtime::ALL {
        let started = Instant::now();
        let run = ws_client(
            rt,
            &[&mute_url, "--timeout", "0.5"],
            b"",
            Duration::from_secs(5),
        );
        assert_eq!(
            run.status.code(),
            Some(examples::exit::CONNECT),
            "{}: {run:?}",
            rt.name()
        );
        assert!(started.elapsed() < Duration::from_secs(5), "{}", rt.name());
        assert!(run.stderr.contains("could not connect"), "{run:?}");

        let started = Instant::now();
        let args = [url.as_str(), "-1", "--timeout", "0.5"];
        let run = ws_client(rt, &args, b"silence", NO_HOLD);
        assert_eq!(
            run.status.code(),
            Some(examples::exit::NO_REPLY),
            "{}: {run:?}",
            rt.name()
        );
        assert!(started.elapsed() < Duration::from_secs(5), "{}", rt.name());
        assert_eq!(run.stderr_lines().last(), Some(&"[no reply in time]"));
    }
}

#[test]
fn exit_status_says_how_it_ended_0_normal_4_other_close_code_3_no_server() {
    let (server, _) = scripted();
    let url = server.url("/");
    let hold = Duration::from_secs(10); // stdin stays open: the server ends it
    for rt in Runtime::ALL {
        let run = ws_client(rt, &[&url], b"close 4000\n", hold);
        assert_eq!(
            run.status.code(),
            Some(examples::exit::ABNORMAL),
            "{}: {run:?}",
            rt.name()
        );
        assert_eq!(run.stdout_lines(), ["[closed by peer: 4000 bye]"]);
        assert_eq!(
            run.stderr_lines().last(),
            Some(&"[closed by server: 4000 bye]")
        );
        let run = ws_client(rt, &[&url], b"close 1001\n", hold);
        assert!(run.status.success(), "{}: {run:?}", rt.name());
        // Nothing listens there.
        let gone = format!("ws://{}/", free_addr());
        let run = ws_client(rt, &[&gone], b"", NO_HOLD);
        assert_eq!(run.status.code(), Some(examples::exit::CONNECT), "{run:?}");
    }
}
