//! Namespaces (SPEC section 15): subscribe and publish rules, channel tokens, and channel
//! presence (15.3), on one node and as one node of a cluster.

use serde_json::json;

use super::*;
use crate::channel_token::{self, Holder};
use crate::router::{
    ClusterOut, Member, Namespace, Namespaces, PublishPolicy, SubscribePolicy, Subscription,
    TokenKey,
};

const SECRET: &[u8] = b"namespace-test-secret";
const NOW_UNIX: u64 = 1_800_000_000;

fn clock() -> u64 {
    NOW_UNIX
}

fn ns(
    prefix: &str,
    subscribe: SubscribePolicy,
    publish: PublishPolicy,
    presence: bool,
) -> Namespace {
    Namespace {
        prefix: prefix.into(),
        subscribe,
        publish,
        presence,
        ..Namespace::default_rules()
    }
}

/// The namespaces of these tests, with `presence_max_users`.
fn config(max_users: usize) -> RouterConfig {
    use PublishPolicy as P;
    use SubscribePolicy as S;
    RouterConfig {
        command_policy: CommandPolicy::Admin,
        presence: false,
        presence_max_users: max_users,
        namespaces: Rc::new(Namespaces::new([
            ns("order.", S::Token, P::Backend, false),
            ns("user.", S::User, P::Subscribers, false),
            ns("staff.", S::Authenticated, P::Authenticated, false),
            ns("room.", S::Public, P::Subscribers, true),
            ns("vip.", S::Token, P::Any, true),
        ])),
        token_key: TokenKey::new(SECRET),
        max_token_size: 1024,
        unix_clock: clock,
        ..RouterConfig::default()
    }
}

fn harness() -> Harness {
    Harness::with(config(100))
}

fn alice() -> User {
    user("42", "Alice", Some("a@example.com"), false)
}

fn sub(channel: &str) -> String {
    json!({"event":"subscribe","channel":channel}).to_string()
}

fn sub_with(channel: &str, token: &str) -> String {
    json!({"event":"subscribe","channel":channel,"token":token}).to_string()
}

fn publish(channel: &str, data: &str) -> String {
    json!({"event":"message","channel":channel,"data":data}).to_string()
}

fn token_for(channel: &str, holder: Holder<'_>, exp: u64) -> String {
    channel_token::issue(SECRET, channel, holder, exp)
}

/// Sends `text` from `conn`; expects exactly one `forbidden` naming `channel`, to `conn`.
#[track_caller]
fn forbidden(h: &mut Harness, conn: ConnId, text: &str, channel: &str) {
    h.text(conn, text);
    let msgs = h.take();
    assert_eq!(msgs.len(), 1, "one reply to {text}: {msgs:?}");
    let (to, msg) = &msgs[0];
    assert_eq!(*to, conn);
    assert_eq!(msg["type"], "error", "{msg}");
    assert_eq!(msg["code"], "forbidden", "{msg}");
    assert_eq!(msg["channel"], channel, "{msg}");
    assert!(!msg["message"].as_str().unwrap().is_empty());
    assert_eq!(msg.as_object().unwrap().len(), 4, "{msg}");
}

/// Sends `text` from `conn`; expects exactly `subscribed` to `conn`, returned.
#[track_caller]
fn subscribed(h: &mut Harness, conn: ConnId, text: &str) -> Value {
    h.text(conn, text);
    let msgs: Vec<Value> = h
        .take()
        .into_iter()
        .filter(|(to, _)| *to == conn)
        .map(|(_, v)| v)
        .collect();
    assert_eq!(msgs.len(), 1, "{msgs:?}");
    assert_eq!(msgs[0]["type"], "subscribed", "{}", msgs[0]);
    msgs[0].clone()
}

/// Whether `conn` receives a channel message published on `channel` by the backend.
fn receives(h: &mut Harness, conn: ConnId, channel: &str) -> bool {
    let cmd = json!({"command":"broadcast_to_channel","channel":channel,"message":"probe"});
    h.router
        .api_command(
            &serde_json::value::RawValue::from_string(cmd.to_string()).unwrap(),
            h.now,
            &mut h.out,
        )
        .unwrap();
    h.take().iter().any(|(to, _)| *to == conn)
}

