//! `kill -HUP` (SPEC section 18) over real processes: each group of reloadable keys applies to
//! new connections and messages at once; keys that need a restart are logged and keep their
//! values; an invalid file changes nothing; the loop serves on while a reload waits for its
//! file; a storm of signals is one reload in progress and one after it; a file rewritten in
//! place while it is read is never half-applied. (TLS files: tests/daemon_tls.rs.)

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::api::{get, once};
use common::msg::{cli_token, recv_close, until_pong};
use common::ops::{signal, write_atomically, REFUSED, RELOADED};
use common::receiver::{webhook_counts, Endpoint, Mode, Post};
use common::*;
use serde_json::{json, Value};

const SECRET: &str = "reload-session-secret";

/// A config that logs at info (reloads are logged there) with `extra` after it.
fn base(extra: &str) -> String {
    format!("logging_level = \"info\"\npresence = false\n{extra}")
}

/// An upgrade request with this `Host`, `Origin` (if any) and extra header lines.
fn upgrade(path: &str, host: &str, origin: Option<&str>, extra: &str) -> Vec<u8> {
    let origin = origin.map_or(String::new(), |o| format!("Origin: {o}\r\n"));
    format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
         {origin}{extra}\r\n"
    )
    .into_bytes()
}

/// The status of the answer to `request` on a new connection, with the head and, after a 101,
/// the socket.
#[track_caller]
fn handshake(daemon: &Daemon, request: &[u8]) -> (u16, String, TcpStream) {
    let (s, head) = raw_handshake(daemon, request);
    (status_of(&head), head, s)
}

/// The first text frame on a raw connection, as JSON.
#[track_caller]
fn first_json(s: &mut TcpStream) -> Value {
    let frame = read_frame(s);
    assert_eq!(frame.byte0, 0x81, "{frame:?}");
    serde_json::from_slice(&frame.payload).unwrap()
}

#[track_caller]
fn assert_reloaded(lines: &[String], applied: &str) {
    let last = lines.last().unwrap();
    assert!(
        last.contains(RELOADED) && last.ends_with(applied),
        "expected `{applied}` in the reload line: {lines:#?}"
    );
}

#[test]
fn handshake_keys_apply_to_new_connections_at_once() {
    let daemon = Daemon::start(&base(""), &[]);
    let (mut before, _) = daemon.client();
    let app = Some("https://app.example");
    let evil = Some("https://evil.example");
    assert_eq!(
        handshake(&daemon, &upgrade("/", "localhost", evil, "")).0,
        101
    );

    let lines = daemon.reload(&base(&format!(
        "allowed_origins = [\"https://app.example\"]\norigin_required = true\n\
         allowed_hosts = [\"ws.example:443\"]\nsupported_protocols = [\"chat.v2\"]\n\
         [session]\nsecret = \"{SECRET}\"\n"
    )));
    assert_reloaded(
        &lines,
        "applied allowed_hosts, allowed_origins, origin_required, session.secret, \
         supported_protocols",
    );
    let host = "ws.example:443";
    assert_eq!(handshake(&daemon, &upgrade("/", host, evil, "")).0, 403);
    assert_eq!(handshake(&daemon, &upgrade("/", host, None, "")).0, 403);
    assert_eq!(
        handshake(&daemon, &upgrade("/", "other:443", app, "")).0,
        400
    );
    let protocols = "Sec-WebSocket-Protocol: x, chat.v2\r\n";
    let (status, head, mut s) = handshake(&daemon, &upgrade("/", host, app, protocols));
    assert_eq!(status, 101, "{head}");
    assert!(
        head.contains("\r\nSec-WebSocket-Protocol: chat.v2\r\n"),
        "{head}"
    );
    assert_eq!(first_json(&mut s)["user"], Value::Null);
    // The new session secret: its tokens make users, others are refused.
    let token = cli_token(SECRET, "u-7", "Grace", None, false, 600);
    let (status, _, mut s) = handshake(
        &daemon,
        &upgrade(&format!("/?token={token}"), host, app, ""),
    );
    assert_eq!(status, 101);
    assert_eq!(first_json(&mut s)["user"]["id"], "u-7");
    let forged = cli_token("another-secret", "u-7", "Grace", None, false, 600);
    let forged = upgrade(&format!("/?token={forged}"), host, app, "");
    assert_eq!(handshake(&daemon, &forged).0, 401);
    // The connection made before is not judged again.
    assert!(until_pong(&mut before).is_empty());
}

