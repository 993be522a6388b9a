//! permessage-deflate in the `Connection`, driven in memory: RFC 7692's own
//! examples, RSV1 rules, round trips (property tests), the bomb limit, and
//! the handshake feeding the connection.

mod common;

use common::{KEY, raw, take_all};
use ws_core::deflate::{DeflateConfig, DeflateParams};
use ws_core::frame::FrameHeader;
use ws_core::handshake::{Accept, ClientHandshake, ClientRequest, ServerHandshake};
use ws_core::{Config, Connection, Error, Message, ProtocolError, Role, State};

fn params(snct: bool, cnct: bool, smwb: Option<u8>, cmwb: Option<u8>) -> DeflateParams {
    DeflateParams {
        server_no_context_takeover: snct,
        client_no_context_takeover: cnct,
        server_max_window_bits: smwb,
        client_max_window_bits: cmwb,
    }
}

fn deflating(p: DeflateParams) -> Config {
    Config::default()
        .deflate(DeflateConfig::enabled().threshold(0))
        .negotiated_deflate(Some(p))
}

/// The frame headers in `wire`, in order.
fn headers(wire: &[u8]) -> Vec<FrameHeader> {
    let mut out = Vec::new();
    let mut rest = wire;
    while let Some((h, n)) = FrameHeader::parse(rest).unwrap() {
        out.push(h);
        rest = &rest[n + h.payload_len as usize..];
    }
    assert!(rest.is_empty());
    out
}

fn all_messages(conn: &mut Connection) -> Result<Vec<Message>, Error> {
    let mut got = Vec::new();
    while let Some(m) = conn.poll_message()? {
        got.push(m);
    }
    Ok(got)
}

/// The close code of the close frame `conn` queued.
fn close_code_sent(conn: &mut Connection) -> u16 {
    let wire = take_all(conn);
    let h = headers(&wire);
    assert_eq!(h.last().unwrap().opcode, ws_core::frame::OpCode::Close);
    let n = wire.len();
    u16::from_be_bytes([wire[n - 2], wire[n - 1]])
}

// ------------------------------------------------------ RFC 7692 examples

#[test]
fn rfc_7692_examples_decode() {
    let mut c = Connection::new(Role::Client, deflating(params(false, false, None, None)));
    // 7.2.3.1: "Hello" in one compressed frame; 7.2.3.2: again, sharing the
    // window; 7.2.3.3: a stored (uncompressed) block; 7.2.3.5: two blocks,
    // the second with BFINAL; 7.2.3.1 again, fragmented.
    let mut wire = vec![0xc1, 0x07, 0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];
    wire.extend([0xc1, 0x05, 0xf2, 0x00, 0x11, 0x00, 0x00]);
    wire.extend([
        0xc1, 0x0b, 0x00, 0x05, 0x00, 0xfa, 0xff, 0x48, 0x65, 0x6c, 0x6c, 0x6f, 0x00,
    ]);
    wire.extend([
        0x41, 0x03, 0xf2, 0x48, 0xcd, 0x80, 0x04, 0xc9, 0xc9, 0x07, 0x00,
    ]);
    c.handle_bytes(&wire);
    let got = all_messages(&mut c).unwrap();
    assert_eq!(got, vec![Message::text("Hello"); 4]);
    let mut c = Connection::new(Role::Client, deflating(params(false, false, None, None)));
    c.handle_bytes(&[0xc1, 0x07, 0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00]);
    assert_eq!(all_messages(&mut c).unwrap(), vec![Message::text("Hello")]);
}

#[test]
fn our_hello_is_the_rfc_bytes() {
    let cfg = Config::default()
        .deflate(DeflateConfig::enabled().threshold(0))
        .negotiated_deflate(Some(params(false, false, None, None)));
    let mut s = Connection::new(Role::Server, cfg);
    s.send_text("Hello").unwrap();
    s.send_text("Hello").unwrap();
    assert_eq!(
        take_all(&mut s),
        [
            0xc1, 0x07, 0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0xc1, 0x05, 0xf2, 0x00, 0x11,
            0x00, 0x00
        ]
    );
}

