//! Cross-site WebSocket hijacking (SPEC section 4) over real sockets: a session
//! token from the cookie counts only when the page's `Origin` is trusted; a
//! query token is not restricted.

mod common;

use common::msg::{assert_quiet, cli_token, client, recv_json};
use common::{set_timeout, Client, Daemon};
use serde_json::{json, Value};
use tungstenite::client::IntoClientRequest;
use tungstenite::http::HeaderValue;

const SECRET: &str = "s3cret-for-origin-tests";

fn config(extra: &str) -> String {
    format!(
        "logging_level = \"info\"\npresence = false\n{extra}\n[session]\nsecret = \"{SECRET}\"\n"
    )
}

fn ada() -> String {
    cli_token(SECRET, "u-1", "Ada", None, false, 600)
}

/// Opens a WebSocket to `path` with optional `Cookie` and `Origin` headers
/// (tungstenite sends `Host: 127.0.0.1:PORT`): the welcome's user, or the
/// HTTP status of the refusal.
#[track_caller]
fn connect(
    daemon: &Daemon,
    path: &str,
    cookie: Option<&str>,
    origin: Option<&str>,
) -> Result<(Client, Value), u16> {
    let mut req = format!("ws://{}{}", daemon.addr, path)
        .into_client_request()
        .expect("request");
    for (name, value) in [("Cookie", cookie), ("Origin", origin)] {
        if let Some(value) = value {
            req.headers_mut()
                .insert(name, HeaderValue::from_str(value).expect("header value"));
        }
    }
    match tungstenite::connect(req) {
        Ok((mut ws, _)) => {
            set_timeout(&ws);
            let welcome = recv_json(&mut ws);
            assert_eq!(welcome["type"], "welcome", "{welcome}");
            let user = welcome["user"].clone();
            Ok((ws, user))
        }
        Err(tungstenite::Error::Http(resp)) => Err(resp.status().as_u16()),
        Err(e) => panic!("handshake failed without an HTTP answer: {e}"),
    }
}

fn user_of(result: Result<(Client, Value), u16>) -> Result<Value, u16> {
    result.map(|(_, user)| user)
}

#[test]
fn a_cookie_session_from_another_site_is_refused_with_403() {
    let daemon = Daemon::start(&config(""), &[]);
    let (mut observer, welcome) = client(&daemon);
    let ada_user = json!({"id": "u-1", "name": "Ada", "email": null});
    let cookie = format!("rakit_ws_session={}", ada());
    let cookie = Some(cookie.as_str());
    let same_host = format!("http://{}:8000", daemon.addr.ip());
    // (case, Cookie, Origin, the welcome's user or the refusal's status)
    type Case<'a> = (
        &'a str,
        Option<&'a str>,
        Option<&'a str>,
        Result<Value, u16>,
    );
    let cases: &[Case] = &[
        // A page on the daemon's host, on another port: the same site.
        (
            "cookie, same host",
            cookie,
            Some(&same_host),
            Ok(ada_user.clone()),
        ),
        (
            "cookie, other site",
            cookie,
            Some("https://evil.example"),
            Err(403),
        ),
        ("cookie, opaque origin", cookie, Some("null"), Err(403)),
        // Not a browser: no page of another site can be behind it.
        ("cookie, no Origin", cookie, None, Ok(ada_user.clone())),
        // An invalid cookie from another site is refused for its origin,
        // telling that site nothing about the token.
        (
            "bad cookie, other site",
            Some("rakit_ws_session=a.b.c"),
            Some("https://evil.example"),
            Err(403),
        ),
        (
            "bad cookie, same host",
            Some("rakit_ws_session=a.b.c"),
            Some(&same_host),
            Err(401),
        ),
        // No session, no restriction.
        (
            "no cookie, other site",
            None,
            Some("https://evil.example"),
            Ok(Value::Null),
        ),
    ];
    for (case, cookie, origin, expected) in cases {
        let got = user_of(connect(&daemon, "/", *cookie, *origin));
        assert_eq!(&got, expected, "{case}");
    }
    // A token in the query string was handed to the page on purpose.
    let path = format!("/?token={}", ada());
    let got = user_of(connect(&daemon, &path, None, Some("https://evil.example")));
    assert_eq!(got, Ok(ada_user.clone()), "query token, other site");
    // Refusals touched no one.
    assert_quiet(&mut observer, welcome["client_id"].as_str().unwrap());
    // The daemon warned at start that it relies on the same-host rule.
    daemon.wait_for_line("[WARN] [session] secret is set but allowed_origins is empty");
}

#[test]
fn with_allowed_origins_the_list_decides_and_there_is_no_warning() {
    let daemon = Daemon::start(
        &config("allowed_origins = [\"https://app.example.com\"]"),
        &[],
    );
    let cookie = format!("rakit_ws_session={}", ada());
    let got = user_of(connect(
        &daemon,
        "/",
        Some(&cookie),
        Some("https://app.example.com"),
    ));
    assert_eq!(got.map(|u| u["name"].clone()), Ok(json!("Ada")));
    // The daemon's own host is not on the list.
    let same_host = format!("http://{}:8000", daemon.addr.ip());
    assert_eq!(
        user_of(connect(&daemon, "/", Some(&cookie), Some(&same_host))),
        Err(403)
    );
    // The warning would come before the start event.
    daemon.wait_for_line("[INFO] start: listening on");
    let lines = daemon.log_lines();
    assert!(
        !lines.iter().any(|l| l.contains("allowed_origins is empty")),
        "{lines:#?}"
    );
}
