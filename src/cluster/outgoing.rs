//! What a node sends to Redis: the names of its keys and channels, commands, and envelopes
//! for other nodes.

use super::envelope::{Body, Envelope};
use super::Cluster;

impl Cluster {
    pub(super) fn bus(&self) -> String {
        format!("{}:bus", self.ns)
    }

    pub(super) fn inbox(&self, node: &str) -> String {
        format!("{}:node:{node}", self.ns)
    }

    pub(super) fn hash(&self, node: &str) -> String {
        format!("{}:presence:{node}", self.ns)
    }

    pub(super) fn nodes_key(&self) -> String {
        format!("{}:nodes", self.ns)
    }

    /// Queues a command whose reply does not matter. A command that cannot
    /// be queued leaves our hash stale: it is written whole later.
    pub(super) fn command(&mut self, args: &[&[u8]]) -> bool {
        self.tagged(args, 0)
    }

    pub(super) fn tagged(&mut self, args: &[&[u8]], tag: u64) -> bool {
        let ok = self.can_send()
            && self
                .link
                .try_send(args.iter().map(|a| a.to_vec()).collect(), tag);
        if !ok {
            self.announce_needed = true;
        }
        ok
    }

    pub(super) fn envelope(&self, body: Body<'_>) -> Vec<u8> {
        let mut bytes = Vec::new();
        Envelope {
            origin: &self.node,
            body,
        }
        .encode(&mut bytes);
        bytes
    }

    /// A client message for other nodes: counted as sent, or as dropped.
    pub(super) fn publish_message(&mut self, channel: String, body: Body<'_>) -> bool {
        let bytes = self.envelope(body);
        let ok = self.can_send()
            && self
                .link
                .try_send(vec![b"PUBLISH".to_vec(), channel.into_bytes(), bytes], 0);
        if ok {
            self.counts.messages_out += 1;
        } else {
            self.counts.dropped_out += 1;
        }
        ok
    }

    /// Bookkeeping between nodes (joins, leaves, heartbeats, replies).
    pub(super) fn publish_control(&mut self, body: Body<'_>) -> bool {
        let bytes = self.envelope(body);
        let bus = self.bus();
        self.command(&[b"PUBLISH", bus.as_bytes(), &bytes])
    }
}
