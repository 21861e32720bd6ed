//! SPEC section 17 in the Pusher dialect: every message (`pusher:ping` included) costs a token
//! of the message bucket; a refusal is `pusher:error` with code 4301 (at most once a second),
//! and a flooder is closed with 4301, which pusher-js does not retry. Over raw protocol 7, and
//! with pusher-js itself (tests/pusher/flood.mjs).

mod common;

use common::abuse::{metric, pipeline};
use common::node::{available, run};
use common::pusher::{connect, APP_ID, KEY, SECRET};
use common::Daemon;
use serde_json::{json, Value};
use tungstenite::Message;

fn daemon() -> Daemon {
    Daemon::start(
        &format!(
            "logging_level = \"warn\"\npresence = false\n\
             [pusher]\napp_id = \"{APP_ID}\"\nkey = \"{KEY}\"\nsecret = \"{SECRET}\"\n"
        ),
        &[],
    )
}

#[test]
fn a_flooding_pusher_client_gets_4301_then_is_closed_with_4301() {
    let daemon = daemon();
    let (mut ws, _) = connect(&daemon);
    pipeline(
        &mut ws,
        (0..600).map(|_| r#"{"event":"pusher:ping","data":{}}"#.to_owned()),
    );
    let mut pongs = 0;
    let mut errors = Vec::new();
    let close = loop {
        match common::read(&mut ws).expect("read") {
            Message::Text(t) => {
                let v: Value = serde_json::from_str(&t).unwrap();
                match v["event"].as_str().unwrap() {
                    "pusher:pong" => pongs += 1,
                    "pusher:error" => errors.push(v["data"].clone()),
                    other => panic!("{other}: {v}"),
                }
            }
            Message::Close(frame) => break frame.expect("a close code"),
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(pongs, 200, "the burst");
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0]["code"], 4301, "{errors:?}");
    assert_eq!(u16::from(close.code), 4301);
    assert_eq!(close.reason, "rate limit exceeded");
    common::expect_gone(&mut ws);
    assert_eq!(
        metric(daemon.addr, "rakit_closes_total{code=\"4301\"}"),
        1.0
    );
    assert_eq!(
        metric(daemon.addr, "rakit_rate_limited_total{kind=\"message\"}"),
        201.0
    );
}

#[test]
fn pusher_js_sees_4301_and_does_not_reconnect() {
    if !available() {
        return;
    }
    let daemon = daemon();
    let seen = run(
        "flood.mjs",
        &[
            daemon.addr.port().to_string(),
            KEY.into(),
            SECRET.into(),
            APP_ID.into(),
        ],
    );
    let flooder = &seen["flooder"];
    assert_eq!(flooder["errors"], json!([4301]), "{seen}");
    assert_eq!(flooder["codes"], json!([4301]), "{seen}");
    assert_eq!(
        flooder["states"],
        json!(["connected", "disconnected"]),
        "{seen}"
    );
    assert_eq!(seen["dialled_after_flood"], json!([]), "no retry: {seen}");
    let page = &seen["page"];
    assert_eq!(page["subscribed"], 100, "{seen}");
    assert_eq!(page["codes"], json!([]), "{seen}");
    assert_eq!(page["states"], json!(["connected"]), "{seen}");
    assert_eq!(page["got"], json!([1]), "{seen}");
}
