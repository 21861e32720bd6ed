//! The Rakit drop-in (SPEC section 18): `php rakit websocket:run` in a Rakit application (the
//! stand-in framework of tests/php/rakit-app, with the real class names and loader rules) runs
//! this daemon with the application's websocket.php mapped key by key; bad configs and a
//! missing daemon are one line on stderr and exit 2; signals and the exit status pass through.
//! (The doc's Basic Chat in Chromium against a daemon started this way: tests/browser.rs.)
//!
//! Without `php` the tests are skipped, unless RAKIT_REQUIRE_PHP=1 (scripts/test.sh).

mod common;

use std::net::TcpListener;
use std::path::Path;
use std::process::Output;

use common::msg::recv_close;
use common::ops::{signal, RELOADED};
use common::rakit_app::{daemon_binary, have_php, RakitApp};
use common::*;
use rakit::config::{CommandPolicy, Config, LogOutput};
use tungstenite::client::IntoClientRequest;
use tungstenite::Message;

/// Rakit's own application/config/websocket.php, every key, with values of our choosing.
const RAKIT_CONFIG: &str = "[
    'max_buffer_size' => 4096,
    'origin_required' => true,
    'protocol_required' => false,
    'extensions_required' => false,
    'allowed_origins' => ['https://app.example', '*.example.org'],
    'allowed_hosts' => ['ws.example:6001'],
    'supported_protocols' => ['chat', 'binary'],
    'supported_extensions' => ['permessage-deflate'],
    'ping_timeout' => 30,
    'logging_enabled' => true,
    'logging_output' => 'file',
]";

#[track_caller]
fn text(out: &[u8]) -> String {
    String::from_utf8(out.to_vec()).unwrap()
}

/// `php rakit websocket:check ARGS`: the daemon's effective config, and stderr.
#[track_caller]
fn check(app: &RakitApp, args: &[&str]) -> (Config, String) {
    let out = app.php(&["websocket:check"]).args(args).output().unwrap();
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    let config = Config::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    (config, stderr)
}

/// The stderr lines that report an ignored key.
fn ignored(stderr: &str) -> Vec<&str> {
    stderr
        .lines()
        .filter(|l| l.starts_with("rakit-websocket: websocket.php: ignoring '"))
        .collect()
}

#[test]
fn every_key_of_the_rakit_package_reaches_the_daemon() {
    if !have_php() {
        return;
    }
    let app = RakitApp::new(RAKIT_CONFIG);
    let (c, stderr) = check(&app, &[]);
    assert_eq!(c.max_buffer_size, 4096);
    assert!(c.origin_required);
    assert_eq!(c.allowed_origins, ["https://app.example", "*.example.org"]);
    assert_eq!(c.allowed_hosts, ["ws.example:6001"]);
    assert_eq!(c.supported_protocols, ["chat", "binary"]);
    assert!(c.compression, "permessage-deflate is `compression`");
    // Rakit's ping_timeout: the longest silence; the daemon pings then, and waits 10 s more.
    assert_eq!((c.ping_interval, c.ping_timeout), (30, 10));
    assert!(c.logging_enabled);
    assert_eq!(c.logging_output, LogOutput::File);
    // Where Rakit's own file logging goes: the application's storage.
    assert_eq!(c.logging_file, app.dir.join("storage/logs/websocket.log"));
    // Keys without an equivalent: one line each.
    let lines = ignored(&stderr);
    assert_eq!(lines.len(), 2, "{stderr}");
    assert!(lines[0].contains("'protocol_required'"), "{stderr}");
    assert!(lines[1].contains("'extensions_required'"), "{stderr}");

    // 0 is no timeout; a short one is waited for as long; the rest of the keys.
    app.config(
        "['ping_timeout' => 0, 'logging_enabled' => false, 'logging_output' => 'stdout', \
         'supported_extensions' => ['x-webkit-deflate-frame'], 'origin_required' => false]",
    );
    let (c, stderr) = check(&app, &[]);
    assert_eq!(c.ping_interval, 0);
    assert!(!c.logging_enabled && !c.origin_required && !c.compression);
    assert_eq!(c.logging_output, LogOutput::Stdout);
    let lines = ignored(&stderr);
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(lines[0].contains("only permessage-deflate is supported, not x-webkit-deflate-frame"));
    app.config("['ping_timeout' => '5']");
    assert_eq!(check(&app, &[]).0.ping_interval, 5);
    assert_eq!(check(&app, &[]).0.ping_timeout, 5);
}

