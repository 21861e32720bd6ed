//! Channel history in a cluster (SPEC section 16, "Cluster") with a real `redis-server` and real
//! daemons: one Lua script per publication, so every node delivers a channel's publications in
//! offset order whoever made them; recovery and history through any node, also after the node a
//! client was on died (kill -9); Redis down (local delivery without offset, recovery across the
//! outage refused, never a wrong replay); keys lost or garbled in Redis (a new epoch).
//!
//! One test at a time (a lock), as in tests/cluster.rs.

mod common;

use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use common::api::{self, API_KEY};
use common::history::{config, follow_with_cuts, history, namespace, offsets, publish, subscribe};
use common::msg::until_pong;
use common::pusher::eventually;
use common::redis::Redis;
use common::{recv_json, send_json, Client, Daemon};
use serde_json::{json, Value};

const NODE_TIMEOUT_MS: u64 = 1000;

fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

fn node(redis: &Redis) -> Daemon {
    let d = Daemon::start(
        &config(&format!(
            "[cluster]\nredis_url = \"{}\"\nnode_timeout_ms = {NODE_TIMEOUT_MS}\n{}",
            redis.url(),
            namespace("room.", 1000, 300)
        )),
        &[],
    );
    history_up(&d);
    d
}

/// Waits until `d` reads history from Redis (its history API answers 200, not 503).
#[track_caller]
fn history_up(d: &Daemon) {
    eventually("history from Redis", || {
        (history(d.addr, "room.probe", "limit=1").status == 200).then_some(())
    });
}

/// Reads channel frames of `channel` until `n` have come (other messages skipped).
#[track_caller]
fn frames(ws: &mut Client, channel: &str, n: usize) -> Vec<Value> {
    let mut got = Vec::new();
    while got.len() < n {
        let v = recv_json(ws);
        if v["type"] == "channel" && v["channel"] == channel {
            got.push(v);
        }
    }
    got
}

