//! Typed errors, one variant per rule, each mapping to what goes on the wire:
//! [`ProtocolError::close_code`] and [`HandshakeError::http_status`].

use std::fmt;

/// A violation of RFC 6455 by the peer (or of our limits) after the handshake.
/// The connection is failed with [`ProtocolError::close_code`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProtocolError {
    /// RSV1-3 set with no extension negotiated (or RSV2/RSV3 at all).
    NonZeroReservedBits,
    /// RSV1 (compressed) on a control frame or a continuation frame:
    /// permessage-deflate sets it on a message's first frame only
    /// (RFC 7692 section 6.1).
    MisplacedRsv1,
    /// A compressed message that does not inflate.
    BadCompressedData,
    /// Opcode 0x3-0x7 or 0xB-0xF.
    ReservedOpCode(u8),
    /// A control frame without FIN.
    FragmentedControlFrame,
    /// A control frame with more than 125 bytes of payload.
    ControlFrameTooBig,
    /// A 16- or 64-bit length that would have fit in fewer bytes.
    NonMinimalLength,
    /// A 64-bit length with its most significant bit set.
    LengthMsbSet,
    /// A client frame without a mask.
    UnmaskedFrame,
    /// A continuation frame with no message in progress.
    UnexpectedContinuation,
    /// A text or binary frame while a fragmented message is in progress.
    ExpectedContinuation,
    /// A message (or frame) larger than `max_message_size`.
    MessageTooBig {
        /// The size seen so far.
        size: u64,
        /// The limit.
        max: usize,
    },
    /// A text message, or a close reason, that is not UTF-8.
    InvalidUtf8,
    /// A close frame with a 1-byte payload.
    InvalidClosePayload,
    /// A close frame with a code that may not be sent (RFC 6455 7.4).
    InvalidCloseCode(u16),
    /// A close reason that is not UTF-8.
    InvalidCloseReason,
}

impl ProtocolError {
    /// The close code this error fails the connection with.
    pub fn close_code(&self) -> u16 {
        match self {
            ProtocolError::MessageTooBig { .. } => 1009,
            ProtocolError::InvalidUtf8 | ProtocolError::InvalidCloseReason => 1007,
            _ => 1002,
        }
    }

    /// A short reason for the close frame.
    pub fn reason(&self) -> &'static str {
        match self {
            ProtocolError::NonZeroReservedBits => "reserved bits set",
            ProtocolError::MisplacedRsv1 => "RSV1 on a control or continuation frame",
            ProtocolError::BadCompressedData => "invalid compressed data",
            ProtocolError::ReservedOpCode(_) => "reserved opcode",
            ProtocolError::FragmentedControlFrame => "fragmented control frame",
            ProtocolError::ControlFrameTooBig => "control frame too big",
            ProtocolError::NonMinimalLength => "non-minimal length",
            ProtocolError::LengthMsbSet => "length most significant bit set",
            ProtocolError::UnmaskedFrame => "client frame not masked",
            ProtocolError::UnexpectedContinuation => "unexpected continuation frame",
            ProtocolError::ExpectedContinuation => "expected continuation frame",
            ProtocolError::MessageTooBig { .. } => "message too big",
            ProtocolError::InvalidUtf8 => "invalid utf-8",
            ProtocolError::InvalidClosePayload => "invalid close payload",
            ProtocolError::InvalidCloseCode(_) => "invalid close code",
            ProtocolError::InvalidCloseReason => "invalid utf-8 in close reason",
        }
    }
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProtocolError::ReservedOpCode(op) => write!(f, "reserved opcode {op:#x}"),
            ProtocolError::MessageTooBig { size, max } => {
                write!(f, "message of {size} bytes exceeds the limit of {max}")
            }
            ProtocolError::InvalidCloseCode(code) => write!(f, "invalid close code {code}"),
            other => f.write_str(other.reason()),
        }
    }
}

