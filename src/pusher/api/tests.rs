//! Pusher's HTTP API without sockets or clocks: requests signed here (apart from the code under
//! test, with the key, secret and clock chosen by each test), answers and deliveries checked.
//! The same checks run over real sockets with the official Python library in
//! tests/pusher_api.rs; these pin every rule of the signing (SPEC section 13) and the limits.

use std::time::Instant;

use md5::{Digest, Md5};
use serde_json::{json, Value};

use super::Request;
use crate::config::PusherConfig;
use crate::events::Handler;
use crate::pusher::{auth, Pusher, FOREIGN};
use crate::router::{ConnId, Frame, Outbox, Router, RouterConfig};

const APP: &str = "42";
const KEY: &str = "api-key";
const SECRET: &str = "api-secret-0123456789";
/// The server's clock in these tests.
const NOW: u64 = 1_700_000_000;

struct Quiet;
impl Handler for Quiet {}

/// Frames as JSON (Pusher's `data` decoded once more when it is a string), and closes.
#[derive(Default)]
struct Got {
    frames: Vec<(ConnId, Value)>,
    closes: Vec<(ConnId, u16)>,
}

impl Outbox for Got {
    fn send(&mut self, conn: ConnId, frame: &Frame) {
        self.frames
            .push((conn, crate::pusher::tests::frame_json(frame)));
    }
    fn close(&mut self, conn: ConnId, code: u16, _reason: &str) {
        self.closes.push((conn, code));
    }
}

struct Api {
    router: Router,
    pusher: Pusher,
    got: Got,
    now: Instant,
}

/// `METHOD path?query` signed as the server libraries sign: every parameter but
/// `auth_signature`, keys sorted, `k=v` joined with `&`, under `METHOD\nPATH\n`.
fn signed_query(method: &str, path: &str, params: &[(&str, String)], secret: &str) -> String {
    let mut sorted: Vec<(String, String)> = params
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
        .collect();
    sorted.sort();
    let query: Vec<String> = sorted.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let query = query.join("&");
    let signature = auth::sign_hex(
        secret.as_bytes(),
        format!("{method}\n{path}\n{query}").as_bytes(),
    );
    format!("{query}&auth_signature={signature}")
}

fn md5_hex(body: &[u8]) -> String {
    auth::hex(&Md5::digest(body))
}

/// The signing parameters a correct client sends, for `body`.
fn params(body: &[u8], timestamp: u64) -> Vec<(&'static str, String)> {
    let mut p = vec![
        ("auth_key", KEY.to_owned()),
        ("auth_timestamp", timestamp.to_string()),
        ("auth_version", "1.0".to_owned()),
    ];
    if !body.is_empty() {
        p.push(("body_md5", md5_hex(body)));
    }
    p
}

impl Api {
    fn new() -> Api {
        let mut router = Router::new(RouterConfig::default(), Box::new(Quiet), 3);
        router.set_foreign(FOREIGN);
        let config = PusherConfig {
            app_id: APP.into(),
            key: KEY.into(),
            secret: SECRET.into(),
            ..PusherConfig::default()
        };
        Api {
            router,
            pusher: Pusher::new(&config, 100).unwrap(),
            got: Got::default(),
            now: Instant::now(),
        }
    }

    /// A Pusher client on `conn` subscribed to each of `channels`; its socket id.
    fn subscriber(&mut self, conn: ConnId, channels: &[&str]) -> String {
        let (r, o) = (&mut self.router, &mut self.got);
        let path = format!("/app/{KEY}");
        self.pusher
            .open(r, conn, &path, Some("protocol=7"), None, 0, self.now, o);
        let socket = self.got.frames.pop().unwrap().1["data"]["socket_id"]
            .as_str()
            .unwrap()
            .to_owned();
        for channel in channels {
            let msg = json!({"event": "pusher:subscribe", "data": {"channel": channel}});
            let (r, o) = (&mut self.router, &mut self.got);
            self.pusher
                .handle_text(r, conn, &msg.to_string(), self.now, o);
        }
        self.got.frames.clear();
        socket
    }

    /// Sends a request with exactly this query.
    fn raw(&mut self, method: &str, path: &str, query: &str, body: &[u8]) -> (u16, Value) {
        let req = Request {
            method,
            path,
            query: Some(query),
            body,
        };
        let (r, o) = (&mut self.router, &mut self.got);
        let (status, text) = self.pusher.api(r, &req, NOW, self.now, o);
        let body = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
        (status, body)
    }

