//! Close frame payloads (RFC 6455 sections 5.5.1 and 7.4).

use crate::error::ProtocolError;

/// Close codes the server sends.
pub struct CloseCode;

impl CloseCode {
    /// Normal closure.
    pub const NORMAL: u16 = 1000;
    /// The server is shutting down.
    pub const GOING_AWAY: u16 = 1001;
    /// The peer broke the protocol.
    pub const PROTOCOL_ERROR: u16 = 1002;
    /// A text message (or close reason) that is not UTF-8.
    pub const INVALID_PAYLOAD: u16 = 1007;
    /// A message larger than the limit.
    pub const MESSAGE_TOO_BIG: u16 = 1009;
    /// The server failed while handling this client.
    pub const INTERNAL_ERROR: u16 = 1011;
    /// Disconnected by the `disconnect` command.
    pub const DISCONNECTED: u16 = 4000;
    /// The client read too slowly: its send buffer overflowed.
    pub const SEND_BUFFER_EXCEEDED: u16 = 4008;
}

/// May a peer send `code` in a close frame? (RFC 6455 7.4.1 and the IANA
/// registry: 1004-1006 and 1015 are reserved for local use, 1016-2999 are
/// unassigned, 3000-4999 are for libraries and applications.)
pub fn is_valid_code(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

/// Parses a received close payload into `(code, reason)`; an empty payload
/// means no code was given.
pub fn parse_payload(payload: &[u8]) -> Result<Option<(u16, &str)>, ProtocolError> {
    match payload {
        [] => Ok(None),
        [_] => Err(ProtocolError::InvalidClosePayload),
        [hi, lo, reason @ ..] => {
            let code = u16::from_be_bytes([*hi, *lo]);
            if !is_valid_code(code) {
                return Err(ProtocolError::InvalidCloseCode(code));
            }
            let reason =
                std::str::from_utf8(reason).map_err(|_| ProtocolError::InvalidCloseReason)?;
            Ok(Some((code, reason)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes() {
        for ok in [
            1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 4000, 4999,
        ] {
            assert!(is_valid_code(ok), "{ok}");
        }
        for bad in [
            0, 999, 1004, 1005, 1006, 1015, 1016, 2000, 2999, 5000, 65535,
        ] {
            assert!(!is_valid_code(bad), "{bad}");
        }
    }

    #[test]
    fn payloads() {
        assert_eq!(parse_payload(b""), Ok(None));
        assert_eq!(
            parse_payload(b"\x03"),
            Err(ProtocolError::InvalidClosePayload)
        );
        assert_eq!(parse_payload(b"\x03\xe8"), Ok(Some((1000, ""))));
        assert_eq!(parse_payload(b"\x03\xe8bye"), Ok(Some((1000, "bye"))));
        assert_eq!(
            parse_payload(b"\x03\xed"),
            Err(ProtocolError::InvalidCloseCode(1005))
        );
        assert_eq!(
            parse_payload(b"\x03\xe8\xff"),
            Err(ProtocolError::InvalidCloseReason)
        );
        assert_eq!(ProtocolError::InvalidCloseReason.close_code(), 1007);
        assert_eq!(ProtocolError::InvalidClosePayload.close_code(), 1002);
        assert_eq!(ProtocolError::InvalidCloseCode(5).close_code(), 1002);
    }
}
