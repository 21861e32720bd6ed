//! `GET /metrics` on a live daemon (SPEC section 9): the exposition parsed
//! by the reference Python parser, every family present with HELP and TYPE,
//! and the counters moving with real traffic; `[metrics] key` and
//! `[metrics] enabled = false`.

mod common;

use common::api::{
    api_table, command, get, once, parse_metrics, sample, scrape, skip_python, Http, API_KEY,
};
use common::msg::{recv_close, until_pong};
use common::*;
use serde_json::{json, Value};

/// Every family of SPEC section 9 (counters by their name without
/// `_total`, as the parser names families) and its type.
const FAMILIES: [(&str, &str); 18] = [
    ("rakit_connections", "gauge"),
    ("rakit_connections_accepted", "counter"),
    ("rakit_handshake_refusals", "counter"),
    ("rakit_messages_received", "counter"),
    ("rakit_frames_sent", "counter"),
    ("rakit_bytes_received", "counter"),
    ("rakit_bytes_sent", "counter"),
    ("rakit_closes", "counter"),
    ("rakit_slow_client_drops", "counter"),
    ("rakit_channels", "gauge"),
    ("rakit_api_requests", "counter"),
    ("rakit_webhook_events", "counter"),
    ("rakit_cluster_up", "gauge"),
    ("rakit_cluster_messages", "counter"),
    ("process_resident_memory_bytes", "gauge"),
    ("process_cpu_seconds", "counter"),
    ("process_open_fds", "gauge"),
    ("process_start_time_seconds", "gauge"),
];

/// Checks that every family of SPEC section 9 is there with its type and
/// help, in the parsed families and as `# HELP` / `# TYPE` lines.
#[track_caller]
fn check_families(text: &str, families: &[Value]) {
    for (name, kind) in FAMILIES {
        let f = families
            .iter()
            .find(|f| f["name"] == name)
            .unwrap_or_else(|| panic!("no family {name}:\n{text}"));
        assert_eq!(f["type"], kind, "{name}");
        assert!(
            f["help"].as_str().is_some_and(|h| !h.is_empty()),
            "{name} has no help"
        );
        let exposed = if kind == "counter" {
            format!("{name}_total")
        } else {
            name.to_owned()
        };
        assert!(
            text.lines()
                .any(|l| l.starts_with(&format!("# HELP {exposed} "))),
            "# HELP {exposed}:\n{text}"
        );
        assert!(
            text.lines()
                .any(|l| l == format!("# TYPE {exposed} {kind}")),
            "# TYPE {exposed} {kind}:\n{text}"
        );
    }
    // No family parsed twice (two families colliding once `_total` is dropped).
    let mut names: Vec<&str> = families
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    let all = names.len();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), all, "a family appears twice: {names:?}");
}

/// A scrape parsed by the reference parser.
#[track_caller]
fn metrics(daemon: &Daemon) -> Vec<Value> {
    let text = scrape(daemon.addr, None);
    let families = parse_metrics(&text);
    check_families(&text, &families);
    families
}