#[test]
fn the_default_namespace_is_section_5() {
    let mut h = harness();
    h.join(1, None);
    let v = subscribed(&mut h, 1, &sub("chat"));
    assert_eq!(v, json!({"type":"subscribed","channel":"chat"}));
    h.text(1, &publish("chat", "hi"));
    assert_eq!(h.take().len(), 1);
    // A name inside no namespace, but starting like one.
    subscribed(&mut h, 1, &sub("order"));
    subscribed(&mut h, 1, &sub("rooms"));
}

#[test]
fn authenticated_admits_session_users_only() {
    let mut h = harness();
    h.join(1, None);
    h.join(2, Some(alice()));
    forbidden(&mut h, 1, &sub("staff.news"), "staff.news");
    assert!(
        !receives(&mut h, 1, "staff.news"),
        "a refusal subscribes nobody"
    );
    subscribed(&mut h, 2, &sub("staff.news"));
    assert!(receives(&mut h, 2, "staff.news"));
}

#[test]
fn user_admits_the_user_whose_id_is_the_rest_of_the_name() {
    let mut h = harness();
    h.join(1, None);
    h.join(2, Some(alice()));
    h.join(3, Some(user("4", "Four", None, true)));
    subscribed(&mut h, 2, &sub("user.42"));
    for (conn, channel) in [
        (1, "user.42"),
        (3, "user.42"),
        (2, "user.4"),
        (2, "user.420"),
        (2, "user."),
        (1, "user."),
    ] {
        forbidden(&mut h, conn, &sub(channel), channel);
    }
    assert!(!receives(&mut h, 3, "user.42"), "an admin is no exception");
}

#[test]
fn token_admits_a_valid_token_for_this_channel_and_holder() {
    let mut h = harness();
    let guest = h.join(1, None);
    h.join(2, Some(alice()));
    let exp = NOW_UNIX + 60;
    let for_alice = token_for("order.7", Holder::User("42"), exp);
    let for_guest = token_for("order.7", Holder::Client(&guest), exp);
    let bad = [
        sub("order.7"),
        json!({"event":"subscribe","channel":"order.7","token":5}).to_string(),
        sub_with("order.7", "x.y.z"),
        sub_with("order.7", &token_for("order.8", Holder::User("42"), exp)),
        sub_with(
            "order.7",
            &token_for("order.7", Holder::User("42"), NOW_UNIX),
        ),
        sub_with(
            "order.7",
            &channel_token::issue(b"other", "order.7", Holder::User("42"), exp),
        ),
        sub_with("order.7", &for_guest),
        sub_with("order.7", &format!("{for_alice}{}", "x".repeat(1024))),
    ];
    for text in &bad {
        forbidden(&mut h, 2, text, "order.7");
    }
    forbidden(&mut h, 1, &sub_with("order.7", &for_alice), "order.7");
    assert!(!receives(&mut h, 2, "order.7"));
    subscribed(&mut h, 2, &sub_with("order.7", &for_alice));
    subscribed(&mut h, 1, &sub_with("order.7", &for_guest));
    // Already in: answered again without a token.
    subscribed(&mut h, 1, &sub("order.7"));
    assert!(receives(&mut h, 1, "order.7") && receives(&mut h, 2, "order.7"));
}

#[test]
fn a_token_up_to_max_token_size_is_read_and_a_longer_one_is_not() {
    let mut h = harness();
    h.join(1, Some(alice()));
    let reason = |h: &mut Harness, len: usize| {
        h.text(1, &sub_with("order.1", &"x".repeat(len)));
        let msgs = h.take();
        assert_eq!(msgs.len(), 1, "{msgs:?}");
        assert_eq!(msgs[0].1["code"], "forbidden", "{msgs:?}");
        msgs[0].1["message"].as_str().unwrap().to_owned()
    };
    // max_token_size is 1024 here: that long, it is verified (and malformed); longer, not read.
    assert!(reason(&mut h, 1024).contains("malformed"));
    for len in [1025, 4096] {
        assert!(reason(&mut h, len).contains("too long"), "{len}");
    }
}

#[test]
fn public_namespaces_are_the_ones_another_dialect_may_read() {
    let h = harness();
    for channel in ["news", "room.1", "vip", "orders"] {
        assert!(h.router.is_public(channel), "{channel}");
    }
    for channel in ["order.1", "user.42", "staff.x", "vip.1"] {
        assert!(!h.router.is_public(channel), "{channel}");
    }
}

