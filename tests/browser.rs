//! The documentation's "Basic Chat" example, as written (only its URL's port
//! changed), in two headless Chromium tabs with a session cookie set:
//! tests/browser/basic_chat.mjs drives it with playwright-core and prints what
//! each tab logged; this test checks that summary.
//!
//! Needs /usr/bin/chromium, node, and `npm ci` in tests/browser (scripts/test.sh
//! does all of it). Without them the test is skipped and says so, unless it may not be
//! (tests/common/tools.rs).

mod common;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::msg::cli_token;
use common::tools::{have, Tool};
use common::{wait_exit, Daemon};
use serde_json::{json, Value};

const SECRET: &str = "browser-test-secret";
/// The whole browser run: launch, three page loads, closing.
const LIMIT: Duration = Duration::from_secs(120);

fn browser_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser")
}

/// Runs the driver; returns (exit success, stdout, stderr).
fn run_driver(base: &str, token: &str) -> (bool, String, String) {
    let mut child = Command::new("node")
        .arg(browser_dir().join("basic_chat.mjs"))
        .args([base, token, "rakit_ws_session"])
        .current_dir(browser_dir())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn node");
    let drain = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = pipe.read_to_string(&mut s);
            s
        })
    };
    let out = drain(Box::new(child.stdout.take().unwrap()));
    let err = drain(Box::new(child.stderr.take().unwrap()));
    let Some(status) = wait_exit(&mut child, LIMIT) else {
        let _ = child.kill();
        let _ = child.wait();
        panic!(
            "the browser driver did not finish within {LIMIT:?}; stderr: {}",
            err.join().unwrap()
        );
    };
    (status.success(), out.join().unwrap(), err.join().unwrap())
}

/// One tab's console lines as (run, label, value).
fn lines(summary: &Value, tab: &str) -> Vec<(u64, String, Value)> {
    summary["tabs"][tab]
        .as_array()
        .unwrap_or_else(|| panic!("no {tab} in {summary}"))
        .iter()
        .map(|l| {
            (
                l["run"].as_u64().unwrap(),
                l["label"].as_str().unwrap_or_default().to_owned(),
                l["value"].clone(),
            )
        })
        .collect()
}

/// The values logged with `Message:` in `run` of a tab.
fn messages(lines: &[(u64, String, Value)], run: u64) -> Vec<Value> {
    lines
        .iter()
        .filter(|(r, label, _)| *r == run && label == "Message:")
        .map(|(_, _, v)| v.clone())
        .collect()
}

/// The user lists logged with `Online users:` in `run` of a tab.
fn presences(lines: &[(u64, String, Value)], run: u64) -> Vec<Vec<Value>> {
    lines
        .iter()
        .filter(|(r, label, _)| *r == run && label == "Online users:")
        .map(|(_, _, v)| v.as_array().expect("users is an array").clone())
        .collect()
}

#[track_caller]
fn welcome_id(messages: &[Value], user: &Value) -> String {
    let welcome = messages
        .iter()
        .find(|m| m["type"] == "welcome")
        .unwrap_or_else(|| panic!("no welcome logged: {messages:?}"));
    assert_eq!(welcome["user"], *user, "the cookie's user: {welcome}");
    welcome["client_id"].as_str().unwrap().to_owned()
}

#[track_caller]
fn assert_hello_from(messages: &[Value], id: &str, tab: &str) {
    let hello = json!({"type": "message", "client_id": id, "message": "Hello!"});
    assert!(
        messages.contains(&hello),
        "{tab} did not log {hello}: {messages:?}"
    );
}

#[test]
fn basic_chat_example_in_two_chromium_tabs() {
    basic_chat(false);
}

/// The same over TLS: the page is loaded over https:// and connects with
/// wss:// (SPEC section 12).
#[test]
fn basic_chat_example_over_wss() {
    basic_chat(true);
}

