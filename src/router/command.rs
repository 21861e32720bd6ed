//! Commands (SPEC section 5): `{"command":NAME,...}` messages that act for
//! the server: `broadcast`, `broadcast_to_channel`, `private_message`,
//! `disconnect` and `presence`.
//!
//! Order of checks: the policy first, so a connection that may not send
//! commands learns nothing else (every command is `forbidden`, whatever its
//! name or fields); then the name (`bad_request` if it is not a string,
//! `unknown_command` if it is not one of the five); then the fields. Only a
//! command that was carried out is acknowledged, after its effects are queued.

use std::borrow::Cow;
use std::fmt;
use std::time::Instant;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::wire::{self, ErrorCode, Incoming, Out, Reject};
use super::{valid_channel, ChannelEvent, ClusterOut, ConnId, Outbox, Router, Sent, Target};

use crate::session::User;

/// Who may send commands (`command_policy`, SPEC section 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CommandPolicy {
    /// Every connection, guests included.
    Any,
    /// Connections with a valid session token.
    Authenticated,
    /// Users whose token has `"admin": true` (the default: commands act on
    /// other people's connections).
    #[default]
    Admin,
    /// Nobody.
    Off,
}

impl CommandPolicy {
    /// Whether a connection with `user` (`None` for a guest) may send commands.
    pub fn allows(self, user: Option<&User>) -> bool {
        match self {
            CommandPolicy::Any => true,
            CommandPolicy::Authenticated => user.is_some(),
            CommandPolicy::Admin => user.is_some_and(|u| u.admin),
            CommandPolicy::Off => false,
        }
    }

    /// The configuration spelling: `any`, `authenticated`, `admin`, `off`.
    pub fn as_str(self) -> &'static str {
        match self {
            CommandPolicy::Any => "any",
            CommandPolicy::Authenticated => "authenticated",
            CommandPolicy::Admin => "admin",
            CommandPolicy::Off => "off",
        }
    }
}

impl fmt::Display for CommandPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A command with its fields checked for presence and type.
enum Command<'a> {
    Broadcast {
        message: &'a RawValue,
    },
    BroadcastToChannel {
        channel: Cow<'a, str>,
        message: &'a RawValue,
    },
    PrivateMessage {
        to: Cow<'a, str>,
        message: &'a RawValue,
    },
    Disconnect {
        client_id: Cow<'a, str>,
    },
    Presence,
}

impl<'a> Command<'a> {
    fn parse(name: &str, msg: &Incoming<'a>) -> Result<Command<'a>, Reject> {
        Ok(match name {
            "broadcast" => Command::Broadcast {
                message: wire::required(msg.message, "message")?,
            },
            "broadcast_to_channel" => {
                // Field presence and types (bad_request) before the name
                // rules (invalid_channel).
                let channel = wire::required_str(msg.channel, "channel")?;
                let message = wire::required(msg.message, "message")?;
                let channel = valid_channel(channel)?;
                Command::BroadcastToChannel { channel, message }
            }
            "private_message" => Command::PrivateMessage {
                to: wire::required_str(msg.to, "to")?,
                message: wire::required(msg.message, "message")?,
            },
            "disconnect" => Command::Disconnect {
                client_id: wire::required_str(msg.client_id, "client_id")?,
            },
            "presence" => Command::Presence,
            _ => {
                return Err(Reject::new(
                    ErrorCode::UnknownCommand,
                    "unknown command: expected broadcast, broadcast_to_channel, \
                     private_message, disconnect or presence",
                ))
            }
        })
    }

    fn name(&self) -> &'static str {
        match self {
            Command::Broadcast { .. } => "broadcast",
            Command::BroadcastToChannel { .. } => "broadcast_to_channel",
            Command::PrivateMessage { .. } => "private_message",
            Command::Disconnect { .. } => "disconnect",
            Command::Presence => "presence",
        }
    }
}

impl Router {
    /// Checks and carries out a command from `conn`, then acknowledges it.
    /// Messages a command causes carry no `client_id`.
    pub(super) fn command(
        &mut self,
        conn: ConnId,
        name: &RawValue,
        msg: &Incoming<'_>,
        now: Instant,
        out: &mut impl Outbox,
    ) -> Result<(), Reject> {
        let user = self.clients.get(&conn).and_then(|c| c.user.as_deref());
        if !self.config.command_policy.allows(user) {
            return Err(Reject::new(
                ErrorCode::Forbidden,
                "this connection may not send commands",
            ));
        }
        let (done, sent) = self.carry_out(name, msg, Some(conn), now, out)?;
        // The issuer may have disconnected itself: then there is nobody to
        // ack. A command carried out on another node is acknowledged when
        // that node answers.
        if sent == Sent::Done && self.clients.contains_key(&conn) {
            self.send_to(conn, &Out::Ack { command: done }, out);
        }
        Ok(())
    }

