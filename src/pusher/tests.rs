//! The dialect without sockets or clocks: a router, a recording outbox and made-up instants.
//! What the wire shows is tested over real sockets (tests/pusher_*.rs); these pin the
//! arithmetic of the limits (docs/pusher.md, "Limits").

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::{auth, Pusher, FOREIGN};
use crate::config::PusherConfig;
use crate::events::Handler;
use crate::router::{ConnId, Frame, Outbox, Router, RouterConfig};

const KEY: &str = "app-key";
const SECRET: &str = "0123456789abcdef";

struct Quiet;
impl Handler for Quiet {}

/// What was sent, as JSON with `data` decoded again when it is a string; and what was closed.
#[derive(Default)]
struct Sent(Vec<(ConnId, Value)>, Vec<(ConnId, u16)>);

/// A server frame's JSON, `data` decoded once more when it is a string (as pusher-js does).
pub(super) fn frame_json(frame: &Frame) -> Value {
    let start = match frame[1] & 0x7f {
        126 => 4,
        127 => 10,
        _ => 2,
    };
    let mut v: Value = serde_json::from_slice(&frame[start..]).unwrap();
    if let Some(data) = v["data"]
        .as_str()
        .and_then(|d| serde_json::from_str(d).ok())
    {
        v["data"] = data;
    }
    v
}

impl Outbox for Sent {
    fn send(&mut self, conn: ConnId, frame: &Frame) {
        self.0.push((conn, frame_json(frame)));
    }
    fn close(&mut self, conn: ConnId, code: u16, _reason: &str) {
        self.1.push((conn, code));
    }
}

impl Sent {
    /// What `conn` got since the last call.
    fn take(&mut self, conn: ConnId) -> Vec<Value> {
        let (mine, rest) = self.0.drain(..).partition(|(c, _)| *c == conn);
        self.0 = rest;
        mine.into_iter().map(|(_, v)| v).collect()
    }
}

struct Harness {
    router: Router,
    pusher: Pusher,
    out: Sent,
    now: Instant,
}

impl Harness {
    /// `max_channels_per_client = 5` (a budget of 10).
    fn new(max_presence_members: usize) -> Harness {
        let config = RouterConfig {
            max_channels_per_client: 5,
            ..RouterConfig::default()
        };
        let mut router = Router::new(config, Box::new(Quiet), 1);
        router.set_foreign(FOREIGN);
        let pusher = PusherConfig {
            app_id: "1".into(),
            key: KEY.into(),
            secret: SECRET.into(),
            max_presence_members,
            ..PusherConfig::default()
        };
        Harness {
            router,
            pusher: Pusher::new(&pusher, 5).unwrap(),
            out: Sent::default(),
            now: Instant::now(),
        }
    }

    /// Opens `conn`; returns its socket id.
    fn open(&mut self, conn: ConnId) -> String {
        let path = format!("/app/{KEY}");
        let (r, o) = (&mut self.router, &mut self.out);
        self.pusher
            .open(r, conn, &path, Some("protocol=7"), None, 0, self.now, o);
        let hello = self.out.take(conn);
        hello[0]["data"]["socket_id"].as_str().unwrap().to_owned()
    }

    fn text(&mut self, conn: ConnId, v: &Value) -> Vec<Value> {
        let (r, o) = (&mut self.router, &mut self.out);
        self.pusher
            .handle_text(r, conn, &v.to_string(), self.now, o);
        self.out.take(conn)
    }

    /// A signed presence subscribe with `channel_data`; the answer's event and data.
    fn join(&mut self, conn: ConnId, socket: &str, channel: &str, cd: &str) -> (String, Value) {
        let signed = auth::sign_hex(
            SECRET.as_bytes(),
            format!("{socket}:{channel}:{cd}").as_bytes(),
        );
        let msg = json!({"event": "pusher:subscribe", "data": {
            "channel": channel, "auth": format!("{KEY}:{signed}"), "channel_data": cd}});
        let got = self.text(conn, &msg);
        assert_eq!(got.len(), 1, "{got:?}");
        (
            got[0]["event"].as_str().unwrap().to_owned(),
            got[0]["data"].clone(),
        )
    }
}

fn cd(user: &str) -> String {
    json!({"user_id": user, "user_info": {"n": user}}).to_string()
}

