//! Compressible payloads for the permessage-deflate benchmark: JSON chat
//! messages like a chat or notification service sends (200 B to 2 KiB), a
//! larger JSON document made of them, and the raw-deflate encoding a client
//! without context takeover puts on the wire (RFC 7692 section 7.2.1).
//!
//! Deterministic (a fixed xorshift seed), so every server in a run sees the
//! same bytes and a rerun compresses to the same sizes.

use flate2::{Compress, Compression, FlushCompress};

const WORDS: &[&str] = &[
    "hello",
    "world",
    "the",
    "meeting",
    "starts",
    "at",
    "noon",
    "please",
    "review",
    "pull",
    "request",
    "deploy",
    "finished",
    "build",
    "failed",
    "on",
    "main",
    "coffee",
    "anyone",
    "tomorrow",
    "sounds",
    "good",
    "thanks",
    "see",
    "you",
    "later",
    "incident",
    "resolved",
    "latency",
    "dashboard",
    "is",
    "green",
    "again",
    "lunch",
    "ready",
    "release",
    "notes",
    "updated",
    "ticket",
    "assigned",
    "to",
    "me",
    "ok",
    "great",
    "idea",
    "let's",
    "ship",
    "it",
];
const USERS: &[&str] = &[
    "alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi",
];
const ROOMS: &[&str] = &["general", "random", "ops", "dev"];

/// A small deterministic generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// One chat message as JSON, about `target` bytes long (its text is cut
/// at a word boundary).
fn chat_message(rng: &mut Rng, id: usize, target: usize) -> String {
    let head = format!(
        r#"{{"type":"message","id":{id},"room":"{}","from":"{}","ts":{},"text":""#,
        ROOMS[rng.below(ROOMS.len())],
        USERS[rng.below(USERS.len())],
        1_764_770_000_000u64 + rng.below(86_400_000) as u64,
    );
    let mut text = String::new();
    while head.len() + text.len() + 2 < target {
        if !text.is_empty() {
            text.push(' ');
        }
        text.push_str(WORDS[rng.below(WORDS.len())]);
    }
    format!("{head}{text}\"}}")
}

/// `count` JSON chat messages of 200 B to 2 KiB, sizes spread evenly.
pub fn chat_messages(count: usize) -> Vec<Vec<u8>> {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    (0..count)
        .map(|i| {
            let target = 200 + rng.below(2048 - 200);
            chat_message(&mut rng, i, target).into_bytes()
        })
        .collect()
}

/// A JSON array of chat messages, `size` bytes or just over.
pub fn json_document(size: usize) -> Vec<u8> {
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let mut doc = String::from("[");
    let mut id = 0;
    while doc.len() + 1 < size {
        if id > 0 {
            doc.push(',');
        }
        let target = 200 + rng.below(600);
        doc.push_str(&chat_message(&mut rng, id, target));
        id += 1;
    }
    doc.push(']');
    doc.into_bytes()
}

/// `data` compressed on its own as a permessage-deflate payload (raw
/// deflate, window 15, `level`, sync-flushed, the trailing `00 00 ff ff`
/// removed), as a client with `client_no_context_takeover` sends it.
pub fn deflate_message(data: &[u8], level: u32) -> Vec<u8> {
    let mut c = Compress::new(Compression::new(level), false);
    let mut out = Vec::with_capacity(data.len() / 2 + 64);
    loop {
        let consumed = c.total_in() as usize;
        out.reserve(1024);
        c.compress_vec(&data[consumed..], &mut out, FlushCompress::Sync)
            .expect("deflate");
        if c.total_in() as usize == data.len() && out.ends_with(&[0, 0, 0xff, 0xff]) {
            break;
        }
    }
    out.truncate(out.len() - 4);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::{Decompress, FlushDecompress};

    #[test]
    fn chat_messages_are_json_between_200_bytes_and_2_kib() {
        let msgs = chat_messages(64);
        assert_eq!(msgs.len(), 64);
        for m in &msgs {
            assert!((200..=2048 + 16).contains(&m.len()), "{} bytes", m.len());
            let s = std::str::from_utf8(m).unwrap();
            assert!(s.starts_with("{\"type\":\"message\"") && s.ends_with("\"}"));
        }
        assert_ne!(msgs[0], msgs[1]);
        assert_eq!(msgs, chat_messages(64), "deterministic");
    }

    #[test]
    fn a_json_document_has_the_size_asked_for() {
        let doc = json_document(64 * 1024);
        assert!(doc.len() >= 64 * 1024 && doc.len() < 64 * 1024 + 1024);
        assert!(doc.starts_with(b"[{") && doc.ends_with(b"}]"));
    }

    #[test]
    fn a_deflated_message_inflates_back_with_the_tail_restored() {
        for data in chat_messages(8).into_iter().chain([json_document(70_000)]) {
            let mut wire = deflate_message(&data, 6);
            assert!(wire.len() < data.len() * 3 / 4, "JSON chat compresses");
            wire.extend_from_slice(&[0, 0, 0xff, 0xff]);
            let mut d = Decompress::new(false);
            let mut out = Vec::with_capacity(data.len() + 64);
            d.decompress_vec(&wire, &mut out, FlushDecompress::Sync)
                .unwrap();
            assert_eq!(out, data);
        }
    }
}
