//! The router as one node of a cluster (remote.rs): what it queues for other
//! nodes, and what it does with what they send, without Redis.

use serde_json::json;

use super::*;
use crate::router::{ClusterOut, Member};

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
    h.router.remote_channel("c", &frame, &mut h.out);
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
