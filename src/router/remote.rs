//! The router in a cluster (SPEC section 11): other nodes' clients, and what
//! this node must tell the others.
//!
//! The router stays free of IO. It keeps a replica of every other live
//! node's clients ([`Remote`]), fed by the cluster module through the
//! `remote_*` methods, so that presence, `count` and client lookups cover
//! the cluster; and it queues [`ClusterOut`] items (a frame for every
//! node, a private message for a client elsewhere, a join or leave) that the
//! loop hands to the cluster module after each router call. Every frame in
//! them is the one the local recipients got: serialised once, at the origin.
//!
//! Private messages and `disconnect` for a client elsewhere are requests:
//! the owner answers whether it had the client, and only then does the
//! issuer get its `ack` (or `unknown_client`). The cluster module times
//! requests out and answers them as "not found" ([`Router::remote_reply`]).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::rc::Rc;
use std::time::Instant;

use serde_json::value::RawValue;

use super::ids::ClientId;
use super::wire::{ErrorCode, Out, Outgoing};
use super::{deliver, presence, ConnId, Frame, Outbox, Router};

/// A node id, shared by all of that node's entries.
pub type NodeId = Rc<str>;

/// What the router asks the cluster to tell other nodes.
#[derive(Debug, Clone)]
pub enum ClusterOut {
    /// A frame for every client of every other node.
    Broadcast(Frame),
    /// A frame for the subscribers of `channel` on other nodes.
    Channel { channel: String, frame: Frame },
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
    /// A local client left.
    Left { id: String },
    /// The `presence` command: every node sends presence now.
    Presence,
}

/// One client as the presence directory holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub id: String,
    /// Its node's connection sequence number (orders ties).
    pub seq: u64,
    /// Unix seconds.
    pub connected_at: u64,
    /// Its presence entry, `{"id","name","email","connected_at"}`.
    pub entry: String,
}

/// Presence order across the cluster: connection time, then node, then the
/// node's own order. Every node computes the same order from the same data.
type OrderKey = (u64, NodeId, u64);

#[derive(Debug)]
struct RemoteClient {
    key: OrderKey,
    entry: Box<RawValue>,
}

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
    clients: HashMap<ClientId, RemoteClient>,
    order: BTreeMap<OrderKey, ClientId>,
    by_node: HashMap<NodeId, HashSet<ClientId>>,
    outgoing: Vec<ClusterOut>,
    pending: HashMap<u64, Pending>,
    next_req: u64,
}

impl Remote {
    pub(crate) fn new(node: &str) -> Remote {
        Remote {
            node: node.into(),
            clients: HashMap::new(),
            order: BTreeMap::new(),
            by_node: HashMap::new(),
            outgoing: Vec::new(),
            pending: HashMap::new(),
            next_req: 1,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.clients.len()
    }

    pub(crate) fn contains(&self, id: &ClientId) -> bool {
        self.clients.contains_key(id)
    }

    pub(crate) fn node_of(&self, id: &ClientId) -> Option<NodeId> {
        self.clients.get(id).map(|c| Rc::clone(&c.key.1))
    }

    pub(crate) fn push(&mut self, item: ClusterOut) {
        self.outgoing.push(item);
    }

    /// The presence entries of other nodes with their order keys.
    pub(crate) fn entries(&self) -> impl Iterator<Item = (&OrderKey, &RawValue)> + '_ {
        self.order.iter().filter_map(|(key, id)| {
            let client = self.clients.get(id)?;
            Some((key, &*client.entry))
        })
    }

    /// This node's id.
    pub(crate) fn node(&self) -> &str {
        &self.node
    }

    fn insert(&mut self, node: &str, member: Member) {
        let Some(id) = ClientId::parse(&member.id) else {
            return;
        };
        let Ok(entry) = RawValue::from_string(member.entry) else {
            return;
        };
        self.remove(&id);
        let node: NodeId = match self.by_node.get_key_value(node) {
            Some((n, _)) => Rc::clone(n),
            None => node.into(),
        };
        let key = (member.connected_at, Rc::clone(&node), member.seq);
        self.order.insert(key.clone(), id);
        self.by_node.entry(node).or_default().insert(id);
        self.clients.insert(id, RemoteClient { key, entry });
    }

    fn remove(&mut self, id: &ClientId) -> bool {
        let Some(client) = self.clients.remove(id) else {
            return false;
        };
        self.order.remove(&client.key);
        if let Some(ids) = self.by_node.get_mut(&client.key.1) {
            ids.remove(id);
            if ids.is_empty() {
                self.by_node.remove(&client.key.1);
            }
        }
        true
    }

