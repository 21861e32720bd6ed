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

use std::time::Instant;

use super::resp::{Value, MAX_ELEMENTS};
use super::Cluster;
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
