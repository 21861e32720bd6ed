//! Hostile clients against channel authorization (SPEC section 15): tokens nobody should be able
//! to make, and what a refused client may learn. Over real sockets, against the real binary.

mod common;

use common::namespaces::{ask, assert_forbidden, pending, subscribe};
use common::{id_of, Daemon};
use rakit::channel_token::{self, Holder};

const SECRET: &str = "namespaces-hostile-secret-0123";

const NAMESPACES: &str = r#"
[[namespaces]]
prefix = "order."
subscribe = "token"
"#;

/// A channel token for `channel` and client `client`, signed with `key` by the attacker (the
/// library's own signer: the same bytes any JWT library makes).
fn forged(key: &[u8], channel: &str, client: &str) -> String {
    let exp = rakit::session::now_unix() + 600;
    channel_token::issue(key, channel, Holder::Client(client), exp)
}

/// Without `[session] secret` nobody can sign a channel token: a token signed with the empty
/// key (HMAC takes any key, the empty one included) must not open a token channel. The daemon
/// warns at start that such channels are closed to every client; they must be.
#[test]
fn without_a_secret_a_token_signed_with_the_empty_key_opens_nothing() {
    let daemon = Daemon::start(&format!("logging_level = \"warn\"\n{NAMESPACES}"), &[]);
    let (mut ws, welcome) = daemon.client();
    let token = forged(b"", "order.42", &id_of(&welcome));
    let reply = ask(&mut ws, &subscribe("order.42", Some(&token)));
    assert_forbidden(&reply, "order.42");
}

/// The same after a reload that empties the secret (SPEC 18: `[session]` reloads): the router's
/// key follows it, and an empty key must verify nothing.
#[test]
fn a_reload_that_empties_the_secret_does_not_open_token_channels() {
    let with_secret = format!(
        "logging_level = \"info\"\n[session]\nsecret = \"review-secret-0123456789\"\n{NAMESPACES}"
    );
    let daemon = Daemon::start(&with_secret, &[]);
    let lines = daemon.reload(&format!("logging_level = \"info\"\n{NAMESPACES}"));
    assert!(
        lines.last().is_some_and(|l| l.contains("config reloaded")),
        "{lines:?}"
    );
    let (mut ws, welcome) = daemon.client();
    let token = forged(b"", "order.7", &id_of(&welcome));
    let reply = ask(&mut ws, &subscribe("order.7", Some(&token)));
    assert_forbidden(&reply, "order.7");
}

/// A subscribe to a channel with presence costs more the more members it has (its answer lists
/// them, each hears of the join). Charged before the rule, that cost told a client that may not
/// read the channel how many are on it: its budget ran out sooner the fuller the channel. A
/// refused subscribe must cost one token whatever the channel.
#[test]
fn a_refused_subscribe_costs_the_same_whatever_the_channels_audience() {
    // Burst of 32 subscribes (twice max_channels_per_client, at least 32).
    let config = format!(
        "logging_level = \"warn\"\nmax_channels_per_client = 16\n\
         [session]\nsecret = \"{SECRET}\"\n\
         [[namespaces]]\nprefix = \"staff.\"\nsubscribe = \"authenticated\"\npresence = true\n"
    );
    let daemon = Daemon::start(&config, &[]);
    let token = common::msg::cli_token(SECRET, "7", "Staff", None, false, 3600);
    // 30 members: three extra tokens a subscribe, had the rule let it through.
    let mut members = Vec::new();
    for _ in 0..30 {
        let (mut ws, _) = daemon.client_at(&format!("/?token={token}"));
        let reply = ask(&mut ws, &subscribe("staff.room", None));
        assert_eq!(reply["type"], "subscribed", "{reply}");
        members.push(ws);
    }
    let (mut guest, _) = daemon.client();
    let n = 20;
    for _ in 0..n {
        common::send_json(&mut guest, &subscribe("staff.room", None));
    }
    let replies = pending(&mut guest);
    assert_eq!(replies.len(), n);
    for reply in &replies {
        assert_forbidden(reply, "staff.room");
    }
}

/// The other side of that cost: however many members a channel with presence has, a client with
/// a full budget joins it (the cost is capped at a full bucket). The first token is spent
/// before the rest; charged again in full, the rest alone asked for a full bucket after one
/// token was gone, and a channel of ten times the burst or more refused every newcomer for
/// good. Both dialects.
#[test]
fn a_crowded_presence_channel_stays_joinable_in_both_dialects() {
    use common::pusher::{connect, recv_event, APP_ID, KEY, SECRET as PUSHER_SECRET};
    // Burst of 32 subscribes: ten times it is 320 members.
    let config = format!(
        "logging_level = \"warn\"\nmax_channels_per_client = 16\n\
         [pusher]\napp_id = \"{APP_ID}\"\nkey = \"{KEY}\"\nsecret = \"{PUSHER_SECRET}\"\n\
         [[namespaces]]\nprefix = \"crowd.\"\npresence = true\n"
    );
    let daemon = Daemon::start(&config, &[]);
    let mut crowd = Vec::new();
    for i in 0..330 {
        let (mut ws, _) = daemon.client();
        let reply = ask(&mut ws, &subscribe("crowd.hall", None));
        assert_eq!(reply["type"], "subscribed", "member {i}: {reply}");
        crowd.push(ws);
    }
    let (mut late, _) = daemon.client();
    let reply = ask(&mut late, &subscribe("crowd.hall", None));
    assert_eq!(reply["type"], "subscribed", "{reply}");
    assert_eq!(reply["truncated"], true, "{reply}");
    let (mut pusher, _) = connect(&daemon);
    common::send_json(
        &mut pusher,
        &serde_json::json!({"event":"pusher:subscribe","data":{"channel":"crowd.hall"}}),
    );
    let (event, channel, data) = recv_event(&mut pusher);
    assert_eq!(
        (event.as_str(), channel.as_str()),
        ("pusher_internal:subscription_succeeded", Some("crowd.hall")),
        "{data}"
    );
}

