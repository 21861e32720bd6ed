//! The backend API's side of the router: commands without policy or ack,
//! byte-identical frames, and the channel and presence queries.

use serde_json::json;
use serde_json::value::RawValue;

use super::*;
use crate::router::ApiError;

fn raw(text: &str) -> Box<RawValue> {
    RawValue::from_string(text.to_owned()).expect("valid JSON")
}

impl Harness {
    fn api(&mut self, text: &str) -> Result<(), ApiError> {
        let cmd = raw(text);
        self.router.api_command(&cmd, self.now, &mut self.out)
    }

    /// Everything sent since the last call, as raw frame bytes.
    fn take_frames(&mut self) -> Vec<(ConnId, Vec<u8>)> {
        self.out
            .sent
            .drain(..)
            .map(|(conn, frame)| (conn, frame.to_vec()))
            .collect()
    }
}

/// Two routers in the same state: clients 1 (the WebSocket admin), 2 and 3,
/// with 2 and 3 in channel "news".
fn twins() -> (Harness, Harness, String) {
    let mut pair = [Harness::new(), Harness::new()];
    let mut target = String::new();
    for h in &mut pair {
        h.join(1, Some(user("1", "Root", None, true)));
        target = h.join(2, None);
        h.join(3, Some(user("3", "Ann", Some("ann@example.com"), false)));
        h.text(2, r#"{"event":"subscribe","channel":"news"}"#);
        h.text(3, r#"{"event":"subscribe","channel":"news"}"#);
        h.tick();
        h.take();
        h.take_events();
    }
    let [a, b] = pair;
    (a, b, target)
}

#[test]
fn api_commands_deliver_byte_identical_frames() {
    let (_, _, target) = twins();
    let commands = [
        r#"{"command":"broadcast","message":{"n":1.0,"s":"\u00e9"}}"#.to_owned(),
        r#"{"command":"broadcast_to_channel","channel":"news","message":[1,2]}"#.to_owned(),
        format!(r#"{{"command":"private_message","to":"{target}","message":"psst"}}"#),
        format!(r#"{{"command":"disconnect","client_id":"{target}"}}"#),
        r#"{"command":"presence"}"#.to_owned(),
    ];
    for cmd in &commands {
        let (mut ws, mut api, _) = twins();
        ws.text(1, cmd);
        let mut via_ws = ws.take_frames();
        let ack = via_ws.pop().expect("an ack");
        assert_eq!(ack.0, 1);
        assert!(payload(&ack.1).starts_with(r#"{"type":"ack""#), "{cmd}");
        api.api(cmd).unwrap_or_else(|e| panic!("{cmd}: {e:?}"));
        let via_api = api.take_frames();
        assert!(
            !via_api.is_empty() || !api.out.closed.is_empty(),
            "{cmd} had an effect"
        );
        assert_eq!(via_ws, via_api, "{cmd}");
        assert_eq!(ws.out.closed, api.out.closed, "{cmd}");
        // The same events, less the WebSocket's own receive and ack.
        let mut ws_events = ws.take_events();
        ws_events.retain(|e| !matches!(e, Ev::Receive(..)));
        ws_events.retain(|e| !matches!(e, Ev::Send(_, m) if m.starts_with(r#"{"type":"ack""#)));
        assert_eq!(ws_events, api.take_events(), "{cmd}");
    }
}

#[test]
fn api_commands_ignore_the_policy_and_fire_no_receive() {
    let mut h = Harness::with(RouterConfig {
        command_policy: CommandPolicy::Off,
        ..RouterConfig::default()
    });
    h.join(1, None);
    h.take_events();
    h.api(r#"{"command":"broadcast","message":"hi"}"#).unwrap();
    assert_eq!(h.take(), [(1, json!({"type":"message","message":"hi"}))]);
    assert!(h
        .take_events()
        .iter()
        .all(|e| !matches!(e, Ev::Receive(..))));
    // The same command from the WebSocket is forbidden.
    assert_eq!(
        h.error_code(1, r#"{"command":"broadcast","message":"hi"}"#),
        "forbidden"
    );
}

#[test]
fn api_command_errors() {
    let mut h = Harness::new();
    let id = h.join(1, None);
    for (text, code, status) in [
        ("[1]", "bad_request", 400),
        ("\"broadcast\"", "bad_request", 400),
        (r#"{"message":"no command"}"#, "bad_request", 400),
        (r#"{"command":5,"message":1}"#, "bad_request", 400),
        (r#"{"command":"shout","message":1}"#, "unknown_command", 400),
        (r#"{"command":"broadcast"}"#, "bad_request", 400),
        (
            r#"{"command":"broadcast_to_channel","channel":"","message":1}"#,
            "invalid_channel",
            400,
        ),
        (
            r#"{"command":"private_message","to":"nobody00","message":1}"#,
            "unknown_client",
            404,
        ),
        (
            r#"{"command":"disconnect","client_id":"Zzzzzzzz"}"#,
            "unknown_client",
            404,
        ),
        (r#"{"command":"disconnect"}"#, "bad_request", 400),
    ] {
        let e = h.api(text).expect_err(text);
        assert_eq!((e.code, e.status), (code, status), "{text}");
        assert!(!e.message.is_empty());
    }
    assert!(h.take().is_empty(), "a failed command sends nothing");
    assert!(h.out.closed.is_empty());
    // A disconnect through the API closes with 4000 and fires disconnect.
    h.take_events();
    h.api(&format!(r#"{{"command":"disconnect","client_id":"{id}"}}"#))
        .unwrap();
    assert_eq!(
        h.out.closed,
        [(1, 4000, "disconnected by server".to_owned())]
    );
    assert_eq!(h.take_events(), [Ev::Disconnect(id, None)]);
    assert!(h.router.is_empty());
}

#[test]
fn channel_queries() {
    let mut h = Harness::new();
    let a = h.join(1, None);
    let b = h.join(2, None);
    assert!(h.router.channel_list().is_empty());
    assert_eq!(h.router.channel_count(), 0);
    for (conn, channel) in [(2, "zeta"), (1, "alpha"), (2, "alpha"), (1, "zeta")] {
        h.text(
            conn,
            &format!(r#"{{"event":"subscribe","channel":"{channel}"}}"#),
        );
    }
    let list: Vec<(&str, usize)> = h
        .router
        .channel_list()
        .iter()
        .map(|c| (c.name, c.subscribers))
        .collect();
    assert_eq!(list, [("alpha", 2), ("zeta", 2)]);
    assert_eq!(h.router.channel_count(), 2);
    assert_eq!(h.router.channel_clients("zeta").unwrap(), [&b, &a]);
    assert!(h.router.channel_clients("nobody").unwrap().is_empty());
    let e = h.router.channel_clients("").unwrap_err();
    assert_eq!((e.code, e.status), ("invalid_channel", 400));
    h.disconnect(2);
    assert_eq!(h.router.channel_clients("alpha").unwrap(), [&a]);
}

#[test]
fn presence_query_is_never_truncated() {
    let mut h = Harness::with(RouterConfig {
        presence_max_users: 1,
        command_policy: CommandPolicy::Any,
        ..RouterConfig::default()
    });
    assert_eq!(h.router.presence_json(), r#"{"count":0,"users":[]}"#);
    let a = h.join(1, Some(user("7", "Ann", Some("a@x.org"), false)));
    let b = h.join(2, None);
    let got: Value = serde_json::from_str(&h.router.presence_json()).unwrap();
    assert_eq!(
        got,
        json!({"count":2,"users":[
            {"id":a,"name":"Ann","email":"a@x.org","connected_at":connected_at(1)},
            {"id":b,"name":"Guest","email":null,"connected_at":connected_at(2)},
        ]})
    );
    assert!(h
        .router
        .presence_json()
        .starts_with(r#"{"count":2,"users":[{"id":""#));
}

#[test]
fn subscribe_events_fire_on_changes_only() {
    let mut h = Harness::new();
    let a = h.join(1, None);
    h.take_events();
    for text in [
        r#"{"event":"subscribe","channel":"c"}"#,
        r#"{"event":"subscribe","channel":"c"}"#,
        r#"{"event":"unsubscribe","channel":"c"}"#,
        r#"{"event":"unsubscribe","channel":"c"}"#,
    ] {
        h.text(1, text);
    }
    let changes: Vec<Ev> = h
        .take_events()
        .into_iter()
        .filter(|e| !matches!(e, Ev::Receive(..) | Ev::Send(..) | Ev::Channel(..)))
        .collect();
    assert_eq!(
        changes,
        [
            Ev::Subscribe(a.clone(), "c".into()),
            Ev::Unsubscribe(a, "c".into())
        ]
    );
}
