//! permessage-deflate's inflate path (what a hostile client controls) and
//! negotiation.
//!
//! Byte 0 picks the mode, byte 1 the output limit (`max`, 0 to 255 KiB in
//! 1 KiB steps, plus 17 bytes so the limit falls mid-block):
//! - even: **raw**. The rest is an RSV1 payload as a client would send it.
//!   Inflating it either fails or yields at most `max` bytes, the output
//!   never holds more than `max + 1` bytes of memory, and the shared
//!   inflater is clean afterwards (a known message inflates exactly).
//! - odd: **round trip**. The rest is a message, compressed for a window of
//!   8 + (byte 0 >> 1) % 8 bits: it inflates back to itself, or to
//!   `MessageTooBig` exactly when it is longer than `max`.
//! Either way the rest, read as text, is also given to `negotiate`, whose
//! answer must negotiate to the same parameters.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rakit_protocol::deflate::{negotiate, Deflater, Inflater, Params};
use rakit_protocol::ProtocolError;

fuzz_target!(|data: &[u8]| {
    let [mode, limit, rest @ ..] = data else {
        return;
    };
    let max = usize::from(*limit) * 1024 + 17;
    let mut inflater = Inflater::default();
    let mut out = Vec::new();
    if mode % 2 == 0 {
        match inflater.inflate(rest, max, &mut out) {
            Ok(()) => assert!(out.len() <= max),
            Err(ProtocolError::MessageTooBig { size, max: m }) => {
                assert_eq!(m, max);
                assert_eq!(size, max as u64 + 1);
            }
            Err(e) => assert_eq!(e, ProtocolError::BadCompressedData),
        }
        assert!(
            out.capacity() <= max + 1,
            "{} > {}",
            out.capacity(),
            max + 1
        );
        let params = Params {
            server_max_window_bits: 15,
            server_bits_requested: false,
        };
        let mut known = Vec::new();
        Deflater::new(1).compress(&params, b"hello hello hello", &mut known);
        inflater.inflate(&known, max, &mut out).unwrap();
        assert_eq!(out, b"hello hello hello");
    } else {
        let params = Params {
            server_max_window_bits: 8 + (mode >> 1) % 8,
            server_bits_requested: true,
        };
        let mut wire = Vec::new();
        Deflater::new(u32::from(mode >> 4) % 10).compress(&params, rest, &mut wire);
        match inflater.inflate(&wire, max, &mut out) {
            Ok(()) => assert_eq!(out, rest),
            Err(ProtocolError::MessageTooBig { .. }) => assert!(rest.len() > max),
            Err(e) => panic!("our own output does not inflate: {e}"),
        }
    }
    if let Ok(text) = std::str::from_utf8(rest) {
        if let Some(params) = negotiate(text) {
            assert_eq!(
                negotiate(&params.response_header()),
                Some(params),
                "{text:?}"
            );
        }
    }
});
