//! Sessions (SPEC section 4) and `command_policy` over real sockets: tokens
//! from the `token` query parameter and the session cookie, 401 refusals,
//! no secret, and `rakit websocket:token`.

mod common;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use common::msg::{
    assert_quiet, cli_token, client, client_at, recv_json, until_pong, ws_with_cookie,
};
use common::{http, send_json, status_of, upgrade_request, Client, Daemon};
use serde_json::{json, Value};

const SECRET: &str = "s3cret-for-tests";

fn with_secret(extra: &str) -> String {
    format!(
        "logging_level = \"warn\"\npresence = false\n{extra}\n[session]\nsecret = \"{SECRET}\"\n"
    )
}

fn ada() -> String {
    cli_token(
        SECRET,
        "u-1",
        "Ada Lovelace",
        Some("ada@example.com"),
        false,
        600,
    )
}

fn ada_user() -> Value {
    json!({"id": "u-1", "name": "Ada Lovelace", "email": "ada@example.com"})
}

/// Asserts a complete, well-formed HTTP refusal with `status`: a status
/// line, `Content-Length` matching a one-line body, `Connection: close`.
#[track_caller]
fn assert_refusal(response: &str, status: u16) {
    assert_eq!(status_of(response), status, "{response:?}");
    assert!(response.starts_with("HTTP/1.1 "), "{response:?}");
    let (head, body) = response
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no end of head: {response:?}"));
    let header = |name: &str| {
        head.split("\r\n").skip(1).find_map(|line| {
            let (k, v) = line.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_owned())
        })
    };
    let length: usize = header("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no Content-Length: {response:?}"));
    assert_eq!(length, body.len(), "{response:?}");
    assert!(
        header("connection").is_some_and(|v| v.eq_ignore_ascii_case("close")),
        "{response:?}"
    );
    let line = body.strip_suffix('\n').unwrap_or(body);
    let line = line.strip_suffix('\r').unwrap_or(line);
    assert!(
        !line.trim().is_empty() && !line.contains('\n'),
        "one-line reason: {body:?}"
    );
}