#[test]
fn every_node_delivers_a_channels_publications_in_offset_order() {
    let _serial = serial();
    let redis = Redis::start();
    let nodes: Vec<Daemon> = (0..3).map(|_| node(&redis)).collect();
    let mut subs: Vec<Client> = nodes
        .iter()
        .map(|n| {
            let (mut ws, _) = n.client();
            let sub = subscribe(&mut ws, "room.1", None);
            assert_eq!(sub["offset"], 0, "{sub}");
            ws
        })
        .collect();
    let epoch = {
        let (mut ws, _) = nodes[0].client();
        subscribe(&mut ws, "room.1", None)["epoch"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    // Three publishers at once, one per node and path: a client's messages, WebSocket
    // commands, the HTTP API.
    const EACH: u64 = 100;
    let mut publishers: Vec<std::thread::JoinHandle<()>> = Vec::new();
    for (i, n) in nodes.iter().enumerate() {
        let addr = n.addr;
        let url = n.url();
        publishers.push(std::thread::spawn(move || {
            if i == 2 {
                let mut http = api::Http::connect(addr);
                for k in 0..EACH {
                    let body = json!({"command": "broadcast_to_channel", "channel": "room.1", "message": format!("c{k}")});
                    assert_eq!(http.request(&api::command(&body.to_string())).status, 200);
                }
                return;
            }
            let (mut ws, _) = tungstenite::connect(url).unwrap();
            for k in 0..EACH {
                let m = if i == 0 {
                    json!({"event": "message", "channel": "room.1", "data": format!("a{k}")})
                } else {
                    json!({"command": "broadcast_to_channel", "channel": "room.1", "message": format!("b{k}")})
                };
                ws.send(tungstenite::Message::Text(m.to_string())).unwrap();
            }
            ws.flush().unwrap();
            std::thread::sleep(Duration::from_millis(500));
        }));
    }
    for p in publishers {
        p.join().unwrap();
    }
    let seen: Vec<Vec<Value>> = subs
        .iter_mut()
        .map(|ws| frames(ws, "room.1", 3 * EACH as usize))
        .collect();
    // 1..300 without gaps, one epoch, and the same sequence on every node.
    assert_eq!(offsets(&seen[0]), (1..=3 * EACH).collect::<Vec<_>>());
    assert!(seen[0].iter().all(|v| v["epoch"] == epoch.as_str()));
    assert_eq!(seen[0], seen[1]);
    assert_eq!(seen[0], seen[2]);
    // Each publisher's own order is kept.
    for prefix in ["a", "b", "c"] {
        let own: Vec<u64> = seen[0]
            .iter()
            .filter_map(|v| v["data"].as_str())
            .filter_map(|d| d.strip_prefix(prefix))
            .map(|n| n.parse().unwrap())
            .collect();
        assert_eq!(own, (0..EACH).collect::<Vec<_>>(), "{prefix}");
    }
    // Nothing more (no second copy at the origin).
    for ws in &mut subs {
        assert!(until_pong(ws).is_empty());
    }
    // The history through any node is the same.
    let a = history(nodes[0].addr, "room.1", "limit=5").json();
    let c = history(nodes[2].addr, "room.1", "limit=5").json();
    assert_eq!(a, c);
    assert_eq!(
        offsets(a["publications"].as_array().unwrap()),
        [296, 297, 298, 299, 300]
    );
}

#[test]
fn a_client_recovers_through_another_node_after_its_node_died() {
    let _serial = serial();
    let redis = Redis::start();
    let mut a = node(&redis);
    let b = node(&redis);
    let (mut ws, _) = a.client();
    let epoch = subscribe(&mut ws, "room.1", None)["epoch"]
        .as_str()
        .unwrap()
        .to_owned();
    for n in 1..=3 {
        publish(b.addr, "room.1", json!(n));
    }
    let got = frames(&mut ws, "room.1", 3);
    assert_eq!(offsets(&got), [1, 2, 3]);
    // kill -9: no goodbye.
    a.child.kill().unwrap();
    let _ = a.child.wait();
    for n in 4..=6 {
        publish(b.addr, "room.1", json!(n));
    }
    let (mut ws, _) = b.client();
    let sub = subscribe(&mut ws, "room.1", Some((3, &epoch)));
    assert_eq!(
        sub,
        json!({"type": "subscribed", "channel": "room.1", "recovered": true, "offset": 6, "epoch": epoch})
    );
    let replay = frames(&mut ws, "room.1", 3);
    assert_eq!(offsets(&replay), [4, 5, 6]);
    assert_eq!(replay[0]["data"], 4);
    publish(b.addr, "room.1", json!(7));
    assert_eq!(frames(&mut ws, "room.1", 1)[0]["offset"], 7);
    assert!(until_pong(&mut ws).is_empty());
    // A history request over WebSocket through the survivor, and its refusals.
    send_json(
        &mut ws,
        &json!({"event": "history", "channel": "room.1", "limit": 2, "since": 1}),
    );
    let h = recv_json(&mut ws);
    assert_eq!(offsets(h["publications"].as_array().unwrap()), [2, 3]);
    assert_eq!(h["epoch"], epoch.as_str());
    send_json(
        &mut ws,
        &json!({"event": "history", "channel": "room.1", "limit": 0}),
    );
    assert_eq!(recv_json(&mut ws)["code"], "bad_request");
}

#[test]
fn a_recovery_finds_exactly_what_was_missed_while_publishers_go_on() {
    let _serial = serial();
    let redis = Redis::start();
    let a = node(&redis);
    let b = node(&redis);
    const TOTAL: u64 = 200;
    let addr = b.addr;
    let publisher = std::thread::spawn(move || {
        let mut http = api::Http::connect(addr);
        for n in 1..=TOTAL {
            let body =
                json!({"command": "broadcast_to_channel", "channel": "room.s", "message": n});
            assert_eq!(http.request(&api::command(&body.to_string())).status, 200);
        }
    });
    // Alternate the nodes: each recovery reads Redis while publications arrive.
    let nodes = [&a, &b];
    let seen = follow_with_cuts(|round| nodes[round % 2].client().0, "room.s", TOTAL, 9);
    publisher.join().unwrap();
    let first = seen[0];
    assert_eq!(
        seen,
        (first..=TOTAL).collect::<Vec<_>>(),
        "once each, in order"
    );
}

#[test]
fn redis_down_local_delivery_without_offsets_and_no_wrong_replay_after() {
    let _serial = serial();
    let mut redis = Redis::start();
    let a = node(&redis);
    let b = node(&redis);
    let (mut on_a, _) = a.client();
    let (mut on_b, _) = b.client();
    let epoch = subscribe(&mut on_a, "room.1", None)["epoch"]
        .as_str()
        .unwrap()
        .to_owned();
    subscribe(&mut on_b, "room.1", None);
    publish(a.addr, "room.1", json!(1));
    assert_eq!(frames(&mut on_a, "room.1", 1)[0]["offset"], 1);
    assert_eq!(frames(&mut on_b, "room.1", 1)[0]["offset"], 1);
    // Redis comes back with its data (a dump it loads at start), as after a network cut.
    assert_eq!(redis.cli(&["SAVE"]), "OK");
    redis.stop();
    // Local delivery goes on, without offset or epoch; history reads are unavailable.
    eventually("history unavailable", || {
        (history(a.addr, "room.1", "").status == 503).then_some(())
    });
    publish(a.addr, "room.1", json!("while down"));
    let v = frames(&mut on_a, "room.1", 1).remove(0);
    assert_eq!(
        v,
        json!({"type": "channel", "channel": "room.1", "data": "while down"})
    );
    let r = history(a.addr, "room.1", "");
    assert_eq!(
        (r.status, r.json()["code"].clone()),
        (503, json!("unavailable"))
    );
    send_json(&mut on_a, &json!({"event": "history", "channel": "room.1"}));
    assert_eq!(recv_json(&mut on_a)["code"], "unavailable");
    let (mut late, _) = a.client();
    let sub = subscribe(&mut late, "room.1", Some((1, &epoch)));
    assert_eq!(
        (
            sub["recovered"].clone(),
            sub["offset"].clone(),
            sub["epoch"].clone()
        ),
        (json!(false), json!(0), json!(""))
    );
    redis.spawn();
    assert_eq!(
        redis.cli(&["HGET", "rakit:history:m:room.1", "e"]),
        epoch,
        "the data is back"
    );
    history_up(&a);
    history_up(&b);
    // The channel a node published to unstored got a new epoch: a client of the other node
    // that saw offset 1 must not be told "recovered" with a replay that lacks what it missed.
    let sub = eventually("a new epoch", || {
        let (mut ws, _) = b.client();
        let sub = subscribe(&mut ws, "room.1", Some((1, &epoch)));
        (sub["epoch"] != epoch.as_str()).then_some(sub)
    });
    assert_eq!(sub["recovered"], false, "{sub}");
    // And publications carry offsets again, from the new epoch.
    publish(b.addr, "room.1", json!(2));
    let v = frames(&mut on_b, "room.1", 1).remove(0);
    assert_eq!(
        (v["offset"].clone(), v["epoch"].clone()),
        (json!(1), sub["epoch"].clone())
    );
}

#[test]
fn keys_lost_or_garbled_in_redis_start_a_new_epoch() {
    let _serial = serial();
    let redis = Redis::start();
    let a = node(&redis);
    let (mut ws, _) = a.client();
    let first = subscribe(&mut ws, "room.1", None)["epoch"]
        .as_str()
        .unwrap()
        .to_owned();
    for n in 1..=3 {
        publish(a.addr, "room.1", json!(n));
    }
    frames(&mut ws, "room.1", 3);
    // The hash evicted, the stream left (centrifugo#888): a new epoch from 1, no error.
    assert_eq!(redis.cli(&["DEL", "rakit:history:m:room.1"]), "1");
    publish(a.addr, "room.1", json!(4));
    let v = frames(&mut ws, "room.1", 1).remove(0);
    assert_eq!(v["offset"], 1);
    let second = v["epoch"].as_str().unwrap().to_owned();
    assert_ne!(second, first);
    let (mut c, _) = a.client();
    assert_eq!(
        subscribe(&mut c, "room.1", Some((3, &first)))["recovered"],
        false
    );
    // The stream lost, the hash left: what is missing is not replayed.
    publish(a.addr, "room.1", json!(5));
    frames(&mut ws, "room.1", 1);
    assert_eq!(redis.cli(&["DEL", "rakit:history:s:room.1"]), "1");
    let (mut c, _) = a.client();
    let sub = subscribe(&mut c, "room.1", Some((1, &second)));
    assert_eq!(
        (sub["recovered"].clone(), sub["offset"].clone()),
        (json!(false), json!(2))
    );
    // Keys of the wrong type: a new epoch, never an error to the publisher or a wrong offset.
    redis.cli(&["SET", "rakit:history:s:room.1", "garbage"]);
    publish(a.addr, "room.1", json!(6));
    let v = frames(&mut ws, "room.1", 1).remove(0);
    assert_eq!(v["offset"], 1);
    assert_ne!(v["epoch"], second.as_str());
    redis.cli(&["DEL", "rakit:history:m:room.1"]);
    redis.cli(&["SET", "rakit:history:m:room.1", "garbage"]);
    publish(a.addr, "room.1", json!(7));
    assert_eq!(frames(&mut ws, "room.1", 1)[0]["offset"], 1);
    // Everything flushed: a new epoch again.
    let before = history(a.addr, "room.1", "").json()["epoch"].clone();
    redis.cli(&["FLUSHALL"]);
    let after = history(a.addr, "room.1", "").json();
    assert_eq!(after["offset"], 0);
    assert_ne!(after["epoch"], before);
    // The history API through the node, key and all.
    let r = api::once(
        a.addr,
        &api::get("/api/channels/room.1/history", Some(API_KEY)),
    );
    assert_eq!(r.status, 200);
}
