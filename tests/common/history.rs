//! Channel history and recovery (SPEC section 16) for the tests: configurations with history
//! namespaces, subscribes with `since`, publishing through the API, reading history.

use std::net::SocketAddr;

use serde_json::{json, Value};

use super::api::{self, Response, API_KEY};
use super::{recv_json, send_json, Client};

/// A `[[namespaces]]` entry for channels starting with `prefix` that keeps `size` publications
/// for `ttl` seconds.
pub fn namespace(prefix: &str, size: u64, ttl: u64) -> String {
    format!("[[namespaces]]\nprefix = \"{prefix}\"\nhistory_size = {size}\nhistory_ttl = {ttl}\n")
}

/// Top-level keys for history tests (no presence noise, commands for anyone) and the API key;
/// `tables` follow (namespaces, `[history]`, `[cluster]`, ...).
pub fn config(tables: &str) -> String {
    format!(
        "logging_level = \"warn\"\npresence = false\ncommand_policy = \"any\"\n{}{tables}",
        api::api_table()
    )
}

/// Subscribes to `channel` (with `since` = `(offset, epoch)` if given) and returns the
/// `subscribed` reply; fails on anything else first.
#[track_caller]
pub fn subscribe(ws: &mut Client, channel: &str, since: Option<(u64, &str)>) -> Value {
    let mut msg = json!({"event": "subscribe", "channel": channel});
    if let Some((offset, epoch)) = since {
        msg["since"] = json!({"offset": offset, "epoch": epoch});
    }
    send_json(ws, &msg);
    let v = recv_json(ws);
    assert_eq!(v["type"], "subscribed", "{v}");
    assert_eq!(v["channel"], channel, "{v}");
    v
}

/// `broadcast_to_channel` through the HTTP API.
#[track_caller]
pub fn publish(addr: SocketAddr, channel: &str, message: Value) {
    let body = json!({"command": "broadcast_to_channel", "channel": channel, "message": message});
    let r = api::once(addr, &api::command(&body.to_string()));
    assert_eq!(r.status, 200, "{}", r.text());
}

/// `GET /api/channels/{channel}/history?{query}` (the name percent-encoded by the caller).
#[track_caller]
pub fn history(addr: SocketAddr, channel: &str, query: &str) -> Response {
    let path = format!("/api/channels/{channel}/history?{query}");
    api::once(addr, &api::get(&path, Some(API_KEY)))
}

/// The next `n` messages, each a channel frame of `channel`; their `data`.
#[track_caller]
pub fn channel_data(ws: &mut Client, channel: &str, n: usize) -> Vec<Value> {
    (0..n)
        .map(|_| {
            let v = recv_json(ws);
            assert_eq!(
                (&v["type"], &v["channel"]),
                (&json!("channel"), &json!(channel)),
                "{v}"
            );
            v["data"].clone()
        })
        .collect()
}

/// The `offset` of each of `frames`.
pub fn offsets(frames: &[Value]) -> Vec<u64> {
    frames
        .iter()
        .map(|v| v["offset"].as_u64().unwrap())
        .collect()
}

/// A subscriber of `channel` that drops its connection after every `per` publications it
/// reads and resubscribes with `since` on the connection `connect(round)` gives, until it has
/// read offset `total`; every resubscribe must be recovered, and each publication's `data` be
/// its offset. The offsets it read, in order.
#[track_caller]
pub fn follow_with_cuts(
    mut connect: impl FnMut(usize) -> Client,
    channel: &str,
    total: u64,
    per: usize,
) -> Vec<u64> {
    let mut seen: Vec<u64> = Vec::new();
    let mut since: Option<(u64, String)> = None;
    let deadline = std::time::Instant::now() + 6 * super::WAIT;
    let mut round = 0;
    while seen.last().copied() != Some(total) {
        assert!(
            std::time::Instant::now() < deadline,
            "stuck at {:?}",
            seen.last()
        );
        let mut ws = connect(round);
        round += 1;
        let sub = subscribe(
            &mut ws,
            channel,
            since.as_ref().map(|(o, e)| (*o, e.as_str())),
        );
        if since.is_some() {
            assert_eq!(sub["recovered"], true, "{sub}");
        }
        let epoch = sub["epoch"].as_str().unwrap().to_owned();
        if since.is_none() {
            since = Some((sub["offset"].as_u64().unwrap(), epoch.clone()));
        }
        for _ in 0..per {
            if seen.last().copied() == Some(total) {
                break;
            }
            let v = recv_json(&mut ws);
            assert_eq!(v["epoch"], epoch.as_str(), "{v}");
            let offset = v["offset"].as_u64().unwrap();
            assert_eq!(v["data"], offset, "data and offset agree");
            seen.push(offset);
            since = Some((offset, epoch.clone()));
        }
    }
    seen
}
