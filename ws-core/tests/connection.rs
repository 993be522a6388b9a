//! Behaviour of the framing `Connection`, driven entirely in memory.

mod common;

use common::{KEY, cframe, raw, sent_frames, take_all};
use std::time::{Duration, Instant};
use ws_core::frame::OpCode;
use ws_core::{
    Bytes, CloseCode, CloseFrame, Config, Connection, Error, Message, ProtocolError, Role, State,
    TimeoutKind,
};

fn server() -> Connection {
    Connection::new(Role::Server, Config::default())
}

fn client() -> Connection {
    Connection::new(Role::Client, Config::default())
}

/// Asserts that `conn` failed with `code` and queued exactly one close frame
/// carrying it.
fn assert_failed_with(conn: &mut Connection, input: &[u8], code: u16) -> ProtocolError {
    conn.handle_bytes(input);
    let err = loop {
        match conn.poll_message() {
            Ok(Some(_)) => continue,
            Ok(None) => panic!("expected a protocol error with close code {code}"),
            Err(Error::Protocol(p)) => break p,
            Err(e) => panic!("unexpected error {e}"),
        }
    };
    assert_eq!(err.close_code(), CloseCode(code), "{err}");
    let frames = sent_frames(conn);
    let close = frames.last().expect("a close frame is queued");
    assert_eq!(close.0.opcode, OpCode::Close);
    assert_eq!(&close.1[..2], &code.to_be_bytes());
    assert_eq!(conn.state(), State::Closed);
    assert!(conn.should_close_transport());
    // Nothing more is decoded or sent afterwards.
    conn.handle_bytes(&cframe(1, b"late"));
    assert_eq!(conn.poll_message().unwrap(), None);
    assert!(conn.send_text("x").unwrap_err().is_closed());
    err
}

/// Moves bytes both ways until neither side has anything to send; returns the
/// messages each side received (client's, server's).
struct Pair {
    client: Connection,
    server: Connection,
}

impl Pair {
    fn new(config: Config) -> Self {
        Pair {
            client: Connection::new(Role::Client, config.clone()),
            server: Connection::new(Role::Server, config),
        }
    }

    fn drive(&mut self) -> (Vec<Message>, Vec<Message>) {
        let (mut to_client, mut to_server) = (Vec::new(), Vec::new());
        for _ in 0..100 {
            let c = take_all(&mut self.client);
            self.server.handle_bytes(&c);
            while let Some(m) = self.server.poll_message().unwrap() {
                to_server.push(m);
            }
            let s = take_all(&mut self.server);
            self.client.handle_bytes(&s);
            while let Some(m) = self.client.poll_message().unwrap() {
                to_client.push(m);
            }
            if c.is_empty()
                && s.is_empty()
                && !self.client.wants_write()
                && !self.server.wants_write()
            {
                return (to_client, to_server);
            }
        }
        panic!("pair did not settle");
    }
}

#[test]
fn rfc_5_7_single_frame_messages_decode() {
    let mut c = client();
    c.handle_bytes(&[0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]);
    assert_eq!(c.poll_message().unwrap(), Some(Message::text("Hello")));
    let mut s = server();
    s.handle_bytes(&[
        0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
    ]);
    assert_eq!(s.poll_message().unwrap(), Some(Message::text("Hello")));
}

#[test]
fn rfc_5_7_fragmented_text_reassembles() {
    let mut c = client();
    c.handle_bytes(&[0x01, 0x03, 0x48, 0x65, 0x6c]);
    assert_eq!(c.poll_message().unwrap(), None);
    c.handle_bytes(&[0x80, 0x02, 0x6c, 0x6f]);
    assert_eq!(c.poll_message().unwrap(), Some(Message::text("Hello")));
}

#[test]
fn rfc_5_7_ping_is_answered_with_identical_pong() {
    let mut s = server();
    s.handle_bytes(&[
        0x89, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
    ]);
    assert_eq!(
        s.poll_message().unwrap(),
        Some(Message::Ping(Bytes::from_static(b"Hello")))
    );
    // The RFC's unmasked pong "Hello".
    assert_eq!(
        s.pending_transmit(),
        &[0x8a, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]
    );
}

#[test]
fn rfc_5_7_long_binary_lengths_decode() {
    for len in [256usize, 65536] {
        let mut c = client();
        let payload: Vec<u8> = (0..len).map(|i| i as u8).collect();
        let f = raw(true, 0, 2, &payload, None);
        assert_eq!(
            &f[..2],
            if len == 256 {
                &[0x82, 0x7e][..]
            } else {
                &[0x82, 0x7f][..]
            }
        );
        c.handle_bytes(&f);
        assert_eq!(c.poll_message().unwrap(), Some(Message::binary(payload)));
    }
}

