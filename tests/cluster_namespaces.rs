//! Channel presence across a cluster (SPEC sections 11 and 15.3), with a real `redis-server`
//! and two real daemons: a subscriber on another node is listed and announced (`join`/`leave`
//! within a second), the API of either node lists both, and the subscribers of a node killed
//! with SIGKILL leave within `node_timeout_ms` plus a second. Token rules hold on every node.
//!
//! One test at a time (a lock), as in tests/cluster.rs: the timing bounds of the SPEC are checked.

mod common;

use std::collections::BTreeSet;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use common::api::{get, once};
use common::namespaces::{ask, assert_forbidden, channel_token, subscribe, user_client};
use common::redis::Redis;
use common::{try_recv_json, Client, Daemon, SLACK};
use serde_json::{json, Value};

const NODE_TIMEOUT_MS: u64 = 1000;
const API_KEY: &str = "cluster-namespaces-api-key-0123";
const SECRET: &str = "cluster-namespaces-secret";

fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

fn node(redis: &Redis) -> Daemon {
    Daemon::start(
        &format!(
            "logging_level = \"warn\"\npresence_interval_ms = 50\n\
             [session]\nsecret = \"{SECRET}\"\n[api]\nkey = \"{API_KEY}\"\n\
             [cluster]\nredis_url = \"{}\"\nnode_timeout_ms = {NODE_TIMEOUT_MS}\n\
             [[namespaces]]\nprefix = \"room.\"\npresence = true\n\
             [[namespaces]]\nprefix = \"order.\"\nsubscribe = \"token\"\npresence = true\n",
            redis.url()
        ),
        &[],
    )
}

fn id(welcome: &Value) -> String {
    welcome["client_id"].as_str().unwrap().to_owned()
}

/// Reads until global presence lists exactly `ids` (the nodes see each other's clients).
#[track_caller]
fn sees(ws: &mut Client, ids: &[&str]) {
    let want: BTreeSet<&str> = ids.iter().copied().collect();
    let deadline = Instant::now() + common::WAIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let v = try_recv_json(ws, left, |v| v["type"] != "presence").expect("presence converges");
        let got: BTreeSet<&str> = v["users"]
            .as_array()
            .unwrap()
            .iter()
            .map(|u| u["id"].as_str().unwrap())
            .collect();
        if got == want {
            return;
        }
    }
}

/// The next message that is not global presence, within `within`.
#[track_caller]
fn next(ws: &mut Client, within: Duration) -> Value {
    try_recv_json(ws, within, |v| v["type"] == "presence").expect("a message in time")
}

