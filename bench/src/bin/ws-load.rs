//! ws-load: a cheap WebSocket load generator for echo servers.
//!
//! Modes (see bench/README.md):
//! - echo (default): `--connections N` each keep `--in-flight K` masked
//!   messages of `--size` bytes in flight and send the next as each echo
//!   arrives. Frames are pre-encoded once per connection, echoes are only
//!   checked for opcode and length, writes are batched.
//! - `--handshakes`: N concurrent loops of connect, upgrade, close.
//! - `--idle N`: open N connections, print READY, hold them; optionally
//!   a burst of large messages on some of them, then BURST-DONE, hold again.
//! - `--fanout`: chat broadcast. N clients connect to a chat server, then
//!   each sends `--messages M` numbered messages while reading; every client
//!   checks it gets all N x M, each sender's in order. Ends when all arrived,
//!   at `--duration-limit`, or after `--stall` seconds without a delivery.
//!   With `--rooms R`, client i joins room `r{i % R}` (`?room=` on the URL)
//!   and expects exactly the messages of its room's clients. With
//!   `--nodes HOST:PORT,...` client i connects to the i-th of `--url`'s
//!   host and those, round-robin (the nodes of a cluster). With
//!   `--latency` (binary, `--size` of at least 16) each message carries its
//!   send time and the run reports end-to-end latency percentiles; with
//!   `--rate R` each client sends R messages/s instead of as fast as the
//!   server takes them (latency below saturation).
//!
//! `--payload chat` sends JSON chat messages of 200 B to 2 KiB (64 of them,
//! in turn) instead of `--size` filler, `--payload json` a JSON document of
//! `--size` bytes; `--deflate` offers permessage-deflate (with
//! `client_no_context_takeover`, so each message is compressed once, before
//! the run, and replayed), fails unless the server accepts it, and reports
//! the bytes on the wire both ways beside the payload bytes. Echoes are
//! counted, not inflated: the load stays cheap and the server's work is
//! what is measured.
//!
//! A `wss://` URL runs echo and `--handshakes` over TLS (rustls, the ring
//! provider), trusting the CA in `--ca FILE`; the echo then writes each
//! batch and reads what comes back (no readiness tricks through TLS).
//!
//! With `--server-pid PID` it samples the server's utime+stime at the start
//! and end of the measured window and reports CPU per message (per delivery
//! for `--fanout`).

use std::collections::{BTreeMap, VecDeque};
use std::io::{self, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt, Interest};
use tokio::net::TcpStream;
use ws_bench::tls::Stream;
use ws_bench::{
    Args, RawHeader, chat, encode_frame, head_end, op, parse_header, payload, proc_cpu_secs, secs,
};

const USAGE: &str = "usage: ws-load --url ws[s]://127.0.0.1:PORT/ [--ca FILE] [--connections N] [--size BYTES] \
[--in-flight K] [--duration SECS] [--warmup SECS] [--text|--binary] [--payload chat|json] [--deflate] [--json] [--threads T] \
[--server-pid PID] [--label NAME] | --handshakes | --idle N [--hold SECS] [--burst-size BYTES] [--burst-conns M] \
| --fanout --url ws://127.0.0.1:PORT/ws [--connections N] [--size BYTES] [--messages M] [--duration-limit SECS] \
[--stall SECS] [--rooms R] [--nodes HOST:PORT,...] [--latency] [--rate MSGS_PER_S] [--text|--binary] \
[--server-pid PID] [--json] [--label NAME]";

#[derive(Clone)]
struct Opts {
    host_port: String,
    path: String,
    conns: usize,
    size: usize,
    inflight: usize,
    duration: f64,
    warmup: f64,
    text: bool,
    json: bool,
    label: String,
    server_pid: Option<String>,
    /// `--payload`: the messages sent in turn (text), instead of filler.
    messages: Option<Arc<Vec<Vec<u8>>>>,
    /// `--deflate`: offer permessage-deflate and send compressed frames.
    deflate: bool,
    /// For wss://: the TLS client and the server name (the URL's host).
    tls: Option<(
        tokio_rustls::TlsConnector,
        tokio_rustls::rustls::pki_types::ServerName<'static>,
    )>,
}

#[derive(Debug, Default)]
struct Stats {
    msgs: u64,
    bytes: u64,
    errors: u64,
    lat_ns: Vec<u64>,
    /// Frame bytes written and read in the window (`--payload` runs).
    wire_out: u64,
    wire_in: u64,
}

impl Stats {
    fn merge(&mut self, o: Stats) {
        self.msgs += o.msgs;
        self.bytes += o.bytes;
        self.errors += o.errors;
        self.wire_out += o.wire_out;
        self.wire_in += o.wire_in;
        self.lat_ns.extend(o.lat_ns);
    }
}

/// At most this many latency samples per connection (bounded memory).
const MAX_SAMPLES: usize = 2_000_000;

fn request(o: &Opts) -> Vec<u8> {
    request_to(o, &o.path)
}

/// The upgrade request for `path` (with its query) on `o`'s host.
fn request_to(o: &Opts, path: &str) -> Vec<u8> {
    let offer = if o.deflate {
        "Sec-WebSocket-Extensions: permessage-deflate; client_no_context_takeover\r\n"
    } else {
        ""
    };
    format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{offer}\r\n",
        path, o.host_port
    )
    .into_bytes()
}

/// Checks the server's answer: a 101, with permessage-deflate when it was
/// offered (a run that silently went uncompressed would measure the wrong
/// thing).
fn check_head(o: &Opts, head: &[u8]) -> io::Result<()> {
    if !head.starts_with(b"HTTP/1.1 101") {
        return Err(io::Error::other(format!(
            "upgrade refused: {}",
            String::from_utf8_lossy(&head[..head.len().min(80)])
        )));
    }
    let text = String::from_utf8_lossy(head).to_ascii_lowercase();
    if o.deflate && !text.contains("sec-websocket-extensions: permessage-deflate") {
        return Err(io::Error::other(
            "the server did not accept permessage-deflate",
        ));
    }
    Ok(())
}

/// Connects and upgrades; returns the stream and bytes read past the head.
async fn connect(o: &Opts, req: &[u8]) -> io::Result<(TcpStream, Vec<u8>)> {
    connect_to(o, &o.host_port, req).await
}

/// [`connect`] to `host_port` (one node of several).
async fn connect_to(o: &Opts, host_port: &str, req: &[u8]) -> io::Result<(TcpStream, Vec<u8>)> {
    let mut s = TcpStream::connect(host_port).await?;
    s.set_nodelay(true)?;
    s.write_all(req).await?;
    let mut buf = Vec::with_capacity(1024);
    loop {
        if let Some(n) = head_end(&buf) {
            check_head(o, &buf[..n])?;
            return Ok((s, buf.split_off(n)));
        }
        if buf.len() > 16 * 1024 || s.read_buf(&mut buf).await? == 0 {
            return Err(io::Error::other("connection closed during handshake"));
        }
    }
}

/// Connects (over TLS for wss://) and upgrades; returns the stream and the
/// bytes read past the head.
async fn connect_any(o: &Opts, req: &[u8]) -> io::Result<(Stream, Vec<u8>)> {
    let Some((tls, name)) = &o.tls else {
        let (s, left) = connect(o, req).await?;
        return Ok((Stream::Plain(s), left));
    };
    let tcp = TcpStream::connect(&o.host_port).await?;
    tcp.set_nodelay(true)?;
    let mut s = tls.connect(name.clone(), tcp).await?;
    s.write_all(req).await?;
    let mut buf = Vec::with_capacity(1024);
    loop {
        if let Some(n) = head_end(&buf) {
            check_head(o, &buf[..n])?;
            return Ok((Stream::Tls(Box::new(s)), buf.split_off(n)));
        }
        if buf.len() > 16 * 1024 || s.read_buf(&mut buf).await? == 0 {
            return Err(io::Error::other("connection closed during handshake"));
        }
    }
}

/// Incremental skipper for a stream of server frames: parses headers, skips
/// payloads without copying, reports each completed frame.
#[derive(Default)]
struct FrameSkipper {
    hdr: Vec<u8>,
    cur: Option<RawHeader>,
    skip: usize,
}

