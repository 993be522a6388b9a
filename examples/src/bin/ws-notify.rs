//! An authenticated notification feed on ws-tokio: clients connect to
//! `/feed` with a token (`Authorization: Bearer TOKEN`, or `?token=TOKEN`
//! from a browser) and receive what the application publishes to them and
//! to everyone; anyone else gets 401 before the upgrade.
//!
//! ```text
//! cargo run --release --bin ws-notify -- --token s3cret=alice --token t0ken=bob
//! cargo run --release --bin ws-client -- 'ws://127.0.0.1:8090/feed?token=s3cret'
//! ```

use std::time::Duration;

use clap::Parser;
use examples::feed::{ALL, Feed, user_topic};
use ws_tokio::{Message, Server};

/// An authenticated WebSocket notification feed.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8090")]
    addr: String,
    /// A token and the user it lets in, as TOKEN=USER (repeatable).
    #[arg(long = "token", value_parser = parse_token, required = true)]
    tokens: Vec<(String, String)>,
    /// Milliseconds between notifications.
    #[arg(long, default_value_t = 1000)]
    interval_ms: u64,
}

fn parse_token(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((t, u)) if !t.is_empty() && !u.is_empty() => Ok((t.to_owned(), u.to_owned())),
        _ => Err("expected TOKEN=USER".to_owned()),
    }
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let users: Vec<String> = args.tokens.iter().map(|(_, u)| u.clone()).collect();
    let feed = args
        .tokens
        .into_iter()
        .fold(Feed::new(), |f, (t, u)| f.token(t, u));
    let server = match Server::with_handler(args.addr, feed).start().await {
        Ok(server) => server,
        Err(e) => {
            eprintln!("ws-notify: {e}");
            std::process::exit(1);
        }
    };
    eprintln!("ws-notify: feed on ws://{}/feed", server.local_addr());
    let mut tick = tokio::time::interval(Duration::from_millis(args.interval_ms.max(1)));
    // Runs until killed (the adapters' servers close their clients with
    // 1001 on `shutdown`; a signal handler is left to real services).
    for n in 1u64.. {
        tick.tick().await;
        // Waits while a subscriber is slow, like any broadcast.
        let _ = server
            .publish(ALL, &Message::text(format!("tick {n}")))
            .await;
        for user in &users {
            let note = Message::text(format!("{user}: {n} unread"));
            let _ = server.publish(&user_topic(user), &note).await;
        }
    }
}
