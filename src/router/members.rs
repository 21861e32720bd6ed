//! Presence channel members across the cluster (SPEC section 13): one member per user,
//! however many connections it has on however many nodes.
//!
//! Every subscription that joined as a member counts for its `(channel, user)`: this node's
//! own (bound to their connection here) and other nodes' (held by the replica, which hands
//! over their counts as [`MemberDelta`]s). A member appears when its count goes 0 -> 1 and
//! disappears at 1 -> 0; those are the [`Change`]s the dialect announces (`member_added`,
//! `member_removed`) to its local subscribers only, so that every node tells its own clients
//! once. A batch of deltas (a node's resync, a node gone) is judged by its net effect: a user
//! whose connections were replaced by the same number of others never left.
//!
//! A member's info is what its first counted connection gave, kept while it stays.
//!
//! The same counting serves the router's own channel presence (SPEC section 15.3,
//! `channel_presence.rs`), where every subscription is a member of its own (the user is the
//! client id, the info its `user`): so join, leave, a dead node's subscribers and resyncs work
//! alike for both dialects, from one replica. Members are also kept in the order they appeared
//! here (subscription order, as this node learned of them), which that presence lists.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::rc::Rc;

use serde::ser::{Serialize, SerializeStruct, Serializer};
use serde_json::value::RawValue;

use super::dialect::{Dialect, MemberNotice};
use super::{ConnId, Outbox, Router};

/// One more or one less connection of `user` on `channel`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MemberDelta {
    pub channel: Rc<str>,
    pub user: Rc<str>,
    /// The info that connection gave (used when it makes the member appear).
    pub info: Rc<str>,
    pub add: bool,
}

/// A member appeared or disappeared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Change {
    Added {
        channel: Rc<str>,
        user: Rc<str>,
        info: Rc<str>,
    },
    Removed {
        channel: Rc<str>,
        user: Rc<str>,
        /// The info it had.
        info: Rc<str>,
    },
}

impl Change {
    pub(crate) fn channel(&self) -> &str {
        match self {
            Change::Added { channel, .. } | Change::Removed { channel, .. } => channel,
        }
    }
}

#[derive(Debug)]
struct Member {
    /// Its connections on the channel, in the cluster.
    conns: u64,
    info: Rc<str>,
    /// When it appeared (a number of [`Members::next_seq`]), its key in [`Channel::order`].
    seq: u64,
}

/// The members of one channel.
#[derive(Debug, Default)]
struct Channel {
    by_user: BTreeMap<Rc<str>, Member>,
    /// Appearance order -> user.
    order: BTreeMap<u64, Rc<str>>,
}

/// A local connection's membership of one channel.
#[derive(Debug, Clone)]
struct Binding {
    channel: Rc<str>,
    user: Rc<str>,
    info: Rc<str>,
}

/// The members of every presence channel (see the module docs).
#[derive(Debug, Default)]
pub(crate) struct Members {
    channels: HashMap<Rc<str>, Channel>,
    /// What each local connection joined as.
    local: HashMap<ConnId, Vec<Binding>>,
    next_seq: u64,
}

impl Members {
    /// Applies `deltas` and returns the members that appeared or disappeared, by net effect,
    /// in the order their keys first appear in `deltas`. Additions count before removals, so a
    /// member whose connection was replaced by another never leaves, and keeps its place and
    /// its first info.
    pub(crate) fn apply(&mut self, deltas: Vec<MemberDelta>) -> Vec<Change> {
        // (channel, user, its info before the batch)
        type Key = (Rc<str>, Rc<str>, Option<Rc<str>>);
        let mut keys: Vec<Key> = Vec::new();
        let mut seen = HashSet::new();
        for d in &deltas {
            if seen.insert((Rc::clone(&d.channel), Rc::clone(&d.user))) {
                let before = self.info(&d.channel, &d.user).cloned();
                keys.push((Rc::clone(&d.channel), Rc::clone(&d.user), before));
            }
        }
        for d in deltas.iter().filter(|d| d.add) {
            self.count(d);
        }
        for d in deltas.iter().filter(|d| !d.add) {
            self.count(d);
        }
        keys.into_iter()
            .filter_map(|(channel, user, before)| {
                match (before, self.info(&channel, &user).cloned()) {
                    (None, Some(info)) => Some(Change::Added {
                        channel,
                        user,
                        info,
                    }),
                    (Some(info), None) => Some(Change::Removed {
                        channel,
                        user,
                        info,
                    }),
                    _ => None,
                }
            })
            .collect()
    }