    /// Sends a request signed correctly at the server's time.
    fn call(
        &mut self,
        method: &str,
        path: &str,
        extra: &[(&str, &str)],
        body: &[u8],
    ) -> (u16, Value) {
        let mut p = params(body, NOW);
        p.extend(extra.iter().map(|(k, v)| (*k, (*v).to_owned())));
        let query = signed_query(method, path, &p, SECRET);
        self.raw(method, path, &query, body)
    }

    fn events(&mut self, body: &Value) -> (u16, Value) {
        let body = body.to_string();
        self.call("POST", &format!("/apps/{APP}/events"), &[], body.as_bytes())
    }

    fn batch(&mut self, body: &Value) -> (u16, Value) {
        let body = body.to_string();
        self.call(
            "POST",
            &format!("/apps/{APP}/batch_events"),
            &[],
            body.as_bytes(),
        )
    }

    /// The events `conn` received since the last call, as `(event, channel, data)`.
    fn received(&mut self, conn: ConnId) -> Vec<(String, String, Value)> {
        let (mine, rest) = std::mem::take(&mut self.got.frames)
            .into_iter()
            .partition(|(c, _)| *c == conn);
        self.got.frames = rest;
        mine.into_iter()
            .map(|(_, v): (ConnId, Value)| {
                (
                    v["event"].as_str().unwrap().to_owned(),
                    v["channel"].as_str().unwrap_or_default().to_owned(),
                    v["data"].clone(),
                )
            })
            .collect()
    }
}

fn event(name: &str, channel: &str, data: Value) -> (String, String, Value) {
    (name.to_owned(), channel.to_owned(), data)
}

#[test]
fn a_signed_event_is_published_to_every_channel_named() {
    let mut api = Api::new();
    api.subscriber(1, &["news", "sport"]);
    let body =
        json!({"name": "shipped", "data": "{\"id\":7}", "channels": ["news", "sport", "empty"]});
    assert_eq!(api.events(&body), (200, json!({})));
    assert_eq!(
        api.received(1),
        [
            event("shipped", "news", json!({"id": 7})),
            event("shipped", "sport", json!({"id": 7}))
        ]
    );
    // `channel` alone works too.
    let body = json!({"name": "one", "data": "x", "channel": "news"});
    assert_eq!(api.events(&body).0, 200);
    assert_eq!(api.received(1), [event("one", "news", json!("x"))]);
}

#[test]
fn the_timestamp_must_be_within_600_seconds_of_the_servers_clock() {
    let mut api = Api::new();
    api.subscriber(1, &["news"]);
    let path = format!("/apps/{APP}/events");
    let body = json!({"name": "e", "data": "d", "channel": "news"}).to_string();
    for (skew, ok) in [
        (0i64, true),
        (-600, true),
        (600, true),
        (-601, false),
        (601, false),
        (-3600, false),
        (3600, false),
    ] {
        let ts = NOW.checked_add_signed(skew).unwrap();
        let query = signed_query("POST", &path, &params(body.as_bytes(), ts), SECRET);
        let (status, answer) = api.raw("POST", &path, &query, body.as_bytes());
        let delivered = api.received(1);
        if ok {
            assert_eq!((status, delivered.len()), (200, 1), "skew {skew}: {answer}");
        } else {
            assert_eq!(status, 401, "skew {skew}: {answer}");
            assert!(
                answer["error"].as_str().unwrap().contains("auth_timestamp"),
                "{answer}"
            );
            assert!(delivered.is_empty(), "skew {skew}: {delivered:?}");
        }
    }
    // Missing, or not a number: refused as well.
    for ts in [None, Some("soon"), Some("-1"), Some("")] {
        let mut p = params(body.as_bytes(), NOW);
        p.retain(|(k, _)| *k != "auth_timestamp");
        if let Some(ts) = ts {
            p.push(("auth_timestamp", ts.to_owned()));
        }
        let query = signed_query("POST", &path, &p, SECRET);
        assert_eq!(
            api.raw("POST", &path, &query, body.as_bytes()).0,
            401,
            "{ts:?}"
        );
    }
    assert!(api.received(1).is_empty());
}

