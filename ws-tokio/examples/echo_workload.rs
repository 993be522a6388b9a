//! A fixed echo workload in one thread, for instruction counts: the echo
//! server and one client on a `current_thread` runtime, `N` (default 20 000)
//! 64-byte text messages, each echo awaited before the next is sent, then a
//! close. Nothing in it depends on the clock or on scheduling across
//! threads, so `valgrind --tool=callgrind` counts nearly the same
//! instructions on every run, even on a loaded machine: the check that the
//! `tracing` feature costs nothing when it is off (README, "Tracing").
//!
//! ```text
//! cargo build --release -p ws-tokio --example echo_workload
//! valgrind --tool=callgrind target/release/examples/echo_workload 20000
//! ```

use futures_util::StreamExt;
use ws_tokio::{CloseCode, Message, Server, ServerMode};

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .map_or(20_000, |a| a.parse().expect("a message count"));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    rt.block_on(async {
        let server = Server::new("127.0.0.1:0")
            .mode(ServerMode::Echo)
            .start()
            .await
            .expect("bind");
        let url = format!("ws://{}/", server.local_addr());
        let (mut ws, _) = ws_tokio::connect(&url).await.expect("connect");
        let payload = "x".repeat(64);
        for _ in 0..n {
            ws.send(Message::text(payload.clone())).await.expect("send");
            match ws.next().await {
                Some(Ok(Message::Text(t))) => assert_eq!(t.len(), 64),
                other => panic!("no echo: {other:?}"),
            }
        }
        ws.close(CloseCode::NORMAL, "").await.expect("close");
        server.shutdown().await;
        println!("{n} echoes");
    });
}
