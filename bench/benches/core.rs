//! Criterion micro-benchmarks of ws-core's hot paths, side by side with the
//! same step in tungstenite and fastwebsockets, and with a plain memcpy as
//! the floor. Throughput is payload bytes (not wire bytes).
//!
//! Groups:
//! - `decode/<size>`: a server decoding a batch of masked binary frames and
//!   draining whole messages (ws-core via `handle_bytes` and via `read_buf`,
//!   tungstenite `WebSocket::read`, fastwebsockets `read_frame` with and
//!   without `FragmentCollector`), plus `decode_text/1KiB` (UTF-8 checked).
//! - `encode/<size>`: one message to wire bytes (client masks, server not).
//! - `mask/<size>`: `apply_mask` vs `apply_mask_scalar` vs `copy_from_slice`.
//! - `utf8/<kind>`: `Utf8Validator` vs `std::str::from_utf8` (and
//!   `Utf8Bytes::as_str`, which re-validates on every call).
//! - `handshake`: `ServerHandshake::feed` of a typical browser request.

use std::hint::black_box;
use std::io::{self, Read, Write};
use std::pin::Pin;
use std::task::{Context, Poll};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use futures_util::FutureExt;
use ws_bench::payload;
use ws_core::handshake::ServerHandshake;
use ws_core::mask::{apply_mask, apply_mask_scalar};
use ws_core::utf8::Utf8Validator;
use ws_core::{Bytes, Config, Connection, Message, Role, Utf8Bytes};

/// (label, payload size, frames per batch)
const SIZES: &[(&str, usize, usize)] = &[
    ("20B", 20, 4096),
    ("1KiB", 1024, 512),
    ("16KiB", 16 * 1024, 64),
    ("1MiB", 1024 * 1024, 4),
];

const KEY: [u8; 4] = ws_bench::MASK_KEY;

/// An in-memory socket that replays `data` forever (it holds whole frames,
/// so wrapping around stays on a frame boundary) and discards writes. Each
/// read returns as much as asked for, up to the end of `data`.
struct Replay {
    data: Vec<u8>,
    pos: usize,
}

impl Replay {
    fn new(data: Vec<u8>) -> Self {
        Replay { data, pos: 0 }
    }
    fn fill(&mut self, out: &mut [u8]) -> usize {
        let n = out.len().min(self.data.len() - self.pos);
        out[..n].copy_from_slice(&self.data[self.pos..self.pos + n]);
        self.pos = (self.pos + n) % self.data.len();
        n
    }
    /// Appends up to `max` bytes to a BytesMut (like a socket read into
    /// spare capacity).
    fn fill_bytes(&mut self, out: &mut ws_core::BytesMut, max: usize) -> usize {
        let n = max.min(self.data.len() - self.pos);
        out.extend_from_slice(&self.data[self.pos..self.pos + n]);
        self.pos = (self.pos + n) % self.data.len();
        n
    }
}

impl Read for Replay {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        Ok(self.fill(buf))
    }
}

