//! One frame header (RFC 6455 section 5.2), decoded from client bytes or
//! encoded for server frames.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-------+-+-------------+-------------------------------+
//! |F|R|R|R| opcode|M| Payload len |    Extended payload length    |
//! |I|S|S|S|  (4)  |A|     (7)     |             (16/64)           |
//! |N|V|V|V|       |S|             |   (if payload len==126/127)   |
//! | |1|2|3|       |K|             |                               |
//! +-+-+-+-+-------+-+-------------+ - - - - - - - - - - - - - - - +
//! ```

use crate::error::ProtocolError;

/// A frame's opcode (RFC 6455 section 5.2). Reserved opcodes are rejected
/// while decoding, so they have no variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpCode {
    /// 0x0: a continuation of a fragmented message.
    Continuation,
    /// 0x1: the first frame of a text message.
    Text,
    /// 0x2: the first frame of a binary message.
    Binary,
    /// 0x8: close.
    Close,
    /// 0x9: ping.
    Ping,
    /// 0xA: pong.
    Pong,
}

impl OpCode {
    /// The 4-bit value on the wire.
    pub fn bits(self) -> u8 {
        match self {
            OpCode::Continuation => 0x0,
            OpCode::Text => 0x1,
            OpCode::Binary => 0x2,
            OpCode::Close => 0x8,
            OpCode::Ping => 0x9,
            OpCode::Pong => 0xA,
        }
    }

    fn from_bits(bits: u8) -> Result<OpCode, ProtocolError> {
        Ok(match bits {
            0x0 => OpCode::Continuation,
            0x1 => OpCode::Text,
            0x2 => OpCode::Binary,
            0x8 => OpCode::Close,
            0x9 => OpCode::Ping,
            0xA => OpCode::Pong,
            // "If an unknown opcode is received, the receiving endpoint MUST
            // _Fail the WebSocket Connection_." (5.2)
            other => return Err(ProtocolError::ReservedOpCode(other)),
        })
    }

    /// Close, ping and pong (opcodes 0x8 and above).
    pub fn is_control(self) -> bool {
        matches!(self, OpCode::Close | OpCode::Ping | OpCode::Pong)
    }
}

/// A decoded frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// The FIN bit: this is the last frame of its message.
    pub fin: bool,
    /// RSV1: with permessage-deflate, the message is compressed. Whether
    /// it may be set is the connection's call (it knows what was agreed).
    pub rsv1: bool,
    /// The frame's opcode.
    pub opcode: OpCode,
    /// The masking key; client frames always have one.
    pub mask: Option<[u8; 4]>,
    /// The payload length.
    pub payload_len: u64,
}

/// The longest header: 2 bytes, 8 of extended length, 4 of mask.
pub const MAX_HEADER_LEN: usize = 14;

impl FrameHeader {
    /// Decodes a header from the start of `buf`.
    ///
    /// `Ok(None)` means more bytes are needed (nothing is consumed); otherwise
    /// the header and its length in bytes. The rules that need only the header
    /// are checked here: reserved bits (RSV2 and RSV3; RSV1 is reported in
    /// [`FrameHeader::rsv1`]), reserved opcodes, control frames, and minimal
    /// length encoding.
    pub fn decode(buf: &[u8]) -> Result<Option<(FrameHeader, usize)>, ProtocolError> {
        let (b0, b1) = match buf {
            [b0, b1, ..] => (*b0, *b1),
            _ => return Ok(None),
        };
        // "RSV1, RSV2, RSV3: MUST be 0 unless an extension is negotiated" (5.2)
        // (RSV1 belongs to permessage-deflate, judged by the connection.)
        if b0 & 0x30 != 0 {
            return Err(ProtocolError::NonZeroReservedBits);
        }
        let fin = b0 & 0x80 != 0;
        let rsv1 = b0 & 0x40 != 0;
        let opcode = OpCode::from_bits(b0 & 0x0F)?;
        let masked = b1 & 0x80 != 0;
        let len7 = b1 & 0x7F;
        if opcode.is_control() {
            // "All control frames MUST have a payload length of 125 bytes or
            // less and MUST NOT be fragmented." (5.5)
            if !fin {
                return Err(ProtocolError::FragmentedControlFrame);
            }
            if len7 > 125 {
                return Err(ProtocolError::ControlFrameTooBig);
            }
        }
        let (payload_len, mut pos) = match len7 {
            126 => {
                let Some(ext) = buf.get(2..4) else {
                    return Ok(None);
                };
                let len = u16::from_be_bytes([ext[0], ext[1]]) as u64;
                // "the minimal number of bytes MUST be used to encode the length" (5.2)
                if len < 126 {
                    return Err(ProtocolError::NonMinimalLength);
                }
                (len, 4)
            }
            127 => {
                let Some(ext) = buf.get(2..10) else {
                    return Ok(None);
                };
                let mut bytes = [0u8; 8];
                bytes.copy_from_slice(ext);
                let len = u64::from_be_bytes(bytes);
                // "the most significant bit MUST be 0" (5.2)
                if len >> 63 != 0 {
                    return Err(ProtocolError::LengthMsbSet);
                }
                if len <= 0xFFFF {
                    return Err(ProtocolError::NonMinimalLength);
                }
                (len, 10)
            }
            n => (n as u64, 2),
        };
        let mask = if masked {
            let Some(key) = buf.get(pos..pos + 4) else {
                return Ok(None);
            };
            pos += 4;
            Some([key[0], key[1], key[2], key[3]])
        } else {
            None
        };
        Ok(Some((
            FrameHeader {
                fin,
                rsv1,
                opcode,
                mask,
                payload_len,
            },
            pos,
        )))
    }

