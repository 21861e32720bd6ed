//! Logging as an operator sees it (SPEC sections 1, 2 and 7): the listen line
//! first, the log line format, `logging_output = "file"`, level filtering,
//! the event lines, and a log output that cannot keep up never stalling
//! clients.

mod common;

use std::io::BufRead;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use common::abuse::LIMITS_OFF;
use common::msg::{client, expect_gone, recv_type};
use common::{send_json, wait_exit, Client, Daemon, GONE_WITHIN, SLACK, WAIT};
use serde_json::{json, Value};

/// Asserts `TIMESTAMP [LEVEL] message`, the timestamp RFC 3339 in UTC
/// (`2024-02-29T12:00:00.123456789Z`).
#[track_caller]
fn assert_log_line(line: &str) {
    let (stamp, rest) = line
        .split_once(' ')
        .unwrap_or_else(|| panic!("no timestamp: {line:?}"));
    let b = stamp.as_bytes();
    let digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
    let shape = b.len() >= 20
        && digits(0..4)
        && b[4] == b'-'
        && digits(5..7)
        && b[7] == b'-'
        && digits(8..10)
        && b[10] == b'T'
        && digits(11..13)
        && b[13] == b':'
        && digits(14..16)
        && b[16] == b':'
        && digits(17..19)
        && stamp.ends_with('Z')
        && (b.len() == 20 || (b[19] == b'.' && digits(20..b.len() - 1)));
    assert!(shape, "not an RFC 3339 UTC timestamp: {line:?}");
    let level = rest
        .strip_prefix('[')
        .and_then(|r| r.split_once("] "))
        .map(|(level, _)| level);
    assert!(
        matches!(level, Some("ERROR" | "WARN" | "INFO" | "DEBUG" | "TRACE")),
        "no level: {line:?}"
    );
}

fn id_of(welcome: &Value) -> String {
    welcome["client_id"].as_str().unwrap().to_owned()
}

