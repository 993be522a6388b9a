//! The chat (or echo) server on the runtime of your choice.
//!
//! ```text
//! cargo run --release --bin ws-server                       # chat on 127.0.0.1:8080, tokio
//! cargo run --release --bin ws-server -- --mode echo --runtime smol --addr 127.0.0.1:9001
//! cargo run --release --bin ws-server -- --tls-cert cert.pem --tls-key key.pem   # https:// and wss://
//! cargo run --release --bin ws-server -- --allow-origin https://chat.example   # only that page may connect
//! cargo run --release --bin ws-server -- --deflate   # permessage-deflate for clients that offer it
//! cargo run --release --bin ws-server -- --backplane redis://127.0.0.1:6379/ --node-id a   # one node of a cluster
//! cargo run --release --bin ws-server -- --metrics --log debug   # /metrics for this host, every connection logged
//! ```

use std::time::Duration;

use clap::Parser;
use examples::obs::{MetricsAccess, WithMetrics, init_logging};
use examples::{Mode, Runtime, deflate_config, origin_check, run_server, server_tls};
use ws_core::Config;
use ws_core::server::hub::FlowControl;

/// A WebSocket chat/echo server: the test page on /, WebSocket on /ws.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    addr: String,
    /// `chat`: page on `/`, every message on `/ws` broadcast to all clients.
    /// `echo`: every path upgrades, every message goes back to its sender.
    #[arg(long, value_enum, default_value_t = Mode::Chat)]
    mode: Mode,
    /// Which adapter crate and runtime to run on.
    #[arg(long, value_enum, default_value_t = Runtime::Tokio)]
    runtime: Runtime,
    /// Worker threads for the async runtimes (1 = single-threaded).
    #[arg(long, default_value_t = std::thread::available_parallelism().map_or(1, |n| n.get()))]
    threads: usize,
    /// Chat flow control: a client whose broadcast queue holds more than
    /// this many messages is "above the mark", and senders pause until it
    /// drains.
    #[arg(long, default_value_t = FlowControl::default().get_high_water_messages())]
    high_water_messages: usize,
    /// The same mark in bytes.
    #[arg(long, default_value_t = FlowControl::default().get_high_water_bytes())]
    high_water_bytes: usize,
    /// Hard bound of one client's queue in bytes: past it the client is
    /// closed with 1013 at once.
    #[arg(long, default_value_t = FlowControl::default().get_max_queued_bytes())]
    max_queued_bytes: usize,
    /// Milliseconds a client's queue may stay above the mark without
    /// draining before the client is closed with 1013.
    #[arg(long, default_value_t = FlowControl::default().get_slow_client_timeout().as_millis() as u64)]
    slow_client_timeout_ms: u64,
    /// Serve https:// and wss:// with this PEM certificate chain (leaf
    /// first, then intermediates); needs --tls-key.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<std::path::PathBuf>,
    /// The PEM private key (PKCS#8, PKCS#1 or SEC1) of --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<std::path::PathBuf>,
    /// Allow WebSocket upgrades only from this page origin
    /// (`scheme://host[:port]`; repeatable; `*` allows any). Without it, the
    /// chat allows only its own host's pages and echo allows any. Others get
    /// 403.
    #[arg(long = "allow-origin", value_name = "ORIGIN")]
    allow_origin: Vec<String>,
    /// Refuse (403) upgrades that carry no `Origin` header. Browsers always
    /// send one; command-line clients usually don't, so they are allowed by
    /// default.
    #[arg(long)]
    require_origin: bool,
    /// Accept permessage-deflate (RFC 7692) from clients that offer it. The
    /// chat also asks for server_no_context_takeover, so a broadcast is
    /// compressed once for every recipient.
    #[arg(long)]
    deflate: bool,
    /// Join a cluster of ws-server processes through this Redis server
    /// (`redis://HOST:PORT/`): broadcasts and room messages reach the
    /// clients of every node.
    #[arg(long, value_name = "URL")]
    backplane: Option<String>,
    /// This node's name in the cluster (logs and stream entries).
    #[arg(long, value_name = "NAME", requires = "backplane")]
    node_id: Option<String>,
    /// The Redis stream the cluster shares (nodes on the same stream form
    /// one cluster).
    #[arg(long, value_name = "KEY", default_value = ws_redis::DEFAULT_STREAM, requires = "backplane")]
    stream: String,
    /// Entries the stream keeps (approximately): how far behind a node may
    /// fall and still lose nothing.
    #[arg(long, default_value_t = ws_redis::DEFAULT_MAX_LEN)]
    stream_max_len: usize,
    /// Serve the server's counters on `/metrics` in the Prometheus text
    /// format (connections, messages and bytes, handshake failures by
    /// status, closes by code, slow-client drops, broadcast queue depth).
    /// Off by default: a public chat need not tell the world its traffic.
    /// `--metrics` alone serves this host only (loopback peers; others get
    /// 403); `--metrics=any` serves anyone.
    #[arg(long, value_enum, value_name = "WHO", num_args = 0..=1, require_equals = true,
          default_missing_value = "loopback")]
    metrics: Option<MetricsAccess>,
    /// What to log to stderr, as a `tracing` filter: `info` (refused
    /// handshakes, slow clients dropped, timeouts, TLS errors), `debug`
    /// (every connection: its span with peer, runtime and path, its close
    /// codes both ways), `off`, or per target (`ws_core=debug,info`).
    /// `RUST_LOG` is read when the flag is not given.
    #[arg(long, value_name = "FILTER", env = "RUST_LOG", default_value = "info")]
    log: String,
    /// Serve at most this many connections at once (upgraded or not); the
    /// next get 503 Service Unavailable with Retry-After before any upgrade.
    /// No limit by default but the process's file descriptors.
    #[arg(long, value_name = "N")]
    max_connections: Option<usize>,
    /// How long a client has to send its request head (and finish TLS)
    /// before the connection is dropped.
    #[arg(long, value_name = "MS", default_value_t = Config::default().get_handshake_timeout().as_millis() as u64)]
    handshake_timeout_ms: u64,
    /// Ping every client idle for this long; one that does not answer within
    /// --keepalive-timeout-ms is dropped (off by default).
    #[arg(long, value_name = "MS")]
    keepalive_ms: Option<u64>,
    /// How long a ping waits for its pong (with --keepalive-ms).
    #[arg(
        long,
        value_name = "MS",
        requires = "keepalive_ms",
        default_value_t = 20_000
    )]
    keepalive_timeout_ms: u64,
}

