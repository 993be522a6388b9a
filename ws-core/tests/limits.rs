//! Every limit of the framing `Connection` pinned at the limit and one past
//! it, and the state predicates and output-queue accounting pinned at each
//! step, so that an off-by-one or a dropped condition fails a test here
//! (these tests were written against `cargo mutants`; see the README).

mod common;

use common::{KEY, cframe, frames_of, raw, sent_frames, take_all};
use std::time::{Duration, Instant};
use ws_core::frame::{MAX_CONTROL_PAYLOAD, OpCode};
use ws_core::{
    Bytes, CloseCode, CloseFrame, Config, Connection, Error, Message, ProtocolError, Role, State,
};

fn server_with(config: Config) -> Connection {
    Connection::new(Role::Server, config)
}

/// Feeds `input` and returns every message, or the protocol error that
/// ended the input.
fn feed(conn: &mut Connection, input: &[u8]) -> Result<Vec<Message>, ProtocolError> {
    conn.handle_bytes(input);
    let mut got = Vec::new();
    loop {
        match conn.poll_message() {
            Ok(Some(m)) => got.push(m),
            Ok(None) => return Ok(got),
            Err(Error::Protocol(p)) => return Err(p),
            Err(e) => panic!("unexpected error {e}"),
        }
    }
}

// ------------------------------------------------------------ control frames

#[test]
fn a_ping_or_pong_of_exactly_125_bytes_is_sent_and_126_is_refused() {
    assert_eq!(MAX_CONTROL_PAYLOAD, 125);
    for role in [Role::Client, Role::Server] {
        let mut c = Connection::new(role, Config::default());
        let at = [7u8; 125];
        c.send_ping(&at).unwrap();
        c.send_pong(&at).unwrap();
        let frames = sent_frames(&mut c);
        assert_eq!(frames.len(), 2);
        assert_eq!(
            (frames[0].0.opcode, &frames[0].1[..]),
            (OpCode::Ping, &at[..])
        );
        assert_eq!(
            (frames[1].0.opcode, &frames[1].1[..]),
            (OpCode::Pong, &at[..])
        );
        for over in [
            c.send_ping(&[7; 126]),
            c.send_pong(&[7; 126]),
            c.send(&Message::Ping(Bytes::from(vec![7; 126]))),
        ] {
            assert!(matches!(over, Err(Error::InvalidMessage(_))), "{over:?}");
        }
        assert!(!c.wants_write(), "a refused control frame queues nothing");
        assert_eq!(c.state(), State::Open);
    }
}

#[test]
fn a_received_ping_of_exactly_125_bytes_is_answered_with_the_same_125_bytes() {
    let mut s = server_with(Config::default());
    let payload: Vec<u8> = (0..125u8).collect();
    let got = feed(&mut s, &cframe(9, &payload)).unwrap();
    assert_eq!(got, vec![Message::Ping(Bytes::from(payload.clone()))]);
    let frames = sent_frames(&mut s);
    assert_eq!(frames.len(), 1);
    assert_eq!((frames[0].0.opcode, &frames[0].1), (OpCode::Pong, &payload));
}

#[test]
fn a_close_reason_of_exactly_123_bytes_is_sent_and_124_is_refused() {
    assert_eq!(CloseFrame::MAX_REASON_LEN, 123);
    let mut c = Connection::new(Role::Client, Config::default());
    assert!(matches!(
        c.close(CloseCode::NORMAL, &"r".repeat(124)),
        Err(Error::InvalidMessage(_))
    ));
    assert!(matches!(
        c.send(&Message::Close(Some(CloseFrame::new(
            CloseCode::NORMAL,
            "r".repeat(124)
        )))),
        Err(Error::InvalidMessage(_))
    ));
    assert!(!c.close_sent() && !c.wants_write());
    let reason = "r".repeat(123);
    c.close(CloseCode::GOING_AWAY, &reason).unwrap();
    let frames = sent_frames(&mut c);
    assert_eq!(frames.len(), 1);
    assert_eq!(frames[0].0.opcode, OpCode::Close);
    assert_eq!(frames[0].0.payload_len, 125);
    assert_eq!(&frames[0].1[..2], &1001u16.to_be_bytes());
    assert_eq!(&frames[0].1[2..], reason.as_bytes());
    // The peer accepts it as the largest close frame there is.
    let mut s = server_with(Config::default());
    let wire = raw(true, 0, 8, &frames[0].1, Some(KEY));
    assert_eq!(
        feed(&mut s, &wire).unwrap(),
        vec![Message::Close(Some(CloseFrame::new(
            CloseCode::GOING_AWAY,
            reason
        )))]
    );
}

