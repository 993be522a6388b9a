//! What the connection's buffer heuristics promise, pinned at their
//! thresholds: a read always has room, the read size follows the traffic,
//! large payloads are shared rather than copied, and memory returns to the
//! floor once traffic stops (and not before).

use std::io::IoSlice;
use std::time::Instant;
use ws_core::frame::FrameHeader;
use ws_core::mask::apply_mask_scalar;
use ws_core::{Bytes, BytesMut, Config, Connection, Message, PreparedMessage, Role};

const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];
/// The smallest read the connection offers.
const MIN_READ: usize = 4096;
/// Payloads from this size on are queued by reference.
const ZERO_COPY_MIN: usize = 8192;
/// Buffers above this size are freed only after an idle delay.
const SHRINK_ABOVE: usize = 64 * 1024;

/// A masked binary frame whose wire size is exactly `total` bytes.
fn frame_of_wire_size(total: usize) -> Vec<u8> {
    let (len, header): (usize, Vec<u8>) = if total <= 125 + 6 {
        (total - 6, vec![0x82, 0x80 | (total - 6) as u8])
    } else if total - 8 <= 0xffff {
        let len = total - 8;
        let mut h = vec![0x82, 0x80 | 126];
        h.extend_from_slice(&(len as u16).to_be_bytes());
        (len, h)
    } else {
        let len = total - 14;
        let mut h = vec![0x82, 0x80 | 127];
        h.extend_from_slice(&(len as u64).to_be_bytes());
        (len, h)
    };
    let mut out = header;
    out.extend_from_slice(&KEY);
    let mut p = vec![0x5a; len];
    apply_mask_scalar(&mut p, KEY, 0);
    out.extend_from_slice(&p);
    assert_eq!(out.len(), total);
    out
}

/// Spare capacity the next read is offered.
fn offered(conn: &mut Connection) -> usize {
    let b = conn.read_buf();
    b.capacity() - b.len()
}

/// Reads `bytes` the way a transport does (into `read_buf`), then decodes.
fn read(conn: &mut Connection, bytes: &[u8]) -> Vec<Message> {
    conn.read_buf().extend_from_slice(bytes);
    let mut got = Vec::new();
    while let Some(m) = conn.poll_message().unwrap() {
        got.push(m);
    }
    got
}

/// The read size the connection would offer from an empty buffer.
fn read_size(conn: &mut Connection) -> usize {
    conn.release_idle_buffers();
    offered(conn)
}

#[test]
fn a_read_always_has_room_even_when_the_last_one_filled_the_buffer() {
    let mut s = Connection::new(Role::Server, Config::default());
    let frame = frame_of_wire_size(3 * MIN_READ);
    let mut pos = 0;
    for _ in 0..4 {
        let room = offered(&mut s);
        assert!(room >= MIN_READ / 2, "{room}");
        let take = room.min(frame.len() - pos);
        s.read_buf().extend_from_slice(&frame[pos..pos + take]);
        pos += take;
        while s.poll_message().unwrap().is_some() {}
        if pos == frame.len() {
            break;
        }
    }
    assert_eq!(pos, frame.len());
}

#[test]
fn between_frames_a_buffer_with_half_a_read_spare_is_offered_as_is() {
    let mut s = Connection::new(Role::Server, Config::default());
    assert_eq!(read_size(&mut s), MIN_READ);
    // One whole frame of half a read, decoded: the other half of the
    // buffer is what is left, and it is offered without growing (a grow
    // would allocate and, with bytes held, copy them).
    let got = read(&mut s, &frame_of_wire_size(MIN_READ / 2));
    assert_eq!(got.len(), 1);
    assert_eq!(offered(&mut s), MIN_READ / 2);
    // A frame of a quarter more: less than half a read spare, so it grows.
    let got = read(&mut s, &frame_of_wire_size(MIN_READ / 4));
    assert_eq!(got.len(), 1);
    assert!(offered(&mut s) >= MIN_READ, "{}", offered(&mut s));
}

