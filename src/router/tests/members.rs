//! Subscriptions and presence channel members across the cluster (members.rs, replica.rs):
//! what a node tells the others, what it makes of theirs, and who hears of a member.

use serde_json::json;

use super::*;
use crate::router::{
    ChannelEvent, ChannelMember, ClusterOut, Dialect, Foreign, Member, MemberNotice, Subscription,
};

pub(super) const ROOM: &str = "presence-room";

pub(super) fn frame(json: &str) -> Frame {
    let mut f = Vec::new();
    rakit_protocol::encode_frame(&mut f, rakit_protocol::OpCode::Text, json.as_bytes());
    Frame::from(f)
}

/// A stand-in for the other dialect: notices as small JSON objects.
fn encode_member(notice: &MemberNotice<'_>) -> Option<Frame> {
    let v = match *notice {
        MemberNotice::Added {
            channel,
            user,
            info,
        } => json!({"added": user, "channel": channel, "info": info}),
        MemberNotice::Removed { channel, user } => json!({"removed": user, "channel": channel}),
    };
    Some(frame(&v.to_string()))
}

fn encode_channel(event: &ChannelEvent<'_>) -> Option<Frame> {
    Some(frame(&json!({"event": event.event}).to_string()))
}

pub(super) fn cluster() -> Harness {
    cluster_named("nodeA")
}

/// A node named `node` of a cluster, speaking both dialects.
pub(super) fn cluster_named(node: &str) -> Harness {
    let mut h = Harness::new();
    h.router.enable_cluster(node);
    h.router.set_foreign(Foreign {
        channel: encode_channel,
        member: encode_member,
        protected: &["presence-"],
    });
    h
}

/// Connects `conn` as a client of the other dialect (no welcome).
pub(super) fn foreign(h: &mut Harness, conn: ConnId) -> String {
    let (now, at) = (h.now, connected_at(conn));
    h.router
        .connect_as(conn, None, Dialect::Pusher, at, now, &mut h.out)
        .to_owned()
}

