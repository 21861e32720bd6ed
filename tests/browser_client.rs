//! The browser client (SPEC 16.2, clients/js/rakit-websocket.js) as the daemon serves it at
//! `GET /rakit-websocket.js`, in headless Chromium against the real daemon. Between the page
//! and the daemon runs a TCP proxy (tests/common/proxy.rs) that cuts every connection, refuses
//! new ones for a while, or ends them with a close frame of the test's choice. The page records
//! what the client reports (tests/browser/client_fixture.js); the test drives it step by step
//! (tests/common/browser.rs) and checks it, and the daemon's side through the HTTP API.
//!
//! Browser tests are skipped without chromium, node and tests/browser/node_modules, unless
//! RAKIT_REQUIRE_BROWSER=1 (scripts/test.sh sets it and installs them).

mod common;

use std::time::{Duration, Instant};

use common::api::{self, api_table, command, get, API_KEY};
use common::browser::Page;
use common::proxy::Proxy;
use common::{recv_type, send_json, Daemon, WAIT};
use serde_json::{json, Value};

fn daemon() -> Daemon {
    Daemon::start(&format!("logging_level = \"warn\"\n{}", api_table()), &[])
}

/// Loads a page from the daemon, then the client from `/rakit-websocket.js` (a classic
/// `<script src>`, as applications load it) and the recorder.
fn load(page: &mut Page, daemon: &Daemon) {
    page.goto(&format!("http://{}/health", daemon.addr));
    page.script_url("/rakit-websocket.js");
    page.script_file("client_fixture.js");
}

/// A page with the client loaded, a daemon, and a proxy to it; `None` when browser tests are
/// skipped.
fn start() -> Option<(Page, Daemon, Proxy)> {
    let mut page = Page::open()?;
    let daemon = daemon();
    let proxy = Proxy::start(daemon.addr);
    load(&mut page, &daemon);
    Some((page, daemon, proxy))
}

/// Opens `new RakitWebSocket(urls, options)` in the page and waits for its welcome; its id.
#[track_caller]
fn connect(page: &mut Page, urls: &[String], options: Value) -> String {
    page.eval(&format!("T.open({}, {options})", json!(urls)));
    connected(page, None)
}

/// Waits until the client is connected with an id other than `old`; the id.
#[track_caller]
fn connected(page: &mut Page, old: Option<&str>) -> String {
    let old = json!(old.unwrap_or(""));
    let id = page.wait(&format!(
        "T.rt.state === 'connected' && T.rt.clientId !== {old} && T.rt.clientId"
    ));
    id.as_str().unwrap().to_owned()
}

/// The `state` events so far, names only.
fn states(page: &mut Page) -> Vec<String> {
    let all = page.eval("T.states.map((s) => s[0])");
    serde_json::from_value(all).unwrap()
}

#[track_caller]
fn assert_no_repeats(states: &[String]) {
    for pair in states.windows(2) {
        assert_ne!(pair[0], pair[1], "a repeated state: {states:?}");
    }
}

/// Carries out one API command.
#[track_caller]
fn api_command(daemon: &Daemon, body: Value) {
    let r = api::once(daemon.addr, &command(&body.to_string()));
    assert_eq!(r.status, 200, "{body}: {}", r.text());
}

/// Waits until `GET /api/channels/{name}` lists exactly `clients`.
#[track_caller]
fn wait_channel_clients(daemon: &Daemon, name: &str, clients: &[&str]) {
    let deadline = Instant::now() + WAIT;
    loop {
        let r = api::once(
            daemon.addr,
            &get(&format!("/api/channels/{name}"), Some(API_KEY)),
        );
        let now = r.json()["clients"].clone();
        if now == json!(clients) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{name}: clients {now}, expected {clients:?}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn the_daemon_serves_the_client_with_or_without_the_demo_page() {
    let file = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/clients/js/rakit-websocket.js"
    ))
    .unwrap();
    for demo in [true, false] {
        let daemon = Daemon::start(
            &format!("logging_level = \"warn\"\ndemo_page = {demo}\n"),
            &[],
        );
        let mut http = api::Http::connect(daemon.addr);
        let r = http.request(&get("/rakit-websocket.js", None));
        assert_eq!(r.status, 200, "{}", r.head);
        assert_eq!(
            r.header("content-type"),
            Some("text/javascript; charset=utf-8")
        );
        assert_eq!(
            r.header("content-length"),
            Some(file.len().to_string().as_str())
        );
        assert_eq!(r.header("cache-control"), Some("public, max-age=3600"));
        assert!(!r.closes(), "keep-alive: {}", r.head);
        assert_eq!(r.body, file, "byte for byte clients/js/rakit-websocket.js");
        // The same connection goes on: the demo page as configured, then a wrong method.
        let page = http.request(&get("/", None));
        assert_eq!(page.status, if demo { 200 } else { 404 });
        let post = http.request(&api::post("/rakit-websocket.js", None, "{}"));
        assert_eq!(
            (post.status, post.header("allow")),
            (405, Some("GET")),
            "{}",
            post.head
        );
        // An upgrade on that path is a WebSocket like any other (SPEC 3: any path).
        let (mut ws, welcome) = daemon.client_at("/rakit-websocket.js");
        assert_eq!(welcome["type"], "welcome");
        send_json(&mut ws, &json!({"ping": 1}));
        assert_eq!(recv_type(&mut ws, "pong"), json!({"type": "pong"}));
    }
}

