//! Scale-out over Redis (SPEC section 11) with a real `redis-server` (on a
//! Unix socket in a scratch directory) and three real daemons on port 0.
//!
//! The tests of this file run one at a time (a lock): each starts four
//! processes, and the timing bounds of the SPEC are checked, which a machine
//! busy with four clusters at once would blur.

mod common;

use std::collections::BTreeSet;
use std::process::Command;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use common::abuse::LIMITS_OFF;
use common::msg::{recv_close, until_pong};
use common::redis::Redis;
use common::{recv_json, send_json, Client, Daemon, SLACK};
use serde_json::{json, Value};

const NODE_TIMEOUT_MS: u64 = 1000;
const PRESENCE_MS: u64 = 100;
const API_KEY: &str = "cluster-test-api-key-0123";

fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

fn config(redis: &Redis, extra: &str) -> String {
    format!(
        "logging_level = \"warn\"\npresence_interval_ms = {PRESENCE_MS}\ncommand_policy = \"any\"\n\
         [api]\nkey = \"{API_KEY}\"\n\
         [cluster]\nredis_url = \"{}\"\nnode_timeout_ms = {NODE_TIMEOUT_MS}\n{extra}",
        redis.url()
    )
}

fn node(redis: &Redis) -> Daemon {
    Daemon::start(&config(redis, ""), &[])
}

fn id_of(welcome: &Value) -> String {
    welcome["client_id"].as_str().unwrap().to_owned()
}

fn ids(presence: &Value) -> Vec<String> {
    presence["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["id"].as_str().unwrap().to_owned())
        .collect()
}

/// The next message, or `None` after `wait` of silence.
fn try_recv(ws: &mut Client, wait: Duration) -> Option<Value> {
    common::try_recv_json(ws, wait, |_| false)
}

/// Reads presence messages until one lists exactly `expected` (as a set);
/// returns it. Fails after `within`.
#[track_caller]
fn presence_is(ws: &mut Client, expected: &BTreeSet<String>, within: Duration) -> Value {
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "presence never became {expected:?}");
        if let Some(v) = try_recv(ws, left) {
            if v["type"] == "presence" && ids(&v).into_iter().collect::<BTreeSet<_>>() == *expected
            {
                return v;
            }
        }
    }
}

/// Reads until `pred` matches, returning everything before it.
#[track_caller]
fn until(ws: &mut Client, pred: impl Fn(&Value) -> bool) -> Vec<Value> {
    let mut before = Vec::new();
    loop {
        let v = recv_json(ws);
        if pred(&v) {
            return before;
        }
        before.push(v);
    }
}

/// Reads until `pred` matches and returns that message.
#[track_caller]
fn first(ws: &mut Client, pred: impl Fn(&Value) -> bool) -> Value {
    loop {
        let v = recv_json(ws);
        if pred(&v) {
            return v;
        }
    }
}

fn is_type(ty: &str) -> impl Fn(&Value) -> bool + '_ {
    move |v| v["type"] == ty
}

fn is_message(text: &str) -> impl Fn(&Value) -> bool + '_ {
    move |v| v["type"] == "message" && v["message"] == text
}

/// Without presence noise: the messages of `ws` that are not presence.
fn non_presence(msgs: Vec<Value>) -> Vec<Value> {
    msgs.into_iter()
        .filter(|v| v["type"] != "presence")
        .collect()
}

/// Three nodes, one client on each, presence converged everywhere.
struct Three {
    redis: Redis,
    nodes: Vec<Daemon>,
    clients: Vec<Client>,
    ids: Vec<String>,
}

impl Three {
    fn start() -> Three {
        Three::start_with("")
    }

    /// Three nodes whose config ends with `extra`.
    fn start_with(extra: &str) -> Three {
        let redis = Redis::start();
        let nodes: Vec<Daemon> = (0..3)
            .map(|_| Daemon::start(&config(&redis, extra), &[]))
            .collect();
        let mut clients = Vec::new();
        let mut ids = Vec::new();
        for n in &nodes {
            let (ws, welcome) = n.client();
            ids.push(id_of(&welcome));
            clients.push(ws);
        }
        let mut three = Three {
            redis,
            nodes,
            clients,
            ids,
        };
        three.converged(Duration::from_secs(10));
        three
    }

