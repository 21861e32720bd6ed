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
//! a reply arrives in pieces. The resumable parser, fed the input split at
//! points the input itself chooses (as reads would append it), yields exactly
//! what parsing the whole buffer yields, value after value, and the same
//! error. A decoded envelope encodes to the same envelope, and so does a
//! subscription's member (what a hash field or a subscribe holds).
//!
//! A parsed value is also read as the answer to a history read (SPEC 16,
//! src/cluster/history.rs) of every kind: no panic, and what is accepted
//! holds no more than was asked, with ascending offsets within the stream, a
//! recovery's exactly the ones after `since`, and JSON objects only.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rakit::cluster::envelope::{Envelope, Joined};
use rakit::cluster::history::parse_read;
use rakit::cluster::resp::{parse, Parser, RespError, Value};
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
        Read::Cached,
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
            Read::Cached => 1,
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

/// Whether `bytes` may spell a number other than as [`Value::encode`] does:
/// a type byte that takes a number, then a leading zero or `-0`. (Bytes of a
/// string that look like this only make the check below less strict.)
fn loose_number(bytes: &[u8]) -> bool {
    bytes.windows(3).any(|w| {
        matches!(w[0], b':' | b'$' | b'*')
            && ((w[1] == b'0' && w[2].is_ascii_digit()) || (w[1] == b'-' && w[2] == b'0'))
    })
}

/// Every value of `data` parsed from the whole buffer, one after another, and how it ended:
/// `Ok(rest)` (an incomplete tail of `rest` bytes) or an error.
fn whole(data: &[u8]) -> (Vec<(Value, usize)>, Result<usize, RespError>) {
    let mut values = Vec::new();
    let mut at = 0;
    loop {
        match parse(&data[at..]) {
            Ok(Some((v, used))) => {
                values.push((v, used));
                at += used;
            }
            Ok(None) => return (values, Ok(data.len() - at)),
            Err(e) => return (values, Err(e)),
        }
    }
}

/// The same through one [`Parser`], the bytes arriving in pieces whose sizes come from
/// `cuts` (cycled; a zero is an empty read, never two in a row, so the bytes keep coming).
fn split(data: &[u8], cuts: &[u8]) -> (Vec<(Value, usize)>, Result<usize, RespError>) {
    let mut parser = Parser::default();
    let mut values = Vec::new();
    let mut buf: Vec<u8> = Vec::new();
    let mut fed = 0;
    let mut i = 0;
    let mut was_empty = false;
    loop {
        loop {
            match parser.parse(&buf) {
                Ok(Some((v, used))) => {
                    buf.drain(..used);
                    values.push((v, used));
                }
                Ok(None) => break,
                Err(e) => return (values, Err(e)),
            }
        }
        if fed == data.len() {
            return (values, Ok(buf.len()));
        }
        let mut n = cuts
            .get(i % cuts.len().max(1))
            .map_or(1, |&c| usize::from(c));
        if n == 0 && was_empty {
            n = 1;
        }
        was_empty = n == 0;
        i += 1;
        let end = (fed + n).min(data.len());
        buf.extend_from_slice(&data[fed..end]);
        fed = end;
    }
}

fuzz_target!(|input: &[u8]| {
    // The first byte says how many of the next bytes are read sizes, the rest is the reply.
    let (cuts, data) = match input.split_first() {
        Some((&n, rest)) => rest.split_at(usize::from(n % 16).min(rest.len())),
        None => (&[][..], input),
    };
    assert_eq!(split(data, cuts), whole(data), "read sizes {cuts:?}");
    assert_eq!(split(data, &[1]), whole(data), "a byte at a time");
    let data = input;
    if let Ok(Some((value, used))) = parse(data) {
        assert!(used <= data.len());
        let mut again = Vec::new();
        value.encode(&mut again);
        let (reparsed, n) = parse(&again)
            .expect("own encoding parses")
            .expect("complete");
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