    fn count(&mut self, d: &MemberDelta) {
        if d.add {
            let channel = match self.channels.get_key_value(&d.channel) {
                Some((key, _)) => Rc::clone(key),
                None => Rc::clone(&d.channel),
            };
            let members = self.channels.entry(channel).or_default();
            let member = members
                .by_user
                .entry(Rc::clone(&d.user))
                .or_insert_with(|| {
                    let seq = self.next_seq;
                    self.next_seq += 1;
                    members.order.insert(seq, Rc::clone(&d.user));
                    Member {
                        conns: 0,
                        info: Rc::clone(&d.info),
                        seq,
                    }
                });
            member.conns += 1;
            return;
        }
        let Some(members) = self.channels.get_mut(&d.channel) else {
            return;
        };
        let Some(member) = members.by_user.get_mut(&d.user) else {
            return;
        };
        member.conns = member.conns.saturating_sub(1);
        if member.conns == 0 {
            let seq = member.seq;
            members.by_user.remove(&d.user);
            members.order.remove(&seq);
            if members.by_user.is_empty() {
                self.channels.remove(&d.channel);
            }
        }
    }

    fn contains(&self, channel: &str, user: &str) -> bool {
        self.channels
            .get(channel)
            .is_some_and(|m| m.by_user.contains_key(user))
    }

    fn info(&self, channel: &str, user: &str) -> Option<&Rc<str>> {
        self.channels
            .get(channel)?
            .by_user
            .get(user)
            .map(|m| &m.info)
    }

    /// Local connection `conn` joined `channel` as `user` (it was not in it before).
    pub(crate) fn bind(
        &mut self,
        conn: ConnId,
        channel: &str,
        user: &str,
        info: &str,
    ) -> Vec<Change> {
        let binding = Binding {
            channel: channel.into(),
            user: user.into(),
            info: info.into(),
        };
        let delta = delta(&binding, true);
        self.local.entry(conn).or_default().push(binding);
        self.apply(vec![delta])
    }

    /// Local connection `conn` left `channel`; nothing if it was no member there.
    pub(crate) fn unbind(&mut self, conn: ConnId, channel: &str) -> Vec<Change> {
        let Some(bindings) = self.local.get_mut(&conn) else {
            return Vec::new();
        };
        let Some(i) = bindings.iter().position(|b| &*b.channel == channel) else {
            return Vec::new();
        };
        let binding = bindings.swap_remove(i);
        if bindings.is_empty() {
            self.local.remove(&conn);
        }
        self.apply(vec![delta(&binding, false)])
    }

    /// Local connection `conn` is gone: all its memberships end.
    pub(crate) fn unbind_all(&mut self, conn: ConnId) -> Vec<Change> {
        let Some(bindings) = self.local.remove(&conn) else {
            return Vec::new();
        };
        self.apply(bindings.iter().map(|b| delta(b, false)).collect())
    }

    /// The user and info local connection `conn` joined `channel` as, if any.
    pub(crate) fn local(&self, conn: ConnId, channel: &str) -> Option<(&str, &str)> {
        self.local
            .get(&conn)?
            .iter()
            .find(|b| &*b.channel == channel)
            .map(|b| (&*b.user, &*b.info))
    }

    /// How many users are on `channel`.
    pub(crate) fn user_count(&self, channel: &str) -> usize {
        self.channels.get(channel).map_or(0, |m| m.by_user.len())
    }

    /// The users on `channel` with their info, sorted by user id.
    pub(crate) fn users(&self, channel: &str) -> impl Iterator<Item = (&str, &str)> + '_ {
        self.channels
            .get(channel)
            .into_iter()
            .flat_map(|m| m.by_user.iter().map(|(user, m)| (&**user, &*m.info)))
    }

    /// The users on `channel` with their info, in the order they appeared.
    pub(crate) fn in_order(&self, channel: &str) -> impl Iterator<Item = (&str, &str)> + '_ {
        self.channels.get(channel).into_iter().flat_map(|m| {
            m.order
                .values()
                .filter_map(|user| m.by_user.get(user).map(|member| (&**user, &*member.info)))
        })
    }
}

/// A channel's members as `[{"client_id":ID,"user":U}...]`, in the order they appeared; empty
/// when `truncated`.
pub(crate) struct ChannelMembers<'a> {
    members: &'a Members,
    channel: &'a str,
    truncated: bool,
}

impl<'a> ChannelMembers<'a> {
    pub(crate) fn new(members: &'a Members, channel: &'a str, truncated: bool) -> Self {
        ChannelMembers {
            members,
            channel,
            truncated,
        }
    }
}

impl Serialize for ChannelMembers<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        struct Entry<'a>(&'a str, &'a str);
        impl Serialize for Entry<'_> {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                let mut s = serializer.serialize_struct("Member", 2)?;
                s.serialize_field("client_id", self.0)?;
                s.serialize_field("user", user_value(self.1))?;
                s.end()
            }
        }
        let entries = self.members.in_order(self.channel);
        let entries = entries.take(if self.truncated { 0 } else { usize::MAX });
        serializer.collect_seq(entries.map(|(id, user)| Entry(id, user)))
    }
}

/// A member's `user` as JSON: `null` if it is not JSON (member data from another node is not
/// trusted to be). Checked in place, without building a tree.
pub(crate) fn user_value(info: &str) -> &RawValue {
    serde_json::from_str(info).unwrap_or(RawValue::NULL)
}

impl Router {
    /// How many users are on presence channel `channel`, in the cluster.
    pub fn user_count(&self, channel: &str) -> usize {
        self.members.user_count(channel)
    }

