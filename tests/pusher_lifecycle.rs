//! How Pusher connections end (SPEC section 13's close codes), and what pusher-js makes of it:
//! a restart (4200: pusher-js reconnects by itself, over ws://, to the new daemon on the same
//! port; at once when that daemon already shares the port), a missed pong (4201, while a Rakit client is dropped as section 6 says), a slow
//! client (4100), and `terminate_connections` (4009: pusher-js stays away). The Node parts run
//! tests/pusher/reconnect.mjs and terminate.mjs (Laravel Echo 2.5.0, pusher-js 8.6.0, the Node
//! `pusher` 5.3.4 library); they are skipped without node, unless RAKIT_REQUIRE_PUSHER=1.

mod common;

use std::net::{Ipv4Addr, TcpListener};
use std::time::{Duration, Instant};

use common::node::{self, Script};
use common::{
    expect_eof, raw_handshake, read_frame, recv_json, send_json, status_of, upgrade_request,
    wait_exit, Daemon, RawFrame, WAIT,
};
use serde_json::{json, Value};

const APP_ID: &str = "4242";
const KEY: &str = "app-key";
const SECRET: &str = "pusher-test-secret-0123456789";
const PUSHER_PATH: &str = "/app/app-key?protocol=7&client=js&version=8.6.0";

fn config(extra: &str) -> String {
    format!("logging_level = \"warn\"\n{extra}\n[pusher]\napp_id = \"{APP_ID}\"\nkey = \"{KEY}\"\nsecret = \"{SECRET}\"\n")
}

fn script_args(port: u16) -> Vec<String> {
    vec![port.to_string(), KEY.into(), SECRET.into(), APP_ID.into()]
}

/// A port nobody listens on now.
fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// pusher-js (Echo, on a public, a private and a presence channel) while the daemon on its
/// port gets SIGTERM and another takes over: started after the old one exited (`rolling` false:
/// it binds while the old connections are in TIME_WAIT), or before the SIGTERM, sharing the
/// port with `[cluster] reuse_port` (`rolling` true). What reconnect.mjs saw, checked for what
/// both ways have in common.
fn restart(rolling: bool) -> Value {
    let port = free_port();
    let toml = config(if rolling {
        "[cluster]\nreuse_port = true"
    } else {
        ""
    });
    let mut old = Daemon::start_on(port, &toml, &[]);
    let mut script = Script::start("reconnect.mjs", &script_args(port));
    let ready = script.json(WAIT);
    let first_socket = ready["ready"].as_str().expect("ready").to_owned();

    let mut new = rolling.then(|| Daemon::start_on(port, &toml, &[]));
    common::api::sigterm(old.child.id());
    if !rolling {
        let status = wait_exit(&mut old.child, WAIT).expect("old daemon exits after SIGTERM");
        assert_eq!(status.code(), Some(0));
        new = Some(Daemon::start_on(port, &toml, &[]));
    }
    assert_eq!(new.as_ref().unwrap().addr.port(), port);
    script.send("go");
    let seen = script.json(Duration::from_secs(60));
    eprintln!("reconnect.mjs saw {seen}");

    // 4200: pusher-js's "reconnect at once" (4000 would have switched it to wss://, 4009 kept
    // it away, 1001 made it wait a second as for a lost connection).
    assert_eq!(seen["codes"], json!([4200]), "{seen}");
    assert_eq!(seen["using_tls"], false, "{seen}");
    let dialled = seen["dialled_after"].as_array().unwrap();
    assert!(!dialled.is_empty(), "{seen}");
    let plain = format!("ws://127.0.0.1:{port}/app/{KEY}?protocol=7");
    for url in dialled {
        assert!(url.as_str().unwrap().starts_with(&plain), "{url} in {seen}");
    }
    // Back by itself, with a new socket id, on every channel.
    let sockets = seen["sockets"].as_array().unwrap();
    assert_eq!(sockets.len(), 2, "{seen}");
    assert_eq!(sockets[0], first_socket.as_str());
    assert_ne!(sockets[0], sockets[1]);
    assert_eq!(
        seen["got"],
        json!({"news": [{"n": 1}], "private-orders": [{"n": 1}], "presence-room": [{"n": 1}]})
    );
    script.finish();
    seen
}

#[test]
fn pusher_js_reconnects_by_itself_after_a_restart_on_the_same_port() {
    if !node::available() {
        return;
    }
    let seen = restart(false);
    // Its reconnection at once finds the port closed; pusher-js tries again when that attempt's
    // timeout (15 s, fixed in pusher-js) is over, and then finds the new daemon.
    let back = seen["back_ms"].as_u64().unwrap();
    assert!(back < 25_000, "back after {back} ms: {seen}");
}

#[test]
fn pusher_js_moves_at_once_to_a_daemon_sharing_the_port() {
    if !node::available() {
        return;
    }
    let seen = restart(true);
    // The reconnection at once reaches the daemon still listening.
    let back = seen["back_ms"].as_u64().unwrap();
    assert!(back < 10_000, "back after {back} ms: {seen}");
    assert_eq!(seen["dialled_after"].as_array().unwrap().len(), 1, "{seen}");
}

