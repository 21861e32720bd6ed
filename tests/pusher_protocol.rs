//! SPEC section 13 on the wire, with tungstenite as the Pusher client: refusals (4001, 4007),
//! the shutdown close (4200), who may subscribe to a user's `#server-to-user-` channel, and the
//! official Python `pusher` 3.3.4 library on the HTTP API (trigger, socket_id exclusion, batch
//! events, channel and user queries, a wrong secret).
//!
//! The Python part needs `pusher==3.3.4` (scripts/test.sh installs it); without it that test
//! is skipped, and says so, unless that is not allowed (tests/common/tools.rs).

mod common;

use std::path::Path;
use std::process::Command;

use common::msg::recv_close;
use common::pusher::sign_text as sign;
use common::tools::{have, Tool};
use common::{recv_json, send_json, Client, Daemon};
use serde_json::{json, Value};

const APP_ID: &str = "4242";
const KEY: &str = "app-key";
const SECRET: &str = "pusher-test-secret-0123456789";

fn daemon() -> Daemon {
    Daemon::start(
        &format!("logging_level = \"warn\"\n[pusher]\napp_id = \"{APP_ID}\"\nkey = \"{KEY}\"\nsecret = \"{SECRET}\"\n"),
        &[],
    )
}

/// A Pusher frame, `data` decoded a second time when it is a string (as pusher-js does).
#[track_caller]
fn recv_event(ws: &mut Client) -> (String, Value) {
    let v = recv_json(ws);
    let data = match &v["data"] {
        Value::String(s) => serde_json::from_str(s).unwrap_or(Value::String(s.clone())),
        other => other.clone(),
    };
    (
        v["event"].as_str().unwrap().to_owned(),
        json!({"channel": v["channel"], "data": data}),
    )
}

/// A connected Pusher client and its socket id.
#[track_caller]
fn pusher_client(daemon: &Daemon) -> (Client, String) {
    let mut ws = daemon.ws_at(&format!("/app/{KEY}?protocol=7&client=js&version=8.6.0"));
    let (event, v) = recv_event(&mut ws);
    assert_eq!(event, "pusher:connection_established");
    assert_eq!(v["data"]["activity_timeout"], 30);
    (ws, v["data"]["socket_id"].as_str().unwrap().to_owned())
}

#[track_caller]
fn subscribe(ws: &mut Client, channel: &str) {
    send_json(
        ws,
        &json!({"event": "pusher:subscribe", "data": {"channel": channel}}),
    );
    let (event, v) = recv_event(ws);
    assert_eq!(
        (event.as_str(), &v["channel"]),
        ("pusher_internal:subscription_succeeded", &json!(channel))
    );
}

#[test]
fn unknown_key_and_protocol_are_refused_with_pusher_codes() {
    let daemon = daemon();
    for (path, code) in [
        ("/app/nope?protocol=7", 4001),
        ("/app/app-key?protocol=5", 4007),
    ] {
        let mut ws = daemon.ws_at(path);
        let (event, v) = recv_event(&mut ws);
        assert_eq!(
            (event.as_str(), &v["data"]["code"]),
            ("pusher:error", &json!(code))
        );
        assert_eq!(recv_close(&mut ws).0, code);
    }
    // Other paths keep speaking section 5.
    let (_rakit, welcome) = daemon.client();
    assert_eq!(welcome["type"], "welcome");
}

#[test]
fn ping_pong_client_event_rules_and_shutdown_close() {
    let mut daemon = daemon();
    let (mut ws, _) = pusher_client(&daemon);
    send_json(&mut ws, &json!({"event": "pusher:ping", "data": {}}));
    assert_eq!(recv_event(&mut ws).0, "pusher:pong");
    subscribe(&mut ws, "public");
    // Client events only on private and presence channels.
    send_json(
        &mut ws,
        &json!({"event": "client-x", "channel": "public", "data": {}}),
    );
    let (event, v) = recv_event(&mut ws);
    assert_eq!(
        (event.as_str(), &v["data"]["code"]),
        ("pusher:error", &json!(4301))
    );
    // A bad signature: subscription_error on that channel, status 401.
    send_json(
        &mut ws,
        &json!({"event": "pusher:subscribe", "data": {"channel": "private-a", "auth": format!("{KEY}:00")}}),
    );
    let (event, v) = recv_event(&mut ws);
    assert_eq!(event, "pusher:subscription_error");
    assert_eq!(v["channel"], "private-a");
    assert_eq!(v["data"]["status"], 401);
    // SIGTERM: 4200, so pusher-js reconnects at once (to another node).
    let pid = daemon.child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    assert_eq!(recv_close(&mut ws).0, 4200);
    let _ = daemon.child.wait();
}