impl FrameSkipper {
    /// Feeds `data`; calls `done(header)` for every completed frame.
    fn feed(&mut self, data: &[u8], mut done: impl FnMut(&RawHeader)) {
        let mut i = 0;
        while i < data.len() || (self.cur.is_some() && self.skip == 0) {
            if let Some(h) = self.cur {
                let t = self.skip.min(data.len() - i);
                self.skip -= t;
                i += t;
                if self.skip == 0 {
                    self.cur = None;
                    done(&h);
                }
                continue;
            }
            let h = if self.hdr.is_empty() {
                match parse_header(&data[i..]) {
                    Some(h) => {
                        i += h.header_len;
                        h
                    }
                    None => {
                        self.hdr.extend_from_slice(&data[i..]);
                        return;
                    }
                }
            } else {
                self.hdr.push(data[i]);
                i += 1;
                match parse_header(&self.hdr) {
                    Some(h) => {
                        self.hdr.clear();
                        h
                    }
                    None => continue,
                }
            };
            self.cur = Some(h);
            self.skip = h.len;
        }
    }
}

/// What one echo connection has in flight and has received: matches each
/// echoed frame to the send time of the oldest outstanding message, counts
/// the ones inside the measured window, and says how many to send again.
/// Shared by the plain loop and the TLS loop.
struct EchoTally {
    skipper: FrameSkipper,
    sent: VecDeque<Instant>,
    opcode: u8,
    size: usize,
    t0: Instant,
    t1: Instant,
}

impl EchoTally {
    fn new(o: &Opts, opcode: u8, now: Instant, t0: Instant, t1: Instant) -> Self {
        EchoTally {
            skipper: FrameSkipper::default(),
            sent: (0..o.inflight).map(|_| now).collect(),
            opcode,
            size: o.size,
            t0,
            t1,
        }
    }

    /// Feeds received bytes; returns how many messages to send again (one
    /// per echo before the window's end). A close or an unexpected frame
    /// sets `finished`.
    fn feed(&mut self, data: &[u8], st: &mut Stats, finished: &mut bool) -> usize {
        let now = Instant::now();
        let in_window = now >= self.t0 && now < self.t1;
        let mut again = 0;
        let (sent, opcode, size, t1) = (&mut self.sent, self.opcode, self.size, self.t1);
        self.skipper.feed(data, |h| match h.opcode {
            op::TEXT | op::BINARY if h.fin && h.len == size && h.opcode == opcode => {
                let t_sent = sent.pop_front().unwrap_or(now);
                if in_window {
                    st.msgs += 1;
                    st.bytes += h.len as u64;
                    if st.lat_ns.len() < MAX_SAMPLES {
                        st.lat_ns.push((now - t_sent).as_nanos() as u64);
                    }
                }
                if now < t1 {
                    sent.push_back(now);
                    again += 1;
                }
            }
            op::PING | op::PONG => {}
            op::CLOSE => *finished = true,
            _ => {
                st.errors += 1;
                *finished = true;
            }
        });
        again
    }
}

/// The echo loop over TLS: write every queued frame, then read what is
/// there, until the window ends. The K frames in flight are at most a few
/// tens of KiB, far below the socket buffers, so writing them all before
/// reading cannot deadlock.
async fn echo_conn_stream(o: Arc<Opts>, t0: Instant, t1: Instant) -> io::Result<Stats> {
    let (mut s, leftover) = connect_any(&o, &request(&o)).await?;
    let opcode = if o.text { op::TEXT } else { op::BINARY };
    let key: [u8; 4] = rand::random();
    let mut frame = Vec::new();
    encode_frame(
        &mut frame,
        opcode,
        &payload(o.size, o.text, false),
        Some(key),
    );
    let flen = frame.len();
    let block = frame.repeat(o.inflight);
    let mut st = Stats::default();
    let mut pending = o.inflight;
    let now = Instant::now();
    let mut tally = EchoTally::new(&o, opcode, now, t0, t1);
    let mut rbuf = vec![0u8; 256 * 1024];
    let mut finished = false;
    let mut on_data = |data: &[u8], st: &mut Stats, pending: &mut usize, finished: &mut bool| {
        *pending += tally.feed(data, st, finished);
    };
    on_data(&leftover, &mut st, &mut pending, &mut finished);
    while !finished && Instant::now() < t1 {
        if pending > 0 {
            s.write_all(&block[..pending * flen]).await?;
            s.flush().await?;
            pending = 0;
        }
        let left = t1.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, s.read(&mut rbuf)).await {
            Err(_) => break,
            Ok(Ok(0)) => break,
            Ok(Ok(n)) => on_data(&rbuf[..n], &mut st, &mut pending, &mut finished),
            Ok(Err(e)) => return Err(e),
        }
    }
    Ok(st)
}

/// The echo loop for `--payload` (and `--deflate`): the messages in turn,
/// each pre-encoded once (compressed when deflate is on), echoes matched in
/// order and counted by their frames (a compressed echo has its own
/// length), frame bytes counted both ways for the compression ratio.
async fn echo_conn_messages(o: Arc<Opts>, t0: Instant, t1: Instant) -> io::Result<Stats> {
    let (mut s, leftover) = connect_any(&o, &request(&o)).await?;
    let messages = o.messages.clone().expect("--payload");
    let key: [u8; 4] = rand::random();
    let frames: Vec<Vec<u8>> = messages
        .iter()
        .map(|m| {
            let mut f = Vec::new();
            if o.deflate {
                encode_frame(&mut f, op::TEXT, &chat::deflate_message(m, 6), Some(key));
                f[0] |= 0x40; // RSV1: a compressed message
            } else {
                encode_frame(&mut f, op::TEXT, m, Some(key));
            }
            f
        })
        .collect();
    let mut st = Stats::default();
    let mut next = 0usize; // the message to send next
    let mut sent = VecDeque::new();
    let mut skipper = FrameSkipper::default();
    let mut out = Vec::new();
    let mut pending = o.inflight;
    let mut rbuf = vec![0u8; 256 * 1024];
    let mut finished = false;
    type Sent = VecDeque<(Instant, usize)>;
    let mut on_data =
        |data: &[u8], st: &mut Stats, sent: &mut Sent, pending: &mut usize, finished: &mut bool| {
            let now = Instant::now();
            let in_window = now >= t0 && now < t1;
            if in_window {
                st.wire_in += data.len() as u64;
            }
            skipper.feed(data, |h| match h.opcode {
                op::TEXT if h.fin => {
                    let (t_sent, len) = sent.pop_front().unwrap_or((now, 0));
                    if in_window {
                        st.msgs += 1;
                        st.bytes += len as u64;
                        if st.lat_ns.len() < MAX_SAMPLES {
                            st.lat_ns.push((now - t_sent).as_nanos() as u64);
                        }
                    }
                    if now < t1 {
                        *pending += 1;
                    }
                }
                op::PING | op::PONG => {}
                op::CLOSE => *finished = true,
                _ => {
                    st.errors += 1;
                    *finished = true;
                }
            });
        };
    on_data(&leftover, &mut st, &mut sent, &mut pending, &mut finished);
    while !finished && Instant::now() < t1 {
        if pending > 0 {
            out.clear();
            let now = Instant::now();
            for _ in 0..pending {
                out.extend_from_slice(&frames[next]);
                sent.push_back((now, messages[next].len()));
                next = (next + 1) % frames.len();
            }
            pending = 0;
            s.write_all(&out).await?;
            s.flush().await?;
            if now >= t0 {
                st.wire_out += out.len() as u64;
            }
        }
        let left = t1.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, s.read(&mut rbuf)).await {
            Err(_) => break,
            Ok(Ok(0)) => break,
            Ok(Ok(n)) => on_data(&rbuf[..n], &mut st, &mut sent, &mut pending, &mut finished),
            Ok(Err(e)) => return Err(e),
        }
    }
    Ok(st)
}

