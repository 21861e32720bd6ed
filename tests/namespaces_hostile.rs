//! Hostile clients against channel authorization (SPEC section 15): tokens nobody should be able
//! to make, and what a refused client may learn. Over real sockets, against the real binary.

mod common;

use common::namespaces::{ask, assert_forbidden, subscribe};
use common::{id_of, Daemon};
use rakit::channel_token::{self, Holder};

const NAMESPACES: &str = r#"
[[namespaces]]
prefix = "order."
subscribe = "token"
"#;

/// A channel token for `channel` and client `client`, signed with `key` by the attacker (the
/// library's own signer: the same bytes any JWT library makes).
fn forged(key: &[u8], channel: &str, client: &str) -> String {
    let exp = rakit::session::now_unix() + 600;
    channel_token::issue(key, channel, Holder::Client(client), exp)
}

/// Without `[session] secret` nobody can sign a channel token: a token signed with the empty
/// key (HMAC takes any key, the empty one included) must not open a token channel. The daemon
/// warns at start that such channels are closed to every client; they must be.
#[test]
fn without_a_secret_a_token_signed_with_the_empty_key_opens_nothing() {
    let daemon = Daemon::start(&format!("logging_level = \"warn\"\n{NAMESPACES}"), &[]);
    let (mut ws, welcome) = daemon.client();
    let token = forged(b"", "order.42", &id_of(&welcome));
    let reply = ask(&mut ws, &subscribe("order.42", Some(&token)));
    assert_forbidden(&reply, "order.42");
}

/// The same after a reload that empties the secret (SPEC 18: `[session]` reloads): the router's
/// key follows it, and an empty key must verify nothing.
#[test]
fn a_reload_that_empties_the_secret_does_not_open_token_channels() {
    let with_secret = format!(
        "logging_level = \"info\"\n[session]\nsecret = \"review-secret-0123456789\"\n{NAMESPACES}"
    );
    let daemon = Daemon::start(&with_secret, &[]);
    let lines = daemon.reload(&format!("logging_level = \"info\"\n{NAMESPACES}"));
    assert!(
        lines.last().is_some_and(|l| l.contains("config reloaded")),
        "{lines:?}"
    );
    let (mut ws, welcome) = daemon.client();
    let token = forged(b"", "order.7", &id_of(&welcome));
    let reply = ask(&mut ws, &subscribe("order.7", Some(&token)));
    assert_forbidden(&reply, "order.7");
}