#[test]
fn body_md5_binds_the_body() {
    let mut api = Api::new();
    api.subscriber(1, &["news"]);
    let path = format!("/apps/{APP}/events");
    let body = json!({"name": "e", "data": "d", "channel": "news"}).to_string();
    let other = json!({"name": "e", "data": "forged", "channel": "news"}).to_string();
    // The signature covers body_md5, so a changed body needs only a matching md5 to be caught.
    let query = signed_query("POST", &path, &params(body.as_bytes(), NOW), SECRET);
    let (status, answer) = api.raw("POST", &path, &query, other.as_bytes());
    assert_eq!(status, 401, "{answer}");
    assert!(
        answer["error"].as_str().unwrap().contains("body_md5"),
        "{answer}"
    );
    // No body_md5 with a body.
    let mut p = params(body.as_bytes(), NOW);
    p.retain(|(k, _)| *k != "body_md5");
    let query = signed_query("POST", &path, &p, SECRET);
    assert_eq!(api.raw("POST", &path, &query, body.as_bytes()).0, 401);
    // A body_md5 in another case or length.
    for md5 in [
        md5_hex(body.as_bytes()).to_uppercase(),
        md5_hex(body.as_bytes())[1..].to_owned(),
    ] {
        let mut p = params(body.as_bytes(), NOW);
        p.retain(|(k, _)| *k != "body_md5");
        p.push(("body_md5", md5));
        let query = signed_query("POST", &path, &p, SECRET);
        assert_eq!(api.raw("POST", &path, &query, body.as_bytes()).0, 401);
    }
    assert!(api.received(1).is_empty());
    // A GET with an empty body: a body_md5, when sent, must still be the empty body's.
    let channels = format!("/apps/{APP}/channels");
    let mut p = params(b"", NOW);
    p.push(("body_md5", md5_hex(b"")));
    let query = signed_query("GET", &channels, &p, SECRET);
    assert_eq!(api.raw("GET", &channels, &query, b"").0, 200);
    let mut p = params(b"", NOW);
    p.push(("body_md5", md5_hex(b"x")));
    let query = signed_query("GET", &channels, &p, SECRET);
    assert_eq!(api.raw("GET", &channels, &query, b"").0, 401);
    // And the right one is accepted.
    let query = signed_query("POST", &path, &params(body.as_bytes(), NOW), SECRET);
    assert_eq!(api.raw("POST", &path, &query, body.as_bytes()).0, 200);
    assert_eq!(api.received(1).len(), 1);
}

#[test]
fn auth_key_auth_version_and_the_signature_are_checked() {
    let mut api = Api::new();
    api.subscriber(1, &["news"]);
    let path = format!("/apps/{APP}/events");
    let body = json!({"name": "e", "data": "d", "channel": "news"}).to_string();
    let with = |key: Option<&str>, version: Option<&str>| {
        let mut p = params(body.as_bytes(), NOW);
        p.retain(|(k, _)| !matches!(*k, "auth_key" | "auth_version"));
        if let Some(key) = key {
            p.push(("auth_key", key.to_owned()));
        }
        if let Some(version) = version {
            p.push(("auth_version", version.to_owned()));
        }
        p
    };
    for (key, version, why) in [
        (Some("other-key"), Some("1.0"), "auth_key"),
        (None, Some("1.0"), "auth_key"),
        (Some(KEY), Some("2.0"), "auth_version"),
        (Some(KEY), Some("1"), "auth_version"),
        (Some(KEY), None, "auth_version"),
    ] {
        let query = signed_query("POST", &path, &with(key, version), SECRET);
        let (status, answer) = api.raw("POST", &path, &query, body.as_bytes());
        assert_eq!(status, 401, "{key:?} {version:?}: {answer}");
        assert!(answer["error"].as_str().unwrap().contains(why), "{answer}");
    }
    // Another secret, another method or path, a missing or malformed signature.
    let good = params(body.as_bytes(), NOW);
    let wrong = [
        signed_query("POST", &path, &good, "another-secret"),
        signed_query("GET", &path, &good, SECRET),
        signed_query("POST", "/apps/42/batch_events", &good, SECRET),
        signed_query("POST", &path, &good, SECRET).replace("&auth_signature=", "&x="),
        signed_query("POST", &path, &good, SECRET) + "0",
        signed_query("POST", &path, &good, SECRET).replace("auth_signature=", "auth_signature=zz"),
    ];
    for query in wrong {
        assert_eq!(
            api.raw("POST", &path, &query, body.as_bytes()).0,
            401,
            "{query}"
        );
    }
    // A parameter added after signing.
    let query = signed_query("POST", &path, &good, SECRET) + "&socket_id=1.1";
    assert_eq!(api.raw("POST", &path, &query, body.as_bytes()).0, 401);
    assert!(api.received(1).is_empty());
    // Keys in any case are lowercased before signing and checking.
    let shouting: Vec<(&str, String)> = good
        .iter()
        .map(|(k, v)| (if *k == "auth_key" { "AUTH_KEY" } else { *k }, v.clone()))
        .collect();
    let query = signed_query("POST", &path, &shouting, SECRET).replace("auth_key=", "AUTH_KEY=");
    assert_eq!(api.raw("POST", &path, &query, body.as_bytes()).0, 200);
    assert_eq!(api.received(1).len(), 1);
}

