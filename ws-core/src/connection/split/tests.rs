use super::*;
use crate::error::TimeoutKind;
use std::time::Duration;

/// A client connection as the peer, and a server connection split in two.
fn server_pair(config: Config) -> (Connection, Receiver, Sender) {
    let peer = Connection::new(Role::Client, config.clone());
    let (rx, tx) = Connection::new(Role::Server, config).split();
    (peer, rx, tx)
}

/// Moves everything the peer queued into the receiver.
fn peer_to_rx(peer: &mut Connection, rx: &mut Receiver) {
    loop {
        let chunk = peer.take_transmit();
        if chunk.is_empty() {
            break;
        }
        rx.handle_bytes(&chunk);
    }
}

/// Moves everything the sender queued into the peer and decodes it.
fn tx_to_peer(tx: &mut Sender, peer: &mut Connection) -> Vec<Message> {
    loop {
        let chunk = tx.take_transmit();
        if chunk.is_empty() {
            break;
        }
        peer.handle_bytes(&chunk);
    }
    let mut got = Vec::new();
    while let Some(m) = peer.poll_message().unwrap() {
        got.push(m);
    }
    got
}

fn drain_rx(rx: &mut Receiver) -> Vec<Message> {
    let mut got = Vec::new();
    while let Some(m) = rx.poll_message().unwrap() {
        got.push(m);
    }
    got
}

#[test]
fn data_flows_both_ways_without_control_traffic() {
    let (mut peer, mut rx, mut tx) = server_pair(Config::default());
    peer.send_text("up").unwrap();
    peer_to_rx(&mut peer, &mut rx);
    assert_eq!(drain_rx(&mut rx), vec![Message::text("up")]);
    assert!(!rx.control_pending(), "a data frame needs no reply");
    tx.send_binary(b"down").unwrap();
    assert_eq!(
        tx_to_peer(&mut tx, &mut peer),
        vec![Message::binary(&b"down"[..])]
    );
    assert_eq!(rx.state(), State::Open);
    assert_eq!(tx.state(), State::Open);
}

#[test]
fn every_ping_on_the_receiver_is_answered_by_the_sender_in_order() {
    let (mut peer, mut rx, mut tx) = server_pair(Config::default());
    for p in [&b"a"[..], b"bb", b"ccc"] {
        peer.send_ping(p).unwrap();
    }
    peer_to_rx(&mut peer, &mut rx);
    assert_eq!(
        drain_rx(&mut rx).len(),
        3,
        "pings are reported to the caller"
    );
    assert!(rx.control_pending());
    assert!(tx.wants_write(), "the sender knows it has bytes to write");
    let got = tx_to_peer(&mut tx, &mut peer);
    assert_eq!(
        got,
        vec![
            Message::Pong(Bytes::from_static(b"a")),
            Message::Pong(Bytes::from_static(b"bb")),
            Message::Pong(Bytes::from_static(b"ccc")),
        ]
    );
    assert!(!rx.control_pending());
}

#[test]
fn pongs_go_out_between_whole_frames_not_inside_one() {
    let (mut peer, mut rx, mut tx) = server_pair(Config::default());
    tx.send_binary(&[7u8; 1000]).unwrap();
    // Half of the data frame is written before the ping arrives.
    let first = tx.pending_transmit().len();
    assert!(first > 500);
    let half = tx.pending_transmit()[..500].to_vec();
    tx.advance_transmit(500);
    peer.handle_bytes(&half);
    peer.send_ping(b"p").unwrap();
    peer_to_rx(&mut peer, &mut rx);
    drain_rx(&mut rx);
    let got = tx_to_peer(&mut tx, &mut peer);
    assert_eq!(
        got,
        vec![
            Message::binary(vec![7u8; 1000]),
            Message::Pong(Bytes::from_static(b"p"))
        ]
    );
}

