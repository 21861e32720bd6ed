//! SPEC section 5 over real sockets against the real binary: the welcome,
//! every row of the message table, every error code, routing precedence and
//! pass-through of client JSON. Presence is off here (see
//! messaging_presence.rs) so that "the next message" is exact.

mod common;

use std::collections::HashSet;

use common::msg::{
    assert_quiet, client, expect_gone, recv_close, recv_json, recv_text, until_pong,
};
use common::{id_of, send_json, send_text, Client, Daemon};
use serde_json::{json, Value};
use tungstenite::Message;

/// Presence off, commands allowed for everyone.
const ANY: &str = "logging_level = \"warn\"\npresence = false\ncommand_policy = \"any\"\n";

/// `n` guest clients with their ids.
fn clients(daemon: &Daemon, n: usize) -> Vec<(Client, String)> {
    (0..n)
        .map(|_| {
            let (ws, welcome) = client(daemon);
            let id = id_of(&welcome);
            (ws, id)
        })
        .collect()
}

fn is_client_id(id: &str) -> bool {
    id.len() == 8 && id.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// Asserts `v` is exactly `{"type":"error","code":code,"message":TEXT}`.
#[track_caller]
fn assert_error(v: &Value, code: &str, sent: &str) {
    let obj = v.as_object().unwrap_or_else(|| panic!("{v}"));
    let mut keys: Vec<&str> = obj.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["code", "message", "type"], "after {sent:?}: {v}");
    assert_eq!(v["type"], "error", "after {sent:?}: {v}");
    assert_eq!(v["code"], code, "after {sent:?}: {v}");
    let text = v["message"].as_str().expect("error message is a string");
    assert!(!text.trim().is_empty(), "after {sent:?}: empty message");
}

/// Sends `text` from `sender` and expects error `code` for it, then that
/// `sender` stays open (its next message is the pong of a ping) and that
/// `bystander` got nothing.
#[track_caller]
fn expect_error(sender: &mut Client, bystander: &mut Client, text: &str, code: &str) {
    send_text(sender, text);
    assert_error(&recv_json(sender), code, text);
    let after = until_pong(sender);
    assert!(after.is_empty(), "after {text:?}: {after:?}");
    let leaked = until_pong(bystander);
    assert!(
        leaked.is_empty(),
        "after {text:?} a bystander got {leaked:?}"
    );
}

#[test]
fn welcome_has_a_fresh_alphanumeric_id_and_a_null_user_for_guests() {
    let daemon = Daemon::start(ANY, &[]);
    let mut live = Vec::new();
    let mut ids = HashSet::new();
    for _ in 0..100 {
        let mut ws = daemon.ws_at("/");
        let raw = recv_text(&mut ws);
        let welcome: Value = serde_json::from_str(&raw).unwrap();
        let id = id_of(&welcome);
        assert!(is_client_id(&id), "{raw}");
        assert_eq!(
            welcome,
            json!({"type": "welcome", "client_id": id, "user": null}),
            "{raw}"
        );
        assert!(ids.insert(id), "duplicate client id in {raw}");
        live.push(ws);
    }
    assert_eq!(ids.len(), 100);
}

#[test]
fn broadcast_reaches_every_client_including_the_sender() {
    let daemon = Daemon::start(ANY, &[]);
    let mut cs = clients(&daemon, 3);
    let sender = cs[0].1.clone();
    send_json(&mut cs[0].0, &json!({"message": "hi all"}));
    let expected = json!({"type": "message", "client_id": sender, "message": "hi all"});
    for (ws, id) in &mut cs {
        assert_eq!(recv_json(ws), expected, "client {id}");
        assert_quiet(ws, id);
    }
}

#[test]
fn private_message_reaches_only_its_target() {
    let daemon = Daemon::start(ANY, &[]);
    let mut cs = clients(&daemon, 3);
    let (a, b) = (cs[0].1.clone(), cs[1].1.clone());
    send_json(&mut cs[0].0, &json!({"to": b, "message": {"x": [1, 2]}}));
    assert_eq!(
        recv_json(&mut cs[1].0),
        json!({"type": "private", "client_id": a, "message": {"x": [1, 2]}})
    );
    for (ws, id) in &mut cs {
        assert_quiet(ws, id);
    }
    // To oneself is a valid target too.
    send_json(&mut cs[0].0, &json!({"to": a, "message": "me"}));
    assert_eq!(
        recv_json(&mut cs[0].0),
        json!({"type": "private", "client_id": a, "message": "me"})
    );
}

