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

/// [`Limits`] as a connection keeps them: 12 bytes where `Limits` takes 24, in every
/// connection a daemon holds. A bound above `u32::MAX` counts as `u32::MAX` (4 GiB; a daemon
/// caps its own far lower).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Packed {
    handshake: u32,
    headers: u32,
    message: u32,
}

impl Packed {
    pub(crate) fn new(limits: Limits) -> Packed {
        let narrow = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
        Packed {
            handshake: narrow(limits.max_handshake_size),
            headers: narrow(limits.max_headers),
            message: narrow(limits.max_message_size),
        }
    }

    pub(crate) fn get(self) -> Limits {
        Limits {
            max_handshake_size: self.handshake as usize,
            max_headers: self.headers as usize,
            max_message_size: self.message as usize,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packed_limits_round_trip_and_saturate() {
        let limits = Limits {
            max_handshake_size: 1 << 20,
            max_headers: 100,
            max_message_size: 1 << 30,
        };
        assert_eq!(Packed::new(limits).get(), limits);
        let huge = Limits {
            max_message_size: usize::MAX,
            ..limits
        };
        assert_eq!(Packed::new(huge).get().max_message_size, u32::MAX as usize);
        assert_eq!(std::mem::size_of::<Packed>(), 12);
    }
}
