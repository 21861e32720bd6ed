//! Pusher events across a cluster (SPEC sections 11 and 13), with a real `redis-server` and two
//! real daemons: an API event's `socket_id` is skipped on whichever node that socket is (Laravel
//! Echo's `toOthers()` behind a load balancer), a client event reaches the other node's
//! subscribers exactly as it reaches local ones (with `user_id` on a presence channel), an API
//! event reaches Rakit subscribers of both nodes alike, and `terminate_connections` given to one
//! node closes the user's signed-in connections on every node.
//!
//! The API calls go through the Node `pusher` 5.3.4 library (tests/pusher/cluster_events.mjs);
//! those tests are skipped without node, unless RAKIT_REQUIRE_PUSHER=1.

mod common;

use common::msg::recv_close;
use common::pusher::{
    connect, join, node, recv_event, signin, subscribe, subscribers_are, APP_ID, KEY, SECRET,
};
use common::redis::Redis;
use common::{node as script, recv_text, send_json, serial, Client, Daemon};
use serde_json::{json, Value};

const ROOM: &str = "presence-room";

/// Runs tests/pusher/cluster_events.mjs against `daemon`'s HTTP API.
#[track_caller]
fn library(daemon: &Daemon, step: &[&str]) -> Value {
    let mut args = vec![
        daemon.addr.port().to_string(),
        KEY.into(),
        SECRET.into(),
        APP_ID.into(),
    ];
    args.extend(step.iter().map(|s| s.to_string()));
    script::run("cluster_events.mjs", &args)
}

/// The next frame's text and its JSON.
#[track_caller]
fn next(ws: &mut Client) -> (String, Value) {
    let text = recv_text(ws);
    let v = serde_json::from_str(&text).unwrap();
    (text, v)
}

/// The next `update` event's text and `n` (Pusher: `data` is a JSON string; Rakit: a value).
/// Rakit presence messages in between are skipped.
#[track_caller]
fn update(ws: &mut Client) -> (String, u64) {
    let (text, v) = loop {
        let (text, v) = next(ws);
        if v["type"] != "presence" {
            break (text, v);
        }
    };
    assert_eq!(v["event"], "update", "{text}");
    let data = match &v["data"] {
        Value::String(s) => serde_json::from_str(s).unwrap(),
        other => other.clone(),
    };
    (text, data["n"].as_u64().unwrap())
}

/// A Rakit client subscribed to `channel`.
#[track_caller]
fn rakit(daemon: &Daemon, channel: &str) -> Client {
    let (mut ws, _) = daemon.client();
    send_json(&mut ws, &json!({"event": "subscribe", "channel": channel}));
    common::recv_type(&mut ws, "subscribed");
    ws
}

#[test]
fn an_event_for_others_skips_the_socket_on_whichever_node_it_is() {
    if !script::available() {
        return;
    }
    let _serial = serial();
    let redis = Redis::start();
    let (n1, n2) = (node(&redis), node(&redis));
    // Node 2: the sender's socket (x), another Pusher subscriber and a Rakit one.
    let (mut x, sx) = connect(&n2);
    subscribe(&mut x, &sx, "news");
    let (mut y, sy) = connect(&n2);
    subscribe(&mut y, &sy, "news");
    let mut r2 = rakit(&n2, "news");
    // Node 1, where the application's API call goes: one of each.
    let (mut l, sl) = connect(&n1);
    subscribe(&mut l, &sl, "news");
    let mut r1 = rakit(&n1, "news");
    subscribers_are(&n1, "news", 5);
    subscribers_are(&n2, "news", 5);
    // trigger and triggerBatch with x's socket_id, then an event for everyone.
    let seen = library(&n1, &["trigger", "news", &sx]);
    assert_eq!(seen, json!({"trigger": 200, "batch": 200, "fence": 200}));
    // x hears only the fence: the first two skipped it on its own node.
    assert_eq!(update(&mut x).1, 3);
    // Everyone else hears all three, node 2 exactly as node 1 (each in its dialect).
    for n in 1..=3 {
        let (local, got) = update(&mut l);
        assert_eq!(got, n);
        assert_eq!(update(&mut y), (local, n));
        let (local, got) = update(&mut r1);
        assert_eq!(got, n);
        assert_eq!(update(&mut r2), (local.clone(), n));
        assert_eq!(
            serde_json::from_str::<Value>(&local).unwrap(),
            json!({"type": "channel", "channel": "news", "event": "update", "data": {"n": n}})
        );
    }
    // The socket of the node asked is skipped too, and nothing else is.
    let seen = library(&n1, &["trigger", "news", &sl]);
    assert_eq!(seen["fence"], 200);
    assert_eq!(update(&mut l).1, 3);
    for ws in [&mut x, &mut y, &mut r1, &mut r2] {
        let got: Vec<u64> = (0..3).map(|_| update(ws).1).collect();
        assert_eq!(got, [1, 2, 3]);
    }
}

