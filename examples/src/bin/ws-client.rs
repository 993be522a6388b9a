//! The interactive client: each stdin line is sent as a text message, each
//! received message is printed on its own line; end of input closes the
//! connection cleanly (code 1000) and exits 0.
//!
//! ```text
//! cargo run --release --bin ws-client -- ws://127.0.0.1:8080/ws --runtime blocking
//! ```
//!
//! `wss://` URLs verify the server against the default roots (Mozilla's,
//! compiled in); `--ca FILE` (PEM, repeatable) adds roots, for a private
//! CA:
//!
//! ```text
//! cargo run --release --bin ws-client -- wss://localhost:9443/ws --ca ca.pem
//! ```
//!
//! `--insecure` skips the verification altogether (and says so on stderr):
//! for a throwaway test certificate only.
//!
//! Through an HTTP proxy (`CONNECT`; for `wss://` TLS to the server runs
//! inside the tunnel): `--proxy http://user:pass@proxy:3128`, or
//! `--proxy-from-env` to use `wss_proxy` / `ws_proxy`, `https_proxy`,
//! `http_proxy`, `all_proxy` and `no_proxy` as python-websockets does
//! (the environment is not read otherwise).
//!
//! ```text
//! cargo run --release --bin ws-client -- wss://example.com/ws --proxy http://proxy:3128
//! https_proxy=http://proxy:3128 cargo run --release --bin ws-client -- wss://example.com/ws --proxy-from-env
//! ```
//!
//! With `--reconnect` it survives the server going away: it connects and
//! reconnects with exponential backoff and jitter (100 ms doubling up to
//! 30 s), printing `[reconnected]` on stderr each time, and stops for good
//! when the server refuses the upgrade with a 4xx status (printing
//! `[gave up reconnecting: ...]` if it was connected before; either way it
//! exits 1 with the error).

use std::path::PathBuf;

use clap::Parser;
use examples::{Runtime, client_proxy, client_tls, deflate_config, run_client};
use ws_core::rt::reconnect::Reconnect;

/// An interactive WebSocket client: stdin lines out, messages in.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// The server's URL, e.g. ws://127.0.0.1:8080/ws or wss://host/ws.
    url: String,
    /// Which adapter crate and runtime to run on.
    #[arg(long, value_enum, default_value_t = Runtime::Tokio)]
    runtime: Runtime,
    /// Reconnect when the connection is lost (exponential backoff with
    /// jitter; a 4xx refusal at the upgrade ends it).
    #[arg(long)]
    reconnect: bool,
    /// For wss://: also trust the CA certificate(s) in FILE (PEM), besides
    /// the default roots. Repeatable.
    #[arg(long, value_name = "FILE")]
    ca: Vec<PathBuf>,
    /// For wss://: DO NOT verify the server's certificate (anyone on the
    /// path can read and change the connection). For test certificates
    /// only; prints a warning.
    #[arg(long, conflicts_with = "ca")]
    insecure: bool,
    /// Connect through this HTTP proxy (CONNECT), e.g.
    /// http://user:pass@proxy:3128 (credentials percent-encoded).
    #[arg(long, value_name = "URL")]
    proxy: Option<String>,
    /// Use the proxy the environment names for the URL (wss_proxy/ws_proxy,
    /// https_proxy, http_proxy, all_proxy; no_proxy exempts hosts).
    #[arg(long, conflicts_with = "proxy")]
    proxy_from_env: bool,
    /// Offer permessage-deflate (RFC 7692): messages are compressed when
    /// the server accepts.
    #[arg(long)]
    deflate: bool,
}

fn main() {
    let args = Args::parse();
    let reconnect = args.reconnect.then(Reconnect::new);
    let result = client_tls(&args.ca, args.insecure).and_then(|tls| {
        let proxy = client_proxy(&args.url, args.proxy.as_deref(), args.proxy_from_env)?;
        let config = deflate_config(args.deflate, false);
        run_client(args.runtime, &args.url, reconnect, tls, proxy, config)
    });
    if let Err(e) = result {
        eprintln!("ws-client: {e}");
        std::process::exit(1);
    }
}
