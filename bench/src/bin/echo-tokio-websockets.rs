//! Echo server on tokio-websockets (single-threaded tokio runtime).
//!
//! `ServerBuilder::accept`, then `feed` every decoded message and `flush`
//! once when no more is ready (the Sink API's batching).

use futures_util::{FutureExt, SinkExt, StreamExt};
use tokio::net::TcpListener;
use tokio_websockets::ServerBuilder;
use ws_bench::Args;

fn main() {
    let addr = Args::from_env().addr();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let listener = TcpListener::bind(&addr).await.expect("bind");
        eprintln!("echo-tokio-websockets listening on {addr}");
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            tokio::spawn(tokio::task::unconstrained(async move {
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
            }));
        }
    });
}
