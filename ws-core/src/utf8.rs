//! Incremental UTF-8 validation for text messages that arrive in pieces.
//!
//! A text message may be split across frames, and a frame across reads, at any
//! byte, including inside a multi-byte character. [`Utf8Validator`] carries at
//! most three bytes of an unfinished character between pieces and fails as soon
//! as a sequence can no longer become valid UTF-8, so a peer streaming garbage
//! is stopped at the first bad byte rather than at the end of the message.
//! The bulk of each piece is checked by `simdutf8` (SIMD, runtime-detected).

/// Error returned when the bytes seen so far can never be valid UTF-8.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("invalid UTF-8 in text")]
pub struct InvalidUtf8;

/// Streaming UTF-8 validator (at most 4 bytes of state).
#[derive(Debug, Default, Clone)]
pub struct Utf8Validator {
    partial: [u8; 4],
    partial_len: u8,
}

/// Length of the character that starts with lead byte `b` (0 if `b` cannot
/// start one).
fn char_width(b: u8) -> usize {
    match b {
        0x00..=0x7f => 1,
        0xc2..=0xdf => 2,
        0xe0..=0xef => 3,
        0xf0..=0xf4 => 4,
        _ => 0,
    }
}

impl Utf8Validator {
    /// A validator at the start of a message.
    pub fn new() -> Self {
        Self::default()
    }

    /// Validates the next piece of the message.
    pub fn feed(&mut self, mut data: &[u8]) -> Result<(), InvalidUtf8> {
        if self.partial_len > 0 {
            let have = self.partial_len as usize;
            let width = char_width(self.partial[0]);
            let take = (width - have).min(data.len());
            self.partial[have..have + take].copy_from_slice(&data[..take]);
            self.partial_len += take as u8;
            data = &data[take..];
            match simdutf8::compat::from_utf8(&self.partial[..self.partial_len as usize]) {
                Ok(_) => self.partial_len = 0,
                Err(e) if e.error_len().is_none() => return Ok(()), // still unfinished; data is empty
                Err(_) => return Err(InvalidUtf8),
            }
        }
        // Fast path: the common case is a piece that is valid on its own.
        if simdutf8::basic::from_utf8(data).is_ok() {
            return Ok(());
        }
        match simdutf8::compat::from_utf8(data) {
            Ok(_) => Ok(()),
            Err(e) if e.error_len().is_none() => {
                let tail = &data[e.valid_up_to()..];
                self.partial[..tail.len()].copy_from_slice(tail);
                self.partial_len = tail.len() as u8;
                Ok(())
            }
            Err(_) => Err(InvalidUtf8),
        }
    }

    /// Checks that the message does not end inside a character, and resets
    /// the validator for the next message.
    pub fn finish(&mut self) -> Result<(), InvalidUtf8> {
        let unfinished = self.partial_len != 0;
        self.partial_len = 0;
        if unfinished { Err(InvalidUtf8) } else { Ok(()) }
    }

    /// Forgets any unfinished character.
    pub fn reset(&mut self) {
        self.partial_len = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn validate_in_pieces(data: &[u8], cuts: &[usize]) -> Result<(), InvalidUtf8> {
        let mut v = Utf8Validator::new();
        let mut start = 0;
        for &c in cuts {
            let c = c.clamp(start, data.len());
            v.feed(&data[start..c])?;
            start = c;
        }
        v.feed(&data[start..])?;
        v.finish()
    }

    #[test]
    fn character_split_across_pieces_is_valid() {
        let s = "κόσμε € 𝄞".as_bytes();
        for i in 0..s.len() {
            assert_eq!(validate_in_pieces(s, &[i]), Ok(()), "cut at {i}");
        }
    }

    #[test]
    fn invalid_byte_fails_before_the_message_ends() {
        let mut v = Utf8Validator::new();
        assert!(v.feed(b"hello ").is_ok());
        // 0xCE 0xBA is valid, then 0xF4 0x90 can never be valid (> U+10FFFF).
        assert_eq!(v.feed(&[0xce, 0xba, 0xf4, 0x90]), Err(InvalidUtf8));
    }

    #[test]
    fn invalid_continuation_across_pieces_fails_on_the_piece_that_breaks_it() {
        let mut v = Utf8Validator::new();
        assert!(v.feed(&[0xe2, 0x82]).is_ok());
        assert_eq!(v.feed(&[0x41]), Err(InvalidUtf8));
    }

    #[test]
    fn message_ending_inside_a_character_fails_at_finish() {
        let mut v = Utf8Validator::new();
        assert!(v.feed(&[0xf0, 0x9d]).is_ok());
        assert_eq!(v.finish(), Err(InvalidUtf8));
        // finish resets for the next message
        assert!(v.feed(b"ok").is_ok());
        assert!(v.finish().is_ok());
    }

    #[test]
    fn characters_fed_one_byte_at_a_time_are_valid() {
        let s = "a κ € 𝄞".as_bytes();
        let cuts: Vec<usize> = (1..s.len()).collect();
        assert_eq!(validate_in_pieces(s, &cuts), Ok(()));
    }

    #[test]
    fn reset_forgets_an_unfinished_character() {
        let mut v = Utf8Validator::new();
        assert!(v.feed(&[0xf0, 0x9d]).is_ok());
        v.reset();
        // Without the reset, "ok" would continue the 4-byte character and fail.
        assert!(v.feed(b"ok").is_ok());
        assert!(v.finish().is_ok());
    }

    #[test]
    fn surrogates_and_overlongs_are_rejected() {
        for bad in [
            &[0xed, 0xa0, 0x80][..],
            &[0xc0, 0xaf],
            &[0xe0, 0x80, 0xaf],
            &[0xff],
        ] {
            assert_eq!(validate_in_pieces(bad, &[]), Err(InvalidUtf8), "{bad:?}");
            assert_eq!(
                validate_in_pieces(bad, &[1]),
                Err(InvalidUtf8),
                "{bad:?} split"
            );
        }
    }

    proptest! {
        #[test]
        fn pieces_agree_with_std(data in proptest::collection::vec(any::<u8>(), 0..40),
                                 cuts in proptest::collection::vec(0usize..40, 0..5)) {
            let mut cuts = cuts;
            cuts.sort();
            let expected = std::str::from_utf8(&data).is_ok();
            prop_assert_eq!(validate_in_pieces(&data, &cuts).is_ok(), expected);
        }

        #[test]
        fn valid_strings_pass_at_any_cut(s in "\\PC{0,20}", cut in 0usize..80) {
            let b = s.as_bytes();
            prop_assert!(validate_in_pieces(b, &[cut.min(b.len())]).is_ok());
        }
    }
}
