//! The worker against a local receiver (a std TcpListener thread): batching, order, signature,
//! retries, a hanging endpoint and a dead one.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::AtomicUsize;
use std::sync::mpsc::{self, Receiver as Rx};
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;

use super::*;

const WAIT: Duration = Duration::from_secs(10);
const SECRET: &str = "s3cret-for-tests";

/// One request the receiver got.
struct Got {
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    at: Instant,
}

impl Got {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }

    /// The `text` of every event, in order.
    fn texts(&self) -> Vec<String> {
        self.json()["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["text"].as_str().unwrap().to_owned())
            .collect()
    }
}

/// How the receiver answers its n-th request (0-based).
#[derive(Clone, Copy)]
enum Answer {
    Status(u16),
    /// Read the request, then never answer.
    Hang,
}

struct Endpoint {
    url: String,
    got: Rx<Got>,
}

impl Endpoint {
    fn start(answer: fn(usize) -> Answer) -> Endpoint {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let (tx, got) = mpsc::channel();
        let count = Arc::new(AtomicUsize::new(0));
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                let (tx, count) = (tx.clone(), Arc::clone(&count));
                thread::spawn(move || serve(stream, answer, &tx, &count));
            }
        });
        Endpoint { url, got }
    }

    #[track_caller]
    fn next(&self) -> Got {
        self.got.recv_timeout(WAIT).expect("a webhook request")
    }
}

/// Answers requests on one connection (ureq keeps it alive) until it closes.
fn serve(
    stream: TcpStream,
    answer: fn(usize) -> Answer,
    tx: &mpsc::Sender<Got>,
    count: &AtomicUsize,
) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;
    loop {
        let mut headers = Vec::new();
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        loop {
            line.clear();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            let (k, v) = l.split_once(':').unwrap();
            headers.push((k.trim().to_owned(), v.trim().to_owned()));
        }
        let len: usize = headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
            .map_or(0, |(_, v)| v.parse().unwrap());
        let mut body = vec![0; len];
        reader.read_exact(&mut body).unwrap();
        let n = count.fetch_add(1, Ordering::SeqCst);
        let _ = tx.send(Got {
            headers,
            body,
            at: Instant::now(),
        });
        match answer(n) {
            Answer::Status(status) => {
                let reply = format!("HTTP/1.1 {status} X\r\nContent-Length: 0\r\n\r\n");
                if writer.write_all(reply.as_bytes()).is_err() {
                    return;
                }
            }
            Answer::Hang => loop {
                thread::park();
            },
        }
    }
}

fn settings(url: &str, edit: impl FnOnce(&mut Settings)) -> Settings {
    let mut s = Settings {
        url: url.to_owned(),
        format: Format::Rakit {
            secret: SECRET.to_owned(),
        },
        events: WebhookEvent::ALL.to_vec(),
        batch_max: 100,
        batch_ms: Duration::from_millis(20),
        queue_max: 1000,
        queue_max_bytes: 16 << 20,
        timeout: Duration::from_secs(5),
        retries: 3,
        backoff: Duration::from_millis(10),
        node: "node-test".to_owned(),
    };
    edit(&mut s);
    s
}

/// Pushes `message` events whose texts are the numbers `range`.
fn push(h: &WebhookHandler, range: std::ops::Range<usize>) {
    for i in range {
        assert!(h.push(
            WebhookEvent::Message,
            "AbCd1234",
            None,
            Detail::Text(&i.to_string())
        ));
    }
}

fn texts(range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|i| i.to_string()).collect()
}

/// Waits until the counters satisfy `done` (they move on the worker thread).
#[track_caller]
fn await_counts(hooks: &Webhooks, done: impl Fn(WebhookCounts) -> bool) -> WebhookCounts {
    let deadline = Instant::now() + WAIT;
    loop {
        let c = hooks.counters().snapshot();
        if done(c) {
            return c;
        }
        assert!(Instant::now() < deadline, "counters stuck at {c:?}");
        thread::sleep(Duration::from_millis(2));
    }
}

#[test]
fn batches_by_size_keep_the_order() {
    let ep = Endpoint::start(|_| Answer::Status(200));
    let hooks = Webhooks::start(settings(&ep.url, |s| {
        s.batch_max = 3;
        s.batch_ms = Duration::from_millis(300);
    }))
    .unwrap();
    let h = hooks.handler();
    let pushed = Instant::now();
    push(&h, 0..7);
    assert_eq!(ep.next().texts(), texts(0..3));
    assert_eq!(ep.next().texts(), texts(3..6));
    let last = ep.next();
    assert_eq!(last.texts(), texts(6..7));
    assert!(
        last.at - pushed >= Duration::from_millis(290),
        "a lone event waits batch_ms"
    );
    let c = await_counts(&hooks, |c| c.sent == 7);
    assert_eq!((c.failed, c.dropped), (0, 0));
    assert!(hooks.shutdown(Duration::from_secs(2)));
}