#[test]
fn a_token_of_max_handshake_size_is_read_and_a_longer_one_refused_unread() {
    let token = token_for("order.7", Holder::User("42"), NOW_UNIX + 60);
    for (max, admitted) in [(token.len(), true), (token.len() - 1, false)] {
        let mut h = Harness::with(RouterConfig {
            max_token_size: max,
            ..config(100)
        });
        h.join(2, Some(alice()));
        let text = sub_with("order.7", &token);
        if admitted {
            subscribed(&mut h, 2, &text);
        } else {
            forbidden(&mut h, 2, &text, "order.7");
        }
    }
}

#[test]
fn the_token_key_never_shows_the_secret() {
    let key = TokenKey::new(b"hunter2");
    assert_eq!(format!("{key:?}"), "TokenKey(<set>)");
    assert_eq!(format!("{:?}", TokenKey::default()), "TokenKey(none)");
    assert_eq!(format!("{:?}", TokenKey::new(b"")), "TokenKey(none)");
    let config = format!(
        "{:?}",
        RouterConfig {
            token_key: key,
            ..config(100)
        }
    );
    assert!(
        config.contains("TokenKey(<set>)") && !config.contains("hunter2"),
        "{config}"
    );
}

#[test]
fn only_public_channels_are_public_to_the_other_dialect() {
    let h = harness();
    for (channel, public) in [
        ("chat", true),
        ("room.1", true),
        ("order", true),
        ("order.1", false),
        ("user.42", false),
        ("staff.x", false),
        ("vip.1", false),
    ] {
        assert_eq!(h.router.is_public(channel), public, "{channel}");
    }
}

#[test]
fn a_storm_of_bad_tokens_spends_the_subscribe_budget() {
    // The message bucket (SPEC 17) would refuse the storm first: off, to reach the subscribe budget.
    let mut h = Harness::with(RouterConfig {
        limits: crate::router::RouterLimits::OFF,
        ..config(100)
    });
    h.join(1, Some(alice()));
    let burst = h.router.subscribe_burst();
    for _ in 0..burst {
        forbidden(&mut h, 1, &sub_with("order.1", "a.b.c"), "order.1");
    }
    assert_eq!(
        h.error_code(1, &sub_with("order.1", "a.b.c")),
        "too_many_channels"
    );
}

#[test]
fn publish_rules() {
    let mut h = harness();
    h.join(1, None);
    h.join(2, Some(alice()));
    h.join(3, Some(user("9", "Admin", None, true)));
    subscribed(&mut h, 2, &sub("room.1"));
    subscribed(&mut h, 2, &sub("staff.x"));
    // subscribers
    forbidden(&mut h, 1, &publish("room.1", "x"), "room.1");
    h.text(2, &publish("room.1", "ok"));
    let got = h.take();
    assert!(
        got.iter().any(|(to, v)| *to == 2 && v["data"] == "ok"),
        "{got:?}"
    );
    // authenticated
    forbidden(&mut h, 1, &publish("staff.x", "x"), "staff.x");
    h.text(3, &publish("staff.x", "ok"));
    assert_eq!(h.take().len(), 1);
    // backend: no client, not even an admin; commands may.
    forbidden(&mut h, 3, &publish("order.1", "x"), "order.1");
    let cmd = json!({"command":"broadcast_to_channel","channel":"staff.x","message":"m"});
    h.text(3, &cmd.to_string());
    let got = h.take();
    assert!(
        got.iter().any(|(to, v)| *to == 3 && v["type"] == "ack"),
        "{got:?}"
    );
    // A refused publish reaches nobody.
    forbidden(&mut h, 1, &publish("staff.x", "x"), "staff.x");
}

