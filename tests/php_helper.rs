//! The PHP helper (clients/php/RakitWebSocket.php, SPEC section 14) with Debian's php-cli: its
//! syntax, its unit checks, its tokens against the daemon's own verification and handshake, and
//! (once the HTTP API is wired into the event loop) every API call against a running daemon.
//!
//! Without `php` the tests are skipped, unless RAKIT_REQUIRE_PHP=1 (set by scripts/test.sh,
//! which installs php-cli), which makes a missing php a failure.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::msg::{cli_token, recv_close, until_pong};
use common::{recv_json, send_json, Daemon};
use rakit::config::Config;
use rakit::events::LogHandler;
use rakit::http::{self, body, Head, HttpCtx, HttpSettings};
use rakit::metrics::{Gauges, Metrics};
use rakit::router::{ConnId, Frame, Outbox, Router, RouterConfig};
use serde_json::{json, Value};

const SECRET: &str = "php-helper-test-secret";
const API_KEY: &str = "php-helper-api-key-0123456789";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// False (after saying why) when php is missing and not required.
fn have_php() -> bool {
    let found = Command::new("php")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        assert!(
            std::env::var("RAKIT_REQUIRE_PHP").as_deref() != Ok("1"),
            "php not found and RAKIT_REQUIRE_PHP=1 (apt-get install php-cli)"
        );
        eprintln!("skipped: php not found (apt-get install php-cli, or run scripts/test.sh)");
    }
    found
}

