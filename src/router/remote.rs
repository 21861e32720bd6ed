//! The router in a cluster (SPEC section 11): other nodes' clients, and what
//! this node must tell the others.
//!
//! The router stays free of IO. It keeps a replica of every other live
//! node's clients and their subscriptions (`replica.rs`), fed by the cluster
//! module through the `remote_*` methods, so that presence, `count`, client
//! lookups, channel queries and presence channel members cover the cluster;
//! and it queues [`ClusterOut`] items (a frame for every node, a private
//! message for a client elsewhere, a join, leave, subscribe or unsubscribe)
//! that the loop hands to the cluster module after each router call. Every
//! frame in them is the one the local recipients got: serialised once, at
//! the origin.
//!
//! A change to another node's presence channel members is announced by this
//! node to its own subscribers only (`members.rs`): every node does the same
//! for its own, so each client hears of it once.
//!
//! Private messages and `disconnect` for a client elsewhere are requests:
//! the owner answers whether it had the client, and only then does the
//! issuer get its `ack` (or `unknown_client`). The cluster module times
//! requests out and answers them as "not found" ([`Router::remote_reply`]).

use std::collections::HashMap;
use std::rc::Rc;
use std::time::Instant;

use super::entry::{self, Member, Subscription};
use super::ids::ClientId;
use super::replica::{Limits, NodeId, Replica};
use super::reporter::{Before, Reporter};
use super::wire::{ErrorCode, Out, Outgoing};
use super::{deliver, deliver_all, ConnId, Frame, Outbox, Router};
use crate::history::{Read, Retention};

/// What the router asks the cluster to tell other nodes.
#[derive(Debug, Clone)]
pub enum ClusterOut {
    /// A frame for every client of every other node.
    Broadcast(Frame),
    /// A frame for the subscribers of `channel` on other nodes, with what
    /// travels beside it ([`ChannelExtras`]).
    Channel {
        channel: String,
        frame: Frame,
        /// The dialect's name of a connection to skip, on whichever node it is.
        except: Option<String>,
        /// The sender's user id on a presence channel.
        user: Option<String>,
    },
    /// A frame for client `to` on `node`; `req` 0 wants no reply.
    Private {
        node: NodeId,
        to: String,
        frame: Frame,
        req: u64,
    },
    /// Close client `id` on `node` with 4000; `req` 0 wants no reply.
    Disconnect { node: NodeId, id: String, req: u64 },
    /// A local client connected.
    Joined(Member),
    /// A local client left; it was subscribed to `channels`.
    Left { id: String, channels: Vec<Rc<str>> },
    /// A local client subscribed to a channel.
    Subscribed(Subscription),
    /// A local client unsubscribed from `channel`.
    Unsubscribed { id: String, channel: String },
    /// The `presence` command: every node sends presence now.
    Presence,
    /// A publication on a history channel, for Redis to number, store and publish to every
    /// node (SPEC section 16).
    HistoryPublish(HistoryPublication),
    /// Read `tag` of a history channel's stream; answered with [`Router::history_reply`].
    HistoryRead {
        tag: u64,
        channel: String,
        read: Read,
        keep: Retention,
        /// The most bytes of publications the answer may carry.
        max_bytes: usize,
    },
    /// A publication on history channel `channel` was delivered here without being stored
    /// (Redis was down): its stream must get a new epoch when Redis is back.
    Unstored { channel: String },
    /// Every node closes its connections signed in as `user` (Pusher's
    /// `terminate_connections`; see [`Router::terminate_everywhere`]).
    Terminate { user: String },
}

/// A publication on a history channel on its way to Redis (SPEC section 16): its Rakit frame's
/// JSON without offset and epoch, that frame (for local delivery if Redis cannot take it), what
/// travels beside it, and how much of the channel is kept.
#[derive(Debug, Clone)]
pub struct HistoryPublication {
    pub channel: String,
    pub json: String,
    pub frame: Frame,
    pub except: Option<String>,
    pub user: Option<String>,
    pub keep: Retention,
}

/// What travels beside a channel frame from another node.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ChannelExtras<'a> {
    /// A connection not to deliver to, by its dialect's name (Pusher's
    /// `socket_id` given to `POST /events`), whichever node it is on.
    pub except: Option<&'a str>,
    /// The sender's user id on a presence channel (a Pusher client event),
    /// which that dialect's subscribers see; the Rakit frame has no place
    /// for it.
    pub user: Option<&'a str>,
}

/// Users whose sign-ins other nodes asked to end, waiting for the dialect
/// (a bound on what a burst of messages can make us keep).
const MAX_TERMINATIONS: usize = 4096;