#[test]
fn byte_at_a_time_input_gives_the_same_messages() {
    let mut stream = Vec::new();
    stream.extend(cframe(1, "héllo wörld".as_bytes()));
    stream.extend(raw(false, 0, 2, &[1, 2, 3], Some(KEY)));
    stream.extend(cframe(9, b"ping"));
    stream.extend(raw(true, 0, 0, &[4, 5], Some(KEY)));
    stream.extend(cframe(2, &vec![7u8; 70000]));
    // The literal messages, so a decoding bug shared by both feeding
    // patterns cannot pass.
    let expected = vec![
        Message::text("héllo wörld"),
        Message::Ping(Bytes::from_static(b"ping")),
        Message::binary(vec![1u8, 2, 3, 4, 5]),
        Message::binary(vec![7u8; 70000]),
    ];
    let mut whole = server();
    whole.handle_bytes(&stream);
    let mut all_at_once = Vec::new();
    while let Some(m) = whole.poll_message().unwrap() {
        all_at_once.push(m);
    }
    assert_eq!(all_at_once, expected);
    let mut bytewise = server();
    let mut got = Vec::new();
    for b in &stream {
        bytewise.handle_bytes(std::slice::from_ref(b));
        while let Some(m) = bytewise.poll_message().unwrap() {
            got.push(m);
        }
    }
    assert_eq!(got, expected);
}

#[test]
fn control_frames_interleave_with_fragments() {
    let mut s = server();
    s.handle_bytes(&raw(false, 0, 1, b"ab", Some(KEY)));
    s.handle_bytes(&cframe(9, b"p"));
    s.handle_bytes(&cframe(10, b"q"));
    s.handle_bytes(&raw(true, 0, 0, b"cd", Some(KEY)));
    assert_eq!(
        s.poll_message().unwrap(),
        Some(Message::Ping(Bytes::from_static(b"p")))
    );
    assert_eq!(
        s.poll_message().unwrap(),
        Some(Message::Pong(Bytes::from_static(b"q")))
    );
    assert_eq!(s.poll_message().unwrap(), Some(Message::text("abcd")));
}

#[test]
fn server_fails_on_unmasked_frame_with_1002() {
    let e = assert_failed_with(&mut server(), &raw(true, 0, 1, b"hi", None), 1002);
    assert_eq!(e, ProtocolError::UnmaskedFrame);
}

#[test]
fn client_fails_on_masked_frame_with_1002() {
    let e = assert_failed_with(&mut client(), &cframe(1, b"hi"), 1002);
    assert_eq!(e, ProtocolError::MaskedFrame);
}

#[test]
fn rsv_bits_without_extension_fail_with_1002() {
    for rsv in 1..8 {
        let e = assert_failed_with(&mut server(), &raw(true, rsv, 1, b"hi", Some(KEY)), 1002);
        assert_eq!(e, ProtocolError::ReservedBits);
    }
}

#[test]
fn reserved_opcodes_fail_with_1002() {
    for op in [3, 4, 5, 6, 7, 11, 12, 13, 14, 15] {
        assert_failed_with(&mut server(), &cframe(op, b""), 1002);
    }
}

#[test]
fn oversized_and_fragmented_control_frames_fail_with_1002() {
    let e = assert_failed_with(&mut server(), &cframe(9, &[0; 126]), 1002);
    assert_eq!(e, ProtocolError::ControlFrameTooLong);
    let e = assert_failed_with(&mut server(), &raw(false, 0, 9, b"x", Some(KEY)), 1002);
    assert_eq!(e, ProtocolError::FragmentedControlFrame);
}

#[test]
fn continuation_without_message_fails_with_1002() {
    let e = assert_failed_with(&mut server(), &raw(true, 0, 0, b"x", Some(KEY)), 1002);
    assert_eq!(e, ProtocolError::UnexpectedContinuation);
}

#[test]
fn new_message_inside_fragmented_message_fails_with_1002() {
    let mut input = raw(false, 0, 1, b"a", Some(KEY));
    input.extend(cframe(2, b"b"));
    let e = assert_failed_with(&mut server(), &input, 1002);
    assert_eq!(e, ProtocolError::ExpectedContinuation);
}

#[test]
fn invalid_utf8_text_fails_with_1007() {
    assert_failed_with(
        &mut server(),
        &cframe(1, &[0xce, 0xba, 0xed, 0xa0, 0x80]),
        1007,
    );
}

#[test]
fn invalid_utf8_is_detected_before_the_frame_is_complete() {
    let mut s = server();
    let mut payload = b"valid prefix ".to_vec();
    payload.extend_from_slice(&[0xf4, 0x90, 0x80, 0x80]); // > U+10FFFF
    payload.extend(std::iter::repeat_n(b'a', 1000));
    let frame = cframe(1, &payload);
    // Deliver only the header and the first 20 payload bytes.
    s.handle_bytes(&frame[..8 + 20]);
    let err = s.poll_message().unwrap_err();
    assert!(
        matches!(err, Error::Protocol(ProtocolError::InvalidUtf8)),
        "{err}"
    );
}

#[test]
fn invalid_utf8_across_fragments_fails_at_the_bad_fragment() {
    let mut s = server();
    s.handle_bytes(&raw(false, 0, 1, &[0xe2, 0x82], Some(KEY)));
    assert_eq!(s.poll_message().unwrap(), None);
    // "A" cannot continue the 3-byte sequence: fail now, not at FIN.
    s.handle_bytes(&raw(false, 0, 0, b"A", Some(KEY)));
    assert!(matches!(
        s.poll_message(),
        Err(Error::Protocol(ProtocolError::InvalidUtf8))
    ));
}

#[test]
fn text_ending_inside_a_character_fails_with_1007() {
    let mut input = raw(false, 0, 1, b"ok", Some(KEY));
    input.extend(raw(true, 0, 0, &[0xe2, 0x82], Some(KEY)));
    assert_failed_with(&mut server(), &input, 1007);
}

