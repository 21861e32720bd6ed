//! The message router (SPEC section 5): client ids, broadcast, private
//! messages, channels, presence and commands.
//!
//! The router is synchronous and does no IO. The event loop feeds it
//! connections and complete text messages (`connect`, `handle_text`, ...),
//! and it answers through an [`Outbox`]: "queue this frame for that
//! connection", "close that connection". Time is passed in, so the presence
//! throttle runs on the loop's timer ([`Router::poll_timeout`] /
//! [`Router::handle_timeout`]) and tests need no clock.
//!
//! Fan-out is cheap by construction: every outgoing message is serialised
//! and framed once into a [`Frame`], and each recipient gets a clone of the
//! same `Rc`, so a broadcast to n clients costs one encoding and n pointer
//! copies.

mod aliases;
mod api;
mod authorize;
mod cache;
mod channel_presence;
mod channels;
mod clients;
mod command;
mod config;
mod dialect;
mod entry;
mod fanout;
mod flood;
mod history;
mod history_cluster;
mod history_state;
mod history_wire;
mod ids;
mod members;
mod namespaces;
mod presence;
mod remote;
mod replica;
mod reporter;
mod wire;

#[cfg(test)]
mod tests;

use std::borrow::Cow;
use std::fmt;
use std::rc::Rc;
use std::time::Instant;

use serde_json::value::RawValue;

pub use self::api::{ApiError, ChannelInfo};
pub use self::authorize::TokenKey;
pub use self::command::CommandPolicy;
pub use self::config::RouterConfig;
pub use self::dialect::{
    CacheChannels, ChannelEvent, Dialect, Encoder, Foreign, MemberEncoder, MemberNotice,
};
pub use self::entry::{
    is_plausible_channel, ChannelMember, Member, Subscription, MAX_CHANNEL_LEN, MAX_INFO_LEN,
    MAX_USER_LEN,
};
pub use self::flood::RouterLimits;
pub use self::history_wire::{parse_api_query, ApiHistory};
pub use self::namespaces::{
    Namespace, NamespaceId, Namespaces, PublishPolicy, SubscribePolicy, MAX_NAMESPACES,
};
pub use self::remote::{ChannelExtras, ClusterOut, HistoryPublication};
pub use self::replica::NodeId;

use self::aliases::Aliases;
use self::channels::Channels;
use self::clients::Clients;
use self::ids::{ClientId, IdGenerator};
use self::members::Members;
use self::presence::{PresenceUsers, Throttle};
use self::remote::Remote;
use self::wire::{ErrorCode, Out, Outgoing, Reject};
use crate::budget::Budget;
use crate::events::{ChannelActivity, Handler};
use crate::limits::Offenders;
use crate::session::User;

/// A connection, as the event loop knows it (its slab key).
pub type ConnId = usize;

/// One complete encoded WebSocket frame, shared by all of its recipients.
pub type Frame = Rc<[u8]>;

/// The router's way out, implemented by the event loop.
pub trait Outbox {
    /// Queues `frame` for `conn`.
    fn send(&mut self, conn: ConnId, frame: &Frame);
    /// Closes `conn` with a close frame (`code`, `reason`). The router has
    /// already forgotten the client, so a later `Router::disconnect` for it
    /// is a no-op.
    fn close(&mut self, conn: ConnId, code: u16, reason: &str);
}

/// Lets a `&mut dyn Outbox` (or any borrowed outbox) go where an
/// `impl Outbox` is expected, e.g. from the HTTP side's context.
impl<O: Outbox + ?Sized> Outbox for &mut O {
    fn send(&mut self, conn: ConnId, frame: &Frame) {
        (**self).send(conn, frame);
    }
    fn close(&mut self, conn: ConnId, code: u16, reason: &str) {
        (**self).close(conn, code, reason);
    }
}

/// The smallest burst of Rakit subscribes a connection gets, whatever
/// `max_channels_per_client` (docs/limits.md).
pub const MIN_SUBSCRIBE_BURST: u64 = 32;