/// Tokens the daemon must refuse, with what is wrong with each.
fn bad_tokens() -> Vec<(&'static str, String)> {
    let good = ada();
    let parts: Vec<&str> = good.split('.').collect();
    let none_header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let hs512_header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS512","typ":"JWT"}"#);
    let forged = URL_SAFE_NO_PAD
        .encode(br#"{"sub":"u-1","name":"Ada Lovelace","admin":true,"exp":99999999999}"#);
    vec![
        (
            "bad signature",
            cli_token("another-secret", "u-1", "Ada", None, false, 600),
        ),
        (
            "tampered payload",
            format!("{}.{forged}.{}", parts[0], parts[2]),
        ),
        ("expired", cli_token(SECRET, "u-1", "Ada", None, false, 0)),
        ("alg none", format!("{none_header}.{}.", parts[1])),
        (
            "alg none, signature kept",
            format!("{none_header}.{}.{}", parts[1], parts[2]),
        ),
        (
            "alg HS512",
            format!("{hs512_header}.{}.{}", parts[1], parts[2]),
        ),
        ("malformed", "not-a-token".to_owned()),
        ("two segments", format!("{}.{}", parts[0], parts[1])),
        ("garbage segments", "a.b.c".to_owned()),
    ]
}

#[test]
fn token_user_from_the_query_parameter() {
    let daemon = Daemon::start(&with_secret(""), &[]);
    let (_ws, welcome) = client_at(&daemon, &format!("/?token={}", ada()));
    assert_eq!(welcome["user"], ada_user(), "{welcome}");
    // Among other parameters, on any path; an absent email is null.
    let bob = cli_token(SECRET, "42", "Bob", None, false, 600);
    let (_ws, welcome) = client_at(&daemon, &format!("/ws/app?room=1&token={bob}&x=y"));
    assert_eq!(
        welcome["user"],
        json!({"id": "42", "name": "Bob", "email": null})
    );
    // The welcome never shows the admin claim.
    let root = cli_token(SECRET, "0", "Root", None, true, 600);
    let (_ws, welcome) = client_at(&daemon, &format!("/?token={root}"));
    let keys: Vec<&String> = welcome["user"].as_object().unwrap().keys().collect();
    assert_eq!(keys.len(), 3, "{welcome}");
    // No token: a guest.
    let (_ws, welcome) = client(&daemon);
    assert_eq!(welcome["user"], Value::Null);
}

#[test]
fn token_user_from_the_session_cookie() {
    let daemon = Daemon::start(&with_secret(""), &[]);
    let cookie = format!("theme=dark; rakit_ws_session={}; other=1", ada());
    let mut ws = ws_with_cookie(&daemon, "/", &cookie).expect("handshake");
    let welcome = recv_json(&mut ws);
    assert_eq!(welcome["user"], ada_user(), "{welcome}");

    // A cookie of another name is not a session.
    let mut ws = ws_with_cookie(&daemon, "/", &format!("session={}", ada())).expect("handshake");
    assert_eq!(recv_json(&mut ws)["user"], Value::Null);
}

#[test]
fn session_cookie_name_is_configurable() {
    let daemon = Daemon::start(
        &with_secret("").replace("[session]\n", "[session]\ncookie = \"my_ws\"\n"),
        &[],
    );
    let mut ws = ws_with_cookie(&daemon, "/", &format!("my_ws={}", ada())).expect("handshake");
    assert_eq!(recv_json(&mut ws)["user"], ada_user());
    let mut ws =
        ws_with_cookie(&daemon, "/", &format!("rakit_ws_session={}", ada())).expect("handshake");
    assert_eq!(recv_json(&mut ws)["user"], Value::Null);
}

#[test]
fn query_token_wins_over_cookie() {
    let daemon = Daemon::start(&with_secret(""), &[]);
    let bob = cli_token(SECRET, "42", "Bob", None, false, 600);
    let cookie = format!("rakit_ws_session={}", ada());
    let mut ws = ws_with_cookie(&daemon, &format!("/?token={bob}"), &cookie).expect("handshake");
    assert_eq!(recv_json(&mut ws)["user"]["name"], "Bob");
    // A bad query token is not rescued by a good cookie...
    let request = upgrade_request("/?token=a.b.c", &format!("Cookie: {cookie}\r\n"));
    assert_refusal(&http(&daemon, &request), 401);
    // ...and a good query token is not spoiled by a bad cookie.
    let mut ws = ws_with_cookie(&daemon, &format!("/?token={bob}"), "rakit_ws_session=a.b.c")
        .expect("handshake");
    assert_eq!(recv_json(&mut ws)["user"]["name"], "Bob");
}

#[test]
fn invalid_tokens_get_401_and_touch_no_one() {
    let daemon = Daemon::start(
        &with_secret("").replace("presence = false", "presence_interval_ms = 0"),
        &[],
    );
    let (mut observer, welcome) = client(&daemon);
    assert_eq!(recv_json(&mut observer)["count"], 1, "own presence");
    for (what, token) in bad_tokens() {
        let by_query = upgrade_request(&format!("/?token={token}"), "");
        let response = http(&daemon, &by_query);
        assert_refusal(&response, 401);
        let by_cookie = upgrade_request("/", &format!("Cookie: rakit_ws_session={token}\r\n"));
        let response = http(&daemon, &by_cookie);
        assert_refusal(&response, 401);
        // Through a real client too.
        match tungstenite::connect(format!("{}?token={token}", daemon.url())) {
            Err(tungstenite::Error::Http(resp)) => assert_eq!(resp.status(), 401, "{what}"),
            Err(e) => panic!("{what}: {e}"),
            Ok(_) => panic!("{what}: a token the daemon must refuse was accepted"),
        }
    }
    // No connect happened: no presence, nothing at all for the observer.
    assert_quiet(&mut observer, welcome["client_id"].as_str().unwrap());
}

#[test]
fn without_a_secret_tokens_are_ignored() {
    let daemon = Daemon::start("logging_level = \"warn\"\npresence = false\n", &[]);
    for path in [format!("/?token={}", ada()), "/?token=a.b.c".to_owned()] {
        let (_ws, welcome) = client_at(&daemon, &path);
        assert_eq!(welcome["user"], Value::Null, "{path}");
    }
    let mut ws =
        ws_with_cookie(&daemon, "/", &format!("rakit_ws_session={}", ada())).expect("handshake");
    assert_eq!(recv_json(&mut ws)["user"], Value::Null);
}

#[test]
fn cli_token_connects_as_its_user() {
    let daemon = Daemon::start(&with_secret(""), &[]);
    let token = cli_token(
        SECRET,
        "7",
        "Grace Hopper",
        Some("grace@example.com"),
        true,
        60,
    );
    let (_ws, welcome) = client_at(&daemon, &format!("/?token={token}"));
    assert_eq!(
        welcome["user"],
        json!({"id": "7", "name": "Grace Hopper", "email": "grace@example.com"})
    );
    // The token is a JWT: header, claims, signature.
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3);
    let claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    assert_eq!(claims["admin"], true);
    let exp = claims["exp"].as_u64().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(exp > now && exp <= now + 61, "exp {exp} now {now}");
    // --ttl 0 is already expired.
    let expired = cli_token(SECRET, "7", "Grace Hopper", None, false, 0);
    let response = http(&daemon, &upgrade_request(&format!("/?token={expired}"), ""));
    assert_refusal(&response, 401);
}

