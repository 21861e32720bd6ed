//! RESP2, the Redis wire protocol, sans-IO: commands are encoded into a
//! caller-owned buffer, replies are parsed from one.
//!
//! [`parse`] returns `Ok(None)` and consumes nothing until a whole value is
//! there, so a caller appends what it reads and calls it again. Every length
//! is bounded ([`MAX_BULK`], [`MAX_ELEMENTS`], [`MAX_DEPTH`]) before anything
//! is allocated: a server (or whatever answers on that port) cannot make us
//! reserve gigabytes with one line.

use std::fmt;

/// The largest bulk string accepted (Redis's own default `proto-max-bulk-len`).
pub const MAX_BULK: usize = 512 * 1024 * 1024;
/// The most elements an array may announce.
pub const MAX_ELEMENTS: usize = 1024 * 1024;
/// How deeply arrays may nest (replies we use nest at most twice).
pub const MAX_DEPTH: usize = 8;
/// The longest simple string, error or integer line.
const MAX_LINE: usize = 64 * 1024;

/// One RESP2 value.
#[derive(Clone, PartialEq, Eq)]
pub enum Value {
    /// `+OK`
    Simple(String),
    /// `-ERR ...`
    Error(String),
    /// `:42`
    Integer(i64),
    /// `$3\r\nfoo`; `None` is the null bulk string `$-1`.
    Bulk(Option<Vec<u8>>),
    /// `*2\r\n...`; `None` is the null array `*-1`.
    Array(Option<Vec<Value>>),
}

impl fmt::Debug for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Simple(s) => write!(f, "+{s}"),
            Value::Error(s) => write!(f, "-{s}"),
            Value::Integer(n) => write!(f, ":{n}"),
            Value::Bulk(None) => f.write_str("$nil"),
            Value::Bulk(Some(b)) => write!(f, "${:?}", String::from_utf8_lossy(b)),
            Value::Array(None) => f.write_str("*nil"),
            Value::Array(Some(items)) => f.debug_list().entries(items).finish(),
        }
    }
}

impl Value {
    /// The bytes of a bulk or simple string.
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Value::Bulk(Some(b)) => Some(b),
            Value::Simple(s) => Some(s.as_bytes()),
            _ => None,
        }
    }

    /// The elements of a non-null array.
    pub fn as_array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(Some(items)) => Some(items),
            _ => None,
        }
    }

    /// Appends this value's encoding (what a server would send) to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Value::Simple(s) => line(out, b'+', s.as_bytes()),
            Value::Error(s) => line(out, b'-', s.as_bytes()),
            Value::Integer(n) => line(out, b':', n.to_string().as_bytes()),
            Value::Bulk(None) => out.extend_from_slice(b"$-1\r\n"),
            Value::Bulk(Some(b)) => bulk(out, b),
            Value::Array(None) => out.extend_from_slice(b"*-1\r\n"),
            Value::Array(Some(items)) => {
                line(out, b'*', items.len().to_string().as_bytes());
                for item in items {
                    item.encode(out);
                }
            }
        }
    }
}

/// Why a reply cannot be parsed: the connection is out of step and must be
/// dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RespError {
    /// A first byte that starts no RESP2 type.
    UnknownType(u8),
    /// A length or integer that is not a number, or a negative length other than -1.
    BadNumber,
    /// A bulk string whose data is not followed by CRLF.
    MissingCrlf,
    /// A length, line or nesting depth beyond the bounds.
    TooLarge,
    /// A simple string or error that is not UTF-8.
    NotUtf8,
}

impl fmt::Display for RespError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RespError::UnknownType(b) => write!(f, "unknown RESP type byte 0x{b:02x}"),
            RespError::BadNumber => f.write_str("malformed RESP length or integer"),
            RespError::MissingCrlf => f.write_str("RESP bulk string not followed by CRLF"),
            RespError::TooLarge => f.write_str("RESP value beyond the size bounds"),
            RespError::NotUtf8 => f.write_str("RESP simple string is not UTF-8"),
        }
    }
}

impl std::error::Error for RespError {}

/// Appends a command (an array of bulk strings) to `out`.
pub fn encode_command<A: AsRef<[u8]>>(args: &[A], out: &mut Vec<u8>) {
    line(out, b'*', args.len().to_string().as_bytes());
    for arg in args {
        bulk(out, arg.as_ref());
    }
}

