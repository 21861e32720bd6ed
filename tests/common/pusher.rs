//! Pusher clusters for the tests (SPEC sections 11 and 13): daemons sharing a `redis-server`
//! with the Pusher dialect on, and raw protocol 7 clients over tungstenite (connect, sign,
//! subscribe, join a presence channel, sign in), with the signatures computed here, apart from
//! the daemon's code.

use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;

use super::redis::Redis;
use super::{recv_json, send_json, Client, Daemon, WAIT};

pub const APP_ID: &str = "4242";
pub const KEY: &str = "app-key";
pub const SECRET: &str = "pusher-test-secret-0123456789";
pub const API_KEY: &str = "cluster-test-api-key-0123";
pub const NODE_TIMEOUT_MS: u64 = 1000;

/// One node of the cluster on `redis`, with the Rakit API and the Pusher dialect.
pub fn node(redis: &Redis) -> Daemon {
    Daemon::start(
        &format!(
            "logging_level = \"warn\"\n\
             [api]\nkey = \"{API_KEY}\"\n\
             [cluster]\nredis_url = \"{}\"\nnode_timeout_ms = {NODE_TIMEOUT_MS}\n\
             [pusher]\napp_id = \"{APP_ID}\"\nkey = \"{KEY}\"\nsecret = \"{SECRET}\"\n",
            redis.url()
        ),
        &[],
    )
}

/// A Pusher frame as `(event, channel, data)`, `data` decoded a second time when it is a
/// string (as pusher-js does).
#[track_caller]
pub fn recv_event(ws: &mut Client) -> (String, Value, Value) {
    let v = recv_json(ws);
    let data = match &v["data"] {
        Value::String(s) => serde_json::from_str(s).unwrap_or(Value::String(s.clone())),
        other => other.clone(),
    };
    (
        v["event"].as_str().unwrap().to_owned(),
        v["channel"].clone(),
        data,
    )
}

/// A connected Pusher client and its socket id.
#[track_caller]
pub fn connect(daemon: &Daemon) -> (Client, String) {
    let mut ws = daemon.ws_at(&format!("/app/{KEY}?protocol=7&client=js&version=8.6.0"));
    let (event, _, data) = recv_event(&mut ws);
    assert_eq!(event, "pusher:connection_established");
    (ws, data["socket_id"].as_str().unwrap().to_owned())
}

/// `KEY:HMAC-SHA256-HEX(secret, parts joined by ':')`, as the application's auth endpoint signs.
pub fn sign(parts: &[&str]) -> String {
    sign_text(&parts.join(":"))
}

/// `KEY:HMAC-SHA256-HEX(secret, text)`.
pub fn sign_text(text: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(text.as_bytes());
    let hex: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("{KEY}:{hex}")
}

/// Joins presence channel `channel` as user `user` named `name`; returns the `presence` object
/// of `subscription_succeeded`.
#[track_caller]
pub fn join(ws: &mut Client, socket_id: &str, channel: &str, user: &str, name: &str) -> Value {
    let channel_data = json!({"user_id": user, "user_info": {"name": name}}).to_string();
    let auth = sign(&[socket_id, channel, &channel_data]);
    send_json(
        ws,
        &json!({"event": "pusher:subscribe", "data": {"channel": channel, "auth": auth, "channel_data": channel_data}}),
    );
    let (event, ch, data) = recv_event(ws);
    assert_eq!(
        (event.as_str(), &ch),
        ("pusher_internal:subscription_succeeded", &json!(channel)),
        "{data}"
    );
    data["presence"].clone()
}

/// Subscribes to a public channel, or a private one (signed here).
#[track_caller]
pub fn subscribe(ws: &mut Client, socket_id: &str, channel: &str) {
    let auth = sign(&[socket_id, channel]);
    send_json(
        ws,
        &json!({"event": "pusher:subscribe", "data": {"channel": channel, "auth": auth}}),
    );
    let (event, ch, _) = recv_event(ws);
    assert_eq!(
        (event.as_str(), &ch),
        ("pusher_internal:subscription_succeeded", &json!(channel))
    );
}

/// `pusher:signin` as user `user` (signed over `SOCKET_ID::user::USER_DATA`).
#[track_caller]
pub fn signin(ws: &mut Client, socket_id: &str, user: &str) {
    let user_data = json!({"id": user}).to_string();
    let auth = sign(&[socket_id, "", "user", "", &user_data]);
    send_json(
        ws,
        &json!({"event": "pusher:signin", "data": {"auth": auth, "user_data": user_data}}),
    );
    let (event, _, data) = recv_event(ws);
    assert_eq!(event, "pusher:signin_success", "{data}");
}

/// `GET path` on the Rakit API of `daemon`.
pub fn api(daemon: &Daemon, path: &str) -> Value {
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {API_KEY}\r\nConnection: close\r\n\r\n"
    );
    let response = super::http(daemon, request.as_bytes());
    assert_eq!(super::status_of(&response), 200, "{response}");
    let body = response.split("\r\n\r\n").nth(1).unwrap_or("");
    serde_json::from_str(body).unwrap()
}

/// Waits until `daemon` counts `n` subscribers of `channel` in the cluster (so that it has
/// heard of the other nodes' subscriptions); returns the channel's answer.
#[track_caller]
pub fn subscribers_are(daemon: &Daemon, channel: &str, n: u64) -> Value {
    eventually(&format!("{n} subscribers of {channel}"), || {
        let v = api(daemon, &format!("/api/channels/{channel}"));
        (v["subscribers"] == n).then_some(v)
    })
}

/// Polls `f` until it gives something (for state that no event announces).
#[track_caller]
pub fn eventually<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "never: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `POST /apps/APP_ID/events` (Pusher's HTTP API, signed here as its server libraries sign):
/// event `name` with `data` (a string) on `channel`; the HTTP status.
#[track_caller]
pub fn trigger(daemon: &Daemon, channel: &str, name: &str, data: &str) -> u16 {
    use md5::{Digest, Md5};
    let body = json!({"name": name, "channels": [channel], "data": data}).to_string();
    let md5: String = Md5::digest(body.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let ts = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let path = format!("/apps/{APP_ID}/events");
    let query = format!("auth_key={KEY}&auth_timestamp={ts}&auth_version=1.0&body_md5={md5}");
    let signed = sign_text(&format!("POST\n{path}\n{query}"));
    let signature = signed.split(':').nth(1).unwrap();
    let request = format!(
        "POST {path}?{query}&auth_signature={signature} HTTP/1.1\r\nHost: x\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    super::status_of(&super::http(daemon, request.as_bytes()))
}