    /// Whether `user` is a member of presence channel `channel` (through any connection on
    /// any node).
    pub fn is_member(&self, channel: &str, user: &str) -> bool {
        self.members.contains(channel, user)
    }

    /// The users on presence channel `channel` in the cluster, with the info each joined
    /// with, sorted by user id.
    pub fn channel_users(&self, channel: &str) -> impl Iterator<Item = (&str, &str)> + '_ {
        self.members.users(channel)
    }

    /// Applies member counts from other nodes, tells the local subscribers what changed, and
    /// reports it if this node reports the channel (`reporter.rs`).
    pub(super) fn members_changed(&mut self, deltas: Vec<MemberDelta>, out: &mut impl Outbox) {
        if deltas.is_empty() {
            return;
        }
        let changes = self.members.apply(deltas);
        self.notify_members(&changes, None, out);
        self.report_members(&changes);
    }

    /// Sends each change to the local subscribers of its channel but `except`: on a channel
    /// with channel presence as `join`/`leave` (`channel_presence.rs`), else encoded once by
    /// the foreign dialect for that dialect's subscribers.
    pub(super) fn notify_members(
        &mut self,
        changes: &[Change],
        except: Option<ConnId>,
        out: &mut impl Outbox,
    ) {
        let encode = self.foreign.map(|f| f.member);
        for change in changes {
            // Only a channel with subscribers here has anyone to tell.
            if !self.channels.has_members(change.channel()) {
                continue;
            }
            if self.has_channel_presence(change.channel()) {
                self.announce_presence(change, except, out);
                continue;
            }
            let Some(encode) = encode else {
                continue;
            };
            let mut recipients = self
                .subscribers(change.channel())
                .filter(|&(conn, dialect)| dialect == Dialect::Pusher && Some(conn) != except)
                .map(|(conn, _)| conn)
                .peekable();
            if recipients.peek().is_none() {
                continue;
            }
            let notice = match change {
                Change::Added {
                    channel,
                    user,
                    info,
                } => MemberNotice::Added {
                    channel,
                    user,
                    info,
                },
                Change::Removed { channel, user, .. } => MemberNotice::Removed { channel, user },
            };
            if let Some(frame) = encode(&notice) {
                for conn in recipients {
                    out.send(conn, &frame);
                }
            }
        }
    }
}

fn delta(b: &Binding, add: bool) -> MemberDelta {
    MemberDelta {
        channel: Rc::clone(&b.channel),
        user: Rc::clone(&b.user),
        info: Rc::clone(&b.info),
        add,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(channel: &str, user: &str, info: &str, add: bool) -> MemberDelta {
        MemberDelta {
            channel: channel.into(),
            user: user.into(),
            info: info.into(),
            add,
        }
    }

    fn added(channel: &str, user: &str, info: &str) -> Change {
        Change::Added {
            channel: channel.into(),
            user: user.into(),
            info: info.into(),
        }
    }

    fn removed(channel: &str, user: &str, info: &str) -> Change {
        Change::Removed {
            channel: channel.into(),
            user: user.into(),
            info: info.into(),
        }
    }

    #[test]
    fn a_user_appears_with_its_first_connection_and_goes_with_its_last() {
        let mut m = Members::default();
        assert_eq!(m.bind(1, "p", "u1", "A"), [added("p", "u1", "A")]);
        // The same user elsewhere (another node, another connection here): no change.
        assert!(m.apply(vec![d("p", "u1", "B", true)]).is_empty());
        assert!(m.bind(2, "p", "u1", "C").is_empty());
        assert_eq!(m.users("p").collect::<Vec<_>>(), [("u1", "A")]);
        assert!(m.unbind(1, "p").is_empty());
        assert!(m.unbind(1, "p").is_empty(), "twice is nothing");
        assert!(m.apply(vec![d("p", "u1", "B", false)]).is_empty());
        assert_eq!(m.local(2, "p"), Some(("u1", "C")));
        assert_eq!(m.unbind_all(2), [removed("p", "u1", "A")]);
        assert_eq!(m.user_count("p"), 0);
        assert!(m.channels.is_empty() && m.local.is_empty());
    }

    #[test]
    fn a_batch_counts_by_its_net_effect() {
        let mut m = Members::default();
        m.apply(vec![d("p", "u1", "A", true), d("p", "u2", "B", true)]);
        // A resync: u1's connection replaced by another, u2 gone, u3 new.
        let changes = m.apply(vec![
            d("p", "u1", "A", false),
            d("p", "u2", "B", false),
            d("p", "u1", "A2", true),
            d("p", "u3", "C", true),
        ]);
        assert_eq!(changes, [removed("p", "u2", "B"), added("p", "u3", "C")]);
        assert_eq!(m.user_count("p"), 2);
        // A removal of something never counted changes nothing.
        assert!(m.apply(vec![d("q", "u9", "", false)]).is_empty());
        assert!(m.apply(vec![d("p", "u9", "", false)]).is_empty());
        assert_eq!(
            m.users("p").map(|(u, _)| u).collect::<Vec<_>>(),
            ["u1", "u3"]
        );
    }
}
