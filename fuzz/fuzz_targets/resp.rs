//! The cluster's RESP2 parser (src/cluster/resp.rs) and envelope decoder
//! (src/cluster/envelope.rs), on bytes a Redis server (or anything
//! answering on its port, or any publisher on our channels) could send.
//!
//! Asserted: no panic; a parsed value consumed at most the input, and its
//! own encoding parses back to the same value with nothing left over; the
//! bytes it consumed are exactly that encoding unless they spell a number in
//! a way the parser tolerates but never writes (a leading zero, `-0`: RESP2
//! has one spelling per value otherwise); and every strict prefix of those
//! bytes is incomplete (`Ok(None)`), never an error or another value, since
//! a reply arrives in pieces. A decoded envelope encodes to the same
//! envelope, and so does a subscription's member (what a hash field or a
//! subscribe holds).
#![no_main]

use libfuzzer_sys::fuzz_target;
use rakit::cluster::envelope::{Envelope, Joined};
use rakit::cluster::resp::{parse, Value};

/// Whether `bytes` may spell a number other than as [`Value::encode`] does:
/// a type byte that takes a number, then a leading zero or `-0`. (Bytes of a
/// string that look like this only make the check below less strict.)
fn loose_number(bytes: &[u8]) -> bool {
    bytes.windows(3).any(|w| {
        matches!(w[0], b':' | b'$' | b'*')
            && ((w[1] == b'0' && w[2].is_ascii_digit()) || (w[1] == b'-' && w[2] == b'0'))
    })
}

fuzz_target!(|data: &[u8]| {
    if let Ok(Some((value, used))) = parse(data) {
        assert!(used <= data.len());
        let mut again = Vec::new();
        value.encode(&mut again);
        let (reparsed, n) = parse(&again).expect("own encoding parses").expect("complete");
        assert_eq!(reparsed, value);
        assert_eq!(n, again.len());
        let consumed = &data[..used];
        if !loose_number(consumed) {
            assert_eq!(again, consumed, "one spelling per value");
        }
        // Every strict prefix: still incomplete (all of them for small
        // values, an even sample of large ones).
        let step = (used / 512).max(1);
        for cut in (0..used).step_by(step).chain([used - 1]) {
            match parse(&consumed[..cut]) {
                Ok(None) => {}
                other => panic!("prefix {cut} of {used}: {other:?}"),
            }
        }
        let _: Option<&[Value]> = value.as_array();
    }
    if let Some(env) = Envelope::decode(data) {
        let mut bytes = Vec::new();
        env.encode(&mut bytes);
        assert_eq!(Envelope::decode(&bytes), Some(env));
    }
    if let Some(member) = std::str::from_utf8(data).ok().and_then(Joined::decode) {
        let text = Joined::encode(member.as_ref());
        assert_eq!(Joined::decode(&text), Some(member));
    }
});
