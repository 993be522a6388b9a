//! The interactive client: each stdin line is sent as a text message, each
//! received message is printed on its own line; end of input closes the
//! connection cleanly (code 1000) and exits 0.
//!
//! ```text
//! cargo run --release --bin ws-client -- ws://127.0.0.1:8080/ws --runtime blocking
//! ```

use clap::Parser;
use examples::{Runtime, run_client};

/// An interactive WebSocket client: stdin lines out, messages in.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// The server's URL, e.g. ws://127.0.0.1:8080/ws.
    url: String,
    /// Which adapter crate and runtime to run on.
    #[arg(long, value_enum, default_value_t = Runtime::Tokio)]
    runtime: Runtime,
}

fn main() {
    let args = Args::parse();
    if let Err(e) = run_client(args.runtime, &args.url) {
        eprintln!("ws-client: {e}");
        std::process::exit(1);
    }
}