/// Waits for `member_added` of `user` on `ws`.
#[track_caller]
fn added(ws: &mut Client, user: &str) {
    let (event, channel, data) = recv_event(ws);
    assert_eq!(
        (event.as_str(), channel, &data["user_id"]),
        ("pusher_internal:member_added", json!(ROOM), &json!(user)),
        "{data}"
    );
}

#[test]
fn a_client_event_reaches_the_other_node_as_it_reaches_local_subscribers() {
    let _serial = serial();
    let redis = Redis::start();
    let (n1, n2) = (node(&redis), node(&redis));
    // The sender (user 1) and a listener (user 3) on node 1, a listener (user 2) on node 2.
    let (mut a, sa) = connect(&n1);
    join(&mut a, &sa, ROOM, "1", "Ann");
    let (mut c, sc) = connect(&n1);
    join(&mut c, &sc, ROOM, "3", "Cid");
    added(&mut a, "3");
    // Node 2 knows node 1's members before its client joins (else they would arrive later as
    // member_added frames, in the way of the client events below).
    subscribers_are(&n2, ROOM, 2);
    let (mut b, sb) = connect(&n2);
    join(&mut b, &sb, ROOM, "2", "Bob");
    added(&mut a, "2");
    added(&mut c, "2");
    for (ws, socket) in [(&mut a, &sa), (&mut b, &sb), (&mut c, &sc)] {
        subscribe(ws, socket, "private-p");
    }
    // Node 2 hears node 1 (its subscription link is up).
    subscribers_are(&n2, "private-p", 3);
    // Sent as text: the data's spacing and `1.50` must come out as they went in.
    let client_event = |ws: &mut Client, channel: &str| {
        common::send_text(
            ws,
            &format!(
                r#"{{"event":"client-hello","channel":"{channel}","data":{{"x": [1, "two", null], "y": 1.50}}}}"#
            ),
        );
    };
    client_event(&mut a, ROOM);
    let (local, v) = next(&mut c);
    let (remote, _) = next(&mut b);
    assert_eq!(remote, local, "node 2 sent what node 1 sent");
    assert_eq!(
        v,
        json!({"event": "client-hello", "channel": ROOM, "data": r#"{"x": [1, "two", null], "y": 1.50}"#, "user_id": "1"})
    );
    // On a private channel there is no user to name.
    client_event(&mut a, "private-p");
    let (local, v) = next(&mut c);
    assert_eq!(next(&mut b).0, local);
    assert_eq!(v["channel"], "private-p");
    assert!(v.get("user_id").is_none(), "{v}");
    // The sender hears neither.
    send_json(&mut a, &json!({"event": "pusher:ping", "data": {}}));
    assert_eq!(recv_event(&mut a).0, "pusher:pong");
}

/// Whether `ws` is still served: a ping gets its pong.
#[track_caller]
fn alive(ws: &mut Client) {
    send_json(ws, &json!({"event": "pusher:ping", "data": {}}));
    assert_eq!(recv_event(ws).0, "pusher:pong");
}

#[test]
fn terminate_connections_closes_the_users_signed_in_connections_on_every_node() {
    if !script::available() {
        return;
    }
    let _serial = serial();
    let redis = Redis::start();
    let (n1, n2) = (node(&redis), node(&redis));
    // User 7 signed in on both nodes (twice on node 2), user 8 signed in on node 2, and a
    // connection only on a presence channel as user 7 (Pusher leaves that one alone).
    let signed = |daemon: &Daemon, user: &str| {
        let (mut ws, socket) = connect(daemon);
        signin(&mut ws, &socket, user);
        ws
    };
    let mut on1 = signed(&n1, "7");
    subscribe(&mut on1, "", "news");
    let mut on2 = [signed(&n2, "7"), signed(&n2, "7")];
    let mut other = signed(&n2, "8");
    let (mut member, sm) = connect(&n2);
    join(&mut member, &sm, ROOM, "7", "Seven");
    // Each node hears the other once it counts the other's subscriber.
    subscribers_are(&n1, ROOM, 1);
    subscribers_are(&n2, "news", 1);
    let seen = library(&n1, &["terminate", "7"]);
    assert_eq!(seen, json!({"terminate": 200}));
    for ws in std::iter::once(&mut on1).chain(on2.iter_mut()) {
        assert_eq!(recv_close(ws).0, 4009);
    }
    alive(&mut other);
    alive(&mut member);
    // An unknown user is no error, and changes nothing.
    assert_eq!(
        library(&n2, &["terminate", "nobody"]),
        json!({"terminate": 200})
    );
    alive(&mut other);
    alive(&mut member);
}
