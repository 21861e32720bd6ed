//! The HTTP/1.1 upgrade request (RFC 6455 section 4.2) and the responses to it.
//!
//! [`Decoder`] finds the end of the request in bytes that arrive in any
//! number of pieces. It looks only at the bytes it has not looked at before
//! for the blank line that ends the headers, and runs `httparse` once, when
//! that blank line is there; a request that has not ended within
//! `max_handshake_size` bytes is refused with 431. (Re-parsing the whole
//! buffer on every read is quadratic: tungstenite's CVE-2023-43669.)

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use sha1::{Digest, Sha1};

use crate::error::HandshakeError;
use crate::limits::Limits;

/// The GUID every accept key is derived with (RFC 6455 section 1.3).
const GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// The most header lines httparse is given room for.
const HEADER_SLOTS: usize = 128;

/// The parts of an upgrade request the server decides on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Request {
    /// The method, e.g. `GET`.
    pub method: String,
    /// The path of the request target, without the query.
    pub path: String,
    /// The query string after `?`, if any.
    pub query: Option<String>,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub http_minor: u8,
    /// `Host`.
    pub host: Option<String>,
    /// `Origin`.
    pub origin: Option<String>,
    /// `Cookie` (several headers are joined with `; `).
    pub cookie: Option<String>,
    /// `Upgrade`.
    pub upgrade: Option<String>,
    /// `Connection`.
    pub connection: Option<String>,
    /// `Sec-WebSocket-Key`.
    pub key: Option<String>,
    /// `Sec-WebSocket-Version`.
    pub version: Option<String>,
    /// Every subprotocol offered in `Sec-WebSocket-Protocol`, in order.
    pub protocols: Vec<String>,
}

fn has_token(value: Option<&str>, token: &str) -> bool {
    value.is_some_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
}

impl Request {
    /// Does the request ask for an upgrade at all? (A plain `GET /health`
    /// does not.)
    pub fn is_upgrade(&self) -> bool {
        self.upgrade.is_some()
    }

    /// Checks the request against RFC 6455 section 4.2.1 and returns the
    /// `Sec-WebSocket-Accept` value to answer with.
    pub fn validate(&self) -> Result<String, HandshakeError> {
        if self.method != "GET" {
            return Err(HandshakeError::MethodNotAllowed);
        }
        if self.http_minor < 1 {
            return Err(HandshakeError::WrongHttpVersion);
        }
        if self.host.as_deref().map_or(true, |h| h.trim().is_empty()) {
            return Err(HandshakeError::MissingHost);
        }
        if !has_token(self.upgrade.as_deref(), "websocket") {
            return Err(HandshakeError::MissingUpgrade);
        }
        if !has_token(self.connection.as_deref(), "upgrade") {
            return Err(HandshakeError::MissingConnectionUpgrade);
        }
        match self.version.as_deref().map(str::trim) {
            None => return Err(HandshakeError::MissingVersion),
            Some("13") => {}
            Some(_) => return Err(HandshakeError::UnsupportedVersion),
        }
        let key = self.key.as_deref().map(str::trim).unwrap_or_default();
        // "a base64-encoded value that, when decoded, is 16 bytes in length" (4.1)
        match STANDARD.decode(key) {
            Ok(raw) if raw.len() == 16 => Ok(accept_key(key.as_bytes())),
            _ => Err(HandshakeError::InvalidKey),
        }
    }

    /// The first protocol the client offered that `supported` contains.
    pub fn select_protocol<'s>(&self, supported: &'s [String]) -> Option<&'s str> {
        self.protocols
            .iter()
            .find_map(|p| supported.iter().find(|s| *s == p))
            .map(String::as_str)
    }
}

/// `Sec-WebSocket-Accept` for a `Sec-WebSocket-Key`.
pub fn accept_key(key: &[u8]) -> String {
    let mut sha = Sha1::new();
    sha.update(key);
    sha.update(GUID);
    STANDARD.encode(sha.finalize())
}

/// Finds and parses one request in bytes that arrive in pieces.
#[derive(Debug, Clone, Default)]
pub struct Decoder {
    /// How many leading bytes are known not to contain the end of the headers.
    scanned: usize,
}