/// What a request waits for.
#[derive(Debug)]
struct Pending {
    conn: ConnId,
    /// The issuer, so that a reused connection is not answered.
    issuer: ClientId,
    /// `Some(name)`: a command, acknowledged when done; `None`: a private
    /// message, which only reports a target that was not found.
    command: Option<&'static str>,
}

/// The cluster side of the router (see the module docs).
#[derive(Debug)]
pub(crate) struct Remote {
    /// This node's id.
    node: NodeId,
    /// Other nodes' clients and subscriptions.
    pub(super) replica: Replica,
    outgoing: Vec<ClusterOut>,
    pending: HashMap<u64, Pending>,
    next_req: u64,
    /// Users whose sign-ins other nodes asked to end, for the dialect.
    terminations: Vec<String>,
    /// Who reports which channel's transitions.
    pub(super) reporter: Reporter,
}

impl Remote {
    pub(crate) fn new(node: &str, max_channels_per_client: usize) -> Remote {
        Remote {
            node: node.into(),
            replica: Replica::new(Limits::new(max_channels_per_client)),
            outgoing: Vec::new(),
            pending: HashMap::new(),
            next_req: 1,
            terminations: Vec::new(),
            reporter: Reporter::default(),
        }
    }

    pub(crate) fn push(&mut self, item: ClusterOut) {
        self.outgoing.push(item);
    }

    /// This node's id.
    pub(crate) fn node(&self) -> &str {
        &self.node
    }
}

impl Router {
    /// Makes this router one node of a cluster named `node`: from now on
    /// lookups and presence include other nodes' clients, and what other
    /// nodes must see is queued for [`Router::take_cluster_out`].
    pub fn enable_cluster(&mut self, node: &str) {
        let max = self.config.max_channels_per_client;
        self.remote = Some(Box::new(Remote::new(node, max)));
        // SPEC 16: history lives in Redis.
        self.history.use_redis();
    }

    /// What other nodes must be told since the last call, in order.
    pub fn take_cluster_out(&mut self) -> Vec<ClusterOut> {
        self.remote
            .as_mut()
            .map(|r| std::mem::take(&mut r.outgoing))
            .unwrap_or_default()
    }

    /// Every local client, as the presence directory holds it (to announce
    /// them again after Redis came back).
    pub fn local_members(&self) -> Vec<Member> {
        self.clients.iter().map(|(_, c)| entry::member(c)).collect()
    }

    /// Every subscription of a local client, with the member it joined as
    /// (to announce them again, beside [`Router::local_members`]).
    pub fn local_subscriptions(&self) -> Vec<Subscription> {
        let mut subs = Vec::new();
        for (conn, client) in self.clients.iter() {
            for channel in self.channels.channels_of(conn) {
                subs.push(self.subscription(client, conn, channel));
            }
        }
        subs
    }

    /// A frame from another node for every local client.
    pub fn remote_broadcast(&mut self, frame: &[u8], out: &mut impl Outbox) {
        if self.clients.is_empty() {
            return;
        }
        let msg = outgoing(frame, &*self.handler);
        deliver_all(&self.clients, &mut *self.handler, &msg, out);
    }

    /// A frame from another node for the local subscribers of `channel` but
    /// `extras.except`; the other dialect's subscribers get it translated,
    /// with `extras.user`.
    pub fn remote_channel(
        &mut self,
        channel: &str,
        frame: &[u8],
        extras: ChannelExtras<'_>,
        out: &mut impl Outbox,
    ) {
        self.remote_frame(channel, frame, None, extras, out);
    }

    /// [`Router::remote_channel`] for a frame that may carry a history channel's `stamp`
    /// (offset and epoch): subscribers waiting for their position get it later (SPEC 16,
    /// `history_cluster.rs`), also one without (delivered while Redis was down).
    pub(super) fn remote_frame(
        &mut self,
        channel: &str,
        frame: &[u8],
        stamp: Option<(u64, &str)>,
        extras: ChannelExtras<'_>,
        out: &mut impl Outbox,
    ) {
        if !self.channels.has_members(channel) {
            return;
        }
        let skip = extras.except.and_then(|name| self.aliases.get(name));
        let msg = outgoing(frame, &*self.handler);
        let held = self.hold_for_seams(channel, stamp, &msg.frame);
        deliver(
            &self.clients,
            &mut *self.handler,
            &msg,
            self.channels
                .members(channel)
                .filter(|c| Some(*c) != skip && !held.contains(c)),
            out,
        );
        self.remote_channel_foreign(channel, payload(frame), skip, &held, extras.user, out);
    }

    /// Asks every other node to close its connections signed in as `user`
    /// (the dialect closes this node's own). The router only carries it:
    /// sign-ins are the dialect's.
    pub fn terminate_everywhere(&mut self, user: &str) {
        if !user.is_empty() {
            self.publish(|| ClusterOut::Terminate {
                user: user.to_owned(),
            });
        }
    }

