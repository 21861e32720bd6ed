//! Shared helpers for the integration tests: start the real `rakit` binary
//! on port 0 with a config, and talk to it over real sockets.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

pub mod node;
pub mod ops;
pub mod presence;
pub mod tls;
pub mod tools;
use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Message, WebSocket};

/// How long any single wait in a test may take before it fails.
pub const WAIT: Duration = Duration::from_secs(10);

pub type Client = WebSocket<MaybeTlsStream<TcpStream>>;

/// How long the SPEC gives a connection that sent or received a close frame to
/// be gone (section 6), and the shutdown grace period (section 1).
pub const GONE_WITHIN: Duration = Duration::from_secs(2);

/// What a loaded machine may add to a bound the SPEC sets.
pub const SLACK: Duration = Duration::from_secs(3);

/// One test at a time in this test binary, for tests that start several processes and check a
/// timing bound (the cluster tests), which several clusters at once would blur. Hold the guard
/// for the whole test; a test that failed holding it does not stop the others.
pub fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// A running daemon; killed when dropped.
///
/// Its stdout after the listen line is read by a thread into a buffer (see
/// [`Daemon::log_lines`], [`Daemon::wait_for_line`]), so a daemon that logs
/// can never fill the pipe, unless it was started with
/// [`Daemon::start_undrained`].
pub struct Daemon {
    pub child: Child,
    pub addr: SocketAddr,
    pub dir: PathBuf,
    /// The rest of stdout, unread: only for a daemon started with
    /// [`Daemon::start_undrained`] or [`daemon_from_undrained`]; `None` when
    /// it is drained into [`Daemon::log_lines`].
    pub stdout: Option<BufReader<ChildStdout>>,
    output: Arc<Output>,
}

/// The lines a drained stdout has shown so far.
#[derive(Default)]
struct Output {
    state: Mutex<OutputState>,
    changed: Condvar,
}

#[derive(Default)]
struct OutputState {
    lines: Vec<String>,
    eof: bool,
}

impl Output {
    /// Reads `stdout` to its end on a thread.
    fn drain(mut stdout: BufReader<ChildStdout>) -> Arc<Output> {
        let output = Arc::new(Output::default());
        let sink = Arc::clone(&output);
        std::thread::spawn(move || {
            let mut line = Vec::new();
            // Read errors other than EINTR (retried by read_until) end it.
            while stdout.read_until(b'\n', &mut line).is_ok_and(|n| n > 0) {
                let text = String::from_utf8_lossy(&line);
                let text = text.strip_suffix('\n').unwrap_or(&text).to_owned();
                line.clear();
                sink.state.lock().unwrap().lines.push(text);
                sink.changed.notify_all();
            }
            sink.state.lock().unwrap().eof = true;
            sink.changed.notify_all();
        });
        output
    }

    /// Waits, at most [`WAIT`], until `done` holds for the state.
    #[track_caller]
    fn wait(&self, what: &str, done: impl Fn(&OutputState) -> bool) -> Vec<String> {
        let deadline = Instant::now() + WAIT;
        let mut state = self.state.lock().unwrap();
        while !done(&state) {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "no {what} on stdout within {WAIT:?}; stdout so far: {:#?}",
                state.lines
            );
            state = self.changed.wait_timeout(state, left).unwrap().0;
        }
        state.lines.clone()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A fresh, empty scratch directory for one test.
pub fn scratch_dir() -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "rakit-test-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The daemon under test: this build's binary, or `RAKIT_BIN` (to run a
/// test against another build, e.g. to see it fail on an older one).
pub fn rakit() -> Command {
    match std::env::var_os("RAKIT_BIN") {
        Some(bin) => Command::new(bin),
        None => Command::new(env!("CARGO_BIN_EXE_rakit")),
    }
}

impl Daemon {
    /// Starts `rakit websocket:run --port 0 --config <file with `toml`>` plus
    /// `extra` flags, in a scratch directory, and waits for its listen line.
    #[track_caller]
    pub fn start(toml: &str, extra: &[&str]) -> Daemon {
        Daemon::start_on(0, toml, extra)
    }

