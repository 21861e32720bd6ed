//! Client ids (SPEC section 5): 8 random characters of `[A-Za-z0-9]`.
//!
//! Ids are public (they appear in presence and as `client_id`), so they need
//! to be unique and unpredictable enough not to collide, not secret: a small
//! seeded PRNG is enough, and a seed makes tests deterministic.

use std::fmt;

/// Length of a client id in characters (and bytes: the alphabet is ASCII).
pub(crate) const ID_LEN: usize = 8;

const ALPHABET: &[u8; 62] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/// A client id, stored inline: it is hashed and copied on every private
/// message, and a fixed array avoids a heap allocation per client.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct ClientId([u8; ID_LEN]);

impl ClientId {
    /// Parses an id sent by a client; `None` for anything that cannot be an
    /// id, so it is reported as an unknown client.
    pub(crate) fn parse(text: &str) -> Option<ClientId> {
        let bytes: [u8; ID_LEN] = text.as_bytes().try_into().ok()?;
        bytes
            .iter()
            .all(u8::is_ascii_alphanumeric)
            .then_some(ClientId(bytes))
    }

    pub(crate) fn as_str(&self) -> &str {
        // Every constructor only admits ASCII alphanumerics, so this cannot fail.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

impl fmt::Debug for ClientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// xoshiro256** seeded through splitmix64 (the seeding its authors
/// recommend, so that any `u64`, even 0, gives a good state).
pub(crate) struct IdGenerator {
    state: [u64; 4],
    /// Random bits not yet used, and how many of them there are.
    bits: u64,
    bits_left: u32,
}

impl IdGenerator {
    pub(crate) fn new(seed: u64) -> IdGenerator {
        let mut sm = seed;
        let mut next = || {
            sm = sm.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = sm;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        };
        IdGenerator {
            state: [next(), next(), next(), next()],
            bits: 0,
            bits_left: 0,
        }
    }

    fn next_u64(&mut self) -> u64 {
        let [s0, s1, s2, s3] = &mut self.state;
        let result = s1.wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = *s1 << 17;
        *s2 ^= *s0;
        *s3 ^= *s1;
        *s1 ^= *s2;
        *s0 ^= *s3;
        *s2 ^= t;
        *s3 = s3.rotate_left(45);
        result
    }

    /// One uniformly chosen alphabet character. Six random bits give 0..64;
    /// values 62 and 63 are rejected rather than folded with `%`, which would
    /// make the first two characters twice as likely.
    fn next_char(&mut self) -> u8 {
        loop {
            if self.bits_left < 6 {
                self.bits = self.next_u64();
                self.bits_left = 64;
            }
            let index = (self.bits & 0x3F) as usize;
            self.bits >>= 6;
            self.bits_left -= 6;
            if let Some(&c) = ALPHABET.get(index) {
                return c;
            }
        }
    }

    /// A fresh id for which `taken` is false (a live client's id). With
    /// 62^8 ids a collision is rare, so retrying is cheap.
    pub(crate) fn generate(&mut self, taken: impl Fn(&ClientId) -> bool) -> ClientId {
        loop {
            let mut bytes = [0u8; ID_LEN];
            for b in &mut bytes {
                *b = self.next_char();
            }
            let id = ClientId(bytes);
            if !taken(&id) {
                return id;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn ids_have_the_spec_format() {
        let mut gen = IdGenerator::new(0);
        for _ in 0..1000 {
            let id = gen.generate(|_| false);
            assert_eq!(id.as_str().len(), ID_LEN);
            assert!(id.as_str().bytes().all(|b| b.is_ascii_alphanumeric()));
        }
    }

    #[test]
    fn generation_is_deterministic_per_seed() {
        let a: Vec<_> = {
            let mut g = IdGenerator::new(42);
            (0..10).map(|_| g.generate(|_| false)).collect()
        };
        let b: Vec<_> = {
            let mut g = IdGenerator::new(42);
            (0..10).map(|_| g.generate(|_| false)).collect()
        };
        let c: Vec<_> = {
            let mut g = IdGenerator::new(43);
            (0..10).map(|_| g.generate(|_| false)).collect()
        };
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn taken_ids_are_skipped() {
        let first = IdGenerator::new(7).generate(|_| false);
        let second = IdGenerator::new(7).generate(|id| *id == first);
        assert_ne!(first, second);
    }

    #[test]
    fn every_alphabet_character_appears_roughly_uniformly() {
        let mut gen = IdGenerator::new(1);
        let mut counts = [0usize; 128];
        let n = 62 * 2000;
        for _ in 0..n {
            counts[usize::from(gen.next_char())] += 1;
        }
        for &c in ALPHABET {
            let count = counts[usize::from(c)];
            // Expected 2000 each; a biased `%` would give ~4000 for 'A' and 'B'.
            assert!((1600..2400).contains(&count), "{} x{count}", c as char);
        }
        let distinct: HashSet<_> = (0..1000).map(|_| gen.generate(|_| false)).collect();
        assert_eq!(distinct.len(), 1000);
    }

    #[test]
    fn parse_accepts_only_id_shaped_text() {
        assert_eq!(
            ClientId::parse("aZ09bY18").map(|id| id.as_str().to_owned()),
            Some("aZ09bY18".to_owned())
        );
        for bad in [
            "",
            "short",
            "toolong12",
            "abc-efgh",
            "abcdefgé",
            "abcdefg\0",
        ] {
            assert!(ClientId::parse(bad).is_none(), "{bad:?}");
        }
    }
}
