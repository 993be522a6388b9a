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
//!
//! # websocat-style use
//!
//! ```text
//! ws-client ws://127.0.0.1:8080/ws -H 'Authorization: Bearer t0k3n' --protocol chat
//! echo '{"op":"ping"}' | ws-client -1 --timeout 5 ws://127.0.0.1:8080/ws
//! ws-client --binary -1 ws://127.0.0.1:8080/ws < picture.png
//! ws-client --ping-interval 10 --show-control ws://127.0.0.1:8080/ws
//! ```
//!
//! - `-H 'Name: value'` (repeatable) adds a request header; `--protocol
//!   NAME` (repeatable) offers a subprotocol, and the one the server chose
//!   is printed on stderr with the connection.
//! - `--binary` sends stdin's bytes verbatim as binary messages (one per
//!   line, the `\n` kept); `-1`/`--one-message` sends all of stdin as one
//!   message, prints the first reply, closes (1000) and exits.
//! - `--ping-interval SECS` pings the server; `--show-control` prints the
//!   pings and pongs received (`[ping]`, `[pong: <payload>]`) and the
//!   server's reply to our close (`[close reply: 1000 ]`).
//! - `--timeout SECS` bounds the connect and the handshake, and with `-1`
//!   the wait for the reply.
//! - Binary messages are printed in hex (`--binary-format base64` for
//!   base64), never raw. On a terminal, received lines start with `< `;
//!   through a pipe the output is exactly the messages.
//! - stderr says `[connected to URL]` (`, subprotocol NAME`) and how the
//!   session ended: `[closed: 1000]` (ours), `[closed by server: 1001
//!   going away]`, `[connection failed: ...]` or `[no reply in time]`.
//!
//! Exit status: 0 on a normal close (ours, or the server's 1000/1001), 1
//! for a local problem (bad header or URL, unreadable stdin, text input
//! that is not UTF-8), 2 for a usage error, 3 when connecting failed
//! (including `--timeout`), 4 when the server closed with another code or
//! the connection broke, 5 when `-1` got no reply within `--timeout`.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use examples::{
    ClientError, ClientSetup, Runtime, client_proxy, client_tls, deflate_config, exit_code,
    run_client,
};
use ws_core::rt::console::{BinaryFormat, Console};
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
    /// Add a request header, e.g. -H 'Authorization: Bearer t0k3n'.
    /// Repeatable.
    #[arg(short = 'H', long = "header", value_name = "'NAME: VALUE'", value_parser = parse_header)]
    headers: Vec<(String, String)>,
    /// Offer this subprotocol (repeatable, in preference order); the
    /// server's choice is printed on stderr.
    #[arg(long = "protocol", value_name = "NAME")]
    protocols: Vec<String>,
    /// Send stdin's bytes verbatim as binary messages (one per line, the
    /// newline kept; with -1 all of stdin).
    #[arg(long)]
    binary: bool,
    /// Send all of stdin as one message, print the first reply, close and
    /// exit.
    #[arg(short = '1', long, conflicts_with = "reconnect")]
    one_message: bool,
    /// Ping the server every SECS seconds.
    #[arg(long, value_name = "SECS", value_parser = parse_secs)]
    ping_interval: Option<Duration>,
    /// Print pings and pongs received, and the close code and reason of
    /// the server's reply to our close.
    #[arg(long)]
    show_control: bool,
    /// Give up connecting (TCP, TLS, handshake) after SECS seconds, and
    /// with -1 waiting for the reply.
    #[arg(long, value_name = "SECS", value_parser = parse_secs)]
    timeout: Option<Duration>,
    /// How binary messages (and ping/pong payloads) are printed.
    #[arg(long, value_enum, default_value_t = Format::Hex)]
    binary_format: Format,
}

/// `--binary-format`'s values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    /// Lowercase hexadecimal.
    Hex,
    /// Standard base64 with padding.
    Base64,
}

/// `-H 'Name: value'`: split at the first colon, the value trimmed.
fn parse_header(s: &str) -> Result<(String, String), String> {
    let (name, value) = s
        .split_once(':')
        .ok_or_else(|| format!("{s:?} is not 'Name: value'"))?;
    Ok((name.trim().to_owned(), value.trim().to_owned()))
}

/// Seconds, possibly fractional (0.5), more than zero.
fn parse_secs(s: &str) -> Result<Duration, String> {
    let secs: f64 = s.parse().map_err(|e| format!("{s:?}: {e}"))?;
    match Duration::try_from_secs_f64(secs) {
        Ok(d) if !d.is_zero() => Ok(d),
        _ => Err(format!("{s:?} is not a positive number of seconds")),
    }
}

fn main() {
    use std::io::IsTerminal;
    let args = Args::parse();
    let result = client_tls(&args.ca, args.insecure)
        .and_then(|tls| {
            let proxy = client_proxy(&args.url, args.proxy.as_deref(), args.proxy_from_env)?;
            Ok((tls, proxy))
        })
        .map_err(ClientError::Setup)
        .and_then(|(tls, proxy)| {
            let mut config = deflate_config(args.deflate, false);
            if let Some(timeout) = args.timeout {
                config = config.handshake_timeout(timeout);
            }
            let format = match args.binary_format {
                Format::Hex => BinaryFormat::Hex,
                Format::Base64 => BinaryFormat::Base64,
            };
            let console = Console::new()
                .binary_input(args.binary)
                .one_message(args.one_message)
                .show_control(args.show_control)
                .binary_format(format)
                .mark_received(std::io::stdout().is_terminal())
                .ping_interval(args.ping_interval)
                .reply_timeout(args.timeout);
            let setup = ClientSetup {
                url: args.url.clone(),
                reconnect: args.reconnect.then(Reconnect::new),
                tls,
                proxy,
                config,
                headers: args.headers.clone(),
                protocols: args.protocols.clone(),
                console,
            };
            run_client(args.runtime, &setup)
        });
    match &result {
        Ok(ending) => eprintln!("{ending}"),
        Err(e) => eprintln!("ws-client: {e}"),
    }
    std::process::exit(exit_code(&result));
}