#[test]
fn batches_by_time() {
    let ep = Endpoint::start(|_| Answer::Status(204));
    let hooks = Webhooks::start(settings(&ep.url, |s| {
        s.batch_ms = Duration::from_millis(250)
    }))
    .unwrap();
    let h = hooks.handler();
    let first = Instant::now();
    push(&h, 0..1);
    // A second event well inside the window joins the first one's batch.
    thread::sleep(Duration::from_millis(50));
    push(&h, 1..2);
    let got = ep.next();
    assert_eq!(got.texts(), texts(0..2));
    let waited = got.at - first;
    assert!(waited >= Duration::from_millis(240), "{waited:?}");
    assert!(waited < Duration::from_millis(250) + WAIT / 2, "{waited:?}");
    await_counts(&hooks, |c| c.sent == 2);
}

#[test]
fn body_shape_and_signature_verify() {
    let ep = Endpoint::start(|_| Answer::Status(200));
    let hooks = Webhooks::start(settings(&ep.url, |_| {})).unwrap();
    let mut h = hooks.handler();
    let ann = User {
        id: "42".into(),
        name: "Ann".into(),
        email: None,
        admin: true,
    };
    let before = now_ms();
    h.connect("AbCd1234", Some(&ann));
    h.subscribe("AbCd1234", Some(&ann), "news");
    h.receive("AbCd1234", Some(&ann), "{\"message\":\"hi\"}");
    h.unsubscribe("AbCd1234", Some(&ann), "news");
    h.disconnect("AbCd1234", Some(&ann));
    let got = ep.next();
    assert_eq!(got.header("content-type"), Some("application/json"));
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(&got.body);
    let expected: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(
        got.header("x-rakit-signature"),
        Some(&*format!("sha256={expected}"))
    );
    let v = got.json();
    assert_eq!(v["node"], "node-test");
    assert!(v["time_ms"].as_u64().unwrap() >= before);
    let events = v["events"].as_array().unwrap();
    let names: Vec<&str> = events.iter().map(|e| e["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "connect",
            "subscribe",
            "message",
            "unsubscribe",
            "disconnect"
        ]
    );
    let user = serde_json::json!({"id":"42","name":"Ann","email":null});
    for e in events {
        assert_eq!(e["client_id"], "AbCd1234");
        assert_eq!(e["user"], user);
        assert!(e["time_ms"].as_u64().unwrap() >= before);
    }
    assert_eq!(events[1]["channel"], "news");
    assert_eq!(events[2]["text"], "{\"message\":\"hi\"}");
    assert!(events[0].get("channel").is_none() && events[0].get("text").is_none());
}

#[test]
fn pusher_format_body_headers_and_events() {
    let ep = Endpoint::start(|_| Answer::Status(200));
    let hooks = Webhooks::start(settings(&ep.url, |s| {
        s.format = Format::Pusher {
            key: "app-key".into(),
            secret: SECRET.into(),
        };
        s.events = crate::config::WebhookFormat::Pusher
            .default_events()
            .to_vec();
    }))
    .unwrap();
    let mut h = hooks.handler();
    let before = now_ms();
    // Not in the set: neither a Rakit event nor client_event is queued.
    h.connect("AbCd1234", None);
    let data = serde_json::value::RawValue::from_string("{}".into()).unwrap();
    assert!(!h.push_channel(&ChannelActivity::ClientEvent {
        channel: "private-a",
        event: "client-x",
        data: &data,
        socket_id: "1.2",
        user_id: None,
    }));
    h.channel(&ChannelActivity::Occupied {
        channel: "presence-r",
    });
    h.channel(&ChannelActivity::MemberAdded {
        channel: "presence-r",
        user_id: "7",
    });
    h.channel(&ChannelActivity::MemberRemoved {
        channel: "presence-r",
        user_id: "7",
    });
    h.channel(&ChannelActivity::Vacated {
        channel: "presence-r",
    });
    let got = ep.next();
    assert_eq!(got.header("content-type"), Some("application/json"));
    assert_eq!(got.header("x-pusher-key"), Some("app-key"));
    assert_eq!(got.header("x-rakit-signature"), None);
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(&got.body);
    let expected: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(got.header("x-pusher-signature"), Some(&*expected));
    let v = got.json();
    assert!(v["time_ms"].as_u64().unwrap() >= before);
    assert!(v.get("node").is_none(), "{v}");
    assert_eq!(
        v["events"],
        serde_json::json!([
            {"name": "channel_occupied", "channel": "presence-r"},
            {"name": "member_added", "channel": "presence-r", "user_id": "7"},
            {"name": "member_removed", "channel": "presence-r", "user_id": "7"},
            {"name": "channel_vacated", "channel": "presence-r"},
        ])
    );
    let c = await_counts(&hooks, |c| c.sent == 4);
    assert_eq!((c.failed, c.dropped), (0, 0));
}