#[test]
fn a_close_from_the_peer_is_answered_once_and_ends_both_halves() {
    let (mut peer, mut rx, mut tx) = server_pair(Config::default());
    peer.close(CloseCode::GOING_AWAY, "bye").unwrap();
    peer_to_rx(&mut peer, &mut rx);
    let got = drain_rx(&mut rx);
    assert!(matches!(&got[..], [Message::Close(Some(f))] if f.code == CloseCode::GOING_AWAY));
    assert!(
        !rx.should_close_transport(),
        "the receiver waits until the reply is written"
    );
    assert!(matches!(tx.send_text("late"), Err(Error::Closed)));
    let replies = tx_to_peer(&mut tx, &mut peer);
    assert!(matches!(&replies[..], [Message::Close(Some(f))] if f.code == CloseCode::GOING_AWAY));
    assert!(tx.should_close_transport(), "a server closes TCP first");
    assert!(rx.should_close_transport());
    assert_eq!(rx.state(), State::Closed);
    assert_eq!(tx.state(), State::Closed);
}

#[test]
fn a_close_sent_by_the_sender_starts_the_receivers_close_timer() {
    let config = Config::default().close_timeout(Duration::from_secs(3));
    let (mut peer, mut rx, mut tx) = server_pair(config);
    let now = Instant::now();
    assert_eq!(rx.poll_timeout(now), None);
    tx.close(CloseCode::NORMAL, "").unwrap();
    assert!(rx.close_sent());
    assert_eq!(rx.poll_timeout(now), Some(now + Duration::from_secs(3)));
    // The peer pings instead of answering: no pong after our close.
    peer.send_ping(b"x").unwrap();
    peer_to_rx(&mut peer, &mut rx);
    drain_rx(&mut rx);
    assert!(!rx.control_pending());
    rx.handle_timeout(now + Duration::from_secs(3));
    assert!(
        matches!(rx.poll_message(), Err(Error::Timeout(TimeoutKind::Close))),
        "an unanswered close times out"
    );
    assert!(rx.should_close_transport());
    assert!(tx.should_close_transport());
}

#[test]
fn a_protocol_violation_makes_the_sender_send_its_close_code() {
    let (mut peer, mut rx, mut tx) = server_pair(Config::default());
    // A frame with a reserved bit set.
    rx.handle_bytes(&[0x91, 0x80, 0, 0, 0, 0]);
    assert!(matches!(rx.poll_message(), Err(Error::Protocol(_))));
    assert!(matches!(tx.send_text("after"), Err(Error::Closed)));
    let got = tx_to_peer(&mut tx, &mut peer);
    assert!(
        matches!(&got[..], [Message::Close(Some(f))] if f.code == CloseCode::PROTOCOL_ERROR),
        "{got:?}"
    );
    assert!(tx.should_close_transport());
    assert!(rx.should_close_transport());
}

#[test]
fn a_sender_that_never_drains_keeps_the_ping_flood_bounded() {
    let limit = 4096;
    let config = Config::default().write_buffer_limit(limit);
    let (mut peer, mut rx, mut tx) = server_pair(config);
    for i in 0..10_000u32 {
        peer.send_ping(&i.to_be_bytes()).unwrap();
        peer_to_rx(&mut peer, &mut rx);
        drain_rx(&mut rx);
    }
    let wire = {
        let mut n = 0;
        loop {
            let c = tx.take_transmit();
            if c.is_empty() {
                break n;
            }
            peer.handle_bytes(&c);
            n += c.len();
        }
    };
    assert!(wire <= 2 * limit, "{wire} bytes of pongs queued");
    let mut last = None;
    while let Some(m) = peer.poll_message().unwrap() {
        last = Some(m);
    }
    assert_eq!(
        last,
        Some(Message::Pong(Bytes::copy_from_slice(
            &9_999u32.to_be_bytes()
        ))),
        "the newest ping is always answered"
    );
}

#[test]
fn keepalive_pings_leave_through_the_sender() {
    let config = Config::default().keepalive(Some(Duration::from_secs(10)));
    let (mut peer, mut rx, mut tx) = server_pair(config);
    let now = Instant::now();
    let at = rx.poll_timeout(now).expect("keepalive armed");
    rx.handle_timeout(at);
    assert!(rx.control_pending());
    let got = tx_to_peer(&mut tx, &mut peer);
    assert_eq!(got, vec![Message::Ping(Bytes::from_static(b"keepalive"))]);
}

