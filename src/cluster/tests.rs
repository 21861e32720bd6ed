//! The loop's side of the cluster against a link without threads: the test holds the queue to
//! Redis (so it can leave exactly as many free slots as it likes) and the queue from Redis.
//! The same paths over a real redis-server are in tests/cluster_bounds.rs.

use std::sync::mpsc::{Receiver, SyncSender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::{Poll, Token, Waker};

use super::endpoint::Endpoint;
use super::envelope::{Body, Envelope};
use super::link::{Cmd, Inbound, Link};
use super::resp::Value;
use super::{Cluster, Settings};
use crate::events::Handler;
use crate::router::{ConnId, Frame, Outbox, Router, RouterConfig};

struct Quiet;
impl Handler for Quiet {}

#[derive(Default)]
struct Count(usize);
impl Outbox for Count {
    fn send(&mut self, _conn: ConnId, _frame: &Frame) {
        self.0 += 1;
    }
    fn close(&mut self, _conn: ConnId, _code: u16, _reason: &str) {}
}

struct Harness {
    // Dropped first: a cluster that is dropped finishes its link, which waits for a queue
    // nobody reads while the receiver lives.
    to_redis: Option<Receiver<Cmd>>,
    from_redis: SyncSender<Inbound>,
    cluster: Cluster,
    router: Router,
    _poll: Poll,
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.to_redis.take();
    }
}

fn harness(out_slots: usize) -> Harness {
    let poll = Poll::new().unwrap();
    let waker = Arc::new(Waker::new(poll.registry(), Token(0)).unwrap());
    let (link, to_redis, from_redis) = Link::detached(out_slots, waker);
    let settings = Settings {
        endpoint: Endpoint::parse("unix:/nonexistent/redis.sock").unwrap(),
        namespace: "rakit".into(),
        node_timeout: Duration::from_secs(3),
        node: "self".into(),
    };
    let mut cluster = Cluster::with_link(settings, link);
    cluster.cmd_up = true;
    cluster.sub_up = true;
    let mut router = Router::new(RouterConfig::default(), Box::new(Quiet), 7);
    router.enable_cluster("self");
    Harness {
        to_redis: Some(to_redis),
        from_redis,
        cluster,
        router,
        _poll: poll,
    }
}

impl Harness {
    /// The names of the commands queued since the last call, in order, each command of a
    /// [`Cmd::All`] on its own.
    fn queued(&self) -> Vec<String> {
        let mut names = Vec::new();
        let name = |args: &[Vec<u8>]| String::from_utf8_lossy(&args[0]).into_owned();
        while let Ok(cmd) = self.to_redis.as_ref().unwrap().try_recv() {
            match cmd {
                Cmd::Run { args, .. } => names.push(name(&args)),
                Cmd::All(commands) => names.extend(commands.iter().map(|a| name(a))),
                Cmd::Stop(_) => {}
            }
        }
        names
    }

    /// The tag of the fetch of a node's hash queued since the last call (the rest is dropped).
    fn fetch_tag(&self) -> u64 {
        let mut tag = None;
        while let Ok(cmd) = self.to_redis.as_ref().unwrap().try_recv() {
            if let Cmd::Run { args, tag: t } = cmd {
                if args[0] == b"EVAL" {
                    tag = Some(t);
                }
            }
        }
        tag.expect("a fetch of a node's hash")
    }

    /// Clients in the cluster as this node sees them.
    fn count(&self) -> u64 {
        let presence: serde_json::Value =
            serde_json::from_str(&self.router.presence_json()).unwrap();
        presence["count"].as_u64().unwrap()
    }

    /// A message from node `origin` on the bus.
    fn hear(&self, origin: &str, body: Body<'_>) {
        let mut bytes = Vec::new();
        Envelope { origin, body }.encode(&mut bytes);
        self.from_redis.send(Inbound::Message(bytes)).unwrap();
    }
}