#[test]
fn subscribe_is_idempotent_and_unsubscribe_stops_delivery() {
    let daemon = Daemon::start(ANY, &[]);
    let mut cs = clients(&daemon, 2);
    let publisher = cs[1].1.clone();
    let sub = json!({"event": "subscribe", "channel": "news"});
    for _ in 0..2 {
        send_json(&mut cs[0].0, &sub);
        assert_eq!(
            recv_json(&mut cs[0].0),
            json!({"type": "subscribed", "channel": "news"})
        );
    }
    // Subscribed twice, delivered once.
    send_json(
        &mut cs[1].0,
        &json!({"event": "message", "channel": "news", "data": 1}),
    );
    assert_eq!(
        recv_json(&mut cs[0].0),
        json!({"type": "channel", "channel": "news", "client_id": publisher, "data": 1})
    );
    assert_quiet(&mut cs[0].0, "subscriber");
    assert_quiet(&mut cs[1].0, "publisher");

    send_json(
        &mut cs[0].0,
        &json!({"event": "unsubscribe", "channel": "news"}),
    );
    assert_eq!(
        recv_json(&mut cs[0].0),
        json!({"type": "unsubscribed", "channel": "news"})
    );
    send_json(
        &mut cs[1].0,
        &json!({"event": "message", "channel": "news", "data": 2}),
    );
    assert_quiet(&mut cs[1].0, "publisher");
    assert_quiet(&mut cs[0].0, "unsubscribed client");
}

#[test]
fn channel_messages_reach_only_the_channels_subscribers() {
    let daemon = Daemon::start(ANY, &[]);
    let mut cs = clients(&daemon, 4);
    // 0 and 1 on "a", 2 on "b", 3 on nothing (and publishes).
    for (i, channel) in [(0, "a"), (1, "a"), (2, "b")] {
        send_json(
            &mut cs[i].0,
            &json!({"event": "subscribe", "channel": channel}),
        );
        assert_eq!(recv_json(&mut cs[i].0)["type"], "subscribed");
    }
    let publisher = cs[3].1.clone();
    send_json(
        &mut cs[3].0,
        &json!({"event": "message", "channel": "a", "data": {"n": [1, "two"]}}),
    );
    let expected = json!({"type": "channel", "channel": "a", "client_id": publisher, "data": {"n": [1, "two"]}});
    assert_eq!(recv_json(&mut cs[0].0), expected);
    assert_eq!(recv_json(&mut cs[1].0), expected);
    for (ws, id) in &mut cs {
        assert_quiet(ws, id);
    }
    // A subscriber that publishes gets its own message.
    let own = cs[2].1.clone();
    send_json(
        &mut cs[2].0,
        &json!({"event": "message", "channel": "b", "data": null}),
    );
    assert_eq!(
        recv_json(&mut cs[2].0),
        json!({"type": "channel", "channel": "b", "client_id": own, "data": null})
    );
    for (ws, id) in &mut cs {
        assert_quiet(ws, id);
    }
}

#[test]
fn ping_gets_a_pong_whatever_its_value() {
    let daemon = Daemon::start(ANY, &[]);
    let (mut ws, _) = client(&daemon);
    for ping in [json!(1), json!("x"), json!(null), json!({"a": []})] {
        send_json(&mut ws, &json!({ "ping": ping }));
        assert_eq!(recv_json(&mut ws), json!({"type": "pong"}));
    }
}

