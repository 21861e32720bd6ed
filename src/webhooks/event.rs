//! The webhook wire format (SPEC section 10): one event as JSON (encoded on the loop thread, when
//! it happens), a batch body around several, and its signature.

use hmac::{Hmac, Mac};
use serde::Serialize;
use sha2::Sha256;

use crate::config::WebhookEvent;
use crate::session::User;

/// `{"id","name","email"}` of a user (never `admin`), as in the welcome message.
#[derive(Serialize)]
struct PublicUser<'a> {
    id: &'a str,
    name: &'a str,
    email: Option<&'a str>,
}

#[derive(Serialize)]
struct Encoded<'a> {
    name: &'static str,
    client_id: &'a str,
    user: Option<PublicUser<'a>>,
    time_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    channel: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    text: Option<&'a str>,
}

/// What an event carries besides its client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Detail<'a> {
    None,
    /// `subscribe` / `unsubscribe`.
    Channel(&'a str),
    /// `message`: the client's text as received.
    Text(&'a str),
}

/// One event as its JSON object:
/// `{"name","client_id","user","time_ms"}` plus `"channel"` or `"text"`.
pub fn encode(
    name: WebhookEvent,
    client_id: &str,
    user: Option<&User>,
    time_ms: u64,
    detail: Detail<'_>,
) -> String {
    let (channel, text) = match detail {
        Detail::None => (None, None),
        Detail::Channel(c) => (Some(c), None),
        Detail::Text(t) => (None, Some(t)),
    };
    let event = Encoded {
        name: name.as_str(),
        client_id,
        user: user.map(|u| PublicUser {
            id: &u.id,
            name: &u.name,
            email: u.email.as_deref(),
        }),
        time_ms,
        channel,
        text,
    };
    // Strings and integers only: serialising cannot fail.
    serde_json::to_string(&event).unwrap_or_default()
}

/// `{"time_ms":MS,"node":NODE_ID,"events":[...]}` around already encoded events (without
/// `node` when `None`, as Pusher's batches are).
pub fn batch_body<'a>(
    time_ms: u64,
    node: Option<&str>,
    events: impl Iterator<Item = &'a str>,
) -> Vec<u8> {
    let mut body = format!("{{\"time_ms\":{time_ms},");
    if let Some(node) = node {
        body.push_str("\"node\":");
        body.push_str(&serde_json::to_string(node).unwrap_or_else(|_| "\"\"".to_owned()));
        body.push(',');
    }
    body.push_str("\"events\":[");
    for (i, event) in events.enumerate() {
        if i > 0 {
            body.push(',');
        }
        body.push_str(event);
    }
    body.push_str("]}");
    body.into_bytes()
}

/// The `X-Rakit-Signature` value: `sha256=` and the lowercase hex HMAC-SHA256 of the body.
pub fn signature(secret: &[u8], body: &[u8]) -> String {
    format!("sha256={}", hex_hmac(secret, body))
}

/// The lowercase hex HMAC-SHA256 of `body` (bare, as `X-Pusher-Signature` carries it).
pub fn hex_hmac(secret: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC accepts keys of any length");
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    let mut out = String::with_capacity(64);
    for b in digest {
        out.push(char::from(b"0123456789abcdef"[usize::from(b >> 4)]));
        out.push(char::from(b"0123456789abcdef"[usize::from(b & 15)]));
    }
    out
}

/// Milliseconds since the Unix epoch (0 before 1970).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// A node id for the `node` field: 12 random `[a-z0-9]`, new at every start. The randomness is
/// std's per-process hash keys, which come from the OS.
pub fn random_node_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(now_ms());
    hasher.write_u32(std::process::id());
    let mut n = hasher.finish();
    (0..12)
        .map(|_| {
            let c = b"abcdefghijklmnopqrstuvwxyz0123456789"[(n % 36) as usize];
            n /= 36;
            char::from(c)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_have_the_spec_shape() {
        let ann = User {
            id: "42".into(),
            name: "Ann \"A\"".into(),
            email: Some("ann@example.com".into()),
            admin: true,
        };
        assert_eq!(
            encode(
                WebhookEvent::Connect,
                "AbCd1234",
                Some(&ann),
                5,
                Detail::None
            ),
            r#"{"name":"connect","client_id":"AbCd1234","user":{"id":"42","name":"Ann \"A\"","email":"ann@example.com"},"time_ms":5}"#
        );
        assert_eq!(
            encode(
                WebhookEvent::Subscribe,
                "x",
                None,
                6,
                Detail::Channel("news")
            ),
            r#"{"name":"subscribe","client_id":"x","user":null,"time_ms":6,"channel":"news"}"#
        );
        assert_eq!(
            encode(
                WebhookEvent::Message,
                "x",
                None,
                7,
                Detail::Text("{\"message\":1}\n")
            ),
            r#"{"name":"message","client_id":"x","user":null,"time_ms":7,"text":"{\"message\":1}\n"}"#
        );
    }

    #[test]
    fn batch_body_and_signature() {
        let body = batch_body(99, Some("node\"1"), ["{\"a\":1}", "{\"b\":2}"].into_iter());
        assert_eq!(
            std::str::from_utf8(&body).unwrap(),
            r#"{"time_ms":99,"node":"node\"1","events":[{"a":1},{"b":2}]}"#
        );
        // RFC 4231 test case 2.
        assert_eq!(
            signature(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn node_ids() {
        let a = random_node_id();
        assert_eq!(a.len(), 12);
        assert!(a
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()));
        assert_ne!(a, random_node_id());
    }
}
