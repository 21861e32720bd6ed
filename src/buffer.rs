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

use rakit_protocol::{encode_compressed, encode_frame, FrameHeader, OpCode};

/// The most chunks one `writev` takes (Linux's `IOV_MAX`). A fan-out burst
/// queues hundreds of small shared frames per connection; fewer, larger
/// writes cost fewer syscalls, segments and wake-ups of the reader.
pub const MAX_IOVECS: usize = 1024;

/// Small writes share an owned chunk until it holds this many bytes; then a
/// new one starts, so memory is given back as the front chunks are written.
const OWNED_CHUNK: usize = 16 * 1024;

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
///
/// An empty queue is two words and holds no memory: the chunks and their
/// counters live in a box that exists only while bytes wait, so ten thousand
/// idle connections hold no queue memory and their `Conn`s stay small. A
/// queue holding one whole shared frame (a fan-out turn's one message for
/// each recipient, e.g. a presence update to every client) keeps it inline
/// and allocates nothing: without that, a message to every idle client
/// allocated a box and a chunk ring per client, and the allocator kept that
/// peak as resident memory after the queues were freed.
#[derive(Debug, Default)]
pub struct SendQueue {
    inner: Queue,
}

#[derive(Debug)]
enum Queue {
    /// One shared frame, nothing of it written.
    One(Rc<[u8]>),
    /// Nothing (`None`), or chunks.
    Many(Option<Box<Inner>>),
}

impl Default for Queue {
    fn default() -> Queue {
        Queue::Many(None)
    }
}

#[derive(Debug, Default)]
struct Inner {
    chunks: VecDeque<Chunk>,
    /// Bytes of the front chunk already written.
    offset: usize,
    /// Bytes queued and not yet written.
    queued: usize,
}

impl SendQueue {
    /// Bytes waiting.
    pub fn len(&self) -> usize {
        match &self.inner {
            Queue::One(frame) => frame.len(),
            Queue::Many(inner) => inner.as_ref().map_or(0, |i| i.queued),
        }
    }

    /// Nothing waiting?
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The chunks, made room for (a frame held inline becomes the first).
    fn inner(&mut self) -> &mut Inner {
        if let Queue::One(frame) = &self.inner {
            let mut inner = Box::<Inner>::default();
            inner.queued = frame.len();
            inner.chunks.push_back(Chunk::Shared(Rc::clone(frame)));
            self.inner = Queue::Many(Some(inner));
        }
        match &mut self.inner {
            Queue::Many(inner) => inner.get_or_insert_with(Box::default),
            Queue::One(_) => unreachable!("a frame held inline was just moved to the chunks"),
        }
    }

    /// Queues a shared frame.
    pub fn push_shared(&mut self, frame: &Rc<[u8]>) {
        if frame.is_empty() {
            return;
        }
        if let Queue::Many(None) = self.inner {
            self.inner = Queue::One(Rc::clone(frame));
            return;
        }
        let inner = self.inner();
        inner.queued += frame.len();
        inner.chunks.push_back(Chunk::Shared(Rc::clone(frame)));
    }

    /// Queues a copy of `bytes`.
    pub fn push_bytes(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        let inner = self.inner();
        inner.tail().extend_from_slice(bytes);
        inner.queued += bytes.len();
    }

    /// Encodes a server frame straight into the queue.
    pub fn push_frame(&mut self, opcode: OpCode, payload: &[u8]) {
        let inner = self.inner();
        let tail = inner.tail();
        let before = tail.len();
        encode_frame(tail, opcode, payload);
        let added = tail.len() - before;
        inner.queued += added;
    }

    /// Encodes a server frame holding a compressed message (RSV1) straight
    /// into the queue.
    pub fn push_compressed(&mut self, opcode: OpCode, payload: &[u8]) {
        let inner = self.inner();
        let tail = inner.tail();
        let before = tail.len();
        encode_compressed(tail, opcode, payload);
        let added = tail.len() - before;
        inner.queued += added;
    }

    /// Drops everything queued.
    pub fn clear(&mut self) {
        self.inner = Queue::default();
    }