#[test]
fn command_policy_applies_to_the_next_message_of_an_open_connection() {
    let daemon = Daemon::start(&base(""), &[]);
    let (mut ws, _) = daemon.client();
    let command = json!({"command": "broadcast", "message": "hi"});
    send_json(&mut ws, &command);
    assert_eq!(recv_json(&mut ws)["code"], "forbidden");

    assert_reloaded(
        &daemon.reload(&base("command_policy = \"any\"\n")),
        "applied command_policy",
    );
    send_json(&mut ws, &command);
    assert_eq!(
        recv_json(&mut ws),
        json!({"type": "message", "message": "hi"})
    );
    assert_eq!(
        recv_json(&mut ws),
        json!({"type": "ack", "command": "broadcast"})
    );

    daemon.reload(&base("command_policy = \"off\"\n"));
    send_json(&mut ws, &command);
    assert_eq!(recv_json(&mut ws)["code"], "forbidden");
}

#[test]
fn the_log_level_changes_at_once() {
    let daemon = Daemon::start(&base(""), &[]);
    let id = |welcome: &Value| welcome["client_id"].as_str().unwrap().to_owned();
    let (_a, welcome) = daemon.client();
    daemon.wait_for_line(&format!("connect: {} (guest)", id(&welcome)));

    // Quieter: the reload's own line still shows (written before the level drops).
    assert_reloaded(
        &daemon.reload("logging_level = \"error\"\npresence = false\n"),
        "applied logging_level",
    );
    let (_b, quiet) = daemon.client();
    // Louder again: debug lines appear too.
    daemon.reload("logging_level = \"debug\"\npresence = false\n");
    let (mut c, welcome) = daemon.client();
    daemon.wait_for_line(&format!("connect: {} (guest)", id(&welcome)));
    send_json(&mut c, &json!({"ping": 1}));
    recv_json(&mut c);
    daemon.wait_for_line(&format!("receive: {} (guest)", id(&welcome)));
    // Lines are written in order: had b's connect been logged, it would be there by now.
    let b = format!("connect: {}", id(&quiet));
    assert_eq!(daemon.count_lines(&b), 0, "{:#?}", daemon.log_lines());
}

#[test]
fn api_metrics_and_demo_page_keys_apply_to_the_next_request() {
    let (k1, k2, mk) = (
        "first-api-key-0123456789",
        "second-api-key-0123456789",
        "metrics-key-0123456789",
    );
    let daemon = Daemon::start(&base(&format!("[api]\nkey = \"{k1}\"\n")), &[]);
    let status = |request: Vec<u8>| once(daemon.addr, &request).status;
    assert_eq!(status(get("/api/channels", Some(k1))), 200);
    assert_eq!(status(get("/", None)), 200);
    assert_eq!(status(get("/metrics", None)), 200);

    assert_reloaded(
        &daemon.reload(&base(&format!(
            "demo_page = false\n[api]\nkey = \"{k2}\"\n[metrics]\nkey = \"{mk}\"\n"
        ))),
        "applied api.key, demo_page, metrics.key",
    );
    assert_eq!(status(get("/api/channels", Some(k1))), 401);
    assert_eq!(status(get("/api/channels", Some(k2))), 200);
    assert_eq!(status(get("/", None)), 404);
    assert_eq!(status(get("/metrics", None)), 401);
    assert_eq!(status(get("/metrics", Some(mk))), 200);
}