    /// Another node asked to close the connections signed in as `user`:
    /// kept for the dialect ([`Router::take_terminations`]).
    pub fn remote_terminate(&mut self, user: &str) {
        if let Some(remote) = self.remote.as_mut() {
            if remote.terminations.len() < MAX_TERMINATIONS {
                remote.terminations.push(user.to_owned());
            }
        }
    }

    /// The users other nodes asked to terminate since the last call.
    pub fn take_terminations(&mut self) -> Vec<String> {
        self.remote
            .as_mut()
            .map(|r| std::mem::take(&mut r.terminations))
            .unwrap_or_default()
    }

    /// A frame from another node for local client `to`: whether it is here.
    pub fn remote_private(&mut self, to: &str, frame: &[u8], out: &mut impl Outbox) -> bool {
        let Some(conn) = self.local_conn(to) else {
            return false;
        };
        let msg = outgoing(frame, &*self.handler);
        deliver(&self.clients, &mut *self.handler, &msg, [conn], out);
        true
    }

    /// The `disconnect` command from another node: whether `id` was here.
    pub fn remote_disconnect(&mut self, id: &str, now: Instant, out: &mut impl Outbox) -> bool {
        let Some(conn) = self.local_conn(id) else {
            return false;
        };
        self.kick(conn, now, out);
        true
    }

    /// The `presence` command given on another node: send presence now.
    pub fn remote_presence(&mut self, now: Instant, out: &mut impl Outbox) {
        self.send_presence(now, out);
    }

    /// A client connected on `node`.
    pub fn remote_join(&mut self, node: &str, member: Member, now: Instant, out: &mut impl Outbox) {
        // A known id is replaced, subscriptions included.
        let before = self.before(|r| ClientId::parse(&member.id).map(|id| r.channels_of(&id)));
        let mut deltas = Vec::new();
        if let Some(remote) = self.remote.as_mut() {
            remote.replica.insert(node, member, &mut deltas);
            self.presence_changed(now);
        }
        self.changed(&before, deltas, out);
    }

    /// A client of `node` left (ignored if it is not `node`'s).
    pub fn remote_leave(&mut self, node: &str, id: &str, now: Instant, out: &mut impl Outbox) {
        let before = self.before(|r| ClientId::parse(id).map(|id| r.channels_of(&id)));
        let mut deltas = Vec::new();
        let gone = self
            .remote
            .as_mut()
            .zip(ClientId::parse(id))
            .is_some_and(|(remote, id)| remote.replica.remove(node, &id, &mut deltas));
        if gone {
            self.presence_changed(now);
        }
        self.changed(&before, deltas, out);
    }

    /// A client of `node` subscribed to a channel.
    pub fn remote_subscribe(&mut self, node: &str, sub: Subscription, out: &mut impl Outbox) {
        let before = self.occupancy_before(vec![sub.channel.as_str().into()]);
        let mut deltas = Vec::new();
        if let Some(remote) = self.remote.as_mut() {
            remote.replica.subscribe(node, sub, &mut deltas);
        }
        self.changed(&before, deltas, out);
    }

    /// A client of `node` unsubscribed from `channel`.
    pub fn remote_unsubscribe(
        &mut self,
        node: &str,
        id: &str,
        channel: &str,
        out: &mut impl Outbox,
    ) {
        let before = self.occupancy_before(vec![channel.into()]);
        let mut deltas = Vec::new();
        if let Some(remote) = self.remote.as_mut() {
            remote.replica.unsubscribe(node, id, channel, &mut deltas);
        }
        self.changed(&before, deltas, out);
    }

    /// Replaces everything known of `node`'s clients and subscriptions (a
    /// resync). Presence channel members change by the net effect only.
    pub fn remote_node(
        &mut self,
        node: &str,
        members: Vec<Member>,
        subs: Vec<Subscription>,
        now: Instant,
        out: &mut impl Outbox,
    ) {
        let mut channels: Vec<Rc<str>> = subs.iter().map(|s| s.channel.as_str().into()).collect();
        channels.extend(self.before_channels(|r| Some(r.channels_of_node(node))));
        let before = self.occupancy_before(channels);
        let mut deltas = Vec::new();
        if let Some(remote) = self.remote.as_mut() {
            remote.replica.remove_node(node, &mut deltas);
            for member in members {
                remote.replica.insert(node, member, &mut deltas);
            }
            for sub in subs {
                remote.replica.subscribe(node, sub, &mut deltas);
            }
            self.presence_changed(now);
        }
        self.changed(&before, deltas, out);
    }

