//! The cluster and its Redis (SPEC sections 9 and 11), with a real `redis-server` and real
//! daemons: every key and channel under `[cluster] namespace` (two clusters on one Redis stay
//! apart), `rakit_cluster_messages_total` counting what crosses Redis, client ids unique
//! across nodes that connect clients at the same moment, a Redis that is down when the daemon
//! starts, and one that stalls (SIGSTOP) instead of dying.
//!
//! The tests of this file run one at a time (a lock), as in tests/cluster.rs.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::api::{command, once, scrape};
use common::msg::until_pong;
use common::presence::{presence_by, presence_is};
use common::redis::Redis;
use common::{id_of, recv_json, send_json, serial, try_recv_json, Client, Daemon, WAIT};
use serde_json::{json, Value};

const API_KEY: &str = common::api::API_KEY;
const NODE_TIMEOUT_MS: u64 = 1000;

/// A node on `redis` in `namespace`, with the API.
fn node_in(redis: &Redis, namespace: &str) -> Daemon {
    Daemon::start(
        &format!(
            "logging_level = \"info\"\npresence_interval_ms = 100\ncommand_policy = \"any\"\n\
             [api]\nkey = \"{API_KEY}\"\n\
             [cluster]\nredis_url = \"{}\"\nnamespace = \"{namespace}\"\n\
             node_timeout_ms = {NODE_TIMEOUT_MS}\n",
            redis.url()
        ),
        &[],
    )
}

fn node(redis: &Redis) -> Daemon {
    node_in(redis, "rakit")
}

/// The value of the sample `name` (labels included, as exposed) in a scrape of `daemon`.
#[track_caller]
fn metric(daemon: &Daemon, name: &str) -> u64 {
    let text = scrape(daemon.addr, None);
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no {name} in\n{text}"))
        .parse()
        .unwrap()
}

fn set(ids: &[&str]) -> BTreeSet<String> {
    ids.iter().map(|s| (*s).to_owned()).collect()
}

/// The messages (not presence) that reach `ws` until nothing comes for a moment.
fn drain(ws: &mut Client) -> Vec<Value> {
    let mut got = Vec::new();
    while let Some(v) = try_recv_json(ws, Duration::from_millis(300), |v| v["type"] == "presence") {
        got.push(v);
    }
    got
}