    /// Appends this header to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let b0 = (self.fin as u8) << 7 | (self.rsv1 as u8) << 6 | self.opcode.bits();
        let mask_bit = if self.mask.is_some() { 0x80 } else { 0 };
        match self.payload_len {
            n @ 0..=125 => out.extend_from_slice(&[b0, mask_bit | n as u8]),
            n @ 126..=0xFFFF => {
                out.extend_from_slice(&[b0, mask_bit | 126]);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                out.extend_from_slice(&[b0, mask_bit | 127]);
                out.extend_from_slice(&n.to_be_bytes());
            }
        }
        if let Some(key) = self.mask {
            out.extend_from_slice(&key);
        }
    }
}

/// Appends one whole, unmasked server frame (FIN set) to `out`.
pub fn encode_frame(out: &mut Vec<u8>, opcode: OpCode, payload: &[u8]) {
    out.reserve(MAX_HEADER_LEN + payload.len());
    FrameHeader {
        fin: true,
        rsv1: false,
        opcode,
        mask: None,
        payload_len: payload.len() as u64,
    }
    .encode(out);
    out.extend_from_slice(payload);
}

/// Appends one whole server frame whose payload is a compressed message
/// (RSV1 set, RFC 7692 section 6) to `out`.
pub fn encode_compressed(out: &mut Vec<u8>, opcode: OpCode, payload: &[u8]) {
    out.reserve(MAX_HEADER_LEN + payload.len());
    FrameHeader {
        fin: true,
        rsv1: true,
        opcode,
        mask: None,
        payload_len: payload.len() as u64,
    }
    .encode(out);
    out.extend_from_slice(payload);
}

/// Appends a close frame with `code` and `reason` to `out`. The reason is cut
/// (on a character boundary) so the payload fits a control frame's 125 bytes.
pub fn encode_close(out: &mut Vec<u8>, code: u16, reason: &str) {
    let mut cut = reason.len().min(123);
    while !reason.is_char_boundary(cut) {
        cut -= 1;
    }
    let reason = &reason.as_bytes()[..cut];
    FrameHeader {
        fin: true,
        rsv1: false,
        opcode: OpCode::Close,
        mask: None,
        payload_len: 2 + reason.len() as u64,
    }
    .encode(out);
    out.extend_from_slice(&code.to_be_bytes());
    out.extend_from_slice(reason);
}

