//! Bearer keys, compared in constant time.
//!
//! The configured key is kept only as its SHA-256 digest, and a presented key is hashed before
//! the comparison: both sides are then 32 bytes, so neither the comparison's time nor an early
//! exit on a length mismatch tells a caller anything about the key's length or prefix.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// A configured bearer key (`[api] key`, `[metrics] key`).
#[derive(Clone)]
pub struct BearerKey([u8; 32]);

impl std::fmt::Debug for BearerKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BearerKey(<set>)")
    }
}

impl BearerKey {
    /// `None` for an empty key (the feature is off, or needs no key).
    pub fn new(key: &str) -> Option<BearerKey> {
        (!key.is_empty()).then(|| BearerKey(Sha256::digest(key.as_bytes()).into()))
    }

    /// Whether an `Authorization` header value carries this key: `Bearer KEY`, the scheme in any
    /// case, spaces around the key ignored.
    pub fn matches(&self, authorization: Option<&str>) -> bool {
        let Some((scheme, presented)) = authorization.and_then(|v| v.trim().split_once(' ')) else {
            return false;
        };
        if !scheme.eq_ignore_ascii_case("bearer") {
            return false;
        }
        let digest: [u8; 32] = Sha256::digest(presented.trim().as_bytes()).into();
        bool::from(digest.ct_eq(&self.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_table() {
        assert!(BearerKey::new("").is_none());
        let key = BearerKey::new("0123456789abcdef").unwrap();
        for (header, ok) in [
            (Some("Bearer 0123456789abcdef"), true),
            (Some("bearer 0123456789abcdef"), true),
            (Some("BEARER   0123456789abcdef  "), true),
            (Some("Bearer 0123456789abcde"), false),
            (Some("Bearer 0123456789abcdeff"), false),
            (Some("Basic 0123456789abcdef"), false),
            (Some("0123456789abcdef"), false),
            (Some("Bearer"), false),
            (Some(""), false),
            (None, false),
        ] {
            assert_eq!(key.matches(header), ok, "{header:?}");
        }
        assert_eq!(format!("{key:?}"), "BearerKey(<set>)");
    }
}
