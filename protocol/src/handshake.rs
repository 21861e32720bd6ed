//! The HTTP/1.1 upgrade request (RFC 6455 section 4.2) and the responses to it.
//!
//! [`Decoder`] finds the end of the request in bytes that arrive in any
//! number of pieces. It looks only at the bytes it has not looked at before
//! for the blank line that ends the headers, and runs `httparse` once, when
//! that blank line is there; a request that has not ended within
//! `max_handshake_size` bytes is refused with 431. (Re-parsing the whole
//! buffer on every read is quadratic: tungstenite's CVE-2023-43669.)
//!
//! Lines may end in CRLF or in a bare LF (RFC 9112 section 2.2: "a
//! recipient MAY recognize a single LF as a line terminator"; httparse does),
//! so the blank line is `\n\n` or `\n\r\n` after the last header's line end;
//! `\r\n\r\n` is the second of those. Every request gets an answer, also one
//! typed by hand into `nc` (SPEC section 6).

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
    /// `Sec-WebSocket-Extensions`, several headers joined with `, ` (the
    /// header is a comma-separated list, RFC 6455 section 9.1). Kept whole:
    /// splitting on commas is the negotiator's job, as parameter values may
    /// be quoted strings.
    pub extensions: Option<String>,
    /// Whether the request has any `Sec-WebSocket-*` header, also one with an
    /// empty value or a name this parser does not know (SPEC section 14).
    pub websocket_headers: bool,
    /// `Authorization`, e.g. `Bearer KEY` for the HTTP API.
    pub authorization: Option<String>,
    /// `Content-Length`, parsed: only ASCII digits that fit in a `u64` (no
    /// sign, no list); anything else, or a repeated header, is malformed
    /// (400), as two lengths for one body is how requests are smuggled.
    pub content_length: Option<u64>,
    /// `Transfer-Encoding`, several headers joined with `, `.
    pub transfer_encoding: Option<String>,
    /// `X-Forwarded-For`, several headers joined with `, ` in order (a list header: the
    /// right-most entry is the nearest hop). Kept raw; the daemon reads it only from a proxy
    /// it trusts.
    pub forwarded_for: Option<String>,
}

fn has_token(value: Option<&str>, token: &str) -> bool {
    value.is_some_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
}

/// Appends a repeatable list header's value to `slot`, joined with `, `.
fn join_list(slot: &mut Option<String>, value: &str) {
    if value.is_empty() {
        return;
    }
    match slot {
        Some(v) => {
            v.push_str(", ");
            v.push_str(value);
        }
        None => *slot = Some(value.to_owned()),
    }
}

/// A `Content-Length` value: one or more ASCII digits. (`u64::from_str`
/// alone would also take a leading `+`.) A number beyond `u64` is
/// well-formed but larger than any limit: it saturates, so the caller
/// answers "too large" rather than "malformed".
fn parse_content_length(value: &str) -> Result<u64, HandshakeError> {
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(HandshakeError::Malformed);
    }
    Ok(value.parse().unwrap_or(u64::MAX))
}

impl Request {
    /// Does the request have an `Upgrade` header? (A plain `GET /health`
    /// does not.) Kept for the health check; to tell an HTTP request from a
    /// WebSocket attempt, use [`Request::attempts_upgrade`].
    pub fn is_upgrade(&self) -> bool {
        self.upgrade.is_some()
    }

