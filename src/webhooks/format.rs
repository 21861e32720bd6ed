//! How a batch goes on the wire: its body around the already encoded events, and the headers
//! that sign it. The worker is the same for both formats; only this differs.
//!
//! | format | body | headers |
//! |---|---|---|
//! | Rakit (SPEC section 10) | `{"time_ms","node","events"}` | `X-Rakit-Signature: sha256=HEX` |
//! | Pusher | `{"time_ms","events"}` | `X-Pusher-Key: KEY`, `X-Pusher-Signature: HEX` |
//!
//! `HEX` is the lowercase hex HMAC-SHA256 of the body, keyed with `[webhooks] secret` (Rakit) or
//! the `[pusher]` app's secret (Pusher, as Pusher signs its webhooks).

use std::fmt;

use super::event::{batch_body, hex_hmac};
use crate::config::{PusherConfig, WebhookFormat, WebhooksConfig};

/// The wire format and its signing key.
#[derive(Clone, PartialEq, Eq)]
pub enum Format {
    Rakit { secret: String },
    Pusher { key: String, secret: String },
}

/// Never shows a secret.
impl fmt::Debug for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Format::Rakit { .. } => f.write_str("Rakit"),
            Format::Pusher { key, .. } => f.debug_struct("Pusher").field("key", key).finish(),
        }
    }
}

impl Format {
    /// The format `[webhooks]` asks for, with its key (from `[pusher]` for Pusher's).
    pub fn from_config(webhooks: &WebhooksConfig, pusher: &PusherConfig) -> Format {
        match webhooks.format {
            WebhookFormat::Rakit => Format::Rakit {
                secret: webhooks.secret.clone(),
            },
            WebhookFormat::Pusher => Format::Pusher {
                key: pusher.key.clone(),
                secret: pusher.secret.clone(),
            },
        }
    }

    /// The body of a batch of `events` (each already JSON), made at `time_ms` on `node`.
    pub fn body<'a>(
        &self,
        time_ms: u64,
        node: &str,
        events: impl Iterator<Item = &'a str>,
    ) -> Vec<u8> {
        match self {
            Format::Rakit { .. } => batch_body(time_ms, Some(node), events),
            // Pusher's batches name no node.
            Format::Pusher { .. } => batch_body(time_ms, None, events),
        }
    }

    /// The headers that sign `body` (besides `Content-Type: application/json`).
    pub fn headers(&self, body: &[u8]) -> Vec<(&'static str, String)> {
        match self {
            Format::Rakit { secret } => vec![(
                "X-Rakit-Signature",
                format!("sha256={}", hex_hmac(secret.as_bytes(), body)),
            )],
            Format::Pusher { key, secret } => vec![
                ("X-Pusher-Key", key.clone()),
                ("X-Pusher-Signature", hex_hmac(secret.as_bytes(), body)),
            ],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pusher_batches_have_no_node_and_sign_with_the_app() {
        let f = Format::Pusher {
            key: "app-key".into(),
            secret: "Jefe".into(),
        };
        let body = f.body(99, "node-1", [r#"{"a":1}"#, r#"{"b":2}"#].into_iter());
        assert_eq!(
            std::str::from_utf8(&body).unwrap(),
            r#"{"time_ms":99,"events":[{"a":1},{"b":2}]}"#
        );
        // RFC 4231 test case 2, bare hex as Pusher sends it.
        assert_eq!(
            f.headers(b"what do ya want for nothing?"),
            [
                ("X-Pusher-Key", "app-key".to_owned()),
                (
                    "X-Pusher-Signature",
                    "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843".to_owned()
                )
            ]
        );
        assert_eq!(format!("{f:?}"), r#"Pusher { key: "app-key" }"#);
    }

    #[test]
    fn rakit_batches_keep_spec_section_10() {
        let f = Format::Rakit {
            secret: "Jefe".into(),
        };
        let body = f.body(5, "n", std::iter::empty());
        assert_eq!(body, br#"{"time_ms":5,"node":"n","events":[]}"#);
        assert_eq!(
            f.headers(b"what do ya want for nothing?"),
            [(
                "X-Rakit-Signature",
                "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
                    .to_owned()
            )]
        );
        assert_eq!(format!("{f:?}"), "Rakit");
    }

    #[test]
    fn from_config_takes_the_pusher_app() {
        let mut hooks = WebhooksConfig::default();
        let pusher = PusherConfig {
            app_id: "1".into(),
            key: "k".into(),
            secret: "0123456789abcdef".into(),
            ..PusherConfig::default()
        };
        hooks.secret = "s".into();
        assert_eq!(
            Format::from_config(&hooks, &pusher),
            Format::Rakit { secret: "s".into() }
        );
        hooks.format = WebhookFormat::Pusher;
        assert_eq!(
            Format::from_config(&hooks, &pusher),
            Format::Pusher {
                key: "k".into(),
                secret: "0123456789abcdef".into()
            }
        );
    }
}