#[test]
fn end_of_stream_makes_the_sender_refuse_new_messages() {
    let (_peer, mut rx, mut tx) = server_pair(Config::default());
    rx.handle_eof();
    assert!(matches!(rx.poll_message(), Err(Error::AbnormalClosure)));
    assert!(matches!(tx.send_text("x"), Err(Error::Closed)));
    assert!(rx.should_close_transport());
}

#[test]
fn reunite_keeps_queued_bytes_and_unsent_replies() {
    let (mut peer, mut rx, mut tx) = server_pair(Config::default());
    tx.send_text("queued").unwrap();
    peer.send_ping(b"r").unwrap();
    peer_to_rx(&mut peer, &mut rx);
    drain_rx(&mut rx);
    let (_, other_tx) = Connection::new(Role::Server, Config::default()).split();
    let (rx, _other_tx) = rx
        .reunite(other_tx)
        .expect_err("halves of different connections");
    let mut whole = rx.reunite(tx).expect("halves of one connection");
    let wire = whole.take_transmit();
    peer.handle_bytes(&wire);
    assert_eq!(peer.poll_message().unwrap(), Some(Message::text("queued")));
    assert_eq!(
        peer.poll_message().unwrap(),
        Some(Message::Pong(Bytes::from_static(b"r")))
    );
    whole.send_text("again").unwrap();
    peer.handle_bytes(&whole.take_transmit());
    assert_eq!(peer.poll_message().unwrap(), Some(Message::text("again")));
}

