//! Webhooks in Pusher's format (`[webhooks] format = "pusher"`, docs/pusher-webhooks.md) over
//! real sockets: Pusher clients (tungstenite speaking protocol 7) and a Rakit client act, a
//! local receiver collects the POSTs, and the real Pusher server libraries judge them: the
//! Node `pusher` 5.3.4 `WebHook` (`isValid()`, `getEvents()`) and the Python `pusher` 3.3.4
//! `validate_webhook`, both with the app's secret and with a wrong one.
//!
//! The library checks need node with tests/pusher/node_modules and python3 with pusher 3.3.4
//! (scripts/test.sh installs both); without them those checks are skipped, and say so, unless
//! that is not allowed (tests/common/tools.rs). The events themselves are checked either way.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::abuse::LIMITS_OFF;
use common::api::sigterm;
use common::pusher::sign as auth;
use common::receiver::{webhook_counts, Endpoint, Mode, Post};
use common::tools::{have, Tool};
use common::{
    expect_gone, recv_json, send_json, wait_exit, Client, Daemon, GONE_WITHIN, SLACK, WAIT,
};
use serde_json::{json, Value};

const APP_ID: &str = "4242";
const KEY: &str = "app-key";
const SECRET: &str = "pusher-test-secret-0123456789";

/// Pusher's format to `url`, batches 10 ms apart unless `extra` says otherwise.
fn config(url: &str, extra: &str) -> String {
    let batch = if extra.contains("batch_ms") {
        ""
    } else {
        "batch_ms = 10\n"
    };
    format!(
        "logging_level = \"warn\"\n[pusher]\napp_id = \"{APP_ID}\"\nkey = \"{KEY}\"\n\
         secret = \"{SECRET}\"\n[webhooks]\nurl = \"{url}\"\nformat = \"pusher\"\n\
         {batch}{extra}"
    )
}

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/pusher")
}

// --- Pusher clients -------------------------------------------------------------------------

/// A Pusher frame with `data` decoded a second time when it is a string (as pusher-js does).
#[track_caller]
fn recv_event(ws: &mut Client) -> (String, Value) {
    let mut v = recv_json(ws);
    if let Some(s) = v["data"].as_str() {
        v["data"] = serde_json::from_str(s).unwrap_or(Value::String(s.to_owned()));
    }
    (v["event"].as_str().unwrap().to_owned(), v)
}

/// Reads until an `event` frame (on `channel`, when given) arrives; returns it.
#[track_caller]
fn recv_until(ws: &mut Client, event: &str, channel: Option<&str>) -> Value {
    loop {
        let (name, v) = recv_event(ws);
        if name == event && channel.map_or(true, |c| v["channel"] == c) {
            return v;
        }
        assert!(!name.ends_with("error"), "{v}");
    }
}

/// A connected Pusher client and its socket id.
#[track_caller]
fn pusher_client(daemon: &Daemon) -> (Client, String) {
    let mut ws = daemon.ws_at(&format!("/app/{KEY}?protocol=7&client=js&version=8.6.0"));
    let v = recv_until(&mut ws, "pusher:connection_established", None);
    (ws, v["data"]["socket_id"].as_str().unwrap().to_owned())
}

/// Subscribes to `channel` (signing private and presence channels; `user` for presence) and
/// waits for the success.
#[track_caller]
fn subscribe(ws: &mut Client, socket: &str, channel: &str, user: Option<&str>) {
    let mut data = json!({ "channel": channel });
    if let Some(user) = user {
        let channel_data =
            json!({"user_id": user, "user_info": {"name": format!("user {user}")}}).to_string();
        data["auth"] = json!(auth(&[socket, channel, &channel_data]));
        data["channel_data"] = json!(channel_data);
    } else if channel.starts_with("private-") {
        data["auth"] = json!(auth(&[socket, channel]));
    }
    send_json(ws, &json!({"event": "pusher:subscribe", "data": data}));
    recv_until(ws, "pusher_internal:subscription_succeeded", Some(channel));
}