impl Decoder {
    /// Looks for a whole request at the start of `buf` (all bytes received so
    /// far). `Ok(None)`: not yet whole, nothing consumed. `Ok(Some((request,
    /// n)))`: the request took the first `n` bytes.
    pub fn decode(
        &mut self,
        buf: &[u8],
        limits: &Limits,
    ) -> Result<Option<(Request, usize)>, HandshakeError> {
        // Start 3 bytes back: the blank line may straddle two reads.
        let from = self.scanned.saturating_sub(3);
        let Some(end) = find_blank_line(buf, from) else {
            if buf.len() > limits.max_handshake_size {
                return Err(HandshakeError::TooLarge);
            }
            self.scanned = buf.len();
            return Ok(None);
        };
        if end > limits.max_handshake_size {
            return Err(HandshakeError::TooLarge);
        }
        let slots = limits.max_headers.min(HEADER_SLOTS);
        let mut headers = [httparse::EMPTY_HEADER; HEADER_SLOTS];
        let mut req = httparse::Request::new(&mut headers[..slots]);
        match req.parse(&buf[..end]) {
            Ok(httparse::Status::Complete(_)) => {}
            Ok(httparse::Status::Partial) => return Err(HandshakeError::Malformed),
            Err(httparse::Error::TooManyHeaders) => return Err(HandshakeError::TooManyHeaders),
            Err(_) => return Err(HandshakeError::Malformed),
        }
        let (Some(method), Some(target), Some(minor)) = (req.method, req.path, req.version) else {
            return Err(HandshakeError::Malformed);
        };
        let (path, query) = match target.split_once('?') {
            Some((p, q)) => (p.to_owned(), Some(q.to_owned())),
            None => (target.to_owned(), None),
        };
        let mut out = Request {
            method: method.to_owned(),
            path,
            query,
            http_minor: minor,
            ..Request::default()
        };
        for h in req.headers.iter() {
            let value = std::str::from_utf8(h.value)
                .map_err(|_| HandshakeError::Malformed)?
                .trim();
            let slot = match h.name.to_ascii_lowercase().as_str() {
                "host" => &mut out.host,
                "origin" => &mut out.origin,
                "upgrade" => &mut out.upgrade,
                "connection" => &mut out.connection,
                "sec-websocket-key" => &mut out.key,
                "sec-websocket-version" => &mut out.version,
                "cookie" => {
                    match &mut out.cookie {
                        Some(c) => {
                            c.push_str("; ");
                            c.push_str(value);
                        }
                        None => out.cookie = Some(value.to_owned()),
                    }
                    continue;
                }
                "sec-websocket-protocol" => {
                    out.protocols.extend(
                        value
                            .split(',')
                            .map(str::trim)
                            .filter(|p| !p.is_empty())
                            .map(str::to_owned),
                    );
                    continue;
                }
                _ => continue,
            };
            // Repeating a header the handshake depends on is ambiguous.
            if slot.is_some() {
                return Err(HandshakeError::Malformed);
            }
            *slot = Some(value.to_owned());
        }
        Ok(Some((out, end)))
    }
}

/// The index just past the first `\r\n\r\n` at or after `from`.
fn find_blank_line(buf: &[u8], from: usize) -> Option<usize> {
    buf.get(from..)?
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|p| from + p + 4)
}

