//! The `[pusher]` table (SPEC section 13): Pusher Channels compatibility.

use serde::{Deserialize, Serialize};

use super::{invalid, ConfigError};

/// `[pusher]`: the one app Pusher clients and server libraries talk to. All three keys or none.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PusherConfig {
    /// The app id in `/apps/{app_id}/...` (a string, e.g. `"4242"`).
    pub app_id: String,
    /// The public key: the WebSocket path `/app/{key}`, and `auth_key` of signed requests.
    pub key: String,
    /// Signs channel authorizations, API requests and webhooks.
    pub secret: String,
    /// Users (distinct `user_id`s) a presence channel may hold, cluster-wide; one more is
    /// refused with `pusher:subscription_error` (Pusher's limit is 100).
    pub max_presence_members: usize,
    /// Seconds the last event of a cache channel (`cache-`, `private-cache-`,
    /// `presence-cache-`, `private-encrypted-cache-`) is kept for new subscribers (SPEC 16;
    /// Pusher keeps it 30 minutes).
    pub cache_ttl: u64,
}

impl Default for PusherConfig {
    fn default() -> PusherConfig {
        PusherConfig {
            app_id: String::new(),
            key: String::new(),
            secret: String::new(),
            max_presence_members: 100,
            cache_ttl: DEFAULT_CACHE_TTL,
        }
    }
}

/// The most `max_presence_members` may be: every member is listed to every joiner, so a
/// channel's snapshot grows with it (and must fit in `max_send_buffer`), and its arrivals
/// and departures cost O(n) frames each.
pub const MAX_PRESENCE_MEMBERS: usize = 10_000;

/// The default `cache_ttl`: 30 minutes, as Pusher keeps a cache channel's event.
pub const DEFAULT_CACHE_TTL: u64 = 1800;
/// The longest `cache_ttl`: one day (as `history_ttl`; a channel's offset and epoch outlive
/// its last publication by a day, and the cached event must not outlive them).
pub const MAX_CACHE_TTL: u64 = 86_400;

/// The shortest secret accepted: it is an HMAC key, and a short one can be guessed offline
/// from one signed request.
const MIN_SECRET_LEN: usize = 16;

impl PusherConfig {
    /// Whether the Pusher dialect is on.
    pub fn enabled(&self) -> bool {
        !self.app_id.is_empty()
    }

    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        super::within(
            "pusher.max_presence_members",
            u64::try_from(self.max_presence_members).unwrap_or(u64::MAX),
            1,
            MAX_PRESENCE_MEMBERS as u64,
            "",
        )?;
        super::within(
            "pusher.cache_ttl",
            self.cache_ttl,
            1,
            MAX_CACHE_TTL,
            " seconds (one day)",
        )?;
        let set = [&self.app_id, &self.key, &self.secret].map(|v| !v.is_empty());
        if set == [false; 3] {
            return Ok(());
        }
        for (name, value) in [("pusher.app_id", &self.app_id), ("pusher.key", &self.key)] {
            if value.is_empty() {
                return invalid(
                    name,
                    "`[pusher]` needs app_id, key and secret, or none of them",
                );
            }
            // Both appear in URL paths, and `:` separates the key from a signature.
            let ok = value.len() <= 64
                && value
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
            if !ok {
                return invalid(name, "1 to 64 characters of [A-Za-z0-9_.-]");
            }
        }
        if self.secret.is_empty() {
            return invalid(
                "pusher.secret",
                "`[pusher]` needs app_id, key and secret, or none of them",
            );
        }
        if self.secret.len() < MIN_SECRET_LEN {
            return invalid(
                "pusher.secret",
                format!("must be at least {MIN_SECRET_LEN} characters"),
            );
        }
        Ok(())
    }

    /// How long a cache channel's last event is kept.
    pub fn cache_ttl(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.cache_ttl)
    }

    /// For `websocket:check`: the secret is never printed.
    pub(super) fn mask(&mut self) {
        if !self.secret.is_empty() {
            self.secret = "<set>".to_owned();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{key_of, Config};

    #[test]
    fn all_three_or_none() {
        assert_eq!(key_of(""), None);
        let ok = "[pusher]\napp_id = \"4242\"\nkey = \"app-key\"\nsecret = \"0123456789abcdef\"\n";
        assert_eq!(key_of(ok), None);
        assert_eq!(
            key_of("[pusher]\napp_id = \"1\"\nsecret = \"0123456789abcdef\"\n").as_deref(),
            Some("pusher.key")
        );
        assert_eq!(
            key_of("[pusher]\napp_id = \"1\"\nkey = \"k\"\n").as_deref(),
            Some("pusher.secret")
        );
        assert_eq!(
            key_of("[pusher]\nkey = \"k\"\nsecret = \"0123456789abcdef\"\n").as_deref(),
            Some("pusher.app_id")
        );
        assert_eq!(
            key_of("[pusher]\napp_id = \"1\"\nkey = \"k\"\nsecret = \"short\"\n").as_deref(),
            Some("pusher.secret")
        );
        assert_eq!(
            key_of("[pusher]\napp_id = \"1\"\nkey = \"a/b\"\nsecret = \"0123456789abcdef\"\n")
                .as_deref(),
            Some("pusher.key")
        );
        // A number is a type error naming the key, not a silent conversion.
        assert!(Config::from_str("[pusher]\napp_id = 4242\n").is_err());
    }

    #[test]
    fn max_presence_members_is_bounded() {
        let app = "[pusher]\napp_id = \"4242\"\nkey = \"app-key\"\nsecret = \"0123456789abcdef\"\n";
        let config = Config::from_str(app).unwrap();
        assert_eq!(config.pusher.max_presence_members, 100);
        for (value, ok) in [(0, false), (1, true), (10_000, true), (10_001, false)] {
            let text = format!("{app}max_presence_members = {value}\n");
            let want = (!ok).then(|| "pusher.max_presence_members".to_owned());
            assert_eq!(key_of(&text), want, "{value}");
        }
        // A negative number or a string is a type error, not a silent conversion.
        assert!(Config::from_str(&format!("{app}max_presence_members = -1\n")).is_err());
        assert!(Config::from_str(&format!("{app}max_presence_members = \"9\"\n")).is_err());
    }

    #[test]
    fn cache_ttl_is_bounded_and_shown() {
        let app = "[pusher]\napp_id = \"4242\"\nkey = \"app-key\"\nsecret = \"0123456789abcdef\"\n";
        let config = Config::from_str(app).unwrap();
        assert_eq!(config.pusher.cache_ttl, 1800);
        assert!(config.describe().contains("cache_ttl = 1800\n"));
        for (value, ok) in [(0, false), (1, true), (86_400, true), (86_401, false)] {
            let text = format!("{app}cache_ttl = {value}\n");
            let want = (!ok).then(|| "pusher.cache_ttl".to_owned());
            assert_eq!(key_of(&text), want, "{value}");
        }
        for bad in ["cache_ttl = -1", "cache_ttl = \"60\"", "cache_ttl = 1.5"] {
            assert!(Config::from_str(&format!("{app}{bad}\n")).is_err(), "{bad}");
        }
    }

    #[test]
    fn check_masks_the_secret() {
        let config = Config::from_str(
            "[pusher]\napp_id = \"4242\"\nkey = \"app-key\"\nsecret = \"0123456789abcdef\"\n",
        )
        .unwrap();
        let shown = config.describe();
        assert!(
            shown.contains("app-key") && shown.contains("<set>"),
            "{shown}"
        );
        assert!(!shown.contains("0123456789abcdef"), "{shown}");
    }
}
