//! Scale-out over Redis (SPEC section 11): the event loop's side.
//!
//! ```text
//!  router --ClusterOut--> Cluster::pump --bounded queue--> rakit-redis-cmd --PUBLISH/HSET--> Redis
//!  router <--remote_*---- Cluster::on_wake <--queue+Waker-- rakit-redis-sub <--SUBSCRIBE---- Redis
//! ```
//!
//! Redis names, all under `namespace`: the pub/sub channel `NS:bus` (every
//! node hears it: broadcasts, channel messages, joins, leaves, heartbeats),
//! `NS:node:ID` (one node's inbox: private messages, disconnects, replies),
//! the hash `NS:presence:ID` (client id -> `SEQ CONNECTED_AT ENTRY`, client
//! id `:` channel -> the member it joined as, plus `~v`, the version of both;
//! see `envelope.rs`), whose key-level TTL (`node_timeout_ms`,
//! refreshed by every heartbeat) removes a dead node's clients without
//! per-field expiry, and the sorted set `NS:nodes` (node -> last heartbeat,
//! unix ms) for finding live nodes at start.
//!
//! IO happens on the threads of `link.rs`; this part is called by the loop
//! only: when the waker fires ([`Cluster::on_wake`]), when its timer is due
//! ([`Cluster::on_timers`]) and at the end of every turn ([`Cluster::pump`]).
//!
//! A wake-up handles at most [`WAKE_ITEMS`] reports of the threads, or
//! [`WAKE_BYTES`] of messages, and stops early once the loop's delivery budget
//! for the turn is spent (at least one report each time); the rest waits for
//! the next turn, for which the waker is armed again. So a flood on the bus
//! costs other clients a turn's share, never a stall (docs/limits.md).

pub mod directory;
pub mod endpoint;
pub mod envelope;
mod guard;
mod hash;
pub mod history;
mod history_ops;
pub mod link;
mod outgoing;
mod requests;
pub mod resp;
mod trust;

use std::collections::HashMap;
use std::io;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::Waker;

use self::directory::{Delta, Directory, Outcome};
use self::endpoint::Endpoint;
use self::envelope::{Body, Envelope};
use self::hash::decode_member;
pub use self::link::FirstWord;
use self::link::{Inbound, Link, Side};
use self::requests::Requests;
use self::resp::Value;
use self::trust::Trust;
use crate::router::{
    ChannelExtras, ClusterOut, Member, Outbox, Router, Subscription, MAX_USER_LEN,
};

/// How long queued commands (the `Bye` at SIGTERM) may take to go out.
const FINISH_GRACE: Duration = Duration::from_secs(1);
/// Reports of the Redis threads (messages, replies, link changes) handled per wake-up, at
/// most; the rest next turn.
pub const WAKE_ITEMS: usize = 1024;
/// Bytes of messages handled per wake-up, at most (one message may go past it).
pub const WAKE_BYTES: usize = 1024 * 1024;

/// What the cluster needs from the configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    pub endpoint: Endpoint,
    pub namespace: String,
    pub node_timeout: Duration,
    /// This node's id (new at every start).
    pub node: String,
}

/// A tagged command's purpose, for its reply. A reply is used only when it has the shape its
/// command answers with.
#[derive(Debug)]
enum Query {
    /// `ZREVRANGEBYSCORE NS:nodes`: the live nodes (`guard.rs`).
    Nodes,
    /// `HGETALL NS:presence:ID`: a node's clients, if its hash is not too big (`guard.rs`).
    Sync(String),
    /// The heartbeat's `PEXPIRE` of our own hash: 0 means it is gone (`guard.rs`).
    Expire,
    /// Our publication `seq` on a history channel, to be numbered (`history_ops.rs`).
    HistoryPublish(u64),
    /// The router's history read `tag`.
    HistoryRead(u64),
    /// A channel published to unstored gets a new epoch.
    HistoryLose(String),
    /// Every channel gets a new epoch.
    HistoryGeneration,
}

/// Counters for `/metrics`.
#[derive(Debug, Default, Clone, Copy)]
pub struct Counts {
    pub messages_out: u64,
    pub messages_in: u64,
    pub dropped_out: u64,
    pub dropped_in: u64,
}

