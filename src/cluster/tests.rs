//! The loop's side of the cluster against a link without threads: the test holds the queue to
//! Redis (so it can leave exactly as many free slots as it likes) and the queue from Redis.
//! The same paths over a real redis-server are in tests/cluster_peer_bounds.rs.

use std::sync::mpsc::{Receiver, SyncSender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::{Poll, Token, Waker};

use super::endpoint::Endpoint;
use super::envelope::{Body, Envelope};
use super::link::{Cmd, Inbound, Link};
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
    /// A message from node `origin` on the bus.
    fn hear(&self, origin: &str, body: Body<'_>) {
        let mut bytes = Vec::new();
        Envelope { origin, body }.encode(&mut bytes);
        self.from_redis.send(Inbound::Message(bytes)).unwrap();
    }
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