// ------------------------------------------------------------- RSV rules

#[test]
fn rsv1_without_deflate_is_a_protocol_error() {
    let mut s = Connection::new(Role::Server, Config::default());
    s.handle_bytes(&raw(true, 0b100, 1, b"x", Some(KEY)));
    assert!(matches!(
        s.poll_message().unwrap_err(),
        Error::Protocol(ProtocolError::ReservedBits)
    ));
    assert_eq!(close_code_sent(&mut s), 1002);
}

#[test]
fn rsv1_only_on_the_first_data_frame_and_rsv2_rsv3_never() {
    let p = params(false, false, None, None);
    let cases: [Vec<u8>; 5] = [
        // RSV1 on a continuation.
        [
            raw(false, 0b100, 1, &[0xf2, 0x48], Some(KEY)),
            raw(true, 0b100, 0, &[0x00], Some(KEY)),
        ]
        .concat(),
        // RSV1 on control frames.
        raw(true, 0b100, 9, b"", Some(KEY)),
        raw(true, 0b100, 8, &[3, 232], Some(KEY)),
        // RSV2, RSV3.
        raw(true, 0b010, 1, b"x", Some(KEY)),
        raw(true, 0b110, 2, b"x", Some(KEY)),
    ];
    for wire in cases {
        let mut s = Connection::new(Role::Server, deflating(p));
        s.handle_bytes(&wire);
        let r = all_messages(&mut s);
        assert!(
            matches!(r.unwrap_err(), Error::Protocol(ProtocolError::ReservedBits)),
            "{wire:02x?}"
        );
        assert_eq!(close_code_sent(&mut s), 1002);
    }
}

#[test]
fn corrupt_compressed_data_closes_with_1007() {
    let mut s = Connection::new(Role::Server, deflating(params(false, false, None, None)));
    s.handle_bytes(&raw(true, 0b100, 2, &[0xff; 8], Some(KEY)));
    assert!(matches!(
        s.poll_message().unwrap_err(),
        Error::Protocol(ProtocolError::InvalidCompressedData)
    ));
    assert_eq!(close_code_sent(&mut s), 1007);
}

#[test]
fn invalid_utf8_inside_a_compressed_text_closes_with_1007() {
    let mut tx = Connection::new(Role::Client, deflating(params(false, false, None, None)));
    tx.send_binary(&[0xce, 0xba, 0xff, 0xfe]).unwrap();
    let mut wire = take_all(&mut tx);
    wire[0] = (wire[0] & 0xf0) | 1; // the same payload as a text message
    let mut s = Connection::new(Role::Server, deflating(params(false, false, None, None)));
    s.handle_bytes(&wire);
    assert!(matches!(
        s.poll_message().unwrap_err(),
        Error::Protocol(ProtocolError::InvalidUtf8)
    ));
    assert_eq!(close_code_sent(&mut s), 1007);
}

// ------------------------------------------------------------- sending

#[test]
fn only_the_first_frame_has_rsv1_and_control_frames_none() {
    let cfg = deflating(params(false, false, None, None)).fragment_size(Some(4));
    let mut c = Connection::new(Role::Client, cfg);
    c.send_text(&"compress me ".repeat(20)).unwrap();
    c.send_ping(b"ping ping ping ping ping ping").unwrap();
    let h = headers(&take_all(&mut c));
    assert!(h.len() > 3);
    assert_eq!(h[0].rsv, 0b100);
    assert!(h[1..].iter().all(|h| h.rsv == 0));
}

#[test]
fn messages_under_the_threshold_go_uncompressed() {
    let cfg = Config::default()
        .deflate(DeflateConfig::enabled().threshold(10))
        .negotiated_deflate(Some(params(false, false, None, None)));
    let mut s = Connection::new(Role::Server, cfg);
    s.send_text("123456789").unwrap();
    s.send_text("1234567890").unwrap();
    let h = headers(&take_all(&mut s));
    assert_eq!((h[0].rsv, h[1].rsv), (0, 0b100));
}