#[test]
fn another_app_is_404_and_a_malformed_query_400() {
    let mut api = Api::new();
    let (status, _) = api.call("GET", "/apps/43/channels", &[], b"");
    assert_eq!(status, 404);
    let (status, _) = api.raw("GET", &format!("/apps/{APP}/channels"), "auth_key=%zz", b"");
    assert_eq!(status, 400);
    assert_eq!(
        api.call("GET", &format!("/apps/{APP}/nothing"), &[], b"").0,
        404
    );
    assert_eq!(
        api.call("GET", &format!("/apps/{APP}/events"), &[], b"").0,
        405
    );
    assert_eq!(
        api.call("DELETE", &format!("/apps/{APP}/channels"), &[], b"")
            .0,
        405
    );
}

#[test]
fn one_event_names_1_to_100_channels() {
    let mut api = Api::new();
    api.subscriber(1, &["c0", "c99", "c100"]);
    let channels = |n: usize| (0..n).map(|i| format!("c{i}")).collect::<Vec<_>>();
    let body = json!({"name": "e", "data": "d", "channels": channels(100)});
    assert_eq!(api.events(&body).0, 200);
    let got: Vec<String> = api.received(1).into_iter().map(|e| e.1).collect();
    assert_eq!(got, ["c0", "c99"]);
    for n in [101, 0] {
        let body = json!({"name": "e", "data": "d", "channels": channels(n)});
        let (status, answer) = api.events(&body);
        assert_eq!(status, 400, "{n}: {answer}");
        assert!(
            api.received(1).is_empty(),
            "{n} channels: nothing published"
        );
    }
    let (status, _) = api.events(&json!({"name": "e", "data": "d"}));
    assert_eq!(status, 400, "no channel at all");
}

#[test]
fn a_batch_holds_at_most_10_events_and_is_all_or_nothing() {
    let mut api = Api::new();
    api.subscriber(1, &["news"]);
    let batch = |n: usize| {
        let events: Vec<Value> = (0..n)
            .map(|i| json!({"name": format!("e{i}"), "data": i.to_string(), "channel": "news"}))
            .collect();
        json!({ "batch": events })
    };
    assert_eq!(api.batch(&batch(10)), (200, json!({})));
    let names: Vec<String> = api.received(1).into_iter().map(|e| e.0).collect();
    assert_eq!(names, (0..10).map(|i| format!("e{i}")).collect::<Vec<_>>());
    assert_eq!(api.batch(&batch(11)).0, 400);
    assert!(api.received(1).is_empty());
    // One bad event (no channel, a reserved name, an invalid channel): nothing of it is sent.
    for bad in [
        json!({"name": "x", "data": "d"}),
        json!({"name": "pusher:x", "data": "d", "channel": "news"}),
        json!({"name": "x", "data": "d", "channel": "bad channel"}),
    ] {
        let body = json!({"batch": [{"name": "ok", "data": "d", "channel": "news"}, bad]});
        assert_eq!(api.batch(&body).0, 400, "{bad}");
        assert!(api.received(1).is_empty(), "{bad}");
    }
    assert_eq!(api.batch(&json!({"batch": "no"})).0, 400);
}

#[test]
fn event_names_data_and_channel_names_are_bounded() {
    let mut api = Api::new();
    api.subscriber(1, &["news"]);
    let ok_name = "n".repeat(200);
    assert_eq!(
        api.events(&json!({"name": ok_name, "data": "d", "channel": "news"}))
            .0,
        200
    );
    assert_eq!(api.received(1).len(), 1);
    for (body, status) in [
        (
            json!({"name": "n".repeat(201), "data": "d", "channel": "news"}),
            400,
        ),
        (json!({"name": "", "data": "d", "channel": "news"}), 400),
        (
            json!({"name": "pusher:x", "data": "d", "channel": "news"}),
            400,
        ),
        (
            json!({"name": "pusher_internal:member_added", "data": "d", "channel": "news"}),
            400,
        ),
        (
            json!({"name": "e", "data": "x".repeat(10 * 1024 + 1), "channel": "news"}),
            413,
        ),
        (json!({"name": "e", "data": "d", "channel": "a b"}), 400),
        (
            json!({"name": "e", "data": "d", "channels": ["news", "x".repeat(201)]}),
            400,
        ),
        (json!({"name": "e", "data": 5, "channel": "news"}), 400),
    ] {
        assert_eq!(api.events(&body).0, status, "{body}");
        assert!(api.received(1).is_empty(), "{body}");
    }
    // The largest data that fits.
    let body = json!({"name": "e", "data": "x".repeat(10 * 1024), "channel": "news"});
    assert_eq!(api.events(&body).0, 200);
    assert_eq!(api.received(1).len(), 1);
}