#[test]
fn utf8_split_across_fragments_is_valid() {
    let s = "€𝄞".as_bytes();
    let mut conn = server();
    conn.handle_bytes(&raw(false, 0, 1, &s[..1], Some(KEY)));
    conn.handle_bytes(&raw(false, 0, 0, &s[1..5], Some(KEY)));
    conn.handle_bytes(&raw(true, 0, 0, &s[5..], Some(KEY)));
    assert_eq!(conn.poll_message().unwrap(), Some(Message::text("€𝄞")));
}

#[test]
fn close_payload_of_one_byte_fails_with_1002() {
    assert_failed_with(&mut server(), &cframe(8, &[0x03]), 1002);
}

#[test]
fn close_with_reserved_code_fails_with_1002() {
    for code in [0u16, 999, 1004, 1005, 1006, 1015, 1016, 2000, 2999, 5000] {
        let e = assert_failed_with(&mut server(), &cframe(8, &code.to_be_bytes()), 1002);
        assert_eq!(e, ProtocolError::InvalidCloseCode(code));
    }
}

#[test]
fn close_with_invalid_utf8_reason_fails_with_1007() {
    assert_failed_with(&mut server(), &cframe(8, &[0x03, 0xe8, 0xff]), 1007);
}

#[test]
fn received_close_is_answered_once_with_the_same_code() {
    let mut s = server();
    let mut payload = 4000u16.to_be_bytes().to_vec();
    payload.extend_from_slice("bye ☃".as_bytes());
    s.handle_bytes(&cframe(8, &payload));
    s.handle_bytes(&cframe(8, &1000u16.to_be_bytes()));
    assert_eq!(
        s.poll_message().unwrap(),
        Some(Message::Close(Some(CloseFrame::new(
            CloseCode(4000),
            "bye ☃"
        ))))
    );
    assert_eq!(s.poll_message().unwrap(), None);
    let frames = sent_frames(&mut s);
    assert_eq!(frames.len(), 1);
    assert_eq!(frames[0].0.opcode, OpCode::Close);
    assert_eq!(frames[0].1, 4000u16.to_be_bytes());
    assert_eq!(s.state(), State::Closed);
    assert!(s.should_close_transport(), "the server closes TCP first");
}

#[test]
fn empty_close_is_answered_with_empty_close() {
    let mut s = server();
    s.handle_bytes(&cframe(8, b""));
    assert_eq!(s.poll_message().unwrap(), Some(Message::Close(None)));
    let frames = sent_frames(&mut s);
    assert_eq!(frames.len(), 1);
    assert!(frames[0].1.is_empty());
}

#[test]
fn no_data_is_sent_after_close() {
    let mut c = client();
    c.close(CloseCode::NORMAL, "done").unwrap();
    assert!(c.send_text("more").unwrap_err().is_closed());
    assert!(c.send_ping(b"").unwrap_err().is_closed());
    // Closing again is a no-op, not a second close frame.
    c.close(CloseCode::NORMAL, "again").unwrap();
    let frames = sent_frames(&mut c);
    assert_eq!(frames.len(), 1);
    assert_eq!(frames[0].1[..2], 1000u16.to_be_bytes());
    assert_eq!(&frames[0].1[2..], b"done");
    assert_eq!(c.state(), State::Closing);
}

#[test]
fn closing_handshake_client_initiated_completes_and_client_waits_for_tcp_close() {
    let mut p = Pair::new(Config::default());
    p.client.close(CloseCode::NORMAL, "bye").unwrap();
    let (to_client, to_server) = p.drive();
    assert_eq!(
        to_server,
        vec![Message::Close(Some(CloseFrame::new(
            CloseCode::NORMAL,
            "bye"
        )))]
    );
    assert_eq!(
        to_client,
        vec![Message::Close(Some(CloseFrame::new(CloseCode::NORMAL, "")))]
    );
    assert_eq!(p.server.state(), State::Closed);
    assert_eq!(p.client.state(), State::Closed);
    assert!(p.server.should_close_transport());
    assert!(
        !p.client.should_close_transport(),
        "client waits for the server to close TCP"
    );
    p.client.handle_eof();
    assert_eq!(
        p.client.poll_message().unwrap(),
        None,
        "a clean close is not an error"
    );
    assert!(p.client.should_close_transport());
}

#[test]
fn invalid_outgoing_close_and_control_are_refused() {
    let mut c = client();
    assert!(matches!(
        c.close(CloseCode(1005), ""),
        Err(Error::InvalidMessage(_))
    ));
    assert!(matches!(
        c.close(CloseCode::NORMAL, &"x".repeat(124)),
        Err(Error::InvalidMessage(_))
    ));
    assert!(matches!(
        c.send_ping(&[0; 126]),
        Err(Error::InvalidMessage(_))
    ));
    assert_eq!(c.state(), State::Open);
}

#[test]
fn frame_over_the_limit_fails_with_1009_before_buffering() {
    let mut s = Connection::new(Role::Server, Config::default().max_frame_size(1024));
    // Header announcing 1 GiB, followed by a few bytes only.
    let mut input = vec![0x82, 0xff];
    input.extend_from_slice(&(1u64 << 30).to_be_bytes());
    input.extend_from_slice(&KEY);
    input.extend_from_slice(&[0; 10]);
    let e = assert_failed_with(&mut s, &input, 1009);
    assert!(matches!(e, ProtocolError::FrameTooLarge { size, max: 1024 } if size == 1 << 30));
    assert!(s.read_buf().capacity() < 64 * 1024);
}