#[test]
fn a_peer_limit_of_8_bits_sends_uncompressed() {
    let mut s = Connection::new(Role::Server, deflating(params(false, false, Some(8), None)));
    let mut c = Connection::new(Role::Client, deflating(params(false, false, None, Some(8))));
    let text = "a".repeat(1000);
    s.send_text(&text).unwrap();
    c.send_text(&text).unwrap();
    for conn in [&mut s, &mut c] {
        let wire = take_all(conn);
        assert_eq!(headers(&wire)[0].rsv, 0);
        assert!(wire.len() > 1000);
    }
    // And a peer compressing with 8 bits is read (with a 9-bit window).
    let mut c2 = Connection::new(Role::Client, deflating(params(false, false, Some(8), None)));
    c2.handle_bytes(&[0xc1, 0x07, 0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00]);
    assert_eq!(c2.poll_message().unwrap(), Some(Message::text("Hello")));
}

#[test]
fn compression_makes_repetitive_messages_small() {
    let mut s = Connection::new(Role::Server, deflating(params(false, false, None, None)));
    let json = r#"{"type":"chat","user":"alice","text":"hello everyone in the room"}"#.repeat(10);
    s.send_text(&json).unwrap();
    let wire = take_all(&mut s);
    assert!(
        wire.len() < json.len() / 4,
        "{} of {}",
        wire.len(),
        json.len()
    );
}

// ----------------------------------------------------------- the bomb

/// A message of `size` zero bytes, compressed by a client.
fn bomb(size: usize, fragment: Option<usize>) -> Vec<u8> {
    let cfg = deflating(params(false, false, None, None)).fragment_size(fragment);
    let mut c = Connection::new(Role::Client, cfg.max_frame_size(usize::MAX));
    c.send_binary(&vec![0u8; size]).unwrap();
    take_all(&mut c)
}