/// glibc raises its mmap threshold each time it frees a large mmapped
/// block; after that, the buffers of a burst of large messages come from the
/// heap and stay there once freed. Pinning the threshold (which also turns
/// that adjustment off) lets the server's RSS fall back to its idle size
/// after a burst, as ws-core releases the buffers.
///
/// The trim threshold goes up at the same time: glibc gives the top of the
/// heap back to the kernel whenever more than 128 KiB of it is free, and a
/// server that frees its connections' buffers whenever they go quiet (as
/// ws-core does) would then fault the same pages back in, zeroed, on the
/// next message. Over TLS (more buffers per connection) that cost a quarter
/// of the server's CPU in the wss echo benchmark (bench/tls.sh). Large
/// buffers are mmapped and still go back at once.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn pin_mmap_threshold() {
    // SAFETY: mallopt only sets allocator tunables; called before any
    // other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 8 * 1024 * 1024);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn pin_mmap_threshold() {}

fn main() {
    pin_mmap_threshold();
    let args = Args::parse();
    if let Err(e) = init_logging(&args.log) {
        eprintln!("ws-server: {e}");
        std::process::exit(2);
    }
    let flow = FlowControl::default()
        .high_water(args.high_water_messages, args.high_water_bytes)
        .max_queued_bytes(args.max_queued_bytes)
        .slow_client_timeout(Duration::from_millis(args.slow_client_timeout_ms));
    let handler = match origin_check(args.mode.into(), &args.allow_origin, args.require_origin) {
        Ok(handler) => WithMetrics::new(handler, args.metrics),
        Err(e) => {
            eprintln!("ws-server: {e}");
            std::process::exit(2);
        }
    };
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => match server_tls(cert, key) {
            Ok(config) => Some(config),
            Err(e) => {
                eprintln!("ws-server: TLS: {e}");
                std::process::exit(1);
            }
        },
        _ => None,
    };
    let config = deflate_config(args.deflate, args.mode == Mode::Chat)
        .handshake_timeout(Duration::from_millis(args.handshake_timeout_ms))
        .keepalive(args.keepalive_ms.map(Duration::from_millis))
        .keepalive_timeout(Duration::from_millis(args.keepalive_timeout_ms));
    let backplane = match args.backplane.as_deref().map(ws_redis::RedisBackplane::new) {
        None => None,
        Some(Ok(b)) => {
            let b = b.stream(args.stream).max_len(args.stream_max_len);
            Some(match args.node_id {
                Some(node) => b.node_id(node),
                None => b,
            })
        }
        Some(Err(e)) => {
            eprintln!("ws-server: --backplane: {e}");
            std::process::exit(2);
        }
    };
    if let Err(e) = run_server(
        args.runtime,
        &args.addr,
        handler,
        args.threads,
        flow,
        tls,
        config,
        backplane,
        args.max_connections,
    ) {
        eprintln!("ws-server: {e}");
        std::process::exit(1);
    }
}