    /// [`Daemon::start`] on `port` (a restart that must come back where its clients were, or a
    /// second daemon sharing a port).
    #[track_caller]
    pub fn start_on(port: u16, toml: &str, extra: &[&str]) -> Daemon {
        let dir = scratch_dir();
        let cfg = dir.join("websocket.toml");
        std::fs::write(&cfg, toml).unwrap();
        let mut args = vec![
            format!("--port={port}"),
            format!("--config={}", cfg.display()),
        ];
        args.extend(extra.iter().map(|a| a.to_string()));
        Daemon::start_in(dir, &args)
    }

    /// [`Daemon::start`], but nothing reads stdout after the listen line: the
    /// pipe fills up once the daemon has logged a pipe's worth (64 KiB on
    /// Linux). The unread pipe is in [`Daemon::stdout`].
    #[track_caller]
    pub fn start_undrained(toml: &str, extra: &[&str]) -> Daemon {
        let dir = scratch_dir();
        let cfg = dir.join("websocket.toml");
        std::fs::write(&cfg, toml).unwrap();
        let child = rakit()
            .current_dir(&dir)
            .arg("websocket:run")
            .arg("--port=0")
            .arg(format!("--config={}", cfg.display()))
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn rakit");
        daemon_from_undrained(child, dir)
    }

    /// The stdout lines after the listen line, so far.
    pub fn log_lines(&self) -> Vec<String> {
        self.output.state.lock().unwrap().lines.clone()
    }

    /// Waits, at most [`WAIT`], for a stdout line that contains `needle`,
    /// and returns it.
    #[track_caller]
    pub fn wait_for_line(&self, needle: &str) -> String {
        let lines = self.output.wait(&format!("line with {needle:?}"), |s| {
            s.lines.iter().any(|l| l.contains(needle))
        });
        lines.into_iter().find(|l| l.contains(needle)).unwrap()
    }

    /// Waits, at most [`WAIT`], until the daemon closed its stdout (it
    /// exited); returns every line after the listen line.
    #[track_caller]
    pub fn wait_for_stdout_eof(&self) -> Vec<String> {
        self.output.wait("end", |s| s.eof)
    }

    /// Starts with no extra config (logging at warn to keep output small).
    pub fn default_config() -> Daemon {
        Daemon::start("logging_level = \"warn\"\n", &[])
    }

    pub fn url(&self) -> String {
        format!("ws://{}/", self.addr)
    }

    /// Connects a client and reads its welcome.
    #[track_caller]
    pub fn client(&self) -> (Client, Value) {
        self.client_at("/")
    }

    #[track_caller]
    pub fn client_at(&self, path: &str) -> (Client, Value) {
        let mut ws = self.ws_at(path);
        let welcome = recv_json(&mut ws);
        assert_eq!(welcome["type"], "welcome", "{welcome}");
        (ws, welcome)
    }

    /// Connects a client without reading anything.
    #[track_caller]
    pub fn ws_at(&self, path: &str) -> Client {
        let url = format!("ws://{}{}", self.addr, path);
        let (ws, _resp) = tungstenite::connect(url).expect("connect");
        set_timeout(&ws);
        ws
    }

    /// A raw TCP connection to the daemon.
    pub fn tcp(&self) -> TcpStream {
        let s = TcpStream::connect(self.addr).unwrap();
        s.set_read_timeout(Some(WAIT)).unwrap();
        s
    }
}

/// The address in the first stdout line, which must be the listen line
/// (SPEC section 1: log lines come after it). `Err` with what came instead.
fn read_listen_line(stdout: &mut BufReader<ChildStdout>) -> Result<SocketAddr, String> {
    let mut line = String::new();
    match stdout.read_line(&mut line) {
        Ok(0) => return Err("nothing (stdout closed)".into()),
        Ok(_) => {}
        Err(e) => return Err(format!("an error: {e}")),
    }
    line.strip_prefix("rakit-websocket listening on ")
        .and_then(|rest| {
            rest.strip_prefix("ws://")
                .or_else(|| rest.strip_prefix("wss://"))
        })
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|addr| addr.parse().ok())
        .ok_or_else(|| format!("{line:?}"))
}

pub fn set_timeout(ws: &Client) {
    if let MaybeTlsStream::Plain(s) = ws.get_ref() {
        s.set_read_timeout(Some(WAIT)).unwrap();
    }
}

/// `ws.read()`, retried when a signal interrupts it. A socket read with a
/// timeout (SO_RCVTIMEO, see [`set_timeout`]) is not restarted after the
/// process is stopped or frozen and resumed: it fails with EINTR, which
/// happens now and then on loaded or paused machines.
pub fn read(ws: &mut Client) -> Result<Message, Box<tungstenite::Error>> {
    loop {
        match ws.read() {
            Err(tungstenite::Error::Io(e)) if e.kind() == std::io::ErrorKind::Interrupted => {}
            other => return other.map_err(Box::new),
        }
    }
}