/// The connect events of `posts` (one POST may carry several events).
fn connects(post: &Post) -> Vec<String> {
    post.json()["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["name"] == "connect")
        .map(|e| e["client_id"].as_str().unwrap().to_owned())
        .collect()
}

#[track_caller]
fn signed_with(post: &Post, secret: &str) {
    let expected = rakit::webhooks::signature(secret.as_bytes(), &post.body);
    assert_eq!(post.header("x-rakit-signature"), Some(expected.as_str()));
}

#[test]
fn webhooks_turn_on_move_and_turn_off() {
    let (one, two) = (Endpoint::start(Mode::Answer), Endpoint::start(Mode::Answer));
    let daemon = Daemon::start(&base(""), &[]);
    let hooks = |url: &str, secret: &str| {
        base(&format!(
            "[webhooks]\nurl = \"{url}\"\nsecret = \"{secret}\"\nbatch_ms = 10\nevents = [\"connect\"]\n"
        ))
    };
    let id = |welcome: &Value| welcome["client_id"].as_str().unwrap().to_owned();

    let steps = [
        (
            &one,
            "secret-one",
            "applied webhooks.batch_ms, webhooks.events, webhooks.secret, webhooks.url",
        ),
        (&two, "secret-two", "applied webhooks.secret, webhooks.url"),
    ];
    let mut clients = Vec::new();
    for (sent, (endpoint, secret, applied)) in (1..).zip(steps) {
        assert_reloaded(&daemon.reload(&hooks(&endpoint.url(), secret)), applied);
        let (ws, welcome) = daemon.client();
        let post = endpoint.next();
        signed_with(&post, secret);
        assert_eq!(connects(&post), [id(&welcome)]);
        clients.push(ws);
        // The counts go on across workers (counted once the endpoint answered).
        let deadline = Instant::now() + WAIT;
        while webhook_counts(&daemon).0 < sent && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(webhook_counts(&daemon).0, sent);
    }

    daemon.reload(&base(""));
    let (_c, _) = daemon.client();
    let quiet = Duration::from_millis(500);
    for (name, endpoint) in [("one", &one), ("two", &two)] {
        if let Ok(post) = endpoint.posts.recv_timeout(quiet) {
            panic!(
                "{name} got a POST after its webhooks were replaced: {:?}",
                post.json()
            );
        }
    }
}

#[test]
fn keys_that_need_a_restart_are_logged_and_keep_their_values() {
    let dir = scratch_dir();
    let file = dir.join("websocket.toml");
    std::fs::write(
        &file,
        base("port = 0\nmax_buffer_size = 1000\nmax_connections = 100\n"),
    )
    .unwrap();
    let daemon = Daemon::start_in(dir, &[format!("--config={}", file.display())]);
    let (mut a, _) = daemon.client();

    let lines = daemon.reload(&base(
        "port = 1\nhost = \"0.0.0.0\"\nmax_buffer_size = 10\nmax_connections = 1\n\
         command_policy = \"any\"\n[cluster]\nnamespace = \"other\"\n",
    ));
    for key in [
        "cluster.namespace",
        "host",
        "max_buffer_size",
        "max_connections",
        "port",
    ] {
        let line = format!(
            "SIGHUP: {key} changed in {} but needs a restart",
            file.display()
        );
        assert!(lines.iter().any(|l| l.contains(&line)), "{key}: {lines:#?}");
    }
    // The reloadable key in the same file applies.
    assert_reloaded(&lines, "applied command_policy");
    // Same address, same message limit (a 500-byte message still passes), same capacity.
    let (mut b, _) = daemon.client();
    let text = "x".repeat(500);
    send_json(&mut b, &json!({"command": "broadcast", "message": text}));
    for ws in [&mut a, &mut b] {
        assert_eq!(recv_json(ws)["message"], text.as_str());
    }
}

#[test]
fn an_invalid_file_changes_nothing() {
    let daemon = Daemon::start(
        &base("allowed_origins = [\"https://one.example\"]\ncommand_policy = \"any\"\n"),
        &[],
    );
    let one = Some("https://one.example");
    let two = Some("https://two.example");
    let cases = [
        (
            "allowed_origins = [\"https://two.example\"]\ncommand_policy = \"off\"\nbogus = 1\n",
            "unknown key `bogus`",
        ),
        (
            "allowed_origins = \"https://two.example\"\n",
            "allowed_origins: invalid type",
        ),
        (
            "allowed_origins = [\"https://two.example\"]\nmax_connections = 0\n",
            "max_connections",
        ),
        ("allowed_origins = [\"https://two.example\"\n", "line "),
        ("", "the file is empty"),
    ];
    for (text, reason) in cases {
        let lines = daemon.reload(text);
        let last = lines.last().unwrap();
        assert!(
            last.contains(REFUSED) && last.contains(reason),
            "{text:?}: {lines:#?}"
        );
        assert_eq!(
            handshake(&daemon, &upgrade("/", "localhost", one, "")).0,
            101
        );
        assert_eq!(
            handshake(&daemon, &upgrade("/", "localhost", two, "")).0,
            403
        );
    }
    // A missing file, too.
    std::fs::remove_file(daemon.config_path()).unwrap();
    daemon.hup();
    let line = daemon.wait_for_nth_line(REFUSED, cases.len() + 1);
    assert!(line.contains("No such file"), "{line}");
    let (mut ws, _) = daemon.client();
    send_json(&mut ws, &json!({"command": "broadcast", "message": 1}));
    assert_eq!(recv_json(&mut ws)["type"], "message");
}

#[test]
fn without_a_config_file_sighup_reads_the_default_path() {
    let dir = scratch_dir();
    let daemon = Daemon::start_in(dir.clone(), &["--port=0".to_owned()]);
    daemon.hup();
    let line = daemon.wait_for_line(RELOADED);
    assert!(
        line.ends_with("from config/websocket.toml: no reloadable value changed"),
        "{line}"
    );
    std::fs::create_dir_all(dir.join("config")).unwrap();
    write_atomically(
        &dir.join("config/websocket.toml"),
        "command_policy = \"any\"\n",
    );
    daemon.hup();
    assert!(daemon
        .wait_for_nth_line(RELOADED, 2)
        .ends_with("applied command_policy"));
}

// ---- The loop never waits for a reload; storms coalesce; torn files ----

/// O_NONBLOCK (Linux): opening a FIFO for writing fails at once while no reader waits on it.
const O_NONBLOCK: i32 = 0o4000;

/// Whether process `pid` has `path` open (its reload thread reading the FIFO).
fn has_open(pid: u32, path: &Path) -> bool {
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    fds.flatten()
        .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|target| target == path))
}