#[test]
fn read_buf_does_not_move_received_bytes_while_half_a_read_still_fits() {
    let mut s = Connection::new(Role::Server, Config::default());
    assert_eq!(read_size(&mut s), MIN_READ);
    // Part of a large frame: it stays in the buffer until complete.
    let frame = frame_of_wire_size(3 * MIN_READ);
    // Exactly half a read left: the buffer is not grown (nor reallocated).
    s.read_buf().extend_from_slice(&frame[..MIN_READ / 2]);
    assert_eq!(s.poll_message().unwrap(), None);
    assert_eq!(offered(&mut s), MIN_READ / 2);
    // One byte less than half a read: it grows by a whole read.
    s.read_buf()
        .extend_from_slice(&frame[MIN_READ / 2..MIN_READ / 2 + 1]);
    assert_eq!(s.poll_message().unwrap(), None);
    assert!(offered(&mut s) >= MIN_READ, "{}", offered(&mut s));
    // The frame still arrives whole.
    let got = read(&mut s, &frame[MIN_READ / 2 + 1..]);
    assert_eq!(got, vec![Message::binary(vec![0x5a; 3 * MIN_READ - 8])]);
}

#[test]
fn the_read_size_doubles_after_a_full_read_halves_after_a_small_one_and_holds_in_between() {
    let mut s = Connection::new(Role::Server, Config::default());
    assert_eq!(read_size(&mut s), MIN_READ);
    // Reads that fill everything offered double it.
    for expected in [2 * MIN_READ, 4 * MIN_READ] {
        let n = read_size(&mut s);
        assert_eq!(read(&mut s, &frame_of_wire_size(n)).len(), 1);
        assert_eq!(read_size(&mut s), expected);
    }
    let n = 4 * MIN_READ;
    // A read of exactly an eighth of the offer holds it...
    assert_eq!(read(&mut s, &frame_of_wire_size(n / 8)).len(), 1);
    assert_eq!(read_size(&mut s), n);
    // ...and so does one byte short of a full read (the hint stays at n;
    // the offer is room for a frame like that last one, which is larger).
    assert_eq!(read(&mut s, &frame_of_wire_size(n - 1)).len(), 1);
    assert_eq!(read_size(&mut s), n + MIN_READ);
    // One byte less than an eighth halves it (one step, not to the floor).
    assert_eq!(read(&mut s, &frame_of_wire_size(n / 8 - 1)).len(), 1);
    assert_eq!(read_size(&mut s), n / 2);
    // And it never goes below the floor.
    for _ in 0..4 {
        read(&mut s, &frame_of_wire_size(10));
        read_size(&mut s);
    }
    assert_eq!(read_size(&mut s), MIN_READ);
}

#[test]
fn bytes_arriving_after_the_close_are_dropped_not_buffered() {
    let mut s = Connection::new(Role::Server, Config::default());
    let close = [0x88, 0x80, 0, 0, 0, 0];
    s.handle_bytes(&close);
    assert!(matches!(
        s.poll_message().unwrap(),
        Some(Message::Close(None))
    ));
    s.handle_bytes(&vec![0x82; 1 << 20]);
    assert!(s.read_buf().capacity() < SHRINK_ABOVE);
    assert_eq!(s.poll_message().unwrap(), None);
}

