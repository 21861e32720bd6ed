//! The router's part of the configuration (SPEC section 2) and its defaults.

use std::rc::Rc;
use std::time::Duration;

use super::{CommandPolicy, Namespaces, RouterLimits, TokenKey};

/// The router's part of the configuration (SPEC section 2).
#[derive(Debug, Clone)]
pub struct RouterConfig {
    /// Subscribing beyond this many channels gets `too_many_channels`.
    pub max_channels_per_client: usize,
    /// Whether presence messages are sent at all.
    pub presence: bool,
    /// Presence changes within this window share one message.
    pub presence_interval: Duration,
    /// Above this many connections presence carries the count only.
    pub presence_max_users: usize,
    /// Who may send commands.
    pub command_policy: CommandPolicy,
    /// SPEC section 17: the message and broadcast buckets, and who may broadcast.
    pub limits: RouterLimits,
    /// The channels' rules (SPEC section 15), shared and immutable: new rules replace them
    /// whole ([`Router::set_namespaces`]).
    pub namespaces: Rc<Namespaces>,
    /// What channel tokens are signed with (`[session] secret`).
    pub token_key: TokenKey,
    /// The longest channel token read, in bytes (`max_handshake_size`).
    pub max_token_size: usize,
    /// Unix seconds now, for the expiry of channel tokens.
    pub unix_clock: fn() -> u64,
    /// `[history] max_memory`: what one node's channel history may hold (SPEC section 16).
    pub history_max_memory: usize,
    /// `max_send_buffer`: a replay or a `history` answer larger than it is refused.
    pub max_send_buffer: usize,
}

impl Default for RouterConfig {
    /// The defaults of SPEC section 2.
    fn default() -> RouterConfig {
        RouterConfig {
            max_channels_per_client: 100,
            presence: true,
            presence_interval: Duration::from_millis(200),
            presence_max_users: 100,
            command_policy: CommandPolicy::Admin,
            limits: RouterLimits::default(),
            namespaces: Rc::default(),
            token_key: TokenKey::default(),
            max_token_size: 8192,
            unix_clock: crate::session::now_unix,
            history_max_memory: 64 << 20,
            max_send_buffer: 1 << 20,
        }
    }
}
