//! Request bodies and persistence: how many body bytes follow a head, and whether the connection
//! stays open after the answer. Sans-IO: decisions on a parsed [`Head`], nothing read or written.

use super::Head;

/// Whether the connection stays open after the response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeepAlive {
    /// Wait for the next request on it (under `handshake_timeout`, like a new connection).
    Keep,
    /// Close it once the response is written (a lingering close, as for a refused handshake).
    Close,
}

impl KeepAlive {
    /// The `Connection` header value that announces it.
    pub fn header_value(self) -> &'static str {
        match self {
            KeepAlive::Keep => "keep-alive",
            KeepAlive::Close => "close",
        }
    }
}

/// A body that is not taken. Each is answered at once, then the connection is closed: the end
/// of the body cannot be known (or is not worth reading), so nothing after it can be parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyError {
    /// `Transfer-Encoding` (chunked or any other), or a POST without `Content-Length`: 411.
    LengthRequired,
    /// A `Content-Length` that is not one plain decimal number: 400.
    InvalidLength,
    /// A `Content-Length` above `max_buffer_size`: 413.
    TooLarge,
}

impl BodyError {
    /// The HTTP status of the refusal.
    pub fn status(self) -> u16 {
        match self {
            BodyError::LengthRequired => 411,
            BodyError::InvalidLength => 400,
            BodyError::TooLarge => 413,
        }
    }

    /// The `code` of the JSON error body on API paths.
    pub fn code(self) -> &'static str {
        match self {
            BodyError::LengthRequired => "length_required",
            BodyError::InvalidLength => "bad_request",
            BodyError::TooLarge => "payload_too_large",
        }
    }

    /// One line for humans.
    pub fn message(self) -> &'static str {
        match self {
            BodyError::LengthRequired => {
                "send the body with Content-Length (chunked transfer encoding is not accepted)"
            }
            BodyError::InvalidLength => "Content-Length is not a valid length",
            BodyError::TooLarge => "the body is larger than max_buffer_size",
        }
    }
}

/// How many body bytes follow the head (0 for none), or why the body is refused. `max_body` is
/// `max_buffer_size`.
///
/// Only `Content-Length` bodies are taken (SPEC section 8). Any `Transfer-Encoding` is refused
/// with 411, even beside a `Content-Length` (RFC 9112 section 6.3 lets the encoding win, and the
/// pair is the classic request-smuggling shape). A POST without `Content-Length` is 411 too
/// rather than an empty body, which would only turn into a confusing `invalid_json`. Several
/// `Content-Length` headers should reach here joined with `,`, which is then invalid (400).
pub fn plan(head: &Head, max_body: usize) -> Result<usize, BodyError> {
    if head.transfer_encoding.is_some() {
        return Err(BodyError::LengthRequired);
    }
    let Some(value) = head.content_length.as_deref() else {
        return if head.method == "POST" || head.method == "PUT" || head.method == "PATCH" {
            Err(BodyError::LengthRequired)
        } else {
            Ok(0)
        };
    };
    let value = value.trim();
    // Digits only: no sign, no spaces inside, no list. usize parsing would accept a leading `+`.
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(BodyError::InvalidLength);
    }
    match value.parse::<usize>() {
        Ok(n) if n <= max_body => Ok(n),
        // Too many digits for usize is too large all the same.
        _ => Err(BodyError::TooLarge),
    }
}

/// Whether the connection stays open after answering `head` (RFC 9112 section 9.3): HTTP/1.1
/// keeps it unless `Connection: close`; HTTP/1.0 closes it unless `Connection: keep-alive`.
pub fn keep_alive(head: &Head) -> KeepAlive {
    let has = |token: &str| {
        head.connection
            .as_deref()
            .is_some_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    };
    let keep = if has("close") {
        false
    } else if head.http_minor == 0 {
        has("keep-alive")
    } else {
        true
    };
    if keep {
        KeepAlive::Keep
    } else {
        KeepAlive::Close
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(method: &str, minor: u8) -> Head {
        Head {
            method: method.into(),
            path: "/api/commands".into(),
            http_minor: minor,
            ..Head::default()
        }
    }

    #[test]
    fn content_length_table() {
        let mut h = head("POST", 1);
        for (value, expected) in [
            ("0", Ok(0)),
            ("17", Ok(17)),
            (" 100 ", Ok(100)),
            ("0100", Ok(100)),
            ("101", Err(BodyError::TooLarge)),
            ("99999999999999999999999999", Err(BodyError::TooLarge)),
            ("", Err(BodyError::InvalidLength)),
            ("+5", Err(BodyError::InvalidLength)),
            ("-1", Err(BodyError::InvalidLength)),
            ("5 5", Err(BodyError::InvalidLength)),
            ("5,5", Err(BodyError::InvalidLength)),
            ("0x10", Err(BodyError::InvalidLength)),
            ("1e3", Err(BodyError::InvalidLength)),
        ] {
            h.content_length = Some(value.into());
            assert_eq!(plan(&h, 100), expected, "{value:?}");
        }
    }

    #[test]
    fn transfer_encoding_and_missing_lengths() {
        let mut h = head("POST", 1);
        assert_eq!(plan(&h, 100), Err(BodyError::LengthRequired));
        h.transfer_encoding = Some("chunked".into());
        h.content_length = Some("5".into());
        assert_eq!(plan(&h, 100), Err(BodyError::LengthRequired));
        h.transfer_encoding = Some("gzip".into());
        assert_eq!(plan(&h, 100), Err(BodyError::LengthRequired));
        // A GET has no body unless it says so.
        let mut g = head("GET", 1);
        assert_eq!(plan(&g, 100), Ok(0));
        g.content_length = Some("3".into());
        assert_eq!(plan(&g, 100), Ok(3));
        for e in [
            BodyError::LengthRequired,
            BodyError::InvalidLength,
            BodyError::TooLarge,
        ] {
            assert!(!e.message().is_empty() && !e.code().is_empty());
        }
        assert_eq!(
            [411, 400, 413],
            [
                BodyError::LengthRequired.status(),
                BodyError::InvalidLength.status(),
                BodyError::TooLarge.status()
            ]
        );
    }

    #[test]
    fn keep_alive_table() {
        for (minor, connection, expected) in [
            (1, None, KeepAlive::Keep),
            (1, Some("keep-alive"), KeepAlive::Keep),
            (1, Some("close"), KeepAlive::Close),
            (1, Some("Keep-Alive, CLOSE"), KeepAlive::Close),
            (1, Some("TE, close"), KeepAlive::Close),
            (0, None, KeepAlive::Close),
            (0, Some("Keep-Alive"), KeepAlive::Keep),
            (0, Some("keep-alive, close"), KeepAlive::Close),
            (0, Some("upgrade"), KeepAlive::Close),
        ] {
            let mut h = head("GET", minor);
            h.connection = connection.map(Into::into);
            assert_eq!(keep_alive(&h), expected, "1.{minor} {connection:?}");
        }
        assert_eq!(KeepAlive::Keep.header_value(), "keep-alive");
        assert_eq!(KeepAlive::Close.header_value(), "close");
    }
}