#[track_caller]
fn php(script: &Path, args: &[&str]) -> Output {
    let out = Command::new("php")
        .arg(script)
        .args(args)
        .output()
        .expect("run php");
    assert!(
        out.status.success(),
        "php {} failed:\n{}\n{}",
        script.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

#[track_caller]
fn php_token(email: &str, admin: &str, ttl: &str) -> String {
    let script = root().join("tests/php/token.php");
    let out = php(&script, &[SECRET, "42", "Ann Lee", email, admin, ttl]);
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

fn claims(token: &str) -> Value {
    use base64::Engine as _;
    let payload = token.split('.').nth(1).unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

#[test]
fn php_files_have_no_syntax_errors() {
    if !have_php() {
        return;
    }
    let mut files = vec![root().join("clients/php/RakitWebSocket.php")];
    for entry in std::fs::read_dir(root().join("tests/php")).unwrap() {
        files.push(entry.unwrap().path());
    }
    for file in files {
        let out = Command::new("php").arg("-l").arg(&file).output().unwrap();
        assert!(out.status.success(), "{}: {out:?}", file.display());
    }
}

#[test]
fn php_unit_checks_pass() {
    if !have_php() {
        return;
    }
    let out = php(&root().join("tests/php/unit.php"), &[]);
    assert!(String::from_utf8_lossy(&out.stdout).ends_with("all ok\n"));
}

#[test]
fn php_tokens_pass_the_daemons_verification_with_the_clis_claims() {
    if !have_php() {
        return;
    }
    let now = rakit::session::now_unix();
    let token = php_token("ann@example.com", "admin", "600");
    let user = rakit::session::verify(&token, SECRET.as_bytes(), now).expect("accepted");
    assert_eq!(
        (
            user.id.as_str(),
            user.name.as_str(),
            user.email.as_deref(),
            user.admin
        ),
        ("42", "Ann Lee", Some("ann@example.com"), true)
    );
    // Same claims as `rakit websocket:token`, exp aside.
    let cli = cli_token(SECRET, "42", "Ann Lee", Some("ann@example.com"), true, 600);
    let (mut a, mut b) = (claims(&token), claims(&cli));
    assert!(
        a["exp"]
            .as_u64()
            .unwrap()
            .abs_diff(b["exp"].as_u64().unwrap())
            <= 2
    );
    a.as_object_mut().unwrap().remove("exp");
    b.as_object_mut().unwrap().remove("exp");
    assert_eq!(a, b);
    // A guest-like user without email or admin; a wrong secret and an expired token fail.
    let plain = php_token("-", "-", "600");
    let user = rakit::session::verify(&plain, SECRET.as_bytes(), now).unwrap();
    assert_eq!((user.email, user.admin), (None, false));
    assert!(rakit::session::verify(&plain, b"other", now).is_err());
    let expired = php_token("-", "-", "0");
    assert!(rakit::session::verify(&expired, SECRET.as_bytes(), now + 1).is_err());
}

#[test]
fn a_php_token_logs_a_browser_in() {
    if !have_php() {
        return;
    }
    let daemon = Daemon::start(
        &format!("logging_level = \"warn\"\n[session]\nsecret = \"{SECRET}\"\n"),
        &[],
    );
    let token = php_token("ann@example.com", "-", "600");
    let (_ws, welcome) = daemon.client_at(&format!("/?token={token}"));
    assert_eq!(
        welcome["user"],
        json!({"id":"42","name":"Ann Lee","email":"ann@example.com"})
    );
}

#[track_caller]
fn php_channel_token(channel: &str, kind: &str, id: &str, ttl: &str) -> String {
    let script = root().join("tests/php/channel.php");
    let out = php(&script, &[SECRET, channel, kind, id, ttl]);
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

#[test]
fn php_channel_tokens_open_token_channels_of_a_running_daemon() {
    if !have_php() {
        return;
    }
    let daemon = Daemon::start(
        &format!(
            "logging_level = \"warn\"\npresence = false\n[session]\nsecret = \"{SECRET}\"\n\
             [[namespaces]]\nprefix = \"order.\"\nsubscribe = \"token\"\n"
        ),
        &[],
    );
    // A user's token (the backend knows its session user) and a guest's (the page sent its
    // client_id from `welcome`), each for one channel.
    let session = php_token("-", "-", "600");
    let (mut ann, _) = daemon.client_at(&format!("/?token={session}"));
    let (mut guest, welcome) = daemon.client();
    let guest_id = welcome["client_id"].as_str().unwrap();
    let subscribe = |ws: &mut common::Client, channel: &str, token: &str| {
        send_json(
            ws,
            &json!({"event":"subscribe","channel":channel,"token":token}),
        );
        recv_json(ws)
    };
    let anns = php_channel_token("order.42", "user", "42", "600");
    let guests = php_channel_token("order.42", "client", guest_id, "600");
    // Not for another channel, user or connection; not once expired.
    let expired = php_channel_token("order.42", "user", "42", "0");
    let refused = |v: Value, channel: &str| {
        assert_eq!(
            (&v["code"], &v["channel"]),
            (&json!("forbidden"), &json!(channel)),
            "{v}"
        );
    };
    refused(subscribe(&mut guest, "order.42", &anns), "order.42");
    refused(subscribe(&mut ann, "order.43", &anns), "order.43");
    refused(subscribe(&mut ann, "order.42", &expired), "order.42");
    refused(subscribe(&mut ann, "order.42", &guests), "order.42");
    assert_eq!(
        subscribe(&mut ann, "order.42", &anns),
        json!({"type":"subscribed","channel":"order.42"})
    );
    assert_eq!(
        subscribe(&mut guest, "order.42", &guests)["type"],
        "subscribed"
    );
    // The same claims as `rakit websocket:token --channel`, exp aside.
    let cli = common::namespaces::channel_token(SECRET, "order.42", ("--sub", "42"), 600);
    let (mut a, mut b) = (claims(&anns), claims(&cli));
    a.as_object_mut().unwrap().remove("exp");
    b.as_object_mut().unwrap().remove("exp");
    assert_eq!(a, b);
}

/// Records what the router asks of the loop.
#[derive(Default)]
struct Recorder {
    sent: Vec<(ConnId, String)>,
    closed: Vec<(ConnId, u16)>,
}

impl Outbox for Recorder {
    fn send(&mut self, conn: ConnId, frame: &Frame) {
        // Server frames here are short unmasked text frames: 2-byte header (or 4 for >125).
        let start = if frame[1] == 126 { 4 } else { 2 };
        self.sent
            .push((conn, String::from_utf8(frame[start..].to_vec()).unwrap()));
    }
    fn close(&mut self, conn: ConnId, code: u16, _: &str) {
        self.closed.push((conn, code));
    }
}

/// Reads one request (head and Content-Length body) the way the loop will: a [`Head`], then
/// `body::plan`, then exactly that many bytes.
fn read_request(stream: &mut TcpStream, max_body: usize) -> Option<(Head, Vec<u8>)> {
    let mut data = Vec::new();
    let mut buf = [0u8; 4096];
    let end = loop {
        if let Some(i) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = stream.read(&mut buf).ok().filter(|&n| n > 0)?;
        data.extend_from_slice(&buf[..n]);
    };
    let text = std::str::from_utf8(&data[..end]).ok()?.to_owned();
    let mut lines = text.split("\r\n");
    let mut words = lines.next()?.split(' ');
    let (method, target, version) = (words.next()?, words.next()?, words.next()?);
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p, Some(q.to_owned())),
        None => (target, None),
    };
    let mut head = Head {
        method: method.to_owned(),
        path: path.to_owned(),
        query,
        http_minor: u8::from(version == "HTTP/1.1"),
        ..Head::default()
    };
    for line in lines.filter(|l| !l.is_empty()) {
        let (name, value) = line.split_once(':')?;
        let value = Some(value.trim().to_owned());
        match name.trim().to_ascii_lowercase().as_str() {
            "authorization" => head.authorization = value,
            "content-length" => head.content_length = value,
            "transfer-encoding" => head.transfer_encoding = value,
            "connection" => head.connection = value,
            _ => {}
        }
    }
    let n = body::plan(&head, max_body).ok()?;
    let mut body = data[end..].to_vec();
    while body.len() < n {
        let got = stream.read(&mut buf).ok().filter(|&g| g > 0)?;
        body.extend_from_slice(&buf[..got]);
    }
    body.truncate(n);
    Some((head, body))
}

/// tests/php/api.php against `rakit::http::handle` with a real router and two clients, served
/// from this thread (the router is single-threaded, like the loop). Checks what PHP saw and
/// what the clients would receive. Runs today; the daemon variant below waits for the wiring.
#[test]
fn every_api_call_against_the_http_module() {
    if !have_php() {
        return;
    }
    let mut config = Config::default();
    config.api.key = API_KEY.into();
    let settings = HttpSettings::new(&config);
    let router_config = RouterConfig {
        presence: false,
        ..RouterConfig::default()
    };
    let mut router = Router::new(router_config, Box::new(LogHandler), 99);
    let mut out = Recorder::default();
    let mut metrics = Metrics::default();
    let now = Instant::now();
    let id_a = router
        .connect(1, None, 1_700_000_000, now, &mut out)
        .to_owned();
    let id_b = router
        .connect(2, None, 1_700_000_001, now, &mut out)
        .to_owned();
    router.handle_text(
        1,
        r#"{"event":"subscribe","channel":"news"}"#,
        now,
        &mut out,
    );
    out.sent.clear();

    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let mut child = Command::new("php")
        .arg(root().join("tests/php/api.php"))
        .args([&base, API_KEY, &id_a, &id_b])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match listener.accept() {
            Ok((mut stream, _)) => {
                stream.set_nonblocking(false).unwrap();
                stream
                    .set_read_timeout(Some(Duration::from_secs(10)))
                    .unwrap();
                let Some((head, body)) = read_request(&mut stream, settings.max_body) else {
                    continue;
                };
                let mut ctx = HttpCtx {
                    settings: &settings,
                    router: &mut router,
                    outbox: &mut out,
                    metrics: &mut metrics,
                    gauges: Gauges::default(),
                    now,
                };
                let mut response = Vec::new();
                http::handle(&head, &body, &mut ctx, &mut response);
                stream.write_all(&response).unwrap();
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if child.try_wait().unwrap().is_some() {
                    break;
                }
                assert!(Instant::now() < deadline, "php did not finish");
                std::thread::sleep(Duration::from_millis(2));
            }
            Err(e) => panic!("accept: {e}"),
        }
    }
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    check_api_steps(&String::from_utf8(output.stdout).unwrap(), &id_a);
    let to = |conn: ConnId| -> Vec<Value> {
        out.sent
            .iter()
            .filter(|(c, _)| *c == conn)
            .map(|(_, t)| serde_json::from_str(t).unwrap())
            .collect()
    };
    assert_eq!(to(1), expected_for_subscriber());
    assert_eq!(to(2), expected_for_other());
    assert_eq!(out.closed, [(2, 4000)]);
    assert!(metrics.api_requests.get(200) >= 8);
    assert_eq!(metrics.api_requests.get(401), 1);
}

/// Checks the lines tests/php/api.php printed.
#[track_caller]
fn check_api_steps(stdout: &str, id_a: &str) {
    let steps: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    let step = |name: &str| -> Value {
        steps
            .iter()
            .find(|s| s["step"] == name)
            .unwrap_or_else(|| panic!("no step {name}: {steps:?}"))
            .clone()
    };
    let presence = step("presence");
    assert_eq!(presence["count"], 2);
    assert_eq!(presence["users"][0]["id"], id_a);
    assert_eq!(presence["users"][1]["name"], "Guest");
    assert_eq!(
        step("channels")["channels"],
        json!([{"name":"news","subscribers":1}])
    );
    assert_eq!(
        step("channel"),
        json!({"step":"channel","name":"news","subscribers":1,"clients":[id_a]})
    );
    let results = step("batch")["results"].clone();
    assert_eq!(results[0], json!({"ok":true}));
    assert_eq!(results[1]["code"], "unknown_client");
    assert_eq!(results[2], json!({"ok":true}));
    for (name, code, status) in [
        ("unknown_client", "unknown_client", 404),
        ("invalid_channel", "invalid_channel", 400),
        ("unauthorized", "unauthorized", 401),
        ("too_many", "bad_request", 400),
    ] {
        assert_eq!(
            step(name),
            json!({"step":name,"thrown":true,"code":code,"status":status})
        );
    }
    step("done");
}

/// What the subscribed client receives from tests/php/api.php, in order.
fn expected_for_subscriber() -> Vec<Value> {
    vec![
        json!({"type":"message","message":{"hello":"world","n":1.0}}),
        json!({"type":"channel","channel":"news","data":"extra!"}),
        json!({"type":"private","message":"psst"}),
        json!({"type":"message","message":"one"}),
        json!({"type":"message","message":"two"}),
    ]
}

/// What the other client receives before it is disconnected (4000).
fn expected_for_other() -> Vec<Value> {
    vec![
        json!({"type":"message","message":{"hello":"world","n":1.0}}),
        json!({"type":"message","message":"one"}),
        json!({"type":"message","message":"two"}),
    ]
}

#[test]
fn every_api_call_against_a_running_daemon() {
    if !have_php() {
        return;
    }
    let daemon = Daemon::start(
        &format!("logging_level = \"warn\"\npresence = false\n[api]\nkey = \"{API_KEY}\"\n"),
        &[],
    );
    let (mut a, welcome_a) = daemon.client();
    let (mut b, welcome_b) = daemon.client();
    let (id_a, id_b) = (
        welcome_a["client_id"].as_str().unwrap().to_owned(),
        welcome_b["client_id"].as_str().unwrap().to_owned(),
    );
    send_json(&mut a, &json!({"event":"subscribe","channel":"news"}));
    assert_eq!(recv_json(&mut a)["type"], "subscribed");

    let base = format!("http://{}", daemon.addr);
    let out = php(
        &root().join("tests/php/api.php"),
        &[&base, API_KEY, &id_a, &id_b],
    );
    check_api_steps(&String::from_utf8(out.stdout).unwrap(), &id_a);

    // What the clients got: exactly what the same commands over WebSocket would give.
    assert_eq!(until_pong(&mut a), expected_for_subscriber());
    for expected in expected_for_other() {
        assert_eq!(recv_json(&mut b), expected);
    }
    assert_eq!(recv_close(&mut b).0, 4000);
}