    /// `node` is gone (it said so, or fell silent): its clients are forgotten,
    /// and its presence channel members leave.
    pub fn remote_node_gone(&mut self, node: &str, now: Instant, out: &mut impl Outbox) {
        let before = self.before(|r| Some(r.channels_of_node(node)));
        let mut deltas = Vec::new();
        if self
            .remote
            .as_mut()
            .is_some_and(|r| r.replica.remove_node(node, &mut deltas))
        {
            self.presence_changed(now);
        }
        self.changed(&before, deltas, out);
    }

    /// The occupancy, before a change, of the channels `of` the replica names.
    fn before(&self, of: impl FnOnce(&Replica) -> Option<Vec<Rc<str>>>) -> Before {
        self.occupancy_before(self.before_channels(of))
    }

    /// The channels `of` the replica names, when this node may report transitions at all.
    fn before_channels(&self, of: impl FnOnce(&Replica) -> Option<Vec<Rc<str>>>) -> Vec<Rc<str>> {
        self.remote
            .as_deref()
            .filter(|r| r.reporter.is_on())
            .and_then(|r| of(&r.replica))
            .unwrap_or_default()
    }

    /// After a change from another node: channels that became occupied, member changes
    /// (announced, and reported), then channels that became vacant.
    fn changed(
        &mut self,
        before: &Before,
        deltas: Vec<super::members::MemberDelta>,
        out: &mut impl Outbox,
    ) {
        self.report_occupied(before);
        self.members_changed(deltas, out);
        self.report_vacated(before);
    }

    /// Nodes whose replica went over the limits (`replica.rs`) and was dropped, since the
    /// last call: the cluster module refuses them for a while.
    pub fn take_overflowed_nodes(&mut self) -> Vec<NodeId> {
        self.remote
            .as_mut()
            .map(|r| r.replica.take_overflowed())
            .unwrap_or_default()
    }

    /// The answer to request `req`: the owner had the target (`found`) or
    /// not (or did not answer in time). Answers the issuer if it is still here.
    pub fn remote_reply(&mut self, req: u64, found: bool, out: &mut impl Outbox) {
        let Some(pending) = self.remote.as_mut().and_then(|r| r.pending.remove(&req)) else {
            return;
        };
        let same = self
            .clients
            .get(&pending.conn)
            .is_some_and(|c| c.id == pending.issuer);
        if !same {
            return;
        }
        match (found, pending.command) {
            (true, Some(command)) => self.send_to(pending.conn, &Out::Ack { command }, out),
            (true, None) => {}
            (false, _) => self.send_to(
                pending.conn,
                &Out::Error {
                    code: ErrorCode::UnknownClient.as_str(),
                    channel: None,
                    message: "no connected client has that id",
                },
                out,
            ),
        }
    }

    /// Registers a request from `issuer` (if any) and returns its number, 0
    /// for none.
    pub(super) fn request(&mut self, issuer: Option<ConnId>, command: Option<&'static str>) -> u64 {
        let Some(conn) = issuer else {
            return 0;
        };
        let Some(id) = self.clients.get(&conn).map(|c| c.id) else {
            return 0;
        };
        let Some(remote) = self.remote.as_mut() else {
            return 0;
        };
        let req = remote.next_req;
        remote.next_req += 1;
        remote.pending.insert(
            req,
            Pending {
                conn,
                issuer: id,
                command,
            },
        );
        req
    }

    /// Queues `item` for other nodes, in a cluster.
    pub(super) fn publish(&mut self, item: impl FnOnce() -> ClusterOut) {
        if let Some(remote) = self.remote.as_mut() {
            remote.push(item());
        }
    }

    fn local_conn(&self, id: &str) -> Option<ConnId> {
        ClientId::parse(id).and_then(|id| self.clients.find(&id))
    }
}

/// A frame from another node, shared by its local recipients; its JSON is
/// read back from it only when a handler observes sends.
fn outgoing(frame: &[u8], handler: &dyn crate::events::Handler) -> Outgoing {
    let json = if handler.observes_send() {
        String::from_utf8_lossy(payload(frame)).into_owned()
    } else {
        String::new()
    };
    Outgoing {
        frame: Frame::from(frame),
        json,
    }
}

/// The payload of an unmasked frame the server built (RFC 6455 section 5.2).
pub(super) fn payload(frame: &[u8]) -> &[u8] {
    let start = match frame.get(1).map(|b| b & 0x7f) {
        Some(126) => 4,
        Some(127) => 10,
        Some(_) => 2,
        None => return &[],
    };
    frame.get(start..).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_of_every_length_form() {
        for len in [0usize, 5, 125, 126, 200, 65535, 65536, 70000] {
            let body = vec![b'x'; len];
            let mut frame = Vec::new();
            rakit_protocol::encode_frame(&mut frame, rakit_protocol::OpCode::Text, &body);
            assert_eq!(payload(&frame), &body[..], "{len}");
        }
        assert_eq!(payload(b""), b"");
    }
}
