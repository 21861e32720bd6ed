//! The cluster against a hostile peer on Redis (docs/limits.md, "Cluster peers"), with a real
//! `redis-server` and real daemons: an oversized presence hash, forged changes for another
//! node's client, and a presence hash that disappears.
//!
//! The tests of this file run one at a time (a lock), like `cluster.rs`.

mod common;

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use common::presence::{presence_by, presence_is};
use common::redis::Redis;
use common::{id_of, send_json, serial, Client, Daemon, SLACK, WAIT};
use rakit::cluster::envelope::{Body, Envelope};
use serde_json::{json, Value};

const NODE_TIMEOUT_MS: u64 = 1000;

fn node(redis: &Redis) -> Daemon {
    let toml = format!(
        "logging_level = \"warn\"\npresence_interval_ms = 100\n\
         [cluster]\nredis_url = \"{}\"\nnode_timeout_ms = {NODE_TIMEOUT_MS}\n",
        redis.url()
    );
    Daemon::start(&toml, &[])
}

/// One command on a connection of its own, binary-safe (redis-cli takes text arguments).
fn redis_raw(redis: &Redis, args: &[&[u8]]) -> Vec<u8> {
    let url = redis.url();
    let mut s = UnixStream::connect(url.strip_prefix("unix:").unwrap()).unwrap();
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
    s.write_all(&out).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    let mut reply = vec![0u8; 256];
    let n = s.read(&mut reply).unwrap();
    reply.truncate(n);
    reply
}

/// Publishes `body` on the bus as node `origin` says it.
fn forge(redis: &Redis, origin: &str, body: Body<'_>) {
    let mut bytes = Vec::new();
    Envelope { origin, body }.encode(&mut bytes);
    redis_raw(redis, &[b"PUBLISH", b"rakit:bus", &bytes]);
}

/// The next message that is not presence, or `None` after `wait` of silence.
fn try_recv(ws: &mut Client, wait: Duration) -> Option<Value> {
    common::try_recv_json(ws, wait, |v| v["type"] == "presence")
}

/// `from` sends a private message to `to_id`; true when `to` gets it (false: `from` got
/// `unknown_client`).
fn private_arrives(from: &mut Client, to: &mut Client, to_id: &str, text: &str) -> bool {
    send_json(from, &json!({"to": to_id, "message": text}));
    // Whichever comes first: the delivery, or the error to the sender.
    let deadline = Instant::now() + SLACK;
    while Instant::now() < deadline {
        if let Some(v) = try_recv(to, Duration::from_millis(50)) {
            if v["type"] == "private" && v["message"] == text {
                return true;
            }
        }
        if let Some(v) = try_recv(from, Duration::from_millis(50)) {
            if v["type"] == "error" {
                assert_eq!(v["code"], "unknown_client", "{v}");
                return false;
            }
        }
    }
    panic!("neither the message {text} nor an error arrived");
}

/// Two nodes with one client each, each seeing the other's client.
fn two(redis: &Redis) -> (Vec<Daemon>, Vec<Client>, Vec<String>) {
    let nodes = vec![node(redis), node(redis)];
    let mut clients = Vec::new();
    let mut ids = Vec::new();
    for n in &nodes {
        let (ws, welcome) = n.client();
        ids.push(id_of(&welcome));
        clients.push(ws);
    }
    let all: BTreeSet<String> = ids.iter().cloned().collect();
    for ws in &mut clients {
        presence_is(ws, &all, WAIT);
    }
    (nodes, clients, ids)
}

