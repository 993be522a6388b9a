//! Split halves end to end: a ws-tokio client split into a reader task and a
//! writer task, pipelining small messages through a ws-tokio echo server on
//! 127.0.0.1. Measures the whole round trip of a batch (writer feeds and
//! flushes, reader receives every echo), so the halves' coordination costs
//! (claims, wakeups) show up next to the syscalls they ride on.
//!
//! `cargo bench -p ws-bench --bench split`

use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ws_tokio::{Message, Server, ServerMode};

/// Messages per batch: one flush of the writer, BATCH echoes for the reader.
const BATCH: usize = 256;

fn split_echo(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let (server, reader, writer) = rt.block_on(async {
        let server = Server::new("127.0.0.1:0")
            .mode(ServerMode::Echo)
            .start()
            .await
            .expect("server");
        let url = format!("ws://{}/", server.local_addr());
        let (ws, _) = ws_tokio::connect(&url).await.expect("connect");
        let (reader, writer) = ws.split();
        (server, reader, writer)
    });
    let mut halves = Some((reader, writer));
    for size in [20usize, 1024] {
        let payload = vec![7u8; size];
        let mut g = c.benchmark_group(format!("split-echo/{size}B"));
        g.throughput(Throughput::Elements(BATCH as u64));
        g.bench_function("ws-tokio", |b| {
            b.iter_custom(|iters| {
                let (mut reader, mut writer) = halves.take().expect("halves");
                let payload = payload.clone();
                let (elapsed, r, w) = rt.block_on(async move {
                    let start = Instant::now();
                    for _ in 0..iters {
                        let msg = Message::binary(payload.clone());
                        let writing = tokio::spawn(async move {
                            for _ in 0..BATCH {
                                writer.feed(msg.clone()).await.expect("feed");
                            }
                            writer.flush().await.expect("flush");
                            writer
                        });
                        for _ in 0..BATCH {
                            let got = tokio::time::timeout(Duration::from_secs(10), reader.recv())
                                .await
                                .expect("echo within 10 s")
                                .expect("open")
                                .expect("message");
                            assert_eq!(got.payload().len(), size);
                        }
                        writer = writing.await.expect("writer task");
                    }
                    (start.elapsed(), reader, writer)
                });
                halves = Some((r, w));
                elapsed
            })
        });
        g.finish();
    }
    rt.block_on(server.shutdown());
}

criterion_group!(benches, split_echo);
criterion_main!(benches);