fn basic_chat(tls: bool) {
    if !have(Tool::Browser) {
        return;
    }
    let mut config = format!("logging_level = \"warn\"\n[session]\nsecret = \"{SECRET}\"\n");
    let dir = common::scratch_dir();
    if tls {
        common::tls::make_certs(&dir, "a");
        config.push_str(&format!(
            "[tls]\ncert = \"{}\"\nkey = \"{}\"\n",
            dir.join("a.pem").display(),
            dir.join("a.key").display()
        ));
    }
    let daemon = Daemon::start(&config, &[]);
    let base = format!("{}://{}", if tls { "https" } else { "http" }, daemon.addr);
    the_example_runs(&base);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The same, with the daemon that `php rakit websocket:run` starts in a Rakit application
/// (SPEC section 18) whose websocket.php sets the session secret.
#[test]
fn basic_chat_example_served_by_php_rakit_websocket_run() {
    if !common::rakit_app::have_php() || !have(Tool::Browser) {
        return;
    }
    let app = common::rakit_app::RakitApp::new(&format!(
        "['logging_level' => 'warn', 'ping_timeout' => 0, 'session' => ['secret' => '{SECRET}']]"
    ));
    let daemon = app.run(&[]);
    the_example_runs(&format!("http://{}", daemon.addr));
}

/// Runs the example in two tabs against the daemon at `base` (http:// or https://, session
/// secret SECRET) and checks what they logged.
fn the_example_runs(base: &str) {
    let token = cli_token(
        SECRET,
        "u-1",
        "Ada Lovelace",
        Some("ada@example.com"),
        false,
        600,
    );
    let user = json!({"id": "u-1", "name": "Ada Lovelace", "email": "ada@example.com"});

    let (ok, stdout, stderr) = run_driver(base, &token);
    let summary: Value = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
        panic!("driver output is not JSON ({e}): {stdout:?}; stderr: {stderr}")
    });
    assert!(
        ok && summary["ok"] == true,
        "driver failed: {}\nsummary: {summary}\nstderr: {stderr}",
        summary["error"]
    );
    let tab1 = lines(&summary, "tab1");
    let tab2 = lines(&summary, "tab2");
    for tab in ["tab1", "tab2"] {
        for line in summary["tabs"][tab].as_array().unwrap() {
            eprintln!("{tab} run {}: {}", line["run"], line["text"]);
            assert_ne!(line["label"], "pageerror", "{tab}: {line}");
        }
    }

    // tab1 ran the example twice (opened, then reloaded after tab2 joined);
    // tab2 once, in between.
    let (t1_first, t1_second, t2) = (messages(&tab1, 1), messages(&tab1, 2), messages(&tab2, 1));
    let a1 = welcome_id(&t1_first, &user);
    let b = welcome_id(&t2, &user);
    let a2 = welcome_id(&t1_second, &user);
    assert!(a1 != b && b != a2 && a1 != a2, "{a1} {b} {a2}");

    // Each tab logged its own and the other tab's Hello!.
    assert_hello_from(&t1_first, &a1, "tab1");
    assert_hello_from(&t1_first, &b, "tab1");
    assert_hello_from(&t2, &b, "tab2");
    assert_hello_from(&t2, &a2, "tab2");
    assert_hello_from(&t1_second, &a2, "tab1 after reload");
    // Every Message: line is a welcome or a Hello! broadcast.
    for m in t1_first.iter().chain(&t1_second).chain(&t2) {
        assert!(
            m["type"] == "welcome" || (m["type"] == "message" && m["message"] == "Hello!"),
            "{m}"
        );
    }

    // Presence carries the cookie's user for every connection, and the
    // last one each tab saw lists the tabs' live connections in order.
    let entry = |id: &str| json!({"id": id, "name": "Ada Lovelace", "email": "ada@example.com"});
    for (what, lists, expected) in [
        ("tab1", presences(&tab1, 1), [&a1, &b]),
        ("tab2", presences(&tab2, 1), [&b, &a2]),
        ("tab1 after reload", presences(&tab1, 2), [&b, &a2]),
    ] {
        let last = lists
            .last()
            .unwrap_or_else(|| panic!("{what}: no presence"));
        let without_time: Vec<Value> = last
            .iter()
            .map(|u| {
                assert!(
                    u["connected_at"]
                        .as_u64()
                        .is_some_and(|t| t > 1_600_000_000),
                    "{u}"
                );
                let mut u = u.clone();
                u.as_object_mut().unwrap().remove("connected_at");
                u
            })
            .collect();
        assert_eq!(
            without_time,
            [entry(expected[0]), entry(expected[1])],
            "{what}'s last presence"
        );
    }
}