fn line(out: &mut Vec<u8>, kind: u8, body: &[u8]) {
    out.push(kind);
    out.extend_from_slice(body);
    out.extend_from_slice(b"\r\n");
}

fn bulk(out: &mut Vec<u8>, data: &[u8]) {
    line(out, b'$', data.len().to_string().as_bytes());
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
}

/// Parses one value from the front of `buf`: `Ok(Some((value, consumed)))`,
/// or `Ok(None)` when more bytes are needed.
pub fn parse(buf: &[u8]) -> Result<Option<(Value, usize)>, RespError> {
    let mut pos = 0;
    match value(buf, &mut pos, 0)? {
        Some(v) => Ok(Some((v, pos))),
        None => Ok(None),
    }
}

/// The line starting at `*pos` (without CRLF), advancing past it.
fn read_line<'a>(buf: &'a [u8], pos: &mut usize) -> Result<Option<&'a [u8]>, RespError> {
    let rest = &buf[*pos..];
    let Some(end) = rest.windows(2).position(|w| w == b"\r\n") else {
        // A line of MAX_LINE bytes may be here with its CR, its LF still to come.
        if rest.len() > MAX_LINE + usize::from(rest.last() == Some(&b'\r')) {
            return Err(RespError::TooLarge);
        }
        return Ok(None);
    };
    if end > MAX_LINE {
        return Err(RespError::TooLarge);
    }
    *pos += end + 2;
    Ok(Some(&rest[..end]))
}

fn number(text: &[u8]) -> Result<i64, RespError> {
    std::str::from_utf8(text)
        .ok()
        .filter(|s| !s.is_empty() && !s.starts_with('+'))
        .and_then(|s| s.parse().ok())
        .ok_or(RespError::BadNumber)
}

/// A length: -1 (null) or 0..=max.
fn length(text: &[u8], max: usize) -> Result<Option<usize>, RespError> {
    match number(text)? {
        -1 => Ok(None),
        n if n < 0 => Err(RespError::BadNumber),
        n => {
            let n = usize::try_from(n).map_err(|_| RespError::TooLarge)?;
            if n > max {
                return Err(RespError::TooLarge);
            }
            Ok(Some(n))
        }
    }
}

