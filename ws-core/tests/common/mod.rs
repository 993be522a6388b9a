//! What the in-memory tests of the `Connection` share (connection.rs,
//! limits.rs, deflate.rs): frames built by hand, independently of the
//! connection's encoder, and the connection's output taken apart with the
//! parser under test. Each test binary uses part of it.

#![allow(dead_code)]

use ws_core::Connection;
use ws_core::frame::FrameHeader;
use ws_core::mask::apply_mask_scalar;

/// The masking key of every hand-built client frame.
pub const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

/// Raw frame bytes, built independently of the connection's encoder: FIN,
/// the RSV bits (`rsv` in the low three bits), the opcode, the payload
/// length in its shortest form, and the payload masked with `mask` if any.
pub fn raw(fin: bool, rsv: u8, opcode: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
    let mut out = vec![(fin as u8) << 7 | rsv << 4 | opcode];
    let m = if mask.is_some() { 0x80 } else { 0 };
    match payload.len() {
        n @ 0..=125 => out.push(m | n as u8),
        n @ 126..=0xffff => {
            out.push(m | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(m | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    let mut p = payload.to_vec();
    if let Some(k) = mask {
        out.extend_from_slice(&k);
        apply_mask_scalar(&mut p, k, 0);
    }
    out.extend_from_slice(&p);
    out
}

/// A frame as a client sends it (masked with [`KEY`], final, no RSV bit).
pub fn cframe(opcode: u8, payload: &[u8]) -> Vec<u8> {
    raw(true, 0, opcode, payload, Some(KEY))
}

/// Everything `conn` wants to send, in order (`take_transmit` hands out one
/// chunk at a time).
pub fn take_all(conn: &mut Connection) -> Vec<u8> {
    let mut wire = Vec::new();
    loop {
        let chunk = conn.take_transmit();
        if chunk.is_empty() {
            return wire;
        }
        wire.extend_from_slice(&chunk);
    }
}

/// Decodes `bytes` as whole frames with the parser under test: (header,
/// unmasked payload).
pub fn frames_of(bytes: &[u8]) -> Vec<(FrameHeader, Vec<u8>)> {
    let mut rest = bytes;
    let mut frames = Vec::new();
    while !rest.is_empty() {
        let (h, n) = FrameHeader::parse(rest).unwrap().expect("whole frame");
        let len = h.payload_len as usize;
        let mut p = rest[n..n + len].to_vec();
        if let Some(k) = h.mask {
            apply_mask_scalar(&mut p, k, 0);
        }
        frames.push((h, p));
        rest = &rest[n + len..];
    }
    frames
}

/// Drains everything `conn` wants to send and decodes it as frames.
pub fn sent_frames(conn: &mut Connection) -> Vec<(FrameHeader, Vec<u8>)> {
    frames_of(&take_all(conn))
}