/// A cut (both sides see the TCP connection end): the page reconnects, gets a new client id,
/// resubscribes both its channels with channel tokens fetched again for the new id, and
/// receives what is published to them afterwards; its states never repeat.
#[test]
fn after_a_cut_it_reconnects_and_resubscribes_with_new_channel_tokens() {
    let Some((mut page, daemon, proxy)) = start() else {
        return;
    };
    let first = connect(&mut page, &[proxy.url()], json!({"channelTokens": true}));
    page.eval("T.sub('a') && T.sub('b')");
    page.wait("T.subscribed.a.length === 1 && T.subscribed.b.length === 1");
    wait_channel_clients(&daemon, "a", &[&first]);
    wait_channel_clients(&daemon, "b", &[&first]);

    proxy.cut();
    let second = connected(&mut page, Some(&first));
    page.wait("T.subscribed.a.length === 2 && T.subscribed.b.length === 2");
    wait_channel_clients(&daemon, "a", &[&second]);
    wait_channel_clients(&daemon, "b", &[&second]);
    assert_eq!(proxy.accepted(), 2);
    assert_eq!(
        page.eval("T.tokenCalls"),
        json!([["a", first], ["b", first], ["a", second], ["b", second]])
    );
    assert_eq!(
        states(&mut page),
        [
            "connecting",
            "connected",
            "disconnected",
            "connecting",
            "connected"
        ]
    );
    let lost = page.eval("T.states[2][1]");
    assert_eq!(lost["code"], 1006, "{lost}");
    let delay = lost["delay"].as_f64().unwrap();
    assert!((0.0..=500.0).contains(&delay), "the first wait: {lost}");
    // Two subscribes without `since`: these channels keep no history.
    assert_eq!(page.eval("T.recovered"), json!({"a": [], "b": []}));

    api_command(
        &daemon,
        json!({"command": "broadcast_to_channel", "channel": "b", "message": {"n": 1}}),
    );
    let got = page.wait("T.got.b.length === 1 && T.got.b");
    assert_eq!(got, json!([[{"n": 1}, {}]]));
    assert_eq!(page.eval("T.got.a"), json!([]));
    assert_eq!(page.errors(), json!([]));
}

/// While every new connection is refused, the client keeps trying, waiting before attempt n
/// at most min(20 s, 0.5 s x 2^n); `state` alternates without repeats; once connections are
/// accepted again it is connected.
#[test]
fn while_refused_it_backs_off_with_full_jitter_then_reconnects() {
    let Some((mut page, _daemon, proxy)) = start() else {
        return;
    };
    let first = connect(&mut page, &[proxy.url()], json!({}));

    proxy.refuse(true);
    proxy.cut();
    proxy.wait_for("3 refused attempts", |_, refused| refused >= 3);
    proxy.refuse(false);
    connected(&mut page, Some(&first));
    let refused = proxy.refused();
    assert_eq!(proxy.accepted(), 2);

    let all = states(&mut page);
    assert_no_repeats(&all);
    let mut expected = vec!["connecting", "connected"];
    for _ in 0..=refused {
        expected.extend(["disconnected", "connecting"]);
    }
    expected.push("connected");
    assert_eq!(all, expected, "{refused} refused attempts");
    let infos = page.eval("T.states.filter((s) => s[0] === 'disconnected').map((s) => s[1])");
    for (n, info) in infos.as_array().unwrap().iter().enumerate() {
        let delay = info["delay"].as_f64().unwrap();
        let cap = (500.0 * 2f64.powi(n as i32)).min(20_000.0);
        assert!(
            (0.0..=cap).contains(&delay),
            "wait before attempt {n}: {info}"
        );
        assert_eq!(info["code"], 1006, "{info}");
    }

    // close() while it waits to try again: no attempt, and no second `disconnected`.
    proxy.refuse(true);
    proxy.cut();
    page.wait("T.rt.state === 'disconnected' && T.rt.timer !== null && (T.rt.close(), true)");
    let attempts = proxy.accepted() + proxy.refused();
    // Connected in between: the count of attempts started again, so this wait is attempt 0's.
    let last = page.eval("T.states.at(-1)");
    assert_eq!(last[0], "disconnected");
    assert!(last[1]["delay"].as_f64().unwrap() <= 500.0, "{last}");
    assert_eq!(page.eval("T.rt.closed && T.rt.timer === null"), true);
    assert_no_repeats(&states(&mut page));
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        proxy.accepted() + proxy.refused(),
        attempts,
        "tried after close()"
    );
}

