//! The Pusher dialect against clients that follow the protocol but not good manners (review
//! findings; decisions in docs/pusher.md, "Limits"): Rakit clients publishing into channels
//! that need Pusher authorization, presence channels without a cap, oversized event names,
//! subscribe churn, re-subscribes as another user, numeric user ids through a float, `null`
//! event data, and (with pusher-js and the Node `pusher` library, tests/pusher/limits.mjs) the
//! presence cap as Echo's `.error()` sees it and reserved event names on the HTTP API.

mod common;

use std::time::Instant;

use common::abuse::LIMITS_OFF;
use common::api::{api_table, Http, API_KEY};
use common::msg::cli_token;
use common::node::{available, run};
use common::pusher::{connect, recv_event, sign_text as sign};
use common::{recv_type, send_json, send_text, Client, Daemon};
use serde_json::{json, Value};

const APP_ID: &str = "4242";
const KEY: &str = "app-key";
const SECRET: &str = "pusher-test-secret-0123456789";
const SESSION_SECRET: &str = "session-secret-for-tests-0123";

/// The daemon with `[pusher]` (plus `pusher_extra`), `[api]`, sessions, and `extra` top-level
/// keys.
fn daemon(extra: &str, pusher_extra: &str) -> Daemon {
    let config = format!(
        "logging_level = \"error\"\n{extra}\n[session]\nsecret = \"{SESSION_SECRET}\"\n{}\
         [pusher]\napp_id = \"{APP_ID}\"\nkey = \"{KEY}\"\nsecret = \"{SECRET}\"\n{pusher_extra}\n",
        api_table()
    );
    Daemon::start(&config, &[])
}

/// Everything queued for a Pusher client before its `pusher:ping` was answered.
#[track_caller]
fn until_pong(ws: &mut Client) -> Vec<(String, Value, Value)> {
    send_json(ws, &json!({"event": "pusher:ping", "data": {}}));
    let mut before = Vec::new();
    loop {
        let e = recv_event(ws);
        if e.0 == "pusher:pong" {
            return before;
        }
        before.push(e);
    }
}

/// Sends a signed subscribe: presence when `channel_data` is given, else private (or public
/// when the name says so; the signature is then ignored).
fn send_subscribe(ws: &mut Client, socket: &str, channel: &str, channel_data: Option<&str>) {
    let data = match channel_data {
        Some(cd) => {
            json!({"channel": channel, "auth": sign(&format!("{socket}:{channel}:{cd}")), "channel_data": cd})
        }
        None => json!({"channel": channel, "auth": sign(&format!("{socket}:{channel}"))}),
    };
    send_json(ws, &json!({"event": "pusher:subscribe", "data": data}));
}

fn member(user: Value, name: &str) -> String {
    json!({"user_id": user, "user_info": {"name": name}}).to_string()
}

/// Subscribes and expects success; returns the `subscription_succeeded` data.
#[track_caller]
fn subscribed(ws: &mut Client, socket: &str, channel: &str, channel_data: Option<&str>) -> Value {
    send_subscribe(ws, socket, channel, channel_data);
    let (event, ch, data) = recv_event(ws);
    assert_eq!(
        (event.as_str(), &ch),
        ("pusher_internal:subscription_succeeded", &json!(channel)),
        "{data}"
    );
    data
}

/// Subscribes and expects `pusher:subscription_error`; returns its data.
#[track_caller]
fn refused(ws: &mut Client, socket: &str, channel: &str, channel_data: Option<&str>) -> Value {
    send_subscribe(ws, socket, channel, channel_data);
    let (event, ch, data) = recv_event(ws);
    assert_eq!(
        (event.as_str(), &ch),
        ("pusher:subscription_error", &json!(channel)),
        "{data}"
    );
    data
}

/// A Rakit client with a session token (admin or not).
#[track_caller]
fn rakit_user(daemon: &Daemon, sub: &str, admin: bool) -> Client {
    let token = cli_token(SESSION_SECRET, sub, sub, None, admin, 600);
    daemon.client_at(&format!("/?token={token}")).0
}