#[test]
fn only_configured_events_are_queued() {
    let ep = Endpoint::start(|_| Answer::Status(200));
    let hooks = Webhooks::start(settings(&ep.url, |s| {
        s.events = vec![WebhookEvent::Disconnect]
    }))
    .unwrap();
    let mut h = hooks.handler();
    h.connect("a", None);
    h.receive("a", None, "x");
    h.disconnect("a", None);
    let got = ep.next();
    assert_eq!(got.json()["events"].as_array().unwrap().len(), 1);
    assert_eq!(got.json()["events"][0]["name"], "disconnect");
}

#[test]
fn a_5xx_is_retried_and_nothing_is_lost() {
    let ep = Endpoint::start(|n| Answer::Status(if n < 2 { 500 } else { 200 }));
    let hooks = Webhooks::start(settings(&ep.url, |_| {})).unwrap();
    push(&hooks.handler(), 0..3);
    let (a, b, c) = (ep.next(), ep.next(), ep.next());
    assert_eq!(a.body, b.body, "a retry resends the same batch");
    assert_eq!(b.body, c.body);
    assert_eq!(c.texts(), texts(0..3));
    let counts = await_counts(&hooks, |c| c.sent == 3);
    assert_eq!((counts.failed, counts.dropped), (0, 0));
    push(&hooks.handler(), 3..4);
    assert_eq!(ep.next().texts(), texts(3..4));
}

#[test]
fn a_4xx_is_not_retried() {
    let ep = Endpoint::start(|_| Answer::Status(400));
    let hooks = Webhooks::start(settings(&ep.url, |_| {})).unwrap();
    push(&hooks.handler(), 0..2);
    assert_eq!(ep.next().texts(), texts(0..2));
    await_counts(&hooks, |c| c.failed == 2);
    // The batch is settled, and it was tried once.
    assert!(ep.got.try_recv().is_err());
    assert_eq!(hooks.counters().snapshot().sent, 0);
}

#[test]
fn a_hanging_endpoint_never_blocks_the_pushing_side() {
    let ep = Endpoint::start(|_| Answer::Hang);
    let hooks = Webhooks::start(settings(&ep.url, |s| {
        s.timeout = Duration::from_secs(60);
        s.batch_max = 1;
        s.queue_max = 50;
        s.retries = 0;
    }))
    .unwrap();
    let h = hooks.handler();
    push(&h, 0..1);
    ep.next(); // the worker is now stuck in that request
    let mut slowest = Duration::ZERO;
    let start = Instant::now();
    for i in 1..2001 {
        let t = Instant::now();
        h.push(
            WebhookEvent::Message,
            "AbCd1234",
            None,
            Detail::Text(&i.to_string()),
        );
        slowest = slowest.max(t.elapsed());
    }
    let total = start.elapsed();
    // A blocking push would take the 60 s timeout; these are microseconds each (the bound is
    // loose for a loaded 2-core machine).
    assert!(
        total < Duration::from_millis(500),
        "2000 pushes took {total:?}"
    );
    assert!(
        slowest < Duration::from_millis(100),
        "slowest push {slowest:?}"
    );
    // The queue holds queue_max; everything beyond is dropped and counted.
    let c = hooks.counters().snapshot();
    assert_eq!((c.sent, c.dropped), (0, 2000 - 50));
    let t = Instant::now();
    assert!(
        !hooks.shutdown(Duration::from_millis(200)),
        "the worker is still stuck"
    );
    assert!(t.elapsed() < Duration::from_secs(2));
}

