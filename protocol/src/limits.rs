//! Size limits, set by the daemon from its configuration.

/// Every bound the protocol enforces on input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest HTTP upgrade request, headers included (HTTP 431 above it).
    pub max_handshake_size: usize,
    /// Most header lines in the upgrade request (HTTP 431 above it).
    pub max_headers: usize,
    /// Largest message after reassembling fragments (close 1009 above it).
    pub max_message_size: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_handshake_size: 8192,
            max_headers: 64,
            max_message_size: 65536,
        }
    }
}