/// The close code of the `disconnect` command (SPEC section 6).
pub const DISCONNECT_CODE: u16 = 4000;
/// The close reason of the `disconnect` command.
pub const DISCONNECT_REASON: &str = "disconnected by server";

/// One live client.
#[derive(Debug)]
pub(crate) struct Client {
    id: ClientId,
    /// Boxed: most clients of a big server are guests, and an inline
    /// `User` would cost every idle client its 80 bytes.
    user: Option<Box<User>>,
    /// Unix seconds, for presence (32 bits last until 2106; a client record is kept small,
    /// see `clients.rs`).
    connected_at: u32,
    /// Its key in `Router::order`.
    seq: u64,
    /// What it speaks; only Rakit clients get section 5's own messages.
    dialect: Dialect,
    /// What it may still send of Rakit `subscribe`s (`src/budget.rs`, docs/limits.md).
    budget: Budget,
    /// Its messages and its broadcasts (SPEC section 17, `flood.rs`).
    messages: Budget,
    broadcasts: Budget,
}

/// Routes client messages (see the module docs).
pub struct Router {
    config: RouterConfig,
    handler: Box<dyn Handler>,
    ids: IdGenerator,
    /// Live clients by connection.
    clients: Clients,
    /// Their dialect's names for them (`aliases.rs`).
    aliases: Aliases,
    /// The next client's sequence number (its connection order, for presence).
    next_seq: u64,
    channels: Channels,
    /// Presence channel members, cluster-wide (`members.rs`).
    members: Members,
    presence: Throttle,
    /// Other nodes' clients and what they must be told; `None` outside a
    /// cluster (see `remote.rs`).
    remote: Option<Box<Remote>>,
    /// Encodes for clients of the other dialect, and keeps its channels.
    foreign: Option<Foreign>,
    /// The connections refused lately for flooding (`flood.rs`).
    offenders: Offenders,
    /// Refusals so far, for `rakit_rate_limited_total`.
    rate_limited: crate::limits::Counts,
    /// The `rate_limited` error, encoded once: a refusal allocates nothing.
    rate_limited_error: Option<Outgoing>,
    /// Channel history and recovery (SPEC section 16, `history.rs`).
    history: history_state::History,
}

impl fmt::Debug for Router {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Router")
            .field("config", &self.config)
            .field("clients", &self.clients.len())
            .field("presence", &self.presence)
            .finish_non_exhaustive()
    }
}

impl Router {
    /// A router with no clients. `seed` seeds the client-id generator; give
    /// it something that differs between runs (time, pid).
    pub fn new(config: RouterConfig, handler: Box<dyn Handler>, seed: u64) -> Router {
        let history = history_state::History::new(
            config.history_max_memory,
            config.max_send_buffer,
            // The process's epoch: another value than the client ids' seed.
            seed.rotate_left(29) ^ 0x5851_f42d_4c95_7f2d,
            &config.namespaces,
        );
        Router {
            history,
            presence: Throttle::new(config.presence_interval),
            config,
            handler,
            ids: IdGenerator::new(seed),
            clients: Clients::default(),
            aliases: Aliases::default(),
            next_seq: 0,
            channels: Channels::default(),
            members: Members::default(),
            remote: None,
            foreign: None,
            offenders: Offenders::default(),
            rate_limited: crate::limits::Counts::default(),
            rate_limited_error: flood::error_frame(),
        }
    }

    /// A connection finished its handshake: gives it a fresh client id,
    /// fires `Handler::connect`, sends it the welcome (its first message)
    /// and schedules a presence update. Returns the client id.
    ///
    /// `connected_at_unix` is reported in presence. Connecting a `conn` that
    /// is already connected first disconnects the old client, so the tables
    /// never hold a stale entry.
    pub fn connect(
        &mut self,
        conn: ConnId,
        user: Option<User>,
        connected_at_unix: u64,
        now: Instant,
        out: &mut impl Outbox,
    ) -> &str {
        self.connect_as(conn, user, Dialect::Rakit, connected_at_unix, now, out)
    }