    /// Waits until every client's presence lists every client.
    fn converged(&mut self, within: Duration) -> Vec<Value> {
        let all: BTreeSet<String> = self.ids.iter().cloned().collect();
        self.clients
            .iter_mut()
            .map(|ws| presence_is(ws, &all, within))
            .collect()
    }
}

#[test]
fn broadcast_reaches_every_client_on_every_node_exactly_once() {
    let _serial = serial();
    let mut c = Three::start();
    let (mut a2, _) = c.nodes[0].client();
    send_json(&mut c.clients[0], &json!({"message": "hello"}));
    send_json(&mut c.clients[0], &json!({"message": "end"}));
    let sender = c.ids[0].clone();
    for ws in c.clients.iter_mut().chain([&mut a2]) {
        let before = non_presence(until(ws, is_message("end")));
        assert_eq!(
            before,
            [json!({"type":"message","client_id":sender,"message":"hello"})]
        );
        // And nothing after it: no echo from Redis.
        let later = non_presence(until_pong(ws));
        assert!(later.is_empty(), "{later:?}");
    }
    // A second look after a heartbeat or two: still nothing more.
    std::thread::sleep(Duration::from_millis(500));
    for ws in &mut c.clients {
        let later = non_presence(until_pong(ws));
        assert!(later.is_empty(), "{later:?}");
    }
}

#[test]
fn a_thousand_messages_from_one_sender_arrive_in_order_everywhere() {
    let _serial = serial();
    // A thousand broadcasts in a row from one client, on purpose: SPEC 17's buckets off.
    let mut c = Three::start_with(LIMITS_OFF);
    for i in 0..1000 {
        send_json(&mut c.clients[0], &json!({"message": i}));
    }
    for ws in &mut c.clients {
        let mut next = 0;
        while next < 1000 {
            let v = recv_json(ws);
            if v["type"] == "message" {
                assert_eq!(v["message"], next, "out of order or a gap");
                next += 1;
            }
        }
    }
}

#[test]
fn channel_messages_reach_subscribers_on_other_nodes_only() {
    let _serial = serial();
    let mut c = Three::start();
    for i in [1, 2] {
        send_json(
            &mut c.clients[i],
            &json!({"event":"subscribe","channel":"room"}),
        );
        until(&mut c.clients[i], |v| v["type"] == "subscribed");
    }
    let publish = |ws: &mut Client, data: &str| {
        send_json(ws, &json!({"event":"message","channel":"room","data":data}));
        send_json(ws, &json!({"message": format!("after-{data}")}));
    };
    publish(&mut c.clients[0], "one");
    let sender = c.ids[0].clone();
    for i in [1, 2] {
        let got = non_presence(until(&mut c.clients[i], is_message("after-one")));
        assert_eq!(
            got,
            [json!({"type":"channel","channel":"room","client_id":sender,"data":"one"})]
        );
    }
    let got = non_presence(until(&mut c.clients[0], is_message("after-one")));
    assert!(got.is_empty(), "the publisher is not subscribed: {got:?}");
    // B unsubscribes: only C still gets the channel.
    send_json(
        &mut c.clients[1],
        &json!({"event":"unsubscribe","channel":"room"}),
    );
    until(&mut c.clients[1], |v| v["type"] == "unsubscribed");
    publish(&mut c.clients[0], "two");
    let got = non_presence(until(&mut c.clients[1], is_message("after-two")));
    assert!(got.is_empty(), "unsubscribed: {got:?}");
    let got = non_presence(until(&mut c.clients[2], is_message("after-two")));
    assert_eq!(got.len(), 1, "{got:?}");
}