#[track_caller]
fn api_command(daemon: &Daemon, command: &Value) -> Value {
    let body = command.to_string();
    let mut http = Http::connect(daemon.addr);
    http.send(
        format!(
            "POST /api/commands HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {API_KEY}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    );
    http.read_response().json()
}

#[test]
fn rakit_clients_cannot_publish_into_channels_that_need_pusher_authorization() {
    let daemon = daemon("command_policy = \"any\"", "");
    let (mut p, socket) = connect(&daemon);
    let protected = [
        "private-user.5",
        "private-encrypted-x",
        "presence-room",
        "#server-to-user-5",
    ];
    subscribed(&mut p, &socket, "private-user.5", None);
    subscribed(&mut p, &socket, "private-encrypted-x", None);
    subscribed(
        &mut p,
        &socket,
        "presence-room",
        Some(&member(json!("5"), "Ann")),
    );
    let user_data = r#"{"id":"5"}"#;
    let auth = sign(&format!("{socket}::user::{user_data}"));
    send_json(
        &mut p,
        &json!({"event": "pusher:signin", "data": {"auth": auth, "user_data": user_data}}),
    );
    assert_eq!(recv_event(&mut p).0, "pusher:signin_success");
    send_json(
        &mut p,
        &json!({"event": "pusher:subscribe", "data": {"channel": "#server-to-user-5"}}),
    );
    assert_eq!(
        recv_event(&mut p).0,
        "pusher_internal:subscription_succeeded"
    );
    subscribed(&mut p, &socket, "public", None);

    // A guest, and a signed-in user who is no admin (command_policy = "any" lets both send
    // commands): neither a channel message nor broadcast_to_channel gets through.
    let (mut guest, _) = daemon.client();
    let mut plain = rakit_user(&daemon, "7", false);
    for rakit in [&mut guest, &mut plain] {
        for channel in protected {
            send_json(
                rakit,
                &json!({"event": "message", "channel": channel, "data": {"forged": true}}),
            );
            let e = recv_type(rakit, "error");
            assert_eq!(e["code"], "forbidden", "message to {channel}: {e}");
            send_json(
                rakit,
                &json!({"command": "broadcast_to_channel", "channel": channel, "message": {"forged": 2}}),
            );
            let e = recv_type(rakit, "error");
            assert_eq!(e["code"], "forbidden", "command to {channel}: {e}");
        }
        // Public channels stay open to everyone.
        send_json(
            rakit,
            &json!({"event": "message", "channel": "public", "data": "hi"}),
        );
    }
    // An admin speaks for the server, and so does the backend API.
    let mut admin = rakit_user(&daemon, "1", true);
    send_json(
        &mut admin,
        &json!({"command": "broadcast_to_channel", "channel": "private-user.5", "message": {"by": "admin"}}),
    );
    assert_eq!(
        recv_type(&mut admin, "ack")["command"],
        "broadcast_to_channel"
    );
    let answer = api_command(
        &daemon,
        &json!({"command": "broadcast_to_channel", "channel": "presence-room", "message": {"by": "api"}}),
    );
    assert_eq!(answer, json!({"ok": true}));

    let got = until_pong(&mut p);
    let ev = |channel: &str, data: Value| ("message".to_owned(), json!(channel), data);
    assert_eq!(
        got,
        [
            ev("public", json!("hi")),
            ev("public", json!("hi")),
            ev("private-user.5", json!({"by": "admin"})),
            ev("presence-room", json!({"by": "api"})),
        ]
    );
}

#[test]
fn presence_channels_hold_max_presence_members_users_of_1_kb_at_most() {
    let daemon = daemon("", "max_presence_members = 2");
    let room = "presence-room";
    let (mut a, sa) = connect(&daemon);
    let (mut b, sb) = connect(&daemon);
    let (mut c, sc) = connect(&daemon);
    let (mut a2, sa2) = connect(&daemon);
    subscribed(&mut a, &sa, room, Some(&member(json!("1"), "Ann")));
    subscribed(&mut b, &sb, room, Some(&member(json!("2"), "Bob")));
    // A third user: refused as Soketi refuses it; the channel is untouched.
    let e = refused(&mut c, &sc, room, Some(&member(json!("3"), "Cy")));
    assert_eq!(
        (&e["type"], &e["status"]),
        (&json!("LimitReached"), &json!(4100)),
        "{e}"
    );
    // Another connection of a user already there is no new member.
    let snapshot = subscribed(&mut a2, &sa2, room, Some(&member(json!("1"), "Ann")));
    assert_eq!(snapshot["presence"]["count"], 2, "{snapshot}");
    // Ann heard of Bob only: neither the refused user nor her own second connection.
    let heard: Vec<String> = until_pong(&mut a)
        .into_iter()
        .map(|(event, _, data)| format!("{event} {}", data["user_id"]))
        .collect();
    assert_eq!(heard, ["pusher_internal:member_added \"2\""]);
    // Pusher's size limits: 1 KB of user_info, 128 of user_id.
    let (mut d, sd) = connect(&daemon);
    let info = |n: usize| json!({"user_id": "1", "user_info": "x".repeat(n - 2)}).to_string();
    let e = refused(&mut d, &sd, room, Some(&info(1025)));
    assert_eq!(
        (&e["type"], &e["status"]),
        (&json!("LimitReached"), &json!(4301)),
        "{e}"
    );
    let long_id = json!({"user_id": "u".repeat(129)}).to_string();
    let e = refused(&mut d, &sd, room, Some(&long_id));
    assert_eq!(e["type"], "LimitReached", "{e}");
    subscribed(&mut d, &sd, room, Some(&info(1024)));
    // When a user leaves, the next one gets its place.
    send_json(
        &mut b,
        &json!({"event": "pusher:unsubscribe", "data": {"channel": room}}),
    );
    let snapshot = subscribed(&mut c, &sc, room, Some(&member(json!("3"), "Cy")));
    assert_eq!(snapshot["presence"]["ids"], json!(["1", "3"]), "{snapshot}");
}

#[test]
fn a_resubscribe_is_answered_again_but_cannot_switch_user() {
    let daemon = daemon("", "");
    let room = "presence-room";
    let (mut a, sa) = connect(&daemon);
    let (mut w, sw) = connect(&daemon);
    subscribed(&mut w, &sw, room, Some(&member(json!("w"), "Watcher")));
    subscribed(&mut a, &sa, room, Some(&member(json!("1"), "Ann")));
    assert_eq!(until_pong(&mut w).len(), 1, "member_added for 1");
    // The same user again: the same answer, nobody else hears of it.
    let again = subscribed(&mut a, &sa, room, Some(&member(json!("1"), "Ann again")));
    assert_eq!(again["presence"]["hash"]["1"], json!({"name": "Ann"}));
    // Another user, validly signed: refused, not silently ignored.
    let e = refused(&mut a, &sa, room, Some(&member(json!("2"), "Bob")));
    assert_eq!(
        (&e["type"], &e["status"]),
        (&json!("AuthError"), &json!(409)),
        "{e}"
    );
    assert_eq!(until_pong(&mut w), []);
    // Its membership is still user 1's: leaving removes 1.
    send_json(
        &mut a,
        &json!({"event": "pusher:unsubscribe", "data": {"channel": room}}),
    );
    let got = until_pong(&mut w);
    assert_eq!(
        got,
        [(
            "pusher_internal:member_removed".to_owned(),
            json!(room),
            json!({"user_id": "1"})
        )]
    );
}

#[test]
fn subscribe_churn_and_bad_frames_are_bounded_by_the_budget() {
    // max_channels_per_client = 5: a budget of 10, refilled at 10 per second. 600 frames from
    // a client: SPEC 17's message bucket off, so that only the budget answers.
    let daemon = daemon("max_channels_per_client = 5", LIMITS_OFF);
    let room = "presence-room";
    let (mut w, sw) = connect(&daemon);
    subscribed(&mut w, &sw, room, Some(&member(json!("w"), "Watcher")));
    let (mut c, sc) = connect(&daemon);
    let cd = member(json!("churn"), "Churn");
    let start = Instant::now();
    for _ in 0..200 {
        send_subscribe(&mut c, &sc, room, Some(&cd));
        send_json(
            &mut c,
            &json!({"event": "pusher:unsubscribe", "data": {"channel": room}}),
        );
    }
    let answers = until_pong(&mut c);
    let elapsed = start.elapsed().as_secs_f64();
    let ok = answers
        .iter()
        .filter(|e| e.0 == "pusher_internal:subscription_succeeded")
        .count();
    let limited: Vec<_> = answers
        .iter()
        .filter(|e| e.0 == "pusher:subscription_error")
        .collect();
    assert_eq!(ok + limited.len(), 200, "every subscribe is answered");
    assert!(limited
        .iter()
        .all(|e| e.2["type"] == "LimitReached" && e.2["status"] == 4301));
    let bound = 10 + (10.0 * elapsed).ceil() as usize + 1;
    assert!(ok >= 10 && ok <= bound, "{ok} joins in {elapsed:.2} s");
    // The watcher heard of each join and leave that happened, no more.
    let heard = until_pong(&mut w);
    assert_eq!(heard.len(), 2 * ok, "{heard:?}");

    // Frames that only get an error cost the same budget; beyond it they go unanswered.
    let (mut m, _) = connect(&daemon);
    let start = Instant::now();
    for _ in 0..100 {
        send_text(&mut m, "{not json");
        send_json(&mut m, &json!({"event": "pusher:nonsense", "data": {}}));
    }
    let errors = until_pong(&mut m);
    let bound = 10 + (10.0 * start.elapsed().as_secs_f64()).ceil() as usize + 1;
    assert!(
        errors.len() >= 10 && errors.len() <= bound,
        "{} errors",
        errors.len()
    );
    assert!(errors.iter().all(|e| e.0 == "pusher:error"));
}

#[test]
fn client_event_names_are_bounded_and_null_data_is_data() {
    let daemon = daemon("", "");
    let (mut a, sa) = connect(&daemon);
    let (mut b, sb) = connect(&daemon);
    subscribed(&mut a, &sa, "private-chat", None);
    subscribed(&mut b, &sb, "private-chat", None);
    let send = |ws: &mut Client, name: &str, data: Value| {
        send_json(
            ws,
            &json!({"event": name, "channel": "private-chat", "data": data}),
        );
    };
    let long = format!("client-{}", "x".repeat(50_000));
    let at_limit = format!("client-{}", "y".repeat(193));
    let over = format!("client-{}", "z".repeat(194));
    send(&mut a, &long, json!({}));
    send(&mut a, &over, json!({}));
    send(&mut a, &at_limit, json!(1));
    send(&mut a, "client-null", Value::Null);
    let errors = until_pong(&mut a);
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(errors
        .iter()
        .all(|e| e.0 == "pusher:error" && e.2["code"] == 4301));
    let got = until_pong(&mut b);
    assert_eq!(
        got,
        [
            (at_limit, json!("private-chat"), json!(1)),
            ("client-null".to_owned(), json!("private-chat"), Value::Null),
        ]
    );
}

#[test]
fn numeric_user_ids_keep_their_digits() {
    let daemon = daemon("", "");
    let room = "presence-big";
    let (mut w, sw) = connect(&daemon);
    subscribed(&mut w, &sw, room, Some(&member(json!("w"), "Watcher")));
    let (mut a, sa) = connect(&daemon);
    // Numbers as the application wrote them (`user_id` as a number is allowed).
    let cd = r#"{"user_id":12345678901234567890123,"user_info":{"name":"Big"}}"#;
    let snapshot = subscribed(&mut a, &sa, room, Some(cd));
    assert_eq!(
        snapshot["presence"]["ids"],
        json!(["12345678901234567890123", "w"]),
        "{snapshot}"
    );
    let (event, _, data) = recv_event(&mut w);
    assert_eq!(event, "pusher_internal:member_added");
    assert_eq!(data["user_id"], "12345678901234567890123");
    // The same for the signed-in user of pusher:signin and its own channel.
    let user_data = r#"{"id":98765432109876543210}"#;
    let auth = sign(&format!("{sa}::user::{user_data}"));
    send_json(
        &mut a,
        &json!({"event": "pusher:signin", "data": {"auth": auth, "user_data": user_data}}),
    );
    assert_eq!(recv_event(&mut a).0, "pusher:signin_success");
    send_json(
        &mut a,
        &json!({"event": "pusher:subscribe", "data": {"channel": "#server-to-user-98765432109876543210"}}),
    );
    assert_eq!(
        recv_event(&mut a).0,
        "pusher_internal:subscription_succeeded"
    );
}

#[test]
fn pusher_js_sees_the_presence_cap_and_the_api_refuses_reserved_event_names() {
    if !available() {
        return;
    }
    let daemon = daemon("", "max_presence_members = 2");
    let seen = run(
        "limits.mjs",
        &[
            daemon.addr.port().to_string(),
            KEY.into(),
            SECRET.into(),
            APP_ID.into(),
        ],
    );
    assert_eq!(seen["here"]["a"], json!(["user 1"]), "{seen}");
    assert_eq!(seen["here"]["b"], json!(["user 1", "user 2"]), "{seen}");
    assert_eq!(seen["here"]["a2"], json!(["user 1", "user 2"]), "{seen}");
    let error = &seen["errors"]["c"];
    assert_eq!(
        (&error["type"], &error["status"]),
        (&json!("LimitReached"), &json!(4100)),
        "{seen}"
    );
    assert!(seen["here"]["c"].is_null(), "{seen}");
    let reserved = json!([
        400,
        "{\"error\":\"The 'pusher' namespace is reserved for internal usage\"}"
    ]);
    assert_eq!(seen["fake_member"], reserved, "{seen}");
    assert_eq!(seen["fake_error"], reserved, "{seen}");
    assert_eq!(seen["after"], json!([200, {}]), "{seen}");
    assert_eq!(seen["members_a"], json!(["user 1", "user 2"]), "{seen}");
    assert_eq!(seen["joining"], json!([["a", "user 2"]]), "{seen}");
}

/// `pusher:signin` as `user_data`, signed (`valid`) or not; returns the answer's event.
#[track_caller]
fn signin_as(ws: &mut Client, socket: &str, user_data: &str, valid: bool) -> String {
    let auth = if valid {
        sign(&format!("{socket}::user::{user_data}"))
    } else {
        format!("{KEY}:{}", "0".repeat(64))
    };
    send_json(
        ws,
        &json!({"event": "pusher:signin", "data": {"auth": auth, "user_data": user_data}}),
    );
    recv_event(ws).0
}

#[test]
fn a_connection_signed_in_as_someone_else_or_no_one_leaves_the_old_users_channel() {
    let daemon = daemon("", "");
    let to_user = |user: &str, n: u64| {
        let answer = api_command(
            &daemon,
            &json!({"command": "broadcast_to_channel", "channel": format!("#server-to-user-{user}"), "message": n}),
        );
        assert_eq!(answer, json!({"ok": true}));
    };
    let (mut p, socket) = connect(&daemon);
    let user_channel = |p: &mut Client, user: &str| {
        send_json(
            p,
            &json!({"event": "pusher:subscribe", "data": {"channel": format!("#server-to-user-{user}")}}),
        );
        assert_eq!(recv_event(p).0, "pusher_internal:subscription_succeeded");
    };
    // Each way of ceasing to be user 5: another user, a failed signin, a signin with no id.
    let ways: [(&str, bool, &str); 3] = [
        (r#"{"id":"6"}"#, true, "pusher:signin_success"),
        (r#"{"id":"6"}"#, false, "pusher:error"),
        (r#"{"name":"no id"}"#, true, "pusher:signin_success"),
    ];
    for (n, (user_data, valid, answer)) in (1..).zip(ways) {
        assert_eq!(
            signin_as(&mut p, &socket, r#"{"id":"5"}"#, true),
            "pusher:signin_success"
        );
        user_channel(&mut p, "5");
        to_user("5", n * 10);
        let got = until_pong(&mut p);
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!(got[0].2, json!(n * 10));
        assert_eq!(signin_as(&mut p, &socket, user_data, valid), answer);
        to_user("5", n * 10 + 1);
        assert!(
            until_pong(&mut p).is_empty(),
            "user 5's messages stop ({user_data})"
        );
    }
    // Signing in again as the same user keeps its channel.
    assert_eq!(
        signin_as(&mut p, &socket, r#"{"id":"5"}"#, true),
        "pusher:signin_success"
    );
    user_channel(&mut p, "5");
    assert_eq!(
        signin_as(&mut p, &socket, r#"{"id":"5","name":"again"}"#, true),
        "pusher:signin_success"
    );
    to_user("5", 99);
    assert_eq!(until_pong(&mut p).len(), 1);
}
