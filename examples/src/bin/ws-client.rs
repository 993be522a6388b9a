//! The interactive client: each stdin line is sent as a text message, each
//! received message is printed on its own line; end of input closes the
//! connection cleanly (code 1000) and exits 0.
//!
//! ```text
//! cargo run --release --bin ws-client -- ws://127.0.0.1:8080/ws --runtime blocking
//! ```
//!
//! With `--reconnect` it survives the server going away: it connects and
//! reconnects with exponential backoff and jitter (100 ms doubling up to
//! 30 s), printing `[reconnected]` on stderr each time, and stops for good
//! when the server refuses the upgrade with a 4xx status (printing
//! `[gave up reconnecting: ...]` if it was connected before; either way it
//! exits 1 with the error).

use clap::Parser;
use examples::{Runtime, run_client};
use ws_core::rt::reconnect::Reconnect;

/// An interactive WebSocket client: stdin lines out, messages in.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// The server's URL, e.g. ws://127.0.0.1:8080/ws.
    url: String,
    /// Which adapter crate and runtime to run on.
    #[arg(long, value_enum, default_value_t = Runtime::Tokio)]
    runtime: Runtime,
    /// Reconnect when the connection is lost (exponential backoff with
    /// jitter; a 4xx refusal at the upgrade ends it).
    #[arg(long)]
    reconnect: bool,
}

fn main() {
    let args = Args::parse();
    if let Err(e) = run_client(args.runtime, &args.url, args.reconnect.then(Reconnect::new)) {
        eprintln!("ws-client: {e}");
        std::process::exit(1);
    }
}
