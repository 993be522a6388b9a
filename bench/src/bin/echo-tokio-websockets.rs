//! Echo server on tokio-websockets (single-threaded tokio runtime).
//!
//! `ServerBuilder::accept`, then `feed` every decoded message and `flush`
//! once when no more is ready (the Sink API's batching).

use futures_util::{FutureExt, SinkExt, StreamExt};
use tokio_websockets::ServerBuilder;
use ws_bench::serve_echo;

fn main() {
    serve_echo("echo-tokio-websockets", |stream| {
        tokio::task::unconstrained(async move {
            let Ok((_req, mut ws)) = ServerBuilder::new().accept(stream).await else {
                return;
            };
            'conn: while let Some(Ok(msg)) = ws.next().await {
                let mut msg = msg;
                loop {
                    if (msg.is_text() || msg.is_binary()) && ws.feed(msg).await.is_err() {
                        break 'conn;
                    }
                    match ws.next().now_or_never() {
                        Some(Some(Ok(m))) => msg = m,
                        Some(_) => break 'conn,
                        None => break,
                    }
                }
                if ws.flush().await.is_err() {
                    break;
                }
            }
        })
    });
}
