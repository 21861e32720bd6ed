//! The HTTP side end to end, without sockets: heads in, response bytes and router effects out.

use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::Instant;

use serde_json::{json, Value};

use super::*;
use crate::config::Config;
use crate::events::Handler;
use crate::router::{CommandPolicy, ConnId, Frame, RouterConfig};
use crate::session::User;

const KEY: &str = "test-api-key-0123456789";
const METRICS_KEY: &str = "metrics-key-0123456789";

#[derive(Default)]
struct Out {
    sent: Vec<(ConnId, Frame)>,
    closed: Vec<(ConnId, u16)>,
}

impl Outbox for Out {
    fn send(&mut self, conn: ConnId, frame: &Frame) {
        self.sent.push((conn, Rc::clone(frame)));
    }
    fn close(&mut self, conn: ConnId, code: u16, _reason: &str) {
        self.closed.push((conn, code));
    }
}

struct Quiet;
impl Handler for Quiet {}

/// A parsed response.
#[derive(Debug)]
struct Resp {
    status: u16,
    headers: BTreeMap<String, String>,
    body: String,
}

impl Resp {
    fn json(&self) -> Value {
        assert_eq!(self.headers["content-type"], "application/json", "{self:?}");
        serde_json::from_str(&self.body).expect("a JSON body")
    }
}

#[track_caller]
fn parse(bytes: &[u8]) -> Resp {
    let text = std::str::from_utf8(bytes).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").expect("a blank line");
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap();
    assert!(status_line.starts_with("HTTP/1.1 "), "{status_line}");
    let status = status_line[9..12].parse().unwrap();
    let headers: BTreeMap<String, String> = lines
        .map(|l| {
            let (k, v) = l.split_once(": ").unwrap();
            (k.to_ascii_lowercase(), v.to_owned())
        })
        .collect();
    assert_eq!(headers["content-length"], body.len().to_string());
    assert!(headers.contains_key("connection"));
    Resp {
        status,
        headers,
        body: body.to_owned(),
    }
}

struct World {
    settings: HttpSettings,
    router: Router,
    out: Out,
    metrics: Metrics,
    now: Instant,
}

impl World {
    fn new(edit: impl FnOnce(&mut Config)) -> World {
        let mut config = Config::default();
        config.api.key = KEY.into();
        edit(&mut config);
        let router = Router::new(
            RouterConfig {
                command_policy: CommandPolicy::Any,
                ..RouterConfig::default()
            },
            Box::new(Quiet),
            7,
        );
        World {
            settings: HttpSettings::new(&config),
            router,
            out: Out::default(),
            metrics: Metrics::default(),
            now: Instant::now(),
        }
    }

    fn join(&mut self, conn: ConnId, user: Option<User>) -> String {
        let id = self
            .router
            .connect(conn, user, 1_700_000_000, self.now, &mut self.out)
            .to_owned();
        self.router.handle_timeout(self.now, &mut self.out);
        self.out.sent.clear();
        id
    }

    fn raw(&mut self, head: &Head, body: &[u8]) -> (KeepAlive, Resp) {
        let mut ctx = HttpCtx {
            settings: &self.settings,
            router: &mut self.router,
            outbox: &mut self.out,
            metrics: &mut self.metrics,
            gauges: Gauges {
                connections: 2,
                ..Gauges::default()
            },
            now: self.now,
        };
        let mut bytes = Vec::new();
        let keep = handle(head, body, &mut ctx, &mut bytes);
        (keep, parse(&bytes))
    }

    fn req(&mut self, method: &str, path: &str, body: &str) -> Resp {
        self.raw(&head(method, path, Some(KEY)), body.as_bytes()).1
    }

    /// The JSON payloads delivered since the last call, as (conn, text).
    fn delivered(&mut self) -> Vec<(ConnId, String)> {
        self.out
            .sent
            .drain(..)
            .map(|(c, f)| (c, String::from_utf8(f[2..].to_vec()).unwrap()))
            .collect()
    }
}

fn head(method: &str, path: &str, key: Option<&str>) -> Head {
    Head {
        method: method.into(),
        path: path.into(),
        http_minor: 1,
        authorization: key.map(|k| format!("Bearer {k}")),
        ..Head::default()
    }
}

#[test]
fn which_requests_are_http() {
    let mut h = head("GET", "/", None);
    assert!(wants(&h));
    for path in [
        "/health",
        "/metrics",
        "/api",
        "/api/",
        "/api/commands",
        "/api/x/y",
        "/rakit-websocket.js",
    ] {
        h.path = path.into();
        assert!(wants(&h), "{path}");
    }
    for path in [
        "/chat",
        "/apis",
        "/metrics/x",
        "",
        "/favicon.ico",
        "/rakit-websocket.js/x",
        "/clients/js/rakit-websocket.js",
    ] {
        h.path = path.into();
        assert!(!wants(&h), "{path}");
    }
    h.path = "/".into();
    h.attempts_upgrade = true;
    assert!(!wants(&h));
}

