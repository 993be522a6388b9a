//! The Autobahn TestSuite client driver: asks the fuzzing server for its
//! case count, runs every case echoing each message back, then asks it to
//! write its reports.
//!
//! ```text
//! autobahn-client --url ws://127.0.0.1:9001 --agent ws-tokio --runtime tokio
//! ```

use clap::Parser;
use examples::{Runtime, deflate_config, run_autobahn};

/// Drives the Autobahn fuzzing server through every test case.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// The fuzzing server's base URL.
    #[arg(long, env = "AUTOBAHN_URL", default_value = "ws://127.0.0.1:9001")]
    url: String,
    /// The agent name the reports are filed under.
    #[arg(long, default_value = "ws")]
    agent: String,
    /// Which adapter crate and runtime to run on.
    #[arg(long, value_enum, default_value_t = Runtime::Tokio)]
    runtime: Runtime,
    /// Offer permessage-deflate (RFC 7692) on every case connection.
    #[arg(long)]
    deflate: bool,
}

fn main() {
    let args = Args::parse();
    if let Err(e) = run_autobahn(
        args.runtime,
        &args.url,
        &args.agent,
        deflate_config(args.deflate, false),
    ) {
        eprintln!("autobahn-client: {e}");
        std::process::exit(1);
    }
}
