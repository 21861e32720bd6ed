//! The `[limits]` table (SPEC section 17): abuse limits, on by default.

use serde::{Deserialize, Serialize};

use super::{invalid, max, within, ConfigError};
use crate::budget::{Rate, MAX_PER_SECOND};
use crate::limits::{AdmissionRules, FloodRules, TrustedProxies};
use crate::router::CommandPolicy;

/// Who may send client broadcasts `{"message":M}` (`broadcast_policy`): the same four values
/// as `command_policy`, `any` by default (the Rakit behaviour).
pub type BroadcastPolicy = CommandPolicy;

/// The largest burst a bucket may have: a million messages in one go is no limit at all.
pub const MAX_BURST: u64 = 1_000_000;

/// `[limits]`. A rate of 0 turns its bucket off; so does a limit of 0 connections.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Messages a second per connection (every text message, any dialect, pings included).
    pub messages_per_second: u64,
    /// The message bucket's size; also how many refusals within 10 s close a connection.
    pub message_burst: u64,
    /// Client broadcasts `{"message":M}` a second per connection.
    pub broadcasts_per_second: u64,
    pub broadcast_burst: u64,
    /// Who may send client broadcasts.
    pub broadcast_policy: BroadcastPolicy,
    /// Open WebSocket connections per client address.
    pub max_connections_per_ip: u64,
    /// New handshakes per client address per second (and its burst).
    pub connections_per_ip_per_second: u64,
    /// Open connections per session user.
    pub max_connections_per_user: u64,
    /// Reverse proxies (addresses or CIDR ranges) whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<String>,
}

impl Default for LimitsConfig {
    /// SPEC section 17's defaults.
    fn default() -> LimitsConfig {
        LimitsConfig {
            messages_per_second: 100,
            message_burst: 200,
            broadcasts_per_second: 5,
            broadcast_burst: 20,
            broadcast_policy: CommandPolicy::Any,
            max_connections_per_ip: 0,
            connections_per_ip_per_second: 0,
            max_connections_per_user: 0,
            trusted_proxies: Vec::new(),
        }
    }
}

