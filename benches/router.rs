//! Criterion benches of the router (no sockets): what one message costs the
//! event loop before any byte is written.
//!
//! - `fanout/N`: one channel message from a non-member to a channel of N
//!   members (N = 10, 1,000, 10,000). Throughput is per delivery, so the
//!   reported time is the router's cost per recipient (one `Rc` clone into
//!   the outbox, plus the message's single parse and encoding spread over N).
//! - `presence/1000_users`: the `presence` command with 1,000 connected
//!   users: one presence message listing all of them, serialised once and
//!   queued for all 1,000. Throughput is per user.
//! - `namespaces/fanout_1000/{1,1000}`: `fanout/1000` on a channel inside a
//!   namespace (publish `any`), with that namespace alone and among 1,000, one
//!   of which restricts publishing, so every message looks at its channel's
//!   rules (SPEC section 15): the rules must not slow a channel message.
//! - `namespaces/lookup/{1,1000}`: finding the namespace of a 128-byte name
//!   among 1 and 1,000 namespaces (the trie's worst case: a long path).
//!
//! Run with `cargo bench --bench router`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use rakit::events::Handler;
use std::rc::Rc;

use rakit::router::{
    CommandPolicy, ConnId, Frame, Namespace, Namespaces, Outbox, PublishPolicy, Router,
    RouterConfig, RouterLimits,
};

/// Fires nothing: the benches measure the router, not logging.
struct NoopHandler;
impl Handler for NoopHandler {}

/// Counts what the router queues, as the event loop's outbox would queue it.
#[derive(Default)]
struct Counting {
    frames: u64,
    bytes: u64,
    held: Vec<Frame>,
}

impl Outbox for Counting {
    fn send(&mut self, _conn: ConnId, frame: &Frame) {
        self.frames += 1;
        self.bytes += frame.len() as u64;
        // Like a send queue: keep a reference until it is "written".
        self.held.push(Frame::clone(frame));
    }
    fn close(&mut self, _conn: ConnId, _code: u16, _reason: &str) {}
}

impl Counting {
    fn written(&mut self) {
        self.held.clear();
    }
}

fn router(presence_max_users: usize) -> Router {
    router_with(presence_max_users, Namespaces::default())
}

fn router_with(presence_max_users: usize, namespaces: Namespaces) -> Router {
    Router::new(
        RouterConfig {
            namespaces: Rc::new(namespaces),
            max_channels_per_client: 100,
            // Presence only when asked: no throttled updates during setup.
            presence: presence_max_users > 0,
            presence_interval: Duration::from_secs(3600),
            presence_max_users,
            command_policy: CommandPolicy::Any,
            // The benches publish as fast as they can: SPEC 17's limits off, explicitly.
            limits: RouterLimits::OFF,
            ..RouterConfig::default()
        },
        Box::new(NoopHandler),
        0x5eed,
    )
}

fn fanout(c: &mut Criterion) {
    let mut group = c.benchmark_group("fanout");
    for members in [10usize, 1_000, 10_000] {
        bench_fanout(
            &mut group,
            BenchmarkId::from_parameter(members),
            router(0),
            members,
            "bench",
        );
    }
    group.finish();
}

