//! Socket ids (SPEC section 13): `NNN.NNN`, drawn from the operating system's random source.
//!
//! A socket id is what the backend knows a connection by: channel signatures are bound to it,
//! and `socket_id` on `POST /events` excludes that connection (`toOthers()`). A client sees its
//! own id and, through the application, may learn others'; from a small seeded generator one
//! observed id gives away the state, hence every id that follows (and, with a weak seed, the
//! ids before it). So they come from the OS (`getrandom`, through `ring`), drawn in blocks so
//! that a connection costs no system call of its own.

use std::hash::{BuildHasher, Hasher};

use ring::rand::{SecureRandom, SystemRandom};

/// Random bytes fetched per system call: 32 ids' worth.
const POOL: usize = 256;

/// Hands out socket ids (see the module docs).
pub struct SocketIds {
    rng: SystemRandom,
    pool: [u8; POOL],
    /// Bytes of `pool` already handed out.
    used: usize,
    /// Only if the OS source fails (it does not on Linux once booted): SipHash keyed by the
    /// standard library from the OS's randomness at start, over a counter.
    fallback: std::collections::hash_map::RandomState,
    counter: u64,
}

impl std::fmt::Debug for SocketIds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SocketIds").finish_non_exhaustive()
    }
}

impl Default for SocketIds {
    fn default() -> SocketIds {
        SocketIds {
            rng: SystemRandom::new(),
            pool: [0; POOL],
            used: POOL,
            fallback: std::collections::hash_map::RandomState::new(),
            counter: 0,
        }
    }
}

impl SocketIds {
    fn next_u64(&mut self) -> u64 {
        if self.used + 8 > POOL {
            if self.rng.fill(&mut self.pool).is_err() {
                self.counter = self.counter.wrapping_add(1);
                let mut h = self.fallback.build_hasher();
                h.write_u64(self.counter);
                return h.finish();
            }
            self.used = 0;
        }
        let mut bytes = [0; 8];
        bytes.copy_from_slice(&self.pool[self.used..self.used + 8]);
        self.used += 8;
        u64::from_le_bytes(bytes)
    }

    /// A fresh id `A.B` (each part below 10^9, as Pusher's are) for which `taken` is false.
    pub fn generate(&mut self, taken: impl Fn(&str) -> bool) -> String {
        loop {
            let n = self.next_u64();
            let id = format!(
                "{}.{}",
                (n >> 32) % 1_000_000_000,
                (n & 0xffff_ffff) % 1_000_000_000
            );
            if !taken(&id) {
                return id;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_have_pushers_form_and_do_not_repeat() {
        let mut ids = SocketIds::default();
        let mut seen = std::collections::HashSet::new();
        // Several pools' worth, across refills.
        for _ in 0..1000 {
            let id = ids.generate(|_| false);
            let (a, b) = id.split_once('.').unwrap();
            assert!(a.parse::<u32>().unwrap() < 1_000_000_000, "{id}");
            assert!(b.parse::<u32>().unwrap() < 1_000_000_000, "{id}");
            assert!(seen.insert(id));
        }
        // A taken id is skipped.
        let first = ids.generate(|_| false);
        let next = ids.generate(|id| id == first);
        assert_ne!(first, next);
    }

    #[test]
    fn two_generators_do_not_share_a_sequence() {
        // Seeded generators started together (same time, same pid) would agree.
        let a: Vec<String> = {
            let mut g = SocketIds::default();
            (0..4).map(|_| g.generate(|_| false)).collect()
        };
        let b: Vec<String> = {
            let mut g = SocketIds::default();
            (0..4).map(|_| g.generate(|_| false)).collect()
        };
        assert_ne!(a, b);
    }
}
