//! The replica of other nodes' clients and their channel subscriptions (SPEC section 11), as
//! this node last heard of them. Pure tables: the cluster module feeds them through the
//! router's `remote_*` methods (`remote.rs`), which turn what changed into presence updates,
//! and into member counts for presence channels ([`MemberDelta`]s, see `members.rs`).
//!
//! What another node can make us store is bounded by what it may hold itself ([`Limits`],
//! docs/limits.md): at most [`MAX_CLIENTS_PER_NODE`] clients, each with at most our own
//! `max_channels_per_client` channels (the nodes of a cluster share their configuration) of a
//! plausible name, members within the limits of `entry.rs`, and [`MAX_BYTES_PER_NODE`] of
//! entries, names and members in all. A malformed item is dropped on arrival; a node that
//! goes over a limit is dropped whole and reported ([`Replica::take_overflowed`]), for the
//! cluster module to refuse it for a while. The number of nodes is bounded there
//! (`src/cluster/directory.rs`).
//!
//! A client belongs to the node whose join (or snapshot) brought it first: a join, leave,
//! subscribe or unsubscribe of that id from any other node is ignored (logged once per node),
//! so a node cannot remove or take over another's clients.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::rc::Rc;

use serde_json::value::RawValue;

use super::entry::{self, ChannelMember, Member, Subscription};
use super::ids::ClientId;
use super::members::MemberDelta;

/// A node id, shared by all of that node's entries.
pub type NodeId = Rc<str>;

/// Presence order across the cluster: connection time, then node, then the node's own order.
/// Every node computes the same order from the same data.
pub(crate) type OrderKey = (u64, NodeId, u64);

/// The most clients kept for one other node: a node's clients are bounded by its open-file
/// limit, whose usual ceiling (Linux's `fs.nr_open`) is 2^20.
pub(crate) const MAX_CLIENTS_PER_NODE: usize = 1 << 20;
/// The most bytes of entries, channel names and members kept for one other node (about 150
/// bytes a client with a few subscriptions: a million clients fit).
pub(crate) const MAX_BYTES_PER_NODE: usize = 256 << 20;
/// The most nodes whose ownership conflicts are logged (then silently ignored).
const MAX_WARNED: usize = 64;

/// What one other node may make us store (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Limits {
    pub clients: usize,
    /// Channels per client: our own `max_channels_per_client`.
    pub subscriptions: usize,
    pub bytes: usize,
}

impl Limits {
    pub(crate) fn new(max_channels_per_client: usize) -> Limits {
        Limits {
            clients: MAX_CLIENTS_PER_NODE,
            subscriptions: max_channels_per_client,
            bytes: MAX_BYTES_PER_NODE,
        }
    }
}

impl Default for Limits {
    /// The most `max_channels_per_client` can be (the configuration's maximum, 100,000).
    fn default() -> Limits {
        Limits::new(100_000)
    }
}

/// A member as a subscription holds it.
#[derive(Debug, Clone)]
struct Joined {
    user: Rc<str>,
    info: Rc<str>,
}

#[derive(Debug)]
struct RemoteClient {
    key: OrderKey,
    entry: Box<RawValue>,
    /// Its channels, each with the member it joined as, if any.
    subs: HashMap<Rc<str>, Option<Joined>>,
}

/// Other nodes' clients (see the module docs).
#[derive(Debug, Default)]
pub(crate) struct Replica {
    clients: HashMap<ClientId, RemoteClient>,
    order: BTreeMap<OrderKey, ClientId>,
    by_node: HashMap<NodeId, HashSet<ClientId>>,
    /// Channel -> its subscribers on other nodes.
    channels: HashMap<Rc<str>, BTreeSet<ClientId>>,
    limits: Limits,
    /// Bytes stored per node (see [`Limits`]).
    bytes: HashMap<NodeId, usize>,
    /// Nodes dropped for going over a limit, not yet taken.
    overflowed: Vec<NodeId>,
    /// Nodes whose ownership conflicts were logged.
    warned: HashSet<NodeId>,
}

