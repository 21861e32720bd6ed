//! What a Redis peer controls, bounded (docs/limits.md, "Cluster peers" and "Cluster queues"),
//! with a real `redis-server` and real daemons: a 100k-client snapshot, a node list that is
//! longer than a reply may be, a command connection that Redis stops answering, the queues to
//! and from Redis, and a flood on the bus.
//!
//! The tests of this file run one at a time (a lock), like `cluster.rs`.

mod common;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use common::api::{api_table, command, scrape, series, Http};
use common::redis::Redis;
use common::{send_json, vm_rss_kib, Client, Daemon, WAIT};
use mio::{Events, Poll, Token, Waker};
use rakit::cluster::endpoint::Endpoint;
use rakit::cluster::envelope::{Body, Envelope};
use rakit::cluster::link::{IN_BYTES, OUT_BYTES, OUT_QUEUE};
use rakit::cluster::{Cluster, Settings, WAKE_BYTES, WAKE_ITEMS};
use rakit::events::Handler;
use rakit::router::{ConnId, Frame, Outbox, Router, RouterConfig};

fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// A node; `extra` goes into its `[cluster]` table.
fn node(redis: &Redis, extra: &str) -> Daemon {
    let toml = format!(
        "logging_level = \"info\"\npresence_interval_ms = 100\n\
         [cluster]\nredis_url = \"{}\"\n{extra}\n",
        redis.url()
    );
    Daemon::start(&toml, &[])
}

/// Forges heartbeats of `origin` at version `ver` every 200 ms until dropped: a node that is
/// alive as far as the others can tell.
struct Heartbeats(Arc<AtomicBool>);

impl Heartbeats {
    fn start(redis: &Redis, origin: &'static str, ver: u64) -> Heartbeats {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let url = redis.url();
        std::thread::spawn(move || {
            let path = url.strip_prefix("unix:").unwrap().to_owned();
            let mut bytes = Vec::new();
            Envelope {
                origin,
                body: Body::Heartbeat { ver },
            }
            .encode(&mut bytes);
            let mut cmd = format!(
                "*3\r\n$7\r\nPUBLISH\r\n$9\r\nrakit:bus\r\n${}\r\n",
                bytes.len()
            )
            .into_bytes();
            cmd.extend_from_slice(&bytes);
            cmd.extend_from_slice(b"\r\n");
            let mut s = UnixStream::connect(path).unwrap();
            let mut reply = [0u8; 64];
            while !flag.load(Ordering::SeqCst) {
                if s.write_all(&cmd).is_err() || s.read(&mut reply).is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        });
        Heartbeats(stop)
    }
}

impl Drop for Heartbeats {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// The next presence message's `count`, skipping everything else; `None` after `wait`.
fn next_count(ws: &mut Client, wait: Duration) -> Option<u64> {
    let v = common::try_recv_json(ws, wait, |v| v["type"] != "presence")?;
    v["count"].as_u64()
}

/// Lines of a node's log that say it rebuilt its subscription: its own heartbeats, published
/// through the command connection, stopped coming back.
fn rebuilds(daemon: &Daemon) -> Vec<String> {
    daemon
        .log_lines()
        .into_iter()
        .filter(|l| l.contains("rebuilding the subscription"))
        .collect()
}

/// A node with 100,000 clients: both real nodes fetch its hash (about 10 MB) and list every
/// client, and neither one's command connection stands still meanwhile. Parsing that reply from
/// its start after every 16 KiB read kept it busy for many seconds (minutes in a debug build):
/// the node's heartbeats, queued behind it, never came back, so it rebuilt its subscription,
/// and every rebuild fetched the hash again.
///
/// `node_timeout_ms` is 9 s (a heartbeat every 3 s, a rebuild after three unheard: 6 s and
/// more): what stands still here besides the parse is the loop applying 100k clients (seconds
/// in a debug build, which sends no heartbeat meanwhile and so cannot miss one) and Redis
/// running the fetch (blocking every client, for a second or two on a loaded machine).
#[test]
fn a_100k_client_snapshot_is_fetched_without_stalling_the_command_connection() {
    let _serial = serial();
    let redis = Redis::start();
    const FAKE: usize = 100_000;
    let fill = "for i=1,tonumber(ARGV[1]) do \
        local id = string.format('F%07d', i) \
        redis.call('HSET', KEYS[1], id, i .. ' 1 {\"id\":\"' .. id .. \
        '\",\"name\":\"Guest\",\"email\":null,\"connected_at\":1}') end \
        redis.call('HSET', KEYS[1], '~v', '1') return 1";
    let count = FAKE.to_string();
    assert_eq!(
        redis.cli(&["EVAL", fill, "1", "rakit:presence:fake", &count]),
        "1"
    );
    let nodes = [
        node(&redis, "node_timeout_ms = 9000"),
        node(&redis, "node_timeout_ms = 9000"),
    ];
    let mut clients: Vec<Client> = nodes.iter().map(|n| n.client().0).collect();
    // The big node appears: both fetch its hash.
    let _fake = Heartbeats::start(&redis, "fake", 1);
    let full = FAKE as u64 + 2;
    for (i, ws) in clients.iter_mut().enumerate() {
        let deadline = Instant::now() + Duration::from_secs(120);
        while next_count(ws, deadline.saturating_duration_since(Instant::now())) != Some(full) {
            assert!(
                Instant::now() < deadline,
                "node {i} never listed {full} clients; rebuilds: {:?}",
                rebuilds(&nodes[i])
            );
        }
    }
    for (i, n) in nodes.iter().enumerate() {
        assert_eq!(rebuilds(n), Vec::<String>::new(), "node {i}");
    }
}

/// The loop's side of a cluster over a real redis-server, without a daemon: the test is the
/// loop (it polls the waker and calls the cluster), so it can let the queue from Redis fill.
struct Loop {
    poll: Poll,
    cluster: Cluster,
    router: Router,
    out: Deliveries,
}

const WAKER: Token = Token(0);

#[derive(Default)]
struct Deliveries(usize);

impl Outbox for Deliveries {
    fn send(&mut self, _conn: ConnId, _frame: &Frame) {
        self.0 += 1;
    }
    fn close(&mut self, _conn: ConnId, _code: u16, _reason: &str) {}
}

struct Quiet;
impl Handler for Quiet {}

impl Loop {
    /// A node `id` of the cluster on `redis`, connected (both links up).
    fn start(redis: &Redis, id: &str) -> Loop {
        let poll = Poll::new().unwrap();
        let waker = Arc::new(Waker::new(poll.registry(), WAKER).unwrap());
        let settings = Settings {
            endpoint: Endpoint::parse(&redis.url()).unwrap(),
            namespace: "rakit".into(),
            node_timeout: Duration::from_secs(3600),
            node: id.into(),
        };
        let mut l = Loop {
            poll,
            cluster: Cluster::start(settings, waker).unwrap(),
            router: Router::new(RouterConfig::default(), Box::new(Quiet), 1),
            out: Deliveries::default(),
        };
        let deadline = Instant::now() + WAIT;
        while !l.cluster.is_up() {
            assert!(Instant::now() < deadline, "not connected to Redis");
            l.wake(|_| false);
        }
        l
    }