    /// The unwritten rest of a frame the socket took only part of (empty
    /// when the stream is between frames): what must still be sent before
    /// another frame can be, and nothing more. A shared chunk is one frame;
    /// an owned chunk holds several (after the HTTP response, on a new
    /// connection), so its frame boundaries are found by decoding headers.
    pub fn rest_of_frame(&self) -> &[u8] {
        // A frame held inline has nothing of it written.
        let Queue::Many(inner) = &self.inner else {
            return &[];
        };
        let Some((chunk, offset)) = inner
            .as_ref()
            .and_then(|i| i.chunks.front().map(|c| (c, i.offset)))
        else {
            return &[];
        };
        let bytes = chunk.bytes();
        if offset == 0 {
            return &[];
        }
        let Chunk::Owned(_) = chunk else {
            return &bytes[offset..];
        };
        let mut pos = 0;
        if bytes.starts_with(b"HTTP/") {
            pos = bytes
                .windows(4)
                .position(|w| w == b"\r\n\r\n")
                .map_or(bytes.len(), |p| p + 4);
        }
        while pos <= offset {
            let Ok(Some((header, len))) = FrameHeader::decode(&bytes[pos..]) else {
                break;
            };
            pos = pos
                .saturating_add(len)
                .saturating_add(header.payload_len as usize)
                .min(bytes.len());
        }
        bytes.get(offset..pos.max(offset)).unwrap_or_default()
    }

    /// Writes as much as the socket takes. `Ok(true)`: all written;
    /// `Ok(false)`: the socket is full (`WouldBlock`).
    pub fn flush(&mut self, sink: &mut impl Write) -> io::Result<bool> {
        if let Queue::One(frame) = &self.inner {
            match write_once(sink, frame)? {
                Some(n) if n == frame.len() => {
                    self.inner = Queue::default();
                    return Ok(true);
                }
                // The rest waits in the chunks, like any partly written frame.
                Some(n) => self.inner().advance(n),
                None => return Ok(false),
            }
        }
        let Queue::Many(Some(inner)) = &mut self.inner else {
            return Ok(true);
        };
        if !inner.flush(sink)? {
            return Ok(false);
        }
        // Give back the memory of a burst: an idle connection holds nothing.
        self.inner = Queue::default();
        Ok(true)
    }
}

/// One `write` of `bytes`: how many it took, or `None` if the socket is full.
fn write_once(sink: &mut impl Write, bytes: &[u8]) -> io::Result<Option<usize>> {
    loop {
        return match sink.write(bytes) {
            Ok(0) => Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => Ok(Some(n)),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => Err(e),
        };
    }
}

impl Inner {
    /// The owned chunk that small writes are appended to, started afresh
    /// when the last chunk is shared, is the front chunk already partly
    /// written, or is full. Appending to a chunk being written would keep
    /// every byte ever queued alive for as long as the queue never drains
    /// (chunks are freed whole), and a steadily lagging reader would grow
    /// it without bound.
    fn tail(&mut self) -> &mut Vec<u8> {
        let reusable = match self.chunks.back() {
            Some(Chunk::Owned(v)) => {
                v.len() < OWNED_CHUNK && !(self.chunks.len() == 1 && self.offset > 0)
            }
            _ => false,
        };
        if !reusable {
            self.chunks.push_back(Chunk::Owned(Vec::new()));
        }
        match self.chunks.back_mut() {
            Some(Chunk::Owned(v)) => v,
            _ => unreachable!("an owned tail was just ensured"),
        }
    }

