//! `Connection` driven the way the daemon drives it: bytes arrive in pieces,
//! are appended to an input buffer, `read` is called until it wants more, and
//! consumed bytes are drained.
//!
//! Byte 0 picks the mode:
//! - even: **raw**. Byte 1 says after which piece the server starts its own
//!   close (0 = never), bytes 2..6 are the piece sizes (0 = all the rest),
//!   the rest is what the client sends. Invariants are checked on every call,
//!   and each event's payload is compared with an independent byte-at-a-time
//!   unmasking of the untouched input.
//! - odd, below 0x80: **round trip**. A list of messages (with pings between
//!   fragments) is derived from the input, encoded as masked, fragmented
//!   client frames, fed in random-sized pieces, and exactly those messages
//!   must come back, in order, with exactly the expected pongs written.
//! - odd, from 0x80: **mutated**. Such a message list with one mutation whose
//!   outcome is known exactly (an RSV bit on one frame: 1002; a byte that is
//!   never UTF-8 in a text message: 1007; a message of max + 1 bytes: 1009):
//!   everything before the broken frame comes back, then exactly that error
//!   and its close frame. (The raw mode only checks that an error's close
//!   code matches its own mapping.)
#![no_main]

use libfuzzer_sys::arbitrary::{Result as ArbResult, Unstructured};
use libfuzzer_sys::fuzz_target;
use rakit_protocol::connection::Error;
use rakit_protocol::mask::apply_mask_naive;
use rakit_protocol::{
    encode_frame, encode_masked, Connection, Event, FrameHeader, Limits, OpCode, ProtocolError,
    State,
};

const MAX: usize = 4096;

fn limits() -> Limits {
    Limits {
        max_message_size: MAX,
        ..Limits::default()
    }
}

/// An event with its borrows copied out.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seen {
    Text(String),
    Binary(Vec<u8>),
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    Close(Option<(u16, String)>),
}

fn own(ev: Event<'_>) -> Seen {
    match ev {
        Event::Text(t) => Seen::Text(t.to_owned()),
        Event::Binary(b) => Seen::Binary(b.to_vec()),
        Event::Ping(b) => Seen::Ping(b.to_vec()),
        Event::Pong(b) => Seen::Pong(b.to_vec()),
        Event::Close(c) => Seen::Close(c.map(|(code, r)| (code, r.to_owned()))),
        Event::Request(r) => panic!("request from an open connection: {r:?}"),
        Event::Compressed { .. } => panic!("compressed message without deflate agreed"),
    }
}

/// The single close frame `out` holds (it must hold exactly one, unmasked).
fn close_frame_code(out: &[u8]) -> Option<u16> {
    let (h, n) = FrameHeader::decode(out).unwrap().unwrap();
    assert_eq!(h.opcode, OpCode::Close);
    assert!(h.fin && h.mask.is_none());
    assert_eq!(
        out.len(),
        n + h.payload_len as usize,
        "trailing bytes after close"
    );
    let payload = &out[n..];
    assert!(payload.len() <= 125);
    match payload {
        [] => None,
        [hi, lo, reason @ ..] => {
            assert!(std::str::from_utf8(reason).is_ok());
            Some(u16::from_be_bytes([*hi, *lo]))
        }
        [_] => panic!("1-byte close payload written"),
    }
}

/// What the next whole frame in `buf` unmasks to, computed independently of
/// `Connection` (header decode + byte loop) before `read` touches `buf`.
struct Expected {
    header: FrameHeader,
    total: usize,
    payload: Vec<u8>,
}

fn expected_frame(buf: &[u8]) -> Option<Expected> {
    let (header, n) = FrameHeader::decode(buf).ok()??;
    let key = header.mask?;
    let total = n.checked_add(usize::try_from(header.payload_len).ok()?)?;
    let mut payload = buf.get(n..total)?.to_vec();
    apply_mask_naive(&mut payload, key, 0);
    Some(Expected {
        header,
        total,
        payload,
    })
}