#[test]
fn a_close_frame_carries_its_code_and_reason_on_the_wire() {
    let mut s = server_with(Config::default());
    s.close(CloseCode(4000), "bye").unwrap();
    let wire = take_all(&mut s);
    assert_eq!(wire, [0x88, 5, 0x0f, 0xa0, b'b', b'y', b'e']);
}

// ------------------------------------------------------------- size limits

#[test]
fn a_frame_of_exactly_max_frame_size_is_accepted_and_one_byte_more_fails() {
    let max = 300;
    let config = Config::default()
        .max_frame_size(max)
        .max_message_size(10_000);
    // Single-frame messages.
    let mut s = server_with(config.clone());
    assert_eq!(
        feed(&mut s, &cframe(2, &vec![1; max])).unwrap(),
        vec![Message::binary(vec![1; max])]
    );
    let e = feed(&mut s, &cframe(2, &vec![1; max + 1])).unwrap_err();
    assert_eq!(
        e,
        ProtocolError::FrameTooLarge {
            size: max as u64 + 1,
            max
        }
    );
    assert_eq!(e.close_code(), CloseCode::MESSAGE_TOO_BIG);
    // Fragments: each frame is checked on its own.
    let mut s = server_with(config);
    let mut input = raw(false, 0, 1, &vec![b'a'; max], Some(KEY));
    input.extend(raw(true, 0, 0, &vec![b'b'; max], Some(KEY)));
    let text = "a".repeat(max) + &"b".repeat(max);
    assert_eq!(feed(&mut s, &input).unwrap(), vec![Message::text(text)]);
    let e = feed(&mut s, &raw(false, 0, 1, &vec![b'a'; max + 1], Some(KEY))).unwrap_err();
    assert!(matches!(
        e,
        ProtocolError::FrameTooLarge {
            size: 301,
            max: 300
        }
    ));
}

#[test]
fn a_single_frame_message_of_exactly_max_message_size_is_accepted_and_one_byte_more_fails() {
    let max = 200;
    let config = Config::default().max_frame_size(1000).max_message_size(max);
    let mut s = server_with(config.clone());
    assert_eq!(
        feed(&mut s, &cframe(1, &vec![b'x'; max])).unwrap(),
        vec![Message::text("x".repeat(max))]
    );
    let e = feed(&mut s, &cframe(1, &vec![b'x'; max + 1])).unwrap_err();
    assert_eq!(
        e,
        ProtocolError::MessageTooLarge {
            size: max as u64 + 1,
            max
        }
    );
    assert_eq!(e.close_code(), CloseCode::MESSAGE_TOO_BIG);
}

#[test]
fn a_fragmented_message_of_exactly_max_message_size_is_accepted_and_one_byte_more_fails() {
    let config = Config::default().max_message_size(10);
    let mut s = server_with(config.clone());
    let mut input = raw(false, 0, 2, &[1; 4], Some(KEY));
    input.extend(raw(false, 0, 0, &[2; 3], Some(KEY)));
    input.extend(raw(true, 0, 0, &[3; 3], Some(KEY)));
    assert_eq!(
        feed(&mut s, &input).unwrap(),
        vec![Message::binary(vec![1, 1, 1, 1, 2, 2, 2, 3, 3, 3])]
    );
    // The next message starts from zero again.
    let mut input = raw(false, 0, 2, &[1; 4], Some(KEY));
    input.extend(raw(false, 0, 0, &[2; 3], Some(KEY)));
    input.extend(raw(true, 0, 0, &[3; 4], Some(KEY)));
    assert_eq!(
        feed(&mut s, &input).unwrap_err(),
        ProtocolError::MessageTooLarge { size: 11, max: 10 }
    );
}