/// Appends one masked frame, as a client sends it (for clients, tests,
/// benches and fuzzing; the server itself never masks).
pub fn encode_masked(out: &mut Vec<u8>, fin: bool, opcode: OpCode, payload: &[u8], key: [u8; 4]) {
    out.reserve(MAX_HEADER_LEN + payload.len());
    FrameHeader {
        fin,
        rsv1: false,
        opcode,
        mask: Some(key),
        payload_len: payload.len() as u64,
    }
    .encode(out);
    let start = out.len();
    out.extend_from_slice(payload);
    crate::mask::apply_mask(&mut out[start..], key, 0);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_5_7_unmasked_hello() {
        let mut out = Vec::new();
        encode_frame(&mut out, OpCode::Text, b"Hello");
        assert_eq!(out, [0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]);
    }

    #[test]
    fn rfc_5_7_masked_hello_header() {
        let bytes = [
            0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
        ];
        let (h, n) = FrameHeader::decode(&bytes).unwrap().unwrap();
        assert_eq!(n, 6);
        assert_eq!(
            h,
            FrameHeader {
                fin: true,
                rsv1: false,
                opcode: OpCode::Text,
                mask: Some([0x37, 0xfa, 0x21, 0x3d]),
                payload_len: 5
            }
        );
        let mut out = Vec::new();
        encode_masked(
            &mut out,
            true,
            OpCode::Text,
            b"Hello",
            [0x37, 0xfa, 0x21, 0x3d],
        );
        assert_eq!(out, bytes);
    }

    #[test]
    fn rfc_5_7_lengths() {
        // 256 bytes binary message in a single unmasked frame: 0x82 0x7E 0x0100
        let mut out = Vec::new();
        encode_frame(&mut out, OpCode::Binary, &[0; 256]);
        assert_eq!(&out[..4], &[0x82, 0x7e, 0x01, 0x00]);
        // 64KiB: 0x82 0x7F 0x0000000000010000
        let mut out = Vec::new();
        encode_frame(&mut out, OpCode::Binary, &[0; 65536]);
        assert_eq!(&out[..10], &[0x82, 0x7f, 0, 0, 0, 0, 0, 1, 0, 0]);
        for frame in [&out[..], &[0x82, 0x7e, 0x01, 0x00][..]] {
            let (h, _) = FrameHeader::decode(frame).unwrap().unwrap();
            assert!(h.payload_len == 65536 || h.payload_len == 256);
        }
    }

    #[test]
    fn every_prefix_is_incomplete() {
        for len in [0usize, 5, 125, 126, 65535, 65536] {
            let mut out = Vec::new();
            encode_masked(&mut out, true, OpCode::Binary, &vec![7; len], [1, 2, 3, 4]);
            let header_len = out.len() - len;
            for cut in 0..header_len {
                assert_eq!(
                    FrameHeader::decode(&out[..cut]),
                    Ok(None),
                    "len {len} cut {cut}"
                );
            }
            assert_eq!(FrameHeader::decode(&out).unwrap().unwrap().1, header_len);
        }
    }

    #[test]
    fn header_rules() {
        let cases: &[(&[u8], ProtocolError)] = &[
            (&[0xa1, 0x80], ProtocolError::NonZeroReservedBits),
            (&[0x91, 0x80], ProtocolError::NonZeroReservedBits),
            (&[0x83, 0x80], ProtocolError::ReservedOpCode(3)),
            (&[0x87, 0x80], ProtocolError::ReservedOpCode(7)),
            (&[0x8b, 0x80], ProtocolError::ReservedOpCode(0xb)),
            (&[0x8f, 0x80], ProtocolError::ReservedOpCode(0xf)),
            (&[0x09, 0x80], ProtocolError::FragmentedControlFrame),
            (&[0x88, 0xfe, 0, 126], ProtocolError::ControlFrameTooBig),
            (&[0x89, 0xfe], ProtocolError::ControlFrameTooBig),
            (&[0x82, 0xfe, 0, 125], ProtocolError::NonMinimalLength),
            (
                &[0x82, 0xff, 0, 0, 0, 0, 0, 0, 0xff, 0xff],
                ProtocolError::NonMinimalLength,
            ),
            (
                &[0x82, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 0],
                ProtocolError::LengthMsbSet,
            ),
        ];
        for (bytes, err) in cases {
            assert_eq!(FrameHeader::decode(bytes), Err(err.clone()), "{bytes:x?}");
            assert_eq!(err.close_code(), 1002);
        }
    }

    #[test]
    fn rsv1_is_reported_not_refused() {
        let (h, _) = FrameHeader::decode(&[0xc1, 0x80, 1, 2, 3, 4])
            .unwrap()
            .unwrap();
        assert!(h.rsv1 && h.fin && h.opcode == OpCode::Text);
        let mut out = Vec::new();
        encode_compressed(&mut out, OpCode::Binary, b"z");
        assert_eq!(out, [0xc2, 1, b'z']);
    }

    #[test]
    fn close_reason_is_cut_to_fit_a_control_frame() {
        let mut out = Vec::new();
        encode_close(&mut out, 1000, &"é".repeat(100));
        let (h, n) = FrameHeader::decode(&out).unwrap().unwrap();
        assert!(h.payload_len <= 125);
        assert!(std::str::from_utf8(&out[n + 2..]).is_ok());
    }

    /// A compressed message of any size: RSV1 and FIN set, the payload as given, with the
    /// length forms of RFC 6455 5.2 (7 bits, 16 bits, 64 bits).
    #[test]
    fn compressed_frames_of_every_length_form() {
        for len in [0usize, 5, 125, 126, 300, 65_535, 65_536] {
            let payload = vec![7u8; len];
            let mut out = Vec::new();
            encode_compressed(&mut out, OpCode::Binary, &payload);
            let (h, n) = FrameHeader::decode(&out).unwrap().unwrap();
            assert!(h.fin && h.rsv1, "{len}");
            assert_eq!((h.opcode, h.payload_len), (OpCode::Binary, len as u64));
            assert_eq!(out.len(), n + len);
            assert_eq!(&out[n..], &payload[..]);
            assert_eq!(out[0], 0xc2);
        }
    }
}