#[test]
fn commands_are_carried_out_then_acked_and_name_no_sender() {
    let daemon = Daemon::start(ANY, &[]);
    let mut cs = clients(&daemon, 3);
    let (issuer, c) = (cs[0].1.clone(), cs[2].1.clone());
    send_json(
        &mut cs[1].0,
        &json!({"event": "subscribe", "channel": "room"}),
    );
    assert_eq!(recv_json(&mut cs[1].0)["type"], "subscribed");

    // broadcast: everyone, the issuer first gets the message, then the ack.
    send_json(
        &mut cs[0].0,
        &json!({"command": "broadcast", "message": {"k": "v"}}),
    );
    let message = json!({"type": "message", "message": {"k": "v"}});
    assert_eq!(recv_json(&mut cs[0].0), message);
    assert_eq!(
        recv_json(&mut cs[0].0),
        json!({"type": "ack", "command": "broadcast"})
    );
    assert_eq!(recv_json(&mut cs[1].0), message);
    assert_eq!(recv_json(&mut cs[2].0), message);
    for (ws, id) in &mut cs {
        assert_quiet(ws, id);
    }

    // broadcast_to_channel: the subscribers only.
    send_json(
        &mut cs[0].0,
        &json!({"command": "broadcast_to_channel", "channel": "room", "message": "m"}),
    );
    assert_eq!(
        recv_json(&mut cs[0].0),
        json!({"type": "ack", "command": "broadcast_to_channel"})
    );
    assert_eq!(
        recv_json(&mut cs[1].0),
        json!({"type": "channel", "channel": "room", "data": "m"})
    );
    for (ws, id) in &mut cs {
        assert_quiet(ws, id);
    }

    // private_message: the target only.
    send_json(
        &mut cs[0].0,
        &json!({"command": "private_message", "to": c, "message": [1]}),
    );
    assert_eq!(
        recv_json(&mut cs[0].0),
        json!({"type": "ack", "command": "private_message"})
    );
    assert_eq!(
        recv_json(&mut cs[2].0),
        json!({"type": "private", "message": [1]})
    );
    for (ws, id) in &mut cs {
        assert_quiet(ws, id);
    }
    // ... to the issuer itself: the message, then the ack.
    send_json(
        &mut cs[0].0,
        &json!({"command": "private_message", "to": issuer, "message": "self"}),
    );
    assert_eq!(
        recv_json(&mut cs[0].0),
        json!({"type": "private", "message": "self"})
    );
    assert_eq!(
        recv_json(&mut cs[0].0),
        json!({"type": "ack", "command": "private_message"})
    );

    // presence with presence = false: acknowledged, nothing sent.
    send_json(&mut cs[0].0, &json!({"command": "presence"}));
    assert_eq!(
        recv_json(&mut cs[0].0),
        json!({"type": "ack", "command": "presence"})
    );
    for (ws, id) in &mut cs {
        assert_quiet(ws, id);
    }
}

#[test]
fn disconnect_command_closes_the_target_with_4000() {
    let daemon = Daemon::start(ANY, &[]);
    let mut cs = clients(&daemon, 3);
    let target = cs[1].1.clone();
    send_json(
        &mut cs[0].0,
        &json!({"command": "disconnect", "client_id": target}),
    );
    assert_eq!(
        recv_json(&mut cs[0].0),
        json!({"type": "ack", "command": "disconnect"})
    );
    assert_eq!(
        recv_close(&mut cs[1].0),
        (4000, "disconnected by server".to_owned())
    );
    // The close handshake completes and the server closes TCP; nothing else arrives.
    expect_gone(&mut cs[1].0);
    assert_quiet(&mut cs[2].0, "bystander");
    // The target is gone.
    let gone = json!({"to": target, "message": 1}).to_string();
    let (a, rest) = cs.split_at_mut(1);
    expect_error(&mut a[0].0, &mut rest[1].0, &gone, "unknown_client");
}

#[test]
fn invalid_json_including_plain_text() {
    let daemon = Daemon::start(ANY, &[]);
    let mut cs = clients(&daemon, 2);
    let (a, b) = cs.split_at_mut(1);
    for text in [
        "hello there",
        "Hello!",
        "",
        "{",
        "{\"message\":",
        "{\"message\":1,}",
        "{message:1}",
        "{\"message\":1} trailing",
    ] {
        expect_error(&mut a[0].0, &mut b[0].0, text, "invalid_json");
    }
}