#[test]
fn control_frames_do_not_count_towards_the_message_size() {
    // A 5-byte ping in the middle of a 10-byte message at a 10-byte limit:
    // counted, it would make 13.
    let mut s = server_with(Config::default().max_message_size(10));
    let mut input = raw(false, 0, 2, &[1; 8], Some(KEY));
    input.extend(cframe(9, &[9; 5]));
    input.extend(raw(true, 0, 0, &[2; 2], Some(KEY)));
    assert_eq!(
        feed(&mut s, &input).unwrap(),
        vec![
            Message::Ping(Bytes::from_static(&[9; 5])),
            Message::binary(vec![1, 1, 1, 1, 1, 1, 1, 1, 2, 2])
        ]
    );
}

// ---------------------------------------------------------- state predicates

#[test]
fn close_sent_and_close_received_follow_a_closing_handshake_we_start() {
    let mut s = server_with(Config::default());
    assert!(!s.close_sent() && !s.close_received());
    s.close(CloseCode::NORMAL, "").unwrap();
    assert!(s.close_sent(), "our close is queued");
    assert!(!s.close_received(), "the peer has not answered");
    assert_eq!(s.state(), State::Closing);
    take_all(&mut s);
    feed(&mut s, &cframe(8, &1000u16.to_be_bytes())).unwrap();
    assert!(s.close_sent() && s.close_received());
    assert_eq!(s.state(), State::Closed);
}

#[test]
fn close_received_and_close_sent_follow_a_closing_handshake_the_peer_starts() {
    let mut s = server_with(Config::default());
    s.handle_bytes(&cframe(8, &1001u16.to_be_bytes()));
    assert!(
        !s.close_received(),
        "nothing is decoded before poll_message"
    );
    assert!(matches!(s.poll_message().unwrap(), Some(Message::Close(_))));
    assert!(s.close_received());
    assert!(s.close_sent(), "the reply is queued at once");
    assert!(s.wants_write());
}

#[test]
fn a_protocol_error_sends_a_close_but_receives_none() {
    let mut s = server_with(Config::default());
    feed(&mut s, &raw(true, 0, 2, b"unmasked", None)).unwrap_err();
    assert!(s.close_sent());
    assert!(!s.close_received());
    assert_eq!(s.state(), State::Closed);
}

#[test]
fn end_of_stream_neither_sends_nor_receives_a_close() {
    let mut s = server_with(Config::default());
    s.handle_eof();
    assert!(matches!(s.poll_message(), Err(Error::AbnormalClosure)));
    assert!(!s.close_sent() && !s.close_received());
    assert_eq!(s.state(), State::Closed);
    assert!(s.should_close_transport());
}

#[test]
fn sending_is_refused_after_every_way_the_connection_ends() {
    let t0 = Instant::now();
    let refused = |c: &mut Connection| {
        for r in [
            c.send_text("x"),
            c.send_binary(b"x"),
            c.send_ping(b"x"),
            c.send_pong(b"x"),
        ] {
            assert!(matches!(r, Err(Error::Closed)), "{r:?}");
        }
    };
    // Our close sent.
    let mut s = server_with(Config::default());
    s.close(CloseCode::NORMAL, "").unwrap();
    refused(&mut s);
    // The peer's close received (and answered).
    let mut s = server_with(Config::default());
    feed(&mut s, &cframe(8, &[])).unwrap();
    refused(&mut s);
    // End of stream, nothing else.
    let mut s = server_with(Config::default());
    s.handle_eof();
    refused(&mut s);
    // A keepalive ping never answered, nothing else.
    let config = Config::default()
        .keepalive(Some(Duration::from_secs(1)))
        .keepalive_timeout(Duration::from_secs(1));
    let mut s = server_with(config);
    assert_eq!(s.poll_timeout(t0), Some(t0 + Duration::from_secs(1)));
    s.handle_timeout(t0 + Duration::from_secs(1));
    assert_eq!(
        s.poll_timeout(t0 + Duration::from_secs(1)),
        Some(t0 + Duration::from_secs(2))
    );
    s.handle_timeout(t0 + Duration::from_secs(2));
    assert!(!s.close_sent() && !s.close_received());
    refused(&mut s);
    assert!(matches!(
        s.poll_message(),
        Err(Error::Timeout(ws_core::TimeoutKind::Keepalive))
    ));
}

