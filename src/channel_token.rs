//! Channel tokens (SPEC section 15): what a backend signs so that one connection may subscribe
//! to one channel of a namespace with `subscribe = "token"`.
//!
//! An HS256 JWT signed with `[session] secret`, like a session token (`session.rs` checks the
//! header, the signature in constant time and `exp`/`nbf`), with the claims `channel` (the exact
//! channel name), `exp` (required), and `sub` (the connection's user id) or `client` (its client
//! id, for guests: the page sends the `client_id` of its `welcome` to its backend, as Pusher's
//! `socket_id`). A token may carry both; then both must match.

use serde::Serialize;
use serde_json::Value;

use crate::session::{self, TokenError};

/// Who a channel token is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Holder<'a> {
    /// The connections of this session user (`sub`).
    User(&'a str),
    /// This one connection (`client`); a new connection has a new id and needs a new token.
    Client(&'a str),
}

/// The connection that presents a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Presenter<'a> {
    /// Its session user's id; `None` for a guest.
    pub user: Option<&'a str>,
    pub client: &'a str,
}

#[derive(Serialize)]
struct Claims<'a> {
    channel: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    sub: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    client: Option<&'a str>,
    exp: u64,
}

/// Signs a token for `holder` to subscribe to `channel`, expiring at `exp` (Unix seconds); for
/// `websocket:token --channel` and tests.
pub fn issue(secret: &[u8], channel: &str, holder: Holder<'_>, exp: u64) -> String {
    let (sub, client) = match holder {
        Holder::User(id) => (Some(id), None),
        Holder::Client(id) => (None, Some(id)),
    };
    session::sign(
        secret,
        &Claims {
            channel,
            sub,
            client,
            exp,
        },
    )
}

/// Checks that `token` lets `presenter` subscribe to `channel` at `now_unix`: signed with
/// `secret`, not expired, for exactly this channel, and for this user or this client.
pub fn verify(
    token: &str,
    secret: &[u8],
    now_unix: u64,
    channel: &str,
    presenter: Presenter<'_>,
) -> Result<(), TokenError> {
    let claims = session::verify_claims(token, secret, now_unix)?;
    let text = |name: &str| match claims.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.as_str())),
        Some(_) => Err(TokenError::Claims(format!("`{name}` must be a string"))),
    };
    match text("channel")? {
        Some(c) if c == channel => {}
        Some(_) => return Err(claims_error("`channel` is another channel")),
        None => return Err(claims_error("`channel` is required")),
    }
    let (sub, client) = (text("sub")?, text("client")?);
    if sub.is_none() && client.is_none() {
        return Err(claims_error("`sub` or `client` is required"));
    }
    if sub.is_some_and(|sub| Some(sub) != presenter.user) {
        return Err(claims_error("`sub` is another user"));
    }
    if client.is_some_and(|client| client != presenter.client) {
        return Err(claims_error("`client` is another connection"));
    }
    Ok(())
}

fn claims_error(why: &str) -> TokenError {
    TokenError::Claims(why.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"channel-secret";
    const NOW: u64 = 1_700_000_000;
    const ALICE: Presenter<'static> = Presenter {
        user: Some("42"),
        client: "Ab3dEf9h",
    };
    const GUEST: Presenter<'static> = Presenter {
        user: None,
        client: "Zz9yXx8w",
    };

    fn check(token: &str, channel: &str, who: Presenter<'_>) -> Result<(), TokenError> {
        verify(token, SECRET, NOW, channel, who)
    }

    #[test]
    fn a_token_opens_one_channel_to_one_holder() {
        let user = issue(SECRET, "order.42", Holder::User("42"), NOW + 60);
        assert_eq!(check(&user, "order.42", ALICE), Ok(()));
        let client = issue(SECRET, "order.42", Holder::Client("Zz9yXx8w"), NOW + 60);
        assert_eq!(check(&client, "order.42", GUEST), Ok(()));
        // Another channel (also a prefix of it or an extension), user, or connection.
        for (token, channel, who) in [
            (&user, "order.43", ALICE),
            (&user, "order.4", ALICE),
            (&user, "order.420", ALICE),
            (&user, "order.42", GUEST),
            (&client, "order.42", ALICE),
        ] {
            assert!(
                matches!(check(token, channel, who), Err(TokenError::Claims(_))),
                "{channel} {who:?}"
            );
        }
    }

    #[test]
    fn signature_and_time_are_the_session_tokens() {
        let token = issue(SECRET, "c", Holder::User("42"), NOW + 60);
        assert_eq!(
            verify(&token, b"other", NOW, "c", ALICE),
            Err(TokenError::Signature)
        );
        assert_eq!(
            verify(&token, SECRET, NOW + 60, "c", ALICE),
            Err(TokenError::Expired)
        );
        // No secret, no token: one signed with the empty key is anybody's.
        let keyless = issue(b"", "c", Holder::User("42"), NOW + 60);
        assert_eq!(
            verify(&keyless, b"", NOW, "c", ALICE),
            Err(TokenError::Signature)
        );
        assert_eq!(check("a.b", "c", ALICE), Err(TokenError::Malformed));
        // A session token is no channel token.
        let user = session::User {
            id: "42".into(),
            name: "A".into(),
            email: None,
            admin: false,
        };
        let session_token = session::issue(SECRET, &user, NOW + 60);
        assert!(matches!(
            check(&session_token, "c", ALICE),
            Err(TokenError::Claims(_))
        ));
    }

    #[test]
    fn claims_are_strict() {
        #[derive(Serialize)]
        struct Raw<'a> {
            #[serde(skip_serializing_if = "Option::is_none")]
            channel: Option<Value>,
            #[serde(skip_serializing_if = "Option::is_none")]
            sub: Option<Value>,
            #[serde(skip_serializing_if = "Option::is_none")]
            client: Option<&'a str>,
            #[serde(skip_serializing_if = "Option::is_none")]
            exp: Option<u64>,
        }
        let raw = |channel: Option<Value>, sub: Option<Value>, client, exp| {
            session::sign(
                SECRET,
                &Raw {
                    channel,
                    sub,
                    client,
                    exp,
                },
            )
        };
        let c = || Some(Value::from("c"));
        let s = || Some(Value::from("42"));
        let exp = Some(NOW + 60);
        // No `exp`, no channel, no holder, wrong types.
        assert!(check(&raw(c(), s(), None, None), "c", ALICE).is_err());
        assert!(check(&raw(None, s(), None, exp), "c", ALICE).is_err());
        assert!(check(&raw(c(), None, None, exp), "c", ALICE).is_err());
        assert!(check(&raw(Some(Value::from(1)), s(), None, exp), "c", ALICE).is_err());
        assert!(check(&raw(c(), Some(Value::from(42)), None, exp), "c", ALICE).is_err());
        // Both holders: both must match.
        assert_eq!(
            check(&raw(c(), s(), Some("Ab3dEf9h"), exp), "c", ALICE),
            Ok(())
        );
        assert!(check(&raw(c(), s(), Some("Zz9yXx8w"), exp), "c", ALICE).is_err());
        assert_eq!(check(&raw(c(), s(), None, exp), "c", ALICE), Ok(()));
    }
}