/// The daemon's read loop over one buffer of unconsumed bytes. Returns the
/// events seen; checks every invariant of one call. `frag` mirrors the
/// message being reassembled. `pristine` holds the same bytes as `buf` as
/// they arrived: the connection may unmask an incomplete frame in place in
/// `buf`, so the expected payloads are computed from the copy.
fn pump(
    conn: &mut Connection,
    buf: &mut Vec<u8>,
    pristine: &mut Vec<u8>,
    out: &mut Vec<u8>,
    frag: &mut Option<(bool, Vec<u8>)>,
    seen: &mut Vec<Seen>,
) -> Option<Error> {
    loop {
        let before = conn.state();
        let out_before = out.len();
        let len = buf.len();
        let expected = expected_frame(pristine);
        let result = conn.read(&mut buf[..], out).map(|(n, ev)| (n, ev.map(own)));
        let after = conn.state();
        let written = &out[out_before..];
        match result {
            Ok((0, None)) => {
                assert!(written.is_empty());
                assert_eq!(before, after);
                // Nothing is consumed unless a whole frame is there.
                if before != State::Closed {
                    if let Some(e) = &expected {
                        panic!(
                            "whole frame of {} bytes not consumed: {:?}",
                            e.total, e.header
                        );
                    }
                }
                return None;
            }
            Ok((n, ev)) => {
                assert!(n <= len, "consumed {n} of {len}");
                assert!(n > 0, "event without consuming: {ev:?}");
                assert!(matches!(before, State::Open | State::Closing), "{before:?}");
                let e = expected.expect("consumed bytes that are not a whole masked frame");
                assert_eq!(n, e.total);
                let (h, p) = (e.header, e.payload);
                match &ev {
                    Some(Seen::Close(c)) => {
                        assert_eq!(h.opcode, OpCode::Close);
                        assert_eq!(after, State::Closed);
                        match c {
                            None => assert!(p.is_empty()),
                            Some((code, reason)) => {
                                assert_eq!(&p[..2], &code.to_be_bytes());
                                assert_eq!(&p[2..], reason.as_bytes());
                            }
                        }
                        if before == State::Open {
                            // The echo: the peer's code, or an empty close.
                            assert_eq!(close_frame_code(written), c.as_ref().map(|c| c.0));
                        } else {
                            assert!(written.is_empty(), "close answered twice");
                        }
                    }
                    other => {
                        assert_eq!(before, after, "{other:?} changed the state");
                        match other {
                            Some(Seen::Ping(b)) => {
                                assert_eq!(h.opcode, OpCode::Ping);
                                assert_eq!(b, &p);
                                if before == State::Open {
                                    let mut pong = Vec::new();
                                    encode_frame(&mut pong, OpCode::Pong, &p);
                                    assert_eq!(written, pong, "pong != ping payload");
                                } else {
                                    assert!(written.is_empty());
                                }
                            }
                            Some(Seen::Pong(b)) => {
                                assert_eq!(h.opcode, OpCode::Pong);
                                assert_eq!(b, &p);
                                assert!(written.is_empty());
                            }
                            Some(Seen::Text(_) | Seen::Binary(_)) | None => {
                                assert!(written.is_empty());
                            }
                            Some(Seen::Close(_)) => unreachable!(),
                        }
                    }
                }
                // Data events: only while open, and equal to the unmasked
                // frame (or the fragments gathered so far).
                if before == State::Open && !h.opcode.is_control() {
                    let whole = match h.opcode {
                        OpCode::Continuation => {
                            let (text, mut acc) =
                                frag.take().expect("continuation accepted with no message");
                            acc.extend_from_slice(&p);
                            if h.fin {
                                Some((text, acc))
                            } else {
                                *frag = Some((text, acc));
                                None
                            }
                        }
                        op => {
                            assert!(frag.is_none(), "new message accepted mid-message");
                            let text = op == OpCode::Text;
                            if h.fin {
                                Some((text, p))
                            } else {
                                *frag = Some((text, p));
                                None
                            }
                        }
                    };
                    match (whole, &ev) {
                        (None, None) => {}
                        (Some((true, m)), Some(Seen::Text(t))) => {
                            assert_eq!(t.as_bytes(), &m[..]);
                            assert!(t.len() <= MAX);
                        }
                        (Some((false, m)), Some(Seen::Binary(b))) => {
                            assert_eq!(b, &m);
                            assert!(b.len() <= MAX);
                        }
                        (w, ev) => panic!("expected {w:?}, got {ev:?}"),
                    }
                } else if !h.opcode.is_control() {
                    assert_eq!(ev, None, "data event while closing");
                }
                if let Some(ev) = ev {
                    seen.push(ev);
                }
                buf.drain(..n);
                pristine.drain(..n);
            }
            Err(err) => {
                assert_eq!(after, State::Closed, "{err}");
                let Error::Protocol(pe) = &err else {
                    panic!("handshake error from an open connection: {err}");
                };
                if before == State::Open {
                    assert_eq!(close_frame_code(written), Some(pe.close_code()), "{err}");
                } else {
                    assert!(written.is_empty(), "second close frame: {err}");
                }
                // Closed: nothing more is read or written.
                let mut more = Vec::new();
                let again = conn
                    .read(&mut buf[..], &mut more)
                    .map(|(n, ev)| (n, ev.map(own)));
                assert_eq!(again, Ok((0, None)));
                assert!(more.is_empty());
                return Some(err);
            }
        }
    }
}

