//! Channel history and recovery on one node (SPEC section 16), against the real daemon over
//! real sockets: offsets and epochs on every publication path, `subscribed` with the position,
//! recovery with `since` (exact replay, then live; every refusal), the `history` request and
//! its HTTP API, expiry, a restart, and `[history] max_memory` held against a publisher that
//! fills many channels with large payloads (the daemon's resident memory measured).

mod common;

use common::api::{self, API_KEY};
use common::history::{
    channel_data, config, follow_with_cuts, history, namespace, offsets, publish, subscribe,
};
use common::msg::until_pong;
use common::{pusher, recv_json, recv_text, send_json, Daemon};
use serde_json::{json, Value};

fn pusher_table() -> String {
    format!(
        "[pusher]\napp_id = \"{}\"\nkey = \"{}\"\nsecret = \"{}\"\n",
        pusher::APP_ID,
        pusher::KEY,
        pusher::SECRET
    )
}

#[test]
fn every_publication_path_gets_the_next_offset_and_plain_channels_are_unchanged() {
    let d = Daemon::start(
        &config(&format!(
            "{}{}{}",
            namespace("room.", 100, 300),
            namespace("private-hist.", 100, 300),
            pusher_table()
        )),
        &[],
    );
    let (mut a, welcome) = d.client();
    let id = welcome["client_id"].as_str().unwrap().to_owned();
    let sub = subscribe(&mut a, "room.1", None);
    let epoch = sub["epoch"].as_str().unwrap().to_owned();
    assert_eq!(sub["offset"], 0, "{sub}");
    assert!(!epoch.is_empty() && epoch.len() <= 64, "{sub}");
    // A channel without history: section 5, byte for byte.
    send_json(&mut a, &json!({"event": "subscribe", "channel": "chat"}));
    assert_eq!(
        recv_text(&mut a),
        r#"{"type":"subscribed","channel":"chat"}"#
    );
    send_json(
        &mut a,
        &json!({"event": "message", "channel": "chat", "data": {"n": 0}}),
    );
    assert_eq!(
        recv_text(&mut a),
        format!(r#"{{"type":"channel","channel":"chat","client_id":"{id}","data":{{"n":0}}}}"#)
    );
    // A client's channel message, a WebSocket command, an API command, a Pusher API event.
    send_json(
        &mut a,
        &json!({"event": "message", "channel": "room.1", "data": {"n": 1}}),
    );
    assert_eq!(
        recv_text(&mut a),
        format!(
            r#"{{"type":"channel","channel":"room.1","client_id":"{id}","data":{{"n":1}},"offset":1,"epoch":"{epoch}"}}"#
        )
    );
    send_json(
        &mut a,
        &json!({"command": "broadcast_to_channel", "channel": "room.1", "message": 2}),
    );
    assert_eq!(
        recv_text(&mut a),
        format!(r#"{{"type":"channel","channel":"room.1","data":2,"offset":2,"epoch":"{epoch}"}}"#)
    );
    assert_eq!(recv_json(&mut a)["type"], "ack");
    publish(d.addr, "room.1", json!(3));
    assert_eq!(pusher::trigger(&d, "room.1", "news", "\"4\""), 200);
    let frames: Vec<Value> = (0..2).map(|_| recv_json(&mut a)).collect();
    assert_eq!(offsets(&frames), [3, 4], "{frames:?}");
    assert_eq!(frames[1]["event"], "news");
    assert!(frames.iter().all(|f| f["epoch"] == epoch.as_str()));
    // A Pusher client event on a private channel with history: numbered too.
    let (mut p, socket) = pusher::connect(&d);
    pusher::subscribe(&mut p, &socket, "private-hist.1");
    for n in 0..2 {
        send_json(
            &mut p,
            &json!({"event": "client-typing", "channel": "private-hist.1", "data": {"n": n}}),
        );
    }
    let h = common::pusher::eventually("two client events stored", || {
        let v = history(d.addr, "private-hist.1", "").json();
        (v["offset"] == 2).then_some(v)
    });
    assert_eq!(
        h["publications"],
        json!([
            {"offset": 1, "data": {"n": 0}, "event": "client-typing"},
            {"offset": 2, "data": {"n": 1}, "event": "client-typing"}
        ])
    );
    assert_eq!(h["type"], "history");
}

#[test]
fn recovery_replays_exactly_what_was_missed_then_the_live_ones() {
    let d = Daemon::start(&config(&namespace("room.", 100, 300)), &[]);
    let (mut a, _) = d.client();
    let epoch = subscribe(&mut a, "room.1", None)["epoch"]
        .as_str()
        .unwrap()
        .to_owned();
    publish(d.addr, "room.1", json!("one"));
    assert_eq!(channel_data(&mut a, "room.1", 1), [json!("one")]);
    drop(a);
    for text in ["two", "three", "four"] {
        publish(d.addr, "room.1", json!(text));
    }
    let (mut a, _) = d.client();
    let sub = subscribe(&mut a, "room.1", Some((1, &epoch)));
    assert_eq!(
        sub,
        json!({"type": "subscribed", "channel": "room.1", "recovered": true, "offset": 4, "epoch": epoch})
    );
    let replay: Vec<Value> = (0..3).map(|_| recv_json(&mut a)).collect();
    assert_eq!(offsets(&replay), [2, 3, 4]);
    assert_eq!(
        replay.iter().map(|v| v["data"].clone()).collect::<Vec<_>>(),
        [json!("two"), json!("three"), json!("four")]
    );
    publish(d.addr, "room.1", json!("five"));
    let live = recv_json(&mut a);
    assert_eq!(
        (live["offset"].clone(), live["data"].clone()),
        (json!(5), json!("five"))
    );
    // Nothing missed: recovered, nothing replayed.
    let (mut b, _) = d.client();
    let sub = subscribe(&mut b, "room.1", Some((5, &epoch)));
    assert_eq!(
        (sub["recovered"].clone(), sub["offset"].clone()),
        (json!(true), json!(5))
    );
    assert!(until_pong(&mut b).is_empty());
}

/// A publisher on the API while a client drops its connection again and again and resubscribes
/// with `since`: every publication exactly once, in order, at every seam.
#[test]
fn recovery_seams_lose_nothing_and_repeat_nothing_under_a_live_publisher() {
    const TOTAL: u64 = 300;
    let d = Daemon::start(&config(&namespace("room.", 1000, 300)), &[]);
    let addr = d.addr;
    let publisher = std::thread::spawn(move || {
        let mut http = api::Http::connect(addr);
        for n in 1..=TOTAL {
            let body =
                json!({"command": "broadcast_to_channel", "channel": "room.s", "message": n});
            let r = http.request(&api::command(&body.to_string()));
            assert_eq!(r.status, 200);
        }
    });
    let seen = follow_with_cuts(|_| d.client().0, "room.s", TOTAL, 7);
    publisher.join().unwrap();
    // The first subscribe may have come after a few publications: from there on, all.
    let first = seen[0];
    assert_eq!(seen, (first..=TOTAL).collect::<Vec<_>>());
}

#[test]
fn what_cannot_be_replayed_is_recovered_false_and_bad_since_is_bad_request() {
    let d = Daemon::start(
        &format!(
            "max_send_buffer = 4096\n{}",
            config(&namespace("room.", 3, 300))
        ),
        &[],
    );
    let (mut a, _) = d.client();
    let epoch = subscribe(&mut a, "room.1", None)["epoch"]
        .as_str()
        .unwrap()
        .to_owned();
    for n in 1..=5 {
        publish(d.addr, "room.1", json!(n));
    }
    channel_data(&mut a, "room.1", 5);
    let lost = |since: Option<(u64, &str)>, channel: &str, offset: u64, epoch: &str| {
        let (mut ws, _) = d.client();
        let sub = subscribe(&mut ws, channel, since);
        assert_eq!(
            sub,
            json!({"type": "subscribed", "channel": channel, "recovered": false, "offset": offset, "epoch": epoch}),
            "{since:?}"
        );
        // Nothing replayed; the live stream goes on.
        assert!(until_pong(&mut ws).is_empty());
        ws
    };
    // Older than history_size keeps, another epoch, beyond the newest, beyond any u64.
    lost(Some((1, &epoch)), "room.1", 5, &epoch);
    lost(Some((4, "another")), "room.1", 5, &epoch);
    lost(Some((6, &epoch)), "room.1", 5, &epoch);
    let (mut ws, _) = d.client();
    let huge = format!(
        r#"{{"event":"subscribe","channel":"room.1","since":{{"offset":123456789012345678901234567890,"epoch":"{epoch}"}}}}"#
    );
    common::send_text(&mut ws, &huge);
    assert_eq!(recv_json(&mut ws)["recovered"], false);
    // A channel without history.
    let mut plain = lost(Some((3, &epoch)), "chat", 0, "");
    send_json(
        &mut plain,
        &json!({"event": "message", "channel": "chat", "data": 1}),
    );
    assert_eq!(recv_json(&mut plain)["data"], 1);
    // A replay that would not fit in max_send_buffer (4 KiB).
    let big = "x".repeat(1500);
    for _ in 0..3 {
        publish(d.addr, "room.1", json!(big));
    }
    lost(Some((5, &epoch)), "room.1", 8, &epoch);
    let (mut ws, _) = d.client();
    assert_eq!(
        subscribe(&mut ws, "room.1", Some((6, &epoch)))["recovered"],
        true
    );
    assert_eq!(channel_data(&mut ws, "room.1", 2).len(), 2);
    // Malformed: bad_request, and no subscription.
    let (mut ws, _) = d.client();
    for since in [
        json!(null),
        json!(5),
        json!({"offset": 5}),
        json!({"epoch": "e"}),
        json!({"offset": -1, "epoch": "e"}),
        json!({"offset": 1.5, "epoch": "e"}),
        json!({"offset": "1", "epoch": "e"}),
        json!({"offset": 1, "epoch": 7}),
    ] {
        send_json(
            &mut ws,
            &json!({"event": "subscribe", "channel": "room.1", "since": since}),
        );
        let e = recv_json(&mut ws);
        assert_eq!(
            (e["type"].clone(), e["code"].clone()),
            (json!("error"), json!("bad_request")),
            "{since}"
        );
    }
    publish(d.addr, "room.1", json!("after"));
    assert!(until_pong(&mut ws).is_empty(), "not subscribed");
}

#[test]
fn a_restart_is_a_new_epoch() {
    let d = Daemon::start(&config(&namespace("room.", 10, 300)), &[]);
    publish(d.addr, "room.1", json!(1));
    let (mut a, _) = d.client();
    let sub = subscribe(&mut a, "room.1", None);
    let epoch = sub["epoch"].as_str().unwrap().to_owned();
    assert_eq!(sub["offset"], 1);
    let port = d.addr.port();
    drop(a);
    drop(d);
    let d = Daemon::start_on(port, &config(&namespace("room.", 10, 300)), &[]);
    let (mut a, _) = d.client();
    let sub = subscribe(&mut a, "room.1", Some((1, &epoch)));
    assert_eq!(sub["recovered"], false, "{sub}");
    assert_eq!(sub["offset"], 0);
    assert_ne!(sub["epoch"], epoch.as_str());
}

#[test]
fn history_requests_over_websocket_and_the_api() {
    let d = Daemon::start(
        &config(&format!(
            "{}[[namespaces]]\nprefix = \"members.\"\nsubscribe = \"authenticated\"\nhistory_size = 5\nhistory_ttl = 60\n",
            namespace("room.", 200, 300),
        )),
        &[],
    );
    for start in [0, 50, 100] {
        let batch: Vec<Value> = (start + 1..=start + 50)
            .map(|n| json!({"command": "broadcast_to_channel", "channel": "room.1", "message": {"n": n}}))
            .collect();
        let r = api::once(d.addr, &api::command(&Value::from(batch).to_string()));
        assert_eq!(r.status, 200);
    }
    let (mut a, welcome) = d.client();
    let ask = |ws: &mut common::Client, req: Value| {
        send_json(ws, &req);
        recv_json(ws)
    };
    // The newest 100 by default, oldest first; a limit; the first N after `since`.
    let h = ask(&mut a, json!({"event": "history", "channel": "room.1"}));
    let pubs = h["publications"].as_array().unwrap();
    assert_eq!(
        (h["type"].clone(), h["offset"].clone()),
        (json!("history"), json!(150))
    );
    assert_eq!(offsets(pubs), (51..=150).collect::<Vec<_>>());
    assert_eq!(
        pubs[0],
        json!({"offset": 51, "data": {"n": 51}}),
        "no client_id from the API"
    );
    let epoch = h["epoch"].as_str().unwrap().to_owned();
    let h = ask(
        &mut a,
        json!({"event": "history", "channel": "room.1", "limit": 2}),
    );
    assert_eq!(offsets(h["publications"].as_array().unwrap()), [149, 150]);
    let h = ask(
        &mut a,
        json!({"event": "history", "channel": "room.1", "limit": 3, "since": 10}),
    );
    assert_eq!(offsets(h["publications"].as_array().unwrap()), [11, 12, 13]);
    // A client's publication names it.
    send_json(
        &mut a,
        &json!({"event": "message", "channel": "room.1", "data": "mine"}),
    );
    let h = ask(
        &mut a,
        json!({"event": "history", "channel": "room.1", "limit": 1}),
    );
    assert_eq!(
        h["publications"],
        json!([{"offset": 151, "data": "mine", "client_id": welcome["client_id"]}])
    );
    // Without history: nothing, offset 0, epoch "".
    let h = ask(&mut a, json!({"event": "history", "channel": "chat.1"}));
    assert_eq!(
        h,
        json!({"type": "history", "channel": "chat.1", "publications": [], "offset": 0, "epoch": ""})
    );
    // limit outside 1..100, a bad since, a bad channel.
    for (req, code) in [
        (
            json!({"event": "history", "channel": "room.1", "limit": 0}),
            "bad_request",
        ),
        (
            json!({"event": "history", "channel": "room.1", "limit": 101}),
            "bad_request",
        ),
        (
            json!({"event": "history", "channel": "room.1", "limit": "5"}),
            "bad_request",
        ),
        (
            json!({"event": "history", "channel": "room.1", "since": -1}),
            "bad_request",
        ),
        (
            json!({"event": "history", "channel": "room.1", "since": {"offset": 1, "epoch": "e"}}),
            "bad_request",
        ),
        (json!({"event": "history"}), "bad_request"),
        (
            json!({"event": "history", "channel": ""}),
            "invalid_channel",
        ),
    ] {
        let e = ask(&mut a, req.clone());
        assert_eq!(
            (e["type"].clone(), e["code"].clone()),
            (json!("error"), json!(code)),
            "{req}"
        );
    }
    // A guest may not read a channel for signed-in users: forbidden, naming it.
    let e = ask(&mut a, json!({"event": "history", "channel": "members.1"}));
    assert_eq!(
        (e["code"].clone(), e["channel"].clone()),
        (json!("forbidden"), json!("members.1")),
        "{e}"
    );
    // The API answers the same object.
    let ws_answer = ask(
        &mut a,
        json!({"event": "history", "channel": "room.1", "limit": 5, "since": 3}),
    );
    let r = history(d.addr, "room.1", "limit=5&since=3");
    assert_eq!(r.status, 200);
    assert_eq!(r.json(), ws_answer);
    assert_eq!(
        history(d.addr, "room.1", "").json()["epoch"],
        epoch.as_str()
    );
    assert_eq!(
        history(d.addr, "members.1", "limit=1").json()["offset"],
        0,
        "the backend is not subject to namespace rules"
    );
    for (query, status) in [
        ("limit=0", 400),
        ("limit=101", 400),
        ("limit=x", 400),
        ("since=-1", 400),
    ] {
        let r = history(d.addr, "room.1", query);
        assert_eq!(
            (r.status, r.json()["code"].clone()),
            (status, json!("bad_request")),
            "{query}"
        );
    }
    let long = "x".repeat(129);
    assert_eq!(history(d.addr, &long, "").json()["code"], "invalid_channel");
    assert_eq!(history(d.addr, "%ZZ", "").status, 400);
    // A name with `/`, percent-encoded or not.
    publish(d.addr, "room.a/b", json!(1));
    assert_eq!(history(d.addr, "room.a%2Fb", "").json()["offset"], 1);
    assert_eq!(
        history(d.addr, "room.a/b", "").json()["channel"],
        "room.a/b"
    );
    let r = api::once(d.addr, &api::get("/api/channels/room.1/history", None));
    assert_eq!(r.status, 401);
    let r = api::once(
        d.addr,
        &api::post("/api/channels/room.1/history", Some(API_KEY), "{}"),
    );
    assert_eq!(r.status, 405);
}

#[test]
fn publications_expire_after_history_ttl_but_offset_and_epoch_stay() {
    let d = Daemon::start(&config(&namespace("room.", 10, 1)), &[]);
    publish(d.addr, "room.1", json!(1));
    publish(d.addr, "room.1", json!(2));
    let first = history(d.addr, "room.1", "").json();
    assert_eq!(first["publications"].as_array().unwrap().len(), 2);
    let epoch = first["epoch"].as_str().unwrap().to_owned();
    common::pusher::eventually("publications expired", || {
        let v = history(d.addr, "room.1", "").json();
        v["publications"]
            .as_array()
            .unwrap()
            .is_empty()
            .then_some(())
    });
    let (mut a, _) = d.client();
    assert_eq!(
        subscribe(&mut a, "room.1", Some((1, &epoch)))["recovered"],
        false
    );
    let (mut b, _) = d.client();
    let sub = subscribe(&mut b, "room.1", Some((2, &epoch)));
    assert_eq!(
        (sub["recovered"].clone(), sub["offset"].clone()),
        (json!(true), json!(2))
    );
    publish(d.addr, "room.1", json!(3));
    assert_eq!(recv_json(&mut b)["offset"], 3);
    assert_eq!(recv_json(&mut a)["epoch"], epoch.as_str());
}

/// A publisher fills 2,400 channels with 60 KB payloads (144 MB in all); one daemon's history
/// holds at most `max_memory` (8 MiB): its resident memory grows by less than that plus a
/// fixed allowance, the newest channels keep theirs and the oldest lost their whole stream.
#[test]
fn max_memory_holds_against_a_publisher_filling_many_channels() {
    const MAX_MEMORY: u64 = 8 << 20;
    let d = Daemon::start(
        &format!(
            "max_buffer_size = 4194304\n{}",
            config(&format!(
                "{}[history]\nmax_memory = {MAX_MEMORY}\n",
                namespace("fill.", 10, 3600)
            ))
        ),
        &[],
    );
    let payload = "p".repeat(60_000);
    let batch = |prefix: &str, from: usize| {
        let cmds: Vec<Value> = (from..from + 50)
            .map(|i| {
                json!({"command": "broadcast_to_channel", "channel": format!("{prefix}{i}"), "message": payload})
            })
            .collect();
        Value::from(cmds).to_string()
    };
    let mut http = api::Http::connect(d.addr);
    // Warm up (the store full once, the allocator's arenas, the first buffers).
    for from in (0..400).step_by(50) {
        assert_eq!(
            http.request(&api::command(&batch("fill.w", from))).status,
            200
        );
    }
    publish(d.addr, "fill.0", json!("first"));
    let (mut a, _) = d.client();
    let first = subscribe(&mut a, "fill.0", None);
    assert_eq!(first["offset"], 1);
    let old_epoch = first["epoch"].as_str().unwrap().to_owned();
    let before = common::vm_rss_kib(d.child.id());
    for from in (1..2001).step_by(50) {
        assert_eq!(
            http.request(&api::command(&batch("fill.", from))).status,
            200
        );
    }
    let after = common::vm_rss_kib(d.child.id());
    let grown = after.saturating_sub(before) * 1024;
    let allowance = 24 << 20;
    assert!(
        grown < MAX_MEMORY + allowance,
        "resident memory grew by {grown} bytes ({before} -> {after} KiB)"
    );
    // The newest channel holds its publication; the oldest lost its stream (a new epoch).
    let newest = history(d.addr, "fill.2000", "").json();
    assert_eq!(newest["publications"][0]["data"], payload.as_str());
    let oldest = history(d.addr, "fill.0", "").json();
    assert_eq!(
        (oldest["offset"].clone(), oldest["publications"].clone()),
        (json!(0), json!([]))
    );
    assert_ne!(oldest["epoch"], old_epoch.as_str());
    drop(a);
    let (mut b, _) = d.client();
    assert_eq!(
        subscribe(&mut b, "fill.0", Some((1, &old_epoch)))["recovered"],
        false
    );
}