#[test]
fn a_presence_subscription_costs_one_more_token_per_ten_members() {
    let mut h = Harness::new(100);
    for conn in 0..20 {
        let socket = h.open(conn);
        let (event, _) = h.join(conn, &socket, "presence-a", &cd(&format!("u{conn}")));
        assert_eq!(event, "pusher_internal:subscription_succeeded");
    }
    let socket = h.open(99);
    // 20 members: 3 tokens each time, from a budget of 10.
    for _ in 0..3 {
        let (event, data) = h.join(99, &socket, "presence-a", &cd("me"));
        assert_eq!(event, "pusher_internal:subscription_succeeded", "{data}");
    }
    let (event, data) = h.join(99, &socket, "presence-a", &cd("me"));
    assert_eq!(event, "pusher:subscription_error");
    assert_eq!(
        data,
        json!({"type": "LimitReached", "status": 4301, "error": data["error"]})
    );
    // Its signature was checked first, for the last token (the members' share is charged only
    // once a subscription is authorized): nothing is left for a public channel either.
    let public = json!({"event": "pusher:subscribe", "data": {"channel": "news"}});
    assert_eq!(h.text(99, &public)[0]["event"], "pusher:subscription_error");
    // 300 ms later: 3 tokens again.
    h.now += Duration::from_millis(300);
    let (event, _) = h.join(99, &socket, "presence-a", &cd("me"));
    assert_eq!(event, "pusher_internal:subscription_succeeded");
}

#[test]
fn user_id_and_user_info_sizes_are_pushers() {
    let mut h = Harness::new(100);
    let socket = h.open(1);
    let member = |user: &str, info_len: usize| {
        json!({"user_id": user, "user_info": "i".repeat(info_len - 2)}).to_string()
    };
    for (channel, data, ok) in [
        ("presence-a", member(&"u".repeat(128), 1024), true),
        ("presence-b", member(&"u".repeat(129), 10), false),
        ("presence-c", member("u", 1025), false),
    ] {
        let (event, got) = h.join(1, &socket, channel, &data);
        let want = if ok {
            "pusher_internal:subscription_succeeded"
        } else {
            "pusher:subscription_error"
        };
        assert_eq!(event, want, "{channel}: {got}");
    }
}

#[test]
fn the_cap_counts_users_not_connections() {
    let mut h = Harness::new(2);
    let sockets: Vec<String> = (0..4).map(|c| h.open(c)).collect();
    assert_eq!(
        h.join(0, &sockets[0], "presence-a", &cd("1")).0,
        "pusher_internal:subscription_succeeded"
    );
    assert_eq!(
        h.join(1, &sockets[1], "presence-a", &cd("2")).0,
        "pusher_internal:subscription_succeeded"
    );
    let (event, data) = h.join(2, &sockets[2], "presence-a", &cd("3"));
    assert_eq!(
        (event.as_str(), &data["status"]),
        ("pusher:subscription_error", &json!(4100))
    );
    let (event, data) = h.join(3, &sockets[3], "presence-a", &cd("1"));
    assert_eq!(event, "pusher_internal:subscription_succeeded");
    assert_eq!(
        data["presence"],
        json!({"ids": ["1", "2"], "hash": {"1": {"n": "1"}, "2": {"n": "2"}}, "count": 2})
    );
    // Another channel has its own count.
    assert_eq!(
        h.join(2, &sockets[2], "presence-b", &cd("3")).0,
        "pusher_internal:subscription_succeeded"
    );
}

#[test]
fn signins_and_bad_frames_share_the_budget() {
    let mut h = Harness::new(100);
    h.open(1);
    let signin = json!({"event": "pusher:signin", "data": {"auth": "k:00", "user_data": "{}"}});
    for _ in 0..5 {
        assert_eq!(
            h.text(1, &signin)[0]["data"]["code"],
            4009,
            "a bad signature"
        );
        assert_eq!(
            h.text(1, &json!({"event": "what"}))[0]["event"],
            "pusher:error"
        );
    }
    assert_eq!(h.text(1, &signin)[0]["data"]["code"], 4301, "rate limited");
    assert!(h.text(1, &json!({"event": "what"})).is_empty(), "dropped");
    // Pings and unsubscribes are not counted.
    let ping = json!({"event": "pusher:ping", "data": {}});
    assert_eq!(h.text(1, &ping)[0]["event"], "pusher:pong");
    let unsubscribe = json!({"event": "pusher:unsubscribe", "data": {"channel": "x"}});
    assert!(h.text(1, &unsubscribe).is_empty());
}