impl Write for Replay {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl tokio::io::AsyncRead for Replay {
    fn poll_read(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let n = buf.remaining().min(this.data.len() - this.pos);
        buf.put_slice(&this.data[this.pos..this.pos + n]);
        this.pos = (this.pos + n) % this.data.len();
        Poll::Ready(Ok(()))
    }
}

impl tokio::io::AsyncWrite for Replay {
    fn poll_write(self: Pin<&mut Self>, _: &mut Context<'_>, b: &[u8]) -> Poll<io::Result<usize>> {
        Poll::Ready(Ok(b.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

fn decode(c: &mut Criterion) {
    for &(label, size, frames) in SIZES {
        decode_one(c, "decode", label, size, frames, false);
    }
    decode_one(c, "decode_text", "1KiB", 1024, 512, true);
    decode_one(c, "decode_text", "16KiB", 16 * 1024, 64, true);
}

fn decode_one(c: &mut Criterion, group: &str, label: &str, size: usize, frames: usize, text: bool) {
    let wire = ws_bench::client_frames(size, frames, text);
    let mut g = c.benchmark_group(format!("{group}/{label}"));
    g.throughput(Throughput::Bytes((size * frames) as u64));
    if size >= 1 << 20 {
        g.sample_size(20);
    }

    // ws-core, the copying entry point: the whole batch at once.
    let mut conn = Connection::new(Role::Server, Config::default());
    g.bench_function("ws-core/handle_bytes", |b| {
        b.iter(|| {
            conn.handle_bytes(&wire);
            let mut n = 0;
            while let Some(m) = conn.poll_message().expect("valid frames") {
                n += m.payload().len();
            }
            assert_eq!(n, size * frames);
        })
    });

    // ws-core, the zero-copy entry point, the way an adapter uses it: each
    // "socket read" fills the spare capacity that read_buf offers.
    let mut conn = Connection::new(Role::Server, Config::default());
    let mut sock = Replay::new(wire.clone());
    g.bench_function("ws-core/read_buf", |b| {
        b.iter(|| {
            let mut got = 0;
            while got < frames {
                let buf = conn.read_buf();
                let spare = buf.capacity() - buf.len();
                sock.fill_bytes(buf, spare);
                while let Some(m) = conn.poll_message().expect("valid frames") {
                    black_box(m.payload().len());
                    got += 1;
                }
            }
        })
    });

    // tungstenite: WebSocket over an in-memory stream, read() per message.
    let mut ws = tungstenite::protocol::WebSocket::from_raw_socket(
        Replay::new(wire.clone()),
        tungstenite::protocol::Role::Server,
        None,
    );
    g.bench_function("tungstenite/read", |b| {
        b.iter(|| {
            for _ in 0..frames {
                let m = ws.read().expect("valid frames");
                black_box(m.len());
            }
        })
    });

    // fastwebsockets: WebSocket::read_frame (frames, no reassembly).
    let mut fws = fastwebsockets::WebSocket::after_handshake(
        Replay::new(wire.clone()),
        fastwebsockets::Role::Server,
    );
    g.bench_function("fastwebsockets/read_frame", |b| {
        b.iter(|| {
            for _ in 0..frames {
                let f = fws
                    .read_frame()
                    .now_or_never()
                    .expect("in-memory stream is always ready")
                    .expect("valid frames");
                black_box(f.payload.len());
            }
        })
    });

    // fastwebsockets: FragmentCollector (whole messages, UTF-8 checked), as
    // its docs recommend for correctness.
    let mut fc =
        fastwebsockets::FragmentCollector::new(fastwebsockets::WebSocket::after_handshake(
            Replay::new(wire.clone()),
            fastwebsockets::Role::Server,
        ));
    g.bench_function("fastwebsockets/FragmentCollector", |b| {
        b.iter(|| {
            for _ in 0..frames {
                let f = fc
                    .read_frame()
                    .now_or_never()
                    .expect("in-memory stream is always ready")
                    .expect("valid frames");
                black_box(f.payload.len());
            }
        })
    });

    // The floor: copy the wire bytes once (what the socket read costs).
    let mut dst = vec![0u8; wire.len()];
    g.bench_function("memcpy-wire", |b| {
        b.iter(|| dst.copy_from_slice(black_box(&wire)))
    });
    g.finish();
}

fn encode(c: &mut Criterion) {
    for &(label, size, _) in SIZES {
        let p = payload(size, false, false);
        let pb = Bytes::from(p.clone());
        let mut g = c.benchmark_group(format!("encode/{label}"));
        g.throughput(Throughput::Bytes(size as u64));
        for role in [Role::Client, Role::Server] {
            let mut conn = Connection::new(role, Config::default());
            let name = match role {
                Role::Client => "ws-core/client-masked",
                Role::Server => "ws-core/server",
            };
            g.bench_function(name, |b| {
                b.iter(|| {
                    conn.send_binary(black_box(&p)).expect("open");
                    let n = conn.pending_transmit().len();
                    conn.advance_transmit(n);
                })
            });
        }
        let mut out = Vec::with_capacity(size + 14);
        g.bench_function("tungstenite/server-Frame::format", |b| {
            b.iter(|| {
                out.clear();
                let f = tungstenite::protocol::frame::Frame::message(
                    pb.clone(),
                    tungstenite::protocol::frame::coding::OpCode::Data(
                        tungstenite::protocol::frame::coding::Data::Binary,
                    ),
                    true,
                );
                f.format(&mut out).expect("vec write");
                black_box(out.len());
            })
        });
        let mut dst = vec![0u8; size];
        g.bench_function("memcpy", |b| b.iter(|| dst.copy_from_slice(black_box(&p))));
        g.finish();
    }
}

fn mask(c: &mut Criterion) {
    for &(label, size, _) in SIZES {
        let src = payload(size, false, false);
        let mut buf = src.clone();
        let mut g = c.benchmark_group(format!("mask/{label}"));
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_function("apply_mask", |b| {
            b.iter(|| apply_mask(black_box(&mut buf), KEY, 0))
        });
        g.bench_function("apply_mask/offset1", |b| {
            b.iter(|| apply_mask(black_box(&mut buf[1..]), KEY, 1))
        });
        g.bench_function("apply_mask_scalar", |b| {
            b.iter(|| apply_mask_scalar(black_box(&mut buf), KEY, 0))
        });
        g.bench_function("memcpy", |b| {
            b.iter(|| buf.copy_from_slice(black_box(&src)))
        });
        g.finish();
    }
}

fn utf8(c: &mut Criterion) {
    for (label, size, mixed) in [
        ("ascii-1KiB", 1024, false),
        ("ascii-64KiB", 64 * 1024, false),
        ("mixed-1KiB", 1024, true),
        ("mixed-64KiB", 64 * 1024, true),
    ] {
        let text = payload(size, true, mixed);
        let owned = Utf8Bytes::from(std::str::from_utf8(&text).expect("utf8"));
        let msg = Message::Text(owned.clone());
        let mut g = c.benchmark_group(format!("utf8/{label}"));
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_function("ws-core/Utf8Validator", |b| {
            b.iter(|| {
                let mut v = Utf8Validator::new();
                v.feed(black_box(&text)).expect("valid");
                v.finish().expect("valid");
            })
        });
        g.bench_function("std/from_utf8", |b| {
            b.iter(|| std::str::from_utf8(black_box(&text)).is_ok())
        });
        // What an application pays each time it looks at a received text
        // message as &str (Utf8Bytes::as_str re-validates with std).
        g.bench_function("ws-core/Utf8Bytes::as_str", |b| {
            b.iter(|| black_box(&owned).as_str().len())
        });
        // ... and what echoing it costs: send(&Message::Text) goes through
        // Deref<Target = str>, i.e. another full validation, then the copy.
        let mut conn = Connection::new(Role::Server, Config::default());
        g.bench_function("ws-core/send(Text)", |b| {
            b.iter(|| {
                conn.send(black_box(&msg)).expect("open");
                let n = conn.pending_transmit().len();
                conn.advance_transmit(n);
            })
        });
        g.finish();
    }
}

const BROWSER_REQUEST: &[u8] = b"GET /chat?room=1 HTTP/1.1\r\n\
Host: example.com:8080\r\n\
Connection: Upgrade\r\n\
Pragma: no-cache\r\n\
Cache-Control: no-cache\r\n\
User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36\r\n\
Upgrade: websocket\r\n\
Origin: http://example.com:8080\r\n\
Sec-WebSocket-Version: 13\r\n\
Accept-Encoding: gzip, deflate, br, zstd\r\n\
Accept-Language: en-GB,en-US;q=0.9,en;q=0.8\r\n\
Cookie: session=6f1c2a9be0d54f4f9a4f0a3b7d6e5c21; theme=dark\r\n\
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n";

fn handshake(c: &mut Criterion) {
    let mut g = c.benchmark_group("handshake");
    g.throughput(Throughput::Bytes(BROWSER_REQUEST.len() as u64));
    g.bench_function("ws-core/ServerHandshake::feed", |b| {
        b.iter(|| {
            let mut hs = ServerHandshake::new();
            let req = hs
                .feed(black_box(BROWSER_REQUEST))
                .expect("valid")
                .expect("complete");
            black_box(req.path().len());
        })
    });
    g.bench_function("ws-core/feed+accept", |b| {
        let accept = ws_core::handshake::Accept::new();
        b.iter(|| {
            let mut hs = ServerHandshake::new();
            let req = hs
                .feed(black_box(BROWSER_REQUEST))
                .expect("valid")
                .expect("complete");
            black_box(req.accept(&accept).expect("upgrade").len());
        })
    });
    g.bench_with_input(
        BenchmarkId::new("httparse/parse", "browser"),
        BROWSER_REQUEST,
        |b, req| {
            b.iter(|| {
                let mut headers = [httparse::EMPTY_HEADER; 32];
                let mut r = httparse::Request::new(&mut headers);
                black_box(r.parse(black_box(req)).expect("valid").is_complete());
            })
        },
    );
    g.finish();
}

/// What splitting a connection costs per message on the data path: the same
/// work through a whole `Connection` and through its `Receiver` / `Sender`
/// halves (one atomic load per call, no lock).
fn split(c: &mut Criterion) {
    const FRAMES: usize = 1024;
    let wire = ws_bench::client_frames(20, FRAMES, false);
    let mut g = c.benchmark_group("split/decode-20B");
    g.throughput(Throughput::Elements(FRAMES as u64));
    let mut whole = Connection::new(Role::Server, Config::default());
    g.bench_function("Connection", |b| {
        b.iter(|| {
            whole.handle_bytes(&wire);
            let mut n = 0;
            while let Some(m) = whole.poll_message().expect("valid frames") {
                n += black_box(m.payload().len());
            }
            assert_eq!(n, 20 * FRAMES);
        })
    });
    let (mut rx, _tx) = Connection::new(Role::Server, Config::default()).split();
    g.bench_function("Receiver", |b| {
        b.iter(|| {
            rx.handle_bytes(&wire);
            let mut n = 0;
            while let Some(m) = rx.poll_message().expect("valid frames") {
                n += black_box(m.payload().len());
            }
            assert_eq!(n, 20 * FRAMES);
        })
    });
    g.finish();

    let p = payload(20, false, false);
    let mut g = c.benchmark_group("split/encode-20B");
    g.throughput(Throughput::Elements(1));
    let mut whole = Connection::new(Role::Server, Config::default());
    g.bench_function("Connection", |b| {
        b.iter(|| {
            whole.send_binary(black_box(&p)).expect("open");
            let n = whole.pending_transmit().len();
            whole.advance_transmit(n);
        })
    });
    let (_rx, mut tx) = Connection::new(Role::Server, Config::default()).split();
    g.bench_function("Sender", |b| {
        b.iter(|| {
            tx.send_binary(black_box(&p)).expect("open");
            let n = tx.pending_transmit().len();
            tx.advance_transmit(n);
        })
    });
    g.finish();
}

criterion_group!(benches, decode, encode, mask, utf8, handshake, split);
criterion_main!(benches);