pub(super) fn member(user: &str) -> ChannelMember {
    ChannelMember {
        user: user.into(),
        info: format!(r#"{{"name":"{user}"}}"#),
    }
}

pub(super) fn remote_client(h: &mut Harness, node: &str, id: &str) {
    let m = Member {
        id: id.into(),
        seq: 0,
        connected_at: 1,
        entry: format!(r#"{{"id":"{id}"}}"#),
    };
    h.router.remote_join(node, m, h.now, &mut h.out);
}

pub(super) fn sub(id: &str, channel: &str, user: Option<&str>) -> Subscription {
    Subscription {
        id: id.into(),
        channel: channel.into(),
        member: user.map(member),
    }
}

pub(super) fn added(conn: ConnId, user: &str) -> (ConnId, Value) {
    let info = format!(r#"{{"name":"{user}"}}"#);
    (conn, json!({"added": user, "channel": ROOM, "info": info}))
}

pub(super) fn removed(conn: ConnId, user: &str) -> (ConnId, Value) {
    (conn, json!({"removed": user, "channel": ROOM}))
}

fn users(h: &Harness) -> Vec<String> {
    h.router
        .channel_users(ROOM)
        .map(|(u, _)| u.to_owned())
        .collect()
}

#[test]
fn one_member_per_user_across_nodes_announced_to_local_subscribers_once() {
    let mut h = cluster();
    foreign(&mut h, 1);
    let a = foreign(&mut h, 2);
    h.router.take_cluster_out();
    assert_eq!(
        h.router.join_member(1, ROOM, &member("u1"), &mut h.out),
        Ok(true)
    );
    assert!(h.take().is_empty(), "the joiner hears nothing");
    // Other nodes learn the subscription with its member.
    let out = h.router.take_cluster_out();
    assert!(
        matches!(&out[..], [ClusterOut::Subscribed(s)] if s.channel == ROOM && s.member == Some(member("u1"))),
        "{out:?}"
    );
    // A user of another node arrives: announced here, once.
    remote_client(&mut h, "nodeB", "BBBBBBB1");
    remote_client(&mut h, "nodeB", "BBBBBBB2");
    h.router
        .remote_subscribe("nodeB", sub("BBBBBBB1", ROOM, Some("u2")), &mut h.out);
    assert_eq!(h.take(), [added(1, "u2")]);
    // Its second connection, and a local one of the same user: no news.
    h.router
        .remote_subscribe("nodeB", sub("BBBBBBB2", ROOM, Some("u2")), &mut h.out);
    assert_eq!(
        h.router.join_member(2, ROOM, &member("u2"), &mut h.out),
        Ok(true)
    );
    assert!(h.take().is_empty());
    assert_eq!(users(&h), ["u1", "u2"]);
    assert_eq!(h.router.user_count(ROOM), 2);
    assert_eq!(h.router.subscriber_count(ROOM), 4);
    // u2 stays while any connection of it stays, here or there.
    h.router
        .remote_leave("nodeB", "BBBBBBB1", h.now, &mut h.out);
    h.router.remote_node_gone("nodeB", h.now, &mut h.out);
    assert!(h.take().is_empty());
    assert_eq!(h.router.subscriber_count(ROOM), 2);
    h.disconnect(2);
    assert_eq!(h.take(), [removed(1, "u2")]);
    let out = h.router.take_cluster_out();
    assert!(
        out.iter().any(|o| matches!(o, ClusterOut::Left { id, channels } if *id == a && channels[..] == [ROOM.into()])),
        "{out:?}"
    );
    assert_eq!(users(&h), ["u1"]);
}

#[test]
fn a_resync_or_a_dead_node_changes_members_by_the_net_effect() {
    let mut h = cluster();
    foreign(&mut h, 1);
    h.router
        .join_member(1, ROOM, &member("u1"), &mut h.out)
        .unwrap();
    let m = |id: &str| Member {
        id: id.into(),
        seq: 0,
        connected_at: 1,
        entry: "{}".into(),
    };
    let snapshot = |h: &mut Harness, ids: &[&str], subs: Vec<Subscription>| {
        let members = ids.iter().map(|id| m(id)).collect();
        h.router
            .remote_node("nodeB", members, subs, h.now, &mut h.out);
    };
    snapshot(
        &mut h,
        &["BBBBBBB1"],
        vec![sub("BBBBBBB1", ROOM, Some("u3"))],
    );
    assert_eq!(h.take(), [added(1, "u3")]);
    // The same again, or u3 on another connection: nothing to say.
    snapshot(
        &mut h,
        &["BBBBBBB1"],
        vec![sub("BBBBBBB1", ROOM, Some("u3"))],
    );
    snapshot(
        &mut h,
        &["BBBBBBB4"],
        vec![sub("BBBBBBB4", ROOM, Some("u3"))],
    );
    assert!(h.take().is_empty());
    // A subscription of a client the snapshot does not have is dropped.
    snapshot(
        &mut h,
        &["BBBBBBB4"],
        vec![sub("BBBBBBB5", ROOM, Some("u5"))],
    );
    assert_eq!(h.take(), [removed(1, "u3")]);
    snapshot(
        &mut h,
        &["BBBBBBB4"],
        vec![sub("BBBBBBB4", ROOM, Some("u4"))],
    );
    assert_eq!(h.take(), [added(1, "u4")]);
    // The node dies: its members leave.
    h.router.remote_node_gone("nodeB", h.now, &mut h.out);
    assert_eq!(h.take(), [removed(1, "u4")]);
    assert_eq!(users(&h), ["u1"]);
    // Unsubscribing there, and leaving the channel here.
    remote_client(&mut h, "nodeC", "CCCCCCC1");
    h.router
        .remote_subscribe("nodeC", sub("CCCCCCC1", ROOM, Some("u1")), &mut h.out);
    h.router
        .remote_subscribe("nodeC", sub("CCCCCCC1", "news", None), &mut h.out);
    assert!(h.take().is_empty());
    assert!(h.router.leave(1, ROOM, &mut h.out));
    assert!(h.take().is_empty(), "no local subscriber is left to tell");
    assert_eq!(users(&h), ["u1"], "still on nodeC");
    foreign(&mut h, 2);
    h.router
        .join_member(2, ROOM, &member("u2"), &mut h.out)
        .unwrap();
    h.router
        .remote_unsubscribe("nodeC", "CCCCCCC1", ROOM, &mut h.out);
    assert_eq!(h.take(), [removed(2, "u1")]);
}

#[test]
fn channel_queries_and_announcements_cover_every_node() {
    let mut h = cluster();
    let a = h.join(1, None);
    foreign(&mut h, 2);
    h.text(1, r#"{"event":"subscribe","channel":"news"}"#);
    h.router.join(2, "news", &mut h.out).unwrap();
    h.router
        .join_member(2, ROOM, &member("u1"), &mut h.out)
        .unwrap();
    let out = h.router.take_cluster_out();
    let subscribed: Vec<&Subscription> = out
        .iter()
        .filter_map(|o| match o {
            ClusterOut::Subscribed(s) => Some(s),
            _ => None,
        })
        .collect();
    assert_eq!(subscribed.len(), 3, "{out:?}");
    assert_eq!(subscribed[0], &sub(&a, "news", None));
    remote_client(&mut h, "nodeB", "BBBBBBB1");
    remote_client(&mut h, "nodeB", "AAAAAAA9");
    for id in ["BBBBBBB1", "AAAAAAA9"] {
        h.router
            .remote_subscribe("nodeB", sub(id, "news", None), &mut h.out);
    }
    h.router
        .remote_subscribe("nodeB", sub("BBBBBBB1", "sports", None), &mut h.out);
    let list: Vec<(String, usize)> = h
        .router
        .channel_list()
        .into_iter()
        .map(|c| (c.name.to_owned(), c.subscribers))
        .collect();
    assert_eq!(
        list,
        [
            ("news".to_owned(), 4),
            (ROOM.to_owned(), 1),
            ("sports".to_owned(), 1)
        ]
    );
    let b = h.router.client_id(2).unwrap().to_owned();
    assert_eq!(
        h.router.channel_clients("news").unwrap(),
        [a.as_str(), b.as_str(), "AAAAAAA9", "BBBBBBB1"]
    );
    // For a resync of this node elsewhere: every subscription, with its member.
    let mut all = h.router.local_subscriptions();
    all.sort_by(|x, y| (&x.id, &x.channel).cmp(&(&y.id, &y.channel)));
    let mut expect = vec![
        sub(&a, "news", None),
        sub(&b, "news", None),
        sub(&b, ROOM, Some("u1")),
    ];
    expect.sort_by(|x, y| (&x.id, &x.channel).cmp(&(&y.id, &y.channel)));
    assert_eq!(all, expect);
    // Unsubscribing is announced too; a node's departure empties its channels.
    h.text(1, r#"{"event":"unsubscribe","channel":"news"}"#);
    let out = h.router.take_cluster_out();
    assert!(
        matches!(&out[..], [ClusterOut::Unsubscribed { id, channel }] if *id == a && channel == "news"),
        "{out:?}"
    );
    h.router.remote_node_gone("nodeB", h.now, &mut h.out);
    assert_eq!(h.router.channel_clients("news").unwrap(), [b.as_str()]);
    assert_eq!(h.router.channel_list().len(), 2);
}