/// Sends `{"message": "probe-N"}` from `from` until `to` hears one (delivery across nodes
/// resumes a moment after Redis is back); fails after `within`. Other messages are read past.
#[track_caller]
fn probe_until_heard(from: &mut Client, to: &mut Client, within: Duration) {
    let deadline = Instant::now() + within;
    let is_probe = |v: &Value| {
        v["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("probe-"))
    };
    for n in 0.. {
        assert!(Instant::now() < deadline, "no delivery across nodes");
        send_json(from, &json!({ "message": format!("probe-{n}") }));
        if try_recv_json(to, Duration::from_millis(200), |v| !is_probe(v)).is_some() {
            return;
        }
    }
}

/// Two nodes on `redis`, a client on each, each client's presence listing both; their ids.
struct Two {
    nodes: [Daemon; 2],
    clients: [Client; 2],
    ids: [String; 2],
}

fn two(redis: &Redis) -> Two {
    let nodes = [node(redis), node(redis)];
    let (a, wa) = nodes[0].client();
    let (b, wb) = nodes[1].client();
    let mut two = Two {
        nodes,
        clients: [a, b],
        ids: [id_of(&wa), id_of(&wb)],
    };
    let all = set(&[&two.ids[0], &two.ids[1]]);
    for ws in &mut two.clients {
        presence_is(ws, &all, WAIT);
    }
    two
}

/// SPEC 11: `namespace` prefixes every Redis key and pub/sub channel. Two clusters on one
/// Redis, "blue" (two nodes) and "green" (one), share nothing: presence, broadcasts and the
/// keys and channels in Redis are each their own.
#[test]
fn the_namespace_prefixes_every_key_and_channel_and_keeps_clusters_apart() {
    let _serial = serial();
    let redis = Redis::start();
    let blue = [node_in(&redis, "blue"), node_in(&redis, "blue")];
    let green = node_in(&redis, "green");
    let (mut b0, w0) = blue[0].client();
    let (mut b1, w1) = blue[1].client();
    let (mut g, wg) = green.client();
    let (id0, id1, idg) = (id_of(&w0), id_of(&w1), id_of(&wg));
    let blues = set(&[&id0, &id1]);
    presence_is(&mut b0, &blues, WAIT);
    presence_is(&mut b1, &blues, WAIT);

    // Redis holds each cluster's keys under its namespace, and nothing else.
    let keys = redis.cli(&["KEYS", "*"]);
    let mut keys: Vec<&str> = keys.lines().collect();
    keys.sort_unstable();
    let presence = |ns: &str| {
        keys.iter()
            .filter(|k| k.starts_with(&format!("{ns}:presence:")))
            .count()
    };
    assert_eq!((presence("blue"), presence("green")), (2, 1), "{keys:?}");
    for ns in ["blue", "green"] {
        assert!(keys.contains(&format!("{ns}:nodes").as_str()), "{keys:?}");
    }
    assert!(
        keys.iter()
            .all(|k| k.starts_with("blue:") || k.starts_with("green:")),
        "{keys:?}"
    );
    let channels = redis.cli(&["PUBSUB", "CHANNELS", "*"]);
    let channels: Vec<&str> = channels.lines().collect();
    for bus in ["blue:bus", "green:bus"] {
        assert!(channels.contains(&bus), "{channels:?}");
    }
    let inboxes = |ns: &str| {
        channels
            .iter()
            .filter(|c| c.starts_with(&format!("{ns}:node:")))
            .count()
    };
    assert_eq!((inboxes("blue"), inboxes("green")), (2, 1), "{channels:?}");
    assert!(
        channels
            .iter()
            .all(|c| c.starts_with("blue:") || c.starts_with("green:")),
        "{channels:?}"
    );

    // A broadcast in blue reaches blue's other node, never green; green's presence is its own.
    send_json(&mut b0, &json!({"message": "blue only"}));
    let m = json!({"type": "message", "client_id": id0, "message": "blue only"});
    assert_eq!(drain(&mut b1), std::slice::from_ref(&m));
    assert_eq!(drain(&mut b0), [m]);
    let (v, _) = presence_by(&mut g, &set(&[&idg]), Instant::now() + WAIT);
    assert_eq!(v["count"], 1);
    let mut later: Vec<Value> = until_pong(&mut g);
    later.retain(|v| v["type"] != "presence");
    assert!(later.is_empty(), "green heard blue: {later:?}");
    // And the API of one cluster does not see the other's clients.
    let r = once(
        green.addr,
        &command(&format!(
            r#"{{"command":"private_message","to":"{id0}","message":1}}"#
        )),
    );
    assert_eq!(r.status, 404, "{r:?}");
}

/// SPEC 9: `rakit_cluster_messages_total{direction}` counts the messages that cross Redis,
/// out on the sender's node and in on the receiver's: broadcasts, a channel message and a
/// private message, each exactly once.
#[test]
fn the_cluster_message_counter_counts_each_message_out_and_in() {
    let _serial = serial();
    let redis = Redis::start();
    let Two {
        nodes: [n1, n2],
        clients: [mut a, mut b],
        ids: [ida, idb],
    } = two(&redis);
    send_json(&mut b, &json!({"event": "subscribe", "channel": "room"}));
    assert_eq!(recv_json(&mut b)["type"], "subscribed");
    common::pusher::eventually("n1 knows b's subscription", || {
        let r = once(
            n1.addr,
            &common::api::get("/api/channels/room", Some(API_KEY)),
        );
        (r.json()["subscribers"] == 1).then_some(())
    });
    let out = r#"rakit_cluster_messages_total{direction="out"}"#;
    let inn = r#"rakit_cluster_messages_total{direction="in"}"#;
    let before = [
        metric(&n1, out),
        metric(&n1, inn),
        metric(&n2, out),
        metric(&n2, inn),
    ];

    for i in 0..5 {
        send_json(&mut a, &json!({ "message": i }));
    }
    send_json(
        &mut a,
        &json!({"event": "message", "channel": "room", "data": "c"}),
    );
    send_json(&mut a, &json!({"to": idb, "message": "p"}));
    let mut want: Vec<Value> = (0..5)
        .map(|i| json!({"type": "message", "client_id": ida, "message": i}))
        .collect();
    want.push(json!({"type": "channel", "channel": "room", "client_id": ida, "data": "c"}));
    want.push(json!({"type": "private", "client_id": ida, "message": "p"}));
    assert_eq!(drain(&mut b), want);

    let after = [
        metric(&n1, out),
        metric(&n1, inn),
        metric(&n2, out),
        metric(&n2, inn),
    ];
    let moved: Vec<u64> = after.iter().zip(before).map(|(a, b)| a - b).collect();
    assert_eq!(moved, [7, 0, 0, 7], "n1 out, n1 in, n2 out, n2 in");
}

/// SPEC 11: client ids are unique across the cluster, also for clients that three nodes
/// accept at the same moment (before any node has heard of the others' new clients).
#[test]
fn client_ids_are_unique_across_nodes_connecting_at_once() {
    let _serial = serial();
    let redis = Redis::start();
    let nodes: Vec<Daemon> = (0..3).map(|_| node(&redis)).collect();
    let barrier = std::sync::Barrier::new(nodes.len());
    let per_node = 20;
    let (clients, ids): (Vec<Vec<Client>>, Vec<Vec<String>>) = std::thread::scope(|s| {
        let handles: Vec<_> = nodes
            .iter()
            .map(|n| {
                let barrier = &barrier;
                s.spawn(move || {
                    barrier.wait();
                    (0..per_node)
                        .map(|_| {
                            let (ws, welcome) = n.client();
                            (ws, id_of(&welcome))
                        })
                        .unzip()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).unzip()
    });
    let all: Vec<&String> = ids.iter().flatten().collect();
    let unique: BTreeSet<String> = all.iter().map(|s| (*s).clone()).collect();
    assert_eq!(unique.len(), all.len(), "an id was given twice: {ids:?}");
    // And the cluster lists each of them once.
    let mut clients: Vec<Client> = clients.into_iter().flatten().collect();
    let v = presence_is(&mut clients[0], &unique, WAIT);
    assert_eq!(v["count"], 3 * per_node);
}

/// SPEC 11: a daemon whose Redis is down when it starts serves its own clients, says so once,
/// shows `rakit_cluster_up 0`, and joins the cluster when Redis comes up.
#[test]
fn redis_down_at_start_then_up() {
    let _serial = serial();
    let mut redis = Redis::start();
    redis.stop();
    let n1 = node(&redis);
    let (mut a, wa) = n1.client();
    let (mut a2, wa2) = n1.client();
    let (ida, ida2) = (id_of(&wa), id_of(&wa2));
    presence_is(&mut a, &set(&[&ida, &ida2]), WAIT);
    send_json(&mut a, &json!({"message": "local"}));
    let m = json!({"type": "message", "client_id": ida, "message": "local"});
    assert_eq!(drain(&mut a2), [m]);
    assert_eq!(metric(&n1, "rakit_cluster_up"), 0);
    n1.wait_for_line("Redis unreachable");

    redis.spawn();
    let n2 = node(&redis);
    let (mut b, wb) = n2.client();
    let all = set(&[&ida, &ida2, &id_of(&wb)]);
    // The first node reconnects with its backoff (at most 5 s) and announces its clients.
    let deadline = Instant::now() + Duration::from_secs(15);
    presence_by(&mut a, &all, deadline);
    presence_by(&mut b, &all, deadline);
    probe_until_heard(&mut a, &mut b, Duration::from_secs(15));
    assert_eq!(metric(&n1, "rakit_cluster_up"), 1);
    let outage = n1
        .log_lines()
        .iter()
        .filter(|l| l.contains("Redis unreachable"))
        .count();
    assert_eq!(
        outage,
        1,
        "logged once, not per retry: {:#?}",
        n1.log_lines()
    );
}

/// SPEC 11: a Redis that stalls (SIGSTOP: its sockets stay open, nothing answers) never
/// blocks the loop: a node's own clients, its API and its metrics are served throughout,
/// the queue towards Redis stays bounded (what does not fit is dropped and counted), and
/// when Redis resumes the cluster works again.
#[test]
fn a_stalled_redis_never_blocks_the_loop() {
    let _serial = serial();
    let redis = Redis::start();
    let Two {
        nodes: [n1, n2],
        clients: [mut a, mut b],
        ..
    } = two(&redis);
    let dropped = r#"rakit_cluster_messages_dropped_total{direction="out"}"#;
    let dropped_before = metric(&n1, dropped);

    redis.signal("-STOP");
    // More broadcasts than the queue towards Redis holds, through the API (never rate
    // limited), a hundred a request: every one reaches the local client, every request is
    // answered, and a ping in between comes back while Redis says nothing.
    let batch: Vec<Value> = (0..100)
        .map(|i| json!({"command": "broadcast", "message": i}))
        .collect();
    let batch = Value::Array(batch).to_string();
    let rounds = 300;
    let mut slowest = Duration::ZERO;
    for round in 0..rounds {
        let r = once(n1.addr, &command(&batch));
        assert_eq!(r.status, 200, "round {round}: {r:?}");
        let mut next = 0;
        while next < 100 {
            let v = recv_json(&mut a);
            if v["type"] == "message" {
                assert_eq!(v["message"], next, "round {round}");
                next += 1;
            }
        }
        if round % 50 == 0 {
            let sent = Instant::now();
            send_json(&mut a, &json!({"ping": round}));
            common::recv_type(&mut a, "pong");
            slowest = slowest.max(sent.elapsed());
        }
    }
    eprintln!(
        "stalled Redis: slowest ping {slowest:?}, {} messages for other nodes dropped",
        metric(&n1, dropped) - dropped_before
    );
    // A loop blocked on Redis would wait for its reply timeout (5 s) or for ever.
    assert!(
        slowest < Duration::from_millis(2500),
        "a ping took {slowest:?}"
    );
    let lost = metric(&n1, dropped) - dropped_before;
    assert!(
        lost > 0,
        "30,000 messages for other nodes, none dropped: the queue is unbounded"
    );

    redis.signal("-CONT");
    // Delivery resumes both ways, and each node counts the other's client again (whether
    // presence changed meanwhile depends on how long the stall lasted).
    probe_until_heard(&mut a, &mut b, Duration::from_secs(20));
    probe_until_heard(&mut b, &mut a, Duration::from_secs(20));
    for n in [&n1, &n2] {
        common::pusher::eventually("both clients in presence", || {
            let r = once(n.addr, &common::api::get("/api/presence", Some(API_KEY)));
            (r.json()["count"] == 2).then_some(())
        });
    }
}
