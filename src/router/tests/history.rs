//! History and recovery in the router (SPEC section 16): one node's store, and in a cluster
//! what goes to Redis, what waits for it, and the seam between an answer and the live stream.

use std::time::Duration;

use serde_json::json;

use super::*;
use crate::history::{Position, Query, Read, Snapshot, Stored};
use crate::router::{ApiHistory, ChannelExtras, ClusterOut, Namespace, Namespaces};

fn config(max_send_buffer: usize) -> RouterConfig {
    RouterConfig {
        command_policy: CommandPolicy::Any,
        presence: false,
        namespaces: Rc::new(Namespaces::new([Namespace {
            prefix: "h.".into(),
            history_size: 5,
            history_ttl: Duration::from_secs(60),
            ..Namespace::default_rules()
        }])),
        max_send_buffer,
        ..RouterConfig::default()
    }
}

fn publish(channel: &str, data: u64) -> String {
    json!({"event": "message", "channel": channel, "data": data}).to_string()
}

fn sub(channel: &str) -> String {
    json!({"event": "subscribe", "channel": channel}).to_string()
}

fn sub_since(channel: &str, offset: u64, epoch: &str) -> String {
    json!({"event": "subscribe", "channel": channel, "since": {"offset": offset, "epoch": epoch}})
        .to_string()
}

/// What `conn` got, as JSON.
fn of(msgs: &[(ConnId, Value)], conn: ConnId) -> Vec<Value> {
    msgs.iter()
        .filter(|(c, _)| *c == conn)
        .map(|(_, v)| v.clone())
        .collect()
}

#[test]
fn a_publication_is_stored_once_as_the_frame_its_subscribers_get() {
    let mut h = Harness::with(config(1 << 20));
    let id = h.join(1, None);
    h.join(2, None);
    h.text(1, &sub("h.1"));
    h.text(2, &sub("h.1"));
    let subs = h.take();
    let epoch = subs[0].1["epoch"].as_str().unwrap().to_owned();
    assert_eq!(
        subs[0].1,
        json!({"type": "subscribed", "channel": "h.1", "offset": 0, "epoch": epoch})
    );
    h.take_events();
    h.text(1, &publish("h.1", 7));
    let sent: Vec<Frame> = h.out.sent.drain(..).map(|(_, f)| f).collect();
    assert_eq!(sent.len(), 2);
    assert!(Rc::ptr_eq(&sent[0], &sent[1]), "one encoding for both");
    assert_eq!(
        payload(&sent[0]),
        format!(
            r#"{{"type":"channel","channel":"h.1","client_id":"{id}","data":7,"offset":1,"epoch":"{epoch}"}}"#
        )
    );
    // The very bytes are in the store (no copy per store or subscriber).
    let store = h.router.history_store().unwrap();
    assert_eq!(store.len(), 1);
    let held: Vec<&Frame> = store.held("h.1").collect();
    assert_eq!(held.len(), 1);
    assert!(Rc::ptr_eq(held[0], &sent[0]));
    // A recovery replays those bytes too; the handler sees them sent.
    h.join(3, None);
    h.take_events();
    h.text(3, &sub_since("h.1", 0, &epoch));
    let got: Vec<Frame> = h.out.sent.drain(..).map(|(_, f)| f).collect();
    assert_eq!(got.len(), 2);
    assert!(Rc::ptr_eq(&got[1], &sent[0]));
    let sends = h
        .take_events()
        .into_iter()
        .filter(|e| matches!(e, Ev::Send(..)))
        .count();
    assert_eq!(sends, 2, "subscribed and the replayed frame");
}

fn cluster(max_send_buffer: usize) -> Harness {
    let mut h = Harness::with(config(max_send_buffer));
    h.router.enable_cluster("nodeA");
    h.router.set_history_up(true);
    h
}