/// Waits, at most `within`, for `done`; false if it never held.
fn wait_for(within: Duration, done: impl Fn() -> bool) -> bool {
    let deadline = Instant::now() + within;
    while !done() {
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    true
}

/// The test's end of a FIFO the daemon reads as its config file.
struct Fifo {
    path: PathBuf,
    pid: u32,
}

impl Fifo {
    /// Replaces the daemon's config file with a FIFO: its reader blocks until the test writes.
    fn make(daemon: &Daemon) -> Fifo {
        let path = daemon.config_path();
        std::fs::remove_file(&path).unwrap();
        let made = Command::new("mkfifo").arg(&path).status().expect("mkfifo");
        assert!(made.success());
        Fifo {
            path,
            pid: daemon.child.id(),
        }
    }

    /// Waits, at most `within`, for the reload thread to open the FIFO, and opens the writing
    /// end once it has (its open returned: it reads now, until the writer closes).
    fn writer(&self, within: Duration) -> Option<std::fs::File> {
        use std::os::unix::fs::OpenOptionsExt;
        let open = || {
            std::fs::OpenOptions::new()
                .write(true)
                .custom_flags(O_NONBLOCK)
                .open(&self.path)
        };
        let deadline = Instant::now() + within;
        let writer = loop {
            match open() {
                Ok(writer) => break writer,
                Err(e) if e.raw_os_error() == Some(6) => {} // ENXIO: no reader yet
                Err(e) => panic!("opening the FIFO: {e}"),
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(2));
        };
        assert!(wait_for(WAIT, || has_open(self.pid, &self.path)));
        Some(writer)
    }

    /// Hands the reader `text` and waits until it closed the FIFO again.
    fn give(&self, mut writer: std::fs::File, text: &str) {
        writer.write_all(text.as_bytes()).unwrap();
        drop(writer);
        assert!(wait_for(WAIT, || !has_open(self.pid, &self.path)));
    }
}

/// Round trips through the loop: it is serving.
#[track_caller]
fn serving(daemon: &Daemon) {
    let (mut ws, _) = daemon.client();
    for _ in 0..2 {
        assert!(until_pong(&mut ws).is_empty());
    }
}

#[test]
fn the_loop_serves_while_a_reload_waits_and_a_storm_is_two_reloads() {
    let daemon = Daemon::start(&base(""), &[]);
    let fifo = Fifo::make(&daemon);
    let text = base("command_policy = \"any\"\n");

    daemon.hup();
    // The reload thread reads the file, and goes on reading until the test writes it...
    let writer = fifo.writer(WAIT).expect("the reload opened the file");
    // ... while the loop serves.
    serving(&daemon);
    // A storm meanwhile: one more reload is queued, the rest are that same one.
    signal(daemon.child.id(), "HUP", 300);
    serving(&daemon);
    fifo.give(writer, &text);
    let mut reads = 1;
    while let Some(writer) = fifo.writer(Duration::from_secs(1)) {
        fifo.give(writer, &text);
        reads += 1;
        assert!(
            reads < 50,
            "the storm was not coalesced: {reads} reads and counting: {:#?}",
            daemon.log_lines()
        );
    }
    daemon.wait_for_nth_line(RELOADED, 2);
    assert_eq!(daemon.count_lines(RELOADED), 2, "{:#?}", daemon.log_lines());
    assert_eq!(daemon.count_lines(REFUSED), 0, "{:#?}", daemon.log_lines());
    let (mut ws, _) = daemon.client();
    send_json(&mut ws, &json!({"command": "broadcast", "message": 1}));
    assert_eq!(recv_json(&mut ws)["type"], "message");
    eprintln!("{reads} reads of the FIFO for the two reloads");
}

#[test]
fn a_file_rewritten_in_place_while_it_is_read_is_never_half_applied() {
    // Both versions require an Origin; a torn read (an empty file is the defaults) would not.
    let version = |n: u32| {
        base(&format!(
            "allowed_origins = [\"https://v{n}.example\"]\norigin_required = true\n"
        ))
    };
    let daemon = Daemon::start(&version(0), &[]);
    let path = daemon.config_path();
    let stop = Arc::new(AtomicBool::new(false));
    // An editor saving in place: truncate, a moment, then the whole text.
    let writer = {
        let (path, stop, v1, v2) = (path.clone(), Arc::clone(&stop), version(1), version(2));
        std::thread::spawn(move || {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let mut file = std::fs::File::create(&path).unwrap();
                std::thread::sleep(Duration::from_millis(1));
                file.write_all(if n % 2 == 0 { &v1 } else { &v2 }.as_bytes())
                    .unwrap();
                drop(file);
                n += 1;
                std::thread::sleep(Duration::from_millis(1));
            }
        })
    };
    let no_origin = upgrade("/", "localhost", None, "");
    for round in 1..=30 {
        daemon.hup();
        daemon.wait_for_reloads(round);
        let (status, head, _) = handshake(&daemon, &no_origin);
        assert_eq!(
            status,
            403,
            "round {round}: {head}\n{:#?}",
            daemon.log_lines()
        );
    }
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    eprintln!(
        "{} reloads applied, {} refused while the file was being rewritten",
        daemon.count_lines(RELOADED),
        daemon.count_lines(REFUSED)
    );
    // Once the file is still, the next SIGHUP applies it.
    assert_reloaded(&daemon.reload(&version(3)), "applied allowed_origins");
    let v3 = upgrade("/", "localhost", Some("https://v3.example"), "");
    assert_eq!(handshake(&daemon, &v3).0, 101);
    assert_eq!(handshake(&daemon, &no_origin).0, 403);
}

