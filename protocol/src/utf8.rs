//! Incremental UTF-8 validation for text messages that arrive in fragments.
//!
//! A fragment may end inside a multi-byte character, so each step validates
//! only the bytes not yet validated and remembers an incomplete tail; invalid
//! text fails on the fragment that breaks it, not when the message ends.

/// The outcome of validating the next piece of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Utf8Status {
    /// Valid so far; the last `pending` bytes (0 to 3) start a character not
    /// yet complete.
    Valid {
        /// Bytes at the end that begin an incomplete character.
        pending: usize,
    },
    /// Not UTF-8, whatever follows.
    Invalid,
}

/// Checks that a whole message is UTF-8 (the common, unfragmented case).
pub fn whole(bytes: &[u8]) -> Option<&str> {
    simdutf8::basic::from_utf8(bytes).ok()
}

/// Validates `buf[from..]`, where `buf[..from]` is already known to be a
/// sequence of complete characters. `complete` says whether `buf` is the
/// whole message (then an incomplete final character is invalid).
pub fn validate(buf: &[u8], from: usize, complete: bool) -> Utf8Status {
    let Some(rest) = buf.get(from..) else {
        return Utf8Status::Invalid;
    };
    match simdutf8::compat::from_utf8(rest) {
        Ok(_) => Utf8Status::Valid { pending: 0 },
        // `error_len() == None`: the input ended inside a character that may
        // still be completed by the next fragment.
        Err(e) if e.error_len().is_none() && !complete => Utf8Status::Valid {
            pending: rest.len() - e.valid_up_to(),
        },
        Err(_) => Utf8Status::Invalid,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_messages() {
        assert_eq!(
            validate(b"hello", 0, true),
            Utf8Status::Valid { pending: 0 }
        );
        assert_eq!(
            validate("κόσμε".as_bytes(), 0, true),
            Utf8Status::Valid { pending: 0 }
        );
        assert_eq!(validate(b"\xff", 0, true), Utf8Status::Invalid);
        assert_eq!(validate(b"\xce", 0, true), Utf8Status::Invalid);
    }

    #[test]
    fn split_character_is_pending_until_complete() {
        let text = "aκ".as_bytes(); // a, 0xce 0xba
        assert_eq!(
            validate(&text[..2], 0, false),
            Utf8Status::Valid { pending: 1 }
        );
        assert_eq!(validate(text, 1, true), Utf8Status::Valid { pending: 0 });
    }

    #[test]
    fn fails_on_the_fragment_that_breaks_it() {
        // 0xed 0xa0 0x80 is a surrogate: invalid as soon as 0xa0 is seen.
        assert_eq!(validate(b"ab\xed\xa0", 0, false), Utf8Status::Invalid);
        assert_eq!(
            validate(b"ab\xed", 0, false),
            Utf8Status::Valid { pending: 1 }
        );
        assert_eq!(validate(b"\xf4\x90", 0, false), Utf8Status::Invalid);
    }

    #[test]
    fn agrees_with_std_on_tricky_sequences() {
        let cases: &[&[u8]] = &[
            b"",
            b"plain ascii",
            "κόσμε".as_bytes(),
            "𝄞 clef".as_bytes(),
            b"\xc0\x80",
            b"\xed\xa0\x80",
            b"\xed\x9f\xbf",
            b"\xf4\x8f\xbf\xbf",
            b"\xf4\x90\x80\x80",
            b"\xf8\x88\x80\x80\x80",
            b"\xef\xbf\xbe",
            b"\xe0\x80\xaf",
            b"\xce",
            b"a\xce\xba\xe1",
            b"\x80",
            b"\xff\xfe",
        ];
        for bytes in cases {
            // Long inputs take the SIMD path; pad on both sides.
            let long: Vec<u8> = [&[b'x'; 70][..], bytes, &[b'y'; 70][..]].concat();
            for input in [bytes.to_vec(), long] {
                let std_ok = std::str::from_utf8(&input).is_ok();
                assert_eq!(whole(&input).is_some(), std_ok, "{input:x?}");
                let ours = validate(&input, 0, true);
                assert_eq!(
                    ours == Utf8Status::Valid { pending: 0 },
                    std_ok,
                    "{input:x?}"
                );
            }
        }
    }

    #[test]
    fn out_of_range_start_is_invalid_not_panic() {
        assert_eq!(validate(b"ab", 3, true), Utf8Status::Invalid);
    }
}
