//! What another node's hash may make this node fetch and store, and keeping our own hash in
//! place (docs/limits.md, "Cluster peers").
//!
//! - A node's hash is fetched whole (`HGETALL`) only after a look at its size (`HLEN`), in
//!   one script ([`FETCH`]). A hash of more than [`MAX_HASH_FIELDS`] fields is not
//!   fetched: its reply would exceed what the RESP
//!   parser accepts (`resp::MAX_ELEMENTS`) and take the command connection down with it, for
//!   every node, at every retry. Such a node, like one whose replica went over the router's
//!   limits (`replica.rs`), is refused (`directory.rs`): it counts as no member of the cluster
//!   and is looked at again after a backoff. One log line per refusal, not per retry.
//! - The heartbeat's `PEXPIRE` of our own hash answers 0 when the hash is gone (its TTL ran
//!   out during a stall, an eviction, a `DEL`): it is written again at once, or a node started
//!   afterwards would never see our clients.
//! - The sorted set of live nodes holds whatever was written to it: the newest
//!   [`MAX_NODES`] only are asked for (as many as are followed). Fetched whole, a set of more
//!   members than one reply may carry failed to parse and dropped the command connection at
//!   every reconnection.

use std::time::Instant;

use super::directory::MAX_NODES;
use super::resp::{Value, MAX_ELEMENTS};
use super::{unix_ms, Cluster, Query};
use crate::router::{Outbox, Router};

/// The most fields a node's hash may have to be fetched: as many as one `HGETALL` reply may
/// carry (two elements a field). A node's fields are its clients plus their subscriptions;
/// its clients are bounded by its open-file limit, so a real node this big is one with half a
/// million connections and no subscriptions, or fewer with more.
pub(super) const MAX_HASH_FIELDS: i64 = (MAX_ELEMENTS / 2) as i64;

/// The script that fetches a hash (`EVAL FETCH 1 KEY MAX_HASH_FIELDS`): `HGETALL` when it has
/// at most `ARGV[1]` fields, else its size (an integer, where `HGETALL` answers an array). One
/// round trip, and atomic: the hash cannot grow between the look and the fetch.
pub(super) const FETCH: &str = "local n = redis.call('HLEN', KEYS[1]) \
    if n > tonumber(ARGV[1]) then return n end \
    return redis.call('HGETALL', KEYS[1])";

impl Cluster {
    /// Whether the reply to [`FETCH`] says `node`'s hash is too big (then the node is
    /// refused).
    pub(super) fn oversized(
        &mut self,
        node: &str,
        value: &Value,
        router: &mut Router,
        out: &mut impl Outbox,
        now: Instant,
    ) -> bool {
        let Value::Integer(fields) = *value else {
            return false;
        };
        if self.directory.syncing(node) {
            let why = format!("its hash has {fields} fields, more than {MAX_HASH_FIELDS}");
            self.refuse_node(node, &why, router, out, now);
        }
        true
    }

    /// Asks for the live nodes: the newest [`MAX_NODES`] that heartbeated within `node_timeout`.
    pub(super) fn list_nodes(&mut self) {
        let nodes = self.nodes_key();
        let since = (unix_ms().saturating_sub(self.timeout.as_millis() as u64)).to_string();
        let most = MAX_NODES.to_string();
        let tag = self.tag(Query::Nodes);
        let newest = [
            b"ZREVRANGEBYSCORE",
            nodes.as_bytes(),
            b"+inf",
            since.as_bytes(),
            b"LIMIT",
            b"0",
            most.as_bytes(),
        ];
        if !self.tagged(&newest, tag) {
            self.queries.remove(&tag);
        }
    }

    /// The reply to [`Cluster::list_nodes`]: every node listed is followed and synced. A reply
    /// that is no list (an error, `+QUEUED`) is ignored, not taken for an empty list.
    pub(super) fn on_node_list(&mut self, value: &Value, router: &mut Router, now: Instant) {
        let Some(listed) = value.as_array() else {
            let shape = value.shape();
            log::warn!("cluster: the node list came back as {shape}; ignored");
            return;
        };
        let nodes: Vec<String> = listed
            .iter()
            .filter_map(Value::as_bytes)
            .filter_map(|b| std::str::from_utf8(b).ok())
            .filter(|n| *n != self.node)
            .map(str::to_owned)
            .collect();
        for node in nodes {
            if self.directory.heard(&node, now) {
                self.sync(&node, now);
            }
        }
        router.set_live_nodes(self.directory.nodes());
        self.trust.listed();
        self.check_trust(router, now);
    }

    /// The heartbeat's `PEXPIRE` of our hash: 0 when the key is gone.
    pub(super) fn on_expire(&mut self, value: &Value, router: &Router) {
        if *value == Value::Integer(0) && !self.left {
            log::info!("cluster: our presence hash was gone from Redis; writing it again");
            self.announce(router);
        }
    }

    /// Refuses the nodes whose replica went over the router's limits since the last call.
    pub(super) fn check_replica(
        &mut self,
        router: &mut Router,
        out: &mut impl Outbox,
        now: Instant,
    ) {
        for node in router.take_overflowed_nodes() {
            let why = "it holds more than the limits of a node (clients, subscriptions or bytes)";
            self.refuse_node(&node, why, router, out, now);
        }
    }

    /// `node` is no member of the cluster until its hash is looked at again, after a backoff.
    fn refuse_node(
        &mut self,
        node: &str,
        why: &str,
        router: &mut Router,
        out: &mut impl Outbox,
        now: Instant,
    ) {
        if self.directory.refuse(node, now) {
            log::warn!("cluster: ignoring node {node}: {why} (docs/limits.md); retrying later");
        } else {
            log::debug!("cluster: node {node} still refused: {why}");
        }
        router.remote_node_gone(node, now, out);
    }
}
