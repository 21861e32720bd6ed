//! Channel transitions in a cluster (`reporter.rs`): every node judges them on its own view,
//! whatever caused them, and only the channel's reporter reports them, so that each is reported
//! once. Two routers, with the cluster module's part (relaying what each tells the other)
//! played by hand.

use super::members::{cluster_named, foreign, member, ROOM};
use super::*;
use crate::router::ClusterOut;

/// A node `name` of a two-node cluster with `other`, reporting.
fn node(name: &str, other: &str) -> Harness {
    let mut h = cluster_named(name);
    h.router.set_live_nodes([other]);
    h.router.set_reporting(true);
    h
}

/// Hands what `from` (node `name`) queued for the others to `to`, as the cluster module does.
fn relay(from: &mut Harness, name: &str, to: &mut Harness) {
    let (now, out) = (to.now, &mut to.out);
    for item in from.router.take_cluster_out() {
        match item {
            ClusterOut::Joined(m) => to.router.remote_join(name, m, now, out),
            ClusterOut::Left { id, .. } => to.router.remote_leave(name, &id, now, out),
            ClusterOut::Subscribed(sub) => to.router.remote_subscribe(name, sub, out),
            ClusterOut::Unsubscribed { id, channel } => {
                to.router.remote_unsubscribe(name, &id, &channel, out)
            }
            _ => {}
        }
    }
}

/// Two nodes that know each other's clients `1` (nodeA) and `2` (nodeB), both of the Pusher
/// dialect, with nothing reported yet.
fn pair() -> (Harness, Harness) {
    let (mut a, mut b) = (node("nodeA", "nodeB"), node("nodeB", "nodeA"));
    foreign(&mut a, 1);
    foreign(&mut b, 2);
    relay(&mut a, "nodeA", &mut b);
    relay(&mut b, "nodeB", &mut a);
    (a, b)
}

/// The transitions both nodes reported since the last call, sorted.
fn reported(a: &mut Harness, b: &mut Harness) -> Vec<String> {
    let mut events: Vec<String> = [a, b]
        .into_iter()
        .flat_map(|h| h.take_events())
        .filter_map(|e| match e {
            Ev::Channel(c) => Some(c),
            _ => None,
        })
        .collect();
    events.sort();
    events
}

/// A channel name whose reporter is `me` (of nodeA and nodeB).
fn reported_by(h: &Harness, prefix: &str) -> String {
    (0..)
        .map(|i| format!("{prefix}{i}"))
        .find(|c| h.router.reports(c))
        .unwrap()
}

#[test]
fn the_last_two_subscribers_leaving_on_two_nodes_at_once_vacate_once() {
    for channel in ["news", "sports", "weather", "private-x"] {
        let (mut a, mut b) = pair();
        // Both subscribe before hearing of each other: occupied once.
        assert_eq!(a.router.join(1, channel, &mut a.out), Ok(true));
        assert_eq!(b.router.join(2, channel, &mut b.out), Ok(true));
        relay(&mut a, "nodeA", &mut b);
        relay(&mut b, "nodeB", &mut a);
        assert_eq!(reported(&mut a, &mut b), [format!("occupied:{channel}")]);
        // Both leave before hearing of each other: each still sees the other's subscriber.
        assert!(a.router.leave(1, channel, &mut a.out));
        assert!(b.router.leave(2, channel, &mut b.out));
        assert!(reported(&mut a, &mut b).is_empty());
        relay(&mut a, "nodeA", &mut b);
        relay(&mut b, "nodeB", &mut a);
        assert_eq!(reported(&mut a, &mut b), [format!("vacated:{channel}")]);
    }
}

#[test]
fn the_same_user_joining_and_leaving_on_two_nodes_at_once_is_one_member() {
    let (mut a, mut b) = pair();
    let added = format!("MemberAdded {{ channel: \"{ROOM}\", user_id: \"u1\" }}");
    let removed = format!("MemberRemoved {{ channel: \"{ROOM}\", user_id: \"u1\" }}");
    assert_eq!(
        a.router.join_member(1, ROOM, &member("u1"), &mut a.out),
        Ok(true)
    );
    assert_eq!(
        b.router.join_member(2, ROOM, &member("u1"), &mut b.out),
        Ok(true)
    );
    relay(&mut a, "nodeA", &mut b);
    relay(&mut b, "nodeB", &mut a);
    assert_eq!(
        reported(&mut a, &mut b),
        [added.clone(), format!("occupied:{ROOM}")]
    );
    a.disconnect(1);
    b.disconnect(2);
    relay(&mut a, "nodeA", &mut b);
    relay(&mut b, "nodeB", &mut a);
    assert_eq!(
        reported(&mut a, &mut b),
        [removed, format!("vacated:{ROOM}")]
    );
}

#[test]
fn a_dead_nodes_channels_are_reported_by_the_survivor() {
    let (mut a, mut b) = pair();
    // Channels nodeA reports while it lives: its death must still be reported.
    let news = reported_by(&a, "news-");
    let room = reported_by(&a, "presence-room-");
    assert!(!b.router.reports(&news) && !b.router.reports(&room));
    assert_eq!(a.router.join(1, &news, &mut a.out), Ok(true));
    assert_eq!(
        a.router.join_member(1, &room, &member("u1"), &mut a.out),
        Ok(true)
    );
    assert_eq!(
        b.router.join_member(2, &room, &member("u2"), &mut b.out),
        Ok(true)
    );
    relay(&mut a, "nodeA", &mut b);
    relay(&mut b, "nodeB", &mut a);
    reported(&mut a, &mut b);
    // nodeA dies without a word; nodeB's directory drops it, then its clients.
    b.router.set_live_nodes([]);
    let now = b.now;
    b.router.remote_node_gone("nodeA", now, &mut b.out);
    let events = reported(&mut b, &mut node("nodeC", "nodeB"));
    assert_eq!(
        events,
        [
            format!("MemberRemoved {{ channel: \"{room}\", user_id: \"u1\" }}"),
            format!("vacated:{news}"),
        ]
    );
}

#[test]
fn nothing_is_reported_before_the_view_is_complete_nor_while_it_is_lost() {
    let mut a = cluster_named("nodeA");
    foreign(&mut a, 1);
    a.take_events();
    // Not yet synced: the node cannot tell vacant from filled elsewhere.
    assert_eq!(a.router.join(1, "news", &mut a.out), Ok(true));
    assert!(a.router.leave(1, "news", &mut a.out));
    let mut none = Harness::new();
    assert!(reported(&mut a, &mut none).is_empty());
    a.router.set_reporting(true);
    assert_eq!(a.router.join(1, "news", &mut a.out), Ok(true));
    assert_eq!(reported(&mut a, &mut none), ["occupied:news"]);
    // Redis lost: off again.
    a.router.set_reporting(false);
    assert!(a.router.leave(1, "news", &mut a.out));
    assert!(reported(&mut a, &mut none).is_empty());
}