#[test]
fn terminate_connections_closes_a_signed_in_user_with_4009_and_pusher_js_stays_away() {
    if !node::available() {
        return;
    }
    let daemon = Daemon::start(&config(""), &[]);
    let seen = node::run("terminate.mjs", &script_args(daemon.addr.port()));
    // sendToUser (`#server-to-user-1`) reaches both connections of user 1, not user 2's.
    assert_eq!(seen["send_to_user"], json!([200, {}]), "{seen}");
    assert_eq!(
        seen["to_user"],
        json!({"a1": [1], "a2": [1], "b": [], "p": []}),
        "{seen}"
    );
    // Signed by the wrong secret: 401 and nobody goes. An unknown user is no error.
    assert_eq!(seen["forged"][0], 401, "{seen}");
    assert_eq!(seen["unknown"], json!([200, {}]), "{seen}");
    assert_eq!(seen["terminate"], json!([200, {}]), "{seen}");
    // Both of user 1's signed-in connections saw 4009 and did not come back.
    for who in ["a1", "a2"] {
        let life = &seen["life"][who];
        assert_eq!(life["codes"], json!([4009]), "{who}: {seen}");
        assert_eq!(
            life["states"],
            json!(["connected", "disconnected"]),
            "{who}: {seen}"
        );
        assert_eq!(
            life["sockets"].as_array().unwrap().len(),
            1,
            "{who}: {seen}"
        );
    }
    // User 2, and user 1's presence-only connection (not signed in), stay (Pusher's rule).
    for who in ["b", "p"] {
        let life = &seen["life"][who];
        assert_eq!(life["states"], json!(["connected"]), "{who}: {seen}");
        assert_eq!(life["codes"], json!([]), "{who}: {seen}");
        assert_eq!(
            life["sockets"].as_array().unwrap().len(),
            1,
            "{who}: {seen}"
        );
    }
    assert_eq!(
        seen["news"],
        json!({"a1": [1], "a2": [1], "b": [1, 2], "p": [1, 2]})
    );
    assert_eq!(seen["news_subscribers"], 2, "{seen}");
}

/// A raw WebSocket on `path`: it answers nothing, not even pings.
#[track_caller]
fn deaf_client(daemon: &Daemon, path: &str) -> std::net::TcpStream {
    let (s, head) = raw_handshake(daemon, &upgrade_request(path, ""));
    assert_eq!(status_of(&head), 101, "{head}");
    s
}

/// The frames up to and including the first that is not a text message.
#[track_caller]
fn skip_text(s: &mut std::net::TcpStream) -> (Vec<Value>, RawFrame) {
    let mut texts = Vec::new();
    loop {
        let frame = read_frame(s);
        if frame.byte0 != 0x81 {
            return (texts, frame);
        }
        texts.push(serde_json::from_slice(&frame.payload).unwrap());
    }
}

#[test]
fn a_missed_pong_closes_pusher_with_4201_and_drops_rakit() {
    let daemon = Daemon::start(&config("ping_interval = 1\nping_timeout = 1"), &[]);
    let connected = Instant::now();
    let mut pusher = deaf_client(&daemon, PUSHER_PATH);
    let mut rakit = deaf_client(&daemon, "/");

    let (texts, ping) = skip_text(&mut pusher);
    assert_eq!(texts[0]["event"], "pusher:connection_established");
    assert_eq!(ping.byte0, 0x89, "{ping:?}");
    let (_, close) = skip_text(&mut pusher);
    assert!(!close.masked);
    assert_eq!(close.close_code(), 4201, "{close:?}");
    expect_eof(&mut pusher);

    // The Rakit client gets no close frame: the TCP connection is dropped (SPEC section 6).
    let (texts, ping) = skip_text(&mut rakit);
    assert_eq!(texts[0]["type"], "welcome");
    assert_eq!(ping.byte0, 0x89, "{ping:?}");
    expect_eof(&mut rakit);
    assert!(
        connected.elapsed() < Duration::from_secs(8),
        "{:?}",
        connected.elapsed()
    );
}

#[test]
fn a_pusher_client_that_answers_pings_stays() {
    let daemon = Daemon::start(&config("ping_interval = 1\nping_timeout = 1"), &[]);
    let mut ws = daemon.ws_at(PUSHER_PATH);
    assert_eq!(recv_json(&mut ws)["event"], "pusher:connection_established");
    // Long enough for the ping and pong timers to have closed a silent client (see above).
    let pings = common::answer_pings_for(&mut ws, Duration::from_millis(3500));
    assert!(pings >= 2, "{pings} pings in 3.5 s");
    send_json(&mut ws, &json!({"event": "pusher:ping", "data": {}}));
    assert_eq!(recv_json(&mut ws)["event"], "pusher:pong");
}

#[test]
fn a_slow_pusher_client_is_dropped_with_4100() {
    let daemon = Daemon::start(&config("max_send_buffer = 1024"), &[]);
    let mut slow = deaf_client(&daemon, PUSHER_PATH);
    common::send_frame(
        &mut slow,
        true,
        rakit_protocol::OpCode::Text,
        br#"{"event":"pusher:subscribe","data":{"channel":"news"}}"#,
    );
    for event in [
        "pusher:connection_established",
        "pusher_internal:subscription_succeeded",
    ] {
        let text: Value = serde_json::from_slice(&read_frame(&mut slow).payload).unwrap();
        assert_eq!(text["event"], event);
    }
    // One message larger than max_send_buffer overflows in a single turn.
    let (mut sender, _) = daemon.client();
    send_json(
        &mut sender,
        &json!({"event": "message", "channel": "news", "data": "x".repeat(2000)}),
    );
    let close = read_frame(&mut slow);
    assert!(!close.masked);
    assert_eq!(close.close_code(), 4100, "{close:?}");
    expect_eof(&mut slow);
}
