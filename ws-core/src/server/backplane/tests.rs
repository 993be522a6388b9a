use super::*;
use crate::server::hub::{FlowControl, Outbox, Pop};
use std::time::Duration;

#[derive(Default)]
struct Counter(AtomicUsize);

impl Wake for Counter {
    fn wake(&self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

fn wake() -> (Arc<Counter>, Arc<dyn Wake>) {
    let c = Arc::new(Counter::default());
    (c.clone(), c)
}

fn text(s: &str) -> PreparedMessage {
    PreparedMessage::new(&Message::text(s.to_owned())).unwrap()
}

/// A hub joined to a backplane named `node`.
fn node(node: &str, flow: FlowControl) -> (Arc<Hub>, Arc<Backplane>) {
    let hub = Arc::new(Hub::new(flow));
    let bp = Arc::new(Backplane::new(node));
    assert!(hub.attach_backplane(bp.clone()));
    (hub, bp)
}

/// The payloads queued for `out`, as text.
fn received(out: &Outbox) -> Vec<String> {
    std::iter::from_fn(|| match out.pop() {
        Pop::Message(m) => Some(m),
        _ => None,
    })
    .map(|m| {
        let (_, payload) = frame_parts(m.as_bytes()).unwrap();
        String::from_utf8(payload.to_vec()).unwrap()
    })
    .collect()
}

fn fields(e: &Entry) -> Vec<(&'static str, Bytes)> {
    e.fields().to_vec()
}

fn as_pairs(f: &[(&'static str, Bytes)]) -> Vec<(&'static [u8], Vec<u8>)> {
    f.iter().map(|(n, v)| (n.as_bytes(), v.to_vec())).collect()
}

fn receive(bp: &Backplane, e: &Entry) -> Received {
    let f = fields(e);
    bp.receive(f.iter().map(|(n, v)| (n.as_bytes(), &v[..])))
}

/// Moves every pending entry of `from` into `to` as a transport would
/// (written, read back by `to`, delivered); returns what `receive` said.
fn relay(from: &Backplane, to: &Backplane, to_hub: &Hub) -> Vec<Received> {
    let batch = from.pending(usize::MAX);
    from.confirm(batch.len());
    let mut results = Vec::new();
    let mut deliver = Vec::new();
    for e in &batch {
        let r = receive(to, e);
        match &r {
            Received::Deliver(e) | Received::Gap { entry: e, .. } => deliver.push(e.clone()),
            _ => {}
        }
        results.push(r);
    }
    let (_, w) = wake();
    to.offer(to_hub, &deliver, &w, &mut None, Instant::now())
        .unwrap();
    results
}

fn entry(origin: &str, seq: u64, route: Route, text: bool, payload: &[u8]) -> Entry {
    Entry {
        origin: Arc::from(origin),
        seq,
        route,
        text,
        payload: Bytes::copy_from_slice(payload),
    }
}

#[test]
fn an_entry_survives_its_field_encoding_for_every_route_and_kind() {
    for e in [
        entry("a/1", 1, Route::All, true, b"hello"),
        entry(
            "a/1",
            u64::MAX,
            Route::Topic("room 7".into()),
            false,
            &[0, 255, 1],
        ),
        entry("b/2", 42, Route::Topic("".into()), true, b""),
    ] {
        let f = as_pairs(&fields(&e));
        let back = Entry::decode(f.iter().map(|(n, v)| (*n, &v[..]))).unwrap();
        assert_eq!(back, e);
    }
}

#[test]
fn a_malformed_entry_is_an_error_naming_it_never_a_panic() {
    let good = as_pairs(&fields(&entry("a/1", 3, Route::All, true, b"x")));
    let with = |name: &[u8], value: Option<&[u8]>| -> Result<Entry, Malformed> {
        let f: Vec<(&[u8], &[u8])> = good
            .iter()
            .filter(|(n, _)| *n != name)
            .map(|(n, v)| (*n, &v[..]))
            .chain(value.map(|v| (name, v)))
            .collect();
        Entry::decode(f)
    };
    assert!(with(b"unknown", Some(b"ignored")).is_ok());
    for (name, value, why) in [
        (&b"origin"[..], None, "no origin"),
        (b"origin", Some(&b""[..]), "origin is not UTF-8 text"),
        (b"origin", Some(&[0xff][..]), "origin is not UTF-8 text"),
        (b"seq", None, "no seq"),
        (b"seq", Some(b"0"), "seq is not a positive integer"),
        (b"seq", Some(b"-1"), "seq is not a positive integer"),
        (
            b"seq",
            Some(b"99999999999999999999999"),
            "seq is not a positive integer",
        ),
        (b"to", None, "no to"),
        (b"to", Some(b"room"), "to is neither * nor #topic"),
        (b"to", Some(b"#\xff"), "topic is not UTF-8"),
        (b"kind", Some(b"ping"), "kind is neither text nor binary"),
        (b"data", None, "no data"),
        (b"data", Some(b"\xc3"), "text data is not UTF-8"),
    ] {
        assert_eq!(with(name, value), Err(Malformed(why)), "{why}");
    }
    let bp = Backplane::new("b");
    assert_eq!(
        bp.receive([(&b"seq"[..], &b"x"[..])]),
        Received::Malformed(Malformed("no origin"))
    );
    assert_eq!(bp.stats().malformed, 1);
}

#[test]
fn frame_parts_reads_back_every_length_encoding_and_refuses_the_rest() {
    for len in [0, 125, 126, 65_535, 65_536] {
        let payload = vec![b'x'; len];
        let msg = PreparedMessage::new(&Message::binary(payload.clone())).unwrap();
        assert_eq!(
            frame_parts(msg.as_bytes()),
            Some((false, &payload[..])),
            "{len}"
        );
    }
    assert_eq!(frame_parts(text("hi").as_bytes()), Some((true, &b"hi"[..])));
    for bad in [
        &[][..],
        &[0x81],
        &[0x01, 0x00],       // not final
        &[0x89, 0x00],       // ping
        &[0x81, 0x85, 0, 0], // masked
        &[0x81, 0x02, b'a'], // short
        &[0x81, 126, 0],     // truncated length
    ] {
        assert_eq!(frame_parts(bad), None, "{bad:?}");
    }
}

#[test]
fn local_broadcasts_and_publishes_are_delivered_at_once_and_queued_in_order() {
    let (hub, bp) = node("a", FlowControl::default());
    let (woken, w) = wake();
    bp.set_wake(w);
    let me = hub.register(wake().1);
    hub.subscribe(me.id(), "room");
    hub.broadcast_all(&[text("1"), text("2")], Instant::now());
    assert_eq!(woken.0.load(Ordering::SeqCst), 1, "writer woken once");
    hub.publish("room", &text("3"), Instant::now());
    hub.publish("nobody-here", &text("4"), Instant::now());
    assert_eq!(received(&me), ["1", "2", "3"], "local delivery unchanged");
    let out = bp.pending(10);
    let seqs: Vec<u64> = out.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, [1, 2, 3, 4]);
    assert!(out.iter().all(|e| &*e.origin == bp.origin()));
    assert!(bp.origin().starts_with("a/"));
    assert_eq!(out[0].route, Route::All);
    assert_eq!(out[2].route, Route::Topic("room".into()));
    assert_eq!(
        out[3].route,
        Route::Topic("nobody-here".into()),
        "subscribers may be on other nodes"
    );
    assert_eq!(&out[2].payload[..], b"3");
    assert!(out[2].text);
    assert_eq!(bp.stats().published, 4);
}

#[test]
fn messages_to_one_client_and_deliveries_from_the_cluster_are_not_sent_out() {
    let (hub, bp) = node("a", FlowControl::default());
    let me = hub.register(wake().1);
    hub.deliver(Target::Client(me.id()), &[text("direct")], Instant::now());
    hub.deliver_local(Target::All, &[text("remote")], Instant::now());
    assert_eq!(received(&me), ["direct", "remote"]);
    assert_eq!(bp.pending_len(), 0);
}

#[test]
fn pending_entries_stay_until_confirmed_so_a_failed_write_is_retried() {
    let (hub, bp) = node("a", FlowControl::default());
    for i in 0..5 {
        hub.broadcast(&text(&i.to_string()), Instant::now());
    }
    let first = bp.pending(3);
    assert_eq!(
        bp.pending(3),
        first,
        "not confirmed: the same entries again"
    );
    bp.confirm(2);
    let seqs: Vec<u64> = bp.pending(10).iter().map(|e| e.seq).collect();
    assert_eq!(seqs, [3, 4, 5]);
    bp.confirm(100);
    assert_eq!(bp.pending_len(), 0);
    let s = bp.stats();
    assert_eq!((s.published, s.sent, s.pending), (5, 5, 0));
}

#[test]
fn past_the_buffer_bound_publishes_are_counted_and_seen_as_a_gap_elsewhere() {
    let hub = Arc::new(Hub::default());
    let bp = Arc::new(Backplane::new("a").buffer(2, 1 << 20));
    hub.attach_backplane(bp.clone());
    let local = hub.register(wake().1);
    for i in 1..=4 {
        hub.broadcast(&text(&i.to_string()), Instant::now());
    }
    assert_eq!(
        received(&local),
        ["1", "2", "3", "4"],
        "local clients get all"
    );
    let s = bp.stats();
    assert_eq!((s.published, s.overflowed, s.pending), (2, 2, 2));
    // The link comes back: 1 and 2 go out; 5 after them.
    let (hub_b, bp_b) = node("b", FlowControl::default());
    let remote = hub_b.register(wake().1);
    relay(&bp, &bp_b, &hub_b);
    hub.broadcast(&text("5"), Instant::now());
    let r = relay(&bp, &bp_b, &hub_b);
    assert!(matches!(r[..], [Received::Gap { missed: 2, .. }]), "{r:?}");
    assert_eq!(received(&remote), ["1", "2", "5"]);
    let sb = bp_b.stats();
    assert_eq!((sb.gaps, sb.missed, sb.delivered), (1, 2, 3));
    // The byte bound counts too.
    let small = Backplane::new("c").buffer(100, ENTRY_OVERHEAD + 3);
    small.publish(Target::All, &[text("abc"), text("d")]);
    assert_eq!((small.pending_len(), small.stats().overflowed), (1, 1));
}

#[test]
fn own_entries_and_duplicates_are_skipped_and_gaps_counted() {
    let (hub_a, bp_a) = node("a", FlowControl::default());
    let (hub_b, bp_b) = node("b", FlowControl::default());
    let on_b = hub_b.register(wake().1);
    for i in 1..=3 {
        hub_a.broadcast(&text(&i.to_string()), Instant::now());
    }
    let batch = bp_a.pending(10);
    // Own entries come back to a: skipped.
    assert!(batch.iter().all(|e| receive(&bp_a, e) == Received::Own));
    // b joins mid-stream: 2 is its first from a, delivered without a gap.
    assert!(matches!(receive(&bp_b, &batch[1]), Received::Deliver(_)));
    // A write retried after a lost reply: 2 again, and 1 (older): skipped.
    assert_eq!(receive(&bp_b, &batch[1]), Received::Duplicate);
    assert_eq!(receive(&bp_b, &batch[0]), Received::Duplicate);
    assert!(matches!(receive(&bp_b, &batch[2]), Received::Deliver(_)));
    let later = entry(bp_a.origin(), 10, Route::All, true, b"10");
    assert_eq!(
        receive(&bp_b, &later),
        Received::Gap {
            entry: later.clone(),
            missed: 6
        }
    );
    let s = bp_b.stats();
    assert_eq!((s.duplicates, s.gaps, s.missed), (2, 1, 6));
    assert_eq!(bp_a.stats().own, 3);
    // A restarted a (same name, new incarnation) starts again at 1.
    let a2 = Backplane::new("a");
    assert_ne!(a2.origin(), bp_a.origin());
    let fresh = entry(a2.origin(), 1, Route::All, true, b"again");
    assert!(matches!(receive(&bp_b, &fresh), Received::Deliver(_)));
    drop(on_b);
}

#[test]
fn the_origin_table_is_bounded_and_forgets_the_least_recently_heard() {
    let bp = Backplane::new("me");
    let keep = entry("keep/1", 1, Route::All, true, b"");
    receive(&bp, &keep);
    for i in 0..MAX_ORIGINS + 10 {
        receive(&bp, &entry(&format!("n{i}/1"), 1, Route::All, true, b""));
        if i % 100 == 0 {
            // Heard from again: stays.
            receive(
                &bp,
                &Entry {
                    seq: i as u64 + 2,
                    ..keep.clone()
                },
            );
        }
    }
    assert_eq!(lock(&bp.seen).origins.len(), MAX_ORIGINS);
    assert!(lock(&bp.seen).origins.contains_key("keep/1"));
    assert!(!lock(&bp.seen).origins.contains_key("n0/1"));
}

#[test]
fn entries_from_the_cluster_reach_local_subscribers_in_order_and_are_not_echoed() {
    let (hub_a, bp_a) = node("a", FlowControl::default());
    let (hub_b, bp_b) = node("b", FlowControl::default());
    let in_room = hub_b.register(wake().1);
    let elsewhere = hub_b.register(wake().1);
    hub_b.subscribe(in_room.id(), "room");
    hub_a.publish("room", &text("r1"), Instant::now());
    hub_a.broadcast(&text("all"), Instant::now());
    hub_a.publish("room", &text("r2"), Instant::now());
    let r = relay(&bp_a, &bp_b, &hub_b);
    assert!(r.iter().all(|r| matches!(r, Received::Deliver(_))));
    assert_eq!(received(&in_room), ["r1", "all", "r2"]);
    assert_eq!(received(&elsewhere), ["all"]);
    assert_eq!(
        bp_b.pending_len(),
        0,
        "b does not send a's entries back out"
    );
    assert_eq!(bp_b.stats().delivered, 3);
}

#[test]
fn a_congested_hub_takes_nothing_from_the_cluster_until_it_drains() {
    let flow = FlowControl::default()
        .high_water(2, 1 << 20)
        .slow_client_timeout(Duration::from_secs(60));
    let (hub, bp) = node("b", flow);
    let slow = hub.register(wake().1);
    let t0 = Instant::now();
    hub.broadcast_all(&[text("1"), text("2"), text("3")], t0);
    assert!(hub.is_congested());
    let batch = [entry("a/1", 1, Route::All, true, b"x")];
    let (woken, w) = wake();
    let mut registered = None;
    let waited = bp.offer(&hub, &batch, &w, &mut registered, t0);
    assert_eq!(waited, Err(Some(t0 + Duration::from_secs(60))));
    assert_eq!(slow.len(), 3, "nothing delivered while congested");
    assert_eq!(received(&slow), ["1", "2", "3"]);
    assert!(woken.0.load(Ordering::SeqCst) >= 1, "woken when it cleared");
    assert_eq!(bp.offer(&hub, &batch, &w, &mut registered, t0), Ok(()));
    assert_eq!(received(&slow), ["x"]);
}

#[test]
fn a_stalled_client_is_dropped_by_its_own_node_when_its_deadline_passes() {
    let flow = FlowControl::default()
        .high_water(1, 1 << 20)
        .slow_client_timeout(Duration::from_secs(1));
    let (hub, bp) = node("b", flow);
    let stalled = hub.register(wake().1);
    let fine = hub.register(wake().1);
    let t0 = Instant::now();
    hub.broadcast_all(&[text("1"), text("2")], t0);
    received(&fine);
    let batch = [entry("a/1", 1, Route::All, true, b"x")];
    let w = wake().1;
    let mut reg = None;
    assert!(bp.offer(&hub, &batch, &w, &mut reg, t0).is_err());
    let later = t0 + Duration::from_secs(2);
    assert_eq!(bp.offer(&hub, &batch, &w, &mut reg, later), Ok(()));
    assert!(!hub.contains(stalled.id()));
    assert_eq!(received(&fine), ["x"]);
}

#[test]
fn a_cluster_stats_view_and_engine_start_without_one() {
    let hub = Arc::new(Hub::default());
    start(None, &hub).unwrap();
    assert!(hub.backplane().is_none());
    let registry = crate::server::Registry::new(hub.clone());
    assert_eq!(registry.backplane_stats(), None);
    assert_eq!(registry.cluster_client_count(), None);
    let bp = Arc::new(Backplane::new("n"));
    hub.attach_backplane(bp.clone());
    assert!(!hub.attach_backplane(Arc::new(Backplane::new("other"))));
    assert_eq!(registry.cluster_client_count(), None);
    bp.set_cluster_clients(7);
    bp.set_linked(true);
    assert_eq!(registry.cluster_client_count(), Some(7));
    assert!(registry.backplane_stats().unwrap().linked);
}

#[derive(Debug, Default)]
struct Fake(Arc<AtomicUsize>);

impl Running for Fake {
    fn stop(&self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

impl Engine for Fake {
    fn start(&self, hub: &Arc<Hub>) -> io::Result<Box<dyn Running>> {
        hub.attach_backplane(Arc::new(Backplane::new("fake")));
        Ok(Box::new(Fake(self.0.clone())))
    }
}

#[test]
fn an_engine_is_started_with_the_server_and_stopped_by_the_hubs_shutdown() {
    let stops = Arc::new(AtomicUsize::new(0));
    let engine: Arc<dyn Engine> = Arc::new(Fake(stops.clone()));
    let hub = Arc::new(Hub::default());
    start(Some(&engine), &hub).unwrap();
    assert_eq!(hub.backplane().unwrap().node(), "fake");
    assert_eq!(stops.load(Ordering::SeqCst), 0);
    hub.shutdown();
    hub.shutdown();
    assert_eq!(stops.load(Ordering::SeqCst), 1, "stopped once");
}