#[test]
fn halves_on_two_threads_lose_no_pong_and_interleave_no_frame() {
    // The receiver decodes pings and data on one thread while the sender
    // streams data frames on another; the peer must see well-formed frames,
    // every data message, and one pong per ping.
    const PINGS: u32 = 2_000;
    const SENDS: u32 = 2_000;
    let (mut peer, mut rx, mut tx) = server_pair(Config::default());
    let mut input = Vec::new();
    for i in 0..PINGS {
        peer.send_ping(&i.to_be_bytes()).unwrap();
        input.extend_from_slice(&peer.take_transmit());
    }
    let reader = std::thread::spawn(move || {
        for chunk in input.chunks(7) {
            rx.handle_bytes(chunk);
            drain_rx(&mut rx);
        }
        rx
    });
    let mut wire = Vec::new();
    for i in 0..SENDS {
        tx.send_binary(&i.to_be_bytes()).unwrap();
        wire.extend_from_slice(&tx.take_transmit());
    }
    let _rx = reader.join().unwrap();
    loop {
        let c = tx.take_transmit();
        if c.is_empty() {
            break;
        }
        wire.extend_from_slice(&c);
    }
    peer.handle_bytes(&wire);
    let (mut data, mut pongs) = (0u32, 0u32);
    while let Some(m) = peer.poll_message().expect("well-formed frames") {
        match m {
            Message::Binary(b) => {
                assert_eq!(&b[..], &data.to_be_bytes());
                data += 1;
            }
            Message::Pong(p) => {
                assert_eq!(&p[..], &pongs.to_be_bytes());
                pongs += 1;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!((data, pongs), (SENDS, PINGS));
}

#[test]
fn queueing_a_message_leaves_pending_pongs_flagged_for_the_next_write() {
    let (mut peer, mut rx, mut tx) = server_pair(Config::default());
    peer.send_ping(b"q").unwrap();
    peer_to_rx(&mut peer, &mut rx);
    drain_rx(&mut rx);
    tx.send_text("data").unwrap();
    assert!(
        rx.control_pending(),
        "only a write takes the pong, so the reader still knows one is owed"
    );
    let got = tx_to_peer(&mut tx, &mut peer);
    assert_eq!(
        got,
        vec![
            Message::text("data"),
            Message::Pong(Bytes::from_static(b"q"))
        ]
    );
}

mod interleavings {
    use super::*;
    use proptest::prelude::*;

    /// One step of a client peer talking to a split server.
    #[derive(Debug, Clone)]
    enum Step {
        /// The peer queues a text message of this length.
        PeerText(usize),
        /// The peer queues a ping.
        PeerPing,
        /// The server's sender queues a binary message of this length.
        ServerBinary(usize),
        /// Up to this many bytes travel peer -> receiver, then it decodes.
        ToServer(usize),
        /// Up to this many bytes travel sender -> peer (possibly mid-frame).
        ToPeer(usize),
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            (0usize..300).prop_map(Step::PeerText),
            Just(Step::PeerPing),
            (0usize..20_000).prop_map(Step::ServerBinary),
            (1usize..4000).prop_map(Step::ToServer),
            (1usize..30_000).prop_map(Step::ToPeer),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]
        /// Whatever the order of reads, writes and partial transmissions,
        /// the split halves deliver every message both ways in order,
        /// answer every ping exactly once, and never put a pong inside a
        /// data frame; then a close from the peer ends both halves.
        #[test]
        fn split_halves_match_the_protocol_under_any_interleaving(
            steps in proptest::collection::vec(step(), 1..60),
        ) {
            let (mut peer, mut rx, mut tx) = server_pair(Config::default());
            let mut up = Vec::<u8>::new();
            let (mut sent_up, mut sent_down, mut pings) = (Vec::new(), Vec::new(), 0u32);
            let (mut got_up, mut got_down, mut pongs) = (Vec::new(), Vec::new(), 0u32);
            let decode_rx = |rx: &mut Receiver, got: &mut Vec<Message>| {
                while let Some(m) = rx.poll_message().expect("valid frames") {
                    if m.is_data() {
                        got.push(m);
                    }
                }
            };
            let decode_peer = |peer: &mut Connection, got: &mut Vec<Message>, pongs: &mut u32| {
                while let Some(m) = peer.poll_message().expect("well-formed frames") {
                    match m {
                        Message::Pong(_) => *pongs += 1,
                        m => got.push(m),
                    }
                }
            };
            for s in steps {
                match s {
                    Step::PeerText(n) => {
                        let m = Message::text("x".repeat(n));
                        peer.send(&m).unwrap();
                        sent_up.push(m);
                        up.extend_from_slice(&peer.take_transmit());
                    }
                    Step::PeerPing => {
                        peer.send_ping(&pings.to_be_bytes()).unwrap();
                        pings += 1;
                        up.extend_from_slice(&peer.take_transmit());
                    }
                    Step::ServerBinary(n) => {
                        let m = Message::binary(vec![(n % 251) as u8; n]);
                        tx.send(&m).unwrap();
                        sent_down.push(m);
                    }
                    Step::ToServer(n) => {
                        let n = n.min(up.len());
                        rx.handle_bytes(&up[..n]);
                        up.drain(..n);
                        decode_rx(&mut rx, &mut got_up);
                    }
                    Step::ToPeer(n) => {
                        let chunk = tx.pending_transmit();
                        let n = n.min(chunk.len());
                        peer.handle_bytes(&chunk[..n]);
                        tx.advance_transmit(n);
                        decode_peer(&mut peer, &mut got_down, &mut pongs);
                    }
                }
            }
            // The peer closes; everything still in flight is delivered.
            peer.close(CloseCode::NORMAL, "").unwrap();
            up.extend_from_slice(&peer.take_transmit());
            rx.handle_bytes(&up);
            decode_rx(&mut rx, &mut got_up);
            loop {
                let chunk = tx.take_transmit();
                if chunk.is_empty() {
                    break;
                }
                peer.handle_bytes(&chunk);
            }
            let mut closed = false;
            while let Some(m) = peer.poll_message().expect("well-formed frames") {
                match m {
                    Message::Pong(_) => pongs += 1,
                    Message::Close(_) => closed = true,
                    m => got_down.push(m),
                }
            }
            prop_assert_eq!(got_up, sent_up);
            prop_assert_eq!(got_down, sent_down);
            prop_assert_eq!(pongs, pings);
            prop_assert!(closed, "the close is answered");
            prop_assert!(tx.should_close_transport());
            prop_assert!(rx.should_close_transport());
        }
    }
}

#[test]
fn discarding_the_queue_drops_pending_control_replies_and_releases_the_receiver() {
    let (mut peer, mut rx, mut tx) = server_pair(Config::default());
    peer.send_ping(b"lost").unwrap();
    peer.close(CloseCode::NORMAL, "").unwrap();
    peer_to_rx(&mut peer, &mut rx);
    drain_rx(&mut rx);
    assert!(rx.control_pending());
    assert!(!rx.should_close_transport(), "the close reply is owed");
    // The transport failed: nothing more can be written.
    tx.discard_transmit();
    assert!(!rx.control_pending(), "nobody is left to write the replies");
    assert!(!tx.wants_write());
    assert!(rx.should_close_transport());
}

#[test]
fn both_halves_report_the_role_and_config_they_were_split_from() {
    let config = Config::default().write_buffer_limit(777);
    for role in [Role::Client, Role::Server] {
        let (rx, tx) = Connection::new(role, config.clone()).split();
        assert_eq!((rx.role(), tx.role()), (role, role));
        assert_eq!(rx.config().get_write_buffer_limit(), 777);
        assert_eq!(tx.config().get_write_buffer_limit(), 777);
    }
}

#[test]
fn close_sent_and_close_received_are_seen_by_both_halves() {
    // Our close, queued by the sender.
    let (mut peer, mut rx, mut tx) = server_pair(Config::default());
    assert!(!rx.close_sent() && !tx.close_sent());
    assert!(!rx.close_received() && !tx.close_received());
    tx.close(CloseCode::NORMAL, "").unwrap();
    assert!(rx.close_sent() && tx.close_sent());
    assert!(!rx.close_received() && !tx.close_received());
    assert_eq!((rx.state(), tx.state()), (State::Closing, State::Closing));
    // The peer's answer, received by the receiver.
    tx_to_peer(&mut tx, &mut peer);
    peer_to_rx(&mut peer, &mut rx);
    drain_rx(&mut rx);
    assert!(rx.close_received() && tx.close_received());
    assert_eq!((rx.state(), tx.state()), (State::Closed, State::Closed));

    // The peer's close, answered by the receiver through the sender.
    let (mut peer, mut rx, tx) = server_pair(Config::default());
    peer.close(CloseCode::NORMAL, "").unwrap();
    peer_to_rx(&mut peer, &mut rx);
    drain_rx(&mut rx);
    assert!(rx.close_received() && tx.close_received());
    assert!(rx.close_sent() && tx.close_sent(), "the reply is queued");
    assert_eq!((rx.state(), tx.state()), (State::Closed, State::Closed));
}

#[test]
fn each_way_of_ending_closes_both_halves() {
    let now = Instant::now();
    // End of stream.
    let (_peer, mut rx, tx) = server_pair(Config::default());
    rx.handle_eof();
    assert_eq!((rx.state(), tx.state()), (State::Closed, State::Closed));
    // A protocol violation.
    let (_peer, mut rx, tx) = server_pair(Config::default());
    rx.handle_bytes(&[0x82, 0x00]); // unmasked
    assert!(rx.poll_message().is_err());
    assert_eq!((rx.state(), tx.state()), (State::Closed, State::Closed));
    // A keepalive ping never answered.
    let config = Config::default()
        .keepalive(Some(Duration::from_secs(1)))
        .keepalive_timeout(Duration::from_secs(1));
    let (_peer, mut rx, mut tx) = server_pair(config);
    let at = rx.poll_timeout(now).unwrap();
    rx.handle_timeout(at);
    let at = rx.poll_timeout(at).unwrap();
    rx.handle_timeout(at);
    assert!(matches!(
        rx.poll_message(),
        Err(Error::Timeout(TimeoutKind::Keepalive))
    ));
    assert_eq!((rx.state(), tx.state()), (State::Closed, State::Closed));
    assert!(matches!(tx.send_text("x"), Err(Error::Closed)));
    assert!(rx.should_close_transport(), "a timeout ends at once");
    assert!(tx.should_close_transport());
}

#[test]
fn sender_wants_write_for_its_own_queue_and_for_replies_not_yet_taken() {
    let (mut peer, mut rx, mut tx) = server_pair(Config::default());
    assert!(!tx.wants_write());
    tx.send_text("own").unwrap();
    assert!(tx.wants_write());
    assert_eq!(tx.buffered_transmit(), 5);
    tx_to_peer(&mut tx, &mut peer);
    assert!(!tx.wants_write());
    assert_eq!(tx.buffered_transmit(), 0);
    peer.send_ping(b"p").unwrap();
    peer_to_rx(&mut peer, &mut rx);
    drain_rx(&mut rx);
    assert!(tx.wants_write(), "a pong is owed");
    assert_eq!(tx.buffered_transmit(), 0, "not taken yet");
    assert_eq!(tx.pending_transmit(), b"\x8a\x01p");
    assert_eq!(tx.buffered_transmit(), 3);
}

#[test]
fn a_sender_that_wrote_everything_releases_its_output_buffer() {
    let (_peer, _rx, mut tx) = server_pair(Config::default());
    tx.send_binary(&[1; 1000]).unwrap();
    assert_eq!(tx.release_idle_buffers(), 0, "queued bytes are kept");
    let n = tx.pending_transmit().len();
    tx.advance_transmit(n);
    assert!(tx.release_idle_buffers() >= 1000);
    assert_eq!(tx.release_idle_buffers(), 0);
}

#[test]
fn the_receiver_waits_for_the_close_frame_to_be_written_not_just_queued() {
    let (mut peer, mut rx, mut tx) = server_pair(Config::default());
    tx.close(CloseCode::NORMAL, "").unwrap();
    peer.close(CloseCode::NORMAL, "").unwrap();
    peer_to_rx(&mut peer, &mut rx);
    drain_rx(&mut rx);
    assert!(!rx.should_close_transport(), "our close is still queued");
    assert!(!tx.should_close_transport());
    let n = tx.pending_transmit().len();
    tx.advance_transmit(n - 1);
    assert!(!rx.should_close_transport(), "one byte is still queued");
    tx.advance_transmit(1);
    assert!(rx.should_close_transport(), "a server closes TCP first");
    assert!(tx.should_close_transport());
}

#[test]
fn a_client_receiver_waits_for_the_server_to_close_the_transport() {
    let config = Config::default();
    let mut peer = Connection::new(Role::Server, config.clone());
    let (mut rx, mut tx) = Connection::new(Role::Client, config).split();
    tx.close(CloseCode::NORMAL, "").unwrap();
    let n = tx.pending_transmit().len();
    tx.advance_transmit(n);
    peer.close(CloseCode::NORMAL, "").unwrap();
    rx.handle_bytes(&peer.take_transmit());
    drain_rx(&mut rx);
    assert_eq!(rx.state(), State::Closed);
    assert!(!rx.should_close_transport(), "the server closes first");
    assert!(!tx.should_close_transport());
    rx.handle_eof();
    assert!(rx.should_close_transport());
    assert!(tx.should_close_transport());
}

#[test]
fn a_sender_with_control_replies_not_yet_taken_keeps_the_transport_open() {
    let (mut peer, mut rx, mut tx) = server_pair(Config::default());
    peer.send_ping(b"p").unwrap();
    peer.close(CloseCode::NORMAL, "").unwrap();
    peer_to_rx(&mut peer, &mut rx);
    drain_rx(&mut rx);
    assert!(
        !tx.should_close_transport(),
        "the pong and the reply are owed"
    );
    let got = tx_to_peer(&mut tx, &mut peer);
    assert_eq!(got.len(), 2, "{got:?}");
    assert!(tx.should_close_transport());
}

#[test]
fn unanswered_pings_are_all_kept_up_to_the_write_limit_and_only_the_newest_past_it() {
    // Each 6-byte ping counts as 6 + 14 (the largest header) = 20 bytes.
    let config = Config::default().write_buffer_limit(100);
    let pongs_for = |pings: u8| {
        let (mut peer, mut rx, mut tx) = server_pair(config.clone());
        for i in 0..pings {
            peer.send_ping(&[i; 6]).unwrap();
        }
        peer_to_rx(&mut peer, &mut rx);
        drain_rx(&mut rx);
        tx_to_peer(&mut tx, &mut peer)
            .into_iter()
            .map(|m| m.payload()[0])
            .collect::<Vec<_>>()
    };
    assert_eq!(pongs_for(5), [0, 1, 2, 3, 4], "exactly at the limit");
    assert_eq!(pongs_for(6), [5], "one past it");
}

#[test]
fn an_idle_receiver_releases_its_read_buffer() {
    let (mut peer, mut rx, _tx) = server_pair(Config::default());
    peer.send_text("hello").unwrap();
    rx.read_buf().extend_from_slice(&peer.take_transmit());
    assert_eq!(drain_rx(&mut rx), vec![Message::text("hello")]);
    let freed = rx.release_idle_buffers();
    assert!(freed >= 2048, "{freed}");
    assert_eq!(rx.release_idle_buffers(), 0);
}

#[test]
fn at_end_of_stream_the_receiver_still_waits_for_the_senders_queued_close() {
    let (_peer, mut rx, mut tx) = server_pair(Config::default());
    tx.close(CloseCode::NORMAL, "").unwrap();
    rx.handle_eof();
    assert!(!rx.should_close_transport(), "the close frame is unwritten");
    let n = tx.pending_transmit().len();
    tx.advance_transmit(n);
    assert!(rx.should_close_transport());
}

#[test]
fn reuniting_after_the_sender_closed_keeps_the_connection_closing() {
    let config = Config::default().close_timeout(Duration::from_secs(4));
    let (_peer, rx, mut tx) = server_pair(config);
    tx.close(CloseCode::NORMAL, "").unwrap();
    // The receiver never saw the close: reuniting carries it over.
    let mut whole = rx.reunite(tx).expect("halves of one connection");
    assert!(whole.close_sent());
    assert_eq!(whole.state(), State::Closing);
    assert!(matches!(whole.send_text("late"), Err(Error::Closed)));
    let now = Instant::now();
    assert_eq!(
        whole.poll_timeout(now),
        Some(now + Duration::from_secs(4)),
        "the close timer runs"
    );
}

#[test]
fn with_exactly_the_write_limit_queued_only_the_newest_ping_is_answered() {
    // 30 bytes: room in the mailbox for both pings (15 bytes each), and
    // exactly the limit queued once the 30-byte data frame is in.
    let config = Config::default().write_buffer_limit(30);
    let (mut peer, mut rx, mut tx) = server_pair(config);
    tx.send_binary(&[0; 28]).unwrap();
    assert_eq!(tx.buffered_transmit(), 30);
    peer.send_ping(b"a").unwrap();
    peer.send_ping(b"b").unwrap();
    peer_to_rx(&mut peer, &mut rx);
    drain_rx(&mut rx);
    assert_eq!(
        tx_to_peer(&mut tx, &mut peer),
        vec![
            Message::binary(vec![0; 28]),
            Message::Pong(Bytes::from_static(b"b"))
        ]
    );
}

#[test]
fn the_sender_refuses_what_a_connection_refuses() {
    let (_peer, _rx, mut tx) = server_pair(Config::default());
    assert!(matches!(
        tx.send_ping(&[0; 126]),
        Err(Error::InvalidMessage(_))
    ));
    assert!(matches!(
        tx.send_pong(&[0; 126]),
        Err(Error::InvalidMessage(_))
    ));
    tx.close(CloseCode::NORMAL, "").unwrap();
    let prepared = PreparedMessage::new(&Message::text("x")).unwrap();
    for r in [
        tx.send_ping(b"x"),
        tx.send_pong(b"x"),
        tx.send_prepared(&prepared),
    ] {
        assert!(matches!(r, Err(Error::Closed)), "{r:?}");
    }
    let (_rx, mut client_tx) = Connection::new(Role::Client, Config::default()).split();
    assert!(matches!(
        client_tx.send_prepared(&prepared),
        Err(Error::InvalidMessage(_))
    ));
}