// ------------------------------------------------------ output accounting

#[test]
fn wants_write_is_true_for_each_kind_of_queued_output_alone() {
    // Only the copy buffer: a small frame.
    let mut s = server_with(Config::default());
    assert!(!s.wants_write());
    s.send_text("hi").unwrap();
    assert!(s.wants_write());
    assert_eq!(s.buffered_transmit(), 4);
    let n = s.pending_transmit().len();
    s.advance_transmit(n);
    assert!(!s.wants_write());
    // Only a shared chunk: a large payload queued by reference, the copy
    // buffer empty.
    let big = Bytes::from(vec![3u8; 20_000]);
    s.send(&Message::Binary(big)).unwrap();
    assert_eq!(s.buffered_transmit(), 4 + 20_000);
    let head = s.pending_transmit().len();
    assert_eq!(head, 4, "the header is its own chunk");
    s.advance_transmit(head);
    assert!(s.wants_write(), "the payload chunk is still queued");
    assert_eq!(s.buffered_transmit(), 20_000);
    s.advance_transmit(19_999);
    assert!(s.wants_write());
    assert_eq!(s.buffered_transmit(), 1);
    s.advance_transmit(1);
    assert!(!s.wants_write());
    assert_eq!(s.buffered_transmit(), 0);
}

#[test]
fn wants_write_reports_a_pong_held_back_by_the_write_limit_until_a_close_is_sent() {
    let mut s = server_with(Config::default().write_buffer_limit(10));
    s.send_binary(&[0; 20]).unwrap();
    // Over the limit: the pong waits aside, and is the only thing left once
    // the queued bytes are written.
    feed(&mut s, &cframe(9, b"p")).unwrap();
    let n = s.buffered_transmit();
    assert_eq!(n, 22);
    assert_eq!(
        s.pending_transmit().len(),
        25,
        "the pong joins the queue when asked for bytes"
    );
    s.advance_transmit(n);
    assert!(s.wants_write(), "the pong is still owed");
    let frames = sent_frames(&mut s);
    assert_eq!(frames.len(), 1);
    assert_eq!(
        (frames[0].0.opcode, &frames[0].1[..]),
        (OpCode::Pong, &b"p"[..])
    );
    assert!(!s.wants_write());

    // transmit_slices hands out the owed pong too.
    let mut s = server_with(Config::default().write_buffer_limit(10));
    s.send_binary(&[0; 20]).unwrap();
    feed(&mut s, &cframe(9, b"q")).unwrap();
    s.advance_transmit(22);
    let mut slices = [std::io::IoSlice::new(&[]); 4];
    assert_eq!(s.transmit_slices(&mut slices), 1);
    assert_eq!(&slices[0][..], b"\x8a\x01q");

    // Same, but a close is queued first: no pong is owed after a close.
    let mut s = server_with(Config::default().write_buffer_limit(10));
    s.send_binary(&[0; 20]).unwrap();
    feed(&mut s, &cframe(9, b"p")).unwrap();
    s.advance_transmit(22);
    assert!(s.wants_write(), "the pong is owed");
    s.close(CloseCode::NORMAL, "").unwrap();
    let frames = sent_frames(&mut s);
    let ops: Vec<_> = frames.iter().map(|f| f.0.opcode).collect();
    assert_eq!(ops, [OpCode::Pong, OpCode::Close], "the pong goes first");
    assert!(!s.wants_write());
}