/// The next text message, raw (pings and pongs are skipped).
#[track_caller]
pub fn recv_text(ws: &mut Client) -> String {
    loop {
        match read(ws).expect("read") {
            Message::Text(t) => return t,
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("expected text, got {other:?}"),
        }
    }
}

/// The next text message, parsed as JSON (pings and pongs are skipped).
#[track_caller]
pub fn recv_json(ws: &mut Client) -> Value {
    serde_json::from_str(&recv_text(ws)).expect("JSON from the server")
}

/// The next message whose `type` is `ty`, skipping others (e.g. presence).
#[track_caller]
pub fn recv_type(ws: &mut Client, ty: &str) -> Value {
    loop {
        let v = recv_json(ws);
        if v["type"] == ty {
            return v;
        }
    }
}

/// The client id of a `welcome` message.
#[track_caller]
pub fn id_of(welcome: &Value) -> String {
    welcome["client_id"]
        .as_str()
        .unwrap_or_else(|| panic!("no client_id in {welcome}"))
        .to_owned()
}

/// Sends a JSON value as a text message.
#[track_caller]
pub fn send_json(ws: &mut Client, v: &Value) {
    ws.send(Message::Text(v.to_string())).expect("send");
}

/// Sends raw text.
#[track_caller]
pub fn send_text(ws: &mut Client, t: &str) {
    ws.send(Message::Text(t.to_owned())).expect("send");
}

