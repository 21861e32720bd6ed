//! Which node reports a channel's transitions (`channel_occupied` / `channel_vacated`,
//! `member_added` / `member_removed`) in a cluster, so that each is reported once, whatever
//! caused it and on whichever node.
//!
//! Every node judges transitions on its own view of the cluster, for every cause: its own
//! connections joining and leaving, and other nodes' subscriptions, leaves, snapshots and
//! departures as the replica hears of them. The views converge, so each node sees every
//! transition; only the channel's *reporter* reports it. The reporter of a channel is the live
//! node with the highest rendezvous weight `hash(node, channel)` (highest-random-weight
//! hashing): every node computes the same choice from the same set of live nodes, a node
//! joining or leaving moves only the channels it wins or held, and when the reporter dies the
//! next one takes over, and reports what the dead node's departure changed.
//!
//! A node reports nothing while its view is not to be trusted (before the cluster module has
//! the first snapshots of every live node, and while Redis is unreachable): see
//! [`Router::set_reporting`]. Without a cluster every transition is reported.

use std::rc::Rc;

use super::replica::NodeId;
use super::Router;
use crate::events::ChannelActivity;

/// Who reports, as this node sees the cluster.
#[derive(Debug, Default)]
pub(crate) struct Reporter {
    /// The other live nodes, sorted.
    live: Vec<NodeId>,
    /// Whether this node's view is trusted enough to report from.
    on: bool,
}

impl Reporter {
    /// Whether this node reports at all.
    pub(crate) fn is_on(&self) -> bool {
        self.on
    }

    /// Whether `me` reports `channel`'s transitions.
    pub(crate) fn reports(&self, me: &str, channel: &str) -> bool {
        if !self.on {
            return false;
        }
        let mine = weight(me, channel);
        // Ties (as good as impossible) go to the smallest node id, the same on every node.
        self.live.iter().all(|node| {
            (weight(node, channel), std::cmp::Reverse(&**node)) < (mine, std::cmp::Reverse(me))
        })
    }
}

/// The rendezvous weight of `node` for `channel`: FNV-1a over both (with a separator), then a
/// 64-bit finaliser, so that it is the same on every node and every build.
fn weight(node: &str, channel: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in node.bytes().chain([0xff]).chain(channel.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    // splitmix64's finaliser: FNV's low bits alone mix poorly.
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// Occupancy of some channels before a change from another node, to judge it after.
pub(super) struct Before(Vec<(Rc<str>, bool)>);

impl Router {
    /// The other live nodes of the cluster (the cluster module's directory), which share the
    /// reporting of channel transitions with this one.
    pub fn set_live_nodes<'a>(&mut self, nodes: impl IntoIterator<Item = &'a str>) {
        if let Some(remote) = self.remote.as_mut() {
            let mut live: Vec<NodeId> = nodes
                .into_iter()
                .filter(|n| *n != remote.node())
                .map(NodeId::from)
                .collect();
            live.sort();
            live.dedup();
            remote.reporter.live = live;
        }
    }

    /// Whether this node's view of the cluster can be reported from (see the module docs):
    /// off from [`Router::enable_cluster`] until the cluster module turns it on.
    pub fn set_reporting(&mut self, on: bool) {
        if let Some(remote) = self.remote.as_mut() {
            remote.reporter.on = on;
        }
    }

    /// Whether this node reports `channel`'s transitions: always without a cluster.
    pub(super) fn reports(&self, channel: &str) -> bool {
        self.remote
            .as_deref()
            .map_or(true, |r| r.reporter.reports(r.node(), channel))
    }

    /// Fires `activity` if this node reports its channel.
    pub(super) fn report(&mut self, activity: &ChannelActivity<'_>) {
        let channel = match activity {
            ChannelActivity::Occupied { channel }
            | ChannelActivity::Vacated { channel }
            | ChannelActivity::MemberAdded { channel, .. }
            | ChannelActivity::MemberRemoved { channel, .. } => *channel,
            // Not a transition: reported by the sender's (or subscriber's) node.
            ChannelActivity::ClientEvent { .. } | ChannelActivity::CacheMiss { .. } => {
                self.handler.channel(activity);
                return;
            }
        };
        if self.reports(channel) {
            self.handler.channel(activity);
        }
    }

    /// Notes whether each of `channels` is occupied, before a change from another node, when
    /// this node may report any of them (else nothing is kept).
    pub(super) fn occupancy_before(&self, channels: Vec<Rc<str>>) -> Before {
        let on = self.remote.as_deref().is_some_and(|r| r.reporter.on);
        if !on || channels.is_empty() {
            return Before(Vec::new());
        }
        let mut channels = channels;
        channels.sort();
        channels.dedup();
        Before(
            channels
                .into_iter()
                .filter(|c| self.reports(c))
                .map(|c| {
                    let occupied = self.occupied(&c);
                    (c, occupied)
                })
                .collect(),
        )
    }

    /// Reports the channels of `before` that became occupied.
    pub(super) fn report_occupied(&mut self, before: &Before) {
        for (channel, was) in &before.0 {
            if !was && self.occupied(channel) {
                self.report(&ChannelActivity::Occupied { channel });
            }
        }
    }

    /// Reports the channels of `before` that became vacant.
    pub(super) fn report_vacated(&mut self, before: &Before) {
        for (channel, was) in &before.0 {
            if *was && !self.occupied(channel) {
                self.report(&ChannelActivity::Vacated { channel });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reporter(live: &[&str]) -> Reporter {
        Reporter {
            live: live.iter().map(|n| NodeId::from(*n)).collect(),
            on: true,
        }
    }

    #[test]
    fn exactly_one_live_node_reports_each_channel_and_the_choice_is_stable() {
        let nodes = ["n1", "n2", "n3"];
        let mut per_node = [0usize; 3];
        for i in 0..300 {
            let channel = format!("channel-{i}");
            let winners: Vec<usize> = (0..3)
                .filter(|&me| {
                    let others: Vec<&str> = (0..3).filter(|&o| o != me).map(|o| nodes[o]).collect();
                    reporter(&others).reports(nodes[me], &channel)
                })
                .collect();
            assert_eq!(winners.len(), 1, "{channel}: {winners:?}");
            per_node[winners[0]] += 1;
            // n3 leaves: the channels n1 or n2 held stay theirs.
            if winners[0] != 2 {
                let me = nodes[winners[0]];
                let other = nodes[1 - winners[0]];
                assert!(reporter(&[other]).reports(me, &channel));
            }
        }
        assert!(per_node.iter().all(|&n| n > 60), "spread: {per_node:?}");
        // Off: nobody reports; alone: this node reports all.
        let off = Reporter::default();
        assert!(!off.reports("n1", "c"));
        assert!(reporter(&[]).reports("n1", "c"));
    }
}
