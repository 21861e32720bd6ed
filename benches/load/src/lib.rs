//! Shared pieces of the load generator, the peers and the comparison driver:
//! a non-blocking WebSocket client connection for mio, `/proc` readers and
//! small statistics helpers.

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use mio::net::TcpStream;
use rakit_protocol::{encode_masked, FrameHeader, OpCode};

/// The key every client sends (RFC 6455's sample nonce) and its accept value.
pub const WS_KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
/// `Sec-WebSocket-Accept` for [`WS_KEY`].
pub const WS_ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

/// `[api] key` of `rakit-api-bench.toml`, the config of the `api` workload.
pub const API_BENCH_KEY: &str = "bench-api-key-0123456789";
/// `[session] secret` of `rakit-api-bench.toml` (the admin's session token is
/// signed with it).
pub const API_BENCH_SECRET: &str = "bench-session-secret-0123456789";

/// What a read pass found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadState {
    /// The socket has no more bytes for now.
    Blocked,
    /// The peer closed (EOF, reset or a close frame).
    Closed,
}

/// Offer permessage-deflate (RFC 7692) in every upgrade request, and inflate
/// compressed messages before they are checked (`loadgen --deflate`).
pub static DEFLATE: AtomicBool = AtomicBool::new(false);
/// Bytes read from every socket, for the bytes-on-the-wire figure.
pub static WIRE_BYTES: AtomicU64 = AtomicU64::new(0);

thread_local! {
    static INFLATER: std::cell::RefCell<(rakit_protocol::deflate::Inflater, Vec<u8>)> =
        std::cell::RefCell::new(Default::default());
}

/// One client WebSocket connection driven by a mio loop (edge-triggered:
/// every read pass drains the socket until `WouldBlock`).
pub struct WsClient {
    /// The socket.
    pub stream: TcpStream,
    /// TCP connect finished.
    pub connected: bool,
    /// The 101 response arrived.
    pub open: bool,
    /// Unconsumed input (a partial frame or response).
    rbuf: Vec<u8>,
    /// Output not yet accepted by the socket.
    wbuf: Vec<u8>,
    wpos: usize,
    mask: [u8; 4],
}

impl WsClient {
    /// Starts a non-blocking connect and queues the upgrade request.
    pub fn connect(addr: SocketAddr, seed: u32) -> io::Result<WsClient> {
        WsClient::connect_path(addr, seed, "/")
    }

    /// [`WsClient::connect`] to `path` (with its query, e.g. `/?token=T`).
    pub fn connect_path(addr: SocketAddr, seed: u32, path: &str) -> io::Result<WsClient> {
        let stream = connect(addr)?;
        let mut c = WsClient {
            stream,
            connected: false,
            open: false,
            rbuf: Vec::new(),
            wbuf: Vec::new(),
            wpos: 0,
            mask: seed.wrapping_mul(0x9E37_79B9).to_le_bytes(),
        };
        let extensions = if DEFLATE.load(Ordering::Relaxed) {
            "Sec-WebSocket-Extensions: permessage-deflate; client_no_context_takeover; \
             server_no_context_takeover\r\n"
        } else {
            ""
        };
        let req = format!(
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: {WS_KEY}\r\nSec-WebSocket-Version: 13\r\n{extensions}\r\n"
        );
        c.wbuf.extend_from_slice(req.as_bytes());
        Ok(c)
    }

    /// Queues one masked text frame (call [`WsClient::flush`] to send it).
    pub fn queue_text(&mut self, payload: &[u8]) {
        self.queue(OpCode::Text, payload);
    }

    fn queue(&mut self, opcode: OpCode, payload: &[u8]) {
        if self.wpos == self.wbuf.len() {
            self.wbuf.clear();
            self.wpos = 0;
        }
        encode_masked(&mut self.wbuf, true, opcode, payload, self.mask);
    }

    /// Bytes queued and not yet written.
    pub fn pending(&self) -> usize {
        self.wbuf.len() - self.wpos
    }

    /// Writes what the socket takes. Before the connect finished this checks
    /// whether it has.
    pub fn flush(&mut self) -> io::Result<()> {
        flush(
            &mut self.stream,
            &mut self.connected,
            &mut self.wbuf,
            &mut self.wpos,
        )
    }

    /// Reads until `WouldBlock`; calls `on_open` when the 101 arrives and
    /// `on_msg` with the payload of every text or binary message (servers'
    /// frames are unmasked; fragmented messages are not expected from the
    /// servers under test and are reported as an error).
    pub fn read_ready(
        &mut self,
        scratch: &mut [u8],
        on_open: &mut dyn FnMut(),
        on_msg: &mut dyn FnMut(&[u8]),
    ) -> io::Result<ReadState> {
        loop {
            let n = match read_some(&mut self.stream, scratch)? {
                Ok(n) => n,
                Err(state) => return Ok(state),
            };
            self.connected = true;
            WIRE_BYTES.fetch_add(n as u64, Ordering::Relaxed);
            let closed = if self.rbuf.is_empty() {
                let (used, closed) = self.consume(&scratch[..n], on_open, on_msg)?;
                self.rbuf.extend_from_slice(&scratch[used..n]);
                closed
            } else {
                let mut buf = std::mem::take(&mut self.rbuf);
                buf.extend_from_slice(&scratch[..n]);
                let (used, closed) = self.consume(&buf, on_open, on_msg)?;
                buf.drain(..used);
                self.rbuf = buf;
                closed
            };
            if closed {
                return Ok(ReadState::Closed);
            }
            if self.rbuf.is_empty() && self.rbuf.capacity() > 64 * 1024 {
                self.rbuf = Vec::new();
            }
        }
    }

