//! Pusher presence and channel queries across a cluster (SPEC sections 8, 11 and 13), with a
//! real `redis-server` and two or three real daemons: presence channel members of every node,
//! one member per user however many connections on however many nodes, members of a killed or
//! stopped node leaving, and one node's HTTP APIs (Pusher's through the Python `pusher` 3.3.4
//! library, and the Rakit API) counting the other nodes' subscribers. One test drives
//! pusher-js 8.6.0 (tests/pusher/cluster_presence.mjs).
//!
//! The tests of this file run one at a time (a lock), as in tests/cluster.rs: the timing bounds
//! of the SPEC are checked. The Node and Python parts are skipped, saying so, when their libraries
//! are missing, unless that is not allowed (tests/common/tools.rs).

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::pusher::{
    api, connect, eventually, join, node, recv_event, subscribe, subscribers_are, APP_ID, KEY,
    NODE_TIMEOUT_MS, SECRET,
};
use common::redis::Redis;
use common::tools::{have, Tool};
use common::{send_json, serial, Client, Daemon, SLACK};
use serde_json::{json, Value};

const ROOM: &str = "presence-room";

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

fn pusher_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/pusher")
}

#[test]
fn one_nodes_pusher_and_rakit_queries_count_every_nodes_subscribers() {
    if !have(Tool::PusherPython) {
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
            subscribe(&mut ws, &socket, "news");
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
    let (mut q, sq) = connect(&n1);
    subscribe(&mut q, &sq, "news");
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

#[test]
fn pusher_js_clients_on_two_nodes_share_a_presence_channel() {
    if !have(Tool::PusherNode) {
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