#[test]
fn the_daemons_own_keys_pass_through_and_the_flags_win() {
    if !have_php() {
        return;
    }
    let app = RakitApp::new(
        "[
        'host' => '127.0.0.1',
        'port' => 7001,
        'command_policy' => 'any',
        'logging_level' => 'debug',
        'max_connections' => 500,
        'session' => ['secret' => 'from-websocket.php', 'cookie' => 'app_ws'],
        'metrics' => ['enabled' => false],
        'pusher_app' => 'unknown to the daemon',
        'queue' => ['driver' => 'redis'],
    ]",
    );
    let (c, stderr) = check(&app, &["--host=0.0.0.0", "--port", "7002"]);
    assert_eq!((c.host.as_str(), c.port), ("0.0.0.0", 7002));
    assert_eq!(c.command_policy, CommandPolicy::Any);
    assert_eq!(c.max_connections, 500);
    assert_eq!(c.session.cookie, "app_ws");
    assert_eq!(c.session.secret, "<set>");
    assert!(!c.metrics.enabled);
    let lines = ignored(&stderr);
    assert_eq!(lines.len(), 2, "{stderr}");
    assert!(
        lines[0].contains("'pusher_app': no such setting"),
        "{stderr}"
    );
    assert!(lines[1].contains("'queue': no such setting"), "{stderr}");
    // Without flags, the file's host and port.
    let (c, _) = check(&app, &[]);
    assert_eq!((c.host.as_str(), c.port), ("127.0.0.1", 7001));
}

#[test]
fn every_key_of_the_daemon_passes_through() {
    if !have_php() {
        return;
    }
    // Every key the daemon has (tables included), with values other than the defaults where
    // it is easy, as websocket.php would hold them. `ping_timeout` is Rakit's there (above).
    let mut config = Config {
        max_connections: 1234,
        command_policy: CommandPolicy::Authenticated,
        presence_max_users: 7,
        ..Config::default()
    };
    config.session.cookie = "app_ws".into();
    config.cluster.namespace = "app".into();
    config.webhooks.events = Some(config.webhooks.events().to_vec());
    let mut value = serde_json::to_value(&config).unwrap();
    value.as_object_mut().unwrap().remove("ping_timeout");
    let json = serde_json::to_string(&value)
        .unwrap()
        .replace('\\', "\\\\")
        .replace('\'', "\\'");
    let app = RakitApp::new(&format!("json_decode('{json}', true)"));
    let (mapped, stderr) = check(&app, &[]);
    assert!(
        ignored(&stderr).is_empty(),
        "a key of the daemon unknown to the command: {stderr}"
    );
    assert_eq!(
        serde_json::to_value(&mapped).unwrap(),
        serde_json::to_value(&config).unwrap()
    );
}

#[test]
fn strings_reach_the_daemon_unchanged() {
    if !have_php() {
        return;
    }
    // Quotes, backslashes, line breaks, control characters, non-ASCII: TOML escapes all.
    let app = RakitApp::new(
        r#"['allowed_origins' => ["https://a.example/\"quoted\"", "back\\slash", "line\nbreak\ttab\x01\x7f", "ünïcode ✓"]]"#,
    );
    let (c, _) = check(&app, &[]);
    assert_eq!(
        c.allowed_origins,
        [
            "https://a.example/\"quoted\"",
            "back\\slash",
            "line\nbreak\ttab\u{1}\u{7f}",
            "ünïcode ✓"
        ]
    );
}

#[test]
fn environment_overrides_come_through_config_get() {
    if !have_php() {
        return;
    }
    let app =
        RakitApp::new("['allowed_origins' => ['https://prod.example'], 'max_buffer_size' => 1000]");
    app.config_file(
        "application/config/local/websocket.php",
        "['allowed_origins' => ['http://localhost:8000']]",
    );
    let (c, _) = check(&app, &["--env=local"]);
    assert_eq!(c.allowed_origins, ["http://localhost:8000"]);
    assert_eq!(c.max_buffer_size, 1000);
    let (c, _) = check(&app, &[]);
    assert_eq!(c.allowed_origins, ["https://prod.example"]);
}

#[track_caller]
fn exits_2_naming(out: &Output, needles: &[&str]) {
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(2), "{stdout}\n{stderr}");
    assert!(stdout.is_empty(), "nothing started: {stdout}");
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    for needle in needles {
        assert!(stderr.contains(needle), "{needle:?} in {stderr}");
    }
}

