//! The `rakit` binary as an operator sees it (SPEC sections 1 and 2): zero-config start, flags,
//! `websocket:check`, exit codes and one-line errors, and graceful shutdown on signals.

mod common;

use std::net::{IpAddr, Ipv4Addr, TcpListener};
use std::process::{Command, Stdio};
use std::time::Instant;

use common::{
    daemon_from, rakit, run_to_exit, scratch_dir, wait_exit, Daemon, Finished, GONE_WITHIN, SLACK,
    WAIT,
};
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::Message;

const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// Asserts a config or usage error: exit 2, one stderr line that contains `names`, no panic.
#[track_caller]
fn assert_one_line_error(run: &Finished, code: i32, names: &str, case: &str) {
    assert_eq!(run.code, Some(code), "{case}: {run:?}");
    let err = run.stderr.trim_end();
    assert!(!err.is_empty(), "{case}: empty stderr");
    assert!(!err.contains('\n'), "{case}: more than one line: {err:?}");
    assert!(
        err.contains(names),
        "{case}: {err:?} does not name {names:?}"
    );
    assert!(!run.stderr.contains("panicked"), "{case}: {err}");
    assert!(!run.stdout.contains("listening on"), "{case}: it started");
}

#[test]
fn zero_config_run_listens_on_localhost() {
    let dir = scratch_dir();
    let child = rakit()
        .current_dir(&dir)
        .args(["websocket:run", "--port=0"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn rakit");
    let daemon = daemon_from(child, dir);
    assert_eq!(daemon.addr.ip(), LOCALHOST);
    assert_ne!(daemon.addr.port(), 0);
    let (_ws, welcome) = daemon.client();
    assert_eq!(welcome["user"], serde_json::Value::Null, "{welcome}");
}

#[test]
fn check_prints_the_effective_values() {
    let dir = scratch_dir();
    let run = run_to_exit(rakit().current_dir(&dir).arg("websocket:check"));
    assert_eq!(run.code, Some(0), "{run:?}");
    assert!(run.stdout.contains("port = 6001\n"), "{}", run.stdout);
    assert!(
        run.stdout.contains("host = \"127.0.0.1\"\n"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("max_buffer_size = 65536\n"),
        "{}",
        run.stdout
    );

    // config/websocket.toml is read when it exists; --config wins over it.
    std::fs::create_dir_all(dir.join("config")).unwrap();
    std::fs::write(dir.join("config/websocket.toml"), "port = 7001\n").unwrap();
    let run = run_to_exit(rakit().current_dir(&dir).arg("websocket:check"));
    assert_eq!(run.code, Some(0), "{run:?}");
    assert!(run.stdout.contains("port = 7001\n"), "{}", run.stdout);
    std::fs::write(dir.join("other.toml"), "port = 7002\n").unwrap();
    let run =
        run_to_exit(
            rakit()
                .current_dir(&dir)
                .args(["websocket:check", "--config", "other.toml"]),
        );
    assert_eq!(run.code, Some(0), "{run:?}");
    assert!(run.stdout.contains("port = 7002\n"), "{}", run.stdout);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn help_exits_0() {
    for args in [&["--help"][..], &["websocket:run", "--help"], &["help"]] {
        let run = run_to_exit(rakit().args(args));
        assert_eq!(run.code, Some(0), "{args:?}: {run:?}");
        assert!(run.stdout.contains("websocket:run"), "{args:?}: {run:?}");
        assert!(run.stderr.is_empty(), "{args:?}: {run:?}");
    }
}

#[test]
fn every_config_error_exits_2_naming_the_key() {
    let cases: &[(&str, &str)] = &[
        ("bogus = 1\n", "bogus"),
        ("[session]\nsecrte = \"x\"\n", "secrte"),
        // A table after [session] is named from the root, not as `session.zzz`.
        (
            "[session]\nsecret = \"x\"\n[zzz]\na = 1\n",
            "unknown key `zzz`",
        ),
        ("port = \"x\"\n", "port"),
        ("presence = 3\n", "presence"),
        (
            "allowed_origins = \"https://a.example.com\"\n",
            "allowed_origins",
        ),
        ("[session]\nsecret = 5\n", "secret"),
        ("max_buffer_size = 0\n", "max_buffer_size"),
        ("max_connections = 0\n", "max_connections"),
        ("command_policy = \"root\"\n", "command_policy"),
        ("logging_level = \"loud\"\n", "logging_level"),
        ("logging_output = \"syslog\"\n", "logging_output"),
        ("host = \"not a host\"\n", "host"),
        // Too large to mean anything: the first connection used to panic on Instant overflow.
        ("ping_interval = 9223372036854775807\n", "ping_interval"),
        (
            "presence_interval_ms = 9223372036854775807\n",
            "presence_interval_ms",
        ),
        ("handshake_timeout = 86401\n", "handshake_timeout"),
        ("max_send_buffer = 9223372036854775807\n", "max_send_buffer"),
    ];
    let dir = scratch_dir();
    for (i, (toml, key)) in cases.iter().enumerate() {
        let file = dir.join(format!("bad{i}.toml"));
        std::fs::write(&file, toml).unwrap();
        let config = format!("--config={}", file.display());
        let run =
            run_to_exit(
                rakit()
                    .current_dir(&dir)
                    .args(["websocket:run", "--port=0", &config]),
            );
        assert_one_line_error(&run, 2, key, toml);
        let run = run_to_exit(rakit().current_dir(&dir).args(["websocket:check", &config]));
        assert_one_line_error(&run, 2, key, &format!("check: {toml}"));
    }

    // A missing --config file is an error naming the path, not a silent default.
    let missing = dir.join("missing.toml");
    let config = format!("--config={}", missing.display());
    let run = run_to_exit(
        rakit()
            .current_dir(&dir)
            .args(["websocket:run", "--port=0", &config]),
    );
    assert_one_line_error(&run, 2, &missing.display().to_string(), "missing file");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bad_command_line_exits_2_naming_the_flag() {
    let dir = scratch_dir();
    let cases: &[(&[&str], &str)] = &[
        (&["websocket:run", "--bogus"], "--bogus"),
        (&["websocket:run", "--port=abc"], "--port"),
        (&["websocket:run", "--port=70000"], "--port"),
        (&["websocket:run", "--port"], "--port"),
        (&["websocket:run", "--echo=yes"], "--echo"),
        (&["websocket:check", "--port=1"], "--port"),
        (&["websocket:serve"], "websocket:serve"),
    ];
    for (args, names) in cases {
        let run = run_to_exit(rakit().current_dir(&dir).args(*args));
        assert_one_line_error(&run, 2, names, &format!("{args:?}"));
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn port_in_use_exits_1_naming_the_address() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let dir = scratch_dir();
    let run = run_to_exit(rakit().current_dir(&dir).args([
        "websocket:run",
        "--host=127.0.0.1",
        &format!("--port={port}"),
    ]));
    assert_one_line_error(&run, 1, &format!("127.0.0.1:{port}"), "port in use");
    drop(taken);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn host_flag_in_both_forms_overrides_the_file() {
    // The file asks for every interface; the flag must win.
    let toml = "host = \"0.0.0.0\"\nlogging_level = \"warn\"\n";
    for flags in [&["--host=127.0.0.1"][..], &["--host", "127.0.0.1"]] {
        let daemon = Daemon::start(toml, flags);
        assert_eq!(daemon.addr.ip(), LOCALHOST, "{flags:?}");
        let (_ws, welcome) = daemon.client();
        assert_eq!(welcome["type"], "welcome", "{flags:?}");
    }
}

/// Sends `signal` to the daemon with the `kill` command.
#[track_caller]
fn signal(daemon: &Daemon, signal: &str) {
    let status = Command::new("kill")
        .args([signal, &daemon.child.id().to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill {signal} failed");
}

#[test]
fn sigterm_closes_every_client_with_1001_and_exits_0() {
    let mut daemon = Daemon::default_config();
    let (mut a, _) = daemon.client();
    let (mut b, _) = daemon.client();
    signal(&daemon, "-TERM");
    for ws in [&mut a, &mut b] {
        let frame = loop {
            // Welcome and presence may come first.
            match common::read(ws).expect("read") {
                Message::Close(frame) => break frame.expect("a close code"),
                Message::Text(_) | Message::Ping(_) | Message::Pong(_) => continue,
                other => panic!("unexpected {other:?}"),
            }
        };
        assert_eq!(frame.code, CloseCode::Away);
    }
    // Both answer the close: the daemon has no reason to use its grace period.
    let answered = Instant::now();
    for ws in [&mut a, &mut b] {
        common::expect_gone(ws);
    }
    let status = wait_exit(&mut daemon.child, WAIT).expect("exit after SIGTERM");
    assert_eq!(status.code(), Some(0));
    assert!(
        answered.elapsed() < GONE_WITHIN + SLACK,
        "{:?}",
        answered.elapsed()
    );
}

#[test]
fn sigint_exits_0_and_a_silent_client_does_not_hold_it_past_the_grace_period() {
    let mut daemon = Daemon::start("logging_level = \"warn\"\n", &["--echo"]);
    // A raw client that never answers the close frame: shutdown waits at most ~2 s for it.
    let mut raw = common::raw_ws(&daemon);
    signal(&daemon, "-INT");
    assert_eq!(common::read_frame(&mut raw).close_code(), 1001);
    // The grace period started before the close frame was sent.
    let closed = Instant::now();
    let status = wait_exit(&mut daemon.child, WAIT).expect("exit after SIGINT");
    assert_eq!(status.code(), Some(0));
    assert!(
        closed.elapsed() < GONE_WITHIN + SLACK,
        "{:?}",
        closed.elapsed()
    );
}