async fn echo_conn(o: Arc<Opts>, t0: Instant, t1: Instant) -> io::Result<Stats> {
    if o.messages.is_some() {
        return echo_conn_messages(o, t0, t1).await;
    }
    if o.tls.is_some() {
        return echo_conn_stream(o, t0, t1).await;
    }
    let (s, leftover) = connect(&o, &request(&o)).await?;
    let opcode = if o.text { op::TEXT } else { op::BINARY };
    let key: [u8; 4] = rand::random();
    let mut frame = Vec::new();
    encode_frame(
        &mut frame,
        opcode,
        &payload(o.size, o.text, false),
        Some(key),
    );
    let flen = frame.len();
    let block_frames = (256 * 1024 / flen).clamp(1, o.inflight.max(1));
    let block = frame.repeat(block_frames);
    let mut close = Vec::new();
    encode_frame(&mut close, op::CLOSE, &1000u16.to_be_bytes(), Some(key));

    let mut st = Stats::default();
    let mut pending = o.inflight * flen; // bytes queued to write
    let mut wpos = 0usize; // offset within the current frame
    let now = Instant::now();
    let mut tally = EchoTally::new(&o, opcode, now, t0, t1);
    let mut rbuf = vec![0u8; 256 * 1024];
    let mut finished = false;
    let deadline = tokio::time::sleep_until(t1.into());
    tokio::pin!(deadline);

    let mut on_data = |data: &[u8], st: &mut Stats, pending: &mut usize, finished: &mut bool| {
        *pending += tally.feed(data, st, finished) * flen;
    };
    on_data(&leftover, &mut st, &mut pending, &mut finished);

    while !finished {
        let interest = if pending > 0 {
            Interest::READABLE | Interest::WRITABLE
        } else {
            Interest::READABLE
        };
        let ready = tokio::select! {
            biased;
            _ = &mut deadline => break,
            r = s.ready(interest) => r?,
        };
        if ready.is_readable() {
            loop {
                match s.try_read(&mut rbuf) {
                    Ok(0) => {
                        finished = true;
                        break;
                    }
                    Ok(n) => {
                        on_data(&rbuf[..n], &mut st, &mut pending, &mut finished);
                        if n < rbuf.len() {
                            break;
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) => return Err(e),
                }
            }
        }
        // Write whatever is queued (also right after reading: no extra wakeup).
        while pending > 0 {
            let end = block.len().min(wpos + pending);
            match s.try_write(&block[wpos..end]) {
                Ok(n) => {
                    pending -= n;
                    wpos = (wpos + n) % flen;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e),
            }
        }
    }
    // Best effort close; the measurement is over.
    if wpos == 0 {
        let _ = s.try_write(&close);
    }
    Ok(st)
}

async fn handshake_loop(o: Arc<Opts>, t0: Instant, t1: Instant) -> io::Result<Stats> {
    let req = request(&o);
    let mut close = Vec::new();
    encode_frame(
        &mut close,
        op::CLOSE,
        &1000u16.to_be_bytes(),
        Some([1, 2, 3, 4]),
    );
    let mut st = Stats::default();
    let mut rbuf = vec![0u8; 4096];
    while Instant::now() < t1 {
        let start = Instant::now();
        let one = async {
            let (mut s, mut left) = connect_any(&o, &req).await?;
            let upgraded = Instant::now();
            s.write_all(&close).await?;
            // Wait for the server's close frame (or EOF).
            loop {
                if let Some(h) = parse_header(&left) {
                    if h.opcode == op::CLOSE {
                        break;
                    }
                    if left.len() >= h.header_len + h.len {
                        left.drain(..h.header_len + h.len);
                        continue;
                    }
                }
                let n = s.read(&mut rbuf).await?;
                if n == 0 {
                    break;
                }
                left.extend_from_slice(&rbuf[..n]);
            }
            // RST instead of TIME_WAIT: thousands of handshakes per second
            // would otherwise exhaust the ephemeral ports.
            let _ = s.tcp().set_zero_linger();
            io::Result::Ok(upgraded)
        };
        match tokio::time::timeout(Duration::from_secs(5), one).await {
            Ok(Ok(upgraded)) => {
                let end = Instant::now();
                if start >= t0 && end < t1 {
                    st.msgs += 1;
                    if st.lat_ns.len() < MAX_SAMPLES {
                        st.lat_ns.push((upgraded - start).as_nanos() as u64);
                    }
                }
            }
            _ => {
                st.errors += 1;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
    Ok(st)
}

fn pct(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i] as f64 / 1000.0
}

/// Samples the CPU time of the server (and of this process) at the start
/// and end of the measured window, from a plain thread so a busy runtime
/// cannot delay it.
fn cpu_sampler(
    pid: Option<String>,
    t0: Instant,
    t1: Instant,
) -> std::thread::JoinHandle<(Option<f64>, Option<f64>, f64)> {
    std::thread::spawn(move || {
        let sample = || {
            (
                pid.as_deref().and_then(proc_cpu_secs),
                proc_cpu_secs("self"),
                Instant::now(),
            )
        };
        std::thread::sleep(t0.saturating_duration_since(Instant::now()));
        let (s0, c0, a) = sample();
        std::thread::sleep(t1.saturating_duration_since(Instant::now()));
        let (s1, c1, b) = sample();
        let server = s0.zip(s1).map(|(x, y)| y - x);
        let client = c0.zip(c1).map(|(x, y)| y - x);
        (server, client, (b - a).as_secs_f64())
    })
}

fn report(
    o: &Opts,
    mode: &str,
    mut st: Stats,
    conn_errors: u64,
    cpu: (Option<f64>, Option<f64>, f64),
) {
    st.lat_ns.sort_unstable();
    let w = o.duration;
    let (server_cpu, client_cpu, cpu_window) = cpu;
    // Scale CPU to the message-counting window if the sampler ran late.
    let scale = if cpu_window > 0.0 {
        w / cpu_window
    } else {
        1.0
    };
    let server_cpu = server_cpu.map(|c| c * scale);
    let client_cpu = client_cpu.map(|c| c * scale);
    let rate = st.msgs as f64 / w;
    let mbps = st.bytes as f64 / w / 1e6;
    let (p50, p99, p999) = (
        pct(&st.lat_ns, 0.5),
        pct(&st.lat_ns, 0.99),
        pct(&st.lat_ns, 0.999),
    );
    let us_per = |c: Option<f64>| match c {
        Some(c) if st.msgs > 0 => c * 1e6 / st.msgs as f64,
        _ => f64::NAN,
    };
    let errors = st.errors + conn_errors;
    let unit = if mode == "handshakes" {
        "hs/s"
    } else {
        "msg/s"
    };
    println!(
        "{label} {mode}: {rate:.0} {unit}, {mbps:.2} MB/s, p50 {p50:.1} us, p99 {p99:.1} us, p999 {p999:.1} us, \
server cpu {scpu:.2} s ({sper:.2} us/{u}), client cpu {ccpu:.2} s, errors {errors}",
        label = o.label,
        scpu = server_cpu.unwrap_or(f64::NAN),
        sper = us_per(server_cpu),
        u = if mode == "handshakes" { "hs" } else { "msg" },
        ccpu = client_cpu.unwrap_or(f64::NAN),
    );
    // Wire bytes per payload byte, both directions (`--payload` runs).
    let ratio = |wire: u64| {
        if o.messages.is_some() && st.bytes > 0 {
            wire as f64 / st.bytes as f64
        } else {
            f64::NAN
        }
    };
    let (ratio_out, ratio_in) = (ratio(st.wire_out), ratio(st.wire_in));
    if o.messages.is_some() {
        println!(
            "{label} wire/payload: sent {ratio_out:.3}, received {ratio_in:.3} ({} payload bytes)",
            st.bytes,
            label = o.label
        );
    }
    if o.json {
        let num = |x: f64| {
            if x.is_finite() {
                format!("{x:.4}")
            } else {
                "null".to_string()
            }
        };
        println!(
            "{{\"label\":\"{}\",\"mode\":\"{mode}\",\"connections\":{},\"size\":{},\"in_flight\":{},\"text\":{},\
\"window_s\":{},\"count\":{},\"rate\":{},\"mb_per_s\":{},\"p50_us\":{},\"p99_us\":{},\"p999_us\":{},\
\"server_cpu_s\":{},\"server_cpu_us_per_op\":{},\"client_cpu_s\":{},\"deflate\":{},\
\"wire_out_per_payload\":{},\"wire_in_per_payload\":{},\"errors\":{errors}}}",
            o.label,
            o.conns,
            o.size,
            o.inflight,
            o.text,
            num(w),
            st.msgs,
            num(rate),
            num(mbps),
            num(p50),
            num(p99),
            num(p999),
            num(server_cpu.unwrap_or(f64::NAN)),
            num(us_per(server_cpu)),
            num(client_cpu.unwrap_or(f64::NAN)),
            o.deflate,
            num(ratio_out),
            num(ratio_in),
        );
    }
}

async fn run_timed(o: Arc<Opts>, handshakes: bool) {
    let t0 = Instant::now() + secs(o.warmup) + Duration::from_millis(50);
    let t1 = t0 + secs(o.duration);
    let sampler = cpu_sampler(o.server_pid.clone(), t0, t1);
    let mut tasks = Vec::with_capacity(o.conns);
    for _ in 0..o.conns {
        let o = o.clone();
        tasks.push(tokio::spawn(async move {
            if handshakes {
                handshake_loop(o, t0, t1).await
            } else {
                echo_conn(o, t0, t1).await
            }
        }));
    }
    let mut total = Stats::default();
    let mut conn_errors = 0;
    for t in tasks {
        match t.await {
            Ok(Ok(st)) => total.merge(st),
            Ok(Err(e)) => {
                conn_errors += 1;
                eprintln!("connection error: {e}");
            }
            Err(e) => {
                conn_errors += 1;
                eprintln!("task error: {e}");
            }
        }
    }
    let cpu = sampler.join().unwrap_or((None, None, 0.0));
    report(
        &o,
        if handshakes { "handshakes" } else { "echo" },
        total,
        conn_errors,
        cpu,
    );
}

async fn run_idle(o: Arc<Opts>, n: usize, hold: f64, burst_size: usize, burst_conns: usize) {
    let req = Arc::new(request(&o));
    let mut conns: Vec<TcpStream> = Vec::with_capacity(n);
    let mut failed = 0usize;
    // Open in waves of 200 concurrent connects.
    let mut left = n;
    while left > 0 {
        let wave = left.min(200);
        left -= wave;
        let mut js = Vec::with_capacity(wave);
        for _ in 0..wave {
            let (o, req) = (o.clone(), req.clone());
            js.push(tokio::spawn(async move {
                tokio::time::timeout(Duration::from_secs(10), connect(&o, &req)).await
            }));
        }
        for j in js {
            match j.await {
                Ok(Ok(Ok((s, _)))) => conns.push(s),
                _ => failed += 1,
            }
        }
    }
    println!("READY {} connections ({failed} failed)", conns.len());
    let _ = io::stdout().flush();
    tokio::time::sleep(secs(hold)).await;
    if burst_size > 0 && burst_conns > 0 {
        let mut frame = Vec::new();
        encode_frame(
            &mut frame,
            op::BINARY,
            &payload(burst_size, false, false),
            Some([9, 8, 7, 6]),
        );
        let frame = Arc::new(frame);
        let k = burst_conns.min(conns.len());
        let mut rest = conns.split_off(k);
        let mut js = Vec::with_capacity(k);
        for mut s in conns.drain(..) {
            let frame = frame.clone();
            js.push(tokio::spawn(async move {
                let r = tokio::time::timeout(Duration::from_secs(30), async {
                    s.write_all(&frame).await?;
                    let mut sk = FrameSkipper::default();
                    let mut got = false;
                    let mut buf = vec![0u8; 64 * 1024];
                    while !got {
                        let n = s.read(&mut buf).await?;
                        if n == 0 {
                            break;
                        }
                        sk.feed(&buf[..n], |h| got |= h.opcode == op::BINARY);
                    }
                    io::Result::Ok(got)
                })
                .await;
                (s, matches!(r, Ok(Ok(true))))
            }));
        }
        let mut ok = 0;
        for j in js {
            if let Ok((s, good)) = j.await {
                ok += good as usize;
                rest.push(s);
            }
        }
        conns = rest;
        println!("BURST-DONE {ok}/{k} echoed {burst_size} B");
        let _ = io::stdout().flush();
        tokio::time::sleep(secs(hold)).await;
    }
    println!("DONE");
    let _ = io::stdout().flush();
    for s in &conns {
        let _ = s.set_zero_linger();
    }
}

/// Payload bytes each `--fanout` message starts with: sender index and
/// sequence number, as two big-endian `u32`s (binary) or as 16 lowercase hex
/// digits (text, so the payload stays valid UTF-8).
fn fanout_prefix_len(text: bool) -> usize {
    if text { 16 } else { 8 }
}

/// Writes the sender index and sequence number into `out` (the first
/// [`fanout_prefix_len`] bytes of a payload).
fn put_fanout_prefix(out: &mut [u8], sender: u32, seq: u32, text: bool) {
    if text {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let v = (u64::from(sender) << 32) | u64::from(seq);
        for (i, b) in out[..16].iter_mut().enumerate() {
            *b = HEX[((v >> (60 - 4 * i)) & 0xf) as usize];
        }
    } else {
        out[..4].copy_from_slice(&sender.to_be_bytes());
        out[4..8].copy_from_slice(&seq.to_be_bytes());
    }
}

/// Reads back what [`put_fanout_prefix`] wrote; `None` if malformed.
#[inline]
fn get_fanout_prefix(p: &[u8], text: bool) -> Option<(u32, u32)> {
    if text {
        let mut v = 0u64;
        for &b in p.get(..16)? {
            let d = match b {
                b'0'..=b'9' => b - b'0',
                b'a'..=b'f' => b - b'a' + 10,
                _ => return None,
            };
            v = (v << 4) | u64::from(d);
        }
        Some(((v >> 32) as u32, v as u32))
    } else {
        let p = p.get(..8)?;
        Some((
            u32::from_be_bytes([p[0], p[1], p[2], p[3]]),
            u32::from_be_bytes([p[4], p[5], p[6], p[7]]),
        ))
    }
}

/// The most payload bytes [`PrefixReader`] keeps of a frame (enough for the
/// text prefix and for a close frame's code).
const MAX_PREFIX: usize = 16;

/// Incremental reader of a stream of server frames that hands over each
/// frame's header and the first bytes of its payload (up to `MAX_PREFIX`),
/// and skips the rest without copying. Server frames are unmasked, so the
/// bytes are usable as they are.
#[derive(Default)]
struct PrefixReader {
    /// Header bytes of a header split across reads.
    hdr: Vec<u8>,
    /// The frame whose payload is being read, if any.
    cur: Option<RawHeader>,
    /// Prefix bytes of `cur` collected so far.
    pre: [u8; MAX_PREFIX],
    /// How many of `pre` are filled.
    pre_len: usize,
    /// How many prefix bytes `cur` has: `min(len, MAX_PREFIX)`.
    want: usize,
    /// Payload bytes of `cur` still to skip after the prefix.
    skip: usize,
}

impl PrefixReader {
    /// Feeds `data`; calls `done(header, prefix)` for every completed frame,
    /// where `prefix` is the first `min(len, MAX_PREFIX)` payload bytes.
    #[inline]
    fn feed(&mut self, data: &[u8], mut done: impl FnMut(&RawHeader, &[u8])) {
        let mut i = 0;
        loop {
            if let Some(h) = self.cur {
                if self.pre_len < self.want {
                    let t = (self.want - self.pre_len).min(data.len() - i);
                    self.pre[self.pre_len..self.pre_len + t].copy_from_slice(&data[i..i + t]);
                    self.pre_len += t;
                    i += t;
                    if self.pre_len < self.want {
                        return;
                    }
                }
                let t = self.skip.min(data.len() - i);
                self.skip -= t;
                i += t;
                if self.skip > 0 {
                    return;
                }
                self.cur = None;
                done(&h, &self.pre[..self.want]);
                continue;
            }
            if i == data.len() {
                return;
            }
            let h = if self.hdr.is_empty() {
                match parse_header(&data[i..]) {
                    Some(h) => {
                        let start = i + h.header_len;
                        if data.len() - start >= h.len {
                            // Fast path: the whole frame is in this read.
                            done(&h, &data[start..start + h.len.min(MAX_PREFIX)]);
                            i = start + h.len;
                            continue;
                        }
                        i = start;
                        h
                    }
                    None => {
                        self.hdr.extend_from_slice(&data[i..]);
                        return;
                    }
                }
            } else {
                self.hdr.push(data[i]);
                i += 1;
                match parse_header(&self.hdr) {
                    Some(h) => {
                        self.hdr.clear();
                        h
                    }
                    None => continue,
                }
            };
            self.want = h.len.min(MAX_PREFIX);
            self.pre_len = 0;
            self.skip = h.len - self.want;
            self.cur = Some(h);
        }
    }
}

/// Settings of a `--fanout` run beyond [`Opts`].
#[derive(Debug, Clone)]
struct FanoutOpts {
    /// Messages each client sends (M).
    messages: u32,
    /// Upper bound of the sending/receiving phase.
    limit: f64,
    /// End early once no client received anything for this long.
    stall: f64,
    /// Rooms (topics): client i joins room `r{i % rooms}`; 0: no room
    /// (the lobby: everyone together).
    rooms: usize,
    /// Where clients connect: client i to `nodes[i % nodes.len()]` (the
    /// URL's host first, then `--nodes`).
    nodes: Vec<String>,
    /// Carry each message's send time ([`LATENCY_BYTES`]) and report
    /// end-to-end latency.
    latency: bool,
    /// Messages per second per client; 0: as fast as the server takes them.
    rate: f64,
}

/// Payload bytes a `--latency` message carries after the prefix: its send
/// time in nanoseconds since [`epoch`], big-endian.
const LATENCY_BYTES: usize = 8;

/// Latency samples kept per client at most (every k-th delivery beyond).
const LATENCY_SAMPLES: u64 = 50_000;

/// The process's time origin for `--latency` stamps (sender and receiver
/// are the same process, so one monotonic clock serves both).
fn epoch() -> Instant {
    static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// Nanoseconds since [`epoch`].
fn stamp_ns() -> u64 {
    epoch().elapsed().as_nanos() as u64
}

impl FanoutOpts {
    /// How many groups of clients there are: the rooms, or one (no rooms).
    fn groups(&self) -> usize {
        self.rooms.max(1)
    }

    /// The group (room index) of client `i`.
    fn group_of(&self, i: usize) -> usize {
        if self.rooms == 0 { 0 } else { i % self.rooms }
    }

    /// The URL path of client `i`: `path` plus `room=r{i % rooms}` in its
    /// query (unchanged without rooms).
    fn path_of(&self, path: &str, i: usize) -> String {
        if self.rooms == 0 {
            return path.to_string();
        }
        let sep = if path.contains('?') { '&' } else { '?' };
        format!("{path}{sep}room=r{}", self.group_of(i))
    }
}

/// Phase of a `--fanout` run, broadcast to the client tasks.
const PHASE_CONNECT: u8 = 0;
/// Clients send and read.
const PHASE_GO: u8 = 1;
/// The run is over: clients close and report.
const PHASE_STOP: u8 = 2;

/// State the `--fanout` client tasks share with the coordinator.
struct FanoutShared {
    /// Connections upgraded.
    connected: AtomicUsize,
    /// Connections that failed to connect or upgrade.
    connect_failed: AtomicUsize,
    /// Connections upgraded, per group (room).
    group_connected: Vec<AtomicUsize>,
    /// Messages each client of a group must receive (the group's connected
    /// clients x M); set before [`PHASE_GO`].
    group_target: Vec<AtomicU64>,
    /// Deliveries so far, all clients (updated once per read batch).
    progress: AtomicU64,
    /// Clients that are done: received `target`, or ended (closed, error).
    done: AtomicUsize,
    /// Woken whenever `connected`, `connect_failed` or `done` grows.
    notify: tokio::sync::Notify,
}

impl FanoutShared {
    fn new(groups: usize) -> Self {
        FanoutShared {
            connected: AtomicUsize::new(0),
            connect_failed: AtomicUsize::new(0),
            group_connected: (0..groups).map(|_| AtomicUsize::new(0)).collect(),
            group_target: (0..groups).map(|_| AtomicU64::new(0)).collect(),
            progress: AtomicU64::new(0),
            done: AtomicUsize::new(0),
            notify: tokio::sync::Notify::new(),
        }
    }

    /// Increments one of the counters and wakes the coordinator.
    fn bump(&self, counter: &AtomicUsize) {
        counter.fetch_add(1, Ordering::Relaxed);
        self.notify.notify_one();
    }
}

/// What one `--fanout` client saw.
#[derive(Debug, Default)]
struct FanoutStats {
    /// Upgraded (took part in the run).
    connected: bool,
    /// Messages completely written to the socket.
    sent: u64,
    /// Data messages received with a well-formed prefix.
    received: u64,
    /// Messages whose sequence number was not the next one expected from
    /// their sender (a gap, a duplicate or a reordering).
    order_violations: u64,
    /// Frames of an unexpected opcode, length or prefix.
    bad: u64,
    /// Well-formed messages from a sender of another room (not counted in
    /// `received`).
    foreign: u64,
    /// Close code of a close frame the server sent (1005 if none in it).
    closed_by_server: Option<u16>,
    /// The server ended the TCP stream without a close frame.
    eof: bool,
    /// Connect, upgrade or socket error.
    error: Option<String>,
    /// When the last message arrived.
    last_recv: Option<Instant>,
    /// When this client had all `target` messages.
    finished: Option<Instant>,
    /// When the last of its M messages was written to the socket.
    send_done: Option<Instant>,
    /// End-to-end latencies (ns) of a sample of its deliveries
    /// (`--latency`).
    lat_ns: Vec<u64>,
}

/// One `--fanout` client: connect, wait for [`PHASE_GO`], then send M
/// numbered messages while reading everything, until [`PHASE_STOP`] or the
/// server closes. Every wait is bounded by the coordinator's stop signal
/// (and the connect by a timeout).
async fn fanout_client(
    o: Arc<Opts>,
    f: Arc<FanoutOpts>,
    idx: u32,
    shared: Arc<FanoutShared>,
    connect_gate: Arc<tokio::sync::Semaphore>,
    mut phase: tokio::sync::watch::Receiver<u8>,
) -> FanoutStats {
    let mut st = FanoutStats::default();
    let group = f.group_of(idx as usize);
    let req = request_to(&o, &f.path_of(&o.path, idx as usize));
    let node = &f.nodes[idx as usize % f.nodes.len()];
    let conn = async {
        let _permit = connect_gate.acquire().await;
        tokio::time::timeout(Duration::from_secs(10), connect_to(&o, node, &req)).await
    };
    let (s, leftover) = match conn.await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => {
            st.error = Some(format!("connect: {e}"));
            shared.bump(&shared.connect_failed);
            return st;
        }
        Err(_) => {
            st.error = Some("connect: timed out".into());
            shared.bump(&shared.connect_failed);
            return st;
        }
    };
    st.connected = true;
    shared.group_connected[group].fetch_add(1, Ordering::Relaxed);
    shared.bump(&shared.connected);
    let go = phase.wait_for(|p| *p != PHASE_CONNECT).await.map(|p| *p);
    if !matches!(go, Ok(PHASE_GO)) {
        return st;
    }
    let target = shared.group_target[group].load(Ordering::Relaxed);

    // The message template: masked once with this client's key; only the
    // prefix differs between messages, and is re-masked per message.
    let opcode = if o.text { op::TEXT } else { op::BINARY };
    let plen = fanout_prefix_len(o.text);
    let key: [u8; 4] = rand::random();
    let mut template = Vec::new();
    encode_frame(
        &mut template,
        opcode,
        &payload(o.size, o.text, false),
        Some(key),
    );
    let flen = template.len();
    let hlen = flen - o.size;
    let batch = (64 * 1024 / flen).max(1) as u32;
    let mut wbuf: Vec<u8> = Vec::with_capacity(batch as usize * flen);
    let mut wpos = 0usize;
    let mut queued = 0u32; // messages put in wbuf so far
    let mut close = Vec::new();
    encode_frame(&mut close, op::CLOSE, &1000u16.to_be_bytes(), Some(key));

    // Receiving side: next expected sequence number per sender (only
    // senders of this client's room may appear).
    let mut next = vec![0u32; o.conns];
    let mut reader = PrefixReader::default();
    let mut rbuf = vec![0u8; 64 * 1024];
    let mut ended = false; // closed by the server, EOF, error or bad frame
    let (size, text) = (o.size, o.text);
    // Every `stride`-th delivery is timed: at most LATENCY_SAMPLES.
    let stride = (target / LATENCY_SAMPLES).max(1);
    let latency = f.latency;
    let on_data = |data: &[u8], st: &mut FanoutStats, ended: &mut bool| {
        let before = st.received;
        reader.feed(data, |h, p| match h.opcode {
            op::TEXT | op::BINARY if h.fin && h.len == size && h.opcode == opcode => {
                match get_fanout_prefix(p, text) {
                    Some((from, _))
                        if (from as usize) < next.len() && f.group_of(from as usize) != group =>
                    {
                        st.foreign += 1;
                    }
                    Some((from, seq)) if (from as usize) < next.len() && seq < f.messages => {
                        let n = &mut next[from as usize];
                        if seq != *n {
                            st.order_violations += 1;
                        }
                        *n = seq.wrapping_add(1);
                        st.received += 1;
                        if latency && st.received % stride == 0 {
                            if let Some(t) = p.get(plen..plen + LATENCY_BYTES) {
                                let sent = u64::from_be_bytes(t.try_into().unwrap_or_default());
                                st.lat_ns.push(stamp_ns().saturating_sub(sent));
                            }
                        }
                    }
                    _ => st.bad += 1,
                }
            }
            op::PING | op::PONG => {}
            op::CLOSE => {
                st.closed_by_server = Some(
                    p.get(..2)
                        .map_or(1005, |c| u16::from_be_bytes([c[0], c[1]])),
                );
                *ended = true;
            }
            _ => {
                st.bad += 1;
                *ended = true;
            }
        });
        if st.received > before {
            st.last_recv = Some(Instant::now());
            shared
                .progress
                .fetch_add(st.received - before, Ordering::Relaxed);
        }
    };
    let mut on_data = on_data;
    on_data(&leftover, &mut st, &mut ended);

    let mut counted_done = false;
    let t_go = Instant::now();
    // With --rate: how many messages may have been queued by now.
    let allowed = |now: Instant| -> u32 {
        if f.rate > 0.0 {
            let due = ((now - t_go).as_secs_f64() * f.rate) as u64 + 1;
            due.min(u64::from(f.messages)) as u32
        } else {
            f.messages
        }
    };
    while !ended {
        if !counted_done && st.received >= target {
            st.finished = Some(Instant::now());
            counted_done = true;
            shared.bump(&shared.done);
        }
        let may = allowed(Instant::now());
        let writing = wpos < wbuf.len() || queued < may;
        let interest = if writing {
            Interest::READABLE | Interest::WRITABLE
        } else {
            Interest::READABLE
        };
        // The next paced send, when nothing is writable before it.
        let next_send = (!writing && queued < f.messages && f.rate > 0.0)
            .then(|| t_go + Duration::from_secs_f64(f64::from(queued) / f.rate));
        let pace = async {
            match next_send {
                Some(at) => tokio::time::sleep_until(at.into()).await,
                None => std::future::pending().await,
            }
        };
        let ready = tokio::select! {
            biased;
            _ = phase.wait_for(|p| *p == PHASE_STOP) => break,
            r = s.ready(interest) => r,
            () = pace => continue,
        };
        let ready = match ready {
            Ok(r) => r,
            Err(e) => {
                st.error = Some(format!("poll: {e}"));
                break;
            }
        };
        if ready.is_readable() {
            for _ in 0..16 {
                match s.try_read(&mut rbuf) {
                    Ok(0) => {
                        st.eof = true;
                        ended = true;
                        break;
                    }
                    Ok(n) => {
                        on_data(&rbuf[..n], &mut st, &mut ended);
                        if ended || n < rbuf.len() {
                            break;
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) => {
                        st.error = Some(format!("read: {e}"));
                        ended = true;
                        break;
                    }
                }
            }
            if ended {
                break;
            }
        }
        // Write what the socket takes (also right after reading), at most
        // 16 batches before reading again: loopback buffers take megabytes.
        let may = allowed(Instant::now());
        for _ in 0..16 {
            if wpos == wbuf.len() && queued >= may {
                break;
            }
            if wpos == wbuf.len() {
                wbuf.clear();
                wpos = 0;
                let k = batch.min(may - queued);
                let now_ns = if latency { stamp_ns() } else { 0 };
                for _ in 0..k {
                    let at = wbuf.len();
                    wbuf.extend_from_slice(&template);
                    let stamped = if latency { plen + LATENCY_BYTES } else { plen };
                    let pre = &mut wbuf[at + hlen..at + hlen + stamped];
                    put_fanout_prefix(pre, idx, queued, text);
                    if latency {
                        pre[plen..].copy_from_slice(&now_ns.to_be_bytes());
                    }
                    for (j, b) in pre.iter_mut().enumerate() {
                        *b ^= key[j & 3];
                    }
                    queued += 1;
                }
            }
            match s.try_write(&wbuf[wpos..]) {
                Ok(n) => wpos += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => {
                    st.error = Some(format!("write: {e}"));
                    ended = true;
                    break;
                }
            }
        }
        st.sent = u64::from(queued) - (wbuf.len() - wpos).div_ceil(flen) as u64;
        if st.send_done.is_none() && st.sent == u64::from(f.messages) {
            st.send_done = Some(Instant::now());
        }
    }
    if !counted_done {
        shared.bump(&shared.done);
    }
    // Best-effort close (also the reply to a server's close), only at a
    // frame boundary; the measurement is over.
    if wpos % flen == 0 && st.error.is_none() && !st.eof {
        let _ = s.try_write(&close);
    }
    st
}

/// Runs `--fanout`: connects every client, waits ~200 ms of quiet, lets all
/// send at once, and ends when every client has all N x M messages, at
/// the duration limit, or once deliveries stall. Prints the report.
async fn run_fanout(o: Arc<Opts>, f: FanoutOpts) {
    let f = Arc::new(f);
    let n = o.conns;
    let shared = Arc::new(FanoutShared::new(f.groups()));
    let gate = Arc::new(tokio::sync::Semaphore::new(200));
    let (phase_tx, phase_rx) = tokio::sync::watch::channel(PHASE_CONNECT);
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            tokio::spawn(fanout_client(
                o.clone(),
                f.clone(),
                i as u32,
                shared.clone(),
                gate.clone(),
                phase_rx.clone(),
            ))
        })
        .collect();
    drop(phase_rx);
    // Connect phase: every connect is bounded by its own 10 s timeout.
    let connect_deadline = Instant::now() + Duration::from_secs(10 + 10 * (n as u64 / 200 + 1));
    loop {
        let c = shared.connected.load(Ordering::Relaxed);
        let e = shared.connect_failed.load(Ordering::Relaxed);
        if c + e >= n || Instant::now() >= connect_deadline {
            break;
        }
        let _ = tokio::time::timeout(Duration::from_millis(100), shared.notify.notified()).await;
    }
    // Clients per room, and the deliveries each of a room's clients should
    // get: its room's connected clients x M (everyone's without rooms).
    let group_sizes: Vec<usize> = shared
        .group_connected
        .iter()
        .map(|c| c.load(Ordering::Relaxed))
        .collect();
    let connected: usize = group_sizes.iter().sum();
    let m = u64::from(f.messages);
    for (t, &c) in shared.group_target.iter().zip(&group_sizes) {
        t.store(c as u64 * m, Ordering::Relaxed);
    }
    let expected: u64 = group_sizes.iter().map(|&c| (c * c) as u64 * m).sum();
    // No "ready" signal from the server: let it register the last upgrades.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let cpu0 = (
        o.server_pid.as_deref().and_then(proc_cpu_secs),
        proc_cpu_secs("self"),
    );
    let t_go = Instant::now();
    let _ = phase_tx.send(PHASE_GO);

    let deadline = t_go + secs(f.limit);
    let mut last_progress = (0u64, Instant::now());
    let end = loop {
        if shared.done.load(Ordering::Relaxed) >= connected {
            break "done";
        }
        let now = Instant::now();
        if now >= deadline {
            break "time-limit";
        }
        let p = shared.progress.load(Ordering::Relaxed);
        if p != last_progress.0 {
            last_progress = (p, now);
        } else if now - last_progress.1 >= secs(f.stall) {
            break "stalled";
        }
        let wait = Duration::from_millis(50).min(deadline - now);
        let _ = tokio::time::timeout(wait, shared.notify.notified()).await;
    };
    let t_end = Instant::now();
    let cpu1 = (
        o.server_pid.as_deref().and_then(proc_cpu_secs),
        proc_cpu_secs("self"),
    );
    let _ = phase_tx.send(PHASE_STOP);

    let mut all = Vec::with_capacity(n);
    let mut lost_tasks = 0usize;
    let collect_deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    for t in tasks {
        match tokio::time::timeout_at(collect_deadline, t).await {
            Ok(Ok(st)) => all.push(st),
            _ => lost_tasks += 1,
        }
    }
    let server_cpu = cpu0.0.zip(cpu1.0).map(|(a, b)| b - a);
    let client_cpu = cpu0.1.zip(cpu1.1).map(|(a, b)| b - a);
    fanout_report(
        &o,
        &f,
        &all,
        FanoutRun {
            connected,
            expected,
            group_sizes,
            t_go,
            t_end,
            end,
            lost_tasks,
            server_cpu,
            client_cpu,
        },
    );
}

/// Run-level facts for [`fanout_report`].
struct FanoutRun {
    /// Clients that upgraded and took part.
    connected: usize,
    /// Deliveries all clients together should get: the sum over rooms of
    /// (the room's connected clients)² x M (connected² x M without rooms).
    expected: u64,
    /// Connected clients per room (one entry without rooms).
    group_sizes: Vec<usize>,
    /// When sending started.
    t_go: Instant,
    /// When the end was noticed.
    t_end: Instant,
    /// Why the run ended: `done`, `stalled` or `time-limit`.
    end: &'static str,
    /// Client tasks that did not report back within 15 s of the stop.
    lost_tasks: usize,
    /// Server utime+stime from `t_go` to `t_end`, with `--server-pid`.
    server_cpu: Option<f64>,
    /// ws-load's own utime+stime over the same span.
    client_cpu: Option<f64>,
}

/// Prints the `--fanout` summary line (and JSON line with `--json`).
fn fanout_report(o: &Opts, f: &FanoutOpts, all: &[FanoutStats], r: FanoutRun) {
    let sum = |g: fn(&FanoutStats) -> u64| all.iter().map(g).sum::<u64>();
    let deliveries = sum(|s| s.received);
    let sent = sum(|s| s.sent);
    let order = sum(|s| s.order_violations);
    let bad = sum(|s| s.bad);
    let foreign = sum(|s| s.foreign);
    let expected = r.expected;
    let room_min = r.group_sizes.iter().copied().min().unwrap_or(0);
    let room_max = r.group_sizes.iter().copied().max().unwrap_or(0);
    let missing = expected.saturating_sub(deliveries);
    let finished = all.iter().filter(|s| s.finished.is_some()).count();
    let mut closed: BTreeMap<u16, usize> = BTreeMap::new();
    for c in all.iter().filter_map(|s| s.closed_by_server) {
        *closed.entry(c).or_default() += 1;
    }
    let closed_total: usize = closed.values().sum();
    let eof = all.iter().filter(|s| s.eof).count();
    let errors: Vec<&str> = all.iter().filter_map(|s| s.error.as_deref()).collect();
    if let Some(e) = errors.first() {
        eprintln!("{} client error(s), first: {e}", errors.len());
    }
    let since = |t: Option<Instant>| t.map_or(0.0, |t| (t - r.t_go).as_secs_f64());
    // Elapsed: to the last delivery (not to when the end was noticed).
    let elapsed = all
        .iter()
        .map(|s| since(s.last_recv))
        .fold(0.0f64, f64::max);
    let send_s = all
        .iter()
        .map(|s| since(s.send_done))
        .fold(0.0f64, f64::max);
    let per = |x: u64| {
        if elapsed > 0.0 {
            x as f64 / elapsed
        } else {
            f64::NAN
        }
    };
    let (rate, sent_rate) = (per(deliveries), per(sent));
    let ns_per_delivery = match r.server_cpu {
        Some(c) if deliveries > 0 => c * 1e9 / deliveries as f64,
        _ => f64::NAN,
    };
    let us_per_msg = match r.server_cpu {
        Some(c) if sent > 0 => c * 1e6 / sent as f64,
        _ => f64::NAN,
    };
    let window = (r.t_end - r.t_go).as_secs_f64();
    let mut lat: Vec<u64> = all.iter().flat_map(|s| s.lat_ns.iter().copied()).collect();
    lat.sort_unstable();
    let pct = |q: f64| -> f64 {
        if lat.is_empty() {
            f64::NAN
        } else {
            lat[((lat.len() - 1) as f64 * q).round() as usize] as f64 / 1e3
        }
    };
    let (p50, p99, pmax) = (pct(0.5), pct(0.99), pct(1.0));
    let closed_str = if closed.is_empty() {
        "0".to_string()
    } else {
        let codes: Vec<String> = closed.iter().map(|(c, k)| format!("{c} x{k}")).collect();
        format!("{closed_total} ({})", codes.join(", "))
    };
    let rooms_str = if f.rooms == 0 {
        "rooms 0 (no room: all together)".to_string()
    } else if room_min == room_max {
        format!("rooms {} of {room_min}", f.rooms)
    } else {
        format!("rooms {} of {room_min}-{room_max}", f.rooms)
    };
    println!(
        "{label} fanout: {conn}/{n} clients x {m} msgs x {size} B, {rooms_str}: {deliveries}/{expected} deliveries \
(missing {missing}), {rate:.0} deliveries/s, {sent_rate:.0} sent msg/s, {elapsed:.2} s (sends done {send_s:.2} s), \
order violations {order}, foreign {foreign}, bad {bad}, complete clients {finished}, closed by server {closed_str}, eof {eof}, \
errors {nerr}, server cpu {scpu:.2} s ({ns_per_delivery:.0} ns/delivery, {us_per_msg:.2} us/msg), \
client cpu {ccpu:.2} s, latency p50 {p50:.0} us p99 {p99:.0} us max {pmax:.0} us ({nlat} samples), end {end}",
        label = o.label,
        conn = r.connected,
        n = o.conns,
        m = f.messages,
        size = o.size,
        nerr = errors.len() + r.lost_tasks,
        scpu = r.server_cpu.unwrap_or(f64::NAN),
        ccpu = r.client_cpu.unwrap_or(f64::NAN),
        nlat = lat.len(),
        end = r.end,
    );
    if o.json {
        let num = |x: f64| {
            if x.is_finite() {
                format!("{x:.4}")
            } else {
                "null".to_string()
            }
        };
        let opt = |x: Option<f64>| num(x.unwrap_or(f64::NAN));
        let codes: Vec<String> = closed.iter().map(|(c, k)| format!("\"{c}\":{k}")).collect();
        println!(
            "{{\"label\":\"{}\",\"mode\":\"fanout\",\"connections\":{},\"connected\":{},\"size\":{},\
\"messages\":{},\"text\":{},\"rooms\":{},\"room_size_min\":{room_min},\"room_size_max\":{room_max},\"elapsed_s\":{},\"send_s\":{},\"window_s\":{},\"deliveries\":{deliveries},\
\"expected\":{expected},\"missing\":{missing},\"rate\":{},\"sent\":{sent},\"sent_rate\":{},\
\"order_violations\":{order},\"foreign\":{foreign},\"bad\":{bad},\"complete_clients\":{finished},\"closed\":{{{}}},\
\"closed_total\":{closed_total},\"eof\":{eof},\"errors\":{},\"server_cpu_s\":{},\
\"server_cpu_ns_per_delivery\":{},\"server_cpu_us_per_msg\":{},\"client_cpu_s\":{},\"nodes\":{},\"pace_per_client\":{},\
\"lat_samples\":{},\"lat_p50_us\":{},\"lat_p99_us\":{},\"lat_max_us\":{},\"end\":\"{}\"}}",
            o.label,
            o.conns,
            r.connected,
            o.size,
            f.messages,
            o.text,
            f.rooms,
            num(elapsed),
            num(send_s),
            num(window),
            num(rate),
            num(sent_rate),
            codes.join(","),
            errors.len() + r.lost_tasks,
            opt(r.server_cpu),
            num(ns_per_delivery),
            num(us_per_msg),
            opt(r.client_cpu),
            f.nodes.len(),
            num(f.rate),
            lat.len(),
            num(p50),
            num(p99),
            num(pmax),
            r.end,
        );
    }
}

fn main() {
    let a = Args::from_env();
    if a.flag("--help") || a.flag("-h") {
        println!("{USAGE}");
        return;
    }
    let url = a.value("--url").unwrap_or("ws://127.0.0.1:9001/");
    let (rest, secure) = match (url.strip_prefix("ws://"), url.strip_prefix("wss://")) {
        (Some(rest), _) => (rest, false),
        (_, Some(rest)) => (rest, true),
        _ => {
            eprintln!("only ws:// and wss:// URLs are supported\n{USAGE}");
            std::process::exit(2);
        }
    };
    let (host_port, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let tls = secure.then(|| {
        let Some(ca) = a.value("--ca") else {
            eprintln!("wss:// needs --ca FILE (the CA that signed the server's certificate)");
            std::process::exit(2);
        };
        let host = host_port.rsplit_once(':').map_or(host_port, |(h, _)| h);
        let name = tokio_rustls::rustls::pki_types::ServerName::try_from(host.to_string())
            .unwrap_or_else(|e| panic!("server name {host}: {e}"));
        (
            tokio_rustls::TlsConnector::from(ws_bench::tls::client_config(ca)),
            name,
        )
    });
    let o = Opts {
        host_port: host_port.to_string(),
        path: path.to_string(),
        conns: a.parse_or("--connections", 1usize).max(1),
        size: a.parse_or("--size", 20usize),
        inflight: a.parse_or("--in-flight", 1usize).max(1),
        duration: a.parse_or("--duration", 5.0f64).clamp(0.1, 3600.0),
        warmup: a.parse_or("--warmup", 1.0f64).clamp(0.0, 600.0),
        text: a.flag("--text"),
        json: a.flag("--json"),
        label: a.value("--label").unwrap_or("ws-load").to_string(),
        server_pid: a.value("--server-pid").map(str::to_string),
        messages: match a.value("--payload") {
            None => None,
            Some("chat") => Some(Arc::new(chat::chat_messages(64))),
            Some("json") => Some(Arc::new(vec![chat::json_document(
                a.parse_or("--size", 64 * 1024usize),
            )])),
            Some(other) => {
                eprintln!("--payload {other}: expected chat or json\n{USAGE}");
                std::process::exit(2);
            }
        },
        deflate: a.flag("--deflate"),
        tls,
    };
    if o.deflate && o.messages.is_none() {
        eprintln!("--deflate needs --payload chat|json (compressible messages)\n{USAGE}");
        std::process::exit(2);
    }
    let threads = a.parse_or("--threads", 1usize);
    let rt = if threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build()
    }
    .expect("runtime");
    let o = Arc::new(o);
    if a.flag("--fanout") {
        if o.size < fanout_prefix_len(o.text) {
            eprintln!(
                "--fanout needs --size of at least {} bytes (the sender and sequence number)",
                fanout_prefix_len(o.text)
            );
            std::process::exit(2);
        }
        let latency = a.flag("--latency");
        if latency && (o.text || o.size < fanout_prefix_len(false) + LATENCY_BYTES) {
            eprintln!(
                "--latency needs binary messages of at least {} bytes (sender, sequence number, send time)",
                fanout_prefix_len(false) + LATENCY_BYTES
            );
            std::process::exit(2);
        }
        let mut nodes = vec![o.host_port.clone()];
        nodes.extend(
            a.value("--nodes")
                .unwrap_or("")
                .split(',')
                .filter(|n| !n.is_empty())
                .map(str::to_string),
        );
        epoch();
        let f = FanoutOpts {
            messages: a.parse_or("--messages", 1000u32).max(1),
            limit: a.parse_or("--duration-limit", 60.0f64).clamp(0.1, 3600.0),
            stall: a.parse_or("--stall", 3.0f64).clamp(0.1, 3600.0),
            // More rooms than clients would only add empty ones.
            rooms: a.parse_or("--rooms", 0usize).min(o.conns),
            nodes,
            latency,
            rate: a.parse_or("--rate", 0.0f64).clamp(0.0, 1e7),
        };
        rt.block_on(run_fanout(o, f));
    } else if let Some(n) = a.value("--idle") {
        let n: usize = n.parse().unwrap_or(0);
        let hold = a.parse_or("--hold", 3.0f64).clamp(0.0, 3600.0);
        let burst = a.parse_or("--burst-size", 0usize);
        let burst_conns = a.parse_or("--burst-conns", n);
        rt.block_on(run_idle(o, n, hold, burst, burst_conns));
    } else {
        rt.block_on(run_timed(o, a.flag("--handshakes")));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skipper_handles_any_split() {
        let mut wire = Vec::new();
        for size in [0usize, 3, 200, 70_000] {
            encode_frame(&mut wire, op::BINARY, &vec![7u8; size], None);
        }
        for cut in [1usize, 2, 3, 5, 100, 4096] {
            let mut sk = FrameSkipper::default();
            let mut seen = Vec::new();
            for piece in wire.chunks(cut) {
                sk.feed(piece, |h| seen.push(h.len));
            }
            assert_eq!(seen, vec![0, 3, 200, 70_000], "cut {cut}");
        }
    }

    #[test]
    fn prefix_reader_handles_any_split() {
        let mut wire = Vec::new();
        let mut want = Vec::new();
        for (i, size) in [0usize, 3, 8, 16, 20, 200, 70_000].into_iter().enumerate() {
            let mut p = payload(size, false, false);
            if size >= 8 {
                put_fanout_prefix(&mut p, i as u32, 7 * i as u32, false);
            }
            encode_frame(&mut wire, op::BINARY, &p, None);
            want.push((size, p[..size.min(MAX_PREFIX)].to_vec()));
        }
        encode_frame(&mut wire, op::CLOSE, &1013u16.to_be_bytes(), None);
        want.push((2, 1013u16.to_be_bytes().to_vec()));
        for cut in [1usize, 2, 3, 5, 9, 17, 100, 4096, usize::MAX] {
            let mut r = PrefixReader::default();
            let mut seen = Vec::new();
            for piece in wire.chunks(cut.min(wire.len())) {
                r.feed(piece, |h, p| seen.push((h.len, p.to_vec())));
            }
            assert_eq!(seen, want, "cut {cut}");
        }
    }

    #[test]
    fn fanout_rooms_split_clients_round_robin() {
        let f = |rooms| FanoutOpts {
            messages: 1,
            limit: 1.0,
            stall: 1.0,
            rooms,
            nodes: vec!["127.0.0.1:1".into()],
            latency: false,
            rate: 0.0,
        };
        let none = f(0);
        assert_eq!(none.groups(), 1);
        assert_eq!(none.group_of(7), 0);
        assert_eq!(none.path_of("/ws", 7), "/ws");
        let ten = f(10);
        assert_eq!(ten.groups(), 10);
        assert_eq!(ten.group_of(0), 0);
        assert_eq!(ten.group_of(13), 3);
        assert_eq!(ten.path_of("/ws", 13), "/ws?room=r3");
        assert_eq!(ten.path_of("/ws?x=1", 20), "/ws?x=1&room=r0");
        // 25 clients in 4 rooms: 7, 6, 6, 6.
        let four = f(4);
        let mut sizes = [0usize; 4];
        for i in 0..25 {
            sizes[four.group_of(i)] += 1;
        }
        assert_eq!(sizes, [7, 6, 6, 6]);
    }

    #[test]
    fn fanout_prefix_round_trips() {
        for text in [false, true] {
            for (from, seq) in [(0u32, 0u32), (1, 2), (99, 123_456), (u32::MAX, u32::MAX)] {
                let mut p = payload(20, text, false);
                put_fanout_prefix(&mut p, from, seq, text);
                if text {
                    assert!(std::str::from_utf8(&p).is_ok());
                }
                let n = fanout_prefix_len(text);
                assert_eq!(get_fanout_prefix(&p[..n], text), Some((from, seq)));
            }
        }
        assert_eq!(get_fanout_prefix(b"0000000g00000000", true), None);
        assert_eq!(get_fanout_prefix(&[0; 7], false), None);
    }
}
