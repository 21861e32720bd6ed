//! The API's connections: keep-alive, pipelining, trickled requests, closes, idle timeouts and
//! a client that pipelines without reading.

use std::io::Write;
use std::net::TcpStream;

use super::*;
use common::abuse::LIMITS_OFF;

/// One connection carries 1,000 requests, commands and queries mixed; every
/// command is carried out, in order.
#[test]
fn one_connection_carries_a_thousand_requests() {
    let daemon = daemon();
    let (mut sub, _) = subscriber(&daemon, "ka");
    let mut api = Http::connect(daemon.addr);
    for i in 0..1000 {
        if i % 2 == 0 {
            let body = json!({"command":"broadcast_to_channel","channel":"ka","message":i});
            let r = api.request(&command(&body.to_string()));
            assert_eq!(expect_json(&r, 200), json!({"ok":true}), "request {i}");
        } else {
            let r = api.request(&get("/api/channels/ka", Some(API_KEY)));
            assert_eq!(expect_json(&r, 200)["subscribers"], 1, "request {i}");
        }
    }
    for i in (0..1000).step_by(2) {
        assert_eq!(
            recv_json(&mut sub),
            json!({"type":"channel","channel":"ka","data":i})
        );
    }
    assert_eq!(until_pong(&mut sub), Vec::<Value>::new());
}

/// Ten requests in one write get ten answers, in order.
#[test]
fn ten_pipelined_requests_are_answered_in_order() {
    let daemon = daemon();
    let (mut sub, _) = subscriber(&daemon, "p");
    let mut batch = Vec::new();
    for i in 0..10 {
        if i % 3 == 0 {
            let body = json!({"command":"broadcast_to_channel","channel":"p","message":i});
            batch.extend(command(&body.to_string()));
        } else {
            batch.extend(get(&format!("/api/channels/c{i}"), Some(API_KEY)));
        }
    }
    let mut api = Http::connect(daemon.addr);
    api.send(&batch);
    for i in 0..10 {
        let v = expect_json(&api.read_response(), 200);
        if i % 3 == 0 {
            assert_eq!(v, json!({"ok":true}), "answer {i}");
        } else {
            assert_eq!(v["name"], format!("c{i}"), "answer {i}");
        }
    }
    assert_eq!(
        until_pong(&mut sub),
        [0, 3, 6, 9]
            .iter()
            .map(|i| json!({"type":"channel","channel":"p","data":i}))
            .collect::<Vec<_>>()
    );
    // The connection is still usable.
    expect_json(&api.request(&get("/api/presence", Some(API_KEY))), 200);
}

