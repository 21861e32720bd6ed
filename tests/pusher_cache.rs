//! Cache channels (SPEC section 16, its last bullet) over real sockets: pusher-js 8.6.0 and the
//! Node `pusher` 5.3.4 library (tests/pusher/cache.mjs), the Python `pusher` 3.3.4 library
//! (tests/pusher/cache_trigger.py), raw protocol 7 clients and Rakit clients, on one daemon and
//! on two daemons sharing a real `redis-server`. The `cache_miss` webhook is checked with both
//! libraries' validators in tests/pusher_webhooks.rs.
//!
//! The library parts need node with tests/pusher/node_modules and python3 with pusher 3.3.4
//! (scripts/test.sh installs both); without them those parts are skipped, and say so, unless
//! that is not allowed (tests/common/tools.rs). The rest runs either way.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::history::subscribe as rakit_subscribe;
use common::node::{self, run};
use common::pusher::{connect, eventually, recv_event, subscribe, trigger, APP_ID, KEY, SECRET};
use common::redis::Redis;
use common::tools::{have, Tool};
use common::{check, recv_json, send_json, Client, Daemon, WAIT};
use serde_json::{json, Value};

/// `[pusher]` with `cache_ttl` (and `extra` tables after it); commands for anyone.
fn config(cache_ttl: u64, extra: &str) -> String {
    format!(
        "logging_level = \"warn\"\npresence = false\ncommand_policy = \"any\"\n\
         [pusher]\napp_id = \"{APP_ID}\"\nkey = \"{KEY}\"\nsecret = \"{SECRET}\"\n\
         cache_ttl = {cache_ttl}\n{extra}"
    )
}

/// One node of a cluster on `redis` (the default `node_timeout_ms`: on a loaded machine a
/// publication that takes longer to come back from Redis is delivered unstored, not cached).
fn node(redis: &Redis, cache_ttl: u64) -> Daemon {
    let cluster = format!("[cluster]\nredis_url = \"{}\"\n", redis.url());
    Daemon::start(&config(cache_ttl, &cluster), &[])
}

/// A raw Pusher client's subscription to `channel` on `daemon`: what came right after
/// `subscription_succeeded`, as `(event, data)`.
#[track_caller]
fn first_after_subscribe(daemon: &Daemon, channel: &str) -> (String, Value) {
    let (mut ws, socket) = connect(daemon);
    subscribe(&mut ws, &socket, channel);
    let (event, ch, data) = recv_event(&mut ws);
    assert_eq!(ch, json!(channel), "{event} {data}");
    (event, data)
}

/// Waits until `daemon` caches through Redis: a probe event published on it is found.
#[track_caller]
fn cache_up(daemon: &Daemon) {
    eventually("the cache in Redis", || {
        assert_eq!(trigger(daemon, "cache-probe", "up", "1"), 200);
        (first_after_subscribe(daemon, "cache-probe").0 == "up").then_some(())
    });
}

/// Subscribes a raw Pusher client to `channel` on `daemon` until it finds nothing cached (the
/// publication expired); how long after `since` that was.
#[track_caller]
fn until_miss(daemon: &Daemon, channel: &str, since: Instant) -> Duration {
    eventually(&format!("{channel} expired"), || {
        let (event, _) = first_after_subscribe(daemon, channel);
        if event == "pusher:cache_miss" {
            return Some(since.elapsed());
        }
        std::thread::sleep(Duration::from_millis(100));
        None
    })
}

/// Runs tests/pusher/`script` with `args` under python3; its stdout as JSON.
#[track_caller]
fn python(script: &str, args: &[&str]) -> Value {
    let out = Command::new("python3")
        .arg(node::dir().join(script))
        .args(args)
        .output()
        .expect("python3");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{script}: {stderr}");
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{script}: {e}"))
}

/// The frames a Rakit client gets for a subscribe to `channel` without `since`: `subscribed`,
/// then a cached publication if there is one (a fence tells there is none).
#[track_caller]
fn rakit_cached(ws: &mut Client, channel: &str) -> (Value, Option<Value>) {
    let subscribed = rakit_subscribe(ws, channel, None);
    send_json(ws, &json!({"ping": 1}));
    let next = recv_json(ws);
    if next["type"] == "pong" {
        return (subscribed, None);
    }
    assert_eq!(recv_json(ws)["type"], "pong");
    (subscribed, Some(next))
}

