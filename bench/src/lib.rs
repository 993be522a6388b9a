//! Shared pieces of the ws-bench instruments: tiny flag parsing, a minimal
//! hand-written WebSocket frame codec (used by `echo-raw` and `ws-load`, so
//! neither depends on the library under test), and /proc readers.
//!
//! Nothing here validates UTF-8 or enforces limits: it is the "physical
//! limit" framing used to measure everybody else.

use std::time::Duration;

/// Minimal `--flag value` / `--switch` parser (no dependency, no magic).
pub struct Args {
    args: Vec<String>,
}

impl Args {
    /// The process arguments, without the program name.
    pub fn from_env() -> Self {
        Args {
            args: std::env::args().skip(1).collect(),
        }
    }

    /// Whether `--name` is present.
    pub fn flag(&self, name: &str) -> bool {
        self.args.iter().any(|a| a == name)
    }

    /// The value after `--name`, if any.
    pub fn value(&self, name: &str) -> Option<&str> {
        let i = self.args.iter().position(|a| a == name)?;
        self.args.get(i + 1).map(String::as_str)
    }

    /// The value after `--name` parsed as `T`, or `default`; exits with a
    /// message on a malformed value.
    pub fn parse_or<T: std::str::FromStr>(&self, name: &str, default: T) -> T {
        match self.value(name) {
            None => default,
            Some(v) => v.parse().unwrap_or_else(|_| {
                eprintln!("invalid value for {name}: {v:?}");
                std::process::exit(2)
            }),
        }
    }

    /// `--addr` for the echo servers (default 127.0.0.1:9001).
    pub fn addr(&self) -> String {
        self.value("--addr").unwrap_or("127.0.0.1:9001").to_string()
    }
}

/// Runs an echo server the way every `echo-*` binary does, so they differ
/// only in their per-connection code: a single-threaded tokio runtime bound
/// to `--addr`, Nagle off, one task per accepted connection running
/// `handle(stream)`. Never returns.
pub fn serve_echo<F, Fut>(name: &str, handle: F)
where
    F: Fn(tokio::net::TcpStream) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let addr = Args::from_env().addr();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(&addr).await.expect("bind");
        eprintln!("{name} listening on {addr}");
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            tokio::spawn(handle(stream));
        }
    });
}

/// Parses a duration in seconds (fractions allowed).
pub fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s.max(0.0))
}

pub mod chat;
pub mod tls;

/// Opcode values (RFC 6455 section 5.2).
pub mod op {
    /// Continuation frame.
    pub const CONT: u8 = 0x0;
    /// Text frame.
    pub const TEXT: u8 = 0x1;
    /// Binary frame.
    pub const BINARY: u8 = 0x2;
    /// Close frame.
    pub const CLOSE: u8 = 0x8;
    /// Ping frame.
    pub const PING: u8 = 0x9;
    /// Pong frame.
    pub const PONG: u8 = 0xA;
}

/// A parsed frame header (no validation beyond what is needed to skip it).
#[derive(Debug, Clone, Copy)]
pub struct RawHeader {
    /// FIN bit.
    pub fin: bool,
    /// Opcode nibble.
    pub opcode: u8,
    /// Mask key if the frame is masked.
    pub mask: Option<[u8; 4]>,
    /// Payload length.
    pub len: usize,
    /// Header length in bytes.
    pub header_len: usize,
}

/// Parses a frame header at the start of `buf`; `None` if incomplete.
#[inline]
pub fn parse_header(buf: &[u8]) -> Option<RawHeader> {
    if buf.len() < 2 {
        return None;
    }
    let (b0, b1) = (buf[0], buf[1]);
    let (len, mut pos) = match b1 & 0x7f {
        126 => {
            if buf.len() < 4 {
                return None;
            }
            (u16::from_be_bytes([buf[2], buf[3]]) as usize, 4)
        }
        127 => {
            if buf.len() < 10 {
                return None;
            }
            let mut b = [0u8; 8];
            b.copy_from_slice(&buf[2..10]);
            (u64::from_be_bytes(b) as usize, 10)
        }
        n => (n as usize, 2),
    };
    let mask = if b1 & 0x80 != 0 {
        if buf.len() < pos + 4 {
            return None;
        }
        let k = [buf[pos], buf[pos + 1], buf[pos + 2], buf[pos + 3]];
        pos += 4;
        Some(k)
    } else {
        None
    };
    Some(RawHeader {
        fin: b0 & 0x80 != 0,
        opcode: b0 & 0x0f,
        mask,
        len,
        header_len: pos,
    })
}