/// Closes with 4000 (the `disconnect` command), 1008 and 4029 are final: no reconnect, the
/// last state `disconnected` without a delay. A 1001 (the server shutting down) is not.
#[test]
fn no_reconnect_after_4000_1008_or_4029() {
    let Some(mut page) = Page::open() else { return };
    let daemon = daemon();
    let proxy = Proxy::start(daemon.addr);
    for code in [4000, 1008, 4029] {
        load(&mut page, &daemon);
        let id = connect(&mut page, &[proxy.url()], json!({}));
        // The control: after a 1001 it comes back.
        let before = proxy.accepted();
        proxy.close_with(1001);
        let id = connected(&mut page, Some(&id));
        assert_eq!(proxy.accepted(), before + 1);
        assert_eq!(page.eval("T.states[2][1].code"), 1001);

        if code == 4000 {
            api_command(&daemon, json!({"command": "disconnect", "client_id": id}));
        } else {
            proxy.close_with(code);
        }
        let last = page.wait(&format!(
            "T.rt.state === 'disconnected' && T.states.at(-1)[1].code === {code} && T.states.at(-1)[1]"
        ));
        assert!(last.get("delay").is_none(), "{code}: {last}");
        assert_eq!(page.eval("T.rt.closed && T.rt.timer === null"), true);
        // Nothing is scheduled; give a wrong reconnect three times the first wait's cap to show.
        std::thread::sleep(Duration::from_millis(1500));
        assert_eq!(proxy.accepted(), before + 1, "{code}: reconnected");
        assert_eq!(page.eval("T.rt.state"), "disconnected");
        assert_no_repeats(&states(&mut page));
        assert_eq!(page.eval("T.rt.broadcast('x')"), false);
    }
}

/// `urls` are tried in turn: the first refuses, the second serves. After a cut the URL that
/// worked is tried first; when it refuses too, the client moves on through the list.
#[test]
fn urls_are_tried_in_turn() {
    let Some(mut page) = Page::open() else { return };
    let daemon = daemon();
    let dead = Proxy::start(daemon.addr);
    dead.refuse(true);
    let live = Proxy::start(daemon.addr);
    load(&mut page, &daemon);
    let first = connect(&mut page, &[dead.url(), live.url()], json!({}));
    assert_eq!((dead.refused(), live.accepted()), (1, 1));

    live.cut();
    let second = connected(&mut page, Some(&first));
    assert_eq!((dead.refused(), live.accepted()), (1, 2));

    live.refuse(true);
    live.cut();
    // live (refused), dead, live, ...
    dead.wait_for("a second attempt at the first URL", |_, r| r >= 2);
    assert!(live.refused() >= 1);
    live.refuse(false);
    connected(&mut page, Some(&second));
    assert_eq!(live.accepted(), 3);
    assert!(
        live.refused().abs_diff(dead.refused() - 1) <= 1,
        "alternating: live refused {}, dead refused {}",
        live.refused(),
        dead.refused()
    );
    assert_no_repeats(&states(&mut page));
}

