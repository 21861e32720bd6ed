//! Channel membership, indexed both ways.
//!
//! `channel -> members` makes a channel message cost O(subscribers), and
//! `member -> channels` makes a disconnect cost O(its channels) rather than
//! a scan of every channel. A channel exists only while it has members, so
//! a client cycling through random names cannot grow the index.
//!
//! Members are kept in subscription order (keyed by a sequence number), so
//! delivery order is deterministic and easy to reason about in tests.
//!
//! A channel's record also keeps its namespace (`namespaces.rs`), resolved
//! once when the channel comes into existence, so nothing per message looks
//! it up again.

use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;

use super::namespaces::{NamespaceId, Namespaces};
use super::ConnId;

/// Longest channel name, in bytes (SPEC section 5).
pub(crate) const MAX_NAME_LEN: usize = 128;

/// Channel names: 1 to 128 bytes, no control characters (SPEC section 5).
/// Control characters are refused because names end up in logs and UIs.
pub(crate) fn is_valid_name(name: &str) -> bool {
    (1..=MAX_NAME_LEN).contains(&name.len()) && !name.chars().any(char::is_control)
}

/// Subscribing would exceed the per-client channel limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TooManyChannels;

/// One channel with members.
#[derive(Debug)]
struct Channel {
    /// Subscription sequence number -> member.
    members: BTreeMap<u64, ConnId>,
    /// Its namespace, resolved when the channel was created.
    namespace: NamespaceId,
}

/// The two-way membership index.
#[derive(Debug, Default)]
pub(crate) struct Channels {
    /// Channel name -> its record.
    members: HashMap<Rc<str>, Channel>,
    /// Member -> (channel name -> its subscription sequence number). The
    /// name is shared with `members`, so it is stored once.
    subscriptions: HashMap<ConnId, HashMap<Rc<str>, u64>>,
    next_seq: u64,
}

impl Channels {
    /// Subscribes `conn` to `name`; `Ok(true)` when it was not subscribed
    /// before. Subscribing again is a no-op (`Ok(false)`) that keeps the
    /// original position and does not count twice against `max`. A channel
    /// created by it takes its namespace from `namespaces`.
    pub(crate) fn subscribe(
        &mut self,
        conn: ConnId,
        name: &str,
        max: usize,
        namespaces: &Namespaces,
    ) -> Result<bool, TooManyChannels> {
        let subs = self.subscriptions.entry(conn).or_default();
        if subs.contains_key(name) {
            return Ok(false);
        }
        if subs.len() >= max {
            if subs.is_empty() {
                // `max` is 0: do not leave an empty entry behind.
                self.subscriptions.remove(&conn);
            }
            return Err(TooManyChannels);
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        let key = match self.members.get_key_value(name) {
            Some((key, _)) => Rc::clone(key),
            None => Rc::from(name),
        };
        subs.insert(Rc::clone(&key), seq);
        self.members
            .entry(key)
            .or_insert_with(|| Channel {
                members: BTreeMap::new(),
                namespace: namespaces.lookup(name),
            })
            .members
            .insert(seq, conn);
        Ok(true)
    }

    /// Unsubscribes `conn` from `name`; a no-op (false) when it was not
    /// subscribed.
    pub(crate) fn unsubscribe(&mut self, conn: ConnId, name: &str) -> bool {
        let Some(subs) = self.subscriptions.get_mut(&conn) else {
            return false;
        };
        let Some(seq) = subs.remove(name) else {
            return false;
        };
        if subs.is_empty() {
            self.subscriptions.remove(&conn);
        }
        self.remove_member(name, seq);
        true
    }

    /// Removes `conn` from every channel it is in (it disconnected); returns their names.
    pub(crate) fn remove_conn(&mut self, conn: ConnId) -> Vec<Rc<str>> {
        let Some(subs) = self.subscriptions.remove(&conn) else {
            return Vec::new();
        };
        let mut names = Vec::with_capacity(subs.len());
        for (name, seq) in subs {
            self.remove_member(&name, seq);
            names.push(name);
        }
        names
    }

    /// Whether `conn` is subscribed to `name`.
    pub(crate) fn is_member(&self, conn: ConnId, name: &str) -> bool {
        self.subscriptions
            .get(&conn)
            .is_some_and(|subs| subs.contains_key(name))
    }

    /// The channels `conn` is in (in no particular order).
    pub(crate) fn channels_of(&self, conn: ConnId) -> impl Iterator<Item = &str> + '_ {
        self.subscriptions
            .get(&conn)
            .into_iter()
            .flat_map(|subs| subs.keys().map(|name| &**name))
    }