/// Appends a frame header to `out`.
#[inline]
pub fn put_header(out: &mut Vec<u8>, opcode: u8, len: usize, mask: Option<[u8; 4]>) {
    let mbit = if mask.is_some() { 0x80 } else { 0 };
    out.push(0x80 | opcode);
    if len < 126 {
        out.push(mbit | len as u8);
    } else if len <= 0xffff {
        out.push(mbit | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(mbit | 127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    if let Some(k) = mask {
        out.extend_from_slice(&k);
    }
}

/// XORs `buf` with `key` starting at key phase 0 (ws-core's masking).
#[inline]
pub fn xor_mask(buf: &mut [u8], key: [u8; 4]) {
    ws_core::mask::apply_mask(buf, key, 0);
}

/// Appends one complete frame (header and payload, masked if `mask`).
pub fn encode_frame(out: &mut Vec<u8>, opcode: u8, payload: &[u8], mask: Option<[u8; 4]>) {
    put_header(out, opcode, payload.len(), mask);
    let start = out.len();
    out.extend_from_slice(payload);
    if let Some(k) = mask {
        xor_mask(&mut out[start..], k);
    }
}

/// The mask key of [`client_frames`] (any fixed key: the benchmarks and
/// the instruction counts must see the same bytes every run).
pub const MASK_KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

/// `frames` masked text or binary frames of `size` bytes (a [`payload`]),
/// as a client sends them.
pub fn client_frames(size: usize, frames: usize, text: bool) -> Vec<u8> {
    let p = payload(size, text, false);
    let mut one = Vec::new();
    encode_frame(
        &mut one,
        if text { op::TEXT } else { op::BINARY },
        &p,
        Some(MASK_KEY),
    );
    one.repeat(frames)
}

/// A deterministic payload of `size` bytes: ASCII for text, all byte values
/// for binary, or (`mixed`) text with 2-, 3- and 4-byte UTF-8 characters.
pub fn payload(size: usize, text: bool, mixed: bool) -> Vec<u8> {
    if !text {
        return (0..size).map(|i| (i * 31 + 7) as u8).collect();
    }
    let mut s = String::with_capacity(size + 4);
    let pieces: &[&str] = if mixed {
        &["hello ", "κόσμε ", "€ ", "日本語 ", "𝄞 ", "ascii text, "]
    } else {
        &["The quick brown fox jumps over the lazy dog. "]
    };
    let mut i = 0;
    while s.len() < size {
        let p = pieces[i % pieces.len()];
        if s.len() + p.len() <= size {
            s.push_str(p);
        } else {
            let room = size - s.len();
            s.extend(std::iter::repeat_n('x', room));
        }
        i += 1;
    }
    debug_assert_eq!(s.len(), size);
    s.into_bytes()
}

pub use ws_core::handshake::accept_key;

/// Finds the end of an HTTP head (`\r\n\r\n`); returns its length.
pub fn head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4)
}

/// utime + stime of `pid` in seconds (from /proc/PID/stat; USER_HZ = 100).
pub fn proc_cpu_secs(pid: &str) -> Option<f64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name; utime is field 14.
    let rest = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = f.get(11)?.parse().ok()?;
    let stime: f64 = f.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

/// VmRSS of `pid` in KiB (from /proc/PID/status).
pub fn proc_rss_kib(pid: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = s.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip() {
        for size in [0, 5, 125, 126, 65535, 65536, 100_000] {
            let p = payload(size, true, true);
            assert!(std::str::from_utf8(&p).is_ok());
            let mut out = Vec::new();
            encode_frame(&mut out, op::TEXT, &p, Some([1, 2, 3, 4]));
            let h = parse_header(&out).unwrap();
            assert_eq!(h.len, size);
            let mut body = out[h.header_len..].to_vec();
            xor_mask(&mut body, h.mask.unwrap());
            assert_eq!(body, p);
        }
    }

    #[test]
    fn accept_key_matches_rfc_example() {
        assert_eq!(
            accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }
}