/// Broadcast, channel publish and private messages both ways between the page and a plain
/// WebSocket client, an API broadcast, and `history()` answered by the server (a channel
/// without history: nothing, offset 0, epoch "") or rejected with its error (`limit` over 100:
/// `bad_request`), while an earlier request's error goes to the `error` event.
#[test]
fn round_trips_and_history_answered_or_rejected_by_the_server() {
    let Some((mut page, daemon, proxy)) = start() else {
        return;
    };
    let me = connect(&mut page, &[proxy.url()], json!({}));
    let (mut other, welcome) = daemon.client();
    let other_id = welcome["client_id"].as_str().unwrap().to_owned();
    send_json(
        &mut other,
        &json!({"event": "subscribe", "channel": "room"}),
    );
    recv_type(&mut other, "subscribed");
    page.eval("T.sub('room')");
    page.wait("T.subscribed.room.length === 1");

    assert_eq!(page.eval("T.rt.broadcast({hello: 1})"), true);
    assert_eq!(
        recv_type(&mut other, "message"),
        json!({"type": "message", "client_id": me, "message": {"hello": 1}})
    );
    assert_eq!(
        page.wait("T.of('message').length === 1 && T.of('message')"),
        json!([[{"hello": 1}, {"client_id": me}]])
    );

    assert_eq!(page.eval("T.subs.room.publish('to the room')"), true);
    assert_eq!(
        recv_type(&mut other, "channel"),
        json!({"type": "channel", "channel": "room", "client_id": me, "data": "to the room"})
    );
    send_json(
        &mut other,
        &json!({"event": "message", "channel": "room", "data": [1, 2]}),
    );
    assert_eq!(
        page.wait("T.got.room.length === 2 && T.got.room"),
        json!([["to the room", {"client_id": me}], [[1, 2], {"client_id": other_id}]])
    );

    send_json(&mut other, &json!({"to": me, "message": "psst"}));
    assert_eq!(
        page.wait("T.of('private').length === 1 && T.of('private')"),
        json!([["psst", {"client_id": other_id}]])
    );
    assert_eq!(
        page.eval(&format!("T.rt.privateMessage({}, 'back')", json!(other_id))),
        true
    );
    assert_eq!(
        recv_type(&mut other, "private"),
        json!({"type": "private", "client_id": me, "message": "back"})
    );

    api_command(
        &daemon,
        json!({"command": "broadcast", "message": "from the backend"}),
    );
    assert_eq!(
        page.wait("T.of('message').length === 2 && T.of('message')[1]"),
        json!(["from the backend", {}])
    );

    // A publish without data (bad_request) just before the history request: its error is
    // not the history's.
    page.eval("T.rt.send({event: 'message', channel: 'room'}) && T.history('room', {limit: 5})");
    let settled = page.wait("T.histories.length === 1 && T.histories[0]");
    assert_eq!(settled[0], true, "{settled}");
    assert_eq!(
        settled[1],
        json!({"type": "history", "channel": "room", "publications": [], "offset": 0, "epoch": ""})
    );
    page.eval("T.history('room', {limit: 101})");
    let settled = page.wait("T.histories.length === 2 && T.histories[1]");
    assert_eq!(settled[0], false, "{settled}");
    assert_eq!(settled[1]["code"], "bad_request", "{settled}");
    assert_eq!(
        page.eval("T.of('error').map((e) => e[0].code)"),
        json!(["bad_request"])
    );
    assert_eq!(page.errors(), json!([]));
}

/// The backoff function itself, in Node (tests/browser/backoff.mjs): full jitter, statistically.
#[test]
fn backoff_is_full_jitter() {
    if common::browser::skip() {
        return;
    }
    let out = std::process::Command::new("node")
        .arg(common::browser::dir().join("backoff.mjs"))
        .output()
        .expect("run node");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The README's Basic Chat on the client, as written (only its address changed): it
/// connects, says Hello! and logs its own message and the presence list.
#[test]
fn the_readmes_basic_chat_runs_as_written() {
    let Some(mut page) = Page::open() else { return };
    let daemon = daemon();
    let readme = include_str!("../README.md");
    let start = readme
        .find("## The browser client")
        .and_then(|at| readme[at..].find("```html\n").map(|i| at + i + 8))
        .expect("the README's browser client example");
    let html = &readme[start..start + readme[start..].find("```").unwrap()];
    assert!(html.contains("127.0.0.1:6001"), "{html}");
    page.goto(&format!("http://{}/health", daemon.addr));
    page.content(&html.replace("127.0.0.1:6001", &daemon.addr.to_string()));
    let deadline = Instant::now() + WAIT;
    let lines = loop {
        let lines = page.console();
        if lines.iter().any(|l| l.starts_with("Message: Hello! from ")) {
            break lines;
        }
        assert!(Instant::now() < deadline, "{lines:?}");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(lines.iter().any(|l| l == "connected"), "{lines:?}");
    assert!(
        lines.iter().any(|l| l.starts_with("Online users:")),
        "{lines:?}"
    );
    assert_eq!(page.errors(), json!([]));
}
