//! One connection's queue of bytes to send.
//!
//! Fan-out frames are shared (`Rc<[u8]>`): a message to N clients is encoded
//! once and queued N times by reference. The connection's own small writes
//! (handshake response, pongs, close frames, echoes) are appended to an
//! owned tail chunk, so many of them cost one allocation. A flush hands the
//! kernel up to [`MAX_IOVECS`] chunks in one `writev`.

use std::collections::VecDeque;
use std::io::{self, IoSlice, Write};
use std::rc::Rc;

use rakit_protocol::{encode_frame, OpCode};

/// The most chunks one `writev` takes.
pub const MAX_IOVECS: usize = 64;

#[derive(Debug)]
enum Chunk {
    Shared(Rc<[u8]>),
    Owned(Vec<u8>),
}

impl Chunk {
    fn bytes(&self) -> &[u8] {
        match self {
            Chunk::Shared(b) => b,
            Chunk::Owned(v) => v,
        }
    }
}

/// Bytes waiting to be written to one socket.
#[derive(Debug, Default)]
pub struct SendQueue {
    chunks: VecDeque<Chunk>,
    /// Bytes of the front chunk already written.
    offset: usize,
    /// Bytes queued and not yet written.
    queued: usize,
}

impl SendQueue {
    /// Bytes waiting.
    pub fn len(&self) -> usize {
        self.queued
    }

    /// Nothing waiting?
    pub fn is_empty(&self) -> bool {
        self.queued == 0
    }

    /// Has the front chunk been partly written (so the stream is mid-frame)?
    pub fn mid_frame(&self) -> bool {
        self.offset > 0
    }

    /// Queues a shared frame.
    pub fn push_shared(&mut self, frame: &Rc<[u8]>) {
        if frame.is_empty() {
            return;
        }
        self.queued += frame.len();
        self.chunks.push_back(Chunk::Shared(Rc::clone(frame)));
    }

    fn tail(&mut self) -> &mut Vec<u8> {
        // A tail still being written is never appended to: the write offset
        // refers to it, but appending is safe, since bytes go only at its end.
        if !matches!(self.chunks.back(), Some(Chunk::Owned(_))) {
            self.chunks.push_back(Chunk::Owned(Vec::new()));
        }
        match self.chunks.back_mut() {
            Some(Chunk::Owned(v)) => v,
            _ => unreachable!("an owned tail was just ensured"),
        }
    }

    /// Queues a copy of `bytes`.
    pub fn push_bytes(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        self.tail().extend_from_slice(bytes);
        self.queued += bytes.len();
    }

    /// Encodes a server frame straight into the queue.
    pub fn push_frame(&mut self, opcode: OpCode, payload: &[u8]) {
        let tail = self.tail();
        let before = tail.len();
        encode_frame(tail, opcode, payload);
        let added = tail.len() - before;
        self.queued += added;
    }

    /// Drops everything queued.
    pub fn clear(&mut self) {
        self.chunks = VecDeque::new();
        self.offset = 0;
        self.queued = 0;
    }

    /// The unwritten rest of the front chunk (to finish a frame cut short).
    pub fn front_rest(&self) -> &[u8] {
        self.chunks
            .front()
            .and_then(|c| c.bytes().get(self.offset..))
            .unwrap_or_default()
    }

    /// Writes as much as the socket takes. `Ok(true)`: all written;
    /// `Ok(false)`: the socket is full (`WouldBlock`).
    pub fn flush(&mut self, sink: &mut impl Write) -> io::Result<bool> {
        while !self.chunks.is_empty() {
            let mut slices = [IoSlice::new(&[]); MAX_IOVECS];
            let mut count = 0;
            for (i, chunk) in self.chunks.iter().take(MAX_IOVECS).enumerate() {
                let bytes = chunk.bytes();
                slices[count] = IoSlice::new(if i == 0 { &bytes[self.offset..] } else { bytes });
                count += 1;
            }
            let written = match sink.write_vectored(&slices[..count]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            self.advance(written);
        }
        // Give back the memory of a burst: an idle connection holds nothing.
        self.chunks = VecDeque::new();
        Ok(true)
    }

    fn advance(&mut self, mut n: usize) {
        self.queued -= n;
        while n > 0 {
            let Some(front) = self.chunks.front() else {
                break;
            };
            let rest = front.bytes().len() - self.offset;
            if n < rest {
                self.offset += n;
                return;
            }
            n -= rest;
            self.offset = 0;
            self.chunks.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sink that takes at most `limit` bytes per call, then blocks.
    struct Sink {
        got: Vec<u8>,
        per_call: usize,
        calls_left: usize,
    }

    impl Write for Sink {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if self.calls_left == 0 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            self.calls_left -= 1;
            let n = buf.len().min(self.per_call);
            self.got.extend_from_slice(&buf[..n]);
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn partial_writes_resume_where_they_stopped() {
        let mut q = SendQueue::default();
        let shared: Rc<[u8]> = Rc::from(&b"shared-frame"[..]);
        q.push_bytes(b"abc");
        q.push_shared(&shared);
        q.push_bytes(b"def");
        q.push_bytes(b"ghi");
        assert_eq!(q.len(), 3 + 12 + 6);
        let mut sink = Sink {
            got: Vec::new(),
            per_call: 5,
            calls_left: 2,
        };
        // Write's default write_vectored takes one slice a call: "abc", then "share".
        assert!(!q.flush(&mut sink).unwrap());
        assert_eq!(q.len(), 13);
        assert!(q.mid_frame());
        assert_eq!(q.front_rest(), b"d-frame");
        sink.calls_left = 100;
        assert!(q.flush(&mut sink).unwrap());
        assert_eq!(sink.got, b"abcshared-framedefghi");
        assert!(q.is_empty() && !q.mid_frame());
    }

    #[test]
    fn frames_are_encoded_in_place() {
        let mut q = SendQueue::default();
        q.push_frame(OpCode::Text, b"hi");
        assert_eq!(q.len(), 4);
        let mut sink = Sink {
            got: Vec::new(),
            per_call: 100,
            calls_left: 1,
        };
        assert!(q.flush(&mut sink).unwrap());
        assert_eq!(sink.got, [0x81, 2, b'h', b'i']);
    }

    #[test]
    fn clear_discards() {
        let mut q = SendQueue::default();
        q.push_bytes(b"abc");
        q.clear();
        assert!(q.is_empty());
        assert_eq!(q.front_rest(), b"");
    }
}
