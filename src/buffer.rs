//! One connection's queue of bytes to send.
//!
//! Fan-out frames are shared (`Rc<[u8]>`): a message to N clients is encoded
//! once and queued N times by reference. The connection's own small writes
//! (handshake response, pongs, close frames, echoes) are appended to an
//! owned tail chunk, so many of them cost one allocation. A flush hands the
//! kernel up to [`MAX_IOVECS`] chunks in one `writev`.
//!
//! Within one turn of the loop, the frames the router hands out are kept
//! once, in order, in the [`TurnFrames`] log, and a queue holds runs of
//! consecutive log entries (`start..end`) rather than one reference per
//! frame: a subscriber of a busy channel gets every frame of the turn, so its
//! whole share of a fan-out burst is one run, extended in place. Fan-out to
//! 16,000 subscribers used to write a fresh 24-byte entry per delivery into
//! each subscriber's own ring, a cache miss per delivery once the rings no
//! longer fit the cache; a run is one counter in a line the loop already
//! holds. What a flush could not write is turned back into references
//! ([`SendQueue::settle`]) before the log is cleared at the end of the turn.

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

/// Log entries a cleared log keeps room for (a turn of private messages may
/// log millions; their room is given back).
const LOG_ROOM: usize = 64 * 1024;

/// The frames queued in the current turn, each once, in order (see the
/// module docs). The loop clears it at the end of every turn, once every
/// queue that refers to it has been flushed or settled.
#[derive(Debug, Default)]
pub struct TurnFrames {
    frames: Vec<Rc<[u8]>>,
}

impl TurnFrames {
    /// The index of `frame`: the last entry if it is the same frame (a
    /// fan-out hands one frame to every recipient in a row), else a new one.
    fn index(&mut self, frame: &Rc<[u8]>) -> Option<u32> {
        if let Some(last) = self.frames.last() {
            if Rc::ptr_eq(last, frame) {
                return u32::try_from(self.frames.len() - 1).ok();
            }
        }
        let index = u32::try_from(self.frames.len()).ok()?;
        self.frames.push(Rc::clone(frame));
        Some(index)
    }

    /// The bytes of entry `index`. Every run is settled before the log is
    /// cleared, so an entry is always there; were it not (a defect), the
    /// empty frame makes the write fail and the connection is dropped, where
    /// an index would have crashed the daemon.
    fn get(&self, index: u32) -> &[u8] {
        self.frames.get(index as usize).map_or(&[], |f| f)
    }

    /// Forgets the turn's frames; no queue may refer to them any more.
    pub fn clear(&mut self) {
        self.frames.clear();
        if self.frames.capacity() > LOG_ROOM {
            self.frames.shrink_to(LOG_ROOM);
        }
    }
}

#[derive(Debug)]
enum Chunk {
    Shared(Rc<[u8]>),
    Owned(Vec<u8>),
    /// Entries `start..end` of the turn's log.
    Run {
        start: u32,
        end: u32,
    },
}

impl Chunk {
    /// The bytes of a chunk that is not a run.
    fn bytes(&self) -> &[u8] {
        match self {
            Chunk::Shared(b) => b,
            Chunk::Owned(v) => v,
            Chunk::Run { .. } => &[],
        }
    }
}

/// Bytes waiting to be written to one socket.
///
/// An empty queue is two words and holds no memory: the chunks and their
/// counters live in a box that exists only while bytes wait, so ten thousand
/// idle connections hold no queue memory and their `Conn`s stay small. A
/// queue holding nothing but one run of this turn's frames (a fan-out turn's
/// share for each recipient, e.g. a presence update to every client, or a
/// burst on a channel) keeps it inline and allocates nothing: before, a
/// message to every idle client allocated a box and a chunk ring per client,
/// and the allocator kept that peak as resident memory.
#[derive(Debug, Default)]
pub struct SendQueue {
    inner: Queue,
}

#[derive(Debug)]
enum Queue {
    /// Entries `start..end` of the turn's log, `bytes` long, none written.
    Run { start: u32, end: u32, bytes: u32 },
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
    /// Bytes of the front chunk (of a run: of its first frame) already written.
    offset: usize,
    /// Bytes queued and not yet written.
    queued: usize,
    /// The front chunks known to hold no run (settled by an earlier turn): a settle looks
    /// only at what came after them, so a lagging reader's backlog is not walked again
    /// every turn (runs are only ever pushed at the back).
    settled: usize,
}

impl SendQueue {
    /// Bytes waiting.
    pub fn len(&self) -> usize {
        match &self.inner {
            Queue::Run { bytes, .. } => *bytes as usize,
            Queue::Many(inner) => inner.as_ref().map_or(0, |i| i.queued),
        }
    }

