//! The server side of one WebSocket connection, as a state machine.
//!
//! ```text
//!  Handshaking --Event::Request--> AwaitingDecision --accept()--> Open
//!       |                               |                          |  \
//!       | bad request: refusal          | reject()/respond()       |   close() (server closes):
//!       v written, Err                  v                          |   close frame written
//!     Closed <--------------------------+                          |        v
//!       ^      peer's close: echo written, Event::Close            |     Closing
//!       +----------------------------------------------------------+        |
//!       +------------ peer's close answers ours: Event::Close --------------+
//!       +------------ protocol error: close frame written, Err (from Open)
//! ```
//!
//! [`Connection::read`] takes the bytes received so far (mutable: payloads
//! are unmasked in place), handles at most one frame, and reports how many
//! bytes it consumed and what happened. Everything the protocol obliges the
//! server to send (the handshake response, pongs, close frames) is appended
//! to the caller's `out`; the caller writes it. In [`State::Closed`] the
//! caller closes the TCP connection once `out` is flushed.
//!
//! With permessage-deflate agreed ([`Connection::accept_with`]), a message
//! whose first frame has RSV1 is handed out still compressed
//! ([`Event::Compressed`]): the caller inflates it with a shared
//! [`Inflater`](crate::deflate::Inflater), checks it, and fails the
//! connection with [`Connection::fail`] if it is bad.

use crate::close;
use crate::deflate::Params;
use crate::error::{HandshakeError, ProtocolError};
use crate::frame::{encode_close, encode_frame, FrameHeader, OpCode};
use crate::handshake::{self, Decoder, Request};
use crate::limits::{Limits, Packed};
use crate::mask::apply_mask;
use crate::message::{Assembler, Kind};
use crate::utf8::{self, Utf8Status};

/// Where the connection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Reading the HTTP upgrade request.
    Handshaking,
    /// The request was handed out; the caller must `accept` or `reject` it.
    AwaitingDecision,
    /// Messages flow both ways.
    Open,
    /// The server sent a close frame and waits for the peer's.
    Closing,
    /// Nothing more will be read or sent; close TCP once output is flushed.
    Closed,
}