#[track_caller]
fn unsubscribe(ws: &mut Client, channel: &str) {
    send_json(
        ws,
        &json!({"event": "pusher:unsubscribe", "data": {"channel": channel}}),
    );
}

/// Closes a client and waits until the server has answered the close.
#[track_caller]
fn close(mut ws: Client) {
    ws.close(None).unwrap();
    expect_gone(&mut ws);
}

// --- The receiver's side ----------------------------------------------------------------------

/// Reads POSTs until at least `want` events have arrived; checks what every POST must have, and
/// returns the POSTs and their events in order.
#[track_caller]
fn collect(endpoint: &Endpoint, want: usize) -> (Vec<Post>, Vec<Value>) {
    let (mut posts, mut events) = (Vec::new(), Vec::new());
    while events.len() < want {
        let post = endpoint.next();
        assert!(
            post.request_line.starts_with("POST /hook HTTP/1.1"),
            "{}",
            post.request_line
        );
        assert_eq!(post.header("content-type"), Some("application/json"));
        assert_eq!(post.header("x-pusher-key"), Some(KEY));
        assert_eq!(post.header("x-rakit-signature"), None);
        let body = post.json();
        assert!(body.get("node").is_none(), "Pusher's body: {body}");
        events.extend(body["events"].as_array().expect("events").iter().cloned());
        posts.push(post);
    }
    (posts, events)
}

