//! Presence: format, order, truncation and throttling.

use serde_json::json;

use super::*;

fn presence_config(max_users: usize) -> RouterConfig {
    RouterConfig {
        presence_max_users: max_users,
        ..RouterConfig::default()
    }
}

#[test]
fn format_lists_every_connection_in_connection_order() {
    let mut h = Harness::with(presence_config(100));
    let a = h.join(30, Some(user("1", "Ann", Some("ann@example.com"), false)));
    let b = h.join(10, None);
    let c = h.join(20, Some(user("3", "Cy", None, true)));
    h.tick();
    let expected = json!({
        "type": "presence",
        "users": [
            {"id": a, "name": "Ann", "email": "ann@example.com", "connected_at": connected_at(30)},
            {"id": b, "name": "Guest", "email": null, "connected_at": connected_at(10)},
            {"id": c, "name": "Cy", "email": null, "connected_at": connected_at(20)},
        ],
        "count": 3,
    });
    // The list is in connection order; the recipients are reached in any order (slot order:
    // no table is kept in connection order for a message to everyone).
    let mut got = h.take();
    got.sort_by_key(|(conn, _)| *conn);
    assert_eq!(
        got,
        [
            (10, expected.clone()),
            (20, expected.clone()),
            (30, expected)
        ]
    );
}

#[test]
fn one_message_serialised_once_for_everyone() {
    let mut h = Harness::with(presence_config(100));
    for conn in 0..5 {
        h.join(conn, None);
    }
    h.tick();
    assert_eq!(h.out.sent.len(), 5);
    let first = &h.out.sent[0].1;
    assert!(h.out.sent.iter().all(|(_, f)| Rc::ptr_eq(f, first)));
}

#[test]
fn above_the_limit_only_the_count_is_sent() {
    let mut h = Harness::with(presence_config(2));
    h.join(1, None);
    h.join(2, None);
    h.tick();
    let msgs = h.take();
    assert_eq!(msgs[0].1["users"].as_array().map(Vec::len), Some(2));
    assert!(msgs[0].1.get("truncated").is_none());
    h.at(1000);
    h.join(3, None);
    h.tick();
    let expected = json!({"type":"presence","users":[],"count":3,"truncated":true});
    assert_eq!(
        h.take(),
        [(1, expected.clone()), (2, expected.clone()), (3, expected)]
    );
}

#[test]
fn changes_within_the_interval_share_one_message_with_the_latest_state() {
    let mut h = Harness::with(presence_config(100));
    assert_eq!(h.router.poll_timeout(), None);
    h.join(1, None);
    // First change: due at once.
    assert_eq!(h.router.poll_timeout(), Some(h.t0));
    h.tick();
    assert_eq!(h.take().len(), 1);
    assert_eq!(h.router.poll_timeout(), None);

    h.at(10);
    let b = h.join(2, None);
    let t10 = h.now;
    h.at(50);
    h.join(3, None);
    h.at(120);
    h.disconnect(3);
    // All due one interval after the last message, at t0 + 200 ms.
    let due = h.t0 + Duration::from_millis(200);
    assert_eq!(h.router.poll_timeout(), Some(due));
    assert!(due > t10);
    h.at(199);
    h.tick();
    assert!(h.take().is_empty());
    h.at(200);
    h.tick();
    let msgs = h.take();
    assert_eq!(
        msgs.iter().map(|(c, _)| *c).collect::<Vec<_>>(),
        [1, 2],
        "one message per live client"
    );
    let users = msgs[0].1["users"].as_array().unwrap();
    assert_eq!(msgs[0].1["count"], 2);
    assert_eq!(users.len(), 2);
    assert_eq!(users[1]["id"], b.as_str());
    assert_eq!(h.router.poll_timeout(), None);

    // Long after, a change is due at once again.
    h.at(5000);
    h.disconnect(2);
    assert_eq!(h.router.poll_timeout(), Some(h.now));
    h.tick();
    let msgs = h.take();
    assert_eq!(msgs.len(), 1);
    assert_eq!(msgs[0].1["count"], 1);
}

#[test]
fn early_timeouts_are_harmless() {
    let mut h = Harness::with(presence_config(100));
    h.join(1, None);
    h.tick();
    h.take();
    h.at(100);
    h.join(2, None);
    h.tick();
    assert!(h.take().is_empty());
    assert!(h.router.poll_timeout().is_some());
}

#[test]
fn nothing_is_sent_to_nobody() {
    let mut h = Harness::with(presence_config(100));
    h.join(1, None);
    h.disconnect(1);
    h.tick();
    assert!(h.take().is_empty());
    assert_eq!(h.router.poll_timeout(), None);
}

#[test]
fn disabled_presence_is_never_scheduled() {
    let mut h = Harness::with(RouterConfig {
        presence: false,
        ..RouterConfig::default()
    });
    h.join(1, None);
    h.join(2, None);
    h.disconnect(2);
    assert_eq!(h.router.poll_timeout(), None);
    h.at(10_000);
    h.tick();
    assert!(h.take().is_empty());
}

#[test]
fn presence_fires_send_events_per_recipient() {
    let mut h = Harness::with(presence_config(100));
    let a = h.join(1, None);
    let b = h.join(2, None);
    h.take_events();
    h.tick();
    let json = payload(&h.out.sent[0].1).to_owned();
    assert_eq!(
        h.take_events(),
        [Ev::Send(a, json.clone()), Ev::Send(b, json)]
    );
}