#[test]
fn private_messages_reach_the_target_on_its_node_and_stale_ids_are_unknown() {
    let _serial = serial();
    let mut c = Three::start();
    let target = c.ids[2].clone();
    send_json(&mut c.clients[0], &json!({"to": target, "message": "psst"}));
    send_json(&mut c.clients[0], &json!({"message": "mark"}));
    let sender = c.ids[0].clone();
    let got = non_presence(until(&mut c.clients[2], is_message("mark")));
    assert_eq!(
        got,
        [json!({"type":"private","client_id":sender,"message":"psst"})]
    );
    for i in [0, 1] {
        let got = non_presence(until(&mut c.clients[i], is_message("mark")));
        assert!(got.is_empty(), "client {i}: {got:?}");
    }
    // The target leaves; once presence says so, its id is unknown everywhere.
    drop(c.clients.remove(2));
    let rest: BTreeSet<String> = c.ids[..2].iter().cloned().collect();
    presence_is(&mut c.clients[0], &rest, Duration::from_secs(5));
    send_json(&mut c.clients[0], &json!({"to": target, "message": "late"}));
    let v = first(&mut c.clients[0], is_type("error"));
    assert_eq!(v["code"], "unknown_client", "{v}");
    // A never-seen id too.
    send_json(
        &mut c.clients[0],
        &json!({"to": "ZZZZZZZZ", "message": "x"}),
    );
    let v = first(&mut c.clients[0], is_type("error"));
    assert_eq!(v["code"], "unknown_client", "{v}");
}

#[test]
fn disconnect_closes_a_client_on_another_node_then_acks() {
    let _serial = serial();
    let mut c = Three::start();
    let target = c.ids[2].clone();
    send_json(
        &mut c.clients[0],
        &json!({"command":"disconnect","client_id": target}),
    );
    let (code, reason) = recv_close(&mut c.clients[2]);
    assert_eq!((code, reason.as_str()), (4000, "disconnected by server"));
    let v = first(&mut c.clients[0], |v| {
        v["type"] == "ack" || v["type"] == "error"
    });
    assert_eq!(v, json!({"type":"ack","command":"disconnect"}));
    // Now gone from the cluster: unknown_client, from any node.
    let rest: BTreeSet<String> = c.ids[..2].iter().cloned().collect();
    presence_is(&mut c.clients[1], &rest, Duration::from_secs(5));
    send_json(
        &mut c.clients[1],
        &json!({"command":"disconnect","client_id": target}),
    );
    let v = first(&mut c.clients[1], |v| {
        v["type"] == "error" || v["type"] == "ack"
    });
    assert_eq!(v["code"], "unknown_client", "{v}");
}

