//! Helpers of the namespace tests (SPEC section 15): channel tokens from the CLI under test,
//! session users, and the answers of section 15.

use serde_json::{json, Value};

use super::msg::{cli_token, until_pong};
use super::{rakit, recv_json, send_json, Client, Daemon};

/// A channel token from `rakit websocket:token --channel` (the CLI under test); `holder` is
/// `("--sub", ID)` or `("--client", ID)`.
#[track_caller]
pub fn channel_token(secret: &str, channel: &str, holder: (&str, &str), ttl: u64) -> String {
    let out = rakit()
        .args(["websocket:token", "--secret", secret, "--channel", channel])
        .args([holder.0, holder.1])
        .arg(format!("--ttl={ttl}"))
        .output()
        .expect("run rakit websocket:token --channel");
    assert!(out.status.success(), "websocket:token failed: {out:?}");
    let token = String::from_utf8(out.stdout).expect("UTF-8 token");
    let token = token.trim_end_matches('\n');
    assert!(!token.is_empty() && !token.contains(char::is_whitespace));
    token.to_owned()
}

/// A client signed in as user `id` (a session token in the query), and its welcome.
#[track_caller]
pub fn user_client(daemon: &Daemon, secret: &str, id: &str, name: &str) -> (Client, Value) {
    let token = cli_token(secret, id, name, None, false, 3600);
    daemon.client_at(&format!("/?token={token}"))
}

/// Sends `msg` and returns the first reply to it that is not a presence message.
#[track_caller]
pub fn ask(ws: &mut Client, msg: &Value) -> Value {
    send_json(ws, msg);
    loop {
        let v = recv_json(ws);
        if v["type"] != "presence" {
            return v;
        }
    }
}

/// `{"event":"subscribe","channel":C}`, with `"token"` when given.
pub fn subscribe(channel: &str, token: Option<&str>) -> Value {
    match token {
        Some(t) => json!({"event":"subscribe","channel":channel,"token":t}),
        None => json!({"event":"subscribe","channel":channel}),
    }
}

/// Asserts SPEC 15's refusal: `forbidden` naming `channel`, with a message.
#[track_caller]
pub fn assert_forbidden(reply: &Value, channel: &str) {
    assert_eq!(reply["type"], "error", "{reply}");
    assert_eq!(reply["code"], "forbidden", "{reply}");
    assert_eq!(reply["channel"], channel, "{reply}");
    assert!(
        reply["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{reply}"
    );
}

/// Everything queued for `ws` before a pong, presence messages left out.
#[track_caller]
pub fn pending(ws: &mut Client) -> Vec<Value> {
    until_pong(ws)
        .into_iter()
        .filter(|v| v["type"] != "presence")
        .collect()
}