#[test]
fn a_websocket_php_that_is_not_named_settings_of_the_right_kinds_is_exit_2() {
    if !have_php() {
        return;
    }
    let app = RakitApp::new("[]");
    let cases = [
        // Rakit's loader turns these into lists.
        ("'hello'", &["websocket.php", "entry without a name"][..]),
        ("42", &["websocket.php", "entry without a name"]),
        ("true", &["websocket.php", "entry without a name"]),
        (
            "['https://app.example', 2048]",
            &["websocket.php", "entry without a name"],
        ),
        (
            "['max_buffer_size' => 2048, 5]",
            &["websocket.php", "entry without a name"],
        ),
        // Values of the wrong kind.
        (
            "['max_buffer_size' => [2048]]",
            &["websocket.php", "'max_buffer_size'", "array"],
        ),
        (
            "['max_buffer_size' => -1]",
            &["websocket.php", "'max_buffer_size'"],
        ),
        (
            "['origin_required' => 'yes']",
            &["websocket.php", "'origin_required'", "true or false"],
        ),
        (
            "['allowed_origins' => 'https://a.example']",
            &["websocket.php", "'allowed_origins'", "list of strings"],
        ),
        (
            "['allowed_hosts' => [new stdClass]]",
            &["websocket.php", "'allowed_hosts'", "stdClass"],
        ),
        (
            "['ping_timeout' => null]",
            &["websocket.php", "'ping_timeout'", "null"],
        ),
        (
            "['logging_output' => 'syslog']",
            &["websocket.php", "'logging_output'", "'stdout' or 'file'"],
        ),
        ("['port' => null]", &["websocket.php", "'port'", "null"]),
        (
            "['session' => ['secret' => fn () => 'x']]",
            &["websocket.php", "'session.secret'", "Closure"],
        ),
        (
            "['api' => ['key' => STDIN]]",
            &["websocket.php", "'api.key'", "resource"],
        ),
        (
            "['max_connections' => NAN]",
            &["websocket.php", "'max_connections'"],
        ),
    ];
    for (config, needles) in cases {
        app.config(config);
        for command in ["websocket:run", "websocket:check"] {
            let out = app.php(&[command, "--port=0"]).output().unwrap();
            exits_2_naming(&out, needles);
        }
    }
    // A bad flag too.
    app.config("[]");
    let out = app.php(&["websocket:run", "--port=http"]).output().unwrap();
    exits_2_naming(&out, &["--port", "http"]);
    // No settings at all (no file, or an empty array): the defaults.
    std::fs::remove_file(app.dir.join("application/config/websocket.php")).unwrap();
    let (c, _) = check(&app, &[]);
    let defaults = Config::default();
    assert_eq!(
        (
            c.max_buffer_size,
            c.ping_interval,
            c.origin_required,
            c.logging_file
        ),
        (
            defaults.max_buffer_size,
            defaults.ping_interval,
            defaults.origin_required,
            defaults.logging_file
        )
    );
}

#[test]
fn a_missing_daemon_names_rakit_ws_bin() {
    if !have_php() {
        return;
    }
    let app = RakitApp::new("[]");
    let php = which("php");
    // On PATH only `rakit` front scripts (PHP, executable): this application's own, and
    // another's. Neither is the daemon.
    let empty = scratch_dir();
    let other = scratch_dir();
    std::fs::copy(app.dir.join("rakit"), other.join("rakit")).unwrap();
    let path = format!(
        "{}:{}:{}",
        empty.display(),
        other.display(),
        app.dir.display()
    );
    for (bin, needles) in [
        (None, &["RAKIT_WS_BIN", "PATH"][..]),
        (
            Some("/nonexistent/rakit"),
            &["RAKIT_WS_BIN=/nonexistent/rakit"],
        ),
        (Some(php.to_str().unwrap()), &[][..]),
    ] {
        let mut cmd = std::process::Command::new(&php);
        cmd.current_dir(&app.dir)
            .args(["rakit", "websocket:check"])
            .env("PATH", &path)
            .env_remove("RAKIT_WS_BIN");
        if let Some(bin) = bin {
            cmd.env("RAKIT_WS_BIN", bin);
        }
        let out = cmd.output().unwrap();
        if needles.is_empty() {
            // An executable that is no daemon: it runs, and its failure comes through.
            assert_ne!(out.status.code(), Some(0), "{out:?}");
            continue;
        }
        exits_2_naming(&out, needles);
    }
    // The daemon on PATH is found.
    std::os::unix::fs::symlink(daemon_binary(), empty.join("rakit")).unwrap();
    let out = std::process::Command::new(&php)
        .current_dir(&app.dir)
        .args(["rakit", "websocket:check"])
        .env("PATH", &path)
        .env_remove("RAKIT_WS_BIN")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let _ = std::fs::remove_dir_all(&empty);
    let _ = std::fs::remove_dir_all(&other);
}

/// The absolute path of a program on PATH.
fn which(program: &str) -> std::path::PathBuf {
    std::env::var_os("PATH")
        .and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|dir| dir.join(program))
                .find(|p| p.is_file())
        })
        .unwrap_or_else(|| panic!("{program} on PATH"))
}