/// One channel message from a non-member to `members` subscribers of `channel` in `r`.
fn bench_fanout(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    id: BenchmarkId,
    mut r: Router,
    members: usize,
    channel: &str,
) {
    let now = Instant::now();
    let mut out = Counting::default();
    let subscribe = format!(r#"{{"event":"subscribe","channel":"{channel}"}}"#);
    for conn in 0..members {
        r.connect(conn, None, 0, now, &mut out);
        r.handle_text(conn, &subscribe, now, &mut out);
    }
    let publisher = members;
    r.connect(publisher, None, 0, now, &mut out);
    out.written();
    let message =
        format!(r##"{{"event":"message","channel":"{channel}","data":"#000001#xxxxxxxxxx"}}"##);
    let message = message.as_str();
    // What one measured call does: exactly one delivery per member (not
    // to the publisher, who is no member), all of one shared encoding
    // that carries the data.
    let before = out.frames;
    r.handle_text(publisher, message, now, &mut out);
    assert_eq!(
        out.frames - before,
        members as u64,
        "one delivery per member"
    );
    let first = &out.held[0];
    assert!(
        out.held.iter().all(|f| Frame::ptr_eq(f, first)),
        "encoded once"
    );
    assert!(
        first.windows(8).any(|w| w == b"#000001#"),
        "carries the data"
    );
    out.written();
    let before = out.frames;
    group.throughput(Throughput::Elements(members as u64));
    group.bench_with_input(id, &members, |b, _| {
        b.iter(|| {
            r.handle_text(publisher, black_box(message), now, &mut out);
            out.written();
        })
    });
    // Every measured call delivered to every member, and only to them (none ran when a filter
    // left this bench out).
    let measured = out.frames - before;
    assert!(
        measured % members as u64 == 0,
        "{measured} deliveries for {members} members"
    );
}

/// 1,000 namespaces: `ns0000.` to `ns0997.` (one per prefix, side by side), and two long chains
/// that share their beginnings with the benched names, so a lookup walks a deep path.
fn thousand_namespaces() -> Namespaces {
    // One of them restricts publishing, so a client's channel message looks at its rules.
    let mut list: Vec<Namespace> = (0..998)
        .map(|i| Namespace {
            prefix: format!("ns{i:04}."),
            publish: if i == 1 {
                PublishPolicy::Backend
            } else {
                PublishPolicy::Any
            },
            ..Namespace::default_rules()
        })
        .collect();
    for prefix in ["ns0500.room.", &format!("ns0500.room.{}", "x".repeat(100))] {
        list.push(Namespace {
            prefix: prefix.to_owned(),
            ..Namespace::default_rules()
        });
    }
    let namespaces = Namespaces::new(list);
    assert_eq!(namespaces.len(), 1_001, "1,000 and the default");
    namespaces
}

fn namespaces(c: &mut Criterion) {
    let mut group = c.benchmark_group("namespaces");
    let channel = "ns0500.room.1";
    let one = Namespaces::new([Namespace {
        prefix: "ns0500.room.".into(),
        ..Namespace::default_rules()
    }]);
    for (n, rules) in [(1, one), (1_000, thousand_namespaces())] {
        assert_eq!(rules.of(channel).prefix, "ns0500.room.");
        let id = BenchmarkId::new("fanout_1000", n);
        bench_fanout(&mut group, id, router_with(0, rules), 1_000, channel);
    }
    // The lookup alone, on a 128-byte name whose namespace is the deepest prefix.
    let name = format!("ns0500.room.{}", "x".repeat(116));
    assert_eq!(name.len(), 128);
    let deep = Namespaces::new([Namespace {
        prefix: format!("ns0500.room.{}", "x".repeat(100)),
        ..Namespace::default_rules()
    }]);
    group.throughput(Throughput::Elements(1));
    for (n, rules) in [(1, deep), (1_000, thousand_namespaces())] {
        assert_eq!(rules.of(&name).prefix.len(), 112);
        group.bench_with_input(BenchmarkId::new("lookup", n), &n, |b, _| {
            b.iter(|| rules.lookup(black_box(&name)))
        });
    }
    group.finish();
}

fn presence(c: &mut Criterion) {
    let mut group = c.benchmark_group("presence");
    let users = 1_000usize;
    let now = Instant::now();
    let mut r = router(users);
    let mut out = Counting::default();
    for conn in 0..users {
        r.connect(conn, None, 1_700_000_000 + conn as u64, now, &mut out);
    }
    out.written();
    let before = out.bytes;
    r.handle_text(0, r#"{"command":"presence"}"#, now, &mut out);
    out.written();
    assert!(
        out.bytes - before > (users * users * 40) as u64,
        "presence lists every user"
    );
    group.throughput(Throughput::Elements(users as u64));
    group.bench_function("1000_users", |b| {
        b.iter(|| {
            r.handle_text(0, black_box(r#"{"command":"presence"}"#), now, &mut out);
            out.written();
        })
    });
    group.finish();
}

criterion_group!(benches, fanout, presence, namespaces);
criterion_main!(benches);