    fn flush(&mut self, sink: &mut impl Write) -> io::Result<bool> {
        while !self.chunks.is_empty() {
            let offset = self.offset;
            let result = if self.chunks.len() == 1 {
                // One chunk (the common echo or reply case): a plain write.
                sink.write(&self.chunks[0].bytes()[offset..])
            } else {
                let slices: Vec<IoSlice<'_>> = self
                    .chunks
                    .iter()
                    .take(MAX_IOVECS)
                    .enumerate()
                    .map(|(i, chunk)| {
                        let bytes = chunk.bytes();
                        IoSlice::new(if i == 0 { &bytes[offset..] } else { bytes })
                    })
                    .collect();
                sink.write_vectored(&slices)
            };
            let written = match result {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            self.advance(written);
        }
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
        assert_eq!(q.rest_of_frame(), b"d-frame");
        sink.calls_left = 100;
        assert!(q.flush(&mut sink).unwrap());
        assert_eq!(sink.got, b"abcshared-framedefghi");
        assert!(q.is_empty() && q.rest_of_frame().is_empty());
        assert!(
            matches!(q.inner, Queue::Many(None)),
            "a flushed queue holds no memory"
        );
    }

    #[test]
    fn rest_of_frame_stops_at_the_frame_boundary() {
        let mut q = SendQueue::default();
        q.push_bytes(b"HTTP/1.1 101 Switching Protocols\r\n\r\n");
        q.push_frame(OpCode::Text, b"first");
        q.push_frame(OpCode::Text, b"second");
        assert_eq!(q.rest_of_frame(), b"", "nothing written yet");
        // The socket took the response and 3 bytes of the first frame.
        let mut sink = Sink {
            got: Vec::new(),
            per_call: 36 + 3,
            calls_left: 1,
        };
        assert!(!q.flush(&mut sink).unwrap());
        assert_eq!(q.rest_of_frame(), b"irst", "the first frame's rest only");
        // Mid-response (a refused handshake cut short): the response's rest.
        let mut q = SendQueue::default();
        q.push_bytes(b"HTTP/1.1 101 OK\r\n\r\n");
        q.push_frame(OpCode::Text, b"x");
        let mut sink = Sink {
            got: Vec::new(),
            per_call: 5,
            calls_left: 1,
        };
        assert!(!q.flush(&mut sink).unwrap());
        assert_eq!(q.rest_of_frame(), b"1.1 101 OK\r\n\r\n");
        // A shared frame is one frame.
        let mut q = SendQueue::default();
        let shared: Rc<[u8]> = Rc::from(&b"\x81\x03abc"[..]);
        q.push_shared(&shared);
        q.push_shared(&shared);
        let mut sink = Sink {
            got: Vec::new(),
            per_call: 2,
            calls_left: 1,
        };
        assert!(!q.flush(&mut sink).unwrap());
        assert_eq!(q.rest_of_frame(), b"abc");
    }

    /// A turn's one frame for a client (a presence update to everyone, one channel message)
    /// is held inline: ten thousand recipients allocate nothing per recipient. A partial
    /// write, or a second frame, moves it to the chunks without losing a byte.
    #[test]
    fn one_shared_frame_is_held_without_allocating() {
        let shared: Rc<[u8]> = Rc::from(&b"0123456789"[..]);
        let mut q = SendQueue::default();
        q.push_shared(&shared);
        assert!(matches!(q.inner, Queue::One(_)), "{:?}", q.inner);
        assert_eq!((q.len(), q.rest_of_frame()), (10, &b""[..]));
        let mut sink = Sink {
            got: Vec::new(),
            per_call: 100,
            calls_left: 0,
        };
        // The socket is full: still inline, nothing lost.
        assert!(!q.flush(&mut sink).unwrap());
        assert!(matches!(q.inner, Queue::One(_)));
        // Written whole: empty again, nothing held.
        sink.calls_left = 1;
        assert!(q.flush(&mut sink).unwrap());
        assert!(matches!(q.inner, Queue::Many(None)) && q.is_empty());
        assert_eq!(sink.got, b"0123456789");
        // Written in part: the rest waits as the front chunk.
        q.push_shared(&shared);
        sink.per_call = 4;
        sink.calls_left = 1;
        assert!(!q.flush(&mut sink).unwrap());
        assert_eq!((q.len(), q.rest_of_frame()), (6, &b"456789"[..]));
        sink.calls_left = 100;
        assert!(q.flush(&mut sink).unwrap());
        assert_eq!(sink.got, b"01234567890123456789");
        // A second frame, or bytes, after an inline one: both sent, in order.
        q.push_shared(&shared);
        q.push_bytes(b"ab");
        q.push_shared(&shared);
        assert_eq!(q.len(), 22);
        sink.got.clear();
        sink.per_call = 100;
        assert!(q.flush(&mut sink).unwrap());
        assert_eq!(sink.got, b"0123456789ab0123456789");
        assert!(matches!(q.inner, Queue::Many(None)));
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
        assert_eq!(q.rest_of_frame(), b"");
    }

    /// A reader that always lags: every flush leaves part of the front
    /// chunk unwritten while new bytes keep coming. The memory held must
    /// track what is queued, not what was ever written.
    #[test]
    fn a_queue_that_never_drains_does_not_keep_written_bytes() {
        let mut q = SendQueue::default();
        let mut sink = Sink {
            got: Vec::new(),
            per_call: 102,
            calls_left: 0,
        };
        // A fixed lag of 51 bytes: each turn queues a 102-byte frame and the
        // socket takes 102 bytes, so the front chunk is always mid-write.
        q.push_bytes(&[1; 51]);
        for _ in 0..100_000 {
            q.push_frame(OpCode::Pong, &[7; 100]);
            sink.calls_left = 1;
            assert!(!q.flush(&mut sink).unwrap());
            sink.got.clear();
        }
        let held: usize = match &q.inner {
            Queue::Many(Some(i)) => i.chunks.iter().map(|c| c.bytes().len()).sum(),
            _ => 0,
        };
        assert!(q.len() < 1024, "queued {}", q.len());
        assert!(
            held <= q.len() + 2 * OWNED_CHUNK,
            "{held} bytes held for {} queued",
            q.len()
        );
    }
}