/// One connection fed the way the daemon feeds it, with the bytes as
/// they arrived kept beside the buffer the connection may rewrite.
struct Feed {
    conn: Connection,
    buf: Vec<u8>,
    pristine: Vec<u8>,
    out: Vec<u8>,
    frag: Option<(bool, Vec<u8>)>,
    seen: Vec<Seen>,
}

impl Feed {
    fn new() -> Feed {
        Feed {
            conn: Connection::open(limits()),
            buf: Vec::new(),
            pristine: Vec::new(),
            out: Vec::new(),
            frag: None,
            seen: Vec::new(),
        }
    }

    /// Appends newly arrived bytes and reads all it can; the error that
    /// ended the connection, if any.
    fn push(&mut self, bytes: &[u8]) -> Option<Error> {
        self.buf.extend_from_slice(bytes);
        self.pristine.extend_from_slice(bytes);
        pump(
            &mut self.conn,
            &mut self.buf,
            &mut self.pristine,
            &mut self.out,
            &mut self.frag,
            &mut self.seen,
        )
    }
}

fn raw(data: &[u8]) {
    let Some((head, mut rest)) = data.split_first_chunk::<6>() else {
        return;
    };
    let close_after = head[1] as usize;
    let sizes = [head[2], head[3], head[4], head[5]];
    let mut feed = Feed::new();
    let mut piece = 0;
    while !rest.is_empty() {
        let n = match sizes[piece % 4] {
            0 => rest.len(),
            n => (n as usize).min(rest.len()),
        };
        piece += 1;
        let (now, later) = rest.split_at(n);
        rest = later;
        if feed.push(now).is_some() {
            return;
        }
        let Feed { conn, buf, out, .. } = &mut feed;
        if conn.state() == State::Closed {
            // Whatever follows the peer's close is never consumed.
            let mut more = Vec::new();
            buf.extend_from_slice(rest);
            assert!(matches!(conn.read(&mut buf[..], &mut more), Ok((0, None))));
            assert!(more.is_empty());
            return;
        }
        if piece == close_after {
            let was_open = conn.state() == State::Open;
            let start = out.len();
            assert_eq!(conn.close(1000, "bye", out), was_open);
            assert_eq!(conn.state(), State::Closing);
            if was_open {
                assert_eq!(close_frame_code(&out[start..]), Some(1000));
            }
            assert!(!conn.close(1001, "", out));
        }
    }
}

/// One message of the round trip: its bytes, split into fragments, with
/// pings sent before each fragment.
#[derive(Debug)]
struct Message {
    text: bool,
    data: Vec<u8>,
    /// Fragment lengths (sum = data.len()), at least one.
    fragments: Vec<usize>,
    /// `pings[i]` are sent just before fragment `i`.
    pings: Vec<Vec<Vec<u8>>>,
}

fn message(u: &mut Unstructured<'_>) -> ArbResult<Message> {
    let text: bool = u.arbitrary()?;
    let limit = u.int_in_range(0..=MAX)?;
    let data = if text {
        let mut s = String::new();
        while s.len() < limit && !u.is_empty() {
            let c: char = u.arbitrary()?;
            if s.len() + c.len_utf8() > limit {
                break;
            }
            s.push(c);
        }
        s.into_bytes()
    } else {
        let n = u.int_in_range(0..=limit)?;
        let n = n.min(u.len());
        u.bytes(n)?.to_vec()
    };
    // Split anywhere, even inside a character.
    let fragments = fragments(u, data.len())?;
    let mut pings = Vec::new();
    for _ in 0..fragments.len() {
        let mut here = Vec::new();
        // (`ratio` is always true once the input is used up.)
        while !u.is_empty() && u.ratio(1, 4)? {
            let n = u.int_in_range(0..=125)?;
            let n = n.min(u.len());
            here.push(u.bytes(n)?.to_vec());
        }
        pings.push(here);
    }
    Ok(Message {
        text,
        data,
        fragments,
        pings,
    })
}

