//! The loop's hooks for the cluster (SPEC section 11): the cluster module
//! (`src/cluster/`) gets the router and an outbox at four points of the
//! turn, and nothing else in the loop knows about Redis.
//!
//! - the waker fired: messages, replies and link changes from the Redis threads;
//! - its timer: heartbeats, silent nodes, unanswered requests;
//! - the end of every turn: what the router queued for other nodes is published;
//! - shutdown: the node says goodbye.
//!
//! What other nodes ask of the Pusher dialect (`terminate_connections`) reaches it here too:
//! the router keeps it, and the dialect acts on it right after the router call.

use super::EventLoop;
use crate::cluster::Cluster;

impl EventLoop {
    /// Makes this loop one node of a cluster.
    pub(crate) fn set_cluster(&mut self, cluster: Cluster) {
        self.cluster = Some(cluster);
    }

    /// Runs `f` with the cluster, the router and an outbox, hands the
    /// dialect what other nodes asked of it, then settles what the router did.
    fn with_cluster(
        &mut self,
        f: impl FnOnce(
            &mut Cluster,
            &mut crate::router::Router,
            &mut super::delivery::Deliver<'_>,
            std::time::Instant,
        ),
    ) {
        let Some(mut cluster) = self.cluster.take() else {
            return;
        };
        let now = self.now;
        {
            let parts = self.parts();
            let (router, mut out) = (parts.router, parts.out);
            f(&mut cluster, router, &mut out, now);
            let users = router.take_terminations();
            if let Some(pusher) = parts.pusher {
                for user in &users {
                    pusher.terminate_local(user, &mut out);
                }
            }
        }
        self.cluster = Some(cluster);
        self.after_router();
        // SPEC 16: history requests of the HTTP API answered by Redis.
        self.answer_later();
    }

    /// The waker fired: the Redis threads may have something. What they have is handled within
    /// the turn's delivery budget, like clients' frames (the cluster arms the waker again for
    /// the rest).
    pub(super) fn cluster_wake(&mut self) {
        let budget = self.budget;
        self.with_cluster(|c, router, out, now| {
            c.on_wake(router, out, now, |out| *out.delivered >= budget);
        });
    }

    /// The end of a turn: the cluster's timers, then publishing.
    pub(super) fn cluster_turn(&mut self) {
        if self.cluster.is_none() {
            return;
        }
        let due = self
            .cluster
            .as_ref()
            .and_then(Cluster::poll_timeout)
            .is_some_and(|at| at <= self.now);
        self.with_cluster(|c, router, out, now| {
            if due {
                c.on_timers(router, out, now);
            }
            c.pump(router, out, now);
        });
    }

    /// Shutdown: leave the cluster at once.
    pub(super) fn cluster_leave(&mut self) {
        self.with_cluster(|c, router, out, now| c.leave(router, out, now));
    }

    /// Copies the cluster's counters into the metrics (before a scrape).
    pub(super) fn cluster_metrics(&mut self) -> bool {
        let Some(cluster) = self.cluster.as_ref() else {
            return false;
        };
        let counts = cluster.counts();
        self.metrics.cluster_messages_out = counts.messages_out;
        self.metrics.cluster_messages_in = counts.messages_in;
        self.metrics.cluster_dropped_out = counts.dropped_out;
        self.metrics.cluster_dropped_in = counts.dropped_in;
        cluster.is_up()
    }
}
