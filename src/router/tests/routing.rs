//! Welcome, broadcast, private, channels, ping, errors and precedence.

use std::collections::HashSet;
use std::rc::Rc;

use serde_json::json;

use super::*;

#[test]
fn guest_welcome_is_the_first_message() {
    let mut h = Harness::new();
    let id = h.connect(7, None);
    assert_eq!(id.len(), 8);
    assert!(id.bytes().all(|b| b.is_ascii_alphanumeric()));
    assert_eq!(
        h.take(),
        [(7, json!({"type":"welcome","client_id":id,"user":null}))]
    );
    assert_eq!(h.router.client_id(7), Some(id.as_str()));
    assert_eq!(h.router.user(7), None);
    assert_eq!(h.router.len(), 1);
    assert!(!h.router.is_empty());
}

#[test]
fn user_welcome_carries_id_name_email_but_not_admin() {
    let mut h = Harness::new();
    let ann = user("42", "Ann", Some("ann@example.com"), true);
    let id = h.connect(1, Some(ann.clone()));
    assert_eq!(
        h.take(),
        [(
            1,
            json!({"type":"welcome","client_id":id,
                   "user":{"id":"42","name":"Ann","email":"ann@example.com"}})
        )]
    );
    assert_eq!(h.router.user(1), Some(&ann));
    let id = h.connect(2, Some(user("43", "Bob", None, false)));
    assert_eq!(
        h.take(),
        [(
            2,
            json!({"type":"welcome","client_id":id,"user":{"id":"43","name":"Bob","email":null}})
        )]
    );
}

#[test]
fn connect_and_disconnect_fire_events() {
    let mut h = Harness::new();
    let a = h.connect(1, Some(user("42", "Ann", None, false)));
    let welcome = h.take_raw().remove(0).1;
    assert_eq!(
        h.take_events(),
        [
            Ev::Connect(a.clone(), Some("42".into())),
            Ev::Send(a.clone(), welcome)
        ]
    );
    h.disconnect(1);
    h.disconnect(1);
    assert_eq!(h.take_events(), [Ev::Disconnect(a, Some("42".into()))]);
    assert!(h.router.is_empty());
    assert_eq!(h.router.client_id(1), None);
    assert!(h.take().is_empty());
}

#[test]
fn client_ids_are_unique_and_well_formed() {
    let mut h = Harness::new();
    let mut ids = HashSet::new();
    for conn in 0..2000 {
        let id = h.connect(conn, None);
        assert_eq!(id.len(), 8);
        assert!(id.bytes().all(|b| b.is_ascii_alphanumeric()), "{id}");
        assert!(ids.insert(id));
    }
    assert_eq!(h.router.len(), 2000);
}