#[test]
fn default_limit_rejects_huge_frame_claims_without_allocating() {
    let mut s = server();
    let mut input = vec![0x82, 0xff];
    input.extend_from_slice(&(1u64 << 40).to_be_bytes());
    input.extend_from_slice(&KEY);
    assert_failed_with(&mut s, &input, 1009);
}

#[test]
fn read_buffer_grows_with_received_bytes_not_announced_length() {
    let mut s = server();
    // 16 MiB frame announced (within limits), only its header sent.
    let mut input = vec![0x82, 0xff];
    input.extend_from_slice(&(16u64 << 20).to_be_bytes());
    input.extend_from_slice(&KEY);
    s.handle_bytes(&input);
    assert_eq!(s.poll_message().unwrap(), None);
    assert!(
        s.read_buf().capacity() <= 16 * 1024,
        "{}",
        s.read_buf().capacity()
    );
}

#[test]
fn message_over_the_limit_across_fragments_fails_with_1009() {
    let mut s = Connection::new(Role::Server, Config::default().max_message_size(10));
    let mut input = raw(false, 0, 2, &[0; 6], Some(KEY));
    input.extend(raw(true, 0, 0, &[0; 6], Some(KEY)));
    let e = assert_failed_with(&mut s, &input, 1009);
    assert!(matches!(
        e,
        ProtocolError::MessageTooLarge { size: 12, max: 10 }
    ));
}

#[test]
fn auto_pong_can_be_disabled() {
    let mut s = Connection::new(Role::Server, Config::default().auto_pong(false));
    s.handle_bytes(&cframe(9, b"x"));
    assert_eq!(
        s.poll_message().unwrap(),
        Some(Message::Ping(Bytes::from_static(b"x")))
    );
    assert!(s.pending_transmit().is_empty());
}

#[test]
fn every_ping_is_answered_in_order_while_the_peer_reads() {
    let mut s = server();
    for i in 0..10u8 {
        s.handle_bytes(&cframe(9, &[i]));
    }
    while s.poll_message().unwrap().is_some() {}
    let frames = sent_frames(&mut s);
    let pongs: Vec<_> = frames.iter().map(|f| (f.0.opcode, f.1.clone())).collect();
    let expected: Vec<_> = (0..10u8).map(|i| (OpCode::Pong, vec![i])).collect();
    assert_eq!(pongs, expected);
}

#[test]
fn ping_flood_from_a_peer_that_does_not_read_queues_bounded_pongs() {
    let mut s = Connection::new(Role::Server, Config::default().write_buffer_limit(60));
    for i in 0..10_000u32 {
        s.handle_bytes(&cframe(9, &i.to_be_bytes()));
        s.poll_message().unwrap();
    }
    assert!(s.buffered_transmit() < 60 + 6, "{}", s.buffered_transmit());
    let frames = sent_frames(&mut s);
    assert!(frames.iter().all(|f| f.0.opcode == OpCode::Pong));
    assert!(frames.len() <= 11, "{}", frames.len());
    // The newest ping is the one answered last.
    assert_eq!(frames.last().unwrap().1, 9999u32.to_be_bytes());
}

#[test]
fn unsolicited_pong_is_reported_and_not_answered() {
    let mut s = server();
    s.handle_bytes(&cframe(10, b"hb"));
    assert_eq!(
        s.poll_message().unwrap(),
        Some(Message::Pong(Bytes::from_static(b"hb")))
    );
    assert!(s.pending_transmit().is_empty());
}

#[test]
fn client_masks_every_frame_with_a_fresh_key() {
    let mut c = client();
    for _ in 0..4 {
        c.send_text("same").unwrap();
    }
    let frames = sent_frames(&mut c);
    let keys: std::collections::HashSet<_> =
        frames.iter().map(|f| f.0.mask.expect("masked")).collect();
    assert_eq!(keys.len(), 4, "keys repeat: {keys:?}");
    assert!(frames.iter().all(|f| f.1 == b"same"));
}

#[test]
fn server_never_masks() {
    let mut s = server();
    s.send_binary(b"abc").unwrap();
    assert_eq!(s.pending_transmit(), &[0x82, 3, b'a', b'b', b'c']);
}

#[test]
fn outgoing_messages_are_fragmented_when_configured() {
    let mut p = Pair::new(Config::default().fragment_size(Some(4)));
    p.client.send_text("0123456789").unwrap();
    let bytes = p.client.pending_transmit().to_vec();
    let frames = sent_frames(&mut p.client);
    let ops: Vec<_> = frames
        .iter()
        .map(|f| (f.0.opcode, f.0.fin, f.1.len()))
        .collect();
    assert_eq!(
        ops,
        vec![
            (OpCode::Text, false, 4),
            (OpCode::Continuation, false, 4),
            (OpCode::Continuation, true, 2)
        ]
    );
    p.server.handle_bytes(&bytes);
    assert_eq!(
        p.server.poll_message().unwrap(),
        Some(Message::text("0123456789"))
    );
}

