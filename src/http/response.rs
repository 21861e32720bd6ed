//! Writing an HTTP/1.1 response into a caller-owned buffer.

use super::KeepAlive;

/// The reason phrase of the statuses this server sends.
pub fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        411 => "Length Required",
        413 => "Content Too Large",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

/// Appends a whole response to `out`: the status line, `Content-Type`, `Content-Length`,
/// `Connection: keep-alive|close`, the `extra` headers (`Allow`, `WWW-Authenticate`, ...), a
/// blank line, and `body`. Header names and values are ours, never a client's, so they are
/// written as given.
pub fn write(
    out: &mut Vec<u8>,
    status: u16,
    content_type: &str,
    extra: &[(&str, &str)],
    body: &[u8],
    keep: KeepAlive,
) {
    out.reserve(160 + body.len());
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(reason(status).as_bytes());
    out.extend_from_slice(b"\r\n");
    header(out, "Content-Type", content_type);
    header(out, "Content-Length", &body.len().to_string());
    header(out, "Connection", keep.header_value());
    for (name, value) in extra {
        header(out, name, value);
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
}

fn header(out: &mut Vec<u8>, name: &str, value: &str) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value.as_bytes());
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_a_whole_response() {
        let mut out = b"earlier".to_vec();
        write(
            &mut out,
            405,
            "application/json",
            &[("Allow", "POST")],
            b"{}",
            KeepAlive::Keep,
        );
        assert_eq!(
            std::str::from_utf8(&out).unwrap(),
            "earlierHTTP/1.1 405 Method Not Allowed\r\nContent-Type: application/json\r\n\
             Content-Length: 2\r\nConnection: keep-alive\r\nAllow: POST\r\n\r\n{}"
        );
        let mut out = Vec::new();
        write(&mut out, 200, "text/plain", &[], b"", KeepAlive::Close);
        assert_eq!(
            out,
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
    }

    #[test]
    fn reasons() {
        for status in [200, 400, 401, 404, 405, 411, 413, 431, 503] {
            assert_ne!(reason(status), "Unknown", "{status}");
        }
        assert_eq!(reason(299), "Unknown");
    }
}
