//! Exposition tests: the format by hand, then the reference parser (Python's prometheus_client).

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::*;

fn sample_metrics() -> (Metrics, Gauges) {
    let mut m = Metrics {
        connections_accepted: 12,
        messages_received: 7,
        frames_sent: 99,
        bytes_received: 1000,
        bytes_sent: 2000,
        slow_client_drops: 1,
        cluster_messages_out: 5,
        ..Metrics::default()
    };
    m.handshake_refusals.incr(403);
    m.handshake_refusals.add(400, 3);
    m.closes.incr(1000);
    m.closes.incr(4008);
    m.closes.incr(1000);
    m.api_requests.incr(200);
    m.api_requests.incr(401);
    m.rate_limited.incr(Kind::Ip);
    m.rate_limited.incr(Kind::Ip);
    let mut rate_limited = Counts::default();
    rate_limited.incr(Kind::Message);
    rate_limited.incr(Kind::Broadcast);
    rate_limited.incr(Kind::Broadcast);
    rate_limited.incr(Kind::Broadcast);
    let g = Gauges {
        connections: 3,
        channels: 2,
        cluster_up: false,
        webhooks: WebhookCounts {
            sent: 10,
            failed: 2,
            dropped: 1,
        },
        log_lines_dropped: Some(4),
        compressions: 6,
        sockets: 0,
        rate_limited,
    };
    (m, g)
}

fn rendered() -> String {
    let (m, g) = sample_metrics();
    let mut out = String::new();
    let process = ProcessSample {
        resident_bytes: Some(4096),
        cpu_seconds: Some(1.25),
        open_fds: Some(9),
        start_time: Some(1_700_000_000.5),
    };
    render_with(&m, &g, &process, &mut out);
    out
}

#[test]
fn label_counts_stay_sorted() {
    let mut c = LabelCounts::default();
    for l in [503, 400, 431, 400] {
        c.incr(l);
    }
    assert_eq!(c.iter().collect::<Vec<_>>(), [(400, 2), (431, 1), (503, 1)]);
    assert_eq!((c.get(400), c.get(401)), (2, 0));
}

#[test]
fn proc_parsers() {
    let stat = "4242 (my (odd) name) S 1 2 3 4 5 6 7 8 9 10 150 50 0 0 20 0 1 0 12345 0 0";
    let t = parse_stat(stat).unwrap();
    assert_eq!((t.utime, t.stime, t.starttime), (150, 50, 12345));
    assert!(parse_stat("garbage").is_none());
    assert_eq!(
        parse_vm_rss("Name:\tx\nVmRSS:\t   2048 kB\nVmSwap: 0 kB\n"),
        Some(2048 * 1024)
    );
    assert_eq!(parse_vm_rss("Name: x\n"), None);
    assert_eq!(
        parse_btime("cpu 1 2\nbtime 1700000000\nprocesses 5\n"),
        Some(1_700_000_000)
    );
}

#[test]
fn reads_this_process() {
    let info = ProcessInfo::detect();
    assert!(info.ticks_per_second > 0);
    let s = ProcessCache::default().get(&info, 0, Instant::now());
    assert!(s.resident_bytes.unwrap() > 0);
    assert!(s.open_fds.unwrap() >= 3);
    let start = s.start_time.unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    // The test process started within the last hour.
    assert!(
        start <= now + 2.0 && start > now - 3600.0,
        "{start} vs {now}"
    );
    assert!(s.cpu_seconds.unwrap() >= 0.0);
}

#[test]
fn every_family_has_help_and_type_and_counters_end_in_total() {
    let text = rendered();
    let mut families = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            assert!(families.insert(name.to_owned(), kind.to_owned()).is_none());
            assert!(
                text.contains(&format!("# HELP {name} ")),
                "{name} has no HELP"
            );
            if kind == "counter" {
                assert!(name.ends_with("_total"), "{name}");
            }
        }
    }
    for name in [
        "rakit_connections",
        "rakit_connections_accepted_total",
        "rakit_handshake_refusals_total",
        "rakit_messages_received_total",
        "rakit_frames_sent_total",
        "rakit_bytes_received_total",
        "rakit_bytes_sent_total",
        "rakit_closes_total",
        "rakit_slow_client_drops_total",
        "rakit_rate_limited_total",
        "rakit_channels",
        "rakit_api_requests_total",
        "rakit_webhook_events_total",
        "rakit_cluster_up",
        "rakit_cluster_messages_total",
        "rakit_cluster_messages_dropped_total",
        "rakit_log_lines_dropped_total",
        "rakit_compressions_total",
        "process_resident_memory_bytes",
        "process_cpu_seconds_total",
        "process_open_fds",
        "process_start_time_seconds",
    ] {
        assert!(families.contains_key(name), "{name} missing");
    }
    // No collisions once `_total` is dropped.
    let stripped: BTreeSet<&str> = families
        .keys()
        .map(|n| n.strip_suffix("_total").unwrap_or(n))
        .collect();
    assert_eq!(stripped.len(), families.len());
    for line in [
        "rakit_connections 3",
        "rakit_handshake_refusals_total{status=\"400\"} 3",
        "rakit_closes_total{code=\"1000\"} 2",
        "rakit_closes_total{code=\"4008\"} 1",
        "rakit_webhook_events_total{result=\"dropped\"} 1",
        "rakit_cluster_up 0",
        "rakit_cluster_messages_total{direction=\"in\"} 0",
        "rakit_rate_limited_total{kind=\"message\"} 1",
        "rakit_rate_limited_total{kind=\"broadcast\"} 3",
        "rakit_rate_limited_total{kind=\"ip\"} 2",
        "rakit_rate_limited_total{kind=\"user\"} 0",
        "process_cpu_seconds_total 1.25",
        "process_start_time_seconds 1700000000.5",
    ] {
        assert!(text.lines().any(|l| l == line), "{line} missing:\n{text}");
    }
    assert!(text.ends_with('\n'));
    // Without logging's counter the family is simply absent.
    let (mut m, mut g) = sample_metrics();
    g.log_lines_dropped = None;
    let mut out = String::new();
    render(&mut m, &g, Instant::now(), &mut out);
    assert!(!out.contains("rakit_log_lines_dropped"));
    assert!(out.contains("\nprocess_open_fds "));
}

