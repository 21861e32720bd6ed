//! The router's side of the backend HTTP API (SPEC section 8): commands from the backend, and
//! read-only queries of channels and presence.
//!
//! A command from the API runs through exactly the code a WebSocket command runs
//! ([`Router::carry_out`]), so clients receive byte-identical frames whichever way it came. What
//! differs: no `command_policy` (the API caller is the backend, authenticated by its key), no
//! `ack` (the HTTP response is the acknowledgement), no `Handler::receive` (no client sent it),
//! and the body must be a command object: a `{"message":M}` without `command` is `bad_request`,
//! not a broadcast from nobody.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::time::Instant;

use serde::ser::{Serialize, SerializeStruct, Serializer};
use serde_json::value::RawValue;

use super::presence::PresenceUsers;
use super::wire::{self, ErrorCode, Reject};
use super::{channels, Outbox, Router};

/// Why an API command was not carried out: the body of `{"ok":false,"code","message"}` and the
/// HTTP status it is answered with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// One of the codes of SPEC section 5 (`invalid_json`, `bad_request`, `invalid_channel`,
    /// `unknown_command`, `unknown_client`).
    pub code: &'static str,
    /// A short sentence for humans.
    pub message: Cow<'static, str>,
    /// 404 for `unknown_client`, else 400 (SPEC section 8).
    pub status: u16,
}

impl ApiError {
    /// A 400 `bad_request`.
    pub fn bad_request(message: impl Into<Cow<'static, str>>) -> ApiError {
        ApiError {
            code: ErrorCode::BadRequest.as_str(),
            message: message.into(),
            status: 400,
        }
    }

    /// A 400 `invalid_json`.
    pub fn invalid_json(message: impl Into<Cow<'static, str>>) -> ApiError {
        ApiError {
            code: ErrorCode::InvalidJson.as_str(),
            message: message.into(),
            status: 400,
        }
    }

    /// A 400 `invalid_channel`.
    pub fn invalid_channel() -> ApiError {
        ApiError {
            code: ErrorCode::InvalidChannel.as_str(),
            message: Cow::Borrowed("channel names are 1 to 128 bytes without control characters"),
            status: 400,
        }
    }
}

impl From<Reject> for ApiError {
    fn from(reject: Reject) -> ApiError {
        let status = match reject.code {
            ErrorCode::UnknownClient => 404,
            ErrorCode::Unavailable => 503,
            _ => 400,
        };
        ApiError {
            code: reject.code.as_str(),
            message: reject.text,
            status,
        }
    }
}

/// One channel of [`Router::channel_list`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelInfo<'a> {
    pub name: &'a str,
    pub subscribers: usize,
}

impl Router {
    /// Carries out one command object from the backend API (`{"command":NAME,...}` as in SPEC
    /// section 5), exactly as an admin's WebSocket command minus the `ack`. `cmd` is one JSON
    /// value: an object, else `bad_request`.
    pub fn api_command(
        &mut self,
        cmd: &RawValue,
        now: Instant,
        out: &mut impl Outbox,
    ) -> Result<(), ApiError> {
        let msg = wire::parse(cmd.get())?;
        let name = msg
            .command
            .ok_or_else(|| Reject::bad_request("missing field `command`"))?;
        // No issuer: a command for a client on another node is answered
        // from the directory, without waiting for that node (see docs/ARCHITECTURE.md).
        self.carry_out(name, &msg, None, now, out)?;
        Ok(())
    }

    /// The number of channels with at least one subscriber.
    pub fn channel_count(&self) -> usize {
        self.channels.channel_count()
    }

    /// Every channel with subscribers in the cluster and how many, sorted by name (a stable
    /// order for callers; the indexes themselves are hash maps).
    pub fn channel_list(&self) -> Vec<ChannelInfo<'_>> {
        let mut counts: BTreeMap<&str, usize> = self.channels.iter().collect();
        if let Some(remote) = self.remote.as_deref() {
            for (name, n) in remote.replica.channels() {
                *counts.entry(name).or_default() += n;
            }
        }
        counts
            .into_iter()
            .map(|(name, subscribers)| ChannelInfo { name, subscribers })
            .collect()
    }

    /// The client ids subscribed to `channel` in the cluster: this node's in subscription
    /// order, then other nodes' by id (empty for a channel nobody is in). `Err` for a name
    /// that no channel can have.
    pub fn channel_clients(&self, channel: &str) -> Result<Vec<&str>, ApiError> {
        if !channels::is_valid_name(channel) {
            return Err(ApiError::invalid_channel());
        }
        let local = self
            .channels
            .members(channel)
            .filter_map(|conn| self.client_id(conn));
        let remote = self
            .remote
            .as_deref()
            .into_iter()
            .flat_map(|r| r.replica.subscribers(channel));
        Ok(local.chain(remote).collect())
    }

    /// `{"count":N,"users":[...]}`: the presence list of SPEC section 5 (same entries, same
    /// connection order), never truncated, whatever `presence_max_users` and `presence` say.
    pub fn presence_json(&self) -> String {
        struct Snapshot<'a>(&'a Router);
        impl Serialize for Snapshot<'_> {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                let router = self.0;
                let mut s = serializer.serialize_struct("Presence", 2)?;
                s.serialize_field("count", &router.cluster_len())?;
                s.serialize_field(
                    "users",
                    &PresenceUsers::new(&router.clients, router.cluster(), false),
                )?;
                s.end()
            }
        }
        serde_json::to_string(&Snapshot(self))
            .unwrap_or_else(|_| r#"{"count":0,"users":[]}"#.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_map_to_statuses() {
        let e = ApiError::from(Reject::new(ErrorCode::UnknownClient, "gone"));
        assert_eq!((e.code, e.status), ("unknown_client", 404));
        for code in [
            ErrorCode::InvalidJson,
            ErrorCode::BadRequest,
            ErrorCode::InvalidChannel,
            ErrorCode::UnknownCommand,
        ] {
            let e = ApiError::from(Reject::new(code, "x"));
            assert_eq!((e.code, e.status), (code.as_str(), 400));
        }
        assert_eq!(ApiError::invalid_json("x").code, "invalid_json");
        assert_eq!(ApiError::invalid_channel().code, "invalid_channel");
    }
}
