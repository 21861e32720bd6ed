//! Node scripts under tests/pusher/ (pusher-js, Laravel Echo, the Node `pusher` library): run
//! to the end for one JSON line of observations, or driven step by step over stdin/stdout.
//!
//! Needs node and `npm install` in tests/pusher (scripts/test.sh does it). Without them a test
//! is skipped, unless RAKIT_REQUIRE_PUSHER=1.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::Duration;

use serde_json::Value;

use super::wait_exit;

/// How long one script may run.
pub const LIMIT: Duration = Duration::from_secs(90);

pub fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/pusher")
}

/// Whether the Node side can run; panics instead when it is required.
pub fn available() -> bool {
    let node = Command::new("node").arg("--version").output();
    let ok = node.is_ok_and(|o| o.status.success())
        && ["laravel-echo", "pusher-js", "pusher"]
            .iter()
            .all(|m| dir().join("node_modules").join(m).is_dir());
    if !ok && std::env::var("RAKIT_REQUIRE_PUSHER").as_deref() == Ok("1") {
        panic!("node or tests/pusher/node_modules missing (cd tests/pusher && npm ci)");
    }
    if !ok {
        eprintln!("skipped: node or tests/pusher/node_modules missing");
    }
    ok
}

/// A running script: its stdout line by line, its stdin for our side of the steps.
pub struct Script {
    name: String,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    seen: Vec<String>,
    stderr: Option<JoinHandle<String>>,
}

impl Script {
    /// `script` in tests/pusher.
    #[track_caller]
    pub fn start(script: &str, args: &[String]) -> Script {
        Script::start_in(&dir(), script, args)
    }

    /// `script` in the folder `dir` (its working directory).
    #[track_caller]
    pub fn start_in(dir: &Path, script: &str, args: &[String]) -> Script {
        let mut child = Command::new("node")
            .arg(dir.join(script))
            .args(args)
            .current_dir(dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn node");
        let (tx, lines) = mpsc::channel();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        std::thread::spawn(move || {
            for line in stdout.lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let mut pipe = child.stderr.take().unwrap();
        let stderr = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = pipe.read_to_string(&mut s);
            s
        });
        Script {
            name: script.to_owned(),
            stdin: child.stdin.take(),
            child,
            lines,
            seen: Vec::new(),
            stderr: Some(stderr),
        }
    }

    /// The next stdout line, which must come within `within`.
    #[track_caller]
    pub fn line(&mut self, within: Duration) -> String {
        match self.lines.recv_timeout(within) {
            Ok(line) => {
                self.seen.push(line.clone());
                line
            }
            Err(RecvTimeoutError::Timeout) => self.fail(&format!("no line within {within:?}")),
            Err(RecvTimeoutError::Disconnected) => self.fail("stdout closed"),
        }
    }

    /// The next stdout line as JSON.
    #[track_caller]
    pub fn json(&mut self, within: Duration) -> Value {
        let line = self.line(within);
        serde_json::from_str(&line).unwrap_or_else(|e| self.fail(&format!("{e}: {line}")))
    }

    /// Writes one line to the script's stdin.
    #[track_caller]
    pub fn send(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        stdin
            .write_all(format!("{line}\n").as_bytes())
            .and_then(|()| stdin.flush())
            .unwrap_or_else(|e| panic!("{}: writing {line:?}: {e}", self.name));
    }

    /// Waits for the script to end; its last stdout line, as JSON.
    #[track_caller]
    pub fn finish(mut self) -> Value {
        self.stdin = None;
        let status = wait_exit(&mut self.child, LIMIT);
        if !status.is_some_and(|s| s.success()) {
            self.fail(&format!("exit status {status:?}"));
        }
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(5)) {
            self.seen.push(line);
        }
        let last = self.seen.last().cloned().unwrap_or_default();
        serde_json::from_str(&last).unwrap_or_else(|e| self.fail(&format!("{e}: {last}")))
    }

    #[track_caller]
    fn fail(&mut self, what: &str) -> ! {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let stderr = self.stderr.take().map(|h| h.join().unwrap_or_default());
        panic!(
            "{}: {what}\nstdout: {:#?}\nstderr: {}",
            self.name,
            self.seen,
            stderr.unwrap_or_default()
        );
    }
}

impl Drop for Script {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `script` with `args` to its end; its last stdout line, as JSON.
#[track_caller]
pub fn run(script: &str, args: &[String]) -> Value {
    Script::start(script, args).finish()
}
