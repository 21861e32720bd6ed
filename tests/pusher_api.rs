//! Pusher's HTTP API signing (SPEC section 13) over real sockets: the official Python
//! `pusher` 3.3.4 library with its clock shifted (tests/pusher/clock.py), and requests signed
//! here by hand, apart from the daemon's code: `auth_timestamp` within 600 s, `body_md5`,
//! `auth_key`, `auth_version`, and the 100-channel and 10-event limits. Every refused request
//! must also publish nothing. (The same rules are unit-tested in src/pusher/api/tests.rs.)

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use common::api::{once, Response};
use common::pusher::{recv_event, sign_text, APP_ID, KEY, SECRET};
use common::tools::{have, Tool};
use common::{send_json, try_recv_json, Client, Daemon};
use md5::{Digest, Md5};
use serde_json::{json, Value};

fn daemon() -> Daemon {
    Daemon::start(
        &format!(
            "logging_level = \"warn\"\n\
             [pusher]\napp_id = \"{APP_ID}\"\nkey = \"{KEY}\"\nsecret = \"{SECRET}\"\n"
        ),
        &[],
    )
}

/// A Pusher client subscribed to `channel`.
#[track_caller]
fn subscriber(daemon: &Daemon, channel: &str) -> Client {
    let (mut ws, _) = common::pusher::connect(daemon);
    send_json(
        &mut ws,
        &json!({"event": "pusher:subscribe", "data": {"channel": channel}}),
    );
    let (event, ch, _) = recv_event(&mut ws);
    assert_eq!(
        (event.as_str(), ch),
        ("pusher_internal:subscription_succeeded", json!(channel))
    );
    ws
}

