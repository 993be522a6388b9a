//! Echo server on tokio-tungstenite (single-threaded tokio runtime).
//!
//! Uses `accept_async` and batches writes the way the crate's `Sink`
//! supports: `feed` every message that is already decoded, `flush` once
//! when no more is ready (as `StreamExt::forward` in its echo example does).

use futures_util::{FutureExt, SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;
use ws_bench::serve_echo;

fn main() {
    serve_echo("echo-tungstenite", |stream| async move {
        let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else {
            return;
        };
        'conn: while let Some(Ok(msg)) = ws.next().await {
            let mut msg = msg;
            loop {
                if matches!(msg, Message::Text(_) | Message::Binary(_))
                    && ws.feed(msg).await.is_err()
                {
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
    });
}
