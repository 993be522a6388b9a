//! Deterministic workloads for instruction counting (`bench/icount.sh`):
//! ws-core's decode and encode paths and one in-memory server echo, each a
//! fixed number of messages, with no sockets, clocks or threads in the
//! measured part, so `valgrind --tool=callgrind` counts the same
//! instructions on every run.
//!
//! ```text
//! icount --list                 # the scenario names
//! icount <scenario> [--messages N]
//! ```
//!
//! The measured part of a scenario is the function `icount_measured`; the
//! set-up (payloads, the handshake, warming the buffers with one round)
//! stays outside it, so `callgrind --toggle-collect=icount_measured` counts
//! only the per-message work. The program prints `messages N` so the script
//! can divide.
//!
//! Scenarios (`<size>` is 20B, 1KiB or 16KiB):
//! - `decode-text-<size>`, `decode-bin-<size>`: a server `Connection`
//!   receives masked frames the way an adapter feeds it, each simulated
//!   socket read filling the spare capacity `read_buf` offers (so several
//!   small frames arrive per read, as when pipelined), then `poll_message`
//!   drains them: header parse, unmask, UTF-8 check (text), the message
//!   split from the read buffer.
//! - `encode-client-<size>`: a client `Connection` sends a binary message
//!   (a fresh mask key, frame header, masked copy) and the transmit queue
//!   is drained as a vectored write would (without copying).
//! - `echo-server-<size>`: a `ServerConnection` running the demo `Echo`
//!   handler (the `ws-server --mode echo` path past the handshake) gets one
//!   masked binary message per read, polls, and its echo is drained.

use std::io::IoSlice;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::Arc;
use std::time::Instant;

use ws_bench::{encode_frame, op, payload};
use ws_core::connection::Transmit;
use ws_core::handshake::{ClientHandshake, ClientRequest};
use ws_core::server::ServerConnection;
use ws_core::server::demo::Echo;
use ws_core::server::hub::{Hub, Wake};
use ws_core::{Config, Connection, Message, Role};

const KEY: [u8; 4] = ws_bench::MASK_KEY;

/// (label, payload size, default message count)
const SIZES: &[(&str, usize, usize)] = &[
    ("20B", 20, 20_000),
    ("1KiB", 1024, 5_000),
    ("16KiB", 16 * 1024, 500),
];

const KINDS: &[&str] = &["decode-text", "decode-bin", "encode-client", "echo-server"];

/// One workload: `run` does `n` messages' worth of work.
trait Scenario {
    fn run(&mut self, n: usize) -> Result<(), String>;
}

/// The measured region: callgrind's `--toggle-collect` names this symbol.
#[unsafe(no_mangle)]
#[inline(never)]
fn icount_measured(s: &mut dyn Scenario, n: usize) -> Result<(), String> {
    s.run(n)
}

/// Masked frames, as a client sends them, replayed in reads of the size the
/// connection asks for.
struct Decode {
    conn: Connection,
    wire: Vec<u8>,
    frame_len: usize,
    size: usize,
    text: bool,
}

impl Decode {
    fn new(size: usize, text: bool, n: usize) -> Self {
        let wire = ws_bench::client_frames(size, n, text);
        let frame_len = wire.len() / n;
        Decode {
            conn: Connection::new(Role::Server, Config::default()),
            wire,
            frame_len,
            size,
            text,
        }
    }
}

impl Scenario for Decode {
    fn run(&mut self, n: usize) -> Result<(), String> {
        let wire = &self.wire[..n * self.frame_len];
        let mut pos = 0;
        let mut got = 0;
        while pos < wire.len() {
            let buf = self.conn.read_buf();
            let room = buf.capacity() - buf.len();
            let take = room.min(wire.len() - pos);
            buf.extend_from_slice(&wire[pos..pos + take]);
            pos += take;
            while let Some(m) = self.conn.poll_message().map_err(|e| e.to_string())? {
                let ok = match m {
                    Message::Text(t) => self.text && t.len() == self.size,
                    Message::Binary(b) => !self.text && b.len() == self.size,
                    _ => false,
                };
                if !ok {
                    return Err("decode: unexpected message".into());
                }
                got += 1;
            }
        }
        if got == n {
            Ok(())
        } else {
            Err(format!("decode: {got} messages of {n}"))
        }
    }
}

/// A client sending binary messages; the queue is drained like a vectored
/// write that takes everything.
struct Encode {
    conn: Connection,
    payload: Vec<u8>,
}

impl Scenario for Encode {
    fn run(&mut self, n: usize) -> Result<(), String> {
        let mut sent = 0usize;
        for _ in 0..n {
            self.conn
                .send_binary(&self.payload)
                .map_err(|e| e.to_string())?;
            sent += drain(&mut self.conn);
        }
        let want = n * (self.payload.len() + header_len(self.payload.len(), true));
        if sent == want {
            Ok(())
        } else {
            Err(format!("encode: {sent} bytes out, {want} expected"))
        }
    }
}