/// The status of an upgrade with `origin` (none: no header).
#[track_caller]
fn upgrade_status(daemon: &Daemon, origin: Option<&str>) -> u16 {
    let origin = origin.map_or(String::new(), |o| format!("Origin: {o}\r\n"));
    let (_, head) = raw_handshake(daemon, &upgrade_request("/", &origin));
    status_of(&head)
}

#[test]
fn run_serves_the_mapped_config_passes_signals_on_and_exits_as_the_daemon() {
    if !have_php() {
        return;
    }
    let app = RakitApp::new(
        "['origin_required' => true, 'allowed_origins' => ['https://app.example'], \
         'max_buffer_size' => 1024, 'ping_timeout' => 0, 'logging_output' => 'stdout', \
         'protocol_required' => false, 'logging_level' => 'info']",
    );
    let config = app.dir.join("application/config/websocket.php");
    let mut daemon = app.run(&[]);
    let pid = daemon.daemon_pid();
    assert_eq!(upgrade_status(&daemon, None), 403);
    assert_eq!(upgrade_status(&daemon, Some("https://evil.example")), 403);
    assert_eq!(upgrade_status(&daemon, Some("https://app.example")), 101);
    // max_buffer_size: a bigger message closes 1009.
    let connect = |origin: &str| {
        let mut request = format!("ws://{}/", daemon.addr)
            .into_client_request()
            .unwrap();
        request
            .headers_mut()
            .insert("Origin", origin.parse().unwrap());
        let (mut ws, _) = tungstenite::connect(request).unwrap();
        set_timeout(&ws);
        assert_eq!(recv_json(&mut ws)["type"], "welcome");
        ws
    };
    let mut ws = connect("https://app.example");
    ws.send(Message::text(format!(
        "{{\"message\":\"{}\"}}",
        "x".repeat(2000)
    )))
    .unwrap();
    assert_eq!(recv_close(&mut ws).0, 1009);

    // SIGHUP to php: websocket.php mapped again, and the daemon reloads it.
    let mapped = |origins: &str| {
        format!(
            "<?php\nreturn ['origin_required' => true, 'allowed_origins' => [{origins}], \
             'max_buffer_size' => 1024, 'ping_timeout' => 0, 'logging_level' => 'info'];\n"
        )
    };
    ops::write_atomically(&config, &mapped("'https://other.example'"));
    signal(daemon.child.id(), "HUP", 1);
    let line = daemon.wait_for_line(RELOADED);
    assert!(line.ends_with("applied allowed_origins"), "{line}");
    assert_eq!(upgrade_status(&daemon, Some("https://other.example")), 101);
    assert_eq!(upgrade_status(&daemon, Some("https://app.example")), 403);
    // A broken websocket.php: php says so, and the daemon is not asked to reload.
    ops::write_atomically(&config, "<?php\nreturn 'oops';\n");
    signal(daemon.child.id(), "HUP", 1);
    // SIGTERM to php: the daemon shuts down gracefully and php exits with its status.
    let mut ws = connect("https://other.example");
    signal(daemon.child.id(), "TERM", 1);
    assert_eq!(recv_close(&mut ws).0, 1001);
    let status = wait_exit(&mut daemon.child, GONE_WITHIN + SLACK).expect("php exited");
    assert_eq!(status.code(), Some(0));
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "the daemon is gone"
    );
    assert_eq!(daemon.count_lines(RELOADED), 1);
    let mut stderr = String::new();
    use std::io::Read;
    daemon
        .child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(
        stderr.contains("rakit-websocket: SIGHUP: application/config/websocket.php: ")
            && stderr.contains("the daemon keeps its settings"),
        "{stderr}"
    );
    // The key without an equivalent was reported once, at start (not again on SIGHUP).
    assert_eq!(ignored(&stderr).len(), 1, "{stderr}");
}

#[test]
fn the_daemons_failures_and_exit_status_come_through() {
    if !have_php() {
        return;
    }
    // A value the daemon refuses: its own message and exit 2.
    let app = RakitApp::new("['command_policy' => 'everyone']");
    let out = app.php(&["websocket:run", "--port=0"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(text(&out.stderr).contains("command_policy"), "{out:?}");
    // A port in use: exit 1, naming the address.
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    app.config("[]");
    let out = app
        .php(&["websocket:run", &format!("--port={port}")])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        text(&out.stderr).contains(&format!("127.0.0.1:{port}")),
        "{out:?}"
    );
    // Killed: 128 + the signal, as a shell reports it.
    let mut daemon = RakitApp::new("[]").run(&[]);
    let pid = daemon.daemon_pid();
    signal(pid, "KILL", 1);
    let status = wait_exit(&mut daemon.child, common::WAIT).expect("php exited");
    assert_eq!(status.code(), Some(128 + 9));
}
