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

use common::redis::Redis;
use common::{Client, Daemon};
use rakit::cluster::envelope::{Body, Envelope};

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