/// The same for the Pusher dialect: a `presence-` subscription without a valid signature costs
/// one token, not one more per ten members, so its refusals (`AuthError`) do not turn into
/// `LimitReached` sooner on a fuller channel.
#[test]
fn a_pusher_subscribe_without_the_signature_costs_the_same_whatever_the_audience() {
    use common::pusher::{connect, join, recv_event, APP_ID, KEY, SECRET as PUSHER_SECRET};
    let config = format!(
        "logging_level = \"warn\"\nmax_channels_per_client = 16\n\
         [pusher]\napp_id = \"{APP_ID}\"\nkey = \"{KEY}\"\nsecret = \"{PUSHER_SECRET}\"\n"
    );
    let daemon = Daemon::start(&config, &[]);
    let mut members = Vec::new();
    for i in 0..30 {
        let (mut ws, socket_id) = connect(&daemon);
        join(&mut ws, &socket_id, "presence-room", &format!("u{i}"), "U");
        members.push(ws);
    }
    let (mut attacker, _) = connect(&daemon);
    let n = 20;
    for _ in 0..n {
        common::send_json(
            &mut attacker,
            &serde_json::json!({"event":"pusher:subscribe","data":{
                "channel":"presence-room","auth":format!("{KEY}:00"),
                "channel_data":"{\"user_id\":\"x\"}"}}),
        );
    }
    for i in 0..n {
        let (event, _, data) = recv_event(&mut attacker);
        assert_eq!(event, "pusher:subscription_error", "{i}: {data}");
        assert_eq!(data["type"], "AuthError", "{i}: {data}");
    }
}

/// A namespace's `publish` rule is the operator's word on who may publish to its channels; a
/// Pusher client event is a client's publish too (its other route). On a `private-` channel in
/// a `publish = "backend"` namespace, a subscriber's client event must reach nobody.
#[test]
fn a_pusher_client_event_obeys_the_namespaces_publish_rule() {
    use common::pusher::{connect, recv_event, sign, APP_ID, KEY, SECRET as PUSHER_SECRET};
    let config = format!(
        "logging_level = \"warn\"\n\
         [pusher]\napp_id = \"{APP_ID}\"\nkey = \"{KEY}\"\nsecret = \"{PUSHER_SECRET}\"\n\
         [[namespaces]]\nprefix = \"private-feed.\"\npublish = \"backend\"\n"
    );
    let daemon = Daemon::start(&config, &[]);
    let join = |channel: &str| {
        let (mut ws, socket_id) = connect(&daemon);
        let auth = sign(&[&socket_id, channel]);
        common::send_json(
            &mut ws,
            &serde_json::json!({"event":"pusher:subscribe","data":{"channel":channel,"auth":auth}}),
        );
        let (event, _, data) = recv_event(&mut ws);
        assert_eq!(event, "pusher_internal:subscription_succeeded", "{data}");
        ws
    };
    let (mut sender, mut reader) = (join("private-feed.1"), join("private-feed.1"));
    let event = |data: &str| serde_json::json!({"event":"client-note","channel":"private-feed.1","data":data});
    let ping = serde_json::json!({"event":"pusher:ping","data":{}});
    common::send_json(&mut sender, &event("forged"));
    common::send_json(&mut sender, &ping);
    let (name, _, data) = recv_event(&mut sender);
    assert_eq!(name, "pusher:error", "refused, and told so: {data}");
    // Elsewhere client events go on as ever: the reader's own, on a channel of no namespace.
    let (mut a, mut b) = (join("private-chat"), join("private-chat"));
    common::send_json(
        &mut a,
        &serde_json::json!({"event":"client-note","channel":"private-chat","data":"hi"}),
    );
    let (name, _, data) = recv_event(&mut b);
    assert_eq!(
        (name.as_str(), data),
        ("client-note", serde_json::json!("hi"))
    );
    // The reader of the backend's channel got nothing: its next frame is its own pong.
    common::send_json(&mut reader, &ping);
    let (name, _, data) = recv_event(&mut reader);
    assert_eq!(name, "pusher:pong", "the client event was relayed: {data}");
}