    /// Nothing waiting?
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The chunks, made room for (a run held inline becomes the first).
    fn inner(&mut self) -> &mut Inner {
        if let Queue::Run { start, end, bytes } = self.inner {
            let mut inner = Box::<Inner>::default();
            inner.queued = bytes as usize;
            inner.chunks.push_back(Chunk::Run { start, end });
            self.inner = Queue::Many(Some(inner));
        }
        match &mut self.inner {
            Queue::Many(inner) => inner.get_or_insert_with(Box::default),
            Queue::Run { .. } => unreachable!("a run held inline was just moved to the chunks"),
        }
    }

    /// Queues a shared frame of this turn, through the turn's log.
    pub fn push_turn(&mut self, frame: &Rc<[u8]>, turn: &mut TurnFrames) {
        if frame.is_empty() {
            return;
        }
        let (Some(index), Ok(len)) = (turn.index(frame), u32::try_from(frame.len())) else {
            return self.push_shared(frame);
        };
        match &mut self.inner {
            Queue::Many(None) => {
                self.inner = Queue::Run {
                    start: index,
                    end: index + 1,
                    bytes: len,
                };
                return;
            }
            Queue::Run { end, bytes, .. } if *end == index => {
                if let Some(more) = bytes.checked_add(len) {
                    *end += 1;
                    *bytes = more;
                    return;
                }
            }
            _ => {}
        }
        let inner = self.inner();
        inner.queued += frame.len();
        match inner.chunks.back_mut() {
            Some(Chunk::Run { end, .. }) if *end == index => *end += 1,
            _ => inner.chunks.push_back(Chunk::Run {
                start: index,
                end: index + 1,
            }),
        }
    }