#[test]
fn socket_id_leaves_out_that_connection_only() {
    let mut api = Api::new();
    let a = api.subscriber(1, &["news"]);
    api.subscriber(2, &["news"]);
    let body = json!({"name": "e", "data": "d", "channel": "news", "socket_id": a});
    assert_eq!(api.events(&body).0, 200);
    assert!(api.received(1).is_empty());
    assert_eq!(api.received(2), [event("e", "news", json!("d"))]);
}

#[test]
fn channel_queries_answer_what_the_router_holds() {
    let mut api = Api::new();
    api.subscriber(1, &["news", "sport"]);
    api.subscriber(2, &["news"]);
    let path = format!("/apps/{APP}/channels");
    let (status, body) = api.call("GET", &path, &[], b"");
    assert_eq!(status, 200);
    assert_eq!(body, json!({"channels": {"news": {}, "sport": {}}}));
    let (_, body) = api.call("GET", &path, &[("filter_by_prefix", "sp")], b"");
    assert_eq!(body, json!({"channels": {"sport": {}}}));
    // user_count is for presence channels only.
    let (status, _) = api.call("GET", &path, &[("info", "user_count")], b"");
    assert_eq!(status, 400);
    let (status, body) = api.call(
        "GET",
        &path,
        &[("filter_by_prefix", "presence-"), ("info", "user_count")],
        b"",
    );
    assert_eq!((status, body), (200, json!({"channels": {}})));

    let (status, body) = api.call(
        "GET",
        &format!("/apps/{APP}/channels/news"),
        &[("info", "subscription_count")],
        b"",
    );
    assert_eq!(
        (status, body),
        (200, json!({"occupied": true, "subscription_count": 2}))
    );
    let (_, body) = api.call("GET", &format!("/apps/{APP}/channels/empty"), &[], b"");
    assert_eq!(body, json!({"occupied": false}));
    let news = format!("/apps/{APP}/channels/news");
    assert_eq!(
        api.call("GET", &news, &[("info", "user_count")], b"").0,
        400
    );
    assert_eq!(
        api.call("GET", &format!("/apps/{APP}/channels/a%20b"), &[], b"")
            .0,
        400
    );
    assert_eq!(
        api.call("GET", &format!("/apps/{APP}/channels/news/users"), &[], b"")
            .0,
        400
    );
    let (status, body) = api.call(
        "GET",
        &format!("/apps/{APP}/channels/presence-x/users"),
        &[],
        b"",
    );
    assert_eq!((status, body), (200, json!({"users": []})));
}

#[test]
fn terminate_connections_closes_the_users_signed_in_connections() {
    let mut api = Api::new();
    let socket = api.subscriber(1, &[]);
    api.subscriber(2, &[]);
    let user_data = r#"{"id":"7"}"#;
    let signature = auth::sign_hex(
        SECRET.as_bytes(),
        format!("{socket}::user::{user_data}").as_bytes(),
    );
    let msg = json!({"event": "pusher:signin", "data": {"auth": format!("{KEY}:{signature}"), "user_data": user_data}});
    let (r, o) = (&mut api.router, &mut api.got);
    api.pusher.handle_text(r, 1, &msg.to_string(), api.now, o);
    assert_eq!(api.received(1)[0].0, "pusher:signin_success");
    let path = format!("/apps/{APP}/users/7/terminate_connections");
    assert_eq!(api.call("POST", &path, &[], b"").0, 200);
    assert_eq!(api.got.closes, [(1, 4009)]);
    // An unknown user is no error.
    let path = format!("/apps/{APP}/users/8/terminate_connections");
    assert_eq!(api.call("POST", &path, &[], b"").0, 200);
    assert_eq!(api.got.closes, [(1, 4009)]);
}
