//! The chat (or echo) server on the runtime of your choice.
//!
//! ```text
//! cargo run --release --bin ws-server                       # chat on 127.0.0.1:8080, tokio
//! cargo run --release --bin ws-server -- --mode echo --runtime smol --addr 127.0.0.1:9001
//! ```

use clap::Parser;
use examples::{Mode, Runtime, run_server};

/// A WebSocket chat/echo server: the test page on `/`, WebSocket on `/ws`.
#[derive(Parser, Debug)]
#[command(version, about)]
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
}

/// glibc raises its mmap threshold each time it frees a large mmapped
/// block; after that, the buffers of a burst of large messages come from the
/// heap and stay there once freed. Pinning the threshold (which also turns
/// that adjustment off) lets the server's RSS fall back to its idle size
/// after a burst, as ws-core releases the buffers.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn pin_mmap_threshold() {
    // SAFETY: mallopt only sets an allocator tunable; called before any
    // other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn pin_mmap_threshold() {}

fn main() {
    pin_mmap_threshold();
    let args = Args::parse();
    if let Err(e) = run_server(args.runtime, &args.addr, args.mode.into(), args.threads) {
        eprintln!("ws-server: {e}");
        std::process::exit(1);
    }
}