#[test]
fn eof_without_close_is_an_abnormal_closure_after_buffered_messages() {
    let mut s = server();
    s.handle_bytes(&cframe(1, b"last words"));
    s.handle_bytes(&cframe(1, b"trunc")[..4]);
    s.handle_eof();
    assert_eq!(s.poll_message().unwrap(), Some(Message::text("last words")));
    let e = s.poll_message().unwrap_err();
    assert!(matches!(e, Error::AbnormalClosure));
    assert_eq!(e.close_code(), Some(CloseCode::ABNORMAL));
    assert_eq!(s.poll_message().unwrap(), None);
    assert_eq!(s.state(), State::Closed);
    assert!(s.should_close_transport());
}

#[test]
fn unanswered_close_times_out_at_the_configured_deadline() {
    let t0 = Instant::now();
    let mut c = Connection::new(
        Role::Client,
        Config::default().close_timeout(Duration::from_secs(3)),
    );
    assert_eq!(c.poll_timeout(t0), None);
    c.close(CloseCode::NORMAL, "").unwrap();
    c.take_transmit();
    assert_eq!(c.poll_timeout(t0), Some(t0 + Duration::from_secs(3)));
    c.handle_timeout(t0 + Duration::from_secs(2));
    assert!(!c.should_close_transport());
    c.handle_timeout(t0 + Duration::from_secs(3));
    assert!(c.should_close_transport());
    assert!(matches!(
        c.poll_message(),
        Err(Error::Timeout(TimeoutKind::Close))
    ));
    assert_eq!(c.state(), State::Closed);
}

#[test]
fn keepalive_pings_after_silence_and_times_out_without_answer() {
    let t0 = Instant::now();
    let cfg = Config::default()
        .keepalive(Some(Duration::from_secs(10)))
        .keepalive_timeout(Duration::from_secs(5));
    let mut s = Connection::new(Role::Server, cfg);
    assert_eq!(s.poll_timeout(t0), Some(t0 + Duration::from_secs(10)));
    // Traffic at t0+4 pushes the ping back.
    s.handle_bytes(&cframe(1, b"hi"));
    s.poll_message().unwrap();
    let t4 = t0 + Duration::from_secs(4);
    assert_eq!(s.poll_timeout(t4), Some(t4 + Duration::from_secs(10)));
    let t14 = t4 + Duration::from_secs(10);
    s.handle_timeout(t14);
    let frames = sent_frames(&mut s);
    assert_eq!(frames.len(), 1);
    assert_eq!(frames[0].0.opcode, OpCode::Ping);
    assert_eq!(s.poll_timeout(t14), Some(t14 + Duration::from_secs(5)));
    s.handle_timeout(t14 + Duration::from_secs(5));
    assert!(matches!(
        s.poll_message(),
        Err(Error::Timeout(TimeoutKind::Keepalive))
    ));
    assert!(s.should_close_transport());
}

#[test]
fn keepalive_answered_by_pong_keeps_the_connection_open() {
    let t0 = Instant::now();
    let cfg = Config::default()
        .keepalive(Some(Duration::from_secs(10)))
        .keepalive_timeout(Duration::from_secs(5));
    let mut p = Pair::new(cfg);
    p.server.poll_timeout(t0);
    p.server.handle_timeout(t0 + Duration::from_secs(10));
    let (to_client, to_server) = p.drive();
    assert!(matches!(to_client.as_slice(), [Message::Ping(_)]));
    assert!(matches!(to_server.as_slice(), [Message::Pong(_)]));
    let t11 = t0 + Duration::from_secs(11);
    assert_eq!(
        p.server.poll_timeout(t11),
        Some(t11 + Duration::from_secs(10))
    );
    p.server.handle_timeout(t0 + Duration::from_secs(16));
    assert_eq!(p.server.state(), State::Open);
}

#[test]
fn pipelined_bytes_given_at_construction_are_decoded() {
    let bytes = ws_core::BytesMut::from(&cframe(1, b"early")[..]);
    let mut s = Connection::with_buffered(Role::Server, Config::default(), bytes);
    assert_eq!(s.poll_message().unwrap(), Some(Message::text("early")));
}

#[test]
fn prepared_message_is_sent_verbatim_by_a_server_and_refused_by_a_client() {
    let prepared = ws_core::PreparedMessage::new(&Message::text("all")).unwrap();
    let mut s = server();
    s.send_prepared(&prepared).unwrap();
    assert_eq!(s.pending_transmit(), prepared.as_bytes());
    assert!(matches!(
        client().send_prepared(&prepared),
        Err(Error::InvalidMessage(_))
    ));
}

#[test]
fn a_prepared_messages_payload_length_is_read_from_every_length_encoding() {
    // 7-bit, 16-bit and 64-bit length fields, at their edges.
    for len in [0, 1, 125, 126, 127, 65_535, 65_536, 70_000] {
        let text = ws_core::PreparedMessage::new(&Message::text("x".repeat(len))).unwrap();
        assert_eq!(text.payload_len(), len, "text of {len}");
        let binary = ws_core::PreparedMessage::new(&Message::binary(vec![0u8; len])).unwrap();
        assert_eq!(binary.payload_len(), len, "binary of {len}");
    }
}