/// Appends the 101 response that completes the handshake.
pub fn write_accept(out: &mut Vec<u8>, accept: &str, protocol: Option<&str>) {
    out.extend_from_slice(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ");
    out.extend_from_slice(accept.as_bytes());
    out.extend_from_slice(b"\r\n");
    if let Some(p) = protocol {
        out.extend_from_slice(b"Sec-WebSocket-Protocol: ");
        out.extend_from_slice(p.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// Appends a complete HTTP response that ends the connection: status line,
/// `Content-Type`, `Content-Length`, `Connection: close`, any extra headers
/// (`name: value` lines without line ends), and `body` as the whole body.
pub fn write_response(out: &mut Vec<u8>, status: u16, extra: &[&str], body: &str) {
    let phrase = match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        426 => "Upgrade Required",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Error",
    };
    let head = format!(
        "HTTP/1.1 {status} {phrase}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    out.extend_from_slice(head.as_bytes());
    for h in extra {
        out.extend_from_slice(h.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body.as_bytes());
}

/// Appends the refusal for `err`: its status, its reason as the body, and
/// the headers the status calls for (426: the version we speak; 405: `Allow`).
pub fn write_refusal(out: &mut Vec<u8>, err: &HandshakeError) {
    let extra: &[&str] = match err {
        HandshakeError::UnsupportedVersion => &["Sec-WebSocket-Version: 13"],
        HandshakeError::MethodNotAllowed => &["Allow: GET"],
        HandshakeError::ServiceUnavailable => &["Retry-After: 1"],
        _ => &[],
    };
    write_response(out, err.http_status(), extra, err.reason());
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID: &[u8] = b"GET /chat?token=abc HTTP/1.1\r\nHost: server.example.com\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nOrigin: http://example.com\r\nCookie: a=1\r\nCookie: b=2\r\nSec-WebSocket-Protocol: chat, superchat\r\nSec-WebSocket-Version: 13\r\n\r\n";

    fn decode(buf: &[u8]) -> Result<Option<(Request, usize)>, HandshakeError> {
        Decoder::default().decode(buf, &Limits::default())
    }

    fn request(raw: &str) -> Request {
        decode(raw.as_bytes()).unwrap().unwrap().0
    }

    #[test]
    fn rfc_1_3_accept_key() {
        assert_eq!(
            accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn parses_the_fields_the_daemon_decides_on() {
        let (req, n) = decode(VALID).unwrap().unwrap();
        assert_eq!(n, VALID.len());
        assert_eq!(req.path, "/chat");
        assert_eq!(req.query.as_deref(), Some("token=abc"));
        assert_eq!(req.host.as_deref(), Some("server.example.com"));
        assert_eq!(req.origin.as_deref(), Some("http://example.com"));
        assert_eq!(req.cookie.as_deref(), Some("a=1; b=2"));
        assert_eq!(req.protocols, vec!["chat", "superchat"]);
        assert_eq!(req.validate().unwrap(), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
        let supported = vec!["superchat".to_owned(), "chat".to_owned()];
        assert_eq!(req.select_protocol(&supported), Some("chat"));
        assert_eq!(req.select_protocol(&[]), None);
    }

    #[test]
    fn every_prefix_is_incomplete() {
        for len in 0..VALID.len() {
            assert_eq!(decode(&VALID[..len]), Ok(None), "prefix of {len} bytes");
        }
    }

    #[test]
    fn byte_at_a_time_with_one_decoder() {
        let mut d = Decoder::default();
        for len in 0..VALID.len() {
            assert_eq!(d.decode(&VALID[..len], &Limits::default()), Ok(None));
        }
        let (req, n) = d.decode(VALID, &Limits::default()).unwrap().unwrap();
        assert_eq!(n, VALID.len());
        assert!(req.validate().is_ok());
    }

    #[test]
    fn trailing_bytes_are_not_consumed() {
        let mut buf = VALID.to_vec();
        buf.extend_from_slice(b"\x81\x80");
        let (_, n) = decode(&buf).unwrap().unwrap();
        assert_eq!(n, VALID.len());
    }

    #[test]
    fn size_limit() {
        let limits = Limits {
            max_handshake_size: 64,
            ..Limits::default()
        };
        let mut d = Decoder::default();
        assert_eq!(d.decode(&[b'a'; 64], &limits), Ok(None));
        assert_eq!(
            d.decode(&[b'a'; 65], &limits),
            Err(HandshakeError::TooLarge)
        );
        assert_eq!(
            Decoder::default().decode(VALID, &limits),
            Err(HandshakeError::TooLarge)
        );
        assert_eq!(HandshakeError::TooLarge.http_status(), 431);
    }

    #[test]
    fn header_count_limit() {
        let limits = Limits {
            max_headers: 3,
            ..Limits::default()
        };
        assert_eq!(
            Decoder::default().decode(VALID, &limits),
            Err(HandshakeError::TooManyHeaders)
        );
        assert_eq!(HandshakeError::TooManyHeaders.http_status(), 431);
    }

    #[test]
    fn garbage_is_malformed() {
        assert_eq!(
            decode(b"\x16\x03\x01\r\n\r\n"),
            Err(HandshakeError::Malformed)
        );
        assert_eq!(
            decode(b"GET / HTTP/1.1\r\nHost\r\n\r\n"),
            Err(HandshakeError::Malformed)
        );
        assert_eq!(
            decode(b"GET / HTTP/2.0\r\n\r\n"),
            Err(HandshakeError::Malformed)
        );
    }

    const BASE: &str = "Host: h\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";

    #[track_caller]
    fn refused(raw: &str, expected: HandshakeError, status: u16) {
        assert_eq!(request(raw).validate(), Err(expected.clone()), "{raw}");
        assert_eq!(expected.http_status(), status);
    }

    #[test]
    fn each_refusal_and_its_status() {
        let ok = format!("GET / HTTP/1.1\r\n{BASE}Sec-WebSocket-Version: 13\r\n\r\n");
        assert!(request(&ok).validate().is_ok());
        refused(
            &format!("POST / HTTP/1.1\r\n{BASE}Sec-WebSocket-Version: 13\r\n\r\n"),
            HandshakeError::MethodNotAllowed,
            405,
        );
        refused(
            &format!("GET / HTTP/1.0\r\n{BASE}Sec-WebSocket-Version: 13\r\n\r\n"),
            HandshakeError::WrongHttpVersion,
            400,
        );
        refused(
            "GET / HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
            HandshakeError::MissingHost,
            400,
        );
        refused(
            "GET / HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
            HandshakeError::MissingUpgrade,
            400,
        );
        refused(
            "GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
            HandshakeError::MissingConnectionUpgrade,
            400,
        );
        refused(
            &format!("GET / HTTP/1.1\r\n{BASE}\r\n"),
            HandshakeError::MissingVersion,
            400,
        );
        refused(
            &format!("GET / HTTP/1.1\r\n{BASE}Sec-WebSocket-Version: 8\r\n\r\n"),
            HandshakeError::UnsupportedVersion,
            426,
        );
        refused(
            "GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: c2hvcnQ=\r\nSec-WebSocket-Version: 13\r\n\r\n",
            HandshakeError::InvalidKey,
            400,
        );
        refused(
            "GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n",
            HandshakeError::InvalidKey,
            400,
        );
    }

    #[test]
    fn duplicate_key_is_malformed() {
        let raw = format!(
            "GET / HTTP/1.1\r\n{BASE}Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        );
        assert_eq!(decode(raw.as_bytes()), Err(HandshakeError::Malformed));
    }

    #[test]
    fn plain_get_is_not_an_upgrade() {
        assert!(!request("GET /health HTTP/1.1\r\nHost: h\r\n\r\n").is_upgrade());
        assert!(request(&format!("GET / HTTP/1.1\r\n{BASE}\r\n")).is_upgrade());
    }

    #[test]
    fn responses_are_well_formed_http() {
        let mut out = Vec::new();
        write_refusal(&mut out, &HandshakeError::UnsupportedVersion);
        let text = String::from_utf8(out).unwrap();
        let body = "unsupported Sec-WebSocket-Version (13 only)";
        assert!(
            text.starts_with("HTTP/1.1 426 Upgrade Required\r\n"),
            "{text}"
        );
        assert!(text.contains("\r\nSec-WebSocket-Version: 13\r\n"));
        assert!(text.contains("\r\nConnection: close\r\n"));
        assert!(text.contains(&format!("\r\nContent-Length: {}\r\n", body.len())));
        assert!(text.ends_with(&format!("\r\n\r\n{body}")));

        let mut out = Vec::new();
        write_accept(&mut out, "abc=", Some("chat"));
        assert_eq!(
            out,
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: abc=\r\nSec-WebSocket-Protocol: chat\r\n\r\n"
        );
    }
}