/// Waits until `rakit_webhook_events_total` shows `sent` sent events (the worker counts a
/// batch after its answer), and nothing failed or dropped.
#[track_caller]
fn await_sent(daemon: &Daemon, sent: u64) {
    let deadline = Instant::now() + WAIT;
    while webhook_counts(daemon) != (sent, 0, 0) {
        assert!(Instant::now() < deadline, "{:?}", webhook_counts(daemon));
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Nothing more arrives for a while.
#[track_caller]
fn assert_no_more(endpoint: &Endpoint) {
    if let Ok(post) = endpoint.posts.recv_timeout(Duration::from_millis(300)) {
        panic!("unexpected POST {}", post.json());
    }
}

/// The POSTs as the library scripts read them.
fn as_requests(posts: &[Post]) -> String {
    let requests: Vec<Value> = posts
        .iter()
        .map(|p| {
            let headers: serde_json::Map<String, Value> = p
                .headers
                .iter()
                .map(|(k, v)| (k.clone(), json!(v)))
                .collect();
            json!({"headers": headers, "body": String::from_utf8(p.body.clone()).unwrap()})
        })
        .collect();
    Value::Array(requests).to_string()
}

/// Runs `program args` with `input` on stdin; its stdout as JSON.
fn run_json(program: &str, args: &[&str], input: &str) -> Value {
    let mut child = Command::new(program)
        .args(args)
        .current_dir(dir())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {program}: {e}"));
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(
        out.status.success(),
        "{program} {args:?}: {:?}\n{stdout}\n{stderr}",
        out.status
    );
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

fn node_available() -> bool {
    have(Tool::PusherNode)
}

fn python_available() -> bool {
    have(Tool::PusherPython)
}

/// Both libraries accept every POST with the app's secret, refuse it with a wrong one, and
/// read back exactly `events`. Returns how many libraries ran.
#[track_caller]
fn libraries_accept(posts: &[Post], events: &[Value]) -> usize {
    let input = as_requests(posts);
    let mut ran = 0;
    if node_available() {
        ran += 1;
        let seen = run_json("node", &["webhook_check.mjs", APP_ID, KEY, SECRET], &input);
        let mut got = Vec::new();
        for (post, judged) in posts.iter().zip(seen.as_array().unwrap()) {
            assert_eq!(judged["valid"], true, "node pusher refused {}", post.json());
            assert_eq!(judged["valid_with_wrong_secret"], false, "{judged}");
            assert_eq!(judged["time_ms"], post.json()["time_ms"]);
            got.extend(judged["events"].as_array().unwrap().iter().cloned());
        }
        assert_eq!(got, events, "node pusher's getEvents()");
    }
    if python_available() {
        ran += 1;
        let seen = run_json(
            "python3",
            &["webhook_check.py", APP_ID, KEY, SECRET],
            &input,
        );
        let mut got = Vec::new();
        for (post, judged) in posts.iter().zip(seen.as_array().unwrap()) {
            let body = &judged["validated"];
            assert!(body.is_object(), "python pusher refused {}", post.json());
            assert_eq!(*body, post.json());
            assert_eq!(judged["refused_with_wrong_secret"], true, "{judged}");
            got.extend(body["events"].as_array().unwrap().iter().cloned());
        }
        assert_eq!(got, events, "python validate_webhook");
    }
    ran
}

fn occupied(channel: &str) -> Value {
    json!({"name": "channel_occupied", "channel": channel})
}

fn vacated(channel: &str) -> Value {
    json!({"name": "channel_vacated", "channel": channel})
}

fn member(name: &str, channel: &str, user: &str) -> Value {
    json!({"name": name, "channel": channel, "user_id": user})
}

// --- Tests ------------------------------------------------------------------------------------

/// A public channel is occupied by its first subscriber and vacated by its last, counting
/// Rakit subscribers too (the dialects share channels); the POSTs pass both libraries.
#[test]
fn public_channel_occupied_and_vacated_across_dialects() {
    let endpoint = Endpoint::start(Mode::Answer);
    let daemon = Daemon::start(&config(&endpoint.url(), ""), &[]);
    let (mut a, socket_a) = pusher_client(&daemon);
    subscribe(&mut a, &socket_a, "news", None);
    let (mut rakit, _) = daemon.client();
    send_json(
        &mut rakit,
        &json!({"event": "subscribe", "channel": "news"}),
    );
    common::recv_type(&mut rakit, "subscribed");
    // The Pusher client leaves; the Rakit one keeps the channel occupied.
    unsubscribe(&mut a, "news");
    subscribe(&mut a, &socket_a, "marker", None);
    close(rakit);
    let (posts, events) = collect(&endpoint, 3);
    assert_eq!(
        events,
        [occupied("news"), occupied("marker"), vacated("news")]
    );
    close(a);
    let (more, last) = collect(&endpoint, 1);
    assert_eq!(last, [vacated("marker")]);
    assert_no_more(&endpoint);
    let all_posts: Vec<Post> = posts.into_iter().chain(more).collect();
    let all_events: Vec<Value> = events.into_iter().chain(last).collect();
    let ran = libraries_accept(&all_posts, &all_events);
    eprintln!(
        "{} POSTs checked by {ran} Pusher libraries",
        all_posts.len()
    );
    await_sent(&daemon, 4);
}

/// A presence channel: one `member_added` per user however many connections it has, its
/// `member_removed` only when its last connection leaves; client events carry the sender's
/// socket id, and its user id on a presence channel.
#[test]
fn presence_members_per_user_and_client_events() {
    let endpoint = Endpoint::start(Mode::Answer);
    let events = "events = [\"channel_occupied\", \"channel_vacated\", \"member_added\", \
                  \"member_removed\", \"client_event\"]\n";
    let daemon = Daemon::start(&config(&endpoint.url(), events), &[]);
    let room = "presence-room";
    let (mut a1, s1) = pusher_client(&daemon);
    let (mut a2, s2) = pusher_client(&daemon);
    let (mut b, sb) = pusher_client(&daemon);
    subscribe(&mut a1, &s1, room, Some("1"));
    subscribe(&mut a2, &s2, room, Some("1"));
    subscribe(&mut b, &sb, room, Some("2"));
    recv_until(&mut a1, "pusher_internal:member_added", Some(room));
    // A client event on the presence channel, seen by user 1 before anything else happens.
    send_json(
        &mut b,
        &json!({"event": "client-typing", "channel": room, "data": {"typing": true}}),
    );
    recv_until(&mut a1, "client-typing", Some(room));
    // One on a private channel (no user there), with string data.
    subscribe(&mut a1, &s1, "private-chat", None);
    send_json(
        &mut a1,
        &json!({"event": "client-note", "channel": "private-chat", "data": "hi \"there\""}),
    );
    // User 1's first connection goes: it was alone in private-chat, and user 1 stays.
    close(a1);
    let (mut posts, mut got) = collect(&endpoint, 7);
    assert_eq!(
        got,
        [
            occupied(room),
            member("member_added", room, "1"),
            member("member_added", room, "2"),
            json!({"name": "client_event", "channel": room, "event": "client-typing",
                   "data": "{\"typing\":true}", "socket_id": sb, "user_id": "2"}),
            occupied("private-chat"),
            json!({"name": "client_event", "channel": "private-chat", "event": "client-note",
                   "data": "hi \"there\"", "socket_id": s1}),
            vacated("private-chat"),
        ]
    );
    // Its last connection goes: now user 1 is removed.
    unsubscribe(&mut a2, room);
    recv_until(&mut b, "pusher_internal:member_removed", Some(room));
    close(b);
    let (more, rest) = collect(&endpoint, 3);
    assert_eq!(
        rest,
        [
            member("member_removed", room, "1"),
            member("member_removed", room, "2"),
            vacated(room),
        ]
    );
    assert_no_more(&endpoint);
    posts.extend(more);
    got.extend(rest);
    libraries_accept(&posts, &got);
    await_sent(&daemon, 10);
    drop(a2);
}

/// A subscriber of a cache channel that finds nothing cached gets `pusher:cache_miss`, and the
/// backend the `cache_miss` event (in the default set); once an event is cached, a subscriber
/// gets it and the backend hears nothing. Both libraries accept the POSTs.
#[test]
fn cache_miss_webhook() {
    let endpoint = Endpoint::start(Mode::Answer);
    let daemon = Daemon::start(&config(&endpoint.url(), ""), &[]);
    let (mut a, socket_a) = pusher_client(&daemon);
    subscribe(&mut a, &socket_a, "cache-prices", None);
    let (name, miss) = recv_event(&mut a);
    assert_eq!(
        (name.as_str(), &miss["channel"]),
        ("pusher:cache_miss", &json!("cache-prices"))
    );
    let (mut posts, mut events) = collect(&endpoint, 2);
    assert_eq!(
        events,
        [
            occupied("cache-prices"),
            json!({"name": "cache_miss", "channel": "cache-prices"})
        ]
    );
    // The backend answers with the state; the next subscriber gets it, and no webhook.
    assert_eq!(
        common::pusher::trigger(&daemon, "cache-prices", "price", r#"{"eur":5}"#),
        200
    );
    recv_until(&mut a, "price", Some("cache-prices"));
    let (mut b, socket_b) = pusher_client(&daemon);
    subscribe(&mut b, &socket_b, "cache-prices", None);
    let (name, hit) = recv_event(&mut b);
    assert_eq!((name.as_str(), &hit["data"]), ("price", &json!({"eur": 5})));
    // A private cache channel without anything cached: its own miss.
    subscribe(&mut b, &socket_b, "private-cache-doc", None);
    recv_until(&mut b, "pusher:cache_miss", Some("private-cache-doc"));
    let (more, rest) = collect(&endpoint, 2);
    assert_eq!(
        rest,
        [
            occupied("private-cache-doc"),
            json!({"name": "cache_miss", "channel": "private-cache-doc"})
        ]
    );
    assert_no_more(&endpoint);
    posts.extend(more);
    events.extend(rest);
    let ran = libraries_accept(&posts, &events);
    eprintln!("{} POSTs checked by {ran} Pusher libraries", posts.len());
    await_sent(&daemon, 4);
}

/// A receiver that hangs: the queue stays bounded and what it cannot hold is counted as
/// dropped, while Pusher clients are served as usual.
#[test]
fn queue_bound_drops_are_counted() {
    let endpoint = Endpoint::start(Mode::Hang);
    let daemon = Daemon::start(
        &config(
            &endpoint.url(),
            // 200 subscribes and unsubscribes from one client: SPEC 17's bucket off.
            &format!("batch_max = 1\nqueue_max = 5\ntimeout_ms = 60000\n{LIMITS_OFF}"),
        ),
        &[],
    );
    let (mut ws, socket) = pusher_client(&daemon);
    // 100 rounds: 200 events; the worker is stuck on the first POST.
    for _ in 0..100 {
        subscribe(&mut ws, &socket, "c", None);
        unsubscribe(&mut ws, "c");
    }
    send_json(&mut ws, &json!({"event": "pusher:ping", "data": {}}));
    recv_until(&mut ws, "pusher:pong", None);
    let first = endpoint.next();
    assert_eq!(first.json()["events"], json!([occupied("c")]));
    let (sent, failed, dropped) = webhook_counts(&daemon);
    eprintln!("hanging receiver: sent {sent}, failed {failed}, dropped {dropped}");
    assert_eq!((sent, failed), (0, 0));
    // At most the one in flight and queue_max waiting (and one the worker took meanwhile).
    assert!(dropped >= 200 - 1 - 5 - 1, "dropped {dropped}");
    assert!(endpoint.posts.try_recv().is_err(), "only one POST");
}

/// SIGTERM delivers what is queued, in Pusher's format, before the daemon exits.
#[test]
fn sigterm_delivers_queued_pusher_webhooks() {
    let endpoint = Endpoint::start(Mode::Answer);
    let mut daemon = Daemon::start(&config(&endpoint.url(), "batch_ms = 60000\n"), &[]);
    let (mut ws, socket) = pusher_client(&daemon);
    subscribe(&mut ws, &socket, "x", None);
    assert!(endpoint.posts.try_recv().is_err(), "not due for a minute");
    let t0 = Instant::now();
    sigterm(daemon.child.id());
    assert_eq!(common::msg::recv_close(&mut ws).0, 4200);
    expect_gone(&mut ws);
    drop(ws);
    let (posts, events) = collect(&endpoint, 1);
    assert_eq!(events[0], occupied("x"));
    // The unsubscription the shutdown caused may come along.
    assert!(events[1..].iter().all(|e| *e == vacated("x")), "{events:?}");
    assert!(posts[0].at - t0 < GONE_WITHIN, "{:?}", posts[0].at - t0);
    let status = wait_exit(&mut daemon.child, GONE_WITHIN + SLACK).expect("exit after SIGTERM");
    assert!(status.success(), "{status:?}");
    libraries_accept(&posts, &events);
}

/// `websocket:check` shows the format and its default events; mixing formats, or Pusher's
/// format without `[pusher]`, is a config error naming the key (exit 2).
#[test]
fn check_shows_the_format_and_refuses_mixed_events() {
    let shown = common::check::shown(&config("http://127.0.0.1:9/hook", ""));
    assert!(shown.contains("format = \"pusher\"\n"), "{shown}");
    assert!(
        shown.contains(
            "events = [\"channel_occupied\", \"channel_vacated\", \"member_added\", \"member_removed\", \"cache_miss\"]\n"
        ),
        "{shown}"
    );
    assert!(!shown.contains(SECRET), "{shown}");
    for (toml, key) in [
        (
            config("http://127.0.0.1:9/hook", "events = [\"connect\"]\n"),
            "webhooks.events",
        ),
        (
            "[webhooks]\nurl = \"http://127.0.0.1:9/hook\"\nformat = \"pusher\"\n".to_owned(),
            "webhooks.format",
        ),
    ] {
        common::check::refused_naming(&toml, key);
    }
}