#[test]
fn a_large_prepared_frame_is_shared_by_every_connection_not_copied() {
    let prepared = ws_core::PreparedMessage::new(&Message::binary(vec![9u8; 100_000])).unwrap();
    for _ in 0..2 {
        let mut s = server();
        s.send_text("before").unwrap();
        s.send_prepared(&prepared).unwrap();
        s.send_text("after").unwrap();
        let mut slices = [std::io::IoSlice::new(&[]); 8];
        let n = s.transmit_slices(&mut slices);
        assert!(
            slices[..n]
                .iter()
                .any(|sl| sl.as_ptr() == prepared.as_bytes().as_ptr()),
            "the queued frame is the prepared buffer itself"
        );
        // And the wire is still: before, the prepared frame, after.
        let mut c = client();
        loop {
            let chunk = s.take_transmit();
            if chunk.is_empty() {
                break;
            }
            c.handle_bytes(&chunk);
        }
        assert_eq!(c.poll_message().unwrap(), Some(Message::text("before")));
        assert_eq!(
            c.poll_message().unwrap(),
            Some(Message::binary(vec![9u8; 100_000]))
        );
        assert_eq!(c.poll_message().unwrap(), Some(Message::text("after")));
    }
}

#[test]
fn every_message_kind_round_trips_between_client_and_server() {
    let mut p = Pair::new(Config::default());
    let msgs = vec![
        Message::text(""),
        Message::text("κόσμε"),
        Message::binary(vec![0u8; 0]),
        Message::binary((0..=255u8).collect::<Vec<_>>()),
        Message::binary(vec![9u8; 200_000]),
        Message::Ping(Bytes::from_static(b"p")),
        Message::Pong(Bytes::from_static(b"unsolicited")),
    ];
    for m in &msgs {
        p.client.send(m).unwrap();
        p.server.send(m).unwrap();
    }
    let (to_client, to_server) = p.drive();
    // Each side also receives the auto-pong for the ping it sent.
    let mut expected = msgs.clone();
    expected.push(Message::Pong(Bytes::from_static(b"p")));
    let sort = |v: &[Message]| {
        let mut v: Vec<_> = v.iter().map(|m| format!("{m:?}")).collect();
        v.sort();
        v
    };
    assert_eq!(sort(&to_server), sort(&expected));
    assert_eq!(sort(&to_client), sort(&expected));
    assert_eq!(to_server[..5], msgs[..5], "data messages arrive in order");
}

mod prop {
    use super::*;
    use proptest::prelude::*;

    fn message() -> impl Strategy<Value = Message> {
        prop_oneof![
            ".{0,40}".prop_map(Message::text),
            proptest::collection::vec(any::<u8>(), 0..300).prop_map(Message::binary),
            proptest::collection::vec(any::<u8>(), 0..125).prop_map(|v| Message::Ping(v.into())),
            proptest::collection::vec(any::<u8>(), 300..70_000).prop_map(Message::binary),
        ]
    }

    /// Feeds `wire` to `conn` in the given chunk sizes and collects messages.
    fn feed_chunked(conn: &mut Connection, wire: &[u8], chunks: &[usize]) -> Vec<Message> {
        let mut out = Vec::new();
        let mut rest = wire;
        let mut i = 0;
        while !rest.is_empty() {
            let n = chunks
                .get(i % chunks.len().max(1))
                .copied()
                .unwrap_or(rest.len())
                .clamp(1, rest.len());
            i += 1;
            let (now, later) = rest.split_at(n);
            // Alternate the copying and the zero-copy input paths.
            if i % 2 == 0 {
                conn.handle_bytes(now);
            } else {
                conn.read_buf().extend_from_slice(now);
            }
            while let Some(m) = conn.poll_message().unwrap() {
                out.push(m);
            }
            rest = later;
        }
        out
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn random_messages_arrive_unchanged_in_order_under_random_chunking(
            msgs in proptest::collection::vec(message(), 1..12),
            chunks in proptest::collection::vec(1usize..2000, 1..8),
            fragment in proptest::option::of(1usize..500),
        ) {
            for role in [Role::Client, Role::Server] {
                let mut sender = Connection::new(role, Config::default().fragment_size(fragment));
                let peer = if role == Role::Client { Role::Server } else { Role::Client };
                let mut receiver = Connection::new(peer, Config::default());
                for m in &msgs {
                    sender.send(m).unwrap();
                }
                let wire = take_all(&mut sender);
                let got = feed_chunked(&mut receiver, &wire, &chunks);
                prop_assert_eq!(&got, &msgs);
            }
        }
    }
}

mod garbage {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        /// Arbitrary bytes never panic either role, and after the first
        /// error the connection is closed and stays quiet.
        #[test]
        fn arbitrary_input_never_panics(data in proptest::collection::vec(any::<u8>(), 0..4096), server_role in any::<bool>()) {
            let role = if server_role { Role::Server } else { Role::Client };
            let mut conn = Connection::new(role, Config::default().max_frame_size(1 << 16));
            conn.handle_bytes(&data);
            let mut errors = 0;
            for _ in 0..data.len() + 2 {
                match conn.poll_message() {
                    Ok(Some(_)) => {}
                    Ok(None) => break,
                    Err(e) => {
                        errors += 1;
                        prop_assert!(e.close_code().is_some());
                    }
                }
            }
            prop_assert!(errors <= 1);
            if errors == 1 {
                prop_assert_eq!(conn.state(), State::Closed);
                // Quiet afterwards: more input decodes nothing and queues
                // nothing.
                let queued = conn.buffered_transmit();
                conn.handle_bytes(&data);
                prop_assert!(matches!(conn.poll_message(), Ok(None)));
                prop_assert_eq!(conn.buffered_transmit(), queued);
            }
            prop_assert!(conn.buffered_transmit() <= 4096 + 256);
        }
    }
}