/// The `presence` entries of a `subscribed` or `channel_presence`.
fn members(list: &Value) -> Vec<String> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|m| m["client_id"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn presence_lists_join_and_leave() {
    let mut h = harness();
    let a = h.join(1, Some(alice()));
    let b = h.join(2, None);
    let c = h.join(3, None);
    let v = subscribed(&mut h, 1, &sub("room.1"));
    assert_eq!(
        v,
        json!({"type":"subscribed","channel":"room.1","presence":[
            {"client_id":a,"user":{"id":"42","name":"Alice","email":"a@example.com"}}]})
    );
    h.text(2, &sub("room.1"));
    let got = h.take();
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(
        got[0],
        (
            1,
            json!({"type":"join","channel":"room.1","client_id":b,"user":null})
        )
    );
    assert_eq!(got[1].0, 2);
    assert_eq!(members(&got[1].1["presence"]), [a.clone(), b.clone()]);
    // Again: the same answer, no join.
    let again = subscribed(&mut h, 2, &sub("room.1"));
    assert_eq!(members(&again["presence"]), [a.clone(), b.clone()]);
    h.text(3, &sub("room.1"));
    h.take();
    // Unsubscribing: the others hear a leave; the one leaving its `unsubscribed`.
    h.text(
        1,
        &json!({"event":"unsubscribe","channel":"room.1"}).to_string(),
    );
    let got = h.take();
    let leave = json!({"type":"leave","channel":"room.1","client_id":a,
        "user":{"id":"42","name":"Alice","email":"a@example.com"}});
    assert_eq!(
        got,
        [
            (2, leave.clone()),
            (3, leave),
            (1, json!({"type":"unsubscribed","channel":"room.1"}))
        ]
    );
    // Going away: a leave too.
    h.disconnect(2);
    let got = h.take();
    assert_eq!(
        got,
        [(
            3,
            json!({"type":"leave","channel":"room.1","client_id":b,"user":null})
        )]
    );
    // And the list follows.
    h.text(
        3,
        &json!({"event":"presence","channel":"room.1"}).to_string(),
    );
    assert_eq!(
        h.take(),
        [(
            3,
            json!({"type":"channel_presence","channel":"room.1",
            "clients":[{"client_id":c,"user":null}],"count":1})
        )]
    );
}

#[test]
fn presence_queries_follow_the_subscribe_rule() {
    let mut h = harness();
    let guest = h.join(1, None);
    h.join(2, Some(alice()));
    let query = |channel: &str| json!({"event":"presence","channel":channel}).to_string();
    // Not subscribed, but admitted (public): answered.
    h.text(1, &query("room.9"));
    assert_eq!(
        h.take(),
        [(
            1,
            json!({"type":"channel_presence","channel":"room.9","clients":[],"count":0})
        )]
    );
    // Token rule: without, or with a bad one, forbidden; with one, answered.
    forbidden(&mut h, 1, &query("vip.1"), "vip.1");
    let token = token_for("vip.1", Holder::Client(&guest), NOW_UNIX + 9);
    let with = json!({"event":"presence","channel":"vip.1","token":token}).to_string();
    h.text(1, &with);
    assert_eq!(h.take()[0].1["type"], "channel_presence");
    // A subscriber needs no token.
    let alices = token_for("vip.1", Holder::User("42"), NOW_UNIX + 9);
    subscribed(&mut h, 2, &sub_with("vip.1", &alices));
    h.text(2, &query("vip.1"));
    assert_eq!(h.take()[0].1["count"], 1);
    // No presence in the namespace: bad_request.
    for channel in ["chat", "order.1"] {
        assert_eq!(h.error_code(1, &query(channel)), "bad_request");
    }
    assert_eq!(h.error_code(1, &query("")), "invalid_channel");
    assert_eq!(h.error_code(1, r#"{"event":"presence"}"#), "bad_request");
}

#[test]
fn above_presence_max_users_lists_are_empty_and_nobody_hears_join_or_leave() {
    let mut h = Harness::with(config(2));
    for conn in 1..=4 {
        h.join(conn, None);
    }
    subscribed(&mut h, 1, &sub("room.1"));
    h.text(2, &sub("room.1"));
    assert_eq!(h.take().len(), 2, "join to 1, subscribed to 2: 2 is within");
    // The third counts itself: 3 > 2.
    let v = subscribed(&mut h, 3, &sub("room.1"));
    assert_eq!(
        v,
        json!({"type":"subscribed","channel":"room.1","presence":[],"truncated":true})
    );
    h.text(
        4,
        &json!({"event":"presence","channel":"room.1"}).to_string(),
    );
    assert_eq!(
        h.take(),
        [(
            4,
            json!({"type":"channel_presence","channel":"room.1","clients":[],"count":3,"truncated":true})
        )]
    );
    // The leaving one still counts: 3 > 2, silent; then 2 left, 2 is within: heard.
    h.disconnect(3);
    assert!(h.take().is_empty());
    h.disconnect(2);
    assert_eq!(h.take().len(), 1);
}

#[test]
fn a_presence_subscribe_costs_a_token_more_per_ten_members() {
    let mut config = config(1000);
    config.max_channels_per_client = 16; // a burst of 32
    let mut h = Harness::with(config);
    for conn in 1..=40 {
        h.join(conn, None);
        subscribed(&mut h, conn, &sub("room.1"));
    }
    // 41st: 1 + 4 tokens per subscribe; six fit in the burst of 32, the seventh does not.
    h.join(41, None);
    for round in 0..6 {
        subscribed(&mut h, 41, &sub("room.1"));
        h.text(
            41,
            &json!({"event":"unsubscribe","channel":"room.1"}).to_string(),
        );
        h.take();
        let _ = round;
    }
    assert_eq!(h.error_code(41, &sub("room.1")), "too_many_channels");
}

#[test]
fn a_user_too_large_to_list_is_refused_on_presence_channels_only() {
    let mut h = harness();
    h.join(1, Some(user("7", &"n".repeat(2000), None, false)));
    forbidden(&mut h, 1, &sub("room.1"), "room.1");
    subscribed(&mut h, 1, &sub("chat"));
}

#[test]
fn channel_presence_across_the_cluster() {
    let mut h = harness();
    h.router.enable_cluster("nodeA");
    let a = h.join(1, None);
    subscribed(&mut h, 1, &sub("room.1"));
    let out = h.router.take_cluster_out();
    let announced = out.iter().find_map(|o| match o {
        ClusterOut::Subscribed(s) => Some(s.clone()),
        _ => None,
    });
    let announced = announced.expect("the subscription goes to the others");
    assert_eq!(announced.member.as_ref().unwrap().user, a);
    assert_eq!(announced.member.as_ref().unwrap().info, "null");
    // A subscriber on node B: a join here, and it is listed after ours.
    let remote = Member {
        id: "BBBBBBB1".into(),
        seq: 0,
        connected_at: 1,
        entry: r#"{"id":"BBBBBBB1","name":"Guest","email":null,"connected_at":1}"#.into(),
    };
    let (now, out) = (h.now, &mut h.out);
    h.router.remote_join("nodeB", remote, now, out);
    let sub_b = Subscription {
        id: "BBBBBBB1".into(),
        channel: "room.1".into(),
        member: Some(crate::router::ChannelMember {
            user: "BBBBBBB1".into(),
            info: r#"{"id":"7","name":"Bo","email":null}"#.into(),
        }),
    };
    h.router.remote_subscribe("nodeB", sub_b, &mut h.out);
    assert_eq!(
        h.take(),
        [(
            1,
            json!({"type":"join","channel":"room.1","client_id":"BBBBBBB1",
            "user":{"id":"7","name":"Bo","email":null}})
        )]
    );
    h.text(
        1,
        &json!({"event":"presence","channel":"room.1"}).to_string(),
    );
    let v = h.take().remove(0).1;
    assert_eq!(members(&v["clients"]), [a.as_str(), "BBBBBBB1"]);
    assert_eq!(v["count"], 2);
    // Node B dies: its subscriber leaves.
    let now = h.now;
    h.router.remote_node_gone("nodeB", now, &mut h.out);
    let got = h.take();
    assert_eq!(
        got,
        [(
            1,
            json!({"type":"leave","channel":"room.1","client_id":"BBBBBBB1",
            "user":{"id":"7","name":"Bo","email":null}})
        )]
    );
}

#[test]
fn new_rules_apply_to_what_comes_next() {
    let mut h = harness();
    h.join(1, None);
    forbidden(&mut h, 1, &sub("staff.x"), "staff.x");
    h.router.set_namespaces(Rc::new(Namespaces::default()));
    subscribed(&mut h, 1, &sub("staff.x"));
    h.text(1, &publish("order.1", "now anyone may"));
    assert!(h.take().is_empty(), "no subscriber, and no refusal");
}
