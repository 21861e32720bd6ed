//! SPEC section 17 over real sockets, for messages: the per-connection message bucket (every
//! text message, pings included; WebSocket control frames are not messages; `--echo` never
//! limited), the broadcast bucket, `broadcast_policy`, the `rate_limited` error at most once a
//! second, the 4029 close after sustained flooding, what is never limited (allowed commands,
//! the HTTP API), and the `[limits]` table's checks. Pusher's forms: tests/abuse_pusher.rs;
//! connections: tests/abuse_connections.rs; the attack: tests/abuse_attack.rs.

mod common;

use std::time::Duration;

use common::abuse::{drain_quiet, metric, pipeline, types};
use common::api::{command, once, API_KEY};
use common::msg::cli_token;
use common::receiver::{Endpoint, Mode};
use common::{rakit, recv_json, recv_type, run_to_exit, scratch_dir, send_json, Daemon};
use serde_json::{json, Value};
use tungstenite::Message;

/// Quiet long enough to say nothing more is coming (the daemon answers within microseconds;
/// a loaded machine needs the slack).
const QUIET: Duration = Duration::from_millis(500);

const SECRET: &str = "abuse-limits-test-secret";

/// A daemon with `limits` as its `[limits]` table (none at all when empty: the defaults).
fn daemon(limits: &str) -> Daemon {
    let table = if limits.is_empty() { "" } else { "[limits]\n" };
    Daemon::start(
        &format!("logging_level = \"warn\"\npresence = false\n{table}{limits}"),
        &[],
    )
}