    /// Waits for the waker (at most `WAIT`) and calls `on_wake` once: false if it did not fire.
    fn wake(&mut self, spent: impl Fn(&Deliveries) -> bool) -> bool {
        let mut events = Events::with_capacity(8);
        self.poll.poll(&mut events, Some(WAIT)).unwrap();
        if events.is_empty() {
            return false;
        }
        self.cluster
            .on_wake(&mut self.router, &mut self.out, Instant::now(), spent);
        true
    }

    /// Whether the waker fired and was not handled yet (without waiting).
    fn armed(&mut self) -> bool {
        let mut events = Events::with_capacity(8);
        self.poll.poll(&mut events, Some(Duration::ZERO)).unwrap();
        !events.is_empty()
    }

    fn messages_in(&self) -> u64 {
        self.cluster.counts().messages_in
    }

    /// Waits until `bytes` of messages wait in the queue from Redis.
    fn await_queued(&self, bytes: usize) {
        let deadline = Instant::now() + WAIT;
        while self.cluster.queued_bytes().0 < bytes {
            assert!(
                Instant::now() < deadline,
                "{} of {bytes} bytes queued",
                self.cluster.queued_bytes().0
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

/// Publishes `n` broadcasts of `size` bytes from node `origin` on the bus, pipelined on one
/// connection; returns the bytes of one envelope.
fn flood(redis: &Redis, origin: &str, n: usize, size: usize) -> usize {
    let frame = vec![b'x'; size];
    let mut envelope = Vec::new();
    Envelope {
        origin,
        body: Body::Broadcast { frame: &frame },
    }
    .encode(&mut envelope);
    let url = redis.url();
    let mut s = UnixStream::connect(url.strip_prefix("unix:").unwrap()).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    let mut one = format!(
        "*3\r\n$7\r\nPUBLISH\r\n$9\r\nrakit:bus\r\n${}\r\n",
        envelope.len()
    )
    .into_bytes();
    one.extend_from_slice(&envelope);
    one.extend_from_slice(b"\r\n");
    let reader = {
        let mut s = s.try_clone().unwrap();
        std::thread::spawn(move || {
            // One `:N\r\n` a message: read until n of them.
            let (mut lines, mut buf) = (0, [0u8; 4096]);
            while lines < n {
                let got = s.read(&mut buf).unwrap();
                assert!(got > 0, "redis closed");
                lines += buf[..got].iter().filter(|&&b| b == b'\n').count();
            }
        })
    };
    for _ in 0..n {
        s.write_all(&one).unwrap();
    }
    reader.join().unwrap();
    envelope.len()
}

/// A flood on the bus is handled a wake-up's budget at a time (`WAKE_ITEMS` messages, or
/// `WAKE_BYTES`, or until the turn's deliveries are spent, at least one), the waker armed again
/// for the rest: the loop gets to its other clients between two parts of it.
#[test]
fn a_flood_on_the_bus_is_handled_a_budget_per_wake_up() {
    let _serial = serial();
    let redis = Redis::start();
    let mut l = Loop::start(&redis, "self");
    // Small messages: the count bound.
    let n = 3 * WAKE_ITEMS + 100;
    let size = flood(&redis, "flood", n, 16);
    l.await_queued(n * size);
    let mut handled = Vec::new();
    while (l.messages_in() as usize) < n {
        let before = l.messages_in();
        assert!(l.wake(|_| false), "the waker was not armed for the rest");
        handled.push(l.messages_in() - before);
    }
    // Replies to the node's own commands share the budget; no wake-up took more than it.
    assert!(
        handled.iter().all(|&h| h as usize <= WAKE_ITEMS),
        "{handled:?}"
    );
    assert!(handled.len() > 3, "{handled:?}");
    // Big messages: the bytes bound (one message may cross it).
    let n = 40;
    let size = flood(&redis, "flood", n, 256 * 1024);
    l.await_queued(n * size);
    let before = l.messages_in();
    assert!(l.wake(|_| false));
    assert_eq!(
        (l.messages_in() - before) as usize,
        WAKE_BYTES.div_ceil(size),
        "messages of {size} bytes"
    );
    assert!(l.armed());
    // A turn whose deliveries are spent takes one message per wake-up.
    let before = l.messages_in();
    l.cluster
        .on_wake(&mut l.router, &mut l.out, Instant::now(), |_| true);
    assert!(l.messages_in() - before <= 1);
    assert!(l.armed());
}

/// The queue from Redis holds at most `IN_BYTES` of messages (one may cross it) while the
/// loop does not come for them; the rest is dropped and counted, not kept. By count alone
/// (64Ki messages) it would hold gigabytes of 64 KiB frames.
#[test]
fn the_queue_from_redis_is_bounded_in_bytes() {
    let _serial = serial();
    let redis = Redis::start();
    keep_slow_subscribers(&redis);
    let mut l = Loop::start(&redis, "self");
    let n = 48;
    let size = flood(&redis, "flood", n, 1 << 20);
    let kept = IN_BYTES.div_ceil(size);
    assert!(kept < n);
    // The loop stands still: nothing is taken from the queue until everything is accounted.
    let deadline = Instant::now() + WAIT;
    while l.cluster.counts().dropped_in < (n - kept) as u64 {
        assert!(
            Instant::now() < deadline,
            "dropped {} of {n}, {} bytes queued",
            l.cluster.counts().dropped_in,
            l.cluster.queued_bytes().0
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(l.cluster.queued_bytes().0, kept * size);
    while (l.messages_in() as usize) < kept {
        assert!(l.wake(|_| false));
    }
    assert_eq!(l.cluster.queued_bytes().0, 0, "given back as handled");
    assert_eq!(l.cluster.counts().dropped_in, (n - kept) as u64);
    // Room again.
    flood(&redis, "flood", 1, 1 << 20);
    let before = l.messages_in();
    while l.messages_in() == before {
        assert!(l.wake(|_| false));
    }
}

/// `[cluster]` for a node whose heartbeats are 20 minutes apart: nothing but the test's own
/// commands goes into its queue to Redis while a test runs.
const QUIET: &str = "node_timeout_ms = 3600000";

/// The client of Redis blocked by `CLIENT PAUSE` in the middle of a `PUBLISH` (`flags=b`),
/// if there is one.
fn blocked_publisher(redis: &Redis) -> Option<String> {
    redis
        .cli(&["CLIENT", "LIST"])
        .lines()
        .find(|l| {
            l.split(' ')
                .any(|f| f.strip_prefix("flags=").is_some_and(|v| v.contains('b')))
                && l.contains(" cmd=publish ")
        })
        .map(str::to_owned)
}

/// Redis stops running writes (`CLIENT PAUSE ... WRITE`), and the node's command connection
/// is blocked inside one `PUBLISH` of the API command `first`, with its queue empty.
#[track_caller]
fn stall_commands(redis: &Redis, api: &mut Http, first: &[u8]) {
    assert_eq!(redis.cli(&["CLIENT", "PAUSE", "120000", "WRITE"]), "OK");
    assert_eq!(api.request(first).status, 200);
    let deadline = Instant::now() + WAIT;
    while blocked_publisher(redis).is_none() {
        assert!(
            Instant::now() < deadline,
            "{}",
            redis.cli(&["CLIENT", "LIST"])
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A node with the HTTP API on (`top` goes before the tables) and [`QUIET`] heartbeats,
/// connected to Redis.
fn api_node(redis: &Redis, top: &str) -> Daemon {
    let daemon = Daemon::start(
        &format!(
            "logging_level = \"info\"\n{top}{}[cluster]\nredis_url = \"{}\"\n{QUIET}\n",
            api_table(),
            redis.url()
        ),
        &[],
    );
    daemon.wait_for_line("connected to Redis as node");
    daemon
}

/// `rakit_cluster_messages_dropped_total{direction}` of a node.
fn dropped(daemon: &Daemon, direction: &str) -> u64 {
    let text = scrape(daemon.addr, None);
    series(
        &text,
        &format!("rakit_cluster_messages_dropped_total{{direction=\"{direction}\"}}"),
    )
}

/// Redis must not drop a subscriber for being slow (its default: beyond 32 MB queued for it):
/// the tests hold one still, or send it tens of MiB at once.
fn keep_slow_subscribers(redis: &Redis) {
    redis.cli(&[
        "CONFIG",
        "SET",
        "client-output-buffer-limit",
        "pubsub 0 0 0",
    ]);
}

fn to_channel(channel: &str, message: &str) -> Vec<u8> {
    command(&format!(
        r#"{{"command":"broadcast_to_channel","channel":"{channel}","message":"{message}"}}"#
    ))
}

/// `ws` (subscribed to `channel`) gets `message` there, within `WAIT`.
#[track_caller]
fn arrives(ws: &mut Client, channel: &str, message: &str) {
    let deadline = Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let got = common::try_recv_json(ws, left, |v| v["type"] == "presence");
        match got {
            Some(v) if v["channel"] == channel && v["data"] == message => return,
            Some(_) => {}
            None => panic!("{message} never arrived"),
        }
    }
}

/// A client of `daemon` subscribed to `channel`.
fn subscriber(daemon: &Daemon, channel: &str) -> Client {
    let (mut ws, _) = daemon.client();
    send_json(
        &mut ws,
        &serde_json::json!({"event": "subscribe", "channel": channel}),
    );
    let deadline = Instant::now() + WAIT;
    loop {
        let v =
            common::try_recv_json(&mut ws, WAIT, |v| v["type"] == "presence").expect("subscribed");
        if v["type"] == "subscribed" {
            return ws;
        }
        assert!(Instant::now() < deadline);
    }
}

/// While Redis does not answer, the queue to it holds at most `OUT_BYTES` of commands (one
/// may cross it); the messages beyond are dropped and counted, not kept. By count alone
/// (16Ki commands) 512 KiB messages would hold 8 GiB. Once Redis answers again, messages flow.
#[test]
fn the_queue_to_redis_is_bounded_in_bytes() {
    let _serial = serial();
    let redis = Redis::start();
    keep_slow_subscribers(&redis);
    let a = api_node(&redis, "max_buffer_size = 1048576\n");
    let b = node(&redis, QUIET);
    let mut listener = subscriber(&b, "room");
    let mut api = Http::connect(a.addr);
    let before = vm_rss_kib(a.child.id());
    stall_commands(&redis, &mut api, &to_channel("void", "first"));
    let big = "x".repeat(512 * 1024);
    let n = 200;
    for _ in 0..n {
        assert_eq!(api.request(&to_channel("void", &big)).status, 200);
    }
    let grown = vm_rss_kib(a.child.id()).saturating_sub(before) * 1024;
    let out = dropped(&a, "out");
    eprintln!(
        "{n} messages of 512 KiB while Redis pauses: {out} dropped, RSS +{} MiB",
        grown >> 20
    );
    // At most OUT_BYTES queued, plus one message, plus one pipeline (1 MiB) in flight.
    let kept_at_most = (OUT_BYTES / big.len()) as u64 + 4;
    assert!(out >= n - kept_at_most, "only {out} of {n} dropped");
    assert!(grown < 2 * OUT_BYTES as u64, "grew by {} MiB", grown >> 20);
    assert_eq!(redis.cli(&["CLIENT", "UNPAUSE"]), "OK");
    assert_eq!(api.request(&to_channel("room", "after")).status, 200);
    arrives(&mut listener, "room", "after");
}

/// Issue 16 item 8, on a real Redis: the queue to Redis has `free` slots left when the node
/// writes its hash whole (`MULTI DEL HSET PEXPIRE EXEC`, after its subscription came back).
/// Queued command by command, `MULTI` fit and `EXEC` did not, and the `DISCARD` meant to undo
/// it found no room either: the command connection stayed inside the transaction, and every
/// later command was answered `+QUEUED` and never run (messages for other nodes never went out;
/// a snapshot answered so was read as an empty node). The transaction is one item now.
#[test]
fn writing_our_hash_never_leaves_the_connection_inside_a_transaction() {
    let _serial = serial();
    for free in [1, 4] {
        let redis = Redis::start();
        let a = api_node(&redis, "");
        let b = node(&redis, QUIET);
        let mut listener = subscriber(&b, "room");
        let mut api = Http::connect(a.addr);
        // Settled: A's queue to Redis is idle (its heartbeats are 20 minutes apart).
        assert_eq!(api.request(&to_channel("room", "before")).status, 200);
        arrives(&mut listener, "room", "before");
        stall_commands(&redis, &mut api, &to_channel("void", "first"));
        // The queue now fills to all but `free` slots, in pipelined requests.
        let fill = OUT_QUEUE - free;
        let one = to_channel("void", "x");
        for chunk in (0..fill).collect::<Vec<_>>().chunks(256) {
            let mut batch = Vec::with_capacity(one.len() * chunk.len());
            for _ in chunk {
                batch.extend_from_slice(&one);
            }
            api.send(&batch);
            for _ in chunk {
                assert_eq!(api.read_response().status, 200);
            }
        }
        assert_eq!(dropped(&a, "out"), 0, "{free} free: the queue is not full");
        // The subscriptions drop and come back: A writes its hash whole.
        let connected = |d: &Daemon| {
            d.log_lines()
                .iter()
                .filter(|l| l.contains("connected to Redis as node"))
                .count()
        };
        assert_eq!(connected(&a), 1);
        redis.cli(&["CLIENT", "KILL", "TYPE", "pubsub"]);
        let deadline = Instant::now() + WAIT;
        while connected(&a) < 2 {
            assert!(
                Instant::now() < deadline,
                "{free} free: A never resubscribed"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(redis.cli(&["CLIENT", "UNPAUSE"]), "OK");
        // A's messages reach B's client again, and no connection is left in a transaction.
        assert_eq!(api.request(&to_channel("room", "after")).status, 200);
        arrives(&mut listener, "room", "after");
        let clients = redis.cli(&["CLIENT", "LIST"]);
        assert!(
            clients.lines().all(|l| l.contains(" multi=-1 ")),
            "{free} free: {clients}"
        );
    }
}

/// The sorted set of live nodes is whatever was written to it: with more members than one
/// reply may carry (`resp::MAX_ELEMENTS`), fetching it whole at every connection failed to
/// parse and dropped the command connection, every time, so no message for another node went
/// out. A node asks for the newest `MAX_NODES` (as many as it follows) only.
#[test]
fn a_node_list_longer_than_a_reply_may_be_costs_nothing() {
    let _serial = serial();
    let redis = Redis::start();
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis()
        .to_string();
    let fill =
        "for i=1,tonumber(ARGV[2]) do redis.call('ZADD', KEYS[1], ARGV[1], 'fake' .. i) end \
        return redis.call('ZCARD', KEYS[1])";
    let n = "1100000";
    assert_eq!(
        redis.cli(&["EVAL", fill, "1", "rakit:nodes", &now_ms, n]),
        n
    );
    let b = node(&redis, QUIET);
    let mut listener = subscriber(&b, "room");
    let a = api_node(&redis, "");
    let mut api = Http::connect(a.addr);
    for i in 0..3 {
        let text = format!("hello {i}");
        assert_eq!(api.request(&to_channel("room", &text)).status, 200);
        arrives(&mut listener, "room", &text);
    }
    let outages: Vec<String> = a
        .log_lines()
        .into_iter()
        .filter(|l| l.contains("unreachable"))
        .collect();
    assert_eq!(outages, Vec::<String>::new());
    assert_eq!(dropped(&a, "out"), 0);
}