/// The loop's side of the cluster (see the module docs).
pub struct Cluster {
    node: String,
    ns: String,
    timeout: Duration,
    heartbeat: Duration,
    link: Link,
    cmd_up: bool,
    sub_up: bool,
    /// The outage was logged (once per outage: until our own heartbeat is
    /// heard again).
    outage_logged: bool,
    /// SIGTERM: nothing more is published.
    left: bool,
    /// Our client list's version (see `directory.rs`).
    ver: u64,
    /// Our hash in Redis may be stale: write it whole at the next chance.
    announce_needed: bool,
    next_heartbeat: Instant,
    /// Our heartbeats published since the last one came back on the bus
    /// (the subscription works while this stays small).
    unheard: u32,
    /// The subscription is being rebuilt on purpose: its drop is no outage.
    rebuilding: bool,
    directory: Directory,
    /// Whether our view of the others may be reported from (webhooks).
    trust: Trust,
    queries: HashMap<u64, Query>,
    next_tag: u64,
    /// Requests awaiting a reply from another node.
    requests: Requests,
    /// Another node asked for presence during this wake-up.
    presence_asked: bool,
    counts: Counts,
    /// Channel history in Redis (SPEC section 16; `history_ops.rs`).
    history: history::HistoryState,
}

impl Cluster {
    /// Starts the Redis threads; they wake the loop through `waker`.
    pub fn start(settings: Settings, waker: Arc<Waker>) -> io::Result<Cluster> {
        let ns = &settings.namespace;
        let channels = vec![format!("{ns}:bus"), format!("{ns}:node:{}", settings.node)];
        let link = Link::start(settings.endpoint.clone(), channels, waker)?;
        Ok(Cluster::with_link(settings, link))
    }

    fn with_link(settings: Settings, link: Link) -> Cluster {
        let now = Instant::now();
        let heartbeat = (settings.node_timeout / 3).max(Duration::from_millis(20));
        let settings_node_seed = settings.node.clone();
        Cluster {
            node: settings.node,
            ns: settings.namespace,
            timeout: settings.node_timeout,
            heartbeat,
            link,
            cmd_up: false,
            sub_up: false,
            outage_logged: false,
            left: false,
            ver: 0,
            announce_needed: true,
            next_heartbeat: now,
            unheard: 0,
            rebuilding: false,
            directory: Directory::default(),
            trust: Trust::default(),
            queries: HashMap::new(),
            next_tag: 1,
            requests: Requests::default(),
            presence_asked: false,
            counts: Counts::default(),
            history: history::HistoryState::new(seed_of(&settings_node_seed)),
        }
    }

    /// Waits, at most `node_timeout_ms`, for the Redis connections' first verdict (SPEC 18: a
    /// daemon listens once it can serve history and reach the other nodes, or knows it
    /// cannot for now). For the start only: it blocks the calling thread.
    pub fn first_word(&self) -> FirstWord {
        self.link.first_word(self.timeout)
    }

    /// Connected to Redis (both connections).
    pub fn is_up(&self) -> bool {
        self.cmd_up && self.sub_up
    }

    /// Commands can go out (publishing needs no subscription).
    fn can_send(&self) -> bool {
        self.cmd_up
    }

    /// The counters, with the threads' drops.
    pub fn counts(&self) -> Counts {
        let c = &self.link.counters;
        Counts {
            dropped_out: self.counts.dropped_out + c.dropped_out.load(Ordering::Relaxed),
            dropped_in: self.counts.dropped_in + c.dropped_in.load(Ordering::Relaxed),
            ..self.counts
        }
    }

    /// Bytes waiting in the queue from Redis (messages for the loop) and in the queue to it
    /// (commands), each bounded (`link.rs`).
    pub fn queued_bytes(&self) -> (usize, usize) {
        self.link.queued_bytes()
    }