/// Writes a raw HTTP request and returns the whole response (the server
/// closes the connection after a refusal).
#[track_caller]
pub fn http(daemon: &Daemon, request: &[u8]) -> String {
    let mut s = daemon.tcp();
    s.write_all(request).unwrap();
    let mut out = Vec::new();
    if let Err(e) = s.read_to_end(&mut out) {
        panic!(
            "the server did not close the connection after its response ({e}); got {:?}",
            String::from_utf8_lossy(&out)
        );
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A valid upgrade request with `extra` header lines (each ending in \r\n).
pub fn upgrade_request(path: &str, extra: &str) -> Vec<u8> {
    format!(
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    )
    .into_bytes()
}

/// The status code of a raw HTTP response.
pub fn status_of(response: &str) -> u16 {
    response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

mod raw;
pub use raw::*;

/// Helpers of the messaging tests (tests/messaging*.rs, tests/browser.rs).
pub mod msg {
    use super::*;
    use tungstenite::client::IntoClientRequest;
    use tungstenite::http::HeaderValue;

    #[allow(unused_imports)]
    pub use super::{expect_gone, read, recv_json, recv_text, recv_type};

    /// [`Daemon::client_at`].
    #[track_caller]
    pub fn client_at(daemon: &Daemon, path: &str) -> (Client, Value) {
        daemon.client_at(path)
    }

    /// [`Daemon::client`].
    #[track_caller]
    pub fn client(daemon: &Daemon) -> (Client, Value) {
        daemon.client()
    }

    /// Reads until a close frame (skipping text, e.g. presence) and returns
    /// its code and reason.
    #[track_caller]
    pub fn recv_close(ws: &mut Client) -> (u16, String) {
        loop {
            match read(ws).expect("read") {
                Message::Close(Some(f)) => return (u16::from(f.code), f.reason.into_owned()),
                Message::Close(None) => panic!("close frame without a code"),
                Message::Binary(b) => panic!("unexpected binary message {b:?}"),
                _ => continue,
            }
        }
    }

    /// Sends `{"ping":"sync"}` and returns every message that arrives before
    /// the pong, in order. The server answers each client in order, so this
    /// is everything queued for it before the ping was handled.
    #[track_caller]
    pub fn until_pong(ws: &mut Client) -> Vec<Value> {
        send_json(ws, &serde_json::json!({"ping": "sync"}));
        let mut before = Vec::new();
        loop {
            let v = recv_json(ws);
            if v == serde_json::json!({"type": "pong"}) {
                return before;
            }
            before.push(v);
        }
    }

    /// Asserts that nothing was queued for `ws` (see [`until_pong`]).
    #[track_caller]
    pub fn assert_quiet(ws: &mut Client, who: &str) {
        let got = until_pong(ws);
        assert!(
            got.is_empty(),
            "{who} should have received nothing: {got:?}"
        );
    }

    /// A session token from `rakit websocket:token` (the CLI under test).
    #[track_caller]
    pub fn cli_token(
        secret: &str,
        sub: &str,
        name: &str,
        email: Option<&str>,
        admin: bool,
        ttl: u64,
    ) -> String {
        let mut cmd = rakit();
        cmd.args([
            "websocket:token",
            "--secret",
            secret,
            "--sub",
            sub,
            "--name",
            name,
        ]);
        if let Some(email) = email {
            cmd.args(["--email", email]);
        }
        if admin {
            cmd.arg("--admin");
        }
        cmd.arg(format!("--ttl={ttl}"));
        let out = cmd.output().expect("run rakit websocket:token");
        assert!(out.status.success(), "websocket:token failed: {out:?}");
        let stdout = String::from_utf8(out.stdout).expect("UTF-8 token");
        let token = stdout.trim_end_matches('\n');
        assert!(
            !token.is_empty() && !token.contains(char::is_whitespace),
            "one token on one line: {stdout:?}"
        );
        token.to_owned()
    }

    /// Connects to `path` with a `Cookie` header; does not read the welcome.
    pub fn ws_with_cookie(
        daemon: &Daemon,
        path: &str,
        cookie: &str,
    ) -> Result<Client, Box<tungstenite::Error>> {
        let mut req = format!("ws://{}{}", daemon.addr, path)
            .into_client_request()
            .expect("request");
        req.headers_mut().insert(
            "Cookie",
            HeaderValue::from_str(cookie).expect("cookie header"),
        );
        let (ws, _resp) = tungstenite::connect(req).map_err(Box::new)?;
        set_timeout(&ws);
        Ok(ws)
    }
}

pub mod abuse;
/// A raw HTTP/1.1 client and metrics helpers for the HTTP side (tests/api_*.rs).
pub mod api;
pub mod browser;
pub mod check;
pub mod history;
pub mod namespaces;
pub mod proxy;
pub mod publisher;
pub mod pusher;
pub mod rakit_app;
pub mod receiver;
pub mod redis;
pub mod restart_script;

/// Answers every ping for `span` (the daemon's ping and pong timers would have closed a silent
/// peer by then) and returns how many came; panics on anything else, or if the daemon closes.
/// Leaves the socket with the usual read timeout.
#[track_caller]
pub fn answer_pings_for(ws: &mut Client, span: Duration) -> usize {
    if let tungstenite::stream::MaybeTlsStream::Plain(s) = ws.get_ref() {
        s.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
    }
    let until = Instant::now() + span;
    let mut pings = 0;
    while Instant::now() < until {
        match read(ws).map_err(|e| *e) {
            // tungstenite queues the pong: send it now, not on the next read.
            Ok(tungstenite::Message::Ping(_)) => {
                pings += 1;
                ws.flush().expect("flushing the pong");
            }
            Ok(other) => panic!("unexpected {other:?}"),
            Err(tungstenite::Error::Io(e))
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => panic!("closed after {pings} pings: {e}"),
        }
    }
    set_timeout(ws);
    pings
}

/// The next JSON text message for which `skip` is false (pings, pongs and skipped messages are
/// read past), or `None` after `wait` of nothing else. Leaves the usual read timeout.
#[track_caller]
pub fn try_recv_json(
    ws: &mut Client,
    wait: Duration,
    skip: impl Fn(&Value) -> bool,
) -> Option<Value> {
    let set = |ws: &Client, d| {
        if let MaybeTlsStream::Plain(s) = ws.get_ref() {
            s.set_read_timeout(Some(d)).unwrap();
        }
    };
    let deadline = Instant::now() + wait;
    let got = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break None;
        }
        set(ws, left);
        match read(ws) {
            Ok(Message::Text(t)) => {
                let v: Value = serde_json::from_str(&t).unwrap();
                if !skip(&v) {
                    break Some(v);
                }
            }
            Ok(Message::Ping(_) | Message::Pong(_)) => {}
            Ok(other) => panic!("unexpected {other:?}"),
            Err(e) => match *e {
                tungstenite::Error::Io(io)
                    if matches!(
                        io.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    break None
                }
                other => panic!("read: {other}"),
            },
        }
    };
    set_timeout(ws);
    got
}