fn api(daemon: &Daemon, method: &str, path: &str, body: &str) -> (u16, Value) {
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {API_KEY}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let response = common::http(daemon, request.as_bytes());
    let status = common::status_of(&response);
    let body = response.split("\r\n\r\n").nth(1).unwrap_or("");
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

#[test]
fn api_commands_and_presence_act_cluster_wide() {
    let _serial = serial();
    let mut c = Three::start();
    let (status, body) = api(
        &c.nodes[1],
        "POST",
        "/api/commands",
        r#"{"command":"broadcast","message":"from-api"}"#,
    );
    assert_eq!((status, body), (200, json!({"ok": true})));
    for ws in &mut c.clients {
        let v = first(ws, is_type("message"));
        assert_eq!(v, json!({"type":"message","message":"from-api"}));
    }
    let body = format!(
        r#"{{"command":"private_message","to":"{}","message":"api-private"}}"#,
        c.ids[2]
    );
    let (status, _) = api(&c.nodes[1], "POST", "/api/commands", &body);
    assert_eq!(status, 200);
    let v = first(&mut c.clients[2], is_type("private"));
    assert_eq!(v, json!({"type":"private","message":"api-private"}));
    let (status, body) = api(
        &c.nodes[1],
        "POST",
        "/api/commands",
        r#"{"command":"private_message","to":"ZZZZZZZZ","message":1}"#,
    );
    assert_eq!((status, &body["code"]), (404, &json!("unknown_client")));
    let (status, presence) = api(&c.nodes[1], "GET", "/api/presence", "");
    assert_eq!(status, 200);
    assert_eq!(presence["count"], 3);
    let listed: BTreeSet<String> = ids(&presence).into_iter().collect();
    assert_eq!(listed, c.ids.iter().cloned().collect());
    // disconnect through the API, for a client on another node.
    let body = format!(r#"{{"command":"disconnect","client_id":"{}"}}"#, c.ids[0]);
    let (status, _) = api(&c.nodes[1], "POST", "/api/commands", &body);
    assert_eq!(status, 200);
    assert_eq!(recv_close(&mut c.clients[0]).0, 4000);
}

#[test]
fn presence_converges_to_the_same_list_count_and_order_everywhere() {
    let _serial = serial();
    let mut c = Three::start();
    // More clients, on every node, then one leaves.
    let mut extra = Vec::new();
    for i in [2, 0, 1, 1] {
        let (ws, welcome) = c.nodes[i].client();
        c.ids.push(id_of(&welcome));
        extra.push(ws);
    }
    let started = Instant::now();
    let bound = Duration::from_millis(PRESENCE_MS) + Duration::from_secs(1) + SLACK;
    let seen = c.converged(bound);
    assert!(started.elapsed() < bound);
    let first = &seen[0];
    assert_eq!(first["count"], 7);
    for p in &seen {
        assert_eq!(p, first, "every node shows the same presence");
    }
    // Connection order: connected_at never decreases.
    let times: Vec<u64> = first["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["connected_at"].as_u64().unwrap())
        .collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "{times:?}");
    drop(extra.pop());
    c.ids.pop();
    let all: BTreeSet<String> = c.ids.iter().cloned().collect();
    for ws in &mut c.clients {
        presence_is(ws, &all, bound);
    }
}

#[test]
fn a_killed_node_vanishes_within_the_timeout_and_its_ids_become_unknown() {
    let _serial = serial();
    let mut c = Three::start();
    let mut b = c.nodes.remove(1);
    c.clients.remove(1);
    let b_id = c.ids.remove(1);
    b.child.kill().unwrap(); // SIGKILL: no goodbye
    let _ = b.child.wait();
    let killed = Instant::now();
    let rest: BTreeSet<String> = c.ids.iter().cloned().collect();
    let bound = Duration::from_millis(NODE_TIMEOUT_MS) + Duration::from_secs(1);
    for ws in &mut c.clients {
        presence_is(ws, &rest, bound + SLACK);
    }
    let took = killed.elapsed();
    assert!(took < bound + Duration::from_millis(500), "took {took:?}");
    // Its presence hash expires by itself (key-level TTL).
    let deadline = Instant::now() + bound + SLACK;
    while c.redis.cli(&["KEYS", "rakit:presence:*"]).lines().count() != 2 {
        assert!(Instant::now() < deadline, "B's presence hash outlived it");
        std::thread::sleep(Duration::from_millis(50));
    }
    send_json(&mut c.clients[0], &json!({"to": b_id, "message": "x"}));
    let v = first(&mut c.clients[0], is_type("error"));
    assert_eq!(v["code"], "unknown_client", "{v}");
}

#[test]
fn a_node_stopped_with_sigterm_leaves_at_once_and_a_restart_sees_everyone() {
    let _serial = serial();
    let mut c = Three::start();
    let mut b = c.nodes.remove(1);
    c.clients.remove(1);
    c.ids.remove(1);
    let stopped = Instant::now();
    Command::new("kill")
        .args(["-TERM", &b.child.id().to_string()])
        .status()
        .unwrap();
    let rest: BTreeSet<String> = c.ids.iter().cloned().collect();
    for ws in &mut c.clients {
        presence_is(ws, &rest, Duration::from_secs(5));
    }
    let took = stopped.elapsed();
    assert!(
        took < Duration::from_millis(NODE_TIMEOUT_MS),
        "left only after {took:?}, as if it had died"
    );
    let _ = b.child.wait();
    // A new B sees A's and C's users, and they see it.
    let b2 = node(&c.redis);
    let (ws, welcome) = b2.client();
    c.ids.push(id_of(&welcome));
    c.clients.push(ws);
    c.nodes.push(b2);
    c.converged(Duration::from_secs(5));
}

#[test]
fn redis_down_and_back_local_delivery_throughout_then_recovery() {
    let _serial = serial();
    let mut c = Three::start();
    let (mut a2, welcome) = c.nodes[0].client();
    c.ids.push(id_of(&welcome));
    c.redis.stop();
    // Local delivery works while Redis is down.
    for i in 0..5 {
        let text = format!("down-{i}");
        send_json(&mut c.clients[0], &json!({"message": text}));
        first(&mut a2, is_message(&text));
        std::thread::sleep(Duration::from_millis(100));
    }
    let text = common::http(
        &c.nodes[0],
        b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert!(text.contains("rakit_cluster_up 0"), "{text}");
    c.redis.spawn();
    // Presence converges again and cross-node delivery resumes.
    c.converged(Duration::from_secs(15));
    // Probe until both other nodes hear A again (messages sent before A's
    // link is back are dropped: at most once).
    let started = Instant::now();
    let mut sent = 0;
    let mut heard = [false; 3];
    while !(heard[1] && heard[2]) {
        assert!(started.elapsed() < Duration::from_secs(15), "no recovery");
        sent += 1;
        send_json(
            &mut c.clients[0],
            &json!({"message": format!("back-{sent}")}),
        );
        for i in [1, 2] {
            while let Some(v) = try_recv(&mut c.clients[i], Duration::from_millis(100)) {
                heard[i] |= v["type"] == "message";
            }
        }
    }
    send_json(&mut c.clients[0], &json!({"message": "final"}));
    for ws in c.clients.iter_mut().skip(1) {
        let before = non_presence(until(ws, is_message("final")));
        let texts: Vec<&str> = before
            .iter()
            .filter_map(|v| v["message"].as_str())
            .collect();
        let unique: BTreeSet<&str> = texts.iter().copied().collect();
        assert_eq!(unique.len(), texts.len(), "delivered twice: {texts:?}");
        assert!(
            texts.iter().all(|m| !m.starts_with("down-")),
            "messages from the outage must not arrive late: {texts:?}"
        );
    }
    let text = common::http(
        &c.nodes[0],
        b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert!(text.contains("rakit_cluster_up 1"), "{text}");
    assert!(
        text.contains("rakit_cluster_messages_dropped_total{direction=\"out\"}")
            && !text.contains("rakit_cluster_messages_dropped_total{direction=\"out\"} 0"),
        "the outage's messages are counted: {text}"
    );
    // The outage is logged once per node, not once per retry.
    let outage = c.nodes[0]
        .log_lines()
        .iter()
        .filter(|l| l.contains("Redis unreachable"))
        .count();
    assert_eq!(outage, 1, "{:#?}", c.nodes[0].log_lines());
}

#[test]
fn a_killed_subscription_is_rebuilt_and_delivery_resumes() {
    let _serial = serial();
    let mut c = Three::start();
    let killed = c.redis.cli(&["CLIENT", "KILL", "TYPE", "pubsub"]);
    assert!(killed.parse::<u32>().unwrap_or(0) >= 3, "{killed}");
    let started = Instant::now();
    let heartbeat = Duration::from_millis(NODE_TIMEOUT_MS / 3);
    // Probe until B hears A again.
    let mut n = 0;
    loop {
        n += 1;
        let text = format!("probe-{n}");
        send_json(&mut c.clients[0], &json!({"message": text}));
        let mut heard = false;
        while let Some(v) = try_recv(&mut c.clients[1], Duration::from_millis(100)) {
            if v["type"] == "message" {
                heard = true;
            }
        }
        if heard {
            break;
        }
        assert!(
            started.elapsed() < 2 * heartbeat + SLACK,
            "no delivery after the subscription was killed"
        );
    }
}

#[test]
fn two_daemons_share_a_port_with_reuse_port_and_see_each_other() {
    let _serial = serial();
    let redis = Redis::start();
    // Logging connects (info) tells which daemon took which client.
    let logged = |c: String| c.replace("logging_level = \"warn\"", "logging_level = \"info\"");
    let first = Daemon::start(&logged(config(&redis, "reuse_port = true\n")), &[]);
    let second = Daemon::start_on(
        first.addr.port(),
        &logged(config(&redis, "reuse_port = true\n")),
        &[],
    );
    assert_eq!(first.addr, second.addr);
    // Connections spread over both; each sees all in presence.
    let mut clients = Vec::new();
    let mut ids = BTreeSet::new();
    for _ in 0..12 {
        let (ws, welcome) = first.client();
        ids.insert(id_of(&welcome));
        clients.push(ws);
    }
    for ws in &mut clients {
        presence_is(ws, &ids, Duration::from_secs(5));
    }
    let took = |d: &Daemon| {
        let lines = d.log_lines();
        ids.iter()
            .filter(|id| {
                lines
                    .iter()
                    .any(|l| l.contains(id.as_str()) && l.contains("connect"))
            })
            .count()
    };
    let (a, b) = (took(&first), took(&second));
    assert_eq!(a + b, 12, "each client on exactly one daemon: {a} + {b}");
    // The kernel hashes connections over both: all 12 on one has odds of 2^-11.
    assert!(
        a > 0 && b > 0,
        "one daemon took every connection: {a} / {b}"
    );
}