    /// [`Router::connect`] for a client of any dialect; only a Rakit client gets the welcome
    /// (the other dialect greets its clients itself).
    pub fn connect_as(
        &mut self,
        conn: ConnId,
        user: Option<User>,
        dialect: Dialect,
        connected_at_unix: u64,
        now: Instant,
        out: &mut impl Outbox,
    ) -> &str {
        if self.clients.contains_key(&conn) {
            self.disconnect(conn, now, out);
        }
        let (clients, remote) = (&self.clients, self.remote.as_deref());
        // Unique across the cluster, as far as the directory knows.
        let id = self.ids.generate(|id| {
            clients.find(id).is_some() || remote.is_some_and(|r| r.replica.contains(id))
        });
        let seq = self.next_seq;
        self.next_seq += 1;
        // Fully registered before any handler code runs, so a panicking
        // handler cannot leave a half-known client behind.
        self.clients.insert(
            conn,
            Client {
                id,
                user: user.map(Box::new),
                connected_at: u32::try_from(connected_at_unix).unwrap_or(u32::MAX),
                seq,
                dialect,
                budget: Budget::full(now),
                messages: Budget::default(),
                broadcasts: Budget::default(),
            },
        );
        if let Some(client) = self.clients.get(&conn) {
            if let Some(remote) = self.remote.as_mut() {
                remote.push(ClusterOut::Joined(entry::member(client)));
            }
            self.handler.connect(id.as_str(), client.user.as_deref());
            let welcome = Outgoing::encode(&Out::Welcome {
                client_id: id.as_str(),
                user: client.user.as_deref().map(wire::PublicUser::from),
            });
            if let Some(welcome) = welcome {
                deliver(&self.clients, &mut *self.handler, &welcome, [conn], out);
            }
        }
        self.presence_changed(now);
        self.client_id(conn).unwrap_or_default()
    }

    /// The connection left. Removes it from every channel, fires
    /// `Handler::disconnect` and schedules a presence update. Unknown
    /// connections are ignored, so calling this twice is harmless.
    pub fn disconnect(&mut self, conn: ConnId, now: Instant, out: &mut impl Outbox) {
        if let Some(client) = self.forget(conn, out) {
            self.handler
                .disconnect(client.id.as_str(), client.user.as_deref());
            self.presence_changed(now);
        }
    }