    fn remove_member(&mut self, name: &str, seq: u64) {
        if let Some(channel) = self.members.get_mut(name) {
            channel.members.remove(&seq);
            if channel.members.is_empty() {
                self.members.remove(name);
            }
        }
    }

    /// The members of `name` in subscription order (none for an unknown channel).
    pub(crate) fn members(&self, name: &str) -> impl Iterator<Item = ConnId> + '_ {
        self.members
            .get(name)
            .into_iter()
            .flat_map(|channel| channel.members.values().copied())
    }

    /// The namespace of `name`, if it has members (resolved when it was created).
    pub(crate) fn namespace(&self, name: &str) -> Option<NamespaceId> {
        self.members.get(name).map(|channel| channel.namespace)
    }

    /// Resolves every channel's namespace again, in `namespaces` (new rules).
    pub(crate) fn resolve_namespaces(&mut self, namespaces: &Namespaces) {
        for (name, channel) in &mut self.members {
            channel.namespace = namespaces.lookup(name);
        }
    }

    /// Whether `name` has any member.
    pub(crate) fn has_members(&self, name: &str) -> bool {
        self.members.contains_key(name)
    }

    /// How many channels `conn` is subscribed to.
    #[cfg(test)]
    pub(crate) fn count(&self, conn: ConnId) -> usize {
        self.subscriptions.get(&conn).map_or(0, HashMap::len)
    }

    /// How many channels have members.
    pub(crate) fn channel_count(&self) -> usize {
        self.members.len()
    }

    /// Every channel with members, and how many (in no particular order).
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&str, usize)> + '_ {
        self.members
            .iter()
            .map(|(name, channel)| (&**name, channel.members.len()))
    }

    /// How many connections are subscribed to anything.
    #[cfg(test)]
    pub(crate) fn member_count(&self) -> usize {
        self.subscriptions.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members(c: &Channels, name: &str) -> Vec<ConnId> {
        c.members(name).collect()
    }

    /// Subscribes with the default namespaces only.
    fn sub(
        c: &mut Channels,
        conn: ConnId,
        name: &str,
        max: usize,
    ) -> Result<bool, TooManyChannels> {
        c.subscribe(conn, name, max, &Namespaces::default())
    }

    #[test]
    fn name_rules() {
        assert!(is_valid_name("a"));
        assert!(is_valid_name("chat room/éü 💬"));
        assert!(is_valid_name(&"x".repeat(128)));
        assert!(!is_valid_name(""));
        assert!(!is_valid_name(&"x".repeat(129)));
        // 128 bytes is the limit, not 128 characters.
        assert!(!is_valid_name(&"é".repeat(65)));
        assert!(is_valid_name(&"é".repeat(64)));
        for bad in ["a\nb", "\0", "tab\t", "del\u{7f}", "c1\u{85}"] {
            assert!(!is_valid_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn members_are_in_subscription_order() {
        let mut c = Channels::default();
        for conn in [5, 1, 9, 3] {
            sub(&mut c, conn, "chat", 10).unwrap();
        }
        assert_eq!(members(&c, "chat"), [5, 1, 9, 3]);
        // Re-subscribing keeps the original position.
        sub(&mut c, 5, "chat", 10).unwrap();
        assert_eq!(members(&c, "chat"), [5, 1, 9, 3]);
        c.unsubscribe(1, "chat");
        sub(&mut c, 1, "chat", 10).unwrap();
        assert_eq!(members(&c, "chat"), [5, 9, 3, 1]);
    }

    #[test]
    fn limit_counts_distinct_channels() {
        let mut c = Channels::default();
        sub(&mut c, 1, "a", 2).unwrap();
        sub(&mut c, 1, "b", 2).unwrap();
        assert_eq!(sub(&mut c, 1, "c", 2), Err(TooManyChannels));
        // Already subscribed: fine even at the limit, and not new.
        assert_eq!(sub(&mut c, 1, "a", 2), Ok(false));
        assert_eq!(c.count(1), 2);
        assert!(!c.has_members("c"));
        assert!(c.unsubscribe(1, "a"));
        assert!(!c.unsubscribe(1, "a"));
        assert_eq!(sub(&mut c, 1, "c", 2), Ok(true));
        let mut all: Vec<_> = c.iter().collect();
        all.sort_unstable();
        assert_eq!(all, [("b", 1), ("c", 1)]);
    }

    #[test]
    fn zero_limit_leaves_nothing_behind() {
        let mut c = Channels::default();
        assert_eq!(sub(&mut c, 1, "a", 0), Err(TooManyChannels));
        assert_eq!(c.member_count(), 0);
        assert_eq!(c.channel_count(), 0);
    }

    #[test]
    fn emptied_channels_and_members_are_removed() {
        let mut c = Channels::default();
        sub(&mut c, 1, "a", 10).unwrap();
        sub(&mut c, 1, "b", 10).unwrap();
        sub(&mut c, 2, "b", 10).unwrap();
        c.unsubscribe(1, "a");
        assert!(!c.has_members("a"));
        assert_eq!(c.channel_count(), 1);
        assert_eq!(c.channels_of(2).collect::<Vec<_>>(), ["b"]);
        assert_eq!(c.remove_conn(2), [Rc::from("b")]);
        assert_eq!(c.channels_of(2).count(), 0);
        assert_eq!(members(&c, "b"), [1]);
        c.unsubscribe(1, "b");
        assert_eq!(c.channel_count(), 0);
        assert_eq!(c.member_count(), 0);
    }

    #[test]
    fn a_channel_keeps_the_namespace_it_was_created_in() {
        use super::super::namespaces::{Namespace, NamespaceId, SubscribePolicy};
        let rules = Namespaces::new([Namespace {
            prefix: "order.".into(),
            subscribe: SubscribePolicy::Token,
            ..Namespace::default_rules()
        }]);
        let order = rules.lookup("order.1");
        assert_ne!(order, NamespaceId::DEFAULT);
        let mut c = Channels::default();
        c.subscribe(1, "order.1", 10, &rules).unwrap();
        c.subscribe(1, "chat", 10, &rules).unwrap();
        assert_eq!(c.namespace("order.1"), Some(order));
        assert_eq!(c.namespace("chat"), Some(NamespaceId::DEFAULT));
        assert_eq!(c.namespace("nobody"), None);
        // Later subscribers do not resolve it again; new rules do.
        c.subscribe(2, "order.1", 10, &Namespaces::default())
            .unwrap();
        assert_eq!(c.namespace("order.1"), Some(order));
        c.resolve_namespaces(&Namespaces::default());
        assert_eq!(c.namespace("order.1"), Some(NamespaceId::DEFAULT));
        // A channel that empties and comes back is resolved afresh.
        c.remove_conn(1);
        c.remove_conn(2);
        c.subscribe(3, "order.1", 10, &rules).unwrap();
        assert_eq!(c.namespace("order.1"), Some(order));
    }

    #[test]
    fn unknown_things_are_no_ops() {
        let mut c = Channels::default();
        c.unsubscribe(1, "a");
        c.remove_conn(1);
        sub(&mut c, 2, "a", 10).unwrap();
        c.unsubscribe(1, "a");
        c.unsubscribe(2, "other");
        assert_eq!(members(&c, "a"), [2]);
        assert_eq!(members(&c, "nope"), Vec::<ConnId>::new());
    }
}