/// What one call to [`Connection::read`] produced.
#[derive(Debug, PartialEq, Eq)]
pub enum Event<'a> {
    /// A whole upgrade request: decide with [`Connection::accept`] or
    /// [`Connection::reject`].
    Request(Box<Request>),
    /// A whole text message (valid UTF-8).
    Text(&'a str),
    /// A whole binary message.
    Binary(&'a [u8]),
    /// A whole compressed message (permessage-deflate), as received: the
    /// caller inflates it (at most `max_message_size` bytes) and, for text,
    /// checks that it is UTF-8.
    Compressed {
        /// Text (opcode 0x1) or binary.
        text: bool,
        /// The compressed payload, without the `00 00 ff ff` tail.
        payload: &'a [u8],
    },
    /// A ping; its pong is already in `out`.
    Ping(&'a [u8]),
    /// A pong.
    Pong(&'a [u8]),
    /// The peer's close frame (code and reason, if it gave them). In reply
    /// to it, a close frame is in `out` unless the server closed first; the
    /// connection is now [`State::Closed`].
    Close(Option<(u16, &'a str)>),
}

/// Why reading failed. Either way the answer (an HTTP refusal or a close
/// frame) is already in `out` and the connection is [`State::Closed`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// The upgrade request was refused.
    Handshake(HandshakeError),
    /// The peer broke the protocol.
    Protocol(ProtocolError),
}

impl From<ProtocolError> for Error {
    fn from(e: ProtocolError) -> Self {
        Error::Protocol(e)
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Handshake(e) => write!(f, "handshake refused: {e}"),
            Error::Protocol(e) => write!(f, "protocol error: {e}"),
        }
    }
}

impl std::error::Error for Error {}

/// One server-side connection.
#[derive(Debug, Clone)]
pub struct Connection {
    state: State,
    /// permessage-deflate, when agreed (2 bytes, in what was padding).
    deflate: Option<Params>,
    limits: Packed,
    decoder: Decoder,
    message: Assembler,
    partial: Partial,
}

/// How much of an incomplete text frame at the front of the input has
/// already been unmasked in place and checked as UTF-8, so that invalid
/// text fails as soon as its bytes arrive, not when its frame is whole.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Partial {
    unmasked: u32,
    validated: u32,
}

impl Connection {
    /// A connection whose upgrade request has yet to arrive.
    pub fn new(limits: Limits) -> Connection {
        Connection {
            state: State::Handshaking,
            deflate: None,
            limits: Packed::new(limits),
            decoder: Decoder::default(),
            message: Assembler::default(),
            partial: Partial::default(),
        }
    }

    /// A connection that is already open (the handshake happened elsewhere).
    pub fn open(limits: Limits) -> Connection {
        Connection {
            state: State::Open,
            ..Connection::new(limits)
        }
    }

    /// The current state.
    pub fn state(&self) -> State {
        self.state
    }

    /// permessage-deflate parameters, when agreed.
    pub fn deflate(&self) -> Option<&Params> {
        self.deflate.as_ref()
    }

    /// The limits this connection enforces (each at most `u32::MAX`).
    pub fn limits(&self) -> Limits {
        self.limits.get()
    }

    /// Can messages be sent to the peer?
    pub fn is_open(&self) -> bool {
        self.state == State::Open
    }

    /// Handles the next item in `input`: all bytes received and not yet
    /// consumed, as the previous call left them (it may have unmasked part of
    /// an incomplete frame in place, and remembers how much). Returns how many bytes were consumed and what happened;
    /// `(0, None)` means more bytes are needed. Call again with the rest
    /// until then. In `Closed` (or `AwaitingDecision`) nothing is consumed.
    pub fn read<'a>(
        &'a mut self,
        input: &'a mut [u8],
        out: &mut Vec<u8>,
    ) -> Result<(usize, Option<Event<'a>>), Error> {
        self.message.release();
        match self.state {
            State::Handshaking => self.read_request(input, out),
            State::Open | State::Closing => {
                let Connection {
                    state,
                    deflate,
                    limits,
                    message,
                    partial,
                    ..
                } = self;
                let compression = deflate.is_some();
                let limits = &limits.get();
                read_frame(state, compression, limits, message, partial, input, out).map_err(|e| {
                    // "_Fail the WebSocket Connection_": say why, then close.
                    if *state == State::Open {
                        encode_close(out, e.close_code(), e.reason());
                    }
                    *state = State::Closed;
                    Error::Protocol(e)
                })
            }
            State::AwaitingDecision | State::Closed => Ok((0, None)),
        }
    }

    fn read_request<'a>(
        &mut self,
        input: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(usize, Option<Event<'a>>), Error> {
        match self.decoder.decode(input, &self.limits.get()) {
            Ok(None) => Ok((0, None)),
            Ok(Some((request, n))) => {
                self.state = State::AwaitingDecision;
                Ok((n, Some(Event::Request(Box::new(request)))))
            }
            Err(e) => {
                self.reject(&e, out);
                Err(Error::Handshake(e))
            }
        }
    }

    /// Accepts the request handed out by `read`: writes the 101 response
    /// (with the selected subprotocol) and opens the connection. The caller
    /// has checked `request.validate()`, which gave `accept_key`.
    pub fn accept(&mut self, accept_key: &str, protocol: Option<&str>, out: &mut Vec<u8>) {
        self.accept_with(accept_key, protocol, None, out);
    }

    /// [`Connection::accept`], with permessage-deflate agreed when `deflate`
    /// is given (from [`negotiate`](crate::deflate::negotiate)): the 101
    /// carries its answer, and RSV1 is allowed on messages' first frames.
    pub fn accept_with(
        &mut self,
        accept_key: &str,
        protocol: Option<&str>,
        deflate: Option<Params>,
        out: &mut Vec<u8>,
    ) {
        if self.state == State::AwaitingDecision {
            let answer = deflate.map(|p| p.response_header());
            handshake::write_accept_with(out, accept_key, protocol, answer.as_deref());
            self.deflate = deflate;
            self.state = State::Open;
        }
    }

    /// Fails the connection for an error the caller found (a compressed
    /// message that does not inflate, inflates too big, or is not UTF-8):
    /// the close frame goes to `out` if the connection was open, and it is
    /// [`State::Closed`].
    pub fn fail(&mut self, error: &ProtocolError, out: &mut Vec<u8>) {
        if self.state == State::Open {
            encode_close(out, error.close_code(), error.reason());
        }
        if self.state != State::Handshaking {
            self.state = State::Closed;
        }
    }

    /// Refuses the request with the HTTP status of `err`.
    pub fn reject(&mut self, err: &HandshakeError, out: &mut Vec<u8>) {
        if matches!(self.state, State::Handshaking | State::AwaitingDecision) {
            handshake::write_refusal(out, err);
            self.state = State::Closed;
        }
    }

    /// Answers a request that is not an upgrade (e.g. `GET /health`).
    pub fn respond(&mut self, status: u16, body: &str, out: &mut Vec<u8>) {
        if matches!(self.state, State::Handshaking | State::AwaitingDecision) {
            handshake::write_response(out, status, &[], body);
            self.state = State::Closed;
        }
    }

    /// Starts the closing handshake from the server side: writes a close
    /// frame and waits for the peer's. Returns false (writing nothing) if the
    /// connection is not open.
    pub fn close(&mut self, code: u16, reason: &str, out: &mut Vec<u8>) -> bool {
        if self.state != State::Open {
            return false;
        }
        encode_close(out, code, reason);
        self.state = State::Closing;
        true
    }

    /// Gives up on the connection without a closing handshake (the peer
    /// vanished, or the server closes the socket).
    pub fn abort(&mut self) {
        self.state = State::Closed;
    }
}

/// Handles one frame in the Open or Closing state. Takes the connection's
/// fields one by one so that an event can borrow the message buffer while the
/// caller still updates the state on error.
fn read_frame<'a>(
    state: &mut State,
    compression: bool,
    limits: &Limits,
    message: &'a mut Assembler,
    partial: &mut Partial,
    input: &'a mut [u8],
    out: &mut Vec<u8>,
) -> Result<(usize, Option<Event<'a>>), ProtocolError> {
    let Some((header, header_len)) = FrameHeader::decode(input)? else {
        return Ok((0, None));
    };
    // "The server MUST close the connection upon receiving a frame that
    // is not masked." (5.1)
    let Some(key) = header.mask else {
        return Err(ProtocolError::UnmaskedFrame);
    };
    if header.rsv1 {
        // "MUST be 0 unless an extension is negotiated that defines meanings
        // for non-zero values" (RFC 6455 5.2); permessage-deflate sets it
        // on "the first frame of a message" only, never on control frames
        // (RFC 7692 6.1).
        if !compression {
            return Err(ProtocolError::NonZeroReservedBits);
        }
        if header.opcode.is_control() || header.opcode == OpCode::Continuation {
            return Err(ProtocolError::MisplacedRsv1);
        }
    }
    let closing = *state == State::Closing;
    check_size(&header, message, limits, closing)?;
    // check_size bounds payload_len by max_message_size (or 125).
    let total = header_len + header.payload_len as usize;
    if input.len() < total {
        // A text frame that starts a message is checked as it arrives: its
        // bytes so far are unmasked in place (they stay in the caller's
        // buffer, unconsumed) and validated, so invalid text fails on the
        // bytes that break it (Autobahn 6.4.3, 6.4.4).
        if header.opcode == OpCode::Text && !header.rsv1 && !message.in_progress() && !closing {
            let arrived = &mut input[header_len..];
            let from = partial.unmasked as usize;
            let len = arrived.len();
            if let (Some(fresh), Ok(upto)) = (arrived.get_mut(from..), u32::try_from(len)) {
                apply_mask(fresh, key, from);
                partial.unmasked = upto;
                match utf8::validate(arrived, partial.validated as usize, false) {
                    Utf8Status::Valid { pending } => partial.validated = upto - pending as u32,
                    Utf8Status::Invalid => return Err(ProtocolError::InvalidUtf8),
                }
            }
        }
        return Ok((0, None));
    }
    let done = std::mem::take(partial).unmasked as usize;
    if closing && !header.opcode.is_control() {
        // After our close frame the peer may still send data it wrote
        // before it saw ours; it is read and dropped (1.4), whatever its
        // place in a message: the peer may start a message, or continue one
        // we never saw start, and a finished closing handshake is still
        // owed. Only header rules (mask, size, reserved bits) still apply.
        return Ok((total, None));
    }
    let payload = &mut input[header_len..total];
    let done = done.min(payload.len());
    apply_mask(&mut payload[done..], key, done);
    let payload: &'a [u8] = payload;

    let event = match (header.opcode, message.in_progress()) {
        // "A fragmented message consists of a single frame with the FIN
        // bit clear and an opcode other than 0, followed by zero or more
        // frames with the FIN bit clear and the opcode set to 0, and
        // terminated by a single frame with the FIN bit set and an opcode
        // of 0." (5.4)
        (OpCode::Continuation, false) => return Err(ProtocolError::UnexpectedContinuation),
        (OpCode::Text | OpCode::Binary, true) => return Err(ProtocolError::ExpectedContinuation),
        // Compressed: inflated and checked by the caller (RFC 7692 6.2).
        (OpCode::Text | OpCode::Binary, false) if header.rsv1 && header.fin => {
            Some(Event::Compressed {
                text: header.opcode == OpCode::Text,
                payload,
            })
        }
        (OpCode::Text, false) if header.rsv1 => {
            message.start_compressed(Kind::Text, payload);
            None
        }
        (OpCode::Binary, false) if header.rsv1 => {
            message.start_compressed(Kind::Binary, payload);
            None
        }
        (OpCode::Text, false) if header.fin => Some(Event::Text(
            utf8::whole(payload).ok_or(ProtocolError::InvalidUtf8)?,
        )),
        (OpCode::Binary, false) if header.fin => Some(Event::Binary(payload)),
        (OpCode::Text, false) => {
            message.start(Kind::Text, payload)?;
            None
        }
        (OpCode::Binary, false) => {
            message.start(Kind::Binary, payload)?;
            None
        }
        (OpCode::Continuation, true) if message.is_compressed() => message
            .push(payload, header.fin)?
            .map(|(kind, data)| Event::Compressed {
                text: kind == Kind::Text,
                payload: data,
            }),
        (OpCode::Continuation, true) => match message.push(payload, header.fin)? {
            None => None,
            Some((Kind::Binary, data)) => Some(Event::Binary(data)),
            // Validated fragment by fragment; checked once more whole.
            Some((Kind::Text, data)) => Some(Event::Text(
                utf8::whole(data).ok_or(ProtocolError::InvalidUtf8)?,
            )),
        },
        // "Control frames MAY be injected in the middle of a fragmented
        // message." (5.4) They never touch the message being gathered.
        (OpCode::Ping, _) => {
            // "Upon receipt of a Ping frame, an endpoint MUST send a Pong
            // frame in response ... with identical Application data" (5.5.2)
            if !closing {
                encode_frame(out, OpCode::Pong, payload);
            }
            Some(Event::Ping(payload))
        }
        (OpCode::Pong, _) => Some(Event::Pong(payload)),
        (OpCode::Close, _) => {
            let parsed = close::parse_payload(payload)?;
            if !closing {
                // "the endpoint typically echos the status code it received" (5.5.1)
                match parsed {
                    Some((code, _)) => encode_close(out, code, ""),
                    None => encode_frame(out, OpCode::Close, &[]),
                }
            }
            *state = State::Closed;
            Some(Event::Close(parsed))
        }
    };
    Ok((total, event))
}

/// Refuses an oversized message as soon as a data frame's header says so,
/// before its payload is buffered. The whole message counts (fragments
/// gathered so far plus this frame), not only the frame. In `Closing`
/// nothing is gathered, so each dropped frame is bounded on its own.
fn check_size(
    header: &FrameHeader,
    message: &Assembler,
    limits: &Limits,
    closing: bool,
) -> Result<(), ProtocolError> {
    if header.opcode.is_control() {
        // At most 125 bytes, checked by the header decoder.
        return Ok(());
    }
    let gathered = match header.opcode {
        OpCode::Continuation if !closing => message.len(),
        _ => 0,
    };
    let size = gathered as u64 + header.payload_len;
    if size > limits.max_message_size as u64 {
        return Err(ProtocolError::MessageTooBig {
            size,
            max: limits.max_message_size,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests;