/// Sends SIGTERM with the `kill` command.
#[track_caller]
fn sigterm(daemon: &Daemon) {
    let status = Command::new("kill")
        .args(["-TERM", &daemon.child.id().to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill failed");
}

/// Waits, at most [`WAIT`], until the file at `path` has a line containing
/// `needle`; returns all its lines.
#[track_caller]
fn wait_for_file_line(path: &Path, needle: &str) -> Vec<String> {
    let deadline = Instant::now() + WAIT;
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if text.lines().any(|l| l.contains(needle)) {
            return text.lines().map(str::to_owned).collect();
        }
        assert!(
            Instant::now() < deadline,
            "no line with {needle:?} in {} within {WAIT:?}: {text}",
            path.display()
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

#[test]
fn the_listen_line_comes_first_and_log_lines_after_it() {
    // `Daemon::start` already requires the listen line first, with the real
    // port of --port=0; start-up logs (the open files limit is logged before
    // the socket is bound) must follow it.
    let daemon = Daemon::start("logging_level = \"info\"\n", &[]);
    assert_ne!(daemon.addr.port(), 0);
    let start = daemon.wait_for_line(&format!("[INFO] start: listening on {}", daemon.addr));
    assert_log_line(&start);
    let limit = daemon.wait_for_line("[INFO] open files limit");
    assert_log_line(&limit);
}

#[test]
fn file_output_creates_folders_filters_levels_and_logs_events() {
    for level in ["info", "debug"] {
        let mut daemon = Daemon::start(
            &format!(
                "logging_level = \"{level}\"\nlogging_output = \"file\"\n\
                 logging_file = \"var/log/deep/ws.log\"\npresence = false\n"
            ),
            &[],
        );
        let file = daemon.dir.join("var/log/deep/ws.log");
        let (mut ws, welcome) = client(&daemon);
        let id = id_of(&welcome);
        send_json(&mut ws, &json!({"message": "hi"}));
        // Raw, as the daemon sent it (and logged it).
        let delivered = common::recv_text(&mut ws);
        assert!(delivered.contains(r#""type":"message""#), "{delivered}");
        ws.close(None).unwrap();
        expect_gone(&mut ws);
        let lines = wait_for_file_line(&file, &format!("disconnect: {id}"));
        for line in &lines {
            assert_log_line(line);
        }
        let has = |l: &str| lines.iter().any(|line| line.ends_with(l));
        assert!(has(&format!("[INFO] connect: {id} (guest)")), "{lines:#?}");
        assert!(
            has(&format!("[INFO] disconnect: {id} (guest)")),
            "{lines:#?}"
        );
        let receive = format!(r#"[DEBUG] receive: {id} (guest): {{"message":"hi"}}"#);
        let send = format!("[DEBUG] send: {id} (guest): {delivered}");
        let welcome_sent = format!("[DEBUG] send: {id} (guest): {{\"type\":\"welcome\"");
        if level == "debug" {
            assert!(has(&receive), "{lines:#?}");
            assert!(has(&send), "{lines:#?}");
            assert!(
                lines.iter().any(|l| l.contains(&welcome_sent)),
                "{lines:#?}"
            );
        } else {
            // Everything before the disconnect line has been written.
            assert!(!lines.iter().any(|l| l.contains("[DEBUG]")), "{lines:#?}");
        }
        // Nothing but the listen line on stdout; the last lines reach the
        // file before the process exits.
        sigterm(&daemon);
        let status = wait_exit(&mut daemon.child, WAIT).expect("exit after SIGTERM");
        assert_eq!(status.code(), Some(0));
        assert_eq!(daemon.wait_for_stdout_eof(), Vec::<String>::new());
        let lines = wait_for_file_line(&file, "shutdown complete");
        assert!(
            lines.last().unwrap().ends_with("[INFO] shutdown complete"),
            "{lines:#?}"
        );
    }
}

/// Two clients of a daemon at `debug` (each message costs log lines).
fn pair(daemon: &Daemon) -> ((Client, String), (Client, String)) {
    let (a, wa) = client(daemon);
    let (b, wb) = client(daemon);
    ((a, id_of(&wa)), (b, id_of(&wb)))
}

#[test]
fn a_stdout_nobody_reads_does_not_stall_clients() {
    // 2,000 messages from each of two clients, as fast as they are answered: SPEC 17's
    // message bucket off.
    let mut daemon = Daemon::start_undrained(
        &format!("logging_level = \"debug\"\npresence = false\n{LIMITS_OFF}"),
        &[],
    );
    let ((mut a, a_id), (mut b, b_id)) = pair(&daemon);
    // Each message is logged as received and as sent, about 1 KiB each: the
    // 64 KiB pipe is full after a few dozen, the log queue after a few
    // hundred. Every read below would time out if the loop waited for stdout.
    let filler = "x".repeat(1000);
    for i in 0..2000 {
        send_json(&mut a, &json!({"to": b_id, "message": [i, filler]}));
        let got = recv_type(&mut b, "private");
        assert_eq!(got["message"][0], i, "{got}");
        send_json(&mut b, &json!({"to": a_id, "message": [i, filler]}));
        let got = recv_type(&mut a, "private");
        assert_eq!(got["message"][0], i, "{got}");
    }
    // Once stdout is read again, the daemon says how many lines it dropped.
    let stdout = daemon.stdout.take().expect("undrained stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in stdout.lines() {
            let Ok(line) = line else { break };
            if line.contains("log lines dropped") && tx.send(line).is_err() {
                break;
            }
        }
    });
    let line = rx
        .recv_timeout(WAIT)
        .expect("a line counting dropped lines");
    assert_log_line(&line);
    let dropped: u64 = line
        .split("[WARN] ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no count: {line}"));
    assert!(dropped > 0, "{line}");
}

#[test]
fn a_stdout_nobody_reads_does_not_hold_up_shutdown() {
    // 200 messages in a row from one client fill the pipe: SPEC 17's bucket off.
    let mut daemon = Daemon::start_undrained(
        &format!("logging_level = \"debug\"\npresence = false\n{LIMITS_OFF}"),
        &[],
    );
    let ((mut a, a_id), (mut b, _)) = pair(&daemon);
    // Well over a pipe's worth of log lines, so the writer is stuck.
    let filler = "x".repeat(1000);
    for i in 0..200 {
        send_json(&mut b, &json!({"to": a_id, "message": [i, filler]}));
        assert_eq!(recv_type(&mut a, "private")["message"][0], i);
    }
    sigterm(&daemon);
    let signalled = Instant::now();
    for ws in [&mut a, &mut b] {
        assert_eq!(common::msg::recv_close(ws).0, 1001);
        expect_gone(ws);
    }
    // Exit waits a bounded time for the queue (one second), not forever.
    let status = wait_exit(&mut daemon.child, WAIT).expect("exit with a stuck stdout");
    assert_eq!(status.code(), Some(0));
    assert!(
        signalled.elapsed() < GONE_WITHIN + SLACK,
        "{:?}",
        signalled.elapsed()
    );
}