#[test]
fn bad_request_for_non_objects_missing_fields_and_wrong_types() {
    let daemon = Daemon::start(ANY, &[]);
    let mut cs = clients(&daemon, 2);
    let b_id = cs[1].1.clone();
    let (a, b) = cs.split_at_mut(1);
    let to_b = |rest: &str| format!(r#"{{"to":"{b_id}"{rest}}}"#);
    let cases = [
        // Not an object.
        "[]".to_owned(),
        "[1,2]".to_owned(),
        "\"message\"".to_owned(),
        "42".to_owned(),
        "null".to_owned(),
        "true".to_owned(),
        // Nothing to route on.
        "{}".to_owned(),
        r#"{"channel":"a","data":1,"client_id":"x"}"#.to_owned(),
        // Private: missing message, `to` not a string.
        to_b(""),
        r#"{"to":5,"message":"x"}"#.to_owned(),
        r#"{"to":null,"message":"x"}"#.to_owned(),
        r#"{"to":["a"],"message":"x"}"#.to_owned(),
        // Channel operations: missing or non-string fields.
        r#"{"event":"subscribe"}"#.to_owned(),
        r#"{"event":"subscribe","channel":5}"#.to_owned(),
        r#"{"event":"unsubscribe"}"#.to_owned(),
        r#"{"event":"unsubscribe","channel":{"a":1}}"#.to_owned(),
        r#"{"event":"message","channel":"a"}"#.to_owned(),
        r#"{"event":"message","data":1}"#.to_owned(),
        r#"{"event":"message","channel":true,"data":1}"#.to_owned(),
        r#"{"event":5,"channel":"a"}"#.to_owned(),
        // Commands: missing or non-string fields, a non-string name.
        r#"{"command":5}"#.to_owned(),
        r#"{"command":"broadcast"}"#.to_owned(),
        r#"{"command":"broadcast_to_channel","message":1}"#.to_owned(),
        r#"{"command":"broadcast_to_channel","channel":"a"}"#.to_owned(),
        r#"{"command":"private_message","message":1}"#.to_owned(),
        r#"{"command":"private_message","to":1,"message":1}"#.to_owned(),
        format!(r#"{{"command":"private_message","to":"{b_id}"}}"#),
        r#"{"command":"disconnect"}"#.to_owned(),
        r#"{"command":"disconnect","client_id":7}"#.to_owned(),
    ];
    for text in &cases {
        expect_error(&mut a[0].0, &mut b[0].0, text, "bad_request");
    }
}

#[test]
fn unknown_client_for_ids_nobody_has() {
    let daemon = Daemon::start(ANY, &[]);
    let mut cs = clients(&daemon, 2);
    let (a, b) = cs.split_at_mut(1);
    for to in [
        "zzzzzzzz",
        "",
        "short",
        "far-too-long-for-an-id",
        "a b c d ",
    ] {
        let private = json!({"to": to, "message": 1}).to_string();
        expect_error(&mut a[0].0, &mut b[0].0, &private, "unknown_client");
        let command = json!({"command": "private_message", "to": to, "message": 1}).to_string();
        expect_error(&mut a[0].0, &mut b[0].0, &command, "unknown_client");
        let kick = json!({"command": "disconnect", "client_id": to}).to_string();
        expect_error(&mut a[0].0, &mut b[0].0, &kick, "unknown_client");
    }
}

#[test]
fn unknown_event_and_unknown_command() {
    let daemon = Daemon::start(ANY, &[]);
    let mut cs = clients(&daemon, 2);
    let (a, b) = cs.split_at_mut(1);
    for text in [
        r#"{"event":"dance","channel":"a"}"#,
        r#"{"event":"","channel":"a"}"#,
        r#"{"event":"Subscribe","channel":"a"}"#,
    ] {
        expect_error(&mut a[0].0, &mut b[0].0, text, "unknown_event");
    }
    for text in [
        r#"{"command":"reboot"}"#,
        r#"{"command":""}"#,
        r#"{"command":"Broadcast","message":1}"#,
    ] {
        expect_error(&mut a[0].0, &mut b[0].0, text, "unknown_command");
    }
}

#[test]
fn invalid_channel_names() {
    let daemon = Daemon::start(ANY, &[]);
    let mut cs = clients(&daemon, 2);
    let (a, b) = cs.split_at_mut(1);
    let bad = [
        String::new(),
        "x".repeat(129),
        "é".repeat(65), // 130 bytes
        "a\u{1}b".to_owned(),
        "tab\t".to_owned(),
        "new\nline".to_owned(),
        "del\u{7f}".to_owned(),
        "c1\u{85}".to_owned(),
    ];
    for name in &bad {
        for text in [
            json!({"event": "subscribe", "channel": name}),
            json!({"event": "unsubscribe", "channel": name}),
            json!({"event": "message", "channel": name, "data": 1}),
            json!({"command": "broadcast_to_channel", "channel": name, "message": 1}),
        ] {
            expect_error(
                &mut a[0].0,
                &mut b[0].0,
                &text.to_string(),
                "invalid_channel",
            );
        }
    }
    // The limits themselves are fine: 1 byte, 128 bytes, 128 bytes of UTF-8.
    for name in ["x".to_owned(), "x".repeat(128), "é".repeat(64)] {
        send_json(&mut a[0].0, &json!({"event": "subscribe", "channel": name}));
        assert_eq!(
            recv_json(&mut a[0].0),
            json!({"type": "subscribed", "channel": name})
        );
    }
}

#[test]
fn too_many_channels() {
    let config = format!("{ANY}max_channels_per_client = 2\n");
    let daemon = Daemon::start(&config, &[]);
    let mut cs = clients(&daemon, 2);
    let (a, b) = cs.split_at_mut(1);
    let (a, b) = (&mut a[0].0, &mut b[0].0);
    let sub = |c: &str| json!({"event": "subscribe", "channel": c});
    for c in ["one", "two", "one"] {
        send_json(a, &sub(c));
        assert_eq!(
            recv_json(a),
            json!({"type": "subscribed", "channel": c}),
            "re-subscribing is not a new channel"
        );
    }
    expect_error(a, b, &sub("three").to_string(), "too_many_channels");
    // The refused subscription did not happen.
    send_json(
        b,
        &json!({"event": "message", "channel": "three", "data": 1}),
    );
    assert_quiet(a, "refused subscriber");
    // Room again after an unsubscribe; the limit is per client.
    send_json(a, &json!({"event": "unsubscribe", "channel": "one"}));
    assert_eq!(recv_json(a)["type"], "unsubscribed");
    send_json(a, &sub("three"));
    assert_eq!(
        recv_json(a),
        json!({"type": "subscribed", "channel": "three"})
    );
    for c in ["x", "y"] {
        send_json(b, &sub(c));
        assert_eq!(recv_json(b)["type"], "subscribed");
    }
}

#[test]
fn forbidden_for_every_command_when_the_policy_refuses() {
    // The default policy is admin; guests may send no command.
    let daemon = Daemon::start("logging_level = \"warn\"\npresence = false\n", &[]);
    let mut cs = clients(&daemon, 2);
    let b_id = cs[1].1.clone();
    let (a, b) = cs.split_at_mut(1);
    for text in [
        json!({"command": "broadcast", "message": 1}),
        json!({"command": "broadcast_to_channel", "channel": "c", "message": 1}),
        json!({"command": "private_message", "to": b_id, "message": 1}),
        json!({"command": "disconnect", "client_id": b_id}),
        json!({"command": "presence"}),
        // Whatever the name or fields.
        json!({"command": "reboot"}),
        json!({"command": 5}),
        json!({"command": "broadcast"}),
        json!({"command": "broadcast", "message": 1, "to": b_id}),
    ] {
        expect_error(&mut a[0].0, &mut b[0].0, &text.to_string(), "forbidden");
    }
}

#[test]
fn binary_messages_are_unsupported() {
    let daemon = Daemon::start(ANY, &[]);
    let mut cs = clients(&daemon, 2);
    let (a, b) = cs.split_at_mut(1);
    for payload in [br#"{"message":1}"#.to_vec(), vec![0, 255, 1], Vec::new()] {
        a[0].0.send(Message::Binary(payload)).unwrap();
        assert_error(&recv_json(&mut a[0].0), "binary_unsupported", "binary");
        assert_quiet(&mut a[0].0, "binary sender");
        assert_quiet(&mut b[0].0, "bystander");
    }
}

#[test]
fn routing_precedence_command_event_to_message_ping() {
    let daemon = Daemon::start(ANY, &[]);
    let mut cs = clients(&daemon, 2);
    let (a_id, b_id) = (cs[0].1.clone(), cs[1].1.clone());
    let (a, b) = cs.split_at_mut(1);
    let (a, b) = (&mut a[0].0, &mut b[0].0);

    // command beats everything; the lower-precedence keys are not even
    // looked at (an unknown event or client would otherwise be an error).
    send_text(
        a,
        r#"{"ping":1,"message":"m1","to":"nobody00","event":"bogus","channel":"c1","command":"broadcast"}"#,
    );
    let broadcast = json!({"type": "message", "message": "m1"});
    assert_eq!(recv_json(a), broadcast);
    assert_eq!(recv_json(a), json!({"type": "ack", "command": "broadcast"}));
    assert_eq!(recv_json(b), broadcast);
    assert_quiet(a, "a");
    assert_quiet(b, "b");

    // event beats to, message and ping.
    send_text(
        a,
        r#"{"ping":1,"message":"m2","to":"nobody00","event":"subscribe","channel":"c2"}"#,
    );
    assert_eq!(recv_json(a), json!({"type": "subscribed", "channel": "c2"}));
    assert_quiet(a, "a");
    assert_quiet(b, "b");

    // to beats message and ping.
    send_text(a, &format!(r#"{{"ping":1,"message":"m3","to":"{b_id}"}}"#));
    assert_eq!(
        recv_json(b),
        json!({"type": "private", "client_id": a_id, "message": "m3"})
    );
    assert_quiet(a, "a");
    assert_quiet(b, "b");

    // message beats ping.
    send_text(a, r#"{"ping":1,"message":"m4"}"#);
    let m4 = json!({"type": "message", "client_id": a_id, "message": "m4"});
    assert_eq!(recv_json(a), m4);
    assert_eq!(recv_json(b), m4);
    assert_quiet(a, "a");
    assert_quiet(b, "b");

    // A present key routes even when its value is wrong: `to` with a
    // non-string is a bad private message, not a broadcast.
    expect_error(a, b, r#"{"message":"m5","to":5}"#, "bad_request");
    expect_error(a, b, r#"{"ping":1,"event":null}"#, "bad_request");
}

#[test]
fn client_json_values_pass_through_byte_for_byte() {
    let daemon = Daemon::start(ANY, &[]);
    let mut cs = clients(&daemon, 2);
    let (a_id, b_id) = (cs[0].1.clone(), cs[1].1.clone());
    let (a, b) = cs.split_at_mut(1);
    let (a, b) = (&mut a[0].0, &mut b[0].0);
    send_json(b, &json!({"event": "subscribe", "channel": "raw"}));
    assert_eq!(recv_json(b)["type"], "subscribed");

    // Values a parse-and-reserialise would change: 1.0, exponents, -0,
    // integers beyond 64 bits, string escapes, key order and spacing.
    let values = [
        "1.0",
        "-0",
        "2E3",
        "100000000000000000000000000001",
        "0.1000000000000000055511151231257827",
        r#""caf\u00e9 \/ \ud83d\ude00""#,
        r#"{"b":1, "a":[1.0, 2e3, {"z":null}], "s":"\u0041"}"#,
        r#"[ ]"#,
    ];
    for value in values {
        let check = |raw: &str, ty: &str| {
            assert!(
                raw.contains(value),
                "{ty}: {value} not passed through verbatim in {raw}"
            );
            let parsed: Value = serde_json::from_str(raw).expect("server JSON");
            assert_eq!(parsed["type"], ty, "{raw}");
        };
        // {"message": M}
        send_text(a, &format!(r#"{{"message": {value}}}"#));
        let raw = recv_text(b);
        check(&raw, "message");
        let parsed: Value = serde_json::from_str(&raw).unwrap();
        assert_eq!(parsed["client_id"], a_id.as_str());
        let expected: Value = serde_json::from_str(value).unwrap();
        assert_eq!(parsed["message"], expected);
        check(&recv_text(a), "message");
        // {"to": ID, "message": M}
        send_text(a, &format!(r#"{{"to":"{b_id}","message":{value}}}"#));
        check(&recv_text(b), "private");
        // {"event": "message", "channel": C, "data": D}
        send_text(
            a,
            &format!(r#"{{"event":"message","channel":"raw","data":{value}}}"#),
        );
        check(&recv_text(b), "channel");
        // Commands pass values through too.
        send_text(
            a,
            &format!(r#"{{"command":"private_message","to":"{b_id}","message":{value}}}"#),
        );
        check(&recv_text(b), "private");
        assert_eq!(recv_json(a)["type"], "ack");
        assert_quiet(a, "a");
        assert_quiet(b, "b");
    }

    // The exact case of the original bug report: 1.0 stays 1.0.
    send_text(a, r#"{"message": 1.0}"#);
    let raw = recv_text(b);
    assert!(raw.contains(":1.0") || raw.contains(": 1.0"), "{raw}");
    assert!(!raw.contains(":1}") && !raw.contains(":1,"), "{raw}");
}