/// Counters move with the traffic that they count; gauges follow the state.
#[test]
fn every_family_is_there_and_the_counters_move() {
    if skip_python() {
        return;
    }
    let daemon = Daemon::start(
        &format!(
            "logging_level = \"warn\"\npresence = false\nallowed_origins = [\"https://good.example\"]\n{}",
            api_table()
        ),
        &[],
    );
    let m0 = metrics(&daemon);
    let v = |m: &[Value], name: &str| sample(m, name, &[]);
    assert_eq!(v(&m0, "rakit_connections"), 0.0);
    assert_eq!(v(&m0, "rakit_connections_accepted_total"), 0.0);
    assert_eq!(v(&m0, "rakit_cluster_up"), 0.0);
    assert!(v(&m0, "process_open_fds") > 0.0);
    assert!(v(&m0, "process_resident_memory_bytes") > 0.0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let started = v(&m0, "process_start_time_seconds");
    assert!(
        (now - started).abs() < 120.0,
        "started at {started}, now {now}"
    );
    for result in ["sent", "failed", "dropped"] {
        assert!(
            m0.iter().any(|f| f["name"] == "rakit_webhook_events"
                && f["samples"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|s| s[1]["result"] == result)),
            "rakit_webhook_events_total{{result={result:?}}}"
        );
    }
    for direction in ["in", "out"] {
        assert_eq!(
            sample(
                &m0,
                "rakit_cluster_messages_total",
                &[("direction", direction)]
            ),
            0.0
        );
    }

    // Three clients: accepted and open.
    let (mut a, _) = daemon.client();
    let (mut b, _) = daemon.client();
    let (mut victim, welcome) = daemon.client();
    let victim_id = welcome["client_id"].as_str().unwrap().to_owned();
    send_json(&mut a, &json!({"event":"subscribe","channel":"news"}));
    assert_eq!(recv_json(&mut a)["type"], "subscribed");
    let m1 = metrics(&daemon);
    assert_eq!(v(&m1, "rakit_connections_accepted_total"), 3.0);
    assert_eq!(v(&m1, "rakit_connections"), 3.0);
    assert_eq!(v(&m1, "rakit_channels"), 1.0);
    assert_eq!(v(&m1, "rakit_messages_received_total"), 1.0);
    assert!(v(&m1, "rakit_bytes_received_total") > v(&m0, "rakit_bytes_received_total"));
    assert!(v(&m1, "rakit_bytes_sent_total") > v(&m0, "rakit_bytes_sent_total"));

    // A message from a client.
    send_json(&mut b, &json!({"ping": 1}));
    assert_eq!(recv_json(&mut b), json!({"type":"pong"}));
    // A broadcast over the API: three deliveries.
    let frames_before = v(&metrics(&daemon), "rakit_frames_sent_total");
    let r = once(
        daemon.addr,
        &command(r#"{"command":"broadcast","message":"m"}"#),
    );
    assert_eq!(r.status, 200);
    for ws in [&mut a, &mut b, &mut victim] {
        assert_eq!(recv_json(ws)["type"], "message");
    }
    // A refused origin and a refused key.
    let (_s, head) = raw_handshake(
        &daemon,
        &upgrade_request("/", "Origin: https://evil.example\r\n"),
    );
    assert_eq!(status_of(&head), 403, "{head}");
    let r = once(
        daemon.addr,
        &get("/api/presence", Some("wrong-key-0123456789")),
    );
    assert_eq!(r.status, 401);
    // The disconnect command: close 4000.
    let r = once(
        daemon.addr,
        &command(&format!(
            r#"{{"command":"disconnect","client_id":"{victim_id}"}}"#
        )),
    );
    assert_eq!(r.status, 200);
    assert_eq!(recv_close(&mut victim).0, 4000);
    expect_gone(&mut victim);

    let m2 = metrics(&daemon);
    assert_eq!(v(&m2, "rakit_messages_received_total"), 2.0);
    assert_eq!(v(&m2, "rakit_frames_sent_total") - frames_before, 3.0);
    assert_eq!(
        sample(&m2, "rakit_handshake_refusals_total", &[("status", "403")]),
        1.0
    );
    assert_eq!(sample(&m2, "rakit_closes_total", &[("code", "4000")]), 1.0);
    // 200: the broadcast and the disconnect; 401: the wrong key.
    assert_eq!(
        sample(&m2, "rakit_api_requests_total", &[("status", "200")]),
        2.0
    );
    assert_eq!(
        sample(&m2, "rakit_api_requests_total", &[("status", "401")]),
        1.0
    );
    assert_eq!(v(&m2, "rakit_connections"), 2.0);
    assert_eq!(v(&m2, "rakit_connections_accepted_total"), 3.0);
    // Scrapes are not API requests, and HTTP connections are not WebSocket ones.
    let mut keep = Http::connect(daemon.addr);
    for _ in 0..3 {
        assert_eq!(keep.request(&get("/metrics", None)).status, 200);
    }
    let m3 = metrics(&daemon);
    assert_eq!(v(&m3, "rakit_connections"), 2.0);
    assert_eq!(
        sample(&m3, "rakit_api_requests_total", &[("status", "200")]),
        2.0
    );
    assert!(v(&m3, "process_cpu_seconds_total") >= v(&m0, "process_cpu_seconds_total"));
    assert_eq!(until_pong(&mut a), Vec::<Value>::new());
}

/// A client dropped for a full send buffer counts as a slow-client drop and
/// a 4008 close.
#[test]
fn a_dropped_slow_client_is_counted() {
    if skip_python() {
        return;
    }
    let daemon = Daemon::start(
        &format!(
            "logging_level = \"warn\"\npresence = false\nmax_send_buffer = 4096\n{}",
            api_table()
        ),
        &[],
    );
    // A raw client that never reads, with a small receive buffer.
    let slow = raw_ws(&daemon);
    let big = format!(
        r#"{{"command":"broadcast","message":"{}"}}"#,
        "x".repeat(30_000)
    );
    let mut api = Http::connect(daemon.addr);
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        assert_eq!(api.request(&command(&big)).status, 200);
        let m = parse_metrics(&scrape(daemon.addr, None));
        if sample(&m, "rakit_slow_client_drops_total", &[]) == 1.0 {
            assert_eq!(sample(&m, "rakit_closes_total", &[("code", "4008")]), 1.0);
            assert_eq!(sample(&m, "rakit_connections", &[]), 0.0);
            break;
        }
        assert!(std::time::Instant::now() < deadline, "never dropped");
    }
    drop(slow);
}

/// With `[metrics] key`, a scrape needs `Authorization: Bearer KEY`.
#[test]
fn a_metrics_key_is_required_when_set() {
    let key = "metrics-key-0123456789";
    let daemon = Daemon::start(
        &format!("logging_level = \"warn\"\n[metrics]\nkey = \"{key}\"\n"),
        &[],
    );
    for auth in [None, Some("metrics-key-012345678"), Some(API_KEY)] {
        let r = once(daemon.addr, &get("/metrics", auth));
        assert_eq!(r.status, 401, "{auth:?}: {}", r.head);
        assert_eq!(r.header("www-authenticate"), Some("Bearer"));
        assert!(!r.text().contains("rakit_"), "{}", r.text());
    }
    let text = scrape(daemon.addr, Some(key));
    assert!(text.contains("\nrakit_connections 0\n"), "{text}");
    if !skip_python() {
        check_families(&text, &parse_metrics(&text));
    }
}

/// `[metrics] enabled = false`: `/metrics` is 404 and the rest serves on.
#[test]
fn disabled_metrics_are_404() {
    let daemon = Daemon::start(
        "logging_level = \"warn\"\n[metrics]\nenabled = false\n",
        &[],
    );
    let r = once(daemon.addr, &get("/metrics", None));
    assert_eq!(r.status, 404, "{}", r.head);
    assert!(!r.text().contains("rakit_"));
    let r = once(daemon.addr, &get("/health", None));
    assert_eq!((r.status, r.text()), (200, "ok"));
    let (_ws, welcome) = daemon.client();
    assert_eq!(welcome["type"], "welcome");
}

/// `rakit_closes_total{code}` counts every close code the server sends (SPEC 9), not only
/// 4000 and 4008: the echo of a client's 1000, and 1002, 1007 and 1009 for protocol errors,
/// once each.
#[test]
fn closes_for_protocol_errors_and_the_echoed_close_are_counted() {
    let daemon = Daemon::start(
        "logging_level = \"warn\"\npresence = false\nmax_buffer_size = 1024\n",
        &[],
    );
    let closes = |code: &str| -> u64 {
        let text = scrape(daemon.addr, None);
        let prefix = format!("rakit_closes_total{{code=\"{code}\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .map_or(0, |v| v.parse().unwrap())
    };
    // A client past its welcome.
    let open = || {
        let mut s = raw_ws(&daemon);
        assert_eq!(read_frame(&mut s).byte0, 0x81, "the welcome");
        s
    };
    // 1000: the client closes, the server echoes its code.
    let mut s = open();
    send_frame(
        &mut s,
        true,
        rakit_protocol::OpCode::Close,
        &1000u16.to_be_bytes(),
    );
    expect_close(&mut s, 1000);
    // 1002: an unmasked frame.
    let mut s = open();
    std::io::Write::write_all(&mut s, b"\x81\x02hi").unwrap();
    expect_close(&mut s, 1002);
    // 1007: text that is not UTF-8.
    let mut s = open();
    send_frame(&mut s, true, rakit_protocol::OpCode::Text, b"\xff\xfe");
    expect_close(&mut s, 1007);
    // 1009: a message over max_buffer_size.
    let mut s = open();
    send_frame(&mut s, true, rakit_protocol::OpCode::Text, &[b'x'; 2000]);
    expect_close(&mut s, 1009);
    let counted: Vec<u64> = ["1000", "1002", "1007", "1009", "4000", "4008"]
        .iter()
        .map(|code| closes(code))
        .collect();
    assert_eq!(
        counted,
        [1, 1, 1, 1, 0, 0],
        "1000, 1002, 1007, 1009, 4000, 4008"
    );
}