    /// Forgets `conn` exactly as a disconnect would, then asks the loop to close it with the
    /// code and reason `why` gives its dialect (a kick, a flooder).
    fn close_client(
        &mut self,
        conn: ConnId,
        why: fn(Dialect) -> (u16, &'static str),
        now: Instant,
        out: &mut impl Outbox,
    ) {
        if let Some(client) = self.forget(conn, out) {
            let (code, reason) = why(client.dialect);
            out.close(conn, code, reason);
            self.handler
                .disconnect(client.id.as_str(), client.user.as_deref());
            self.presence_changed(now);
        }
    }

    /// Removes every trace of `conn` and returns its client. Presence
    /// channel members it was the last connection of leave (`member_removed`).
    fn forget(&mut self, conn: ConnId, out: &mut impl Outbox) -> Option<Client> {
        let client = self.clients.remove(&conn)?;
        self.offenders.forget(conn);
        self.aliases.remove_conn(conn);
        let channels = self.channels.remove_conn(conn);
        self.history_forget(conn, None);
        let changes = self.members.unbind_all(conn);
        self.notify_members(&changes, None, out);
        self.report_members(&changes);
        for channel in &channels {
            if !self.occupied(channel) {
                self.report(&ChannelActivity::Vacated { channel });
            }
        }
        self.publish(|| ClusterOut::Left {
            id: client.id.as_str().to_owned(),
            channels,
        });
        Some(client)
    }

    /// One complete text message from `conn`: fires `Handler::receive` with
    /// the raw text, then routes it (SPEC section 5). Problems become an
    /// `error` message to the sender; the connection stays open. Unknown
    /// connections are ignored. A message over its sender's buckets (SPEC
    /// section 17, `flood.rs`) is dropped before any of that.
    pub fn handle_text(&mut self, conn: ConnId, text: &str, now: Instant, out: &mut impl Outbox) {
        let Some(client) = self.clients.get(&conn) else {
            return;
        };
        // Commands that `command_policy` allows are not limited; anything else from a client
        // that may not send them is charged before it is even parsed.
        let may_command = self.config.command_policy.allows(client.user.as_deref());
        if !may_command && !self.message_ok(conn, now, out) {
            return;
        }
        let msg = wire::parse(text);
        if !self.text_ok(conn, msg.as_ref().ok(), may_command, now, out) {
            return;
        }
        let Some(client) = self.clients.get(&conn) else {
            return;
        };
        self.handler
            .receive(client.id.as_str(), client.user.as_deref(), text);
        if let Err(reject) = msg.and_then(|msg| self.route(conn, &msg, now, out)) {
            self.send_error(conn, &reject, out);
        }
    }

    /// One binary message from `conn`: the protocol is JSON text, so the
    /// sender gets `binary_unsupported`. `Handler::receive` does not fire,
    /// as it carries text.
    pub fn handle_binary(&mut self, conn: ConnId, now: Instant, out: &mut impl Outbox) {
        if !self.message_ok(conn, now, out) {
            return;
        }
        let reject = Reject::new(
            ErrorCode::BinaryUnsupported,
            "binary messages are not supported; send JSON text",
        );
        self.send_error(conn, &reject, out);
    }

    /// When [`Router::handle_timeout`] should next be called (a pending
    /// presence update, or history to expire), or `None`.
    pub fn poll_timeout(&self) -> Option<Instant> {
        // SPEC 16: the history store's expiry.
        self.presence
            .deadline()
            .into_iter()
            .chain(self.history.deadline())
            .min()
    }

    /// Sends the pending presence update if it is due at `now`. The message
    /// reflects the state at this moment, not at the changes; with nobody
    /// connected it is dropped.
    pub fn handle_timeout(&mut self, now: Instant, out: &mut impl Outbox) {
        if self.presence.take_due(now) {
            self.send_presence(now, out);
        }
        // SPEC 16: publications that expired, streams a day old.
        self.history.sweep(now);
    }

    /// Who may send commands from now on (a configuration reload, SPEC section 18).
    pub fn set_command_policy(&mut self, policy: CommandPolicy) {
        self.config.command_policy = policy;
    }

    /// The message and broadcast buckets and the broadcast policy from now on (a reload, SPEC
    /// section 18). Each connection's buckets keep what they hold; the new rates and bursts
    /// apply to their next message.
    pub fn set_limits(&mut self, limits: RouterLimits) {
        self.config.limits = limits;
    }

    /// The key channel tokens are checked with from now on (`[session] secret` reloaded).
    pub fn set_token_key(&mut self, key: TokenKey) {
        self.config.token_key = key;
    }

    /// The event handler, e.g. to fire `start` or `crash` from the loop.
    pub fn handler_mut(&mut self) -> &mut dyn Handler {
        &mut *self.handler
    }

    /// The client id of `conn`, if it is connected.
    pub fn client_id(&self, conn: ConnId) -> Option<&str> {
        self.clients.get(&conn).map(|c| c.id.as_str())
    }

    /// The user of `conn`, if it is connected and not a guest.
    pub fn user(&self, conn: ConnId) -> Option<&User> {
        self.clients.get(&conn).and_then(|c| c.user.as_deref())
    }

    /// The number of connected clients.
    pub fn len(&self) -> usize {
        self.clients.len()
    }

    /// Whether no client is connected.
    pub fn is_empty(&self) -> bool {
        self.clients.is_empty()
    }

    /// Routing precedence: `command`, then `event`, then `to`, then
    /// `message`, then `ping` (by key presence, SPEC section 5).
    fn route(
        &mut self,
        conn: ConnId,
        msg: &wire::Incoming<'_>,
        now: Instant,
        out: &mut impl Outbox,
    ) -> Result<(), Reject> {
        if let Some(name) = msg.command {
            self.command(conn, name, msg, now, out)
        } else if let Some(event) = msg.event {
            self.channel_event(conn, event, msg, now, out)
        } else if let Some(to) = msg.to {
            let to = wire::required_str(Some(to), "to")?;
            let message = wire::required(msg.message, "message")?;
            self.private(conn, &to, message, out)
        } else if let Some(message) = msg.message {
            self.may_broadcast(conn)?;
            let sender = self.sender(conn)?;
            self.send_to_all(
                &Out::Message {
                    client_id: Some(sender.as_str()),
                    message,
                },
                out,
            );
            Ok(())
        } else if msg.ping.is_some() {
            self.send_to(conn, &Out::Pong, out);
            Ok(())
        } else {
            Err(Reject::bad_request(
                "nothing to do: expected a `command`, `event`, `to`, `message` or `ping` key",
            ))
        }
    }

    /// A private message `{"to":ID,"message":M}`. Sending to yourself is
    /// allowed: it is a valid id, and refusing it would only surprise.
    fn private(
        &mut self,
        conn: ConnId,
        to: &str,
        message: &RawValue,
        out: &mut impl Outbox,
    ) -> Result<(), Reject> {
        let sender = self.sender(conn)?;
        let msg = Out::Private {
            client_id: Some(sender.as_str()),
            message,
        };
        self.send_private(to, &msg, Some(conn), None, out)
            .map(|_| ())
    }

    /// Sends `msg` to client `to`, on this node or another; a request to
    /// another node is answered to `issuer` (see `remote.rs`). Ok means
    /// delivered, or sent towards the node that has `to`.
    fn send_private(
        &mut self,
        to: &str,
        msg: &Out<'_>,
        issuer: Option<ConnId>,
        command: Option<&'static str>,
        out: &mut impl Outbox,
    ) -> Result<Sent, Reject> {
        match self.locate(to)? {
            Target::Local(target) => {
                self.send_to(target, msg, out);
                Ok(Sent::Done)
            }
            Target::Remote(node) => {
                let Some(encoded) = Outgoing::encode(msg) else {
                    return Ok(Sent::Done);
                };
                let req = self.request(issuer, command);
                self.publish(|| ClusterOut::Private {
                    node,
                    to: to.to_owned(),
                    frame: encoded.frame,
                    req,
                });
                Ok(if req == 0 { Sent::Done } else { Sent::Awaiting })
            }
        }
    }

    /// `{"event":...,"channel":C,...}`: subscribe, unsubscribe, or publish.
    ///
    /// Publishing (`"event":"message"`) does not require the sender to be
    /// subscribed, like a Pusher/Centrifugo server-side publish; the sender
    /// receives its own message only if it is subscribed. Channels of the
    /// other dialect that need its authorization (`private-`, `presence-`,
    /// ...) are `forbidden` to publish to, as to subscribe to.
    fn channel_event(
        &mut self,
        conn: ConnId,
        event: &RawValue,
        msg: &wire::Incoming<'_>,
        now: Instant,
        out: &mut impl Outbox,
    ) -> Result<(), Reject> {
        let event = wire::as_str(event)
            .ok_or_else(|| Reject::bad_request("field `event` must be a string"))?;
        match &*event {
            "subscribe" => {
                self.spend_subscribe(conn, now)?;
                let channel = channel_name(msg.channel)?;
                if self.protected(&channel) {
                    return Err(Reject::new(
                        ErrorCode::Forbidden,
                        "this channel needs Pusher channel authorization (connect to /app/{key})",
                    )
                    .on(&channel));
                }
                // SPEC 16: a malformed `since` changes nothing.
                let since = history_wire::parse_since(msg.since)?;
                // Its namespace's rule, presence, the subscription and the reply.
                self.subscribe_event(conn, &channel, msg.token, since, now, out)?;
            }
            "unsubscribe" => {
                let channel = channel_name(msg.channel)?;
                self.leave(conn, &channel, out);
                self.send_to(conn, &Out::Unsubscribed { channel: &channel }, out);
            }
            "message" => {
                // Field presence and types (bad_request) before the name
                // rules (invalid_channel).
                let channel = wire::required_str(msg.channel, "channel")?;
                let data = wire::required(msg.data, "data")?;
                let channel = valid_channel(channel)?;
                if self.protected(&channel) {
                    return Err(protected_publish());
                }
                self.authorize_publish(conn, &channel)?;
                let sender = self.sender(conn)?;
                let event = ChannelEvent {
                    channel: &channel,
                    event: None,
                    data,
                    client_id: Some(sender.as_str()),
                    user_id: None,
                };
                self.fan_out(&event, None, out);
            }
            "presence" => self.presence_event(conn, msg, now, out)?,
            // SPEC 16.
            "history" => self.history_event(conn, msg, now, out)?,
            _ => {
                return Err(Reject::new(
                    ErrorCode::UnknownEvent,
                    "unknown event: expected subscribe, unsubscribe, message, presence or history",
                ))
            }
        }
        Ok(())
    }

    /// Whether `channel` is one only the other dialect's authorized clients may join (its
    /// `private-`, `presence-`, ... prefixes); a client of this dialect may neither subscribe
    /// to it nor publish to it (the backend may publish).
    fn protected(&self, channel: &str) -> bool {
        self.foreign
            .is_some_and(|f| f.protected.iter().any(|p| channel.starts_with(p)))
    }

    /// The id of the connection a message came from.
    fn sender(&self, conn: ConnId) -> Result<ClientId, Reject> {
        // handle_text only routes for known connections; this is a guard,
        // not a path clients can reach.
        self.clients
            .get(&conn)
            .map(|c| c.id)
            .ok_or_else(|| Reject::new(ErrorCode::UnknownClient, "the sender is not connected"))
    }

    /// Where the client a message names is: here, or on another node.
    fn locate(&self, id: &str) -> Result<Target, Reject> {
        let unknown = || Reject::new(ErrorCode::UnknownClient, "no connected client has that id");
        let id = ClientId::parse(id).ok_or_else(unknown)?;
        if let Some(conn) = self.clients.find(&id) {
            return Ok(Target::Local(conn));
        }
        self.remote
            .as_deref()
            .and_then(|r| r.replica.node_of(&id))
            .map(Target::Remote)
            .ok_or_else(unknown)
    }

    /// This node's id and the replica of the others, in a cluster.
    fn cluster(&self) -> Option<(&str, &replica::Replica)> {
        self.remote.as_deref().map(|r| (r.node(), &r.replica))
    }

    /// Clients in the whole cluster.
    fn cluster_len(&self) -> usize {
        self.clients.len() + self.remote.as_deref().map_or(0, |r| r.replica.len())
    }

    fn presence_changed(&mut self, now: Instant) {
        if self.config.presence {
            self.presence.changed(now);
        }
    }

    /// Sends a presence message to everyone now (if presence is enabled and
    /// anyone is connected), built from the current state.
    fn send_presence(&mut self, now: Instant, out: &mut impl Outbox) {
        if !self.config.presence || self.clients.is_empty() {
            return;
        }
        let count = self.cluster_len();
        let truncated = count > self.config.presence_max_users;
        let msg = Out::Presence {
            users: PresenceUsers::new(&self.clients, self.cluster(), truncated),
            count,
            truncated,
        };
        if let Some(encoded) = Outgoing::encode(&msg) {
            deliver_all(&self.clients, &mut *self.handler, &encoded, out);
        }
        self.presence.sent(now);
    }

    fn send_error(&mut self, conn: ConnId, reject: &Reject, out: &mut impl Outbox) {
        self.send_to(
            conn,
            &Out::Error {
                code: reject.code.as_str(),
                channel: reject.channel.as_deref(),
                message: &reject.text,
            },
            out,
        );
    }

    fn send_to(&mut self, conn: ConnId, msg: &Out<'_>, out: &mut impl Outbox) {
        if let Some(encoded) = Outgoing::encode(msg) {
            self.deliver(&encoded, [conn], out);
        }
    }

    fn send_to_all(&mut self, msg: &Out<'_>, out: &mut impl Outbox) {
        if self.clients.is_empty() && self.remote.is_none() {
            return;
        }
        if let Some(encoded) = Outgoing::encode(msg) {
            // Local clients first; the same bytes go to the other nodes.
            self.publish(|| ClusterOut::Broadcast(encoded.frame.clone()));
            deliver_all(&self.clients, &mut *self.handler, &encoded, out);
        }
    }

    fn deliver(
        &mut self,
        msg: &Outgoing,
        recipients: impl IntoIterator<Item = ConnId>,
        out: &mut impl Outbox,
    ) {
        deliver(&self.clients, &mut *self.handler, msg, recipients, out);
    }
}

/// Where a client is.
enum Target {
    Local(ConnId),
    Remote(NodeId),
}

/// What became of a message for one client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sent {
    /// Delivered here, or sent to another node with no answer wanted.
    Done,
    /// Sent to another node, whose answer completes it.
    Awaiting,
}

