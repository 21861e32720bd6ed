//! The Pusher dialect and namespaces (SPEC section 15): a Pusher client may subscribe only to
//! channels whose namespace is public (plus its own `private-`/`presence-` channels under
//! section 13's authorization); any other is `pusher:subscription_error` with status 403, so a
//! Pusher subscription cannot read what a Rakit client may not. Over the raw protocol, and with
//! pusher-js 8.6.0 through Laravel Echo (tests/pusher/namespaces.mjs; skipped without node
//! unless RAKIT_REQUIRE_PUSHER=1).

mod common;

use common::namespaces::{ask, subscribe};
use common::node::{available, run};
use common::pusher::{connect, recv_event, sign, APP_ID, KEY, SECRET};
use common::{send_json, Daemon};
use serde_json::json;

fn daemon() -> Daemon {
    let config = format!(
        "logging_level = \"warn\"\n[session]\nsecret = \"session-secret-0123\"\n\
         [pusher]\napp_id = \"{APP_ID}\"\nkey = \"{KEY}\"\nsecret = \"{SECRET}\"\n\
         [[namespaces]]\nprefix = \"order.\"\nsubscribe = \"token\"\n\
         [[namespaces]]\nprefix = \"user.\"\nsubscribe = \"user\"\n\
         [[namespaces]]\nprefix = \"staff.\"\nsubscribe = \"authenticated\"\n\
         [[namespaces]]\nprefix = \"room.\"\npresence = true\n\
         [[namespaces]]\nprefix = \"private-order.\"\nsubscribe = \"token\"\n"
    );
    Daemon::start(&config, &[])
}

#[test]
fn a_pusher_subscription_outside_public_namespaces_is_refused_with_403() {
    let d = daemon();
    let (mut ws, socket_id) = connect(&d);
    for channel in ["order.1", "user.1", "staff.news"] {
        send_json(
            &mut ws,
            &json!({"event":"pusher:subscribe","data":{"channel":channel}}),
        );
        let (event, ch, data) = recv_event(&mut ws);
        assert_eq!(event, "pusher:subscription_error", "{channel}: {data}");
        assert_eq!(ch, json!(channel));
        assert_eq!(data["status"], 403, "{data}");
        assert_eq!(data["type"], "AuthError", "{data}");
    }
    // Public namespaces and Pusher's own authorization still work, whatever a namespace says
    // of a `private-` channel.
    for channel in ["news", "room.1", "private-order.1"] {
        let auth = sign(&[&socket_id, channel]);
        send_json(
            &mut ws,
            &json!({"event":"pusher:subscribe","data":{"channel":channel,"auth":auth}}),
        );
        let (event, ch, _) = recv_event(&mut ws);
        assert_eq!(
            (event.as_str(), ch),
            ("pusher_internal:subscription_succeeded", json!(channel))
        );
    }
    // The refused ones were not subscribed: the API-free check is a Rakit subscriber's view of
    // the presence channel it shares with the Pusher client (listed, as a subscriber).
    let (mut rakit, _) = d.client();
    let v = ask(&mut rakit, &subscribe("room.1", None));
    assert_eq!(v["presence"].as_array().unwrap().len(), 2, "{v}");
    let v = ask(&mut rakit, &json!({"event":"presence","channel":"order.1"}));
    assert_eq!(v["code"], "bad_request", "{v}");
}

#[test]
fn pusher_js_and_echo_see_403_on_a_token_namespace() {
    if !available() {
        return;
    }
    let d = daemon();
    let seen = run(
        "namespaces.mjs",
        &[
            d.addr.port().to_string(),
            KEY.into(),
            SECRET.into(),
            APP_ID.into(),
        ],
    );
    for refused in ["order.1", "user.1", "staff.news"] {
        let e = &seen["errors"][refused];
        assert_eq!(
            (&e["status"], &e["type"]),
            (&json!(403), &json!("AuthError")),
            "{seen}"
        );
    }
    assert_eq!(
        seen["subscribed"],
        json!(["news", "private-order.1", "room.1"]),
        "{seen}"
    );
    assert_eq!(
        seen["events"],
        json!([
            ["news", {"on": "news"}],
            ["private-order.1", {"on": "private-order.1"}]
        ]),
        "{seen}"
    );
}