/// Whether `ws` may send commands: a broadcast is acked, or `forbidden`.
/// Counts the broadcasts it receives meanwhile in `seen`.
fn may_command(ws: &mut Client, seen: &mut usize) -> bool {
    send_json(ws, &json!({"command": "broadcast", "message": "cmd"}));
    loop {
        let v = recv_json(ws);
        match v["type"].as_str() {
            Some("message") => {
                assert_eq!(v, json!({"type": "message", "message": "cmd"}));
                *seen += 1;
            }
            Some("ack") => return true,
            Some("error") => {
                assert_eq!(v["code"], "forbidden", "{v}");
                return false;
            }
            _ => panic!("{v}"),
        }
    }
}

#[test]
fn command_policy_allows_exactly_the_right_connections() {
    // (policy line, [guest, user, admin]); no line means the default, admin.
    let cases = [
        ("command_policy = \"any\"", [true, true, true]),
        ("command_policy = \"authenticated\"", [false, true, true]),
        ("command_policy = \"admin\"", [false, false, true]),
        ("", [false, false, true]),
        ("command_policy = \"off\"", [false, false, false]),
    ];
    let user = ada();
    let admin = cli_token(SECRET, "root", "Root", None, true, 600);
    for (policy, expected) in cases {
        let daemon = Daemon::start(&with_secret(policy), &[]);
        let (guest, _) = client(&daemon);
        let (plain, _) = client_at(&daemon, &format!("/?token={user}"));
        let (root, _) = client_at(&daemon, &format!("/?token={admin}"));
        let mut clients = [guest, plain, root];
        let mut seen = [0; 3];
        let mut got = [false; 3];
        for i in 0..3 {
            got[i] = may_command(&mut clients[i], &mut seen[i]);
        }
        assert_eq!(got, expected, "policy {policy:?}: [guest, user, admin]");
        // Every allowed broadcast reached everyone; refused ones nobody.
        let allowed = expected.iter().filter(|&&ok| ok).count();
        for (ws, seen) in clients.iter_mut().zip(seen) {
            let rest = until_pong(ws);
            for v in &rest {
                assert_eq!(*v, json!({"type": "message", "message": "cmd"}));
            }
            assert_eq!(seen + rest.len(), allowed, "policy {policy:?}");
        }
    }
}