impl std::error::Error for ProtocolError {}

/// Why an upgrade request is refused. Each maps to an HTTP status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HandshakeError {
    /// Not parseable as HTTP/1.x.
    Malformed,
    /// HTTP/1.0 (RFC 6455 needs 1.1 or later).
    WrongHttpVersion,
    /// A method other than GET.
    MethodNotAllowed,
    /// No `Host` header.
    MissingHost,
    /// No `Upgrade: websocket`.
    MissingUpgrade,
    /// No `upgrade` token in `Connection`.
    MissingConnectionUpgrade,
    /// No `Sec-WebSocket-Key`, or one that is not 16 base64-encoded bytes.
    InvalidKey,
    /// No `Sec-WebSocket-Version`.
    MissingVersion,
    /// A `Sec-WebSocket-Version` other than 13.
    UnsupportedVersion,
    /// The request is larger than `max_handshake_size`.
    TooLarge,
    /// The request has more than `max_headers` header lines.
    TooManyHeaders,
    /// `Host` is not in `allowed_hosts` (decided by the daemon).
    HostNotAllowed,
    /// `Origin` is missing or not allowed (decided by the daemon).
    OriginNotAllowed,
    /// The session token is invalid (decided by the daemon).
    Unauthorized,
    /// The server is full (decided by the daemon).
    ServiceUnavailable,
    /// Too many connections or handshakes from this client (decided by the daemon): 429 with
    /// `Retry-After` in seconds.
    TooManyRequests {
        /// The one-line body (which limit refused).
        reason: &'static str,
        /// Seconds the client should wait.
        retry_after: u32,
    },
}

impl HandshakeError {
    /// The HTTP status of the refusal.
    pub fn http_status(&self) -> u16 {
        match self {
            HandshakeError::Malformed
            | HandshakeError::WrongHttpVersion
            | HandshakeError::MissingHost
            | HandshakeError::MissingUpgrade
            | HandshakeError::MissingConnectionUpgrade
            | HandshakeError::InvalidKey
            | HandshakeError::MissingVersion
            | HandshakeError::HostNotAllowed => 400,
            HandshakeError::Unauthorized => 401,
            HandshakeError::OriginNotAllowed => 403,
            HandshakeError::MethodNotAllowed => 405,
            HandshakeError::UnsupportedVersion => 426,
            HandshakeError::TooManyRequests { .. } => 429,
            HandshakeError::TooLarge | HandshakeError::TooManyHeaders => 431,
            HandshakeError::ServiceUnavailable => 503,
        }
    }

    /// The one-line body of the refusal.
    pub fn reason(&self) -> &'static str {
        match self {
            HandshakeError::Malformed => "malformed HTTP request",
            HandshakeError::WrongHttpVersion => "HTTP/1.1 required",
            HandshakeError::MethodNotAllowed => "only GET can be upgraded",
            HandshakeError::MissingHost => "missing Host header",
            HandshakeError::MissingUpgrade => "missing Upgrade: websocket header",
            HandshakeError::MissingConnectionUpgrade => "missing Connection: upgrade header",
            HandshakeError::InvalidKey => "missing or invalid Sec-WebSocket-Key",
            HandshakeError::MissingVersion => "missing Sec-WebSocket-Version",
            HandshakeError::UnsupportedVersion => "unsupported Sec-WebSocket-Version (13 only)",
            HandshakeError::TooLarge => "request headers too large",
            HandshakeError::TooManyHeaders => "too many request headers",
            HandshakeError::HostNotAllowed => "host not allowed",
            HandshakeError::OriginNotAllowed => "origin not allowed",
            HandshakeError::Unauthorized => "invalid session token",
            HandshakeError::ServiceUnavailable => "server is at its connection limit",
            HandshakeError::TooManyRequests { reason, .. } => reason,
        }
    }
}

impl fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.http_status(), self.reason())
    }
}

impl std::error::Error for HandshakeError {}
