//! `%XX` decoding (RFC 3986), one implementation for every caller: request
//! paths and queries (HTTP API, Pusher API, the session token) and Redis
//! URLs. `+` is left as it is: callers decoding a form-style query replace
//! it first.

/// Decodes `text`; `None` for a `%` not followed by two hex digits, or a
/// result that is not UTF-8.
pub fn decode_strict(text: &str) -> Option<String> {
    String::from_utf8(decode_bytes(text, true)?).ok()
}

/// Decodes `text`, keeping a malformed escape literally and replacing bytes
/// that are not UTF-8 (so a broken value still reaches its own check).
pub fn decode_lossy(text: &str) -> String {
    let bytes = decode_bytes(text, false).unwrap_or_default();
    String::from_utf8_lossy(&bytes).into_owned()
}

fn decode_bytes(text: &str, strict: bool) -> Option<Vec<u8>> {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            // Not `from_str_radix`: it would take a sign (`%+1`).
            let pair = bytes
                .get(i + 1)
                .copied()
                .and_then(hex)
                .zip(bytes.get(i + 2).copied().and_then(hex));
            match pair {
                Some((high, low)) => {
                    out.push(high << 4 | low);
                    i += 3;
                    continue;
                }
                None if strict => return None,
                None => {}
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strict_and_lossy() {
        assert_eq!(decode_strict("chat").as_deref(), Some("chat"));
        assert_eq!(decode_strict("a%20b%2Fc").as_deref(), Some("a b/c"));
        assert_eq!(decode_strict("%C3%A9t%c3%a9").as_deref(), Some("été"));
        assert_eq!(decode_strict("a+b").as_deref(), Some("a+b"));
        for bad in ["%", "%2", "%zz", "%FF", "a%2", "%+1", "%-1", "%ff"] {
            assert_eq!(decode_strict(bad), None, "{bad}");
        }
        assert_eq!(decode_lossy("a%2"), "a%2");
        assert_eq!(decode_lossy("%+1x"), "%+1x");
        assert_eq!(decode_lossy("p%40ss%3A"), "p@ss:");
        assert_eq!(decode_lossy("%ff"), "\u{fffd}");
    }
}