#[test]
fn a_tiny_message_inflating_past_the_limit_closes_with_1009() {
    let wire = bomb(64 << 20, None);
    assert!(wire.len() < 100 << 10, "{}", wire.len());
    let cfg = deflating(params(false, false, None, None)).max_message_size(1 << 20);
    let mut s = Connection::new(Role::Server, cfg);
    s.handle_bytes(&wire);
    match s.poll_message() {
        Err(Error::Protocol(ProtocolError::MessageTooLarge { size, max })) => {
            assert_eq!(max, 1 << 20);
            assert!(size > 1 << 20 && size <= (1 << 20) + 1, "{size}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(close_code_sent(&mut s), 1009);
    assert_eq!(s.state(), State::Closed);
}

#[test]
fn the_inflated_size_is_counted_across_fragments() {
    // Each fragment inflates to under the limit; together they pass it.
    let wire = bomb(3 << 20, Some(1000));
    let cfg = deflating(params(false, false, None, None)).max_message_size(1 << 20);
    let mut s = Connection::new(Role::Server, cfg);
    s.handle_bytes(&wire);
    assert!(matches!(
        all_messages(&mut s),
        Err(Error::Protocol(ProtocolError::MessageTooLarge { .. }))
    ));
    assert_eq!(close_code_sent(&mut s), 1009);
}

#[test]
fn a_message_of_exactly_the_limit_is_delivered() {
    let wire = bomb(1 << 20, Some(777));
    let cfg = deflating(params(false, false, None, None)).max_message_size(1 << 20);
    let mut s = Connection::new(Role::Server, cfg);
    s.handle_bytes(&wire);
    let got = all_messages(&mut s).unwrap();
    assert_eq!(got, vec![Message::binary(vec![0u8; 1 << 20])]);
}

// ------------------------------------------------------ the handshake

#[test]
fn a_negotiated_handshake_feeds_compressing_connections() {
    let policy = DeflateConfig::enabled()
        .server_no_context_takeover(true)
        .client_max_window_bits(10);
    let cfg = Config::default().deflate(policy);
    let (mut client_hs, request) =
        ClientHandshake::with_config(&ClientRequest::new("h", 80, "/"), &cfg);
    let mut server_hs = ServerHandshake::new();
    let req = server_hs.feed(&request).unwrap().unwrap();
    let (response, server_cfg) = req.accept_with_config(&Accept::new(), cfg.clone()).unwrap();
    let answer = client_hs.feed(&response).unwrap().unwrap();
    let client_cfg = answer.configure(cfg);
    assert_eq!(
        server_cfg.get_negotiated_deflate(),
        client_cfg.get_negotiated_deflate()
    );
    let mut client = Connection::new(Role::Client, client_cfg);
    let mut server = Connection::new(Role::Server, server_cfg);
    let text = "negotiated compression, negotiated compression".to_string();
    client.send_text(&text).unwrap();
    let wire = take_all(&mut client);
    assert_eq!(headers(&wire)[0].rsv, 0b100);
    server.handle_bytes(&wire);
    assert_eq!(
        server.poll_message().unwrap(),
        Some(Message::text(text.clone()))
    );
    server.send_text(&text).unwrap();
    client.handle_bytes(&take_all(&mut server));
    assert_eq!(client.poll_message().unwrap(), Some(Message::text(text)));
}

// --------------------------------------------------- property tests

mod roundtrip {
    use super::*;
    use proptest::prelude::*;

    fn message() -> impl Strategy<Value = Message> {
        prop_oneof![
            "[a-c ]{0,300}".prop_map(Message::text),
            ".{0,200}".prop_map(Message::text),
            proptest::collection::vec(0u8..4, 0..3000).prop_map(Message::binary),
            proptest::collection::vec(any::<u8>(), 0..500).prop_map(Message::binary),
            proptest::collection::vec(any::<u8>(), 0..20).prop_map(|p| Message::Ping(p.into())),
        ]
    }

    fn feed_chunked(conn: &mut Connection, wire: &[u8], chunks: &[usize]) -> Vec<Message> {
        let mut got = Vec::new();
        let mut rest = wire;
        let mut i = 0;
        while !rest.is_empty() {
            let n = chunks[i % chunks.len()].min(rest.len());
            i += 1;
            conn.handle_bytes(&rest[..n]);
            rest = &rest[n..];
            while let Some(m) = conn.poll_message().unwrap() {
                got.push(m);
            }
        }
        got
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]
        #[test]
        fn messages_round_trip_with_and_without_takeover(
            msgs in proptest::collection::vec(message(), 1..10),
            chunks in proptest::collection::vec(1usize..700, 1..6),
            fragment in proptest::option::of(1usize..300),
            snct in any::<bool>(),
            cnct in any::<bool>(),
            bits in proptest::option::of(8u8..=15),
            threshold in 0usize..64,
            release in any::<bool>(),
        ) {
            let p = params(snct, cnct, bits, bits);
            for role in [Role::Client, Role::Server] {
                let peer = if role == Role::Client { Role::Server } else { Role::Client };
                let policy = DeflateConfig::enabled().threshold(threshold);
                let mut tx = Connection::new(
                    role,
                    Config::default().deflate(policy).fragment_size(fragment).negotiated_deflate(Some(p)),
                );
                let mut rx = Connection::new(peer, deflating(p));
                let mut got = Vec::new();
                // Twice, so context carries (or is reset) across rounds,
                // and idle releases happen in between.
                for _ in 0..2 {
                    for m in &msgs {
                        tx.send(m).unwrap();
                    }
                    let wire = take_all(&mut tx);
                    got.extend(feed_chunked(&mut rx, &wire, &chunks));
                    if release {
                        tx.release_idle_buffers();
                        rx.release_idle_buffers();
                        let later = std::time::Instant::now() + std::time::Duration::from_secs(5);
                        tx.poll_timeout(later);
                        rx.poll_timeout(later);
                        tx.handle_timeout(later + std::time::Duration::from_secs(5));
                        rx.handle_timeout(later + std::time::Duration::from_secs(5));
                    }
                }
                let want: Vec<Message> = msgs.iter().chain(msgs.iter()).cloned().collect();
                prop_assert_eq!(&got, &want);
            }
        }

        #[test]
        fn garbage_with_rsv1_never_panics(
            payload in proptest::collection::vec(any::<u8>(), 0..200),
            fin in any::<bool>(),
        ) {
            let mut s = Connection::new(Role::Server, deflating(params(true, true, Some(9), Some(9))));
            s.handle_bytes(&raw(fin, 0b100, 2, &payload, Some(KEY)));
            s.handle_bytes(&raw(true, 0, 0, &payload, Some(KEY)));
            let _ = all_messages(&mut s);
            if s.state() == State::Closed {
                let code = close_code_sent(&mut s);
                prop_assert!([1002, 1007, 1009].contains(&code), "{}", code);
            }
        }

        #[test]
        fn split_halves_keep_the_context(
            msgs in proptest::collection::vec(message(), 1..8),
            snct in any::<bool>(),
        ) {
            let p = params(snct, false, None, None);
            let tx = Connection::new(Role::Server, deflating(p));
            let mut rx = Connection::new(Role::Client, deflating(p));
            let (_r, mut s) = tx.split();
            let mut got = Vec::new();
            for m in &msgs {
                s.send(m).unwrap();
                let chunk = s.take_transmit();
                rx.handle_bytes(&chunk);
                got.extend(all_messages(&mut rx).unwrap());
            }
            prop_assert_eq!(&got, &msgs);
        }
    }
}

// ------------------------------------------------------------ broadcast

#[test]
fn a_prepared_message_is_compressed_once_and_shared_where_compatible() {
    use ws_core::PreparedMessage;
    let policy = DeflateConfig::enabled()
        .server_no_context_takeover(true)
        .threshold(0);
    // 2000 pseudo-random letters, twice: only a window over 2000 bytes
    // finds the repeat.
    let mut x = 12345u32;
    let block: String = (0..2000)
        .map(|_| {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            char::from(b'a' + (x >> 16) as u8 % 26)
        })
        .collect();
    let text = block.repeat(2);
    let prepared = PreparedMessage::with_deflate(&Message::text(text.clone()), &policy).unwrap();
    let shared = prepared.compressed_bytes().unwrap().to_vec();
    assert_eq!(headers(&shared)[0].rsv, 0b100);
    assert!(shared.len() < 2000, "{}", shared.len());
    assert_eq!(
        prepared.encoded_len(),
        prepared.as_bytes().len() + shared.len()
    );
    // Recipients: compatible (no takeover, window 15), window too small for
    // the shared copy, context takeover, no deflate at all.
    let recipients = [
        (Some(params(true, false, None, None)), "shared"),
        (Some(params(true, false, Some(10), None)), "own, window 10"),
        (Some(params(false, false, None, None)), "own, takeover"),
        (None, "plain"),
    ];
    for (p, how) in recipients {
        let cfg = Config::default().deflate(policy).negotiated_deflate(p);
        let mut server = Connection::new(Role::Server, cfg.clone());
        server.send_prepared(&prepared).unwrap();
        let first = take_all(&mut server);
        server.send_prepared(&prepared).unwrap();
        let second = take_all(&mut server);
        match how {
            "shared" => assert!(first == shared && second == shared),
            // Compressed for this connection: the small window misses the
            // repeat; takeover makes the second copy tiny.
            "own, window 10" => {
                assert_eq!(headers(&first)[0].rsv, 0b100);
                assert!(first.len() > shared.len() + 500, "{}", first.len());
            }
            "own, takeover" => {
                assert_eq!(first, shared);
                assert!(second.len() < 100, "{}", second.len());
            }
            _ => assert_eq!(first, prepared.as_bytes()),
        }
        let mut client = Connection::new(Role::Client, cfg);
        client.handle_bytes(&first);
        client.handle_bytes(&second);
        assert_eq!(
            all_messages(&mut client).unwrap(),
            vec![Message::text(text.clone()), Message::text(text.clone())]
        );
    }
    // A policy with takeover prepares no shared copy.
    let keep = DeflateConfig::enabled().threshold(0);
    let p = PreparedMessage::with_deflate(&Message::text(text), &keep).unwrap();
    assert!(p.compressed_bytes().is_none());
}