#[test]
fn discard_transmit_drops_every_queued_byte_and_the_owed_pong() {
    let mut s = server_with(Config::default().write_buffer_limit(10));
    s.send_text("small").unwrap();
    s.send(&Message::Binary(Bytes::from(vec![1u8; 10_000])))
        .unwrap();
    s.send_text("after").unwrap();
    feed(&mut s, &cframe(9, b"p")).unwrap();
    assert!(s.wants_write());
    assert!(s.buffered_transmit() > 10_000);
    s.discard_transmit();
    assert!(!s.wants_write());
    assert_eq!(s.buffered_transmit(), 0);
    assert!(s.pending_transmit().is_empty(), "not even the pong");
    assert!(s.take_transmit().is_empty());
    // New output after the discard is counted from zero.
    s.send_text("new").unwrap();
    assert_eq!(s.buffered_transmit(), 5);
    assert_eq!(take_all(&mut s), [0x81, 3, b'n', b'e', b'w']);
}

#[test]
fn take_transmit_hands_out_chunks_in_order_and_counts_them_as_written() {
    let mut s = server_with(Config::default());
    s.send_text("a").unwrap();
    let big = Bytes::from(vec![9u8; 10_000]);
    s.send(&Message::Binary(big.clone())).unwrap();
    s.send_text("b").unwrap();
    let total = s.buffered_transmit();
    assert_eq!(total, 3 + 4 + 10_000 + 3);
    let first = s.take_transmit();
    assert_eq!(&first[..], &[0x81, 1, b'a', 0x82, 126, 0x27, 0x10]);
    assert_eq!(s.buffered_transmit(), total - first.len());
    let payload = s.take_transmit();
    assert_eq!(payload, big);
    assert_eq!(s.buffered_transmit(), 3);
    assert_eq!(&s.take_transmit()[..], &[0x81, 1, b'b']);
    assert_eq!(s.buffered_transmit(), 0);
    assert!(!s.wants_write());
}