#[test]
fn escapes() {
    assert_eq!(escape_label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    assert_eq!(escape_help("a\\b\nc"), "a\\\\b\\nc");
}

const PARSER: &str = r#"
import json, sys
from prometheus_client.parser import text_string_to_metric_families
out = []
for f in text_string_to_metric_families(sys.stdin.read()):
    out.append({"name": f.name, "type": f.type, "help": f.documentation,
                "samples": [[s.name, s.labels, s.value] for s in f.samples]})
print(json.dumps(out))
"#;

/// Parses the exposition with prometheus_client (installed by scripts/test.sh). Skipped only
/// with RAKIT_SKIP_PYTHON=1; a missing python3 or module is otherwise a failure.
#[test]
fn the_reference_python_parser_accepts_it() {
    if std::env::var("RAKIT_SKIP_PYTHON").as_deref() == Ok("1") {
        eprintln!("skipped: RAKIT_SKIP_PYTHON=1 (needs python3 with prometheus-client)");
        return;
    }
    let mut child = Command::new("python3")
        .args(["-c", PARSER])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 (or set RAKIT_SKIP_PYTHON=1)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(rendered().as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "the parser refused it (python3 -m pip install prometheus-client?): {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let families: Vec<Value> = serde_json::from_slice(&output.stdout).unwrap();
    let by_name: BTreeMap<&str, &Value> = families
        .iter()
        .map(|f| (f["name"].as_str().unwrap(), f))
        .collect();
    assert_eq!(by_name.len(), families.len(), "no family parsed twice");
    assert_eq!(families.len(), 22);
    for f in &families {
        assert!(!f["help"].as_str().unwrap().is_empty(), "{f}");
    }
    assert_eq!(by_name["rakit_connections"]["type"], "gauge");
    let accepted = by_name["rakit_connections_accepted"];
    assert_eq!(accepted["type"], "counter");
    // (name, labels, value); values compared as floats (parser versions differ on 12 vs 12.0).
    let sample = |family: &str, i: usize| {
        let s = &by_name[family]["samples"][i];
        (s[0].clone(), s[1].clone(), s[2].as_f64().unwrap())
    };
    assert_eq!(
        sample("rakit_connections_accepted", 0),
        (
            "rakit_connections_accepted_total".into(),
            serde_json::json!({}),
            12.0
        )
    );
    assert_eq!(
        sample("rakit_webhook_events", 1),
        (
            "rakit_webhook_events_total".into(),
            serde_json::json!({"result": "failed"}),
            2.0
        )
    );
    assert_eq!(by_name["process_cpu_seconds"]["type"], "counter");
    assert_eq!(sample("process_start_time_seconds", 0).2, 1_700_000_000.5);
}

#[test]
fn only_the_servers_close_codes_are_labels() {
    let mut m = Metrics::default();
    m.closes.incr(4008);
    m.closes.incr(4029);
    m.closes.incr(3001);
    m.closes.echo();
    m.closes.echo();
    assert_eq!((m.closes.get(4008), m.closes.get(3001)), (1, 0));
    assert_eq!(m.closes.other(), 3);
    let mut out = String::new();
    render_with(&m, &Gauges::default(), &ProcessSample::default(), &mut out);
    let lines: Vec<&str> = out
        .lines()
        .filter(|l| l.starts_with("rakit_closes_total{"))
        .collect();
    assert_eq!(
        lines,
        [
            "rakit_closes_total{code=\"4008\"} 1",
            "rakit_closes_total{code=\"4029\"} 1",
            "rakit_closes_total{code=\"other\"} 3"
        ]
    );
}

/// A scrape's cost must not grow with the process: the figures are read at most once a second,
/// the descriptors listed no more often, and between listings the count follows the loop's
/// sockets.
#[test]
fn process_figures_are_read_at_most_once_a_second() {
    let info = ProcessInfo::detect();
    let mut cache = ProcessCache::default();
    let t = Instant::now();
    let first = cache.get(&info, 10, t);
    assert!(first.open_fds.unwrap() >= 3);
    for i in 0..100u64 {
        let s = cache.get(&info, 10 + i, t + Duration::from_millis(i * 9));
        assert_eq!(
            s.open_fds,
            first.open_fds.map(|n| n + i),
            "sockets opened since"
        );
        assert_eq!(s.cpu_seconds, first.cpu_seconds, "cached");
    }
    let s = cache.get(&info, 5, t + Duration::from_millis(990));
    assert_eq!(
        s.open_fds,
        first.open_fds.map(|n| n - 5),
        "sockets closed since"
    );
    assert_eq!(cache.listings, 1);
    // A minute on, everything is read and listed again.
    cache.get(&info, 10, t + Duration::from_secs(60));
    assert_eq!(cache.listings, 2);
}
