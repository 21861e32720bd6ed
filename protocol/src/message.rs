//! Reassembly of fragmented messages (RFC 6455 section 5.4).
//!
//! An unfragmented message is never copied: the connection hands out its
//! payload where it lies. Only a message split over several frames is
//! gathered here, with its text validated as each fragment arrives. Its
//! total size (not only each frame's) is capped by the connection, from
//! [`Assembler::len`] and the next frame's header, before that frame's
//! payload is buffered.

use crate::error::ProtocolError;
use crate::utf8::{self, Utf8Status};

/// What kind of data message is being gathered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Opcode 0x1: must be UTF-8.
    Text,
    /// Opcode 0x2.
    Binary,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// No fragmented message in progress.
    Idle,
    /// Fragments of a text message; `buf[..validated]` is complete characters.
    Text { validated: usize },
    /// Fragments of a binary message.
    Binary,
    /// Fragments of a compressed message (RSV1 on its first frame): its
    /// text is checked once inflated, by the caller.
    Compressed(Kind),
    /// A whole message was handed out; the buffer is released on the next call.
    Delivered,
}

/// Gathers the fragments of one message.
///
/// Without a fragmented message in progress it is one null pointer: a daemon
/// keeps one per connection, and nearly all of them are idle.
#[derive(Debug, Clone, Default)]
pub struct Assembler {
    inner: Option<Box<Inner>>,
}

#[derive(Debug, Clone)]
struct Inner {
    buf: Vec<u8>,
    phase: Phase,
}

impl Assembler {
    /// Is a fragmented message in progress (so a continuation is expected)?
    pub fn in_progress(&self) -> bool {
        self.inner.as_ref().is_some_and(|i| {
            matches!(
                i.phase,
                Phase::Text { .. } | Phase::Binary | Phase::Compressed(_)
            )
        })
    }

    /// Is the message in progress compressed?
    pub fn is_compressed(&self) -> bool {
        self.inner
            .as_ref()
            .is_some_and(|i| matches!(i.phase, Phase::Compressed(_)))
    }

    /// Bytes gathered so far.
    pub fn len(&self) -> usize {
        match self.inner.as_deref() {
            None => 0,
            Some(i) => match i.phase {
                Phase::Idle | Phase::Delivered => 0,
                _ => i.buf.len(),
            },
        }
    }

    /// True when nothing is gathered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Frees the last delivered message. An idle connection holds no buffer.
    pub fn release(&mut self) {
        if self
            .inner
            .as_ref()
            .is_some_and(|i| i.phase == Phase::Delivered)
        {
            self.inner = None;
        }
    }

    fn begin(&mut self, phase: Phase, payload: &[u8]) {
        self.inner = Some(Box::new(Inner {
            buf: payload.to_vec(),
            phase,
        }));
    }

    /// Starts a fragmented message with its first (non-final) frame.
    pub fn start(&mut self, kind: Kind, payload: &[u8]) -> Result<(), ProtocolError> {
        let phase = match kind {
            Kind::Text => Phase::Text { validated: 0 },
            Kind::Binary => Phase::Binary,
        };
        self.begin(phase, payload);
        self.validate(false)
    }

    /// Starts a fragmented compressed message with its first frame.
    pub fn start_compressed(&mut self, kind: Kind, payload: &[u8]) {
        self.begin(Phase::Compressed(kind), payload);
    }

    /// Adds a continuation frame. On the final one, returns the whole message.
    pub fn push(
        &mut self,
        payload: &[u8],
        fin: bool,
    ) -> Result<Option<(Kind, &[u8])>, ProtocolError> {
        self.inner
            .get_or_insert_with(|| {
                Box::new(Inner {
                    buf: Vec::new(),
                    phase: Phase::Idle,
                })
            })
            .buf
            .extend_from_slice(payload);
        self.validate(fin)?;
        if !fin {
            return Ok(None);
        }
        let Some(inner) = self.inner.as_deref_mut() else {
            return Ok(None);
        };
        let kind = match inner.phase {
            Phase::Text { .. } => Kind::Text,
            Phase::Compressed(kind) => kind,
            _ => Kind::Binary,
        };
        inner.phase = Phase::Delivered;
        Ok(Some((kind, &inner.buf)))
    }

    fn validate(&mut self, complete: bool) -> Result<(), ProtocolError> {
        let Some(inner) = self.inner.as_deref_mut() else {
            return Ok(());
        };
        if let Phase::Text { validated } = inner.phase {
            match utf8::validate(&inner.buf, validated, complete) {
                Utf8Status::Valid { pending } => {
                    inner.phase = Phase::Text {
                        validated: inner.buf.len() - pending,
                    }
                }
                Utf8Status::Invalid => return Err(ProtocolError::InvalidUtf8),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gathers_fragments() {
        let mut a = Assembler::default();
        assert!(!a.in_progress());
        a.start(Kind::Text, b"Hel").unwrap();
        assert!(a.in_progress());
        assert_eq!(a.push(b"l", false).unwrap(), None);
        assert_eq!(a.len(), 4);
        assert_eq!(
            a.push(b"o", true).unwrap(),
            Some((Kind::Text, &b"Hello"[..]))
        );
        assert!(!a.in_progress());
        a.release();
        assert!(a.inner.is_none(), "a released message holds no memory");
        assert_eq!(std::mem::size_of::<Assembler>(), 8, "idle: one pointer");
    }

    #[test]
    fn utf8_split_across_fragments() {
        let mut a = Assembler::default();
        a.start(Kind::Text, b"\xce").unwrap();
        assert_eq!(
            a.push(b"\xba", true).unwrap(),
            Some((Kind::Text, "κ".as_bytes()))
        );
    }

    #[test]
    fn invalid_utf8_fails_on_its_fragment() {
        let mut a = Assembler::default();
        a.start(Kind::Text, b"ok").unwrap();
        assert_eq!(a.push(b"\xff", false), Err(ProtocolError::InvalidUtf8));
        let mut a = Assembler::default();
        assert_eq!(
            a.start(Kind::Text, b"\xc0\xaf"),
            Err(ProtocolError::InvalidUtf8)
        );
        // An incomplete character at the end of the whole message is invalid.
        let mut a = Assembler::default();
        a.start(Kind::Text, b"a").unwrap();
        assert_eq!(a.push(b"\xce", true), Err(ProtocolError::InvalidUtf8));
    }

    #[test]
    fn binary_is_not_validated() {
        let mut a = Assembler::default();
        a.start(Kind::Binary, b"\xff").unwrap();
        assert_eq!(
            a.push(b"\xfe", true).unwrap(),
            Some((Kind::Binary, &b"\xff\xfe"[..]))
        );
    }
}
