//! `url_parse/<input>`: ws-core's own `ws://` URL parser (`WsUrl::parse`,
//! ws-core/src/url.rs) against the `url` crate (`Url::parse`, WHATWG) and
//! the `http` crate (`Uri::from_str`) on the same inputs, the numbers
//! behind keeping the hand-written parser (its module doc has the
//! decision). Each parses and keeps what a client needs (host, port,
//! resource), so none is let off with less work.

use std::hint::black_box;
use std::str::FromStr;

use criterion::{Criterion, criterion_group, criterion_main};
use ws_core::url::WsUrl;

const INPUTS: &[(&str, &str)] = &[
    ("short", "ws://localhost:9001/"),
    (
        "typical",
        "wss://chat.example.com/socket/v2?room=lobby&token=abcdef0123456789",
    ),
    ("ipv6", "ws://[2001:db8::1]:8080/ws"),
];

fn url_parse(c: &mut Criterion) {
    for (label, input) in INPUTS {
        let mut g = c.benchmark_group(format!("url_parse/{label}"));
        g.bench_function("ws-core WsUrl::parse", |b| {
            b.iter(|| {
                let u = WsUrl::parse(black_box(input)).unwrap();
                black_box((u.port(), u.host().len(), u.resource().len()))
            })
        });
        g.bench_function("url Url::parse", |b| {
            b.iter(|| {
                let u = url::Url::parse(black_box(input)).unwrap();
                black_box((
                    u.port_or_known_default(),
                    u.host_str().map(str::len),
                    u.path().len(),
                ))
            })
        });
        g.bench_function("http Uri::from_str", |b| {
            b.iter(|| {
                let u = http::Uri::from_str(black_box(input)).unwrap();
                black_box((u.port_u16(), u.host().map(str::len), u.path().len()))
            })
        });
        g.finish();
    }
}

criterion_group!(benches, url_parse);
criterion_main!(benches);