impl Replica {
    pub(crate) fn new(limits: Limits) -> Replica {
        Replica {
            limits,
            ..Replica::default()
        }
    }

    /// Nodes dropped for going over a limit since the last call.
    pub(crate) fn take_overflowed(&mut self) -> Vec<NodeId> {
        std::mem::take(&mut self.overflowed)
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

    /// The presence entries of other nodes with their order keys.
    pub(crate) fn entries(&self) -> impl Iterator<Item = (&OrderKey, &RawValue)> + '_ {
        self.order.iter().filter_map(|(key, id)| {
            let client = self.clients.get(id)?;
            Some((key, &*client.entry))
        })
    }

    /// Every channel with subscribers on other nodes, and how many.
    pub(crate) fn channels(&self) -> impl Iterator<Item = (&str, usize)> + '_ {
        self.channels.iter().map(|(name, ids)| (&**name, ids.len()))
    }

    /// The subscribers of `channel` on other nodes, sorted by id.
    pub(crate) fn subscribers(&self, channel: &str) -> impl Iterator<Item = &str> + '_ {
        self.channels
            .get(channel)
            .into_iter()
            .flat_map(|ids| ids.iter().map(ClientId::as_str))
    }

    /// How many clients of other nodes are subscribed to `channel`.
    pub(crate) fn subscriber_count(&self, channel: &str) -> usize {
        self.channels.get(channel).map_or(0, BTreeSet::len)
    }

    /// A client of `node` (a join, or part of a snapshot). An id already known of `node` is
    /// replaced, subscriptions included; returns their member counts. A malformed member, or
    /// an id another node has, is ignored; a node at its limits is dropped.
    pub(crate) fn insert(&mut self, node: &str, member: Member, deltas: &mut Vec<MemberDelta>) {
        let Some(id) = ClientId::parse(&member.id) else {
            return;
        };
        if !self.owned_by(node, &id) {
            return;
        }
        let Ok(entry) = RawValue::from_string(member.entry) else {
            return;
        };
        self.remove(node, &id, deltas);
        let node: NodeId = match self.by_node.get_key_value(node) {
            Some((n, _)) => Rc::clone(n),
            None => node.into(),
        };
        let clients = self.by_node.get(&node).map_or(0, HashSet::len);
        if clients >= self.limits.clients || !self.charge(&node, entry.get().len()) {
            self.overflow(&node, deltas);
            return;
        }
        let key = (member.connected_at, Rc::clone(&node), member.seq);
        self.order.insert(key.clone(), id);
        self.by_node.entry(node).or_default().insert(id);
        let subs = HashMap::new();
        self.clients.insert(id, RemoteClient { key, entry, subs });
    }

    /// A client of `node` left; false if it was not known (or not `node`'s).
    pub(crate) fn remove(
        &mut self,
        node: &str,
        id: &ClientId,
        deltas: &mut Vec<MemberDelta>,
    ) -> bool {
        if !self.owned_by(node, id) {
            return false;
        }
        let Some(client) = self.clients.remove(id) else {
            return false;
        };
        let cost = client.entry.get().len()
            + client
                .subs
                .iter()
                .map(|(c, j)| sub_cost(c, j.as_ref()))
                .sum::<usize>();
        self.refund(&client.key.1, cost);
        self.order.remove(&client.key);
        if let Some(ids) = self.by_node.get_mut(&client.key.1) {
            ids.remove(id);
            if ids.is_empty() {
                self.by_node.remove(&client.key.1);
            }
        }
        self.drop_subs(id, client.subs, deltas);
        true
    }

    /// Forgets every client of `node`; false if it had none.
    pub(crate) fn remove_node(&mut self, node: &str, deltas: &mut Vec<MemberDelta>) -> bool {
        self.bytes.remove(node);
        let Some(ids) = self.by_node.remove(node) else {
            return false;
        };
        for id in &ids {
            if let Some(client) = self.clients.remove(id) {
                self.order.remove(&client.key);
                self.drop_subs(id, client.subs, deltas);
            }
        }
        !ids.is_empty()
    }

    /// A client of `node` subscribed (again: its member is replaced). Ignored for a client
    /// that is not `node`'s, a name no channel can have, a malformed member, or a client at
    /// our `max_channels_per_client` (a node with a higher limit, during a configuration
    /// change, keeps its members); a node at its bytes is dropped.
    pub(crate) fn subscribe(
        &mut self,
        node: &str,
        sub: Subscription,
        deltas: &mut Vec<MemberDelta>,
    ) {
        let Some(id) = ClientId::parse(&sub.id) else {
            return;
        };
        if !entry::is_plausible_channel(&sub.channel)
            || !sub.member.as_ref().map_or(true, ChannelMember::is_valid)
        {
            return;
        }
        if !self.owned_by(node, &id) {
            return;
        }
        let Some(client) = self.clients.get(&id) else {
            return;
        };
        let node = Rc::clone(&client.key.1);
        let old_cost = client
            .subs
            .get(sub.channel.as_str())
            .map(|j| sub_cost(&sub.channel, j.as_ref()));
        let new_cost = sub.channel.len()
            + sub
                .member
                .as_ref()
                .map_or(0, |m| m.user.len() + m.info.len());
        if old_cost.is_none() && client.subs.len() >= self.limits.subscriptions {
            return;
        }
        if let Some(cost) = old_cost {
            self.refund(&node, cost);
        }
        if !self.charge(&node, new_cost) {
            self.overflow(&node, deltas);
            return;
        }
        let Some(client) = self.clients.get_mut(&id) else {
            return;
        };
        let channel: Rc<str> = match self.channels.get_key_value(sub.channel.as_str()) {
            Some((name, _)) => Rc::clone(name),
            None => sub.channel.as_str().into(),
        };
        let joined = sub.member.map(|m| Joined {
            user: m.user.into(),
            info: m.info.into(),
        });
        if let Some(j) = &joined {
            deltas.push(delta(&channel, j, true));
        }
        let old = client.subs.insert(Rc::clone(&channel), joined);
        if let Some(Some(j)) = &old {
            deltas.push(delta(&channel, j, false));
        }
        self.channels.entry(channel).or_default().insert(id);
    }

    /// A client of `node` unsubscribed; nothing if it was not subscribed.
    pub(crate) fn unsubscribe(
        &mut self,
        node: &str,
        id: &str,
        channel: &str,
        deltas: &mut Vec<MemberDelta>,
    ) {
        let Some(id) = ClientId::parse(id) else {
            return;
        };
        let Some(client) = self.clients.get_mut(&id).filter(|c| &*c.key.1 == node) else {
            return;
        };
        let Some((channel, joined)) = client.subs.remove_entry(channel) else {
            return;
        };
        let node = Rc::clone(&client.key.1);
        self.refund(&node, sub_cost(&channel, joined.as_ref()));
        if let Some(j) = &joined {
            deltas.push(delta(&channel, j, false));
        }
        self.unlist(&id, &channel);
    }

    /// The channels client `id` of another node is subscribed to.
    pub(crate) fn channels_of(&self, id: &ClientId) -> Vec<Rc<str>> {
        self.clients
            .get(id)
            .map(|c| c.subs.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// The channels any client of `node` is subscribed to (with repeats).
    pub(crate) fn channels_of_node(&self, node: &str) -> Vec<Rc<str>> {
        self.by_node
            .get(node)
            .into_iter()
            .flatten()
            .flat_map(|id| self.channels_of(id))
            .collect()
    }

    /// Whether `id` is unknown or `node`'s; logs (once per node) when another node has it.
    fn owned_by(&mut self, node: &str, id: &ClientId) -> bool {
        let Some(owner) = self.clients.get(id).map(|c| &c.key.1) else {
            return true;
        };
        if &**owner == node {
            return true;
        }
        if self.warned.len() < MAX_WARNED && !self.warned.contains(node) {
            log::warn!(
                "cluster: node {node} sent a change for client {} of node {owner}; ignoring it",
                id.as_str()
            );
            self.warned.insert(node.into());
        }
        false
    }

    /// Adds `cost` bytes to `node`'s account; false (nothing added) beyond the limit.
    fn charge(&mut self, node: &NodeId, cost: usize) -> bool {
        let used = self.bytes.entry(Rc::clone(node)).or_default();
        if used.saturating_add(cost) > self.limits.bytes {
            return false;
        }
        *used += cost;
        true
    }

    fn refund(&mut self, node: &str, cost: usize) {
        if let Some(used) = self.bytes.get_mut(node) {
            *used = used.saturating_sub(cost);
        }
    }

    /// `node` went over a limit: everything of it is dropped, and it is reported.
    fn overflow(&mut self, node: &NodeId, deltas: &mut Vec<MemberDelta>) {
        self.remove_node(node, deltas);
        if !self.overflowed.contains(node) {
            self.overflowed.push(Rc::clone(node));
        }
    }

    fn drop_subs(
        &mut self,
        id: &ClientId,
        subs: HashMap<Rc<str>, Option<Joined>>,
        deltas: &mut Vec<MemberDelta>,
    ) {
        for (channel, joined) in subs {
            if let Some(j) = &joined {
                deltas.push(delta(&channel, j, false));
            }
            self.unlist(id, &channel);
        }
    }

    fn unlist(&mut self, id: &ClientId, channel: &str) {
        if let Some(ids) = self.channels.get_mut(channel) {
            ids.remove(id);
            if ids.is_empty() {
                self.channels.remove(channel);
            }
        }
    }
}

/// What a subscription costs its node's account (see [`Limits`]).
fn sub_cost(channel: &str, joined: Option<&Joined>) -> usize {
    channel.len() + joined.map_or(0, |j| j.user.len() + j.info.len())
}

fn delta(channel: &Rc<str>, j: &Joined, add: bool) -> MemberDelta {
    MemberDelta {
        channel: Rc::clone(channel),
        user: Rc::clone(&j.user),
        info: Rc::clone(&j.info),
        add,
    }
}

#[cfg(test)]
mod tests_support {
    use super::*;

    pub(super) fn m(id: &str, seq: u64, at: u64) -> Member {
        Member {
            id: id.into(),
            seq,
            connected_at: at,
            entry: format!(r#"{{"id":"{id}"}}"#),
        }
    }

    pub(super) fn sub(id: &str, channel: &str, user: Option<&str>) -> Subscription {
        Subscription {
            id: id.into(),
            channel: channel.into(),
            member: user.map(|u| ChannelMember {
                user: u.into(),
                info: format!(r#"{{"name":"{u}"}}"#),
            }),
        }
    }

    /// The deltas as `(channel, user, add)`.
    pub(super) fn brief_deltas(deltas: &mut Vec<MemberDelta>) -> Vec<(String, String, bool)> {
        deltas
            .drain(..)
            .map(|d| (d.channel.to_string(), d.user.to_string(), d.add))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::tests_support::{brief_deltas as brief, m, sub};
    use super::*;

    #[test]
    fn orders_by_time_node_seq() {
        let mut r = Replica::default();
        let mut d = Vec::new();
        r.insert("b", m("BBBBBBB1", 1, 10), &mut d);
        r.insert("a", m("AAAAAAA2", 2, 10), &mut d);
        r.insert("a", m("AAAAAAA1", 1, 10), &mut d);
        r.insert("c", m("CCCCCCC1", 0, 5), &mut d);
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
        assert!(r.remove_node("a", &mut d));
        assert_eq!(r.len(), 2);
        assert!(!r.remove_node("a", &mut d));
        // Re-inserting an id replaces it (no duplicate).
        r.insert("b", m("BBBBBBB1", 9, 1), &mut d);
        assert_eq!(r.len(), 2);
        assert_eq!(r.entries().next().unwrap().0 .0, 1, "moved to its new time");
        assert!(r.remove_node("b", &mut d));
        assert!(d.is_empty());
        // Garbage is not stored.
        r.insert("c", m("short", 1, 1), &mut d);
        r.insert(
            "c",
            Member {
                entry: "{".into(),
                ..m("CCCCCCC9", 1, 1)
            },
            &mut d,
        );
        assert_eq!(r.len(), 1);
    }

    #[test]
    fn subscriptions_count_and_leave_with_their_client_or_node() {
        let mut r = Replica::default();
        let mut d = Vec::new();
        r.insert("b", m("BBBBBBB1", 1, 10), &mut d);
        r.insert("b", m("BBBBBBB2", 2, 10), &mut d);
        r.subscribe("b", sub("BBBBBBB1", "news", None), &mut d);
        r.subscribe("b", sub("BBBBBBB2", "news", None), &mut d);
        r.subscribe("b", sub("BBBBBBB1", "presence-x", Some("u1")), &mut d);
        assert_eq!(brief(&mut d), [("presence-x".into(), "u1".into(), true)]);
        assert_eq!(r.subscriber_count("news"), 2);
        assert_eq!(
            r.subscribers("news").collect::<Vec<_>>(),
            ["BBBBBBB1", "BBBBBBB2"]
        );
        // Subscribing again replaces the member.
        r.subscribe("b", sub("BBBBBBB1", "presence-x", Some("u2")), &mut d);
        assert_eq!(
            brief(&mut d),
            [
                ("presence-x".into(), "u2".into(), true),
                ("presence-x".into(), "u1".into(), false)
            ]
        );
        r.unsubscribe("b", "BBBBBBB2", "news", &mut d);
        r.unsubscribe("b", "BBBBBBB2", "news", &mut d);
        assert!(d.is_empty());
        assert_eq!(r.subscriber_count("news"), 1);
        // The client leaves: its member goes with it, and its channels.
        let id = ClientId::parse("BBBBBBB1").unwrap();
        assert!(r.remove("b", &id, &mut d));
        assert_eq!(brief(&mut d), [("presence-x".into(), "u2".into(), false)]);
        assert_eq!(r.channels().count(), 0);
        // A node's departure takes its members along.
        r.subscribe("b", sub("BBBBBBB2", "presence-x", Some("u3")), &mut d);
        d.clear();
        assert!(r.remove_node("b", &mut d));
        assert_eq!(brief(&mut d), [("presence-x".into(), "u3".into(), false)]);
        assert_eq!(r.channels().count(), 0);
    }

    #[test]
    fn what_another_node_cannot_have_sent_is_dropped() {
        let mut r = Replica::default();
        let mut d = Vec::new();
        r.insert("b", m("BBBBBBB1", 1, 10), &mut d);
        // Unknown client, a client of another node, bad names, bad members.
        r.subscribe("b", sub("ZZZZZZZZ", "news", None), &mut d);
        r.subscribe("c", sub("BBBBBBB1", "news", None), &mut d);
        r.subscribe("b", sub("BBBBBBB1", "", None), &mut d);
        r.subscribe("b", sub("BBBBBBB1", "a\nb", None), &mut d);
        r.subscribe("b", sub("BBBBBBB1", &"x".repeat(201), None), &mut d);
        r.subscribe("b", sub("BBBBBBB1", "presence-x", Some("")), &mut d);
        let mut big = sub("BBBBBBB1", "presence-x", Some("u"));
        big.member.as_mut().unwrap().info = "x".repeat(entry::MAX_INFO_LEN + 1);
        r.subscribe("b", big, &mut d);
        r.unsubscribe("c", "BBBBBBB1", "news", &mut d);
        assert!(d.is_empty());
        assert_eq!(r.channels().count(), 0);
    }
}

#[cfg(test)]
mod bounds {
    use super::tests_support::*;
    use super::*;

    #[test]
    fn a_node_cannot_touch_another_nodes_clients() {
        let mut r = Replica::default();
        let mut d = Vec::new();
        r.insert("b", m("BBBBBBB1", 1, 10), &mut d);
        r.subscribe("b", sub("BBBBBBB1", "presence-x", Some("u1")), &mut d);
        d.clear();
        let id = ClientId::parse("BBBBBBB1").unwrap();
        // A forged leave, join (take-over) or unsubscribe from node c changes nothing.
        assert!(!r.remove("c", &id, &mut d));
        r.insert("c", m("BBBBBBB1", 5, 1), &mut d);
        r.unsubscribe("c", "BBBBBBB1", "presence-x", &mut d);
        r.insert("evil", m("BBBBBBB1", 5, 1), &mut d);
        assert!(d.is_empty());
        assert_eq!(r.node_of(&id).as_deref(), Some("b"));
        assert_eq!(r.subscriber_count("presence-x"), 1);
        assert_eq!(r.entries().next().unwrap().0 .0, 10);
        // The owner's own leave still works.
        assert!(r.remove("b", &id, &mut d));
        assert_eq!(r.len(), 0);
        assert!(r.take_overflowed().is_empty());
    }

    #[test]
    fn a_node_over_its_clients_is_dropped_and_reported() {
        let limits = Limits {
            clients: 3,
            ..Limits::new(10)
        };
        let mut r = Replica::new(limits);
        let mut d = Vec::new();
        r.insert("c", m("CCCCCCC1", 1, 1), &mut d);
        for i in 0..3 {
            r.insert("b", m(&format!("BBBBBBB{i}"), i, 10), &mut d);
        }
        r.subscribe("b", sub("BBBBBBB0", "presence-x", Some("u")), &mut d);
        d.clear();
        assert_eq!(r.len(), 4);
        assert!(r.take_overflowed().is_empty());
        r.insert("b", m("BBBBBBB3", 3, 10), &mut d);
        assert_eq!(r.len(), 1, "only node c is left");
        assert_eq!(
            brief_deltas(&mut d),
            [("presence-x".into(), "u".into(), false)]
        );
        assert_eq!(
            r.take_overflowed().iter().map(|n| &**n).collect::<Vec<_>>(),
            ["b"]
        );
        assert!(r.take_overflowed().is_empty());
    }

    #[test]
    fn subscriptions_per_client_and_bytes_per_node_are_capped() {
        let mut r = Replica::new(Limits::new(2));
        let mut d = Vec::new();
        r.insert("b", m("BBBBBBB1", 1, 10), &mut d);
        for c in ["a", "b", "c"] {
            r.subscribe("b", sub("BBBBBBB1", c, None), &mut d);
        }
        assert_eq!(r.channels().count(), 2, "our max_channels_per_client");
        // Re-subscribing to a channel it has is no new one.
        r.subscribe("b", sub("BBBBBBB1", "a", Some("u")), &mut d);
        assert_eq!(r.subscriber_count("a"), 1);
        assert!(r.take_overflowed().is_empty());

        // Bytes: entries, names and members are counted, and given back.
        let entry = m("BBBBBBB1", 1, 10).entry.len();
        let limits = Limits {
            bytes: 2 * entry + 10,
            ..Limits::new(100)
        };
        let mut r = Replica::new(limits);
        r.insert("b", m("BBBBBBB1", 1, 10), &mut d);
        r.insert("b", m("BBBBBBB2", 2, 10), &mut d);
        r.subscribe("b", sub("BBBBBBB1", "0123456789", None), &mut d);
        r.unsubscribe("b", "BBBBBBB1", "0123456789", &mut d);
        r.subscribe("b", sub("BBBBBBB2", "0123456789", None), &mut d);
        let id = ClientId::parse("BBBBBBB1").unwrap();
        assert!(r.remove("b", &id, &mut d));
        r.insert("b", m("BBBBBBB1", 1, 10), &mut d);
        assert!(r.take_overflowed().is_empty(), "all within the limit");
        r.subscribe("b", sub("BBBBBBB1", "x", None), &mut d);
        assert_eq!(
            r.take_overflowed().iter().map(|n| &**n).collect::<Vec<_>>(),
            ["b"]
        );
        assert_eq!(r.len(), 0);
        assert_eq!(r.channels().count(), 0);
    }
}
