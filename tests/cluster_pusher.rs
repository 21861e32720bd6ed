//! Pusher presence and channel queries across a cluster (SPEC sections 8, 11 and 13), with a
//! real `redis-server` and two or three real daemons: presence channel members of every node,
//! one member per user however many connections on however many nodes, members of a killed or
//! stopped node leaving, and one node's HTTP APIs (Pusher's through the Python `pusher` 3.3.4
//! library, and the Rakit API) counting the other nodes' subscribers. One test drives
//! pusher-js 8.6.0 (tests/pusher/cluster_presence.mjs).
//!
//! The tests of this file run one at a time (a lock), as in tests/cluster.rs: the timing bounds
//! of the SPEC are checked. The Node and Python parts are skipped when their libraries are
//! missing, unless RAKIT_REQUIRE_PUSHER=1 (scripts/test.sh sets it).

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use common::redis::Redis;
use common::{recv_json, send_json, Client, Daemon, SLACK, WAIT};
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;

const APP_ID: &str = "4242";
const KEY: &str = "app-key";
const SECRET: &str = "pusher-test-secret-0123456789";
const API_KEY: &str = "cluster-test-api-key-0123";
const NODE_TIMEOUT_MS: u64 = 1000;
const ROOM: &str = "presence-room";

fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

fn node(redis: &Redis) -> Daemon {
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
fn recv_event(ws: &mut Client) -> (String, Value, Value) {
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
fn connect(daemon: &Daemon) -> (Client, String) {
    let mut ws = daemon.ws_at(&format!("/app/{KEY}?protocol=7&client=js&version=8.6.0"));
    let (event, _, data) = recv_event(&mut ws);
    assert_eq!(event, "pusher:connection_established");
    (ws, data["socket_id"].as_str().unwrap().to_owned())
}

/// `KEY:HMAC-SHA256-HEX(secret, parts joined by ':')`, as the application's auth endpoint signs.
fn sign(parts: &[&str]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(parts.join(":").as_bytes());
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
fn join(ws: &mut Client, socket_id: &str, channel: &str, user: &str, name: &str) -> Value {
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

/// Subscribes to a public channel.
#[track_caller]
fn subscribe(ws: &mut Client, channel: &str) {
    send_json(
        ws,
        &json!({"event": "pusher:subscribe", "data": {"channel": channel}}),
    );
    let (event, ch, _) = recv_event(ws);
    assert_eq!(
        (event.as_str(), &ch),
        ("pusher_internal:subscription_succeeded", &json!(channel))
    );
}

/// The user ids of a `presence` object, in its order, and its count.
fn ids(presence: &Value) -> (Vec<String>, u64) {
    let ids = presence["ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    (ids, presence["count"].as_u64().unwrap())
}

/// The next member event as `("added", user)` or `("removed", user)`; fails on anything else.
#[track_caller]
fn member_event(ws: &mut Client) -> (&'static str, String) {
    let (event, channel, data) = recv_event(ws);
    assert_eq!(channel, ROOM, "{event} {data}");
    let kind = match event.as_str() {
        "pusher_internal:member_added" => "added",
        "pusher_internal:member_removed" => "removed",
        other => panic!("not a member event: {other} {data}"),
    };
    (kind, data["user_id"].as_str().unwrap().to_owned())
}

fn added(user: &str) -> (&'static str, String) {
    ("added", user.to_owned())
}

fn removed(user: &str) -> (&'static str, String) {
    ("removed", user.to_owned())
}

/// `GET path` on the Rakit API of `daemon`.
fn api(daemon: &Daemon, path: &str) -> Value {
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {API_KEY}\r\nConnection: close\r\n\r\n"
    );
    let response = common::http(daemon, request.as_bytes());
    assert_eq!(common::status_of(&response), 200, "{response}");
    let body = response.split("\r\n\r\n").nth(1).unwrap_or("");
    serde_json::from_str(body).unwrap()
}

/// Waits until `daemon` counts `n` subscribers of `channel` in the cluster (so that it has
/// heard of the other nodes' subscriptions); returns the channel's answer.
#[track_caller]
fn subscribers_are(daemon: &Daemon, channel: &str, n: u64) -> Value {
    eventually(&format!("{n} subscribers of {channel}"), || {
        let v = api(daemon, &format!("/api/channels/{channel}"));
        (v["subscribers"] == n).then_some(v)
    })
}

fn kill(daemon: &Daemon, signal: &str) {
    let status = Command::new("kill")
        .args([signal, &daemon.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

#[test]
fn presence_members_span_nodes_and_a_user_is_one_member_wherever_it_connects() {
    let _serial = serial();
    let redis = Redis::start();
    let (n1, n2) = (node(&redis), node(&redis));
    let (mut a, sa) = connect(&n1);
    assert_eq!(
        ids(&join(&mut a, &sa, ROOM, "1", "Ann")),
        (vec!["1".into()], 1)
    );
    subscribers_are(&n2, ROOM, 1);
    // A user on node 2 sees node 1's member, with its info, and node 1 hears of it.
    let (mut b, sb) = connect(&n2);
    let presence = join(&mut b, &sb, ROOM, "2", "Bob");
    assert_eq!(ids(&presence), (vec!["1".into(), "2".into()], 2));
    assert_eq!(
        presence["hash"],
        json!({"1": {"name": "Ann"}, "2": {"name": "Bob"}})
    );
    assert_eq!(member_event(&mut a), added("2"));
    // The whole member_added for a user of another node.
    let (mut f, sf) = connect(&n2);
    join(&mut f, &sf, ROOM, "7", "Fay");
    let (event, _, data) = recv_event(&mut a);
    assert_eq!(event, "pusher_internal:member_added");
    assert_eq!(data, json!({"user_id": "7", "user_info": {"name": "Fay"}}));
    assert_eq!(member_event(&mut b), added("7"));
    // User 1 again, on node 2: still one member. A fence from node 2 (user 8) is the next
    // thing everybody hears, so nothing was said of user 1 before it.
    let (mut a2, sa2) = connect(&n2);
    assert_eq!(ids(&join(&mut a2, &sa2, ROOM, "1", "Ann")).1, 3);
    let (mut f2, sf2) = connect(&n2);
    join(&mut f2, &sf2, ROOM, "8", "Fence");
    assert_eq!(member_event(&mut a), added("8"));
    assert_eq!(member_event(&mut b), added("8"));
    assert_eq!(member_event(&mut a2), added("8"));
    // User 1's connection on node 1 goes; its other one on node 2 stays: no member_removed.
    drop(a);
    let (mut m, sm) = connect(&n1);
    let presence = join(&mut m, &sm, ROOM, "9", "Fence");
    let (listed, count) = ids(&presence);
    assert_eq!(count, 5, "{presence}");
    let want: BTreeSet<String> = ["1", "2", "7", "8", "9"].map(String::from).into();
    assert_eq!(listed.into_iter().collect::<BTreeSet<_>>(), want);
    for ws in [&mut b, &mut a2, &mut f2] {
        assert_eq!(member_event(ws), added("9"), "user 1 did not leave");
    }
    // Its last connection goes: everybody, on both nodes, hears it once.
    drop(a2);
    assert_eq!(member_event(&mut b), removed("1"));
    assert_eq!(member_event(&mut f2), removed("1"));
    assert_eq!(member_event(&mut m), removed("1"));
    let users = api(&n1, &format!("/api/channels/{ROOM}"));
    assert_eq!(users["subscribers"], 4, "{users}");
}

#[test]
fn members_of_a_killed_node_leave_within_the_timeout_and_of_a_stopped_one_at_once() {
    let _serial = serial();
    let redis = Redis::start();
    let (n1, mut n2, mut n3) = (node(&redis), node(&redis), node(&redis));
    let (mut a, sa) = connect(&n1);
    join(&mut a, &sa, ROOM, "1", "Ann");
    subscribers_are(&n2, ROOM, 1);
    let (mut b, sb) = connect(&n2);
    join(&mut b, &sb, ROOM, "2", "Bob");
    subscribers_are(&n3, ROOM, 2);
    let (mut c, sc) = connect(&n3);
    assert_eq!(ids(&join(&mut c, &sc, ROOM, "3", "Cid")).1, 3);
    assert_eq!(member_event(&mut a), added("2"));
    assert_eq!(member_event(&mut a), added("3"));
    assert_eq!(member_event(&mut b), added("3"));
    // kill -9: no goodbye; node 2's member goes when the node is found silent.
    kill(&n2, "-KILL");
    let killed = Instant::now();
    let _ = n2.child.wait();
    assert_eq!(member_event(&mut a), removed("2"));
    assert_eq!(member_event(&mut c), removed("2"));
    let bound = Duration::from_millis(NODE_TIMEOUT_MS) + Duration::from_secs(1);
    let took = killed.elapsed();
    assert!(took < bound + Duration::from_millis(500), "took {took:?}");
    drop(b);
    // SIGTERM: node 3 says goodbye, its member leaves at once.
    kill(&n3, "-TERM");
    let stopped = Instant::now();
    assert_eq!(member_event(&mut a), removed("3"));
    let took = stopped.elapsed();
    assert!(
        took < Duration::from_millis(NODE_TIMEOUT_MS),
        "left only after {took:?}, as if it had died"
    );
    let _ = n3.child.wait();
    drop(c);
    let v = api(&n1, &format!("/api/channels/{ROOM}"));
    assert_eq!(v["subscribers"], 1, "{v}");
}

#[test]
fn subscriptions_come_back_from_the_hash_for_a_new_node_and_after_redis_lost_everything() {
    let _serial = serial();
    let mut redis = Redis::start();
    let n1 = node(&redis);
    let (mut a, sa) = connect(&n1);
    join(&mut a, &sa, ROOM, "1", "Ann");
    // Node 1's hash holds the subscription (`CLIENT_ID:CHANNEL`) beside the client.
    let hash = eventually("node 1's hash", || {
        let keys = redis.cli(&["KEYS", "rakit:presence:*"]);
        (keys.lines().count() == 1).then_some(keys)
    });
    let field = |redis: &Redis| {
        eventually("the subscription in the hash", || {
            let fields = redis.cli(&["HKEYS", &hash]);
            fields.contains(&format!(":{ROOM}")).then_some(())
        })
    };
    field(&redis);
    // A node started afterwards heard none of the deltas: it reads node 1's hash.
    let n2 = node(&redis);
    subscribers_are(&n2, ROOM, 1);
    let (mut b, sb) = connect(&n2);
    assert_eq!(ids(&join(&mut b, &sb, ROOM, "2", "Bob")).1, 2);
    assert_eq!(member_event(&mut a), added("2"));
    // Redis restarts empty: the nodes lose each other (members leave), then write their
    // hashes whole again and find each other's subscriptions.
    redis.stop();
    assert_eq!(member_event(&mut a), removed("2"));
    assert_eq!(member_event(&mut b), removed("1"));
    subscribers_are(&n2, ROOM, 1);
    redis.spawn();
    assert_eq!(member_event(&mut a), added("2"));
    assert_eq!(member_event(&mut b), added("1"));
    subscribers_are(&n2, ROOM, 2);
    subscribers_are(&n1, ROOM, 2);
    field(&redis);
}

/// Polls `f` until it gives something (for state that no event announces).
#[track_caller]
fn eventually<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "never: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Whether python3 has `pusher` 3.3.4; fails when it is required.
fn python_pusher() -> bool {
    let ok = Command::new("python3")
        .args([
            "-c",
            "import importlib.metadata as m, sys; sys.exit(m.version('pusher') != '3.3.4')",
        ])
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        assert!(
            std::env::var("RAKIT_REQUIRE_PUSHER").as_deref() != Ok("1"),
            "python3 -m pip install pusher==3.3.4"
        );
        eprintln!("skipped: python pusher 3.3.4 missing");
    }
    ok
}

fn pusher_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/pusher")
}

#[test]
fn one_nodes_pusher_and_rakit_queries_count_every_nodes_subscribers() {
    if !python_pusher() {
        return;
    }
    let _serial = serial();
    let redis = Redis::start();
    let (n1, n2) = (node(&redis), node(&redis));
    // Node 2: users 1 and 2 (twice) on presence-py, user 1 and a Rakit client on news.
    let mut keep = Vec::new();
    for user in ["1", "2", "2"] {
        let (mut ws, socket) = connect(&n2);
        join(&mut ws, &socket, "presence-py", user, "U");
        if user == "1" {
            subscribe(&mut ws, "news");
        }
        keep.push(ws);
    }
    let (mut rakit, welcome) = n2.client();
    send_json(
        &mut rakit,
        &json!({"event": "subscribe", "channel": "news"}),
    );
    common::recv_type(&mut rakit, "subscribed");
    let rakit_id = welcome["client_id"].as_str().unwrap().to_owned();
    // Node 1: one public subscriber of news.
    let (mut q, _) = connect(&n1);
    subscribe(&mut q, "news");
    // The Rakit API of node 1.
    let news = subscribers_are(&n1, "news", 3);
    let clients: BTreeSet<&str> = news["clients"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    assert_eq!(clients.len(), 3, "{news}");
    assert!(clients.contains(rakit_id.as_str()), "{news}");
    subscribers_are(&n1, "presence-py", 3);
    assert_eq!(
        api(&n1, "/api/channels"),
        json!({"channels": [{"name": "news", "subscribers": 3}, {"name": "presence-py", "subscribers": 3}]})
    );
    // Pusher's HTTP API of node 1, through the Python library.
    let out = Command::new("python3")
        .arg(pusher_dir().join("cluster_api.py"))
        .args([&n1.addr.port().to_string(), APP_ID, KEY, SECRET])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let seen: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        seen["channels"],
        json!({"channels": {"news": {}, "presence-py": {}}})
    );
    assert_eq!(
        seen["presence"],
        json!({"channels": {"presence-py": {"user_count": 2}}})
    );
    assert_eq!(
        seen["news"],
        json!({"occupied": true, "subscription_count": 3})
    );
    assert_eq!(
        seen["room"],
        json!({"occupied": true, "user_count": 2, "subscription_count": 3})
    );
    assert_eq!(seen["users"], json!({"users": [{"id": "1"}, {"id": "2"}]}));
}

/// Whether node and the npm libraries are there; fails when they are required.
fn node_available() -> bool {
    let ok = Command::new("node")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
        && pusher_dir().join("node_modules/pusher-js").is_dir()
        && pusher_dir().join("node_modules/pusher").is_dir();
    if !ok {
        assert!(
            std::env::var("RAKIT_REQUIRE_PUSHER").as_deref() != Ok("1"),
            "node or tests/pusher/node_modules missing (cd tests/pusher && npm ci)"
        );
        eprintln!("skipped: node or tests/pusher/node_modules missing");
    }
    ok
}

#[test]
fn pusher_js_clients_on_two_nodes_share_a_presence_channel() {
    if !node_available() {
        return;
    }
    let _serial = serial();
    let redis = Redis::start();
    let (n1, n2) = (node(&redis), node(&redis));
    let mut child = Command::new("node")
        .arg(pusher_dir().join("cluster_presence.mjs"))
        .args([
            n1.addr.port().to_string(),
            n2.addr.port().to_string(),
            KEY.into(),
            SECRET.into(),
            APP_ID.into(),
        ])
        .current_dir(pusher_dir())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn node");
    let status = common::wait_exit(&mut child, Duration::from_secs(60) + SLACK);
    if status.is_none() {
        let _ = child.kill();
    }
    let out = child.wait_with_output().unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(
        status.is_some_and(|s| s.success()),
        "{status:?}\nstdout: {stdout}\nstderr: {stderr}"
    );
    let seen: Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(
        seen["a"],
        json!([
            ["here", [["1", "Ann"]], 1],
            ["added", "2", "Bob"],
            ["removed", "2"]
        ])
    );
    assert_eq!(
        seen["b"],
        json!([["here", [["1", "Ann"], ["2", "Bob"]], 2]])
    );
    assert_eq!(seen["count_with_b"], 2);
}
