use super::*;
use crate::message::Message;

/// Counts its wakes.
#[derive(Default)]
struct Counter(AtomicUsize);

impl Wake for Counter {
    fn wake(&self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

impl Counter {
    fn count(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

fn counter() -> (Arc<Counter>, Arc<dyn Wake>) {
    let c = Arc::new(Counter::default());
    (c.clone(), c)
}

fn text(s: &str) -> PreparedMessage {
    PreparedMessage::new(&Message::text(s)).unwrap()
}

fn hub(limits: FlowControl) -> Arc<Hub> {
    Arc::new(Hub::new(limits))
}

/// Marks at 2 messages (bytes out of the way), 1 s timeout.
fn small() -> FlowControl {
    FlowControl::default()
        .high_water(2, 1 << 20)
        .slow_client_timeout(Duration::from_secs(1))
}

fn pop_all(o: &Outbox) -> Vec<PreparedMessage> {
    std::iter::from_fn(|| match o.pop() {
        Pop::Message(m) => Some(m),
        _ => None,
    })
    .collect()
}

#[test]
fn broadcast_reaches_every_client_with_the_same_bytes() {
    let hub = hub(FlowControl::default());
    let outs: Vec<_> = (0..3).map(|_| hub.register(counter().1)).collect();
    let msg = text("hi");
    let report = hub.broadcast(&msg, Instant::now());
    assert_eq!(
        report,
        BroadcastReport {
            delivered: 3,
            dropped: vec![]
        }
    );
    for o in &outs {
        assert_eq!(o.pop(), Pop::Message(msg.clone()));
        assert_eq!(o.pop(), Pop::Empty);
    }
    assert_eq!(msg.as_bytes(), &[0x81, 2, b'h', b'i']);
}

#[test]
fn a_push_into_an_empty_queue_wakes_its_owner_once() {
    let hub = hub(FlowControl::default());
    let (c, w) = counter();
    let o = hub.register(w);
    let now = Instant::now();
    hub.broadcast(&text("a"), now);
    hub.broadcast(&text("b"), now);
    assert_eq!(c.count(), 1, "the second push found the queue non-empty");
    pop_all(&o);
    hub.broadcast(&text("c"), now);
    assert_eq!(c.count(), 2);
}

#[test]
fn a_queue_above_the_mark_congests_the_hub_without_dropping_anyone() {
    let hub = hub(small());
    let slow = hub.register(counter().1);
    let now = Instant::now();
    for i in 0..2 {
        hub.broadcast(&text(&i.to_string()), now);
    }
    assert!(!hub.is_congested(), "at the mark is not above it");
    let report = hub.broadcast(&text("2"), now);
    assert_eq!(report.dropped, vec![]);
    assert!(hub.is_congested());
    assert!(hub.contains(slow.id()));
    assert_eq!(hub.stats().stalled, 1);
    // Every message is still there, in order.
    assert_eq!(pop_all(&slow), vec![text("0"), text("1"), text("2")]);
}

#[test]
fn the_byte_mark_counts_too() {
    let hub = hub(FlowControl::default().high_water(1000, 100));
    let _o = hub.register(counter().1);
    let now = Instant::now();
    hub.broadcast(
        &PreparedMessage::new(&Message::binary(vec![0; 50])).unwrap(),
        now,
    );
    assert!(!hub.is_congested());
    hub.broadcast(
        &PreparedMessage::new(&Message::binary(vec![0; 50])).unwrap(),
        now,
    );
    assert!(
        hub.is_congested(),
        "two 50-byte frames plus overhead pass 100 bytes"
    );
}

#[test]
fn draining_below_the_mark_wakes_every_paused_party() {
    let hub = hub(small());
    let slow = hub.register(counter().1);
    let now = Instant::now();
    for i in 0..3 {
        hub.broadcast(&text(&i.to_string()), now);
    }
    let (a, aw) = counter();
    let (b, bw) = counter();
    let (mut ra, mut rb) = (None, None);
    assert!(hub.pause(&aw, &mut ra));
    assert!(hub.pause(&bw, &mut rb));
    assert!(hub.pause(&aw, &mut ra), "still paused");
    assert_eq!((a.count(), b.count()), (0, 0));
    assert!(matches!(slow.pop(), Pop::Message(_)));
    assert!(!hub.is_congested(), "2 left: at the mark");
    assert_eq!((a.count(), b.count()), (1, 1), "each woken once");
    assert!(!hub.pause(&aw, &mut ra));
    assert_eq!(ra, None);
}

#[test]
fn a_party_paused_again_after_a_missed_wake_is_registered_again() {
    let hub = hub(small());
    let slow = hub.register(counter().1);
    let now = Instant::now();
    let fill = |n: usize| {
        for _ in 0..n {
            hub.broadcast(&text("x"), now);
        }
    };
    fill(3);
    let (a, aw) = counter();
    let mut reg = None;
    assert!(hub.pause(&aw, &mut reg));
    // Cleared and congested again before the paused party looked.
    slow.pop();
    assert_eq!(a.count(), 1);
    fill(1);
    assert!(hub.is_congested());
    assert!(hub.pause(&aw, &mut reg), "congested again");
    slow.pop();
    assert_eq!(a.count(), 2, "the new registration was woken");
}

#[test]
fn a_client_stalled_past_the_timeout_is_dropped_with_1013_and_others_resume() {
    let hub = hub(small());
    let (sc, sw) = counter();
    let slow = hub.register(sw);
    let fast = hub.register(counter().1);
    let t0 = Instant::now();
    for i in 0..3 {
        hub.broadcast(&text(&i.to_string()), t0);
        pop_all(&fast);
    }
    let (p, pw) = counter();
    let mut reg = None;
    assert!(hub.pause(&pw, &mut reg));
    assert_eq!(hub.poll_timeout(), Some(t0 + Duration::from_secs(1)));
    assert_eq!(hub.handle_timeout(t0 + Duration::from_millis(999)), vec![]);
    assert!(hub.contains(slow.id()));
    let woken = sc.count();
    assert_eq!(
        hub.handle_timeout(t0 + Duration::from_secs(1)),
        vec![slow.id()]
    );
    assert!(!hub.contains(slow.id()) && hub.contains(fast.id()));
    assert!(sc.count() > woken, "the dropped client's task is woken");
    assert_eq!(
        slow.pop(),
        Pop::Closed(SLOW_CLIENT_CLOSE),
        "its queue was emptied"
    );
    assert!(!hub.is_congested());
    assert_eq!(p.count(), 1, "the paused sender resumed");
    assert_eq!(hub.poll_timeout(), None);
    assert_eq!(hub.stats().dropped_slow, 1);
    assert_eq!(hub.stats().queued_bytes, 0);
}

#[test]
fn draining_below_the_mark_restarts_the_stall_clock() {
    let hub = hub(small());
    let slow = hub.register(counter().1);
    let t0 = Instant::now();
    for _ in 0..3 {
        hub.broadcast(&text("x"), t0);
    }
    slow.pop(); // progress: below the mark
    let t1 = t0 + Duration::from_millis(800);
    hub.broadcast(&text("y"), t1); // above again, from t1
    assert_eq!(hub.handle_timeout(t0 + Duration::from_millis(1500)), vec![]);
    assert_eq!(hub.poll_timeout(), Some(t1 + Duration::from_secs(1)));
    assert_eq!(
        hub.handle_timeout(t1 + Duration::from_secs(1)),
        vec![slow.id()]
    );
}

#[test]
fn a_broadcast_drops_clients_stalled_past_the_timeout() {
    let hub = hub(small());
    let slow = hub.register(counter().1);
    let t0 = Instant::now();
    for _ in 0..3 {
        hub.broadcast(&text("x"), t0);
    }
    let report = hub.broadcast(&text("late"), t0 + Duration::from_secs(2));
    assert_eq!(report.dropped, vec![slow.id()]);
}

#[test]
fn a_queue_past_the_byte_bound_is_dropped_at_once() {
    let limits = FlowControl::default()
        .high_water(1000, 1000)
        .max_queued_bytes(2000);
    let hub = hub(limits);
    let slow = hub.register(counter().1);
    let fast = hub.register(counter().1);
    let kib = PreparedMessage::new(&Message::binary(vec![7; 900])).unwrap();
    let now = Instant::now();
    assert_eq!(hub.broadcast(&kib, now).dropped, vec![]);
    pop_all(&fast);
    assert_eq!(
        hub.broadcast(&kib, now).dropped,
        vec![],
        "about 1.8 KiB queued"
    );
    pop_all(&fast);
    let report = hub.broadcast(&kib, now);
    assert_eq!(report.dropped, vec![slow.id()]);
    assert_eq!(report.delivered, 1);
    assert_eq!(slow.pop(), Pop::Closed(SLOW_CLIENT_CLOSE));
    assert!(hub.stats().peak_queue_bytes <= 2000);
}

#[test]
fn one_message_larger_than_the_byte_bound_fits_an_empty_queue() {
    let hub = hub(FlowControl::default()
        .high_water(10, 10)
        .max_queued_bytes(10));
    let o = hub.register(counter().1);
    let big = PreparedMessage::new(&Message::binary(vec![0; 100])).unwrap();
    assert_eq!(hub.broadcast(&big, Instant::now()).dropped, vec![]);
    assert_eq!(o.pop(), Pop::Message(big));
}

#[test]
fn shutdown_delivers_what_is_queued_then_closes_with_1001() {
    let hub = hub(FlowControl::default());
    let (c, w) = counter();
    let o = hub.register(w);
    hub.broadcast(&text("last"), Instant::now());
    assert_eq!(hub.shutdown(), vec![o.id()]);
    assert!(c.count() >= 2, "woken by the push and by the shutdown");
    assert_eq!(o.pop(), Pop::Message(text("last")));
    assert_eq!(o.pop(), Pop::Closed(CloseCode::GOING_AWAY));
    let late = hub.register(counter().1);
    assert_eq!(late.pop(), Pop::Closed(CloseCode::GOING_AWAY));
    assert!(hub.is_empty());
}

#[test]
fn dropping_a_stalled_outbox_clears_the_congestion() {
    let hub = hub(small());
    let slow = hub.register(counter().1);
    for _ in 0..3 {
        hub.broadcast(&text("x"), Instant::now());
    }
    let (p, pw) = counter();
    assert!(hub.pause(&pw, &mut None));
    drop(slow);
    assert!(!hub.is_congested());
    assert_eq!(p.count(), 1);
    assert!(hub.is_empty());
    assert_eq!(hub.stats().queued_bytes, 0);
}

#[test]
fn an_application_broadcast_waits_while_congested() {
    let hub = hub(small());
    let slow = hub.register(counter().1);
    let t0 = Instant::now();
    for _ in 0..3 {
        hub.broadcast(&text("x"), t0);
    }
    let (p, pw) = counter();
    let mut reg = None;
    let deadline = t0 + Duration::from_secs(1);
    assert_eq!(
        hub.offer(Target::All, &text("app"), &pw, &mut reg, t0),
        Err(Some(deadline))
    );
    assert_eq!(slow.len(), 3, "not queued while congested");
    slow.pop();
    assert_eq!(p.count(), 1);
    let report = hub
        .offer(Target::All, &text("app"), &pw, &mut reg, t0)
        .unwrap();
    assert_eq!(report.delivered, 1);
    assert_eq!(pop_all(&slow).last(), Some(&text("app")));
}

#[test]
fn an_application_broadcast_drops_an_expired_client_and_goes_on() {
    let hub = hub(small());
    let slow = hub.register(counter().1);
    let fast = hub.register(counter().1);
    let t0 = Instant::now();
    for _ in 0..3 {
        hub.broadcast(&text("x"), t0);
        pop_all(&fast);
    }
    let w = counter().1;
    let report = hub
        .offer(
            Target::All,
            &text("app"),
            &w,
            &mut None,
            t0 + Duration::from_secs(1),
        )
        .unwrap();
    assert_eq!(report.dropped, vec![slow.id()]);
    assert_eq!(report.delivered, 1);
    assert_eq!(pop_all(&fast), vec![text("app")]);
}

#[test]
fn stats_count_queued_bytes_and_the_peak() {
    let hub = hub(FlowControl::default());
    let a = hub.register(counter().1);
    let _b = hub.register(counter().1);
    let msg = text("hello");
    let cost = msg.as_bytes().len() + ENTRY_OVERHEAD;
    hub.broadcast(&msg, Instant::now());
    hub.broadcast(&msg, Instant::now());
    let st = hub.stats();
    assert_eq!(
        (st.clients, st.queued_bytes, st.peak_queue_bytes),
        (2, 4 * cost, 2 * cost)
    );
    pop_all(&a);
    assert_eq!(hub.stats().queued_bytes, 2 * cost);
    assert_eq!(hub.ids(), vec![a.id(), _b.id()]);
}

#[test]
fn pop_while_takes_a_batch_in_order_until_told_to_stop() {
    let hub = hub(FlowControl::default());
    let o = hub.register(counter().1);
    for i in 0..5 {
        hub.broadcast(&text(&i.to_string()), Instant::now());
    }
    let mut got = Vec::new();
    assert_eq!(
        o.pop_while(3, |m| {
            got.push(m);
            true
        }),
        None
    );
    assert_eq!(got, vec![text("0"), text("1"), text("2")], "at most 3");
    got.clear();
    assert_eq!(
        o.pop_while(10, |m| {
            got.push(m);
            false
        }),
        None
    );
    assert_eq!(
        got,
        vec![text("3")],
        "stops when refused (the refused one is taken)"
    );
    let cost = text("4").as_bytes().len() + ENTRY_OVERHEAD;
    assert_eq!(hub.stats().queued_bytes, cost);
    hub.shutdown();
    got.clear();
    assert_eq!(
        o.pop_while(10, |m| {
            got.push(m);
            true
        }),
        Some(CloseCode::GOING_AWAY),
        "the close comes with the last message"
    );
    assert_eq!(got, vec![text("4")]);
    assert_eq!(hub.stats().queued_bytes, 0);
}

#[test]
fn the_limits_read_back_their_defaults_and_setters() {
    let d = FlowControl::default();
    assert_eq!(
        (
            d.get_high_water_messages(),
            d.get_high_water_bytes(),
            d.get_max_queued_bytes(),
            d.get_slow_client_timeout()
        ),
        (1024, 1 << 20, 16 << 20, Duration::from_secs(5))
    );
    let f = FlowControl::default()
        .high_water(7, 700)
        .max_queued_bytes(7000)
        .slow_client_timeout(Duration::from_millis(70));
    assert_eq!(
        (
            f.get_high_water_messages(),
            f.get_high_water_bytes(),
            f.get_max_queued_bytes(),
            f.get_slow_client_timeout()
        ),
        (7, 700, 7000, Duration::from_millis(70))
    );
    assert_eq!(
        FlowControl::default()
            .max_queued_bytes(1)
            .get_max_queued_bytes(),
        1 << 20
    );
    let hub = hub(f.clone());
    assert_eq!(hub.limits(), &f);
    assert!(hub.is_empty());
    let o = hub.register(counter().1);
    assert!(!hub.is_empty());
    assert!(format!("{hub:?}").contains("clients: 1"));
    assert_eq!(
        format!("{o:?}"),
        format!("Outbox {{ id: {:?}, .. }}", o.id())
    );
}

#[test]
fn a_queue_exactly_at_the_byte_mark_is_not_above_it_and_one_byte_more_is() {
    let msg = text("hello");
    let cost = msg.as_bytes().len() + ENTRY_OVERHEAD;
    let hub = hub(FlowControl::default().high_water(1000, 2 * cost));
    let _o = hub.register(counter().1);
    hub.broadcast(&msg, Instant::now());
    hub.broadcast(&msg, Instant::now());
    assert!(!hub.is_congested(), "exactly at the mark");
    let hub2 = self::hub(FlowControl::default().high_water(1000, 2 * cost - 1));
    let _o2 = hub2.register(counter().1);
    hub2.broadcast(&msg, Instant::now());
    hub2.broadcast(&msg, Instant::now());
    assert!(hub2.is_congested(), "one byte past it");
}

#[test]
fn a_queue_may_fill_exactly_to_the_byte_bound() {
    let msg = text("hello");
    let cost = msg.as_bytes().len() + ENTRY_OVERHEAD;
    let hub = hub(FlowControl::default()
        .high_water(1000, cost)
        .max_queued_bytes(3 * cost));
    let o = hub.register(counter().1);
    for _ in 0..3 {
        assert_eq!(hub.broadcast(&msg, Instant::now()).dropped, vec![]);
    }
    assert_eq!(hub.stats().peak_queue_bytes, 3 * cost, "exactly the bound");
    assert_eq!(
        hub.broadcast(&msg, Instant::now()).dropped,
        vec![o.id()],
        "one past"
    );
}

#[test]
fn publish_reaches_subscribers_only_once_and_in_order() {
    let hub = hub(FlowControl::default());
    let a = hub.register(counter().1);
    let b = hub.register(counter().1);
    let outsider = hub.register(counter().1);
    assert!(hub.subscribe(a.id(), "room"));
    assert!(hub.subscribe(b.id(), "room"));
    assert!(hub.subscribe(b.id(), "room"), "twice is one subscription");
    let t0 = Instant::now();
    let msgs = [text("1"), text("2"), text("3")];
    let report = hub.deliver(Target::Topic("room"), &msgs, t0);
    assert_eq!(report.delivered, 2);
    for o in [&a, &b] {
        assert_eq!(pop_all(o), msgs.to_vec());
    }
    assert!(pop_all(&outsider).is_empty());
    assert_eq!(hub.publish("nobody", &text("x"), t0).delivered, 0);
    assert_eq!(hub.topic_len("room"), 2);
    assert_eq!(hub.topics(), vec![("room".to_string(), 2)]);
}

#[test]
fn unsubscribing_and_leaving_empty_the_topic_table() {
    let hub = hub(FlowControl::default());
    let a = hub.register(counter().1);
    let b = hub.register(counter().1);
    for t in ["x", "y"] {
        hub.subscribe(a.id(), t);
        hub.subscribe(b.id(), t);
    }
    assert_eq!(hub.subscriptions(a.id()), ["x", "y"]);
    assert!(hub.unsubscribe(a.id(), "x"));
    assert!(!hub.unsubscribe(a.id(), "x"), "not subscribed any more");
    hub.publish("x", &text("only b"), Instant::now());
    assert!(pop_all(&a).is_empty());
    assert_eq!(pop_all(&b).len(), 1);
    drop(b);
    assert_eq!(hub.topics(), vec![("y".to_string(), 1)]);
    drop(a);
    assert_eq!(hub.stats().topics, 0, "no topic outlives its subscribers");
    assert!(hub.topics().is_empty());
}

#[test]
fn a_dropped_client_leaves_its_topics_and_cannot_subscribe_again() {
    let limits = FlowControl::default()
        .high_water(1000, 1)
        .max_queued_bytes(1);
    let hub = hub(limits);
    let slow = hub.register(counter().1);
    hub.subscribe(slow.id(), "t");
    let t0 = Instant::now();
    hub.publish("t", &text("a"), t0);
    let report = hub.publish("t", &text("b"), t0);
    assert_eq!(report.dropped, vec![slow.id()], "past the hard bound");
    assert_eq!(hub.topic_len("t"), 0);
    assert!(!hub.subscribe(slow.id(), "t"));
    assert_eq!(hub.stats().topics, 0);
}

#[test]
fn a_send_to_one_client_reaches_only_it() {
    let hub = hub(FlowControl::default());
    let a = hub.register(counter().1);
    let b = hub.register(counter().1);
    let report = hub.deliver(Target::Client(b.id()), &[text("dm")], Instant::now());
    assert_eq!(report.delivered, 1);
    assert!(pop_all(&a).is_empty());
    assert_eq!(pop_all(&b), vec![text("dm")]);
    let gone = ClientId(999);
    assert_eq!(
        hub.deliver(Target::Client(gone), &[text("x")], Instant::now())
            .delivered,
        0
    );
}

#[test]
fn an_application_close_delivers_what_is_queued_then_closes_with_its_reason() {
    let hub = hub(FlowControl::default());
    let (w, wake) = counter();
    let a = hub.register(wake);
    hub.subscribe(a.id(), "t");
    hub.broadcast(&text("last"), Instant::now());
    assert!(hub.close_client(a.id(), CloseCode::POLICY_VIOLATION, "bye"));
    assert!(!hub.close_client(a.id(), CloseCode::NORMAL, "again"));
    assert!(w.count() > 0, "woken to close");
    assert_eq!(hub.topic_len("t"), 0, "left its topics at once");
    assert_eq!(a.pop(), Pop::Message(text("last")));
    assert_eq!(a.pop(), Pop::Closed(CloseCode::POLICY_VIOLATION));
    assert_eq!(a.close_reason(), "bye");
}

#[test]
fn a_connection_handle_knows_the_peer_of_a_registered_client() {
    let hub = hub(FlowControl::default());
    let peer: std::net::SocketAddr = "127.0.0.1:5000".parse().unwrap();
    let a = hub.register_peer(counter().1, Some(peer));
    let h = hub.connection(a.id()).unwrap();
    assert_eq!((h.id(), h.peer_addr()), (a.id(), peer));
    assert!(h.is_open());
    h.send(&Message::text("via handle")).unwrap();
    assert_eq!(pop_all(&a), vec![text("via handle")]);
    assert!(
        h.send(&Message::Ping("p".into())).is_err(),
        "control frames are refused"
    );
    drop(a);
    assert!(hub.connection(h.id()).is_none());
    assert!(matches!(
        h.send(&Message::text("late")),
        Err(crate::Error::Closed)
    ));
    assert!(!h.subscribe("t"));
}
