//! The HTTP side and the metrics against hostile clients (issue 16): what a
//! client controls must not choose metric labels, stall the loop, pin the
//! port or make the daemon hold its unread answers.

mod common;

use std::io::Write;
use std::time::{Duration, Instant};

use common::api::{get, scrape, value_of, Http};
use common::*;
use rakit_protocol::OpCode;

/// The `rakit_closes_total` lines of a scrape.
fn close_lines(text: &str) -> Vec<&str> {
    text.lines()
        .filter(|l| l.starts_with("rakit_closes_total{"))
        .collect()
}

/// `rakit_closes_total{code}` labels only the close codes the server
/// chooses: a client's own close code, echoed back, counts as
/// `code="other"`, so a client cannot make up to 2,000 series.
#[test]
fn closes_label_only_the_servers_own_codes() {
    let daemon = Daemon::start("logging_level = \"warn\"\npresence = false\n", &[]);
    for code in [1000u16, 3000, 3999, 4321, 4999] {
        let mut s = raw_ws(&daemon);
        send_frame(&mut s, true, OpCode::Close, &code.to_be_bytes());
        let echo = loop {
            let f = read_frame(&mut s);
            if f.byte0 == 0x88 {
                break f;
            }
        };
        assert_eq!(echo.close_code(), code, "the echo carries the peer's code");
        expect_eof(&mut s);
    }
    // A code the server chooses keeps its label: an unmasked frame is 1002.
    let mut s = raw_ws(&daemon);
    s.write_all(&[0x81, 0x01, b'x']).unwrap();
    let close = loop {
        let f = read_frame(&mut s);
        if f.byte0 == 0x88 {
            break f;
        }
    };
    assert_eq!(close.close_code(), 1002);
    let text = scrape(daemon.addr, None);
    assert_eq!(
        close_lines(&text),
        [
            "rakit_closes_total{code=\"1002\"} 1",
            "rakit_closes_total{code=\"other\"} 5"
        ],
        "{text}"
    );
}

/// `rakit_messages_received_total` in a `/metrics` answer.
fn messages_received(r: &api::Response) -> f64 {
    value_of(r.text(), "rakit_messages_received_total").expect("the counter")
}