fn round_trip(data: &[u8]) -> ArbResult<()> {
    let mut u = Unstructured::new(data);
    let count = u.int_in_range(0..=8)?;
    let mut messages = Vec::new();
    for _ in 0..count {
        messages.push(message(&mut u)?);
    }
    let close: Option<Option<(u16, String)>> = if u.arbitrary()? {
        Some(if u.arbitrary()? {
            let code = *u.choose(&[1000u16, 1001, 1003, 1011, 3000, 4000, 4999])?;
            let reason: String = u.arbitrary()?;
            let mut cut = reason.len().min(123);
            while !reason.is_char_boundary(cut) {
                cut -= 1;
            }
            Some((code, reason[..cut].to_owned()))
        } else {
            None
        })
    } else {
        None
    };

    // Encode, and write down what must come back.
    let frames = encode(&messages, &mut u)?;
    let mut wire: Vec<u8> = frames.iter().flat_map(|f| f.bytes.clone()).collect();
    let mut want: Vec<Seen> = frames.iter().filter_map(|f| f.yields.clone()).collect();
    let mut pongs: Vec<u8> = frames.iter().flat_map(|f| f.pong.clone()).collect();
    if let Some(c) = &close {
        let mut payload = Vec::new();
        if let Some((code, reason)) = c {
            payload.extend_from_slice(&code.to_be_bytes());
            payload.extend_from_slice(reason.as_bytes());
        }
        let key: [u8; 4] = u.arbitrary()?;
        encode_masked(&mut wire, true, OpCode::Close, &payload, key);
        want.push(Seen::Close(c.clone()));
        match c {
            Some((code, _)) => {
                pongs.extend_from_slice(&[0x88, 2]);
                pongs.extend_from_slice(&code.to_be_bytes());
            }
            None => pongs.extend_from_slice(&[0x88, 0]),
        }
        // Bytes after the close are never read.
        wire.extend_from_slice(b"\x81\x80junk");
    }

    let mut feed = Feed::new();
    if let Some(err) = feed_in_pieces(&mut feed, &wire, &mut u)? {
        panic!("valid input failed: {err}\n{messages:?}");
    }
    let Feed {
        conn,
        buf,
        out,
        seen,
        ..
    } = feed;
    assert_eq!(seen, want);
    assert_eq!(out, pongs);
    let state = if close.is_some() {
        State::Closed
    } else {
        State::Open
    };
    assert_eq!(conn.state(), state);
    if close.is_none() {
        assert!(buf.is_empty(), "{} bytes left unread", buf.len());
    }
    Ok(())
}

/// One client frame of an encoded message list, with what reading it must
/// produce: the event it completes, and the pong it obliges.
struct WireFrame {
    bytes: Vec<u8>,
    yields: Option<Seen>,
    pong: Vec<u8>,
    /// For a data frame: its message and the byte range of the message's
    /// data it carries.
    data: Option<(usize, std::ops::Range<usize>)>,
}

/// Encodes `messages` as masked client frames (pings before fragments).
fn encode(messages: &[Message], u: &mut Unstructured<'_>) -> ArbResult<Vec<WireFrame>> {
    let mut frames = Vec::new();
    for (k, m) in messages.iter().enumerate() {
        let mut at = 0;
        for (i, &len) in m.fragments.iter().enumerate() {
            for p in &m.pings[i] {
                let mut bytes = Vec::new();
                encode_masked(&mut bytes, true, OpCode::Ping, p, u.arbitrary()?);
                let mut pong = Vec::new();
                encode_frame(&mut pong, OpCode::Pong, p);
                frames.push(WireFrame {
                    bytes,
                    yields: Some(Seen::Ping(p.clone())),
                    pong,
                    data: None,
                });
            }
            let opcode = match (i, m.text) {
                (0, true) => OpCode::Text,
                (0, false) => OpCode::Binary,
                _ => OpCode::Continuation,
            };
            let fin = i + 1 == m.fragments.len();
            let mut bytes = Vec::new();
            encode_masked(
                &mut bytes,
                fin,
                opcode,
                &m.data[at..at + len],
                u.arbitrary()?,
            );
            let yields = fin.then(|| match m.text {
                // Lossy: a mutated message never gets this far.
                true => Seen::Text(String::from_utf8_lossy(&m.data).into_owned()),
                false => Seen::Binary(m.data.clone()),
            });
            frames.push(WireFrame {
                bytes,
                yields,
                pong: Vec::new(),
                data: Some((k, at..at + len)),
            });
            at += len;
        }
    }
    Ok(frames)
}

/// Feeds `wire` in random-sized pieces; the error that ended it, if any.
fn feed_in_pieces(
    feed: &mut Feed,
    wire: &[u8],
    u: &mut Unstructured<'_>,
) -> ArbResult<Option<Error>> {
    let mut rest = wire;
    while !rest.is_empty() {
        let n = if u.is_empty() {
            rest.len()
        } else {
            u.int_in_range(1..=rest.len().min(300))?
        };
        let (now, later) = rest.split_at(n);
        rest = later;
        if let Some(err) = feed.push(now) {
            return Ok(Some(err));
        }
    }
    Ok(None)
}

