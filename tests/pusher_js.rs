//! SPEC section 13 with the real client libraries: Laravel Echo 2.5.0 over pusher-js 8.6.0, the
//! Node `pusher` server library (auth signing and the HTTP API), and a Rakit client on the
//! same channels. tests/pusher/echo.mjs drives them and prints what it saw; this test checks it.
//!
//! Needs node and `npm install` in tests/pusher (scripts/test.sh does it). Without them the
//! test is skipped, unless RAKIT_REQUIRE_PUSHER=1.

mod common;

use common::node::{available, run};
use common::Daemon;
use serde_json::{json, Value};

pub const APP_ID: &str = "4242";
pub const KEY: &str = "app-key";
pub const SECRET: &str = "pusher-test-secret-0123456789";

fn config() -> String {
    format!("logging_level = \"warn\"\n[pusher]\napp_id = \"{APP_ID}\"\nkey = \"{KEY}\"\nsecret = \"{SECRET}\"\n")
}

#[test]
fn laravel_echo_and_pusher_js_public_private_presence_whisper() {
    if !available() {
        return;
    }
    let daemon = Daemon::start(&config(), &[]);
    let port = daemon.addr.port().to_string();
    let seen = run(
        "echo.mjs",
        &[port, KEY.into(), SECRET.into(), APP_ID.into()],
    );
    let socket = |k: &str| seen[k].as_str().unwrap().to_owned();
    for id in [socket("socket_a"), socket("socket_b")] {
        let (a, b) = id.split_once('.').unwrap();
        assert!(a.parse::<u64>().is_ok() && b.parse::<u64>().is_ok(), "{id}");
    }
    // Rakit -> Pusher as event `message`; the backend's event reaches both dialects.
    assert_eq!(
        seen["public"],
        json!([["message", {"text": "from rakit"}], ["greeting", {"text": "from the backend"}]])
    );
    assert_eq!(
        seen["rakit_got"],
        json!([
            {"type": "channel", "channel": "news", "client_id": seen["rakit_got"][0]["client_id"], "data": {"text": "from rakit"}},
            {"type": "channel", "channel": "news", "event": "greeting", "data": {"text": "from the backend"}},
            {"type": "channel", "channel": "news", "event": "shipped", "data": {"id": 7}},
        ])
    );
    // .toOthers(): the socket named in socket_id does not get it.
    assert_eq!(seen["to_others"], json!([["b", {"id": 7}]]));
    // Private: both authorized; a whisper reaches the other one only.
    let mut private: Vec<&str> = seen["private"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    private.sort_unstable();
    assert_eq!(
        private,
        ["a", "b"],
        "each of the two clients subscribed once"
    );
    assert_eq!(seen["whispers"], json!([["a", {"by": 2}]]));
    // The app's endpoint refusing is its status; a forged signature is the server's 401.
    assert_eq!(seen["errors"], json!({"denied": 403, "forged": 401}));
    assert_eq!(seen["rakit_private"], "forbidden");
    // Presence: one member per user, whatever its connections.
    let presence: Vec<Value> = seen["presence"].as_array().unwrap().clone();
    let expect = [
        json!(["a", "here", ["Ann"]]),
        json!(["b", "here", ["Ann", "Bob"]]),
        json!(["a", "joining", "Bob"]),
        json!(["a2", "here", ["Ann", "Bob"]]),
        json!(["b", "leaving", "Ann"]),
    ];
    for e in &expect {
        assert!(presence.contains(e), "{e} not in {presence:?}");
    }
    assert_eq!(presence.len(), expect.len(), "{presence:?}");
    // The backend's view while only b is left.
    assert_eq!(
        seen["channels"],
        json!({"channels": {"presence-room": {"user_count": 1}}})
    );
    assert_eq!(seen["users"], json!({"users": [{"id": "2"}]}));
}