#[test]
fn head_from_request_detects_upgrade_attempts() {
    let plain = Request {
        method: "GET".into(),
        path: "/".into(),
        query: Some("a=1".into()),
        http_minor: 1,
        connection: Some("keep-alive".into()),
        ..Request::default()
    };
    let h = Head::from_request(&plain);
    assert_eq!((h.method.as_str(), h.path.as_str()), ("GET", "/"));
    assert_eq!(h.query.as_deref(), Some("a=1"));
    assert!(!h.attempts_upgrade);
    let tries: [fn(&mut Request); 5] = [
        |r| r.upgrade = Some("websocket".into()),
        |r| r.key = Some("x".into()),
        |r| r.version = Some("13".into()),
        |r| r.protocols.push("chat".into()),
        |r| r.connection = Some("keep-alive, Upgrade".into()),
    ];
    for set in tries {
        let mut r = plain.clone();
        set(&mut r);
        assert!(Head::from_request(&r).attempts_upgrade, "{r:?}");
    }
}

#[test]
fn api_off_is_404_everywhere_and_auth_is_checked_first() {
    let mut w = World::new(|c| c.api.key.clear());
    for (method, path) in [
        ("POST", "/api/commands"),
        ("GET", "/api/presence"),
        ("GET", "/api"),
    ] {
        let r = w.req(method, path, "{}");
        assert_eq!(r.status, 404, "{path}");
        assert_eq!(r.json()["code"], "not_found");
    }
    let mut w = World::new(|_| {});
    for auth in [None, Some("Bearer wrong-key-0123456789"), Some(KEY)] {
        let mut h = head("GET", "/api/nothing-here", None);
        h.authorization = auth.map(Into::into);
        let (_, r) = w.raw(&h, b"");
        assert_eq!(r.status, 401, "{auth:?}");
        assert_eq!(r.headers["www-authenticate"], "Bearer");
        assert_eq!(
            r.json(),
            json!({"ok":false,"code":"unauthorized","message":r.json()["message"]})
        );
    }
    assert_eq!(w.req("GET", "/api/nothing-here", "").status, 404);
    assert_eq!(w.metrics.api_requests.get(401), 3);
    assert_eq!(w.metrics.api_requests.get(404), 1);
}

#[test]
fn wrong_methods_get_405_with_allow() {
    let mut w = World::new(|_| {});
    for (method, path, allow) in [
        ("GET", "/api/commands", "POST"),
        ("PUT", "/api/commands", "POST"),
        ("POST", "/api/channels", "GET"),
        ("DELETE", "/api/channels/x", "GET"),
        ("POST", "/api/presence", "GET"),
    ] {
        let r = w.req(method, path, "");
        assert_eq!(
            (r.status, r.headers["allow"].as_str()),
            (405, allow),
            "{method} {path}"
        );
        assert_eq!(r.json()["code"], "method_not_allowed");
    }
    for path in ["/", "/health", "/metrics", "/rakit-websocket.js"] {
        let r = w.req("POST", path, "");
        assert_eq!(
            (r.status, r.headers["allow"].as_str()),
            (405, "GET"),
            "{path}"
        );
        assert!(r.headers["content-type"].starts_with("text/plain"));
    }
}

