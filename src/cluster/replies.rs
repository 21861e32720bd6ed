//! The replies to this node's tagged commands: the live nodes, another node's hash (a
//! snapshot), and the heartbeat's `PEXPIRE` of our own hash.
//!
//! A reply is used only when it has the shape its command answers with. Anything else (an
//! error, or `+QUEUED` from a connection left inside a transaction) is no answer: the
//! snapshot stays awaited and is asked again at a heartbeat after `node_timeout`, the node list
//! is asked again at the next reconnection. Taking such a reply for an empty hash would make
//! every client of that node vanish.

use std::time::Instant;

use super::hash::parse_hash;
use super::resp::Value;
use super::{apply_delta, Cluster};
use crate::router::{Outbox, Router};

/// A tagged command's purpose, for its reply.
#[derive(Debug)]
pub(super) enum Query {
    /// `ZREVRANGEBYSCORE NS:nodes`: the live nodes.
    Nodes,
    /// `HGETALL NS:presence:ID`: a node's clients, if its hash is not too big (`guard.rs`).
    Sync(String),
    /// The heartbeat's `PEXPIRE` of our own hash: 0 means it is gone (`guard.rs`).
    Expire,
}

impl Cluster {
    pub(super) fn on_reply(
        &mut self,
        tag: u64,
        value: &Value,
        router: &mut Router,
        out: &mut impl Outbox,
        now: Instant,
    ) {
        let Some(query) = self.queries.remove(&tag) else {
            return;
        };
        match query {
            Query::Nodes => {
                let Some(listed) = value.as_array() else {
                    log::warn!(
                        "cluster: the node list came back as {}; ignored",
                        shape(value)
                    );
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
            Query::Expire => self.on_expire(value, router),
            Query::Sync(node) => self.on_snapshot(&node, value, router, out, now),
        }
    }

    /// The reply to the fetch of `node`'s hash ([`super::guard::FETCH`]).
    fn on_snapshot(
        &mut self,
        node: &str,
        value: &Value,
        router: &mut Router,
        out: &mut impl Outbox,
        now: Instant,
    ) {
        if self.oversized(node, value, router, out, now) {
            return;
        }
        // An error is logged by the link; anything else that is no hash, here.
        let Some(snapshot) = parse_hash(value) else {
            if !matches!(value, Value::Error(_)) {
                let shape = shape(value);
                log::warn!("cluster: the hash of node {node} came back as {shape}; ignored");
            }
            return;
        };
        if !self.directory.syncing(node) {
            return;
        }
        let Some((deltas, again)) = self.directory.synced(node, snapshot.ver) else {
            return;
        };
        router.remote_node(node, snapshot.members, snapshot.subs, now, out);
        for delta in deltas {
            apply_delta(node, delta, router, out, now);
        }
        self.check_replica(router, out, now);
        if again && !self.directory.refused(node) {
            self.sync(node, now);
        }
        self.check_trust(router, now);
    }
}

/// What a reply is, for a log line (never all of it: a bulk string may be large).
fn shape(value: &Value) -> String {
    match value {
        Value::Simple(s) => format!("+{}", s.chars().take(32).collect::<String>()),
        Value::Error(_) => "an error".to_owned(),
        Value::Integer(n) => format!(":{n}"),
        Value::Bulk(_) => "a bulk string".to_owned(),
        Value::Array(None) => "a null array".to_owned(),
        Value::Array(Some(_)) => "an array".to_owned(),
    }
}
