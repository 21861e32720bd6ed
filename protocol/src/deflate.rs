//! permessage-deflate (RFC 7692): the negotiation, and compression and
//! decompression as pure functions over buffers.
//!
//! Memory is the design constraint: a deflate context costs about 300 KiB,
//! so no connection has one of its own. The server always answers
//! `server_no_context_takeover` (RFC 7692 section 7.1.1.1 lets it add that
//! alone) and `client_no_context_takeover` (section 7.1.1.2: the server may
//! include it even if the offer does not), so every message on the wire
//! stands alone in both directions. One [`Deflater`] (a context per window
//! size in use, reset after each message) and one [`Inflater`] (reset after
//! each message) then serve every connection, and a message sent to many
//! clients is compressed once.
//!
//! ```text
//! offer --negotiate--> Params (per connection: 1 byte) --response_header--> 101
//! message --Deflater::compress--> RSV1 payload (sync flush, 00 00 ff ff stripped)
//! RSV1 payload --Inflater::inflate (00 00 ff ff appended, output capped)--> message
//! ```

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

use crate::error::ProtocolError;

/// The extension's token.
pub const EXTENSION: &str = "permessage-deflate";

/// The bytes a sync flush ends with, stripped from every compressed message
/// (section 7.2.1) and appended back before inflating (section 7.2.2).
const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// The smallest window zlib-rs takes for raw deflate (it refuses 8).
const MIN_COMPRESS_BITS: u8 = 9;

/// How many windows compression uses (9 to 15 bits): a message sent to many
/// clients is compressed at most this many times.
pub const WINDOWS: usize = 7;

/// What was agreed with one client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Params {
    /// `server_max_window_bits` the client asked for (8..=15); 15 if it did
    /// not. Messages to it are compressed with at most this window.
    pub server_max_window_bits: u8,
    /// Did the offer carry `server_max_window_bits` (so the answer must)?
    pub server_bits_requested: bool,
}

impl Params {
    /// The `Sec-WebSocket-Extensions` value that answers the offer.
    pub fn response_header(&self) -> String {
        let mut s = String::from(
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover",
        );
        if self.server_bits_requested {
            s.push_str("; server_max_window_bits=");
            s.push_str(&self.server_max_window_bits.to_string());
        }
        s
    }

    /// The window compression actually uses (see [`MIN_COMPRESS_BITS`]):
    /// with 9 bits the longest distance deflate emits is 512 - 262 = 250
    /// bytes, so the output also fits a peer's 256-byte window.
    pub fn compress_bits(&self) -> u8 {
        self.server_max_window_bits.max(MIN_COMPRESS_BITS)
    }

    /// [`Params::compress_bits`] as an index below [`WINDOWS`].
    pub fn window_index(&self) -> usize {
        usize::from(self.compress_bits() - MIN_COMPRESS_BITS).min(WINDOWS - 1)
    }
}

/// Picks the first acceptable permessage-deflate offer in a
/// `Sec-WebSocket-Extensions` value (several headers joined with `, `).
/// An offer with an unknown or repeated parameter, or a bad value, is
/// declined, and the next one is tried (section 7.1, as soketto does).
/// `None`: nothing acceptable, the connection is served uncompressed.
pub fn negotiate(extensions: &str) -> Option<Params> {
    split_outside_quotes(extensions, ',').find_map(parse_offer)
}

fn parse_offer(offer: &str) -> Option<Params> {
    let mut parts = split_outside_quotes(offer, ';').map(str::trim);
    if !parts.next()?.eq_ignore_ascii_case(EXTENSION) {
        return None;
    }
    let mut seen = [false; 4];
    let mut params = Params {
        server_max_window_bits: 15,
        server_bits_requested: false,
    };
    for part in parts {
        let (name, value) = match part.split_once('=') {
            Some((n, v)) => (n.trim(), Some(unquote(v.trim())?)),
            None => (part, None),
        };
        let index = match name.to_ascii_lowercase().as_str() {
            "server_no_context_takeover" if value.is_none() => 0,
            "client_no_context_takeover" if value.is_none() => 1,
            "server_max_window_bits" => {
                params.server_max_window_bits = window_bits(value?)?;
                params.server_bits_requested = true;
                2
            }
            "client_max_window_bits" => {
                // Only a signal that the client can take the parameter in
                // the answer; a value bounds the client's own window, which
                // our 15-bit inflater decodes whatever it is.
                if let Some(v) = value {
                    window_bits(v)?;
                }
                3
            }
            _ => return None,
        };
        if std::mem::replace(&mut seen[index], true) {
            return None;
        }
    }
    Some(params)
}

/// A window-bits value: `8` to `15`, no sign, no leading zero (7.1.2.1).
fn window_bits(value: &str) -> Option<u8> {
    match value.as_bytes() {
        [d @ b'8'..=b'9'] => Some(d - b'0'),
        [b'1', d @ b'0'..=b'5'] => Some(10 + d - b'0'),
        _ => None,
    }
}

