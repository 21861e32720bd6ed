//! The `[history]` table (SPEC section 16): what one daemon may hold of channel history.

use serde::{Deserialize, Serialize};

use super::{within, ConfigError};

/// `[history]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HistoryConfig {
    /// Bytes of stored publications (their frames, plus what each publication and each channel's
    /// offset and epoch cost: `src/history/store.rs`) one daemon holds at most; beyond it the
    /// channels published to least recently lose their history first. In a cluster history
    /// lives in Redis, whose own `maxmemory` applies instead.
    pub max_memory: u64,
}

/// The default `max_memory`: 64 MiB.
pub const DEFAULT_MAX_MEMORY: u64 = 64 << 20;
/// The least `max_memory`: one publication of a default `max_buffer_size` must fit.
pub const MIN_MAX_MEMORY: u64 = 64 << 10;
/// The most `max_memory`: 1 TiB.
pub const MAX_MAX_MEMORY: u64 = 1 << 40;

impl Default for HistoryConfig {
    fn default() -> HistoryConfig {
        HistoryConfig {
            max_memory: DEFAULT_MAX_MEMORY,
        }
    }
}

impl HistoryConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        within(
            "history.max_memory",
            self.max_memory,
            MIN_MAX_MEMORY,
            MAX_MAX_MEMORY,
            " bytes (1 TiB)",
        )
    }

    /// `max_memory` for this machine's `usize`.
    pub fn max_memory_bytes(&self) -> usize {
        usize::try_from(self.max_memory).unwrap_or(usize::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::super::Config;

    #[test]
    fn default_bounds_and_errors() {
        let c = Config::default();
        assert_eq!(c.history.max_memory, 64 * 1024 * 1024);
        let c = Config::from_str("[history]\nmax_memory = 1048576\n").unwrap();
        c.validate().unwrap();
        assert_eq!(c.history.max_memory_bytes(), 1 << 20);
        for bad in ["max_memory = 1000", "max_memory = 1099511627777"] {
            let c = Config::from_str(&format!("[history]\n{bad}\n")).unwrap();
            let e = c.validate().unwrap_err().to_string();
            assert!(e.starts_with("history.max_memory: "), "{e}");
        }
        for bad in ["max_memory = -1", "max_memory = \"1\"", "max_size = 5"] {
            let e = Config::from_str(&format!("[history]\n{bad}\n")).unwrap_err();
            assert!(e.to_string().contains("history."), "{e}");
        }
        assert!(c.describe().contains("[history]\nmax_memory = "));
    }
}
