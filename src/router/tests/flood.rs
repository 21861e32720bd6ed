//! SPEC section 17 in the router: the message and broadcast buckets, `broadcast_policy`, the
//! rate-limited error at most once a second, and the close after sustained flooding.

use super::*;
use crate::budget::Rate;
use crate::limits::{Counts, FloodRules, Kind};
use crate::router::RouterLimits;

/// 10 messages a second with a burst of 5; 1 broadcast a second with a burst of 2; closed
/// beyond 5 refusals within 10 s.
fn small(broadcast_policy: CommandPolicy) -> Harness {
    Harness::with(RouterConfig {
        limits: RouterLimits {
            flood: FloodRules {
                messages: Some(Rate::per_second(10, 5)),
                broadcasts: Some(Rate::per_second(1, 2)),
                max_refusals: 5,
            },
            broadcast_policy,
        },
        ..RouterConfig::default()
    })
}

/// What `conn` got, by `type`.
fn types(msgs: &[(ConnId, Value)], conn: ConnId) -> Vec<String> {
    msgs.iter()
        .filter(|(to, _)| *to == conn)
        .map(|(_, v)| v["type"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn every_message_costs_a_token_and_refusals_are_answered_once_a_second() {
    let mut h = small(CommandPolicy::Any);
    h.join(1, None);
    for _ in 0..5 {
        h.text(1, r#"{"ping":1}"#);
    }
    assert_eq!(types(&h.take(), 1), ["pong"; 5]);
    // The sixth is refused: one error, then silence for the rest of the second.
    h.text(1, r#"{"ping":1}"#);
    let got = h.take();
    assert_eq!(got.len(), 1, "{got:?}");
    assert_error_shape(&got[0].1);
    assert_eq!(got[0].1["code"], "rate_limited");
    h.at(50);
    h.text(1, r#"{"ping":1}"#);
    assert!(h.take().is_empty(), "no second error within the second");
    // 100 ms bring one token back.
    h.at(150);
    h.text(1, r#"{"ping":1}"#);
    assert_eq!(types(&h.take(), 1), ["pong"]);
    h.text(1, r#"{"ping":1}"#);
    assert!(
        h.take().is_empty(),
        "refused, and the last error was 150 ms ago"
    );
    // A second after the first error, a refusal is answered again.
    h.at(1000);
    for _ in 0..5 {
        h.text(1, r#"{"ping":1}"#);
    }
    h.text(1, r#"{"ping":1}"#);
    assert_eq!(
        types(&h.take(), 1),
        ["pong", "pong", "pong", "pong", "pong", "error"]
    );
    assert!(h.out.closed.is_empty());
    assert_eq!(h.router.rate_limited().get(Kind::Message), 4);
}

#[test]
fn a_refused_message_is_not_routed_and_fires_no_event() {
    let mut h = small(CommandPolicy::Any);
    let a = h.join(1, None);
    h.join(2, None);
    h.text(2, r#"{"event":"subscribe","channel":"c"}"#);
    h.take();
    for i in 0..5 {
        h.text(
            1,
            &format!(r#"{{"event":"message","channel":"c","data":{i}}}"#),
        );
    }
    assert_eq!(types(&h.take(), 2), ["channel"; 5]);
    h.take_events();
    for text in [
        r#"{"event":"message","channel":"c","data":"flood"}"#,
        r#"{"to":"xxxxxxxx","message":1}"#,
        r#"{"event":"subscribe","channel":"d"}"#,
        "not even JSON",
    ] {
        h.text(1, text);
    }
    let got = h.take();
    assert!(
        types(&got, 2).is_empty(),
        "nothing reached the subscriber: {got:?}"
    );
    assert_eq!(
        types(&got, 1),
        ["error"],
        "one rate_limited error, nothing else"
    );
    let events = h.take_events();
    assert!(
        !events.iter().any(|e| matches!(e, Ev::Receive(..))),
        "no receive event (so no webhook) for a refused message: {events:?}"
    );
    assert_eq!(
        h.router.channels.count(1),
        0,
        "the refused subscribe did nothing"
    );
    assert!(events
        .iter()
        .all(|e| matches!(e, Ev::Send(id, _) if *id == a)));
}

#[test]
fn more_refusals_than_allowed_within_ten_seconds_close_with_4029() {
    let mut h = small(CommandPolicy::Any);
    let a = h.join(1, None);
    h.join(2, None);
    h.tick();
    h.take();
    // Five refusals are tolerated, spread over eight seconds (a full bucket each time).
    for i in 0..5 {
        h.at(i * 2000);
        for _ in 0..6 {
            h.text(1, r#"{"ping":1}"#);
        }
    }
    h.take();
    assert!(h.out.closed.is_empty(), "{:?}", h.out.closed);
    assert_eq!(h.router.rate_limited().get(Kind::Message), 5);
    // The sixth within ten seconds of the first closes.
    h.at(9_999);
    for _ in 0..5 {
        h.text(1, r#"{"ping":1}"#);
    }
    h.take_events();
    h.text(1, r#"{"ping":1}"#);
    assert_eq!(h.out.closed, [(1, 4029, "rate limit exceeded".to_owned())]);
    // It left like any disconnect: forgotten, presence told, the event fired.
    assert_eq!(h.router.client_id(1), None);
    assert!(h.take_events().contains(&Ev::Disconnect(a, None)));
    h.take();
    h.at(20_000);
    h.tick();
    let presence = h.take();
    assert_eq!(presence.len(), 1, "{presence:?}");
    assert_eq!(presence[0].1["count"], 1);
    // Whatever it still sends is ignored.
    h.text(1, r#"{"ping":1}"#);
    assert!(h.take().is_empty());
}

#[test]
fn refusals_in_separate_windows_never_close() {
    let mut h = small(CommandPolicy::Any);
    h.join(1, None);
    // Five refusals every ten seconds, for a minute.
    for round in 0..6u64 {
        h.at(round * 10_000);
        for _ in 0..10 {
            h.text(1, r#"{"ping":1}"#);
        }
    }
    assert!(h.out.closed.is_empty(), "{:?}", h.out.closed);
    assert_eq!(h.router.rate_limited().get(Kind::Message), 6 * 5);
}

#[test]
fn broadcasts_have_their_own_bucket() {
    let mut h = small(CommandPolicy::Any);
    h.join(1, None);
    h.join(2, None);
    h.text(1, r#"{"message":1}"#);
    h.text(1, r#"{"message":2}"#);
    assert_eq!(types(&h.take(), 2), ["message", "message"]);
    // The third within the second is refused; other messages still pass.
    h.text(1, r#"{"message":3}"#);
    h.text(1, r#"{"ping":1}"#);
    let got = h.take();
    assert!(types(&got, 2).is_empty(), "{got:?}");
    assert_eq!(types(&got, 1), ["error", "pong"]);
    assert_eq!(got[0].1["code"], "rate_limited");
    // A private message or a channel message is no broadcast.
    h.text(1, r#"{"event":"message","channel":"c","data":1}"#);
    assert!(h.take().is_empty());
    // One a second.
    h.at(1000);
    h.text(1, r#"{"message":4}"#);
    assert_eq!(types(&h.take(), 2), ["message"]);
    // Each connection has its own buckets.
    h.text(2, r#"{"message":5}"#);
    h.text(2, r#"{"message":6}"#);
    assert_eq!(types(&h.take(), 1), ["message", "message"]);
    let counts = h.router.rate_limited();
    assert_eq!(
        (counts.get(Kind::Message), counts.get(Kind::Broadcast)),
        (0, 1)
    );
}

#[test]
fn broadcast_policy_says_who_may_broadcast() {
    let admin = user("1", "Ann", None, true);
    let plain = user("2", "Bob", None, false);
    for (policy, guest, member, boss) in [
        (CommandPolicy::Any, true, true, true),
        (CommandPolicy::Authenticated, false, true, true),
        (CommandPolicy::Admin, false, false, true),
        (CommandPolicy::Off, false, false, false),
    ] {
        let mut h = small(policy);
        h.join(1, None);
        h.join(2, Some(plain.clone()));
        h.join(3, Some(admin.clone()));
        for (conn, allowed) in [(1, guest), (2, member), (3, boss)] {
            h.text(conn, r#"{"message":"hi"}"#);
            let got = h.take();
            if allowed {
                assert_eq!(got.len(), 3, "{policy}: {got:?}");
            } else {
                assert_eq!(got.len(), 1, "{policy}: {got:?}");
                assert_eq!(got[0], (conn, got[0].1.clone()));
                assert_eq!(got[0].1["code"], "forbidden", "{policy}");
            }
        }
    }
    // A forbidden broadcast costs no broadcast token: once allowed... it is refused as forbidden
    // however often, never as rate limited.
    let mut h = small(CommandPolicy::Admin);
    h.join(1, None);
    for i in 0..4 {
        h.at(i * 200);
        assert_eq!(h.error_code(1, r#"{"message":"hi"}"#), "forbidden");
    }
}

#[test]
fn allowed_commands_are_not_limited() {
    let mut h = Harness::with(RouterConfig {
        command_policy: CommandPolicy::Admin,
        ..small(CommandPolicy::Any).router.config.clone()
    });
    h.join(1, Some(user("1", "Ann", None, true)));
    h.join(2, None);
    for i in 0..50 {
        h.text(1, &format!(r#"{{"command":"broadcast","message":{i}}}"#));
    }
    let got = h.take();
    assert_eq!(types(&got, 2), ["message"; 50]);
    assert_eq!(types(&got, 1), [["message", "ack"]; 50].concat());
    // The admin's other messages are: five, then refused.
    for _ in 0..6 {
        h.text(1, r#"{"ping":1}"#);
    }
    assert_eq!(
        types(&h.take(), 1),
        ["pong", "pong", "pong", "pong", "pong", "error"]
    );
    // A guest's command (refused by the policy) costs a token like any message.
    for _ in 0..5 {
        assert_eq!(h.error_code(2, r#"{"command":"presence"}"#), "forbidden");
    }
    assert_eq!(h.error_code(2, r#"{"command":"presence"}"#), "rate_limited");
}

#[test]
fn binary_messages_cost_a_token_too() {
    let mut h = small(CommandPolicy::Any);
    h.join(1, None);
    for _ in 0..5 {
        h.router.handle_binary(1, h.now, &mut h.out);
    }
    assert_eq!(types(&h.take(), 1), ["error"; 5]);
    h.router.handle_binary(1, h.now, &mut h.out);
    let got = h.take();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].1["code"], "rate_limited");
}

#[test]
fn off_means_unlimited_and_the_defaults_are_the_spec_s() {
    let mut h = Harness::with(RouterConfig {
        limits: RouterLimits::OFF,
        ..RouterConfig::default()
    });
    h.join(1, None);
    h.join(2, None);
    for i in 0..1000 {
        h.text(1, &format!(r#"{{"message":{i}}}"#));
    }
    assert_eq!(types(&h.take(), 2).len(), 1000);
    assert_eq!(h.router.rate_limited(), Counts::default());
    // The defaults: 200 messages at once (of which 20 broadcasts), then refusals.
    let mut h = Harness::new();
    h.join(1, None);
    for _ in 0..200 {
        h.text(1, r#"{"ping":1}"#);
    }
    assert_eq!(types(&h.take(), 1).len(), 200);
    h.text(1, r#"{"ping":1}"#);
    assert_eq!(types(&h.take(), 1), ["error"]);
    let mut h = Harness::new();
    h.join(1, None);
    for i in 0..21 {
        h.text(1, &format!(r#"{{"message":{i}}}"#));
    }
    let got = types(&h.take(), 1);
    assert_eq!(got.len(), 21);
    assert_eq!(got[20], "error");
}