fn header_len(len: usize, masked: bool) -> usize {
    let base = match len {
        0..=125 => 2,
        126..=65535 => 4,
        _ => 10,
    };
    if masked { base + 4 } else { base }
}

/// Drains `t`'s transmit queue the way a vectored write loop would, without
/// copying; returns the bytes taken.
fn drain(t: &mut impl Transmit) -> usize {
    let mut total = 0;
    loop {
        let mut slices = [IoSlice::new(&[]); 16];
        let count = t.transmit_slices(&mut slices);
        let n: usize = slices[..count].iter().map(|s| s.len()).sum();
        if n == 0 {
            return total;
        }
        total += n;
        t.advance_transmit(n);
    }
}

struct Nop;
impl Wake for Nop {
    fn wake(&self) {}
}

/// The `ws-server --mode echo` connection machine past its handshake: one
/// masked message per read, one poll, the echo drained.
struct EchoServer {
    conn: ServerConnection<Echo>,
    frame: Vec<u8>,
    now: Instant,
    echo_len: usize,
}

impl EchoServer {
    fn new(size: usize) -> Result<Self, String> {
        let now = Instant::now();
        let peer = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 40000));
        let mut conn = ServerConnection::new(
            Arc::new(Echo),
            Arc::new(Hub::default()),
            Arc::new(Nop),
            peer,
            Config::default(),
            now,
        );
        let (_, request) = ClientHandshake::new(&ClientRequest::new("127.0.0.1", 80, "/ws"));
        conn.read_buf().extend_from_slice(&request);
        conn.poll(now).map_err(|e| e.to_string())?;
        drain(&mut conn);
        if !conn.is_open() {
            return Err("echo: the handshake did not open a session".into());
        }
        let mut frame = Vec::new();
        encode_frame(
            &mut frame,
            op::BINARY,
            &payload(size, false, false),
            Some(KEY),
        );
        Ok(EchoServer {
            conn,
            frame,
            now,
            echo_len: size + header_len(size, false),
        })
    }
}

impl Scenario for EchoServer {
    fn run(&mut self, n: usize) -> Result<(), String> {
        for _ in 0..n {
            let mut pos = 0;
            while pos < self.frame.len() {
                let buf = self.conn.read_buf();
                let room = (buf.capacity() - buf.len()).max(1);
                let take = room.min(self.frame.len() - pos);
                buf.extend_from_slice(&self.frame[pos..pos + take]);
                pos += take;
                self.conn.poll(self.now).map_err(|e| e.to_string())?;
            }
            let out = drain(&mut self.conn);
            if out != self.echo_len {
                return Err(format!(
                    "echo: {out} bytes back, {} expected",
                    self.echo_len
                ));
            }
        }
        Ok(())
    }
}

fn build(name: &str, n: usize) -> Result<Box<dyn Scenario>, String> {
    let (kind, label) = name
        .rsplit_once('-')
        .ok_or_else(|| format!("unknown scenario {name} (see --list)"))?;
    let &(_, size, _) = SIZES
        .iter()
        .find(|(l, _, _)| *l == label)
        .ok_or_else(|| format!("unknown size in {name} (see --list)"))?;
    Ok(match kind {
        "decode-text" => Box::new(Decode::new(size, true, n)),
        "decode-bin" => Box::new(Decode::new(size, false, n)),
        "encode-client" => Box::new(Encode {
            conn: Connection::new(Role::Client, Config::default()),
            payload: payload(size, false, false),
        }),
        "echo-server" => Box::new(EchoServer::new(size)?),
        _ => return Err(format!("unknown scenario {name} (see --list)")),
    })
}

fn default_messages(name: &str) -> usize {
    SIZES
        .iter()
        .find(|(l, _, _)| name.ends_with(l))
        .map_or(1000, |&(_, _, n)| n)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--list") {
        for k in KINDS {
            for (l, _, _) in SIZES {
                println!("{k}-{l}");
            }
        }
        return;
    }
    let Some(name) = args.first() else {
        eprintln!("usage: icount --list | icount <scenario> [--messages N]");
        std::process::exit(2);
    };
    let n = match args.iter().position(|a| a == "--messages") {
        Some(i) => match args.get(i + 1).and_then(|v| v.parse().ok()) {
            Some(n) if n > 0 => n,
            _ => {
                eprintln!("--messages wants a positive number");
                std::process::exit(2);
            }
        },
        None => default_messages(name),
    };
    let result = build(name, n).and_then(|mut s| {
        // One warm-up round grows the buffers to their steady size, so the
        // count is the per-message cost, not the first allocation.
        s.run(n.min(16))?;
        icount_measured(s.as_mut(), n)
    });
    match result {
        Ok(()) => println!("messages {n}"),
        Err(e) => {
            eprintln!("icount {name}: {e}");
            std::process::exit(1);
        }
    }
}
