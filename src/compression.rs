//! permessage-deflate in the daemon: one shared compressor and one shared
//! inflater for every connection (SPEC section 12).
//!
//! The protocol crate negotiates (always agreeing `server_no_context_takeover`
//! and `client_no_context_takeover`), checks RSV1, and hands compressed
//! messages out whole; this module does the work with contexts shared by all
//! connections, so a connection that agreed compression costs nothing more
//! than one that did not (2 bytes of its protocol state).
//!
//! ```text
//! router frame (Rc) --shared()--> compressed once per frame (one-entry cache
//!                                 keyed by the Rc) --> every deflate client
//! echo / own message --push_message()--> compressed into the client's queue
//! RSV1 message --inflate()--> at most max_buffer_size bytes, in a buffer
//!                             reused by every connection
//! ```
//!
//! Messages under `compression_min_size`, and messages that would not get
//! smaller, go out uncompressed (RSV1 is per message).

use std::rc::Rc;

use rakit_protocol::deflate::{Deflater, Inflater, Params};
use rakit_protocol::{encode_compressed, FrameHeader, OpCode, ProtocolError};

use crate::buffer::SendQueue;
use crate::router::Frame;

/// A buffer this large or larger is freed after use rather than kept for the
/// next message: one large message must not pin its memory for good.
const KEEP: usize = 256 * 1024;

/// The shared compression state of the event loop.
#[derive(Debug)]
pub struct Compression {
    min_size: usize,
    deflater: Deflater,
    /// Made on first use.
    inflater: Option<Inflater>,
    /// Compressed payloads being built.
    scratch: Vec<u8>,
    /// The message last inflated.
    inflated: Vec<u8>,
    /// The last router frame compressed: the frame itself (held, so that its
    /// address is not reused while it is the key), the window it was
    /// compressed for, and what deflate clients get (the frame itself when
    /// compressing did not pay).
    last: Option<(Frame, u8, Frame)>,
}

impl Compression {
    /// Compression at zlib `level`, skipping messages under `min_size` bytes.
    pub fn new(level: u32, min_size: usize) -> Compression {
        Compression {
            min_size,
            deflater: Deflater::new(level),
            inflater: None,
            scratch: Vec::new(),
            inflated: Vec::new(),
            last: None,
        }
    }

    /// Compresses `payload` into the scratch buffer if that pays: true if it
    /// holds a shorter RSV1 payload.
    fn compress(&mut self, params: &Params, payload: &[u8]) -> bool {
        if payload.len() < self.min_size.max(1) {
            return false;
        }
        self.scratch.clear();
        self.deflater.compress(params, payload, &mut self.scratch);
        self.scratch.len() < payload.len()
    }

    fn trim(buf: &mut Vec<u8>) {
        if buf.capacity() >= KEEP {
            *buf = Vec::new();
        }
    }

    /// Queues one message of the connection's own (an echo) on `outq`:
    /// compressed if the client agreed to `params` and it pays.
    pub fn push_message(
        &mut self,
        outq: &mut SendQueue,
        params: Option<&Params>,
        opcode: OpCode,
        payload: &[u8],
    ) {
        match params {
            Some(p) if self.compress(p, payload) => {
                outq.push_compressed(opcode, &self.scratch);
                Self::trim(&mut self.scratch);
            }
            _ => outq.push_frame(opcode, payload),
        }
    }

    /// [`Compression::push_message`] for the message last inflated.
    pub fn push_inflated(&mut self, outq: &mut SendQueue, params: Option<&Params>, opcode: OpCode) {
        let message = std::mem::take(&mut self.inflated);
        self.push_message(outq, params, opcode, &message);
        self.inflated = message;
        Self::trim(&mut self.inflated);
    }

    /// The frame a client that agreed `params` gets for the router's
    /// `frame`: compressed once, and the same bytes for every such client
    /// of the same window size, as long as the router sends the same frame.
    pub fn shared(&mut self, frame: &Frame, params: &Params) -> Frame {
        let bits = params.compress_bits();
        if let Some((key, b, out)) = &self.last {
            if *b == bits && Rc::ptr_eq(key, frame) {
                return Rc::clone(out);
            }
        }
        let out = self
            .compress_frame(frame, params)
            .unwrap_or_else(|| Rc::clone(frame));
        self.last = Some((Rc::clone(frame), bits, Rc::clone(&out)));
        out
    }