/// The transaction that writes our hash goes whole or not at all, whatever room the queue to
/// Redis has left: half of one (a `MULTI` without its `EXEC`) leaves the connection inside it.
#[test]
fn announce_queues_its_transaction_whole_or_not_at_all() {
    const SLOTS: usize = 8;
    let whole = ["MULTI", "DEL", "HSET", "PEXPIRE", "EXEC"];
    for free in 0..=6 {
        let mut h = harness(SLOTS);
        for _ in 0..SLOTS - free {
            assert!(h.cluster.link.try_send(vec![b"PING".to_vec()], 0));
        }
        h.cluster.announce_needed = false;
        h.cluster.announce(&h.router);
        let queued = h.queued();
        let sent: Vec<&str> = queued
            .iter()
            .map(String::as_str)
            .filter(|n| *n != "PING")
            .collect();
        assert!(
            sent.is_empty() || sent == whole,
            "{free} free slots: queued {sent:?}"
        );
        // Not queued: written whole at the next heartbeat.
        assert_eq!(h.cluster.announce_needed, sent.is_empty(), "{free} free");
        assert_eq!(sent.is_empty(), free == 0, "{free} free");
    }
}

/// A reply removes its request at once, not at `node_timeout`; a reply nobody waits for does
/// nothing.
#[test]
fn a_reply_ends_its_request_at_once() {
    let mut h = harness(64);
    let mut out = Count::default();
    let now = Instant::now();
    h.cluster.await_reply(5, true, &mut h.router, &mut out, now);
    h.cluster.await_reply(6, true, &mut h.router, &mut out, now);
    assert_eq!(h.cluster.requests.len(), 2);
    h.hear(
        "other",
        Body::Reply {
            req: 5,
            found: true,
        },
    );
    h.hear(
        "other",
        Body::Reply {
            req: 99,
            found: true,
        },
    );
    h.cluster.on_wake(&mut h.router, &mut out, now, |_| false);
    assert_eq!(h.cluster.requests.len(), 1, "the answered one is gone");
    h.hear(
        "other",
        Body::Reply {
            req: 6,
            found: false,
        },
    );
    h.cluster.on_wake(&mut h.router, &mut out, now, |_| false);
    assert_eq!(h.cluster.requests.len(), 0);
}

/// `presence` asked by other nodes costs one presence message per client per wake-up, however
/// many asked: each answer goes to every client of this node.
#[test]
fn presence_asked_many_times_is_answered_once_per_wake_up() {
    let mut h = harness(64);
    let mut out = Count::default();
    let now = Instant::now();
    for conn in 0..3 {
        h.router.connect(conn, None, 1, now, &mut out);
    }
    let before = out.0;
    for _ in 0..50 {
        h.hear("other", Body::Presence);
    }
    h.cluster.on_wake(&mut h.router, &mut out, now, |_| false);
    assert_eq!(
        out.0 - before,
        3,
        "one presence message to each of the 3 clients"
    );
}

/// A reply that is no hash where a snapshot is awaited (`+QUEUED` from a connection left
/// inside a transaction, or anything else) is no answer: the node keeps its clients, and the
/// snapshot stays awaited.
#[test]
fn a_snapshot_answered_queued_is_no_empty_node() {
    let mut h = harness(64);
    let mut out = Count::default();
    let now = Instant::now();
    let bulk = |s: &str| Value::Bulk(Some(s.as_bytes().to_vec()));
    h.hear("other", Body::Heartbeat { ver: 1 });
    h.cluster.on_wake(&mut h.router, &mut out, now, |_| false);
    let hash = Value::Array(Some(vec![
        bulk("AbCd1234"),
        bulk(r#"0 1 {"id":"AbCd1234","name":"Guest","email":null,"connected_at":1}"#),
        bulk("~v"),
        bulk("1"),
    ]));
    h.from_redis
        .send(Inbound::Reply(h.fetch_tag(), hash))
        .unwrap();
    h.cluster.on_wake(&mut h.router, &mut out, now, |_| false);
    assert_eq!(h.count(), 1);
    // Its version moved on without a delta we saw: its hash is fetched again...
    h.hear("other", Body::Heartbeat { ver: 2 });
    h.cluster.on_wake(&mut h.router, &mut out, now, |_| false);
    let tag = h.fetch_tag();
    // ...and answered `+QUEUED`.
    let queued = Value::Simple("QUEUED".into());
    h.from_redis.send(Inbound::Reply(tag, queued)).unwrap();
    h.cluster.on_wake(&mut h.router, &mut out, now, |_| false);
    assert_eq!(h.count(), 1, "the node's client is still there");
    assert!(
        h.cluster.directory.syncing("other"),
        "its snapshot is still awaited"
    );
}
