//! The demo chat page (SPEC section 14) in two headless Chromium tabs: own id, presence with
//! names, broadcasts, channel messages and private messages, all shown as text (markup in a
//! message must not become HTML). tests/browser/demo_page.mjs drives it; this test checks what
//! it saw.
//!
//! The daemon serves the page; the test also broadcasts through the API, and the page shows it.
//! Screenshots of both tabs are left in the test output directory (`target/tmp/demo-page-*.png`)
//! for a person to look at.
//!
//! Needs /usr/bin/chromium, node, and `npm ci` in tests/browser, like tests/browser.rs: skipped
//! without them unless RAKIT_REQUIRE_BROWSER=1.

mod common;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::Duration;

use common::{wait_exit, Daemon};
use serde_json::Value;

const API_KEY: &str = "demo-page-api-key-0123456789";
const LIMIT: Duration = Duration::from_secs(120);

fn browser_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser")
}

/// What is missing for a browser test, if anything (as in tests/browser.rs).
fn missing() -> Option<String> {
    if !Path::new("/usr/bin/chromium").exists() {
        return Some("/usr/bin/chromium not found (apt-get install chromium)".into());
    }
    if !Command::new("node")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        return Some("node not found on PATH".into());
    }
    if !browser_dir().join("node_modules/playwright-core").is_dir() {
        return Some("tests/browser/node_modules/playwright-core missing (npm ci)".into());
    }
    None
}

fn skip() -> bool {
    match missing() {
        None => false,
        Some(what) => {
            assert!(
                std::env::var("RAKIT_REQUIRE_BROWSER").as_deref() != Ok("1"),
                "browser test required (RAKIT_REQUIRE_BROWSER=1) but {what}"
            );
            eprintln!("skipped: {what}");
            true
        }
    }
}

fn drive(base: &str, api_key: Option<&str>) -> Value {
    let mut args = vec![base];
    args.extend(api_key);
    run_driver("demo_page.mjs", &args)
}

/// Runs `script` of tests/browser with `args` and returns the JSON summary it prints.
fn run_driver(script: &str, args: &[&str]) -> Value {
    let mut child = Command::new("node")
        .arg(browser_dir().join(script))
        .args(args)
        .current_dir(browser_dir())
        .env("RAKIT_SCREENSHOT_DIR", env!("CARGO_TARGET_TMPDIR"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn node");
    let mut stdout = child.stdout.take().unwrap();
    let reader = thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    if wait_exit(&mut child, LIMIT).is_none() {
        let _ = child.kill();
        let _ = child.wait();
        panic!("the demo page driver did not finish within {LIMIT:?}");
    }
    let out = reader.join().unwrap();
    serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {out:?}"))
}

#[track_caller]
fn check(summary: &Value, api: bool) {
    assert_eq!(summary["ok"], true, "driver failed: {summary}");
    assert_eq!(summary["pageErrors"], serde_json::json!([]), "{summary}");
    let (a, b) = (
        summary["me"]["tab1"].as_str().unwrap(),
        summary["me"]["tab2"].as_str().unwrap(),
    );
    assert!(a.len() == 8 && b.len() == 8 && a != b, "{a} {b}");
    for tab in ["tab1", "tab2"] {
        let presence = summary["presence"][tab].as_array().unwrap();
        let ids: Vec<&str> = presence.iter().map(|p| p["id"].as_str().unwrap()).collect();
        assert_eq!(ids, [a, b], "{tab}");
        for p in presence {
            let text = p["text"].as_str().unwrap();
            assert!(
                text.contains(p["id"].as_str().unwrap()) && text.contains("Guest"),
                "{text}"
            );
        }
        let log = summary["logs"][tab].as_array().unwrap();
        for entry in log {
            assert_eq!(entry["markup"], 0, "text became HTML: {entry}");
        }
        let has = |ty: &str, from: &str, text: &str| {
            log.iter()
                .any(|e| e["type"] == ty && e["from"] == from && e["text"] == text)
        };
        assert!(
            has("message", a, "hello <b>bold</b> & \"quotes\""),
            "{tab}: {log:?}"
        );
        if api {
            assert!(
                has("message", "server", "from the backend"),
                "{tab}: {log:?}"
            );
        }
        if tab == "tab2" {
            assert!(
                has("channel", &format!("#room {a}"), "to the room"),
                "{log:?}"
            );
        } else {
            assert!(has("private", b, "just for you"), "{log:?}");
            assert!(
                !log.iter().any(|e| e["type"] == "channel"),
                "tab1 is not in room"
            );
        }
    }
}

#[test]
fn demo_page_served_by_the_daemon() {
    if skip() {
        return;
    }
    let daemon = Daemon::start(
        &format!("logging_level = \"warn\"\n[api]\nkey = \"{API_KEY}\"\n"),
        &[],
    );
    let base = format!("http://{}", daemon.addr);
    check(&drive(&base, Some(API_KEY)), true);
    for tab in ["tab1", "tab2"] {
        let shot = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("demo-page-{tab}.png"));
        let size = std::fs::metadata(&shot).map_or(0, |m| m.len());
        assert!(size > 1000, "no screenshot at {}", shot.display());
        eprintln!("screenshot: {}", shot.display());
    }
}

/// A channel with presence (SPEC section 15.3): the page lists its members as they subscribe and
/// leave (tests/browser/demo_members.mjs).
#[test]
fn demo_page_lists_a_presence_channels_members() {
    if skip() {
        return;
    }
    let daemon = Daemon::start(
        "logging_level = \"warn\"\n[[namespaces]]\nprefix = \"room.\"\npresence = true\n",
        &[],
    );
    let base = format!("http://{}", daemon.addr);
    let summary = run_driver("demo_members.mjs", &[&base, "room.1"]);
    assert_eq!(summary["ok"], true, "driver failed: {summary}");
    assert_eq!(summary["pageErrors"], serde_json::json!([]), "{summary}");
    let (a, b) = (
        summary["me"]["tab1"].as_str().unwrap(),
        summary["me"]["tab2"].as_str().unwrap(),
    );
    for tab in ["tab1", "tab2"] {
        let list = summary["joined"][tab].as_array().unwrap();
        let ids: Vec<&str> = list.iter().map(|m| m["id"].as_str().unwrap()).collect();
        assert_eq!(ids, [a, b], "{tab}: {summary}");
        assert!(list
            .iter()
            .all(|m| m["text"].as_str().unwrap().contains("Guest")));
    }
    let left = summary["left"]["tab1"].as_array().unwrap();
    assert_eq!(left.len(), 1, "{summary}");
    assert_eq!(left[0]["id"], a);
}