/// Asks `ws` for the presence of `channel` until its `count` is `n`; returns that answer.
#[track_caller]
fn presence_count_is(ws: &mut Client, channel: &str, n: u64) -> Value {
    let deadline = Instant::now() + common::WAIT;
    loop {
        let v = ask(ws, &json!({"event":"presence","channel":channel}));
        assert_eq!(v["type"], "channel_presence", "{v}");
        if v["count"] == n {
            return v;
        }
        assert!(Instant::now() < deadline, "count never {n}: {v}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn clients(list: &Value) -> Vec<&str> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|m| m["client_id"].as_str().unwrap())
        .collect()
}

#[test]
fn channel_presence_spans_the_nodes_and_a_killed_nodes_subscribers_leave() {
    let _serial = serial();
    let redis = Redis::start();
    let a = node(&redis);
    let mut b = node(&redis);
    let (mut a1, wa) = a.client();
    let (mut b1, wb) = user_client(&b, SECRET, "7", "Bo");
    let (mut b2, wb2) = b.client();
    let (ia, ib, ib2) = (id(&wa), id(&wb), id(&wb2));
    for ws in [&mut a1, &mut b1, &mut b2] {
        sees(ws, &[&ia, &ib, &ib2]);
    }
    let v = ask(&mut a1, &subscribe("room.1", None));
    assert_eq!(clients(&v["presence"]), [ia.as_str()]);
    // B learns of it, then its subscriber joins: listed after, and announced on A in time.
    presence_count_is(&mut b1, "room.1", 1);
    let v = ask(&mut b1, &subscribe("room.1", None));
    let subscribed = Instant::now();
    let bo = json!({"id":"7","name":"Bo","email":null});
    assert_eq!(
        v["presence"],
        json!([{"client_id":ia,"user":null},{"client_id":ib,"user":bo}])
    );
    assert_eq!(
        next(&mut a1, Duration::from_secs(1) + SLACK),
        json!({"type":"join","channel":"room.1","client_id":ib,"user":bo})
    );
    let took = subscribed.elapsed();
    assert!(took < Duration::from_secs(1), "join after {took:?}");
    // A join and a leave of another subscriber of B, in order.
    ask(&mut b2, &subscribe("room.1", None));
    ask(&mut b2, &json!({"event":"unsubscribe","channel":"room.1"}));
    for kind in ["join", "leave"] {
        let v = next(&mut a1, Duration::from_secs(1) + SLACK);
        assert_eq!(
            (&v["type"], &v["client_id"]),
            (&json!(kind), &json!(ib2)),
            "{v}"
        );
    }
    // b1 heard b2 too (a local subscriber).
    assert_eq!(next(&mut b1, common::WAIT)["type"], "join");
    assert_eq!(next(&mut b1, common::WAIT)["type"], "leave");
    // Either node's API lists both, in its order.
    for (daemon, order) in [(&a, [&ia, &ib]), (&b, [&ia, &ib])] {
        let r = once(daemon.addr, &get("/api/channels/room.1", Some(API_KEY)));
        let view = r.json();
        assert_eq!(view["subscribers"], 2, "{view}");
        assert_eq!(
            clients(&view["presence"]),
            order.map(String::as_str),
            "{view}"
        );
    }
    // B dies without a word: its subscriber leaves A's channel in time.
    b.child.kill().unwrap();
    let _ = b.child.wait();
    let killed = Instant::now();
    let bound = Duration::from_millis(NODE_TIMEOUT_MS) + Duration::from_secs(1);
    let v = next(&mut a1, bound + SLACK);
    assert_eq!(
        v,
        json!({"type":"leave","channel":"room.1","client_id":ib,"user":bo})
    );
    let took = killed.elapsed();
    assert!(
        took < bound + Duration::from_millis(500),
        "leave after {took:?}"
    );
    let v = presence_count_is(&mut a1, "room.1", 1);
    assert_eq!(clients(&v["clients"]), [ia.as_str()]);
}

#[test]
fn token_rules_hold_on_every_node_and_tokens_work_on_any() {
    let _serial = serial();
    let redis = Redis::start();
    let a = node(&redis);
    let b = node(&redis);
    let (mut a1, wa) = a.client();
    let (mut b1, wb) = b.client();
    sees(&mut a1, &[&id(&wa), &id(&wb)]);
    // A token for a1's connection is no token for b1's, on either node.
    let token = channel_token(SECRET, "order.5", ("--client", &id(&wa)), 60);
    assert_forbidden(
        &ask(&mut b1, &subscribe("order.5", Some(&token))),
        "order.5",
    );
    let v = ask(&mut a1, &subscribe("order.5", Some(&token)));
    assert_eq!(v["type"], "subscribed", "{v}");
    // A presence query on B needs b1's own token: and then lists a1.
    let query = json!({"event":"presence","channel":"order.5"});
    assert_forbidden(&ask(&mut b1, &query), "order.5");
    let own = channel_token(SECRET, "order.5", ("--client", &id(&wb)), 60);
    let mut with = query.clone();
    with["token"] = json!(own);
    let deadline = Instant::now() + common::WAIT;
    loop {
        let v = ask(&mut b1, &with);
        if v["count"] == 1 {
            assert_eq!(clients(&v["clients"]), [id(&wa).as_str()]);
            break;
        }
        assert!(Instant::now() < deadline, "{v}");
        std::thread::sleep(Duration::from_millis(20));
    }
}