/// The `(event, data)` of every event that reaches `ws` until nothing comes for a moment.
fn events(ws: &mut Client) -> Vec<(String, Value)> {
    let mut got = Vec::new();
    let wait = std::time::Duration::from_millis(300);
    while let Some(v) = try_recv_json(ws, wait, |_| false) {
        let data = v["data"]
            .as_str()
            .and_then(|d| serde_json::from_str(d).ok())
            .unwrap_or_else(|| v["data"].clone());
        got.push((v["event"].as_str().unwrap().to_owned(), data));
    }
    got
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A POST to `path` with `body`, signed by hand as Pusher's libraries sign: the parameters
/// (`params` as given, so a test can leave one out or get one wrong) sorted by key, under
/// `POST\nPATH\n`, `auth_signature` appended.
fn post(daemon: &Daemon, path: &str, params: &[(&str, String)], body: &str) -> Response {
    let mut sorted = params.to_vec();
    sorted.sort();
    let query: Vec<String> = sorted.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let query = query.join("&");
    let signature = sign_text(&format!("POST\n{path}\n{query}"));
    let signature = signature.strip_prefix(&format!("{KEY}:")).unwrap();
    let request = format!(
        "POST {path}?{query}&auth_signature={signature} HTTP/1.1\r\nHost: localhost\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    once(daemon.addr, request.as_bytes())
}

/// What a correct client sends for `body` at `timestamp`.
fn params(body: &str, timestamp: u64) -> Vec<(&'static str, String)> {
    vec![
        ("auth_key", KEY.to_owned()),
        ("auth_timestamp", timestamp.to_string()),
        ("auth_version", "1.0".to_owned()),
        ("body_md5", hex(&Md5::digest(body.as_bytes()))),
    ]
}

fn replace(
    mut p: Vec<(&'static str, String)>,
    key: &'static str,
    value: Option<&str>,
) -> Vec<(&'static str, String)> {
    p.retain(|(k, _)| *k != key);
    if let Some(value) = value {
        p.push((key, value.to_owned()));
    }
    p
}

/// The Python library with its clock an hour (or eleven minutes) off is refused with 401 and
/// publishes nothing; five or nine minutes off is within Pusher's 600 s and goes through.
#[test]
fn the_python_library_with_a_wrong_clock_is_refused() {
    if !have(Tool::PusherPython) {
        return;
    }
    let daemon = daemon();
    let mut ws = subscriber(&daemon, "clock");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/pusher/clock.py");
    let out = Command::new("python3")
        .arg(script)
        .args([&daemon.addr.port().to_string(), APP_ID, KEY, SECRET])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let seen: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        seen,
        json!({"0": 200, "-300": 200, "540": 200, "-660": 401, "660": 401, "-3600": 401, "3600": 401})
    );
    let tick = |shift: i64| ("tick".to_owned(), json!({ "shift": shift }));
    assert_eq!(events(&mut ws), [tick(0), tick(-300), tick(540)]);
}

/// Requests signed by hand: each rule of the signing refuses with 401 and publishes nothing;
/// the limits answer 400; the correct request goes through.
#[test]
fn hand_signed_requests_are_checked_rule_by_rule() {
    let daemon = daemon();
    let mut ws = subscriber(&daemon, "news");
    let path = format!("/apps/{APP_ID}/events");
    let body = json!({"name": "e", "data": "{\"n\":1}", "channel": "news"}).to_string();
    let forged = json!({"name": "e", "data": "{\"n\":666}", "channel": "news"}).to_string();
    let good = params(&body, now());
    // (what is wrong, the signed query, the body)
    type Case<'a> = (&'a str, Vec<(&'a str, String)>, &'a str);
    let refused: Vec<Case> = vec![
        (
            "an hour old",
            replace(
                good.clone(),
                "auth_timestamp",
                Some(&(now() - 3600).to_string()),
            ),
            &body,
        ),
        (
            "601 s old",
            replace(
                good.clone(),
                "auth_timestamp",
                Some(&(now() - 601).to_string()),
            ),
            &body,
        ),
        (
            "601 s ahead",
            replace(
                good.clone(),
                "auth_timestamp",
                Some(&(now() + 601).to_string()),
            ),
            &body,
        ),
        (
            "no timestamp",
            replace(good.clone(), "auth_timestamp", None),
            &body,
        ),
        ("another body", good.clone(), &forged),
        (
            "no body_md5",
            replace(good.clone(), "body_md5", None),
            &body,
        ),
        (
            "another key",
            replace(good.clone(), "auth_key", Some("other-key")),
            &body,
        ),
        ("no key", replace(good.clone(), "auth_key", None), &body),
        (
            "auth_version 2.0",
            replace(good.clone(), "auth_version", Some("2.0")),
            &body,
        ),
        (
            "no auth_version",
            replace(good.clone(), "auth_version", None),
            &body,
        ),
    ];
    for (what, p, body) in refused {
        let r = post(&daemon, &path, &p, body);
        assert_eq!(r.status, 401, "{what}: {}", r.text());
    }
    assert_eq!(events(&mut ws), [], "a refused request published");

    // 599 s either way is within the window.
    for ts in [now() - 599, now() + 599] {
        let r = post(
            &daemon,
            &path,
            &replace(good.clone(), "auth_timestamp", Some(&ts.to_string())),
            &body,
        );
        assert_eq!(r.status, 200, "{}", r.text());
    }
    let n1 = ("e".to_owned(), json!({"n": 1}));
    assert_eq!(events(&mut ws), [n1.clone(), n1.clone()]);

    // 100 channels per event, 10 events per batch, at most.
    let channels = |n: usize| -> Vec<String> {
        std::iter::once("news".to_owned())
            .chain((1..n).map(|i| format!("c{i}")))
            .collect()
    };
    for (n, status) in [(101, 400), (100, 200)] {
        let body =
            json!({"name": format!("to-{n}"), "data": "{}", "channels": channels(n)}).to_string();
        let r = post(&daemon, &path, &params(&body, now()), &body);
        assert_eq!(r.status, status, "{n} channels: {}", r.text());
    }
    let batch_path = format!("/apps/{APP_ID}/batch_events");
    for (n, status) in [(11, 400), (10, 200)] {
        let batch: Vec<Value> = (0..n)
            .map(|i| json!({"name": format!("b{n}-{i}"), "data": "{}", "channel": "news"}))
            .collect();
        let body = json!({ "batch": batch }).to_string();
        let r = post(&daemon, &batch_path, &params(&body, now()), &body);
        assert_eq!(r.status, status, "{n} events: {}", r.text());
    }
    let names: Vec<String> = events(&mut ws).into_iter().map(|(e, _)| e).collect();
    let mut want = vec!["to-100".to_owned()];
    want.extend((0..10).map(|i| format!("b10-{i}")));
    assert_eq!(names, want);
}