#[test]
fn an_oversized_hash_is_refused_and_the_cluster_keeps_working() {
    let _serial = serial();
    let redis = Redis::start();
    // 600,000 fields: more than one reply may carry. Written before the nodes start (the
    // script blocks Redis for longer than a node timeout).
    let script = "for i=1,600000 do redis.call('HSET', KEYS[1], 'f'..i, 'x') end return 1";
    assert_eq!(
        redis.cli(&["EVAL", script, "1", "rakit:presence:evil"]),
        "1"
    );
    let (nodes, mut clients, ids) = two(&redis);
    // Its "node" heartbeats twice a node timeout, faster than the real ones.
    let until = Instant::now() + Duration::from_millis(2 * NODE_TIMEOUT_MS);
    let mut round = 0;
    while Instant::now() < until {
        forge(&redis, "evil", Body::Heartbeat { ver: 1 });
        // Meanwhile messages cross between the two real nodes, every one of them.
        round += 1;
        let text = format!("round {round}");
        send_json(&mut clients[0], &json!({"message": text}));
        let got = try_recv(&mut clients[1], SLACK);
        assert_eq!(
            got,
            Some(json!({"type": "message", "client_id": ids[0], "message": text}))
        );
        let (a, b) = clients.split_at_mut(1);
        assert!(
            private_arrives(&mut b[0], &mut a[0], &ids[0], &text),
            "{text}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(round >= 3);
    // Presence stays correct: a newcomer on one node is seen on the other.
    let (mut late, welcome) = nodes[1].client();
    let mut all: BTreeSet<String> = ids.iter().cloned().collect();
    all.insert(id_of(&welcome));
    presence_is(&mut clients[0], &all, SLACK);
    assert!(private_arrives(
        &mut clients[0],
        &mut late,
        &id_of(&welcome),
        "hi"
    ));
    // Refused once, logged once per node (retries are not).
    for n in &nodes {
        n.wait_for_line("ignoring node evil");
        let lines = n.log_lines();
        let refusals = lines.iter().filter(|l| l.contains("node evil")).count();
        assert_eq!(refusals, 1, "{lines:?}");
    }
}

#[test]
fn a_forged_leave_or_join_does_not_touch_another_nodes_client() {
    let _serial = serial();
    let redis = Redis::start();
    let (nodes, mut clients, ids) = two(&redis);
    let victim: &'static str = Box::leak(ids[1].clone().into_boxed_str());
    let own = "EvilOwn1";
    let entry =
        |id: &str| format!(r#"{{"id":"{id}","name":"Mallory","email":null,"connected_at":1}}"#);
    let join = |id: &'static str, ver: u64, entry: &str| {
        let body = Body::Join {
            id,
            seq: 0,
            connected_at: 1,
            ver,
            entry,
        };
        forge(&redis, "evil", body);
    };
    // A "node" with a valid hash and a client of its own: once node A lists that client,
    // A follows this node's changes one by one.
    redis.cli(&["HSET", "rakit:presence:evil", "~v", "5"]);
    forge(&redis, "evil", Body::Heartbeat { ver: 5 });
    join(own, 6, &entry(own));
    let mut all: BTreeSet<String> = ids.iter().cloned().collect();
    all.insert(own.to_owned());
    presence_is(&mut clients[0], &all, SLACK);
    // Forged changes for node B's client: a leave, a take-over, a leave again, then the forger's
    // own client leaves. After each, a real client connects to B: its join reaches A after the
    // forged change (one bus), so the presence that lists it shows what A made of the change,
    // and neither it nor any presence before it may lack B's client.
    let victim_entry = entry(victim);
    let mut markers = Vec::new();
    for step in 0..4 {
        match step {
            0 => forge(&redis, "evil", Body::Leave { id: victim, ver: 7 }),
            1 => join(victim, 8, &victim_entry),
            2 => forge(&redis, "evil", Body::Leave { id: victim, ver: 9 }),
            _ => {
                forge(&redis, "evil", Body::Leave { id: own, ver: 10 });
                all.remove(own);
            }
        }
        let (marker, welcome) = nodes[1].client();
        markers.push(marker);
        all.insert(id_of(&welcome));
        let (_, before) = presence_by(&mut clients[0], &all, Instant::now() + SLACK);
        for listed in &before {
            assert!(
                listed.contains(victim),
                "step {step}: {victim} removed: {before:?}"
            );
        }
    }
    let (a, b) = clients.split_at_mut(1);
    assert!(private_arrives(&mut a[0], &mut b[0], victim, "still there"));
}

#[test]
fn a_hash_that_disappears_is_written_again_for_later_nodes() {
    let _serial = serial();
    let redis = Redis::start();
    let (_nodes, _clients, mut ids) = two(&redis);
    // Both hashes vanish (an eviction, a TTL that ran out during a stall, a DEL).
    let keys = redis.cli(&["KEYS", "rakit:presence:*"]);
    let keys: Vec<&str> = keys.lines().collect();
    assert_eq!(keys.len(), 2, "{keys:?}");
    for key in &keys {
        redis.cli(&["DEL", key]);
    }
    // A node started afterwards sees the clients of both (written again at a heartbeat).
    let late = node(&redis);
    let (mut ws, welcome) = late.client();
    ids.push(id_of(&welcome));
    let all: BTreeSet<String> = ids.iter().cloned().collect();
    presence_is(
        &mut ws,
        &all,
        Duration::from_millis(NODE_TIMEOUT_MS) + SLACK,
    );
}
