//! Raw sockets and processes, for the daemon tests (tests/daemon_*.rs): a daemon spawned
//! by the test itself, frames written and read by hand, and how a connection ends.

use super::*;

/// Wraps a child already spawned in `dir` (stdout piped) once it prints its
/// listen line, which must be its first line; panics with its stderr if it
/// prints something else first or exits. The rest of stdout is drained into
/// [`Daemon::log_lines`].
#[track_caller]
pub fn daemon_from(child: Child, dir: PathBuf) -> Daemon {
    let mut daemon = daemon_from_undrained(child, dir);
    let stdout = daemon.stdout.take().expect("stdout piped");
    daemon.output = Output::drain(stdout);
    daemon
}

/// [`daemon_from`], leaving the rest of stdout unread in [`Daemon::stdout`].
#[track_caller]
pub fn daemon_from_undrained(mut child: Child, dir: PathBuf) -> Daemon {
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout piped"));
    let addr = match read_listen_line(&mut stdout) {
        Ok(addr) => addr,
        Err(first) => {
            let _ = child.kill();
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                let _ = e.read_to_string(&mut err);
            }
            let _ = child.wait();
            panic!("the first line on stdout is {first}, not the listen line; stderr: {err}");
        }
    };
    Daemon {
        child,
        addr,
        dir,
        stdout: Some(stdout),
        output: Arc::default(),
    }
}

/// Polls until `child` exits, at most `limit`; `None` if it is still running.
pub fn wait_exit(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let deadline = std::time::Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return Some(status);
        }
        if std::time::Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// What a finished `rakit` run printed.
#[derive(Debug)]
pub struct Finished {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `cmd` to completion (killing it after [`WAIT`], which fails the test).
#[track_caller]
pub fn run_to_exit(cmd: &mut Command) -> Finished {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn rakit");
    // Drain both pipes on threads so a chatty child cannot block on them.
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let Some(status) = wait_exit(&mut child, WAIT) else {
        let _ = child.kill();
        let _ = child.wait();
        panic!("{cmd:?} did not exit within {WAIT:?}");
    };
    Finished {
        code: status.code(),
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
    }
}

/// Resident memory of a process in KiB, from `/proc/<pid>/status`.
#[track_caller]
pub fn vm_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS line")
}

/// Reads an HTTP response head (through the blank line) one byte at a time,
/// so that no WebSocket bytes after it are consumed.
#[track_caller]
pub fn read_http_head(s: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match s.read(&mut byte) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Ok(0) => panic!(
                "connection closed inside the response head: {:?}",
                String::from_utf8_lossy(&head)
            ),
            Ok(_) => head.push(byte[0]),
            Err(e) => panic!(
                "reading the response head: {e}; got {:?}",
                String::from_utf8_lossy(&head)
            ),
        }
    }
    String::from_utf8(head).expect("ASCII response head")
}

/// Writes `request` on a new raw connection and reads the response head;
/// the socket stays open.
#[track_caller]
pub fn raw_handshake(daemon: &Daemon, request: &[u8]) -> (TcpStream, String) {
    let mut s = daemon.tcp();
    s.write_all(request).unwrap();
    let head = read_http_head(&mut s);
    (s, head)
}

/// A raw connection past a successful handshake.
#[track_caller]
pub fn raw_ws(daemon: &Daemon) -> TcpStream {
    let (s, head) = raw_handshake(daemon, &upgrade_request("/", ""));
    assert_eq!(status_of(&head), 101, "{head}");
    assert!(
        head.contains("\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"),
        "{head}"
    );
    s
}

/// Sends one masked client frame.
#[track_caller]
pub fn send_frame(s: &mut TcpStream, fin: bool, opcode: rakit_protocol::OpCode, payload: &[u8]) {
    let mut out = Vec::new();
    rakit_protocol::encode_masked(&mut out, fin, opcode, payload, [0x37, 0xfa, 0x21, 0x3d]);
    s.write_all(&out).unwrap();
}

/// One frame as the server sent it, parsed by hand.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawFrame {
    /// FIN, RSV1-3 and the opcode: 0x81 is a whole text frame, 0x88 a close.
    pub byte0: u8,
    /// The mask bit (a server frame must not have it).
    pub masked: bool,
    pub payload: Vec<u8>,
}

impl RawFrame {
    /// The code of a close frame.
    #[track_caller]
    pub fn close_code(&self) -> u16 {
        assert_eq!(self.byte0, 0x88, "not a close frame: {self:?}");
        assert!(self.payload.len() >= 2, "close frame without a code");
        u16::from_be_bytes([self.payload[0], self.payload[1]])
    }
}

/// Reads one whole server frame.
#[track_caller]
pub fn read_frame(s: &mut TcpStream) -> RawFrame {
    let mut head = [0u8; 2];
    s.read_exact(&mut head).expect("frame header");
    let len = match head[1] & 0x7f {
        126 => {
            let mut b = [0u8; 2];
            s.read_exact(&mut b).expect("16-bit length");
            u16::from_be_bytes(b) as usize
        }
        127 => {
            let mut b = [0u8; 8];
            s.read_exact(&mut b).expect("64-bit length");
            u64::from_be_bytes(b) as usize
        }
        n => n as usize,
    };
    let masked = head[1] & 0x80 != 0;
    if masked {
        let mut key = [0u8; 4];
        s.read_exact(&mut key).expect("mask key");
    }
    let mut payload = vec![0u8; len];
    s.read_exact(&mut payload).expect("frame payload");
    RawFrame {
        byte0: head[0],
        masked,
        payload,
    }
}

/// Reads a close frame with `code` (unmasked, reason UTF-8), then expects
/// the server to close the TCP connection.
#[track_caller]
pub fn expect_close(s: &mut TcpStream, code: u16) {
    let frame = read_frame(s);
    assert!(!frame.masked, "server frames are never masked");
    assert_eq!(frame.close_code(), code, "{frame:?}");
    assert!(
        std::str::from_utf8(&frame.payload[2..]).is_ok(),
        "close reason is UTF-8"
    );
    expect_eof(s);
}

/// Waits (up to the socket's read timeout) for the server to close the TCP
/// connection: a read returns 0, or the connection is reset. Data is a failure.
#[track_caller]
pub fn expect_eof(s: &mut TcpStream) {
    let mut buf = [0u8; 256];
    let read = loop {
        match s.read(&mut buf) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            other => break other,
        }
    };
    match read {
        Ok(0) => {}
        Ok(n) => panic!("expected the connection to close, got {:?}", &buf[..n]),
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        Err(e) => panic!("expected the connection to close: {e}"),
    }
}

/// After a close frame: reads until the server closes the TCP connection
/// (answering the close, which tungstenite sends on the next read), within
/// [`GONE_WITHIN`] plus [`SLACK`]. Pings, pongs and close frames may come
/// first; a message, a read timeout or any other error is a failure.
#[track_caller]
pub fn expect_gone(ws: &mut Client) {
    let started = Instant::now();
    loop {
        match read(ws).map_err(|e| *e) {
            Ok(Message::Close(_) | Message::Ping(_) | Message::Pong(_)) => continue,
            Ok(other) => panic!("expected the connection to close, got {other:?}"),
            Err(tungstenite::Error::ConnectionClosed) => break,
            Err(tungstenite::Error::Io(e)) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                break
            }
            Err(e) => panic!(
                "expected the connection to close, after {:?}: {e}",
                started.elapsed()
            ),
        }
    }
    let took = started.elapsed();
    assert!(took < GONE_WITHIN + SLACK, "gone only after {took:?}");
}