fn pings(n: usize) -> impl Iterator<Item = String> {
    (0..n).map(|i| format!(r#"{{"ping":{i}}}"#))
}

#[track_caller]
fn assert_rate_limited(msg: &Value) {
    assert_eq!(msg["type"], "error", "{msg}");
    assert_eq!(msg["code"], "rate_limited", "{msg}");
    assert!(
        msg["message"].as_str().is_some_and(|t| !t.is_empty()),
        "{msg}"
    );
    assert_eq!(msg.as_object().unwrap().len(), 3, "{msg}");
}

/// A burst of the bucket's size passes; the rest is refused with one error, not one each.
#[test]
fn pings_past_the_burst_are_refused_with_one_error() {
    let daemon = daemon("messages_per_second = 1\nmessage_burst = 50\n");
    let (mut ws, _) = daemon.client();
    pipeline(&mut ws, pings(55));
    let got = drain_quiet(&mut ws, QUIET);
    let mut expect = vec!["pong"; 50];
    expect.push("error");
    assert_eq!(types(&got), expect, "{got:?}");
    assert_rate_limited(&got[50]);
    // Another connection has its own bucket.
    let (mut other, _) = daemon.client();
    send_json(&mut other, &json!({"ping": 1}));
    assert_eq!(recv_json(&mut other), json!({"type": "pong"}));
    // A second later one token is back, and a refusal is answered again.
    std::thread::sleep(Duration::from_millis(1100));
    pipeline(&mut ws, pings(3));
    let got = drain_quiet(&mut ws, QUIET);
    assert_eq!(types(&got), ["pong", "error"], "{got:?}");
    assert_eq!(
        metric(daemon.addr, "rakit_rate_limited_total{kind=\"message\"}"),
        5.0 + 2.0
    );
}

/// WebSocket pings are control frames, not messages: they never cost a token.
#[test]
fn control_frames_are_not_messages() {
    let daemon = daemon("messages_per_second = 1\nmessage_burst = 5\n");
    let (mut ws, _) = daemon.client();
    for i in 0..50u8 {
        ws.write(Message::Ping(vec![i])).unwrap();
    }
    pipeline(&mut ws, pings(5));
    let mut pongs = 0;
    let mut texts = Vec::new();
    while texts.len() < 5 {
        match common::read(&mut ws).expect("read") {
            Message::Pong(_) => pongs += 1,
            Message::Text(t) => texts.push(serde_json::from_str::<Value>(&t).unwrap()),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(types(&texts), ["pong"; 5], "{texts:?}");
    assert_eq!(pongs, 50);
    assert!(drain_quiet(&mut ws, QUIET).is_empty());
}

/// More than `message_burst` refusals within 10 s: closed with 4029, counted.
#[test]
fn a_flooder_is_closed_with_4029_and_others_are_served() {
    let daemon = daemon("");
    let (mut bystander, _) = daemon.client();
    let (mut ws, welcome) = daemon.client();
    // Far more than 200 accepted plus 200 refused, in one go.
    pipeline(
        &mut ws,
        (0..1000).map(|i| format!(r#"{{"event":"message","channel":"c","data":{i}}}"#)),
    );
    let mut errors = 0;
    let code = loop {
        match common::read(&mut ws).expect("read") {
            Message::Text(t) => {
                assert_rate_limited(&serde_json::from_str(&t).unwrap());
                errors += 1;
            }
            Message::Close(Some(frame)) => {
                assert_eq!(frame.reason, "rate limit exceeded");
                break u16::from(frame.code);
            }
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(code, 4029);
    assert_eq!(errors, 1, "one error, then the close");
    common::expect_gone(&mut ws);
    let _ = welcome;
    assert_eq!(
        metric(daemon.addr, "rakit_closes_total{code=\"4029\"}"),
        1.0
    );
    // 200 refused, and the one that closed it.
    let refused = metric(daemon.addr, "rakit_rate_limited_total{kind=\"message\"}");
    assert_eq!(refused, 201.0);
    // The bystander was told of nothing but may go on.
    send_json(&mut bystander, &json!({"ping": 1}));
    assert_eq!(recv_json(&mut bystander), json!({"type": "pong"}));
}

/// Broadcasts have a bucket of their own (5 a second, 20 at once): the 21st is refused while
/// other messages still pass.
#[test]
fn broadcasts_past_their_burst_are_refused() {
    let daemon = daemon("");
    let (mut sender, _) = daemon.client();
    let (mut receiver, _) = daemon.client();
    pipeline(
        &mut sender,
        (0..25)
            .map(|i| format!(r#"{{"message":{i}}}"#))
            .chain([r#"{"ping":"after"}"#.to_owned()]),
    );
    let got = drain_quiet(&mut sender, QUIET);
    let mut expect = vec!["message"; 20];
    expect.extend(["error", "pong"]);
    assert_eq!(types(&got), expect, "{got:?}");
    assert_rate_limited(&got[20]);
    let heard: Vec<Value> = drain_quiet(&mut receiver, QUIET)
        .into_iter()
        .map(|v| v["message"].clone())
        .collect();
    assert_eq!(heard, (0..20).map(Value::from).collect::<Vec<_>>());
    assert_eq!(
        metric(daemon.addr, "rakit_rate_limited_total{kind=\"broadcast\"}"),
        5.0
    );
}

/// `broadcast_policy = "authenticated"`: a guest's broadcast is `forbidden`; a user's goes out.
#[test]
fn broadcast_policy_refuses_with_forbidden() {
    let daemon = Daemon::start(
        &format!(
            "logging_level = \"warn\"\npresence = false\n[session]\nsecret = \"{SECRET}\"\n\
             [limits]\nbroadcast_policy = \"authenticated\"\n"
        ),
        &[],
    );
    let (mut guest, _) = daemon.client();
    let token = cli_token(SECRET, "7", "Ann", None, false, 600);
    let (mut user, _) = daemon.client_at(&format!("/?token={token}"));
    send_json(&mut guest, &json!({"message": "hi"}));
    let refused = recv_json(&mut guest);
    assert_eq!(refused["type"], "error");
    assert_eq!(refused["code"], "forbidden", "{refused}");
    // Other messages of the guest are not affected.
    send_json(&mut guest, &json!({"event": "subscribe", "channel": "c"}));
    assert_eq!(recv_json(&mut guest)["type"], "subscribed");
    send_json(&mut user, &json!({"message": "from a user"}));
    assert_eq!(recv_type(&mut user, "message")["message"], "from a user");
    assert_eq!(recv_type(&mut guest, "message")["message"], "from a user");
}

/// A refused message is not routed and fires no `receive` event, so it never reaches a
/// webhook.
#[test]
fn a_refused_message_never_reaches_a_webhook() {
    let endpoint = Endpoint::start(Mode::Answer);
    let daemon = Daemon::start(
        &format!(
            "logging_level = \"warn\"\npresence = false\n\
             [webhooks]\nurl = \"{}\"\nsecret = \"hook-secret-0123456789\"\nevents = [\"message\"]\n\
             batch_ms = 10\n[limits]\nmessages_per_second = 1\nmessage_burst = 20\n",
            endpoint.url()
        ),
        &[],
    );
    let (mut ws, welcome) = daemon.client();
    let flooder = welcome["client_id"].clone();
    let (mut subscriber, _) = daemon.client();
    send_json(
        &mut subscriber,
        &json!({"event": "subscribe", "channel": "c"}),
    );
    assert_eq!(recv_json(&mut subscriber)["type"], "subscribed");
    let message = |i| format!(r#"{{"event":"message","channel":"c","data":{i}}}"#);
    pipeline(&mut ws, (0..30).map(message));
    let heard = drain_quiet(&mut subscriber, QUIET);
    assert_eq!(heard.len(), 20, "{heard:?}");
    // The one message of the subscriber is the last: everything before it was posted.
    send_json(&mut subscriber, &json!({"ping": "last"}));
    // The flooder's messages that were posted: exactly the 20 it was allowed.
    let mut texts = Vec::new();
    let mut last = false;
    while !last {
        let post = endpoint.next().json();
        for event in post["events"].as_array().unwrap() {
            assert_eq!(event["name"], "message", "{event}");
            let text = event["text"].as_str().unwrap().to_owned();
            last |= text.contains("last");
            if event["client_id"] == flooder {
                texts.push(text);
            }
        }
    }
    assert_eq!(texts, (0..20).map(message).collect::<Vec<_>>());
}

/// Commands that `command_policy` allows and the HTTP API are the backend's: never limited.
#[test]
fn allowed_commands_and_the_api_are_not_limited() {
    let daemon = Daemon::start(
        &format!(
            "logging_level = \"warn\"\npresence = false\ncommand_policy = \"admin\"\n\
             [session]\nsecret = \"{SECRET}\"\n[api]\nkey = \"{API_KEY}\"\n"
        ),
        &[],
    );
    let token = cli_token(SECRET, "1", "Admin", None, true, 600);
    let (mut admin, _) = daemon.client_at(&format!("/?token={token}"));
    let (mut listener, _) = daemon.client();
    // 300 commands at once: more than both bursts.
    pipeline(
        &mut admin,
        (0..300).map(|i| format!(r#"{{"command":"broadcast","message":{i}}}"#)),
    );
    let acks = (0..300)
        .map(|_| recv_type(&mut admin, "ack"))
        .filter(|a| a["command"] == "broadcast")
        .count();
    assert_eq!(acks, 300);
    for i in 0..300 {
        assert_eq!(recv_type(&mut listener, "message")["message"], i);
    }
    // The API: 3 x 100 broadcasts.
    for batch in 0..3 {
        let body: Vec<Value> = (0..100)
            .map(|i| json!({"command": "broadcast", "message": batch * 100 + i}))
            .collect();
        let r = once(daemon.addr, &command(&Value::from(body).to_string()));
        assert_eq!(r.status, 200, "{r:?}");
    }
    for i in 0..300 {
        assert_eq!(recv_type(&mut listener, "message")["message"], i);
    }
    assert_eq!(
        metric(daemon.addr, "rakit_rate_limited_total{kind=\"message\"}"),
        0.0
    );
}

/// `0` turns a bucket off.
#[test]
fn zero_turns_the_buckets_off() {
    let daemon = daemon("messages_per_second = 0\nbroadcasts_per_second = 0\n");
    let (mut ws, _) = daemon.client();
    let (mut other, _) = daemon.client();
    pipeline(&mut ws, pings(1000));
    for _ in 0..1000 {
        assert_eq!(recv_json(&mut ws), json!({"type": "pong"}));
    }
    pipeline(&mut ws, (0..300).map(|i| format!(r#"{{"message":{i}}}"#)));
    for i in 0..300 {
        assert_eq!(recv_type(&mut other, "message")["message"], i);
    }
}

/// `--echo` is a diagnostic mode: never limited.
#[test]
fn echo_mode_is_never_limited() {
    let daemon = Daemon::start(
        "logging_level = \"warn\"\n[limits]\nmessages_per_second = 1\nmessage_burst = 1\n",
        &["--echo"],
    );
    let mut ws = daemon.ws_at("/");
    pipeline(&mut ws, pings(500));
    for i in 0..500 {
        match common::read(&mut ws).expect("read") {
            Message::Text(t) => assert_eq!(t, format!(r#"{{"ping":{i}}}"#)),
            other => panic!("{other:?}"),
        }
    }
}

/// A page that reconnects and resubscribes 100 channels at once, then chats, never comes near.
#[test]
fn an_ordinary_client_never_comes_near() {
    let daemon = daemon("");
    let (mut ws, _) = daemon.client();
    pipeline(
        &mut ws,
        (0..100).map(|i| format!(r#"{{"event":"subscribe","channel":"c{i}"}}"#)),
    );
    for i in 0..100 {
        let got = recv_json(&mut ws);
        assert_eq!(
            got,
            json!({"type": "subscribed", "channel": format!("c{i}")})
        );
    }
    for i in 0..10 {
        send_json(&mut ws, &json!({"message": i}));
        assert_eq!(recv_json(&mut ws)["message"], i);
        send_json(
            &mut ws,
            &json!({"event": "message", "channel": "c1", "data": i}),
        );
        assert_eq!(recv_json(&mut ws)["data"], i);
    }
    assert!(drain_quiet(&mut ws, QUIET).is_empty());
}

/// The table in `websocket:check`, and its errors (a burst of 0 with a rate) naming the key.
#[test]
fn the_limits_table_is_checked_and_shown() {
    let dir = scratch_dir();
    let run = run_to_exit(rakit().current_dir(&dir).arg("websocket:check"));
    assert_eq!(run.code, Some(0), "{run:?}");
    for line in [
        "[limits]\n",
        "messages_per_second = 100\n",
        "message_burst = 200\n",
        "broadcasts_per_second = 5\n",
        "broadcast_burst = 20\n",
        "broadcast_policy = \"any\"\n",
        "max_connections_per_ip = 0\n",
        "connections_per_ip_per_second = 0\n",
        "max_connections_per_user = 0\n",
        "trusted_proxies = []\n",
    ] {
        assert!(run.stdout.contains(line), "{line}: {}", run.stdout);
    }
    for (toml, key) in [
        ("[limits]\nmessage_burst = 0\n", "limits.message_burst"),
        ("[limits]\nbroadcast_burst = 0\n", "limits.broadcast_burst"),
        (
            "[limits]\nbroadcast_policy = \"guests\"\n",
            "limits.broadcast_policy",
        ),
        (
            "[limits]\ntrusted_proxies = [\"10.0.0.0/40\"]\n",
            "limits.trusted_proxies",
        ),
        (
            "[limits]\nmax_conections_per_ip = 1\n",
            "limits.max_conections_per_ip",
        ),
    ] {
        std::fs::write(dir.join("bad.toml"), toml).unwrap();
        for args in [
            &["websocket:check", "--config=bad.toml"][..],
            &["websocket:run", "--port=0", "--config=bad.toml"],
        ] {
            let sub = args[0];
            let run = run_to_exit(rakit().current_dir(&dir).args(args));
            assert_eq!(run.code, Some(2), "{sub} {toml}: {run:?}");
            let err = run.stderr.trim_end();
            assert!(
                err.contains(key) && !err.contains('\n'),
                "{sub} {toml}: {err}"
            );
        }
    }
}