#[test]
fn sigterm_still_stops_a_daemon_whose_reload_waits() {
    // A reload blocked on its file must not hold up the shutdown (SPEC section 1: exit 0).
    let mut daemon = Daemon::start(&base(""), &[]);
    let fifo = Fifo::make(&daemon);
    let (mut ws, _) = daemon.client();
    daemon.hup();
    let _writer = fifo.writer(WAIT).expect("the reload opened the file");
    serving(&daemon);
    signal(daemon.child.id(), "TERM", 1);
    assert_eq!(recv_close(&mut ws).0, 1001);
    let status = wait_exit(&mut daemon.child, GONE_WITHIN + SLACK).expect("exited");
    assert_eq!(status.code(), Some(0));
    let mut err = String::new();
    daemon
        .child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(err.is_empty(), "{err}");
}

#[test]
fn limits_apply_to_the_next_message_and_the_next_handshake() {
    // SPEC 17's limits, SPEC 18's reload: broadcasts refused by policy, then allowed; a
    // per-address cap of one, then none.
    let daemon = Daemon::start(
        &base("[limits]\nbroadcast_policy = \"off\"\nmax_connections_per_ip = 1\n"),
        &[],
    );
    let (mut ws, _) = daemon.client();
    send_json(&mut ws, &json!({"message": "hi"}));
    assert_eq!(recv_json(&mut ws)["code"], "forbidden");
    let (status, head, _s) = common::abuse::upgrade(&daemon, "/", "");
    assert_eq!(status, 429, "{head}");

    assert_reloaded(
        &daemon.reload(&base("[limits]\nbroadcast_policy = \"any\"\n")),
        "applied limits.broadcast_policy, limits.max_connections_per_ip",
    );
    send_json(&mut ws, &json!({"message": "hi"}));
    assert_eq!(recv_json(&mut ws)["message"], "hi");
    let (status, head, _s) = common::abuse::upgrade(&daemon, "/", "");
    assert_eq!(status, 101, "{head}");
}