/// The history reads queued for Redis: `(tag, channel, read)`.
fn reads(h: &mut Harness) -> Vec<(u64, String, Read)> {
    h.router
        .take_cluster_out()
        .into_iter()
        .filter_map(|item| match item {
            ClusterOut::HistoryRead {
                tag, channel, read, ..
            } => Some((tag, channel, read)),
            _ => None,
        })
        .collect()
}

/// A publication's JSON as Redis holds it.
fn stored_json(channel: &str, data: u64, offset: u64, epoch: &str) -> String {
    format!(
        r#"{{"type":"channel","channel":"{channel}","data":{data},"offset":{offset},"epoch":"{epoch}"}}"#
    )
}

fn from_redis(h: &mut Harness, channel: &str, data: u64, offset: u64, epoch: &str) {
    let json = stored_json(channel, data, offset, epoch);
    h.router.remote_history(
        channel,
        offset,
        epoch,
        json.as_bytes(),
        ChannelExtras::default(),
        &mut h.out,
    );
}

fn snapshot(offset: u64, epoch: &str, publications: Option<Vec<(u64, u64)>>) -> Snapshot {
    Snapshot {
        position: Position {
            offset,
            epoch: epoch.into(),
        },
        publications: publications.map(|list| {
            list.into_iter()
                .map(|(offset, data)| Stored {
                    offset,
                    json: stored_json("h.1", data, offset, epoch).into_bytes(),
                })
                .collect()
        }),
    }
}