    fn compress_frame(&mut self, frame: &[u8], params: &Params) -> Option<Frame> {
        let (header, len) = FrameHeader::decode(frame).ok()??;
        let payload = frame.get(len..)?;
        let whole_message = header.fin
            && !header.rsv1
            && header.mask.is_none()
            && matches!(header.opcode, OpCode::Text | OpCode::Binary)
            && payload.len() as u64 == header.payload_len;
        if !whole_message || !self.compress(params, payload) {
            return None;
        }
        let mut out = Vec::with_capacity(self.scratch.len() + 14);
        encode_compressed(&mut out, header.opcode, &self.scratch);
        Self::trim(&mut self.scratch);
        Some(Rc::from(out))
    }

    /// Inflates a compressed message (at most `max` bytes; a text message
    /// must be UTF-8) and returns it.
    pub fn inflate(
        &mut self,
        payload: &[u8],
        text: bool,
        max: usize,
    ) -> Result<&[u8], ProtocolError> {
        let inflater = self.inflater.get_or_insert_with(Inflater::default);
        let result = inflater.inflate(payload, max, &mut self.inflated);
        if result.is_err() {
            self.inflated = Vec::new();
        }
        result?;
        if text && rakit_protocol::utf8::whole(&self.inflated).is_none() {
            return Err(ProtocolError::InvalidUtf8);
        }
        Ok(&self.inflated)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params() -> Params {
        Params {
            server_max_window_bits: 15,
            server_bits_requested: false,
        }
    }

    fn frame(payload: &[u8]) -> Frame {
        let mut out = Vec::new();
        rakit_protocol::encode_frame(&mut out, OpCode::Text, payload);
        Rc::from(out)
    }

    #[test]
    fn a_shared_frame_is_compressed_once() {
        let mut c = Compression::new(1, 16);
        let message = "{\"event\":\"message\",\"data\":\"hello\"} ".repeat(20);
        let f = frame(message.as_bytes());
        let a = c.shared(&f, &params());
        let b = c.shared(&f, &params());
        assert!(Rc::ptr_eq(&a, &b), "the same bytes for every client");
        assert_eq!(a[0], 0xc1, "FIN, RSV1, text");
        assert!(a.len() < f.len() / 4);
        let (h, n) = FrameHeader::decode(&a).unwrap().unwrap();
        let inflated = c.inflate(&a[n..], true, 1 << 20).unwrap();
        assert!(h.rsv1);
        assert_eq!(inflated, message.as_bytes());
        // Another frame with the same bytes is a new key.
        let g = frame(message.as_bytes());
        assert!(!Rc::ptr_eq(&c.shared(&g, &params()), &a));
    }

    #[test]
    fn small_and_incompressible_messages_go_out_plain() {
        let mut c = Compression::new(1, 256);
        let small = frame(&[b'a'; 255]);
        assert!(Rc::ptr_eq(&c.shared(&small, &params()), &small));
        let mut x = 7u32;
        let noise: Vec<u8> = (0..1000)
            .map(|_| {
                x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                (x >> 16) as u8
            })
            .collect();
        let mut out = Vec::new();
        rakit_protocol::encode_frame(&mut out, OpCode::Binary, &noise);
        let noisy: Frame = Rc::from(out);
        assert!(Rc::ptr_eq(&c.shared(&noisy, &params()), &noisy));
        let mut q = SendQueue::default();
        c.push_message(&mut q, Some(&params()), OpCode::Text, &[b'a'; 100]);
        assert_eq!(q.len(), 102, "under min_size: a plain frame");
        let mut q = SendQueue::default();
        c.push_message(&mut q, Some(&params()), OpCode::Text, &[b'a'; 1000]);
        assert!(q.len() < 100, "compressed: {}", q.len());
    }

    #[test]
    fn inflated_text_must_be_utf8() {
        let mut c = Compression::new(1, 0);
        let mut wire = Vec::new();
        Deflater::new(1).compress(&params(), b"\xff\xfe", &mut wire);
        assert_eq!(
            c.inflate(&wire, true, 100).unwrap_err(),
            ProtocolError::InvalidUtf8
        );
        assert_eq!(c.inflate(&wire, false, 100).unwrap(), b"\xff\xfe");
        assert_eq!(c.inflate(&wire, false, 1).unwrap_err().close_code(), 1009);
    }
}