    /// Does the request attempt a WebSocket upgrade, however badly? True
    /// with an `Upgrade` header, any `Sec-WebSocket-*` header, or `upgrade`
    /// among the `Connection` tokens (SPEC section 14). Such a request is
    /// judged as a handshake (section 3); any other is plain HTTP.
    pub fn attempts_upgrade(&self) -> bool {
        self.upgrade.is_some()
            || self.websocket_headers
            // For requests built by hand rather than decoded.
            || self.key.is_some()
            || self.version.is_some()
            || !self.protocols.is_empty()
            || self.extensions.is_some()
            || has_token(self.connection.as_deref(), "upgrade")
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
    /// (u32: a request is at most `max_handshake_size`, 1 MiB, and the
    /// daemon keeps one of these per connection.)
    scanned: u32,
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
        // Start 2 bytes back: the end of the head (at most 3 bytes,
        // `\n\r\n`) may straddle two reads, with at least its last byte new.
        let from = (self.scanned as usize).saturating_sub(2);
        let Some(end) = find_end_of_head(buf, from) else {
            if buf.len() > limits.max_handshake_size {
                return Err(HandshakeError::TooLarge);
            }
            self.scanned = u32::try_from(buf.len()).unwrap_or(u32::MAX);
            return Ok(None);
        };
        if end > limits.max_handshake_size {
            return Err(HandshakeError::TooLarge);
        }
        let slots = limits.max_headers.min(HEADER_SLOTS);
        let mut headers = [httparse::EMPTY_HEADER; HEADER_SLOTS];
        let mut req = httparse::Request::new(&mut headers[..slots]);
        match req.parse(&buf[..end]) {
            // httparse ends the head where `find_end_of_head` does; a shorter
            // parse would leave bytes of the head to be read as frames.
            Ok(httparse::Status::Complete(n)) if n == end => {}
            Ok(_) => return Err(HandshakeError::Malformed),
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
            let name = h.name.to_ascii_lowercase();
            if name.starts_with("sec-websocket-") {
                out.websocket_headers = true;
            }
            let slot = match name.as_str() {
                "host" => &mut out.host,
                "origin" => &mut out.origin,
                "upgrade" => &mut out.upgrade,
                "connection" => &mut out.connection,
                "sec-websocket-key" => &mut out.key,
                "sec-websocket-version" => &mut out.version,
                "authorization" => &mut out.authorization,
                "content-length" => {
                    if out.content_length.is_some() {
                        return Err(HandshakeError::Malformed);
                    }
                    out.content_length = Some(parse_content_length(value)?);
                    continue;
                }
                "transfer-encoding" => {
                    join_list(&mut out.transfer_encoding, value);
                    continue;
                }
                "x-forwarded-for" => {
                    join_list(&mut out.forwarded_for, value);
                    continue;
                }
                "sec-websocket-extensions" => {
                    join_list(&mut out.extensions, value);
                    continue;
                }
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
            // Repeating a header the server decides on is ambiguous.
            if slot.is_some() {
                return Err(HandshakeError::Malformed);
            }
            *slot = Some(value.to_owned());
        }
        Ok(Some((out, end)))
    }
}

/// The index just past the first blank line that starts at or after `from`:
/// a line end (`\n`, CR or not) followed by an empty line (`\n` or `\r\n`).
fn find_end_of_head(buf: &[u8], from: usize) -> Option<usize> {
    let tail = buf.get(from..)?;
    tail.iter().enumerate().find_map(|(i, &b)| {
        if b != b'\n' {
            return None;
        }
        match tail.get(i + 1..)? {
            [b'\n', ..] => Some(from + i + 2),
            [b'\r', b'\n', ..] => Some(from + i + 3),
            _ => None,
        }
    })
}

/// Appends the 101 response that completes the handshake.
pub fn write_accept(out: &mut Vec<u8>, accept: &str, protocol: Option<&str>) {
    write_accept_with(out, accept, protocol, None);
}

/// Appends the 101 response, with the agreed `Sec-WebSocket-Extensions`.
pub fn write_accept_with(
    out: &mut Vec<u8>,
    accept: &str,
    protocol: Option<&str>,
    extensions: Option<&str>,
) {
    out.extend_from_slice(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ");
    out.extend_from_slice(accept.as_bytes());
    out.extend_from_slice(b"\r\n");
    if let Some(p) = protocol {
        out.extend_from_slice(b"Sec-WebSocket-Protocol: ");
        out.extend_from_slice(p.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if let Some(e) = extensions {
        out.extend_from_slice(b"Sec-WebSocket-Extensions: ");
        out.extend_from_slice(e.as_bytes());
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
        429 => "Too Many Requests",
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
    let retry_after = match err {
        HandshakeError::TooManyRequests { retry_after, .. } => {
            format!("Retry-After: {retry_after}")
        }
        _ => String::new(),
    };
    let extra: &[&str] = match err {
        HandshakeError::UnsupportedVersion => &["Sec-WebSocket-Version: 13"],
        HandshakeError::MethodNotAllowed => &["Allow: GET"],
        HandshakeError::ServiceUnavailable => &["Retry-After: 1"],
        HandshakeError::TooManyRequests { .. } => &[retry_after.as_str()],
        _ => &[],
    };
    write_response(out, err.http_status(), extra, err.reason());
}

#[cfg(test)]
mod tests;