#[test]
fn peer_that_hung_up_without_reading_is_given_up_after_the_close_timeout() {
    let t0 = Instant::now();
    let mut s = Connection::new(
        Role::Server,
        Config::default().close_timeout(Duration::from_secs(2)),
    );
    s.send_binary(&[0; 1000]).unwrap();
    s.handle_eof();
    assert!(matches!(s.poll_message(), Err(Error::AbnormalClosure)));
    assert!(
        !s.should_close_transport(),
        "queued bytes are still being delivered"
    );
    assert_eq!(s.poll_timeout(t0), Some(t0 + Duration::from_secs(2)));
    s.handle_timeout(t0 + Duration::from_secs(2));
    assert!(s.should_close_transport());
    assert_eq!(
        s.poll_message().unwrap(),
        None,
        "the abnormal closure was already reported"
    );
}

#[test]
fn idle_connection_can_release_all_buffer_memory() {
    let mut s = server();
    s.read_buf().extend_from_slice(&cframe(1, b"hello"));
    assert_eq!(s.poll_message().unwrap(), Some(Message::text("hello")));
    s.send_text("reply").unwrap();
    // Pending output is kept, drained buffers are freed.
    s.release_idle_buffers();
    assert_eq!(s.pending_transmit().len(), 7);
    let n = s.pending_transmit().len();
    s.advance_transmit(n);
    assert!(s.release_idle_buffers() > 0);
    assert_eq!(s.release_idle_buffers(), 0, "nothing left to free");
    // And the connection keeps working.
    s.handle_bytes(&cframe(2, b"again"));
    assert_eq!(
        s.poll_message().unwrap(),
        Some(Message::binary(&b"again"[..]))
    );
}

/// Reads `wire` the way an adapter does when the whole of it is queued in the
/// socket (each read fills what `read_buf` offers), releasing the buffers
/// whenever a read comes back short (the socket drained), as the servers do;
/// returns the number of reads and of messages.
fn reads_for(s: &mut Connection, wire: &[u8]) -> (usize, usize) {
    let (mut pos, mut reads, mut msgs) = (0, 0, 0);
    while pos < wire.len() {
        let buf = s.read_buf();
        let spare = buf.capacity() - buf.len();
        let n = spare.min(wire.len() - pos);
        buf.extend_from_slice(&wire[pos..pos + n]);
        pos += n;
        reads += 1;
        while let Some(m) = s.poll_message().unwrap() {
            assert!(matches!(m, Message::Binary(_)));
            msgs += 1;
        }
        if n < spare {
            s.release_idle_buffers();
        }
    }
    (reads, msgs)
}

#[test]
fn a_stream_of_16kib_messages_is_read_one_message_per_read() {
    let mut s = server();
    let frame = cframe(2, &[7u8; 16 * 1024]);
    // The first message finds no size to go by: it takes a few reads.
    let (_, first) = reads_for(&mut s, &frame);
    assert_eq!(first, 1);
    // From then on (one message in flight, the socket drained after each),
    // every message arrives in a single read, as in the raw TCP echo.
    for _ in 0..20 {
        assert_eq!(reads_for(&mut s, &frame), (1, 1));
    }
}

#[test]
fn a_frame_whose_first_read_filled_the_buffer_is_finished_in_one_more_read() {
    let mut s = server();
    let frame = cframe(2, &[7u8; 40 * 1024]);
    // Nothing to go by (a fresh connection): the first read is the small
    // default, filled; the second takes the rest of the frame at once.
    assert_eq!(reads_for(&mut s, &frame), (2, 1));
}

#[test]
fn read_size_grows_while_reads_fill_the_buffer_and_shrinks_back() {
    let mut s = server();
    let frame = cframe(2, &[0u8; 100]);
    let offered = |s: &mut Connection| {
        let b = s.read_buf();
        b.capacity() - b.len()
    };
    let first = offered(&mut s);
    assert!((4096..16 * 1024).contains(&first), "{first}");
    // A busy peer: every read fills all the offered space from an endless
    // stream of frames (the last one of each read is cut short).
    let mut pos = 0;
    for _ in 0..6 {
        let spare = offered(&mut s);
        let buf = s.read_buf();
        for _ in 0..spare {
            buf.extend_from_slice(&[frame[pos]]);
            pos = (pos + 1) % frame.len();
        }
        while s.poll_message().unwrap().is_some() {}
    }
    // Finish the cut frame so the stream is back on a frame boundary.
    s.handle_bytes(&frame[pos..]);
    while s.poll_message().unwrap().is_some() {}
    let busy = offered(&mut s);
    assert!(busy >= 32 * 1024, "grew to {busy}");
    assert!(busy <= 128 * 1024, "bounded: {busy}");
    // Light traffic: small reads bring the offer back down.
    for _ in 0..10 {
        let spare = offered(&mut s);
        let _ = spare;
        s.read_buf().extend_from_slice(&cframe(1, b"hi"));
        while s.poll_message().unwrap().is_some() {}
    }
    s.release_idle_buffers();
    let light = offered(&mut s);
    assert!(light < 16 * 1024, "shrank back to {light}");
}