    /// Parses what it can of `buf`: returns bytes used and whether a close
    /// frame came.
    fn consume(
        &mut self,
        buf: &[u8],
        on_open: &mut dyn FnMut(),
        on_msg: &mut dyn FnMut(&[u8]),
    ) -> io::Result<(usize, bool)> {
        let mut pos = 0;
        if !self.open {
            let Some(end) = find(buf, b"\r\n\r\n") else {
                if buf.len() > 16 * 1024 {
                    return Err(bad("handshake response too long"));
                }
                return Ok((0, false));
            };
            let head = &buf[..end];
            if !head.starts_with(b"HTTP/1.1 101") {
                return Err(bad(&format!(
                    "handshake refused: {}",
                    String::from_utf8_lossy(&head[..head.len().min(80)])
                )));
            }
            if find(head, WS_ACCEPT.as_bytes()).is_none() {
                return Err(bad("wrong Sec-WebSocket-Accept"));
            }
            self.open = true;
            pos = end + 4;
            on_open();
        }
        loop {
            let (h, hl) = match FrameHeader::decode(&buf[pos..]) {
                Ok(Some(x)) => x,
                Ok(None) => return Ok((pos, false)),
                Err(e) => return Err(bad(&format!("bad frame from server: {e:?}"))),
            };
            let len = h.payload_len as usize;
            if buf.len() - pos - hl < len {
                return Ok((pos, false));
            }
            if h.mask.is_some() {
                return Err(bad("masked frame from server"));
            }
            let payload = &buf[pos + hl..pos + hl + len];
            pos += hl + len;
            match h.opcode {
                OpCode::Text | OpCode::Binary if h.fin && h.rsv1 => {
                    INFLATER.with(|cell| {
                        let (inflater, out) = &mut *cell.borrow_mut();
                        inflater
                            .inflate(payload, 64 << 20, out)
                            .map_err(|e| bad(&format!("bad compressed message: {e:?}")))?;
                        on_msg(out);
                        Ok::<(), io::Error>(())
                    })?;
                }
                OpCode::Text | OpCode::Binary if h.fin => on_msg(payload),
                OpCode::Ping => {
                    let p = payload.to_vec();
                    self.queue(OpCode::Pong, &p);
                }
                OpCode::Pong => {}
                OpCode::Close => return Ok((pos, true)),
                _ => return Err(bad("fragmented message from server")),
            }
        }
    }
}

/// One HTTP/1.1 keep-alive client connection driven by a mio loop (the
/// backend API, SPEC section 8): requests queued as bytes, responses parsed
/// by `Content-Length`.
pub struct HttpClient {
    /// The socket.
    pub stream: TcpStream,
    connected: bool,
    rbuf: Vec<u8>,
    wbuf: Vec<u8>,
    wpos: usize,
}

impl HttpClient {
    /// Starts a non-blocking connect.
    pub fn connect(addr: SocketAddr) -> io::Result<HttpClient> {
        let stream = connect(addr)?;
        Ok(HttpClient {
            stream,
            connected: false,
            rbuf: Vec::new(),
            wbuf: Vec::new(),
            wpos: 0,
        })
    }

    /// Queues a whole request (call [`HttpClient::flush`] to send it).
    pub fn queue(&mut self, request: &[u8]) {
        if self.wpos == self.wbuf.len() {
            self.wbuf.clear();
            self.wpos = 0;
        }
        self.wbuf.extend_from_slice(request);
    }

    /// Writes what the socket takes (once the connect has finished).
    pub fn flush(&mut self) -> io::Result<()> {
        flush(
            &mut self.stream,
            &mut self.connected,
            &mut self.wbuf,
            &mut self.wpos,
        )
    }

    /// Reads until `WouldBlock`; calls `on_response(status, body)` for every
    /// whole response.
    pub fn read_ready(
        &mut self,
        scratch: &mut [u8],
        on_response: &mut dyn FnMut(u16, &[u8]),
    ) -> io::Result<ReadState> {
        loop {
            let n = match read_some(&mut self.stream, scratch)? {
                Ok(n) => n,
                Err(state) => return Ok(state),
            };
            self.rbuf.extend_from_slice(&scratch[..n]);
            let mut pos = 0;
            while let Some(end) = find(&self.rbuf[pos..], b"\r\n\r\n") {
                let head = &self.rbuf[pos..pos + end];
                let status = std::str::from_utf8(head.get(9..12).unwrap_or_default())
                    .ok()
                    .and_then(|s| s.parse().ok())
                    .ok_or_else(|| bad("no HTTP status"))?;
                let len: usize = std::str::from_utf8(head)
                    .map_err(|_| bad("non-UTF-8 response head"))?
                    .split("\r\n")
                    .find_map(|l| {
                        let (k, v) = l.split_once(':')?;
                        k.eq_ignore_ascii_case("content-length")
                            .then(|| v.trim().parse().ok())?
                    })
                    .ok_or_else(|| bad("a response without Content-Length"))?;
                let body_at = pos + end + 4;
                if self.rbuf.len() < body_at + len {
                    break;
                }
                on_response(status, &self.rbuf[body_at..body_at + len]);
                pos = body_at + len;
            }
            self.rbuf.drain(..pos);
        }
    }
}

