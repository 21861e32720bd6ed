//! `Handler::channel` occupancy: a channel is occupied when its first subscriber in the cluster
//! (of any dialect) joins and vacated when its last one leaves, by unsubscribing or
//! disconnecting, whichever node's it was (reported by the channel's reporter, `reporter.rs`).

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
    assert_eq!(h.router.join(2, "news", &mut h.out), Ok(true));
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
fn in_a_cluster_its_reporter_reports_every_change_whatever_caused_it() {
    use members::{added, cluster, foreign, member, remote_client, removed, sub, ROOM};
    let mut h = cluster();
    // The only live node, once its view is complete: the reporter of every channel
    // (tests/reporting.rs shares channels between two).
    h.router.set_reporting(true);
    foreign(&mut h, 1);
    foreign(&mut h, 2);
    remote_client(&mut h, "nodeB", "BBBBBBB1");
    remote_client(&mut h, "nodeB", "BBBBBBB2");
    h.take_events();
    // Another node's client fills `news`: occupied, reported here; a local join and leave
    // while that client stays change nothing.
    h.router
        .remote_subscribe("nodeB", sub("BBBBBBB1", "news", None), &mut h.out);
    assert_eq!(channel_events(&mut h), ["occupied:news"]);
    assert_eq!(h.router.join(1, "news", &mut h.out), Ok(true));
    assert!(h.router.leave(1, "news", &mut h.out));
    assert!(channel_events(&mut h).is_empty());
    // The remote client goes while a local one is in: nothing; the local one leaves: vacated.
    assert_eq!(h.router.join(1, "news", &mut h.out), Ok(true));
    h.router
        .remote_unsubscribe("nodeB", "BBBBBBB1", "news", &mut h.out);
    assert!(channel_events(&mut h).is_empty());
    assert!(h.router.leave(1, "news", &mut h.out));
    assert_eq!(channel_events(&mut h), ["vacated:news"]);
    // A remote client's leave and its node's snapshot vacate and occupy too.
    h.router
        .remote_subscribe("nodeB", sub("BBBBBBB2", "news", None), &mut h.out);
    h.router
        .remote_leave("nodeB", "BBBBBBB2", h.now, &mut h.out);
    assert_eq!(channel_events(&mut h), ["occupied:news", "vacated:news"]);
    // A local member: occupied, then added.
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
    // A member heard from another node: announced to the local subscribers, and reported.
    remote_client(&mut h, "nodeB", "BBBBBBB1");
    h.router
        .remote_subscribe("nodeB", sub("BBBBBBB1", ROOM, Some("r1")), &mut h.out);
    assert_eq!(h.take(), [added(2, "r1")]);
    assert_eq!(member_events(&channel_events(&mut h)), ["added:r1"]);
    // A local connection of a user already in through another node: no member change.
    assert_eq!(
        h.router.join_member(1, ROOM, &member("r1"), &mut h.out),
        Ok(true)
    );
    assert!(h.router.leave(1, ROOM, &mut h.out));
    assert!(h.take().is_empty());
    assert!(channel_events(&mut h).is_empty(), "r1 is still in on nodeB");
    // The remote member leaves: announced and reported.
    h.router
        .remote_leave("nodeB", "BBBBBBB1", h.now, &mut h.out);
    assert_eq!(h.take(), [removed(2, "r1")]);
    assert_eq!(member_events(&channel_events(&mut h)), ["removed:r1"]);
    // nodeB's snapshot brings a member; nodeB gone takes it, and nothing else leaves.
    remote_client(&mut h, "nodeB", "BBBBBBB3");
    h.router
        .remote_subscribe("nodeB", sub("BBBBBBB3", ROOM, Some("r3")), &mut h.out);
    h.take();
    assert_eq!(member_events(&channel_events(&mut h)), ["added:r3"]);
    h.router.remote_node_gone("nodeB", h.now, &mut h.out);
    h.take();
    assert_eq!(member_events(&channel_events(&mut h)), ["removed:r3"]);
    h.disconnect(2);
    let events = channel_events(&mut h);
    assert_eq!(member_events(&events), ["removed:u2"], "{events:?}");
    assert!(
        events.contains(&"vacated:presence-room".to_owned()),
        "{events:?}"
    );
}