/// A parameter value as a token or a quoted string (without escapes, which
/// no valid value needs).
fn unquote(value: &str) -> Option<&str> {
    match value.strip_prefix('"') {
        Some(rest) => rest.strip_suffix('"').filter(|v| !v.contains(['"', '\\'])),
        None => Some(value),
    }
}

fn split_outside_quotes(s: &str, sep: char) -> impl Iterator<Item = &str> {
    let mut quoted = false;
    s.split(move |c| {
        if c == '"' {
            quoted = !quoted;
        }
        c == sep && !quoted
    })
}

/// Compresses whole messages, one context per window size in use (at most
/// seven, made when first needed), each reset after every message.
pub struct Deflater {
    level: u32,
    contexts: [Option<Box<Compress>>; WINDOWS],
}

impl std::fmt::Debug for Deflater {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deflater")
            .field("level", &self.level)
            .finish()
    }
}

impl Deflater {
    /// A deflater at zlib `level` (0 to 9; 1 is fast and compresses JSON well).
    pub fn new(level: u32) -> Deflater {
        Deflater {
            level: level.min(9),
            contexts: Default::default(),
        }
    }

    /// Appends `message` compressed for a client that agreed `params` to
    /// `out` (a whole RSV1 payload: sync-flushed, its trailing `00 00 ff ff`
    /// removed).
    pub fn compress(&mut self, params: &Params, message: &[u8], out: &mut Vec<u8>) {
        let bits = params.compress_bits();
        let level = self.level;
        let context = self.contexts[params.window_index()].get_or_insert_with(|| {
            Box::new(Compress::new_with_window_bits(
                Compression::new(level),
                false,
                bits,
            ))
        });
        let start = out.len();
        // Incompressible data grows by a few bytes per 16 KiB block.
        out.reserve(message.len() / 2 + 64);
        let mut input = message;
        loop {
            if out.capacity() - out.len() < 64 {
                out.reserve(out.len() - start + 64);
            }
            let before = context.total_in();
            let status = context.compress_vec(input, out, FlushCompress::Sync);
            input = &input[(context.total_in() - before) as usize..];
            // Raw deflate into a buffer with room never fails.
            debug_assert!(matches!(status, Ok(Status::Ok | Status::BufError)));
            // The flush is complete once it returns with room to spare.
            if input.is_empty() && out.len() < out.capacity() {
                break;
            }
        }
        if out[start..].ends_with(&TAIL) {
            out.truncate(out.len() - TAIL.len());
        }
        context.reset();
    }
}

/// Decompresses whole messages with one context, reset after every
/// message (the client agreed `client_no_context_takeover`). A 15-bit
/// window decodes what any client window produces.
pub struct Inflater {
    context: Decompress,
}

impl std::fmt::Debug for Inflater {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Inflater")
    }
}

impl Default for Inflater {
    fn default() -> Self {
        Inflater {
            context: Decompress::new_with_window_bits(false, 15),
        }
    }
}

impl Inflater {
    /// Replaces `out` with the message `payload` (a whole RSV1 message)
    /// inflates to. Output is checked as it is produced: a message that
    /// would inflate past `max` bytes stops there with
    /// [`ProtocolError::MessageTooBig`] (1009), so a small zip bomb costs at
    /// most `max` bytes. Corrupt data is [`ProtocolError::BadCompressedData`].
    pub fn inflate(
        &mut self,
        payload: &[u8],
        max: usize,
        out: &mut Vec<u8>,
    ) -> Result<(), ProtocolError> {
        out.clear();
        let result = self.feed(payload, max, out).and_then(|end| {
            if end {
                Ok(true)
            } else {
                self.feed(&TAIL, max, out)
            }
        });
        self.context.reset(false);
        result.map(|_| ())
    }

    /// Feeds `input`; true if the stream ended (a final block).
    fn feed(
        &mut self,
        mut input: &[u8],
        max: usize,
        out: &mut Vec<u8>,
    ) -> Result<bool, ProtocolError> {
        loop {
            if out.len() == out.capacity() {
                if out.len() > max {
                    return Err(ProtocolError::MessageTooBig {
                        size: out.len() as u64,
                        max,
                    });
                }
                // Grow geometrically, but never past max + 1 bytes: one byte
                // beyond the limit is how an oversized message is seen.
                let room = out.len().max(4096).min(max + 1 - out.len());
                out.reserve_exact(room);
            }
            let (before_in, before_out) = (self.context.total_in(), self.context.total_out());
            let status = self
                .context
                .decompress_vec(input, out, FlushDecompress::Sync)
                .map_err(|_| ProtocolError::BadCompressedData)?;
            input = &input[(self.context.total_in() - before_in) as usize..];
            if out.len() > max {
                return Err(ProtocolError::MessageTooBig {
                    size: out.len() as u64,
                    max,
                });
            }
            if status == Status::StreamEnd {
                return Ok(true);
            }
            let stalled =
                self.context.total_in() == before_in && self.context.total_out() == before_out;
            if (input.is_empty() && out.len() < out.capacity())
                || (stalled && out.len() < out.capacity())
            {
                return Ok(false);
            }
        }
    }
}

#[cfg(test)]
mod tests;
