//! `Handler::channel` occupancy: a channel is occupied when its first local subscriber (of any
//! dialect) joins and vacated when its last one leaves, by unsubscribing or disconnecting.

use super::members;
use super::*;
use crate::router::Dialect;

fn channel_events(h: &mut Harness) -> Vec<String> {
    h.take_events()
        .into_iter()
        .filter_map(|e| match e {
            Ev::Channel(c) => Some(c),
            _ => None,
        })
        .collect()
}

#[test]
fn first_subscriber_occupies_and_last_one_vacates() {
    let mut h = Harness::new();
    h.join(1, None);
    h.join(2, None);
    h.take_events();
    h.text(1, r#"{"event":"subscribe","channel":"news"}"#);
    h.text(1, r#"{"event":"subscribe","channel":"news"}"#); // again: nothing new
    h.text(2, r#"{"event":"subscribe","channel":"news"}"#);
    h.text(2, r#"{"event":"subscribe","channel":"sports"}"#);
    assert_eq!(channel_events(&mut h), ["occupied:news", "occupied:sports"]);
    h.text(1, r#"{"event":"unsubscribe","channel":"news"}"#);
    h.text(1, r#"{"event":"unsubscribe","channel":"news"}"#); // not in it: nothing
    assert!(channel_events(&mut h).is_empty());
    // A disconnect vacates every channel it was alone in.
    h.disconnect(2);
    let mut vacated = channel_events(&mut h);
    vacated.sort();
    assert_eq!(vacated, ["vacated:news", "vacated:sports"]);
    // Over the channel limit: refused, so not occupied.
    let mut h = Harness::with(RouterConfig {
        max_channels_per_client: 1,
        ..RouterConfig::default()
    });
    h.join(1, None);
    h.text(1, r#"{"event":"subscribe","channel":"a"}"#);
    h.take();
    assert_eq!(
        h.error_code(1, r#"{"event":"subscribe","channel":"b"}"#),
        "too_many_channels"
    );
    assert_eq!(channel_events(&mut h), ["occupied:a"]);
}

#[test]
fn both_dialects_count_as_subscribers() {
    let mut h = Harness::new();
    h.join(1, None);
    let (now, out) = (h.now, &mut h.out);
    h.router.connect_as(2, None, Dialect::Pusher, 0, now, out);
    h.take_events();
    assert_eq!(h.router.join(2, "news"), Ok(true));
    h.text(1, r#"{"event":"subscribe","channel":"news"}"#);
    assert_eq!(channel_events(&mut h), ["occupied:news"]);
    assert!(h.router.leave(2, "news", &mut h.out));
    assert!(!h.router.leave(2, "news", &mut h.out));
    assert!(
        channel_events(&mut h).is_empty(),
        "the Rakit client is still in"
    );
    h.text(1, r#"{"event":"unsubscribe","channel":"news"}"#);
    assert_eq!(channel_events(&mut h), ["vacated:news"]);
}

/// The handler's member events, as `added:USER` / `removed:USER` (on [`members::ROOM`]).
fn member_events(events: &[String]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| {
            let (kind, rest) = e.split_once(" { ")?;
            let user = rest.split("user_id: \"").nth(1)?.split('"').next()?;
            let kind = match kind {
                "MemberAdded" => "added",
                "MemberRemoved" => "removed",
                _ => return None,
            };
            assert!(rest.contains(members::ROOM), "{e}");
            Some(format!("{kind}:{user}"))
        })
        .collect()
}

#[test]
fn in_a_cluster_each_change_is_reported_by_the_node_whose_connection_made_it() {
    use members::{added, cluster, foreign, member, remote_client, removed, sub, ROOM};
    let mut h = cluster();
    foreign(&mut h, 1);
    foreign(&mut h, 2);
    remote_client(&mut h, "nodeB", "BBBBBBB1");
    remote_client(&mut h, "nodeB", "BBBBBBB2");
    h.take_events();
    // Another node's client is in `news` (that node reported it occupied): a local join does
    // not occupy it again, and a local leave while that client stays does not vacate it.
    h.router
        .remote_subscribe("nodeB", sub("BBBBBBB1", "news", None), &mut h.out);
    assert_eq!(h.router.join(1, "news"), Ok(true));
    assert!(h.router.leave(1, "news", &mut h.out));
    assert!(channel_events(&mut h).is_empty());
    // The remote client goes (its node reports nothing: a local one was in meanwhile)...
    assert_eq!(h.router.join(1, "news"), Ok(true));
    h.router
        .remote_unsubscribe("nodeB", "BBBBBBB1", "news", &mut h.out);
    assert!(channel_events(&mut h).is_empty());
    // ...and the last subscriber in the cluster is local: vacated here.
    assert!(h.router.leave(1, "news", &mut h.out));
    assert_eq!(channel_events(&mut h), ["vacated:news"]);
    // A member heard from another node: announced to the local subscribers, not reported.
    assert_eq!(
        h.router.join_member(2, ROOM, &member("u2"), &mut h.out),
        Ok(true)
    );
    assert!(h.take().is_empty());
    assert_eq!(
        channel_events(&mut h),
        [
            "occupied:presence-room",
            "MemberAdded { channel: \"presence-room\", user_id: \"u2\" }"
        ]
    );
    h.router
        .remote_subscribe("nodeB", sub("BBBBBBB1", ROOM, Some("r1")), &mut h.out);
    assert_eq!(h.take(), [added(2, "r1")]);
    assert!(channel_events(&mut h).is_empty(), "nodeB reports r1");
    // A local connection of a user already in through another node: no member change.
    assert_eq!(
        h.router.join_member(1, ROOM, &member("r1"), &mut h.out),
        Ok(true)
    );
    assert!(h.take().is_empty());
    assert!(h.router.leave(1, ROOM, &mut h.out));
    assert!(h.take().is_empty());
    assert!(channel_events(&mut h).is_empty(), "r1 is still in on nodeB");
    // The remote member leaves: announced, not reported; the local one's leave is reported.
    h.router
        .remote_leave("nodeB", "BBBBBBB1", h.now, &mut h.out);
    assert_eq!(h.take(), [removed(2, "r1")]);
    assert!(channel_events(&mut h).is_empty());
    h.router
        .remote_subscribe("nodeB", sub("BBBBBBB2", ROOM, Some("r2")), &mut h.out);
    h.take();
    h.disconnect(2);
    let events = channel_events(&mut h);
    assert_eq!(member_events(&events), ["removed:u2"], "{events:?}");
    assert!(
        !events.iter().any(|e| e.starts_with("vacated")),
        "{events:?}"
    );
}
