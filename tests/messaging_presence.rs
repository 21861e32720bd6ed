//! Presence (SPEC section 5) over real sockets: when it is sent, its exact
//! format, truncation, `presence = false` and `presence_interval_ms` batching.

mod common;

use std::time::{SystemTime, UNIX_EPOCH};

use common::msg::{
    cli_token, client, client_at, expect_gone, recv_close, recv_json, recv_type, until_pong,
};
use common::presence::ids;
use common::{id_of, send_json, Client, Daemon};
use serde_json::{json, Value};

const SECRET: &str = "presence-secret";

fn config(extra: &str) -> String {
    format!("logging_level = \"warn\"\npresence_interval_ms = 0\n{extra}\n[session]\nsecret = \"{SECRET}\"\n")
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Reads presence messages until one satisfies `done` (others may arrive
/// first: changes are batched, and a message reflects the state when sent).
#[track_caller]
fn presence_until(ws: &mut Client, mut done: impl FnMut(&Value) -> bool) -> Value {
    loop {
        let v = recv_type(ws, "presence");
        if done(&v) {
            return v;
        }
    }
}

#[track_caller]
fn presence_with(ws: &mut Client, expected: &[&str]) -> Value {
    presence_until(ws, |v| ids(v) == expected)
}

/// Checks a full presence message: keys, count, and each entry's format.
/// `users` gives (client id, name, email) in connection order; every
/// `connected_at` lies in `[since, now]`.
#[track_caller]
fn assert_presence(v: &Value, users: &[(&str, &str, Option<&str>)], since: u64) {
    let obj = v.as_object().unwrap();
    let mut keys: Vec<&str> = obj.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["count", "type", "users"], "{v}");
    assert_eq!(v["type"], "presence");
    assert_eq!(v["count"], users.len(), "{v}");
    let entries = v["users"].as_array().unwrap();
    assert_eq!(entries.len(), users.len(), "{v}");
    let now = now_unix();
    for (entry, (id, name, email)) in entries.iter().zip(users) {
        let mut keys: Vec<&str> = entry
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        keys.sort_unstable();
        assert_eq!(keys, ["connected_at", "email", "id", "name"], "{entry}");
        assert_eq!(entry["id"], *id, "{v}");
        assert_eq!(entry["name"], *name, "{v}");
        assert_eq!(entry["email"], json!(email), "{v}");
        let at = entry["connected_at"]
            .as_u64()
            .expect("connected_at is an integer");
        assert!(
            since <= at && at <= now,
            "connected_at {at} not in [{since}, {now}]"
        );
    }
}

#[test]
fn presence_after_connect_and_disconnect_in_connection_order() {
    let since = now_unix();
    let daemon = Daemon::start(&config(""), &[]);
    let token = cli_token(
        SECRET,
        "u-7",
        "Ada Lovelace",
        Some("ada@example.com"),
        false,
        600,
    );
    let plain = cli_token(SECRET, "u-8", "Bob", None, false, 600);

    let (mut a, wa) = client(&daemon);
    let a_id = id_of(&wa);
    let p = recv_json(&mut a);
    assert_presence(&p, &[(&a_id, "Guest", None)], since);

    let (mut b, wb) = client_at(&daemon, &format!("/?token={token}"));
    let b_id = id_of(&wb);
    let (mut c, wc) = client_at(&daemon, &format!("/chat?token={plain}"));
    let c_id = id_of(&wc);
    let all = [
        (a_id.as_str(), "Guest", None),
        (b_id.as_str(), "Ada Lovelace", Some("ada@example.com")),
        (c_id.as_str(), "Bob", None),
    ];
    let order = [a_id.as_str(), b_id.as_str(), c_id.as_str()];
    for ws in [&mut a, &mut b, &mut c] {
        let p = presence_with(ws, &order);
        assert_presence(&p, &all, since);
    }

    // B leaves: everyone left sees A and C, still in connection order.
    b.close(None).unwrap();
    expect_gone(&mut b);
    for ws in [&mut a, &mut c] {
        let p = presence_with(ws, &[&a_id, &c_id]);
        assert_presence(&p, &[all[0], all[2]], since);
    }
    // A connection dropped without a close frame counts too.
    drop(c);
    let p = presence_with(&mut a, &[&a_id]);
    assert_presence(&p, &[all[0]], since);
}

#[test]
fn presence_after_the_disconnect_command() {
    let since = now_unix();
    let daemon = Daemon::start(&config(""), &[]);
    let admin = cli_token(SECRET, "root", "Root", Some("root@example.com"), true, 600);
    let (mut a, wa) = client_at(&daemon, &format!("/?token={admin}"));
    let (mut b, wb) = client(&daemon);
    let (a_id, b_id) = (id_of(&wa), id_of(&wb));
    presence_with(&mut a, &[&a_id, &b_id]);

    send_json(&mut a, &json!({"command": "disconnect", "client_id": b_id}));
    assert_eq!(
        recv_close(&mut b),
        (4000, "disconnected by server".to_owned())
    );
    // The ack, and a presence without B (in either order).
    let mut acked = false;
    let p = loop {
        let v = recv_json(&mut a);
        if v["type"] == "presence" && ids(&v) == [a_id.as_str()] {
            break v;
        }
        acked |= v == json!({"type": "ack", "command": "disconnect"});
    };
    assert_presence(&p, &[(&a_id, "Root", Some("root@example.com"))], since);
    if !acked {
        let rest = until_pong(&mut a);
        assert!(
            rest.contains(&json!({"type": "ack", "command": "disconnect"})),
            "{rest:?}"
        );
    }
}

#[test]
fn presence_command_sends_at_once_to_everyone_then_acks() {
    // A long interval: after the first update, changes wait ten minutes, so
    // a presence listing both clients can only come from the command.
    let config =
        "logging_level = \"warn\"\npresence_interval_ms = 600000\ncommand_policy = \"any\"\n";
    let since = now_unix();
    let daemon = Daemon::start(config, &[]);
    let (mut a, wa) = client(&daemon);
    let a_id = id_of(&wa);
    assert_eq!(ids(&recv_json(&mut a)), [a_id.as_str()]);
    let (mut b, wb) = client(&daemon);
    let b_id = id_of(&wb);
    // B's connect is pending: nothing for A yet.
    assert!(until_pong(&mut a).is_empty());

    send_json(&mut b, &json!({"command": "presence"}));
    let both = [
        (a_id.as_str(), "Guest", None),
        (b_id.as_str(), "Guest", None),
    ];
    let p = recv_json(&mut b);
    assert_presence(&p, &both, since);
    assert_eq!(
        recv_json(&mut b),
        json!({"type": "ack", "command": "presence"})
    );
    let p = recv_json(&mut a);
    assert_presence(&p, &both, since);
    assert!(until_pong(&mut a).is_empty());
    assert!(until_pong(&mut b).is_empty());
}

#[test]
fn presence_above_max_users_carries_the_count_only() {
    let daemon = Daemon::start(&config("presence_max_users = 2"), &[]);
    let (mut a, wa) = client(&daemon);
    let (mut b, wb) = client(&daemon);
    let (a_id, b_id) = (id_of(&wa), id_of(&wb));
    let p = presence_with(&mut a, &[&a_id, &b_id]);
    assert_eq!(p["count"], 2);
    assert!(
        p.get("truncated").is_none(),
        "not truncated at the limit: {p}"
    );

    let (mut c, _) = client(&daemon);
    let expected = json!({"type": "presence", "users": [], "count": 3, "truncated": true});
    for ws in [&mut a, &mut b, &mut c] {
        assert_eq!(presence_until(ws, |v| v["count"] == 3), expected);
    }
    // Back at the limit: the list returns.
    drop(c);
    let p = presence_until(&mut a, |v| v["count"] == 2);
    assert_eq!(ids(&p), [a_id.as_str(), b_id.as_str()]);
    assert!(p.get("truncated").is_none(), "{p}");
}

#[test]
fn presence_false_sends_no_presence() {
    let config = "logging_level = \"warn\"\npresence = false\ncommand_policy = \"any\"\n";
    let daemon = Daemon::start(config, &[]);
    let (mut a, _) = client(&daemon);
    // Not after one's own connect: the pong is the next message.
    send_json(&mut a, &json!({"ping": 1}));
    assert_eq!(recv_json(&mut a), json!({"type": "pong"}));
    // Nor after another's connect or disconnect.
    let (mut b, _) = client(&daemon);
    send_json(&mut b, &json!({"ping": 1}));
    assert_eq!(recv_json(&mut b), json!({"type": "pong"}));
    send_json(&mut a, &json!({"ping": 1}));
    assert_eq!(recv_json(&mut a), json!({"type": "pong"}));
    drop(b);
    let (mut c, _) = client(&daemon);
    send_json(&mut c, &json!({"command": "presence"}));
    assert_eq!(
        recv_json(&mut c),
        json!({"type": "ack", "command": "presence"})
    );
    send_json(&mut a, &json!({"ping": 1}));
    assert_eq!(recv_json(&mut a), json!({"type": "pong"}));
}

#[test]
fn quick_connects_share_presence_messages() {
    // The first change is sent at once; later ones within 1.5 s share one
    // message. However slow the machine, ten connects cannot produce ten
    // messages unless they span 13.5 s.
    let config = "logging_level = \"warn\"\npresence_interval_ms = 1500\n";
    let daemon = Daemon::start(config, &[]);
    let (mut observer, w) = client(&daemon);
    let mut order = vec![id_of(&w)];
    assert_eq!(ids(&recv_json(&mut observer)), order);

    let mut others = Vec::new();
    for _ in 0..10 {
        let (ws, w) = client(&daemon);
        order.push(id_of(&w));
        others.push(ws);
    }
    let mut received = 0;
    let last = presence_until(&mut observer, |v| {
        received += 1;
        v["count"] == 11
    });
    assert_eq!(ids(&last), order, "connection order");
    assert!(
        received < 10,
        "{received} presence messages for 10 quick connects"
    );
    assert!(until_pong(&mut observer).is_empty());
}
