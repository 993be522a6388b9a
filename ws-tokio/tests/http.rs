//! The `http` feature on tokio: `connect` takes an `http::Request<()>`
//! whose headers and subprotocols reach the server, and the server's
//! answer comes back as an `http::Response<()>`; the server side sees the
//! request as an `http::Request<()>`.

#![cfg(feature = "http")]

use std::time::Duration;

use tokio::net::TcpListener;
use ws_core::handshake::{Accept, HandshakeError, Request};
use ws_tokio::{Message, http};

async fn bounded<T>(f: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(10), f)
        .await
        .expect("bounded by 10 s")
}

#[tokio::test]
async fn an_http_request_connects_with_its_headers_and_subprotocol() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let (seen_tx, seen_rx) = std::sync::mpsc::channel();
        let mut ws = ws_tokio::accept_with(tcp, ws_tokio::Config::default(), |req: &Request| {
            let _ = seen_tx.send(req.to_http().unwrap());
            Ok(Accept::new()
                .subprotocol("chat")
                .header("Set-Cookie", "id=7"))
        })
        .await
        .unwrap();
        let msg = ws.recv().await.unwrap().unwrap();
        ws.send(msg).await.unwrap();
        let _ = ws.recv().await;
        seen_rx.recv().unwrap()
    });

    let request = http::Request::builder()
        .uri(format!("ws://{addr}/room?x=1"))
        .header("Authorization", "Bearer t0ken")
        .header("Cookie", "session=42")
        .header("Sec-WebSocket-Protocol", "chat, superchat")
        .body(())
        .unwrap();
    let (mut ws, response) = bounded(ws_tokio::connect(request)).await.unwrap();
    let response: http::Response<()> = response.to_http().unwrap();
    assert_eq!(response.status(), http::StatusCode::SWITCHING_PROTOCOLS);
    assert_eq!(response.headers()["sec-websocket-protocol"], "chat");
    assert_eq!(response.headers()["set-cookie"], "id=7");

    ws.send(Message::text("hi")).await.unwrap();
    assert_eq!(
        bounded(ws.recv()).await.unwrap().unwrap(),
        Message::text("hi")
    );
    ws.close(ws_tokio::CloseCode::NORMAL, "bye").await.unwrap();

    let seen = bounded(server).await.unwrap();
    assert_eq!(seen.uri(), "/room?x=1");
    assert_eq!(seen.headers()["authorization"], "Bearer t0ken");
    assert_eq!(seen.headers()["cookie"], "session=42");
    assert_eq!(seen.headers()["sec-websocket-protocol"], "chat, superchat");
    assert_eq!(seen.headers()["host"], addr.to_string().as_str());
}

#[tokio::test]
async fn a_refusal_reaches_the_client_as_an_http_response() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let refusal = http::Response::builder()
            .status(401)
            .header("WWW-Authenticate", "Bearer")
            .body("token required")
            .unwrap();
        let bytes = ws_core::handshake::response_bytes(&refusal).unwrap();
        let _ = ws_tokio::accept_with(tcp, ws_tokio::Config::default(), |_| Err(bytes)).await;
    });
    let err = bounded(ws_tokio::connect(format!("ws://{addr}/")))
        .await
        .unwrap_err();
    let ws_tokio::Error::Handshake(HandshakeError::UnexpectedStatus(refusal)) = err else {
        panic!("not a refusal: {err}")
    };
    let refusal = refusal.to_http().unwrap();
    assert_eq!(refusal.status(), http::StatusCode::UNAUTHORIZED);
    assert_eq!(refusal.headers()["www-authenticate"], "Bearer");
}

#[tokio::test]
async fn a_request_that_cannot_be_a_websocket_request_fails_before_any_io() {
    let post = http::Request::builder()
        .method("POST")
        .uri("ws://127.0.0.1:9/")
        .body(())
        .unwrap();
    let err = bounded(ws_tokio::connect(post)).await.unwrap_err();
    assert!(
        matches!(&err, ws_tokio::Error::Handshake(HandshakeError::InvalidInput(m)) if m.contains("GET")),
        "{err}"
    );
}

#[tokio::test]
async fn a_client_made_from_an_http_request_sends_its_headers_on_every_connection() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let mut seen = Vec::new();
        for _ in 0..2 {
            let (tcp, _) = listener.accept().await.unwrap();
            let mut cookie = None;
            let mut ws = ws_tokio::accept_with(tcp, ws_tokio::Config::default(), |req| {
                cookie = req.header("Cookie").map(str::to_owned);
                Ok(Accept::new().subprotocol("chat"))
            })
            .await
            .unwrap();
            seen.push(cookie);
            // Ends the connection: the client connects again.
            ws.close(ws_tokio::CloseCode::GOING_AWAY, "restart")
                .await
                .unwrap();
            let _ = ws.recv().await;
        }
        seen
    });
    let request = http::Request::builder()
        .uri(format!("ws://{addr}/"))
        .header("Cookie", "session=42")
        .header("Sec-WebSocket-Protocol", "chat")
        .body(())
        .unwrap();
    let mut client = ws_tokio::Client::new(request).unwrap();
    for _ in 0..2 {
        bounded(client.connect()).await.unwrap();
        // The server's close ends this connection.
        while let Some(msg) = bounded(client.recv()).await {
            if matches!(msg, Ok(Message::Close(_)) | Err(_)) {
                break;
            }
        }
    }
    let seen = bounded(server).await.unwrap();
    assert_eq!(
        seen,
        [Some("session=42".to_owned()), Some("session=42".to_owned())]
    );
}
