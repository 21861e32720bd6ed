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
//!
//! A parsed value is also read as the answer to a history read (SPEC 16,
//! src/cluster/history.rs) of every kind: no panic, and what is accepted
//! holds no more than was asked, with ascending offsets within the stream, a
//! recovery's exactly the ones after `since`, and JSON objects only.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rakit::cluster::envelope::{Envelope, Joined};
use rakit::cluster::history::parse_read;
use rakit::cluster::resp::{parse, Value};
use rakit::history::{Query, Read, Retention, Since};

fn history_reads(value: &Value) {
    let keep = Retention {
        size: 4,
        ttl: std::time::Duration::from_secs(60),
    };
    let reads = [
        Read::Position,
        Read::Recover(Since {
            offset: 2,
            epoch: "E".into(),
        }),
        Read::Query(Query::Newest(3)),
        Read::Query(Query::After { since: 1, limit: 3 }),
    ];
    for read in &reads {
        let Some(snap) = parse_read(value, read, keep, 1 << 16) else {
            continue;
        };
        let Some(list) = snap.publications else {
            assert!(matches!(read, Read::Recover(_)));
            continue;
        };
        let most = match read {
            Read::Position => 0,
            Read::Recover(_) => keep.size,
            Read::Query(q) => q.limit(),
        };
        assert!(list.len() <= most);
        assert!(list.windows(2).all(|w| w[0].offset < w[1].offset));
        assert!(list
            .iter()
            .all(|p| p.offset >= 1 && p.offset <= snap.position.offset));
        assert!(list.iter().all(|p| p.json.first() == Some(&b'{')));
        if let Read::Recover(since) = read {
            assert_eq!(&*snap.position.epoch, since.epoch);
            let want: Vec<u64> = (since.offset + 1..=snap.position.offset).collect();
            let got: Vec<u64> = list.iter().map(|p| p.offset).collect();
            assert_eq!(got, want);
        }
    }
}

fuzz_target!(|data: &[u8]| {
    if let Ok(Some((value, used))) = parse(data) {
        assert!(used <= data.len());
        let mut again = Vec::new();
        value.encode(&mut again);
        let (reparsed, n) = parse(&again)
            .expect("own encoding parses")
            .expect("complete");
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
        history_reads(&value);
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