#[test]
fn large_buffers_are_kept_during_bulk_traffic_and_freed_after_idling() {
    let t0 = Instant::now();
    let mut s = server();
    let big = cframe(2, &vec![5u8; 300_000]);
    s.handle_bytes(&big);
    assert!(matches!(
        s.poll_message().unwrap(),
        Some(Message::Binary(_))
    ));
    s.send_binary(&[0; 300_000]).unwrap();
    let n = s.pending_transmit().len();
    s.advance_transmit(n);
    // Between two large messages: the buffers stay (no re-growth per message).
    s.release_idle_buffers();
    let kept = s.read_buf().capacity();
    assert!(kept >= 64 * 1024, "large receive buffer kept, got {kept}");
    let deadline = s.poll_timeout(t0).expect("a shrink deadline is armed");
    assert_eq!(deadline, t0 + ws_core::connection::IDLE_SHRINK_DELAY);
    // Still idle when the deadline passes: everything is freed.
    s.handle_timeout(deadline);
    assert_eq!(s.release_idle_buffers(), 0);
    assert!(s.read_buf().capacity() <= 16 * 1024);
    s.handle_bytes(&cframe(1, b"small"));
    assert_eq!(s.poll_message().unwrap(), Some(Message::text("small")));
}

#[test]
fn large_server_payloads_are_queued_without_copying_and_arrive_intact() {
    use std::io::IoSlice;
    let mut s = server();
    let big = Bytes::from(payload_bytes(100_000));
    s.send_text("small first").unwrap();
    s.send(&Message::Binary(big.clone())).unwrap();
    s.send_ping(b"after").unwrap();
    assert_eq!(s.buffered_transmit(), 13 + 10 + 100_000 + 7);
    // The payload is shared, not copied: one of the slices is `big` itself.
    let mut slices = [IoSlice::new(&[]); 8];
    let n = s.transmit_slices(&mut slices);
    assert!(
        slices[..n].iter().any(|sl| sl.as_ptr() == big.as_ptr()),
        "payload was copied"
    );
    // Drain in awkward pieces through both APIs; the peer sees the same messages.
    let mut wire = Vec::new();
    let mut step = 1;
    let mut writes = 0;
    while s.wants_write() {
        writes += 1;
        assert!(writes < 1000, "the queue does not drain");
        let chunk = s.pending_transmit();
        let take = chunk.len().min(step);
        wire.extend_from_slice(&chunk[..take]);
        s.advance_transmit(take);
        step = step * 3 + 1;
    }
    assert_eq!(s.buffered_transmit(), 0);
    let mut c = client();
    c.handle_bytes(&wire);
    assert_eq!(
        c.poll_message().unwrap(),
        Some(Message::text("small first"))
    );
    assert_eq!(c.poll_message().unwrap(), Some(Message::Binary(big)));
    assert_eq!(
        c.poll_message().unwrap(),
        Some(Message::Ping(Bytes::from_static(b"after")))
    );
}

#[test]
fn vectored_advance_spans_chunks() {
    use std::io::IoSlice;
    let mut s = server();
    let big = Bytes::from(payload_bytes(20_000));
    s.send(&Message::Binary(big.clone())).unwrap();
    s.send_text("tail").unwrap();
    let total = s.buffered_transmit();
    let mut wire = Vec::new();
    let mut writes = 0;
    while s.wants_write() {
        writes += 1;
        assert!(writes < 1000, "the queue does not drain");
        let mut slices = [IoSlice::new(&[]); 4];
        let n = s.transmit_slices(&mut slices);
        // A "vectored write" that takes 7000 bytes across slice boundaries.
        let mut budget = 7000;
        let mut took = 0;
        for sl in &slices[..n] {
            let t = sl.len().min(budget);
            wire.extend_from_slice(&sl[..t]);
            budget -= t;
            took += t;
        }
        s.advance_transmit(took);
    }
    assert_eq!(wire.len(), total);
    let mut c = client();
    c.handle_bytes(&wire);
    assert_eq!(c.poll_message().unwrap(), Some(Message::Binary(big)));
    assert_eq!(c.poll_message().unwrap(), Some(Message::text("tail")));
}

fn payload_bytes(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 7 % 256) as u8).collect()
}

#[test]
fn closing_twice_does_nothing_whether_or_not_the_close_has_a_code() {
    for first in [
        Message::Close(None),
        Message::Close(Some(CloseFrame::new(CloseCode::NORMAL, ""))),
    ] {
        let mut s = server();
        s.send(&first).unwrap();
        let wire = s.take_transmit();
        s.send(&Message::Close(None)).unwrap();
        s.send(&Message::Close(Some(CloseFrame::new(
            CloseCode::GOING_AWAY,
            "again",
        ))))
        .unwrap();
        s.close(CloseCode::NORMAL, "").unwrap();
        assert!(s.take_transmit().is_empty(), "one close frame only");
        let mut c = client();
        c.handle_bytes(&wire);
        assert!(matches!(c.poll_message().unwrap(), Some(Message::Close(_))));
    }
}