/// Bytes, not only events: `message` events whose text is control characters escape to six
/// bytes a character, and the JSON queued or in flight stays within `queue_max_bytes` (plus the
/// one event that may cross it), however many events `queue_max` would allow.
#[test]
fn a_hanging_endpoint_holds_at_most_queue_max_bytes() {
    let ep = Endpoint::start(|_| Answer::Hang);
    let hooks = Webhooks::start(settings(&ep.url, |s| {
        s.timeout = Duration::from_secs(60);
        s.batch_max = 4;
        s.queue_max = 10_000;
        s.queue_max_bytes = 1 << 20;
        s.retries = 0;
    }))
    .unwrap();
    let h = hooks.handler();
    let text = "\u{1}".repeat(16 * 1024);
    let event = encode(
        WebhookEvent::Message,
        "AbCd1234",
        None,
        now_ms(),
        Detail::Text(&text),
    );
    assert!(event.len() > 6 * 16 * 1024, "{}", event.len());
    let mut queued = 0;
    for _ in 0..200 {
        if h.push(WebhookEvent::Message, "AbCd1234", None, Detail::Text(&text)) {
            queued += 1;
        }
    }
    // The first batch is in flight (the endpoint hangs), the rest waits: all counted.
    let held = hooks.shared.bytes.held();
    assert!(held <= (1 << 20) + event.len(), "{held} bytes held");
    assert_eq!(
        queued,
        (1usize << 20).div_ceil(event.len()),
        "{queued} queued"
    );
    let c = hooks.counters().snapshot();
    assert_eq!((c.sent, c.dropped), (0, 200 - queued as u64));
    ep.next();
    assert!(!hooks.shutdown(Duration::from_millis(100)));
}

/// What a batch held is free again once it is done with.
#[test]
fn a_delivered_batch_gives_its_bytes_back() {
    let ep = Endpoint::start(|_| Answer::Status(200));
    let hooks = Webhooks::start(settings(&ep.url, |s| {
        s.batch_ms = Duration::ZERO;
        s.queue_max_bytes = 64 * 1024;
    }))
    .unwrap();
    let h = hooks.handler();
    let text = "x".repeat(40 * 1024);
    for round in 0..5 {
        assert!(
            h.push(WebhookEvent::Message, "a", None, Detail::Text(&text)),
            "round {round}"
        );
        ep.next();
        await_counts(&hooks, |c| c.sent == round + 1);
        let deadline = Instant::now() + Duration::from_secs(10);
        while hooks.shared.bytes.held() > 0 {
            assert!(
                Instant::now() < deadline,
                "still held: {}",
                hooks.shared.bytes.held()
            );
            thread::sleep(Duration::from_millis(5));
        }
    }
    assert_eq!(hooks.counters().snapshot().dropped, 0);
    assert!(hooks.shutdown(Duration::from_secs(2)));
}

#[test]
fn a_dead_endpoint_fails_after_retries_and_the_queue_stays_bounded() {
    // A port that was free a moment ago: connections are refused.
    let url = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}/hook", l.local_addr().unwrap())
    };
    let hooks = Webhooks::start(settings(&url, |s| {
        s.retries = 2;
        s.backoff = Duration::from_millis(5);
        s.batch_max = 10;
        s.queue_max = 20;
    }))
    .unwrap();
    let h = hooks.handler();
    for i in 0..200 {
        h.push(
            WebhookEvent::Message,
            "a",
            None,
            Detail::Text(&i.to_string()),
        );
    }
    let c = await_counts(&hooks, |c| c.sent + c.failed + c.dropped == 200);
    assert_eq!(c.sent, 0);
    assert!(c.failed >= 10, "{c:?}");
    // At most queue_max waiting plus a batch in flight (plus what the worker took while the
    // pushes ran) were ever held.
    assert!(c.dropped >= 100, "{c:?}");
    assert!(hooks.shutdown(Duration::from_secs(2)));
}

#[test]
fn shutdown_flushes_what_is_queued() {
    let ep = Endpoint::start(|_| Answer::Status(200));
    let hooks =
        Webhooks::start(settings(&ep.url, |s| s.batch_ms = Duration::from_secs(30))).unwrap();
    let counters = hooks.counters();
    push(&hooks.handler(), 0..3);
    let t = Instant::now();
    assert!(hooks.shutdown(Duration::from_secs(2)));
    assert!(t.elapsed() < Duration::from_secs(2));
    assert_eq!(ep.next().texts(), texts(0..3));
    assert_eq!(counters.snapshot().sent, 3);
}

#[test]
fn settings_from_config() {
    let mut c = WebhooksConfig::default();
    let pusher = PusherConfig::default();
    assert!(Settings::from_config(&c, &pusher, "n".into()).is_none());
    c.url = "http://127.0.0.1:9/x".into();
    c.secret = "s".into();
    let s = Settings::from_config(&c, &pusher, "n".into()).unwrap();
    assert_eq!((s.batch_max, s.queue_max, s.retries), (100, 10_000, 3));
    assert_eq!(s.queue_max_bytes, 16 * 1024 * 1024);
    assert_eq!(
        (s.batch_ms, s.timeout),
        (Duration::from_millis(100), Duration::from_secs(5))
    );
}
