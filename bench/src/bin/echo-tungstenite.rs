//! Echo server on tokio-tungstenite (single-threaded tokio runtime).
//!
//! Uses `accept_async` and batches writes the way the crate's `Sink`
//! supports: `feed` every message that is already decoded, `flush` once
//! when no more is ready (as `StreamExt::forward` in its echo example does).
//! With `--tls-cert FILE --tls-key FILE` it serves wss:// through
//! tokio-rustls, with the same rustls configuration as `ws-server`.

use futures_util::{FutureExt, SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::tungstenite::Message;
use ws_bench::{Args, serve_echo};

async fn echo<S: AsyncRead + AsyncWrite + Unpin>(stream: S) {
    let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else {
        return;
    };
    'conn: while let Some(Ok(msg)) = ws.next().await {
        let mut msg = msg;
        loop {
            if matches!(msg, Message::Text(_) | Message::Binary(_)) && ws.feed(msg).await.is_err() {
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
}

fn main() {
    let args = Args::from_env();
    match (args.value("--tls-cert"), args.value("--tls-key")) {
        (Some(cert), Some(key)) => {
            let acceptor = tokio_rustls::TlsAcceptor::from(ws_bench::tls::server_config(cert, key));
            serve_echo("echo-tungstenite (wss)", move |stream| {
                let accept = acceptor.accept(stream);
                async move {
                    if let Ok(tls) = accept.await {
                        echo(tls).await;
                    }
                }
            });
        }
        _ => serve_echo("echo-tungstenite", echo),
    }
}
