//! A hyper 1.x HTTP server with an ordinary route and a WebSocket route:
//! `GET /` answers with a line of text, `/ws` upgrades to a WebSocket that
//! echoes every message (ws-tokio's `upgrade::upgrade`, one call per
//! route), anything else is 404. The way to add WebSockets to a service
//! that already runs on hyper (or axum, which hands over the same
//! `http::Request`).
//!
//! ```text
//! cargo run --release --bin hyper-upgrade -- --addr 127.0.0.1:8091
//! curl http://127.0.0.1:8091/
//! cargo run --release --bin ws-client -- ws://127.0.0.1:8091/ws
//! ```
//!
//! It prints `listening on http://ADDR` on stdout once bound (the tests
//! start it on port 0 and read the port from that line).

use std::convert::Infallible;
use std::io::Write;

use clap::Parser;
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use ws_tokio::http::{Request, Response, StatusCode};
use ws_tokio::upgrade::Accept;
use ws_tokio::{Config, Message};

/// A hyper HTTP server whose `/ws` route upgrades to an echoing WebSocket.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// Address to listen on (port 0: any free port, printed on stdout).
    #[arg(long, default_value = "127.0.0.1:8091")]
    addr: String,
}

/// The ordinary route's answer.
const HELLO: &str = "hello from hyper; WebSockets on /ws\n";

/// hyper's service: the routes.
async fn route(mut req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    if req.uri().path() != "/ws" {
        let (status, body) = match req.uri().path() {
            "/" => (StatusCode::OK, HELLO),
            _ => (StatusCode::NOT_FOUND, "not found\n"),
        };
        let mut resp = Response::new(Full::from(body));
        *resp.status_mut() = status;
        return Ok(resp);
    }
    // Checks the upgrade and builds the 101, or says which 4xx to send.
    match ws_tokio::upgrade::upgrade(&mut req, &Accept::new(), Config::default()) {
        Ok((response, upgrading)) => {
            tokio::spawn(async move {
                match upgrading.await {
                    Ok(ws) => echo(ws).await,
                    Err(e) => eprintln!("hyper-upgrade: upgrade failed: {e}"),
                }
            });
            Ok(response.map(|()| Full::default()))
        }
        Err(refusal) => Ok(refusal.to_http_response().map(Full::from)),
    }
}

/// Echoes text and binary messages until the client closes (the stream
/// answers pings and the close itself).
async fn echo<S>(mut ws: ws_tokio::WebSocketStream<S>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    while let Some(Ok(msg)) = ws.recv().await {
        if matches!(msg, Message::Text(_) | Message::Binary(_)) && ws.send(msg).await.is_err() {
            break;
        }
    }
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let listener = match TcpListener::bind(&args.addr).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("hyper-upgrade: {}: {e}", args.addr);
            std::process::exit(1);
        }
    };
    let addr = listener
        .local_addr()
        .expect("a bound listener has an address");
    let mut out = std::io::stdout();
    let _ = writeln!(out, "listening on http://{addr}");
    let _ = out.flush();
    loop {
        let (tcp, _) = match listener.accept().await {
            Ok(conn) => conn,
            Err(e) => {
                // Out of descriptors and the like: keep serving the rest.
                eprintln!("hyper-upgrade: accept: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        tokio::spawn(async move {
            let conn = http1::Builder::new()
                .serve_connection(TokioIo::new(tcp), service_fn(route))
                // Without this hyper never hands the connection over.
                .with_upgrades();
            if let Err(e) = conn.await {
                eprintln!("hyper-upgrade: connection: {e}");
            }
        });
    }
}