#[test]
fn one_command_gives_the_same_frames_as_a_websocket_command() {
    let mut w = World::new(|_| {});
    let a = w.join(1, None);
    w.join(2, None);
    let cmd = r#"{"command":"broadcast","message":{"x":1.50}}"#;
    let r = w.req("POST", "/api/commands", cmd);
    assert_eq!((r.status, r.json()), (200, json!({"ok":true})));
    let via_api = w.delivered();
    assert_eq!(
        via_api,
        [
            (1, r#"{"type":"message","message":{"x":1.50}}"#.to_owned()),
            (2, r#"{"type":"message","message":{"x":1.50}}"#.to_owned())
        ]
    );
    w.router.handle_text(1, cmd, w.now, &mut w.out);
    let mut via_ws = w.delivered();
    via_ws.pop(); // the ack
    assert_eq!(via_ws, via_api);
    let r = w.req(
        "POST",
        "/api/commands",
        &format!(r#"{{"command":"disconnect","client_id":"{a}"}}"#),
    );
    assert_eq!(r.status, 200);
    assert_eq!(w.out.closed, [(1, 4000)]);
}

#[test]
fn command_errors_and_statuses() {
    let mut w = World::new(|_| {});
    for (body, status, code) in [
        ("", 400, "invalid_json"),
        ("{", 400, "invalid_json"),
        (
            "{\"command\":\"broadcast\",\"message\":1} x",
            400,
            "invalid_json",
        ),
        ("\u{0}", 400, "invalid_json"),
        ("5", 400, "bad_request"),
        (r#"{"message":1}"#, 400, "bad_request"),
        (r#"{"command":"broadcast"}"#, 400, "bad_request"),
        (r#"{"command":"nope"}"#, 400, "unknown_command"),
        (
            r#"{"command":"broadcast_to_channel","channel":"","message":1}"#,
            400,
            "invalid_channel",
        ),
        (
            r#"{"command":"private_message","to":"Nobody00","message":1}"#,
            404,
            "unknown_client",
        ),
    ] {
        let r = w.req("POST", "/api/commands", body);
        assert_eq!(r.status, status, "{body}");
        let v = r.json();
        assert_eq!(
            (v["ok"].clone(), v["code"].clone()),
            (json!(false), json!(code)),
            "{body}"
        );
        assert!(v["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    let (_, r) = w.raw(&head("POST", "/api/commands", Some(KEY)), b"\xff\xfe");
    assert_eq!(r.json()["code"], "invalid_json");
}

#[test]
fn arrays_run_in_order_and_failures_do_not_stop_the_rest() {
    let mut w = World::new(|_| {});
    w.join(1, None);
    let body = r#" [
        {"command":"broadcast","message":1},
        {"command":"private_message","to":"Nobody00","message":2},
        {"command":"nope"},
        {"command":"broadcast","message":3}
    ]"#;
    let r = w.req("POST", "/api/commands", body);
    assert_eq!(r.status, 200);
    let v = r.json();
    let results = v["results"].as_array().unwrap();
    assert_eq!(results.len(), 4);
    assert_eq!(results[0], json!({"ok":true}));
    assert_eq!(results[1]["code"], "unknown_client");
    assert_eq!(results[2]["code"], "unknown_command");
    assert_eq!(results[3], json!({"ok":true}));
    assert_eq!(
        w.delivered(),
        [
            (1, r#"{"type":"message","message":1}"#.to_owned()),
            (1, r#"{"type":"message","message":3}"#.to_owned())
        ]
    );
    let r = w.req("POST", "/api/commands", "[]");
    assert_eq!((r.status, r.json()), (200, json!({"results":[]})));
}

#[test]
fn invalid_arrays_run_nothing() {
    let mut w = World::new(|_| {});
    w.join(1, None);
    let one = r#"{"command":"broadcast","message":1}"#;
    let hundred = format!("[{}]", vec![one; 100].join(","));
    let too_many = format!("[{}]", vec![one; 101].join(","));
    for (body, code) in [
        (too_many.as_str(), "bad_request"),
        (&format!("[{one},5]"), "bad_request"),
        (&format!("[{one},[{one}]]"), "bad_request"),
        (&format!("[{one},\"x\"]"), "bad_request"),
        (&format!("[{one},"), "invalid_json"),
        (&format!("[{one}] trailing"), "invalid_json"),
    ] {
        let r = w.req("POST", "/api/commands", body);
        assert_eq!(
            (r.status, r.json()["code"].clone()),
            (400, json!(code)),
            "{body:.60}"
        );
        assert!(w.delivered().is_empty(), "nothing ran for {body:.60}");
    }
    let r = w.req("POST", "/api/commands", &hundred);
    assert_eq!(r.status, 200);
    assert_eq!(w.delivered().len(), 100);
}

#[test]
fn channel_and_presence_queries() {
    let mut w = World::new(|_| {});
    let a = w.join(
        1,
        Some(User {
            id: "9".into(),
            name: "Ann".into(),
            email: None,
            admin: false,
        }),
    );
    let b = w.join(2, None);
    for (conn, ch) in [(1, "a b/é"), (2, "a b/é"), (2, "news")] {
        let msg = json!({"event":"subscribe","channel":ch}).to_string();
        w.router.handle_text(conn, &msg, w.now, &mut w.out);
    }
    let r = w.req("GET", "/api/channels", "");
    assert_eq!(
        r.json(),
        json!({"channels":[{"name":"a b/é","subscribers":2},{"name":"news","subscribers":1}]})
    );
    let r = w.req("GET", "/api/channels/a%20b%2F%C3%A9", "");
    assert_eq!(
        r.json(),
        json!({"name":"a b/é","subscribers":2,"clients":[a, b]})
    );
    let r = w.req("GET", "/api/channels/empty", "");
    assert_eq!(
        r.json(),
        json!({"name":"empty","subscribers":0,"clients":[]})
    );
    let r = w.req("GET", "/api/channels/", "");
    assert_eq!(
        (r.status, r.json()["code"].clone()),
        (400, json!("invalid_channel"))
    );
    let r = w.req("GET", "/api/channels/%ZZ", "");
    assert_eq!(
        (r.status, r.json()["code"].clone()),
        (400, json!("bad_request"))
    );
    let r = w.req("GET", "/api/presence", "");
    assert_eq!(
        r.json(),
        json!({"count":2,"users":[
            {"id":a,"name":"Ann","email":null,"connected_at":1_700_000_000},
            {"id":b,"name":"Guest","email":null,"connected_at":1_700_000_000}
        ]})
    );
}

#[test]
fn metrics_endpoint() {
    let mut w = World::new(|_| {});
    w.join(1, None);
    w.router.handle_text(
        1,
        r#"{"event":"subscribe","channel":"c"}"#,
        w.now,
        &mut w.out,
    );
    w.req("GET", "/api/presence", "");
    let (_, r) = w.raw(&head("GET", "/metrics", None), b"");
    assert_eq!(r.status, 200);
    assert_eq!(r.headers["content-type"], crate::metrics::CONTENT_TYPE);
    assert!(r.headers["content-type"].starts_with("text/plain; version=0.0.4"));
    for line in [
        "rakit_connections 2",
        "rakit_channels 1",
        "rakit_api_requests_total{status=\"200\"} 1",
    ] {
        assert!(r.body.lines().any(|l| l == line), "{line}:\n{}", r.body);
    }
    let mut w = World::new(|c| c.metrics.enabled = false);
    assert_eq!(w.raw(&head("GET", "/metrics", None), b"").1.status, 404);
    let mut w = World::new(|c| c.metrics.key = METRICS_KEY.into());
    let r = w.raw(&head("GET", "/metrics", None), b"").1;
    assert_eq!(
        (r.status, r.headers["www-authenticate"].as_str()),
        (401, "Bearer")
    );
    assert_eq!(
        w.raw(&head("GET", "/metrics", Some(KEY)), b"").1.status,
        401
    );
    assert_eq!(
        w.raw(&head("GET", "/metrics", Some(METRICS_KEY)), b"")
            .1
            .status,
        200
    );
    // Only /api/ requests are API requests.
    assert_eq!(w.metrics.api_requests.iter().count(), 0);
}

#[test]
fn demo_page_health_and_other_paths() {
    let mut w = World::new(|_| {});
    let (_, r) = w.raw(&head("GET", "/", None), b"");
    assert_eq!(r.status, 200);
    assert_eq!(r.headers["content-type"], "text/html; charset=utf-8");
    assert!(r.headers["content-security-policy"].contains("connect-src 'self' ws: wss:"));
    assert!(r.headers["content-security-policy"].contains("script-src 'unsafe-inline';"));
    // The client, inlined whole, then the page's script that uses it.
    let client = r.body.find(CLIENT_JS).expect("the client inlined");
    assert!(r.body[client + CLIENT_JS.len()..].contains("new RakitWebSocket()"));
    let mut w = World::new(|c| c.demo_page = false);
    assert_eq!(w.raw(&head("GET", "/", None), b"").1.status, 404);
    let (keep, r) = w.raw(&head("GET", "/health", None), b"");
    assert_eq!(
        (r.status, r.body.as_str(), keep),
        (200, "ok", KeepAlive::Keep)
    );
    assert_eq!(r.headers["connection"], "keep-alive");
    assert_eq!(w.raw(&head("GET", "/elsewhere", None), b"").1.status, 404);
}

#[test]
fn the_browser_client_is_served_whether_or_not_the_demo_page_is_on() {
    for demo in [true, false] {
        let mut w = World::new(|c| c.demo_page = demo);
        let (keep, r) = w.raw(&head("GET", CLIENT_PATH, None), b"");
        assert_eq!((r.status, keep), (200, KeepAlive::Keep), "demo_page {demo}");
        assert_eq!(r.headers["content-type"], "text/javascript; charset=utf-8");
        assert_eq!(r.headers["cache-control"], "public, max-age=3600");
        assert_eq!(r.headers["x-content-type-options"], "nosniff");
        assert_eq!(r.headers["access-control-allow-origin"], "*");
        assert_eq!(r.body, CLIENT_JS);
        // A query (a cache-busting version) is still the client.
        let mut h = head("GET", CLIENT_PATH, None);
        h.query = Some("v=2".into());
        assert_eq!(w.raw(&h, b"").1.body, CLIENT_JS);
        assert_eq!(w.metrics.api_requests.iter().count(), 0);
    }
    assert_eq!(
        CLIENT_JS,
        std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/clients/js/rakit-websocket.js"
        ))
        .unwrap()
    );
    assert!(CLIENT_JS.contains("window.RakitWebSocket = RakitWebSocket"));
    assert!(CLIENT_JS.contains("module.exports = RakitWebSocket"));
}

#[test]
fn the_demo_page_is_self_contained_and_escapes_everything() {
    let page = DEMO_PAGE;
    for external in [
        "src=\"http",
        "href=\"http",
        "@import",
        "url(",
        "<script src",
    ] {
        assert!(!page.contains(external), "{external}");
    }
    // Inlined, the client must not end its script element early.
    assert!(!CLIENT_JS.to_ascii_lowercase().contains("</script"));
    assert!(!CLIENT_JS.contains("<!--"));
    assert!(
        !page.contains("innerHTML"),
        "data must never go through innerHTML"
    );
    for id in [
        "id=\"me\"",
        "id=\"presence\"",
        "id=\"log\"",
        "id=\"broadcast-text\"",
        "id=\"broadcast-send\"",
        "id=\"channel-name\"",
        "id=\"subscribe\"",
        "id=\"unsubscribe\"",
        "id=\"publish-text\"",
        "id=\"publish-send\"",
        "id=\"private-to\"",
        "id=\"private-text\"",
        "id=\"private-send\"",
    ] {
        assert!(page.contains(id), "{id}");
    }
}

#[test]
fn keep_alive_follows_the_request() {
    let mut w = World::new(|_| {});
    let mut h = head("GET", "/health", None);
    h.http_minor = 0;
    let (keep, r) = w.raw(&h, b"");
    assert_eq!(
        (keep, r.headers["connection"].as_str()),
        (KeepAlive::Close, "close")
    );
    h.http_minor = 1;
    h.connection = Some("close".into());
    assert_eq!(w.raw(&h, b"").0, KeepAlive::Close);
}

#[test]
fn refused_bodies_close_the_connection() {
    let mut metrics = Metrics::default();
    let mut out = Vec::new();
    let h = head("POST", "/api/commands", Some(KEY));
    assert_eq!(
        refuse(&h, BodyError::LengthRequired, &mut metrics, &mut out),
        KeepAlive::Close
    );
    let r = parse(&out);
    assert_eq!((r.status, r.headers["connection"].as_str()), (411, "close"));
    assert_eq!(r.json()["code"], "length_required");
    assert_eq!(metrics.api_requests.get(411), 1);
    let mut out = Vec::new();
    refuse(
        &head("GET", "/metrics", None),
        BodyError::TooLarge,
        &mut metrics,
        &mut out,
    );
    let r = parse(&out);
    assert_eq!(r.status, 413);
    assert!(r.headers["content-type"].starts_with("text/plain"));
    assert_eq!(metrics.api_requests.get(413), 0);
}

#[test]
fn refused_api_heads_are_answered_in_json() {
    for (bytes, api) in [
        (
            &b"POST /api/commands HTTP/1.1\r\nHost: x\r\nX-Big: aaaa"[..],
            true,
        ),
        (b"GET /api?x=1 HTTP/1.1\r\n", true),
        (b"GET /api/channels/%zz", true),
        (b"GET /apis HTTP/1.1\r\n", false),
        (b"GET / HTTP/1.1\r\nX-Big: aaaa", false),
        (b"GET /metrics HTTP/1.1\r\n", false),
        (b"GET /api/x HTTP/1.1\r\nUPGRADE: websocket\r\n", false),
        (b"GET /api/x HTTP/1.1\r\nSec-WebSocket-Key: k\r\n", false),
        (
            b"GET /api/x HTTP/1.1\r\nConnection: keep-alive, Upgrade\r\n",
            false,
        ),
        (b"", false),
    ] {
        assert_eq!(
            is_api_head(bytes),
            api,
            "{:?}",
            String::from_utf8_lossy(bytes)
        );
    }
    let mut metrics = Metrics::default();
    let mut out = Vec::new();
    refuse_head(431, "request headers too large", &mut metrics, &mut out);
    let r = parse(&out);
    assert_eq!((r.status, r.headers["connection"].as_str()), (431, "close"));
    assert_eq!(r.json()["code"], "headers_too_large");
    assert_eq!(metrics.api_requests.get(431), 1);
}