#[test]
fn idle_buffers_up_to_64_kib_are_freed_at_once_and_larger_ones_after_the_idle_delay() {
    let t0 = Instant::now();
    // A receive buffer of exactly 64 KiB goes at once, with no timer.
    let mut s = Connection::new(Role::Server, Config::default());
    s.handle_bytes(&frame_of_wire_size(SHRINK_ABOVE));
    assert!(s.poll_message().unwrap().is_some());
    s.release_idle_buffers();
    assert_eq!(s.poll_timeout(t0), None, "nothing left to free later");
    // One byte more and it is kept for the idle delay.
    let mut s = Connection::new(Role::Server, Config::default());
    s.handle_bytes(&frame_of_wire_size(SHRINK_ABOVE + 1));
    assert!(s.poll_message().unwrap().is_some());
    s.release_idle_buffers();
    let deadline = t0 + ws_core::connection::IDLE_SHRINK_DELAY;
    assert_eq!(s.poll_timeout(t0), Some(deadline));
    s.handle_timeout(deadline);
    assert_eq!(s.poll_timeout(deadline), None);
    // Once freed, the buffer counts as small again: the next small message
    // leaves nothing to free later.
    read(&mut s, &frame_of_wire_size(100));
    s.release_idle_buffers();
    assert_eq!(s.poll_timeout(deadline), None);
}

#[test]
fn small_traffic_leaves_no_buffer_and_no_timer_behind() {
    let t0 = Instant::now();
    let mut s = Connection::new(Role::Server, Config::default());
    read(&mut s, &frame_of_wire_size(100));
    s.send_text("reply").unwrap();
    let n = s.pending_transmit().len();
    s.advance_transmit(n);
    assert!(s.release_idle_buffers() > 0);
    assert_eq!(s.poll_timeout(t0), None);
    assert_eq!(s.release_idle_buffers(), 0);
}

/// A connection whose receive buffer holds one frame with a payload of
/// `len` bytes and has `spare` bytes of capacity after it; returns the
/// buffer's capacity once the frame has been decoded.
fn capacity_after_one_frame(len: usize, spare: usize) -> usize {
    let header = match len {
        0..=125 => 6,
        126..=0xffff => 8,
        _ => 14,
    };
    let frame = frame_of_wire_size(len + header);
    let mut buf = BytesMut::with_capacity(frame.len() + spare);
    buf.extend_from_slice(&frame);
    assert_eq!(buf.capacity() - buf.len(), spare);
    let mut s = Connection::with_buffered(Role::Server, Config::default(), buf);
    let Some(Message::Binary(b)) = s.poll_message().unwrap() else {
        panic!("expected the binary message")
    };
    assert_eq!(b.len(), len);
    s.read_buf().capacity()
}

#[test]
fn a_large_receive_buffer_is_kept_while_frames_are_a_quarter_of_it_and_dropped_after() {
    let len = 100_000;
    // Left over after the frame: exactly four frames' worth: kept.
    let kept = capacity_after_one_frame(len, 4 * len);
    assert!(kept >= 4 * len, "{kept}");
    // One byte more than four frames' worth: the burst is over, freed.
    // (The next read is then offered room for a frame like the last one,
    // at most 64 KiB.)
    let freed = capacity_after_one_frame(len, 4 * len + 1);
    assert!(freed <= SHRINK_ABOVE, "{freed}");
    // Small frames: anything over 64 KiB left is freed, 64 KiB is kept.
    let freed = capacity_after_one_frame(1000, SHRINK_ABOVE + 1);
    assert!(freed < SHRINK_ABOVE, "{freed}");
    let kept = capacity_after_one_frame(1000, SHRINK_ABOVE);
    assert!(kept >= SHRINK_ABOVE, "{kept}");
}

#[test]
fn a_sent_frame_takes_one_allocation_of_its_own_size() {
    // A client's frames are masked, so copied into the output buffer; the
    // split sender reports the output buffer it frees.
    let (_rx, mut tx) = Connection::new(Role::Client, Config::default()).split();
    let len = 100_000;
    tx.send_binary(&vec![1; len]).unwrap();
    let n = tx.buffered_transmit();
    assert_eq!(n, len + 14);
    tx.advance_transmit(n);
    let freed = tx.release_idle_buffers();
    assert!((n..2 * n).contains(&freed), "{freed}");
}

