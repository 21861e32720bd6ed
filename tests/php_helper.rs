//! The PHP helper (clients/php/RakitWebSocket.php, SPEC section 14) with Debian's php-cli: its
//! syntax, its unit checks, its tokens against the daemon's own verification and handshake, and
//! (once the HTTP API is wired into the event loop) every API call against a running daemon.
//!
//! Without `php` the tests are skipped, unless RAKIT_REQUIRE_PHP=1 (set by scripts/test.sh,
//! which installs php-cli), which makes a missing php a failure.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::msg::{cli_token, recv_close, until_pong};
use common::{recv_json, send_json, Daemon};
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
        (user.id.as_str(), user.name.as_str(), user.email.as_deref(), user.admin),
        ("42", "Ann Lee", Some("ann@example.com"), true)
    );
    // Same claims as `rakit websocket:token`, exp aside.
    let cli = cli_token(SECRET, "42", "Ann Lee", Some("ann@example.com"), true, 600);
    let (mut a, mut b) = (claims(&token), claims(&cli));
    assert!(a["exp"].as_u64().unwrap().abs_diff(b["exp"].as_u64().unwrap()) <= 2);
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

#[test]
#[ignore = "needs the HTTP API wired into the event loop"]
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
    let steps: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
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
    assert_eq!(presence["users"][0]["id"], id_a.as_str());
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

    // What the clients got: exactly what the same commands over WebSocket would give.
    assert_eq!(
        until_pong(&mut a),
        [
            json!({"type":"message","message":{"hello":"world","n":1.0}}),
            json!({"type":"channel","channel":"news","data":"extra!"}),
            json!({"type":"private","message":"psst"}),
            json!({"type":"message","message":"one"}),
            json!({"type":"message","message":"two"}),
        ]
    );
    for expected in [
        json!({"type":"message","message":{"hello":"world","n":1.0}}),
        json!({"type":"message","message":"one"}),
        json!({"type":"message","message":"two"}),
    ] {
        assert_eq!(recv_json(&mut b), expected);
    }
    assert_eq!(recv_close(&mut b).0, 4000);
}