/// Queues `msg` for each recipient that is still connected and fires
/// `Handler::send` for it. A free function so that callers can iterate the
/// router's tables while the handler is borrowed mutably.
fn deliver(
    clients: &Clients,
    handler: &mut dyn Handler,
    msg: &Outgoing,
    recipients: impl IntoIterator<Item = ConnId>,
    out: &mut impl Outbox,
) {
    let observed = handler.observes_send();
    for conn in recipients {
        // Section 5's own messages are for Rakit clients only.
        if let Some(client) = clients.get(&conn).filter(|c| c.dialect == Dialect::Rakit) {
            out.send(conn, &msg.frame);
            if observed {
                handler.send(client.id.as_str(), client.user.as_deref(), &msg.json);
            }
        }
    }
}

/// [`deliver`] to every client.
fn deliver_all(
    clients: &Clients,
    handler: &mut dyn Handler,
    msg: &Outgoing,
    out: &mut impl Outbox,
) {
    let observed = handler.observes_send();
    for (conn, client) in clients.iter() {
        if client.dialect == Dialect::Rakit {
            out.send(conn, &msg.frame);
            if observed {
                handler.send(client.id.as_str(), client.user.as_deref(), &msg.json);
            }
        }
    }
}

/// A client's publish to a protected channel (see [`Router::protected`]): refused like a
/// subscription, or it would reach authorized subscribers with whatever the client made up.
fn protected_publish() -> Reject {
    Reject::new(
        ErrorCode::Forbidden,
        "only the backend may publish to this channel (it needs Pusher channel authorization)",
    )
}

/// A `channel` field: required, a string, and a valid name.
fn channel_name(field: Option<&RawValue>) -> Result<Cow<'_, str>, Reject> {
    valid_channel(wire::required_str(field, "channel")?)
}

/// Applies the channel name rules (SPEC section 5) to a decoded name.
fn valid_channel(name: Cow<'_, str>) -> Result<Cow<'_, str>, Reject> {
    if channels::is_valid_name(&name) {
        Ok(name)
    } else {
        Err(Reject::new(
            ErrorCode::InvalidChannel,
            "channel names are 1 to 128 bytes without control characters",
        ))
    }
}
