//! The router as one node of a cluster (remote.rs): what it queues for other
//! nodes, and what it does with what they send, without Redis.

use serde_json::json;

use super::*;
use crate::router::{ChannelExtras, ClusterOut, Dialect, Member};

fn cluster() -> Harness {
    let mut h = Harness::new();
    h.router.enable_cluster("nodeA");
    h
}

fn member(id: &str, seq: u64, at: u64) -> Member {
    Member {
        id: id.into(),
        seq,
        connected_at: at,
        entry: format!(r#"{{"id":"{id}","name":"Guest","email":null,"connected_at":{at}}}"#),
    }
}

#[test]
fn a_broadcast_goes_out_as_the_very_frame_local_clients_got() {
    let mut h = cluster();
    h.join(1, None);
    let out = h.router.take_cluster_out();
    assert!(
        matches!(&out[..], [ClusterOut::Joined(m)] if m.seq == 0),
        "{out:?}"
    );
    h.text(1, r#"{"message":1.50}"#);
    let local = h.out.sent.drain(..).map(|(_, f)| f).collect::<Vec<_>>();
    let out = h.router.take_cluster_out();
    match &out[..] {
        [ClusterOut::Broadcast(frame)] => {
            assert_eq!(local.len(), 1);
            assert!(Rc::ptr_eq(frame, &local[0]), "one encoding, shared");
        }
        other => panic!("{other:?}"),
    }
    // With no subscriber here, a channel message still goes to the others.
    h.text(1, r#"{"event":"message","channel":"c","data":2}"#);
    assert!(h.take().is_empty());
    let out = h.router.take_cluster_out();
    assert!(matches!(&out[..], [ClusterOut::Channel { channel, .. }] if channel == "c"));
}

#[test]
fn remote_clients_count_in_presence_lookups_and_order() {
    let mut h = cluster();
    let me = h.join(1, None);
    h.router.take_cluster_out();
    let at = connected_at(1);
    h.router
        .remote_join("nodeB", member("BBBBBBB1", 0, at - 5), h.now, &mut h.out);
    h.router
        .remote_join("nodeB", member("BBBBBBB2", 1, at), h.now, &mut h.out);
    h.text(1, r#"{"command":"presence"}"#);
    let msgs = h.take();
    let presence = &msgs[0].1;
    assert_eq!(presence["count"], 3);
    let ids: Vec<&str> = presence["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["id"].as_str().unwrap())
        .collect();
    // Same second: node "nodeA" sorts before "nodeB".
    assert_eq!(ids, ["BBBBBBB1", me.as_str(), "BBBBBBB2"]);
    // A private message to a remote client is a request to its node...
    h.text(
        1,
        r#"{"command":"private_message","to":"BBBBBBB2","message":"hi"}"#,
    );
    assert!(
        h.take().iter().all(|(_, v)| v["type"] != "ack"),
        "no ack yet"
    );
    let req = h
        .router
        .take_cluster_out()
        .into_iter()
        .find_map(|o| match o {
            ClusterOut::Private { node, to, req, .. } => {
                assert_eq!((&*node, to.as_str()), ("nodeB", "BBBBBBB2"));
                Some(req)
            }
            _ => None,
        })
        .unwrap();
    // ...acknowledged when it answers.
    h.router.remote_reply(req, true, &mut h.out);
    assert_eq!(
        h.take(),
        [(1, json!({"type":"ack","command":"private_message"}))]
    );
    h.router.remote_reply(req, true, &mut h.out);
    assert!(h.take().is_empty(), "a second answer is ignored");
    // Not found (or timed out): unknown_client.
    h.text(1, r#"{"command":"disconnect","client_id":"BBBBBBB1"}"#);
    let req = match &h.router.take_cluster_out()[..] {
        [ClusterOut::Disconnect { req, .. }] => *req,
        other => panic!("{other:?}"),
    };
    h.router.remote_reply(req, false, &mut h.out);
    assert_eq!(h.take()[0].1["code"], "unknown_client");
    // The node goes: its clients with it.
    h.router.remote_node_gone("nodeB", h.now, &mut h.out);
    assert_eq!(
        h.error_code(1, r#"{"to":"BBBBBBB1","message":1}"#),
        "unknown_client"
    );
}

#[test]
fn frames_from_other_nodes_are_delivered_unchanged() {
    let mut h = cluster();
    h.join(1, None);
    h.join(2, None);
    h.text(2, r#"{"event":"subscribe","channel":"c"}"#);
    h.take();
    let mut frame = Vec::new();
    rakit_protocol::encode_frame(&mut frame, rakit_protocol::OpCode::Text, br#"{"x":1}"#);
    h.router.remote_broadcast(&frame, &mut h.out);
    h.router
        .remote_channel("c", &frame, Default::default(), &mut h.out);
    let got: Vec<(ConnId, Vec<u8>)> = h.out.sent.drain(..).map(|(c, f)| (c, f.to_vec())).collect();
    assert_eq!(
        got,
        [(1, frame.clone()), (2, frame.clone()), (2, frame.clone())]
    );
    let me = h.router.client_id(1).unwrap().to_owned();
    assert!(h.router.remote_private(&me, &frame, &mut h.out));
    assert!(!h.router.remote_private("ZZZZZZZZ", &frame, &mut h.out));
    assert!(h.router.remote_disconnect(&me, h.now, &mut h.out));
    assert_eq!(
        h.out.closed,
        [(1, 4000, "disconnected by server".to_owned())]
    );
    let out = h.router.take_cluster_out();
    assert!(out.iter().any(
        |o| matches!(o, ClusterOut::Left { id, channels } if *id == me && channels.is_empty())
    ));
}

/// The other dialect as JSON that shows what its encoder was given.
fn encode_foreign(event: &crate::router::ChannelEvent<'_>) -> Option<Frame> {
    let v = json!({"event": event.event, "data": event.data.get(), "user_id": event.user_id});
    Some(super::members::frame(&v.to_string()))
}

fn with_foreign() -> Harness {
    let mut h = cluster();
    h.router.set_foreign(crate::router::Foreign {
        channel: encode_foreign,
        member: |_| None,
        protected: &[],
    });
    h
}

#[test]
fn an_excluded_connection_is_skipped_on_whichever_node_it_is() {
    let mut h = with_foreign();
    let (now, out) = (h.now, &mut h.out);
    h.router.connect_as(1, None, Dialect::Pusher, 0, now, out);
    h.join(2, None);
    assert!(h.router.set_alias(1, "11.11"));
    assert_eq!(h.router.join(1, "news", &mut h.out), Ok(true));
    h.text(2, r#"{"event":"subscribe","channel":"news"}"#);
    h.take();
    h.router.take_cluster_out();
    let data = serde_json::value::RawValue::from_string("7".into()).unwrap();
    let event = crate::router::ChannelEvent {
        channel: "news",
        event: Some("update"),
        data: &data,
        client_id: None,
        user_id: None,
    };
    let except = |h: &mut Harness| match &h.router.take_cluster_out()[..] {
        [ClusterOut::Channel { except, user, .. }] => {
            assert_eq!(*user, None);
            except.clone()
        }
        other => panic!("{other:?}"),
    };
    // Here: skipped here, and nobody elsewhere needs to know.
    h.router.fan_out_but(&event, "11.11", &mut h.out);
    assert_eq!(h.take().iter().map(|(c, _)| *c).collect::<Vec<_>>(), [2]);
    assert_eq!(except(&mut h), None);
    // Not here: everyone here gets it, and its name goes to the other nodes.
    h.router.fan_out_but(&event, "22.22", &mut h.out);
    assert_eq!(h.take().len(), 2);
    assert_eq!(except(&mut h).as_deref(), Some("22.22"));
    // A name that could not travel is nobody's.
    h.router.fan_out_but(&event, "1\n2", &mut h.out);
    assert_eq!(h.take().len(), 2);
    assert_eq!(except(&mut h), None);
    // From another node: the named connection is skipped, in either dialect.
    let mut frame = Vec::new();
    let rakit = br#"{"type":"channel","channel":"news","event":"update","data":7}"#;
    rakit_protocol::encode_frame(&mut frame, rakit_protocol::OpCode::Text, rakit);
    let extras = |except| ChannelExtras { except, user: None };
    h.router
        .remote_channel("news", &frame, extras(Some("11.11")), &mut h.out);
    assert_eq!(h.take().iter().map(|(c, _)| *c).collect::<Vec<_>>(), [2]);
    h.router
        .remote_channel("news", &frame, extras(Some("33.33")), &mut h.out);
    assert_eq!(h.take().len(), 2);
    let id2 = h.router.client_id(2).unwrap().to_owned();
    assert!(h.router.set_alias(2, "22.22"));
    h.router
        .remote_channel("news", &frame, extras(Some("22.22")), &mut h.out);
    assert_eq!(h.take().iter().map(|(c, _)| *c).collect::<Vec<_>>(), [1]);
    assert_eq!(id2, h.router.client_id(2).unwrap());
    // Names: unique, valid, and gone with their connection.
    assert!(!h.router.set_alias(2, "11.11"), "taken");
    assert!(h.router.set_alias(1, "11.11"), "its own");
    assert!(!h.router.set_alias(9, "99.99"), "not connected");
    assert!(!h.router.set_alias(2, ""));
    assert!(!h.router.set_alias(2, "9".repeat(65)));
    assert_eq!(h.router.conn_of_alias("22.22"), Some(2));
    h.disconnect(1);
    assert_eq!(h.router.conn_of_alias("11.11"), None);
    h.router
        .remote_channel("news", &frame, extras(Some("11.11")), &mut h.out);
    assert_eq!(h.take().len(), 1);
}

#[test]
fn a_senders_user_id_travels_beside_the_frame_to_the_other_dialect_only() {
    let mut h = with_foreign();
    let (now, out) = (h.now, &mut h.out);
    h.router.connect_as(1, None, Dialect::Pusher, 0, now, out);
    h.join(2, None);
    assert_eq!(h.router.join(1, "presence-r", &mut h.out), Ok(true));
    h.text(2, r#"{"event":"subscribe","channel":"presence-r"}"#);
    h.take();
    h.router.take_cluster_out();
    // Sent here by some third connection: the user id goes out beside the Rakit frame.
    let data = serde_json::value::RawValue::from_string(r#"{"a": 1}"#.into()).unwrap();
    let event = crate::router::ChannelEvent {
        channel: "presence-r",
        event: Some("client-x"),
        data: &data,
        client_id: None,
        user_id: Some("u\n1"),
    };
    h.router.fan_out(&event, None, &mut h.out);
    let mut local = h.take_raw();
    local.sort();
    let (frame, user) = match h.router.take_cluster_out().pop() {
        Some(ClusterOut::Channel {
            frame,
            user,
            except,
            ..
        }) => {
            assert_eq!(except, None);
            (frame, user)
        }
        other => panic!("{other:?}"),
    };
    assert_eq!(user.as_deref(), Some("u\n1"));
    // Another node receiving it gives both dialects exactly what local subscribers got.
    let extras = ChannelExtras {
        except: None,
        user: user.as_deref(),
    };
    h.router
        .remote_channel("presence-r", &frame, extras, &mut h.out);
    let mut remote = h.take_raw();
    remote.sort();
    assert_eq!(remote, local);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&remote[0].1).unwrap(),
        json!({"event": "client-x", "data": r#"{"a": 1}"#, "user_id": "u\n1"}),
    );
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&remote[1].1).unwrap(),
        json!({"type": "channel", "channel": "presence-r", "event": "client-x", "data": {"a": 1}}),
    );
    // Without a user (an API event), none is made up.
    h.router
        .remote_channel("presence-r", &frame, ChannelExtras::default(), &mut h.out);
    let foreign = h.take_raw().into_iter().find(|(c, _)| *c == 1).unwrap();
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&foreign.1).unwrap(),
        json!({"event": "client-x", "data": r#"{"a": 1}"#, "user_id": null}),
    );
}

#[test]
fn terminations_go_to_every_node_and_come_back_for_the_dialect() {
    let mut h = cluster();
    h.router.terminate_everywhere("u 1");
    h.router.terminate_everywhere("");
    assert!(
        matches!(&h.router.take_cluster_out()[..], [ClusterOut::Terminate { user }] if user == "u 1")
    );
    assert!(h.router.take_terminations().is_empty());
    h.router.remote_terminate("u2");
    h.router.remote_terminate("u3");
    assert_eq!(h.router.take_terminations(), ["u2", "u3"]);
    assert!(h.router.take_terminations().is_empty());
    // Outside a cluster there is nobody to tell.
    let mut alone = Harness::new();
    alone.router.terminate_everywhere("u1");
    alone.router.remote_terminate("u1");
    assert!(alone.router.take_cluster_out().is_empty());
    assert!(alone.router.take_terminations().is_empty());
}
