//! The `[cluster]` table (SPEC section 11): scale-out over Redis.

use serde::{Deserialize, Serialize};

use super::{invalid, within, ConfigError};
use crate::cluster::endpoint::{mask_password, Endpoint};

/// `[cluster]`: empty `redis_url` means a single node, exactly as without the table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterConfig {
    /// `redis://[:password@]host[:port][/db]` or `unix:/path/redis.sock[?db=N]`.
    pub redis_url: String,
    /// Prefixes every Redis key and pub/sub channel.
    pub namespace: String,
    /// A node not heard from for this long is gone (its clients too).
    pub node_timeout_ms: u64,
    /// SO_REUSEPORT on the listener: several daemons share one port.
    pub reuse_port: bool,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            redis_url: String::new(),
            namespace: "rakit".to_owned(),
            node_timeout_ms: 3000,
            reuse_port: false,
        }
    }
}

impl ClusterConfig {
    /// Whether clustering is on.
    pub fn enabled(&self) -> bool {
        !self.redis_url.is_empty()
    }

    /// The parsed `redis_url`, when clustering is on.
    pub fn endpoint(&self) -> Option<Endpoint> {
        Endpoint::parse(&self.redis_url).ok()
    }

    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if self.enabled() {
            if let Err(e) = Endpoint::parse(&self.redis_url) {
                return invalid("cluster.redis_url", e);
            }
        }
        let ns = &self.namespace;
        if ns.is_empty() || ns.len() > 64 {
            return invalid("cluster.namespace", "must be 1 to 64 characters");
        }
        if !ns
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':'))
        {
            return invalid(
                "cluster.namespace",
                format!("`{ns}` may hold only letters, digits, `_`, `-`, `.` and `:`"),
            );
        }
        within(
            "cluster.node_timeout_ms",
            self.node_timeout_ms,
            100,
            3_600_000,
            " ms (one hour)",
        )
    }

    /// Hides a password in the url (for `websocket:check`).
    pub(super) fn mask(&mut self) {
        self.redis_url = mask_password(&self.redis_url);
    }
}

#[cfg(test)]
mod tests {
    use super::super::Config;

    #[test]
    fn defaults_and_errors_name_the_key() {
        let c = Config::from_str("").unwrap();
        assert!(!c.cluster.enabled());
        assert_eq!(c.cluster.namespace, "rakit");
        assert_eq!(c.cluster.node_timeout_ms, 3000);
        assert!(!c.cluster.reuse_port);
        let ok = Config::from_str(
            "[cluster]\nredis_url = \"unix:/tmp/r.sock\"\nnamespace = \"app1\"\nnode_timeout_ms = 1000\nreuse_port = true\n",
        )
        .unwrap();
        assert!(ok.cluster.enabled() && ok.cluster.reuse_port);
        for (text, key) in [
            ("[cluster]\nredis_url = \"http://x\"", "cluster.redis_url"),
            ("[cluster]\nnamespace = \"\"", "cluster.namespace"),
            ("[cluster]\nnamespace = \"a b\"", "cluster.namespace"),
            ("[cluster]\nnode_timeout_ms = 5", "cluster.node_timeout_ms"),
            (
                "[cluster]\nnode_timeout_ms = 99999999999",
                "cluster.node_timeout_ms",
            ),
            ("[cluster]\nredis = \"x\"", "cluster.redis"),
        ] {
            let e = Config::from_str(text)
                .and_then(|c| c.validate())
                .unwrap_err()
                .to_string();
            assert!(e.contains(key), "{text}: {e}");
        }
    }

    #[test]
    fn check_hides_the_password() {
        let c = Config::from_str("[cluster]\nredis_url = \"redis://:hunter2@h:1/0\"").unwrap();
        let shown = c.describe();
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("[cluster]"), "{shown}");
    }
}
