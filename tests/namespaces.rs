//! Namespaces, channel authorization and channel presence (SPEC section 15) over real sockets,
//! with tokens from the CLI under test (`websocket:token`). The cluster-wide part is in
//! tests/cluster_namespaces.rs, the Pusher dialect's in tests/pusher_namespaces.rs.

mod common;

use std::process::Stdio;
use std::time::Instant;

use common::api::{get, once, API_KEY};
use common::msg::cli_token;
use common::namespaces::{ask, assert_forbidden, channel_token, pending, subscribe, user_client};
use common::{rakit, send_json, send_text, Client, Daemon};
use serde_json::{json, Value};

const SECRET: &str = "namespaces-test-secret-0123";

const NAMESPACES: &str = r#"
[[namespaces]]
prefix = "order."
subscribe = "token"
publish = "backend"

[[namespaces]]
prefix = "user."
subscribe = "user"
publish = "subscribers"

[[namespaces]]
prefix = "staff."
subscribe = "authenticated"
publish = "authenticated"

[[namespaces]]
prefix = "room."
presence = true
publish = "subscribers"

[[namespaces]]
prefix = "vip."
subscribe = "token"
presence = true
"#;

/// The daemon of these tests: sessions, the API, the namespaces above, and `extra` top-level
/// keys.
fn daemon(extra: &str) -> Daemon {
    let config = format!(
        "logging_level = \"warn\"\ncommand_policy = \"admin\"\n{extra}\n\
         [session]\nsecret = \"{SECRET}\"\n[api]\nkey = \"{API_KEY}\"\n{NAMESPACES}"
    );
    Daemon::start(&config, &[])
}

fn id(welcome: &Value) -> String {
    welcome["client_id"].as_str().unwrap().to_owned()
}