#[test]
fn client_events_are_relayed_ten_a_second() {
    let mut h = Harness::new(100);
    let mut sockets = Vec::new();
    for conn in [1, 2] {
        let socket = h.open(conn);
        let signed = auth::sign_hex(SECRET.as_bytes(), format!("{socket}:private-a").as_bytes());
        let subscribe = json!({"event": "pusher:subscribe",
            "data": {"channel": "private-a", "auth": format!("{KEY}:{signed}")}});
        assert_eq!(
            h.text(conn, &subscribe)[0]["event"],
            "pusher_internal:subscription_succeeded"
        );
        sockets.push(socket);
    }
    let event = json!({"event": "client-x", "channel": "private-a", "data": {"n": 1}});
    // Ten at once are relayed to the other member, the eleventh is refused.
    for i in 0..10 {
        assert!(h.text(1, &event).is_empty(), "{i}: no answer to the sender");
        assert_eq!(h.out.take(2).len(), 1, "{i}: relayed");
    }
    let refused = h.text(1, &event);
    assert_eq!(refused[0]["data"]["code"], 4301, "{refused:?}");
    assert!(h.out.take(2).is_empty(), "not relayed");
    // Then one per 100 ms, not before.
    h.now += Duration::from_millis(99);
    assert_eq!(h.text(1, &event)[0]["data"]["code"], 4301);
    h.now += Duration::from_millis(1);
    assert!(h.text(1, &event).is_empty());
    assert_eq!(h.out.take(2).len(), 1);
}

#[test]
fn refused_client_events_spend_the_budget_then_go_unanswered() {
    let mut h = Harness::new(100);
    h.open(1);
    let refused = [
        json!({"event": "client-x", "channel": "private-not-in", "data": {}}),
        json!({"event": "client-x", "channel": "public", "data": {}}),
        json!({"event": format!("client-{}", "n".repeat(200)), "channel": "private-a", "data": {}}),
        json!({"event": "client-x", "data": {}}),
    ];
    // A budget of 10: ten refusals are answered, then nothing (not even for another reason).
    for i in 0..10 {
        let answer = h.text(1, &refused[i % refused.len()]);
        assert_eq!(answer[0]["data"]["code"], 4301, "{i}: {answer:?}");
    }
    for frame in &refused {
        assert!(h.text(1, frame).is_empty(), "dropped: {frame}");
    }
    // The same budget as signins: spent.
    let signin = json!({"event": "pusher:signin", "data": {"auth": "k:00", "user_data": "{}"}});
    assert_eq!(h.text(1, &signin)[0]["data"]["code"], 4301);
    // Pings stay free (one small pong per ping, no amplification).
    let ping = json!({"event": "pusher:ping", "data": {}});
    for _ in 0..50 {
        assert_eq!(h.text(1, &ping)[0]["event"], "pusher:pong");
    }
    // The refill answers again: 10 per second.
    h.now += Duration::from_millis(100);
    assert_eq!(h.text(1, &refused[0])[0]["data"]["code"], 4301);
    assert!(h.text(1, &refused[0]).is_empty());
}

#[test]
fn a_presence_channel_bigger_than_the_budget_stays_joinable() {
    let mut h = Harness::new(1000);
    // 120 members: 13 tokens, more than the whole budget of 10.
    for conn in 0..120 {
        let socket = h.open(conn);
        let (event, _) = h.join(conn, &socket, "presence-big", &cd(&format!("u{conn}")));
        assert_eq!(event, "pusher_internal:subscription_succeeded");
    }
    let socket = h.open(500);
    let (event, data) = h.join(500, &socket, "presence-big", &cd("me"));
    assert_eq!(event, "pusher_internal:subscription_succeeded", "{data}");
    // It took the whole bucket: the next one waits for the refill.
    let (event, _) = h.join(500, &socket, "presence-big", &cd("me"));
    assert_eq!(event, "pusher:subscription_error");
    h.now += Duration::from_secs(1);
    let (event, _) = h.join(500, &socket, "presence-big", &cd("me"));
    assert_eq!(event, "pusher_internal:subscription_succeeded");
}

/// SPEC section 17 in Pusher's forms: every message, `pusher:ping` included, costs a token of
/// the message bucket (200 at once by default); a refusal is `pusher:error` 4301 at most once a
/// second, and more than 200 refusals within 10 s close with 4301 (pusher-js does not retry).
#[test]
fn a_flooding_client_gets_pushers_forms_of_the_rate_limit() {
    let mut h = Harness::new(100);
    h.open(1);
    let ping = json!({"event": "pusher:ping", "data": {}});
    for _ in 0..200 {
        assert_eq!(h.text(1, &ping)[0]["event"], "pusher:pong");
    }
    let got = h.text(1, &ping);
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0]["event"], "pusher:error");
    assert_eq!(got[0]["data"]["code"], 4301);
    // Subscribes and client events are messages too; the rest of the second is silent.
    let subscribe = json!({"event": "pusher:subscribe", "data": {"channel": "c"}});
    assert!(h.text(1, &subscribe).is_empty());
    for _ in 0..198 {
        assert!(h.text(1, &ping).is_empty());
    }
    assert!(h.out.1.is_empty(), "200 refusals are tolerated");
    assert!(h.text(1, &ping).is_empty());
    assert_eq!(h.out.1, [(1, super::close::RATE_LIMITED)]);
    assert_eq!(crate::router::Dialect::Pusher.rate_limited().0, 4301);
    assert_eq!(h.router.client_id(1), None, "gone from the router");
}
