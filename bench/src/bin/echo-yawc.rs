//! Echo server on yawc (single-threaded tokio runtime), the Rust peer with
//! permessage-deflate used by `bench/deflate.sh`: hyper http1 with upgrades
//! and `WebSocket::upgrade_with_options`, compression at level 6 with
//! windows of 15 bits and context takeover (yawc's defaults with the level
//! set to zlib's default, the same settings as `ws-server --deflate`),
//! UTF-8 validation on (ours always validates). Writes are batched the way
//! its `Sink` allows: `feed` every frame already decoded, `flush` once when
//! no more is ready, as `echo-tungstenite` does.

use futures_util::{FutureExt, SinkExt, StreamExt};
use http_body_util::Empty;
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use ws_bench::serve_echo;
use yawc::frame::OpCode;
use yawc::{CompressionLevel, Options, WebSocket};

async fn echo(fut: yawc::UpgradeFut) {
    let Ok(mut ws) = fut.await else {
        return;
    };
    'conn: while let Some(frame) = ws.next().await {
        let mut frame = frame;
        loop {
            let opcode = frame.opcode();
            if opcode == OpCode::Close {
                break 'conn;
            }
            if matches!(opcode, OpCode::Text | OpCode::Binary) && ws.feed(frame).await.is_err() {
                break 'conn;
            }
            match ws.next().now_or_never() {
                Some(Some(f)) => frame = f,
                Some(None) => break 'conn,
                None => break,
            }
        }
        if ws.flush().await.is_err() {
            break;
        }
    }
}

async fn upgrade(mut req: Request<Incoming>) -> yawc::Result<Response<Empty<Bytes>>> {
    let options = Options::default()
        .with_compression_level(CompressionLevel::new(6))
        .with_utf8();
    let (response, fut) = WebSocket::upgrade_with_options(&mut req, options)?;
    tokio::spawn(echo(fut));
    Ok(response)
}

fn main() {
    serve_echo("echo-yawc", |stream| async move {
        let io = hyper_util::rt::TokioIo::new(stream);
        let _ = http1::Builder::new()
            .serve_connection(io, service_fn(upgrade))
            .with_upgrades()
            .await;
    });
}
