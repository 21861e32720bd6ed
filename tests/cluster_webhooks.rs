//! Pusher-format webhooks across a cluster (docs/pusher-webhooks.md "In a cluster"), with a real
//! `redis-server`, two real daemons posting to one receiver, and raw protocol 7 clients: each
//! channel transition is posted once in the cluster, whatever node caused it (two last
//! subscribers leaving two nodes at the same moment), and a node killed with -9 has its members
//! removed by the survivor within `node_timeout_ms` and a second.
//!
//! The tests of this file run one at a time (a lock), as in tests/cluster.rs: a timing bound is
//! checked.

mod common;

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use common::pusher::{
    connect, join, subscribe, subscribers_are, API_KEY, APP_ID, KEY, NODE_TIMEOUT_MS, SECRET,
};
use common::receiver::{Endpoint, Mode};
use common::redis::Redis;
use common::{serial, Daemon};
use serde_json::Value;

/// A node on `redis` posting Pusher-format webhooks to `hooks`.
fn node(redis: &Redis, hooks: &Endpoint) -> Daemon {
    Daemon::start(
        &format!(
            "logging_level = \"warn\"\n\
             [api]\nkey = \"{API_KEY}\"\n\
             [cluster]\nredis_url = \"{}\"\nnode_timeout_ms = {NODE_TIMEOUT_MS}\n\
             [pusher]\napp_id = \"{APP_ID}\"\nkey = \"{KEY}\"\nsecret = \"{SECRET}\"\n\
             [webhooks]\nurl = \"{}\"\nformat = \"pusher\"\nbatch_ms = 10\n",
            redis.url(),
            hooks.url()
        ),
        &[],
    )
}

/// The events of every POST that arrives within `quiet` of the previous one (or of the call),
/// as `name channel [user]`, counted.
fn events_until_quiet(hooks: &Endpoint, quiet: Duration) -> BTreeMap<String, usize> {
    let mut seen = BTreeMap::new();
    while let Ok(post) = hooks.posts.recv_timeout(quiet) {
        for e in post.json()["events"].as_array().unwrap() {
            *seen.entry(describe(e)).or_default() += 1;
        }
    }
    seen
}

fn describe(e: &Value) -> String {
    let (name, channel) = (e["name"].as_str().unwrap(), e["channel"].as_str().unwrap());
    match e["user_id"].as_str() {
        Some(user) => format!("{name} {channel} {user}"),
        None => format!("{name} {channel}"),
    }
}

/// Waits until each node has heard from the other, so that both judge every channel's reporter
/// from the same live set: until a node hears of a new one, both may report a transition
/// (docs/pusher-webhooks.md, "Limits"). A subscriber on each side of a `warm-up` channel, seen
/// by the other; its webhooks are drained.
fn know_each_other(
    hooks: &Endpoint,
    (n1, a, sa): (&Daemon, &mut common::Client, &str),
    (n2, b, sb): (&Daemon, &mut common::Client, &str),
) {
    subscribe(a, sa, "warm-up");
    subscribers_are(n2, "warm-up", 1);
    subscribe(b, sb, "warm-up");
    subscribers_are(n1, "warm-up", 2);
    events_until_quiet(hooks, Duration::from_millis(600));
}

#[test]
fn the_last_subscribers_of_two_nodes_leaving_at_once_vacate_each_channel_once() {
    let _serial = serial();
    let redis = Redis::start();
    let hooks = Endpoint::start(Mode::Answer);
    let (n1, n2) = (node(&redis, &hooks), node(&redis, &hooks));
    let channels: Vec<String> = (0..6).map(|i| format!("news-{i}")).collect();
    let (mut a, sa) = connect(&n1);
    let (mut b, sb) = connect(&n2);
    know_each_other(&hooks, (&n1, &mut a, &sa), (&n2, &mut b, &sb));
    for channel in &channels {
        subscribe(&mut a, &sa, channel);
        subscribers_are(&n2, channel, 1);
        subscribe(&mut b, &sb, channel);
    }
    for channel in &channels {
        subscribers_are(&n1, channel, 2);
        subscribers_are(&n2, channel, 2);
    }
    // One occupied per channel, by one of the two nodes.
    let quiet = Duration::from_millis(600);
    let occupied = events_until_quiet(&hooks, quiet);
    let want: BTreeMap<String, usize> = channels
        .iter()
        .map(|c| (format!("channel_occupied {c}"), 1))
        .collect();
    assert_eq!(occupied, want);
    // Both go at once: each node still counts the other's subscriber when its own leaves.
    drop(a);
    drop(b);
    let vacated = events_until_quiet(&hooks, quiet);
    let want: BTreeMap<String, usize> = channels
        .iter()
        .map(String::as_str)
        .chain(["warm-up"])
        .map(|c| (format!("channel_vacated {c}"), 1))
        .collect();
    assert_eq!(vacated, want);
}

#[test]
fn a_killed_nodes_members_are_removed_by_the_survivor_in_time() {
    let _serial = serial();
    let redis = Redis::start();
    let hooks = Endpoint::start(Mode::Answer);
    let (n1, n2) = (node(&redis, &hooks), node(&redis, &hooks));
    // Several channels, so that some are the doomed node's to report while it lives.
    let rooms: Vec<String> = (0..6).map(|i| format!("presence-room-{i}")).collect();
    let (mut a, sa) = connect(&n1);
    let (mut b, sb) = connect(&n2);
    // (Bob stays on `warm-up`: Ann's leaving it with n1 vacates nothing.)
    know_each_other(&hooks, (&n1, &mut a, &sa), (&n2, &mut b, &sb));
    for room in &rooms {
        join(&mut a, &sa, room, "1", "Ann");
        subscribers_are(&n2, room, 1);
    }
    // (Ann hears of Bob on every room: not read.)
    for room in &rooms {
        join(&mut b, &sb, room, "2", "Bob");
        subscribers_are(&n1, room, 2);
    }
    let before = events_until_quiet(&hooks, Duration::from_millis(600));
    let want: BTreeMap<String, usize> = rooms
        .iter()
        .flat_map(|r| {
            [
                format!("channel_occupied {r}"),
                format!("member_added {r} 1"),
                format!("member_added {r} 2"),
            ]
        })
        .map(|e| (e, 1))
        .collect();
    assert_eq!(
        before, want,
        "each room occupied once, each member added once"
    );
    let killed = Instant::now();
    let status = Command::new("kill")
        .args(["-9", &n1.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let limit = Duration::from_millis(NODE_TIMEOUT_MS) + Duration::from_secs(1);
    let mut removed = BTreeMap::new();
    while removed.len() < rooms.len() {
        let left = limit.saturating_sub(killed.elapsed());
        let post = hooks
            .posts
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("member_removed within {limit:?}: {removed:?}"));
        for e in post.json()["events"].as_array().unwrap() {
            *removed.entry(describe(e)).or_insert(0usize) += 1;
        }
    }
    removed.extend(events_until_quiet(&hooks, Duration::from_millis(600)));
    let want: BTreeMap<String, usize> = rooms
        .iter()
        .map(|r| (format!("member_removed {r} 1"), 1))
        .collect();
    assert_eq!(removed, want, "Bob stays: nothing else");
    drop(b);
}
