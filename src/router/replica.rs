//! The replica of other nodes' clients and their channel subscriptions (SPEC section 11), as
//! this node last heard of them. Pure tables: the cluster module feeds them through the
//! router's `remote_*` methods (`remote.rs`), which turn what changed into presence updates,
//! and into member counts for presence channels ([`MemberDelta`]s, see `members.rs`).
//!
//! What another node can make us store is bounded by what it may hold itself: an entry per
//! client it has, each with at most [`MAX_SUBSCRIPTIONS`] channels of a plausible name, and
//! members within the limits of `entry.rs`. Anything else is dropped on arrival.

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

/// The most channels one client of another node is kept in (`max_channels_per_client` can be
/// set no higher).
pub(crate) const MAX_SUBSCRIPTIONS: usize = crate::config::max::CHANNELS_PER_CLIENT as usize;

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
}

impl Replica {
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

    /// A client of `node` (a join, or part of a snapshot). An id already known is replaced,
    /// subscriptions included; returns their member counts. A malformed member is ignored.
    pub(crate) fn insert(&mut self, node: &str, member: Member, deltas: &mut Vec<MemberDelta>) {
        let Some(id) = ClientId::parse(&member.id) else {
            return;
        };
        let Ok(entry) = RawValue::from_string(member.entry) else {
            return;
        };
        self.remove(&id, deltas);
        let node: NodeId = match self.by_node.get_key_value(node) {
            Some((n, _)) => Rc::clone(n),
            None => node.into(),
        };
        let key = (member.connected_at, Rc::clone(&node), member.seq);
        self.order.insert(key.clone(), id);
        self.by_node.entry(node).or_default().insert(id);
        let subs = HashMap::new();
        self.clients.insert(id, RemoteClient { key, entry, subs });
    }

    /// A client of another node left; false if it was not known.
    pub(crate) fn remove(&mut self, id: &ClientId, deltas: &mut Vec<MemberDelta>) -> bool {
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
        self.drop_subs(id, client.subs, deltas);
        true
    }

    /// Forgets every client of `node`; false if it had none.
    pub(crate) fn remove_node(&mut self, node: &str, deltas: &mut Vec<MemberDelta>) -> bool {
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
    /// [`MAX_SUBSCRIPTIONS`].
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
        let Some(client) = self.clients.get_mut(&id).filter(|c| &*c.key.1 == node) else {
            return;
        };
        if client.subs.len() >= MAX_SUBSCRIPTIONS && !client.subs.contains_key(sub.channel.as_str())
        {
            return;
        }
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

fn delta(channel: &Rc<str>, j: &Joined, add: bool) -> MemberDelta {
    MemberDelta {
        channel: Rc::clone(channel),
        user: Rc::clone(&j.user),
        info: Rc::clone(&j.info),
        add,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(id: &str, seq: u64, at: u64) -> Member {
        Member {
            id: id.into(),
            seq,
            connected_at: at,
            entry: format!(r#"{{"id":"{id}"}}"#),
        }
    }

    fn sub(id: &str, channel: &str, user: Option<&str>) -> Subscription {
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
    fn brief(deltas: &mut Vec<MemberDelta>) -> Vec<(String, String, bool)> {
        deltas
            .drain(..)
            .map(|d| (d.channel.to_string(), d.user.to_string(), d.add))
            .collect()
    }

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
        // Re-inserting an id moves it (no duplicate).
        r.insert("c", m("BBBBBBB1", 9, 1), &mut d);
        assert_eq!(r.len(), 2);
        assert_eq!(
            r.node_of(&ClientId::parse("BBBBBBB1").unwrap()).as_deref(),
            Some("c")
        );
        assert!(!r.remove_node("b", &mut d));
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
        assert_eq!(r.len(), 2);
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
        assert!(r.remove(&id, &mut d));
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