    fn remove_node(&mut self, node: &str) -> bool {
        let Some(ids) = self.by_node.remove(node) else {
            return false;
        };
        for id in &ids {
            if let Some(client) = self.clients.remove(id) {
                self.order.remove(&client.key);
            }
        }
        !ids.is_empty()
    }
}

impl Router {
    /// Makes this router one node of a cluster named `node`: from now on
    /// lookups and presence include other nodes' clients, and what other
    /// nodes must see is queued for [`Router::take_cluster_out`].
    pub fn enable_cluster(&mut self, node: &str) {
        self.remote = Some(Box::new(Remote::new(node)));
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
        self.order
            .values()
            .filter_map(|conn| self.clients.get(conn))
            .map(member)
            .collect()
    }

    /// A frame from another node for every local client.
    pub fn remote_broadcast(&mut self, frame: &[u8], out: &mut impl Outbox) {
        if self.clients.is_empty() {
            return;
        }
        let msg = outgoing(frame, &*self.handler);
        deliver(
            &self.clients,
            &mut *self.handler,
            &msg,
            self.order.values().copied(),
            out,
        );
    }

    /// A frame from another node for the local subscribers of `channel`.
    pub fn remote_channel(&mut self, channel: &str, frame: &[u8], out: &mut impl Outbox) {
        if !self.channels.has_members(channel) {
            return;
        }
        let msg = outgoing(frame, &*self.handler);
        deliver(
            &self.clients,
            &mut *self.handler,
            &msg,
            self.channels.members(channel),
            out,
        );
        self.remote_channel_foreign(channel, payload(frame), out);
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
    pub fn remote_join(&mut self, node: &str, member: Member, now: Instant) {
        if let Some(remote) = self.remote.as_mut() {
            remote.insert(node, member);
            self.presence_changed(now);
        }
    }

    /// A client of another node left.
    pub fn remote_leave(&mut self, id: &str, now: Instant) {
        let gone = self
            .remote
            .as_mut()
            .zip(ClientId::parse(id))
            .is_some_and(|(remote, id)| remote.remove(&id));
        if gone {
            self.presence_changed(now);
        }
    }

    /// Replaces everything known of `node`'s clients (a resync).
    pub fn remote_node(&mut self, node: &str, members: Vec<Member>, now: Instant) {
        if let Some(remote) = self.remote.as_mut() {
            remote.remove_node(node);
            for member in members {
                remote.insert(node, member);
            }
            self.presence_changed(now);
        }
    }

    /// `node` is gone (it said so, or fell silent): its clients are forgotten.
    pub fn remote_node_gone(&mut self, node: &str, now: Instant) {
        if self.remote.as_mut().is_some_and(|r| r.remove_node(node)) {
            self.presence_changed(now);
        }
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
        ClientId::parse(id).and_then(|id| self.by_id.get(&id).copied())
    }
}

/// A local client as a directory member.
pub(super) fn member(client: &super::Client) -> Member {
    Member {
        id: client.id.as_str().to_owned(),
        seq: client.seq,
        connected_at: client.connected_at,
        entry: presence::entry_json(client),
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
fn payload(frame: &[u8]) -> &[u8] {
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

    #[test]
    fn remote_table_orders_by_time_node_seq() {
        let mut r = Remote::new("me");
        let m = |id: &str, seq, at| Member {
            id: id.into(),
            seq,
            connected_at: at,
            entry: format!(r#"{{"id":"{id}"}}"#),
        };
        r.insert("b", m("BBBBBBB1", 1, 10));
        r.insert("a", m("AAAAAAA2", 2, 10));
        r.insert("a", m("AAAAAAA1", 1, 10));
        r.insert("c", m("CCCCCCC1", 0, 5));
        let ids: Vec<_> = r.entries().map(|(_, e)| e.get().to_owned()).collect();
        assert_eq!(
            ids,
            [
                r#"{"id":"CCCCCCC1"}"#,
                r#"{"id":"AAAAAAA1"}"#,
                r#"{"id":"AAAAAAA2"}"#,
                r#"{"id":"BBBBBBB1"}"#
            ]
        );
        assert!(r.remove_node("a"));
        assert_eq!(r.len(), 2);
        assert!(!r.remove_node("a"));
        // Re-inserting an id moves it (no duplicate).
        r.insert("c", m("BBBBBBB1", 9, 1));
        assert_eq!(r.len(), 2);
        assert_eq!(
            r.node_of(&ClientId::parse("BBBBBBB1").unwrap()).as_deref(),
            Some("c")
        );
        assert!(!r.remove_node("b"));
    }
}