#[test]
fn in_a_cluster_publications_go_to_redis_and_come_back_in_its_order() {
    let mut h = cluster(1 << 20);
    h.join(1, None);
    h.text(1, &sub("h.1"));
    let (tag, _, _) = reads(&mut h).remove(0);
    h.router
        .history_reply(tag, Some(snapshot(0, "E", Some(vec![]))), &mut h.out);
    h.take();
    h.text(1, &publish("h.1", 5));
    assert!(h.take().is_empty(), "not delivered before Redis numbers it");
    let out = h.router.take_cluster_out();
    match &out[..] {
        [ClusterOut::HistoryPublish(p)] => {
            assert_eq!(p.channel, "h.1");
            assert!(p.json.ends_with(r#""data":5}"#), "{}", p.json);
        }
        other => panic!("{other:?}"),
    }
    from_redis(&mut h, "h.1", 5, 1, "E");
    assert_eq!(h.take()[0].1["offset"], 1);
    // A channel without history: as before, at once.
    h.text(1, &sub("c"));
    h.text(1, &publish("c", 1));
    assert_eq!(h.take().len(), 2);
    // Redis down: delivered here at once, without offset, and remembered as unstored.
    h.router.take_cluster_out();
    h.router.set_history_up(false);
    h.text(1, &publish("h.1", 6));
    assert_eq!(
        h.take()[0].1,
        json!({"type": "channel", "channel": "h.1", "client_id": h.router.client_id(1).unwrap(), "data": 6})
    );
    let out = h.router.take_cluster_out();
    assert!(
        out.iter()
            .any(|o| matches!(o, ClusterOut::Unstored { channel } if channel == "h.1")),
        "{out:?}"
    );
}

#[test]
fn a_subscriber_waiting_for_redis_gets_everything_once_in_order() {
    let mut h = cluster(1 << 20);
    h.join(1, None);
    h.text(1, &sub_since("h.1", 2, "E"));
    assert!(h.take().is_empty(), "the answer waits for Redis");
    let (tag, channel, read) = reads(&mut h).remove(0);
    assert_eq!(channel, "h.1");
    assert!(matches!(read, Read::Recover(ref s) if s.offset == 2 && s.epoch == "E"));
    // Publications Redis made after its answer arrive first: held.
    from_redis(&mut h, "h.1", 50, 5, "E");
    from_redis(&mut h, "h.1", 60, 6, "E");
    assert!(h.take().is_empty());
    // The answer: 3, 4 and 5 (5 was held too: delivered once).
    h.router.history_reply(
        tag,
        Some(snapshot(5, "E", Some(vec![(3, 30), (4, 40), (5, 50)]))),
        &mut h.out,
    );
    let got = of(&h.take(), 1);
    assert_eq!(
        got[0],
        json!({"type": "subscribed", "channel": "h.1", "recovered": true, "offset": 5, "epoch": "E"})
    );
    let offsets: Vec<u64> = got[1..]
        .iter()
        .map(|v| v["offset"].as_u64().unwrap())
        .collect();
    assert_eq!(offsets, [3, 4, 5, 6]);
    // (The bus keeps Redis's order: nothing before 6 can come now.) Then the live stream.
    from_redis(&mut h, "h.1", 70, 7, "E");
    assert_eq!(h.take()[0].1["offset"], 7);
}

#[test]
fn the_floor_ends_when_the_live_stream_passes_it() {
    let mut h = cluster(1 << 20);
    h.join(1, None);
    h.text(1, &sub("h.1"));
    let (tag, _, read) = reads(&mut h).remove(0);
    assert_eq!(read, Read::Position);
    h.router
        .history_reply(tag, Some(snapshot(9, "E", Some(vec![]))), &mut h.out);
    assert_eq!(
        h.take()[0].1,
        json!({"type": "subscribed", "channel": "h.1", "offset": 9, "epoch": "E"})
    );
    // 9 was published before the answer: its late copy is skipped, 10 passes.
    from_redis(&mut h, "h.1", 9, 9, "E");
    assert!(h.take().is_empty());
    from_redis(&mut h, "h.1", 10, 10, "E");
    from_redis(&mut h, "h.1", 11, 11, "E");
    assert_eq!(h.take().len(), 2);
    // A new epoch (the stream was lost in Redis) is never skipped.
    h.join(2, None);
    h.text(2, &sub("h.1"));
    let (tag, _, _) = reads(&mut h).remove(0);
    h.router
        .history_reply(tag, Some(snapshot(11, "E", Some(vec![]))), &mut h.out);
    h.take();
    from_redis(&mut h, "h.1", 1, 1, "F");
    assert_eq!(of(&h.take(), 2).len(), 1);
}

#[test]
fn redis_failing_or_too_much_held_is_recovered_false() {
    let mut h = cluster(600);
    h.join(1, None);
    h.text(1, &sub_since("h.1", 1, "E"));
    let (tag, _, _) = reads(&mut h).remove(0);
    h.router.history_reply(tag, None, &mut h.out);
    assert_eq!(
        h.take()[0].1,
        json!({"type": "subscribed", "channel": "h.1", "recovered": false, "offset": 0, "epoch": ""})
    );
    // More held than max_send_buffer: dropped; recovered false at the newest offset seen.
    h.join(2, None);
    h.text(2, &sub_since("h.1", 1, "E"));
    let (tag, _, _) = reads(&mut h).remove(0);
    for offset in 3..=12 {
        from_redis(&mut h, "h.1", offset, offset, "E");
    }
    let delivered_to_1 = of(&h.take(), 1).len();
    assert_eq!(delivered_to_1, 10);
    h.router
        .history_reply(tag, Some(snapshot(2, "E", Some(vec![(2, 2)]))), &mut h.out);
    let got = of(&h.take(), 2);
    assert_eq!(got[0]["recovered"], false);
    assert_eq!(got[0]["offset"], 12);
    // A replay over max_send_buffer: not recovered.
    h.join(3, None);
    h.text(3, &sub_since("h.1", 0, "E"));
    let (tag, _, _) = reads(&mut h).remove(0);
    let many: Vec<(u64, u64)> = (1..=12).map(|n| (n, n)).collect();
    h.router
        .history_reply(tag, Some(snapshot(12, "E", Some(many))), &mut h.out);
    let got = of(&h.take(), 3);
    assert_eq!((got.len(), got[0]["recovered"].clone()), (1, json!(false)));
}

#[test]
fn answers_for_connections_that_left_are_dropped_and_nothing_is_held_for_them() {
    let mut h = cluster(1 << 20);
    h.join(1, None);
    h.text(1, &sub_since("h.1", 1, "E"));
    let (tag, _, _) = reads(&mut h).remove(0);
    h.text(
        1,
        &json!({"event": "unsubscribe", "channel": "h.1"}).to_string(),
    );
    h.take();
    h.router
        .history_reply(tag, Some(snapshot(1, "E", Some(vec![]))), &mut h.out);
    assert!(h.take().is_empty());
    // Subscribed again, then gone: the answer finds nobody.
    h.text(1, &sub("h.1"));
    let (tag, _, _) = reads(&mut h).remove(0);
    h.disconnect(1);
    h.connect(1, None);
    h.take();
    h.router
        .history_reply(tag, Some(snapshot(1, "E", Some(vec![]))), &mut h.out);
    assert!(h.take().is_empty());
    assert_eq!(h.router.history_reads_waiting(), 0);
}

#[test]
fn history_requests_and_the_api_wait_for_redis() {
    let mut h = cluster(1 << 20);
    h.join(1, None);
    h.text(
        1,
        &json!({"event": "history", "channel": "h.1", "limit": 2}).to_string(),
    );
    let (tag, _, read) = reads(&mut h).remove(0);
    assert_eq!(read, Read::Query(Query::Newest(2)));
    h.router.history_reply(
        tag,
        Some(snapshot(4, "E", Some(vec![(3, 30), (4, 40)]))),
        &mut h.out,
    );
    assert_eq!(
        h.take()[0].1,
        json!({"type": "history", "channel": "h.1", "publications": [
            {"offset": 3, "data": 30}, {"offset": 4, "data": 40}], "offset": 4, "epoch": "E"})
    );
    h.text(
        1,
        &json!({"event": "history", "channel": "h.1"}).to_string(),
    );
    let (tag, _, _) = reads(&mut h).remove(0);
    h.router.history_reply(tag, None, &mut h.out);
    let e = &h.take()[0].1;
    assert_eq!(
        (e["code"].clone(), e["channel"].clone()),
        (json!("unavailable"), json!("h.1"))
    );
    // The API: a tag now, the answer later.
    let ApiHistory::Later(tag) = h.router.api_history("h.1", Query::Newest(1)).unwrap() else {
        panic!("asked of Redis");
    };
    reads(&mut h);
    h.router
        .history_reply(tag, Some(snapshot(4, "E", Some(vec![(4, 40)]))), &mut h.out);
    let answers = h.router.take_api_answers();
    assert_eq!(answers.len(), 1);
    let body: Value = serde_json::from_str(answers[0].1.as_ref().unwrap()).unwrap();
    assert_eq!(body["publications"][0]["data"], 40);
    // One connection may not have more than 16 history requests waiting.
    let ask = json!({"event": "history", "channel": "h.1"}).to_string();
    for _ in 0..16 {
        h.text(1, &ask);
    }
    assert!(h.take().is_empty());
    let waiting = reads(&mut h);
    assert_eq!(waiting.len(), 16);
    h.text(1, &ask);
    let e = &h.take()[0].1;
    assert_eq!(
        (e["code"].clone(), e["channel"].clone()),
        (json!("bad_request"), json!("h.1"))
    );
    assert!(reads(&mut h).is_empty());
    // An answer frees a place.
    h.router.history_reply(waiting[0].0, None, &mut h.out);
    h.take();
    h.text(1, &ask);
    assert_eq!(reads(&mut h).len(), 1);
    // Redis down: unavailable at once, 503 for the API.
    h.router.set_history_up(false);
    h.text(1, r#"{"event":"history","channel":"h.1"}"#);
    assert_eq!(h.take()[0].1["code"], "unavailable");
    let e = h.router.api_history("h.1", Query::Newest(1)).unwrap_err();
    assert_eq!((e.status, e.code), (503, "unavailable"));
    // Down, a subscribe is answered at once with an unknown position.
    h.text(1, &sub_since("h.2", 3, "E"));
    assert_eq!(h.take()[0].1["recovered"], false);
}

#[test]
fn one_node_expires_and_sweeps_on_the_routers_timer() {
    let mut h = Harness::with(config(1 << 20));
    h.join(1, None);
    h.text(1, &publish("h.1", 1));
    let deadline = h.router.poll_timeout().expect("an expiry is due");
    assert!(deadline > h.now + Duration::from_secs(59));
    h.router.handle_timeout(deadline, &mut h.out);
    let r = h.router.api_history("h.1", Query::Newest(5)).unwrap();
    let ApiHistory::Ready(json) = r else { panic!() };
    let v: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(
        (v["offset"].clone(), v["publications"].clone()),
        (json!(1), json!([]))
    );
}

#[test]
fn a_reload_keeps_the_history_settings_of_the_start() {
    let mut h = Harness::with(RouterConfig {
        namespaces: Rc::new(Namespaces::new([
            Namespace {
                prefix: "h.".into(),
                history_size: 5,
                history_ttl: Duration::from_secs(60),
                ..Namespace::default_rules()
            },
            Namespace {
                prefix: "p.".into(),
                ..Namespace::default_rules()
            },
        ])),
        ..config(1 << 20)
    });
    h.join(1, None);
    h.text(1, &sub("h.1"));
    h.text(1, &sub("p.1"));
    h.take();
    // New rules: h. without history, p. with it (SPEC 18: not applied to history).
    h.router.set_namespaces(Rc::new(Namespaces::new([
        Namespace {
            prefix: "h.".into(),
            ..Namespace::default_rules()
        },
        Namespace {
            prefix: "p.".into(),
            history_size: 5,
            history_ttl: Duration::from_secs(60),
            ..Namespace::default_rules()
        },
    ])));
    h.text(1, &publish("h.1", 1));
    h.text(1, &publish("p.1", 2));
    let got = h.take();
    assert_eq!(got[0].1["offset"], 1, "{got:?}");
    assert!(got[1].1.get("offset").is_none(), "{got:?}");
}

#[test]
fn the_other_dialects_channels_have_no_history_for_rakit_clients() {
    fn encode(_: &crate::router::ChannelEvent<'_>) -> Option<Frame> {
        None
    }
    fn member(_: &crate::router::MemberNotice<'_>) -> Option<Frame> {
        None
    }
    let mut h = Harness::with(RouterConfig {
        namespaces: Rc::new(Namespaces::new([Namespace {
            prefix: String::new(),
            history_size: 5,
            history_ttl: Duration::from_secs(60),
            ..Namespace::default_rules()
        }])),
        ..config(1 << 20)
    });
    h.router.set_foreign(crate::router::Foreign {
        channel: encode,
        member,
        protected: &["private-"],
    });
    h.join(1, None);
    let cmd =
        json!({"command": "broadcast_to_channel", "channel": "private-x", "message": "secret"});
    let cmd = serde_json::value::RawValue::from_string(cmd.to_string()).unwrap();
    h.router.api_command(&cmd, h.now, &mut h.out).unwrap();
    h.take();
    h.text(
        1,
        &json!({"event": "history", "channel": "private-x"}).to_string(),
    );
    let e = &h.take()[0].1;
    assert_eq!(
        (e["code"].clone(), e["channel"].clone()),
        (json!("forbidden"), json!("private-x")),
        "{e}"
    );
    // The backend reads it.
    let ApiHistory::Ready(json) = h.router.api_history("private-x", Query::Newest(5)).unwrap()
    else {
        panic!()
    };
    assert!(json.contains("secret"));
}