/// Splits `len` bytes into 1 to 6 fragments.
fn fragments(u: &mut Unstructured<'_>, len: usize) -> ArbResult<Vec<usize>> {
    let mut out = Vec::new();
    let mut left = len;
    for _ in 1..u.int_in_range(1..=6)? {
        let f = u.int_in_range(0..=left)?;
        out.push(f);
        left -= f;
    }
    out.push(left);
    Ok(out)
}

/// Valid messages with one mutation whose outcome is known exactly: an RSV
/// bit set on one frame (1002), a byte that is never UTF-8 in a text
/// message (1007), or a message of `MAX + 1` bytes (1009). Everything
/// before the broken frame must be delivered (events and pongs), then the
/// error, with its close frame; nothing after it.
fn mutated(data: &[u8]) -> ArbResult<()> {
    let mut u = Unstructured::new(data);
    // Chosen first, from the first bytes, so that every kind is as likely.
    let kind = u.int_in_range(0..=2)?;
    let pick: u8 = u.arbitrary()?;
    let mut messages = Vec::new();
    for _ in 0..u.int_in_range(1..=6)? {
        messages.push(message(&mut u)?);
    }
    let k = usize::from(pick) % messages.len();
    let expected = match kind {
        0 => ProtocolError::NonZeroReservedBits,
        1 => {
            // Make message k text (ASCII if it was binary), then put 0xff,
            // which no UTF-8 sequence contains, at position p.
            let m = &mut messages[k];
            if !m.text {
                m.text = true;
                m.data.iter_mut().for_each(|b| *b = b'b');
            }
            if m.data.is_empty() {
                m.data.push(0xff);
                *m.fragments.last_mut().unwrap() += 1;
            } else {
                let p = u.choose_index(m.data.len())?;
                m.data[p] = 0xff;
            }
            ProtocolError::InvalidUtf8
        }
        _ => {
            let m = &mut messages[k];
            m.data = vec![b'a'; MAX + 1];
            m.fragments = fragments(&mut u, MAX + 1)?;
            let n = m.fragments.len();
            m.pings.resize(n, Vec::new());
            ProtocolError::MessageTooBig {
                size: MAX as u64 + 1,
                max: MAX,
            }
        }
    };
    let mut frames = encode(&messages, &mut u)?;
    // The frame that must fail.
    let broken = match kind {
        0 => {
            let f = u.choose_index(frames.len())?;
            frames[f].bytes[0] |= *u.choose(&[0x40u8, 0x20, 0x10])?;
            f
        }
        1 => {
            let bad = messages[k].data.iter().position(|b| *b == 0xff).unwrap();
            frames
                .iter()
                .position(|f| matches!(&f.data, Some((m, r)) if *m == k && r.contains(&bad)))
                .unwrap()
        }
        // The fragment that takes the message past MAX.
        _ => frames
            .iter()
            .position(|f| matches!(&f.data, Some((m, r)) if *m == k && r.end > MAX))
            .unwrap(),
    };
    let before = &frames[..broken];
    let want: Vec<Seen> = before.iter().filter_map(|f| f.yields.clone()).collect();
    let pongs: Vec<u8> = before.iter().flat_map(|f| f.pong.clone()).collect();
    let wire: Vec<u8> = frames.iter().flat_map(|f| f.bytes.clone()).collect();

    let mut feed = Feed::new();
    let err = feed_in_pieces(&mut feed, &wire, &mut u)?;
    assert_eq!(err, Some(Error::Protocol(expected.clone())));
    assert_eq!(feed.seen, want, "events before the broken frame");
    assert_eq!(feed.out[..pongs.len()], pongs[..], "pongs before it");
    let code = [1002, 1007, 1009][kind];
    assert_eq!(expected.close_code(), code);
    assert_eq!(close_frame_code(&feed.out[pongs.len()..]), Some(code));
    assert_eq!(feed.conn.state(), State::Closed);
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    // Err from a generated mode: the input ran out before a case was built.
    match data.split_first() {
        Some((mode, rest)) if mode & 0x81 == 0x81 => {
            if mutated(rest).is_err() {
                return;
            }
        }
        Some((mode, rest)) if mode & 1 == 1 => {
            if round_trip(rest).is_err() {
                return;
            }
        }
        Some(_) => raw(data),
        None => {}
    }
});