#[test]
fn namespace_rules_apply_at_once_and_their_history_and_presence_need_a_restart() {
    use common::namespaces::{ask, assert_forbidden, subscribe};
    let daemon = Daemon::start(
        &base(&format!(
            "[session]\nsecret = \"{SECRET}\"\n[[namespaces]]\nprefix = \"order.\"\n\
             subscribe = \"authenticated\"\n"
        )),
        &[],
    );
    let (mut guest, _) = daemon.client();
    assert_forbidden(&ask(&mut guest, &subscribe("order.1", None)), "order.1");
    let lines = daemon.reload(&base(&format!(
        "[session]\nsecret = \"{SECRET}\"\n[[namespaces]]\nprefix = \"order.\"\n\
         subscribe = \"public\"\npublish = \"backend\"\npresence = true\n\
         history_size = 10\nhistory_ttl = 60\n"
    )));
    assert_reloaded(&lines, "applied namespaces");
    for key in ["history_size", "history_ttl", "presence"] {
        let wanted = format!("namespaces[\"order.\"].{key} changed");
        assert!(
            lines
                .iter()
                .any(|l| l.contains(&wanted) && l.contains("needs a restart")),
            "no restart line for {key}: {lines:#?}"
        );
    }
    // The rules: anyone may subscribe now, and no client may publish.
    let reply = ask(&mut guest, &subscribe("order.1", None));
    assert_eq!(reply["type"], "subscribed", "{reply}");
    assert!(
        reply.get("presence").is_none(),
        "presence kept off: {reply}"
    );
    assert!(reply.get("epoch").is_none(), "history kept off: {reply}");
    let publish = json!({"event":"message","channel":"order.1","data":"x"});
    assert_forbidden(&ask(&mut guest, &publish), "order.1");
}

#[test]
fn a_new_session_secret_checks_channel_tokens_too() {
    use common::namespaces::{ask, assert_forbidden, channel_token, subscribe};
    let ns = "[[namespaces]]\nprefix = \"vip.\"\nsubscribe = \"token\"\n";
    let daemon = Daemon::start(
        &base(&format!("[session]\nsecret = \"{SECRET}\"\n{ns}")),
        &[],
    );
    let (mut ws, welcome) = daemon.client();
    let id = welcome["client_id"].as_str().unwrap().to_owned();
    let old = channel_token(SECRET, "vip.a", ("--client", &id), 600);
    assert_eq!(
        ask(&mut ws, &subscribe("vip.a", Some(&old)))["type"],
        "subscribed"
    );

    let fresh = "another-session-secret";
    daemon.reload(&base(&format!("[session]\nsecret = \"{fresh}\"\n{ns}")));
    // A token of the old secret no longer opens a channel; one of the new secret does.
    assert_forbidden(&ask(&mut ws, &subscribe("vip.b", Some(&old))), "vip.b");
    let old_b = channel_token(SECRET, "vip.b", ("--client", &id), 600);
    assert_forbidden(&ask(&mut ws, &subscribe("vip.b", Some(&old_b))), "vip.b");
    let new_b = channel_token(fresh, "vip.b", ("--client", &id), 600);
    assert_eq!(
        ask(&mut ws, &subscribe("vip.b", Some(&new_b)))["type"],
        "subscribed"
    );
}