/// Hundreds of `GET /metrics` pipelined on one connection do not hold the
/// loop: a WebSocket client's message is handled while they are answered,
/// so the later answers already count it. (Each answer is a clock: it shows
/// how many messages the loop had received when it was rendered.) Before,
/// all the requests that one read brought were answered in one go, and the
/// client waited for every one of them.
#[test]
fn pipelined_scrapes_do_not_hold_the_loop() {
    // A send buffer that never stops a scrape's answers by itself.
    let daemon = Daemon::start(
        "logging_level = \"warn\"\npresence = false\nmax_send_buffer = 67108864\n",
        &[],
    );
    let (mut ws, _) = daemon.client();
    let mut http = Http::connect(daemon.addr);
    const N: usize = 1000;
    http.send(&get("/metrics", None).repeat(N));
    let mut before = Vec::new();
    for _ in 0..20 {
        before.push(http.read_response());
    }
    // The loop is answering the scrapes: now a message.
    send_text(&mut ws, r#"{"ping":1}"#);
    recv_type(&mut ws, "pong");
    let rest: Vec<api::Response> = (20..N).map(|_| http.read_response()).collect();
    let answers: Vec<&api::Response> = before.iter().chain(&rest).collect();
    assert!(answers.iter().all(|r| r.status == 200));
    let unaware = answers
        .iter()
        .filter(|r| messages_received(r) == 0.0)
        .count();
    eprintln!("{unaware} of {N} answers were rendered before the message was handled");
    assert!(
        unaware <= N / 2,
        "{unaware} of {N} pipelined scrapes were answered before a message sent after the first 20 answers"
    );
}

/// What came of one keep-alive `GET /health` on a new connection.
enum Poll {
    /// Answered; the connection stays open.
    Kept(Http),
    /// Refused with this status and `Connection: close`.
    Refused(u16),
    /// The socket was dropped without an answer.
    Dropped(String),
}

fn poll_health(daemon: &Daemon) -> Poll {
    let mut http = Http::connect(daemon.addr);
    http.send(&get("/health", None));
    match http.try_read_response() {
        Ok(r) if r.status == 200 && !r.closes() => Poll::Kept(http),
        Ok(r) => {
            assert!(r.closes(), "a refusal closes: {}", r.head);
            Poll::Refused(r.status)
        }
        Err(e) => Poll::Dropped(e),
    }
}

/// Keep-alive HTTP connections have their own cap (`max_http_connections`):
/// beyond it a request gets 503 and the connection is closed (not a socket
/// dropped without a word), and the pollers never take the room of
/// WebSocket handshakes, which still get up to `max_connections`. Before,
/// pollers filled every socket the daemon would hold (max_connections plus
/// 64 for handshakes in flight) and every later socket, handshakes
/// included, was dropped at accept.
#[test]
fn keep_alive_pollers_get_their_own_cap_and_503_beyond_it() {
    let daemon = Daemon::start(
        "logging_level = \"warn\"\nmax_connections = 2\nmax_http_connections = 3\n",
        &["--echo"],
    );
    let mut kept = Vec::new();
    let mut refused = 0;
    for i in 0..100 {
        match poll_health(&daemon) {
            Poll::Kept(http) => kept.push(http),
            Poll::Refused(status) => {
                assert_eq!(status, 503, "poller {i}");
                refused += 1;
            }
            Poll::Dropped(e) => panic!("poller {i} was dropped: {e}"),
        }
    }
    assert_eq!((kept.len(), refused), (3, 97));
    // WebSocket handshakes: up to max_connections, then 503.
    let _a = raw_ws(&daemon);
    let _b = raw_ws(&daemon);
    let (_s, head) = raw_handshake(&daemon, &upgrade_request("/", ""));
    assert_eq!(status_of(&head), 503, "{head}");
    // The pollers within the cap are still served.
    for http in &mut kept {
        assert_eq!(http.request(&get("/health", None)).status, 200);
    }
}

/// Clients that pipeline requests and never read the answers make the
/// daemon hold at most about 64 KiB of answers each (plus one answer and one
/// read of requests): then it stops reading them until the answers are read
/// (TCP back-pressure), as it does for WebSocket input. Before, it went on
/// until `max_send_buffer` of answers per connection (4 MiB here), beside
/// what the kernel's socket buffers take (up to 4 MiB each on loopback,
/// which is not the daemon's memory).
#[test]
fn unread_pipelined_answers_stop_the_reading() {
    let daemon = Daemon::start(
        "logging_level = \"warn\"\npresence = false\nmax_send_buffer = 4194304\n",
        &[],
    );
    let pid = daemon.child.id();
    let sent =
        || value_of(&scrape(daemon.addr, None), "rakit_bytes_sent_total").expect("bytes sent");
    // The demo page: 7.5 KB per answer, 40 bytes per request.
    let requests = get("/", None).repeat(1400);
    let before = vm_rss_kib(pid);
    let mut clients: Vec<Http> = (0..16)
        .map(|_| {
            let mut http = Http::connect(daemon.addr);
            http.send(&requests);
            http
        })
        .collect();
    // Until the daemon has written all it will (the kernel's buffers are
    // full): no more than the scrape's own answer between two scrapes.
    let deadline = Instant::now() + WAIT;
    let mut last = sent();
    loop {
        std::thread::sleep(Duration::from_millis(300));
        let now = sent();
        if now - last < 16_384.0 {
            break;
        }
        assert!(Instant::now() < deadline, "still writing");
        last = now;
    }
    let grown = vm_rss_kib(pid).saturating_sub(before);
    eprintln!("resident memory grew by {grown} KiB");
    assert!(
        grown < 24 * 1024,
        "{grown} KiB more for 16 clients that read none of their answers"
    );
    // Reading the answers lets the daemon go on.
    for _ in 0..1400 {
        assert_eq!(clients[0].read_response().status, 200);
    }
}

/// `n` keep-alive `GET /health` on one connection, pipelined by a writer
/// thread while the answers (`len` bytes each) are read here.
fn health_requests(daemon: &Daemon, n: usize, len: usize) {
    let mut http = Http::connect(daemon.addr);
    let mut writer = http.stream.try_clone().unwrap();
    let request = get("/health", None);
    let thread = std::thread::spawn(move || {
        let chunk = request.repeat(1000);
        for _ in 0..n / 1000 {
            writer.write_all(&chunk).unwrap();
        }
    });
    let mut left = n / 1000 * 1000 * len;
    let mut buf = vec![0u8; 64 * 1024];
    while left > 0 {
        use std::io::Read;
        let got = http.stream.read(&mut buf).expect("the answers");
        assert!(got > 0, "closed with {left} bytes of answers to come");
        left = left.checked_sub(got).expect("no more than the answers");
    }
    thread.join().unwrap();
}

/// A persistent HTTP connection has one idle timer, however many requests
/// it makes: its next request must come within `handshake_timeout` of its
/// last answer, and the one timer entry is re-armed from there when it
/// comes up. Before, every answer armed one more entry, kept for
/// `handshake_timeout`: a client pipelining requests grew the timer queue
/// by 32 bytes a request (a minute here).
#[test]
fn keep_alive_requests_do_not_pile_up_timers() {
    let daemon = Daemon::start("logging_level = \"warn\"\nhandshake_timeout = 60\n", &[]);
    let pid = daemon.child.id();
    let len = {
        let mut http = Http::connect(daemon.addr);
        let r = http.request(&get("/health", None));
        r.head.len() + r.body.len()
    };
    // Warm the allocator up with the same work, then measure.
    health_requests(&daemon, 20_000, len);
    let before = vm_rss_kib(pid);
    health_requests(&daemon, 300_000, len);
    let grown = vm_rss_kib(pid).saturating_sub(before);
    eprintln!("resident memory grew by {grown} KiB over 300,000 requests");
    assert!(grown < 4096, "{grown} KiB more after 300,000 requests");
}
