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
//!
//! Run with `cargo bench --bench router`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use rakit::events::Handler;
use rakit::router::{CommandPolicy, ConnId, Frame, Outbox, Router, RouterConfig};

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
    Router::new(
        RouterConfig {
            max_channels_per_client: 100,
            // Presence only when asked: no throttled updates during setup.
            presence: presence_max_users > 0,
            presence_interval: Duration::from_secs(3600),
            presence_max_users,
            command_policy: CommandPolicy::Any,
            ..RouterConfig::default()
        },
        Box::new(NoopHandler),
        0x5eed,
    )
}

fn fanout(c: &mut Criterion) {
    let mut group = c.benchmark_group("fanout");
    for members in [10usize, 1_000, 10_000] {
        let now = Instant::now();
        let mut r = router(0);
        let mut out = Counting::default();
        for conn in 0..members {
            r.connect(conn, None, 0, now, &mut out);
            r.handle_text(
                conn,
                r#"{"event":"subscribe","channel":"bench"}"#,
                now,
                &mut out,
            );
        }
        let publisher = members;
        r.connect(publisher, None, 0, now, &mut out);
        out.written();
        let message = r##"{"event":"message","channel":"bench","data":"#000001#xxxxxxxxxx"}"##;
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
        group.bench_with_input(BenchmarkId::from_parameter(members), &members, |b, _| {
            b.iter(|| {
                r.handle_text(publisher, black_box(message), now, &mut out);
                out.written();
            })
        });
        // Every measured call delivered to every member, and only to them.
        let measured = out.frames - before;
        assert!(
            measured > 0 && measured % members as u64 == 0,
            "{measured} deliveries for {members} members"
        );
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

criterion_group!(benches, fanout, presence);
criterion_main!(benches);
