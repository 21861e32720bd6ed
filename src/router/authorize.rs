//! Who may subscribe to and publish on a channel (SPEC section 15), by its namespace's rules
//! (`namespaces.rs`).
//!
//! - `subscribe`: `public` anyone; `authenticated` a session user; `user` the user whose id is
//!   the rest of the name after the prefix (never a guest, never an empty rest); `token` a
//!   subscribe carrying `"token":T`, a channel token (`src/channel_token.rs`) for this channel
//!   and this user or connection, signed with `[session] secret`, at most `max_handshake_size`
//!   bytes (longer ones are refused unread).
//! - `publish` (a client's `{"event":"message",...}`): `any`; `subscribers` of the channel;
//!   `authenticated`; `backend`: no client.
//!
//! A refusal is `forbidden` naming the channel, and changes nothing. Commands and the HTTP API
//! are not subject to these rules (they do not come here). An admin is a client like any other
//! here: it publishes with commands. A subscribe's budget is spent before the token is
//! verified (`mod.rs`), so a storm of bad tokens costs what a storm of subscribes costs.

use std::fmt;
use std::rc::Rc;

use serde_json::value::RawValue;

use super::namespaces::{PublishPolicy, SubscribePolicy};
use super::wire::{self, ErrorCode, Reject};
use super::{ConnId, Router};
use crate::channel_token::{self, Presenter};

/// The key channel tokens are signed with (`[session] secret`); empty: no token is valid.
#[derive(Clone, Default)]
pub struct TokenKey(Rc<[u8]>);

impl TokenKey {
    pub fn new(secret: &[u8]) -> TokenKey {
        TokenKey(secret.into())
    }
}

/// Never shows the secret.
impl fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_empty() {
            "TokenKey(none)"
        } else {
            "TokenKey(<set>)"
        })
    }
}

impl Router {
    /// Whether anyone may subscribe to `channel` (its namespace's rule is `public`): the only
    /// channels another dialect's clients may read outside their own authorization.
    pub fn is_public(&self, channel: &str) -> bool {
        self.namespace_of(channel).subscribe == SubscribePolicy::Public
    }

    /// Whether `conn` may subscribe to `channel` by its namespace's rule, presenting `token`.
    pub(super) fn authorize_subscribe(
        &self,
        conn: ConnId,
        channel: &str,
        token: Option<&RawValue>,
    ) -> Result<(), Reject> {
        let client = self.clients.get(&conn);
        let user = client.and_then(|c| c.user.as_deref());
        let namespace = self.namespace_of(channel);
        match namespace.subscribe {
            SubscribePolicy::Public => Ok(()),
            SubscribePolicy::Authenticated if user.is_some() => Ok(()),
            SubscribePolicy::Authenticated => Err(forbidden(
                channel,
                "this channel is for signed-in users only",
            )),
            SubscribePolicy::User => {
                let owner = channel.get(namespace.prefix.len()..).unwrap_or_default();
                if !owner.is_empty() && user.is_some_and(|u| u.id == owner) {
                    Ok(())
                } else {
                    Err(forbidden(channel, "this channel is for its own user only"))
                }
            }
            SubscribePolicy::Token => {
                let Some(token) = token else {
                    return Err(forbidden(channel, "this channel needs a `token`"));
                };
                let Some(token) = wire::as_str(token) else {
                    return Err(forbidden(channel, "the `token` must be a string"));
                };
                if token.len() > self.config.max_token_size {
                    return Err(forbidden(channel, "the `token` is too long"));
                }
                let presenter = Presenter {
                    user: user.map(|u| u.id.as_str()),
                    client: client.map(|c| c.id.as_str()).unwrap_or_default(),
                };
                let now = (self.config.unix_clock)();
                channel_token::verify(&token, &self.config.token_key.0, now, channel, presenter)
                    .map_err(|e| forbidden(channel, format!("channel token {}", e.reason())))
            }
        }
    }

    /// Whether `conn` may publish to `channel` by its namespace's rule: for the other dialect's
    /// own publishes (a Pusher client event), which are a client's publish as much as a
    /// `{"event":"message",...}` is.
    pub fn may_publish(&self, conn: ConnId, channel: &str) -> bool {
        self.authorize_publish(conn, channel).is_ok()
    }

    /// Whether `conn` may publish to `channel` by its namespace's rule.
    pub(super) fn authorize_publish(&self, conn: ConnId, channel: &str) -> Result<(), Reject> {
        if !self.config.namespaces.restricts_publish() {
            return Ok(()); // section 5: anyone publishes (no lookup on the message path)
        }
        let user = self.clients.get(&conn).and_then(|c| c.user.as_deref());
        match self.namespace_of(channel).publish {
            PublishPolicy::Any => Ok(()),
            PublishPolicy::Subscribers if self.channels.is_member(conn, channel) => Ok(()),
            PublishPolicy::Subscribers => Err(forbidden(
                channel,
                "only subscribers of this channel may publish to it",
            )),
            PublishPolicy::Authenticated if user.is_some() => Ok(()),
            PublishPolicy::Authenticated => Err(forbidden(
                channel,
                "only signed-in users may publish to this channel",
            )),
            PublishPolicy::Backend => Err(forbidden(
                channel,
                "only the backend may publish to this channel",
            )),
        }
    }
}

/// A refusal by a channel's rules: `forbidden`, naming the channel.
pub(super) fn forbidden(channel: &str, text: impl Into<std::borrow::Cow<'static, str>>) -> Reject {
    Reject::new(ErrorCode::Forbidden, text).on(channel)
}