#[test]
fn reconnecting_a_conn_replaces_the_old_client() {
    let mut h = Harness::new();
    let old = h.join(1, None);
    h.take_events();
    let new = h.join(1, None);
    assert_ne!(old, new);
    assert_eq!(h.router.len(), 1);
    assert!(matches!(&h.take_events()[..], [Ev::Disconnect(id, None), ..] if *id == old));
    h.join(2, None);
    assert_eq!(
        h.error_code(2, &format!(r#"{{"to":"{old}","message":1}}"#)),
        "unknown_client"
    );
}

#[test]
fn broadcast_reaches_everyone_once() {
    let mut h = Harness::new();
    let a = h.join(5, None);
    h.join(2, None);
    h.join(9, None);
    h.text(5, r#"{"message":"hi"}"#);
    let expected = json!({"type":"message","client_id":a,"message":"hi"});
    // In slot order: the order among recipients is seen by none of them.
    assert_eq!(
        h.take(),
        [(2, expected.clone()), (5, expected.clone()), (9, expected)]
    );
}

#[test]
fn fan_out_shares_one_frame() {
    let mut h = Harness::new();
    for conn in 0..4 {
        h.join(conn, None);
    }
    h.take_events();
    h.text(0, r#"{"message":{"big":[1,2,3]}}"#);
    assert_eq!(h.out.sent.len(), 4);
    let first = &h.out.sent[0].1;
    assert!(h.out.sent.iter().all(|(_, f)| Rc::ptr_eq(f, first)));
    // Handler::send saw the frame's JSON once per recipient.
    let json = payload(first).to_owned();
    let sends: Vec<_> = h
        .take_events()
        .into_iter()
        .filter_map(|e| match e {
            Ev::Send(_, text) => Some(text),
            Ev::Receive(..) => None,
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(sends, vec![json; 4]);
    h.take();
    for conn in 0..3 {
        h.text(conn, r#"{"event":"subscribe","channel":"c"}"#);
    }
    h.take();
    h.text(3, r#"{"event":"message","channel":"c","data":1}"#);
    assert_eq!(h.out.sent.len(), 3);
    let first = &h.out.sent[0].1;
    assert!(h.out.sent.iter().all(|(_, f)| Rc::ptr_eq(f, first)));
}

#[test]
fn values_pass_through_byte_for_byte() {
    let mut h = Harness::new();
    let a = h.join(1, None);
    for m in [
        "1.0",
        "123456789012345678901234567890",
        "-0",
        "1e400",
        r#""caf\u00e9 \ud83d\ude00""#,
        r#"{ "nested" : [ 1 , { "a" : null } ] }"#,
        "null",
        "false",
        "[]",
    ] {
        h.text(1, &format!(r#"{{ "message" : {m} }}"#));
        assert_eq!(
            h.take_raw(),
            [(
                1,
                format!(r#"{{"type":"message","client_id":"{a}","message":{m}}}"#)
            )]
        );
    }
    h.text(1, r#"{"event":"subscribe","channel":"c"}"#);
    h.take();
    h.text(1, r#"{"event":"message","channel":"c","data":1.50}"#);
    assert_eq!(
        h.take_raw(),
        [(
            1,
            format!(r#"{{"type":"channel","channel":"c","client_id":"{a}","data":1.50}}"#)
        )]
    );
}

#[test]
fn large_messages_use_the_long_length_forms() {
    let mut h = Harness::new();
    h.join(1, None);
    for size in [200, 70_000] {
        let m = format!("\"{}\"", "x".repeat(size));
        h.text(1, &format!(r#"{{"message":{m}}}"#));
        let msgs = h.take();
        assert_eq!(msgs[0].1["message"].as_str().map(str::len), Some(size));
    }
}

#[test]
fn private_reaches_only_the_target() {
    let mut h = Harness::new();
    let a = h.join(1, None);
    let b = h.join(2, None);
    h.join(3, None);
    h.text(1, &format!(r#"{{"to":"{b}","message":{{"x":1}}}}"#));
    assert_eq!(
        h.take(),
        [(2, json!({"type":"private","client_id":a,"message":{"x":1}}))]
    );
    // To yourself is allowed.
    h.text(1, &format!(r#"{{"to":"{a}","message":"me"}}"#));
    assert_eq!(
        h.take(),
        [(1, json!({"type":"private","client_id":a,"message":"me"}))]
    );
    // An escaped id is the same id.
    let escaped: String = b.chars().map(|c| format!("\\u{:04x}", c as u32)).collect();
    h.text(3, &format!(r#"{{"to":"{escaped}","message":null}}"#));
    assert_eq!(h.take()[0].0, 2);
}

#[test]
fn private_errors() {
    let mut h = Harness::new();
    let a = h.join(1, None);
    for unknown in ["ZZZZZZZZ", "", "short", "not-an-id", "waytoolongid"] {
        let text = format!(r#"{{"to":"{unknown}","message":1}}"#);
        assert_eq!(h.error_code(1, &text), "unknown_client", "{text}");
    }
    for bad in [
        r#"{"to":5,"message":1}"#,
        r#"{"to":null,"message":1}"#,
        r#"{"to":["x"],"message":1}"#,
        &format!(r#"{{"to":"{a}"}}"#),
    ] {
        assert_eq!(h.error_code(1, bad), "bad_request", "{bad}");
    }
}

#[test]
fn subscribe_and_unsubscribe_answer_the_sender() {
    let mut h = Harness::new();
    h.join(1, None);
    h.join(2, None);
    for _ in 0..2 {
        h.text(1, r#"{"event":"subscribe","channel":"news"}"#);
        assert_eq!(
            h.take(),
            [(1, json!({"type":"subscribed","channel":"news"}))]
        );
    }
    assert_eq!(h.router.channels.count(1), 1);
    for _ in 0..2 {
        h.text(1, r#"{"event":"unsubscribe","channel":"news"}"#);
        assert_eq!(
            h.take(),
            [(1, json!({"type":"unsubscribed","channel":"news"}))]
        );
    }
    assert_eq!(h.router.channels.channel_count(), 0);
    // Names are decoded, and echoed in their decoded form.
    h.text(2, r#"{"event":"subscribe","channel":"caf\u00e9"}"#);
    assert_eq!(
        h.take(),
        [(2, json!({"type":"subscribed","channel":"café"}))]
    );
    assert_eq!(h.router.channels.members("café").collect::<Vec<_>>(), [2]);
}

#[test]
fn channel_messages_reach_subscribers_in_subscription_order() {
    let mut h = Harness::new();
    let a = h.join(1, None);
    let b = h.join(2, None);
    h.join(3, None);
    h.join(4, None);
    for conn in [4, 2] {
        h.text(conn, r#"{"event":"subscribe","channel":"c"}"#);
    }
    h.text(3, r#"{"event":"subscribe","channel":"other"}"#);
    h.take();
    // The sender need not be subscribed, and then does not get a copy.
    h.text(1, r#"{"event":"message","channel":"c","data":[1]}"#);
    let expected = json!({"type":"channel","channel":"c","client_id":a,"data":[1]});
    assert_eq!(h.take(), [(4, expected.clone()), (2, expected)]);
    // A subscribed sender does.
    h.text(2, r#"{"event":"message","channel":"c","data":null}"#);
    let expected = json!({"type":"channel","channel":"c","client_id":b,"data":null});
    assert_eq!(h.take(), [(4, expected.clone()), (2, expected)]);
    // A channel nobody is in: nothing, and no error.
    h.text(1, r#"{"event":"message","channel":"empty","data":1}"#);
    assert!(h.take().is_empty());
}

#[test]
fn channel_errors() {
    let mut h = Harness::with(RouterConfig {
        max_channels_per_client: 2,
        ..RouterConfig::default()
    });
    h.join(1, None);
    let long = "x".repeat(129);
    for event in ["subscribe", "unsubscribe", "message"] {
        for name in ["", long.as_str(), "a\\nb", "\\u0000", "x\\u007f"] {
            let text = format!(r#"{{"event":"{event}","channel":"{name}","data":1}}"#);
            assert_eq!(h.error_code(1, &text), "invalid_channel", "{text}");
        }
        for bad in [
            format!(r#"{{"event":"{event}"}}"#),
            format!(r#"{{"event":"{event}","channel":5,"data":1}}"#),
            format!(r#"{{"event":"{event}","channel":null,"data":1}}"#),
        ] {
            assert_eq!(h.error_code(1, &bad), "bad_request", "{bad}");
        }
    }
    let ok_128 = format!(r#"{{"event":"subscribe","channel":"{}"}}"#, "y".repeat(128));
    h.text(1, &ok_128);
    assert_eq!(h.take()[0].1["type"], "subscribed");
    // Missing data is bad_request even when the name is also invalid.
    assert_eq!(
        h.error_code(1, r#"{"event":"message","channel":"c"}"#),
        "bad_request"
    );
    assert_eq!(
        h.error_code(1, r#"{"event":"message","channel":""}"#),
        "bad_request"
    );
    for bad in [r#"{"event":5,"channel":"c"}"#, r#"{"event":null}"#] {
        assert_eq!(h.error_code(1, bad), "bad_request", "{bad}");
    }
    for unknown in ["publish", "Subscribe", ""] {
        let text = format!(r#"{{"event":"{unknown}","channel":"c"}}"#);
        assert_eq!(h.error_code(1, &text), "unknown_event", "{text}");
    }
    h.text(1, r#"{"event":"subscribe","channel":"a"}"#);
    h.take();
    assert_eq!(
        h.error_code(1, r#"{"event":"subscribe","channel":"b"}"#),
        "too_many_channels"
    );
    // Re-subscribing at the limit is fine; it does not count twice.
    h.text(1, r#"{"event":"subscribe","channel":"a"}"#);
    assert_eq!(h.take()[0].1["type"], "subscribed");
    assert_eq!(h.router.channels.count(1), 2);
}

#[test]
fn disconnect_removes_the_client_from_every_channel() {
    let mut h = Harness::new();
    h.join(1, None);
    h.join(2, None);
    for channel in ["a", "b", "c"] {
        h.text(
            1,
            &format!(r#"{{"event":"subscribe","channel":"{channel}"}}"#),
        );
    }
    h.text(2, r#"{"event":"subscribe","channel":"b"}"#);
    h.take();
    h.disconnect(1);
    assert_eq!(h.router.channels.channel_count(), 1);
    assert_eq!(h.router.channels.member_count(), 1);
    h.text(2, r#"{"event":"message","channel":"b","data":1}"#);
    assert_eq!(
        h.take().into_iter().map(|(c, _)| c).collect::<Vec<_>>(),
        [2]
    );
    h.disconnect(2);
    assert_eq!(h.router.channels.channel_count(), 0);
    assert_eq!(h.router.channels.member_count(), 0);
}

#[test]
fn ping_gets_pong() {
    let mut h = Harness::new();
    h.join(1, None);
    h.join(2, None);
    for text in [
        r#"{"ping":1}"#,
        r#"{"ping":null}"#,
        r#"{"ping":{"t":5},"x":1}"#,
    ] {
        h.text(1, text);
        assert_eq!(h.take_raw(), [(1, r#"{"type":"pong"}"#.to_owned())]);
    }
}

#[test]
fn malformed_messages() {
    let mut h = Harness::new();
    h.join(1, None);
    for text in [
        "",
        "{",
        "not json",
        "{\"message\":}",
        "{\"message\":1} {}",
        "[1,",
    ] {
        assert_eq!(h.error_code(1, text), "invalid_json", "{text:?}");
    }
    for text in [
        "[]",
        "[{\"message\":1}]",
        "\"message\"",
        "42",
        "null",
        "{}",
        "{\"foo\":1}",
        "{\"message\":1,\"message\":2}",
        // Well-formed JSON whatever the range of its numbers (RFC 8259 grammar).
        "2.1E3646668853",
        "[1E400]",
    ] {
        assert_eq!(h.error_code(1, text), "bad_request", "{text:?}");
    }
    // A key nobody reads may hold any well-formed value, a number beyond f64 included.
    h.text(1, r#"{"x":1E400,"message":"hi"}"#);
    let got = h.take();
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].1["message"], "hi", "{got:?}");
}

#[test]
fn routing_precedence_goes_by_key_presence() {
    let mut h = Harness::new();
    let a = h.join(1, None);
    let b = h.join(2, None);
    // command beats event, to, message and ping.
    h.text(
        1,
        &format!(r#"{{"message":"m","to":"{b}","event":"subscribe","channel":"c","ping":1,"command":"broadcast"}}"#),
    );
    let got = h.take();
    assert_eq!(got[0].1, json!({"type":"message","message":"m"}));
    assert_eq!(got[2].1, json!({"type":"ack","command":"broadcast"}));
    // event beats to, message and ping.
    h.text(
        1,
        &format!(r#"{{"ping":1,"message":"m","to":"{b}","event":"subscribe","channel":"c"}}"#),
    );
    assert_eq!(h.take(), [(1, json!({"type":"subscribed","channel":"c"}))]);
    // to beats message and ping.
    h.text(1, &format!(r#"{{"ping":1,"message":"m","to":"{b}"}}"#));
    assert_eq!(
        h.take(),
        [(2, json!({"type":"private","client_id":a,"message":"m"}))]
    );
    // message beats ping.
    h.text(1, r#"{"ping":1,"message":"m"}"#);
    assert_eq!(h.take().len(), 2);
    // A null value is still a present key: no fall-through.
    assert_eq!(h.error_code(1, r#"{"to":null,"message":1}"#), "bad_request");
    assert_eq!(
        h.error_code(1, r#"{"event":null,"message":1}"#),
        "bad_request"
    );
    assert_eq!(
        h.error_code(1, r#"{"command":null,"message":1}"#),
        "bad_request"
    );
}

#[test]
fn command_key_routes_to_commands_even_when_forbidden() {
    let mut h = Harness::with(RouterConfig::default());
    h.join(1, None);
    assert_eq!(
        h.error_code(1, r#"{"command":"x","message":1}"#),
        "forbidden"
    );
}

#[test]
fn binary_is_unsupported_but_the_connection_stays() {
    let mut h = Harness::new();
    h.join(1, None);
    h.router.handle_binary(1, h.now, &mut h.out);
    let msgs = h.take();
    assert_eq!(msgs.len(), 1);
    assert_error_shape(&msgs[0].1);
    assert_eq!(msgs[0].1["code"], "binary_unsupported");
    assert!(h.out.closed.is_empty());
    assert_eq!(h.router.len(), 1);
    // Unknown connections are ignored.
    h.router.handle_binary(99, h.now, &mut h.out);
    assert!(h.take().is_empty());
}

#[test]
fn receive_fires_first_with_the_raw_text() {
    let mut h = Harness::new();
    let a = h.join(1, None);
    h.take_events();
    for text in [r#"{"ping":1}"#, "garbage {"] {
        h.text(1, text);
        let events = h.take_events();
        assert_eq!(events[0], Ev::Receive(a.clone(), text.to_owned()));
        assert!(matches!(&events[1..], [Ev::Send(to, _)] if *to == a));
    }
}

#[test]
fn unknown_connections_are_ignored() {
    let mut h = Harness::new();
    h.join(1, None);
    h.take_events();
    h.text(99, r#"{"message":1}"#);
    h.disconnect(99);
    assert!(h.take().is_empty());
    assert!(h.take_events().is_empty());
    assert_eq!(h.router.client_id(99), None);
}

#[test]
fn a_panicking_handler_leaves_the_tables_consistent() {
    struct Boom;
    impl Handler for Boom {
        fn connect(&mut self, _: &str, _: Option<&User>) {
            panic!("handler bug");
        }
    }
    let mut router = Router::new(RouterConfig::default(), Box::new(Boom), 1);
    let mut out = MockOut::default();
    let now = Instant::now();
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        router.connect(1, None, 0, now, &mut out);
    }));
    assert!(caught.is_err());
    // The loop then drops the connection: everything about it goes.
    assert_eq!(router.len(), 1);
    router.disconnect(1, now, &mut out);
    assert!(router.is_empty());
    assert!(router.clients.is_empty());
}