/// `GET /api/channels/{name}`.
fn channel_view(daemon: &Daemon, name: &str) -> Value {
    let r = once(
        daemon.addr,
        &get(&format!("/api/channels/{name}"), Some(API_KEY)),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()
}

/// `broadcast_to_channel` through the API (not subject to the rules).
fn backend_publish(daemon: &Daemon, channel: &str, message: &str) {
    let body = json!({"command":"broadcast_to_channel","channel":channel,"message":message});
    let r = once(
        daemon.addr,
        &common::api::post("/api/commands", Some(API_KEY), &body.to_string()),
    );
    assert_eq!(r.status, 200, "{}", r.text());
}

fn subscribed_to(ws: &mut Client, channel: &str, token: Option<&str>) -> Value {
    let v = ask(ws, &subscribe(channel, token));
    assert_eq!(v["type"], "subscribed", "{v}");
    assert_eq!(v["channel"], channel, "{v}");
    v
}

#[test]
fn section_5_is_unchanged_outside_the_namespaces() {
    let d = daemon("");
    let (mut a, _) = d.client();
    let (mut b, wb) = d.client();
    for channel in ["chat", "order", "rooms", "users.1"] {
        let v = ask(&mut a, &subscribe(channel, None));
        assert_eq!(v, json!({"type":"subscribed","channel":channel}));
    }
    send_json(
        &mut b,
        &json!({"event":"message","channel":"chat","data":1}),
    );
    let got = pending(&mut a);
    assert_eq!(
        got,
        [json!({"type":"channel","channel":"chat","client_id":id(&wb),"data":1})]
    );
}

#[test]
fn authenticated_and_user_channels_admit_their_users_only() {
    let d = daemon("");
    let (mut guest, _) = d.client();
    let (mut alice, _) = user_client(&d, SECRET, "42", "Alice");
    let (mut bob, _) = user_client(&d, SECRET, "7", "Bob");
    assert_forbidden(
        &ask(&mut guest, &subscribe("staff.news", None)),
        "staff.news",
    );
    subscribed_to(&mut alice, "staff.news", None);
    subscribed_to(&mut alice, "user.42", None);
    for channel in ["user.42", "user.4", "user.", "user.420"] {
        assert_forbidden(&ask(&mut bob, &subscribe(channel, None)), channel);
        assert_forbidden(&ask(&mut guest, &subscribe(channel, None)), channel);
    }
    // Refused subscribes changed nothing: only Alice is in.
    assert_eq!(channel_view(&d, "user.42")["subscribers"], 1);
    assert_eq!(channel_view(&d, "staff.news")["subscribers"], 1);
    backend_publish(&d, "user.42", "for alice");
    assert_eq!(pending(&mut alice).len(), 1);
    assert!(pending(&mut bob).is_empty() && pending(&mut guest).is_empty());
}

#[test]
fn token_channels_take_a_cli_signed_token_for_this_channel_and_holder() {
    let d = daemon("");
    let (mut guest, wg) = d.client();
    let (mut alice, _) = user_client(&d, SECRET, "42", "Alice");
    let guest_id = id(&wg);
    let alices = channel_token(SECRET, "order.9", ("--sub", "42"), 60);
    let guests = channel_token(SECRET, "order.9", ("--client", &guest_id), 60);
    let bad = [
        None,
        Some(channel_token(SECRET, "order.8", ("--sub", "42"), 60)),
        Some(channel_token(SECRET, "order.9", ("--sub", "43"), 60)),
        Some(channel_token(SECRET, "order.9", ("--sub", "42"), 0)),
        Some(channel_token(
            "another-secret",
            "order.9",
            ("--sub", "42"),
            60,
        )),
        Some(guests.clone()),
        Some(cli_token(SECRET, "42", "Alice", None, false, 60)),
        Some("not.a.token".to_owned()),
        // Longer than max_handshake_size (8192): refused unread.
        Some(format!("{alices}{}", "A".repeat(9000))),
    ];
    for token in &bad {
        let v = ask(&mut alice, &subscribe("order.9", token.as_deref()));
        assert_forbidden(&v, "order.9");
    }
    let v = ask(
        &mut alice,
        &json!({"event":"subscribe","channel":"order.9","token":{"t":1}}),
    );
    assert_forbidden(&v, "order.9");
    assert_forbidden(
        &ask(&mut guest, &subscribe("order.9", Some(&alices))),
        "order.9",
    );
    assert_eq!(channel_view(&d, "order.9")["subscribers"], 0);
    subscribed_to(&mut alice, "order.9", Some(&alices));
    subscribed_to(&mut guest, "order.9", Some(&guests));
    backend_publish(&d, "order.9", "shipped");
    for ws in [&mut alice, &mut guest] {
        let got = pending(ws);
        assert_eq!(
            got,
            [json!({"type":"channel","channel":"order.9","data":"shipped"})]
        );
    }
}

#[test]
fn publish_rules_hold_and_the_backend_is_not_subject_to_them() {
    let d = daemon("");
    let (mut guest, _) = d.client();
    let (mut alice, wa) = user_client(&d, SECRET, "42", "Alice");
    let admin_token = cli_token(SECRET, "1", "Admin", None, true, 60);
    let (mut admin, _) = d.client_at(&format!("/?token={admin_token}"));
    subscribed_to(&mut alice, "room.1", None);
    subscribed_to(&mut alice, "staff.x", None);
    let token = channel_token(SECRET, "order.1", ("--sub", "42"), 60);
    subscribed_to(&mut alice, "order.1", Some(&token));
    let publish = |channel: &str| json!({"event":"message","channel":channel,"data":"x"});
    // subscribers: a non-subscriber may not, a subscriber may.
    assert_forbidden(&ask(&mut guest, &publish("room.1")), "room.1");
    // authenticated: not a guest.
    assert_forbidden(&ask(&mut guest, &publish("staff.x")), "staff.x");
    // backend: no client, not even an admin.
    assert_forbidden(&ask(&mut alice, &publish("order.1")), "order.1");
    assert_forbidden(&ask(&mut admin, &publish("order.1")), "order.1");
    assert!(
        pending(&mut alice).is_empty(),
        "nothing refused was delivered"
    );
    send_json(&mut alice, &publish("room.1"));
    let got = common::recv_type(&mut alice, "channel");
    assert_eq!(
        (&got["channel"], &got["client_id"]),
        (&json!("room.1"), &json!(id(&wa)))
    );
    send_json(&mut admin, &publish("staff.x"));
    assert_eq!(
        common::recv_type(&mut alice, "channel")["channel"],
        "staff.x"
    );
    // An admin's command (command_policy) and the API may publish anywhere.
    let cmd = json!({"command":"broadcast_to_channel","channel":"order.1","message":"m"});
    assert_eq!(ask(&mut admin, &cmd)["type"], "ack");
    backend_publish(&d, "order.1", "api");
    let got = pending(&mut alice);
    assert_eq!(got.len(), 2, "{got:?}");
}

fn entry(client_id: &str, user: Value) -> Value {
    json!({"client_id": client_id, "user": user})
}

#[test]
fn channel_presence_lists_joins_leaves_queries_and_the_api_view() {
    let d = daemon("");
    let (mut alice, wa) = user_client(&d, SECRET, "42", "Alice");
    let (mut guest, wg) = d.client();
    let (mut other, wo) = d.client();
    let (a, g, o) = (id(&wa), id(&wg), id(&wo));
    let alice_user = json!({"id":"42","name":"Alice","email":null});
    let v = subscribed_to(&mut alice, "room.1", None);
    assert_eq!(
        v,
        json!({"type":"subscribed","channel":"room.1","presence":[entry(&a, alice_user.clone())]})
    );
    let v = subscribed_to(&mut guest, "room.1", None);
    assert_eq!(
        v["presence"],
        json!([entry(&a, alice_user.clone()), entry(&g, Value::Null)])
    );
    assert_eq!(
        pending(&mut alice),
        [json!({"type":"join","channel":"room.1","client_id":g,"user":null})]
    );
    // The query: from a subscriber, and from anyone the (public) rule admits.
    let query = json!({"event":"presence","channel":"room.1"});
    let expect = json!({"type":"channel_presence","channel":"room.1",
        "clients":[entry(&a, alice_user.clone()), entry(&g, Value::Null)],"count":2});
    assert_eq!(ask(&mut guest, &query), expect);
    assert_eq!(ask(&mut other, &query), expect);
    // Without presence in the namespace: bad_request.
    let v = ask(&mut other, &json!({"event":"presence","channel":"chat"}));
    assert_eq!(v["code"], "bad_request", "{v}");
    // The API's view adds the list.
    let view = channel_view(&d, "room.1");
    assert_eq!(view["presence"], expect["clients"], "{view}");
    assert!(channel_view(&d, "chat").get("presence").is_none());
    // Unsubscribe and disconnect are leaves.
    assert_eq!(
        ask(
            &mut alice,
            &json!({"event":"unsubscribe","channel":"room.1"})
        )["type"],
        "unsubscribed"
    );
    assert_eq!(
        pending(&mut guest),
        [json!({"type":"leave","channel":"room.1","client_id":a,"user":alice_user})]
    );
    subscribed_to(&mut other, "room.1", None);
    assert_eq!(pending(&mut guest)[0]["type"], "join");
    drop(guest);
    let got = common::try_recv_json(&mut other, common::WAIT, |v| v["type"] == "presence")
        .expect("a leave");
    assert_eq!(
        got,
        json!({"type":"leave","channel":"room.1","client_id":g,"user":null})
    );
    assert_eq!(
        ask(&mut other, &query)["clients"],
        json!([entry(&o, Value::Null)])
    );
}

#[test]
fn a_token_channels_presence_needs_the_token_or_a_subscription() {
    let d = daemon("");
    let (mut guest, wg) = d.client();
    let (mut alice, _) = user_client(&d, SECRET, "42", "Alice");
    let query = |token: Option<&str>| match token {
        Some(t) => json!({"event":"presence","channel":"vip.1","token":t}),
        None => json!({"event":"presence","channel":"vip.1"}),
    };
    assert_forbidden(&ask(&mut guest, &query(None)), "vip.1");
    let foreign = channel_token(SECRET, "vip.1", ("--sub", "42"), 60);
    assert_forbidden(&ask(&mut guest, &query(Some(&foreign))), "vip.1");
    let own = channel_token(SECRET, "vip.1", ("--client", &id(&wg)), 60);
    assert_eq!(ask(&mut guest, &query(Some(&own)))["count"], 0);
    subscribed_to(&mut alice, "vip.1", Some(&foreign));
    assert_eq!(ask(&mut alice, &query(None))["count"], 1);
}

#[test]
fn above_presence_max_users_lists_are_empty_and_joins_and_leaves_stop() {
    let d = daemon("presence_max_users = 2");
    let mut clients: Vec<(Client, String)> = (0..4)
        .map(|_| {
            let (ws, w) = d.client();
            (ws, id(&w))
        })
        .collect();
    subscribed_to(&mut clients[0].0, "room.1", None);
    let v = subscribed_to(&mut clients[1].0, "room.1", None);
    assert_eq!(v["presence"].as_array().unwrap().len(), 2);
    assert_eq!(
        pending(&mut clients[0].0).len(),
        1,
        "the join of the second"
    );
    // The third counts itself: 3 > 2.
    let v = subscribed_to(&mut clients[2].0, "room.1", None);
    assert_eq!(
        v,
        json!({"type":"subscribed","channel":"room.1","presence":[],"truncated":true})
    );
    assert!(
        pending(&mut clients[0].0).is_empty(),
        "no join above the limit"
    );
    let q = ask(
        &mut clients[3].0,
        &json!({"event":"presence","channel":"room.1"}),
    );
    assert_eq!(
        q,
        json!({"type":"channel_presence","channel":"room.1","clients":[],"count":3,"truncated":true})
    );
    // The API's list is never truncated.
    assert_eq!(
        channel_view(&d, "room.1")["presence"]
            .as_array()
            .unwrap()
            .len(),
        3
    );
    // The leaving one still counts (3 > 2): no leave. Then 2: a leave.
    send_json(
        &mut clients[2].0,
        &json!({"event":"unsubscribe","channel":"room.1"}),
    );
    assert!(pending(&mut clients[2].0)
        .iter()
        .any(|v| v["type"] == "unsubscribed"));
    assert!(pending(&mut clients[0].0).is_empty());
    let second = clients[1].1.clone();
    send_json(
        &mut clients[1].0,
        &json!({"event":"unsubscribe","channel":"room.1"}),
    );
    pending(&mut clients[1].0);
    assert_eq!(
        pending(&mut clients[0].0),
        [json!({"type":"leave","channel":"room.1","client_id":second,"user":null})]
    );
}

#[test]
fn a_storm_of_bad_tokens_costs_the_subscribe_budget_and_disturbs_nobody() {
    // A burst of 32 subscribes (twice max_channels_per_client, at least 32).
    let d = daemon("max_channels_per_client = 16");
    let (mut attacker, _) = d.client();
    let (mut bystander, _) = d.client();
    subscribed_to(&mut bystander, "chat", None);
    let big = "A".repeat(60_000);
    let started = Instant::now();
    for i in 0..60 {
        let token = if i % 2 == 0 { "x.y.z" } else { big.as_str() };
        send_json(&mut attacker, &subscribe("order.1", Some(token)));
    }
    let replies = pending(&mut attacker);
    // What the budget regained meanwhile (10 a second) may have let a few more through.
    let regained = (started.elapsed().as_secs_f64() * 10.0).ceil() as usize + 1;
    assert_eq!(replies.len(), 60);
    let codes: Vec<&str> = replies
        .iter()
        .map(|v| v["code"].as_str().unwrap())
        .collect();
    assert!(codes[..32].iter().all(|c| *c == "forbidden"), "{codes:?}");
    let verified = codes.iter().filter(|c| **c == "forbidden").count();
    assert!(verified <= 32 + regained, "{verified} verified: {codes:?}");
    assert!(codes
        .iter()
        .all(|c| *c == "forbidden" || *c == "too_many_channels"));
    // The bystander is served as ever.
    send_json(&mut attacker, &json!({"message":"still here"}));
    assert_eq!(
        common::recv_type(&mut bystander, "message")["message"],
        "still here"
    );
    assert_eq!(
        common::recv_type(&mut attacker, "message")["message"],
        "still here"
    );
    // A query of a public channel verifies nothing and costs nothing (a token is ignored).
    send_text(
        &mut attacker,
        r#"{"event":"presence","channel":"room.1","token":7}"#,
    );
    assert_eq!(pending(&mut attacker)[0]["type"], "channel_presence");
}

#[test]
fn check_shows_the_namespaces_and_errors_name_them() {
    let dir = common::scratch_dir();
    let file = dir.join("websocket.toml");
    std::fs::write(&file, NAMESPACES).unwrap();
    let out = rakit()
        .args(["websocket:check", &format!("--config={}", file.display())])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains(
            "[[namespaces]]\nprefix = \"order.\"\nsubscribe = \"token\"\npublish = \"backend\"\n"
        ),
        "{text}"
    );
    assert_eq!(text.matches("[[namespaces]]").count(), 5, "{text}");
    for (bad, key) in [
        ("subscribe = \"user\"", "subscribe = \"owner\""),
        ("prefix = \"staff.\"", "prefix = \"order.\""),
        (
            "presence = true\npublish",
            "presence = true\nhistory_size = 5\npublish",
        ),
    ] {
        std::fs::write(&file, NAMESPACES.replacen(bad, key, 1)).unwrap();
        let run = rakit()
            .args([
                "websocket:run",
                "--port=0",
                &format!("--config={}", file.display()),
            ])
            .stdout(Stdio::null())
            .output()
            .unwrap();
        assert_eq!(run.status.code(), Some(2), "{run:?}");
        let err = String::from_utf8(run.stderr).unwrap();
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains("namespaces["), "{err}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
