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
//!
//! With `--server-pid PID` it samples the server's utime+stime at the start
//! and end of the measured window and reports CPU per message.

use std::collections::VecDeque;
use std::io::{self, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt, Interest};
use tokio::net::TcpStream;
use ws_bench::{
    Args, RawHeader, encode_frame, head_end, op, parse_header, payload, proc_cpu_secs, secs,
};

const USAGE: &str = "usage: ws-load --url ws://127.0.0.1:PORT/ [--connections N] [--size BYTES] \
[--in-flight K] [--duration SECS] [--warmup SECS] [--text|--binary] [--json] [--threads T] \
[--server-pid PID] [--label NAME] | --handshakes | --idle N [--hold SECS] [--burst-size BYTES] [--burst-conns M]";

#[derive(Debug, Clone)]
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
}

#[derive(Debug, Default)]
struct Stats {
    msgs: u64,
    bytes: u64,
    errors: u64,
    lat_ns: Vec<u64>,
}

impl Stats {
    fn merge(&mut self, o: Stats) {
        self.msgs += o.msgs;
        self.bytes += o.bytes;
        self.errors += o.errors;
        self.lat_ns.extend(o.lat_ns);
    }
}

/// At most this many latency samples per connection (bounded memory).
const MAX_SAMPLES: usize = 2_000_000;

fn request(o: &Opts) -> Vec<u8> {
    format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        o.path, o.host_port
    )
    .into_bytes()
}

/// Connects and upgrades; returns the stream and bytes read past the head.
async fn connect(o: &Opts, req: &[u8]) -> io::Result<(TcpStream, Vec<u8>)> {
    let mut s = TcpStream::connect(&o.host_port).await?;
    s.set_nodelay(true)?;
    s.write_all(req).await?;
    let mut buf = Vec::with_capacity(1024);
    loop {
        if let Some(n) = head_end(&buf) {
            if !buf.starts_with(b"HTTP/1.1 101") {
                return Err(io::Error::other(format!(
                    "upgrade refused: {}",
                    String::from_utf8_lossy(&buf[..n.min(80)])
                )));
            }
            return Ok((s, buf.split_off(n)));
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

async fn echo_conn(o: Arc<Opts>, t0: Instant, t1: Instant) -> io::Result<Stats> {
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
    let mut sent: VecDeque<Instant> = (0..o.inflight).map(|_| now).collect();
    let mut skipper = FrameSkipper::default();
    let mut rbuf = vec![0u8; 256 * 1024];
    let mut finished = false;
    let deadline = tokio::time::sleep_until(t1.into());
    tokio::pin!(deadline);

    let mut on_data = |data: &[u8], st: &mut Stats, pending: &mut usize, finished: &mut bool| {
        let now = Instant::now();
        let in_window = now >= t0 && now < t1;
        skipper.feed(data, |h| match h.opcode {
            op::TEXT | op::BINARY if h.fin && h.len == o.size && h.opcode == opcode => {
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
                    *pending += flen;
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
            let (mut s, mut left) = connect(&o, &req).await?;
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
            let _ = s.set_zero_linger();
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
\"server_cpu_s\":{},\"server_cpu_us_per_op\":{},\"client_cpu_s\":{},\"errors\":{errors}}}",
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

fn main() {
    let a = Args::from_env();
    if a.flag("--help") || a.flag("-h") {
        println!("{USAGE}");
        return;
    }
    let url = a.value("--url").unwrap_or("ws://127.0.0.1:9001/");
    let Some(rest) = url.strip_prefix("ws://") else {
        eprintln!("only ws:// URLs are supported\n{USAGE}");
        std::process::exit(2);
    };
    let (host_port, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
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
    };
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
    if let Some(n) = a.value("--idle") {
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
}