    /// When [`Cluster::on_timers`] should run next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.left {
            return None;
        }
        [
            Some(self.next_heartbeat),
            self.directory.next_expiry(self.timeout),
            self.requests.next_deadline(),
            self.history.deadline(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// The threads have something: connection changes, messages, replies. At most a
    /// wake-up's budget of it (see the module docs), and no more once `spent` says the loop's
    /// deliveries for this turn are; then the waker is armed again for the rest.
    pub fn on_wake<O: Outbox>(
        &mut self,
        router: &mut Router,
        out: &mut O,
        now: Instant,
        spent: impl Fn(&O) -> bool,
    ) {
        self.link.woken.store(false, Ordering::SeqCst);
        let (mut items, mut bytes) = (0, 0);
        let mut stopped = false;
        while let Some(msg) = self.link.next() {
            match msg {
                Inbound::Up(side) => self.link_up(side, router, now),
                Inbound::Down(side) => {
                    self.link_down(side, router);
                    // SPEC 16: what waited for Redis is delivered here or answered.
                    self.history_down(router, out);
                }
                Inbound::Message(payload) => {
                    bytes += payload.len();
                    self.on_message(&payload, router, out, now);
                }
                Inbound::Reply(tag, value) => self.on_reply(tag, &value, router, out, now),
            }
            items += 1;
            if items >= WAKE_ITEMS || bytes >= WAKE_BYTES || spent(out) {
                stopped = true;
                break;
            }
        }
        // Each answer goes to every client of this node: one for all the asks of a wake-up.
        if std::mem::take(&mut self.presence_asked) {
            router.remote_presence(now, out);
        }
        if stopped {
            self.link.rearm();
        }
    }

    /// Heartbeats, silent nodes, requests that waited too long.
    pub fn on_timers(&mut self, router: &mut Router, out: &mut impl Outbox, now: Instant) {
        if self.left {
            return;
        }
        let gone = self.directory.expire(now, self.timeout);
        if !gone.is_empty() {
            // The survivors share the gone nodes' channels before judging what they leave.
            router.set_live_nodes(self.directory.nodes());
        }
        for node in gone {
            log::info!("cluster: node {node} fell silent; forgetting its clients");
            router.remote_node_gone(&node, now, out);
        }
        self.check_trust(router, now);
        while let Some(req) = self.requests.pop_due(now) {
            // No answer: as far as this node can tell, no live node has it.
            router.remote_reply(req, false, out);
        }
        self.history_timers(router, out, now);
        if now >= self.next_heartbeat {
            self.next_heartbeat = now + self.heartbeat;
            self.beat(router);
        }
    }

    /// Publishes what the router queued for other nodes.
    pub fn pump(&mut self, router: &mut Router, out: &mut impl Outbox, now: Instant) {
        for item in router.take_cluster_out() {
            if self.left {
                continue;
            }
            match item {
                ClusterOut::Broadcast(frame) => {
                    self.publish_message(self.bus(), Body::Broadcast { frame: &frame });
                }
                ClusterOut::Channel {
                    channel,
                    frame,
                    except,
                    user,
                } => {
                    let body = Body::Channel {
                        channel: &channel,
                        except: except.as_deref(),
                        user: user.as_deref(),
                        frame: &frame,
                    };
                    self.publish_message(self.bus(), body);
                }
                ClusterOut::Terminate { user } => {
                    self.publish_message(self.bus(), Body::Terminate { user: &user });
                }
                ClusterOut::Private {
                    node,
                    to,
                    frame,
                    req,
                } => {
                    let body = Body::Private {
                        to: &to,
                        req,
                        frame: &frame,
                    };
                    let sent = self.publish_message(self.inbox(&node), body);
                    self.await_reply(req, sent, router, out, now);
                }
                ClusterOut::Disconnect { node, id, req } => {
                    let sent =
                        self.publish_message(self.inbox(&node), Body::Disconnect { id: &id, req });
                    self.await_reply(req, sent, router, out, now);
                }
                item @ (ClusterOut::Joined(_)
                | ClusterOut::Left { .. }
                | ClusterOut::Subscribed(_)
                | ClusterOut::Unsubscribed { .. }) => self.record(item),
                ClusterOut::Presence => {
                    self.publish_control(Body::Presence);
                }
                // SPEC 16: history in Redis (`history_ops.rs`).
                ClusterOut::HistoryPublish(publication) => {
                    self.history_publish(publication, router, out, now)
                }
                ClusterOut::HistoryRead {
                    tag,
                    channel,
                    read,
                    keep,
                    max_bytes,
                } => self.history_read(tag, &channel, read, keep, max_bytes, router, out, now),
                ClusterOut::Unstored { channel } => self.history.unstored(&channel),
            }
        }
    }

    /// SIGTERM: tell the others we are gone and remove our traces. Nothing
    /// is published after it.
    pub fn leave(&mut self, router: &mut Router, out: &mut impl Outbox, now: Instant) {
        if self.left {
            return;
        }
        self.pump(router, out, now);
        if self.can_send() {
            self.publish_control(Body::Bye);
            let hash = self.hash(&self.node);
            let nodes = self.nodes_key();
            self.command(&[b"DEL", hash.as_bytes()]);
            let node = self.node.clone();
            self.command(&[b"ZREM", nodes.as_bytes(), node.as_bytes()]);
        }
        self.left = true;
    }

    fn await_reply(
        &mut self,
        req: u64,
        sent: bool,
        router: &mut Router,
        out: &mut impl Outbox,
        now: Instant,
    ) {
        if req == 0 {
            return;
        }
        if sent {
            self.requests.sent(req, now + self.timeout);
        } else {
            router.remote_reply(req, false, out);
        }
    }

    fn link_up(&mut self, side: Side, router: &mut Router, now: Instant) {
        let was_up = self.is_up();
        match side {
            Side::Cmd => self.cmd_up = true,
            Side::Sub => {
                self.sub_up = true;
                self.rebuilding = false;
            }
        }
        if self.is_up() && !was_up {
            log::info!("cluster: connected to Redis as node {}", self.node);
            router.set_history_up(true);
            self.unheard = 0;
            self.resync_all(router, now);
        } else if self.is_up() && side == Side::Sub {
            // Only the subscription was rebuilt: deltas may have been missed.
            self.unheard = 0;
            self.resync_all(router, now);
        }
    }

    fn link_down(&mut self, side: Side, router: &mut Router) {
        match side {
            Side::Cmd => self.cmd_up = false,
            Side::Sub => self.sub_up = false,
        }
        if self.trust.down() {
            router.set_reporting(false);
        }
        self.announce_needed = true;
        // Replies that were in flight will not come.
        self.queries.clear();
        let deliberate = side == Side::Sub && self.rebuilding;
        if !self.outage_logged && !deliberate {
            self.outage_logged = true;
            log::warn!(
                "cluster: Redis unreachable; serving this node's clients only, reconnecting"
            );
        }
    }

    /// After (re)connecting: write our hash whole, find the live nodes, and
    /// fetch every node's clients again.
    fn resync_all(&mut self, router: &mut Router, now: Instant) {
        if self.trust.down() {
            router.set_reporting(false);
        }
        self.trust.connected(now);
        self.announce(router);
        self.next_heartbeat = now;
        self.list_nodes();
        let known: Vec<String> = self.directory.nodes().map(str::to_owned).collect();
        for node in known {
            self.sync(&node, now);
        }
    }

    /// Every heartbeat: keep our hash alive, say we are here, check that we
    /// hear ourselves.
    fn beat(&mut self, router: &mut Router) {
        if !self.can_send() {
            return;
        }
        if self.announce_needed {
            self.announce(router);
        }
        // SPEC 16: new epochs for what was published unstored during an outage.
        self.history_repair();
        let hash = self.hash(&self.node);
        let nodes = self.nodes_key();
        let ttl = self.timeout.as_millis().to_string();
        let ms = unix_ms();
        let stale = ms
            .saturating_sub(10 * self.timeout.as_millis() as u64)
            .to_string();
        let tag = self.tag(Query::Expire);
        if !self.tagged(&[b"PEXPIRE", hash.as_bytes(), ttl.as_bytes()], tag) {
            self.queries.remove(&tag);
        }
        let node = self.node.clone();
        self.command(&[
            b"ZADD",
            nodes.as_bytes(),
            ms.to_string().as_bytes(),
            node.as_bytes(),
        ]);
        self.command(&[
            b"ZREMRANGEBYSCORE",
            nodes.as_bytes(),
            b"-inf",
            stale.as_bytes(),
        ]);
        if self.publish_control(Body::Heartbeat { ver: self.ver }) {
            self.unheard += 1;
        }
        // Our own heartbeats come back on the bus; two in a row missing
        // (the third just sent) means the subscription stopped delivering
        // (centrifugo#1189). Counted in heartbeats, not time, so a loop
        // that was starved of CPU does not mistake its own delay for it.
        if self.sub_up && self.unheard > 2 {
            log::warn!("cluster: our own heartbeats stopped arriving; rebuilding the subscription");
            self.unheard = 0;
            self.rebuilding = true;
            self.link.rebuild.store(true, Ordering::SeqCst);
        }
    }

    fn tag(&mut self, query: Query) -> u64 {
        let tag = self.next_tag;
        self.next_tag += 1;
        self.queries.insert(tag, query);
        tag
    }

    /// Fetches `node`'s hash if it is not too big (`guard.rs`); not while it is refused.
    fn sync(&mut self, node: &str, now: Instant) {
        if !self.directory.may_sync(node, now) {
            return;
        }
        self.directory.start_sync(node, now);
        let hash = self.hash(node);
        let tag = self.tag(Query::Sync(node.to_owned()));
        let cap = guard::MAX_HASH_FIELDS.to_string();
        let fetch = [
            b"EVAL",
            guard::FETCH.as_bytes(),
            b"1",
            hash.as_bytes(),
            cap.as_bytes(),
        ];
        if !self.tagged(&fetch, tag) {
            self.queries.remove(&tag);
        }
    }

    fn on_message(
        &mut self,
        bytes: &[u8],
        router: &mut Router,
        out: &mut impl Outbox,
        now: Instant,
    ) {
        let Some(env) = Envelope::decode(bytes) else {
            log::debug!("cluster: ignoring a malformed message");
            return;
        };
        if env.origin == self.node {
            // Our own publication on a history channel, numbered by Redis: delivered now.
            if let Body::History {
                seq,
                channel,
                offset,
                epoch,
                json,
                ..
            } = env.body
            {
                self.history_echo(seq, channel, offset, epoch, json, router, out);
                return;
            }
            // Our own echo: delivered locally already. Only our heartbeat
            // matters, as proof that the subscription works.
            if let Body::Heartbeat { .. } = env.body {
                self.unheard = 0;
                // The outage is over when the whole path works again (one
                // link's state can be stale while the other reconnects).
                if self.outage_logged {
                    self.outage_logged = false;
                    log::info!("cluster: Redis is back");
                }
            }
            return;
        }
        if self.left {
            return;
        }
        let origin = env.origin;
        if let Body::Bye = env.body {
            self.directory.remove(origin);
            router.set_live_nodes(self.directory.nodes());
            router.remote_node_gone(origin, now, out);
            return;
        }
        if self.directory.heard(origin, now) {
            router.set_live_nodes(self.directory.nodes());
            self.sync(origin, now);
        }
        match env.body {
            Body::Broadcast { frame } => {
                self.counts.messages_in += 1;
                router.remote_broadcast(frame, out);
            }
            Body::Channel {
                channel,
                except,
                user,
                frame,
            } => {
                if user.is_some_and(|u| u.is_empty() || u.len() > MAX_USER_LEN) {
                    log::debug!("cluster: ignoring a channel message with a malformed user id");
                    return;
                }
                self.counts.messages_in += 1;
                let extras = ChannelExtras { except, user };
                router.remote_channel(channel, frame, extras, out);
            }
            Body::History {
                channel,
                except,
                user,
                offset,
                epoch,
                json,
                ..
            } => {
                if user.is_some_and(|u| u.is_empty() || u.len() > MAX_USER_LEN)
                    || !crate::history::is_valid_epoch(epoch.as_bytes())
                {
                    log::debug!("cluster: ignoring a malformed history publication");
                    return;
                }
                self.counts.messages_in += 1;
                let extras = ChannelExtras { except, user };
                router.remote_history(channel, offset, epoch, json, extras, out);
            }
            Body::Terminate { user } => {
                if user.is_empty() || user.len() > MAX_USER_LEN {
                    log::debug!("cluster: ignoring a terminate with a malformed user id");
                    return;
                }
                self.counts.messages_in += 1;
                router.remote_terminate(user);
            }
            Body::Private { to, req, frame } => {
                self.counts.messages_in += 1;
                let found = router.remote_private(to, frame, out);
                self.reply(origin, req, found);
            }
            Body::Disconnect { id, req } => {
                self.counts.messages_in += 1;
                let found = router.remote_disconnect(id, now, out);
                self.reply(origin, req, found);
            }
            Body::Reply { req, found } => {
                if self.requests.answered(req) {
                    router.remote_reply(req, found, out);
                }
            }
            Body::Join {
                id,
                seq,
                connected_at,
                ver,
                entry,
            } => {
                let member = Member {
                    id: id.to_owned(),
                    seq,
                    connected_at,
                    entry: entry.to_owned(),
                };
                let outcome = self.directory.delta(origin, ver, Delta::Join(member));
                self.apply(origin, outcome, router, out, now);
            }
            Body::Leave { id, ver } => {
                let outcome = self
                    .directory
                    .delta(origin, ver, Delta::Leave(id.to_owned()));
                self.apply(origin, outcome, router, out, now);
            }
            Body::Subscribe {
                id,
                ver,
                channel,
                member,
            } => {
                let Some(member) = decode_member(member) else {
                    log::debug!("cluster: ignoring a malformed subscription");
                    return;
                };
                let sub = Subscription {
                    id: id.to_owned(),
                    channel: channel.to_owned(),
                    member,
                };
                let outcome = self.directory.delta(origin, ver, Delta::Subscribe(sub));
                self.apply(origin, outcome, router, out, now);
            }
            Body::Unsubscribe { id, ver, channel } => {
                let delta = Delta::Unsubscribe {
                    id: id.to_owned(),
                    channel: channel.to_owned(),
                };
                let outcome = self.directory.delta(origin, ver, delta);
                self.apply(origin, outcome, router, out, now);
            }
            Body::Heartbeat { ver } => {
                if self.directory.heartbeat(origin, ver, now, self.timeout) {
                    self.sync(origin, now);
                }
            }
            Body::Presence => self.presence_asked = true,
            Body::Bye => {}
        }
    }

    fn apply(
        &mut self,
        node: &str,
        outcome: Outcome,
        router: &mut Router,
        out: &mut impl Outbox,
        now: Instant,
    ) {
        match outcome {
            Outcome::Apply(delta) => {
                apply_delta(node, delta, router, out, now);
                self.check_replica(router, out, now);
            }
            Outcome::Nothing => {}
            Outcome::Resync => {
                if !self.directory.syncing(node) {
                    self.sync(node, now);
                }
            }
        }
    }

    /// Turns webhook reporting on once our view of the others is complete (`trust.rs`).
    fn check_trust(&mut self, router: &mut Router, now: Instant) {
        if self.is_up()
            && self
                .trust
                .check(self.directory.all_synced(), now, self.timeout)
        {
            log::debug!("cluster: view of the other nodes complete; reporting channel changes");
            router.set_reporting(true);
        }
    }

    fn reply(&mut self, node: &str, req: u64, found: bool) {
        if req != 0 {
            let bytes = self.envelope(Body::Reply { req, found });
            let inbox = self.inbox(node);
            self.command(&[b"PUBLISH", inbox.as_bytes(), &bytes]);
        }
    }

    fn on_reply(
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
            Query::Nodes => self.on_node_list(value, router, now),
            Query::Expire => self.on_expire(value, router),
            Query::HistoryPublish(seq) => self.history_published(seq, value, router, out),
            Query::HistoryRead(read) => self.history_answer(read, value, router, out),
            query @ (Query::HistoryLose(_) | Query::HistoryGeneration) => {
                self.history_repaired(&query, value)
            }
            Query::Sync(node) => self.on_snapshot(&node, value, router, out, now),
        }
    }
}

#[cfg(test)]
mod tests;

impl Drop for Cluster {
    fn drop(&mut self) {
        self.link.finish(FINISH_GRACE);
    }
}

fn apply_delta(node: &str, delta: Delta, router: &mut Router, out: &mut impl Outbox, now: Instant) {
    match delta {
        Delta::Join(member) => router.remote_join(node, member, now, out),
        Delta::Leave(id) => router.remote_leave(node, &id, now, out),
        Delta::Subscribe(sub) => router.remote_subscribe(node, sub, out),
        Delta::Unsubscribe { id, channel } => router.remote_unsubscribe(node, &id, &channel, out),
    }
}

/// A seed for epoch candidates: this node's random id, and the time.
fn seed_of(node: &str) -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write(node.as_bytes());
    h.write_u64(unix_ms());
    h.finish()
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