#[test]
fn pusher_js_gets_the_last_event_after_subscription_succeeded_or_the_miss() {
    let daemon = Daemon::start(&config(1800, ""), &[]);
    if node::available() {
        let port = daemon.addr.port().to_string();
        let seen = run(
            "cache.mjs",
            &[
                port,
                KEY.into(),
                SECRET.into(),
                APP_ID.into(),
                "single".into(),
            ],
        );
        let succeeded = json!(["pusher:subscription_succeeded"]);
        // Before anything was published: the miss, right after the success.
        assert_eq!(
            seen["miss"],
            json!([succeeded, ["pusher:cache_miss", null]])
        );
        assert_eq!(
            seen["live"],
            json!([["headline", {"n": 1}], ["headline", {"n": 2}]])
        );
        // After: the last event (triggerBatch's), as it was, right after the success.
        assert_eq!(seen["hit"], json!([succeeded, ["headline", {"n": 2}]]));
        assert_eq!(seen["private"], json!([succeeded, ["state", {"rev": 9}]]));
        assert_eq!(seen["forged"], json!([["pusher:subscription_error", 401]]));
        assert_eq!(
            seen["presence_first"].as_array().unwrap()[..2],
            [succeeded.clone(), json!(["pusher:cache_miss", null])]
        );
        // A member's client event, with its sender's user_id.
        assert_eq!(
            seen["presence"],
            json!([succeeded, ["client-typing", {"typing": true}, "1"]])
        );
        assert_eq!(seen["plain"], json!([succeeded, ["fence", {}]]));
    }
    // Raw clients, whatever the tools: the same without the libraries.
    assert_eq!(trigger(&daemon, "cache-raw", "e", r#"{"n":1}"#), 200);
    assert_eq!(trigger(&daemon, "cache-raw", "e", r#"{"n":2}"#), 200);
    assert_eq!(
        first_after_subscribe(&daemon, "cache-raw"),
        ("e".to_owned(), json!({"n": 2}))
    );
    assert_eq!(
        first_after_subscribe(&daemon, "cache-none").0,
        "pusher:cache_miss"
    );
}

/// A Rakit channel message and `broadcast_to_channel` are events of the channel too; a Rakit
/// subscriber without `since` gets the cached one after `subscribed` (at the offset before
/// it), as its channel frame.
#[test]
fn every_path_fills_the_cache_and_rakit_subscribers_get_it_too() {
    let daemon = Daemon::start(&config(1800, ""), &[]);
    let (mut rakit_a, welcome) = daemon.client();
    let id = welcome["client_id"].as_str().unwrap().to_owned();
    send_json(
        &mut rakit_a,
        &json!({"event": "message", "channel": "cache-mix", "data": {"from": "rakit"}}),
    );
    // Handled in order: a fence on the same connection.
    send_json(&mut rakit_a, &json!({"ping": 1}));
    assert_eq!(recv_json(&mut rakit_a)["type"], "pong");
    assert_eq!(
        first_after_subscribe(&daemon, "cache-mix"),
        ("message".to_owned(), json!({"from": "rakit"}))
    );
    send_json(
        &mut rakit_a,
        &json!({"command": "broadcast_to_channel", "channel": "cache-mix", "message": "cmd"}),
    );
    assert_eq!(recv_json(&mut rakit_a)["type"], "ack");
    assert_eq!(
        first_after_subscribe(&daemon, "cache-mix"),
        ("message".to_owned(), json!("cmd"))
    );
    // A Rakit subscriber: subscribed at 1, then publication 2 (the command's).
    let (mut rakit_b, _) = daemon.client();
    let (subscribed, cached) = rakit_cached(&mut rakit_b, "cache-mix");
    let epoch = subscribed["epoch"].clone();
    assert!(
        epoch.as_str().is_some_and(|e| !e.is_empty()),
        "{subscribed}"
    );
    assert_eq!(
        subscribed,
        json!({"type": "subscribed", "channel": "cache-mix", "offset": 1, "epoch": epoch})
    );
    assert_eq!(
        cached,
        Some(
            json!({"type": "channel", "channel": "cache-mix", "data": "cmd", "offset": 2, "epoch": epoch})
        )
    );
    // Live ones follow with their offsets; the Rakit sender's id is kept.
    send_json(
        &mut rakit_a,
        &json!({"event": "message", "channel": "cache-mix", "data": 3}),
    );
    assert_eq!(
        recv_json(&mut rakit_b),
        json!({"type": "channel", "channel": "cache-mix", "client_id": id, "data": 3, "offset": 3, "epoch": epoch})
    );
    // Nothing cached: subscribed at 0 and nothing more.
    let (subscribed, cached) = rakit_cached(&mut rakit_b, "cache-empty");
    assert_eq!((subscribed["offset"].clone(), cached), (json!(0), None));
}

#[test]
fn the_cached_event_expires_after_cache_ttl() {
    let daemon = Daemon::start(&config(2, ""), &[]);
    let t0 = Instant::now();
    assert_eq!(trigger(&daemon, "cache-short", "e", "1"), 200);
    assert_eq!(first_after_subscribe(&daemon, "cache-short").0, "e");
    let after = until_miss(&daemon, "cache-short", t0);
    assert!(after >= Duration::from_secs(2), "expired after {after:?}");
}

/// In a cluster the cached event expires by Redis's clock, `cache_ttl` after it was stored.
#[test]
fn in_a_cluster_it_expires_after_cache_ttl() {
    let _serial = common::serial();
    let redis = Redis::start();
    let a = node(&redis, 1);
    cache_up(&a);
    let t0 = Instant::now();
    assert_eq!(trigger(&a, "cache-short", "e", "1"), 200);
    eventually("stored", || {
        let newest = redis.cli(&["HGET", "rakit:history:m:cache-short", "s"]);
        (newest == "1").then_some(())
    });
    let after = until_miss(&a, "cache-short", t0);
    assert!(after >= Duration::from_secs(1), "expired after {after:?}");
    // Its position stays (a day), so a Rakit subscriber's offsets go on.
    assert_eq!(
        redis.cli(&["HGET", "rakit:history:m:cache-short", "s"]),
        "1"
    );
}

/// Published on node A (the Python library), found on node B (pusher-js, raw and Rakit
/// clients); Redis out of reach: a miss.
#[test]
fn cluster_wide_through_redis() {
    let _serial = common::serial();
    let redis = Redis::start();
    let a = node(&redis, 600);
    let b = node(&redis, 600);
    // Both read through Redis (a cache read is answered from it, not as a miss).
    cache_up(&a);
    cache_up(&b);
    assert_eq!(first_after_subscribe(&b, "cache-c1").0, "pusher:cache_miss");
    // A Pusher reader leaves nothing in Redis.
    assert_eq!(redis.cli(&["EXISTS", "rakit:history:m:cache-c1"]), "0");
    let channels = ["cache-c1", "private-cache-c2", "presence-cache-c3"];
    if have(Tool::PusherPython) {
        let port = a.addr.port().to_string();
        let mut args = vec![port.as_str(), APP_ID, KEY, SECRET];
        args.extend(channels);
        let out = python("cache_trigger.py", &args);
        assert_eq!(out["batch"], json!({}), "{out}");
    } else {
        for n in [1, 101] {
            for (i, channel) in channels.iter().enumerate() {
                let data = json!({"n": n + i}).to_string();
                assert_eq!(trigger(&a, channel, "py", &data), 200);
            }
        }
    }
    // The API answered when A took them: wait until Redis has stored them (two each).
    for channel in channels {
        eventually(&format!("{channel} stored"), || {
            let newest = redis.cli(&["HGET", &format!("rakit:history:m:{channel}"), "s"]);
            (newest == "2").then_some(())
        });
    }
    if node::available() {
        let port = b.addr.port().to_string();
        let mut args = vec![
            port,
            KEY.into(),
            SECRET.into(),
            APP_ID.into(),
            "first".into(),
        ];
        args.extend(channels.map(String::from));
        let seen = run("cache.mjs", &args);
        assert_eq!(
            seen,
            json!({
                "cache-c1": ["py", {"n": 101}],
                "private-cache-c2": ["py", {"n": 102}],
                "presence-cache-c3": ["py", {"n": 103}],
            })
        );
    }
    assert_eq!(
        first_after_subscribe(&b, "cache-c1"),
        ("py".to_owned(), json!({"n": 101}))
    );
    assert_eq!(redis.cli(&["EXISTS", "rakit:history:m:cache-c1"]), "1");
    let (mut r, _) = b.client();
    let (subscribed, cached) = rakit_cached(&mut r, "cache-c1");
    assert_eq!(subscribed["offset"], 1, "{subscribed}");
    let cached = cached.expect("the cached publication");
    assert_eq!(
        (
            cached["event"].clone(),
            cached["data"].clone(),
            cached["offset"].clone()
        ),
        (json!("py"), json!({"n": 101}), json!(2))
    );
    assert_eq!(cached["epoch"], subscribed["epoch"]);
    // Redis gone: a subscriber gets the miss (within node_timeout_ms at most).
    assert_eq!(trigger(&a, "cache-c4", "e", "1"), 200);
    eventually("cache-c4 cached", || {
        (first_after_subscribe(&b, "cache-c4").0 == "e").then_some(())
    });
    drop(redis);
    let t = Instant::now();
    assert_eq!(first_after_subscribe(&b, "cache-c4").0, "pusher:cache_miss");
    assert!(t.elapsed() < WAIT, "{:?}", t.elapsed());
}

#[test]
fn check_shows_cache_ttl_and_refuses_a_bad_one() {
    let shown = check::shown(&config(90, ""));
    assert!(shown.contains("cache_ttl = 90\n"), "{shown}");
    for bad in [0, 86_401] {
        check::refused_naming(&config(bad, ""), "pusher.cache_ttl");
    }
}
