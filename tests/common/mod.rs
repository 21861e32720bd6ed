//! Shared helpers for the integration tests: start the real `rakit` binary
//! on port 0 with a config, and talk to it over real sockets.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::Value;
use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Message, WebSocket};

/// How long any single wait in a test may take before it fails.
pub const WAIT: Duration = Duration::from_secs(10);

pub type Client = WebSocket<MaybeTlsStream<TcpStream>>;

/// A running daemon; killed when dropped.
pub struct Daemon {
    pub child: Child,
    pub addr: SocketAddr,
    pub dir: PathBuf,
    /// The rest of stdout (log lines), for tests that read it.
    pub stdout: Option<BufReader<ChildStdout>>,
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

pub fn rakit() -> Command {
    Command::new(env!("CARGO_BIN_EXE_rakit"))
}

impl Daemon {
    /// Starts `rakit websocket:run --port 0 --config <file with `toml`>` plus
    /// `extra` flags, in a scratch directory, and waits for its listen line.
    #[track_caller]
    pub fn start(toml: &str, extra: &[&str]) -> Daemon {
        let dir = scratch_dir();
        let cfg = dir.join("websocket.toml");
        std::fs::write(&cfg, toml).unwrap();
        let mut child = rakit()
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
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let addr = read_listen_line(&mut stdout).unwrap_or_else(|| {
            let mut err = String::new();
            let _ = child.stderr.take().unwrap().read_to_string(&mut err);
            let _ = child.kill();
            panic!("daemon did not print its address; stderr: {err}");
        });
        Daemon {
            child,
            addr,
            dir,
            stdout: Some(stdout),
        }
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

fn read_listen_line(stdout: &mut BufReader<ChildStdout>) -> Option<SocketAddr> {
    let mut line = String::new();
    loop {
        line.clear();
        if stdout.read_line(&mut line).ok()? == 0 {
            return None;
        }
        if let Some(rest) = line.split("listening on ws://").nth(1) {
            let addr = rest.split_whitespace().next()?;
            return addr.parse().ok();
        }
    }
}

pub fn set_timeout(ws: &Client) {
    if let MaybeTlsStream::Plain(s) = ws.get_ref() {
        s.set_read_timeout(Some(WAIT)).unwrap();
    }
}

/// The next text message, parsed as JSON (pings and pongs are skipped).
#[track_caller]
pub fn recv_json(ws: &mut Client) -> Value {
    loop {
        match ws.read().expect("read") {
            Message::Text(t) => return serde_json::from_str(&t).expect("JSON from the server"),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("expected text, got {other:?}"),
        }
    }
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
    let _ = s.read_to_end(&mut out);
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