#[test]
fn python_pusher_library_triggers_and_queries() {
    if !have(Tool::PusherPython) {
        return;
    }
    let daemon = daemon();
    let (mut a, _) = pusher_client(&daemon);
    let (mut b, socket_b) = pusher_client(&daemon);
    subscribe(&mut a, "news");
    subscribe(&mut b, "news");
    let (mut rakit, _) = daemon.client();
    send_json(
        &mut rakit,
        &json!({"event": "subscribe", "channel": "news"}),
    );
    assert_eq!(
        common::recv_type(&mut rakit, "subscribed")["channel"],
        "news"
    );

    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/pusher/server_api.py");
    let port = daemon.addr.port().to_string();
    let out = Command::new("python3")
        .arg(script)
        .args([&port, APP_ID, KEY, SECRET, &socket_b])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let seen: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(seen["wrong_secret"], "401", "{seen}");
    assert_eq!(
        seen["channel"],
        json!({"occupied": true, "subscription_count": 3})
    );
    assert_eq!(seen["users"], json!({"users": []}));
    assert!(seen["channels"]["channels"]["news"].is_object(), "{seen}");

    let events = |ws: &mut Client, n: usize| (0..n).map(|_| recv_event(ws)).collect::<Vec<_>>();
    let ev = |name: &str, data: Value| (name.to_owned(), json!({"channel": "news", "data": data}));
    assert_eq!(
        events(&mut a, 4),
        [
            ev("py-event", json!({"n": 1})),
            ev("py-excluded", json!({"n": 2})),
            ev("py-batch", json!({"n": 3})),
            ev("py-batch", json!("plain text"))
        ]
    );
    // b was excluded by socket_id: its next event is the batch.
    assert_eq!(
        events(&mut b, 3),
        [
            ev("py-event", json!({"n": 1})),
            ev("py-batch", json!({"n": 3})),
            ev("py-batch", json!("plain text"))
        ]
    );
    let rakit_events: Vec<Value> = (0..4)
        .map(|_| common::recv_type(&mut rakit, "channel"))
        .collect();
    assert_eq!(
        rakit_events[0],
        json!({"type": "channel", "channel": "news", "event": "py-event", "data": {"n": 1}})
    );
    assert_eq!(
        rakit_events[3],
        json!({"type": "channel", "channel": "news", "event": "py-batch", "data": "plain text"})
    );
}

#[test]
fn a_users_server_to_user_channel_is_for_its_signed_in_connections_only() {
    let daemon = daemon();
    let refused = |ws: &mut Client, channel: &str| {
        send_json(
            ws,
            &json!({"event": "pusher:subscribe", "data": {"channel": channel}}),
        );
        let (event, v) = recv_event(ws);
        assert_eq!(
            (event.as_str(), &v["channel"], &v["data"]["status"]),
            ("pusher:subscription_error", &json!(channel), &json!(401)),
            "{v}"
        );
    };
    // Not signed in.
    let (mut ws, socket) = pusher_client(&daemon);
    refused(&mut ws, "#server-to-user-1");
    // Signed in (over SOCKET_ID::user::USER_DATA) as 2: its own channel only.
    let user_data = r#"{"id":"2"}"#;
    let auth = sign(&format!("{socket}::user::{user_data}"));
    send_json(
        &mut ws,
        &json!({"event": "pusher:signin", "data": {"auth": auth, "user_data": user_data}}),
    );
    let (event, v) = recv_event(&mut ws);
    assert_eq!(event, "pusher:signin_success", "{v}");
    refused(&mut ws, "#server-to-user-1");
    subscribe(&mut ws, "#server-to-user-2");
    // Rakit clients may not listen in.
    let (mut rakit, _) = daemon.client();
    send_json(
        &mut rakit,
        &json!({"event": "subscribe", "channel": "#server-to-user-2"}),
    );
    assert_eq!(common::recv_type(&mut rakit, "error")["code"], "forbidden");
}