/// A request (head and body) written one byte per segment is answered
/// once its last byte is in, and the connection serves on.
#[test]
fn a_request_trickled_one_byte_at_a_time() {
    let daemon = daemon();
    let (mut sub, _) = subscriber(&daemon, "t");
    let body = json!({"command":"broadcast_to_channel","channel":"t","message":"trickled"});
    let request = command(&body.to_string());
    let mut api = Http::connect(daemon.addr);
    for byte in &request {
        api.send(std::slice::from_ref(byte));
        // Paced so that the bytes travel in separate segments (nodelay).
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(expect_json(&api.read_response(), 200), json!({"ok":true}));
    assert_eq!(
        recv_json(&mut sub),
        json!({"type":"channel","channel":"t","data":"trickled"})
    );
    expect_json(&api.request(&get("/api/presence", Some(API_KEY))), 200);
}

/// `Connection: close` is honoured: the answer says so, then the server
/// closes. HTTP/1.0 closes unless it asks for keep-alive; HTTP/1.1 keeps
/// the connection open.
#[test]
fn connection_close_and_http_1_0_close_after_the_answer() {
    let daemon = daemon();
    let auth = format!("Authorization: Bearer {API_KEY}\r\n");
    // HTTP/1.1 default: kept.
    let mut api = Http::connect(daemon.addr);
    let r = api.request(&get("/api/presence", Some(API_KEY)));
    assert!(!r.closes(), "{}", r.head);
    expect_json(&api.request(&get("/api/presence", Some(API_KEY))), 200);
    // HTTP/1.1 with Connection: close, also after a kept request.
    let r = api.request(
        format!("GET /api/presence HTTP/1.1\r\nHost: x\r\n{auth}Connection: close\r\n\r\n")
            .as_bytes(),
    );
    expect_json(&r, 200);
    assert!(r.closes(), "{}", r.head);
    api.expect_closed();
    // A POST with Connection: close.
    let body = r#"{"command":"presence"}"#;
    let mut api = Http::connect(daemon.addr);
    let r = api.request(
        format!(
            "POST /api/commands HTTP/1.1\r\nHost: x\r\n{auth}Connection: close\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    );
    expect_json(&r, 200);
    assert!(r.closes());
    api.expect_closed();
    // HTTP/1.0: closed after the answer.
    let mut api = Http::connect(daemon.addr);
    let r = api.request(format!("GET /api/presence HTTP/1.0\r\n{auth}\r\n").as_bytes());
    expect_json(&r, 200);
    assert!(r.closes(), "{}", r.head);
    api.expect_closed();
    // HTTP/1.0 asking for keep-alive: kept.
    let mut api = Http::connect(daemon.addr);
    let keep = format!("GET /api/presence HTTP/1.0\r\n{auth}Connection: keep-alive\r\n\r\n");
    let r = api.request(keep.as_bytes());
    assert!(!r.closes(), "{}", r.head);
    expect_json(&api.request(keep.as_bytes()), 200);
}

/// An idle API connection is closed after `handshake_timeout` (1 s here),
/// after a request as before the first one.
#[test]
fn an_idle_api_connection_is_closed_after_handshake_timeout() {
    let daemon = Daemon::start(&config("presence = false\nhandshake_timeout = 1"), &[]);
    let mut api = Http::connect(daemon.addr);
    expect_json(&api.request(&get("/api/presence", Some(API_KEY))), 200);
    let idle = Instant::now();
    api.expect_closed();
    let took = idle.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(1) + SLACK,
        "closed after {took:?}"
    );
    // A connection that started a request and stalls is closed too.
    let mut api = Http::connect(daemon.addr);
    api.send(b"GET /api/presence HTTP/1.1\r\nHost: x\r\n");
    let stalled = Instant::now();
    api.expect_closed();
    assert!(stalled.elapsed() < Duration::from_secs(1) + SLACK);
    // A body that never completes too.
    let mut api = Http::connect(daemon.addr);
    api.send(
        format!(
            "POST /api/commands HTTP/1.1\r\nAuthorization: Bearer {API_KEY}\r\nContent-Length: 50\r\n\r\n{{"
        )
        .as_bytes(),
    );
    let stalled = Instant::now();
    api.expect_closed();
    assert!(stalled.elapsed() < Duration::from_secs(1) + SLACK);
}

/// A client that pipelines thousands of requests and never reads: once its
/// unsent answers pass `max_send_buffer` the daemon stops reading from it,
/// so its memory stays bounded, everyone else is served meanwhile, and
/// every request is answered, in order, once the client reads.
#[test]
fn a_pipelining_client_that_never_reads_is_held_back_and_others_are_served() {
    // The probe below pings as fast as round trips go, for a second at least: SPEC 17's
    // message bucket off, explicitly.
    let daemon = Daemon::start(
        &format!(
            "{}{LIMITS_OFF}",
            config("presence = false\nmax_send_buffer = 65536")
        ),
        &[],
    );
    // Twenty clients make each presence answer about 1.6 KB: ~25 times
    // the ~70 bytes of its request.
    let mut clients: Vec<Client> = (0..20).map(|_| daemon.client().0).collect();
    let request = get("/api/presence", Some(API_KEY));
    let answer_len = {
        let mut warm = Http::connect(daemon.addr);
        let r = warm.request(&request);
        expect_json(&r, 200);
        r.head.len() + r.body.len()
    };
    // Warm up the allocator with the same kind of work, then measure.
    for _ in 0..200 {
        once(daemon.addr, &request);
    }
    let before = vm_rss_kib(daemon.child.id());

    // 2 MiB of requests: if all were read and answered at once, their
    // answers would take about 50 MiB.
    let n = (2 << 20) / request.len();
    let all: Vec<u8> = request
        .iter()
        .copied()
        .cycle()
        .take(n * request.len())
        .collect();
    let hog = TcpStream::connect(daemon.addr).unwrap();
    hog.set_read_timeout(Some(WAIT)).unwrap();
    let writer = {
        let mut hog = hog.try_clone().unwrap();
        std::thread::spawn(move || hog.write_all(&all).map(|()| n))
    };

    // Meanwhile: others are served (and the daemon's memory is sampled).
    let mut worst = 0;
    let started = Instant::now();
    let mut rounds = 0;
    while rounds < 50 || started.elapsed() < Duration::from_secs(1) {
        let t = Instant::now();
        expect_json(
            &once(daemon.addr, &get("/api/channels", Some(API_KEY))),
            200,
        );
        send_json(&mut clients[0], &json!({"ping": rounds}));
        assert_eq!(recv_json(&mut clients[0]), json!({"type":"pong"}));
        assert!(
            t.elapsed() < SLACK,
            "another client waited {:?}",
            t.elapsed()
        );
        worst = worst.max(vm_rss_kib(daemon.child.id()));
        rounds += 1;
    }
    let grown = worst.saturating_sub(before);
    eprintln!(
        "pipelined {n} requests (answers {answer_len} bytes each); daemon RSS {before} KiB, at most +{grown} KiB"
    );
    assert!(
        grown < 8 * 1024,
        "the daemon grew by {grown} KiB while a client pipelined without reading"
    );

    // Now read: every request is answered, in order, and the writer finishes.
    let mut reader = Http::from_stream(hog);
    for i in 0..n {
        let r = reader.read_response();
        assert_eq!(r.status, 200, "answer {i}");
        assert_eq!(
            r.header("content-length"),
            Some(&*(answer_len - r.head.len()).to_string())
        );
    }
    assert_eq!(writer.join().unwrap().expect("all written"), n);
    for ws in &mut clients {
        assert_eq!(until_pong(ws), Vec::<Value>::new());
    }
}

// ---- The demo page (SPEC section 14) ----

/// `GET /` is a self-contained HTML page: no external script, style, font
/// or image; `demo_page = false` makes it 404.
#[test]
fn the_demo_page_is_self_contained_and_can_be_turned_off() {
    let daemon = Daemon::start("logging_level = \"warn\"\n", &[]);
    let r = once(daemon.addr, b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n");
    assert_eq!(r.status, 200, "{}", r.head);
    assert!(
        r.header("content-type")
            .is_some_and(|t| t.starts_with("text/html")),
        "{}",
        r.head
    );
    let page = r.text().to_ascii_lowercase();
    assert!(page.contains("<html") && page.contains("<script"), "{page}");
    assert!(
        page.contains("new websocket("),
        "connects back with WebSocket"
    );
    // Every reference the page makes stays inside it.
    for attr in ["src=", "href=", "url(", "@import", "srcset="] {
        for (at, _) in page.match_indices(attr) {
            let value = page[at + attr.len()..]
                .trim_start_matches(['"', '\'', ' '])
                .to_owned();
            assert!(
                value.starts_with("data:") || value.starts_with('#'),
                "an external resource: {}",
                &page[at..(at + 80).min(page.len())]
            );
        }
    }
    assert!(
        !page.contains("http://") && !page.contains("https://") && !page.contains("'//"),
        "no absolute URL: {page}"
    );
    // Not an API response, but still framed by Content-Length (checked by
    // the reader) and kept alive.
    assert!(!r.closes());

    let off = Daemon::start("logging_level = \"warn\"\ndemo_page = false\n", &[]);
    let r = once(off.addr, b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n");
    assert_eq!(r.status, 404, "{}", r.head);
    // The WebSocket side is unaffected.
    let (_ws, welcome) = off.client();
    assert_eq!(welcome["type"], "welcome");
}