#[test]
fn transmit_slices_stops_at_the_space_it_is_given() {
    let mut s = server_with(Config::default());
    let big = Bytes::from(vec![9u8; 10_000]);
    s.send(&Message::Binary(big.clone())).unwrap();
    s.send_text("tail").unwrap();
    let mut none: [std::io::IoSlice<'_>; 0] = [];
    assert_eq!(s.transmit_slices(&mut none), 0);
    let mut one = [std::io::IoSlice::new(&[]); 1];
    assert_eq!(s.transmit_slices(&mut one), 1);
    assert_eq!(&one[0][..], &[0x82, 126, 0x27, 0x10]);
    let mut many = [std::io::IoSlice::new(&[]); 8];
    assert_eq!(s.transmit_slices(&mut many), 3);
    assert_eq!(&many[1][..], &big[..]);
    assert_eq!(&many[2][..], b"\x81\x04tail");
}

#[test]
fn advance_transmit_across_the_copy_buffer_keeps_the_rest_in_order() {
    let mut s = server_with(Config::default());
    s.send_text("abc").unwrap();
    s.send_text("def").unwrap();
    s.advance_transmit(0);
    assert_eq!(s.pending_transmit(), b"\x81\x03abc\x81\x03def");
    s.advance_transmit(2);
    assert_eq!(s.pending_transmit(), b"abc\x81\x03def");
    assert_eq!(s.buffered_transmit(), 8);
    s.advance_transmit(8);
    assert!(s.pending_transmit().is_empty());
    assert!(!s.wants_write());
}

// ------------------------------------------------------------------ timers

#[test]
fn poll_timeout_reports_nothing_for_an_open_idle_connection_and_the_close_deadline_after_a_close() {
    let t0 = Instant::now();
    let mut s = server_with(Config::default().close_timeout(Duration::from_secs(3)));
    assert_eq!(s.poll_timeout(t0), None);
    s.close(CloseCode::NORMAL, "").unwrap();
    let t1 = t0 + Duration::from_secs(1);
    assert_eq!(s.poll_timeout(t1), Some(t1 + Duration::from_secs(3)));
    // Armed once: later polls keep the first deadline.
    assert_eq!(
        s.poll_timeout(t1 + Duration::from_secs(2)),
        Some(t1 + Duration::from_secs(3))
    );
    // One instant before the deadline nothing happens.
    s.handle_timeout(t1 + Duration::from_secs(3) - Duration::from_nanos(1));
    assert_eq!(s.state(), State::Closing);
    s.handle_timeout(t1 + Duration::from_secs(3));
    assert_eq!(s.state(), State::Closed);
    assert!(matches!(
        s.poll_message(),
        Err(Error::Timeout(ws_core::TimeoutKind::Close))
    ));
}

#[test]
fn no_keepalive_ping_follows_our_close_frame() {
    let t0 = Instant::now();
    let config = Config::default()
        .keepalive(Some(Duration::from_secs(1)))
        .close_timeout(Duration::from_secs(10));
    let mut s = server_with(config);
    assert_eq!(s.poll_timeout(t0), Some(t0 + Duration::from_secs(1)));
    s.close(CloseCode::NORMAL, "").unwrap();
    take_all(&mut s);
    s.poll_timeout(t0);
    s.handle_timeout(t0 + Duration::from_secs(1));
    assert!(!s.wants_write(), "nothing may follow a close frame");
    assert_eq!(s.state(), State::Closing);
}

/// Everything queued, written through the `Transmit` trait the adapters use,
/// `step` bytes per write.
fn write_all_via_transmit<T: ws_core::Transmit>(t: &mut T, step: usize) -> Vec<u8> {
    let mut wire = Vec::new();
    for _ in 0..1000 {
        let mut slices = [std::io::IoSlice::new(&[]); 4];
        let n = t.transmit_slices(&mut slices);
        if n == 0 {
            return wire;
        }
        let mut budget = step;
        let mut took = 0;
        for s in &slices[..n] {
            let k = s.len().min(budget);
            wire.extend_from_slice(&s[..k]);
            budget -= k;
            took += k;
        }
        t.advance_transmit(took);
    }
    panic!("the queue does not drain");
}

#[test]
fn the_transmit_trait_writes_a_connection_and_a_sender_alike() {
    let payload = Bytes::from(vec![6u8; 10_000]);
    let mut s = server_with(Config::default());
    s.send_text("one").unwrap();
    s.send(&Message::Binary(payload.clone())).unwrap();
    s.send_text("two").unwrap();
    let (_rx, mut tx) = server_with(Config::default()).split();
    tx.send_text("one").unwrap();
    tx.send(&Message::Binary(payload.clone())).unwrap();
    tx.send_text("two").unwrap();
    let a = write_all_via_transmit(&mut s, 3000);
    let b = write_all_via_transmit(&mut tx, 3000);
    assert_eq!(a, b);
    assert!(!s.wants_write() && !tx.wants_write());
    let ops: Vec<_> = frames_of(&a)
        .iter()
        .map(|f| (f.0.opcode, f.1.len()))
        .collect();
    assert_eq!(
        ops,
        [
            (OpCode::Text, 3),
            (OpCode::Binary, 10_000),
            (OpCode::Text, 3)
        ]
    );
}

#[test]
fn the_close_timer_after_a_finished_or_failed_handshake_ends_the_connection_without_an_error() {
    let t0 = Instant::now();
    let after = t0 + Duration::from_secs(5);
    // A client that answered the server's close waits for the server to
    // close TCP; the close timeout then ends it quietly.
    let mut c = Connection::new(Role::Client, Config::default());
    c.handle_bytes(&raw(true, 0, 8, &1000u16.to_be_bytes(), None));
    assert!(matches!(c.poll_message().unwrap(), Some(Message::Close(_))));
    take_all(&mut c);
    assert!(!c.should_close_transport());
    assert_eq!(c.poll_timeout(t0), Some(after));
    c.handle_timeout(after);
    assert_eq!(c.poll_message().unwrap(), None);
    assert!(c.should_close_transport());
    // A connection that failed reported its error once.
    let mut s = server_with(Config::default());
    feed(&mut s, &raw(true, 0, 2, b"unmasked", None)).unwrap_err();
    assert_eq!(s.poll_timeout(t0), Some(after));
    s.handle_timeout(after);
    assert_eq!(s.poll_message().unwrap(), None);
}