    /// Parses and carries out a command, whoever sent it: the one path that
    /// WebSocket commands and the backend API share, so both give clients
    /// the same frames. Returns the command's name (for the ack), and
    /// whether it is done or awaits another node's answer, which goes to
    /// `issuer` (`None`: the API, which asks for no answer). A client issuer
    /// that is no admin may not `broadcast_to_channel` to a protected channel.
    pub(super) fn carry_out(
        &mut self,
        name: &RawValue,
        msg: &Incoming<'_>,
        issuer: Option<ConnId>,
        now: Instant,
        out: &mut impl Outbox,
    ) -> Result<(&'static str, Sent), Reject> {
        let name = wire::as_str(name)
            .ok_or_else(|| Reject::bad_request("field `command` must be a string"))?;
        let command = Command::parse(&name, msg)?;
        let done = command.name();
        let mut sent = Sent::Done;
        match command {
            Command::Broadcast { message } => {
                let msg = Out::Message {
                    client_id: None,
                    message,
                };
                self.send_to_all(&msg, out);
            }
            Command::BroadcastToChannel { channel, message } => {
                // Only the backend and admins speak for the server on channels that need the
                // other dialect's authorization: `command_policy = "any"` must not let a guest
                // write into private and presence channels.
                let admin = |conn| {
                    self.clients
                        .get(&conn)
                        .and_then(|c| c.user.as_deref())
                        .is_some_and(|u| u.admin)
                };
                if issuer.is_some_and(|conn| !admin(conn)) && self.protected(&channel) {
                    return Err(super::protected_publish());
                }
                let event = ChannelEvent {
                    channel: &channel,
                    event: None,
                    data: message,
                    client_id: None,
                    user_id: None,
                };
                self.fan_out(&event, None, out);
            }
            Command::PrivateMessage { to, message } => {
                let msg = Out::Private {
                    client_id: None,
                    message,
                };
                sent = self.send_private(&to, &msg, issuer, Some(done), out)?;
            }
            Command::Disconnect { client_id } => match self.locate(&client_id)? {
                Target::Local(target) => self.kick(target, now, out),
                Target::Remote(node) => {
                    let req = self.request(issuer, Some(done));
                    self.publish(|| ClusterOut::Disconnect {
                        node,
                        id: client_id.into_owned(),
                        req,
                    });
                    if req != 0 {
                        sent = Sent::Awaiting;
                    }
                }
            },
            // With presence disabled this sends nothing (presence = false
            // means no presence messages at all) but is still acknowledged.
            Command::Presence => {
                self.send_presence(now, out);
                self.publish(|| ClusterOut::Presence);
            }
        }
        Ok((done, sent))
    }

    /// The `disconnect` command: forgets `target` exactly as a disconnect
    /// would, then asks the loop to close it with 4000.
    pub(super) fn kick(&mut self, target: ConnId, now: Instant, out: &mut impl Outbox) {
        self.close_client(target, super::Dialect::kick, now, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(admin: bool) -> User {
        User {
            id: "u1".into(),
            name: "Ann".into(),
            email: None,
            admin,
        }
    }

    #[test]
    fn policy_table() {
        let admin = user(true);
        let plain = user(false);
        let cases = [
            (CommandPolicy::Any, [true, true, true]),
            (CommandPolicy::Authenticated, [false, true, true]),
            (CommandPolicy::Admin, [false, false, true]),
            (CommandPolicy::Off, [false, false, false]),
        ];
        for (policy, [guest_ok, user_ok, admin_ok]) in cases {
            assert_eq!(policy.allows(None), guest_ok, "{policy} guest");
            assert_eq!(policy.allows(Some(&plain)), user_ok, "{policy} user");
            assert_eq!(policy.allows(Some(&admin)), admin_ok, "{policy} admin");
        }
    }

    #[test]
    fn policy_spelling_round_trips() {
        for policy in [
            CommandPolicy::Any,
            CommandPolicy::Authenticated,
            CommandPolicy::Admin,
            CommandPolicy::Off,
        ] {
            let json = serde_json::to_string(&policy).unwrap();
            assert_eq!(json, format!("\"{}\"", policy.as_str()));
            assert_eq!(
                serde_json::from_str::<CommandPolicy>(&json).unwrap(),
                policy
            );
        }
        assert_eq!(CommandPolicy::default(), CommandPolicy::Admin);
        assert!(serde_json::from_str::<CommandPolicy>("\"Admin\"").is_err());
    }
}
