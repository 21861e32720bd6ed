use super::*;

fn params(bits: u8, requested: bool) -> Params {
    Params {
        server_max_window_bits: bits,
        server_bits_requested: requested,
    }
}

#[test]
fn negotiation_table() {
    let cases: &[(&str, Option<Params>)] = &[
        ("permessage-deflate", Some(params(15, false))),
        (
            "permessage-deflate; client_max_window_bits",
            Some(params(15, false)),
        ),
        (
            "permessage-deflate; client_no_context_takeover; client_max_window_bits",
            Some(params(15, false)),
        ),
        (
            "permessage-deflate; server_no_context_takeover",
            Some(params(15, false)),
        ),
        (
            "permessage-deflate; server_max_window_bits=8",
            Some(params(8, true)),
        ),
        (
            "permessage-deflate; server_max_window_bits=\"10\"",
            Some(params(10, true)),
        ),
        (
            "PerMessage-Deflate; Client_Max_Window_Bits=9",
            Some(params(15, false)),
        ),
        // Autobahn 13.7: the first acceptable of three offers.
        (
            "permessage-deflate; client_no_context_takeover; server_max_window_bits=8, \
             permessage-deflate; client_no_context_takeover, permessage-deflate",
            Some(params(8, true)),
        ),
        // Declined: unknown, repeated, missing or bad values.
        ("permessage-deflate; foo", None),
        ("permessage-deflate; server_max_window_bits", None),
        ("permessage-deflate; server_max_window_bits=7", None),
        ("permessage-deflate; server_max_window_bits=16", None),
        ("permessage-deflate; server_max_window_bits=08", None),
        ("permessage-deflate; server_max_window_bits=+9", None),
        ("permessage-deflate; client_max_window_bits=20", None),
        ("permessage-deflate; server_no_context_takeover=1", None),
        (
            "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
            None,
        ),
        ("permessage-deflate; server_max_window_bits=\"9", None),
        ("x-webkit-deflate-frame", None),
        ("", None),
        // A bad offer is skipped for the next one.
        (
            "permessage-deflate; foo, permessage-deflate; server_max_window_bits=12",
            Some(params(12, true)),
        ),
        // A comma inside another extension's quoted value.
        (
            "foo; bar=\"a, permessage-deflate\", permessage-deflate",
            Some(params(15, false)),
        ),
    ];
    for (offer, want) in cases {
        assert_eq!(negotiate(offer), *want, "{offer}");
    }
}

#[test]
fn response_headers() {
    assert_eq!(
        params(15, false).response_header(),
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
    );
    assert_eq!(
        params(8, true).response_header(),
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover; \
         server_max_window_bits=8"
    );
}

fn sample(len: usize) -> Vec<u8> {
    let words = b"{\"event\":\"message\",\"channel\":\"room-42\",\"data\":\"hello world\"} ";
    words.iter().cycle().take(len).copied().collect()
}

#[test]
fn round_trip_every_window_size() {
    let mut deflater = Deflater::new(1);
    let mut inflater = Inflater::default();
    for bits in 8..=15 {
        for len in [0, 1, 100, 5000, 70_000] {
            let message = sample(len);
            let mut wire = Vec::new();
            deflater.compress(&params(bits, true), &message, &mut wire);
            assert!(!wire.ends_with(&TAIL) || wire.len() < 4);
            if len >= 5000 {
                assert!(wire.len() < message.len() / 4, "{bits} {len}");
            }
            let mut out = Vec::new();
            inflater.inflate(&wire, 1 << 20, &mut out).unwrap();
            assert_eq!(out, message, "bits {bits} len {len}");
            // Each message stands alone: a fresh inflater with the agreed
            // window decodes it too.
            if bits >= 9 {
                let mut own = Decompress::new_with_window_bits(false, bits);
                let mut fresh = Vec::with_capacity(len + 64);
                let mut input = wire.clone();
                input.extend_from_slice(&TAIL);
                own.decompress_vec(&input, &mut fresh, FlushDecompress::Sync)
                    .unwrap();
                assert_eq!(fresh, message);
            }
        }
    }
}

#[test]
fn the_same_message_compresses_to_the_same_bytes() {
    let mut deflater = Deflater::new(1);
    let message = sample(3000);
    let (mut a, mut b) = (Vec::new(), Vec::new());
    deflater.compress(&params(15, false), &message, &mut a);
    deflater.compress(&params(15, false), &message, &mut b);
    assert_eq!(a, b, "no context is carried over");
}

#[test]
fn incompressible_data_round_trips() {
    let mut x = 0x1234_5678u32;
    let message: Vec<u8> = (0..100_000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect();
    let mut wire = Vec::new();
    Deflater::new(9).compress(&params(15, false), &message, &mut wire);
    let mut out = Vec::new();
    Inflater::default()
        .inflate(&wire, message.len(), &mut out)
        .unwrap();
    assert_eq!(out, message);
}

#[test]
fn a_zip_bomb_stops_at_the_limit() {
    let message = vec![0u8; 8 << 20];
    let mut wire = Vec::new();
    Deflater::new(9).compress(&params(15, false), &message, &mut wire);
    assert!(wire.len() < 100_000, "{}", wire.len());
    let mut inflater = Inflater::default();
    let mut out = Vec::new();
    let max = 1 << 20;
    assert_eq!(
        inflater.inflate(&wire, max, &mut out),
        Err(ProtocolError::MessageTooBig {
            size: max as u64 + 1,
            max
        })
    );
    assert!(out.capacity() <= max + 1, "{}", out.capacity());
    // The inflater is reset and serves the next message.
    let mut ok = Vec::new();
    Deflater::new(1).compress(&params(15, false), b"hello", &mut ok);
    inflater.inflate(&ok, max, &mut out).unwrap();
    assert_eq!(out, b"hello");
    // Exactly the limit is allowed.
    let mut wire = Vec::new();
    Deflater::new(1).compress(&params(15, false), &vec![7u8; max], &mut wire);
    inflater.inflate(&wire, max, &mut out).unwrap();
    assert_eq!(out.len(), max);
}

#[test]
fn corrupt_data_is_an_error() {
    let mut inflater = Inflater::default();
    let mut out = Vec::new();
    // Block type 3 is reserved.
    assert_eq!(
        inflater.inflate(&[0xff, 0xff, 0xff], 1000, &mut out),
        Err(ProtocolError::BadCompressedData)
    );
    // A distance before the start of the (fresh) window.
    let mut other = Vec::new();
    Deflater::new(1).compress(&params(15, false), b"abcabcabc", &mut other);
    inflater.inflate(&other, 1000, &mut out).unwrap();
    assert_eq!(out, b"abcabcabc");
}

#[test]
fn a_final_block_ends_the_message() {
    // "hello" as one final stored block, then the tail appended anyway.
    let mut c = Compress::new(Compression::new(1), false);
    let mut wire = Vec::with_capacity(100);
    c.compress_vec(b"hello", &mut wire, FlushCompress::Finish)
        .unwrap();
    let mut out = Vec::new();
    Inflater::default().inflate(&wire, 100, &mut out).unwrap();
    assert_eq!(out, b"hello");
}
