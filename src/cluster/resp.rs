//! RESP2, the Redis wire protocol, sans-IO: commands are encoded into a
//! caller-owned buffer, replies are parsed from one.
//!
//! A [`Parser`] keeps its place in a reply that has not fully arrived: the
//! caller appends what it reads and calls it again, and the parser goes on
//! from the element where it stopped, so a reply of any size costs work
//! linear in its bytes however it is split across reads ([`parse`] is the
//! one-shot form). Nothing is consumed until a whole value is there. Every
//! length is bounded ([`MAX_BULK`], [`MAX_ELEMENTS`], [`MAX_DEPTH`],
//! [`MAX_VALUE`]) before anything is allocated or buffered for it: a server
//! (or whatever answers on that port) cannot make us reserve gigabytes with
//! one line.

use std::fmt;

/// The largest bulk string accepted (Redis's own default `proto-max-bulk-len`).
pub const MAX_BULK: usize = 512 * 1024 * 1024;
/// The most elements an array may announce.
pub const MAX_ELEMENTS: usize = 1024 * 1024;
/// How deeply arrays may nest (replies we use nest at most twice).
pub const MAX_DEPTH: usize = 8;
/// The longest simple string, error or integer line.
const MAX_LINE: usize = 64 * 1024;
/// The most bytes one value may span, all its elements together: a bulk string at its bound
/// plus the framing around it (a pub/sub message). Without it, only the count of elements
/// would bound a reply, each of them up to [`MAX_BULK`].
pub const MAX_VALUE: usize = MAX_BULK + 64 * 1024;

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

    /// What it is, for a log line: a simple string (its first 32 characters) or an integer
    /// as it reads, any other by its type (never all of it: a bulk string may be large).
    pub fn shape(&self) -> String {
        match self {
            Value::Simple(s) => format!("+{}", s.chars().take(32).collect::<String>()),
            Value::Error(_) => "an error".to_owned(),
            Value::Integer(n) => format!(":{n}"),
            Value::Bulk(_) => "a bulk string".to_owned(),
            Value::Array(None) => "a null array".to_owned(),
            Value::Array(Some(_)) => "an array".to_owned(),
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
/// or `Ok(None)` when more bytes are needed (see [`Parser`] to go on from there).
pub fn parse(buf: &[u8]) -> Result<Option<(Value, usize)>, RespError> {
    Parser::default().parse(buf)
}

/// A value being parsed across reads (see the module docs).
///
/// Between two calls the caller may only append to the buffer: the bytes of the value so far
/// must stay where they were. After a value is returned, the next call starts a new value at
/// the front of the buffer given (the caller drops the consumed bytes, or passes the rest).
#[derive(Debug)]
pub struct Parser {
    /// The most bytes a value may span ([`MAX_VALUE`] but in tests).
    max_value: usize,
    /// Bytes of the value parsed so far: whole elements, and array headers.
    pos: usize,
    /// Arrays opened and not yet full, outermost first: announced length, elements so far.
    open: Vec<(usize, Vec<Value>)>,
    /// The element at `pos` is a bulk string whose header is parsed: where its data starts,
    /// and its length.
    bulk: Option<(usize, usize)>,
    /// Bytes of the line at `pos` already searched for its CRLF.
    scanned: usize,
    /// Bytes looked at and elements built since the parser was made (see [`Parser::work`]).
    work: u64,
}

impl Default for Parser {
    fn default() -> Parser {
        Parser::with_max_value(MAX_VALUE)
    }
}

impl Parser {
    /// A parser whose values may span at most `max_value` bytes.
    pub fn with_max_value(max_value: usize) -> Parser {
        Parser {
            max_value,
            pos: 0,
            open: Vec::new(),
            bulk: None,
            scanned: 0,
            work: 0,
        }
    }

    /// Parses on from where the last call stopped: `Ok(Some((value, consumed)))`, or
    /// `Ok(None)` when more bytes are needed. After an error the connection is out of step
    /// (drop it, and the parser).
    pub fn parse(&mut self, buf: &[u8]) -> Result<Option<(Value, usize)>, RespError> {
        loop {
            let Some(element) = self.element(buf)? else {
                return Ok(None);
            };
            let mut done = element;
            // Attach it to the innermost open array; close every array it fills.
            loop {
                let Some((want, items)) = self.open.last_mut() else {
                    let used = self.pos;
                    self.pos = 0;
                    return Ok(Some((done, used)));
                };
                items.push(done);
                if items.len() < *want {
                    break;
                }
                let (_, items) = self.open.pop().unwrap_or_default();
                done = Value::Array(Some(items));
            }
        }
    }

    /// Bytes looked at and elements built so far, over every call: what a reply costs to
    /// parse. Linear in the reply's bytes however they were split across reads.
    pub fn work(&self) -> u64 {
        self.work
    }

    /// The element at `pos`: a value to attach, or `None` when it is incomplete. An array
    /// header with elements to come is opened and parsing goes on with its first element.
    fn element(&mut self, buf: &[u8]) -> Result<Option<Value>, RespError> {
        loop {
            if let Some((start, n)) = self.bulk {
                let end = start + n;
                if buf.len() < end + 2 {
                    return Ok(None);
                }
                if &buf[end..end + 2] != b"\r\n" {
                    return Err(RespError::MissingCrlf);
                }
                self.work += n as u64 + 1;
                self.bulk = None;
                self.pos = end + 2;
                return Ok(Some(Value::Bulk(Some(buf[start..end].to_vec()))));
            }
            if self.open.len() > MAX_DEPTH || self.pos > self.max_value {
                return Err(RespError::TooLarge);
            }
            let Some(&kind) = buf.get(self.pos) else {
                return Ok(None);
            };
            if !matches!(kind, b'+' | b'-' | b':' | b'$' | b'*') {
                return Err(RespError::UnknownType(kind));
            }
            let Some(text) = self.line(buf)? else {
                return Ok(None);
            };
            let at = self.pos + 1 + text.len() + 2;
            self.work += 1;
            let utf8 = |t: &[u8]| String::from_utf8(t.to_vec()).map_err(|_| RespError::NotUtf8);
            let v = match kind {
                b'+' => Value::Simple(utf8(text)?),
                b'-' => Value::Error(utf8(text)?),
                b':' => Value::Integer(number(text)?),
                b'$' => match length(text, MAX_BULK)? {
                    None => Value::Bulk(None),
                    Some(n) => {
                        if at.checked_add(n).map_or(true, |end| end > self.max_value) {
                            return Err(RespError::TooLarge);
                        }
                        self.bulk = Some((at, n));
                        self.pos = at;
                        continue;
                    }
                },
                _ => match length(text, MAX_ELEMENTS)? {
                    None => Value::Array(None),
                    Some(0) => Value::Array(Some(Vec::new())),
                    Some(n) => {
                        // Every element takes at least 3 bytes: do not trust `n`
                        // for the allocation before they are there.
                        let items = Vec::with_capacity(n.min(buf.len().saturating_sub(at) / 3));
                        self.open.push((n, items));
                        self.pos = at;
                        continue;
                    }
                },
            };
            self.pos = at;
            return Ok(Some(v));
        }
    }

    /// The line after the type byte at `pos` (without CRLF), searched from where the last
    /// search stopped; `None` while its CRLF has not arrived.
    fn line<'a>(&mut self, buf: &'a [u8]) -> Result<Option<&'a [u8]>, RespError> {
        let rest = &buf[self.pos + 1..];
        // The last byte looked at may be the CR of a CRLF whose LF had not arrived.
        let from = self.scanned.saturating_sub(1).min(rest.len());
        let found = rest[from..].windows(2).position(|w| w == b"\r\n");
        let Some(end) = found.map(|i| from + i) else {
            self.work += (rest.len() - from) as u64;
            // Too long once even a CRLF right after these bytes would end it too late (not
            // before: a last byte that is a CR may end the line at exactly `MAX_LINE`).
            if rest.len() > MAX_LINE + 1 {
                return Err(RespError::TooLarge);
            }
            self.scanned = rest.len();
            return Ok(None);
        };
        self.work += (end + 2 - from) as u64;
        self.scanned = 0;
        if end > MAX_LINE {
            return Err(RespError::TooLarge);
        }
        Ok(Some(&rest[..end]))
    }
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
        let long = vec![b'+'; MAX_LINE + 3];
        assert_eq!(parse(&long), Err(RespError::TooLarge));
        // The longest line, and every prefix of it, is fine.
        let mut longest = vec![b'+'; MAX_LINE + 1];
        longest.extend_from_slice(b"\r\n");
        for cut in [MAX_LINE, MAX_LINE + 1, MAX_LINE + 2] {
            assert_eq!(parse(&longest[..cut]), Ok(None), "prefix {cut}");
        }
        assert!(matches!(parse(&longest), Ok(Some((Value::Simple(_), _)))));
        longest.insert(1, b'+');
        assert_eq!(parse(&longest), Err(RespError::TooLarge));
    }

    #[test]
    fn a_huge_announced_array_allocates_nothing_up_front() {
        assert_eq!(parse(b"*1048576\r\n:1\r\n"), Ok(None));
    }

    /// Feeds `input` to one parser in pieces of `chunk` bytes (as reads would append them):
    /// every value it yields, the calls it took, its work.
    fn in_pieces(input: &[u8], chunk: usize) -> (Vec<Value>, u64, u64) {
        let mut parser = Parser::default();
        let mut buf = Vec::new();
        let (mut values, mut calls) = (Vec::new(), 0);
        for piece in input.chunks(chunk) {
            buf.extend_from_slice(piece);
            loop {
                calls += 1;
                match parser.parse(&buf).unwrap() {
                    Some((v, used)) => {
                        values.push(v);
                        buf.drain(..used);
                    }
                    None => break,
                }
            }
        }
        assert!(buf.is_empty(), "left over: {buf:?}");
        (values, calls, parser.work())
    }

    #[test]
    fn a_value_split_anywhere_parses_as_when_whole() {
        let input: &[u8] = b"*3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$5\r\na\r\nbc\r\n\
            +OK\r\n*2\r\n*1\r\n:-1\r\n$-1\r\n*0\r\n-ERR x\r\n*-1\r\n$0\r\n\r\n";
        let mut whole = Vec::new();
        let mut rest = input;
        while let Some((v, used)) = parse(rest).unwrap() {
            whole.push(v);
            rest = &rest[used..];
        }
        assert!(rest.is_empty());
        assert_eq!(whole.len(), 7);
        for chunk in 1..=input.len() {
            assert_eq!(in_pieces(input, chunk).0, whole, "pieces of {chunk}");
        }
        // An error is found however the bytes arrive.
        for chunk in 1..6 {
            let mut parser = Parser::default();
            let bad = b"*2\r\n$1\r\nab\r\n";
            let mut buf = Vec::new();
            let mut seen = None;
            for piece in bad.chunks(chunk) {
                buf.extend_from_slice(piece);
                if let Err(e) = parser.parse(&buf) {
                    seen = Some(e);
                    break;
                }
            }
            assert_eq!(seen, Some(RespError::MissingCrlf), "pieces of {chunk}");
        }
    }

    /// An `HGETALL` reply of `clients` presence entries, as a 100k-client snapshot is.
    fn snapshot(clients: usize) -> Vec<u8> {
        let mut fields = Vec::new();
        for i in 0..clients {
            fields.push(Value::Bulk(Some(format!("c{i:07}").into_bytes())));
            let entry = format!(r#"{i} 1700000000 {{"id":"c{i:07}","name":"Guest","email":null}}"#);
            fields.push(Value::Bulk(Some(entry.into_bytes())));
        }
        let mut out = Vec::new();
        Value::Array(Some(fields)).encode(&mut out);
        out
    }

    #[test]
    fn a_reply_costs_work_linear_in_its_bytes_however_it_arrives() {
        let reply = snapshot(100_000);
        let (whole, _, once) = in_pieces(&reply, reply.len());
        assert_eq!(whole[0].as_array().map(<[Value]>::len), Some(200_000));
        assert!(
            once <= 2 * reply.len() as u64,
            "{once} for {} bytes",
            reply.len()
        );
        // The link reads 16 KiB at a time; a trickle comes a byte at a time. Each call may
        // look again at the one byte where the last stopped, nothing more.
        for (reply, chunk) in [(&reply, 16 * 1024), (&snapshot(2_000), 1)] {
            let once = in_pieces(reply, reply.len()).2;
            let (values, calls, split) = in_pieces(reply, chunk);
            assert_eq!(values.len(), 1);
            assert!(
                split <= once + 2 * calls,
                "pieces of {chunk}: work {split} over {calls} calls, {once} when whole"
            );
        }
    }

    #[test]
    fn a_value_beyond_its_byte_bound_is_refused_before_it_arrives() {
        let mut parser = Parser::with_max_value(100);
        // The second bulk string would end past byte 100: refused from its header.
        let input = b"*2\r\n$60\r\n";
        let mut buf = input.to_vec();
        buf.extend_from_slice(&[b'x'; 60]);
        buf.extend_from_slice(b"\r\n$60\r\n");
        assert_eq!(parser.parse(&buf), Err(RespError::TooLarge));
        // Many small elements add up the same way.
        let mut parser = Parser::with_max_value(100);
        let many = format!("*100\r\n{}", ":1\r\n".repeat(100));
        assert_eq!(parser.parse(many.as_bytes()), Err(RespError::TooLarge));
        // Within the bound, the same shape parses.
        let fits = format!("*20\r\n{}", ":1\r\n".repeat(20));
        let (v, used) = Parser::with_max_value(100)
            .parse(fits.as_bytes())
            .unwrap()
            .unwrap();
        assert_eq!(
            (v.as_array().map(<[Value]>::len), used),
            (Some(20), fits.len())
        );
    }
}
