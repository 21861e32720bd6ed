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
//! router frame (Rc) --shared()--> compressed once per frame and window size
//!                                 (the last few frames, keyed by the Rc)
//!                                 --> every deflate client
//! echo / own message --push_message()--> compressed into the client's queue
//! RSV1 message --inflate()--> at most max_buffer_size bytes, in a buffer
//!                             reused by every connection
//! ```
//!
//! Messages under `compression_min_size`, and messages that would not get
//! smaller, go out uncompressed (RSV1 is per message).
//!
//! A fan-out compresses at most once per window size among its recipients
//! (at most [`WINDOWS`]), in whatever order their window sizes come: the
//! compressed form is remembered per frame and window size. The last
//! `REMEMBERED` frames are remembered, because a channel with subscribers
//! of both dialects gets two frames in the order of its subscribers (Rakit,
//! Pusher, Rakit, ...): remembering only the last one compressed again for
//! every subscriber.

use std::rc::Rc;

use rakit_protocol::deflate::{Deflater, Inflater, Params, WINDOWS};
use rakit_protocol::{encode_compressed, FrameHeader, OpCode, ProtocolError};

use crate::buffer::SendQueue;
use crate::router::Frame;

/// A buffer this large or larger is freed after use rather than kept for the
/// next message: one large message must not pin its memory for good.
const KEEP: usize = 256 * 1024;

/// Router frames whose compressed forms are remembered: the frames of one
/// fan-out (one per dialect), with room to spare.
const REMEMBERED: usize = 4;

/// A router frame and what deflate clients get for it, per window size (the
/// frame itself when compressing did not pay). The frame is held, so that
/// its address is not reused while it is the key.
#[derive(Debug)]
struct Remembered {
    frame: Frame,
    by_window: [Option<Frame>; WINDOWS],
}

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
    /// The last router frames compressed, replaced oldest first.
    recent: [Option<Remembered>; REMEMBERED],
    /// Where the next frame goes in `recent`.
    next: usize,
    /// Messages run through the compressor (`rakit_compressions_total`).
    runs: u64,
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
            recent: Default::default(),
            next: 0,
            runs: 0,
        }
    }

    /// Messages compressed so far (each run of the compressor, also one
    /// that did not pay).
    pub fn runs(&self) -> u64 {
        self.runs
    }

    /// Compresses `payload` into the scratch buffer if that pays: true if it
    /// holds a shorter RSV1 payload.
    fn compress(&mut self, params: &Params, payload: &[u8]) -> bool {
        if payload.len() < self.min_size.max(1) {
            return false;
        }
        self.scratch.clear();
        self.runs += 1;
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
    /// `frame`: compressed once per window size, and the same bytes for
    /// every client of that window size, while the frame is among the last
    /// `REMEMBERED` ones.
    pub fn shared(&mut self, frame: &Frame, params: &Params) -> Frame {
        let window = params.window_index();
        let found = self
            .recent
            .iter()
            .position(|r| r.as_ref().is_some_and(|r| Rc::ptr_eq(&r.frame, frame)));
        if let Some(out) = found.and_then(|i| self.recent[i].as_ref()?.by_window[window].clone()) {
            return out;
        }
        let out = self
            .compress_frame(frame, params)
            .unwrap_or_else(|| Rc::clone(frame));
        let i = found.unwrap_or_else(|| {
            let i = self.next;
            self.next = (i + 1) % REMEMBERED;
            self.recent[i] = Some(Remembered {
                frame: Rc::clone(frame),
                by_window: Default::default(),
            });
            i
        });
        if let Some(r) = &mut self.recent[i] {
            r.by_window[window] = Some(Rc::clone(&out));
        }
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

    fn bits(server_max_window_bits: u8) -> Params {
        Params {
            server_max_window_bits,
            server_bits_requested: true,
        }
    }

    #[test]
    fn a_frame_is_compressed_once_per_window_size_in_any_order() {
        let mut c = Compression::new(1, 16);
        let message = "{\"type\":\"message\",\"message\":\"hi\"} ".repeat(20);
        let f = frame(message.as_bytes());
        // Alternating windows; 8 is compressed with 9 bits, so it shares 9's bytes.
        let outs: Vec<Frame> = [9, 10, 9, 10, 8, 15, 9]
            .into_iter()
            .map(|b| c.shared(&f, &bits(b)))
            .collect();
        assert_eq!(c.runs(), 3, "9, 10 and 15 bits");
        assert!(Rc::ptr_eq(&outs[0], &outs[2]) && Rc::ptr_eq(&outs[0], &outs[4]));
        assert!(Rc::ptr_eq(&outs[1], &outs[3]));
        for out in &outs {
            let (_, n) = FrameHeader::decode(out).unwrap().unwrap();
            assert_eq!(
                c.inflate(&out[n..], true, 1 << 20).unwrap(),
                message.as_bytes()
            );
        }
    }

    #[test]
    fn frames_sent_in_alternation_are_compressed_once_each() {
        let mut c = Compression::new(1, 16);
        let a = frame("{\"a\":\"rakit dialect\"} ".repeat(20).as_bytes());
        let b = frame("{\"b\":\"pusher dialect\"} ".repeat(20).as_bytes());
        for _ in 0..10 {
            c.shared(&a, &params());
            c.shared(&b, &params());
        }
        assert_eq!(c.runs(), 2);
        // More frames than remembered: the oldest is forgotten.
        for i in 0..REMEMBERED {
            c.shared(&frame(format!("{i:>300}").as_bytes()), &params());
        }
        c.shared(&a, &params());
        assert_eq!(c.runs(), 2 + REMEMBERED as u64 + 1);
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