/// A non-blocking connect with Nagle off, reset on close (no TIME_WAIT pile-up between rounds).
fn connect(addr: SocketAddr) -> io::Result<TcpStream> {
    let stream = TcpStream::connect(addr)?;
    stream.set_nodelay(true)?;
    socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO))?;
    Ok(stream)
}

/// Writes what the socket takes of `wbuf[*wpos..]`. Before the connect finished (`connected`
/// false) this checks whether it has.
fn flush(
    stream: &mut TcpStream,
    connected: &mut bool,
    wbuf: &mut Vec<u8>,
    wpos: &mut usize,
) -> io::Result<()> {
    if !*connected {
        if let Some(e) = stream.take_error()? {
            return Err(e);
        }
        match stream.peer_addr() {
            Ok(_) => *connected = true,
            Err(e) if e.kind() == io::ErrorKind::NotConnected => return Ok(()),
            Err(e) => return Err(e),
        }
    }
    while *wpos < wbuf.len() {
        match stream.write(&wbuf[*wpos..]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => *wpos += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    wbuf.clear();
    *wpos = 0;
    Ok(())
}

/// One read: `Ok(n)` bytes, or the state that ends a read pass (`Blocked`, `Closed`).
fn read_some(stream: &mut TcpStream, scratch: &mut [u8]) -> io::Result<Result<usize, ReadState>> {
    loop {
        return match stream.read(scratch) {
            Ok(0) => Ok(Err(ReadState::Closed)),
            Ok(n) => Ok(Ok(n)),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(Err(ReadState::Blocked)),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => Ok(Err(ReadState::Closed)),
            Err(e) => Err(e),
        };
    }
}

fn bad(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_owned())
}

/// The first position of `needle` in `hay`.
pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// A process's CPU time (user + system, all threads), in milliseconds, from
/// `/proc/PID/stat` (fields 14 and 15, in clock ticks of 1/100 s).
pub fn cpu_ms(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces: fields are counted after its ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state): utime is field 14, stime field 15.
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) * 1000.0 / clock_ticks() as f64)
}

/// `sysconf(_SC_CLK_TCK)`; 100 on every Linux this runs on, checked once
/// through `getconf` so that no unsafe FFI is needed.
pub fn clock_ticks() -> u64 {
    use std::sync::OnceLock;
    static TCK: OnceLock<u64> = OnceLock::new();
    *TCK.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(100)
    })
}

/// A process's resident set size in KiB (`VmRSS` in `/proc/PID/status`).
pub fn rss_kb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// A process's peak resident set size in KiB (`VmHWM` in `/proc/PID/status`).
pub fn peak_rss_kb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// The median of `v` (sorted in place); NaN for an empty slice.
pub fn median(v: &mut [f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    }
}

/// The `q` quantile (0..=1) of sorted `v`, nearest rank.
pub fn quantile(sorted: &[u32], q: f64) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// Parses a `RESULT k=v k=v ...` line into pairs.
pub fn parse_result(line: &str) -> Option<Vec<(String, String)>> {
    let rest = line.trim().strip_prefix("RESULT ")?;
    Some(
        rest.split_whitespace()
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
    )
}

/// A tiny `--key=value` / `--key value` / `--flag` argument reader.
pub struct Args {
    items: Vec<String>,
}

impl Args {
    /// The process arguments after `skip` of them.
    pub fn from_env(skip: usize) -> Args {
        Args {
            items: std::env::args().skip(skip).collect(),
        }
    }

    /// The value of `--name`, if given.
    pub fn get(&self, name: &str) -> Option<String> {
        let flag = format!("--{name}");
        let prefix = format!("--{name}=");
        let mut it = self.items.iter();
        while let Some(a) = it.next() {
            if let Some(v) = a.strip_prefix(&prefix) {
                return Some(v.to_owned());
            }
            if *a == flag {
                return it.next().cloned();
            }
        }
        None
    }

    /// `--name` parsed, or `default`.
    pub fn num<T: std::str::FromStr>(&self, name: &str, default: T) -> T {
        match self.get(name) {
            Some(v) => v
                .parse()
                .unwrap_or_else(|_| panic!("--{name}: cannot parse {v:?}")),
            None => default,
        }
    }

    /// Whether the flag `--name` is present.
    pub fn flag(&self, name: &str) -> bool {
        let flag = format!("--{name}");
        self.items.contains(&flag)
    }
}
