//! Commands: the five of SPEC section 5, their errors, and `command_policy`.

use serde_json::json;

use super::*;

fn ack(name: &str) -> Value {
    json!({"type":"ack","command":name})
}

#[test]
fn broadcast_command_has_no_sender_and_is_acked_last() {
    let mut h = Harness::new();
    h.join(1, None);
    h.join(2, None);
    h.text(2, r#"{"command":"broadcast","message":1.0}"#);
    assert_eq!(
        h.take_raw(),
        [
            (1, r#"{"type":"message","message":1.0}"#.to_owned()),
            (2, r#"{"type":"message","message":1.0}"#.to_owned()),
            (2, r#"{"type":"ack","command":"broadcast"}"#.to_owned()),
        ]
    );
    assert_eq!(h.error_code(1, r#"{"command":"broadcast"}"#), "bad_request");
}

#[test]
fn broadcast_to_channel_command() {
    let mut h = Harness::new();
    h.join(1, None);
    h.join(2, None);
    h.join(3, None);
    for conn in [3, 2] {
        h.text(conn, r#"{"event":"subscribe","channel":"c"}"#);
    }
    h.take();
    h.text(
        1,
        r#"{"command":"broadcast_to_channel","channel":"c","message":{"a":1}}"#,
    );
    let expected = json!({"type":"channel","channel":"c","data":{"a":1}});
    assert_eq!(
        h.take(),
        [
            (3, expected.clone()),
            (2, expected),
            (1, ack("broadcast_to_channel"))
        ]
    );
    // An empty channel: nothing to deliver, still carried out.
    h.text(
        1,
        r#"{"command":"broadcast_to_channel","channel":"none","message":1}"#,
    );
    assert_eq!(h.take(), [(1, ack("broadcast_to_channel"))]);
    for (text, code) in [
        (
            r#"{"command":"broadcast_to_channel","channel":"","message":1}"#,
            "invalid_channel",
        ),
        (
            r#"{"command":"broadcast_to_channel","channel":"a\u0007","message":1}"#,
            "invalid_channel",
        ),
        (
            r#"{"command":"broadcast_to_channel","message":1}"#,
            "bad_request",
        ),
        (
            r#"{"command":"broadcast_to_channel","channel":1,"message":1}"#,
            "bad_request",
        ),
        (
            r#"{"command":"broadcast_to_channel","channel":"c"}"#,
            "bad_request",
        ),
        (
            r#"{"command":"broadcast_to_channel","channel":""}"#,
            "bad_request",
        ),
    ] {
        assert_eq!(h.error_code(1, text), code, "{text}");
    }
}

#[test]
fn private_message_command() {
    let mut h = Harness::new();
    h.join(1, None);
    let b = h.join(2, None);
    h.text(
        1,
        &format!(r#"{{"command":"private_message","to":"{b}","message":"psst"}}"#),
    );
    assert_eq!(
        h.take(),
        [
            (2, json!({"type":"private","message":"psst"})),
            (1, ack("private_message"))
        ]
    );
    for (text, code) in [
        (
            r#"{"command":"private_message","to":"AAAAAAAA","message":1}"#.to_owned(),
            "unknown_client",
        ),
        (
            r#"{"command":"private_message","to":7,"message":1}"#.to_owned(),
            "bad_request",
        ),
        (
            r#"{"command":"private_message","message":1}"#.to_owned(),
            "bad_request",
        ),
        (
            format!(r#"{{"command":"private_message","to":"{b}"}}"#),
            "bad_request",
        ),
    ] {
        assert_eq!(h.error_code(1, &text), code, "{text}");
    }
}

#[test]
fn disconnect_command_closes_and_forgets_the_target() {
    let mut h = Harness::new();
    let a = h.join(1, None);
    let b = h.join(2, Some(user("9", "Bo", None, false)));
    h.text(2, r#"{"event":"subscribe","channel":"c"}"#);
    h.tick();
    h.take();
    h.take_events();
    assert_eq!(h.router.poll_timeout(), None);
    h.at(1000);
    h.text(
        1,
        &format!(r#"{{"command":"disconnect","client_id":"{b}"}}"#),
    );
    assert_eq!(
        h.out.closed,
        [(2, 4000, "disconnected by server".to_owned())]
    );
    assert_eq!(h.take(), [(1, ack("disconnect"))]);
    assert!(h
        .take_events()
        .contains(&Ev::Disconnect(b.clone(), Some("9".into()))));
    assert_eq!(h.router.len(), 1);
    assert_eq!(h.router.client_id(2), None);
    assert_eq!(h.router.channels.channel_count(), 0);
    assert_eq!(h.router.poll_timeout(), Some(h.now), "presence changed");
    // The loop's later disconnect for it is a no-op.
    h.disconnect(2);
    assert!(h.take_events().is_empty());
    // It is gone for private messages too.
    h.out.closed.clear();
    let text = format!(r#"{{"to":"{b}","message":1}}"#);
    assert_eq!(h.error_code(1, &text), "unknown_client");
    for (text, code) in [
        (
            r#"{"command":"disconnect","client_id":"AAAAAAAA"}"#,
            "unknown_client",
        ),
        (r#"{"command":"disconnect","client_id":5}"#, "bad_request"),
        (r#"{"command":"disconnect"}"#, "bad_request"),
        (r#"{"command":"disconnect","to":"AAAAAAAA"}"#, "bad_request"),
    ] {
        assert_eq!(h.error_code(1, text), code, "{text}");
    }
    assert!(h.out.closed.is_empty());
    // Disconnecting yourself: closed, forgotten, and no ack to nobody.
    h.text(
        1,
        &format!(r#"{{"command":"disconnect","client_id":"{a}"}}"#),
    );
    assert_eq!(
        h.out.closed,
        [(1, 4000, "disconnected by server".to_owned())]
    );
    assert!(h.take().is_empty());
    assert!(h.router.is_empty());
}

#[test]
fn presence_command_sends_at_once_and_cancels_the_pending_update() {
    let mut h = Harness::new();
    h.join(1, None);
    h.join(2, None);
    assert!(h.router.poll_timeout().is_some());
    h.text(2, r#"{"command":"presence"}"#);
    let msgs = h.take();
    assert_eq!(msgs.len(), 3);
    assert_eq!((msgs[0].0, msgs[1].0), (1, 2));
    assert_eq!(msgs[0].1, msgs[1].1);
    assert_eq!(msgs[0].1["type"], "presence");
    assert_eq!(msgs[0].1["count"], 2);
    assert_eq!(msgs[2], (2, ack("presence")));
    assert_eq!(h.router.poll_timeout(), None);
}

#[test]
fn presence_command_with_presence_disabled_only_acks() {
    let mut h = Harness::with(RouterConfig {
        presence: false,
        command_policy: CommandPolicy::Any,
        ..RouterConfig::default()
    });
    h.join(1, None);
    h.text(1, r#"{"command":"presence"}"#);
    assert_eq!(h.take(), [(1, ack("presence"))]);
}

#[test]
fn command_name_errors() {
    let mut h = Harness::new();
    h.join(1, None);
    for text in [
        r#"{"command":"shutdown"}"#,
        r#"{"command":""}"#,
        r#"{"command":"Broadcast","message":1}"#,
    ] {
        assert_eq!(h.error_code(1, text), "unknown_command", "{text}");
    }
    for text in [
        r#"{"command":1}"#,
        r#"{"command":null}"#,
        r#"{"command":["broadcast"],"message":1}"#,
        r#"{"command":{"name":"presence"}}"#,
    ] {
        assert_eq!(h.error_code(1, text), "bad_request", "{text}");
    }
}

/// Whether each of guest, user and admin may run `presence` under `policy`.
fn allowed(policy: CommandPolicy) -> [bool; 3] {
    let mut h = Harness::with(RouterConfig {
        command_policy: policy,
        ..RouterConfig::default()
    });
    h.join(1, None);
    h.join(2, Some(user("u", "User", None, false)));
    h.join(3, Some(user("a", "Admin", None, true)));
    [1, 2, 3].map(|conn| {
        h.text(conn, r#"{"command":"presence"}"#);
        let msgs = h.take();
        let last = &msgs.last().expect("a reply").1;
        if last["type"] == "ack" {
            true
        } else {
            assert_eq!(msgs.len(), 1);
            assert_eq!(last["code"], "forbidden");
            false
        }
    })
}

#[test]
fn each_policy_admits_the_right_connections() {
    assert_eq!(allowed(CommandPolicy::Any), [true, true, true]);
    assert_eq!(allowed(CommandPolicy::Authenticated), [false, true, true]);
    assert_eq!(allowed(CommandPolicy::Admin), [false, false, true]);
    assert_eq!(allowed(CommandPolicy::Off), [false, false, false]);
}

#[test]
fn forbidden_comes_before_every_other_check() {
    let mut h = Harness::with(RouterConfig::default());
    h.join(1, Some(user("u", "User", None, false)));
    for text in [
        r#"{"command":"broadcast","message":1}"#,
        r#"{"command":"broadcast"}"#,
        r#"{"command":"nope"}"#,
        r#"{"command":5}"#,
        r#"{"command":null}"#,
        r#"{"command":"disconnect","client_id":"AAAAAAAA"}"#,
        r#"{"command":"broadcast_to_channel","channel":"","message":1}"#,
    ] {
        assert_eq!(h.error_code(1, text), "forbidden", "{text}");
    }
    assert!(h.out.closed.is_empty());
}