    /// Queues a shared frame.
    pub fn push_shared(&mut self, frame: &Rc<[u8]>) {
        if frame.is_empty() {
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

    /// Turns the runs of this turn's log into references to their frames,
    /// so that the log can be cleared: what a flush left is settled before
    /// the turn ends. A partly written first frame keeps its offset.
    pub fn settle(&mut self, turn: &TurnFrames) {
        if let Queue::Run { .. } = self.inner {
            self.inner();
        }
        let Queue::Many(Some(inner)) = &mut self.inner else {
            return;
        };
        let from = inner.settled.min(inner.chunks.len());
        if !inner
            .chunks
            .range(from..)
            .any(|c| matches!(c, Chunk::Run { .. }))
        {
            inner.settled = inner.chunks.len();
            return;
        }
        let unsettled = inner.chunks.split_off(from);
        for chunk in unsettled {
            match chunk {
                Chunk::Run { start, end } => inner.chunks.extend(
                    turn.frames
                        .get(start as usize..end as usize)
                        .unwrap_or_default()
                        .iter()
                        .map(|f| Chunk::Shared(Rc::clone(f))),
                ),
                other => inner.chunks.push_back(other),
            }
        }
        inner.settled = inner.chunks.len();
    }

    /// The unwritten rest of a frame the socket took only part of (empty
    /// when the stream is between frames): what must still be sent before
    /// another frame can be, and nothing more. A shared chunk is one frame;
    /// an owned chunk holds several (after the HTTP response, on a new
    /// connection), so its frame boundaries are found by decoding headers.
    /// (A run is never partly written between turns: [`SendQueue::settle`].)
    pub fn rest_of_frame(&self) -> &[u8] {
        // A run held inline has nothing of it written.
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
            return bytes.get(offset..).unwrap_or_default();
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
    /// `Ok(false)`: the socket is full (`WouldBlock`). `turn` is the log the
    /// queue's runs refer to.
    pub fn flush(&mut self, sink: &mut impl Write, turn: &TurnFrames) -> io::Result<bool> {
        if let Queue::Run { start, end, bytes } = self.inner {
            let result = if end - start == 1 {
                write_once(sink, turn.get(start))?
            } else {
                let slices: Vec<IoSlice<'_>> = (start..end)
                    .take(MAX_IOVECS)
                    .map(|i| IoSlice::new(turn.get(i)))
                    .collect();
                write_vectored_once(sink, &slices)?
            };
            match result {
                Some(n) if n == bytes as usize => {
                    self.inner = Queue::default();
                    return Ok(true);
                }
                // The rest waits in the chunks, like any partly written run.
                Some(n) => self.inner().advance(n, turn),
                None => return Ok(false),
            }
        }
        let Queue::Many(Some(inner)) = &mut self.inner else {
            return Ok(true);
        };
        if !inner.flush(sink, turn)? {
            return Ok(false);
        }
        // Give back the memory of a burst: an idle connection holds nothing.
        self.inner = Queue::default();
        Ok(true)
    }
}

/// One `write` of `bytes`: how many it took, or `None` if the socket is full.
fn write_once(sink: &mut impl Write, bytes: &[u8]) -> io::Result<Option<usize>> {
    write_vectored_once(sink, &[IoSlice::new(bytes)])
}

/// One `writev`: how many bytes it took, or `None` if the socket is full.
fn write_vectored_once(sink: &mut impl Write, slices: &[IoSlice<'_>]) -> io::Result<Option<usize>> {
    loop {
        let result = if let [one] = slices {
            sink.write(one)
        } else {
            sink.write_vectored(slices)
        };
        return match result {
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

    fn flush(&mut self, sink: &mut impl Write, turn: &TurnFrames) -> io::Result<bool> {
        while !self.chunks.is_empty() {
            let offset = self.offset;
            let mut slices: Vec<IoSlice<'_>> = Vec::new();
            for chunk in &self.chunks {
                match chunk {
                    Chunk::Run { start, end } => {
                        for i in *start..*end {
                            if slices.len() == MAX_IOVECS {
                                break;
                            }
                            slices.push(IoSlice::new(turn.get(i)));
                        }
                    }
                    other => slices.push(IoSlice::new(other.bytes())),
                }
                if slices.len() >= MAX_IOVECS {
                    break;
                }
            }
            if let Some(first) = slices.first_mut() {
                *first = IoSlice::new(&first_bytes(&self.chunks, turn)[offset..]);
            }
            let Some(written) = write_vectored_once(sink, &slices)? else {
                return Ok(false);
            };
            self.advance(written, turn);
        }
        Ok(true)
    }

    fn advance(&mut self, mut n: usize, turn: &TurnFrames) {
        self.queued -= n;
        while n > 0 {
            let Some(front) = self.chunks.front_mut() else {
                break;
            };
            let (len, run) = match &*front {
                Chunk::Run { start, .. } => (turn.get(*start).len(), true),
                other => (other.bytes().len(), false),
            };
            let rest = len - self.offset;
            if n < rest {
                self.offset += n;
                return;
            }
            n -= rest;
            self.offset = 0;
            match front {
                Chunk::Run { start, end } if run && *start + 1 < *end => *start += 1,
                _ => {
                    self.chunks.pop_front();
                    self.settled = self.settled.saturating_sub(1);
                }
            }
        }
    }
}

/// The bytes of the first frame or chunk of `chunks`.
fn first_bytes<'a>(chunks: &'a VecDeque<Chunk>, turn: &'a TurnFrames) -> &'a [u8] {
    match chunks.front() {
        Some(Chunk::Run { start, .. }) => turn.get(*start),
        Some(other) => other.bytes(),
        None => &[],
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
        assert!(!q.flush(&mut sink, &TurnFrames::default()).unwrap());
        assert_eq!(q.len(), 13);
        assert_eq!(q.rest_of_frame(), b"d-frame");
        sink.calls_left = 100;
        assert!(q.flush(&mut sink, &TurnFrames::default()).unwrap());
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
        assert!(!q.flush(&mut sink, &TurnFrames::default()).unwrap());
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
        assert!(!q.flush(&mut sink, &TurnFrames::default()).unwrap());
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
        assert!(!q.flush(&mut sink, &TurnFrames::default()).unwrap());
        assert_eq!(q.rest_of_frame(), b"abc");
    }

    /// A turn's frames for a client (a presence update to everyone, a burst on a channel) are
    /// one run of the turn's log, held inline: ten thousand recipients allocate nothing per
    /// recipient, and a burst extends the run instead of writing an entry per frame. A
    /// partial write, or other bytes, move the run to the chunks without losing a byte, and
    /// what is left at the end of the turn is settled into references.
    #[test]
    fn a_turns_frames_are_one_run() {
        let a: Rc<[u8]> = Rc::from(&b"0123456789"[..]);
        let b: Rc<[u8]> = Rc::from(&b"abcdef"[..]);
        let mut turn = TurnFrames::default();
        let mut q = SendQueue::default();
        let mut other = SendQueue::default();
        q.push_turn(&a, &mut turn);
        other.push_turn(&a, &mut turn);
        q.push_turn(&b, &mut turn);
        other.push_turn(&b, &mut turn);
        assert_eq!(turn.frames.len(), 2, "each frame logged once");
        assert!(
            matches!(
                q.inner,
                Queue::Run {
                    start: 0,
                    end: 2,
                    bytes: 16
                }
            ),
            "{:?}",
            q.inner
        );
        assert_eq!((q.len(), q.rest_of_frame()), (16, &b""[..]));
        let mut sink = Sink {
            got: Vec::new(),
            per_call: 100,
            calls_left: 0,
        };
        // The socket is full: still inline, nothing lost.
        assert!(!q.flush(&mut sink, &turn).unwrap());
        assert!(matches!(q.inner, Queue::Run { .. }));
        // Written in part (`Sink` takes one slice a call): the rest waits.
        sink.calls_left = 1;
        assert!(!q.flush(&mut sink, &turn).unwrap());
        assert_eq!(sink.got, b"0123456789");
        assert_eq!(q.len(), 6);
        // The turn ends: the rest no longer needs the log.
        q.settle(&turn);
        other.settle(&turn);
        turn.clear();
        let c: Rc<[u8]> = Rc::from(&b"XY"[..]);
        q.push_turn(&c, &mut turn);
        sink.calls_left = 100;
        assert!(q.flush(&mut sink, &turn).unwrap());
        assert_eq!(sink.got, b"0123456789abcdefXY");
        assert!(matches!(q.inner, Queue::Many(None)) && q.is_empty());
        // Partly written within a frame, then settled: the offset is kept.
        sink.got.clear();
        sink.per_call = 4;
        sink.calls_left = 1;
        assert!(!other.flush(&mut sink, &turn).unwrap());
        assert_eq!(other.rest_of_frame(), b"456789");
        sink.per_call = 100;
        sink.calls_left = 100;
        assert!(other.flush(&mut sink, &turn).unwrap());
        assert_eq!(sink.got, b"0123456789abcdef");
        // Bytes between frames of a run, and the same frame twice: all sent, in order.
        turn.clear();
        sink.got.clear();
        q.push_turn(&a, &mut turn);
        q.push_bytes(b"--");
        q.push_turn(&a, &mut turn);
        q.push_turn(&b, &mut turn);
        assert_eq!(q.len(), 10 + 2 + 10 + 6);
        assert!(q.flush(&mut sink, &turn).unwrap());
        assert_eq!(sink.got, b"0123456789--0123456789abcdef");
        assert!(matches!(q.inner, Queue::Many(None)));
    }

    /// A reader that lags for many turns: each turn queues a frame of the log (and sometimes
    /// bytes of its own), the socket takes a little, the turn ends. Everything arrives in
    /// order, and a settle starts after what earlier turns settled (the backlog is not walked
    /// again every turn).
    #[test]
    fn a_lagging_readers_backlog_is_settled_once() {
        let mut turn = TurnFrames::default();
        let mut q = SendQueue::default();
        let mut want = Vec::new();
        let mut sink = Sink {
            got: Vec::new(),
            per_call: 3,
            calls_left: 0,
        };
        for i in 0..200u32 {
            let frame: Rc<[u8]> = Rc::from(format!("<{i}>").into_bytes());
            q.push_turn(&frame, &mut turn);
            want.extend_from_slice(&frame);
            if i % 7 == 0 {
                q.push_bytes(b"!");
                want.push(b'!');
            }
            sink.calls_left = 1;
            assert!(!q.flush(&mut sink, &turn).unwrap());
            q.settle(&turn);
            turn.clear();
            let Queue::Many(Some(inner)) = &q.inner else {
                panic!("a lagging queue holds chunks");
            };
            assert_eq!(inner.settled, inner.chunks.len(), "turn {i}");
            assert!(inner.chunks.iter().all(|c| !matches!(c, Chunk::Run { .. })));
        }
        sink.per_call = 64;
        sink.calls_left = usize::MAX;
        assert!(q.flush(&mut sink, &turn).unwrap());
        assert_eq!(sink.got, want);
        // Written in part again: the settled prefix shrinks as front chunks go.
        for i in 0..3u32 {
            let frame: Rc<[u8]> = Rc::from(format!("[{i}]").into_bytes());
            q.push_shared(&frame);
        }
        q.settle(&turn);
        sink.per_call = 3;
        sink.calls_left = 1;
        assert!(!q.flush(&mut sink, &turn).unwrap());
        let Queue::Many(Some(inner)) = &q.inner else {
            panic!("two chunks wait");
        };
        assert_eq!((inner.chunks.len(), inner.settled), (2, 2));
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
        assert!(q.flush(&mut sink, &TurnFrames::default()).unwrap());
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
            assert!(!q.flush(&mut sink, &TurnFrames::default()).unwrap());
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