fn value(buf: &[u8], pos: &mut usize, depth: usize) -> Result<Option<Value>, RespError> {
    if depth > MAX_DEPTH {
        return Err(RespError::TooLarge);
    }
    let Some(&kind) = buf.get(*pos) else {
        return Ok(None);
    };
    if !matches!(kind, b'+' | b'-' | b':' | b'$' | b'*') {
        return Err(RespError::UnknownType(kind));
    }
    let mut at = *pos + 1;
    let Some(text) = read_line(buf, &mut at)? else {
        return Ok(None);
    };
    let utf8 = |t: &[u8]| String::from_utf8(t.to_vec()).map_err(|_| RespError::NotUtf8);
    let v = match kind {
        b'+' => Value::Simple(utf8(text)?),
        b'-' => Value::Error(utf8(text)?),
        b':' => Value::Integer(number(text)?),
        b'$' => match length(text, MAX_BULK)? {
            None => Value::Bulk(None),
            Some(n) => {
                let end = at.checked_add(n).ok_or(RespError::TooLarge)?;
                if buf.len() < end + 2 {
                    return Ok(None);
                }
                if &buf[end..end + 2] != b"\r\n" {
                    return Err(RespError::MissingCrlf);
                }
                let data = buf[at..end].to_vec();
                at = end + 2;
                Value::Bulk(Some(data))
            }
        },
        _ => match length(text, MAX_ELEMENTS)? {
            None => Value::Array(None),
            Some(n) => {
                // Every element takes at least 3 bytes: do not trust `n`
                // for the allocation before they are there.
                let mut items = Vec::with_capacity(n.min((buf.len() - at) / 3));
                for _ in 0..n {
                    match value(buf, &mut at, depth + 1)? {
                        Some(item) => items.push(item),
                        None => return Ok(None),
                    }
                }
                Value::Array(Some(items))
            }
        },
    };
    *pos = at;
    Ok(Some(v))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::Bulk(Some(s.as_bytes().to_vec()))
    }

    #[test]
    fn encodes_commands() {
        let mut out = Vec::new();
        encode_command(&["SET", "k", ""], &mut out);
        assert_eq!(out, b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$0\r\n\r\n");
    }

    #[test]
    fn parses_every_type() {
        let table: &[(&[u8], Value)] = &[
            (b"+OK\r\n", Value::Simple("OK".into())),
            (b"-ERR no\r\n", Value::Error("ERR no".into())),
            (b":-42\r\n", Value::Integer(-42)),
            (b"$3\r\na\r\n\r\n", Value::Bulk(Some(b"a\r\n".to_vec()))),
            (b"$0\r\n\r\n", bulk("")),
            (b"$-1\r\n", Value::Bulk(None)),
            (b"*-1\r\n", Value::Array(None)),
            (b"*0\r\n", Value::Array(Some(vec![]))),
            (
                b"*3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$1\r\nx\r\n",
                Value::Array(Some(vec![bulk("message"), bulk("ch"), bulk("x")])),
            ),
            (
                b"*2\r\n*1\r\n:1\r\n+a\r\n",
                Value::Array(Some(vec![
                    Value::Array(Some(vec![Value::Integer(1)])),
                    Value::Simple("a".into()),
                ])),
            ),
        ];
        for (input, want) in table {
            let (got, used) = parse(input).unwrap().unwrap();
            assert_eq!(&got, want, "{:?}", String::from_utf8_lossy(input));
            assert_eq!(used, input.len());
            let mut again = Vec::new();
            got.encode(&mut again);
            assert_eq!(&again[..], *input);
            // Every strict prefix is incomplete, never an error.
            for cut in 0..input.len() {
                assert_eq!(parse(&input[..cut]), Ok(None), "prefix {cut} of {input:?}");
            }
        }
    }

    #[test]
    fn leaves_the_rest_for_the_next_call() {
        let input = b"+a\r\n:1\r\n";
        let (v, used) = parse(input).unwrap().unwrap();
        assert_eq!((v, used), (Value::Simple("a".into()), 4));
        assert_eq!(parse(&input[used..]).unwrap().unwrap().0, Value::Integer(1));
    }

    #[test]
    fn rejects_garbage() {
        let table: &[(&[u8], RespError)] = &[
            (b"?x\r\n", RespError::UnknownType(b'?')),
            (b":x\r\n", RespError::BadNumber),
            (b":\r\n", RespError::BadNumber),
            (b":+1\r\n", RespError::BadNumber),
            (b"$-2\r\n", RespError::BadNumber),
            (b"$1\r\nab\r\n", RespError::MissingCrlf),
            (b"$99999999999\r\n", RespError::TooLarge),
            (b"*99999999999\r\n", RespError::TooLarge),
            (b"$99999999999999999999999\r\n", RespError::BadNumber),
            (b"+\xff\r\n", RespError::NotUtf8),
        ];
        for (input, want) in table {
            assert_eq!(parse(input), Err(want.clone()), "{input:?}");
        }
        let deep = "*1\r\n".repeat(MAX_DEPTH + 2);
        assert_eq!(parse(deep.as_bytes()), Err(RespError::TooLarge));
        let long = vec![b'+'; MAX_LINE + 2];
        assert_eq!(parse(&long), Err(RespError::TooLarge));
    }

    #[test]
    fn a_huge_announced_array_allocates_nothing_up_front() {
        assert_eq!(parse(b"*1048576\r\n:1\r\n"), Ok(None));
    }

    /// A line of the longest length accepted arrives in two reads, split between its CR and
    /// its LF: the first part is incomplete, not too large (the fuzz target's prefix rule).
    #[test]
    fn the_longest_line_split_before_its_lf_is_incomplete() {
        let mut reply = vec![b'+'];
        reply.extend(std::iter::repeat_n(b'x', MAX_LINE));
        reply.extend_from_slice(b"\r\n");
        let (value, used) = parse(&reply).unwrap().unwrap();
        assert_eq!(used, reply.len());
        assert_eq!(value, Value::Simple("x".repeat(MAX_LINE)));
        for cut in [reply.len() - 1, reply.len() - 2, reply.len() / 2] {
            assert_eq!(parse(&reply[..cut]), Ok(None), "cut at {cut}");
        }
        // One byte more is refused, whole or in part.
        let mut long = vec![b'+'];
        long.extend(std::iter::repeat_n(b'x', MAX_LINE + 1));
        assert_eq!(parse(&long), Err(RespError::TooLarge));
        long.extend_from_slice(b"\r\n");
        assert_eq!(parse(&long), Err(RespError::TooLarge));
    }
}