/// Whether `conn` queued `payload` by reference.
fn shares(conn: &mut Connection, payload: &[u8]) -> bool {
    let mut slices = [IoSlice::new(&[]); 8];
    let n = conn.transmit_slices(&mut slices);
    slices[..n].iter().any(|s| s.as_ptr() == payload.as_ptr())
}

#[test]
fn payloads_from_8_kib_are_shared_and_smaller_ones_copied() {
    for (len, shared) in [(ZERO_COPY_MIN - 1, false), (ZERO_COPY_MIN, true)] {
        let payload = Bytes::from(vec![2u8; len]);
        let mut s = Connection::new(Role::Server, Config::default());
        s.send(&Message::Binary(payload.clone())).unwrap();
        assert_eq!(shares(&mut s, &payload), shared, "{len}");
        assert_eq!(s.buffered_transmit(), len + 4);
    }
}

#[test]
fn prepared_frames_from_8_kib_are_shared_and_smaller_ones_copied() {
    // Wire sizes: a 4-byte header plus the payload.
    for (wire, shared) in [(ZERO_COPY_MIN - 1, false), (ZERO_COPY_MIN, true)] {
        let prepared = PreparedMessage::new(&Message::binary(vec![3u8; wire - 4])).unwrap();
        assert_eq!(prepared.as_bytes().len(), wire);
        let mut s = Connection::new(Role::Server, Config::default());
        s.send_prepared(&prepared).unwrap();
        assert_eq!(shares(&mut s, prepared.as_bytes()), shared, "{wire}");
        assert_eq!(s.buffered_transmit(), wire);
    }
}

#[test]
fn a_shared_payload_over_the_fragment_size_is_still_fragmented() {
    let config = Config::default().fragment_size(Some(10_000));
    let mut s = Connection::new(Role::Server, config);
    let payload = Bytes::from(vec![4u8; 25_000]);
    s.send(&Message::Binary(payload.clone())).unwrap();
    let mut wire = Vec::new();
    loop {
        let chunk = s.take_transmit();
        if chunk.is_empty() {
            break;
        }
        wire.extend_from_slice(&chunk);
    }
    let mut lens = Vec::new();
    let mut rest = &wire[..];
    while let Some((h, n)) = FrameHeader::parse(rest).unwrap() {
        lens.push((h.fin, h.payload_len));
        rest = &rest[n + h.payload_len as usize..];
    }
    assert_eq!(lens, [(false, 10_000), (false, 10_000), (true, 5_000)]);
    let mut c = Connection::new(Role::Client, Config::default());
    c.handle_bytes(&wire);
    assert_eq!(c.poll_message().unwrap(), Some(Message::Binary(payload)));
    // At exactly the fragment size it is one frame, shared.
    let config = Config::default().fragment_size(Some(10_000));
    let mut s = Connection::new(Role::Server, config);
    let payload = Bytes::from(vec![4u8; 10_000]);
    s.send(&Message::Binary(payload.clone())).unwrap();
    assert!(shares(&mut s, &payload));
}

/// Output capacity a client's split sender holds after sending and writing
/// a message of `wire` bytes on the wire, then one of `then` bytes.
fn output_capacity_after(wire: usize, then: usize) -> usize {
    let (_rx, mut tx) = Connection::new(Role::Client, Config::default()).split();
    for n in [wire, then] {
        // A client frame over 64 KiB has a 14-byte header.
        tx.send_binary(&vec![1; n - 14]).unwrap();
        assert_eq!(tx.buffered_transmit(), n);
        tx.advance_transmit(n);
    }
    tx.release_idle_buffers()
}

#[test]
fn a_large_output_buffer_is_kept_while_messages_are_a_quarter_of_it_and_dropped_after() {
    let big = 400_000;
    // Exactly a quarter: kept for the next message.
    assert!(output_capacity_after(big, big / 4) >= big);
    // One byte less than a quarter: the burst is over, freed once written.
    assert_eq!(output_capacity_after(big, big / 4 - 1), 0);
}
