//! The backend HTTP API (SPEC section 8) and the demo page (section 14)
//! against the real daemon, over raw TCP sockets: every route and status,
//! the exact frames clients receive, keep-alive, pipelining, trickled
//! bodies, closes, idle timeouts, and a client that pipelines without
//! reading.

mod common;

use std::time::{Duration, Instant};

use common::api::{api_table, command, get, once, post, Http, Response, API_KEY};
use common::msg::{cli_token, recv_close, until_pong};
use common::*;
use serde_json::{json, Value};

const SECRET: &str = "session-secret-for-api-tests";

/// Top-level keys (logging quiet, presence off unless the test wants it),
/// then the `[api]` table.
fn config(extra: &str) -> String {
    format!("logging_level = \"warn\"\n{extra}\n{}", api_table())
}

/// A daemon with the API on and no presence messages to skip.
fn daemon() -> Daemon {
    Daemon::start(&config("presence = false"), &[])
}

/// An API response: checks it is JSON with the status given, returns the body.
#[track_caller]
fn expect_json(r: &Response, status: u16) -> Value {
    assert_eq!(r.status, status, "{}{}", r.head, r.text());
    r.json()
}

/// An `{"ok":false,...}` answer with `status` and `code`.
#[track_caller]
fn expect_failure(r: &Response, status: u16, code: &str) {
    let v = expect_json(r, status);
    assert_eq!(v["ok"], false, "{v}");
    assert_eq!(v["code"], code, "{v}");
    assert!(v["message"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
}

/// Every text message queued for `ws` before a pong, raw, in order (see
/// `msg::until_pong`).
#[track_caller]
fn texts_until_pong(ws: &mut Client) -> Vec<String> {
    send_json(ws, &json!({"ping": "sync"}));
    let mut before = Vec::new();
    loop {
        let t = recv_text(ws);
        if t == r#"{"type":"pong"}"# {
            return before;
        }
        before.push(t);
    }
}

/// A client that subscribed to `channel`.
#[track_caller]
fn subscriber(daemon: &Daemon, channel: &str) -> (Client, String) {
    let (mut ws, welcome) = daemon.client();
    send_json(&mut ws, &json!({"event":"subscribe","channel":channel}));
    assert_eq!(
        recv_json(&mut ws),
        json!({"type":"subscribed","channel":channel})
    );
    (ws, id_of(&welcome))
}

// ---- POST /api/commands ----

/// Each command kind over the API answers `200 {"ok":true}`, and every
/// client receives byte for byte what the same command from a WebSocket
/// admin gives it (the admin's own ack aside).
#[test]
fn each_command_answers_200_and_clients_get_the_frames_a_websocket_admin_would_cause() {
    let daemon = Daemon::start(
        &config(&format!(
            "presence = false\ncommand_policy = \"admin\"\n[session]\nsecret = \"{SECRET}\"\n"
        )),
        &[],
    );
    let token = cli_token(SECRET, "1", "Admin", None, true, 3600);
    let (mut admin, _) = daemon.client_at(&format!("/?token={token}"));
    let (mut sub, sub_id) = subscriber(&daemon, "news");
    let (mut other, _) = daemon.client();
    let mut api = Http::connect(daemon.addr);

    // Odd but valid JSON in the messages: passed through unchanged.
    let message = r#"{"n":1.50,"s":"é \" \u2028 <>","a":[1e3,null,true,{}]}"#;
    let commands = [
        format!(r#"{{"command":"broadcast","message":{message}}}"#),
        format!(r#"{{"command":"broadcast_to_channel","channel":"news","message":{message}}}"#),
        format!(r#"{{"command":"private_message","to":"{sub_id}","message":{message}}}"#),
        r#"{"command":"broadcast","message":"plain"}"#.to_owned(),
    ];
    for cmd in &commands {
        let r = api.request(&command(cmd));
        assert_eq!(expect_json(&r, 200), json!({"ok":true}), "{cmd}");
        let by_api: Vec<Vec<String>> = [&mut admin, &mut sub, &mut other]
            .into_iter()
            .map(texts_until_pong)
            .collect();

        send_text(&mut admin, cmd);
        let name = serde_json::from_str::<Value>(cmd).unwrap()["command"].clone();
        let mut by_ws: Vec<Vec<String>> = [&mut admin, &mut sub, &mut other]
            .into_iter()
            .map(texts_until_pong)
            .collect();
        let ack = json!({"type":"ack","command":name});
        let is_ack = |t: &String| serde_json::from_str::<Value>(t).unwrap() == ack;
        let acks = by_ws[0].iter().filter(|t| is_ack(t)).count();
        assert_eq!(acks, 1, "the WebSocket admin's ack: {:?}", by_ws[0]);
        by_ws[0].retain(|t| !is_ack(t));
        assert_eq!(by_api, by_ws, "{cmd}");
    }
    // And the frames are the ones of SPEC section 5: (subscriber, other).
    let m: Value = serde_json::from_str(message).unwrap();
    let broadcast = json!({"type":"message","message":m});
    for (cmd, to_sub, to_other) in [
        (&commands[0], Some(broadcast.clone()), Some(broadcast)),
        (
            &commands[1],
            Some(json!({"type":"channel","channel":"news","data":m})),
            None,
        ),
        (
            &commands[2],
            Some(json!({"type":"private","message":m})),
            None,
        ),
    ] {
        assert_eq!(
            expect_json(&api.request(&command(cmd)), 200),
            json!({"ok":true})
        );
        assert_eq!(until_pong(&mut sub), Vec::from_iter(to_sub), "{cmd}");
        assert_eq!(until_pong(&mut other), Vec::from_iter(to_other), "{cmd}");
    }
    assert_eq!(until_pong(&mut admin).len(), 1, "the broadcast only");

    // disconnect: the same close frame either way.
    let (mut victim_api, w1) = daemon.client();
    let (mut victim_ws, w2) = daemon.client();
    let r = api.request(&command(&format!(
        r#"{{"command":"disconnect","client_id":"{}"}}"#,
        id_of(&w1)
    )));
    assert_eq!(expect_json(&r, 200), json!({"ok":true}));
    let closed_by_api = recv_close(&mut victim_api);
    send_json(
        &mut admin,
        &json!({"command":"disconnect","client_id":id_of(&w2)}),
    );
    let closed_by_ws = recv_close(&mut victim_ws);
    assert_eq!(closed_by_api, (4000, "disconnected by server".to_owned()));
    assert_eq!(closed_by_api, closed_by_ws);
    expect_gone(&mut victim_api);
    expect_gone(&mut victim_ws);
    assert_eq!(
        recv_json(&mut admin),
        json!({"type":"ack","command":"disconnect"})
    );
    // The bystanders saw nothing of it (presence is off).
    assert_eq!(until_pong(&mut sub), Vec::<Value>::new());
}

/// `{"command":"presence"}` over the API sends every client the presence
/// message the WebSocket command sends.
#[test]
fn the_presence_command_sends_what_the_websocket_one_sends() {
    let daemon = Daemon::start(
        &config(&format!(
            "presence_interval_ms = 20\n[session]\nsecret = \"{SECRET}\"\n"
        )),
        &[],
    );
    let token = cli_token(SECRET, "7", "Admin", Some("a@example.com"), true, 3600);
    let (mut admin, _) = daemon.client_at(&format!("/?token={token}"));
    let (mut guest, _) = daemon.client();
    // Wait for the connects' presence to settle: count 2 seen by both.
    for ws in [&mut admin, &mut guest] {
        while recv_type(ws, "presence")["count"] != 2 {}
    }
    let r = once(daemon.addr, &command(r#"{"command":"presence"}"#));
    assert_eq!(expect_json(&r, 200), json!({"ok":true}));
    let by_api: Vec<String> = [&mut admin, &mut guest]
        .into_iter()
        .map(|ws| recv_text(ws))
        .collect();
    send_text(&mut admin, r#"{"command":"presence"}"#);
    let by_ws: Vec<String> = [&mut admin, &mut guest]
        .into_iter()
        .map(|ws| recv_text(ws))
        .collect();
    assert_eq!(by_api, by_ws);
    let p: Value = serde_json::from_str(&by_api[0]).unwrap();
    assert_eq!(p["type"], "presence");
    assert_eq!(p["count"], 2);
    assert_eq!(p["users"][0]["name"], "Admin");
    assert_eq!(p["users"][0]["email"], "a@example.com");
    assert_eq!(p["users"][1]["name"], "Guest");
}

/// An array is carried out in order, one result per command, and a
/// failing command does not stop the ones after it.
#[test]
fn an_array_runs_every_command_in_order_and_a_failure_does_not_stop_the_rest() {
    let daemon = daemon();
    let (mut sub, sub_id) = subscriber(&daemon, "news");
    let body = json!([
        {"command":"broadcast","message":1},
        {"command":"private_message","to":"nobody00","message":2},
        {"command":"broadcast_to_channel","channel":"","message":3},
        {"command":"no_such_command"},
        {"command":"broadcast"},
        {"command":"broadcast_to_channel","channel":"news","message":4},
        {"command":"private_message","to":sub_id,"message":5},
    ]);
    let r = once(daemon.addr, &command(&body.to_string()));
    let v = expect_json(&r, 200);
    let results = v["results"].as_array().expect("results");
    assert_eq!(results.len(), 7, "{v}");
    let codes: Vec<&str> = results
        .iter()
        .map(|r| {
            if r == &json!({"ok":true}) {
                "ok"
            } else {
                assert_eq!(r["ok"], false, "{r}");
                assert!(r["message"].is_string(), "{r}");
                r["code"].as_str().unwrap()
            }
        })
        .collect();
    assert_eq!(
        codes,
        [
            "ok",
            "unknown_client",
            "invalid_channel",
            "unknown_command",
            "bad_request",
            "ok",
            "ok"
        ]
    );
    assert_eq!(
        until_pong(&mut sub),
        vec![
            json!({"type":"message","message":1}),
            json!({"type":"channel","channel":"news","data":4}),
            json!({"type":"private","message":5}),
        ]
    );
}

/// One bad command: its code and status, and nothing sent to anyone.
#[test]
fn a_bad_command_gets_its_code_and_status_and_nothing_is_sent() {
    let daemon = daemon();
    let (mut sub, _) = subscriber(&daemon, "news");
    let mut api = Http::connect(daemon.addr);
    for (body, status, code) in [
        ("not json", 400, "invalid_json"),
        (r#"{"command":"broadcast","message":1"#, 400, "invalid_json"),
        ("", 400, "invalid_json"),
        (r#"{"command":"broadcast"}"#, 400, "bad_request"),
        (r#"{"message":1}"#, 400, "bad_request"),
        (
            r#"{"command":"private_message","to":5,"message":1}"#,
            400,
            "bad_request",
        ),
        ("42", 400, "bad_request"),
        (
            r#"{"command":"broadcast_to_channel","channel":"","message":1}"#,
            400,
            "invalid_channel",
        ),
        (
            r#"{"command":"broadcast_to_channel","channel":"a\u0001b","message":1}"#,
            400,
            "invalid_channel",
        ),
        (r#"{"command":"shutdown"}"#, 400, "unknown_command"),
        (
            r#"{"command":"private_message","to":"nobody00","message":1}"#,
            404,
            "unknown_client",
        ),
        (
            r#"{"command":"disconnect","client_id":"nobody00"}"#,
            404,
            "unknown_client",
        ),
    ] {
        // The same connection serves on after each failure.
        let r = api.request(&command(body));
        expect_failure(&r, status, code);
        assert!(!r.closes(), "{body}: {}", r.head);
    }
    let long = "c".repeat(129);
    let r = api.request(&command(&format!(
        r#"{{"command":"broadcast_to_channel","channel":"{long}","message":1}}"#
    )));
    expect_failure(&r, 400, "invalid_channel");
    assert_eq!(until_pong(&mut sub), Vec::<Value>::new());
}

/// An array that is not valid as a whole (over 100 commands, an element
/// that is not an object, not JSON) is 400 and none of it is carried out;
/// exactly 100 is fine.
#[test]
fn an_invalid_array_is_400_and_nothing_of_it_is_carried_out() {
    let daemon = daemon();
    let (mut sub, _) = subscriber(&daemon, "news");
    let mut api = Http::connect(daemon.addr);
    let one = json!({"command":"broadcast","message":"x"});
    let too_many = Value::Array(vec![one.clone(); 101]).to_string();
    for (body, code) in [
        (too_many.as_str(), "bad_request"),
        (
            r#"[{"command":"broadcast","message":"x"},5]"#,
            "bad_request",
        ),
        (
            r#"[{"command":"broadcast","message":"x"},"broadcast"]"#,
            "bad_request",
        ),
        (
            r#"[{"command":"broadcast","message":"x"},[{"command":"broadcast","message":"y"}]]"#,
            "bad_request",
        ),
        (
            r#"[{"command":"broadcast","message":"x"},null]"#,
            "bad_request",
        ),
        (r#"[{"command":"broadcast","message":"x"},"#, "invalid_json"),
        (
            r#"  [{"command":"broadcast","message":"x"}] trailing"#,
            "invalid_json",
        ),
    ] {
        expect_failure(&api.request(&command(body)), 400, code);
        assert_eq!(until_pong(&mut sub), Vec::<Value>::new(), "{body}");
    }
    // The limit itself.
    let hundred: Vec<Value> = (0..100)
        .map(|i| json!({"command":"broadcast_to_channel","channel":"news","message":i}))
        .collect();
    let v = expect_json(
        &api.request(&command(&Value::Array(hundred).to_string())),
        200,
    );
    assert_eq!(v["results"], Value::Array(vec![json!({"ok":true}); 100]));
    let got = until_pong(&mut sub);
    let want: Vec<Value> = (0..100)
        .map(|i| json!({"type":"channel","channel":"news","data":i}))
        .collect();
    assert_eq!(got, want);
}

// ---- Auth, paths, methods ----

/// A missing or wrong key is 401 with `WWW-Authenticate`, on every API
/// path, before anything else is judged; nothing is carried out.
#[test]
fn a_missing_or_wrong_key_is_401_with_www_authenticate() {
    let daemon = daemon();
    let (mut sub, _) = subscriber(&daemon, "news");
    let mut api = Http::connect(daemon.addr);
    let broadcast = r#"{"command":"broadcast","message":"x"}"#;
    let wrong = format!("{API_KEY}x");
    let short = &API_KEY[..API_KEY.len() - 1];
    let mut requests = vec![
        post("/api/commands", None, broadcast),
        post("/api/commands", Some(&wrong), broadcast),
        post("/api/commands", Some(short), broadcast),
        post("/api/commands", Some(""), broadcast),
        get("/api/channels", None),
        get("/api/channels/news", Some("not-the-key-at-all-0000")),
        get("/api/presence", None),
        get("/api/no/such/path", None),
        get("/api/commands", None),
    ];
    // Another scheme with the right key.
    requests.push(
        format!(
            "POST /api/commands HTTP/1.1\r\nHost: x\r\nAuthorization: Basic {API_KEY}\r\nContent-Length: {}\r\n\r\n{broadcast}",
            broadcast.len()
        )
        .into_bytes(),
    );
    for req in &requests {
        let r = api.request(req);
        expect_failure(&r, 401, "unauthorized");
        assert_eq!(
            r.header("www-authenticate"),
            Some("Bearer"),
            "{}",
            String::from_utf8_lossy(req)
        );
    }
    assert_eq!(until_pong(&mut sub), Vec::<Value>::new());
    // The right key, in any case of the scheme.
    let r = api.request(
        &format!(
            "POST /api/commands HTTP/1.1\r\nHost: x\r\nauthorization: bearer {API_KEY}\r\nContent-Length: {}\r\n\r\n{broadcast}",
            broadcast.len()
        )
        .into_bytes(),
    );
    assert_eq!(expect_json(&r, 200), json!({"ok":true}));
    assert_eq!(until_pong(&mut sub).len(), 1);
}

/// Without `[api] key`, every `/api/` path is 404, even with a key sent,
/// and nothing is carried out.
#[test]
fn without_an_api_key_every_api_path_is_404() {
    let daemon = Daemon::start("logging_level = \"warn\"\npresence = false\n", &[]);
    let (mut ws, _) = daemon.client();
    let mut api = Http::connect(daemon.addr);
    for req in [
        command(r#"{"command":"broadcast","message":"x"}"#),
        post(
            "/api/commands",
            None,
            r#"{"command":"broadcast","message":"x"}"#,
        ),
        get("/api/channels", Some(API_KEY)),
        get("/api/channels/news", None),
        get("/api/presence", Some(API_KEY)),
        get("/api/other", None),
        get("/api", None),
    ] {
        let r = api.request(&req);
        expect_json(&r, 404);
        assert!(r.header("www-authenticate").is_none(), "{}", r.head);
    }
    assert_eq!(until_pong(&mut ws), Vec::<Value>::new());
}

/// Unknown `/api/` paths are 404; a known path with the wrong method is
/// 405 with `Allow`.
#[test]
fn unknown_api_paths_are_404_and_wrong_methods_405_with_allow() {
    let daemon = daemon();
    let mut api = Http::connect(daemon.addr);
    for path in [
        "/api",
        "/api/",
        "/api/command",
        "/api/commands/x",
        "/api/presences",
        "/api/channel",
        "/api/metrics",
    ] {
        let r = api.request(&get(path, Some(API_KEY)));
        expect_failure(&r, 404, "not_found");
    }
    let with_body = |method: &str, path: &str| {
        format!(
            "{method} {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {API_KEY}\r\nContent-Length: 0\r\n\r\n"
        )
        .into_bytes()
    };
    for (req, allow) in [
        (get("/api/commands", Some(API_KEY)), "POST"),
        (with_body("PUT", "/api/commands"), "POST"),
        (with_body("DELETE", "/api/commands"), "POST"),
        (with_body("POST", "/api/channels"), "GET"),
        (with_body("POST", "/api/presence"), "GET"),
        (with_body("DELETE", "/api/channels/news"), "GET"),
        (with_body("PATCH", "/api/presence"), "GET"),
    ] {
        let r = api.request(&req);
        expect_failure(&r, 405, "method_not_allowed");
        assert_eq!(
            r.header("allow"),
            Some(allow),
            "{}",
            String::from_utf8_lossy(&req)
        );
    }
}

// ---- Bodies and heads: 411, 413, 431 ----

/// A chunked body is refused with 411 (and the connection closed: the end
/// of the body cannot be known); nothing is carried out.
#[test]
fn a_chunked_body_is_411() {
    let daemon = daemon();
    let (mut sub, _) = subscriber(&daemon, "news");
    let body = r#"{"command":"broadcast","message":"x"}"#;
    let mut api = Http::connect(daemon.addr);
    let r = api.request(
        format!(
            "POST /api/commands HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {API_KEY}\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{body}\r\n0\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    );
    expect_json(&r, 411);
    assert!(r.closes(), "{}", r.head);
    api.expect_closed();
    // Chunked beside a Content-Length too.
    let r = once(
        daemon.addr,
        format!(
            "POST /api/commands HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {API_KEY}\r\nContent-Length: {}\r\nTransfer-Encoding: chunked\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    );
    expect_json(&r, 411);
    assert_eq!(until_pong(&mut sub), Vec::<Value>::new());
}

/// A body over `max_buffer_size` is 413, even when the client sends it
/// all at once (the answer is not lost to a reset); the daemon serves
/// WebSocket and API clients normally afterwards.
#[test]
fn a_body_over_max_buffer_size_is_413_and_the_daemon_serves_on() {
    let daemon = Daemon::start(&config("presence = false\nmax_buffer_size = 1024"), &[]);
    let (mut sub, _) = subscriber(&daemon, "news");
    // Just over: announced and sent.
    let filler = "y".repeat(1024);
    let body = format!(r#"{{"command":"broadcast","message":"{filler}"}}"#);
    assert!(body.len() > 1024);
    let mut api = Http::connect(daemon.addr);
    let r = api.request(&command(&body));
    expect_failure(&r, 413, "payload_too_large");
    assert!(r.closes(), "{}", r.head);
    api.expect_closed();
    // Far over: announced, then streamed while the server has answered.
    let mut api = Http::connect(daemon.addr);
    api.send(
        format!(
            "POST /api/commands HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {API_KEY}\r\nContent-Length: 10000000\r\n\r\n"
        )
        .as_bytes(),
    );
    let r = api.read_response();
    expect_failure(&r, 413, "payload_too_large");
    // The limit itself is fine: exactly 1024 bytes.
    let at_limit = format!(
        r#"{{"command":"broadcast","message":"{}"}}"#,
        "z".repeat(1024 - 36)
    );
    assert_eq!(at_limit.len(), 1024);
    let r = once(daemon.addr, &command(&at_limit));
    assert_eq!(expect_json(&r, 200), json!({"ok":true}));
    assert_eq!(until_pong(&mut sub).len(), 1);
    // And everyone else is served as before.
    let (mut fresh, _) = daemon.client();
    send_json(
        &mut fresh,
        &json!({"event":"message","channel":"news","data":"after"}),
    );
    assert_eq!(
        recv_json(&mut sub)["data"],
        "after",
        "the subscriber still receives"
    );
    let r = once(daemon.addr, &get("/api/channels", Some(API_KEY)));
    assert_eq!(
        expect_json(&r, 200),
        json!({"channels":[{"name":"news","subscribers":1}]})
    );
}

/// Headers over `max_handshake_size` get 431 (JSON, like every API
/// response), on a first request and on a kept-alive connection; a head
/// that cannot be parsed gets 400, in JSON too.
#[test]
fn headers_over_max_handshake_size_are_431() {
    let daemon = Daemon::start(&config("presence = false\nmax_handshake_size = 1024"), &[]);
    let big = format!("X-Filler: {}\r\n", "f".repeat(1100));
    let body = r#"{"command":"broadcast","message":"x"}"#;
    let request = format!(
        "POST /api/commands HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {API_KEY}\r\n{big}Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let r = once(daemon.addr, request.as_bytes());
    expect_failure(&r, 431, "headers_too_large");
    assert!(r.closes(), "{}", r.head);
    // After a first request that was fine.
    let mut api = Http::connect(daemon.addr);
    expect_json(&api.request(&get("/api/presence", Some(API_KEY))), 200);
    let r = api.request(request.as_bytes());
    expect_failure(&r, 431, "headers_too_large");
    assert!(r.closes(), "{}", r.head);
    // A head the decoder cannot take (two Content-Length headers): 400, in JSON too.
    let r = once(
        daemon.addr,
        format!(
            "POST /api/commands HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {API_KEY}\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\n{{}}"
        )
        .as_bytes(),
    );
    expect_failure(&r, 400, "bad_request");
    assert!(r.closes());
    // Just under the limit is fine.
    let pad = 1024 - get("/api/presence", Some(API_KEY)).len() - "X-Pad: \r\n".len();
    let fits = format!(
        "GET /api/presence HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {API_KEY}\r\nX-Pad: {}\r\n\r\n",
        "p".repeat(pad)
    );
    assert_eq!(fits.len(), 1024);
    expect_json(&once(daemon.addr, fits.as_bytes()), 200);
}

// ---- Queries ----

/// `GET /api/channels` lists channels with subscribers;
/// `GET /api/channels/{name}` percent-decodes the name.
#[test]
fn channel_queries() {
    let daemon = daemon();
    let odd = "a b/é%+?#";
    let (mut a, id_a) = subscriber(&daemon, "news");
    let (mut b, id_b) = subscriber(&daemon, "news");
    send_json(&mut b, &json!({"event":"subscribe","channel":odd}));
    assert_eq!(recv_json(&mut b)["type"], "subscribed");
    let (_c, _) = daemon.client();
    let mut api = Http::connect(daemon.addr);

    let v = expect_json(&api.request(&get("/api/channels", Some(API_KEY))), 200);
    let mut list = v["channels"].as_array().expect("channels").clone();
    list.sort_by_key(|c| c["name"].as_str().unwrap().to_owned());
    assert_eq!(
        list,
        vec![
            json!({"name":odd,"subscribers":1}),
            json!({"name":"news","subscribers":2}),
        ]
    );

    let v = expect_json(&api.request(&get("/api/channels/news", Some(API_KEY))), 200);
    assert_eq!(v["name"], "news");
    assert_eq!(v["subscribers"], 2);
    let mut clients: Vec<&str> = v["clients"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    clients.sort_unstable();
    let mut want = vec![id_a.as_str(), id_b.as_str()];
    want.sort_unstable();
    assert_eq!(clients, want);

    let encoded = "a%20b%2F%C3%A9%25%2B%3F%23";
    let v = expect_json(
        &api.request(&get(&format!("/api/channels/{encoded}"), Some(API_KEY))),
        200,
    );
    assert_eq!(
        v,
        json!({"name":odd,"subscribers":1,"clients":[id_b.clone()]})
    );
    // Lower-case escapes decode the same.
    let v = expect_json(
        &api.request(&get(
            "/api/channels/a%20b%2f%c3%a9%25%2b%3f%23",
            Some(API_KEY),
        )),
        200,
    );
    assert_eq!(v["clients"], json!([id_b]));
    // A channel nobody is in.
    let v = expect_json(
        &api.request(&get("/api/channels/empty", Some(API_KEY))),
        200,
    );
    assert_eq!(v, json!({"name":"empty","subscribers":0,"clients":[]}));
    // Names no channel can have, and broken escapes.
    for bad in ["%FF", "%2", "a%zz", "a%01b"] {
        let r = api.request(&get(&format!("/api/channels/{bad}"), Some(API_KEY)));
        assert_eq!(r.status, 400, "{bad}: {}", r.text());
        r.json();
    }

    // Leaving updates the lists.
    send_json(&mut a, &json!({"event":"unsubscribe","channel":"news"}));
    assert_eq!(recv_json(&mut a)["type"], "unsubscribed");
    drop(b);
    let deadline = Instant::now() + WAIT;
    loop {
        let v = expect_json(&api.request(&get("/api/channels", Some(API_KEY))), 200);
        if v == json!({"channels":[]}) {
            break;
        }
        assert!(Instant::now() < deadline, "channels left: {v}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `GET /api/presence` lists every client in connection order, also above
/// `presence_max_users`, where the WebSocket presence is truncated.
#[test]
fn the_presence_query_is_never_truncated() {
    let daemon = Daemon::start(
        &config(&format!(
            "presence_max_users = 2\npresence_interval_ms = 20\n[session]\nsecret = \"{SECRET}\"\n"
        )),
        &[],
    );
    let token = cli_token(SECRET, "42", "Ann", Some("ann@example.com"), false, 3600);
    let mut clients = Vec::new();
    let mut ids = Vec::new();
    for i in 0..5 {
        let (ws, welcome) = if i == 1 {
            daemon.client_at(&format!("/?token={token}"))
        } else {
            daemon.client()
        };
        ids.push(id_of(&welcome));
        clients.push(ws);
    }
    // The WebSocket presence is truncated.
    let p = loop {
        let p = recv_type(&mut clients[0], "presence");
        if p["count"] == 5 {
            break p;
        }
    };
    assert_eq!(p["users"], json!([]));
    assert_eq!(p["truncated"], true);

    let r = once(daemon.addr, &get("/api/presence", Some(API_KEY)));
    let v = expect_json(&r, 200);
    assert_eq!(v["count"], 5, "{v}");
    assert!(v.get("truncated").is_none(), "{v}");
    let users = v["users"].as_array().expect("users");
    let listed: Vec<&str> = users.iter().map(|u| u["id"].as_str().unwrap()).collect();
    assert_eq!(listed, ids, "every client, in connection order");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    for (i, u) in users.iter().enumerate() {
        let (name, email) = if i == 1 {
            ("Ann", json!("ann@example.com"))
        } else {
            ("Guest", Value::Null)
        };
        assert_eq!(u["name"], name, "{u}");
        assert_eq!(u["email"], email, "{u}");
        let at = u["connected_at"].as_f64().expect("connected_at");
        assert!((now - at).abs() < 120.0, "{u}");
    }
}

// ---- Persistent connections, pipelining, closes: in their own file ----

#[path = "api_http/connections.rs"]
mod connections;