impl LimitsConfig {
    /// Every limit off (`0`): what benchmarks and tests that flood on purpose run with.
    pub fn off() -> LimitsConfig {
        LimitsConfig {
            messages_per_second: 0,
            broadcasts_per_second: 0,
            ..LimitsConfig::default()
        }
    }

    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        let per_second = " a second (one per microsecond)";
        let bounds = [
            (
                "messages_per_second",
                self.messages_per_second,
                MAX_PER_SECOND,
                per_second,
            ),
            ("message_burst", self.message_burst, MAX_BURST, ""),
            (
                "broadcasts_per_second",
                self.broadcasts_per_second,
                MAX_PER_SECOND,
                per_second,
            ),
            ("broadcast_burst", self.broadcast_burst, MAX_BURST, ""),
            (
                "max_connections_per_ip",
                self.max_connections_per_ip,
                max::CONNECTIONS,
                "",
            ),
            (
                "connections_per_ip_per_second",
                self.connections_per_ip_per_second,
                MAX_PER_SECOND,
                per_second,
            ),
            (
                "max_connections_per_user",
                self.max_connections_per_user,
                max::CONNECTIONS,
                "",
            ),
        ];
        for (key, value, most, unit) in bounds {
            within(&format!("limits.{key}"), value, 0, most, unit)?;
        }
        for (rate, burst, key) in [
            (
                self.messages_per_second,
                self.message_burst,
                "messages_per_second",
            ),
            (
                self.broadcasts_per_second,
                self.broadcast_burst,
                "broadcasts_per_second",
            ),
        ] {
            if rate > 0 && burst == 0 {
                let burst_key = key.replace("s_per_second", "_burst");
                return invalid(
                    &format!("limits.{burst_key}"),
                    format!(
                        "must be at least 1 when {key} is set (a rate of 0 turns the bucket off)"
                    ),
                );
            }
        }
        if let Err(e) = TrustedProxies::parse(&self.trusted_proxies) {
            return invalid("limits.trusted_proxies", e);
        }
        Ok(())
    }

    /// The message limits, as the router applies them.
    pub fn flood(&self) -> FloodRules {
        let bucket = |rate, burst| (rate > 0).then(|| Rate::per_second(rate, burst));
        // The close comes after more than `message_burst` refusals; with the message bucket
        // off, after more than the broadcast burst; with both off, never.
        let refusals = if self.messages_per_second > 0 {
            self.message_burst
        } else if self.broadcasts_per_second > 0 {
            self.broadcast_burst
        } else {
            0
        };
        FloodRules {
            messages: bucket(self.messages_per_second, self.message_burst),
            broadcasts: bucket(self.broadcasts_per_second, self.broadcast_burst),
            max_refusals: match u32::try_from(refusals) {
                Ok(0) | Err(_) => u32::MAX,
                Ok(n) => n,
            },
        }
    }

    /// The connection limits, as the event loop applies them.
    pub fn admission(&self) -> AdmissionRules {
        let count = |n: u64| u32::try_from(n).unwrap_or(u32::MAX);
        let rate = self.connections_per_ip_per_second;
        AdmissionRules {
            max_per_address: count(self.max_connections_per_ip),
            connect_rate: (rate > 0).then(|| Rate::per_second(rate, rate)),
            max_per_user: count(self.max_connections_per_user),
        }
    }

    /// The parsed `trusted_proxies` (valid once `validate` passed; empty otherwise).
    pub fn proxies(&self) -> TrustedProxies {
        TrustedProxies::parse(&self.trusted_proxies).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::super::{key_of, Config};
    use super::*;

    #[test]
    fn on_by_default_with_the_spec_values() {
        let c = Config::from_str("").unwrap();
        let l = &c.limits;
        assert_eq!((l.messages_per_second, l.message_burst), (100, 200));
        assert_eq!((l.broadcasts_per_second, l.broadcast_burst), (5, 20));
        assert_eq!(l.broadcast_policy, CommandPolicy::Any);
        assert_eq!(
            (
                l.max_connections_per_ip,
                l.connections_per_ip_per_second,
                l.max_connections_per_user
            ),
            (0, 0, 0)
        );
        assert!(l.trusted_proxies.is_empty());
        assert_eq!(l.flood(), FloodRules::default());
        assert_eq!(l.admission(), AdmissionRules::default());
    }

    #[test]
    fn zero_turns_each_off() {
        let c = Config::from_str(
            "[limits]\nmessages_per_second = 0\nbroadcasts_per_second = 0\nmessage_burst = 0\nbroadcast_burst = 0\n",
        )
        .unwrap();
        c.validate().unwrap();
        assert_eq!(c.limits.flood(), FloodRules::OFF);
        assert_eq!(LimitsConfig::off().flood(), FloodRules::OFF);
        assert_eq!(LimitsConfig::off().admission(), AdmissionRules::default());
        // The message bucket off, broadcasts on: the close counts broadcast refusals.
        let c = Config::from_str("[limits]\nmessages_per_second = 0\n").unwrap();
        assert_eq!(c.limits.flood().messages, None);
        assert_eq!(c.limits.flood().max_refusals, 20);
    }

    #[test]
    fn errors_name_the_key() {
        for (text, key) in [
            ("[limits]\nmessage_burst = 0", "limits.message_burst"),
            ("[limits]\nbroadcast_burst = 0", "limits.broadcast_burst"),
            (
                "[limits]\nmessages_per_second = 1000001",
                "limits.messages_per_second",
            ),
            ("[limits]\nmessage_burst = 1000001", "limits.message_burst"),
            (
                "[limits]\nbroadcasts_per_second = 99999999999",
                "limits.broadcasts_per_second",
            ),
            (
                "[limits]\nmax_connections_per_ip = 10000001",
                "limits.max_connections_per_ip",
            ),
            (
                "[limits]\nconnections_per_ip_per_second = 1000001",
                "limits.connections_per_ip_per_second",
            ),
            (
                "[limits]\nmax_connections_per_user = 10000001",
                "limits.max_connections_per_user",
            ),
            (
                "[limits]\ntrusted_proxies = [\"10.0.0.0/33\"]",
                "limits.trusted_proxies",
            ),
            (
                "[limits]\ntrusted_proxies = [\"proxy.local\"]",
                "limits.trusted_proxies",
            ),
        ] {
            assert_eq!(key_of(text).as_deref(), Some(key), "{text}");
        }
        // Unknown keys, wrong types and values are errors naming the key.
        for (text, key) in [
            ("[limits]\nmessages_per_sec = 1", "limits.messages_per_sec"),
            (
                "[limits]\nmessages_per_second = -1",
                "limits.messages_per_second",
            ),
            (
                "[limits]\nmessages_per_second = \"100\"",
                "limits.messages_per_second",
            ),
            (
                "[limits]\nbroadcast_policy = \"everyone\"",
                "limits.broadcast_policy",
            ),
            (
                "[limits]\ntrusted_proxies = \"10.0.0.1\"",
                "limits.trusted_proxies",
            ),
        ] {
            let e = Config::from_str(text).unwrap_err().to_string();
            assert!(e.contains(key), "{text}: {e}");
        }
        let ok = "[limits]\nbroadcast_policy = \"admin\"\ntrusted_proxies = [\"10.0.0.0/8\", \"::1\"]\nmax_connections_per_ip = 10\nconnections_per_ip_per_second = 5\nmax_connections_per_user = 3\n";
        assert_eq!(key_of(ok), None);
        let c = Config::from_str(ok).unwrap();
        assert_eq!(c.limits.broadcast_policy, CommandPolicy::Admin);
        assert!(c.limits.proxies().contains("10.1.2.3".parse().unwrap()));
        let rules = c.limits.admission();
        assert_eq!((rules.max_per_address, rules.max_per_user), (10, 3));
        assert_eq!(rules.connect_rate, Some(Rate::per_second(5, 5)));
    }

    #[test]
    fn check_shows_the_table() {
        let shown = Config::from_str("").unwrap().describe();
        assert!(shown.contains("[limits]"), "{shown}");
        for line in [
            "messages_per_second = 100",
            "message_burst = 200",
            "broadcasts_per_second = 5",
            "broadcast_burst = 20",
            "broadcast_policy = \"any\"",
            "max_connections_per_ip = 0",
            "connections_per_ip_per_second = 0",
            "max_connections_per_user = 0",
            "trusted_proxies = []",
        ] {
            assert!(shown.contains(line), "{line}: {shown}");
        }
    }
}
