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
